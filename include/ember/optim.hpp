#pragma once
// ember::optim: optimizers (torch.optim).
#include "ember/optim/optimizer.hpp"
