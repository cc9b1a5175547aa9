// The int8 kernels of every instruction set this CPU runs against the scalar reference: bit for
// bit, on inputs at the ends of their ranges (where vpmaddubsw would saturate on 8-bit
// activations), with k and n tails, and against a direct dot product of the unpacked weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "ember/backend/int8_kernels.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"

namespace {

using namespace ember::backend;

std::vector<Int8Isa> available() {
  std::vector<Int8Isa> out;
  for (Int8Isa isa : {Int8Isa::Scalar, Int8Isa::Avx2, Int8Isa::Avx512Vnni, Int8Isa::Neon, Int8Isa::NeonDot,
                      Int8Isa::NeonI8mm})
    if (int8_isa_available(isa)) out.push_back(isa);
  return out;
}

struct Problem {
  int64_t m, n, k;
  std::vector<uint8_t> a;
  std::vector<int8_t> w, packed;
};

// kind 0: random; 1: a = 127 and w = -128 everywhere (the largest pair sums); 2: alternating
// extremes (127 / 0 against -128 / 127).
Problem make_problem(int64_t m, int64_t n, int64_t k, int kind, uint32_t seed) {
  Problem p{m, n, k, std::vector<uint8_t>(static_cast<size_t>(m * k)), std::vector<int8_t>(static_cast<size_t>(n * k)), {}};
  std::mt19937 rng(seed);
  for (size_t i = 0; i < p.a.size(); ++i) {
    p.a[i] = kind == 0 ? static_cast<uint8_t>(rng() % 128) : kind == 1 ? 127 : static_cast<uint8_t>(i % 3 == 0 ? 0 : 127);
  }
  for (size_t i = 0; i < p.w.size(); ++i) {
    p.w[i] = kind == 0 ? static_cast<int8_t>(static_cast<int>(rng() % 256) - 128)
             : kind == 1 ? int8_t(-128)
                         : static_cast<int8_t>(i % 2 == 0 ? -128 : 127);
  }
  p.packed.assign(static_cast<size_t>(int8_packed_size(n, k)), 0);
  pack_int8_weights(n, k, p.w.data(), k, p.packed.data());
  return p;
}

std::vector<int32_t> direct(const Problem& p) {
  std::vector<int32_t> c(static_cast<size_t>(p.m * p.n));
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.n; ++j) {
      int32_t s = 0;
      for (int64_t t = 0; t < p.k; ++t) s += int32_t(p.a[static_cast<size_t>(i * p.k + t)]) * p.w[static_cast<size_t>(j * p.k + t)];
      c[static_cast<size_t>(i * p.n + j)] = s;
    }
  return c;
}

TEST(Int8Kernels, PackedSizeAndLayout) {
  EXPECT_EQ(int8_padded_k(0), 0);
  EXPECT_EQ(int8_padded_k(5), 8);
  EXPECT_EQ(int8_packed_size(17, 5), 32 * 8);
  const Problem p = make_problem(1, 17, 5, 0, 1);
  // Column 16 (second panel, first column), input 4 (group 1, byte 0).
  EXPECT_EQ(p.packed[static_cast<size_t>(16 * 8 + 1 * 64 + 0 * 4 + 0)], p.w[16 * 5 + 4]);
  EXPECT_EQ(p.packed[static_cast<size_t>(16 * 8 + 1 * 64 + 0 * 4 + 1)], 0);  // padding
}

TEST(Int8Kernels, GemmMatchesTheReferenceBitForBit) {
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 1, 1},   {1, 16, 4},  {3, 17, 5},  {7, 33, 9},
                                                      {6, 32, 64}, {13, 50, 3}, {1, 512, 784}, {64, 10, 128},
                                                      {65, 70, 257}};
  for (int kind = 0; kind < 3; ++kind) {
    for (const auto& s : shapes) {
      const Problem p = make_problem(s[0], s[1], s[2], kind, static_cast<uint32_t>(s[0] * 131 + s[2]));
      const std::vector<int32_t> want = direct(p);
      for (Int8Isa isa : available()) {
        const int64_t ldc = p.n + 3;  // a row stride wider than n: the kernels may not write past n
        std::vector<int32_t> c(static_cast<size_t>(p.m * ldc), -7);
        int8_kernels_for(isa).gemm_u8s8(p.m, p.n, p.k, p.a.data(), p.k, p.packed.data(), c.data(), ldc);
        for (int64_t i = 0; i < p.m; ++i) {
          for (int64_t j = 0; j < p.n; ++j)
            ASSERT_EQ(c[static_cast<size_t>(i * ldc + j)], want[static_cast<size_t>(i * p.n + j)])
                << int8_isa_name(isa) << " kind " << kind << " shape " << p.m << "x" << p.n << "x" << p.k << " at " << i
                << "," << j;
          for (int64_t j = p.n; j < ldc; ++j) ASSERT_EQ(c[static_cast<size_t>(i * ldc + j)], -7) << int8_isa_name(isa);
        }
      }
    }
  }
}

TEST(Int8Kernels, GemmThreadsGiveTheSameResult) {
  const Problem p = make_problem(200, 300, 500, 0, 9);
  const std::vector<int32_t> want = direct(p);
  for (int threads : {1, 2, 3}) {
    ember::set_num_threads(threads);
    for (Int8Isa isa : available()) {
      std::vector<int32_t> c(want.size());
      int8_kernels_for(isa).gemm_u8s8(p.m, p.n, p.k, p.a.data(), p.k, p.packed.data(), c.data(), p.n);
      EXPECT_EQ(c, want) << int8_isa_name(isa) << " with " << threads << " threads";
    }
  }
  ember::set_num_threads(2);
}

std::vector<float> conversion_inputs() {
  const float specials[] = {1e9f, -1e9f, 3e9f, -3e9f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                            -0.0f, 0.4999999f, 2.5f, -2.5f};
  // The specials first (in the vector blocks) and last (in the scalar tail too).
  std::vector<float> x(std::begin(specials), std::end(specials));
  for (int i = -700; i <= 700; ++i) x.push_back(static_cast<float>(i) / 4.0f);  // ties at halves
  for (float v : specials) x.push_back(v);
  return x;
}

TEST(Int8Kernels, QuantizeMatchesTheReference) {
  const std::vector<float> x = conversion_inputs();
  const Int8Kernels& ref = int8_kernels_for(Int8Isa::Scalar);
  struct Case {
    float inv_scale;
    int32_t zero, qmin, qmax;
    uint8_t flip;
  };
  for (const Case& c : {Case{1.0f, 0, 0, 255, 0}, Case{2.0f, 128, 0, 255, 0}, Case{1.0f, 131, 0, 255, 0x80},
                        Case{0.5f, 64, 0, 127, 0}, Case{3.0f, 10, 0, 127, 0}}) {
    std::vector<uint8_t> want(x.size());
    ref.quantize_u8(static_cast<int64_t>(x.size()), x.data(), c.inv_scale, c.zero, c.qmin, c.qmax, c.flip, want.data());
    // The definition, spelled out once here.
    for (size_t i = 0; i < x.size(); ++i) {
      const float r = std::nearbyint(x[i] * c.inv_scale);
      const float lo = float(c.qmin - c.zero), hi = float(c.qmax - c.zero);
      const int32_t v = std::isnan(r) ? c.qmin : static_cast<int32_t>(std::min(std::max(r, lo), hi)) + c.zero;
      ASSERT_EQ(want[i], static_cast<uint8_t>(v ^ c.flip)) << "x = " << x[i];
    }
    for (Int8Isa isa : available()) {
      std::vector<uint8_t> got(x.size());
      int8_kernels_for(isa).quantize_u8(static_cast<int64_t>(x.size()), x.data(), c.inv_scale, c.zero, c.qmin, c.qmax,
                                        c.flip, got.data());
      EXPECT_EQ(got, want) << int8_isa_name(isa);
      // 97 = 64 + 32 + 1 values: a wide block, a narrower one and the tail.
      std::vector<uint8_t> prefix(97);
      int8_kernels_for(isa).quantize_u8(97, x.data(), c.inv_scale, c.zero, c.qmin, c.qmax, c.flip, prefix.data());
      EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), want.begin())) << int8_isa_name(isa);
      std::vector<float> back(x.size()), back_ref(x.size());
      int8_kernels_for(isa).dequantize_u8(static_cast<int64_t>(x.size()), got.data(), c.zero, 0.25f, c.flip, back.data());
      ref.dequantize_u8(static_cast<int64_t>(x.size()), got.data(), c.zero, 0.25f, c.flip, back_ref.data());
      EXPECT_EQ(back, back_ref) << int8_isa_name(isa);
    }
  }
}

TEST(Int8Kernels, OutputStagesMatchTheReference) {
  const int64_t m = 5, n = 37, ldc = 40;
  std::mt19937 rng(4);
  std::vector<int32_t> c(static_cast<size_t>(m * ldc)), w_sum(n), bias(n);
  std::vector<float> scale(n), fbias(n), mult(n);
  for (auto& v : c) v = static_cast<int32_t>(rng() % 4000001) - 2000000;
  c[3] = std::numeric_limits<int32_t>::max() / 2;  // beyond float's 24 bits: the conversion rounds
  for (int64_t j = 0; j < n; ++j) {
    w_sum[j] = static_cast<int32_t>(rng() % 20001) - 10000;
    bias[j] = static_cast<int32_t>(rng() % 2001) - 1000;
    scale[j] = 1e-4f * static_cast<float>(1 + rng() % 100);
    fbias[j] = 0.01f * (static_cast<float>(rng() % 200) - 100.0f);
    mult[j] = 1e-5f * static_cast<float>(1 + rng() % 100);
  }
  const Int8Kernels& ref = int8_kernels_for(Int8Isa::Scalar);
  for (bool relu : {false, true}) {
    for (const float* b : {static_cast<const float*>(nullptr), static_cast<const float*>(fbias.data())}) {
      std::vector<float> want(static_cast<size_t>(m * n));
      ref.dequantize_s32(m, n, c.data(), ldc, 7, w_sum.data(), scale.data(), b, relu, want.data(), n);
      for (Int8Isa isa : available()) {
        std::vector<float> got(want.size());
        int8_kernels_for(isa).dequantize_s32(m, n, c.data(), ldc, 7, w_sum.data(), scale.data(), b, relu, got.data(), n);
        EXPECT_EQ(got, want) << int8_isa_name(isa) << " relu " << relu;
      }
    }
  }
  // Written transposed, as a convolution's float outputs go channels first: rows in blocks of eight
  // and a tail, columns likewise.
  const int64_t rows = 19, ldy = rows + 3;
  std::vector<int32_t> tall(static_cast<size_t>(rows * ldc));
  for (auto& v : tall) v = static_cast<int32_t>(rng() % 4000001) - 2000000;
  for (bool relu : {false, true}) {
    for (const float* b : {static_cast<const float*>(nullptr), static_cast<const float*>(fbias.data())}) {
      std::vector<float> rowwise(static_cast<size_t>(rows * n)), want(static_cast<size_t>(n * ldy), -1.0f);
      ref.dequantize_s32(rows, n, tall.data(), ldc, 7, w_sum.data(), scale.data(), b, relu, rowwise.data(), n);
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < n; ++j) want[j * ldy + i] = rowwise[i * n + j];
      }
      for (Int8Isa isa : available()) {
        std::vector<float> got(want.size(), -1.0f);  // the gaps between rows stay untouched
        int8_kernels_for(isa).dequantize_s32_transposed(rows, n, tall.data(), ldc, 7, w_sum.data(), scale.data(), b,
                                                        relu, got.data(), ldy);
        EXPECT_EQ(got, want) << int8_isa_name(isa) << " relu " << relu;
      }
    }
  }
  for (const int32_t* b : {static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(bias.data())}) {
    std::vector<uint8_t> want(static_cast<size_t>(m * n));
    ref.requantize_u8(m, n, c.data(), ldc, 7, w_sum.data(), b, mult.data(), 64, 0, 127, want.data(), n);
    int saturated = 0;
    for (uint8_t v : want) saturated += (v == 0 || v == 127) ? 1 : 0;
    EXPECT_GT(saturated, 0);  // the inputs reach the clamps
    for (Int8Isa isa : available()) {
      std::vector<uint8_t> got(want.size());
      int8_kernels_for(isa).requantize_u8(m, n, c.data(), ldc, 7, w_sum.data(), b, mult.data(), 64, 0, 127, got.data(), n);
      EXPECT_EQ(got, want) << int8_isa_name(isa);
    }
  }
}

// The direct convolution against its definition (Note [Direct int8 convolution]): the windows'
// sums, and requantized as requantize_u8 does them. The image is any bytes <= 127 (padding is the
// caller's); the shapes give whole and partial pixel tiles and column tiles, one group per kernel
// row (the one-channel first layer) and many, strides, kernel-row steps of a dilation, and a
// problem large enough to thread.
struct ConvCase {
  int64_t c, kh, kw, ho, wo, stride, dilation_h, n;
};

TEST(Int8Kernels, DirectConvolutionMatchesItsDefinition) {
  const std::vector<ConvCase> cases = {{1, 3, 3, 28, 28, 1, 1, 32}, {3, 3, 3, 4, 5, 2, 1, 17}, {32, 3, 3, 6, 7, 1, 1, 40},
                                       {2, 2, 5, 3, 9, 1, 2, 8},    {1, 5, 5, 1, 1, 1, 1, 33}, {16, 3, 3, 16, 16, 1, 1, 32},
                                       {4, 1, 1, 5, 13, 2, 1, 16}};
  for (int kind = 0; kind < 3; ++kind) {
    for (const ConvCase& cc : cases) {
      const int64_t row_groups = (cc.kw * cc.c + 3) / 4, window = 4 * row_groups, k = cc.kh * window;
      const int64_t w_in = (cc.wo - 1) * cc.stride + cc.kw, h_in = (cc.ho - 1) * cc.stride + (cc.kh - 1) * cc.dilation_h + 1;
      const int64_t row = w_in * cc.c + 3;  // rows a little wider than the windows need
      const Int8ConvWindows win{.ho = cc.ho, .wo = cc.wo, .kh = cc.kh, .row_groups = row_groups,
                                .pixel_step = cc.stride * cc.c, .row_step = cc.stride * row,
                                .tap_row_step = cc.dilation_h * row};
      const int64_t bytes = (cc.ho - 1) * win.row_step + (cc.wo - 1) * win.pixel_step + (cc.kh - 1) * win.tap_row_step + window;
      ASSERT_LE(bytes, h_in * row + 3);
      // The image and weights as rows of a GEMM: make_problem's bytes, one row of `bytes`.
      const Problem img = make_problem(1, 1, bytes, kind, static_cast<uint32_t>(cc.c * 7 + cc.n));
      const Problem wts = make_problem(1, cc.n, k, kind, static_cast<uint32_t>(cc.kw * 11 + cc.n));
      const int64_t pixels = cc.ho * cc.wo;
      std::vector<int32_t> want(static_cast<size_t>(pixels * cc.n));
      for (int64_t oy = 0; oy < cc.ho; ++oy)
        for (int64_t ox = 0; ox < cc.wo; ++ox)
          for (int64_t j = 0; j < cc.n; ++j) {
            int32_t s = 0;
            for (int64_t i = 0; i < cc.kh; ++i)
              for (int64_t t = 0; t < window; ++t)
                s += int32_t(img.a[static_cast<size_t>(oy * win.row_step + ox * win.pixel_step + i * win.tap_row_step + t)]) *
                     wts.w[static_cast<size_t>(j * k + i * window + t)];
            want[static_cast<size_t>((oy * cc.wo + ox) * cc.n + j)] = s;
          }
      std::vector<int32_t> w_sum(static_cast<size_t>(cc.n)), bias(static_cast<size_t>(cc.n));
      std::vector<float> mult(static_cast<size_t>(cc.n));
      for (int64_t j = 0; j < cc.n; ++j) {
        w_sum[static_cast<size_t>(j)] = static_cast<int32_t>(j * 37 % 2001) - 1000;
        bias[static_cast<size_t>(j)] = static_cast<int32_t>(j * 53 % 4001) - 2000;
        mult[static_cast<size_t>(j)] = 1e-4f * static_cast<float>(1 + j % 50);
      }
      // Requantizations for each way the tiles take: ReLU's bounds (byte clamps to qmin and qmax
      // after the rounding); a byte's whole range and 7-bit activations' [0, 127] with sums at
      // int32's ends and a multiplier just under 1 (rounded first, saturating); and multipliers of
      // 1 and over (clamped before the rounding, products beyond int32).
      std::vector<float> mult_wide = mult;
      std::vector<int32_t> bias_wide = bias;
      bias_wide[0] = std::numeric_limits<int32_t>::max() - 5000;
      bias_wide[static_cast<size_t>(cc.n - 1)] = std::numeric_limits<int32_t>::min() + 5000;
      mult_wide[0] = mult_wide[static_cast<size_t>(cc.n - 1)] = 0.999f;
      std::vector<float> mult_large = mult_wide;
      mult_large[static_cast<size_t>(cc.n / 2)] = 1.0f;
      mult_large[0] = 3e4f;
      const Int8Requantization relu{.a_zero = 9, .w_sum = w_sum.data(), .bias = bias.data(), .multiplier = mult.data(),
                                    .y_zero = 20, .qmin = 20, .qmax = 127};
      const Int8Requantization wide{.a_zero = 9, .w_sum = w_sum.data(), .bias = bias_wide.data(),
                                    .multiplier = mult_wide.data(), .y_zero = 128, .qmin = 0, .qmax = 255};
      const Int8Requantization seven_bits{.a_zero = 9, .w_sum = w_sum.data(), .bias = bias_wide.data(),
                                          .multiplier = mult_wide.data(), .y_zero = 64, .qmin = 0, .qmax = 127};
      const Int8Requantization large{.a_zero = 9, .w_sum = w_sum.data(), .bias = bias_wide.data(),
                                     .multiplier = mult_large.data(), .y_zero = 3, .qmin = 0, .qmax = 255};
      for (int threads : {1, 2}) {
        ember::set_num_threads(threads);
        for (Int8Isa isa : available()) {
          const Int8Kernels& kern = int8_kernels_for(isa);
          if (threads > 1 && !kern.direct_conv_fast) continue;  // the reference loops do not thread
          std::vector<int32_t> c(want.size(), -7);
          kern.conv_u8s8(win, img.a.data(), cc.n, wts.packed.data(), c.data());
          ASSERT_EQ(c, want) << int8_isa_name(isa) << " kind " << kind << " C " << cc.c << " n " << cc.n << " threads "
                             << threads;
          for (const Int8Requantization* rq : {&relu, &wide, &seven_bits, &large}) {
            std::vector<uint8_t> want_u8(want.size());
            int8_kernels_for(Int8Isa::Scalar)
                .requantize_u8(pixels, cc.n, want.data(), cc.n, rq->a_zero, rq->w_sum, rq->bias, rq->multiplier,
                               rq->y_zero, rq->qmin, rq->qmax, want_u8.data(), cc.n);
            std::vector<uint8_t> y(want.size(), 77);
            kern.conv_u8s8_requantize(win, img.a.data(), cc.n, wts.packed.data(), *rq, y.data());
            ASSERT_EQ(y, want_u8) << int8_isa_name(isa) << " kind " << kind << " C " << cc.c << " n " << cc.n
                                  << " y_zero " << rq->y_zero;
          }
        }
      }
      ember::set_num_threads(2);
    }
  }
}

TEST(Int8Kernels, TransposeMovesEveryByte) {
  std::mt19937 rng(12);
  for (int64_t rows : {1, 3, 16, 19, 48}) {
    for (int64_t cols : {1, 5, 16, 33, 64}) {
      const int64_t lds = cols + 3, ldd = rows + 5;  // strides wider than the rows: the gaps stay untouched
      std::vector<uint8_t> src(static_cast<size_t>(rows * lds));
      for (auto& v : src) v = static_cast<uint8_t>(rng());
      std::vector<uint8_t> want(static_cast<size_t>(cols * ldd), 0xA5);
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) {
          want[static_cast<size_t>(j * ldd + i)] = src[static_cast<size_t>(i * lds + j)];
        }
      }
      for (Int8Isa isa : available()) {
        std::vector<uint8_t> got(want.size(), 0xA5);
        int8_kernels_for(isa).transpose_u8(rows, cols, src.data(), lds, got.data(), ldd);
        ASSERT_EQ(got, want) << int8_isa_name(isa) << " " << rows << "x" << cols;
      }
    }
  }
}

TEST(Int8Kernels, MaxPoolFollowsItsDefinition) {
  // Windows that tile the image (2x2; 3x2 and 2x3 leaving rows and columns over; LeNet-5's 24x24),
  // and overlapping ones with padding, a stride and a dilation; channel counts around the vector
  // widths and the few-channel path's bound (16).
  const std::vector<PoolShape> shapes = {
      {.h = 8, .w = 6, .ho = 4, .wo = 3, .kh = 2, .kw = 2, .stride_h = 2, .stride_w = 2, .pad_h = 0, .pad_w = 0,
       .dil_h = 1, .dil_w = 1},
      {.h = 10, .w = 7, .ho = 3, .wo = 3, .kh = 3, .kw = 2, .stride_h = 3, .stride_w = 2, .pad_h = 0, .pad_w = 0,
       .dil_h = 1, .dil_w = 1},
      {.h = 9, .w = 11, .ho = 5, .wo = 5, .kh = 3, .kw = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
       .dil_h = 1, .dil_w = 2},
      {.h = 6, .w = 11, .ho = 3, .wo = 3, .kh = 2, .kw = 3, .stride_h = 2, .stride_w = 3, .pad_h = 0, .pad_w = 0,
       .dil_h = 1, .dil_w = 1},
      {.h = 24, .w = 24, .ho = 12, .wo = 12, .kh = 2, .kw = 2, .stride_h = 2, .stride_w = 2, .pad_h = 0, .pad_w = 0,
       .dil_h = 1, .dil_w = 1}};
  std::mt19937 rng(21);
  for (const PoolShape& q : shapes) {
    for (int64_t c : {1, 5, 6, 16, 17, 32, 67}) {
      const int64_t n = 2;
      std::vector<uint8_t> src(static_cast<size_t>(n * q.h * q.w * c));
      for (auto& v : src) v = static_cast<uint8_t>(rng());
      std::vector<uint8_t> want(static_cast<size_t>(n * q.ho * q.wo * c), 0);
      for (int64_t b = 0; b < n; ++b)
        for (int64_t oh = 0; oh < q.ho; ++oh)
          for (int64_t ow = 0; ow < q.wo; ++ow)
            for (int64_t ch = 0; ch < c; ++ch) {
              uint8_t m = 0;
              for (int64_t i = 0; i < q.kh; ++i)
                for (int64_t j = 0; j < q.kw; ++j) {
                  const int64_t ih = oh * q.stride_h - q.pad_h + i * q.dil_h;
                  const int64_t iw = ow * q.stride_w - q.pad_w + j * q.dil_w;
                  if (ih >= 0 && ih < q.h && iw >= 0 && iw < q.w) {
                    m = std::max(m, src[static_cast<size_t>(((b * q.h + ih) * q.w + iw) * c + ch)]);
                  }
                }
              want[static_cast<size_t>(((b * q.ho + oh) * q.wo + ow) * c + ch)] = m;
            }
      for (Int8Isa isa : available()) {
        std::vector<uint8_t> got(want.size(), 0xA5);
        int8_kernels_for(isa).max_pool_u8(q, n, c, src.data(), got.data());
        ASSERT_EQ(got, want) << int8_isa_name(isa) << " kernel " << q.kh << "x" << q.kw << " c " << c;
      }
    }
  }
}

TEST(Int8Kernels, ChoiceFollowsTheFloatTables) {
  EXPECT_TRUE(int8_isa_available(Int8Isa::Scalar));
  EXPECT_TRUE(int8_isa_available(int8_kernels().isa));
  EXPECT_STREQ(int8_isa_name(Int8Isa::Avx512Vnni), "avx512_vnni");
  if (!int8_isa_available(Int8Isa::Avx512Vnni)) {
    EXPECT_THROW(int8_kernels_for(Int8Isa::Avx512Vnni), ember::ValueError);
  }
}

}  // namespace
