// Tensor basics: factories, element access, views sharing storage, copies, conversion, printing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"

namespace ember {
namespace {

TEST(Factories, ValuesAndShapes) {
  auto t = tensor<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), Shape({2, 3}));
  EXPECT_EQ(t.shape().size(), 2);
  EXPECT_EQ(t.shape()[1], 3);
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.dim(), 2);
  EXPECT_EQ(t.at({1, 2}), 6.0f);
  EXPECT_EQ(t.at({-1, -3}), 4.0f);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1, 2, 3, 4, 5, 6}));

  std::vector<int64_t> shape_vec{4, 2};
  EXPECT_EQ(zeros<double>(shape_vec).shape(), Shape({4, 2}));
  EXPECT_EQ(ones<float>({3}).to_vector(), (std::vector<float>{1, 1, 1}));
  EXPECT_EQ(full<int64_t>({2}, 7).to_vector(), (std::vector<int64_t>{7, 7}));
  EXPECT_EQ(arange<int64_t>(5).to_vector(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange<float>(1, 2, 0.25).to_vector(), (std::vector<float>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(linspace<double>(0, 1, 5).to_vector(), (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(eye<float>(2, 3).to_vector(), (std::vector<float>{1, 0, 0, 0, 1, 0}));
  EXPECT_EQ(scalar_tensor<double>(2.5).item(), 2.5);
  EXPECT_EQ(scalar_tensor<double>(2.5).dim(), 0);
  auto z = zeros_like(t);
  EXPECT_EQ(z.shape(), t.shape());
}

TEST(Factories, RandomIsReproducibleForASeed) {
  manual_seed(42);
  auto a = randn<float>({100});
  auto r = rand<double>({50});
  manual_seed(42);
  auto b = randn<float>({100});
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), randn<float>({100}).to_vector());

  Generator g1(7), g2(7);
  EXPECT_EQ(rand<double>({10}, false, &g1).to_vector(), rand<double>({10}, false, &g2).to_vector());
  // LibTorch's randn(size, generator): the generator is used, not taken for requires_grad.
  Generator g3(11), g4(11);
  const Tensor<float> n3 = randn<float>({10}, &g3), n4 = randn<float>({10}, &g4);
  EXPECT_EQ(n3.to_vector(), n4.to_vector());
  EXPECT_FALSE(n3.requires_grad());
  EXPECT_EQ(rand<float>({3}, &g3).to_vector(), rand<float>({3}, &g4).to_vector());
  for (double v : r.to_vector()) {
    EXPECT_GE(v, 0.0);
    EXPECT_LT(v, 1.0);
  }
  auto ri = randint<int64_t>(3, 6, {1000}, &g1);
  int counts[3] = {0, 0, 0};
  for (int64_t v : ri.to_vector()) {
    ASSERT_GE(v, 3);
    ASSERT_LT(v, 6);
    ++counts[v - 3];
  }
  for (int c : counts) EXPECT_GT(c, 250);

  auto n = randn<double>({20000}, false, &g1);
  EXPECT_NEAR(n.mean().item(), 0.0, 0.03);
  EXPECT_NEAR(n.std().item(), 1.0, 0.03);
  auto bern = bernoulli<double>({20000}, 0.3, &g1);
  EXPECT_NEAR(bern.mean().item(), 0.3, 0.02);
  auto perm = randperm(10, &g1).to_vector();
  std::sort(perm.begin(), perm.end());
  EXPECT_EQ(perm, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Views, ShareStorage) {
  auto t = arange<float>(12).reshape({3, 4});
  auto tt = t.t();
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.shape(), Shape({4, 3}));
  EXPECT_EQ(tt.at({1, 2}), t.at({2, 1}));
  auto row = t.select(0, 1);
  auto col = t.slice(1, 1, 3);
  {
    NoGradGuard g;
    row.fill_(-1.0f);
  }
  EXPECT_EQ(t.at({1, 0}), -1.0f);
  EXPECT_EQ(col.at({1, 0}), -1.0f);
  EXPECT_EQ(col.shape(), Shape({3, 2}));
  EXPECT_EQ(t.slice(1, 0, 4, 2).to_vector(), (std::vector<float>{0, 2, -1, -1, 8, 10}));
  EXPECT_EQ(t.narrow(0, 2, 1).to_vector(), (std::vector<float>{8, 9, 10, 11}));
  EXPECT_EQ(t.permute({1, 0}).contiguous().to_vector(), tt.contiguous().to_vector());
  auto e = tensor<float>({1, 2}, {2, 1}).expand({2, 3});
  EXPECT_EQ(e.to_vector(), (std::vector<float>{1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(e.strides()[1], 0);
  EXPECT_EQ(t.unsqueeze(1).shape(), Shape({3, 1, 4}));
  EXPECT_EQ(t.unsqueeze(-1).shape(), Shape({3, 4, 1}));
  EXPECT_EQ(t.unsqueeze(1).squeeze().shape(), Shape({3, 4}));
  EXPECT_EQ(t.flatten().shape(), Shape({12}));
  EXPECT_EQ(t.reshape({2, -1}).shape(), Shape({2, 6}));
  // reshape of a transposed view copies; view refuses.
  auto r = tt.reshape({12});
  EXPECT_EQ(r.to_vector(), tt.contiguous().to_vector());
  EXPECT_THROW(tt.view({12}), ShapeError);
  auto parts = arange<float>(10).split(4);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].to_vector(), (std::vector<float>{8, 9}));
  auto chunks = arange<float>(10).chunk(3);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].numel(), 4);
}

TEST(Copies, CloneContiguousDetachConvert) {
  auto t = tensor<double>({1.5, -2.5, 3.0, 4.25}, {2, 2});
  auto c = t.clone();
  {
    NoGradGuard g;
    c.fill_(0);
  }
  EXPECT_EQ(t.at({0, 0}), 1.5);
  EXPECT_EQ(t.t().contiguous().to_vector(), (std::vector<double>{1.5, 3.0, -2.5, 4.25}));
  EXPECT_EQ(t.to<float>().to_vector(), (std::vector<float>{1.5f, -2.5f, 3.0f, 4.25f}));
  EXPECT_EQ(t.to<int64_t>().to_vector(), (std::vector<int64_t>{1, -2, 3, 4}));
  EXPECT_THROW(tensor<double>({std::nan("")}).to<int64_t>(), ValueError);
  EXPECT_THROW(tensor<double>({1e30}).to<int32_t>(), ValueError);
  auto d = t.detach();
  EXPECT_EQ(d.data_ptr(), t.data_ptr());
  EXPECT_EQ(t.data()[3], 4.25);
  EXPECT_THROW(t.t().data(), ValueError);
  auto dst = zeros<double>({2, 2});
  dst.copy_(tensor<double>({1, 2}, {2}));
  EXPECT_EQ(dst.to_vector(), (std::vector<double>{1, 2, 1, 2}));
}

TEST(ZeroSize, ShapesAndReductions) {
  auto e = zeros<float>({0, 3});
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(e.sum().item(), 0.0f);
  EXPECT_EQ(e.sum(0).shape(), Shape({3}));
  EXPECT_EQ(e.sum(0).to_vector(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(e.sum(1).shape(), Shape({0}));
  EXPECT_TRUE(std::isnan(e.mean().item()));
  EXPECT_EQ(e.prod(0).to_vector(), (std::vector<float>{1, 1, 1}));
  EXPECT_EQ((e + 1.0).shape(), Shape({0, 3}));
  EXPECT_EQ(matmul(zeros<float>({2, 0}), zeros<float>({0, 3})).to_vector(),
            std::vector<float>(6, 0.0f));
  EXPECT_EQ(matmul(zeros<float>({0, 4}), zeros<float>({4, 3})).shape(), Shape({0, 3}));
  EXPECT_EQ(cat(std::vector<Tensor<float>>{e, ones<float>({2, 3})}, 0).shape(), Shape({2, 3}));
  EXPECT_EQ(e.reshape({3, 0}).shape(), Shape({3, 0}));
  EXPECT_THROW(e.max(), ValueError);
  EXPECT_EQ(e.to_vector().size(), 0u);
  std::ostringstream os;
  os << e;
  EXPECT_NE(os.str().find("[]"), std::string::npos);
}

TEST(Printing, ShowsValuesShapeAndDtype) {
  std::ostringstream os;
  os << tensor<float>({1, 2.5, -3, 4}, {2, 2});
  EXPECT_EQ(os.str(),
            "tensor([[ 1.0000,  2.5000],\n        [-3.0000,  4.0000]], shape=[2, 2], dtype=float32)");
  EXPECT_EQ(tensor<int64_t>({3, 1}).str(), "tensor([3, 1], shape=[2], dtype=int64)");
  auto big = arange<float>(5000).reshape({50, 100});
  std::string s = big.str();
  EXPECT_NE(s.find("..."), std::string::npos);
  EXPECT_LT(s.size(), 2000u);
  EXPECT_NE(randn<double>({2}, true).str().find("requires_grad=true"), std::string::npos);
}

TEST(Threads, SetAndGet) {
  int before = get_num_threads();
  set_num_threads(1);
  EXPECT_EQ(get_num_threads(), 1);
  auto a = randn<float>({300, 300});
  auto r1 = matmul(a, a).sum().item();
  set_num_threads(2);
  EXPECT_EQ(get_num_threads(), 2);
  auto r2 = matmul(a, a).sum().item();
  EXPECT_NEAR(r1, r2, 1e-2 * std::max(1.0f, std::fabs(r1)));
  EXPECT_THROW(set_num_threads(0), ValueError);
  set_num_threads(before);
}

TEST(Memory, CachingAllocatorReusesBuffers) {
  // Warm the cache with this size, then make sure steady-state allocation hits it.
  { auto warm = empty<float>({1000, 1000}); }
  MemoryStats before = memory_stats();
  for (int i = 0; i < 10; ++i) {
    auto t = empty<float>({1000, 1000});
  }
  MemoryStats after = memory_stats();
  EXPECT_EQ(after.os_allocations, before.os_allocations);
  EXPECT_EQ(after.allocations, before.allocations + 10);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  auto t = empty<float>({17});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u);
}

// flip, repeat, tril / triu, cumsum and one_hot on every element type, at the edges PyTorch defines
// (values: the op registry checks them against PyTorch, gradients included).
TEST(ShapeOps, FlipRepeatTrianglesCumsumOneHot) {
  using ember::testing::expect_error;
  const Tensor<int64_t> m = arange<int64_t>(0, 6).reshape({2, 3});
  EXPECT_EQ(flip(m, {1}).to_vector(), (std::vector<int64_t>{2, 1, 0, 5, 4, 3}));
  EXPECT_EQ(flip(m, {}).to_vector(), m.to_vector());  // no dims: a copy, not every dim
  expect_error<ValueError>([&] { flip(m, {0, -2}); }, "flip: dim 0 appears more than once");
  EXPECT_EQ(repeat(m, {1, 2}).to_vector(), (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5}));
  EXPECT_EQ(repeat(m, {2, 1, 1}).shape(), Shape({2, 2, 3}));
  EXPECT_EQ(repeat(m, {0, 1}).shape(), Shape({0, 3}));
  const Tensor<int64_t> copy = repeat(m, {1, 1});
  EXPECT_NE(copy.data_ptr(), m.data_ptr());
  expect_error<ShapeError>([&] { repeat(m, {2}); }, "repeat: 1 counts for the 2 dims of [2, 3]");
  expect_error<ValueError>([&] { repeat(m, {1, -1}); }, "counts must be >= 0, got -1 for dim 1");
  expect_error<ShapeError>([&] { repeat(m, {int64_t(1) << 62, 1}); }, "overflow int64");
  EXPECT_EQ(tril(m).to_vector(), (std::vector<int64_t>{0, 0, 0, 3, 4, 0}));
  EXPECT_EQ(triu(m, 1).to_vector(), (std::vector<int64_t>{0, 1, 2, 0, 0, 5}));
  EXPECT_EQ(tril(ones<uint8_t>({3, 3}), -1).to_vector(), (std::vector<uint8_t>{0, 0, 0, 1, 0, 0, 1, 1, 0}));
  expect_error<ShapeError>([] { tril(ones<float>({3})); }, "tril: input [3] must have at least 2 dims");
  EXPECT_EQ(cumsum(m, 1).to_vector(), (std::vector<int64_t>{0, 1, 3, 3, 7, 12}));
  EXPECT_EQ(cumsum(m, 0).to_vector(), (std::vector<int64_t>{0, 1, 2, 3, 5, 7}));
  EXPECT_EQ(cumsum(scalar_tensor<double>(2.5), -1).item(), 2.5);
  EXPECT_EQ(cumsum(zeros<float>({2, 0}), 1).shape(), Shape({2, 0}));
  expect_error<IndexError>([&] { cumsum(m, 2); }, "cumsum: dim 2 is out of range");
  // Accumulated in double, as PyTorch's CPU kernel: the 1 survives 1e8 + 1 - 1e8 (a float sum gives 0).
  EXPECT_EQ(cumsum(tensor<float>({1e8f, 1.0f, -1e8f}), 0).to_vector().back(), 1.0f);
  EXPECT_EQ(one_hot(tensor<int64_t>({2, 0}), 4).to_vector(), (std::vector<int64_t>{0, 0, 1, 0, 1, 0, 0, 0}));
  EXPECT_EQ(one_hot(tensor<int64_t>({1, 3, 0, 2}, {2, 2})).shape(), Shape({2, 2, 4}));
  expect_error<IndexError>([] { one_hot(tensor<int64_t>({1, 4}), 4); },
                           "one_hot: index 4 at position 1 is out of range for 4 classes");
  expect_error<IndexError>([] { one_hot(tensor<int64_t>({-1})); }, "index -1 at position 0");
  expect_error<ValueError>([] { one_hot(zeros<int64_t>({0})); }, "cannot take the number of classes from an empty tensor");
  EXPECT_EQ(one_hot(zeros<int64_t>({0}), 3).shape(), Shape({0, 3}));
  // The members are the same ops.
  EXPECT_EQ(m.flip({0}).repeat({1, 2}).tril(1).cumsum(1).to_vector(),
            cumsum(tril(repeat(flip(m, {0}), {1, 2}), 1), 1).to_vector());
}

// sort / argsort on every element type: stable, NaN the largest (values and gradients against
// PyTorch in the op registry).
TEST(ShapeOps, SortAndArgsort) {
  using ember::testing::expect_error;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor<float> x = tensor<float>({3, nan, 1, 3, -2, 1}, {2, 3});
  const auto [up, up_idx] = sort(x, 0);
  EXPECT_EQ(up_idx.to_vector(), (std::vector<int64_t>{0, 1, 0, 1, 0, 1}));  // NaN after -2
  const auto flat = sort(x.reshape({6}));
  EXPECT_EQ(flat.indices.to_vector(), (std::vector<int64_t>{4, 2, 5, 0, 3, 1}));  // ties in index order
  EXPECT_TRUE(std::isnan(flat.values.to_vector()[5]));
  const auto down = x.reshape({6}).sort(0, /*descending=*/true);
  EXPECT_EQ(down.indices.to_vector(), (std::vector<int64_t>{1, 0, 3, 2, 5, 4}));
  EXPECT_EQ(argsort(x.reshape({6}), -1, true).to_vector(), down.indices.to_vector());
  const Tensor<int8_t> small = tensor<int8_t>({5, -128, 127, 5, 0});
  EXPECT_EQ(sort(small).values.to_vector(), (std::vector<int8_t>{-128, 0, 5, 5, 127}));
  EXPECT_EQ(small.argsort(0, true).to_vector(), (std::vector<int64_t>{2, 0, 3, 4, 1}));
  EXPECT_EQ(argsort(tensor<uint8_t>({200, 3, 255})).to_vector(), (std::vector<int64_t>{1, 0, 2}));
  EXPECT_EQ(sort(arange<int64_t>(0, 6).reshape({2, 3}), 1, true).values.to_vector(),
            (std::vector<int64_t>{2, 1, 0, 5, 4, 3}));
  const auto zero_d = sort(scalar_tensor<double>(4.5));
  EXPECT_EQ(zero_d.values.item(), 4.5);
  EXPECT_EQ(zero_d.indices.shape(), Shape({}));
  EXPECT_EQ(sort(zeros<float>({2, 0}), 1).indices.shape(), Shape({2, 0}));
  expect_error<IndexError>([&] { sort(x, 2); }, "sort: dim 2 is out of range");
  expect_error<IndexError>([&] { argsort(x, -3); }, "argsort: dim -3 is out of range");
  // The values are a gather: the gradient goes back to each element's place.
  Tensor<double> w = tensor<double>({2, -1, 5}).requires_grad_(true);
  (sort(w).values * tensor<double>({1, 10, 100})).sum().backward();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{10, 1, 100}));
}

// erfinv against torch.erfinv (Debian's PyTorch 1.13) in the tails the registry case does not
// reach, its edges, and erf(erfinv(y)) = y (erfc in the tails) over the whole range in double.
// Near |y| = 1 erfinv is ill-conditioned: one ulp of y moves it by ulp(y) sqrt(pi)/2 exp(x^2),
// which is how far torch's tail values (erfc of them off by up to 3e-5 relative) may be from
// ember's (erfc of them within 1e-15 of 1 - y, checked below).
template <class T>
void expect_erfinv_near(const std::vector<T>& y, const std::vector<T>& want) {
  const std::vector<T> got = erfinv(tensor<T>(y)).to_vector();
  for (size_t i = 0; i < y.size(); ++i) {
    const double x = static_cast<double>(want[i]);
    const double ulp_y = std::numeric_limits<T>::epsilon() * std::max(1.0, std::abs(static_cast<double>(y[i])));
    const double tol =
        2 * ulp_y * 0.886226925452758 * std::exp(x * x) + 2 * std::numeric_limits<T>::epsilon() * std::abs(x);
    EXPECT_NEAR(got[i], x, tol) << y[i];
  }
}

TEST(Elementwise, ErfinvInvertsErfOverTheWholeRange) {
  expect_erfinv_near<double>({0.999, 0.99999, 1 - 1e-12, 1 - std::ldexp(1.0, -52), -0.7, 1e-300, 0.3},
                             {2.3267537655135153, 3.123413274341075, 5.04202912791571, 5.805365688510647,
                              -0.7328690779592169, 8.86226925452758e-301, 0.2724627147267544});
  expect_erfinv_near<float>({0.999f, 0.9999f, 1 - std::ldexp(1.0f, -24), -0.5f, 1e-30f},
                            {2.326756715774536f, 2.7510364055633545f, 3.8325371742248535f, -0.4769362807273865f,
                             8.862269142205257e-31f});
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> edges = erfinv(tensor<double>({1, -1, 1.5, -0.0, std::nan("")})).to_vector();
  EXPECT_EQ(edges[0], inf);
  EXPECT_EQ(edges[1], -inf);
  EXPECT_TRUE(std::isnan(edges[2]));
  EXPECT_TRUE(edges[3] == 0.0 && std::signbit(edges[3]));
  EXPECT_TRUE(std::isnan(edges[4]));
  for (double y = -1.0 + 1e-9; y < 1.0; y += 0.0123) {
    const double x = erfinv(tensor<double>({y})).item();
    EXPECT_NEAR(std::erf(x), y, 2.5e-16) << y;
  }
  for (double d = 0.25; d > 1e-300; d *= 1e-7) {
    const double tail = 1.0 - (1.0 - d);  // the d that 1 - d holds
    if (tail == 0.0) break;
    const double x = erfinv(tensor<double>({1.0 - d})).item();
    EXPECT_NEAR(std::erfc(x), tail, 2e-15 * tail) << d;
  }
}

// addmm's values and gradients against PyTorch are registry cases; here what they do not reach:
// beta = 0 leaves the input unread (PyTorch's rule: NaN there does not show) and gives it a zero
// gradient, an empty inner dim leaves beta * input, and linear (addmm underneath) gives a
// sequence-first batch seen batch-first the bits of the same rows copied first.
TEST(Linalg, Addmm) {
  const Tensor<double> m1 = tensor<double>({1, 2, 3, 4}, {2, 2}), m2 = tensor<double>({1, 0, -1, 2, 1, 0}, {2, 3});
  Tensor<double> nan_input = full<double>({3}, std::numeric_limits<double>::quiet_NaN()).requires_grad_(true);
  Tensor<double> y = addmm(nan_input, m1, m2, 0.0, 2.0);
  EXPECT_EQ(y.to_vector(), (std::vector<double>{10, 4, -2, 22, 8, -6}));
  y.sum().backward();
  EXPECT_EQ(nan_input.grad().to_vector(), (std::vector<double>(3, 0.0)));
  EXPECT_EQ(addmm(tensor<double>({1, 2}, {2, 1}), zeros<double>({2, 0}), zeros<double>({0, 3}), 3.0).to_vector(),
            (std::vector<double>{3, 3, 3, 6, 6, 6}));
  EXPECT_EQ(addmm(zeros<double>({3}), zeros<double>({0, 2}), m2).shape(), Shape({0, 3}));

  manual_seed(5);
  const Tensor<float> seq_first = randn<float>({7, 5, 130}), w = randn<float>({33, 130}), b = randn<float>({33});
  const Tensor<float> permuted = nn::functional::linear(seq_first.transpose(0, 1), w, b);
  const Tensor<float> copied = nn::functional::linear(seq_first.transpose(0, 1).contiguous(), w, b);
  EXPECT_EQ(permuted.shape(), Shape({5, 7, 33}));
  EXPECT_TRUE(allclose(permuted, copied, 0.0, 0.0));
}

// cdist's values and gradients against PyTorch are registry cases; here what they do not reach:
// p = 0, PyTorch's zero gradient at a zero distance on both routes, the routes agreeing, the
// pieces of a large difference tensor, empty inputs and bad arguments.
TEST(Linalg, Cdist) {
  using ember::testing::expect_error;
  const Tensor<double> a = tensor<double>({0, 0, 1, 2, 3, 4}, {3, 2}), b = tensor<double>({1, 2, 0, 5}, {2, 2});
  EXPECT_EQ(cdist(a, b, 0.0).to_vector(), (std::vector<double>{2, 1, 0, 2, 2, 2}));
  EXPECT_EQ(cdist(a, b, 1.0).to_vector(), (std::vector<double>{3, 5, 0, 4, 4, 4}));
  EXPECT_EQ(cdist(a, b, std::numeric_limits<double>::infinity()).to_vector(),
            (std::vector<double>{2, 5, 0, 3, 2, 3}));
  // a's second row is b's first: distance 0, gradient 0 (not NaN) through either route.
  for (CdistMode mode : {CdistMode::NeverMm, CdistMode::AlwaysMm}) {
    for (double p : {2.0, 3.0, 0.5}) {
      if (mode == CdistMode::AlwaysMm && p != 2.0) continue;
      Tensor<double> x = a.clone().requires_grad_(true), y = b.clone().requires_grad_(true);
      Tensor<double> d = cdist(x, y, p, mode);
      EXPECT_EQ(d.to_vector()[2], 0.0);
      (d * tensor<double>({0, 0, 1, 0, 0, 0}, {3, 2})).sum().backward();
      EXPECT_EQ(x.grad().to_vector(), (std::vector<double>(6, 0.0))) << "p " << p;
      EXPECT_EQ(y.grad().to_vector(), (std::vector<double>(4, 0.0))) << "p " << p;
    }
  }
  manual_seed(3);
  const Tensor<double> u = randn<double>({2, 30, 5}), v = randn<double>({40, 5});
  EXPECT_TRUE(allclose(cdist(u, v), cdist(u, v, 2.0, CdistMode::NeverMm), 1e-9, 1e-9));
  // 300 x 300 x 64 differences go in pieces of rows; the distances and gradients are those of
  // the rows taken alone.
  Tensor<float> big = randn<float>({300, 64}).requires_grad_(true), other = randn<float>({300, 64});
  Tensor<float> d1 = cdist(big, other, 1.0);
  d1.sum().backward();
  const Tensor<float> row = big.detach().narrow(0, 299, 1).requires_grad_(true);
  Tensor<float> last = cdist(row, other, 1.0);
  last.sum().backward();
  EXPECT_TRUE(allclose(d1.narrow(0, 299, 1).detach(), last.detach(), 1e-6, 0.0));
  EXPECT_TRUE(allclose(big.grad().narrow(0, 299, 1), row.grad(), 0.0, 0.0));
  EXPECT_EQ(cdist(zeros<float>({0, 3}), ones<float>({4, 3})).shape(), Shape({0, 4}));
  EXPECT_EQ(cdist(zeros<float>({2, 0}), ones<float>({4, 0})).to_vector(), (std::vector<float>(8, 0.0f)));
  expect_error<ShapeError>([] { cdist(ones<float>({3}), ones<float>({2, 3})); },
                           "cdist: the inputs must be at least 2-D [..., P, M] and [..., R, M], got [3] and [2, 3]");
  expect_error<ShapeError>([] { cdist(ones<float>({2, 3}), ones<float>({2, 4})); },
                           "cdist: x1 [2, 3] and x2 [2, 4] must have the same number of columns");
  expect_error<ShapeError>([] { cdist(ones<float>({2, 2, 3}), ones<float>({3, 2, 3})); }, "cdist");
  expect_error<ValueError>([] { cdist(ones<float>({2, 3}), ones<float>({2, 3}), -1.0); },
                           "cdist: p must be >= 0, got -1");
}

}  // namespace
}  // namespace ember
