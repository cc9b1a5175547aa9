#pragma once
// What the plan tests share: an aligned arena, inputs, batch norms with statistics of their own,
// running a plan, and comparing outputs bit for bit.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/deploy/plan.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/activation.hpp"
#include "ember/ops/pooling.hpp"
#include "ember/ops/shape_ops.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/elementwise.hpp"

namespace ember::testing {

// A 64-byte aligned arena of exactly `bytes` (std::vector<std::byte> gives no alignment promise).
struct Arena {
  explicit Arena(size_t bytes, size_t misalign = 0) : storage(bytes + 128) {
    auto* base = storage.data();
    const size_t skip = (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64 + misalign;
    span = std::span<std::byte>(base + skip, bytes);
  }
  std::vector<std::byte> storage;
  std::span<std::byte> span;
};

inline ember::Tensor<float> random_input(const ember::Shape& shape, uint64_t seed) {
  ember::manual_seed(seed);
  return ember::randn<float>(shape);
}

// Randomises batch norm's running statistics and affine parameters, so folding has work to do.
inline void randomise_batch_norms(ember::nn::Module<float>& model) {
  ember::NoGradGuard no_grad;
  for (auto& [name, base] : model.named_buffers()) {
    if (!name.ends_with("running_mean") && !name.ends_with("running_var")) continue;
    ember::Tensor<float> t = ember::Tensor<float>::from_base(base);
    if (name.ends_with("running_mean")) t.copy_(ember::randn<float>(t.shape()) * 0.3);
    if (name.ends_with("running_var")) t.copy_(ember::rand<float>(t.shape()) + 0.5);
  }
  for (auto& [name, t] : model.named_parameters()) {
    if (name.find("bn") != std::string::npos || name.find('.') != std::string::npos) {
      if (t.dim() == 1) t.copy_(ember::randn<float>(t.shape()) * 0.2 + (name.ends_with("weight") ? 1.0 : 0.0));
    }
  }
}

// Elementwise ops that broadcast, between computed values (a squeeze-and-excitation gate) and with
// the model's parameters and buffers (a learned position table, a per-channel shift, a scale kept
// as its logarithm: exp of a parameter is a constant too).
class Broadcasts : public ember::nn::Module<float> {
 public:
  Broadcasts() {
    conv = register_module("conv", ember::nn::Conv2d(3, 4, 3, {.padding = 1}));
    fc = register_module("fc", ember::nn::Linear(4, 4));
    pos = register_parameter("pos", ember::randn<float>({1, 4, 6, 6}));
    log_scale = register_parameter("log_scale", ember::randn<float>({4, 1, 1}) * 0.1);
    shift = register_buffer("shift", ember::randn<float>({4, 1, 1}));
  }
  ember::Tensor<float> forward(const ember::Tensor<float>& x) override {
    const ember::Tensor<float> h = conv(x) + pos;
    const ember::Tensor<float> gate = ember::sigmoid(fc(ember::adaptive_avg_pool2d(h, 1).flatten(1)));
    const ember::Tensor<float> gated = h * gate.reshape({h.shape()[0], 4, 1, 1});  // a view
    return (gated - shift) * ember::exp(log_scale) + ember::maximum(gated, shift);
  }
  std::string type_name() const override { return "Broadcasts"; }
  ember::nn::ModuleHolder<ember::nn::Conv2d<float>> conv;
  ember::nn::ModuleHolder<ember::nn::Linear<float>> fc;
  ember::Tensor<float> pos, log_scale, shift;
};

// Concatenations: of three values along the channels (a dense block's), of two along the last dim.
class DenseCat : public ember::nn::Module<float> {
 public:
  DenseCat() {
    conv1 = register_module("conv1", ember::nn::Conv2d(2, 3, 3, {.padding = 1}));
    conv2 = register_module("conv2", ember::nn::Conv2d(3, 4, 1));
    conv3 = register_module("conv3", ember::nn::Conv2d(9, 2, 3, {.padding = 1}));
  }
  ember::Tensor<float> forward(const ember::Tensor<float>& x) override {
    const ember::Tensor<float> a = conv1(x), b = conv2(ember::relu(a));
    const ember::Tensor<float> dense = conv3(ember::cat<float>({a, b, x}, 1));
    return ember::cat<float>({dense, ember::sigmoid(dense)}, -1);
  }
  std::string type_name() const override { return "DenseCat"; }
  ember::nn::ModuleHolder<ember::nn::Conv2d<float>> conv1, conv2, conv3;
};

inline ember::Tensor<float> run_plan(const ember::deploy::Plan& plan, const ember::Tensor<float>& x) {
  ember::Tensor<float> y = ember::zeros<float>(plan.output_shape());
  Arena arena(plan.arena_bytes());
  plan.run(x, y, arena.span);
  return y;
}

inline void expect_bitwise_equal(const ember::Tensor<float>& want, const ember::Tensor<float>& got) {
  ASSERT_EQ(want.shape(), got.shape());
  const std::vector<float> a = want.contiguous().to_vector(), b = got.contiguous().to_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0) << "at " << i << ": " << a[i] << " vs " << b[i];
  }
}

}  // namespace ember::testing
