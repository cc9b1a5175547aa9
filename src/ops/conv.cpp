// 2-D convolution as im2col + GEMM, with its two gradients (Note [Convolution gradients]).
#include "ember/ops/conv.hpp"

#include <algorithm>
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
using detail::conv_shape;
using detail::is_pointwise;
using detail::images_per_gemm;
using detail::sample_grain;
using detail::side_by_side;

namespace {

using detail::ConvDims;

// The op's lowering of images [b, e) in runs of `run` with the images innermost (Note [Columns
// with the images innermost] in src/ops/conv_forward.cpp): the forward, the input gradient (gx of
// those images, overwritten), and the weight gradient (added to gw).
template <class T>
struct Innermost {
  const backend::Kernels<T>& k;
  const backend::ConvShape& shape;
  const ConvDims& d;
  int64_t run;
  int64_t K = d.k(), HW = d.hw_out(), plane = d.h * d.w;
  detail::Scratch<T> images{d.cg * plane * run}, cols{K * HW * run}, outputs{d.og * HW * run};

  void forward(const T* px, const T* pw, T* po, int64_t b, int64_t e) {
    for (int64_t n0 = b; n0 < e; n0 += run) {
      const int64_t m = std::min(run, e - n0), ld = HW * m;
      for (int64_t g = 0; g < d.g; ++g) {
        lower(px, n0, m, g);
        k.gemm(false, false, d.og, ld, K, T(1), pw + g * d.og * K, K, cols.data(), ld, T(0), outputs.data(), ld);
        detail::deinterleave_images(outputs.data(), m, d.og * HW, po + (n0 * d.o + g * d.og) * HW, d.o * HW);
      }
    }
  }
  void input_grad(const T* pg, const T* pw, T* px, int64_t b, int64_t e) {
    for (int64_t n0 = b; n0 < e; n0 += run) {
      const int64_t m = std::min(run, e - n0), ld = HW * m;
      for (int64_t g = 0; g < d.g; ++g) {
        detail::interleave_images(pg + (n0 * d.o + g * d.og) * HW, d.o * HW, m, d.og * HW, outputs.data());
        k.gemm(true, false, K, ld, d.og, T(1), pw + g * d.og * K, K, outputs.data(), ld, T(0), cols.data(), ld);
        std::fill(images.data(), images.data() + d.cg * plane * m, T(0));
        detail::col2im_innermost(shape, m, cols.data(), images.data());
        detail::deinterleave_images(images.data(), m, d.cg * plane, px + (n0 * d.c + g * d.cg) * plane, d.c * plane);
      }
    }
  }
  void weight_grad(const T* px, const T* pg, T* gw, int64_t b, int64_t e) {
    for (int64_t n0 = b; n0 < e; n0 += run) {
      const int64_t m = std::min(run, e - n0), ld = HW * m;
      for (int64_t g = 0; g < d.g; ++g) {
        lower(px, n0, m, g);
        detail::interleave_images(pg + (n0 * d.o + g * d.og) * HW, d.o * HW, m, d.og * HW, outputs.data());
        k.gemm(false, true, d.og, K, ld, T(1), outputs.data(), ld, cols.data(), ld, T(1), gw + g * d.og * K, K);
      }
    }
  }

 private:
  void lower(const T* px, int64_t n0, int64_t m, int64_t g) {
    detail::interleave_images(px + (n0 * d.c + g * d.cg) * plane, d.c * plane, m, d.cg * plane, images.data());
    detail::im2col_innermost(shape, m, images.data(), cols.data());
  }
};

// From this many values of Winograd's transformed weights (8 MB in float: 512 x 256 channels and
// up) the threads share one transform (Note [Winograd's weights once per call]). Measured on
// AVX-512, 2 threads, against each thread transforming its own (one process alternating both):
// 512 x 512 channels on 7x7, 1-16 images, 1.2-1.7x faster; 256 x 256 (4 MB) level (0.93-1.04x);
// 128 x 128 (1 MB) on 28x28, 8 images, 0.91x, its U read from the other core's cache.
constexpr int64_t kSharedWinogradWeights = int64_t(1) << 21;

// run(b, e, u) over samples [0, n) of a flat convolution f, u Winograd's transformed weights
// (f.winograd) from w, else null.
template <class T, class Run>
void with_winograd_weights(const backend::Kernels<T>& k, const detail::ConvForward<T>& f, bool input_grad,
                           const T* w, Run&& run) {
  const int64_t n = f.d.n, elements = f.winograd_weights_elements();
  if (!f.winograd) return run(0, n, static_cast<const T*>(nullptr));
  if (elements >= kSharedWinogradWeights) {
    const detail::Scratch<T> u(elements);
    detail::winograd_weights(k, f, input_grad, w, u.data());
    return run(0, n, u.data());
  }
  // Each thread's own: its pieces of samples run nested, serially, as the flat kernels' would.
  detail::parallel_for(0, n, sample_grain(f.d), [&](int64_t b, int64_t e) {
    const detail::Scratch<T> u(elements);
    detail::winograd_weights(k, f, input_grad, w, u.data());
    run(b, e, u.data());
  });
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
  if (f.depthwise) {
    detail::parallel_for(0, d.n * d.c, detail::depthwise_grain(d), [&](int64_t i0, int64_t i1) {
      detail::depthwise_pairs(k, f, false, px, pw, po, i0, i1);
    });
    return out;
  }
  if (f.flat) {
    with_winograd_weights(k, f, false, pw, [&](int64_t b, int64_t e, const T* u) {
      detail::conv_forward_samples(k, f, px, pw, po, b, e, static_cast<T*>(nullptr), 1, u);
    });
    return out;
  }
  detail::parallel_for(0, d.n, sample_grain(d), [&](int64_t b, int64_t e) {
    if (const int64_t run = f.pointwise ? 0 : detail::images_innermost(d, e - b); run > 0) {
      Innermost<T>{k, f.shape, d, run}.forward(px, pw, po, b, e);
      return;
    }
    const int64_t images = images_per_gemm(d, e - b);
    const detail::Scratch<T> scratch(f.scratch_elements(images));
    detail::conv_forward_samples(k, f, px, pw, po, b, e, scratch.data(), images);
  });
  return out;
}

template <FloatingElement T>
Tensor<T> conv_input_grad_raw(const Tensor<T>& gy_in, const Tensor<T>& w_in, const ConvDims& d,
                              const Conv2dGeometry& p) {
  Tensor<T> gy = gy_in.contiguous(), w = w_in.contiguous();
  Tensor<T> gx = detail::new_tensor<T>({d.n, d.c, d.h, d.w}, "conv2d_input_grad");
  const auto& k = backend::kernels<T>();
  const detail::ConvForward<T> f = detail::conv_transpose_setup(k, d, p);
  const T* pg = gy.data_ptr();
  T* px = gx.data_ptr();
  if (f.depthwise) {
    detail::parallel_for(0, d.n * d.c, detail::depthwise_grain(d), [&](int64_t i0, int64_t i1) {
      detail::depthwise_pairs(k, f, true, pg, w.data_ptr(), px, i0, i1);
    });
    return gx;
  }
  if (f.flat) {
    const detail::Scratch<T> flipped(d.o * d.k());
    detail::transposed_flipped_weights(w.data_ptr(), d, flipped.data());
    with_winograd_weights(k, f, true, flipped.data(), [&](int64_t b, int64_t e, const T* u) {
      detail::conv_transpose_samples(k, f, pg, flipped.data(), px, b, e, static_cast<T*>(nullptr), 1, u);
    });
    return gx;
  }
  detail::parallel_for(0, d.n, sample_grain(d), [&](int64_t b, int64_t e) {
    if (const int64_t run = f.pointwise || f.phased ? 0 : detail::images_innermost(d, e - b); run > 0) {
      Innermost<T>{k, f.shape, d, run}.input_grad(pg, w.data_ptr(), px, b, e);
      return;
    }
    const int64_t images = detail::conv_transpose_images(f, e - b);
    const detail::Scratch<T> scratch(detail::conv_transpose_scratch_elements(f, images));
    detail::conv_transpose_samples(k, f, pg, w.data_ptr(), px, b, e, scratch.data(), images);
  });
  return gx;
}

template <FloatingElement T>
Tensor<T> conv_weight_grad_raw(const Tensor<T>& x_in, const Tensor<T>& gy_in, const ConvDims& d,
                               const Conv2dGeometry& p) {
  Tensor<T> x = x_in.contiguous(), gy = gy_in.contiguous();
  const int64_t K = d.k(), HW = d.hw_out();
  const int64_t wsize = d.o * K;
  const auto& k = backend::kernels<T>();
  const backend::ConvShape cs = conv_shape(d, p);
  if (detail::use_depthwise(k, d, cs)) {
    // The threads split the channels, each summing over every image: the same sums for any number
    // of threads.
    Tensor<T> gw = zeros<T>({d.o, d.cg, d.kh, d.kw});
    const T* px = x.data_ptr();
    const T* pg = gy.data_ptr();
    T* pw = gw.data_ptr();
    const int64_t plane = d.h * d.w;
    detail::parallel_for(0, d.c, std::max<int64_t>(1, detail::depthwise_grain(d) / d.n), [&](int64_t c0, int64_t c1) {
      backend::ConvShape s = cs;
      s.c = c1 - c0;
      k.conv_depthwise_weight_grad(s, d.og, d.n, px + c0 * plane, d.c * plane, pg + c0 * d.og * HW, d.o * HW,
                                   pw + c0 * d.og * K);
    });
    return gw;
  }
  // One partial sum per task, added up in a fixed order afterwards: the first task's in gw itself.
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), d.n));
  Tensor<T> gw = zeros<T>({d.o, d.cg, d.kh, d.kw});
  T* pw = gw.data_ptr();
  const detail::Scratch<T> partial((tasks - 1) * wsize);
  const T* px = x.data_ptr();
  const T* pg = gy.data_ptr();
  const bool direct = is_pointwise(d, p);
  const bool winograd = !direct && detail::use_winograd(k, cs, d.cg, d.og, true);
  const bool flat = winograd || (k.conv_flat_weight_grad != nullptr && !direct &&
                                 backend::conv_flat_weight_grad_applies(cs, d.og));
  const int64_t plane = d.h * d.w;
  const int64_t per_task = (d.n + tasks - 1) / tasks;
  const int64_t run = direct || flat ? 0 : detail::images_innermost(d, per_task);
  // Task t's partial sum, zeroed (the first task's is gw itself, already zero).
  auto partial_of = [&](int64_t t) {
    T* acc = t == 0 ? pw : partial.data() + (t - 1) * wsize;
    if (t > 0) std::fill(acc, acc + wsize, T(0));
    return acc;
  };
  detail::parallel_for(0, tasks, 1, [&](int64_t tb, int64_t te) {
    if (run > 0) {
      Innermost<T> lowering{k, cs, d, run};
      for (int64_t t = tb; t < te; ++t) {
        lowering.weight_grad(px, pg, partial_of(t), t * d.n / tasks, (t + 1) * d.n / tasks);
      }
      return;
    }
    const int64_t per_gemm = direct || flat ? 0 : images_per_gemm(d, per_task);
    const detail::Scratch<T> cols(K * HW * per_gemm);
    const detail::Scratch<T> gys(per_gemm > 1 ? d.og * HW * per_gemm : 0);
    for (int64_t t = tb; t < te; ++t) {
      T* acc = partial_of(t);
      const int64_t n0 = t * d.n / tasks, n1 = (t + 1) * d.n / tasks;
      if (flat) {
        const auto weight_grad = winograd ? k.conv_winograd_weight_grad : k.conv_flat_weight_grad;
        for (int64_t g = 0; g < d.g; ++g) {
          weight_grad(cs, d.og, n1 - n0, px + (n0 * d.c + g * d.cg) * plane, d.c * plane,
                      pg + (n0 * d.o + g * d.og) * HW, d.o * HW, acc + g * d.og * K);
        }
        continue;
      }
      if (direct) {
        for (int64_t n = n0; n < n1; ++n)
          for (int64_t g = 0; g < d.g; ++g)
            k.gemm(false, true, d.og, K, HW, T(1), pg + (n * d.o + g * d.og) * HW, HW,
                   px + (n * d.c + g * d.cg) * plane, HW, T(1), acc + g * d.og * K, K);
        continue;
      }
      for (int64_t s0 = n0; s0 < n1; s0 += per_gemm) {
        const int64_t m = std::min(per_gemm, n1 - s0), ld = m * HW;
        for (int64_t g = 0; g < d.g; ++g) {
          for (int64_t j = 0; j < m; ++j) k.im2col(cs, px + ((s0 + j) * d.c + g * d.cg) * plane, cols.data() + j * HW, ld);
          const T* gyg = pg + (s0 * d.o + g * d.og) * HW;
          if (m > 1) {
            side_by_side(gyg, d.o * HW, m, d.og, HW, gys.data());
            gyg = gys.data();
          }
          k.gemm(false, true, d.og, K, ld, T(1), gyg, ld, cols.data(), ld, T(1), acc + g * d.og * K, K);
        }
      }
    }
  });
  for (int64_t t = 1; t < tasks; ++t) {
    const T* acc = partial.data() + (t - 1) * wsize;
    for (int64_t i = 0; i < wsize; ++i) pw[i] += acc[i];
  }
  return gw;
}

}  // namespace


template <FloatingElement T>
Tensor<T> conv2d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias,
                 const Conv2dGeometry& p) {
  if (x.defined() && x.dim() == 3) {
    return conv2d(x.unsqueeze(0), weight, bias, p).squeeze(0);
  }
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
  detail::TracedOp traced;
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
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->conv2d_input_grad(gy, weight, p, gx);
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
