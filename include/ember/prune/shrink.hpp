#pragma once
// Structured pruning that shrinks a network: whole output channels of convolutions and units of
// linear layers removed, with the matching inputs of the layer that reads them, leaving a smaller
// dense model (as the torch-pruning library does; torch.nn.utils.prune.ln_structured only masks).
//
// Note [Shrinking]
// shrink() walks the model's layers in order through nested Sequential containers. A Conv2d
// (groups 1) or Linear can be shrunk when its outputs reach exactly one next Conv2d or Linear (the
// consumer) through modules that keep each channel to itself: a BatchNorm right after it,
// elementwise activations, pooling, dropout and, from a convolution to a linear layer, a Flatten
// (the linear layer's inputs are then blocks of H * W per channel). Each shrunk layer keeps the
// outputs with the largest L_n norm of their weights (torch's ln_structured ranking; ties to the
// lower index) and loses round(amount * n) of them, rounding half to even as PyTorch counts; the
// batch norm between loses the same channels and the consumer the matching inputs. The shrunk
// model computes exactly what the original computes with the consumers' weights for the removed
// channels set to zero (within a float rounding: the sums have fewer terms). Every new layer is
// built before any replaces an old one (Module::replace_module, in place): an error leaves the
// model as it was. Optimizers made before hold the old parameters: make them again.
#include <string>
#include <vector>

#include "ember/nn/module.hpp"

namespace ember::prune {

struct ShrinkOptions {
  /// The fraction of each shrunk layer's output channels (or units) removed, in [0, 1).
  double amount = 0.5;
  /// The norm that ranks them (torch's ln_structured n): at least 1; 1 and 2 are usual.
  double norm = 2.0;
  /// The layers to shrink, by their paths in the model ("0", "features.3"); empty: every Conv2d
  /// and Linear that can be (Note [Shrinking]), which leaves the last layer's outputs alone.
  std::vector<std::string> layers;
};

struct ShrinkReport {
  struct Layer {
    std::string path;
    int64_t outputs_before = 0, outputs_after = 0;
  };
  std::vector<Layer> layers;  // the shrunk layers, in model order
  int64_t parameters_before = 0, parameters_after = 0;
  /// One line per shrunk layer and the parameter counts.
  std::string str() const;
};

/// Shrinks `model` in place (Note [Shrinking]). Throws ember::ValueError for an amount outside
/// [0, 1), a norm below 1, a named layer that is not a Conv2d or Linear of the model or whose
/// outputs cannot be followed to one consumer, or an amount that would remove every output of a
/// layer; the model is then unchanged.
ShrinkReport shrink(nn::Module<float>& model, const ShrinkOptions& options = {});

}  // namespace ember::prune
