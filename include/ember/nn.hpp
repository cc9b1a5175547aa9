#pragma once
// ember::nn: modules, layers, losses and initialisers (torch.nn).
#include "ember/nn/activation.hpp"
#include "ember/nn/attention.hpp"
#include "ember/nn/container.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/dropout.hpp"
#include "ember/nn/functional.hpp"
#include "ember/nn/init.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/module.hpp"
#include "ember/nn/normalization.hpp"
#include "ember/nn/pooling.hpp"
#include "ember/nn/residual.hpp"
