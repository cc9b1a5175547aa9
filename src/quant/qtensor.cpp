// Quantized tensors: quantize_per_tensor / quantize_per_channel and their inverse, on the int8
// kernels' conversions (ember/backend/int8_kernels.hpp).
#include "ember/quant/qtensor.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "ember/backend/int8_kernels.hpp"
#include "ember/core/error.hpp"
#include "ember/ops/factory.hpp"
#include "../core/internal.hpp"

namespace ember::quant {
namespace {

using detail::cat_str;

template <class Q>
constexpr int64_t kQMin = std::numeric_limits<Q>::min();
template <class Q>
constexpr int64_t kQMax = std::numeric_limits<Q>::max();
// int8 bytes go through the kernels as uint8 + 128 (Note [Int8 GEMM]'s conversions).
template <class Q>
constexpr int32_t kShift = std::is_same_v<Q, int8_t> ? 128 : 0;
template <class Q>
constexpr uint8_t kFlip = std::is_same_v<Q, int8_t> ? 0x80 : 0;

template <class Q>
const char* type_name() {
  return std::is_same_v<Q, int8_t> ? "int8" : "uint8";
}

// The scale as the kernels use it (a float) checked, with the zero point, for `op`.
template <class Q>
float checked_scale(const char* op, double scale, int64_t zero_point, const std::string& where) {
  const auto s = static_cast<float>(scale);
  if (!(s > 0.0f) || !std::isfinite(s) || !std::isfinite(1.0f / s)) {
    throw ValueError(cat_str(op, ": scale", where, " must be positive and finite as a float, got ", scale));
  }
  if (zero_point < kQMin<Q> || zero_point > kQMax<Q>) {
    throw ValueError(cat_str(op, ": zero_point", where, " = ", zero_point, " is outside ", type_name<Q>(), "'s range [",
                             kQMin<Q>, ", ", kQMax<Q>, "]"));
  }
  return s;
}

void check_input(const char* op, const Tensor<float>& x) {
  if (!x.defined()) throw ValueError(cat_str(op, ": the input is undefined"));
}

void check_finite_or_inf(const char* op, const float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(p[i])) throw ValueError(cat_str(op, ": the input holds NaN (element ", i, ")"));
  }
}

int64_t checked_axis(const char* op, int64_t axis, int64_t dim) {
  const int64_t a = axis < 0 ? axis + dim : axis;
  if (a < 0 || a >= dim) {
    throw IndexError(cat_str(op, ": axis ", axis, " is out of range for a tensor of ", dim, " dimensions"));
  }
  return a;
}

// Sizes of the dimensions before, at and after `axis` of a contiguous tensor.
struct AxisRuns {
  int64_t outer = 1, channels = 1, inner = 1;
};
AxisRuns runs_of(const Shape& s, int64_t axis) {
  AxisRuns r;
  for (int64_t d = 0; d < s.size(); ++d) {
    if (d < axis) r.outer *= s[d];
    else if (d == axis) r.channels = s[d];
    else r.inner *= s[d];
  }
  return r;
}

template <class Q>
void check_channel_params(const char* op, const Shape& shape, int64_t axis, const Tensor<float>& scales,
                          const Tensor<int64_t>& zero_points) {
  if (!scales.defined() || !zero_points.defined()) throw ValueError(cat_str(op, ": scales and zero_points must be defined"));
  const int64_t c = shape[axis];
  if (scales.shape() != Shape({c}) || zero_points.shape() != Shape({c})) {
    throw ShapeError(cat_str(op, ": expected scales and zero_points of shape [", c, "] (the size of axis ", axis, " of ",
                             shape, "), got ", scales.shape(), " and ", zero_points.shape()));
  }
  const std::vector<float> s = scales.contiguous().to_vector();
  const std::vector<int64_t> z = zero_points.contiguous().to_vector();
  for (int64_t i = 0; i < c; ++i) checked_scale<Q>(op, s[i], z[i], cat_str("[", i, "]"));
}

}  // namespace

const char* qscheme_name(QScheme s) noexcept {
  return s == QScheme::PerTensorAffine ? "per_tensor_affine" : "per_channel_affine";
}

template <QuantElement Q>
QTensor<Q> QTensor<Q>::per_tensor(Tensor<Q> values, double scale, int64_t zero_point) {
  if (!values.defined()) throw ValueError("QTensor::per_tensor: the integer tensor is undefined");
  checked_scale<Q>("QTensor::per_tensor", scale, zero_point, "");
  QTensor q;
  q.values_ = values.contiguous();
  q.scheme_ = QScheme::PerTensorAffine;
  q.scale_ = scale;
  q.zero_point_ = zero_point;
  return q;
}

template <QuantElement Q>
QTensor<Q> QTensor<Q>::per_channel(Tensor<Q> values, Tensor<float> scales, Tensor<int64_t> zero_points, int64_t axis) {
  const char* op = "QTensor::per_channel";
  if (!values.defined()) throw ValueError(cat_str(op, ": the integer tensor is undefined"));
  const int64_t a = checked_axis(op, axis, values.dim());
  check_channel_params<Q>(op, values.shape(), a, scales, zero_points);
  QTensor q;
  q.values_ = values.contiguous();
  q.scheme_ = QScheme::PerChannelAffine;
  q.scales_ = scales.contiguous();
  q.zero_points_ = zero_points.contiguous();
  q.axis_ = a;
  return q;
}

template <QuantElement Q>
Tensor<float> QTensor<Q>::dequantize() const {
  if (!defined()) throw ValueError("QTensor::dequantize: the tensor is undefined");
  const backend::Int8Kernels& k = backend::int8_kernels();
  Tensor<float> out = empty<float>(values_.shape());
  const auto* q = reinterpret_cast<const uint8_t*>(values_.data());
  float* y = out.data();
  if (scheme_ == QScheme::PerTensorAffine) {
    k.dequantize_u8(values_.numel(), q, static_cast<int32_t>(zero_point_) + kShift<Q>, static_cast<float>(scale_),
                    kFlip<Q>, y);
    return out;
  }
  const AxisRuns r = runs_of(values_.shape(), axis_);
  const float* s = scales_.data();
  const int64_t* z = zero_points_.data();
  for (int64_t o = 0; o < r.outer; ++o) {
    for (int64_t c = 0; c < r.channels; ++c) {
      const int64_t at = (o * r.channels + c) * r.inner;
      k.dequantize_u8(r.inner, q + at, static_cast<int32_t>(z[c]) + kShift<Q>, s[c], kFlip<Q>, y + at);
    }
  }
  return out;
}

template <QuantElement Q>
double QTensor<Q>::q_scale() const {
  if (scheme_ != QScheme::PerTensorAffine) throw ValueError("QTensor::q_scale: the tensor is quantized per channel; use q_per_channel_scales()");
  return scale_;
}
template <QuantElement Q>
int64_t QTensor<Q>::q_zero_point() const {
  if (scheme_ != QScheme::PerTensorAffine) throw ValueError("QTensor::q_zero_point: the tensor is quantized per channel; use q_per_channel_zero_points()");
  return zero_point_;
}
template <QuantElement Q>
const Tensor<float>& QTensor<Q>::q_per_channel_scales() const {
  if (scheme_ != QScheme::PerChannelAffine) throw ValueError("QTensor::q_per_channel_scales: the tensor is quantized per tensor; use q_scale()");
  return scales_;
}
template <QuantElement Q>
const Tensor<int64_t>& QTensor<Q>::q_per_channel_zero_points() const {
  if (scheme_ != QScheme::PerChannelAffine) throw ValueError("QTensor::q_per_channel_zero_points: the tensor is quantized per tensor; use q_zero_point()");
  return zero_points_;
}
template <QuantElement Q>
int64_t QTensor<Q>::q_per_channel_axis() const {
  if (scheme_ != QScheme::PerChannelAffine) throw ValueError("QTensor::q_per_channel_axis: the tensor is quantized per tensor");
  return axis_;
}

template <QuantElement Q>
std::string QTensor<Q>::str() const {
  if (!defined()) return cat_str("QTensor<", type_name<Q>(), ">(undefined)");
  if (scheme_ == QScheme::PerTensorAffine) {
    return cat_str("QTensor<", type_name<Q>(), ">(", values_.shape(), ", ", qscheme_name(scheme_), ", scale ", scale_,
                   ", zero_point ", zero_point_, ")");
  }
  return cat_str("QTensor<", type_name<Q>(), ">(", values_.shape(), ", ", qscheme_name(scheme_), ", axis ", axis_, ")");
}

template <QuantElement Q>
QTensor<Q> quantize_per_tensor(const Tensor<float>& x, double scale, int64_t zero_point) {
  const char* op = "quantize_per_tensor";
  check_input(op, x);
  const float s = checked_scale<Q>(op, scale, zero_point, "");
  const Tensor<float> xc = x.contiguous();
  check_finite_or_inf(op, xc.data(), xc.numel());
  Tensor<Q> values = empty<Q>(x.shape());
  backend::int8_kernels().quantize_u8(xc.numel(), xc.data(), 1.0f / s, static_cast<int32_t>(zero_point) + kShift<Q>,
                                      static_cast<int32_t>(kQMin<Q>) + kShift<Q>,
                                      static_cast<int32_t>(kQMax<Q>) + kShift<Q>, kFlip<Q>,
                                      reinterpret_cast<uint8_t*>(values.data()));
  return QTensor<Q>::per_tensor(std::move(values), scale, zero_point);
}

template <QuantElement Q>
QTensor<Q> quantize_per_channel(const Tensor<float>& x, const Tensor<float>& scales, const Tensor<int64_t>& zero_points,
                                int64_t axis) {
  const char* op = "quantize_per_channel";
  check_input(op, x);
  const int64_t a = checked_axis(op, axis, x.dim());
  check_channel_params<Q>(op, x.shape(), a, scales, zero_points);
  const Tensor<float> xc = x.contiguous();
  check_finite_or_inf(op, xc.data(), xc.numel());
  const Tensor<float> sc = scales.contiguous();
  const Tensor<int64_t> zc = zero_points.contiguous();
  Tensor<Q> values = empty<Q>(x.shape());
  const AxisRuns r = runs_of(x.shape(), a);
  const backend::Int8Kernels& k = backend::int8_kernels();
  auto* q = reinterpret_cast<uint8_t*>(values.data());
  for (int64_t o = 0; o < r.outer; ++o) {
    for (int64_t c = 0; c < r.channels; ++c) {
      const int64_t at = (o * r.channels + c) * r.inner;
      k.quantize_u8(r.inner, xc.data() + at, 1.0f / sc.data()[c], static_cast<int32_t>(zc.data()[c]) + kShift<Q>,
                    static_cast<int32_t>(kQMin<Q>) + kShift<Q>, static_cast<int32_t>(kQMax<Q>) + kShift<Q>, kFlip<Q>,
                    q + at);
    }
  }
  return QTensor<Q>::per_channel(std::move(values), sc, zc, a);
}

template class QTensor<int8_t>;
template class QTensor<uint8_t>;
template QTensor<int8_t> quantize_per_tensor<int8_t>(const Tensor<float>&, double, int64_t);
template QTensor<uint8_t> quantize_per_tensor<uint8_t>(const Tensor<float>&, double, int64_t);
template QTensor<int8_t> quantize_per_channel<int8_t>(const Tensor<float>&, const Tensor<float>&,
                                                      const Tensor<int64_t>&, int64_t);
template QTensor<uint8_t> quantize_per_channel<uint8_t>(const Tensor<float>&, const Tensor<float>&,
                                                        const Tensor<int64_t>&, int64_t);

}  // namespace ember::quant
