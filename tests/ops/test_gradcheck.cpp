// Every op in the registry passes finite-difference gradcheck in double, on contiguous and
// non-contiguous inputs, and (where claimed) gradgradcheck.
#include <gtest/gtest.h>

#include "ops/op_registry.hpp"
#include "support/gradcheck.hpp"

namespace ember::testing {
namespace {

std::vector<TensorD> make_inputs(const OpCase& c) {
  std::vector<TensorD> xs;
  uint64_t seed = std::hash<std::string>{}(c.name);
  for (size_t k = 0; k < c.shapes.size(); ++k) xs.push_back(leaf(c.shapes[k], seed + k, c.lo, c.hi));
  return xs;
}

class Gradcheck : public ::testing::TestWithParam<OpCase> {};

TEST_P(Gradcheck, Contiguous) {
  const OpCase& c = GetParam();
  if (!c.true_derivative) GTEST_SKIP() << "gradient differs from the derivative by design";
  EXPECT_TRUE(gradcheck(c.f64, make_inputs(c)));
}

TEST_P(Gradcheck, NonContiguousInputs) {
  const OpCase& c = GetParam();
  if (!c.true_derivative) GTEST_SKIP() << "gradient differs from the derivative by design";
  auto f = c.f64;
  auto wrapped = [f](const std::vector<TensorD>& xs) {
    std::vector<TensorD> views;
    for (const auto& x : xs) {
      TensorD v = noncontiguous(x);
      if (x.dim() >= 1 && x.numel() > 1 && v.is_contiguous() && x.dim() >= 2 && x.shape()[0] > 1 &&
          x.shape()[1] > 1) {
        ADD_FAILURE() << "expected a non-contiguous view";
      }
      views.push_back(v);
    }
    return f(views);
  };
  EXPECT_TRUE(gradcheck(wrapped, make_inputs(c)));
}

TEST_P(Gradcheck, DoubleBackward) {
  const OpCase& c = GetParam();
  if (!c.gradgrad || !c.true_derivative) GTEST_SKIP() << "double backward not checked";
  EXPECT_TRUE(gradgradcheck(c.f64, make_inputs(c)));
}

INSTANTIATE_TEST_SUITE_P(Ops, Gradcheck, ::testing::ValuesIn(op_registry()),
                         [](const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; });

}  // namespace
}  // namespace ember::testing
