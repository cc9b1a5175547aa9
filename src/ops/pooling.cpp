// Pooling. max_pool2d finds the window maxima and their indices on the backend; its gradient is
// gather's, scatter_add into zeros (the backend's index_accumulate, plane by plane, unless a graph
// is being built, so that it stays differentiable); average pooling is a depthwise convolution
// with a constant kernel divided by PyTorch's window counts.
#include "ember/ops/pooling.hpp"

#include <cmath>
#include <limits>
#include <utility>

#include "trace.hpp"
#include "common.hpp"
#include "ember/autograd/grad_mode.hpp"

namespace ember {

using detail::cat_str;

namespace {

// Output size of pooling along one dim, with PyTorch's ceil_mode rule (the last window must
// start inside the input or its left padding).
int64_t pooled_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t span = in + 2 * p - d * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

// Whether a window along one dim lies wholly in the padding: possible with dilation, as
// PyTorch bounds the padding by half the kernel, not by half its dilated extent. PyTorch gives
// such a window -inf and an index past the plane; here its index is -1 (the backend's
// max_pool2d) and it passes no gradient.
bool has_empty_window(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, int64_t out) {
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * s - p;
    bool any = false;
    for (int64_t i = 0; i < k && !any; ++i) any = start + i * d >= 0 && start + i * d < in;
    if (!any) return true;
  }
  return false;
}

// Bin i of `out` adaptive-pooling bins over `in` positions: [floor(i in / out), ceil((i + 1) in / out)),
// PyTorch's bins.
std::pair<int64_t, int64_t> adaptive_bin(int64_t i, int64_t in, int64_t out) {
  return {(i * in) / out, ((i + 1) * in + out - 1) / out};
}

void check_pool(const char* op, const Shape& x, IntPair k, IntPair s, IntPair p, IntPair d) {
  if (x.size() != 4) throw ShapeError(cat_str(op, ": input ", x, " must be 3-D [C, H, W] or 4-D [N, C, H, W]"));
  if (k.h <= 0 || k.w <= 0 || s.h <= 0 || s.w <= 0 || d.h <= 0 || d.w <= 0) {
    throw ValueError(cat_str(op, ": kernel size, stride and dilation must be positive"));
  }
  if (p.h < 0 || p.w < 0 || 2 * p.h > k.h || 2 * p.w > k.w) {
    throw ValueError(cat_str(op, ": padding (", p.h, ", ", p.w, ") must be >= 0 and at most half the kernel (",
                             k.h, ", ", k.w, ")"));
  }
}

}  // namespace

template <FloatingElement T>
Tensor<T> max_pool2d(const Tensor<T>& x, IntPair k, const MaxPool2dOptions& o) {
  if (x.defined() && x.dim() == 3) return max_pool2d(x.unsqueeze(0), k, o).squeeze(0);
  detail::TracedOp traced;
  if (!x.defined()) throw ValueError("max_pool2d: the input is undefined");
  const IntPair s = o.stride.h == 0 ? k : o.stride;
  check_pool("max_pool2d", x.shape(), k, s, o.padding, o.dilation);
  const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const int64_t ho = pooled_size(h, k.h, s.h, o.padding.h, o.dilation.h, o.ceil_mode);
  const int64_t wo = pooled_size(w, k.w, s.w, o.padding.w, o.dilation.w, o.ceil_mode);
  if (ho <= 0 || wo <= 0) {
    throw ShapeError(cat_str("max_pool2d: input ", x.shape(), " is smaller than the kernel (", k.h, ", ", k.w, ")"));
  }
  Tensor<T> xc = x.detach().contiguous();
  Tensor<int64_t> idx = detail::new_tensor<int64_t>({n, c, ho * wo}, "max_pool2d");
  Tensor<T> out = detail::new_tensor<T>({n, c, ho, wo}, "max_pool2d");
  const T* px = xc.data_ptr();
  int64_t* pi = idx.data_ptr();
  T* pv = out.data_ptr();
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(ho * wo * k.h * k.w, 1));
  const bool two_by_two = k.h == 2 && k.w == 2 && s.h == 2 && s.w == 2 && o.padding.h == 0 &&
                          o.padding.w == 0 && o.dilation.h == 1 && o.dilation.w == 1 && ho == h / 2 && wo == w / 2;
  const auto& kern = backend::kernels<T>();
  const backend::PoolShape shape{h, w, ho, wo, k.h, k.w, s.h, s.w, o.padding.h, o.padding.w, o.dilation.h,
                                 o.dilation.w};
  detail::parallel_for(0, n * c, grain, [&](int64_t b, int64_t e) {
    if (two_by_two) {  // the common case, with a kernel of its own
      kern.max_pool2x2(e - b, h, w, px + b * h * w, pv + b * ho * wo, pi + b * ho * wo);
    } else {
      kern.max_pool2d(shape, e - b, px + b * h * w, pv + b * ho * wo, pi + b * ho * wo);
    }
  });
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->max_pool2d(x, shape, two_by_two, out);
  }
  if (autograd::needs_grad(x)) {
    // The gradient goes to each window's maximum: gather's gradient, scatter_add into zeros.
    // Without create_graph it is one pass over the indices instead of scatter_add's copy and
    // strided walk. Windows wholly in the padding (index -1) pass none: for scatter_add their
    // index becomes 0 and their gradient 0 (selected, not multiplied: it may be infinite, as the
    // gradient of their -inf).
    const bool empty = has_empty_window(h, k.h, s.h, o.padding.h, o.dilation.h, ho) ||
                       has_empty_window(w, k.w, s.w, o.padding.w, o.dilation.w, wo);
    Tensor<int64_t> safe_idx = idx;
    Tensor<uint8_t> inside;
    if (empty) {
      safe_idx = detail::new_tensor<int64_t>({n, c, ho * wo}, "max_pool2d");
      inside = detail::new_tensor<uint8_t>({n, c, ho * wo}, "max_pool2d");
      int64_t* ps = safe_idx.data_ptr();
      uint8_t* pk = inside.data_ptr();
      for (int64_t i = 0; i < n * c * ho * wo; ++i) {
        ps[i] = pi[i] < 0 ? 0 : pi[i];
        pk[i] = pi[i] < 0 ? 0 : 1;
      }
    }
    autograd::record(out, "max_pool2d", {&x}, [idx, safe_idx, inside, empty, x_shape = x.shape(), n, c, hw = h * w,
                                               howo = ho * wo](const Tensor<T>& g) {
      if (autograd::grad_mode_enabled()) {
        const Tensor<T> gp = empty ? where(inside, g.reshape({n, c, howo}), 0.0) : g.reshape({n, c, howo});
        return std::vector<Tensor<T>>{scatter_add(zeros<T>({n, c, hw}), 2, safe_idx, gp).reshape(x_shape)};
      }
      const Tensor<T> gc = g.contiguous();
      Tensor<T> gx = zeros<T>(x_shape);
      const T* pg = gc.data_ptr();
      const int64_t* pidx = idx.data_ptr();
      T* pgx = gx.data_ptr();
      const auto& kern = backend::kernels<T>();
      detail::parallel_for(0, n * c, std::max<int64_t>(1, 4096 / std::max<int64_t>(howo, 1)),
                           [&](int64_t b, int64_t e) {
        for (int64_t plane = b; plane < e; ++plane) {
          if (!empty) {
            kern.index_accumulate(howo, pidx + plane * howo, pg + plane * howo, 1, pgx + plane * hw);
            continue;
          }
          for (int64_t i = plane * howo; i < (plane + 1) * howo; ++i)
            if (pidx[i] >= 0) pgx[plane * hw + pidx[i]] += pg[i];
        }
      });
      return std::vector<Tensor<T>>{gx};
    });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> max_pool1d(const Tensor<T>& x, int64_t k, const MaxPool2dOptions& o) {
  if (x.defined() && x.dim() == 2) return max_pool1d(x.unsqueeze(0), k, o).squeeze(0);
  if (!x.defined() || x.dim() != 3) {
    throw ShapeError("max_pool1d: input must be 2-D [C, L] or 3-D [N, C, L], got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  MaxPool2dOptions o2{IntPair(1, o.stride.w == 0 ? k : o.stride.w), IntPair(0, o.padding.w),
                      IntPair(1, o.dilation.w), o.ceil_mode};
  return max_pool2d(x.unsqueeze(2), IntPair(1, k), o2).squeeze(2);
}

template <FloatingElement T>
Tensor<T> avg_pool2d(const Tensor<T>& x, IntPair k, const AvgPool2dOptions& o) {
  if (x.defined() && x.dim() == 3) return avg_pool2d(x.unsqueeze(0), k, o).squeeze(0);
  detail::TracedOp traced;
  if (!x.defined()) throw ValueError("avg_pool2d: the input is undefined");
  const IntPair s = o.stride.h == 0 ? k : o.stride;
  check_pool("avg_pool2d", x.shape(), k, s, o.padding, IntPair(1));
  const int64_t c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const int64_t ho = pooled_size(h, k.h, s.h, o.padding.h, 1, o.ceil_mode);
  const int64_t wo = pooled_size(w, k.w, s.w, o.padding.w, 1, o.ceil_mode);
  if (ho <= 0 || wo <= 0) {
    throw ShapeError(cat_str("avg_pool2d: input ", x.shape(), " is smaller than the kernel (", k.h, ", ", k.w, ")"));
  }
  // Window sums: a depthwise convolution with a kernel of ones; ceil_mode windows that run past
  // the padded input read zeros from extra bottom/right padding.
  Conv2dGeometry g;
  g.stride = {s.h, s.w};
  g.groups = c;
  const int64_t extra_h = std::max<int64_t>(0, (ho - 1) * s.h + k.h - (h + 2 * o.padding.h));
  const int64_t extra_w = std::max<int64_t>(0, (wo - 1) * s.w + k.w - (w + 2 * o.padding.w));
  g.padding = {o.padding.h, o.padding.h + extra_h, o.padding.w, o.padding.w + extra_w};
  Tensor<T> sums = ember::conv2d(x, ones<T>({c, 1, k.h, k.w}), Tensor<T>(), g);
  // PyTorch's divisor per window: its size clipped to the padded input (count_include_pad), or
  // to the input itself.
  std::vector<T> div(static_cast<size_t>(ho * wo));
  for (int64_t oh = 0; oh < ho; ++oh) {
    for (int64_t ow = 0; ow < wo; ++ow) {
      int64_t hs = oh * s.h - o.padding.h, ws = ow * s.w - o.padding.w;
      int64_t he = std::min(hs + k.h, h + o.padding.h), we = std::min(ws + k.w, w + o.padding.w);
      int64_t count = (he - hs) * (we - ws);
      if (!o.count_include_pad) {
        hs = std::max<int64_t>(hs, 0);
        ws = std::max<int64_t>(ws, 0);
        he = std::min(he, h);
        we = std::min(we, w);
        count = (he - hs) * (we - ws);
      }
      div[static_cast<size_t>(oh * wo + ow)] = static_cast<T>(count);
    }
  }
  Tensor<T> y = sums / tensor<T>(div, {ho, wo});
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->avg_pool2d(x, g, k.h, k.w, div, y);
  }
  return y;
}

template <FloatingElement T>
Tensor<T> adaptive_avg_pool2d(const Tensor<T>& x, IntPair out) {
  if (!x.defined() || x.dim() < 3) {
    throw ShapeError("adaptive_avg_pool2d: input must be [N, C, H, W] or [C, H, W]");
  }
  if (out.h <= 0 || out.w <= 0) throw ValueError("adaptive_avg_pool2d: output size must be positive");
  const int64_t h = x.shape()[x.dim() - 2], w = x.shape()[x.dim() - 1];
  if (out.h == 1 && out.w == 1) {
    detail::TracedOp traced;
    Tensor<T> y = x.mean({-2, -1}, true);
    if constexpr (std::is_same_v<T, float>) {
      if (detail::OpTracer* t = traced.tracer()) t->mean_hw(x, y);
    }
    return y;
  }
  detail::TracedOp traced;
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->unsupported("adaptive_avg_pool2d to an output other than 1 x 1");
  }
  // Averaging matrices: y = P_h x P_w^T.
  auto averaging = [](int64_t in, int64_t o) {
    std::vector<T> m(static_cast<size_t>(o * in), T(0));
    for (int64_t i = 0; i < o; ++i) {
      const auto [start, end] = adaptive_bin(i, in, o);
      for (int64_t j = start; j < end; ++j) m[static_cast<size_t>(i * in + j)] = T(1) / static_cast<T>(end - start);
    }
    return tensor<T>(m, {o, in});
  };
  return matmul(matmul(averaging(h, out.h), x), averaging(w, out.w).t());
}

template <FloatingElement T>
ValuesIndices<T> adaptive_max_pool2d_with_indices(const Tensor<T>& x, IntPair out) {
  if (!x.defined() || x.dim() < 3 || x.dim() > 4) {
    throw ShapeError(cat_str("adaptive_max_pool2d: input must be [N, C, H, W] or [C, H, W], got ",
                             x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (out.h <= 0 || out.w <= 0) throw ValueError("adaptive_max_pool2d: output size must be positive");
  const int64_t h = x.shape()[x.dim() - 2], w = x.shape()[x.dim() - 1];
  if (h == 0 || w == 0) throw ShapeError(cat_str("adaptive_max_pool2d: input ", x.shape(), " has an empty plane"));
  detail::TracedOp traced;
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->unsupported("adaptive_max_pool2d");
  }
  Shape lead(x.shape().begin(), x.shape().end() - 2);
  Shape flat_shape = lead;
  flat_shape.push_back(-1);
  // Each bin's window as one row of its elements, its maximum by max(dim): the gradient goes to
  // the index, as PyTorch's. The index in the window becomes the index in the plane.
  std::vector<Tensor<T>> values;
  std::vector<Tensor<int64_t>> indices;
  for (int64_t i = 0; i < out.h; ++i) {
    const auto [h0, h1] = adaptive_bin(i, h, out.h);
    for (int64_t j = 0; j < out.w; ++j) {
      const auto [w0, w1] = adaptive_bin(j, w, out.w);
      Tensor<T> window = x.narrow(-2, h0, h1 - h0).narrow(-1, w0, w1 - w0).reshape(flat_shape);
      ValuesIndices<T> m = max(window, -1);
      std::vector<int64_t> at = m.indices.contiguous().to_vector();
      for (int64_t& a : at) a = (h0 + a / (w1 - w0)) * w + w0 + a % (w1 - w0);
      values.push_back(m.values);
      indices.push_back(tensor<int64_t>(at, m.indices.shape()));
    }
  }
  Shape out_shape = lead;
  out_shape.push_back(out.h);
  out_shape.push_back(out.w);
  return {stack(values, -1).reshape(out_shape), stack(indices, -1).reshape(out_shape)};
}

template <FloatingElement T>
Tensor<T> adaptive_max_pool2d(const Tensor<T>& x, IntPair out) {
  if (x.defined() && x.dim() >= 3 && x.dim() <= 4 && out.h > 0 && out.w > 0) {
    const int64_t h = x.shape()[x.dim() - 2], w = x.shape()[x.dim() - 1];
    // Bins that tile the plane are max_pool2d's windows (on the backend, traced by deploy).
    if (h > 0 && w > 0 && h % out.h == 0 && w % out.w == 0) return max_pool2d(x, IntPair(h / out.h, w / out.w));
  }
  return adaptive_max_pool2d_with_indices(x, out).values;
}

template <FloatingElement T>
ValuesIndices<T> adaptive_max_pool1d_with_indices(const Tensor<T>& x, int64_t output_size) {
  if (!x.defined() || x.dim() < 2 || x.dim() > 3) {
    throw ShapeError("adaptive_max_pool1d: input must be 2-D [C, L] or 3-D [N, C, L], got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (output_size <= 0) throw ValueError("adaptive_max_pool1d: output size must be positive");
  ValuesIndices<T> r = adaptive_max_pool2d_with_indices(x.unsqueeze(-2), IntPair(1, output_size));
  return {r.values.squeeze(-2), r.indices.squeeze(-2)};
}

template <FloatingElement T>
Tensor<T> adaptive_max_pool1d(const Tensor<T>& x, int64_t output_size) {
  return adaptive_max_pool1d_with_indices(x, output_size).values;
}

template <FloatingElement T>
Tensor<T> avg_pool1d(const Tensor<T>& x, int64_t k, const AvgPool2dOptions& o) {
  if (x.defined() && x.dim() == 2) return avg_pool1d(x.unsqueeze(0), k, o).squeeze(0);
  if (!x.defined() || x.dim() != 3) {
    throw ShapeError("avg_pool1d: input must be 2-D [C, L] or 3-D [N, C, L], got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  AvgPool2dOptions o2{IntPair(1, o.stride.w == 0 ? k : o.stride.w), IntPair(0, o.padding.w), o.ceil_mode,
                      o.count_include_pad};
  return avg_pool2d(x.unsqueeze(2), IntPair(1, k), o2).squeeze(2);
}

template <FloatingElement T>
Tensor<T> adaptive_avg_pool1d(const Tensor<T>& x, int64_t output_size) {
  if (!x.defined() || x.dim() < 2 || x.dim() > 3) {
    throw ShapeError("adaptive_avg_pool1d: input must be 2-D [C, L] or 3-D [N, C, L], got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (output_size <= 0) throw ValueError("adaptive_avg_pool1d: output size must be positive");
  return adaptive_avg_pool2d(x.unsqueeze(-2), IntPair(1, output_size)).squeeze(-2);
}

#define EMBER_INSTANTIATE(T)                                                               \
  template Tensor<T> avg_pool1d(const Tensor<T>&, int64_t, const AvgPool2dOptions&);      \
  template Tensor<T> adaptive_avg_pool1d(const Tensor<T>&, int64_t);                      \
  template Tensor<T> max_pool2d(const Tensor<T>&, IntPair, const MaxPool2dOptions&);      \
  template Tensor<T> max_pool1d(const Tensor<T>&, int64_t, const MaxPool2dOptions&);      \
  template Tensor<T> avg_pool2d(const Tensor<T>&, IntPair, const AvgPool2dOptions&);      \
  template Tensor<T> adaptive_avg_pool2d(const Tensor<T>&, IntPair);                      \
  template Tensor<T> adaptive_max_pool2d(const Tensor<T>&, IntPair);                      \
  template ValuesIndices<T> adaptive_max_pool2d_with_indices(const Tensor<T>&, IntPair);  \
  template Tensor<T> adaptive_max_pool1d(const Tensor<T>&, int64_t);                      \
  template ValuesIndices<T> adaptive_max_pool1d_with_indices(const Tensor<T>&, int64_t);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember
