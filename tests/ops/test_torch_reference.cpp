// Forward values and gradients of every registry op against PyTorch 1.13 (values written by
// tools/make_torch_refs.py into tests/data), in float32 at each case's Tolerance (elementwise ops
// at rtol 1.3e-6 / atol 1e-5, reductions, matrix products and composites at 1e-4).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "ops/op_registry.hpp"
#include "support/reference_file.hpp"

namespace ember::testing {
namespace {

struct RefCase {
  std::vector<RefTensor> inputs, grads;
  RefTensor w, out;
};

std::map<std::string, RefCase> load(const std::string& dtype) {
  std::map<std::string, RefCase> cases;
  for (auto& [name, lines] : load_reference("torch_ref_" + dtype + ".txt")) {
    RefCase& c = cases[name];
    for (auto& [tag, t] : lines) {
      if (tag == "in") c.inputs.push_back(t);
      if (tag == "w") c.w = t;
      if (tag == "out") c.out = t;
      if (tag == "grad") c.grads.push_back(t);
    }
  }
  return cases;
}

template <FloatingElement T>
Tensor<T> to_tensor(const RefTensor& r, bool requires_grad) {
  return r.as<T>(requires_grad);
}

template <FloatingElement T>
void expect_close(const Tensor<T>& got, const RefTensor& want, double rtol, double atol,
                  const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape) << what;
  std::vector<T> g = got.to_vector();
  for (size_t i = 0; i < g.size(); ++i) {
    const double a = g[i], b = want.values[i];
    if (std::isnan(b)) {
      EXPECT_TRUE(std::isnan(a)) << what << " element " << i;
      continue;
    }
    ASSERT_LE(std::fabs(a - b), atol + rtol * std::fabs(b))
        << what << " element " << i << ": ember " << a << " vs torch " << b;
  }
}

template <FloatingElement T>
void check(const OpCase& c, const RefCase& ref, double rtol, double atol) {
  std::vector<Tensor<T>> inputs;
  for (const auto& r : ref.inputs) inputs.push_back(to_tensor<T>(r, true));
  ASSERT_EQ(inputs.size(), c.shapes.size());
  Tensor<T> out;
  if constexpr (std::is_same_v<T, float>) {
    out = c.f32(inputs);
  } else {
    out = c.f64(inputs);
  }
  expect_close(out, ref.out, rtol, atol, c.name + " forward");
  auto grads = autograd::grad({out}, inputs, {to_tensor<T>(ref.w, false)}, false, false, true);
  ASSERT_EQ(grads.size(), ref.grads.size());
  for (size_t k = 0; k < grads.size(); ++k) {
    if (ref.grads[k].none) {
      EXPECT_FALSE(grads[k].defined()) << c.name << " grad " << k;
      continue;
    }
    Tensor<T> g = grads[k].defined() ? grads[k] : zeros<T>(inputs[k].shape());
    expect_close(g, ref.grads[k], rtol, atol, c.name + " grad " + std::to_string(k));
  }
}

class TorchReference : public ::testing::TestWithParam<OpCase> {
 protected:
  static std::map<std::string, RefCase>& refs(const std::string& dtype) {
    static std::map<std::string, std::map<std::string, RefCase>> all;
    auto it = all.find(dtype);
    if (it == all.end()) it = all.emplace(dtype, load(dtype)).first;
    return it->second;
  }
};

TEST_P(TorchReference, Float32) {
  const OpCase& c = GetParam();
  auto& r = refs("float32");
  ASSERT_TRUE(r.count(c.name)) << "no PyTorch reference for " << c.name
                               << "; rerun tools/make_torch_refs.py";
  const bool ew = c.tolerance == Tolerance::Elementwise;
  check<float>(c, r.at(c.name), ew ? 1.3e-6 : 1e-4, ew ? 1e-5 : 1e-4);
}

TEST_P(TorchReference, Float64) {
  const OpCase& c = GetParam();
  auto& r = refs("float64");
  ASSERT_TRUE(r.count(c.name)) << "no PyTorch reference for " << c.name;
  check<double>(c, r.at(c.name), c.float64_rtol, 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Ops, TorchReference, ::testing::ValuesIn(op_registry()),
                         [](const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; });

TEST(TorchReferenceFile, CoversEveryRegistryOpAndNoOthers) {
  auto refs = load("float32");
  std::set<std::string> registry;
  for (const auto& c : op_registry()) registry.insert(c.name);
  for (const auto& [name, ref] : refs) EXPECT_TRUE(registry.count(name)) << name;
  EXPECT_EQ(refs.size(), registry.size());
}

}  // namespace
}  // namespace ember::testing
