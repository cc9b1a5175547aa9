// Transfer learning's pieces: freezing, parameter groups, module surgery, non-strict loading,
// feature extraction; and the errors each gives for misuse.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "ember/ember.hpp"

namespace ember::nn {
namespace {

// A small CNN shaped as a transfer-learning backbone + head, with a holder member for the head.
struct Net : Module<float> {
  ModuleHolder<Sequential<float>> body;
  ModuleHolder<Linear<float>> fc;
  Net(int64_t classes = 4) {
    body = register_module("body", Sequential(Conv2d(1, 3, 3), BatchNorm2d(3), ReLU(), Flatten(), Linear(3 * 4 * 4, 8)));
    fc = register_module("fc", Linear(8, classes));
  }
  Tensor<float> forward(const Tensor<float>& x) override { return fc(relu(body(x))); }
  std::string type_name() const override { return "Net"; }
};

Tensor<float> batch(uint64_t seed = 1) {
  Generator g(seed);
  return randn<float>({5, 1, 6, 6}, &g);
}

void expect_same(const Tensor<float>& a, const Tensor<float>& b) {
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_TRUE(equal(a, b)) << a << "\nvs\n" << b;
}

TEST(Freeze, FrozenParametersGetNoGradientAndOptimizersSkipThem) {
  Net net;
  freeze(*net.body);
  for (auto& p : net.body->parameters()) EXPECT_FALSE(p.requires_grad());
  for (auto& p : net.fc->parameters()) EXPECT_TRUE(p.requires_grad());
  // A stale gradient from before the freeze must not move a frozen weight either.
  Tensor<float> body_w = net.body->parameters()[0];
  body_w.set_grad(ones_like(body_w));
  const Tensor<float> before = body_w.clone(), fc_before = net.fc->weight.clone();
  optim::SGD<float> opt(net.parameters(), {.lr = 0.1, .weight_decay = 0.01});
  net(batch()).sum().backward();
  for (auto& p : net.body->parameters()) {
    if (p.impl() != body_w.impl()) {
      EXPECT_FALSE(p.grad().defined());
    }
  }
  opt.step();
  expect_same(body_w, before);
  EXPECT_FALSE(equal(net.fc->weight, fc_before));

  unfreeze(*net.body);
  for (auto& p : net.parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(Freeze, BatchNormCanStayInEvalModeThroughTrain) {
  Net net;
  auto& bn = dynamic_cast<BatchNorm2d<float>&>(net.body->submodule("1"));
  freeze(*net.body, {.batch_norm_eval = true});
  net.train();
  EXPECT_TRUE(net.is_training());
  EXPECT_TRUE(net.fc->is_training());
  EXPECT_FALSE(bn.is_training());
  const Tensor<float> mean = bn.running_mean.clone();
  net(batch());
  expect_same(bn.running_mean, mean);  // eval: running statistics used, not updated

  unfreeze(*net.body);
  EXPECT_TRUE(bn.is_training());
  net(batch());
  EXPECT_FALSE(equal(bn.running_mean, mean));
}

TEST(Freeze, AnOptimizerOfOnlyFrozenParametersThrows) {
  Net net;
  freeze(net);
  try {
    optim::Adam<float> opt(net.parameters());
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("requires grad"), std::string::npos) << e.what();
  }
  // A group of frozen parameters next to a trainable one is fine (they are skipped).
  unfreeze(*net.fc);
  optim::Adam opt({{net.body->parameters(), {.lr = 1e-4}}, {net.fc->parameters(), {.lr = 1e-3}}});
  EXPECT_EQ(opt.num_groups(), 2u);
}

TEST(ParamGroups, EachGroupStepsWithItsOwnOptionsAndSchedulersScaleEach) {
  // Two groups in one Adam step exactly as two Adams with those options (torch's definition).
  Net a, b;
  b.load_state_dict(a.state_dict());
  optim::Adam one({{a.body->parameters(), {.lr = 1e-4}}, {a.fc->parameters(), {.lr = 1e-2, .weight_decay = 0.1}}});
  optim::Adam<float> body_opt(b.body->parameters(), {.lr = 1e-4});
  optim::Adam<float> head_opt(b.fc->parameters(), {.lr = 1e-2, .weight_decay = 0.1});
  for (int step = 0; step < 3; ++step) {
    one.zero_grad();
    body_opt.zero_grad();
    head_opt.zero_grad();
    a(batch(step + 1)).square().mean().backward();
    b(batch(step + 1)).square().mean().backward();
    one.step();
    body_opt.step();
    head_opt.step();
  }
  const auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) expect_same(pa[i], pb[i]);

  optim::StepLR sched(one, 1, 0.5);
  sched.step();
  EXPECT_DOUBLE_EQ(one.lr(0), 0.5e-4);
  EXPECT_DOUBLE_EQ(one.lr(1), 0.5e-2);

  Tensor<float> extra = randn<float>({2});
  extra.requires_grad_();
  one.add_param_group({{extra}, {.lr = 0.3}});
  EXPECT_EQ(one.num_groups(), 3u);
}

TEST(ParamGroups, OverlappingGroupsThrow) {
  Net net;
  EXPECT_THROW(optim::SGD({{net.parameters(), {.lr = 0.1}}, {net.fc->parameters(), {.lr = 0.2}}}), ValueError);
  optim::SGD opt({{net.body->parameters(), {.lr = 0.1}}});
  EXPECT_THROW(opt.add_param_group({net.body->parameters(), {.lr = 0.2}}), ValueError);
  EXPECT_EQ(opt.num_groups(), 1u);
}

TEST(ReplaceModule, ANewHeadOfTheSameClassKeepsTheOtherWeights) {
  Net net;
  const StateDict before = net.state_dict();
  auto head = net.replace_module("fc", Linear(8, 2));
  EXPECT_EQ(net(batch()).shape(), (Shape{5, 2}));
  EXPECT_EQ(net.fc.get(), head.get());  // the member sees the new head
  EXPECT_EQ(net.fc->out_features, 2);
  for (const auto& e : net.state_dict()) {
    if (e.name.rfind("fc.", 0) == 0) continue;
    for (const auto& o : before)
      if (o.name == e.name && e.tensor.dtype() == DType::Float32)
        expect_same(Tensor<float>::from_base(e.tensor), Tensor<float>::from_base(o.tensor));
  }
  EXPECT_EQ(net.named_parameters().back().first, "fc.bias");
}

TEST(ReplaceModule, SequentialIndicesAndDottedPathsTakeAnyModule) {
  Net net;
  auto replaced = net.replace_module("body.4", Sequential(Linear(48, 16), ReLU(), Linear(16, 8)));
  EXPECT_EQ(net(batch()).shape(), (Shape{5, 4}));
  EXPECT_EQ(net.body->submodule("4").type_name(), "Sequential");
  bool found = false;
  for (auto& [name, p] : net.named_parameters()) found = found || name == "body.4.2.weight";
  EXPECT_TRUE(found);
  EXPECT_EQ(replaced->size(), 3u);
}

TEST(ReplaceModule, MisuseThrowsAndLeavesTheModelAsItWas) {
  Net net;
  const std::string before = net.str();
  try {
    net.replace_module("head", Linear(8, 2));
    FAIL();
  } catch (const IndexError& e) {
    EXPECT_NE(std::string(e.what()).find("no child module named \"head\" (children: body, fc)"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(net.replace_module("body.9", ReLU()), IndexError);
  // The member holder keeps the old Linear alive; another class cannot take its place.
  EXPECT_THROW(net.replace_module("fc", Sequential(Linear(8, 2))), TypeError);
  EXPECT_EQ(net.str(), before);
  // A head whose input does not fit the features before it: caught at the first forward.
  net.replace_module("fc", Linear(16, 2));
  try {
    net(batch());
    FAIL();
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()),
              "fc: Linear(in_features=16, out_features=2, bias=True): input [5, 8] has 8 features, "
              "expected in_features=16");
  }
}

TEST(LoadStateDict, NonStrictReturnsMissingAndUnexpectedKeys) {
  Net pretrained(4);
  Net target(4);
  target.replace_module("fc", Linear(8, 2));
  StateDict backbone;
  for (auto& e : pretrained.state_dict())
    if (e.name.rfind("fc.", 0) != 0) backbone.push_back(e);
  backbone.push_back({"extra.weight", zeros<float>({1})});
  const Tensor<float> fc_before = target.fc->weight.clone();
  LoadResult r = target.load_state_dict(backbone, /*strict=*/false);
  EXPECT_EQ(r.missing_keys, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_EQ(r.unexpected_keys, (std::vector<std::string>{"extra.weight"}));
  EXPECT_FALSE(r.complete());
  expect_same(target.fc->weight, fc_before);
  expect_same(target.body->parameters()[0], pretrained.body->parameters()[0]);
  // Mis-shaped keys still throw, even when not strict, and nothing is copied.
  Net other(4);
  const Tensor<float> w = other.body->parameters()[0].clone();
  EXPECT_THROW(other.load_state_dict(target.state_dict(), false), ValueError);
  expect_same(other.body->parameters()[0], w);

  // Through a file: a head of another size under the same name is a mismatch, as in PyTorch;
  // load the pretrained model first, then replace its head.
  const std::string path = ::testing::TempDir() + "/ember_transfer_backbone.safetensors";
  save(pretrained, path);
  Net fresh(4);
  fresh.replace_module("fc", Linear(8, 3));
  try {
    load(fresh, path, /*strict=*/false);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("fc.weight (expected [3, 8] float32, got [4, 8] float32)"), std::string::npos)
        << e.what();
  }
  Net reused(4);
  EXPECT_TRUE(load(reused, path).complete());
  reused.replace_module("fc", Linear(8, 3));
  expect_same(reused.body->parameters()[0], pretrained.body->parameters()[0]);
  std::remove(path.c_str());
}

TEST(Features, StopsAtTheNamedLayer) {
  Net net;
  net.eval();
  const Tensor<float> x = batch();
  Tensor<float> f = features(net, x, "body");
  expect_same(f, net.body(x));
  Tensor<float> conv = features(net, x, "body.0");
  EXPECT_EQ(conv.shape(), (Shape{5, 3, 4, 4}));
  expect_same(features(net, x, ""), net(x));
  // The hook is gone: a normal forward still runs to the end.
  EXPECT_EQ(net(x).shape(), (Shape{5, 4}));
  // Gradients flow through features to the layers before it.
  f = features(net, x, "body.4");
  f.sum().backward();
  EXPECT_TRUE(net.body->parameters()[0].grad().defined());
  EXPECT_FALSE(net.fc->weight.grad().defined());
}

TEST(Features, UnknownOrUnusedLayersThrow) {
  Net net;
  try {
    features(net, batch(), "body.7");
    FAIL();
  } catch (const IndexError& e) {
    EXPECT_NE(std::string(e.what()).find("features: no layer \"body.7\""), std::string::npos) << e.what();
  }
  struct Skips : Module<float> {
    ModuleHolder<Linear<float>> used, unused;
    Skips() {
      used = register_module("used", Linear(2, 2));
      unused = register_module("unused", Linear(2, 2));
    }
    Tensor<float> forward(const Tensor<float>& x) override { return used(x); }
    std::string type_name() const override { return "Skips"; }
  };
  Skips s;
  EXPECT_THROW(features(s, zeros<float>({1, 2}), "unused"), ValueError);
  EXPECT_EQ(s(zeros<float>({1, 2})).shape(), (Shape{1, 2}));
}

}  // namespace
}  // namespace ember::nn
