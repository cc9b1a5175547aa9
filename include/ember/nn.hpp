#pragma once
// ember::nn: modules, layers, losses and initialisers (torch.nn).
#include "ember/nn/activation.hpp"
#include "ember/nn/attention.hpp"
#include "ember/nn/container.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/dropout.hpp"
#include "ember/nn/embedding.hpp"
#include "ember/nn/functional.hpp"
#include "ember/nn/init.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/loss.hpp"
#include "ember/nn/module.hpp"
#include "ember/nn/normalization.hpp"
#include "ember/nn/padding.hpp"
#include "ember/nn/pooling.hpp"
#include "ember/nn/residual.hpp"
#include "ember/nn/rnn.hpp"
#include "ember/nn/transfer.hpp"
#include "ember/nn/upsampling.hpp"

namespace ember {
// The functional forms at the top level too, where LibTorch has them (torch::dropout,
// torch::nll_loss, ...). The convolutions stay in nn::functional: ember::conv2d is the op that
// takes a Conv2dGeometry.
using nn::functional::binary_cross_entropy;
using nn::functional::binary_cross_entropy_with_logits;
using nn::functional::cosine_embedding_loss;
using nn::functional::cross_entropy;
using nn::functional::dropout;
using nn::functional::dropout2d;
using nn::functional::huber_loss;
using nn::functional::kl_div;
using nn::functional::l1_loss;
using nn::functional::linear;
using nn::functional::mse_loss;
using nn::functional::nll_loss;
using nn::functional::scaled_dot_product_attention;
using nn::functional::smooth_l1_loss;
using nn::functional::triplet_margin_loss;
}  // namespace ember
