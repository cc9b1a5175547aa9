// Elementwise ops: each op's shape checks, forward and backward formula side by side.
#include <cmath>

#include "trace.hpp"
#include "common.hpp"

namespace ember {

using detail::require;

using backend::Binary;
using backend::Compare;
using backend::KernelParams;
using backend::Unary;
using detail::cat_str;
using detail::new_tensor;

namespace detail {

template <FloatingElement T>
Tensor<T> unary_raw_untraced(const Tensor<T>& x, Unary op, KernelParams p, Tensor<T> out);

template <FloatingElement T>
Tensor<T> unary_raw(const Tensor<T>& x, Unary op, KernelParams p = {}) {
  Tensor<T> out = new_tensor<T>(x.shape());
  if constexpr (std::is_same_v<T, float>) {
    detail::TracedOp traced;
    if (detail::OpTracer* t = traced.tracer()) {
      Tensor<T> y = unary_raw_untraced(x, op, p, out);
      t->unary(x, op, p, y);
      return y;
    }
  }
  return unary_raw_untraced(x, op, p, out);
}

template <FloatingElement T>
Tensor<T> unary_raw_untraced(const Tensor<T>& x, Unary op, KernelParams p, Tensor<T> out) {
  const auto& k = backend::kernels<T>();
  const T* src = x.data_ptr();
  T* dst = out.data_ptr();
  if (x.is_contiguous()) {
    detail::parallel_for(0, x.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
      k.unary(op, p, e - b, src + b, 1, dst + b);
    });
    return out;
  }
  const Shape& os = out.strides();
  const Shape& xs = x.strides();
  StridedLoop<2> loop(x.shape(), {&os, &xs});
  loop.run([&](int64_t n, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& in) {
    k.unary(op, p, n, src + off[1], in[1], dst + off[0]);
  });
  return out;
}

// p: the kernel's parameters (LeakyMask's slope). LeakyMask runs only in backward passes, which
// deploy's tracer never sees, so the traced path below needs none.
template <FloatingElement T>
Tensor<T> binary_raw_untraced(const Tensor<T>& a, const Tensor<T>& b, Binary op, const char* name,
                              KernelParams p = {});

template <FloatingElement T>
Tensor<T> binary_raw(const Tensor<T>& a, const Tensor<T>& b, Binary op, const char* name) {
  if constexpr (std::is_same_v<T, float>) {
    detail::TracedOp traced;
    if (detail::OpTracer* t = traced.tracer()) {
      Tensor<T> y = binary_raw_untraced(a, b, op, name);
      t->binary(a, b, op, name, y);
      return y;
    }
  }
  return binary_raw_untraced(a, b, op, name);
}

template <FloatingElement T>
Tensor<T> binary_raw_untraced(const Tensor<T>& a, const Tensor<T>& b, Binary op, const char* name,
                              KernelParams p) {
  const auto& k = backend::kernels<T>();
  if (a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous()) {
    Tensor<T> out = new_tensor<T>(a.shape());
    const T* pa = a.data_ptr();
    const T* pb = b.data_ptr();
    T* po = out.data_ptr();
    detail::parallel_for(0, a.numel(), kElementwiseGrain, [&](int64_t s, int64_t e) {
      k.binary(op, p, e - s, pa + s, 1, pb + s, 1, po + s);
    });
    return out;
  }
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor<T> out = new_tensor<T>(shape, name);
  Shape as = broadcast_strides(a, shape);
  Shape bs = broadcast_strides(b, shape);
  const Shape& os = out.strides();
  StridedLoop<3> loop(shape, {&os, &as, &bs});
  const T* pa = a.data_ptr();
  const T* pb = b.data_ptr();
  T* po = out.data_ptr();
  loop.run([&](int64_t n, const std::array<int64_t, 3>& off, const std::array<int64_t, 3>& in) {
    k.binary(op, p, n, pa + off[1], in[1], pb + off[2], in[2], po + off[0]);
  });
  return out;
}

template <Element T>
Tensor<uint8_t> compare_raw(const Tensor<T>& a, const Tensor<T>& b, Compare op, const char* name) {
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor<uint8_t> out = new_tensor<uint8_t>(shape, name);
  Shape as = broadcast_strides(a, shape);
  Shape bs = broadcast_strides(b, shape);
  const Shape& os = out.strides();
  StridedLoop<3> loop(shape, {&os, &as, &bs});
  const T* pa = a.data_ptr();
  const T* pb = b.data_ptr();
  uint8_t* po = out.data_ptr();
  auto run = [&](const auto& k) {
    loop.run([&](int64_t n, const std::array<int64_t, 3>& off, const std::array<int64_t, 3>& in) {
      k.compare(op, n, pa + off[1], in[1], pb + off[2], in[2], po + off[0]);
    });
  };
  if constexpr (FloatingElement<T>) {
    run(backend::kernels<T>());
  } else {
    run(backend::integer_kernels<T>());
  }
  return out;
}

template <FloatingElement T>
Tensor<T> where_raw(const Tensor<uint8_t>& c, const Tensor<T>& a, const Tensor<T>& b) {
  Shape shape = broadcast_shapes(broadcast_shapes(c.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor<T> out = new_tensor<T>(shape, "where");
  Shape cs = broadcast_strides(c, shape);
  Shape as = broadcast_strides(a, shape);
  Shape bs = broadcast_strides(b, shape);
  const Shape& os = out.strides();
  StridedLoop<4> loop(shape, {&os, &cs, &as, &bs});
  const auto& k = backend::kernels<T>();
  const uint8_t* pc = c.data_ptr();
  const T* pa = a.data_ptr();
  const T* pb = b.data_ptr();
  T* po = out.data_ptr();
  loop.run([&](int64_t n, const std::array<int64_t, 4>& off, const std::array<int64_t, 4>& in) {
    k.where(n, pc + off[1], in[1], pa + off[2], in[2], pb + off[3], in[3], po + off[0]);
  });
  return out;
}

template <FloatingElement T>
Tensor<T> scalar_of(double v) {
  Tensor<T> s = new_tensor<T>({});
  *s.data_ptr() = static_cast<T>(v);
  return s;
}

}  // namespace detail

using detail::binary_raw;
using detail::broadcast_shapes;
using detail::compare_raw;
using detail::scalar_of;
using detail::unary_raw;
using detail::where_raw;
using autograd::needs_grad;
using autograd::record;
using autograd::record_bilinear;
using autograd::record_with_result;
using autograd::SavedTensor;


// ---- Unary ops ----------------------------------------------------------------------------------

// ReLU's gradient, g where the output r is positive, in one pass (where(gt(r, 0), g, 0) makes a
// mask and then selects); differentiable in g, for double backward.
template <FloatingElement T>
Tensor<T> relu_backward(const Tensor<T>& g, const Tensor<T>& r) {
  Tensor<T> out = binary_raw(g, r.detach(), Binary::MaskPositive, "relu_backward");
  if (needs_grad(g)) {
    record(out, "relu_backward", {&g}, [r = r.detach()](const Tensor<T>& gg) { return relu_backward(gg, r); });
  }
  return out;
}

// LeakyReLU's gradient, g where the input x is positive and g * slope elsewhere, in one pass (as
// where(gt(x, 0), g, g * slope) it took three and two temporaries); differentiable in g.
template <FloatingElement T>
Tensor<T> leaky_relu_backward(const Tensor<T>& g, const Tensor<T>& x, double slope) {
  Tensor<T> out = detail::binary_raw_untraced(g, x.detach(), Binary::LeakyMask, "leaky_relu_backward", {slope, 0});
  if (needs_grad(g)) {
    record(out, "leaky_relu_backward", {&g},
           [x = x.detach(), slope](const Tensor<T>& gg) { return leaky_relu_backward(gg, x, slope); });
  }
  return out;
}

namespace {
// What a unary op's derivative reads besides g: its input x, its result r, or neither.
enum class Saves { Input, Result, Neither };

// The forward and backward of one op of the table: `derivative(g, x, r)` gets the tensor it
// saved (the other is undefined).
template <Saves saves, FloatingElement T, class D>
Tensor<T> unary_op(const Tensor<T>& x, const char* name, Unary kernel, KernelParams p,
                   D derivative) {
  require(x, name);
  Tensor<T> out = unary_raw(x, kernel, p);
  if (!needs_grad(x)) return out;
  if constexpr (saves == Saves::Input) {
    record(out, name, {&x}, [sx = SavedTensor<T>(x), name, derivative](const Tensor<T>& g) {
      return derivative(g, sx.get(name), Tensor<T>());
    });
  } else if constexpr (saves == Saves::Result) {
    record_with_result(out, name, {&x}, [derivative](const Tensor<T>& g, const Tensor<T>& r) {
      return derivative(g, Tensor<T>(), r);
    });
  } else {
    record(out, name, {&x}, [derivative](const Tensor<T>& g) {
      return derivative(g, Tensor<T>(), Tensor<T>());
    });
  }
  return out;
}
}  // namespace

// The op table's unary ops (include/ember/ops/op_table.def), each from its row.
#define EMBER_DERIVATIVE(...)                                                              \
  (const Tensor<T>& g, [[maybe_unused]] const Tensor<T>& x,                                \
   [[maybe_unused]] const Tensor<T>& r) -> Tensor<T> { return __VA_ARGS__; }
#define EMBER_UNARY(name, Kernel, Accuracy, Saves_, lo, hi, torch, ...)                     \
  template <FloatingElement T>                                                             \
  Tensor<T> name(const Tensor<T>& x) {                                                     \
    return unary_op<Saves::Saves_>(x, #name, Unary::Kernel, {},                             \
                                   [] EMBER_DERIVATIVE(__VA_ARGS__));                       \
  }
#define EMBER_UNARY_P1(name, Kernel, Accuracy, Saves_, lo, hi, torch, a, a_default, a_test, ...) \
  template <FloatingElement T>                                                                  \
  Tensor<T> name(const Tensor<T>& x, double a) {                                                \
    return unary_op<Saves::Saves_>(x, #name, Unary::Kernel, {a, 0},                              \
                                   [a] EMBER_DERIVATIVE(__VA_ARGS__));                           \
  }
#define EMBER_UNARY_P2(name, Kernel, Accuracy, Saves_, lo, hi, torch, a, a_default, a_test, b, \
                       b_default, b_test, ...)                                                \
  template <FloatingElement T>                                                                \
  Tensor<T> name(const Tensor<T>& x, double a, double b) {                                    \
    return unary_op<Saves::Saves_>(x, #name, Unary::Kernel, {a, b},                            \
                                   [a, b] EMBER_DERIVATIVE(__VA_ARGS__));                      \
  }
#include "ember/ops/op_table.def"
#undef EMBER_DERIVATIVE

template <FloatingElement T>
Tensor<T> gelu(const Tensor<T>& x, const char* approximate) {
  require(x, "gelu");
  const std::string mode = approximate ? approximate : "none";
  if (mode != "none" && mode != "tanh") {
    throw ValueError("gelu: approximate must be \"none\" or \"tanh\", got \"" + mode + "\"");
  }
  const bool use_tanh = mode == "tanh";
  Tensor<T> out = unary_raw(x, use_tanh ? Unary::GeluTanh : Unary::Gelu);
  if (needs_grad(x)) {
    record(out, "gelu", {&x}, [sx = SavedTensor<T>(x), use_tanh](const Tensor<T>& g) {
      const Tensor<T>& x = sx.get("gelu");
      if (use_tanh) {
        constexpr double k0 = 0.7978845608028654, k1 = 0.044715;
        Tensor<T> t = tanh((x + x * x * x * k1) * k0);
        Tensor<T> du = (1.0 + x * x * (3.0 * k1)) * k0;
        return g * ((1.0 + t) * 0.5 + x * 0.5 * (1.0 - t * t) * du);
      }
      Tensor<T> cdf = (1.0 + erf(x * 0.7071067811865476)) * 0.5;
      Tensor<T> pdf = exp(x * x * -0.5) * 0.3989422804014327;
      return g * (cdf + x * pdf);
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> clamp(const Tensor<T>& x, double lo, double hi) {
  require(x, "clamp");
  if (lo > hi) throw ValueError(cat_str("clamp: min ", lo, " is greater than max ", hi));
  Tensor<T> out = unary_raw(x, Unary::Clamp, {lo, hi});
  if (needs_grad(x)) {
    record(out, "clamp", {&x}, [sx = SavedTensor<T>(x), lo, hi](const Tensor<T>& g) {
      const Tensor<T>& x = sx.get("clamp");
      return where(ge(x, lo), where(le(x, hi), g, 0.0), 0.0);
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> pow(const Tensor<T>& x, double p) {
  require(x, "pow");
  Tensor<T> out = unary_raw(x, Unary::PowScalar, {p, 0});
  if (needs_grad(x)) {
    record(out, "pow", {&x}, [sx = SavedTensor<T>(x), p](const Tensor<T>& g) {
      if (p == 0.0) return zeros_like(g);
      return g * pow(sx.get("pow"), p - 1.0) * p;
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> pow(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "pow");
  require(b, "pow");
  Tensor<T> out = binary_raw(a, b, Binary::Pow, "pow");
  if (needs_grad(a, b)) {
    record_with_result(out, "pow", {&a, &b},
                       [sa = SavedTensor<T>(a), sb = SavedTensor<T>(b)](const Tensor<T>& g,
                                                                        const Tensor<T>& r) {
                         const Tensor<T>& a = sa.get("pow");
                         const Tensor<T>& b = sb.get("pow");
                         Tensor<T> ga = sum_to(g * b * pow(a, b - 1.0), a.shape());
                         // d/db a^b = a^b log a, taken as 0 where a == 0 (PyTorch's convention).
                         Tensor<T> gb = sum_to(where(eq(a, 0.0), scalar_of<T>(0), g * r * log(a)),
                                               b.shape());
                         return std::vector<Tensor<T>>{ga, gb};
                       });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> pow(double base, const Tensor<T>& exponent) {
  return pow(scalar_of<T>(base), exponent);
}

// ---- Binary ops ---------------------------------------------------------------------------------

template <FloatingElement T>
Tensor<T> add(const Tensor<T>& a, const Tensor<T>& b, double alpha) {
  require(a, "add");
  require(b, "add");
  Tensor<T> out = alpha == 1.0 ? binary_raw(a, b, Binary::Add, "add")
                               : binary_raw(a, mul_scalar(b.detach(), alpha), Binary::Add, "add");
  if (needs_grad(a, b)) {
    record(out, "add", {&a, &b}, [as = a.shape(), bs = b.shape(), alpha](const Tensor<T>& g) {
      return std::vector<Tensor<T>>{sum_to(g, as), sum_to(alpha == 1.0 ? g : g * alpha, bs)};
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> sub(const Tensor<T>& a, const Tensor<T>& b, double alpha) {
  require(a, "sub");
  require(b, "sub");
  Tensor<T> out = alpha == 1.0 ? binary_raw(a, b, Binary::Sub, "sub")
                               : binary_raw(a, mul_scalar(b.detach(), alpha), Binary::Sub, "sub");
  if (needs_grad(a, b)) {
    record(out, "sub", {&a, &b}, [as = a.shape(), bs = b.shape(), alpha](const Tensor<T>& g) {
      return std::vector<Tensor<T>>{sum_to(g, as), sum_to(g * -alpha, bs)};
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "mul");
  require(b, "mul");
  Tensor<T> out = binary_raw(a, b, Binary::Mul, "mul");
  if (needs_grad(a, b)) {
    record_bilinear(
        out, "mul", a, b, [as = a.shape()](const Tensor<T>& g, const Tensor<T>& b) { return sum_to(g * b, as); },
        [bs = b.shape()](const Tensor<T>& g, const Tensor<T>& a) { return sum_to(g * a, bs); });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> div(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "div");
  require(b, "div");
  Tensor<T> out = binary_raw(a, b, Binary::Div, "div");
  if (needs_grad(a, b)) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    record(out, "div", {&a, &b},
           [sa = need_b ? SavedTensor<T>(a) : SavedTensor<T>(), sb = SavedTensor<T>(b), need_a,
            need_b, as = a.shape(), bs = b.shape()](const Tensor<T>& g) {
             std::vector<Tensor<T>> grads(2);
             const Tensor<T>& b = sb.get("div");
             if (need_a) grads[0] = sum_to(g / b, as);
             if (need_b) grads[1] = sum_to(-(g * sa.get("div")) / (b * b), bs);
             return grads;
           });
  }
  return out;
}

namespace {
// Share of the gradient that goes to `a` in maximum/minimum: 1 where it wins, 1/2 at ties.
template <FloatingElement T>
Tensor<T> winner_weight(const Tensor<T>& a, const Tensor<T>& b, bool is_max) {
  NoGradGuard no_grad;
  Tensor<T> half = scalar_of<T>(0.5);
  Tensor<T> one = scalar_of<T>(1.0), zero = scalar_of<T>(0.0);
  Tensor<uint8_t> wins = is_max ? gt(a, b) : lt(a, b);
  return where_raw(wins, one, where_raw(eq(a, b), half, zero));
}

template <FloatingElement T>
Tensor<T> extremum(const Tensor<T>& a, const Tensor<T>& b, bool is_max) {
  const char* name = is_max ? "maximum" : "minimum";
  require(a, name);
  require(b, name);
  Tensor<T> out = binary_raw(a, b, is_max ? Binary::Max : Binary::Min, name);
  if (needs_grad(a, b)) {
    record(out, name, {&a, &b},
           [sa = SavedTensor<T>(a), sb = SavedTensor<T>(b), is_max, name](const Tensor<T>& g) {
             const Tensor<T>& a = sa.get(name);
             const Tensor<T>& b = sb.get(name);
             Tensor<T> w = winner_weight(a, b, is_max);
             return std::vector<Tensor<T>>{sum_to(g * w, a.shape()),
                                           sum_to(g * (1.0 - w), b.shape())};
           });
  }
  return out;
}
}  // namespace

template <FloatingElement T>
Tensor<T> maximum(const Tensor<T>& a, const Tensor<T>& b) {
  return extremum(a, b, true);
}
template <FloatingElement T>
Tensor<T> minimum(const Tensor<T>& a, const Tensor<T>& b) {
  return extremum(a, b, false);
}

// ---- Scalar ops ---------------------------------------------------------------------------------

template <FloatingElement T>
Tensor<T> add_scalar(const Tensor<T>& a, double s) {
  require(a, "add");
  Tensor<T> out = unary_raw(a, Unary::AddScalar, {s, 0});
  if (needs_grad(a)) record(out, "add", {&a}, [](const Tensor<T>& g) { return g; });
  return out;
}

template <FloatingElement T>
Tensor<T> mul_scalar(const Tensor<T>& a, double s) {
  require(a, "mul");
  Tensor<T> out = unary_raw(a, Unary::MulScalar, {s, 0});
  if (needs_grad(a)) record(out, "mul", {&a}, [s](const Tensor<T>& g) { return g * s; });
  return out;
}

template <FloatingElement T>
Tensor<T> rsub_scalar(const Tensor<T>& a, double s) {
  require(a, "rsub");
  Tensor<T> out = unary_raw(a, Unary::RsubScalar, {s, 0});
  if (needs_grad(a)) record(out, "rsub", {&a}, [](const Tensor<T>& g) { return -g; });
  return out;
}

template <FloatingElement T>
Tensor<T> rdiv_scalar(const Tensor<T>& a, double s) {
  require(a, "rdiv");
  Tensor<T> out = unary_raw(a, Unary::RdivScalar, {s, 0});
  if (needs_grad(a)) {
    record_with_result(out, "rdiv", {&a}, [sa = SavedTensor<T>(a)](const Tensor<T>& g,
                                                                    const Tensor<T>& r) {
      return -(g * r) / sa.get("rdiv");
    });
  }
  return out;
}

// ---- Selection ----------------------------------------------------------------------------------

template <FloatingElement T>
Tensor<T> where(const Tensor<uint8_t>& cond, const Tensor<T>& a, const Tensor<T>& b) {
  require(cond, "where");
  require(a, "where");
  require(b, "where");
  Tensor<T> out = where_raw(cond, a, b);
  if (needs_grad(a, b)) {
    record(out, "where", {&a, &b}, [cond, as = a.shape(), bs = b.shape()](const Tensor<T>& g) {
      Tensor<T> zero = scalar_of<T>(0);
      return std::vector<Tensor<T>>{sum_to(where(cond, g, zero), as),
                                    sum_to(where(cond, zero, g), bs)};
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> where(const Tensor<uint8_t>& cond, const Tensor<T>& a, double b) {
  return where(cond, a, scalar_of<T>(b));
}

template <FloatingElement T>
Tensor<T> masked_fill(const Tensor<T>& x, const Tensor<uint8_t>& mask, double value) {
  require(x, "masked_fill");
  require(mask, "masked_fill");
  if (broadcast_shapes(mask.shape(), x.shape(), "masked_fill") != x.shape()) {
    throw ShapeError(cat_str("masked_fill: mask of shape ", mask.shape(),
                             " does not broadcast to the input shape ", x.shape()));
  }
  return where(mask, scalar_of<T>(value), x);
}

// ---- Comparisons --------------------------------------------------------------------------------

namespace {
// The scalar of a comparison as a 0-d tensor of the element type: for an integer type it must be
// one of its values (2.5 or 1e30 against int64 labels is a ValueError, not a silent rounding).
template <Element T>
Tensor<T> comparison_scalar(double v, const char* op) {
  if constexpr (FloatingElement<T>) {
    return scalar_of<T>(v);
  } else {
    if (!(v >= static_cast<double>(std::numeric_limits<T>::min()) &&
          v <= static_cast<double>(std::numeric_limits<T>::max())) || v != std::floor(v)) {
      throw ValueError(cat_str(op, ": the scalar ", v, " is not a ", dtype_name(dtype_of<T>), " value"));
    }
    Tensor<T> t = new_tensor<T>({}, op);
    *t.data_ptr() = static_cast<T>(v);
    return t;
  }
}
}  // namespace

#define EMBER_COMPARE(name, Kernel)                                               \
  template <Element T>                                                             \
  Tensor<uint8_t> name(const Tensor<T>& a, const Tensor<T>& b) {                   \
    require(a, #name);                                                             \
    require(b, #name);                                                             \
    return compare_raw(a, b, Compare::Kernel, #name);                              \
  }                                                                                \
  template <Element T>                                                             \
  Tensor<uint8_t> name(const Tensor<T>& a, double b) {                             \
    require(a, #name);                                                             \
    return compare_raw(a, comparison_scalar<T>(b, #name), Compare::Kernel, #name); \
  }
#include "ember/ops/op_table.def"

template <FloatingElement T>
bool allclose(const Tensor<T>& a, const Tensor<T>& b, double rtol, double atol) {
  require(a, "allclose");
  require(b, "allclose");
  Shape shape = broadcast_shapes(a.shape(), b.shape(), "allclose");
  std::vector<T> va = a.expand(shape).to_vector();
  std::vector<T> vb = b.expand(shape).to_vector();
  for (size_t i = 0; i < va.size(); ++i) {
    double x = va[i], y = vb[i];
    if (x == y) continue;
    if (!(std::fabs(x - y) <= atol + rtol * std::fabs(y))) return false;
  }
  return true;
}

template <FloatingElement T>
Tensor<T> sum_to(const Tensor<T>& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - shape.size();
  if (lead < 0) {
    throw ShapeError(cat_str("sum_to: cannot reduce shape ", x.shape(), " to ", shape));
  }
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else if (shape[d - lead] == 1 && x.shape()[d] != 1) {
      dims.push_back(d);
    } else if (shape[d - lead] != x.shape()[d]) {
      throw ShapeError(cat_str("sum_to: cannot reduce shape ", x.shape(), " to ", shape));
    }
  }
  Tensor<T> r = dims.empty() ? x : sum(x, dims, true);
  return r.reshape(shape);
}

// ---- In-place members ----------------------------------------------------------------------------

namespace {

// Runs `out_of_place()` and stores its result in `self`. With autograd, self's history is rebased
// onto the out-of-place result's node; without, the values are simply written through.
template <FloatingElement T, class F>
Tensor<T>& apply_inplace(Tensor<T>& self, const char* op, bool other_requires_grad,
                         F&& out_of_place) {
  require(self, op);
  detail::require_no_internal_overlap(self, op);
  const bool track = autograd::grad_mode_enabled() && (self.requires_grad() || other_requires_grad);
  if (track) {
    if (self.requires_grad() && self.is_leaf()) {
      throw AutogradError(cat_str(op, ": a leaf tensor that requires grad (shape ", self.shape(),
                                  ") is used in an in-place operation; do it under NoGradGuard"));
    }
    if (self.impl()->is_view) {
      throw AutogradError(cat_str(op, ": in-place operation on a view (shape ", self.shape(),
                                  ") of a tensor in the autograd graph is not supported; use the "
                                  "out-of-place op"));
    }
  }
  Tensor<T> r = out_of_place();
  if (r.shape() != self.shape()) {
    throw ShapeError(cat_str(op, ": the result of shape ", r.shape(),
                             " does not fit the in-place destination of shape ", self.shape()));
  }
  detail::copy_strided(r, self);
  self.impl()->storage->bump_version();
  if (track) {
    auto& meta = autograd::autograd_meta(*self.impl());
    meta.requires_grad = true;
    meta.grad_fn = r.grad_fn();
    self.impl()->storage->bump_history();  // views taken before lead to the old history
  }
  return self;
}

// Fast path for `self = self op other` without autograd on a contiguous self.
template <FloatingElement T>
bool try_inplace_binary(Tensor<T>& self, const Tensor<T>& other, Binary op, const char* name) {
  if (autograd::grad_mode_enabled() && (self.requires_grad() || other.requires_grad())) return false;
  if (!self.is_contiguous()) return false;
  if (broadcast_shapes(self.shape(), other.shape(), name) != self.shape()) {
    throw ShapeError(cat_str(name, ": the result of shape ",
                             broadcast_shapes(self.shape(), other.shape(), name),
                             " does not fit the in-place destination of shape ", self.shape()));
  }
  Tensor<T> src = other;
  if (other.impl()->storage == self.impl()->storage) src = other.clone();
  Shape bs = detail::broadcast_strides(src, self.shape());
  const Shape& ss = self.strides();
  detail::StridedLoop<2> loop(self.shape(), {&ss, &bs});
  const auto& k = backend::kernels<T>();
  T* ps = self.data_ptr();
  const T* po = src.data_ptr();
  loop.run([&](int64_t n, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& in) {
    k.binary(op, {}, n, ps + off[0], 1, po + off[1], in[1], ps + off[0]);
  });
  self.impl()->storage->bump_version();
  return true;
}

template <FloatingElement T>
bool try_inplace_unary(Tensor<T>& self, Unary op, KernelParams p) {
  if (autograd::grad_mode_enabled() && self.requires_grad()) return false;
  if (!self.is_contiguous()) return false;
  const auto& k = backend::kernels<T>();
  T* ps = self.data_ptr();
  detail::parallel_for(0, self.numel(), detail::kElementwiseGrain, [&](int64_t b, int64_t e) {
    k.unary(op, p, e - b, ps + b, 1, ps + b);
  });
  self.impl()->storage->bump_version();
  return true;
}

}  // namespace

template <Element T>
Tensor<T>& Tensor<T>::add_(const Tensor<T>& other, double alpha) requires FloatingElement<T> {
  require(other, "add_");
  if (alpha == 1.0 && try_inplace_binary(*this, other, Binary::Add, "add_")) return *this;
  return apply_inplace(*this, "add_", other.requires_grad(),
                       [&] { return add(*this, other, alpha); });
}
template <Element T>
Tensor<T>& Tensor<T>::add_(double value) requires FloatingElement<T> {
  if (try_inplace_unary(*this, Unary::AddScalar, {value, 0})) return *this;
  return apply_inplace(*this, "add_", false, [&] { return add_scalar(*this, value); });
}
template <Element T>
Tensor<T>& Tensor<T>::sub_(const Tensor<T>& other, double alpha) requires FloatingElement<T> {
  require(other, "sub_");
  if (alpha == 1.0 && try_inplace_binary(*this, other, Binary::Sub, "sub_")) return *this;
  return apply_inplace(*this, "sub_", other.requires_grad(),
                       [&] { return sub(*this, other, alpha); });
}
template <Element T>
Tensor<T>& Tensor<T>::sub_(double value) requires FloatingElement<T> {
  return add_(-value);
}
template <Element T>
Tensor<T>& Tensor<T>::mul_(const Tensor<T>& other) requires FloatingElement<T> {
  require(other, "mul_");
  if (try_inplace_binary(*this, other, Binary::Mul, "mul_")) return *this;
  return apply_inplace(*this, "mul_", other.requires_grad(), [&] { return mul(*this, other); });
}
template <Element T>
Tensor<T>& Tensor<T>::mul_(double value) requires FloatingElement<T> {
  if (try_inplace_unary(*this, Unary::MulScalar, {value, 0})) return *this;
  return apply_inplace(*this, "mul_", false, [&] { return mul_scalar(*this, value); });
}
template <Element T>
Tensor<T>& Tensor<T>::div_(const Tensor<T>& other) requires FloatingElement<T> {
  require(other, "div_");
  if (try_inplace_binary(*this, other, Binary::Div, "div_")) return *this;
  return apply_inplace(*this, "div_", other.requires_grad(), [&] { return div(*this, other); });
}
template <Element T>
Tensor<T>& Tensor<T>::div_(double value) requires FloatingElement<T> {
  return mul_(1.0 / value);
}
template <Element T>
Tensor<T>& Tensor<T>::clamp_(double lo, double hi) requires FloatingElement<T> {
  if (lo > hi) throw ValueError(cat_str("clamp_: min ", lo, " is greater than max ", hi));
  if (try_inplace_unary(*this, Unary::Clamp, {lo, hi})) return *this;
  return apply_inplace(*this, "clamp_", false, [&] { return ember::clamp(*this, lo, hi); });
}
template <Element T>
Tensor<T>& Tensor<T>::relu_() requires FloatingElement<T> {
  if (try_inplace_unary(*this, Unary::Relu, {})) return *this;
  return apply_inplace(*this, "relu_", false, [&] { return ember::relu(*this); });
}
template <Element T>
Tensor<T>& Tensor<T>::neg_() requires FloatingElement<T> {
  if (try_inplace_unary(*this, Unary::Neg, {})) return *this;
  return apply_inplace(*this, "neg_", false, [&] { return ember::neg(*this); });
}
template <Element T>
Tensor<T>& Tensor<T>::addcmul_(const Tensor<T>& t1, const Tensor<T>& t2, double value)
  requires FloatingElement<T>
{
  require(t1, "addcmul_");
  require(t2, "addcmul_");
  if (!autograd::grad_mode_enabled() || !(requires_grad() || t1.requires_grad() || t2.requires_grad())) {
    Tensor<T> prod = binary_raw(t1, t2, Binary::Mul, "addcmul_");
    return add_(value == 1.0 ? prod : mul_scalar(prod, value));
  }
  return apply_inplace(*this, "addcmul_", t1.requires_grad() || t2.requires_grad(),
                       [&] { return add(*this, mul(t1, t2) * value); });
}
template <Element T>
Tensor<T>& Tensor<T>::addcdiv_(const Tensor<T>& t1, const Tensor<T>& t2, double value)
  requires FloatingElement<T>
{
  require(t1, "addcdiv_");
  require(t2, "addcdiv_");
  if (!autograd::grad_mode_enabled() || !(requires_grad() || t1.requires_grad() || t2.requires_grad())) {
    Tensor<T> q = binary_raw(t1, t2, Binary::Div, "addcdiv_");
    return add_(value == 1.0 ? q : mul_scalar(q, value));
  }
  return apply_inplace(*this, "addcdiv_", t1.requires_grad() || t2.requires_grad(),
                       [&] { return add(*this, div(t1, t2) * value); });
}
template <Element T>
Tensor<T>& Tensor<T>::lerp_(const Tensor<T>& end, double weight) requires FloatingElement<T> {
  require(end, "lerp_");
  if (!autograd::grad_mode_enabled() || !(requires_grad() || end.requires_grad())) {
    Tensor<T> diff = binary_raw(end, *this, Binary::Sub, "lerp_");
    return add_(mul_scalar(diff, weight));
  }
  return apply_inplace(*this, "lerp_", end.requires_grad(),
                       [&] { return add(*this, (end - *this) * weight); });
}

// ---- Math members ---------------------------------------------------------------------------------

template <Element T>
Tensor<T> Tensor<T>::masked_fill(const Tensor<uint8_t>& mask, double value) const requires FloatingElement<T> {
  return ember::masked_fill(*this, mask, value);
}

template <Element T> Tensor<T> Tensor<T>::abs() const requires FloatingElement<T> { return ember::abs(*this); }
template <Element T> Tensor<T> Tensor<T>::neg() const requires FloatingElement<T> { return ember::neg(*this); }
template <Element T> Tensor<T> Tensor<T>::exp() const requires FloatingElement<T> { return ember::exp(*this); }
template <Element T> Tensor<T> Tensor<T>::log() const requires FloatingElement<T> { return ember::log(*this); }
template <Element T> Tensor<T> Tensor<T>::sqrt() const requires FloatingElement<T> { return ember::sqrt(*this); }
template <Element T> Tensor<T> Tensor<T>::square() const requires FloatingElement<T> { return ember::square(*this); }
template <Element T> Tensor<T> Tensor<T>::tanh() const requires FloatingElement<T> { return ember::tanh(*this); }
template <Element T> Tensor<T> Tensor<T>::sigmoid() const requires FloatingElement<T> { return ember::sigmoid(*this); }
template <Element T> Tensor<T> Tensor<T>::relu() const requires FloatingElement<T> { return ember::relu(*this); }
template <Element T> Tensor<T> Tensor<T>::pow(double e) const requires FloatingElement<T> { return ember::pow(*this, e); }
template <Element T> Tensor<T> Tensor<T>::clamp(double lo, double hi) const requires FloatingElement<T> { return ember::clamp(*this, lo, hi); }

#define EMBER_INSTANTIATE(T)                                                               \
  template Tensor<T> Tensor<T>::masked_fill(const Tensor<uint8_t>&, double) const;          \
  template Tensor<T> gelu(const Tensor<T>&, const char*);                                  \
  template Tensor<T> relu_backward(const Tensor<T>&, const Tensor<T>&);                    \
  template Tensor<T> clamp(const Tensor<T>&, double, double);                              \
  template Tensor<T> pow(const Tensor<T>&, double);                                        \
  template Tensor<T> pow(const Tensor<T>&, const Tensor<T>&);                              \
  template Tensor<T> pow(double, const Tensor<T>&);                                        \
  template Tensor<T> add(const Tensor<T>&, const Tensor<T>&, double);                      \
  template Tensor<T> sub(const Tensor<T>&, const Tensor<T>&, double);                      \
  template Tensor<T> mul(const Tensor<T>&, const Tensor<T>&);                              \
  template Tensor<T> div(const Tensor<T>&, const Tensor<T>&);                              \
  template Tensor<T> maximum(const Tensor<T>&, const Tensor<T>&);                          \
  template Tensor<T> minimum(const Tensor<T>&, const Tensor<T>&);                          \
  template Tensor<T> add_scalar(const Tensor<T>&, double);                                 \
  template Tensor<T> mul_scalar(const Tensor<T>&, double);                                 \
  template Tensor<T> rsub_scalar(const Tensor<T>&, double);                                \
  template Tensor<T> rdiv_scalar(const Tensor<T>&, double);                                \
  template Tensor<T> where(const Tensor<uint8_t>&, const Tensor<T>&, const Tensor<T>&);    \
  template Tensor<T> where(const Tensor<uint8_t>&, const Tensor<T>&, double);              \
  template Tensor<T> masked_fill(const Tensor<T>&, const Tensor<uint8_t>&, double);        \
  template bool allclose(const Tensor<T>&, const Tensor<T>&, double, double);              \
  template Tensor<T> sum_to(const Tensor<T>&, const Shape&);                               \
  template Tensor<T> detail::unary_raw(const Tensor<T>&, Unary, KernelParams);             \
  template Tensor<T> detail::binary_raw(const Tensor<T>&, const Tensor<T>&, Binary, const char*); \
  template Tensor<T> detail::where_raw(const Tensor<uint8_t>&, const Tensor<T>&, const Tensor<T>&); \
  template Tensor<T> detail::scalar_of<T>(double);                                         \
  template Tensor<T>& Tensor<T>::add_(const Tensor<T>&, double);                           \
  template Tensor<T>& Tensor<T>::add_(double);                                             \
  template Tensor<T>& Tensor<T>::sub_(const Tensor<T>&, double);                           \
  template Tensor<T>& Tensor<T>::sub_(double);                                             \
  template Tensor<T>& Tensor<T>::mul_(const Tensor<T>&);                                   \
  template Tensor<T>& Tensor<T>::mul_(double);                                             \
  template Tensor<T>& Tensor<T>::div_(const Tensor<T>&);                                   \
  template Tensor<T>& Tensor<T>::div_(double);                                             \
  template Tensor<T>& Tensor<T>::clamp_(double, double);                                   \
  template Tensor<T>& Tensor<T>::relu_();                                                  \
  template Tensor<T>& Tensor<T>::neg_();                                                   \
  template Tensor<T>& Tensor<T>::addcmul_(const Tensor<T>&, const Tensor<T>&, double);     \
  template Tensor<T>& Tensor<T>::addcdiv_(const Tensor<T>&, const Tensor<T>&, double);     \
  template Tensor<T>& Tensor<T>::lerp_(const Tensor<T>&, double);                          \
  template Tensor<T> Tensor<T>::abs() const;                                               \
  template Tensor<T> Tensor<T>::neg() const;                                               \
  template Tensor<T> Tensor<T>::exp() const;                                               \
  template Tensor<T> Tensor<T>::log() const;                                               \
  template Tensor<T> Tensor<T>::sqrt() const;                                              \
  template Tensor<T> Tensor<T>::square() const;                                            \
  template Tensor<T> Tensor<T>::tanh() const;                                              \
  template Tensor<T> Tensor<T>::sigmoid() const;                                           \
  template Tensor<T> Tensor<T>::relu() const;                                              \
  template Tensor<T> Tensor<T>::pow(double) const;                                         \
  template Tensor<T> Tensor<T>::clamp(double, double) const;
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

#define EMBER_UNARY(name, ...)                                                                \
  template Tensor<float> name(const Tensor<float>&);                                         \
  template Tensor<double> name(const Tensor<double>&);
#define EMBER_UNARY_P1(name, ...)                                                             \
  template Tensor<float> name(const Tensor<float>&, double);                                 \
  template Tensor<double> name(const Tensor<double>&, double);
#define EMBER_UNARY_P2(name, ...)                                                             \
  template Tensor<float> name(const Tensor<float>&, double, double);                         \
  template Tensor<double> name(const Tensor<double>&, double, double);
#define EMBER_COMPARE_FOR(name, T)                                     \
  template Tensor<uint8_t> name(const Tensor<T>&, const Tensor<T>&); \
  template Tensor<uint8_t> name(const Tensor<T>&, double);
#define EMBER_COMPARE(name, Kernel) \
  EMBER_COMPARE_FOR(name, float)    \
  EMBER_COMPARE_FOR(name, double)   \
  EMBER_COMPARE_FOR(name, int64_t)  \
  EMBER_COMPARE_FOR(name, int32_t)  \
  EMBER_COMPARE_FOR(name, uint8_t)  \
  EMBER_COMPARE_FOR(name, int8_t)
#include "ember/ops/op_table.def"
#undef EMBER_COMPARE_FOR

}  // namespace ember
