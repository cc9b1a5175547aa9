#pragma once
// Reusing a trained network: freezing parts of it, and reading its features at a named layer.
//
//   nn::freeze(*backbone, {.batch_norm_eval = true});   // no gradients, running stats kept
//   net.replace_module("fc", nn::Linear(128, 5));         // a new head (Module::replace_module)
//   optim::Adam opt({{backbone->parameters(), {.lr = 1e-4}}, {net.fc->parameters(), {.lr = 1e-3}}});
//   Tensor<float> emb = nn::features(net, x, "flatten"); // embeddings for prototypes / probes
#include <string>

#include "ember/nn/module.hpp"

namespace ember::nn {

struct FreezeOptions {
  /// Also keep every batch norm inside in eval mode (running statistics used, not updated) through
  /// later train() calls, as fine-tuning recipes do for a frozen backbone.
  bool batch_norm_eval = false;
};

/// Stops gradients for every parameter of `module` and its descendants (requires_grad false), so
/// backward skips them and optimizers leave them unchanged.
template <FloatingElement T>
void freeze(Module<T>& module, FreezeOptions options = {});
/// Undoes freeze: every parameter requires grad again and batch norms follow train() again.
template <FloatingElement T>
void unfreeze(Module<T>& module);

/// The output of the submodule at `layer` (a dotted path, "features.3") when `model` runs on `x`;
/// the rest of the forward pass is skipped. The result keeps its graph unless grad mode is off.
template <FloatingElement T>
Tensor<T> features(Module<T>& model, const Tensor<T>& x, const std::string& layer);

extern template void freeze<float>(Module<float>&, FreezeOptions);
extern template void freeze<double>(Module<double>&, FreezeOptions);
extern template void unfreeze<float>(Module<float>&);
extern template void unfreeze<double>(Module<double>&);
extern template Tensor<float> features<float>(Module<float>&, const Tensor<float>&, const std::string&);
extern template Tensor<double> features<double>(Module<double>&, const Tensor<double>&, const std::string&);

}  // namespace ember::nn
