// Convolutions whose column matrices for several images share one GEMM (Note [Columns of several
// images] in src/ops/conv_forward.cpp): a batch gives each image the bits it gets alone (forward
// and input gradient) and the weight gradient is the sum of the images' ones, for conv2d and
// conv_transpose2d, with groups, at one and two threads. (Values against PyTorch and gradchecks:
// the conv cases of the op registry, whose shapes are one image per GEMM.) And the three conv
// ops against their definition on geometries the registry does not reach: padding that differs
// between top and bottom or left and right, random ones, and many channels on small planes.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ember/ember.hpp"

namespace {

using namespace ember;

struct Case {
  const char* name;
  Shape x, w;
  bool transposed;
  int64_t stride, padding, groups;
};

// Products of at least 2^21 multiply-adds per image, or narrower than 32 columns: the shapes
// that share GEMMs.
const Case kCases[] = {
    {"dcgan generator conv1 (1x1 input)", {5, 100, 1, 1}, {100, 256, 4, 4}, true, 1, 0, 1},
    {"small and narrow", {4, 8, 5, 5}, {16, 8, 3, 3}, false, 2, 1, 1},
    {"dcgan discriminator conv3", {5, 64, 7, 7}, {256, 64, 4, 4}, false, 2, 1, 1},
    {"grouped stride-2", {3, 128, 7, 7}, {512, 64, 4, 4}, false, 2, 1, 2},
    {"dcgan generator conv2", {5, 256, 4, 4}, {256, 128, 3, 3}, true, 2, 1, 1},
    {"dcgan generator conv3", {3, 128, 7, 7}, {128, 64, 4, 4}, true, 2, 1, 1},
    // Winograd's blocks of tiles run across images (AVX2 from 16 channels, AVX-512 from 128).
    {"resnet 3x3, 16 channels", {5, 16, 10, 10}, {16, 16, 3, 3}, false, 1, 1, 1},
    {"resnet-18 stage", {3, 128, 14, 14}, {128, 128, 3, 3}, false, 1, 1, 1},
    {"stride-1 3x3 transposed", {3, 128, 14, 14}, {128, 128, 3, 3}, true, 1, 1, 1},
    // Weights whose transform the threads share (8 MB and up: kSharedWinogradWeights in src/ops/conv.cpp).
    {"512 x 256 channels", {3, 256, 8, 8}, {512, 256, 3, 3}, false, 1, 1, 1},
    {"512 x 256 channels transposed", {3, 512, 8, 8}, {512, 256, 3, 3}, true, 1, 1, 1},
};

template <class T>
Tensor<T> run(const Case& c, const Tensor<T>& x, const Tensor<T>& w) {
  if (c.transposed) {
    return nn::functional::conv_transpose2d(x, w, Tensor<T>(),
                                            {.stride = c.stride, .padding = c.padding, .groups = c.groups,
                                             .bias = false});
  }
  return nn::functional::conv2d(x, w, Tensor<T>(),
                                {.stride = c.stride, .padding = c.padding, .groups = c.groups, .bias = false});
}

template <class T>
void expect_same_bits(const Tensor<T>& got, const Tensor<T>& want, const char* what, int64_t image) {
  const std::vector<T> a = got.contiguous().to_vector(), b = want.contiguous().to_vector();
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << what << " of image " << image << ", element " << i;
}

template <class T>
void check_batch_against_images(const Case& c) {
  Generator gen(7);
  const Tensor<T> x = randn<T>(c.x, &gen).requires_grad_(true);
  const Tensor<T> w = (randn<T>(c.w, &gen) * T(0.05)).requires_grad_(true);
  const Tensor<T> y = run(c, x, w);
  const Tensor<T> gy = randn<T>(y.shape(), &gen);
  (y * gy).sum().backward();
  const Tensor<T> gx = x.grad(), gw = w.grad();
  ASSERT_TRUE(gx.defined() && gw.defined());

  std::vector<T> gw_sum(static_cast<size_t>(gw.numel()), T(0));
  for (int64_t b = 0; b < c.x[0]; ++b) {
    const Tensor<T> xb = x.detach().narrow(0, b, 1).contiguous().requires_grad_(true);
    const Tensor<T> wb = w.detach().clone().requires_grad_(true);
    const Tensor<T> yb = run(c, xb, wb);
    (yb * gy.narrow(0, b, 1)).sum().backward();
    expect_same_bits(y.detach().narrow(0, b, 1), yb.detach(), "output", b);
    expect_same_bits(gx.narrow(0, b, 1), xb.grad(), "input gradient", b);
    const std::vector<T> part = wb.grad().contiguous().to_vector();
    for (size_t i = 0; i < part.size(); ++i) gw_sum[i] += part[i];
  }
  // The weight gradient sums over images and pixels in another order: equal to rounding.
  const std::vector<T> got = gw.contiguous().to_vector();
  const double tol = sizeof(T) == 4 ? 1e-4 : 1e-11;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(double(got[i]), double(gw_sum[i]), tol * (1 + std::abs(double(gw_sum[i])))) << "weight gradient " << i;
  }
}

TEST(ConvLowering, ImagesSharingAGemmGetTheirOwnBits) {
  const int threads = get_num_threads();
  for (int t : {1, 2}) {
    set_num_threads(t);
    for (const Case& c : kCases) {
      SCOPED_TRACE(::testing::Message() << c.name << ", " << t << " thread(s)");
      check_batch_against_images<float>(c);
      check_batch_against_images<double>(c);
    }
  }
  set_num_threads(threads);
}

// One geometry of conv2d (Conv2dGeometry's padding: top, bottom, left, right).
struct Geometry {
  int64_t n, c, o, groups, h, w, kh, kw, stride, dilation;
  std::array<int64_t, 4> padding;
};

std::string describe(const Geometry& g) {
  std::ostringstream s;
  s << "n" << g.n << " c" << g.c << " o" << g.o << " groups " << g.groups << " " << g.h << "x" << g.w << " kernel "
    << g.kh << "x" << g.kw << " stride " << g.stride << " dilation " << g.dilation << " padding " << g.padding[0] << ","
    << g.padding[1] << "," << g.padding[2] << "," << g.padding[3];
  return s.str();
}

Conv2dGeometry conv_geometry(const Geometry& g) {
  Conv2dGeometry geometry;
  geometry.stride = {g.stride, g.stride};
  geometry.padding = g.padding;
  geometry.dilation = {g.dilation, g.dilation};
  geometry.groups = g.groups;
  return geometry;
}

// got against the sums that define it, in double (sums of at most a few hundred products:
// agreement to 1e-10).
void expect_near(const Tensor<double>& got, const std::vector<double>& want, const char* what) {
  const std::vector<double> v = got.contiguous().to_vector();
  ASSERT_EQ(v.size(), want.size()) << what;
  for (size_t i = 0; i < v.size(); ++i) ASSERT_NEAR(v[i], want[i], 1e-10 * (1 + std::abs(want[i]))) << what << " " << i;
}

// conv2d, conv2d_input_grad and conv2d_weight_grad of g against the sums that define them, in
// double (sums of at most a few hundred products: agreement to 1e-10).
void check_against_definition(const Geometry& g) {
  SCOPED_TRACE(describe(g));
  const int64_t cg = g.c / g.groups, og = g.o / g.groups;
  const int64_t ho = (g.h + g.padding[0] + g.padding[1] - g.dilation * (g.kh - 1) - 1) / g.stride + 1;
  const int64_t wo = (g.w + g.padding[2] + g.padding[3] - g.dilation * (g.kw - 1) - 1) / g.stride + 1;
  const Conv2dGeometry geometry = conv_geometry(g);
  Generator gen(3);
  const Tensor<double> x = randn<double>({g.n, g.c, g.h, g.w}, &gen), w = randn<double>({g.o, cg, g.kh, g.kw}, &gen);
  const Tensor<double> gy = randn<double>({g.n, g.o, ho, wo}, &gen);
  const Tensor<double> y = conv2d(x, w, Tensor<double>(), geometry);
  const Tensor<double> gx = conv2d_input_grad(gy, w, {g.h, g.w}, geometry);
  const Tensor<double> gw = conv2d_weight_grad(x, gy, {g.o, cg, g.kh, g.kw}, geometry);
  ASSERT_EQ(y.shape(), (Shape{g.n, g.o, ho, wo}));
  const std::vector<double> X = x.to_vector(), Wt = w.to_vector(), G = gy.to_vector();
  std::vector<double> want_y(static_cast<size_t>(y.numel())), want_gx(X.size()), want_gw(Wt.size());
  for (int64_t b = 0; b < g.n; ++b)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          const size_t yi = static_cast<size_t>(((b * g.o + o) * ho + oh) * wo + ow);
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t ih = oh * g.stride - g.padding[0] + i * g.dilation;
                const int64_t iw = ow * g.stride - g.padding[2] + j * g.dilation;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                const size_t xi = static_cast<size_t>(((b * g.c + o / og * cg + c) * g.h + ih) * g.w + iw);
                const size_t wi = static_cast<size_t>(((o * cg + c) * g.kh + i) * g.kw + j);
                want_y[yi] += X[xi] * Wt[wi];
                want_gx[xi] += G[yi] * Wt[wi];
                want_gw[wi] += G[yi] * X[xi];
              }
        }
  expect_near(y, want_y, "output");
  expect_near(gx, want_gx, "input gradient");
  expect_near(gw, want_gw, "weight gradient");
}

TEST(ConvLowering, GeometriesMatchTheDefinition) {
  // No padding at the top and left but some at the bottom or right, with few output channels:
  // the weight gradient once took these for unpadded ("valid") ones and read past the image.
  const Geometry fixed[] = {{3, 7, 8, 1, 12, 17, 2, 1, 1, 1, {0, 1, 0, 2}}, {4, 5, 6, 1, 9, 5, 4, 4, 1, 1, {0, 2, 0, 1}},
                            {2, 4, 8, 2, 6, 12, 1, 2, 1, 1, {0, 1, 0, 0}},  {3, 3, 2, 1, 6, 7, 3, 1, 1, 1, {0, 2, 0, 1}},
                            {2, 3, 5, 1, 8, 9, 3, 3, 1, 2, {0, 1, 0, 3}},   {2, 6, 4, 1, 7, 6, 3, 3, 1, 1, {2, 0, 1, 0}},
                            {3, 4, 6, 2, 9, 8, 3, 2, 2, 1, {0, 2, 0, 2}},   {2, 2, 3, 1, 11, 10, 4, 4, 2, 1, {1, 2, 2, 1}}};
  for (const Geometry& g : fixed) check_against_definition(g);
  // Random geometries: strides 1 and 2, dilation 1 or 2, groups, any padding up to 2 per side.
  std::mt19937 rng(17);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int k = 0; k < 40;) {
    Geometry g{};
    g.groups = pick(1, 3) == 3 ? 2 : 1;
    g.c = pick(1, 6) * g.groups;
    g.o = pick(1, 10) * g.groups;
    g.n = pick(1, 5);
    g.h = pick(1, 12);
    g.w = pick(1, 12);
    g.kh = pick(1, 4);
    g.kw = pick(1, 4);
    g.stride = pick(1, 2);
    g.dilation = pick(1, 4) == 4 ? 2 : 1;
    for (int64_t& p : g.padding) p = pick(0, 2);
    if (g.h + g.padding[0] + g.padding[1] <= g.dilation * (g.kh - 1) ||
        g.w + g.padding[2] + g.padding[3] <= g.dilation * (g.kw - 1))
      continue;  // no output
    check_against_definition(g);
    if (::testing::Test::HasFatalFailure()) return;
    ++k;
  }
}

// Same-size stride-1 convolutions on either side of the routing rules (Note [Flat panels in L1] in
// src/ops/conv_forward.cpp, kConvFlatMaxWgradOutputs in ember/backend/kernels.hpp): where the CPU has
// the flat kernels, the first runs on them in all three directions, the others (the input band of
// a flat panel past L1; more than 64 output channels per group) through column matrices and GEMMs.
TEST(ConvLowering, ManyChannelsOnSmallPlanesMatchTheDefinition) {
  const Geometry cases[] = {{2, 40, 48, 1, 8, 8, 3, 3, 1, 1, {1, 1, 1, 1}},
                            {2, 96, 72, 1, 7, 7, 3, 3, 1, 1, {1, 1, 1, 1}},
                            {2, 160, 144, 2, 9, 9, 3, 3, 1, 1, {1, 1, 1, 1}}};
  for (const Geometry& g : cases) check_against_definition(g);
}

// Depthwise convolutions (one group per input channel: Note [Depthwise convolution] in
// src/backend/conv_depthwise.inl) on planes wide enough for whole vectors, strides 1 to 3, dilation,
// padding that differs between sides, kernels of 9 and 25 taps (the compiled tap counts) and
// others, one and two outputs per channel: in double against the definition, in float against
// double, at one and two threads (the threads split the channels of the weight gradient).
TEST(ConvLowering, DepthwiseMatchesTheDefinition) {
  const Geometry cases[] = {{2, 5, 5, 5, 19, 40, 3, 3, 1, 1, {1, 1, 1, 1}},
                            {3, 4, 4, 4, 33, 37, 3, 3, 2, 1, {1, 1, 1, 1}},
                            {2, 3, 6, 3, 21, 70, 5, 5, 1, 1, {2, 2, 2, 2}},
                            {2, 3, 3, 3, 16, 35, 5, 5, 2, 2, {0, 3, 4, 1}},
                            {1, 2, 4, 2, 25, 29, 7, 1, 3, 1, {3, 0, 0, 2}},
                            {2, 6, 6, 6, 8, 8, 3, 3, 2, 1, {1, 1, 1, 1}},
                            {1, 3, 3, 3, 4, 5, 3, 3, 2, 2, {2, 2, 2, 2}}};
  const int threads = get_num_threads();
  for (int t : {1, 2}) {
    set_num_threads(t);
    for (const Geometry& g : cases) {
      check_against_definition(g);
      if (::testing::Test::HasFatalFailure()) return set_num_threads(threads);
      SCOPED_TRACE(describe(g) + " in float, " + std::to_string(t) + " thread(s)");
      const Conv2dGeometry geometry = conv_geometry(g);
      Generator gen(9);
      const Tensor<double> x = randn<double>({g.n, g.c, g.h, g.w}, &gen);
      const Tensor<double> w = randn<double>({g.o, 1, g.kh, g.kw}, &gen);
      const Tensor<double> y = conv2d(x, w, Tensor<double>(), geometry);
      const Tensor<double> gy = randn<double>(y.shape(), &gen);
      const Tensor<double> gx = conv2d_input_grad(gy, w, {g.h, g.w}, geometry);
      const Tensor<double> gw = conv2d_weight_grad(x, gy, w.shape(), geometry);
      auto expect_close = [](const Tensor<float>& got, const Tensor<double>& want, double tol, const char* what) {
        const std::vector<float> a = got.to_vector();
        const std::vector<double> b = want.to_vector();
        ASSERT_EQ(a.size(), b.size()) << what;
        for (size_t i = 0; i < a.size(); ++i) {
          ASSERT_NEAR(double(a[i]), b[i], tol * (1 + std::abs(b[i]))) << what << " " << i;
        }
      };
      const double taps = double(g.kh * g.kw);
      expect_close(conv2d(x.to<float>(), w.to<float>(), Tensor<float>(), geometry), y, 1e-5 * std::sqrt(taps),
                   "output");
      expect_close(conv2d_input_grad(gy.to<float>(), w.to<float>(), {g.h, g.w}, geometry), gx, 1e-5 * std::sqrt(taps),
                   "input gradient");
      expect_close(conv2d_weight_grad(x.to<float>(), gy.to<float>(), w.shape(), geometry), gw,
                   1e-5 * std::sqrt(double(g.n * g.h * g.w)), "weight gradient");
      if (::testing::Test::HasFatalFailure()) return set_num_threads(threads);
    }
  }
  set_num_threads(threads);
}

// The shapes Winograd's F(2x2, 3x3) takes (Note [Winograd convolution] in
// src/backend/conv_winograd.inl: stride-1 3x3 with many channels, AVX2 from 16 and AVX-512 from 128;
// 512 x 256 channels, whose weights' transform the threads share),
// in float, against the double ops (checked against the definition above): forward, input and
// weight gradients. Odd planes leave half a tile outside the output.
TEST(ConvLowering, WinogradShapesMatchTheDefinitionInFloat) {
  const Geometry cases[] = {{2, 16, 16, 1, 10, 10, 3, 3, 1, 1, {1, 1, 1, 1}},
                            {2, 24, 20, 1, 9, 13, 3, 3, 1, 1, {0, 0, 0, 0}},
                            {2, 32, 48, 2, 11, 9, 3, 3, 1, 1, {1, 1, 1, 1}},
                            {1, 128, 136, 1, 14, 14, 3, 3, 1, 1, {1, 1, 1, 1}},
                            {2, 256, 512, 1, 8, 8, 3, 3, 1, 1, {1, 1, 1, 1}}};  // one shared transform
  for (const Geometry& g : cases) {
    SCOPED_TRACE(describe(g));
    const int64_t cg = g.c / g.groups;
    Conv2dGeometry geometry;
    geometry.padding = g.padding;
    geometry.groups = g.groups;
    Generator gen(5);
    const Tensor<double> x = randn<double>({g.n, g.c, g.h, g.w}, &gen), w = randn<double>({g.o, cg, 3, 3}, &gen);
    const Tensor<double> y = conv2d(x, w, Tensor<double>(), geometry);
    const Tensor<double> gy = randn<double>(y.shape(), &gen);
    const Tensor<double> gx = conv2d_input_grad(gy, w, {g.h, g.w}, geometry);
    const Tensor<float> yf = conv2d(x.to<float>(), w.to<float>(), Tensor<float>(), geometry);
    const Tensor<float> gxf = conv2d_input_grad(gy.to<float>(), w.to<float>(), {g.h, g.w}, geometry);
    // Sums of 9 c products of unit normals: float's rounding and the transforms' stay under 1e-5 of
    // sqrt(9 c), the sum's typical size.
    double tol = 1e-5 * std::sqrt(9.0 * double(std::max(cg, g.o / g.groups)));
    auto expect_close = [&](const Tensor<float>& got, const Tensor<double>& want, const char* what) {
      const std::vector<float> a = got.to_vector();
      const std::vector<double> b = want.to_vector();
      ASSERT_EQ(a.size(), b.size()) << what;
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_NEAR(double(a[i]), b[i], tol * (1 + std::abs(b[i]))) << what << " " << i;
      }
    };
    const Tensor<double> gw = conv2d_weight_grad(x, gy, w.shape(), geometry);
    const Tensor<float> gwf = conv2d_weight_grad(x.to<float>(), gy.to<float>(), w.shape(), geometry);
    expect_close(yf, y, "output");
    expect_close(gxf, gx, "input gradient");
    // The weight gradient sums over every pixel of the batch: its typical size sqrt(n h w).
    tol = 1e-5 * std::sqrt(double(g.n * g.h * g.w));
    expect_close(gwf, gw, "weight gradient");
  }
}

// A transposed convolution's geometry (conv_transpose2d's arguments).
struct Transposed {
  int64_t n, c, o, groups, h, w, kh, kw, stride, dil, ph, pw, oph, opw;
  int64_t ho() const { return (h - 1) * stride - 2 * ph + dil * (kh - 1) + oph + 1; }
  int64_t wo() const { return (w - 1) * stride - 2 * pw + dil * (kw - 1) + opw + 1; }
};

// nn::functional::conv_transpose2d, forward and both gradients through autograd, against the sums
// that define it, in double.
void check_transposed_against_definition(const Transposed& t, int seed) {
  const int64_t n = t.n, c = t.c, o = t.o, h = t.h, w = t.w, kh = t.kh, kw = t.kw, stride = t.stride, dil = t.dil,
                ph = t.ph, pw = t.pw, cg = c / t.groups, og = o / t.groups, ho = t.ho(), wo = t.wo();
  std::ostringstream what;
  what << "n" << n << " c" << c << " o" << o << " groups " << t.groups << " " << h << "x" << w << " kernel " << kh
       << "x" << kw << " stride " << stride << " dilation " << dil << " padding " << ph << "," << pw
       << " output_padding " << t.oph << "," << t.opw;
  SCOPED_TRACE(what.str());
  Generator gen(seed);
  Tensor<double> x = randn<double>({n, c, h, w}, &gen).requires_grad_(true);
  Tensor<double> wt = randn<double>({c, og, kh, kw}, &gen).requires_grad_(true);
  Tensor<double> b = randn<double>({o}, &gen).requires_grad_(true);
  nn::ConvTranspose2dOptions opt;
  opt.stride = {stride, stride};
  opt.padding = {ph, pw};
  opt.output_padding = {t.oph, t.opw};
  opt.dilation = {dil, dil};
  opt.groups = t.groups;
  Tensor<double> y = nn::functional::conv_transpose2d(x, wt, b, opt);
  ASSERT_EQ(y.shape(), (Shape{n, o, ho, wo}));
  const Tensor<double> gy = randn<double>({n, o, ho, wo}, &gen);
  (y * gy).sum().backward();
  const std::vector<double> X = x.detach().to_vector(), W = wt.detach().to_vector(), B = b.detach().to_vector(),
                            G = gy.to_vector();
  std::vector<double> want_y(static_cast<size_t>(y.numel())), want_gx(X.size()), want_gw(W.size()),
      want_gb(B.size());
  for (int64_t bi = 0; bi < n; ++bi)
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t i = 0; i < ho * wo; ++i) {
        want_y[static_cast<size_t>((bi * o + oc) * ho * wo + i)] = B[static_cast<size_t>(oc)];
        want_gb[static_cast<size_t>(oc)] += G[static_cast<size_t>((bi * o + oc) * ho * wo + i)];
      }
  // Each input pixel scatters through each tap to output (ih * stride - pad + i * dil, ...).
  for (int64_t bi = 0; bi < n; ++bi)
    for (int64_t ic = 0; ic < c; ++ic)
      for (int64_t ih = 0; ih < h; ++ih)
        for (int64_t iw = 0; iw < w; ++iw)
          for (int64_t k = 0; k < og; ++k)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t oh = ih * stride - ph + i * dil, ow = iw * stride - pw + j * dil;
                if (oh < 0 || oh >= ho || ow < 0 || ow >= wo) continue;
                const int64_t oc = ic / cg * og + k;
                const size_t xi = static_cast<size_t>(((bi * c + ic) * h + ih) * w + iw);
                const size_t wi = static_cast<size_t>(((ic * og + k) * kh + i) * kw + j);
                const size_t yi = static_cast<size_t>(((bi * o + oc) * ho + oh) * wo + ow);
                want_y[yi] += X[xi] * W[wi];
                want_gx[xi] += G[yi] * W[wi];
                want_gw[wi] += G[yi] * X[xi];
              }
  expect_near(y.detach(), want_y, "output");
  expect_near(x.grad(), want_gx, "input gradient");
  expect_near(wt.grad(), want_gw, "weight gradient");
  expect_near(b.grad(), want_gb, "bias gradient");
}

// Random geometries: strides 1-3 (with output_padding below the stride or the dilation),
// dilation, groups, padding up to one past the kernel's reach.
TEST(ConvLowering, TransposedGeometriesMatchTheDefinition) {
  std::mt19937 rng(23);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int trial = 0; trial < 40;) {
    Transposed t{};
    t.groups = pick(1, 3) == 3 ? 2 : 1;
    t.c = pick(1, 4) * t.groups;
    t.o = pick(1, 5) * t.groups;
    t.n = pick(1, 3);
    t.h = pick(1, 7);
    t.w = pick(1, 7);
    t.kh = pick(1, 4);
    t.kw = pick(1, 4);
    t.stride = pick(1, 3);
    t.dil = pick(1, 4) == 4 ? 2 : 1;
    t.ph = pick(0, t.dil * (t.kh - 1) + 1);
    t.pw = pick(0, t.dil * (t.kw - 1) + 1);
    t.oph = pick(0, std::max(t.stride, t.dil) - 1);
    t.opw = pick(0, std::max(t.stride, t.dil) - 1);
    if (t.ho() <= 0 || t.wo() <= 0) continue;
    ++trial;
    check_transposed_against_definition(t, trial);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Stride 2 with at least 8 output channels per group: on AVX-512 the phased path (Note [Input
// gradient by phases] in src/ops/conv_forward.cpp) where each phase of the output is no wider than
// the input; kernels 1-6 (phases without taps), dilation 1-3, padding past the kernel's reach (a
// phase's first tap below the input), output_padding, groups; batches of images side by side.
TEST(ConvLowering, Stride2TransposedByPhasesMatchTheDefinition) {
  const Transposed fixed[] = {{3, 16, 16, 1, 4, 4, 3, 3, 2, 1, 1, 1, 0, 0},   // DCGAN's 4 -> 7, kernel 3
                              {2, 12, 8, 1, 5, 4, 4, 4, 2, 1, 1, 1, 0, 0},    // 5x4 -> 10x8, kernel 4
                              {2, 6, 20, 2, 3, 5, 4, 3, 2, 1, 1, 1, 1, 1},    // groups, output_padding
                              {3, 5, 9, 1, 4, 3, 1, 1, 2, 1, 0, 0, 1, 1},     // 1x1: three empty phases
                              {2, 4, 8, 1, 4, 4, 2, 2, 2, 3, 0, 0, 0, 0},     // dilation 3
                              {2, 4, 8, 1, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1},     // dilation 2: one phase
                              {2, 3, 10, 1, 3, 4, 6, 5, 2, 1, 3, 2, 1, 0}};   // wide kernels
  int seed = 100;
  for (const Transposed& t : fixed) {
    check_transposed_against_definition(t, ++seed);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::mt19937 rng(29);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int trial = 0; trial < 30;) {
    Transposed t{};
    t.groups = pick(1, 3) == 3 ? 2 : 1;
    t.c = pick(1, 4) * t.groups;
    t.o = pick(8, 12) * t.groups;
    t.n = pick(1, 4);
    t.h = pick(1, 6);
    t.w = pick(1, 6);
    t.kh = pick(1, 5);
    t.kw = pick(1, 5);
    t.stride = 2;
    t.dil = pick(1, 3);
    t.ph = pick(0, t.dil * (t.kh - 1) + 1);
    t.pw = pick(0, t.dil * (t.kw - 1) + 1);
    t.oph = pick(0, std::max<int64_t>(2, t.dil) - 1);
    t.opw = pick(0, std::max<int64_t>(2, t.dil) - 1);
    if (t.ho() <= 0 || t.wo() <= 0) continue;
    ++trial;
    check_transposed_against_definition(t, ++seed);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
