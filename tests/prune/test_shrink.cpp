// prune::shrink (Note [Shrinking]): the shrunk model computes what the original computes with the
// removed channels' inputs to the next layer zeroed; the ranking (L1, L2, ties), the count
// (rounding half to even), batch norm and Flatten blocks, and the errors that leave the model
// as it was.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "ember/ember.hpp"
#include "../support/expect_error.hpp"

namespace {

using namespace ember;
using ember::testing::expect_error;

std::shared_ptr<nn::Sequential<float>> cnn() {
  auto m = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(), nn::MaxPool2d(2),
      nn::Conv2d(8, 16, 3, {.padding = 1}), nn::BatchNorm2d(16), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
      nn::Dropout(0.25), nn::Linear(16 * 7 * 7, 32), nn::ReLU(), nn::Linear(32, 10));
  NoGradGuard no_grad;
  for (auto& [name, base] : m->named_buffers()) {
    if (name.ends_with("running_mean")) Tensor<float>::from_base(base).copy_(randn<float>(base.shape()) * 0.3);
    if (name.ends_with("running_var")) Tensor<float>::from_base(base).copy_(rand<float>(base.shape()) + 0.5);
  }
  for (auto& [name, p] : m->named_parameters()) {
    if (p.dim() == 1) p.copy_(randn<float>(p.shape()) * 0.2 + (name.ends_with("weight") ? 1.0 : 0.0));
  }
  return m;
}

// The outputs an L2 ranking keeps: the `keep` rows of w with the largest norms.
std::set<int64_t> largest_rows(const Tensor<float>& w, int64_t keep) {
  const int64_t out = w.shape()[0];
  const std::vector<float> norms = (w * w).reshape({out, -1}).sum(1).to_vector();
  std::vector<int64_t> order(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) order[static_cast<size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return norms[a] > norms[b]; });
  return {order.begin(), order.begin() + keep};
}

// Zeroes the inputs of `consumer` fed by `producer`'s outputs outside `kept` (in blocks of `block`).
void zero_inputs(Tensor<float> consumer, const std::set<int64_t>& kept, int64_t channels, int64_t block) {
  NoGradGuard no_grad;
  for (int64_t c = 0; c < channels; ++c) {
    if (kept.count(c)) continue;
    consumer.narrow(1, c * block, block).fill_(0.0);
  }
}

TEST(Shrink, ComputesTheOriginalWithTheRemovedChannelsZeroed) {
  manual_seed(1);
  auto model = cnn();
  auto reference = cnn();
  reference->load_state_dict(model->state_dict());
  model->eval();
  reference->eval();
  auto& c0 = dynamic_cast<nn::Conv2d<float>&>(reference->submodule("0"));
  auto& c4 = dynamic_cast<nn::Conv2d<float>&>(reference->submodule("4"));
  auto& l10 = dynamic_cast<nn::Linear<float>&>(reference->submodule("10"));
  auto& l12 = dynamic_cast<nn::Linear<float>&>(reference->submodule("12"));
  const std::set<int64_t> k0 = largest_rows(c0.weight, 4), k4 = largest_rows(c4.weight, 8), k10 = largest_rows(l10.weight, 16);
  zero_inputs(c4.weight, k0, 8, 1);
  zero_inputs(l10.weight, k4, 16, 49);
  zero_inputs(l12.weight, k10, 32, 1);

  const prune::ShrinkReport report = prune::shrink(*model, {.amount = 0.5});
  ASSERT_EQ(report.layers.size(), 3u) << report.str();
  EXPECT_EQ(report.layers[0].path, "0");
  EXPECT_EQ(report.layers[1].path, "4");
  EXPECT_EQ(report.layers[2].path, "10");
  EXPECT_EQ(report.layers[2].outputs_after, 16);
  EXPECT_LT(report.parameters_after, report.parameters_before / 3) << report.str();
  EXPECT_NE(model->str().find("Conv2d(4, 8, kernel_size=(3, 3)"), std::string::npos) << model->str();
  EXPECT_NE(model->str().find("BatchNorm2d(8"), std::string::npos) << model->str();
  EXPECT_NE(model->str().find("in_features=392, out_features=16"), std::string::npos) << model->str();
  EXPECT_NE(model->str().find("in_features=16, out_features=10"), std::string::npos) << model->str();

  const Tensor<float> x = randn<float>({5, 1, 28, 28});
  NoGradGuard no_grad;
  const Tensor<float> want = (*reference)(x), got = (*model)(x);
  EXPECT_LT((want - got).abs().max().item(), 1e-5f * (1.0f + want.abs().max().item()));
}

TEST(Shrink, TrainsAfterwardsAndKeepsModes) {
  manual_seed(2);
  auto model = cnn();
  model->train();
  prune::shrink(*model, {.amount = 0.25, .layers = {"4"}});
  EXPECT_TRUE(model->submodule("4").is_training());
  EXPECT_NE(model->str().find("Conv2d(8, 12"), std::string::npos) << model->str();
  EXPECT_NE(model->str().find("in_features=588"), std::string::npos) << model->str();  // 12 x 7 x 7
  optim::SGD sgd(model->parameters(), {.lr = 0.1});
  const Tensor<float> loss = nn::functional::cross_entropy((*model)(randn<float>({4, 1, 28, 28})),
                                                           tensor<int64_t>({1, 2, 3, 4}, {4}));
  loss.backward();
  for (const auto& [name, p] : model->named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
  sgd.step();
}

TEST(Shrink, RanksByTheChosenNormAndCountsAsPyTorch) {
  // Row 0 has the larger L1 norm (4 against 3), row 1 the larger L2 norm (3 against 2).
  auto make = [] {
    auto m = std::make_shared<nn::Sequential<float>>(nn::Linear(4, 2), nn::ReLU(), nn::Linear(2, 1));
    NoGradGuard no_grad;
    m->named_parameters()[0].second.copy_(tensor<float>({1, 1, 1, 1, 3, 0, 0, 0}, {2, 4}));
    return m;
  };
  auto l1 = make(), l2 = make();
  prune::shrink(*l1, {.amount = 0.5, .norm = 1.0});
  prune::shrink(*l2, {.amount = 0.5, .norm = 2.0});
  EXPECT_EQ(l1->named_parameters()[0].second.to_vector(), (std::vector<float>{1, 1, 1, 1}));
  EXPECT_EQ(l2->named_parameters()[0].second.to_vector(), (std::vector<float>{3, 0, 0, 0}));
  // round(amount * n), half to even: 2.5 -> 2 and 3.5 -> 4 removed of 10.
  for (auto [amount, kept] : {std::pair{0.25, 8}, std::pair{0.35, 6}}) {
    nn::Sequential<float> m(nn::Linear(3, 10), nn::Linear(10, 2));
    const prune::ShrinkReport r = prune::shrink(m, {.amount = amount});
    ASSERT_EQ(r.layers.size(), 1u);
    EXPECT_EQ(r.layers[0].outputs_after, kept) << amount;
  }
}

TEST(Shrink, RefusesAndLeavesTheModelAsItWas) {
  manual_seed(3);
  auto model = cnn();
  const std::string before = model->str();
  expect_error<ValueError>([&] { prune::shrink(*model, {.amount = 1.0}); }, "amount 1 is outside [0, 1)");
  expect_error<ValueError>([&] { prune::shrink(*model, {.amount = -0.1}); }, "outside [0, 1)");
  expect_error<ValueError>([&] { prune::shrink(*model, {.norm = 0.5}); }, "norm 0.5");
  expect_error<ValueError>([&] { prune::shrink(*model, {.layers = {"12"}}); }, "'12' cannot be shrunk: it is the last layer");
  expect_error<ValueError>([&] { prune::shrink(*model, {.layers = {"2"}}); }, "'2' is not a Conv2d (groups 1) or Linear");
  // Layer 0 keeps one of eight at 0.9 (7.2 -> 7 removed); a later layer would lose all: nothing changes.
  nn::Sequential<float> tiny(nn::Linear(3, 8), nn::ReLU(), nn::Linear(8, 1), nn::Linear(1, 1));
  const std::string tiny_before = tiny.str();
  expect_error<ValueError>([&] { prune::shrink(tiny, {.amount = 0.9}); }, "would remove all 1 outputs of '2'");
  EXPECT_EQ(tiny.str(), tiny_before);
  EXPECT_EQ(model->str(), before);
  // Outputs that do not reach a single consumer channel by channel.
  nn::Sequential<float> attention(nn::Linear(4, 4), nn::LayerNorm(4), nn::Linear(4, 2));
  expect_error<ValueError>([&] { prune::shrink(attention, {.layers = {"0"}}); }, "(LayerNorm), which does not keep each channel");
}

}  // namespace
