// Reductions, softmax and norms.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.hpp"
#include "rows.hpp"
#include "trace.hpp"

namespace ember {

using detail::require;

using backend::Reduce;
using backend::Unary;
using detail::cat_str;
using detail::new_tensor;
using detail::reduced_shape;
using detail::unsqueeze_reduced;
using detail::wrap_dims;
using autograd::needs_grad;
using autograd::record;
using autograd::record_with_result;
using autograd::SavedTensor;

namespace detail {
template <FloatingElement T> Tensor<T> scalar_of(double v);
template <FloatingElement T>
Tensor<T> where_raw(const Tensor<uint8_t>& c, const Tensor<T>& a, const Tensor<T>& b);

namespace {
// Elements per partial result of a full reduction: fixed, so results do not depend on the
// number of threads.
constexpr int64_t kReduceChunk = 16384;

template <FloatingElement T>
T reduce_contiguous(const backend::Kernels<T>& k, Reduce op, const T* p, int64_t n) {
  if (n <= kReduceChunk) return k.reduce(op, n, p, 1);
  const int64_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
  std::vector<T> partial(static_cast<size_t>(chunks));
  parallel_for(0, chunks, 4, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      int64_t s = c * kReduceChunk;
      partial[static_cast<size_t>(c)] = k.reduce(op, std::min(kReduceChunk, n - s), p + s, 1);
    }
  });
  T acc = partial[0];
  for (size_t c = 1; c < partial.size(); ++c) acc = backend_merge(op, acc, partial[c]);
  return acc;
}
}  // namespace

template <FloatingElement T>
Tensor<T> reduce_raw(const Tensor<T>& x, Reduce op, const std::vector<int64_t>& dims,
                     bool keepdim) {
  const auto& k = backend::kernels<T>();
  Shape out_shape = reduced_shape(x.shape(), dims, keepdim);
  Tensor<T> out = new_tensor<T>(out_shape, "reduce");
  T* po = out.data_ptr();
  const T* px = x.data_ptr();
  const int64_t rank = x.dim();
  if (x.numel() == 0) {  // every output is the identity; x has no memory to point into
    for (int64_t i = 0; i < out.numel(); ++i) po[i] = backend_identity<T>(op);
    return out;
  }
  if (static_cast<int64_t>(dims.size()) == rank && x.is_contiguous()) {
    *po = reduce_contiguous(k, op, px, x.numel());
    return out;
  }
  // Split x's dims into kept (K) and reduced (R) with their sizes and strides.
  Shape kept_shape, kept_strides, red_shape, red_strides;
  for (int64_t d = 0; d < rank; ++d) {
    if (std::binary_search(dims.begin(), dims.end(), d)) {
      red_shape.push_back(x.shape()[d]);
      red_strides.push_back(x.strides()[d]);
    } else {
      kept_shape.push_back(x.shape()[d]);
      kept_strides.push_back(x.strides()[d]);
    }
  }
  const int64_t n_out = kept_shape.numel();
  const int64_t n_red = red_shape.numel();
  if (n_out == 0) return out;
  const bool last_dim_reduced = rank > 0 && std::binary_search(dims.begin(), dims.end(), rank - 1);
  if (last_dim_reduced || n_red <= 1) {
    // Each output element reduces a strided sub-tensor: walk its runs.
    Shape out_strides = contiguous_strides(kept_shape);
    StridedLoop<2> outer(kept_shape, {&out_strides, &kept_strides});
    StridedLoop<1> inner(red_shape, {&red_strides});
    outer.run(
        [&](int64_t n, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& in) {
          for (int64_t i = 0; i < n; ++i) {
            const T* base = px + off[1] + i * in[1];
            T acc = backend_identity<T>(op);
            inner.run_serial([&](int64_t m, const std::array<int64_t, 1>& o,
                                 const std::array<int64_t, 1>& s) {
              acc = backend_merge(op, acc, k.reduce(op, m, base + o[0], s[0]));
            });
            po[off[0] + i * in[0]] = acc;
          }
        },
        std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(n_red, 1)));
    return out;
  }
  // The innermost dim is kept: accumulate whole slices of the kept dims, one reduced index at a
  // time (vectorised along the kept inner dim).
  for (int64_t i = 0; i < n_out; ++i) po[i] = backend_identity<T>(op);
  Shape out_strides = contiguous_strides(kept_shape);
  StridedLoop<1> red_loop(red_shape, {&red_strides});
  StridedLoop<2> kept_loop(kept_shape, {&out_strides, &kept_strides});
  red_loop.run_serial([&](int64_t m, const std::array<int64_t, 1>& ro,
                          const std::array<int64_t, 1>& rs) {
    for (int64_t j = 0; j < m; ++j) {
      const T* base = px + ro[0] + j * rs[0];
      kept_loop.run([&](int64_t n, const std::array<int64_t, 2>& off,
                        const std::array<int64_t, 2>& in) {
        if (in[0] == 1) {
          k.accumulate(op, n, base + off[1], in[1], po + off[0]);
        } else {  // a strided output run (rare): one element at a time
          for (int64_t t = 0; t < n; ++t) k.accumulate(op, 1, base + off[1] + t * in[1], 1, po + off[0] + t * in[0]);
        }
      });
    }
  });
  return out;
}

}  // namespace detail

using detail::reduce_raw;
using detail::scalar_of;

namespace {
template <FloatingElement T>
Tensor<T> expand_reduced(const Tensor<T>& g, const Shape& in_shape, const std::vector<int64_t>& dims,
                         bool keepdim) {
  // expand() adds leading dims itself, so reductions over leading dims need no reshape.
  bool leading = true;
  for (size_t i = 0; i < dims.size(); ++i) leading = leading && dims[i] == static_cast<int64_t>(i);
  if (keepdim || leading) return g.expand(in_shape);
  return unsqueeze_reduced(g, in_shape, dims, keepdim).expand(in_shape);
}

int64_t reduced_count(const Shape& s, const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= s[d];
  return n;
}

void require_nonempty(const TensorBase& x, const std::vector<int64_t>& dims, const char* op) {
  for (int64_t d : dims) {
    if (x.shape()[d] == 0) {
      throw ValueError(cat_str(op, ": cannot reduce over dim ", d, " of size 0 (shape ", x.shape(),
                               "): the result has no identity"));
    }
  }
  if (dims.empty() && x.numel() == 0) {
    throw ValueError(cat_str(op, ": cannot reduce an empty tensor (shape ", x.shape(), ")"));
  }
}
}  // namespace

template <FloatingElement T>
Tensor<T> sum(const Tensor<T>& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  require(x, "sum");
  std::vector<int64_t> dims = wrap_dims(dims_in, x.dim(), "sum");
  Tensor<T> out = reduce_raw(x, Reduce::Sum, dims, keepdim);
  if (needs_grad(x)) {
    record(out, "sum", {&x}, [in_shape = x.shape(), dims, keepdim](const Tensor<T>& g) {
      return expand_reduced(g, in_shape, dims, keepdim);
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> mean(const Tensor<T>& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  require(x, "mean");
  std::vector<int64_t> dims = wrap_dims(dims_in, x.dim(), "mean");
  const int64_t n = reduced_count(x.shape(), dims);
  Tensor<T> out = reduce_raw(x, Reduce::Sum, dims, keepdim);
  {
    // 0 / 0 = NaN for an empty reduction (0 * NaN), as PyTorch.
    const T scale = n == 0 ? std::numeric_limits<T>::quiet_NaN() : T(1) / static_cast<T>(n);
    backend::kernels<T>().unary(Unary::MulScalar, {static_cast<double>(scale), 0.0}, out.numel(), out.data_ptr(), 1,
                                out.data_ptr());
  }
  if (needs_grad(x)) {
    record(out, "mean", {&x}, [in_shape = x.shape(), dims, keepdim, n](const Tensor<T>& g) {
      return expand_reduced(g * (1.0 / static_cast<double>(n)), in_shape, dims, keepdim);
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> var(const Tensor<T>& x, const std::vector<int64_t>& dims_in, bool keepdim,
              int64_t correction) {
  require(x, "var");
  std::vector<int64_t> dims = wrap_dims(dims_in, x.dim(), "var");
  const int64_t n = reduced_count(x.shape(), dims);
  Tensor<T> centered = x - mean(x, dims, true);
  Tensor<T> ss = sum(centered * centered, dims, keepdim);
  // n <= correction gives inf or NaN, as PyTorch (with its warning left out): the divisor is
  // clamped at 0, never negative.
  return ss * (1.0 / static_cast<double>(std::max<int64_t>(0, n - correction)));
}

template <FloatingElement T>
Tensor<T> std(const Tensor<T>& x, const std::vector<int64_t>& dims, bool keepdim,
              int64_t correction) {
  return sqrt(var(x, dims, keepdim, correction));
}

template <FloatingElement T>
Tensor<T> prod(const Tensor<T>& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  require(x, "prod");
  std::vector<int64_t> dims = wrap_dims(dims_in, x.dim(), "prod");
  Tensor<T> out = reduce_raw(x, Reduce::Prod, dims, keepdim);
  if (needs_grad(x)) {
    record_with_result(out, "prod", {&x}, [sx = SavedTensor<T>(x), dims, keepdim](
                                              const Tensor<T>& g, const Tensor<T>& r) {
      const Tensor<T>& x = sx.get("prod");
      // prod / x_i fails at zeros: there the gradient is the product of the other elements,
      // which is non-zero only when x_i is the single zero of its group.
      Tensor<uint8_t> is_zero = eq(x, 0.0);
      Tensor<T> zero = scalar_of<T>(0), one = scalar_of<T>(1);
      Tensor<T> nonzero_prod = prod(where(is_zero, one, x), dims, true);
      Tensor<T> zeros_count = sum(detail::where_raw(is_zero, one, zero), dims, true);
      Tensor<T> re = unsqueeze_reduced(r, x.shape(), dims, keepdim);
      Tensor<T> at_zero = where(eq(zeros_count, 1.0), nonzero_prod, zero);
      Tensor<T> ge = where(is_zero, at_zero.expand(x.shape()), re / where(is_zero, one, x));
      return unsqueeze_reduced(g, x.shape(), dims, keepdim) * ge;
    });
  }
  return out;
}

namespace {
template <FloatingElement T>
Tensor<T> extreme(const Tensor<T>& x, const std::vector<int64_t>& dims_in, bool keepdim, bool is_max) {
  const char* name = is_max ? "amax" : "amin";
  require(x, name);
  std::vector<int64_t> dims = wrap_dims(dims_in, x.dim(), name);
  require_nonempty(x, dims_in.empty() ? std::vector<int64_t>{} : dims, name);
  Tensor<T> out = reduce_raw(x, is_max ? Reduce::Max : Reduce::Min, dims, keepdim);
  if (needs_grad(x)) {
    record_with_result(out, name, {&x}, [sx = SavedTensor<T>(x), dims, keepdim, name](
                                            const Tensor<T>& g, const Tensor<T>& r) {
      const Tensor<T>& x = sx.get(name);
      // Ties share the gradient evenly.
      Tensor<T> re = unsqueeze_reduced(r, x.shape(), dims, keepdim);
      Tensor<T> mask = detail::where_raw(eq(x, re.detach()), scalar_of<T>(1), scalar_of<T>(0));
      Tensor<T> count = reduce_raw(mask, Reduce::Sum, dims, true);
      return unsqueeze_reduced(g, x.shape(), dims, keepdim) * mask / count;
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<int64_t> arg_extreme(const Tensor<T>& x, int64_t dim, bool keepdim, bool is_max,
                            const char* name) {
  require(x, name);
  int64_t d = detail::wrap_dim(dim, x.dim(), name);
  if (x.dim() == 0) return new_tensor<int64_t>({}).fill_(0);
  if (x.shape()[d] == 0) {
    throw ValueError(cat_str(name, ": cannot reduce over dim ", d, " of size 0 (shape ", x.shape(),
                             ")"));
  }
  Shape out_shape = reduced_shape(x.shape(), {d}, keepdim);
  Tensor<int64_t> out = new_tensor<int64_t>(out_shape, name);
  Shape kept_shape = x.shape(), kept_strides = x.strides();
  kept_shape.erase(d);
  kept_strides.erase(d);
  Shape out_strides = contiguous_strides(kept_shape);
  detail::StridedLoop<2> loop(kept_shape, {&out_strides, &kept_strides});
  const auto& k = backend::kernels<T>();
  const T* px = x.data_ptr();
  int64_t* po = out.data_ptr();
  const int64_t n = x.shape()[d], s = x.strides()[d];
  loop.run([&](int64_t m, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& in) {
    for (int64_t i = 0; i < m; ++i)
      po[off[0] + i * in[0]] = k.arg_reduce(is_max, n, px + off[1] + i * in[1], s);
  }, 4096);
  return out;
}

template <FloatingElement T>
ValuesIndices<T> extreme_dim(const Tensor<T>& x, int64_t dim, bool keepdim, bool is_max) {
  const char* name = is_max ? "max" : "min";
  Tensor<int64_t> idx = arg_extreme(x, dim, true, is_max, name);
  if (x.dim() == 0) return {x, idx};
  int64_t d = detail::wrap_dim(dim, x.dim(), name);
  Tensor<T> values = gather(x, d, idx);
  if (!keepdim) {
    values = values.squeeze(d);
    idx = idx.squeeze(d);
  }
  return {values, idx};
}
}  // namespace

template <FloatingElement T>
Tensor<T> amax(const Tensor<T>& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extreme(x, dims, keepdim, true);
}
template <FloatingElement T>
Tensor<T> amin(const Tensor<T>& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extreme(x, dims, keepdim, false);
}
template <FloatingElement T>
ValuesIndices<T> max(const Tensor<T>& x, int64_t dim, bool keepdim) {
  return extreme_dim(x, dim, keepdim, true);
}
template <FloatingElement T>
ValuesIndices<T> min(const Tensor<T>& x, int64_t dim, bool keepdim) {
  return extreme_dim(x, dim, keepdim, false);
}
template <FloatingElement T>
Tensor<int64_t> argmax(const Tensor<T>& x, int64_t dim, bool keepdim) {
  return arg_extreme(x, dim, keepdim, true, "argmax");
}
template <FloatingElement T>
Tensor<int64_t> argmin(const Tensor<T>& x, int64_t dim, bool keepdim) {
  return arg_extreme(x, dim, keepdim, false, "argmin");
}

template <FloatingElement T>
Tensor<T> logsumexp(const Tensor<T>& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  require(x, "logsumexp");
  std::vector<int64_t> dims = wrap_dims(dims_in, x.dim(), "logsumexp");
  Tensor<T> m;
  {
    NoGradGuard no_grad;
    m = reduce_raw(x, Reduce::Max, dims, true);
    // An all -inf (or +inf) group would give inf - inf = NaN: shift by 0 there instead.
    m = where(eq(abs(m), std::numeric_limits<double>::infinity()), scalar_of<T>(0), m);
  }
  Tensor<T> s = log(sum(exp(x - m), dims, true)) + m;
  return keepdim ? s : s.reshape(reduced_shape(x.shape(), dims, false));
}

template <FloatingElement T>
Tensor<T> norm(const Tensor<T>& x, double p, const std::vector<int64_t>& dims_in, bool keepdim) {
  require(x, "norm");
  std::vector<int64_t> dims = wrap_dims(dims_in, x.dim(), "norm");
  if (std::isinf(p) && p > 0) return amax(abs(x), dims, keepdim);
  if (p == 1.0) return sum(abs(x), dims, keepdim);
  if (p == 2.0) {
    Tensor<T> out = sqrt(reduce_raw(x, Reduce::SumSquares, dims, keepdim).detach());
    if (needs_grad(x)) {
      record_with_result(out, "norm", {&x}, [sx = SavedTensor<T>(x), dims, keepdim](
                                                const Tensor<T>& g, const Tensor<T>& r) {
        const Tensor<T>& x = sx.get("norm");
        Tensor<T> re = unsqueeze_reduced(r, x.shape(), dims, keepdim);
        // The subgradient 0 at the origin, as PyTorch.
        Tensor<T> safe = where(eq(re, 0.0), scalar_of<T>(1), re);
        return where(eq(re, 0.0), scalar_of<T>(0),
                     unsqueeze_reduced(g, x.shape(), dims, keepdim) * x / safe);
      });
    }
    return out;
  }
  if (p <= 0) throw ValueError(cat_str("norm: p must be positive, got ", p));
  return pow(sum(pow(abs(x), p), dims, keepdim), 1.0 / p);
}

template <FloatingElement T>
Tensor<T> norm(const Tensor<T>& x, double p) {
  return norm(x, p, {}, false);
}

namespace {

// Whether dim d of `shape` is followed only by dims of size 1, so that its lines are contiguous
// rows of shape[d] values.
bool rows_along(const Shape& shape, int64_t d) {
  for (int64_t i = d + 1; i < shape.size(); ++i) {
    if (shape[i] != 1) return false;
  }
  return true;
}

// f(r) for each of `rows` contiguous rows of n values, shared among the threads.
template <class F>
void for_each_row(int64_t rows, int64_t n, F f) {
  detail::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) f(r);
  });
}

// The values of softmax or log_softmax over dim d (no graph). Over the last dim (or one followed
// only by dims of size 1) row by row, as an inference plan's step runs them (detail::softmax_row);
// over another dim with tensor ops, which a plan does not trace.
template <FloatingElement T>
Tensor<T> softmax_values(const Tensor<T>& x, int64_t d, bool log, const char* name) {
  detail::TracedOp traced;
  NoGradGuard no_grad;
  if (x.dim() == 0) return full<T>({}, T(log ? 0 : 1));
  if (rows_along(x.shape(), d)) {
    const Tensor<T> xc = x.contiguous();
    Tensor<T> out = new_tensor<T>(x.shape());
    const int64_t n = x.shape()[d], rows = n == 0 ? 0 : x.numel() / n;
    const T* px = xc.data();
    T* py = out.data();
    const auto& k = backend::kernels<T>();
    for_each_row(rows, n, [&](int64_t r) { detail::softmax_row(k, n, px + r * n, py + r * n, log); });
    if constexpr (std::is_same_v<T, float>) {
      if (detail::OpTracer* t = traced.tracer()) t->softmax(x, n, log, out);
    }
    return out;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) {
      t->unsupported(cat_str(name, " over dim ", d, " of ", x.shape(), " (a plan takes it over the last dim)"));
    }
  }
  const Tensor<T> shifted = x - reduce_raw(x, Reduce::Max, {d}, true);
  if (log) return shifted - ember::log(reduce_raw(exp(shifted), Reduce::Sum, {d}, true));
  Tensor<T> e = exp(shifted);
  return e / reduce_raw(e, Reduce::Sum, {d}, true);
}

// The gradient of softmax or log_softmax over dim d from its result y, for a backward that
// builds no graph: over contiguous rows (the last dim, or one followed only by dims of size 1)
// one row at a time while it is in L1 (detail::softmax_backward_row), where the formulas' tensor
// ops, kept for double backward, make four passes over the whole tensor with a temporary each.
template <FloatingElement T>
Tensor<T> softmax_backward(const Tensor<T>& g, const Tensor<T>& y, int64_t d, bool log) {
  if (y.dim() == 0) return g * 0.0;
  if (rows_along(y.shape(), d) && !needs_grad(g, y)) {
    const Tensor<T> gc = g.contiguous(), yc = y.contiguous();
    Tensor<T> dx = new_tensor<T>(y.shape());
    const int64_t n = y.shape()[d], rows = n == 0 ? 0 : y.numel() / n;
    const auto& k = backend::kernels<T>();
    const T *pg = gc.data(), *py = yc.data();
    T* pdx = dx.data();
    for_each_row(rows, n, [&](int64_t r) {
      detail::softmax_backward_row(k, n, pg + r * n, py + r * n, pdx + r * n, log);
    });
    return dx;
  }
  if (log) return g - exp(y) * sum(g, {d}, true);
  return y * (g - sum(g * y, {d}, true));
}

}  // namespace

template <FloatingElement T>
Tensor<T> softmax(const Tensor<T>& x, int64_t dim) {
  require(x, "softmax");
  const int64_t d = detail::wrap_dim(dim, x.dim(), "softmax");
  Tensor<T> out = softmax_values(x, d, false, "softmax");
  if (needs_grad(x)) {
    record_with_result(out, "softmax", {&x},
                       [d](const Tensor<T>& g, const Tensor<T>& y) { return softmax_backward(g, y, d, false); });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> log_softmax(const Tensor<T>& x, int64_t dim) {
  require(x, "log_softmax");
  const int64_t d = detail::wrap_dim(dim, x.dim(), "log_softmax");
  Tensor<T> out = softmax_values(x, d, true, "log_softmax");
  if (needs_grad(x)) {
    record_with_result(out, "log_softmax", {&x},
                       [d](const Tensor<T>& g, const Tensor<T>& y) { return softmax_backward(g, y, d, true); });
  }
  return out;
}

// ---- Members ----------------------------------------------------------------------------------

template <Element T> Tensor<T> Tensor<T>::sum() const requires FloatingElement<T> { return ember::sum(*this); }
template <Element T> Tensor<T> Tensor<T>::sum(int64_t d, bool k) const requires FloatingElement<T> { return ember::sum(*this, {d}, k); }
template <Element T> Tensor<T> Tensor<T>::sum(const std::vector<int64_t>& d, bool k) const requires FloatingElement<T> { return ember::sum(*this, d, k); }
template <Element T> Tensor<T> Tensor<T>::mean() const requires FloatingElement<T> { return ember::mean(*this); }
template <Element T> Tensor<T> Tensor<T>::mean(int64_t d, bool k) const requires FloatingElement<T> { return ember::mean(*this, {d}, k); }
template <Element T> Tensor<T> Tensor<T>::mean(const std::vector<int64_t>& d, bool k) const requires FloatingElement<T> { return ember::mean(*this, d, k); }
template <Element T> Tensor<T> Tensor<T>::var(int64_t c) const requires FloatingElement<T> { return ember::var(*this, {}, false, c); }
template <Element T> Tensor<T> Tensor<T>::var(int64_t d, bool k, int64_t c) const requires FloatingElement<T> { return ember::var(*this, {d}, k, c); }
template <Element T> Tensor<T> Tensor<T>::std(int64_t c) const requires FloatingElement<T> { return ember::std(*this, {}, false, c); }
template <Element T> Tensor<T> Tensor<T>::std(int64_t d, bool k, int64_t c) const requires FloatingElement<T> { return ember::std(*this, {d}, k, c); }
template <Element T> Tensor<T> Tensor<T>::prod() const requires FloatingElement<T> { return ember::prod(*this); }
template <Element T> Tensor<T> Tensor<T>::prod(int64_t d, bool k) const requires FloatingElement<T> { return ember::prod(*this, {d}, k); }
template <Element T> ValuesIndices<T> Tensor<T>::max(int64_t d, bool k) const requires FloatingElement<T> { return ember::max(*this, d, k); }
template <Element T> ValuesIndices<T> Tensor<T>::min(int64_t d, bool k) const requires FloatingElement<T> { return ember::min(*this, d, k); }
template <Element T> Tensor<int64_t> Tensor<T>::argmax() const requires FloatingElement<T> { return ember::argmax(this->reshape({-1}), 0); }
template <Element T> Tensor<int64_t> Tensor<T>::argmax(int64_t d, bool k) const requires FloatingElement<T> { return ember::argmax(*this, d, k); }
template <Element T> Tensor<int64_t> Tensor<T>::argmin() const requires FloatingElement<T> { return ember::argmin(this->reshape({-1}), 0); }
template <Element T> Tensor<int64_t> Tensor<T>::argmin(int64_t d, bool k) const requires FloatingElement<T> { return ember::argmin(*this, d, k); }
template <Element T> Tensor<T> Tensor<T>::logsumexp(int64_t d, bool k) const requires FloatingElement<T> { return ember::logsumexp(*this, {d}, k); }
namespace {
// The indices of the first k elements of each line of x along dim d, largest first (or smallest
// first): NaN ranks as the largest value and equal values keep their index order, so the order
// is stable (torch.sort(stable = true), and torch.topk's order of ties).
template <Element T>
Tensor<int64_t> ranked_indices(const Tensor<T>& x, int64_t d, int64_t k, bool largest, const char* op) {
  const int64_t n = x.shape()[d];
  const Tensor<T> rows = x.detach().transpose(d, x.dim() - 1).contiguous();
  const int64_t count = n == 0 ? 0 : rows.numel() / n;
  Shape idx_shape = rows.shape();
  idx_shape[idx_shape.size() - 1] = k;
  Tensor<int64_t> idx = new_tensor<int64_t>(idx_shape, op);
  const T* pr = rows.data_ptr();
  int64_t* pi = idx.data_ptr();
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t r = 0; r < count; ++r) {
    const T* row = pr + r * n;
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
    auto before = [&](int64_t a, int64_t b) {
      const T va = row[a], vb = row[b];
      const bool na = va != va, nb = vb != vb;
      if (na || nb) {
        if (na && nb) return a < b;
        return largest ? na : nb;
      }
      if (va != vb) return largest ? va > vb : va < vb;
      return a < b;
    };
    if (k == n) {
      std::sort(order.begin(), order.end(), before);
    } else {
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
    }
    std::copy(order.begin(), order.begin() + k, pi + r * k);
  }
  return idx.transpose(d, x.dim() - 1).contiguous();
}
}  // namespace

template <FloatingElement T>
ValuesIndices<T> topk(const Tensor<T>& x, int64_t k, int64_t dim, bool largest, bool sorted) {
  require(x, "topk");
  (void)sorted;  // always sorted: a partial sort is as cheap as any order here
  const int64_t d = x.dim() == 0 ? 0 : detail::wrap_dim(dim, x.dim(), "topk");
  const Tensor<T> xv = x.dim() == 0 ? x.reshape({1}) : x;
  const int64_t n = xv.shape()[d];
  if (k < 0 || k > n) {
    throw ValueError(cat_str("topk: k = ", k, " is out of range for dim ", d, " of size ", n, " (shape ", x.shape(), ")"));
  }
  Tensor<int64_t> indices = ranked_indices(xv, d, k, largest, "topk");
  Tensor<T> values = gather(xv, d, indices);
  if (x.dim() == 0) {
    indices = indices.reshape({});
    values = values.reshape({});
  }
  return {values, indices};
}

template <Element T>
ValuesIndices<T> sort(const Tensor<T>& x, int64_t dim, bool descending) {
  require(x, "sort");
  if (x.dim() == 0) return {x.clone(), zeros<int64_t>({})};
  const int64_t d = detail::wrap_dim(dim, x.dim(), "sort");
  Tensor<int64_t> indices = ranked_indices(x, d, x.shape()[d], descending, "sort");
  return {gather(x, d, indices), indices};
}

template <Element T>
Tensor<int64_t> argsort(const Tensor<T>& x, int64_t dim, bool descending) {
  require(x, "argsort");
  if (x.dim() == 0) return zeros<int64_t>({});
  const int64_t d = detail::wrap_dim(dim, x.dim(), "argsort");
  return ranked_indices(x, d, x.shape()[d], descending, "argsort");
}

template <Element T> ValuesIndices<T> Tensor<T>::sort(int64_t dim, bool descending) const {
  return ember::sort(*this, dim, descending);
}
template <Element T> Tensor<int64_t> Tensor<T>::argsort(int64_t dim, bool descending) const {
  return ember::argsort(*this, dim, descending);
}

template <Element T> ValuesIndices<T> Tensor<T>::topk(int64_t k, int64_t dim, bool largest, bool sorted) const
  requires FloatingElement<T> {
  return ember::topk(*this, k, dim, largest, sorted);
}

template <Element T> Tensor<T> Tensor<T>::norm(double p) const requires FloatingElement<T> { return ember::norm(*this, p); }
template <Element T> Tensor<T> Tensor<T>::norm(double p, int64_t dim, bool keepdim) const requires FloatingElement<T> {
  return ember::norm(*this, p, {dim}, keepdim);
}
template <Element T> Tensor<T> Tensor<T>::softmax(int64_t d) const requires FloatingElement<T> { return ember::softmax(*this, d); }
template <Element T> Tensor<T> Tensor<T>::log_softmax(int64_t d) const requires FloatingElement<T> { return ember::log_softmax(*this, d); }

#define EMBER_INSTANTIATE(T)                                                                    \
  template Tensor<T> detail::reduce_raw(const Tensor<T>&, Reduce, const std::vector<int64_t>&, bool); \
  template Tensor<T> var(const Tensor<T>&, const std::vector<int64_t>&, bool, int64_t);        \
  template Tensor<T> std(const Tensor<T>&, const std::vector<int64_t>&, bool, int64_t);        \
  template ValuesIndices<T> max(const Tensor<T>&, int64_t, bool);                              \
  template ValuesIndices<T> min(const Tensor<T>&, int64_t, bool);                              \
  template Tensor<int64_t> argmax(const Tensor<T>&, int64_t, bool);                            \
  template Tensor<int64_t> argmin(const Tensor<T>&, int64_t, bool);                            \
  template Tensor<T> logsumexp(const Tensor<T>&, const std::vector<int64_t>&, bool);           \
  template Tensor<T> norm(const Tensor<T>&, double);                                           \
  template Tensor<T> norm(const Tensor<T>&, double, const std::vector<int64_t>&, bool);        \
  template Tensor<T> softmax(const Tensor<T>&, int64_t);                                       \
  template Tensor<T> log_softmax(const Tensor<T>&, int64_t);                                   \
  template Tensor<T> Tensor<T>::sum() const;                                                   \
  template Tensor<T> Tensor<T>::norm(double, int64_t, bool) const;                             \
  template ValuesIndices<T> topk(const Tensor<T>&, int64_t, int64_t, bool, bool);              \
  template ValuesIndices<T> Tensor<T>::topk(int64_t, int64_t, bool, bool) const;               \
  template Tensor<T> Tensor<T>::sum(int64_t, bool) const;                                      \
  template Tensor<T> Tensor<T>::sum(const std::vector<int64_t>&, bool) const;                  \
  template Tensor<T> Tensor<T>::mean() const;                                                  \
  template Tensor<T> Tensor<T>::mean(int64_t, bool) const;                                     \
  template Tensor<T> Tensor<T>::mean(const std::vector<int64_t>&, bool) const;                 \
  template Tensor<T> Tensor<T>::var(int64_t) const;                                            \
  template Tensor<T> Tensor<T>::var(int64_t, bool, int64_t) const;                             \
  template Tensor<T> Tensor<T>::std(int64_t) const;                                            \
  template Tensor<T> Tensor<T>::std(int64_t, bool, int64_t) const;                             \
  template Tensor<T> Tensor<T>::prod() const;                                                  \
  template Tensor<T> Tensor<T>::prod(int64_t, bool) const;                                     \
  template ValuesIndices<T> Tensor<T>::max(int64_t, bool) const;                               \
  template ValuesIndices<T> Tensor<T>::min(int64_t, bool) const;                               \
  template Tensor<int64_t> Tensor<T>::argmax() const;                                          \
  template Tensor<int64_t> Tensor<T>::argmax(int64_t, bool) const;                             \
  template Tensor<int64_t> Tensor<T>::argmin() const;                                          \
  template Tensor<int64_t> Tensor<T>::argmin(int64_t, bool) const;                             \
  template Tensor<T> Tensor<T>::logsumexp(int64_t, bool) const;                                \
  template Tensor<T> Tensor<T>::norm(double) const;                                            \
  template Tensor<T> Tensor<T>::softmax(int64_t) const;                                        \
  template Tensor<T> Tensor<T>::log_softmax(int64_t) const;
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

#define EMBER_INSTANTIATE_SORT(T)                                                               \
  template ValuesIndices<T> sort(const Tensor<T>&, int64_t, bool);                              \
  template Tensor<int64_t> argsort(const Tensor<T>&, int64_t, bool);                            \
  template ValuesIndices<T> Tensor<T>::sort(int64_t, bool) const;                               \
  template Tensor<int64_t> Tensor<T>::argsort(int64_t, bool) const;
EMBER_INSTANTIATE_SORT(float)
EMBER_INSTANTIATE_SORT(double)
EMBER_INSTANTIATE_SORT(int64_t)
EMBER_INSTANTIATE_SORT(int32_t)
EMBER_INSTANTIATE_SORT(uint8_t)
EMBER_INSTANTIATE_SORT(int8_t)
#undef EMBER_INSTANTIATE_SORT

#define EMBER_REDUCTION(name)                                                               \
  template Tensor<float> name(const Tensor<float>&, const std::vector<int64_t>&, bool);    \
  template Tensor<double> name(const Tensor<double>&, const std::vector<int64_t>&, bool);
#include "ember/ops/op_table.def"

}  // namespace ember
