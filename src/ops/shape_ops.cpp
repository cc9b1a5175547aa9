// Joining, splitting, padding and indexing.
#include <cstring>

#include "common.hpp"
#include "trace.hpp"

namespace ember {

using detail::require;

using autograd::needs_grad;
using autograd::record;
using detail::cat_str;
using detail::new_tensor;
using detail::wrap_dim;

namespace {

// Checks every index against [0, size) (negative indices count from the end, as PyTorch) and
// returns them normalised.
std::vector<int64_t> checked_indices(const Tensor<int64_t>& index, int64_t size, const char* op,
                                     const Shape& x_shape, int64_t dim) {
  std::vector<int64_t> idx = index.to_vector();
  for (size_t i = 0; i < idx.size(); ++i) {
    // Negative indices are refused, as PyTorch refuses them here (they do not count from the end).
    const int64_t v = idx[i];
    if (v < 0 || v >= size) {
      throw IndexError(cat_str(op, ": index ", v, " at position ", i, " is out of range for dim ",
                               dim, " of size ", size, " (input shape ", x_shape, ")"));
    }
  }
  return idx;
}

}  // namespace

// ---- cat / stack / split --------------------------------------------------------------------------

template <Element T>
Tensor<T> cat(const std::vector<Tensor<T>>& tensors, int64_t dim) {
  detail::TracedOp traced;
  if (tensors.empty()) throw ValueError("cat: expected a non-empty list of tensors");
  for (const auto& t : tensors) require(t, "cat");
  const Tensor<T>& first = tensors[0];
  const int64_t d = wrap_dim(dim, first.dim(), "cat");
  if (first.dim() == 0) throw ShapeError("cat: zero-dimensional tensors cannot be concatenated");
  Shape out_shape = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Shape& s = tensors[i].shape();
    if (s.size() != first.dim()) {
      throw ShapeError(cat_str("cat: tensor ", i, " has shape ", s, " but tensor 0 has shape ",
                               first.shape(), " (ranks differ)"));
    }
    for (int64_t k = 0; k < s.size(); ++k) {
      if (k != d && s[k] != out_shape[k]) {
        throw ShapeError(cat_str("cat: tensor ", i, " has shape ", s, " but tensor 0 has shape ",
                                 first.shape(), ": dim ", k, " differs (", s[k], " vs ",
                                 out_shape[k], ")"));
      }
    }
    total += s[d];
  }
  out_shape[d] = total;
  Tensor<T> out = new_tensor<T>(out_shape, "cat");
  int64_t offset = 0;
  std::vector<int64_t> sizes;
  for (const auto& t : tensors) {
    const int64_t n = t.shape()[d];
    if (n > 0) detail::copy_strided(t, out.detach().narrow(d, offset, n));
    sizes.push_back(n);
    offset += n;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->cat(tensors, d, out);
  }
  if constexpr (FloatingElement<T>) {
    bool any = false;
    for (const auto& t : tensors) any = any || t.requires_grad();
    if (any && autograd::grad_mode_enabled()) {
      std::vector<const TensorBase*> inputs;
      for (const auto& t : tensors) inputs.push_back(&t);
      record(out, "cat", inputs, [sizes, d](const Tensor<T>& g) {
        std::vector<Tensor<T>> grads;
        int64_t off = 0;
        for (int64_t n : sizes) {
          grads.push_back(g.narrow(d, off, n));
          off += n;
        }
        return grads;
      });
    }
  }
  return out;
}

template <Element T>
Tensor<T> stack(const std::vector<Tensor<T>>& tensors, int64_t dim) {
  if (tensors.empty()) throw ValueError("stack: expected a non-empty list of tensors");
  for (const auto& t : tensors) require(t, "stack");
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor<T>> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].shape() != tensors[0].shape()) {
      throw ShapeError(cat_str("stack: tensor ", i, " has shape ", tensors[i].shape(),
                               " but tensor 0 has shape ", tensors[0].shape()));
    }
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

template <Element T>
std::vector<Tensor<T>> split(const Tensor<T>& x, const std::vector<int64_t>& sizes, int64_t dim) {
  require(x, "split");
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0) throw ValueError(cat_str("split: negative size ", s));
    total += s;
  }
  if (total != x.shape()[d]) {
    throw ShapeError(cat_str("split: sizes add up to ", total, " but dim ", d, " of shape ",
                             x.shape(), " has size ", x.shape()[d]));
  }
  std::vector<Tensor<T>> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(d, off, s));
    off += s;
  }
  return out;
}

// ---- Indexing -------------------------------------------------------------------------------------

namespace {

// out[o, i, r] = x[o, idx[i], r] for x viewed as [outer, n, inner] (x contiguous).
template <Element T>
void index_copy_rows(const T* x, int64_t n, const std::vector<int64_t>& idx, int64_t outer,
                     int64_t inner, T* out) {
  const int64_t m = static_cast<int64_t>(idx.size());
  detail::parallel_for(0, outer * m, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)),
                       [&](int64_t b, int64_t e) {
                         for (int64_t r = b; r < e; ++r) {
                           const int64_t o = r / m, i = r % m;
                           std::memcpy(out + r * inner, x + (o * n + idx[static_cast<size_t>(i)]) * inner,
                                       static_cast<size_t>(inner) * sizeof(T));
                         }
                       });
}

// out = x with g's rows added at idx (the adjoint of index_copy_rows); serial because indices
// may repeat.
template <FloatingElement T>
Tensor<T> index_add_raw(const Shape& in_shape, int64_t dim, const std::vector<int64_t>& idx,
                        const Tensor<T>& g) {
  Tensor<T> out = zeros<T>(in_shape);
  Tensor<T> gc = g.contiguous();
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < dim; ++k) outer *= in_shape[k];
  for (int64_t k = dim + 1; k < in_shape.size(); ++k) inner *= in_shape[k];
  const int64_t n = in_shape[dim], m = static_cast<int64_t>(idx.size());
  T* po = out.data_ptr();
  const T* pg = gc.data_ptr();
  const auto& k = backend::kernels<T>();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < m; ++i) {
      k.accumulate(backend::Reduce::Sum, inner, pg + (o * m + i) * inner, 1,
                   po + (o * n + idx[static_cast<size_t>(i)]) * inner);
    }
  return out;
}

template <FloatingElement T>
Tensor<T> index_add_op(const Shape& in_shape, int64_t dim, const std::vector<int64_t>& idx,
                       const Tensor<int64_t>& index, const Tensor<T>& g) {
  Tensor<T> out = index_add_raw(in_shape, dim, idx, g);
  if (needs_grad(g)) {
    record(out, "index_add", {&g}, [dim, index](const Tensor<T>& gg) {
      return ember::index_select(gg, dim, index);
    });
  }
  return out;
}

}  // namespace

template <Element T>
Tensor<T> index_select(const Tensor<T>& x, int64_t dim, const Tensor<int64_t>& index) {
  require(x, "index_select");
  require(index, "index_select");
  if (index.dim() > 1) {
    throw ShapeError(cat_str("index_select: index must be 0-D or 1-D, got shape ", index.shape()));
  }
  const int64_t d = x.dim() == 0 ? 0 : wrap_dim(dim, x.dim(), "index_select");
  Tensor<T> xv = x.dim() == 0 ? x.reshape({1}) : x;
  std::vector<int64_t> idx = checked_indices(index, xv.shape()[d], "index_select", x.shape(), d);
  Shape out_shape = xv.shape();
  out_shape[d] = static_cast<int64_t>(idx.size());
  Tensor<T> out = new_tensor<T>(out_shape, "index_select");
  Tensor<T> xc = xv.contiguous();
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < d; ++k) outer *= xv.shape()[k];
  for (int64_t k = d + 1; k < xv.dim(); ++k) inner *= xv.shape()[k];
  if (out.numel() > 0) index_copy_rows(xc.data_ptr(), xv.shape()[d], idx, outer, inner, out.data_ptr());
  if (x.dim() == 0 || index.dim() == 0) out = out.reshape(x.dim() == 0 ? Shape{} : out_shape);
  if constexpr (FloatingElement<T>) {
    if (needs_grad(x)) {
      record(out, "index_select", {&x},
             [in_shape = xv.shape(), x_shape = x.shape(), out_shape, d, idx, index](const Tensor<T>& g) {
               return index_add_op(in_shape, d, idx, index, g.reshape(out_shape)).reshape(x_shape);
             });
    }
  }
  return out;
}

namespace {

// Walks index in runs: for each run of n elements, calls f(n, at, out_offset, out_stride,
// src_offset, src_stride), where at[t] = (x offset of element t without dim) + index value *
// dim_stride is the element of x it names, after checking the index value against dim_size.
template <class F>
void for_each_indexed(const Tensor<int64_t>& index, const Shape& x_strides_no_dim, int64_t dim_stride,
                      const Shape* src_strides, int64_t dim_size, int64_t dim, const Shape& x_shape,
                      const char* op, F&& f) {
  Shape out_strides = contiguous_strides(index.shape());
  const Shape& is = index.strides();
  const Shape& ss = src_strides ? *src_strides : out_strides;
  detail::StridedLoop<4> loop(index.shape(), {&out_strides, &is, &x_strides_no_dim, &ss});
  const int64_t* pi = index.data_ptr();
  std::vector<int64_t> at;
  loop.run_serial([&](int64_t n, const std::array<int64_t, 4>& off, const std::array<int64_t, 4>& in) {
    at.resize(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) {
      const int64_t v = pi[off[1] + t * in[1]];
      if (v < 0 || v >= dim_size) {  // no counting from the end, as PyTorch
        throw IndexError(cat_str(op, ": index ", v, " is out of range for dim ", dim, " of size ",
                                 dim_size, " (input shape ", x_shape, ")"));
      }
      at[static_cast<size_t>(t)] = off[2] + t * in[2] + v * dim_stride;
    }
    f(n, at.data(), off[0], in[0], off[3], in[3]);
  });
}

void check_gather_shapes(const Shape& x, const Shape& index, int64_t d, const char* op) {
  if (x.size() != index.size()) {
    throw ShapeError(cat_str(op, ": index of shape ", index, " must have as many dims as the input ",
                             x));
  }
  for (int64_t k = 0; k < x.size(); ++k) {
    if (k != d && index[k] > x[k]) {
      throw ShapeError(cat_str(op, ": index of shape ", index, " is larger than the input ", x,
                               " at dim ", k));
    }
  }
}

}  // namespace

template <Element T>
Tensor<T> gather(const Tensor<T>& x, int64_t dim, const Tensor<int64_t>& index) {
  require(x, "gather");
  require(index, "gather");
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  check_gather_shapes(x.shape(), index.shape(), d, "gather");
  Tensor<T> out = new_tensor<T>(index.shape(), "gather");
  Shape xs = x.strides();
  const int64_t dim_stride = x.dim() ? xs[d] : 0;
  if (x.dim()) xs[d] = 0;
  const T* px = x.data_ptr();
  T* po = out.data_ptr();
  for_each_indexed(index, xs, dim_stride, nullptr, x.dim() ? x.shape()[d] : 1, d, x.shape(), "gather",
                   [&](int64_t n, const int64_t* at, int64_t o, int64_t os, int64_t, int64_t) {
                     for (int64_t t = 0; t < n; ++t) po[o + t * os] = px[at[t]];
                   });
  if constexpr (FloatingElement<T>) {
    if (needs_grad(x)) {
      record(out, "gather", {&x}, [in_shape = x.shape(), d, index](const Tensor<T>& g) {
        return scatter_add(zeros<T>(in_shape), d, index, g);
      });
    }
  }
  return out;
}

template <FloatingElement T>
Tensor<T> scatter_add(const Tensor<T>& x, int64_t dim, const Tensor<int64_t>& index,
                      const Tensor<T>& src) {
  require(x, "scatter_add");
  require(index, "scatter_add");
  require(src, "scatter_add");
  const int64_t d = wrap_dim(dim, x.dim(), "scatter_add");
  check_gather_shapes(x.shape(), index.shape(), d, "scatter_add");
  for (int64_t k = 0; k < index.dim(); ++k) {
    if (src.dim() != index.dim() || index.shape()[k] > src.shape()[k]) {
      throw ShapeError(cat_str("scatter_add: index of shape ", index.shape(),
                               " is larger than src of shape ", src.shape()));
    }
  }
  Tensor<T> out = x.detach().clone();
  Shape xs = out.strides();
  const int64_t dim_stride = out.dim() ? xs[d] : 0;
  if (out.dim()) xs[d] = 0;
  const Shape& ss = src.strides();
  T* po = out.data_ptr();
  const T* ps = src.data_ptr();
  const auto& k = backend::kernels<T>();
  for_each_indexed(index, xs, dim_stride, &ss, out.dim() ? out.shape()[d] : 1, d, x.shape(), "scatter_add",
                   [&](int64_t n, const int64_t* at, int64_t, int64_t, int64_t so, int64_t sst) {
                     k.index_accumulate(n, at, ps + so, sst, po);
                   });
  if (needs_grad(x, src)) {
    record(out, "scatter_add", {&x, &src}, [d, index, src_shape = src.shape()](const Tensor<T>& g) {
      Tensor<T> gs = gather(g, d, index);
      if (gs.shape() != src_shape) gs = pad(gs, [&] {
          std::vector<int64_t> p;
          for (int64_t k = src_shape.size() - 1; k >= 0; --k) {
            p.push_back(0);
            p.push_back(src_shape[k] - gs.shape()[k]);
          }
          return p;
        }());
      return std::vector<Tensor<T>>{g, gs};
    });
  }
  return out;
}

namespace detail {
template <FloatingElement T>
Tensor<T> slice_backward(const Tensor<T>& g, const Shape& in_shape, int64_t dim, int64_t start,
                         int64_t step) {
  Tensor<T> out = zeros<T>(in_shape);
  const int64_t len = g.shape()[dim];
  if (len > 0) copy_strided(g.detach(), out.slice(dim, start, start + (len - 1) * step + 1, step));
  if (needs_grad(g)) {
    record(out, "slice_backward", {&g}, [dim, start, step, len](const Tensor<T>& gg) {
      return gg.slice(dim, start, start + (len - 1) * step + 1, step);
    });
  }
  return out;
}
}  // namespace detail

// ---- pad --------------------------------------------------------------------------------------------

template <FloatingElement T>
Tensor<T> pad(const Tensor<T>& x, const std::vector<int64_t>& pads, PadMode mode, double value) {
  require(x, "pad");
  if (pads.size() % 2 != 0 || static_cast<int64_t>(pads.size()) > 2 * x.dim()) {
    throw ValueError(cat_str("pad: expected an even number of pad sizes, at most 2 per dim (",
                             2 * x.dim(), " for shape ", x.shape(), "), got ", pads.size()));
  }
  const int64_t npad = static_cast<int64_t>(pads.size()) / 2;
  Shape out_shape = x.shape();
  for (int64_t i = 0; i < npad; ++i) {
    const int64_t d = x.dim() - 1 - i;
    const int64_t before = pads[2 * i], after = pads[2 * i + 1];
    out_shape[d] = x.shape()[d] + before + after;
    if (out_shape[d] < 0) {
      throw ShapeError(cat_str("pad: pads (", before, ", ", after, ") make dim ", d, " of shape ",
                               x.shape(), " negative"));
    }
    if (mode == PadMode::Reflect && (before >= x.shape()[d] || after >= x.shape()[d])) {
      throw ValueError(cat_str("pad: reflect padding (", before, ", ", after, ") must be smaller "
                               "than dim ", d, " of size ", x.shape()[d]));
    }
    if (mode == PadMode::Replicate && x.shape()[d] == 0 && (before > 0 || after > 0)) {
      throw ValueError(cat_str("pad: replicate padding of the empty dim ", d));
    }
  }
  if (mode != PadMode::Constant) {
    Tensor<T> out = x;
    for (int64_t i = 0; i < npad; ++i) {
      const int64_t d = x.dim() - 1 - i;
      const int64_t n = x.shape()[d], before = pads[2 * i];
      std::vector<int64_t> idx(static_cast<size_t>(out_shape[d]));
      for (int64_t j = 0; j < out_shape[d]; ++j) {
        int64_t s = j - before;
        if (mode == PadMode::Reflect) {
          if (s < 0) s = -s;
          if (s >= n) s = 2 * (n - 1) - s;
        } else {
          s = std::clamp<int64_t>(s, 0, n - 1);
        }
        idx[static_cast<size_t>(j)] = s;
      }
      out = index_select(out, d, tensor<int64_t>(idx));
    }
    return out;
  }
  Tensor<T> out = full<T>(out_shape, static_cast<T>(value));
  Tensor<T> dst = out, src = x.detach();
  std::vector<int64_t> undo;  // the pads that take g back to x's shape
  for (int64_t i = 0; i < npad; ++i) {
    const int64_t d = x.dim() - 1 - i;
    const int64_t before = pads[2 * i], after = pads[2 * i + 1];
    const int64_t in_start = std::max<int64_t>(-before, 0);
    const int64_t in_end = x.shape()[d] - std::max<int64_t>(-after, 0);
    const int64_t len = std::max<int64_t>(in_end - in_start, 0);
    src = src.narrow(d, std::min(in_start, x.shape()[d]), len);
    dst = dst.narrow(d, std::max<int64_t>(before, 0), len);
    undo.push_back(-before);
    undo.push_back(-after);
  }
  if (src.numel() > 0) detail::copy_strided(src, dst);
  if (needs_grad(x)) {
    record(out, "pad", {&x}, [undo](const Tensor<T>& g) { return pad(g, undo); });
  }
  return out;
}

template <Element T>
Tensor<T> flip(const Tensor<T>& x, const std::vector<int64_t>& dims) {
  require(x, "flip");
  if (dims.empty()) return x.clone();  // not wrap_dims' "every dim"
  Tensor<T> y = x;
  for (int64_t d : detail::wrap_dims(dims, x.dim(), "flip")) {
    const int64_t n = x.shape()[d];
    std::vector<int64_t> reversed(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) reversed[static_cast<size_t>(i)] = n - 1 - i;
    y = index_select(y, d, tensor<int64_t>(reversed));
  }
  return x.dim() == 0 ? x.clone() : y;
}

template <Element T>
Tensor<T> repeat(const Tensor<T>& x, const std::vector<int64_t>& repeats) {
  require(x, "repeat");
  const int64_t r = static_cast<int64_t>(repeats.size());
  if (r < x.dim()) {
    throw ShapeError(cat_str("repeat: ", r, " counts for the ", x.dim(), " dims of ", x.shape(),
                             "; give at least one per dim"));
  }
  // x as [1, s0, 1, s1, ...], expanded to [r0, s0, r1, s1, ...], copied to [r0 * s0, r1 * s1, ...].
  Shape spread, expanded, out;
  for (int64_t i = 0; i < r; ++i) {
    const int64_t size = i < r - x.dim() ? 1 : x.shape()[i - (r - x.dim())];
    const int64_t count = repeats[static_cast<size_t>(i)];
    if (count < 0) throw ValueError(cat_str("repeat: counts must be >= 0, got ", count, " for dim ", i));
    int64_t total = 0;
    if (__builtin_mul_overflow(size, count, &total)) {
      throw ShapeError(cat_str("repeat: ", count, " copies of dim ", i, " of size ", size, " overflow int64"));
    }
    spread.push_back(1);
    spread.push_back(size);
    expanded.push_back(count);
    expanded.push_back(size);
    out.push_back(total);
  }
  checked_nbytes(out, sizeof(T), "repeat");  // the element and byte counts, before anything is copied
  Tensor<T> y = x.reshape(spread).expand(expanded).contiguous();
  if (y.impl()->storage == x.impl()->storage) y = y.clone();  // every count 1: still a copy
  return y.reshape(out);
}

namespace {
template <Element T>
Tensor<T> triangle(const Tensor<T>& x, int64_t diagonal, bool lower, const char* op) {
  require(x, op);
  if (x.dim() < 2) throw ShapeError(cat_str(op, ": input ", x.shape(), " must have at least 2 dims"));
  const Tensor<T> xc = x.detach().contiguous();
  Tensor<T> out = new_tensor<T>(x.shape(), op);
  const int64_t rows = x.shape()[x.dim() - 2], cols = x.shape()[x.dim() - 1];
  const int64_t mats = rows * cols == 0 ? 0 : x.numel() / (rows * cols);
  const T* px = xc.data_ptr();
  T* po = out.data_ptr();
  for (int64_t m = 0; m < mats; ++m)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t at = (m * rows + i) * cols + j;
        po[at] = (lower ? j - i <= diagonal : j - i >= diagonal) ? px[at] : T(0);
      }
  if constexpr (FloatingElement<T>) {
    if (needs_grad(x)) {
      record(out, op, {&x}, [diagonal, lower, op](const Tensor<T>& g) { return triangle(g, diagonal, lower, op); });
    }
  }
  return out;
}
}  // namespace

template <Element T>
Tensor<T> tril(const Tensor<T>& x, int64_t diagonal) {
  return triangle(x, diagonal, true, "tril");
}
template <Element T>
Tensor<T> triu(const Tensor<T>& x, int64_t diagonal) {
  return triangle(x, diagonal, false, "triu");
}

template <Element T>
Tensor<T> cumsum(const Tensor<T>& x, int64_t dim_in) {
  require(x, "cumsum");
  const int64_t dim = wrap_dim(dim_in, std::max<int64_t>(x.dim(), 1), "cumsum");  // a scalar takes dim 0 or -1
  const Tensor<T> xc = x.detach().contiguous();
  Tensor<T> out = new_tensor<T>(x.shape(), "cumsum");
  const int64_t n = x.dim() == 0 ? 1 : x.shape()[dim];
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  const int64_t outer = n * inner == 0 ? 0 : x.numel() / (n * inner);
  using Acc = std::conditional_t<FloatingElement<T>, double, int64_t>;
  const T* px = xc.data_ptr();
  T* po = out.data_ptr();
  std::vector<Acc> run(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    std::fill(run.begin(), run.end(), Acc(0));
    for (int64_t k = 0; k < n; ++k) {
      const int64_t base = (o * n + k) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        run[static_cast<size_t>(i)] += static_cast<Acc>(px[base + i]);
        po[base + i] = static_cast<T>(run[static_cast<size_t>(i)]);
      }
    }
  }
  if constexpr (FloatingElement<T>) {
    if (needs_grad(x)) {
      // d/dx_k of sum_j g_j y_j is the sum of g_j for j >= k: a cumsum from the end.
      record(out, "cumsum", {&x}, [dim, scalar = x.dim() == 0](const Tensor<T>& g) {
        return scalar ? g : flip(cumsum(flip(g, {dim}), dim), {dim});
      });
    }
  }
  return out;
}

Tensor<int64_t> one_hot(const Tensor<int64_t>& indices, int64_t num_classes) {
  require(indices, "one_hot");
  const std::vector<int64_t> v = indices.to_vector();
  if (num_classes < 0) {
    if (num_classes != -1) throw ValueError(cat_str("one_hot: num_classes must be -1 or >= 0, got ", num_classes));
    if (v.empty()) throw ValueError("one_hot: cannot take the number of classes from an empty tensor; give num_classes");
    num_classes = *std::max_element(v.begin(), v.end()) + 1;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0 || v[i] >= num_classes) {
      throw IndexError(cat_str("one_hot: index ", v[i], " at position ", i, " is out of range for ", num_classes,
                               " classes"));
    }
  }
  Shape shape = indices.shape();
  shape.push_back(num_classes);
  Tensor<int64_t> out = new_tensor<int64_t>(shape, "one_hot");
  int64_t* po = out.data_ptr();
  std::fill(po, po + out.numel(), int64_t(0));
  for (size_t i = 0; i < v.size(); ++i) po[static_cast<int64_t>(i) * num_classes + v[i]] = 1;
  return out;
}

namespace {
// x [*, C, H, W] viewed as [*, split...], its last five dims permuted by `order`, then reshaped to
// [*, merged...]: pixel_shuffle and pixel_unshuffle, through views so they differentiate.
template <Element T>
Tensor<T> regroup_pixels(const Tensor<T>& x, std::initializer_list<int64_t> split, std::initializer_list<int64_t> order,
                         std::initializer_list<int64_t> merged) {
  const std::vector<int64_t> lead(x.shape().begin(), x.shape().begin() + (x.dim() - 3));
  auto with_lead = [&](std::initializer_list<int64_t> tail) {
    std::vector<int64_t> s = lead;
    s.insert(s.end(), tail);
    return Shape(s);
  };
  Shape permutation;
  for (size_t i = 0; i < lead.size(); ++i) permutation.push_back(static_cast<int64_t>(i));
  for (int64_t i : order) permutation.push_back(static_cast<int64_t>(lead.size()) + i);
  return x.reshape(with_lead(split)).permute(permutation).reshape(with_lead(merged));
}

void check_pixel_input(const Shape& x, int64_t r, const char* op, const char* factor) {
  if (x.size() < 3) throw ShapeError(cat_str(op, ": input ", x, " must have at least 3 dims [*, C, H, W]"));
  if (r <= 0) throw ValueError(cat_str(op, ": ", factor, " must be positive, got ", r));
}
}  // namespace

template <Element T>
Tensor<T> pixel_shuffle(const Tensor<T>& x, int64_t r) {
  require(x, "pixel_shuffle");
  check_pixel_input(x.shape(), r, "pixel_shuffle", "upscale_factor");
  const int64_t d = x.dim(), c = x.shape()[d - 3], h = x.shape()[d - 2], w = x.shape()[d - 1];
  if (c % (r * r) != 0) {
    throw ShapeError(cat_str("pixel_shuffle: the ", c, " channels of input ", x.shape(),
                             " are not divisible by upscale_factor^2 = ", r * r));
  }
  // [C, r, r, H, W] -> [C, H, r, W, r]
  return regroup_pixels(x, {c / (r * r), r, r, h, w}, {0, 3, 1, 4, 2}, {c / (r * r), h * r, w * r});
}

template <Element T>
Tensor<T> pixel_unshuffle(const Tensor<T>& x, int64_t r) {
  require(x, "pixel_unshuffle");
  check_pixel_input(x.shape(), r, "pixel_unshuffle", "downscale_factor");
  const int64_t d = x.dim(), c = x.shape()[d - 3], h = x.shape()[d - 2], w = x.shape()[d - 1];
  if (h % r != 0 || w % r != 0) {
    throw ShapeError(cat_str("pixel_unshuffle: the height and width of input ", x.shape(),
                             " are not divisible by downscale_factor ", r));
  }
  // [C, H, r, W, r] -> [C, r, r, H, W]
  return regroup_pixels(x, {c, h / r, r, w / r, r}, {0, 2, 4, 1, 3}, {c * r * r, h / r, w / r});
}

template <Element T> Tensor<T> Tensor<T>::flip(const std::vector<int64_t>& dims) const { return ember::flip(*this, dims); }
template <Element T> Tensor<T> Tensor<T>::repeat(const std::vector<int64_t>& r) const { return ember::repeat(*this, r); }
template <Element T> Tensor<T> Tensor<T>::tril(int64_t diagonal) const { return ember::tril(*this, diagonal); }
template <Element T> Tensor<T> Tensor<T>::triu(int64_t diagonal) const { return ember::triu(*this, diagonal); }
template <Element T> Tensor<T> Tensor<T>::cumsum(int64_t dim) const { return ember::cumsum(*this, dim); }

#define EMBER_INSTANTIATE_ALL(T)                                                              \
  template Tensor<T> pixel_shuffle(const Tensor<T>&, int64_t);                                \
  template Tensor<T> pixel_unshuffle(const Tensor<T>&, int64_t);                              \
  template Tensor<T> Tensor<T>::flip(const std::vector<int64_t>&) const;                      \
  template Tensor<T> Tensor<T>::repeat(const std::vector<int64_t>&) const;                    \
  template Tensor<T> Tensor<T>::tril(int64_t) const;                                          \
  template Tensor<T> Tensor<T>::triu(int64_t) const;                                          \
  template Tensor<T> Tensor<T>::cumsum(int64_t) const;                                        \
  template Tensor<T> flip(const Tensor<T>&, const std::vector<int64_t>&);                     \
  template Tensor<T> repeat(const Tensor<T>&, const std::vector<int64_t>&);                   \
  template Tensor<T> tril(const Tensor<T>&, int64_t);                                         \
  template Tensor<T> triu(const Tensor<T>&, int64_t);                                         \
  template Tensor<T> cumsum(const Tensor<T>&, int64_t);                                       \
  template Tensor<T> cat(const std::vector<Tensor<T>>&, int64_t);                             \
  template Tensor<T> stack(const std::vector<Tensor<T>>&, int64_t);                           \
  template std::vector<Tensor<T>> split(const Tensor<T>&, const std::vector<int64_t>&, int64_t); \
  template Tensor<T> index_select(const Tensor<T>&, int64_t, const Tensor<int64_t>&);         \
  template Tensor<T> gather(const Tensor<T>&, int64_t, const Tensor<int64_t>&);
EMBER_INSTANTIATE_ALL(float)
EMBER_INSTANTIATE_ALL(double)
EMBER_INSTANTIATE_ALL(int64_t)
EMBER_INSTANTIATE_ALL(int32_t)
EMBER_INSTANTIATE_ALL(uint8_t)
EMBER_INSTANTIATE_ALL(int8_t)
#undef EMBER_INSTANTIATE_ALL

#define EMBER_INSTANTIATE_FLOAT(T)                                                               \
  template Tensor<T> scatter_add(const Tensor<T>&, int64_t, const Tensor<int64_t>&, const Tensor<T>&); \
  template Tensor<T> pad(const Tensor<T>&, const std::vector<int64_t>&, PadMode, double);         \
  template Tensor<T> detail::slice_backward(const Tensor<T>&, const Shape&, int64_t, int64_t, int64_t);
EMBER_INSTANTIATE_FLOAT(float)
EMBER_INSTANTIATE_FLOAT(double)
#undef EMBER_INSTANTIATE_FLOAT

}  // namespace ember
