#pragma once
// Resampling of NCL / NCHW tensors to another size: torch.nn.functional.interpolate's nearest,
// nearest-exact, linear (NCL) and bilinear (NCHW) modes, with its source coordinates (PyTorch's
// area_pixel_compute_source_index and nearest_idx, in the element type's precision). Written as
// index_select and weighted sums, so it differentiates to any order.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember {

struct InterpolateOptions {
  std::vector<int64_t> size;          // the output's spatial size, one per spatial dim (or one for all) ...
  std::vector<double> scale_factor;   // ... or the factor per spatial dim (or one for all)
  std::string mode = "nearest";       // "nearest", "nearest-exact", "linear" (NCL), "bilinear" (NCHW)
  std::optional<bool> align_corners;  // linear modes only; false when unset
};

template <FloatingElement T>
Tensor<T> interpolate(const Tensor<T>& x, const InterpolateOptions& options);

}  // namespace ember
