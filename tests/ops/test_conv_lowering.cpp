// Convolutions whose column matrices for several images share one GEMM (Note [Columns of several
// images] in src/ops/conv_forward.cpp): a batch gives each image the bits it gets alone (forward
// and input gradient) and the weight gradient is the sum of the images' ones, for conv2d and
// conv_transpose2d, with groups, at one and two threads. (Values against PyTorch and gradchecks:
// the conv cases of the op registry, whose shapes are one image per GEMM.)
#include <gtest/gtest.h>

#include <cmath>
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

}  // namespace
