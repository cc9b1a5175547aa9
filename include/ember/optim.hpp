#pragma once
// ember::optim: optimizers (torch.optim).
#include "ember/optim/lbfgs.hpp"
#include "ember/optim/lr_scheduler.hpp"
#include "ember/optim/optimizer.hpp"
