// Sparse (CSR) matrices: the conversions, the product against the dense one on shapes that take
// every kernel path (a batch of one, pack-wide batches, rows split among threads), the errors on
// inconsistent arrays, and nn::SparseLinear against the Linear it came from, in training too.
// (Values and gradients against PyTorch: the sparse_* cases of the op registry.)
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"

namespace {

using namespace ember;
using ember::testing::expect_error;

// A [rows, cols] matrix with about `density` of its entries nonzero, one row left empty.
template <class T>
Tensor<T> pruned(int64_t rows, int64_t cols, double density, uint64_t seed) {
  Generator g(seed);
  const Tensor<T> w = randn<T>({rows, cols}, &g);
  const Tensor<T> keep = rand<T>({rows, cols}, &g);
  Tensor<T> out = where(lt(keep, density), w, 0.0).contiguous();
  if (rows > 1) out.narrow(0, 1, 1).zero_();
  return out;
}

template <class T>
double max_abs_diff(const Tensor<T>& a, const Tensor<T>& b) {
  return (a - b).abs().max().template item<double>();
}

TEST(Sparse, ToCsrKeepsTheNonzerosRowByRow) {
  const Tensor<float> d = tensor<float>({0, 2, 0, 0, 0, 0, -1, 0, 3, 0, 0, std::nanf("")}, {3, 4});
  const CsrMatrix<float> a = to_csr(d);
  EXPECT_EQ(a.shape(), (Shape{3, 4}));
  EXPECT_EQ(a.row_offsets.to_vector(), (std::vector<int64_t>{0, 1, 2, 4}));  // NaN is a nonzero
  EXPECT_EQ(a.col_indices.to_vector(), (std::vector<int32_t>{1, 2, 0, 3}));
  EXPECT_EQ(a.nnz(), 4);
  const Tensor<float> back = a.to_dense();
  EXPECT_EQ(back.shape(), d.shape());
  const std::vector<float> bv = back.to_vector(), dv = d.to_vector();
  for (size_t i = 0; i + 1 < bv.size(); ++i) EXPECT_EQ(bv[i], dv[i]) << i;
  EXPECT_TRUE(std::isnan(bv.back()));
  const Tensor<float> dt = to_csr(pruned<float>(7, 5, 0.4, 1)).t().to_dense();
  EXPECT_EQ(max_abs_diff(dt, pruned<float>(7, 5, 0.4, 1).t().contiguous()), 0.0);
}

TEST(Sparse, ProductEqualsTheDenseProductOnEveryPath) {
  // n = 1 (rows four at a time), 5 (under a pack), 16, 64 and 67 (packs and a tail); 300 rows with
  // 64 columns split among threads.
  for (int64_t n : {1, 5, 16, 64, 67}) {
    for (int64_t rows : {3, 300}) {
      SCOPED_TRACE("n = " + std::to_string(n) + ", rows = " + std::to_string(rows));
      const Tensor<double> w = pruned<double>(rows, 200, 0.1, static_cast<uint64_t>(n + rows));
      const Tensor<double> b = randn<double>({200, n});
      EXPECT_LT(max_abs_diff(sparse_mm(to_csr(w), b), mm(w, b)), 1e-12);
      const Tensor<float> wf = w.to<float>(), bf = b.to<float>();
      EXPECT_LT(max_abs_diff(sparse_mm(to_csr(wf), bf), mm(wf, bf)), 1e-4);
    }
  }
  // Nothing to multiply: no nonzeros, no columns, no rows.
  EXPECT_EQ(sparse_mm(to_csr(zeros<float>({4, 3})), ones<float>({3, 2})).abs().sum().item(), 0.0f);
  EXPECT_EQ(sparse_mm(to_csr(ones<float>({4, 3})), ones<float>({3, 0})).shape(), (Shape{4, 0}));
  EXPECT_EQ(sparse_mm(to_csr(ones<float>({0, 3})), ones<float>({3, 2})).shape(), (Shape{0, 2}));
}

TEST(Sparse, InconsistentArraysAndShapesAreRefused) {
  const CsrMatrix<float> good = to_csr(pruned<float>(3, 4, 0.5, 3));
  const Tensor<float> b = ones<float>({4, 2});
  expect_error<ShapeError>(
      [&] {
        (void)sparse_mm(good, ones<float>({3, 2}));
      },
      "sparse_mm: a sparse [3, 4] times [3, 2]");
  CsrMatrix<float> bad = good;
  bad.row_offsets = tensor<int64_t>({0, 1, 1}, {3});
  expect_error<ShapeError>([&] { (void)sparse_mm(bad, b); }, "needs row_offsets [4]");
  bad = good;
  bad.col_indices = good.col_indices.clone();
  if (bad.nnz() > 0) bad.col_indices.data_ptr()[0] = 4;
  expect_error<IndexError>([&] { (void)sparse_mm(bad, b); },
                           "column index 4 at nonzero 0 is outside [0, 4)");
  bad = good;
  std::vector<int64_t> offsets = good.row_offsets.to_vector();
  offsets[1] = offsets[3] + 1;
  bad.row_offsets = tensor<int64_t>(offsets, {4});
  expect_error<IndexError>([&] { (void)sparse_mm(bad, b); }, "sparse_mm: row_offsets");
  expect_error<ShapeError>(
      [&] {
        (void)to_csr(ones<float>({2, 2, 2}));
      },
      "to_csr: expected a 2-D tensor");
  expect_error<ShapeError>(
      [&] {
        (void)nn::functional::sparse_linear(ones<float>({2, 3}), good);
      },
      "sparse_linear: input [2, 3] has 3 features, the sparse weight [3, 4] expects 4");
}

TEST(SparseLinear, ComputesWhatItsLinearComputesAndTrainsOnlyTheNonzeros) {
  manual_seed(4);
  nn::Linear<double> dense(40, 9);
  {
    NoGradGuard no_grad;
    dense.weight.copy_(pruned<double>(9, 40, 0.2, 5));
  }
  nn::SparseLinear<double> sparse(dense);
  EXPECT_EQ(sparse.weight_values.numel(), dense.weight.ne(0.0).sum().item());
  EXPECT_NE(sparse.str().find("SparseLinear(in_features=40, out_features=9, bias=True, nnz="),
            std::string::npos)
      << sparse.str();
  std::vector<std::string> keys;
  for (const auto& e : sparse.state_dict()) keys.push_back(e.name);
  EXPECT_EQ(keys, (std::vector<std::string>{"weight_values", "bias", "weight_col_indices",
                                            "weight_row_offsets"}));
  const Tensor<double> x = randn<double>({2, 3, 40});
  EXPECT_LT(max_abs_diff(sparse(x), dense(x)), 1e-12);
  EXPECT_LT(max_abs_diff(sparse(x.narrow(0, 0, 1).narrow(1, 0, 1)),
                         dense(x.narrow(0, 0, 1).narrow(1, 0, 1))),
            1e-12);
  EXPECT_EQ(max_abs_diff(sparse.dense_weight(), dense.weight), 0.0);
  // A step of SGD on both: the same weights afterwards wherever the dense one is nonzero.
  const Tensor<double> target = randn<double>({2, 3, 9});
  optim::SGD a(dense.parameters(), {.lr = 0.1}), b(sparse.parameters(), {.lr = 0.1});
  nn::functional::mse_loss(dense(x), target).backward();
  nn::functional::mse_loss(sparse(x), target).backward();
  {
    NoGradGuard no_grad;
    dense.weight.grad().mul_(dense.weight.ne(0.0).to<double>());  // the mask a pruned layer applies
  }
  a.step();
  b.step();
  EXPECT_LT(max_abs_diff(sparse.dense_weight(), dense.weight), 1e-12);
  EXPECT_LT(max_abs_diff(sparse.bias, dense.bias), 1e-12);
  expect_error<ShapeError>([&] { (void)sparse(ones<double>({2, 39})); }, "expected in_features=40");
}

}  // namespace
