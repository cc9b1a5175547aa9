// What ember::runtime holds of a plan: running it, printing it, and its special members
// (Note [Inference plan] in ember/deploy/plan.hpp). No tensors, no autograd, no modules.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>

#include <array>
#include <cstring>

#include "../core/internal.hpp"
#include "../ops/rows.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"
#include "ember/deploy/plan.hpp"
#include "plan_data.hpp"

namespace ember::deploy {

using backend::Binary;
using backend::Unary;
using ember::detail::cat_str;

quant::detail::Int8ConvShape int8_conv_shape(const Step& s, const Value& input) {
  const Shape& x = input.shape;
  const bool nhwc = input.type == ElemType::U8;
  quant::detail::Int8ConvShape c{nhwc ? x[3] : x[1], nhwc ? x[1] : x[2], nhwc ? x[2] : x[3],
                                 s.weight_shape[2], s.weight_shape[3], 0, 0, s.geometry};
  quant::detail::int8_conv_output(c);
  return c;
}

Int8Scratch int8_scratch(const Step& s, const Value& input) {
  Int8Scratch r;
  int64_t at = 0;
  auto take = [&](int64_t& offset, int64_t bytes) {
    offset = at;
    at += round_up_arena(bytes);
  };
  if (s.q8.dynamic) take(r.dynamic_scales, s.out_features * int64_t(sizeof(float)));
  r.first_worker = at;
  at = 0;
  const bool float_input = input.type == ElemType::F32;
  if (s.kind == StepKind::Int8Linear) {
    const int64_t rows = s.rows;
    if (float_input) take(r.quantized, rows * s.in_features);
    take(r.acc, rows * s.out_features * int64_t(sizeof(int32_t)));
  } else {  // per image
    const quant::detail::Int8ConvShape c = int8_conv_shape(s, input);
    const int64_t pixels = c.ho * c.wo;
    if (float_input) take(r.quantized, c.c * c.h * c.w);
    if (float_input && c.c > 1) take(r.channels_last, c.c * c.h * c.w);
    take(r.rows, quant::detail::int8_conv_work_bytes(c, s.in_features));
    take(r.acc, pixels * s.out_features * int64_t(sizeof(int32_t)));
  }
  r.per_worker = at;
  r.total = r.first_worker + r.per_worker * std::max<int64_t>(s.workers, 1);
  return r;
}

const PlanData& checked_plan(const PlanData* p) {
  if (p == nullptr) throw ValueError("deploy::Plan: this plan is empty (assign it the result of deploy::compile or load)");
  return *p;
}

namespace {

// ---- Steps -------------------------------------------------------------------------------------

// The ops' elementwise grain: pieces of at least this many elements go to the pool.
constexpr int64_t kGrain = 32768;

// f(b, e) over pieces of [0, n), on ember's pool when n is over `grain` (inline on one thread, with
// no lock): the kernels give every element the same bits however the range is cut (their tails
// are masked vectors), so a plan's outputs do not depend on the thread count.
template <class F>
void in_pieces(int64_t n, int64_t grain, F&& f) {
  if (n <= grain) {
    f(int64_t(0), n);
  } else {
    ember::detail::parallel_for(0, n, grain, f);
  }
}

// A convolution step's samples split among its workers, each with its share of the `bytes` of
// scratch at `area` (null: none): the columns of the images its GEMMs lower at once
// (conv_step_images), then the GEMM's packing room. f(area, b, e, images) runs samples b .. e.
template <class F>
void conv_workers(const backend::Kernels<float>& k, const Step& s, std::byte* area, int64_t bytes, F&& f) {
  const int64_t n = s.conv.d.n;
  const int64_t workers = std::clamp<int64_t>(s.workers, 1, std::max<int64_t>(n, 1));
  const int64_t per_worker = bytes / workers / 64 * 64;  // each area aligned (the phased path's int64 taps)
  const int64_t images = conv_step_images(s, k, per_worker, (n + workers - 1) / workers);
  const int64_t cols = conv_columns_bytes(s.conv, images);
  auto run = [&](int64_t w0, int64_t w1) {
    for (int64_t worker = w0; worker < w1; ++worker) {
      std::byte* mine = area == nullptr ? nullptr : area + worker * per_worker;
      const backend::GemmWorkspace workspace(mine == nullptr ? nullptr : mine + cols,
                                             static_cast<size_t>(std::max<int64_t>(0, per_worker - cols)));
      f(mine, worker * n / workers, (worker + 1) * n / workers, images);
    }
  };
  if (workers == 1) {
    run(0, 1);
  } else {
    ember::detail::parallel_for(0, workers, 1, run);
  }
}

void run_post(const backend::Kernels<float>& k, const Step& s, int64_t n, float* y) {
  if (s.post.empty()) return;
  in_pieces(n, kGrain, [&](int64_t b, int64_t e) {
    for (const PostOp& op : s.post) k.unary(op.op, op.params, e - b, y + b, 1, y + b);
  });
}

// y[r][j] += bias[j] for rows of `inner` elements, the bias indexed by the row's channel.
void add_channel_bias(const backend::Kernels<float>& k, std::span<const float> bias, int64_t rows,
                      int64_t channels, int64_t inner, float* y) {
  if (bias.empty()) return;
  if (inner == 1) {
    in_pieces(rows / channels, std::max<int64_t>(1, kGrain / channels), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) k.binary(Binary::Add, {}, channels, y + r * channels, 1, bias.data(), 1, y + r * channels);
    });
    return;
  }
  in_pieces(rows, std::max<int64_t>(1, kGrain / inner), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) k.binary(Binary::Add, {}, inner, y + r * inner, 1, bias.data() + r % channels, 0, y + r * inner);
  });
}

// The input's quantization for an int8 step reading floats: fixed, or (dynamic) from the input's
// range, with the per-output scales that go with it written to `dynamic_scales`.
void int8_input_params(const Step& s, const quant::detail::Int8Affine& l, const float* x, int64_t n,
                       float* dynamic_scales, float& scale, int32_t& zero, const float*& out_scales) {
  if (!l.dynamic) {
    scale = l.in_scale;
    zero = l.in_zero;
    out_scales = l.out_scales;
    return;
  }
  if (n == 0 || !quant::detail::dynamic_input_params(x, n, scale, zero)) {
    throw ValueError(cat_str("deploy::Plan::run: ", s.name, ": NaN or infinity in its input, which it quantizes by its range"));
  }
  for (int64_t j = 0; j < l.out; ++j) dynamic_scales[j] = scale * l.weight_scales[j];
  out_scales = dynamic_scales;
}

void run_int8_linear(const Step& s, const Value& input, const std::byte* x, std::byte* y, std::byte* scratch) {
  const quant::detail::Int8Affine l = int8_layer(s);
  const Int8Scratch at = int8_scratch(s, input);
  auto* acc = reinterpret_cast<int32_t*>(scratch + at.first_worker + at.acc);
  const auto* a = reinterpret_cast<const uint8_t*>(x);
  int32_t a_zero = l.in_zero;
  const float* out_scales = l.out_scales;
  if (input.type == ElemType::F32) {
    const auto* xf = reinterpret_cast<const float*>(x);
    const int64_t n = s.rows * l.k;
    float scale = 1.0f;
    int32_t zero = 0;
    int8_input_params(s, l, xf, n, reinterpret_cast<float*>(scratch + at.dynamic_scales), scale, zero, out_scales);
    auto* q = reinterpret_cast<uint8_t*>(scratch + at.first_worker + at.quantized);
    quant::detail::quantize_activations(xf, n, scale, zero, q);
    a = q;
    a_zero = zero;
  }
  if (l.out_quantized) {
    quant::detail::int8_rows_to_u8(l, s.rows, a, acc, reinterpret_cast<uint8_t*>(y));
  } else {
    quant::detail::int8_rows_to_float(l, s.rows, a, a_zero, out_scales, acc, reinterpret_cast<float*>(y));
  }
}

// Image by image, as the QuantizedConv2d stage computes it; the images split among the step's
// workers, each with its own area of the scratch.
void run_int8_conv(const Step& s, const Value& input, const std::byte* x, std::byte* y, std::byte* scratch) {
  const quant::detail::Int8Affine l = int8_layer(s);
  const quant::detail::Int8ConvShape c = int8_conv_shape(s, input);
  const Int8Scratch at = int8_scratch(s, input);
  const int64_t n = input.shape[0], image = c.c * c.h * c.w, pixels = c.ho * c.wo;
  const bool float_input = input.type == ElemType::F32;
  float scale = l.in_scale;
  int32_t zero = l.in_zero;
  const float* out_scales = l.out_scales;
  if (float_input) {
    int8_input_params(s, l, reinterpret_cast<const float*>(x), n * image,
                      reinterpret_cast<float*>(scratch + at.dynamic_scales), scale, zero, out_scales);
  }
  const int64_t workers = std::clamp<int64_t>(s.workers, 1, std::max<int64_t>(n, 1));
  auto run = [&](int64_t w0, int64_t w1) {
    for (int64_t worker = w0; worker < w1; ++worker) {
      std::byte* area = scratch + at.first_worker + worker * at.per_worker;
      auto* acc = reinterpret_cast<int32_t*>(area + at.acc);
      auto* rows = reinterpret_cast<uint8_t*>(area + at.rows);
      for (int64_t b = worker * n / workers; b < (worker + 1) * n / workers; ++b) {
        const uint8_t* img = nullptr;
        if (float_input) {
          auto* q = reinterpret_cast<uint8_t*>(area + at.quantized);
          quant::detail::quantize_activations(reinterpret_cast<const float*>(x) + b * image, image, scale, zero, q);
          img = q;
          if (c.c > 1) {
            auto* nhwc = reinterpret_cast<uint8_t*>(area + at.channels_last);
            quant::detail::to_channels_last_u8(q, c.c, c.h * c.w, nhwc);
            img = nhwc;
          }
        } else {
          img = reinterpret_cast<const uint8_t*>(x) + b * image;
        }
        if (l.out_quantized) {
          quant::detail::int8_conv_image(l, c, img, zero, out_scales, rows, acc,
                                         reinterpret_cast<uint8_t*>(y) + b * pixels * l.out, nullptr);
        } else {
          quant::detail::int8_conv_image(l, c, img, zero, out_scales, rows, acc, nullptr,
                                         reinterpret_cast<float*>(y) + b * l.out * pixels);
        }
      }
    }
  };
  if (workers == 1) {
    run(0, 1);
  } else {
    ember::detail::parallel_for(0, workers, 1, run);
  }
}

// Where row `row` of a row-major walk over dims size[0..dims) starts, with these strides.
int64_t row_offset(int64_t row, int dims, const int64_t* size, const int64_t* stride) {
  int64_t at = 0;
  for (int d = dims - 1; d >= 0; --d) {
    at += row % size[d] * stride[d];
    row /= size[d];
  }
  return at;
}

// A broadcasting binary step's loop: its output's dims with each operand's stride (0 where it
// broadcasts), dims of size 1 dropped and neighbours merged where both operands allow it, so the
// innermost run is as long as it can be.
struct BroadcastLoop {
  int rank = 0;
  std::array<int64_t, kMaxValueRank> size{}, sa{}, sb{};
};

BroadcastLoop broadcast_loop(const Shape& out, const Shape& a, const Shape& b) {
  const auto r = static_cast<int>(out.size());
  std::array<int64_t, kMaxValueRank> sa{}, sb{};
  int64_t stride_a = 1, stride_b = 1;
  for (int i = r - 1; i >= 0; --i) {
    const int ia = i - (r - static_cast<int>(a.size())), ib = i - (r - static_cast<int>(b.size()));
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    sa[static_cast<size_t>(i)] = da == 1 ? 0 : stride_a;
    sb[static_cast<size_t>(i)] = db == 1 ? 0 : stride_b;
    stride_a *= da;
    stride_b *= db;
  }
  BroadcastLoop l;
  for (int i = 0; i < r; ++i) {
    const auto d = static_cast<size_t>(i);
    if (out[i] == 1) continue;
    if (l.rank > 0) {
      const auto last = static_cast<size_t>(l.rank - 1);
      if (l.sa[last] == sa[d] * out[i] && l.sb[last] == sb[d] * out[i]) {
        l.size[last] *= out[i];
        l.sa[last] = sa[d];
        l.sb[last] = sb[d];
        continue;
      }
    }
    l.size[static_cast<size_t>(l.rank)] = out[i];
    l.sa[static_cast<size_t>(l.rank)] = sa[d];
    l.sb[static_cast<size_t>(l.rank)] = sb[d];
    ++l.rank;
  }
  return l;
}

void run_broadcast_binary(const backend::Kernels<float>& k, const PlanData& p, const Step& s, const float* x0,
                          const float* x1, float* y) {
  const BroadcastOperands ops = broadcast_operands(s);
  auto shape_of = [&](int v) -> const Shape& { return v < 0 ? s.weight_shape : p.values[static_cast<size_t>(v)].shape; };
  auto data_of = [&](int v) { return v < 0 ? s.w.data() : v == s.in0 ? x0 : x1; };
  const BroadcastLoop l = broadcast_loop(p.values[static_cast<size_t>(s.out)].shape, shape_of(ops.a), shape_of(ops.b));
  const float* a = data_of(ops.a);
  const float* b = data_of(ops.b);
  const int outer = std::max(l.rank - 1, 0);
  const int64_t inner = l.rank == 0 ? 1 : l.size[static_cast<size_t>(outer)];
  const int64_t ia = l.rank == 0 ? 0 : l.sa[static_cast<size_t>(outer)], ib = l.rank == 0 ? 0 : l.sb[static_cast<size_t>(outer)];
  const int64_t rows = s.numel / std::max<int64_t>(inner, 1);
  in_pieces(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t oa = row_offset(r, outer, l.size.data(), l.sa.data());
      const int64_t ob = row_offset(r, outer, l.size.data(), l.sb.data());
      k.binary(s.binary_op, {}, inner, a + oa, ia, b + ob, ib, y + r * inner);
    }
  });
}

void run_step(const backend::Kernels<float>& k, const PlanData& p, const Step& s, const std::byte* in0,
              const std::byte* in1, std::byte* out, std::byte* scratch) {
  const auto* x0 = reinterpret_cast<const float*>(in0);
  const auto* x1 = reinterpret_cast<const float*>(in1);
  auto* y = reinterpret_cast<float*>(out);
  const Value& input = p.values[static_cast<size_t>(s.in0)];  // its own shape: a view's, not its root's
  switch (s.kind) {
    case StepKind::Conv2d:
    case StepKind::AvgPool2d: {
      const auto& d = s.conv.d;
      conv_workers(k, s, scratch, s.scratch_bytes, [&](std::byte* area, int64_t b, int64_t e, int64_t images) {
        ember::detail::conv_forward_samples(k, s.conv, x0, s.w.data(), y, b, e, reinterpret_cast<float*>(area), images,
                                            s.conv.winograd ? s.winograd_u.data() : nullptr);
      });
      if (s.kind == StepKind::AvgPool2d) {  // the window sums over PyTorch's window sizes
        in_pieces(d.n * d.o, std::max<int64_t>(1, kGrain / std::max<int64_t>(d.hw_out(), 1)), [&](int64_t b, int64_t e) {
          for (int64_t plane = b; plane < e; ++plane) {
            float* yp = y + plane * d.hw_out();
            k.binary(Binary::Div, {}, d.hw_out(), yp, 1, s.dv.data(), 1, yp);
          }
        });
      } else {
        add_channel_bias(k, s.b, d.n * d.o, d.o, d.hw_out(), y);
      }
      run_post(k, s, d.n * d.o * d.hw_out(), y);
      return;
    }
    case StepKind::ConvTranspose2d: {
      const auto& d = s.conv.d;
      // The flipped weights (flat kernels), then the workers' areas.
      const int64_t flipped = conv_transpose_flipped_bytes(s.conv);
      const float* w = s.w.data();
      if (s.conv.flat && !s.conv.winograd) {
        auto* wt = reinterpret_cast<float*>(scratch);
        ember::detail::transposed_flipped_weights(s.w.data(), d, wt);
        w = wt;
      }
      conv_workers(k, s, scratch + flipped, s.scratch_bytes - flipped,
                   [&](std::byte* area, int64_t b, int64_t e, int64_t images) {
                     ember::detail::conv_transpose_samples(k, s.conv, x0, w, y, b, e, reinterpret_cast<float*>(area),
                                                           images, s.conv.winograd ? s.winograd_u.data() : nullptr);
                   });
      add_channel_bias(k, s.b, d.n * d.c, d.c, d.h * d.w, y);
      run_post(k, s, d.n * d.c * d.h * d.w, y);
      return;
    }
    case StepKind::Resample: {
      const int32_t* i0 = s.iv.data();
      const bool linear = !s.b.empty();
      const int64_t in = s.in_features, out = s.out_features, inner = s.inner;
      const int64_t workers = std::clamp<int64_t>(s.workers, 1, std::max<int64_t>(s.planes, 1));
      auto run = [&](int64_t w0, int64_t w1) {
        for (int64_t worker = w0; worker < w1; ++worker) {
          const int64_t b = worker * s.planes / workers, e = (worker + 1) * s.planes / workers;
          float* second = linear ? reinterpret_cast<float*>(scratch + worker * (s.scratch_bytes / workers)) : nullptr;
          ember::detail::resample_axis(k, e - b, in, out, inner, x0 + b * in * inner, i0,
                                       linear ? i0 + out : nullptr, linear ? s.w.data() : nullptr,
                                       linear ? s.b.data() : nullptr, y + b * out * inner, second);
        }
      };
      if (workers == 1) {
        run(0, 1);
      } else {
        ember::detail::parallel_for(0, workers, 1, run);
      }
      run_post(k, s, s.planes * out * inner, y);
      return;
    }
    case StepKind::Linear:
      if (s.rows > 0) {
        // As nn::functional::linear: the bias rows first, then the GEMM adds the product (addmm,
        // the operands it hands the GEMM), so the plan gives the module's bits.
        const bool bias = !s.b.empty();
        if (bias) {
          in_pieces(s.rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(s.out_features, 1)),
                    [&](int64_t b, int64_t e) {
                      for (int64_t r = b; r < e; ++r) std::copy(s.b.begin(), s.b.end(), y + r * s.out_features);
                    });
        }
        const backend::GemmWorkspace workspace(scratch, static_cast<size_t>(s.scratch_bytes));
        k.gemm(false, true, s.rows, s.out_features, s.in_features, 1.0f, x0, std::max<int64_t>(s.in_features, 1),
               s.w.data(), std::max<int64_t>(s.in_features, 1), bias ? 1.0f : 0.0f, y, s.out_features);
      }
      run_post(k, s, s.rows * s.out_features, y);
      return;
    case StepKind::ChannelAffine:
      in_pieces(s.planes, std::max<int64_t>(1, kGrain / std::max<int64_t>(s.inner, 1)), [&](int64_t b, int64_t e) {
        k.channel_affine(e - b, b, s.channels, s.inner, x0 + b * s.inner, s.w.data(), nullptr, nullptr, s.b.data(),
                         y + b * s.inner);
      });
      run_post(k, s, s.planes * s.inner, y);
      return;
    case StepKind::Unary:
      in_pieces(s.numel, kGrain, [&](int64_t b, int64_t e) {
        k.unary(s.unary_op, s.unary_params, e - b, x0 + b, 1, y + b);
      });
      run_post(k, s, s.numel, y);
      return;
    case StepKind::Binary:
      in_pieces(s.numel, kGrain, [&](int64_t b, int64_t e) {
        k.binary(s.binary_op, {}, e - b, x0 + b, 1, x1 + b, 1, y + b);
      });
      run_post(k, s, s.numel, y);
      return;
    case StepKind::BroadcastBinary:
      run_broadcast_binary(k, p, s, x0, x1, y);
      run_post(k, s, s.numel, y);
      return;
    case StepKind::Permute: {
      const Shape& out = p.values[static_cast<size_t>(s.out)].shape;
      const auto r = static_cast<int>(out.size());
      std::array<int64_t, kMaxValueRank> in_stride{}, stride{};
      int64_t st = 1;
      for (int d = r - 1; d >= 0; --d) {
        in_stride[static_cast<size_t>(d)] = st;
        st *= input.shape[d];
      }
      for (int d = 0; d < r; ++d) stride[static_cast<size_t>(d)] = in_stride[static_cast<size_t>(s.perm[d])];
      const int64_t inner = r == 0 ? 1 : out[r - 1], step = r == 0 ? 1 : stride[static_cast<size_t>(r - 1)];
      in_pieces(s.numel / std::max<int64_t>(inner, 1), std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1)),
                [&](int64_t b, int64_t e) {
                  for (int64_t row = b; row < e; ++row) {
                    const int64_t at = row_offset(row, r - 1, out.data(), stride.data());
                    float* yr = y + row * inner;
                    for (int64_t i = 0; i < inner; ++i) yr[i] = x0[at + i * step];
                  }
                });
      run_post(k, s, s.numel, y);
      return;
    }
    case StepKind::MatMul: {
      const float* b = s.constant_operand == 2 ? s.w.data() : x1;
      const int64_t m = s.rows, kk = s.in_features, n = s.out_features;
      if (s.planes * m * n > 0) {
        const backend::GemmWorkspace workspace(scratch, static_cast<size_t>(s.scratch_bytes));
        if (s.b_batches == 1) {  // one product, the batch in its rows, as matmul does
          k.gemm(false, false, s.planes * m, n, kk, 1.0f, x0, std::max<int64_t>(kk, 1), b, n, 0.0f, y, n);
        } else {
          for (int64_t i = 0; i < s.planes; ++i) {
            k.gemm(false, false, m, n, kk, 1.0f, x0 + i * m * kk, std::max<int64_t>(kk, 1), b + i * kk * n, n, 0.0f,
                   y + i * m * n, n);
          }
        }
      }
      run_post(k, s, s.planes * m * n, y);
      return;
    }
    case StepKind::Concat: {
      const int64_t row = s.inner + s.numel;
      in_pieces(s.planes, std::max<int64_t>(1, kGrain / std::max<int64_t>(row, 1)), [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          std::memcpy(y + o * row, x0 + o * s.inner, static_cast<size_t>(s.inner) * sizeof(float));
          std::memcpy(y + o * row + s.inner, x1 + o * s.numel, static_cast<size_t>(s.numel) * sizeof(float));
        }
      });
      run_post(k, s, s.planes * row, y);
      return;
    }
    case StepKind::MaxPool: {
      auto* idx = reinterpret_cast<int64_t*>(scratch);
      const int64_t in_plane = s.pool.h * s.pool.w, out_plane = s.pool.ho * s.pool.wo;
      in_pieces(s.planes, std::max<int64_t>(1, 4096 / std::max<int64_t>(out_plane * s.pool.kh * s.pool.kw, 1)),
                [&](int64_t b, int64_t e) {
                  if (s.two_by_two) {
                    k.max_pool2x2(e - b, s.pool.h, s.pool.w, x0 + b * in_plane, y + b * out_plane, idx + b * out_plane);
                  } else {
                    k.max_pool2d(s.pool, e - b, x0 + b * in_plane, y + b * out_plane, idx + b * out_plane);
                  }
                });
      run_post(k, s, s.planes * out_plane, y);
      return;
    }
    case StepKind::MeanHW: {
      // As mean() over the last two dims: a sum per plane, then one scaling pass.
      for (int64_t p = 0; p < s.planes; ++p) y[p] = 0.0f + k.reduce(backend::Reduce::Sum, s.inner, x0 + p * s.inner, 1);
      const float scale = 1.0f / static_cast<float>(s.inner);
      k.unary(Unary::MulScalar, {static_cast<double>(scale), 0.0}, s.planes, y, 1, y);
      run_post(k, s, s.planes, y);
      return;
    }
    case StepKind::Softmax:
      in_pieces(s.planes, std::max<int64_t>(1, kGrain / std::max<int64_t>(s.inner, 1)), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) ember::detail::softmax_row(k, s.inner, x0 + r * s.inner, y + r * s.inner, s.log_softmax);
      });
      run_post(k, s, s.planes * s.inner, y);
      return;
    case StepKind::LayerNorm:
      in_pieces(s.planes, std::max<int64_t>(1, kGrain / std::max<int64_t>(s.inner, 1)), [&](int64_t b, int64_t e) {
        float mean, rstd;
        for (int64_t r = b; r < e; ++r) {
          ember::detail::layer_norm_row(k, s.inner, x0 + r * s.inner, s.w.empty() ? nullptr : s.w.data(),
                                        s.b.empty() ? nullptr : s.b.data(), s.eps, y + r * s.inner, &mean, &rstd);
        }
      });
      run_post(k, s, s.planes * s.inner, y);
      return;
    case StepKind::Int8Linear:
      run_int8_linear(s, input, in0, out, scratch);
      if (!s.q8.out_quantized) run_post(k, s, s.rows * s.out_features, y);
      return;
    case StepKind::Int8Conv2d:
      run_int8_conv(s, input, in0, out, scratch);
      if (!s.q8.out_quantized) run_post(k, s, p.values[static_cast<size_t>(s.out)].shape.numel(), y);
      return;
    case StepKind::MaxPoolU8: {
      const int64_t in_image = s.pool.h * s.pool.w * s.channels, out_image = s.pool.ho * s.pool.wo * s.channels;
      in_pieces(s.planes, std::max<int64_t>(1, kGrain / std::max<int64_t>(out_image * s.pool.kh * s.pool.kw, 1)),
                [&](int64_t b, int64_t e) {
                  backend::int8_kernels().max_pool_u8(s.pool, e - b, s.channels,
                                                      reinterpret_cast<const uint8_t*>(in0) + b * in_image,
                                                      reinterpret_cast<uint8_t*>(out) + b * out_image);
                });
      return;
    }
    case StepKind::Dequantize: {
      // uint8 images are channels last: back to channels first, then to floats.
      const auto* q = reinterpret_cast<const uint8_t*>(in0);
      const int64_t n = input.shape.numel();
      if (input.shape.size() == 4) {
        auto* nchw = reinterpret_cast<uint8_t*>(scratch);
        const int64_t pixels = input.shape[1] * input.shape[2], c = input.shape[3];
        for (int64_t b = 0; b < input.shape[0]; ++b) {
          quant::detail::to_channels_first_u8(q + b * pixels * c, pixels, c, nchw + b * pixels * c);
        }
        q = nchw;
      }
      backend::int8_kernels().dequantize_u8(n, q, s.q8.in_zero, s.q8.in_scale, 0, y);
      run_post(k, s, n, y);
      return;
    }
    case StepKind::Count: break;
  }
}

// The op's name in the op table ("relu", "leaky_relu"); kernels without a public op of the same
// name go by the kernel's ("Gelu").
const char* unary_name(Unary op) {
  switch (op) {
#define EMBER_UNARY(name, Kernel, ...) \
  case Unary::Kernel: return #name;
#define EMBER_UNARY_P1 EMBER_UNARY
#define EMBER_UNARY_P2 EMBER_UNARY
#define EMBER_UNARY_KERNEL(Kernel, ...) \
  case Unary::Kernel: return #Kernel;
#include "ember/ops/op_table.def"
    default: break;
  }
  return "elementwise op";
}

// The binary kernel's name in lower case ("add", "mul", "maskpositive").
std::string binary_name(Binary op) {
  std::string name = "binary op";
  switch (op) {
#define EMBER_BINARY_KERNEL(Kernel, ...) \
  case Binary::Kernel: name = #Kernel; break;
#include "ember/ops/op_table.def"
    default: break;
  }
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string step_str(const PlanData& p, const Step& s) {
  // Strings, not streams: iostreams would add a few hundred KB to a static runtime program.
  std::string out = s.kind == StepKind::Unary    ? std::string(unary_name(s.unary_op))
                    : s.kind == StepKind::Binary || s.kind == StepKind::BroadcastBinary ? binary_name(s.binary_op)
                                                 : s.name;
  auto value = [&](int v) {
    const Value& val = p.values[static_cast<size_t>(v)];
    return cat_str(val.shape, val.type == ElemType::U8 ? " u8" : "");
  };
  out += cat_str(" ", value(s.in0));
  if (s.in1 >= 0) out += cat_str(", ", value(s.in1));
  out += cat_str(" -> ", value(s.out));
  if (s.kind == StepKind::Int8Linear || s.kind == StepKind::Int8Conv2d) {
    out += s.q8.dynamic ? ", dynamic" : "";
    out += s.q8.relu ? ", relu" : "";
  }
  if (s.folded_batch_norm) out += ", batch norm folded";
  for (const PostOp& op : s.post) out += cat_str(", ", unary_name(op.op), " fused");
  if (s.kind == StepKind::Resample) out += s.b.empty() ? " (nearest)" : " (linear)";
  if (s.kind == StepKind::Conv2d || s.kind == StepKind::AvgPool2d || s.kind == StepKind::ConvTranspose2d) {
    const char* lowered = s.kind == StepKind::ConvTranspose2d ? " (col2im)" : " (im2col)";
    out += s.conv.winograd    ? " (winograd)"
           : s.conv.flat      ? " (flat)"
           : s.conv.pointwise ? " (pointwise)"
           : s.conv.phased    ? " (phases)"
                              : lowered;
  }
  return out;
}


}  // namespace

void prepare_winograd(Step& s) {
  const bool transposed = s.kind == StepKind::ConvTranspose2d;
  if (!s.conv.winograd || (!transposed && s.kind != StepKind::Conv2d && s.kind != StepKind::AvgPool2d)) return;
  const auto& k = backend::kernels<float>();
  s.winograd_u.resize(static_cast<size_t>(s.conv.winograd_weights_elements()));
  if (!transposed) {
    ember::detail::winograd_weights(k, s.conv, false, s.w.data(), s.winograd_u.data());
    return;
  }
  std::vector<float> flipped(s.w.size());
  ember::detail::transposed_flipped_weights(s.w.data(), s.conv.d, flipped.data());
  ember::detail::winograd_weights(k, s.conv, true, flipped.data(), s.winograd_u.data());
}

Plan::Plan() = default;
Plan::~Plan() = default;
Plan::Plan(const Plan&) = default;
Plan& Plan::operator=(const Plan&) = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;
Plan::Plan(std::shared_ptr<const PlanData> data) : data_(std::move(data)) {}

const Shape& Plan::input_shape() const { return checked_plan(data_.get()).input_shape; }
const Shape& Plan::output_shape() const { return checked_plan(data_.get()).output_shape; }
size_t Plan::arena_bytes() const { return checked_plan(data_.get()).arena_bytes; }
size_t Plan::num_steps() const { return checked_plan(data_.get()).steps.size(); }
bool Plan::has_int8_steps() const {
  for (const Step& s : checked_plan(data_.get()).steps) {
    if (s.kind == StepKind::Int8Linear || s.kind == StepKind::Int8Conv2d) return true;
  }
  return false;
}

std::string Plan::str() const {
  const PlanData& p = checked_plan(data_.get());
  std::string out = cat_str("Plan(input ", p.input_shape, ", output ", p.output_shape, ", arena ", p.arena_bytes,
                            " bytes)\n");
  for (size_t i = 0; i < p.steps.size(); ++i) out += cat_str("  (", i, "): ", step_str(p, p.steps[i]), "\n");
  return out;
}

void Plan::run(std::span<const float> input, std::span<float> output, std::span<std::byte> arena) const {
  const PlanData& p = checked_plan(data_.get());
  if (input.size() != static_cast<size_t>(p.input_shape.numel()) ||
      output.size() != static_cast<size_t>(p.output_shape.numel())) {
    throw ShapeError(cat_str("deploy::Plan::run: ", input.size(), " input and ", output.size(),
                             " output values, the plan was compiled for ", p.input_shape, " -> ", p.output_shape));
  }
  if (arena.size() < p.arena_bytes) {
    throw ValueError(cat_str("deploy::Plan::run: an arena of ", arena.size(), " bytes, the plan needs ", p.arena_bytes));
  }
  if (reinterpret_cast<uintptr_t>(arena.data()) % kArenaAlignment != 0) {
    throw ValueError(cat_str("deploy::Plan::run: the arena must be aligned to ", kArenaAlignment, " bytes"));
  }
  const auto* in_lo = reinterpret_cast<const std::byte*>(input.data());
  const auto* out_lo = reinterpret_cast<const std::byte*>(output.data());
  if (in_lo < out_lo + output.size_bytes() && out_lo < in_lo + input.size_bytes()) {
    throw ValueError("deploy::Plan::run: the output overlaps the input");
  }
  const auto& k = backend::kernels<float>();
  auto at = [&](int v) -> std::byte* {
    if (v < 0) return nullptr;
    const int r = p.root(v);
    if (r == 0) return reinterpret_cast<std::byte*>(const_cast<float*>(input.data()));
    if (r == p.output) return reinterpret_cast<std::byte*>(output.data());
    return arena.data() + p.values[static_cast<size_t>(r)].offset;
  };
  for (const Step& s : p.steps) {
    run_step(k, p, s, at(s.in0), at(s.in1), at(s.out), s.scratch_bytes > 0 ? arena.data() + s.scratch_offset : nullptr);
  }
}

}  // namespace ember::deploy
