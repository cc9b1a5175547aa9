// Activations composed of differentiable ops (ember/ops/activation.hpp), with PyTorch's formulas.
#include "ember/ops/activation.hpp"

#include "common.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/reduction.hpp"

namespace ember {

using detail::cat_str;

template <FloatingElement T>
Tensor<T> hardtanh(const Tensor<T>& x, double min_val, double max_val) {
  detail::require(x, "hardtanh");
  if (min_val > max_val) {
    throw ValueError(cat_str("hardtanh: min_val ", min_val, " is greater than max_val ", max_val));
  }
  Tensor<T> out;
  {
    // clamp of x itself (not of x.detach()), so that deploy's tracer sees the clamp of x.
    NoGradGuard forward_only;
    out = clamp(x, min_val, max_val);
  }
  // Unlike clamp, no gradient at the bounds themselves (torch's hardtanh_backward): relu6 of an
  // exact 0 passes none.
  if (autograd::needs_grad(x)) {
    autograd::record(out, "hardtanh", {&x},
                     [sx = autograd::SavedTensor<T>(x), min_val, max_val](const Tensor<T>& g) {
                       const Tensor<T>& x = sx.get("hardtanh");
                       return where(gt(x, min_val), where(lt(x, max_val), g, 0.0), 0.0);
                     });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> relu6(const Tensor<T>& x) {
  return hardtanh(x, 0.0, 6.0);
}

// "/ 6.0" multiplies by 1 / 6, as every division by a scalar in ember (PyTorch divides: the
// results may differ in the last bit); deploy's plans run it.
template <FloatingElement T>
Tensor<T> hardsigmoid(const Tensor<T>& x) {
  detail::require(x, "hardsigmoid");
  return hardtanh(x + 3.0, 0.0, 6.0) / 6.0;
}

// With clamp's gradient (bounds included) the product rule gives torch's hardswish_backward:
// x / 3 + 1 / 2 on [-3, 3], 0 below, 1 above.
template <FloatingElement T>
Tensor<T> hardswish(const Tensor<T>& x) {
  detail::require(x, "hardswish");
  return x * clamp(x + 3.0, 0.0, 6.0) / 6.0;
}

template <FloatingElement T>
Tensor<T> selu(const Tensor<T>& x) {
  constexpr double alpha = 1.6732632423543772848170429916717;
  constexpr double scale = 1.0507009873554804934193349852946;
  detail::require(x, "selu");
  return elu(x, alpha) * scale;
}

template <FloatingElement T>
Tensor<T> celu(const Tensor<T>& x, double alpha) {
  detail::require(x, "celu");
  if (alpha == 0.0) throw ValueError("celu: alpha must not be 0");
  return where(gt(x, 0.0), x, expm1(x * (1.0 / alpha)) * alpha);
}

template <FloatingElement T>
Tensor<T> logsigmoid(const Tensor<T>& x) {
  detail::require(x, "logsigmoid");
  return -softplus(-x);
}

template <FloatingElement T>
Tensor<T> softsign(const Tensor<T>& x) {
  detail::require(x, "softsign");
  return x / (abs(x) + 1.0);
}

namespace {
void require_lambd(const char* op, double lambd) {
  if (!(lambd >= 0.0)) throw ValueError(cat_str(op, ": lambd must be >= 0, got ", lambd));
}
}  // namespace

// Strict comparisons: no gradient at +-lambd itself, as torch's shrink backwards.
template <FloatingElement T>
Tensor<T> softshrink(const Tensor<T>& x, double lambd) {
  detail::require(x, "softshrink");
  require_lambd("softshrink", lambd);
  return where(gt(x, lambd), x - lambd, where(lt(x, -lambd), x + lambd, 0.0));
}

template <FloatingElement T>
Tensor<T> hardshrink(const Tensor<T>& x, double lambd) {
  detail::require(x, "hardshrink");
  require_lambd("hardshrink", lambd);
  return where(gt(x, lambd), x, where(lt(x, -lambd), x, 0.0));
}

template <FloatingElement T>
Tensor<T> tanhshrink(const Tensor<T>& x) {
  detail::require(x, "tanhshrink");
  return x - tanh(x);
}

template <FloatingElement T>
Tensor<T> threshold(const Tensor<T>& x, double threshold, double value) {
  detail::require(x, "threshold");
  return where(gt(x, threshold), x, value);
}

template <FloatingElement T>
Tensor<T> softmin(const Tensor<T>& x, int64_t dim) {
  detail::require(x, "softmin");
  return softmax(-x, dim);
}

template <FloatingElement T>
Tensor<T> rrelu(const Tensor<T>& x, double lower, double upper, bool training, Generator* gen) {
  detail::require(x, "rrelu");
  if (!(lower <= upper)) throw ValueError(cat_str("rrelu: lower ", lower, " is greater than upper ", upper));
  if (!training) return leaky_relu(x, (lower + upper) / 2.0);
  const Tensor<T> slope = rand<T>(x.shape(), gen) * (upper - lower) + lower;
  return where(ge(x, 0.0), x, x * slope);
}

template <FloatingElement T>
Tensor<T> prelu(const Tensor<T>& x, const Tensor<T>& weight) {
  detail::require(x, "prelu");
  detail::require(weight, "prelu");
  const int64_t channels = x.dim() >= 2 ? x.shape()[1] : 1;
  if (weight.dim() > 1 || (weight.numel() != 1 && weight.numel() != channels)) {
    throw ShapeError(cat_str("prelu: weight ", weight.shape(), " must be 1-D with 1 element or one per channel (",
                             channels, " for input ", x.shape(), ")"));
  }
  std::vector<int64_t> per_channel(static_cast<size_t>(x.dim()), 1);
  if (weight.numel() != 1) per_channel[1] = channels;
  const Tensor<T> w = weight.numel() == 1 ? weight.reshape(Shape{}) : weight.reshape(Shape(per_channel));
  return where(gt(x, 0.0), x, x * w);
}

template <FloatingElement T>
Tensor<T> glu(const Tensor<T>& x, int64_t dim) {
  detail::require(x, "glu");
  if (x.dim() == 0) throw ShapeError("glu: the input must have at least one dim, got a 0-D tensor");
  const int64_t d = detail::wrap_dim(dim, x.dim(), "glu");
  const int64_t n = x.shape()[d];
  if (n % 2 != 0) {
    throw ShapeError(cat_str("glu: dim ", d, " of input ", x.shape(), " has size ", n, "; it must be even"));
  }
  return x.narrow(d, 0, n / 2) * sigmoid(x.narrow(d, n / 2, n / 2));
}

#define EMBER_INSTANTIATE(T)                                         \
  template Tensor<T> hardtanh(const Tensor<T>&, double, double);     \
  template Tensor<T> relu6(const Tensor<T>&);                        \
  template Tensor<T> hardsigmoid(const Tensor<T>&);                  \
  template Tensor<T> hardswish(const Tensor<T>&);                    \
  template Tensor<T> selu(const Tensor<T>&);                         \
  template Tensor<T> celu(const Tensor<T>&, double);                 \
  template Tensor<T> logsigmoid(const Tensor<T>&);                   \
  template Tensor<T> softsign(const Tensor<T>&);                     \
  template Tensor<T> softshrink(const Tensor<T>&, double);           \
  template Tensor<T> hardshrink(const Tensor<T>&, double);           \
  template Tensor<T> tanhshrink(const Tensor<T>&);                   \
  template Tensor<T> threshold(const Tensor<T>&, double, double);    \
  template Tensor<T> softmin(const Tensor<T>&, int64_t);             \
  template Tensor<T> rrelu(const Tensor<T>&, double, double, bool, Generator*); \
  template Tensor<T> prelu(const Tensor<T>&, const Tensor<T>&);      \
  template Tensor<T> glu(const Tensor<T>&, int64_t);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember
