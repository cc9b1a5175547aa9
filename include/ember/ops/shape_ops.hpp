#pragma once
// Joining, splitting, padding and indexing. The views (reshape, permute, slice, ...) are members
// of Tensor; these make new tensors.
#include <initializer_list>
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember {

template <Element T>
Tensor<T> cat(const std::vector<Tensor<T>>& tensors, int64_t dim = 0);
template <Element T>
Tensor<T> stack(const std::vector<Tensor<T>>& tensors, int64_t dim = 0);
/// `cat({a, b}, 1)`: the element type comes from the braced list, as in LibTorch.
template <Element T>
Tensor<T> cat(std::initializer_list<Tensor<T>> tensors, int64_t dim = 0) {
  return cat(std::vector<Tensor<T>>(tensors), dim);
}
template <Element T>
Tensor<T> stack(std::initializer_list<Tensor<T>> tensors, int64_t dim = 0) {
  return stack(std::vector<Tensor<T>>(tensors), dim);
}
/// Splits into pieces of the given sizes along dim (they must add up to the dim's size).
template <Element T>
std::vector<Tensor<T>> split(const Tensor<T>& x, const std::vector<int64_t>& sizes, int64_t dim = 0);

enum class PadMode { Constant, Reflect, Replicate };
/// torch.nn.functional.pad: `pad` holds (before, after) pairs starting from the last dim:
/// {left, right, top, bottom, ...}. Negative pads crop.
template <FloatingElement T>
Tensor<T> pad(const Tensor<T>& x, const std::vector<int64_t>& pad, PadMode mode = PadMode::Constant,
              double value = 0.0);

template <Element T>
Tensor<T> index_select(const Tensor<T>& x, int64_t dim, const Tensor<int64_t>& index);
/// out[i][j][k] = x[index[i][j][k]][j][k] for dim 0, and so on (torch.gather).
template <Element T>
Tensor<T> gather(const Tensor<T>& x, int64_t dim, const Tensor<int64_t>& index);
/// A copy of x with src added at the places index names along dim (torch.scatter_add).
template <FloatingElement T>
Tensor<T> scatter_add(const Tensor<T>& x, int64_t dim, const Tensor<int64_t>& index,
                      const Tensor<T>& src);

/// torch.nn.functional.pixel_shuffle: [*, C r^2, H, W] -> [*, C, H r, W r] (sub-pixel
/// convolution's upsampling), and pixel_unshuffle, its inverse; every element type.
template <Element T>
Tensor<T> pixel_shuffle(const Tensor<T>& x, int64_t upscale_factor);
template <Element T>
Tensor<T> pixel_unshuffle(const Tensor<T>& x, int64_t downscale_factor);

/// x with the order of each of `dims` reversed (torch.flip); a copy.
template <Element T>
Tensor<T> flip(const Tensor<T>& x, const std::vector<int64_t>& dims);
/// x tiled repeats[i] times along dim i (torch.Tensor.repeat): at least one count per dim of x,
/// extra leading counts add leading dims.
template <Element T>
Tensor<T> repeat(const Tensor<T>& x, const std::vector<int64_t>& repeats);
/// The lower (tril) or upper (triu) triangle of the last two dims, from the given diagonal (0 the
/// main one, > 0 above it, < 0 below); the rest zero (torch.tril / torch.triu).
template <Element T>
Tensor<T> tril(const Tensor<T>& x, int64_t diagonal = 0);
template <Element T>
Tensor<T> triu(const Tensor<T>& x, int64_t diagonal = 0);
/// Running sums along dim (torch.cumsum), accumulated in double for floats as PyTorch's CPU
/// kernel does.
template <Element T>
Tensor<T> cumsum(const Tensor<T>& x, int64_t dim);
/// indices [...] -> [..., num_classes] of 0 and 1 (torch.nn.functional.one_hot); num_classes -1
/// takes the largest index + 1.
Tensor<int64_t> one_hot(const Tensor<int64_t>& indices, int64_t num_classes = -1);

}  // namespace ember
