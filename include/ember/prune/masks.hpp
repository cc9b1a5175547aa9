#pragma once
// Pruning by masks, as torch.nn.utils.prune: a module's parameter `weight` becomes `weight_orig`
// (the parameter, trained) times `weight_mask` (a buffer of zeros and ones), recomputed before
// each forward, with PyTorch's names, masks and state-dict layout.
//
// Note [Pruning masks]
// Pruning `name` of a module the first time unregisters the parameter, registers its values as
// the parameter `name_orig` (appended, as PyTorch re-registers it) and the mask as the buffer
// `name_mask`, and adds a forward pre-hook that makes the module's tensor `name` (the handle its
// forward reads) `name_orig * name_mask` before every call, differentiably: gradients reach
// `name_orig` through the mask. Pruning it again combines the masks as PyTorch's
// PruningContainer does: an unstructured method ranks only the entries still unpruned (its
// amount counts those), a structured one only the channels with an unpruned entry, and the
// importance is the masked tensor. remove() makes the masked values the parameter `name` again
// (appended) and drops `name_orig`, `name_mask` and the hook. A state dict of a pruned module
// holds `name_orig` and `name_mask` as PyTorch's does, so it loads into a PyTorch module pruned
// the same way, and back. Masks equal PyTorch's for the same weights, ties aside (ember breaks
// them toward the lower index; torch.topk's order is unspecified). Optimizers made before pruning
// or remove() hold the replaced parameter: make them again.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/generator.hpp"
#include "ember/nn/module.hpp"

namespace ember::prune {

/// How much to prune: a fraction in [0, 1] (of the entries or channels considered; the count is
/// round(fraction * n), half to even, as PyTorch's Python round) or a count.
class Amount {
 public:
  Amount(double fraction) : fraction_(fraction), is_count_(false) {}  // NOLINT: implicit, as PyTorch's float
  Amount(int count) : count_(count), is_count_(true) {}             // NOLINT: implicit, as PyTorch's int
  Amount(long count) : count_(count), is_count_(true) {}            // NOLINT
  Amount(long long count) : count_(count), is_count_(true) {}       // NOLINT
  /// The count of `n` to prune; throws ValueError naming `what` when out of range.
  int64_t count_of(int64_t n, const std::string& what) const;

 private:
  double fraction_ = 0;
  int64_t count_ = 0;
  bool is_count_;
};

/// Prunes the entries of `name` with the smallest absolute values.
void l1_unstructured(nn::Module<float>& module, const std::string& name, Amount amount);
/// Prunes entries of `name` chosen uniformly at random (ember's generator, or `gen`).
void random_unstructured(nn::Module<float>& module, const std::string& name, Amount amount, Generator* gen = nullptr);
/// Prunes the slices of `name` along `dim` (the output channels for dim 0) with the smallest L_n
/// norm (n >= 1, or infinity).
void ln_structured(nn::Module<float>& module, const std::string& name, Amount amount, double n, int64_t dim);
/// Prunes the given mask (ones keep, zeros prune; the tensor's shape) into `name`.
void custom_from_mask(nn::Module<float>& module, const std::string& name, const Tensor<float>& mask);
/// Prunes the entries with the smallest absolute values among all the given tensors together.
void global_unstructured(const std::vector<std::pair<nn::Module<float>*, std::string>>& parameters, Amount amount);
/// Makes the pruning of `name` permanent: the masked values become the parameter `name` again.
void remove(nn::Module<float>& module, const std::string& name);
/// Whether any tensor of `module` or its descendants is pruned.
bool is_pruned(nn::Module<float>& module);

}  // namespace ember::prune
