#pragma once
// Quantized tensors in PyTorch's affine scheme: real = scale * (q - zero_point), with one scale and
// zero point for the whole tensor or one per slice along an axis (per channel).
#include <cstdint>
#include <type_traits>

#include "ember/core/tensor.hpp"

namespace ember::quant {

/// The integer types a QTensor holds: int8_t (PyTorch's qint8) and uint8_t (quint8).
template <class Q>
concept QuantElement = std::is_same_v<Q, int8_t> || std::is_same_v<Q, uint8_t>;

enum class QScheme : uint8_t { PerTensorAffine, PerChannelAffine };
const char* qscheme_name(QScheme s) noexcept;  // "per_tensor_affine", "per_channel_affine"

template <QuantElement Q>
class QTensor {
 public:
  QTensor() = default;

  /// A quantized tensor from its integers and parameters, checked as quantize_per_tensor /
  /// quantize_per_channel check theirs (used to load saved models).
  static QTensor per_tensor(Tensor<Q> values, double scale, int64_t zero_point);
  static QTensor per_channel(Tensor<Q> values, Tensor<float> scales, Tensor<int64_t> zero_points, int64_t axis);

  bool defined() const noexcept { return values_.defined(); }
  const Shape& shape() const { return values_.shape(); }
  QScheme qscheme() const noexcept { return scheme_; }
  /// The integers (torch's int_repr()).
  const Tensor<Q>& int_repr() const noexcept { return values_; }
  /// scale * (q - zero_point) as float, per element.
  Tensor<float> dequantize() const;
  /// The per-tensor parameters; throw ember::ValueError on a per-channel tensor.
  double q_scale() const;
  int64_t q_zero_point() const;
  /// The per-channel parameters; throw ember::ValueError on a per-tensor tensor.
  const Tensor<float>& q_per_channel_scales() const;
  const Tensor<int64_t>& q_per_channel_zero_points() const;
  int64_t q_per_channel_axis() const;
  /// "QTensor<int8>([64, 32], per_channel_affine, axis 0)".
  std::string str() const;

 private:
  Tensor<Q> values_;
  QScheme scheme_ = QScheme::PerTensorAffine;
  double scale_ = 1.0;
  int64_t zero_point_ = 0;
  Tensor<float> scales_;
  Tensor<int64_t> zero_points_;
  int64_t axis_ = 0;
};

/// torch.quantize_per_tensor: q = clamp(round_half_even(x * (1 / scale)) + zero_point) with the
/// reciprocal and the product in float, bit for bit. scale must be positive and finite (as a
/// float), zero_point within Q's range; NaN in x is refused.
template <QuantElement Q>
QTensor<Q> quantize_per_tensor(const Tensor<float>& x, double scale, int64_t zero_point);

/// torch.quantize_per_channel: slice c along `axis` uses scales[c] and zero_points[c] (both of
/// shape [x.size(axis)]).
template <QuantElement Q>
QTensor<Q> quantize_per_channel(const Tensor<float>& x, const Tensor<float>& scales, const Tensor<int64_t>& zero_points,
                                int64_t axis);

extern template class QTensor<int8_t>;
extern template class QTensor<uint8_t>;

}  // namespace ember::quant
