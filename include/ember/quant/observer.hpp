#pragma once
// Observers: they watch the values a tensor takes (calibration batches, weights) and turn their
// range into quantization parameters, with torch.ao.quantization's rules.
#include <cstdint>
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember::quant {

/// The integer range and mapping of a quantized tensor: torch's dtype / quant_min / quant_max /
/// qscheme. `reduce_range` halves the range (7-bit activations, Note [Int8 GEMM]).
struct QuantSpec {
  bool is_signed = false;  // qint8 (true) or quint8
  bool symmetric = false;  // per_tensor_symmetric / per_channel_symmetric
  bool reduce_range = false;
  constexpr int64_t quant_min() const noexcept {
    if (is_signed) return reduce_range ? -64 : -128;
    return 0;
  }
  constexpr int64_t quant_max() const noexcept {
    if (is_signed) return reduce_range ? 63 : 127;
    return reduce_range ? 127 : 255;
  }
};

/// The activation spec ember quantizes with (PyTorch's x86 default: quint8, affine, 7 bits) and the
/// weight spec (qint8, symmetric).
inline constexpr QuantSpec kActivationSpec{.is_signed = false, .symmetric = false, .reduce_range = true};
inline constexpr QuantSpec kWeightSpec{.is_signed = true, .symmetric = true, .reduce_range = false};

struct QParams {
  float scale = 1.0f;
  int64_t zero_point = 0;
};

/// torch's ObserverBase._calculate_qparams for one range [min_val, max_val]: the range is widened to
/// hold 0; symmetric: scale = max(|min|, max) / ((quant_max - quant_min) / 2), zero point 0 (128 for
/// quint8); affine: scale = (max - min) / (quant_max - quant_min), zero_point = quant_min -
/// round(min / scale) clamped; scale at least float's epsilon. In float, as torch computes it.
/// A range that is not finite throws ember::ValueError.
QParams calculate_qparams(float min_val, float max_val, const QuantSpec& spec);

/// MinMaxObserver: the running minimum and maximum of everything observed.
class MinMaxObserver {
 public:
  explicit MinMaxObserver(QuantSpec spec = kActivationSpec) : spec_(spec) {}
  /// Records x's range; throws ember::ValueError on NaN or an empty tensor (naming `what`).
  void observe(const Tensor<float>& x, const char* what = "observer");
  bool observed() const noexcept { return seen_; }
  float min_val() const noexcept { return min_; }
  float max_val() const noexcept { return max_; }
  QParams qparams() const;

 private:
  QuantSpec spec_;
  bool seen_ = false;
  float min_ = 0, max_ = 0;
};

/// PerChannelMinMaxObserver: ranges per slice along `axis` (weights: axis 0, the output channel).
class PerChannelMinMaxObserver {
 public:
  explicit PerChannelMinMaxObserver(int64_t axis = 0, QuantSpec spec = kWeightSpec) : axis_(axis), spec_(spec) {}
  void observe(const Tensor<float>& x, const char* what = "observer");
  std::vector<QParams> qparams() const;
  const std::vector<float>& min_vals() const noexcept { return min_; }
  const std::vector<float>& max_vals() const noexcept { return max_; }

 private:
  int64_t axis_;
  QuantSpec spec_;
  std::vector<float> min_, max_;
};

/// HistogramObserver: a 2048-bin histogram of the observed values, widened as the range grows,
/// and torch's search for the sub-range [min, max] that minimises the L2 error of quantizing the
/// histogram into the spec's 2^bits levels (its _non_linear_param_search). Clips outliers that a
/// min/max range would spend levels on.
class HistogramObserver {
 public:
  explicit HistogramObserver(QuantSpec spec = kActivationSpec, int64_t bins = 2048) : spec_(spec), bins_(bins) {}
  void observe(const Tensor<float>& x, const char* what = "observer");
  bool observed() const noexcept { return !histogram_.empty(); }
  QParams qparams() const;
  /// The range the search chose (the observed range when it keeps everything).
  std::pair<float, float> chosen_range() const;

 private:
  QuantSpec spec_;
  int64_t bins_;
  float min_ = 0, max_ = 0;
  std::vector<double> histogram_;
};

}  // namespace ember::quant
