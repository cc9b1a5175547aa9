#pragma once
#include <span>
#include <vector>

#include "ember/core/tensor_impl.hpp"

namespace ember::autograd {
/// Whether t is the whole of a contiguous buffer that no other tensor shares and at most
/// `handles` handles refer to: a gradient the engine or a leaf may keep, or sum into, in place.
inline bool owns_whole_buffer(const TensorBase& t, long handles, size_t element_size) noexcept {
  const TensorImpl& in = *t.impl();
  return t.impl_ptr().use_count() <= handles && t.is_contiguous() && in.offset == 0 &&
         in.storage.use_count() == 1 && in.storage->nbytes() == static_cast<size_t>(in.numel) * element_size;
}

/// Backpropagates from `roots` (gradients `root_grads`, undefined = ones). With `inputs`, the
/// gradients reaching them are stored in `captured` instead of accumulated into leaves.
void run_backward(std::span<const TensorBase> roots, std::span<const TensorBase> root_grads,
                  bool keep_graph, bool create_graph, const std::vector<TensorBase>* inputs,
                  std::vector<TensorBase>* captured);
}  // namespace ember::autograd
