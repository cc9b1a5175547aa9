// 2-D convolution as im2col + GEMM, with its two gradients (Note [Convolution gradients]).
#include "ember/ops/conv.hpp"

#include <vector>

#include "trace.hpp"
#include "common.hpp"
#include "conv_forward.hpp"

namespace ember {

using detail::require;

using autograd::needs_grad;
using autograd::record;
using autograd::record_bilinear;
using autograd::SavedTensor;
using detail::cat_str;
using detail::conv_dims;

namespace {

using detail::ConvDims;

std::string geometry_str(const Conv2dGeometry& p) {
  return cat_str("stride (", p.stride[0], ", ", p.stride[1], "), padding (", p.padding[0], ", ",
                 p.padding[1], ", ", p.padding[2], ", ", p.padding[3], "), dilation (", p.dilation[0],
                 ", ", p.dilation[1], "), groups ", p.groups);
}

// Output size of one spatial dim, or a negative number when the input is too small.
int64_t out_size(int64_t in, int64_t pad_a, int64_t pad_b, int64_t k, int64_t d, int64_t s) {
  const int64_t span = in + pad_a + pad_b - d * (k - 1) - 1;
  return span < 0 ? -1 : span / s + 1;
}

// Checks the geometry and the weight against an input of [n, c, h, w].

// One image of the convolution, for the backend's im2col / col2im.
backend::ConvShape conv_shape(const ConvDims& d, const Conv2dGeometry& p) {
  return {d.cg, d.h, d.w, d.kh, d.kw, d.ho, d.wo, p.stride[0], p.stride[1], p.padding[0], p.padding[2],
          p.dilation[0], p.dilation[1]};
}

// A 1x1, stride-1, unpadded convolution reads its input directly as the GEMM operand.
bool is_pointwise(const ConvDims& d, const Conv2dGeometry& p) {
  return d.kh == 1 && d.kw == 1 && p.stride[0] == 1 && p.stride[1] == 1 && p.padding[0] == 0 &&
         p.padding[1] == 0 && p.padding[2] == 0 && p.padding[3] == 0;
}

// Whether the convolution runs on the backend's flat kernels, without a column matrix (Note
// [Flat convolution] in src/backend/conv_flat.inl). Pointwise convolutions are plain GEMMs.
template <class T>
bool use_flat(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& p,
              const backend::ConvShape& cs) {
  return k.conv_flat != nullptr && !is_pointwise(d, p) && backend::conv_flat_applies(cs);
}

// The input gradient of a flat convolution is a flat convolution of the output gradient with
// the weights transposed and flipped, padded by dil * (k - 1) - pad.
backend::ConvShape transposed_flat_shape(const ConvDims& d, const backend::ConvShape& cs) {
  return {d.og, d.ho, d.wo, d.kh, d.kw, d.h, d.w, 1, 1, cs.dil_h * (d.kh - 1) - cs.pad_h,
          cs.dil_w * (d.kw - 1) - cs.pad_w, cs.dil_h, cs.dil_w};
}

// w'[g][c][o][kh-1-i][kw-1-j] = w[g][o][c][i][j] for each group g.
template <class T>
std::vector<T> transposed_flipped_weights(const T* w, const ConvDims& d) {
  const int64_t taps = d.kh * d.kw;
  std::vector<T> out(static_cast<size_t>(d.o * d.cg * taps));
  for (int64_t g = 0; g < d.g; ++g)
    for (int64_t o = 0; o < d.og; ++o)
      for (int64_t c = 0; c < d.cg; ++c)
        for (int64_t t = 0; t < taps; ++t)
          out[static_cast<size_t>(((g * d.cg + c) * d.og + o) * taps + (taps - 1 - t))] =
              w[((g * d.og + o) * d.cg + c) * taps + t];
  return out;
}

// Samples per task: enough GEMM work per task to pay for the hand-off.
int64_t sample_grain(const ConvDims& d) {
  const int64_t flops = d.o * d.k() * d.hw_out();
  return std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(flops, 1));
}

template <FloatingElement T>
Tensor<T> conv_forward_raw(const Tensor<T>& x_in, const Tensor<T>& w_in, const ConvDims& d,
                           const Conv2dGeometry& p) {
  Tensor<T> x = x_in.contiguous(), w = w_in.contiguous();
  Tensor<T> out = detail::new_tensor<T>({d.n, d.o, d.ho, d.wo}, "conv2d");
  const auto& k = backend::kernels<T>();
  const detail::ConvForward<T> f = detail::conv_forward_setup(k, d, p);
  const T* px = x.data_ptr();
  const T* pw = w.data_ptr();
  T* po = out.data_ptr();
  if (f.flat) {
    detail::conv_forward_samples(k, f, px, pw, po, 0, d.n, static_cast<T*>(nullptr));
    return out;
  }
  detail::parallel_for(0, d.n, sample_grain(d), [&](int64_t b, int64_t e) {
    std::vector<T> cols(static_cast<size_t>(f.cols_elements()));
    detail::conv_forward_samples(k, f, px, pw, po, b, e, cols.data());
  });
  return out;
}

template <FloatingElement T>
Tensor<T> conv_input_grad_raw(const Tensor<T>& gy_in, const Tensor<T>& w_in, const ConvDims& d,
                              const Conv2dGeometry& p) {
  Tensor<T> gy = gy_in.contiguous(), w = w_in.contiguous();
  const auto& k = backend::kernels<T>();
  const T* pg = gy.data_ptr();
  const T* pw = w.data_ptr();
  const int64_t K = d.k(), HW = d.hw_out(), plane = d.h * d.w;
  const bool direct = is_pointwise(d, p);
  const backend::ConvShape cs = conv_shape(d, p);
  if (use_flat(k, d, p, cs)) {
    Tensor<T> gx = detail::new_tensor<T>({d.n, d.c, d.h, d.w}, "conv2d_input_grad");
    T* px = gx.data_ptr();
    const std::vector<T> wt = transposed_flipped_weights(pw, d);
    const backend::ConvShape ts = transposed_flat_shape(d, cs);
    detail::parallel_for(0, d.n, sample_grain(d), [&](int64_t b, int64_t e) {
      for (int64_t g = 0; g < d.g; ++g) {
        k.conv_flat(ts, d.cg, wt.data() + g * d.cg * d.og * d.kh * d.kw, e - b, pg + (b * d.o + g * d.og) * HW,
                    d.o * HW, px + (b * d.c + g * d.cg) * plane, d.c * plane);
      }
    });
    return gx;
  }
  Tensor<T> gx = zeros<T>({d.n, d.c, d.h, d.w});
  T* px = gx.data_ptr();
  detail::parallel_for(0, d.n, sample_grain(d), [&](int64_t b, int64_t e) {
    std::vector<T> cols(static_cast<size_t>(direct ? 0 : K * HW));
    for (int64_t n = b; n < e; ++n) {
      for (int64_t g = 0; g < d.g; ++g) {
        T* xg = px + (n * d.c + g * d.cg) * plane;
        const T* gyg = pg + (n * d.o + g * d.og) * HW;
        if (direct) {  // the columns are the input gradient itself
          k.gemm(true, false, K, HW, d.og, T(1), pw + g * d.og * K, K, gyg, HW, T(0), xg, HW);
        } else {
          k.gemm(true, false, K, HW, d.og, T(1), pw + g * d.og * K, K, gyg, HW, T(0), cols.data(), HW);
          k.col2im(cs, cols.data(), xg);
        }
      }
    }
  });
  return gx;
}

template <FloatingElement T>
Tensor<T> conv_weight_grad_raw(const Tensor<T>& x_in, const Tensor<T>& gy_in, const ConvDims& d,
                               const Conv2dGeometry& p) {
  Tensor<T> x = x_in.contiguous(), gy = gy_in.contiguous();
  const int64_t K = d.k(), HW = d.hw_out();
  const int64_t wsize = d.o * K;
  // One partial sum per task, added up in a fixed order afterwards.
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), d.n));
  std::vector<std::vector<T>> partial(static_cast<size_t>(tasks));
  const auto& k = backend::kernels<T>();
  const T* px = x.data_ptr();
  const T* pg = gy.data_ptr();
  const bool direct = is_pointwise(d, p);
  const backend::ConvShape cs = conv_shape(d, p);
  const bool flat = use_flat(k, d, p, cs);
  const int64_t plane = d.h * d.w;
  detail::parallel_for(0, tasks, 1, [&](int64_t tb, int64_t te) {
    std::vector<T> cols(static_cast<size_t>(direct || flat ? 0 : K * HW));
    for (int64_t t = tb; t < te; ++t) {
      std::vector<T>& acc = partial[static_cast<size_t>(t)];
      acc.assign(static_cast<size_t>(wsize), T(0));
      const int64_t n0 = t * d.n / tasks, n1 = (t + 1) * d.n / tasks;
      if (flat) {
        for (int64_t g = 0; g < d.g; ++g) {
          k.conv_flat_weight_grad(cs, d.og, n1 - n0, px + (n0 * d.c + g * d.cg) * plane, d.c * plane,
                                  pg + (n0 * d.o + g * d.og) * HW, d.o * HW, acc.data() + g * d.og * K);
        }
        continue;
      }
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t g = 0; g < d.g; ++g) {
          const T* xg = px + (n * d.c + g * d.cg) * plane;
          const T* operand = xg;
          if (!direct) {
            k.im2col(cs, xg, cols.data());
            operand = cols.data();
          }
          k.gemm(false, true, d.og, K, HW, T(1), pg + (n * d.o + g * d.og) * HW, HW, operand, HW, T(1),
                 acc.data() + g * d.og * K, K);
        }
      }
    }
  });
  Tensor<T> gw = zeros<T>({d.o, d.cg, d.kh, d.kw});
  T* pw = gw.data_ptr();
  for (const auto& acc : partial)
    for (int64_t i = 0; i < wsize; ++i) pw[i] += acc[static_cast<size_t>(i)];
  return gw;
}

}  // namespace

namespace detail {

ConvDims conv_dims(const char* op, const Shape& x, const Shape& weight, const Conv2dGeometry& p) {
  if (x.size() != 4) throw ShapeError(cat_str(op, ": input ", x, " must be 4-D [N, C, H, W]"));
  if (weight.size() != 4) {
    throw ShapeError(cat_str(op, ": weight ", weight, " must be 4-D [out, in / groups, kh, kw]"));
  }
  if (p.groups < 1 || p.stride[0] < 1 || p.stride[1] < 1 || p.dilation[0] < 1 || p.dilation[1] < 1) {
    throw ValueError(cat_str(op, ": groups, stride and dilation must be >= 1 (", geometry_str(p), ")"));
  }
  // Negative bottom/right padding crops; conv_transpose2d's output_padding needs it.
  if (p.padding[0] < 0 || p.padding[2] < 0) {
    throw ValueError(cat_str(op, ": padding must be >= 0 (", geometry_str(p), ")"));
  }
  if (weight[2] < 1 || weight[3] < 1) {
    throw ShapeError(cat_str(op, ": weight ", weight, " has an empty kernel (", weight[2], "x", weight[3],
                             "); kernels are at least 1x1"));
  }
  ConvDims d{x[0], x[1], x[2], x[3], weight[0], weight[2], weight[3], 0, 0, p.groups, 0, 0};
  if (d.c % d.g != 0 || d.o % d.g != 0) {
    throw ShapeError(cat_str(op, ": ", d.c, " input and ", d.o, " output channels must both be divisible "
                             "by groups ", d.g));
  }
  d.cg = d.c / d.g;
  d.og = d.o / d.g;
  if (weight[1] != d.cg) {
    throw ShapeError(cat_str(op, ": input ", x, " has ", d.c, " channels but weight ", weight, " expects ",
                             weight[1] * d.g, " (", weight[1], " per group x ", d.g, " groups)"));
  }
  d.ho = out_size(d.h, p.padding[0], p.padding[1], d.kh, p.dilation[0], p.stride[0]);
  d.wo = out_size(d.w, p.padding[2], p.padding[3], d.kw, p.dilation[1], p.stride[1]);
  if (d.ho <= 0 || d.wo <= 0) {
    throw ShapeError(cat_str(op, ": input ", x, " is smaller than the kernel ", weight[2], "x", weight[3],
                             " with ", geometry_str(p)));
  }
  return d;
}

template <class T>
ConvForward<T> conv_forward_setup(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& p) {
  ConvForward<T> f;
  f.d = d;
  f.shape = conv_shape(d, p);
  f.pointwise = is_pointwise(d, p);
  f.flat = use_flat(k, d, p, f.shape);
  return f;
}

template <class T>
void conv_forward_samples(const backend::Kernels<T>& k, const ConvForward<T>& f, const T* px, const T* pw, T* po,
                          int64_t b, int64_t e, T* cols) {
  const ConvDims& d = f.d;
  const int64_t K = d.k(), HW = d.hw_out();
  const int64_t plane = d.h * d.w;
  if (f.flat) {
    detail::parallel_for(b, e, sample_grain(d), [&](int64_t s, int64_t t) {
      for (int64_t g = 0; g < d.g; ++g) {
        k.conv_flat(f.shape, d.og, pw + g * d.og * K, t - s, px + (s * d.c + g * d.cg) * plane, d.c * plane,
                    po + (s * d.o + g * d.og) * HW, d.o * HW);
      }
    });
    return;
  }
  for (int64_t n = b; n < e; ++n) {
    for (int64_t g = 0; g < d.g; ++g) {
      const T* xg = px + (n * d.c + g * d.cg) * plane;
      const T* operand = xg;
      if (!f.pointwise) {
        k.im2col(f.shape, xg, cols);
        operand = cols;
      }
      k.gemm(false, false, d.og, HW, K, T(1), pw + g * d.og * K, K, operand, HW, T(0),
             po + (n * d.o + g * d.og) * HW, HW);
    }
  }
}

template ConvForward<float> conv_forward_setup(const backend::Kernels<float>&, const ConvDims&, const Conv2dGeometry&);
template ConvForward<double> conv_forward_setup(const backend::Kernels<double>&, const ConvDims&,
                                                const Conv2dGeometry&);
template void conv_forward_samples(const backend::Kernels<float>&, const ConvForward<float>&, const float*,
                                   const float*, float*, int64_t, int64_t, float*);
template void conv_forward_samples(const backend::Kernels<double>&, const ConvForward<double>&, const double*,
                                   const double*, double*, int64_t, int64_t, double*);

}  // namespace detail

template <FloatingElement T>
Tensor<T> conv2d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias,
                 const Conv2dGeometry& p) {
  detail::TracedOp traced;
  require(x, "conv2d");
  require(weight, "conv2d");
  const ConvDims d = conv_dims("conv2d", x.shape(), weight.shape(), p);
  if (bias.defined() && (bias.dim() != 1 || bias.shape()[0] != d.o)) {
    throw ShapeError(cat_str("conv2d: bias ", bias.shape(), " for ", d.o, " output channels"));
  }
  Tensor<T> out = conv_forward_raw(x.detach(), weight.detach(), d, p);
  if (bias.defined()) out.add_(bias.detach().reshape({1, d.o, 1, 1}));
  if (needs_grad(x, weight, bias)) {
    const bool nx = x.requires_grad(), nw = weight.requires_grad();
    record(out, "conv2d", {&x, &weight, &bias},
           [sx = nw ? SavedTensor<T>(x) : SavedTensor<T>(), sw = nx ? SavedTensor<T>(weight) : SavedTensor<T>(),
            nx, nw, has_bias = bias.defined(), p, hw = std::array<int64_t, 2>{d.h, d.w},
            wshape = weight.shape()](const Tensor<T>& g) {
             std::vector<Tensor<T>> grads(3);
             if (nx) grads[0] = conv2d_input_grad(g, sw.get("conv2d"), hw, p);
             if (nw) grads[1] = conv2d_weight_grad(sx.get("conv2d"), g, wshape, p);
             if (has_bias) grads[2] = g.sum({0, 2, 3});
             return grads;
           });
  }
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->conv2d(x, weight, bias, p, out);
  }
  return out;
}

template <FloatingElement T>
Tensor<T> conv2d_input_grad(const Tensor<T>& gy, const Tensor<T>& weight, std::array<int64_t, 2> hw,
                            const Conv2dGeometry& p) {
  require(gy, "conv2d_input_grad");
  require(weight, "conv2d_input_grad");
  if (gy.dim() != 4) throw ShapeError(cat_str("conv2d_input_grad: gradient ", gy.shape(), " must be 4-D"));
  if (weight.dim() != 4) throw ShapeError(cat_str("conv2d_input_grad: weight ", weight.shape(), " must be 4-D"));
  const Shape x_shape{gy.shape()[0], weight.shape()[1] * p.groups, hw[0], hw[1]};
  const ConvDims d = conv_dims("conv2d_input_grad", x_shape, weight.shape(), p);
  if (gy.shape()[1] != d.o || gy.shape()[2] != d.ho || gy.shape()[3] != d.wo) {
    throw ShapeError(cat_str("conv2d_input_grad: gradient ", gy.shape(), " does not match the output [",
                             d.n, ", ", d.o, ", ", d.ho, ", ", d.wo, "] of an input ", x_shape));
  }
  Tensor<T> gx = conv_input_grad_raw(gy.detach(), weight.detach(), d, p);
  if (needs_grad(gy, weight)) {
    record_bilinear(
        gx, "conv2d_input_grad", gy, weight,
        [p](const Tensor<T>& gg, const Tensor<T>& w) { return conv2d(gg, w, Tensor<T>(), p); },
        [p, wshape = weight.shape()](const Tensor<T>& gg, const Tensor<T>& gy) {
          return conv2d_weight_grad(gg, gy, wshape, p);
        });
  }
  return gx;
}

template <FloatingElement T>
Tensor<T> conv2d_weight_grad(const Tensor<T>& x, const Tensor<T>& gy, const Shape& wshape,
                             const Conv2dGeometry& p) {
  require(x, "conv2d_weight_grad");
  require(gy, "conv2d_weight_grad");
  const ConvDims d = conv_dims("conv2d_weight_grad", x.shape(), wshape, p);
  if (gy.dim() != 4 || gy.shape()[0] != d.n || gy.shape()[1] != d.o || gy.shape()[2] != d.ho ||
      gy.shape()[3] != d.wo) {
    throw ShapeError(cat_str("conv2d_weight_grad: gradient ", gy.shape(), " does not match the output [",
                             d.n, ", ", d.o, ", ", d.ho, ", ", d.wo, "]"));
  }
  Tensor<T> gw = conv_weight_grad_raw(x.detach(), gy.detach(), d, p);
  if (needs_grad(x, gy)) {
    record_bilinear(
        gw, "conv2d_weight_grad", x, gy,
        [p, hw = std::array<int64_t, 2>{d.h, d.w}](const Tensor<T>& gg, const Tensor<T>& gy) {
          return conv2d_input_grad(gy, gg, hw, p);
        },
        [p](const Tensor<T>& gg, const Tensor<T>& x) { return conv2d(x, gg, Tensor<T>(), p); });
  }
  return gw;
}

#define EMBER_INSTANTIATE(T)                                                                       \
  template Tensor<T> conv2d(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const Conv2dGeometry&); \
  template Tensor<T> conv2d_input_grad(const Tensor<T>&, const Tensor<T>&, std::array<int64_t, 2>,  \
                                       const Conv2dGeometry&);                                      \
  template Tensor<T> conv2d_weight_grad(const Tensor<T>&, const Tensor<T>&, const Shape&,           \
                                        const Conv2dGeometry&);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember
