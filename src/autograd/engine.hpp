#pragma once
#include <span>
#include <vector>

#include "ember/core/tensor_impl.hpp"

namespace ember::autograd {
/// Backpropagates from `roots` (gradients `root_grads`, undefined = ones). With `inputs`, the
/// gradients reaching them are stored in `captured` instead of accumulated into leaves.
void run_backward(std::span<const TensorBase> roots, std::span<const TensorBase> root_grads,
                  bool keep_graph, bool create_graph, const std::vector<TensorBase>* inputs,
                  std::vector<TensorBase>* captured);
}  // namespace ember::autograd
