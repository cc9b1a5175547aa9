// nn::Module: names (PyTorch's state_dict keys), state dicts, modes, hooks, printing, error paths.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <random>
#include <sstream>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"
#include "support/gradcheck.hpp"
#include "support/reference_file.hpp"

namespace ember::nn {
namespace {

std::vector<std::string> names(const StateDict& sd) {
  std::vector<std::string> out;
  for (auto& e : sd) out.push_back(e.name);
  return out;
}

struct Block : Module<float> {
  std::shared_ptr<Linear<float>> fc;
  Tensor<float> scale;
  Block() {
    fc = register_module("fc", Linear(3, 3));
    scale = register_parameter("scale", ones<float>({3}));
    register_buffer("count", zeros<int64_t>({}));
  }
  Tensor<float> forward(const Tensor<float>& x) override { return call_child("fc", *fc, x) * scale; }
  std::string type_name() const override { return "Block"; }
};

TEST(Module, StateDictNamesFollowPyTorch) {
  Sequential net(Linear(4, 3), ReLU(), Block(), Linear(3, 2, {.bias = false}));
  EXPECT_EQ(names(net.state_dict()),
            (std::vector<std::string>{"0.weight", "0.bias", "2.scale", "2.count", "2.fc.weight",
                                      "2.fc.bias", "3.weight"}));
  auto params = net.named_parameters();
  ASSERT_EQ(params.size(), 6u);
  EXPECT_EQ(params[0].first, "0.weight");
  EXPECT_EQ(params[0].second.shape(), Shape({3, 4}));
  EXPECT_EQ(net.parameters().size(), 6u);
  EXPECT_EQ(net.named_buffers().size(), 1u);
  EXPECT_EQ(net.named_modules().size(), 6u);
  EXPECT_EQ(net.named_modules()[4].first, "2.fc");
  EXPECT_EQ(net.size(), 4u);
  EXPECT_EQ(net[0]->type_name(), "Linear");
  EXPECT_EQ(net.entry("2.fc.bias").shape(), Shape({3}));
  EXPECT_THROW(net.entry("2.fc.nope"), IndexError);
}

// EmbeddingBag: values and gradients against PyTorch are registry cases; here the module (its
// state dict name, the padding row), bag layouts and empty bags, and the errors.
TEST(Module, EmbeddingBagReducesBagsAndRefusesBadLayouts) {
  using ember::testing::expect_error;
  manual_seed(0);
  EmbeddingBag<double> bag(5, 2, {.mode = EmbeddingBagMode::Sum, .padding_idx = 4});
  EXPECT_EQ(names(bag.state_dict()), (std::vector<std::string>{"weight"}));
  EXPECT_EQ(bag.weight.select(0, 4).to_vector(), (std::vector<double>{0, 0}));
  const Tensor<double> w = bag.weight.detach();
  // 1-D input with offsets (the middle bag empty) equals the 2-D layout and the explicit sums;
  // the padding index is left out.
  const Tensor<double> by_offsets = bag(tensor<int64_t>({0, 1, 2, 4, 3}, {5}), tensor<int64_t>({0, 2, 2}, {3}));
  EXPECT_EQ(by_offsets.shape(), Shape({3, 2}));
  EXPECT_TRUE(allclose(by_offsets.select(0, 0), w.select(0, 0) + w.select(0, 1), 0.0, 0.0));
  EXPECT_EQ(by_offsets.select(0, 1).to_vector(), (std::vector<double>{0, 0}));
  EXPECT_TRUE(allclose(by_offsets.select(0, 2), w.select(0, 2) + w.select(0, 3), 0.0, 0.0));
  EmbeddingBag<double> mean_bag(5, 2, {.padding_idx = 4});
  mean_bag.load_state_dict(bag.state_dict());
  const Tensor<double> rows = mean_bag(tensor<int64_t>({0, 1, 4, 2, 4, 4}, {2, 3}));
  EXPECT_TRUE(allclose(rows.select(0, 0), (w.select(0, 0) + w.select(0, 1)) / 2.0, 1e-15, 0.0));
  EXPECT_TRUE(allclose(rows.select(0, 1), w.select(0, 2), 0.0, 0.0));  // the mean of one row, not of three
  // A batch of empty bags: zeros, and a gradient of zeros reaches the weight.
  Tensor<double> empty = bag(zeros<int64_t>({0}), tensor<int64_t>({0, 0}, {2}));
  EXPECT_EQ(empty.to_vector(), (std::vector<double>(4, 0.0)));
  empty.sum().backward();
  EXPECT_EQ(bag.weight.grad().to_vector(), (std::vector<double>(10, 0.0)));
  EXPECT_EQ(bag(zeros<int64_t>({0, 3})).shape(), Shape({0, 2}));
  EXPECT_EQ(bag(tensor<int64_t>({0, 1}, {2}), zeros<int64_t>({0})).shape(), Shape({0, 2}));  // no offsets: no bags
  expect_error<ValueError>([&] { bag(tensor<int64_t>({0, 1}, {1, 2}), tensor<int64_t>({0}, {1})); },
                           "embedding_bag: a 2-D input [1, 2] holds one bag per row; offsets must be undefined");
  expect_error<ShapeError>([&] { bag(tensor<int64_t>({0, 1}, {2})); }, "a 1-D input needs 1-D offsets");
  expect_error<ValueError>([&] { bag(tensor<int64_t>({0, 1}, {2}), tensor<int64_t>({1}, {1})); },
                           "offsets[0] must be 0");
  expect_error<ValueError>([&] { bag(tensor<int64_t>({0, 1}, {2}), tensor<int64_t>({0, 3}, {2})); },
                           "bag 0 would span [0, 3)");
  expect_error<IndexError>([&] { bag(tensor<int64_t>({0, 5}, {2}), tensor<int64_t>({0}, {1})); },
                           "embedding_bag: index 5 at position 1 is out of range for 5 embeddings");
  expect_error<ValueError>([&] { mean_bag(tensor<int64_t>({0, 1}, {1, 2}), Tensor<int64_t>(), ones<double>({1, 2})); },
                           "per_sample_weights is only supported for the Sum mode");
  expect_error<ShapeError>([&] { bag(tensor<int64_t>({0, 1}, {1, 2}), Tensor<int64_t>(), ones<double>({2})); },
                           "per_sample_weights [2] must have the input's shape [1, 2]");
  expect_error<ValueError>([] { EmbeddingBag<float>(3, 2, {.padding_idx = 3}); }, "padding_idx 3 must be < num_embeddings 3");
  EmbeddingBag<double> csr(5, 2, {.include_last_offset = true});
  expect_error<ValueError>([&] { csr(tensor<int64_t>({0, 1}, {2}), tensor<int64_t>({0, 1}, {2})); },
                           "the last offset must be the input's length 2, got 1");
}

TEST(Module, LinearMatchesPyTorchInitAndForward) {
  manual_seed(0);
  Linear lin(16, 4);
  const double bound = 1.0 / std::sqrt(16.0);
  for (float v : lin.weight.to_vector()) {
    EXPECT_LE(std::fabs(v), bound);
  }
  for (float v : lin.bias.to_vector()) EXPECT_LE(std::fabs(v), bound);
  EXPECT_TRUE(lin.weight.requires_grad());
  auto x = randn<float>({2, 16});
  auto y = lin(x);
  EXPECT_EQ(y.shape(), Shape({2, 4}));
  EXPECT_TRUE(allclose(y, matmul(x, lin.weight.t()) + lin.bias, 1e-5, 1e-6));
  EXPECT_EQ(lin.str(), "Linear(in_features=16, out_features=4, bias=True)");
}

TEST(Module, LoadStateDictCopiesInPlaceAndReportsEveryProblem) {
  Sequential a(Linear(4, 3), Linear(3, 2));
  Sequential b(Linear(4, 3), Linear(3, 2));
  auto w_before = b[0]->parameters()[0];
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(w_before.to_vector(), a[0]->parameters()[0].to_vector());  // same handle, new values

  StateDict bad = a.state_dict();
  bad.erase(bad.begin());                                     // missing 0.weight
  bad.push_back({"extra.weight", zeros<float>({1})});         // unexpected
  bad[0].tensor = zeros<float>({5});                          // 0.bias mis-shaped
  try {
    b.load_state_dict(bad);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("missing keys: 0.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected keys: extra.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("mismatched: 0.bias (expected [3] float32, got [5] float32)"), std::string::npos) << m;
  }
  // Non-strict ignores missing and unexpected names, not shapes.
  StateDict partial = a.state_dict();
  partial.erase(partial.begin());
  partial.push_back({"extra", zeros<float>({1})});
  EXPECT_NO_THROW(b.load_state_dict(partial, /*strict=*/false));
}

TEST(Module, TrainEvalZeroGradAndDropout) {
  Sequential net(Linear(4, 4), Dropout(0.5));
  EXPECT_TRUE(net.is_training());
  net.eval();
  EXPECT_FALSE(net[1]->is_training());
  auto x = ones<float>({8, 4});
  EXPECT_EQ(net(x).to_vector(), net(x).to_vector());  // dropout is off
  net.train();
  auto y = Dropout<float>(0.5)(ones<float>({10000}));
  double zeros_seen = 0;
  for (float v : y.to_vector()) {
    if (v == 0) ++zeros_seen;
    else EXPECT_FLOAT_EQ(v, 2.0f);
  }
  EXPECT_NEAR(zeros_seen / 10000, 0.5, 0.03);
  net(x).sum().backward();
  EXPECT_TRUE(net.parameters()[0].grad().defined());
  net.zero_grad();
  EXPECT_FALSE(net.parameters()[0].grad().defined());
}

TEST(Module, HooksSeeAndReplaceValues) {
  Linear lin(2, 2);
  int pre = 0, post = 0;
  auto id1 = lin.register_forward_pre_hook([&pre](Module<float>&, const Tensor<float>& x) {
    ++pre;
    return x * 2.0;
  });
  lin.register_forward_hook([&post](Module<float>&, const Tensor<float>&, const Tensor<float>& y) {
    ++post;
    return zeros_like(y);
  });
  auto y = lin(ones<float>({1, 2}));
  EXPECT_EQ(pre, 1);
  EXPECT_EQ(post, 1);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0, 0}));
  lin.remove_hook(id1);
  lin(ones<float>({1, 2}));
  EXPECT_EQ(pre, 1);
  EXPECT_EQ(post, 2);
}

TEST(Module, PrintingAndSummary) {
  Sequential net(Linear(4, 3), GELU(), Flatten(), Linear(3, 2));
  EXPECT_EQ(net.str(),
            "Sequential(\n"
            "  (0): Linear(in_features=4, out_features=3, bias=True)\n"
            "  (1): GELU()\n"
            "  (2): Flatten(start_dim=1, end_dim=-1)\n"
            "  (3): Linear(in_features=3, out_features=2, bias=True)\n"
            ")");
  std::string s = net.summary({5, 4});
  EXPECT_NE(s.find("[5, 3]"), std::string::npos) << s;
  EXPECT_NE(s.find("[5, 2]"), std::string::npos) << s;
  EXPECT_NE(s.find("parameters: 23 (23 trainable)"), std::string::npos) << s;
  EXPECT_TRUE(net.is_training());  // summary restores the mode
}

TEST(Module, ErrorsNameTheModulePath) {
  Sequential inner(Linear(4, 3), ReLU());
  Sequential outer(Linear(5, 4), std::move(inner), Linear(2, 2));
  try {
    outer(zeros<float>({1, 5}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_EQ(e.module_path(), "2");
    EXPECT_EQ(std::string(e.what()).rfind("2: Linear(in_features=2, out_features=2, bias=True): input [1, 3] has 3 features, expected in_features=2", 0), 0u) << e.what();
  }
  struct Outer : Module<float> {
    std::shared_ptr<Sequential<float>> features;
    Outer() { features = register_module("features", Sequential(Linear(3, 3), Linear(4, 4))); }
    Tensor<float> forward(const Tensor<float>& x) override { return call_child("features", *features, x); }
    std::string type_name() const override { return "Outer"; }
  };
  Outer o;
  try {
    o(zeros<float>({1, 3}));
    FAIL();
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("features.1: Linear(in_features=4", 0), 0u) << e.what();
  }
  // A child called through its holder (not call_child) is named too.
  struct Holder : Module<float> {
    ModuleHolder<Linear<float>> fc;
    Holder() { fc = register_module("fc", Linear(3, 2)); }
    Tensor<float> forward(const Tensor<float>& x) override { return fc(x); }
    std::string type_name() const override { return "Holder"; }
  };
  Holder h;
  try {
    h(zeros<float>({1, 4}));
    FAIL();
  } catch (const ShapeError& e) {
    EXPECT_EQ(e.module_path(), "fc");
    EXPECT_EQ(std::string(e.what()).rfind("fc: Linear(in_features=3, out_features=2", 0), 0u) << e.what();
  }
  EXPECT_THROW(Linear(-1, 2), ValueError);
  EXPECT_THROW(GELU<float>("fast"), ValueError);
  EXPECT_THROW(Dropout<float>(1.5), ValueError);
  EXPECT_THROW(ModuleList<float>()(ones<float>({1})), ValueError);
  struct Dup : Module<float> {
    Dup() {
      register_parameter("w", ones<float>({1}));
      register_parameter("w", ones<float>({1}));
    }
    Tensor<float> forward(const Tensor<float>& x) override { return x; }
    std::string type_name() const override { return "Dup"; }
  };
  EXPECT_THROW(Dup(), ValueError);
}

TEST(Module, GradcheckThroughLinearParameters) {
  using ember::testing::gradcheck;
  using ember::testing::leaf;
  Linear<double> lin(3, 2);
  auto x = leaf({4, 3}, 11);
  auto f = [&lin](const std::vector<Tensor<double>>& in) {
    // The inputs are the data and the layer's own parameters.
    lin.weight = in[1];
    lin.bias = in[2];
    return tanh(lin(in[0]));
  };
  EXPECT_TRUE(gradcheck(f, {x, lin.weight, lin.bias}));
}

TEST(Init, FormulasAndShapes) {
  Generator gen(1);
  auto w = empty<double>({64, 32});
  init::kaiming_uniform_(w, 0.0, init::FanMode::FanIn, "relu", &gen);
  const double bound = std::sqrt(2.0) * std::sqrt(3.0 / 32.0);
  EXPECT_LE(w.abs().max().item(), bound);
  EXPECT_GT(w.abs().max().item(), 0.9 * bound);
  init::xavier_normal_(w, 1.0, &gen);
  EXPECT_NEAR(w.std().item(), std::sqrt(2.0 / 96.0), 0.01);
  init::orthogonal_(w, 1.0, &gen);
  auto gram = matmul(w.t(), w);  // 32 x 32 identity for a tall orthogonal matrix
  EXPECT_TRUE(allclose(gram, eye<double>(32), 1e-9, 1e-9));
  init::trunc_normal_(w, 0.0, 1.0, -0.5, 0.5, &gen);
  EXPECT_LE(w.abs().max().item(), 0.5);
  EXPECT_EQ(init::calculate_gain("leaky_relu", 0.2), std::sqrt(2.0 / 1.04));
  EXPECT_THROW(init::calculate_gain("swish"), ValueError);
  auto v = empty<double>({3});
  EXPECT_THROW(init::xavier_uniform_(v), ValueError);
}

TEST(Functional, LayerNormChecksItsShapes) {
  namespace F = functional;
  auto x = zeros<float>({2, 3, 4});
  EXPECT_THROW(F::layer_norm(x, {3}), ShapeError);  // x does not end with [3]
  try {
    F::layer_norm(x, {4}, ones<float>({3}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("layer_norm: weight [3] must have the normalized shape [4]"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(F::layer_norm(x, {4}, ones<float>({4}), zeros<float>({1, 4})), ShapeError);
  // Zero rows and rows of zero length are valid, and so are their (zero) gradients.
  auto w = ones<float>({4}, true);
  auto none = zeros<float>({0, 4}, true);
  auto y = F::layer_norm(none, {4}, w);
  EXPECT_EQ(y.shape(), Shape({0, 4}));
  y.sum().backward();
  EXPECT_EQ(w.grad().to_vector(), std::vector<float>(4, 0.0f));
  EXPECT_EQ(none.grad().shape(), Shape({0, 4}));
  EXPECT_EQ(F::layer_norm(zeros<float>({2, 0}), {0}).shape(), Shape({2, 0}));
}

// The fused layer norm (Note [Fused layer norm]) against the same formula in public ops, on more
// rows than one gradient block and rows that are not a whole number of vectors.
TEST(Functional, FusedLayerNormMatchesComposite) {
  namespace F = functional;
  manual_seed(7);
  auto x = randn<double>({130, 37}, true) * 3.0 + 1.5;
  x = x.detach().requires_grad_(true);
  auto w = randn<double>({37}, true), b = randn<double>({37}, true);
  auto g = randn<double>({130, 37});
  auto fused = F::layer_norm(x, {37}, w, b);
  auto grads = autograd::grad({fused}, {x, w, b}, {g});
  auto xd = x.detach().requires_grad_(true), wd = w.detach().requires_grad_(true), bd = b.detach().requires_grad_(true);
  auto comp = (xd - xd.mean(1, true)) * rsqrt(var(xd, {1}, true, 0) + 1e-5) * wd + bd;
  auto want = autograd::grad({comp}, {xd, wd, bd}, {g});
  auto max_diff = [](const Tensor<double>& a, const Tensor<double>& c) { return (a - c).abs().max().item(); };
  EXPECT_LT(max_diff(fused, comp), 1e-12);
  for (size_t i = 0; i < 3; ++i) EXPECT_LT(max_diff(grads[i], want[i]), 1e-10) << "gradient " << i;
}

TEST(Functional, LossErrorsNameTheTarget) {
  namespace F = functional;
  auto logits = zeros<float>({3, 10});
  try {
    F::cross_entropy(logits, tensor<int64_t>({1, 10, 2}, {3}));
    FAIL();
  } catch (const IndexError& e) {
    EXPECT_NE(std::string(e.what()).find("target 10 at position 1 is out of range for 10 classes"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(F::cross_entropy(logits, tensor<int64_t>({1, -1, 2}, {3})), IndexError);
  // -1 is fine when it is the ignore_index.
  EXPECT_NO_THROW(F::cross_entropy(logits, tensor<int64_t>({1, -1, 2}, {3}), {.ignore_index = -1}));
  EXPECT_THROW(F::cross_entropy(logits, tensor<int64_t>({1, 2}, {2})), ShapeError);
  EXPECT_THROW(F::mse_loss(zeros<float>({2}), zeros<float>({3})), ShapeError);
  EXPECT_THROW(F::binary_cross_entropy(full<float>({2}, 1.5f), zeros<float>({2})), ValueError);
  EXPECT_THROW(F::dropout(zeros<float>({2}), 2.0), ValueError);
  auto all_ignored = F::cross_entropy(logits, tensor<int64_t>({-100, -100, -100}, {3}));
  EXPECT_TRUE(std::isnan(all_ignored.item()));
}

}  // namespace
}  // namespace ember::nn

namespace ember::nn {
namespace {
// The network of the nn API contract, loaded from weights PyTorch saved, gives PyTorch's output.
TEST(ApiContract, PyTorchWeightsGivePyTorchOutputs) {
  namespace nn = ember::nn;
  nn::Sequential net(nn::Conv2d(1, 4, 3), nn::BatchNorm2d(4), nn::ReLU(), nn::MaxPool2d(2),
                     nn::Conv2d(4, 8, 3, {.stride = 2, .padding = 1}), nn::GELU(), nn::Flatten(),
                     nn::Linear(72, 16), nn::LayerNorm(16), nn::Dropout(0.1), nn::Linear(16, 10));
  const std::string data = ember::testing::data_dir();
  ember::load(net, data + "/torch_contract_net.safetensors");  // names as nn.Sequential: "0.weight", ...
  net.eval();
  auto io = ember::testing::load_reference("torch_contract_net_io.txt").at("contract");
  ember::Tensor<float> x = io[0].second.as<float>();
  ember::Tensor<float> y = net(x);
  auto want = io[1].second.values;
  auto got = y.to_vector();
  ASSERT_EQ(y.shape(), Shape({2, 10}));
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4) << i;
  // The buffers came along, the int64 counter included.
  EXPECT_EQ(Tensor<int64_t>::from_base(net.entry("1.num_batches_tracked")).item(), 3);
  const std::string out = ::testing::TempDir() + "/contract_out.safetensors";
  ember::save(net, out);
  auto targets = tensor<int64_t>({3, 7}, {2});
  net.train();
  auto loss = nn::functional::cross_entropy(net(x), targets);
  ember::optim::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  ember::optim::Adam adam(net.parameters(), {.lr = 1e-3});
  sgd.zero_grad();
  loss.backward();
  sgd.step();
  EXPECT_TRUE(std::isfinite(loss.item()));
  nn::Sequential again(nn::Conv2d(1, 4, 3), nn::BatchNorm2d(4), nn::ReLU(), nn::MaxPool2d(2),
                       nn::Conv2d(4, 8, 3, {.stride = 2, .padding = 1}), nn::GELU(), nn::Flatten(),
                       nn::Linear(72, 16), nn::LayerNorm(16), nn::Dropout(0.1), nn::Linear(16, 10));
  ember::load(again, out);
  again.eval();
  EXPECT_TRUE(allclose(again(x), y, 1e-6, 1e-6));
}
}  // namespace
}  // namespace ember::nn

namespace ember::nn {
namespace {
TEST(Transformer, EncoderLayerMatchesPyTorch) {
  const std::string data = ember::testing::data_dir();
  auto refs = ember::testing::load_reference("torch_encoder_io.txt");
  auto kpm = tensor<uint8_t>({0, 0, 0, 0, 1, 0, 0, 1, 1, 1}, {2, 5});
  for (const char* name : {"post", "pre"}) {
    SCOPED_TRACE(name);
    TransformerEncoderLayer layer(8, 2, {.dim_feedforward = 16, .activation = "gelu", .batch_first = true,
                                         .norm_first = std::string(name) == "pre"});
    EXPECT_EQ(layer.state_dict()[0].name, "self_attn.in_proj_weight");
    ember::load(layer, data + "/torch_encoder_" + name + ".safetensors");
    layer.eval();
    auto& io = refs.at(name);
    auto y = layer.forward_masked(io[0].second.as<float>(), Tensor<uint8_t>(), kpm);
    y = masked_fill(y, kpm.unsqueeze(-1), 0.0);  // PyTorch's fast path zeroes padded positions
    auto got = y.to_vector();
    auto want = io[1].second.values;
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4) << i;
  }
  // Training mode runs (dropout on) and backpropagates to every parameter.
  TransformerEncoderLayer layer(8, 2, {.dim_feedforward = 16});
  auto x = randn<float>({5, 3, 8});
  layer(x).sum().backward();
  for (auto& [pname, p] : layer.named_parameters()) EXPECT_TRUE(p.grad().defined()) << pname;
  MultiheadAttention mha(8, 2);
  auto [out, w] = mha.attention(x, x, x);
  EXPECT_EQ(out.shape(), Shape({5, 3, 8}));
  EXPECT_EQ(w.shape(), Shape({3, 5, 5}));
  EXPECT_THROW(MultiheadAttention(8, 3), ValueError);
}

void expect_close(const Tensor<float>& got, const std::vector<double>& want, double tol, const char* what) {
  SCOPED_TRACE(what);
  ASSERT_TRUE(got.defined());
  const auto g = got.to_vector();
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], tol) << i;
}

TEST(Transformer, EncoderDecoderMatchesPyTorchWithMasksAndGradients) {
  const std::string data = ember::testing::data_dir();
  auto refs = ember::testing::load_reference("torch_transformer_io.txt");
  const auto src_kpm = tensor<uint8_t>({0, 0, 0, 0, 1, 0, 0, 1, 1, 1}, {2, 5});
  const auto tgt_kpm = tensor<uint8_t>({0, 0, 0, 1, 0, 0, 0, 0}, {2, 4});
  for (const char* name : {"post", "pre"}) {
    SCOPED_TRACE(name);
    Transformer model({.d_model = 8, .nhead = 2, .num_encoder_layers = 2, .num_decoder_layers = 2,
                       .dim_feedforward = 16, .dropout = 0.0, .activation = "gelu", .batch_first = true,
                       .norm_first = std::string(name) == "pre"});
    const auto names = model.state_dict();
    EXPECT_EQ(names.front().name, "encoder.layers.0.self_attn.in_proj_weight");
    EXPECT_EQ(names.back().name, "decoder.norm.bias");
    ember::load(model, data + "/torch_transformer_" + name + ".safetensors");  // strict: every name matches
    auto& io = refs.at(name);
    auto src = io[0].second.as<float>().requires_grad_(), tgt = io[1].second.as<float>().requires_grad_();
    const auto w = io[2].second.as<float>();
    auto y = model(src, tgt,
                   {.tgt_mask = Transformer<float>::generate_square_subsequent_mask(4),
                    .src_key_padding_mask = src_kpm, .tgt_key_padding_mask = tgt_kpm,
                    .memory_key_padding_mask = src_kpm});
    expect_close(y, io[3].second.values, 1e-4, "y");
    (y * w).sum().backward();
    expect_close(src.grad(), io[4].second.values, 1e-4, "src grad");
    expect_close(tgt.grad(), io[5].second.values, 1e-4, "tgt grad");
    auto params = model.named_parameters();
    auto grad_of = [&](const std::string& pname) {
      for (auto& [n, p] : params)
        if (n == pname) return p.grad();
      ADD_FAILURE() << "no parameter " << pname;
      return Tensor<float>();
    };
    expect_close(grad_of("encoder.layers.0.linear1.weight"), io[6].second.values, 1e-4, "encoder linear1 grad");
    expect_close(grad_of("decoder.layers.1.multihead_attn.in_proj_weight"), io[7].second.values, 1e-4,
                 "decoder cross-attention grad");
  }
}

TEST(Transformer, StacksCopyTheLayerAndRefuseBadInputs) {
  TransformerEncoderLayer layer(8, 2, {.dim_feedforward = 16, .dropout = 0.0});
  TransformerEncoder encoder(layer, 3, LayerNorm(8));
  ASSERT_EQ(encoder.layers->size(), 3u);
  ASSERT_TRUE(encoder.norm);
  // Every copy starts from the layer's weights, as PyTorch's deep copies do, and trains apart from it.
  auto layer_w = layer.linear1->weight.to_vector();
  for (auto& [n, p] : encoder.named_parameters()) {
    if (n.ends_with("linear1.weight")) {
      EXPECT_EQ(p.to_vector(), layer_w) << n;
    }
  }
  EXPECT_NE(encoder.layers->child(0)->named_parameters()[0].second.data_ptr(),
            layer.self_attn->in_proj_weight.data_ptr());
  auto x = randn<float>({5, 2, 8});
  auto y = encoder(x);
  EXPECT_EQ(y.shape(), Shape({5, 2, 8}));
  y.sum().backward();
  EXPECT_FALSE(layer.linear1->weight.grad().defined());
  EXPECT_THROW(TransformerEncoder(layer, -1), ValueError);
  EXPECT_EQ(TransformerEncoder(layer, 0)(x).to_vector(), x.to_vector());

  const auto mask = Transformer<float>::generate_square_subsequent_mask(3);
  EXPECT_EQ(mask.to_vector(), (std::vector<uint8_t>{0, 1, 1, 0, 0, 1, 0, 0, 0}));

  Transformer model({.d_model = 8, .nhead = 2, .num_encoder_layers = 1, .num_decoder_layers = 2,
                     .dim_feedforward = 16, .dropout = 0.0});
  EXPECT_EQ(model.decoder->layers->size(), 2u);
  auto src = randn<float>({5, 2, 8}), tgt = randn<float>({4, 2, 8});
  auto out = model(src, tgt, {.tgt_is_causal = true});
  EXPECT_EQ(out.shape(), Shape({4, 2, 8}));
  // Unbatched [S, E] and [T, E] give the batch's first sample.
  auto single = model(src.select(1, 0), tgt.select(1, 0), {.tgt_is_causal = true});
  auto first = out.select(1, 0).to_vector(), got = single.to_vector();
  ASSERT_EQ(got.size(), first.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], first[i], 1e-5) << i;
  // The causal flag masks the future: the first position ignores what follows it.
  auto changed = tgt.clone();
  changed.narrow(0, 1, 3).fill_(0.5);
  auto out2 = model(src, changed, {.tgt_is_causal = true});
  const auto before = out.to_vector(), after = out2.to_vector();
  for (size_t j = 0; j < 16; ++j) EXPECT_NEAR(after[j], before[j], 1e-5) << j;  // [0, :, :] of [4, 2, 8]

  using ember::testing::expect_error;
  expect_error<ValueError>([&] { model(src); },
                           "Transformer: forward(x) with one input is not enough; call forward(src, tgt)");
  expect_error<ShapeError>([&] { model(src, randn<float>({4, 3, 8})); },
                                           "Transformer: the batch sizes of src [5, 2, 8] and tgt [4, 3, 8] differ");
  expect_error<ShapeError>([&] { model(src, randn<float>({4, 2, 6})); }, "tgt [4, 2, 6] must equal d_model 8");
  expect_error<ShapeError>([&] { model(src, randn<float>({4, 8})); },
                           "must both be 3-D (batched) or 2-D (unbatched), got [5, 2, 8] and [4, 8]");
  TransformerDecoderLayer dec(8, 2);
  expect_error<ValueError>([&] { dec(tgt); }, "TransformerDecoderLayer: forward(x) with one input is not enough");
  expect_error<ValueError>([] { TransformerDecoderLayer(8, 2, {.activation = "tanh"}); },
                           "TransformerDecoderLayer: activation must be \"relu\" or \"gelu\", got \"tanh\"");
  expect_error<ShapeError>([&] { dec(tgt, randn<float>({5, 2, 6})); }, "key [5, 2, 6] has embedding dim 6, expected 8");
}
}  // namespace
}  // namespace ember::nn

namespace ember::nn {
namespace {
TEST(Residual, BasicBlockMatchesPyTorchAndResidualAdds) {
  const std::string data = ember::testing::data_dir();
  BasicBlock block(3, 6, 2);
  EXPECT_EQ(block.state_dict().back().name, "downsample.1.num_batches_tracked");
  ember::load(block, data + "/torch_basic_block.safetensors");
  block.eval();
  auto io = ember::testing::load_reference("torch_basic_block_io.txt").at("block");
  auto got = block(io[0].second.as<float>()).to_vector();
  auto want = io[1].second.values;
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4) << i;
  BasicBlock<float> same(4, 4);
  EXPECT_FALSE(same.downsample);
  Residual res(Linear(3, 3));
  auto x = randn<float>({2, 3});
  auto lin = std::dynamic_pointer_cast<Linear<float>>(res.children()[0]);
  EXPECT_TRUE(allclose(res(x), x + (*lin)(x), 1e-6, 1e-6));
  EXPECT_EQ(res.state_dict()[0].name, "fn.weight");
}

// batch_norm_relu gives the separate ops' bits (Note [Batch norm with ReLU]): values, running
// statistics and every gradient, with and without a residual, in training and eval, on planes
// larger than a fused step (70 x 70), smaller ones whose steps end mid-sample (9 x 7), and
// samples that split the statistics into several blocks.
TEST(Residual, BatchNormWithReluGivesTheSeparateOpsBits) {
  for (const Shape& shape : {Shape{3, 5, 70, 70}, Shape{7, 5, 9, 7}, Shape{2, 3, 1, 1}}) {
    for (const bool with_residual : {false, true}) {
      for (const bool training : {true, false}) {
        SCOPED_TRACE(shape.str() + (with_residual ? " residual" : "") + (training ? " training" : " eval"));
        const int64_t c = shape[1];
        auto x = randn<float>(shape).requires_grad_(true), r = randn<float>(shape).requires_grad_(true);
        auto w = randn<float>({c}).requires_grad_(true), b = randn<float>({c}).requires_grad_(true);
        auto rm = randn<float>({c}), rv = rand<float>({c}) + 0.5f, rm2 = rm.clone(), rv2 = rv.clone();
        const auto out_w = randn<float>(shape);
        const Tensor<float> res = with_residual ? r : Tensor<float>();
        auto fused = functional::batch_norm_relu(x, rm, rv, w, b, training, 0.1, 1e-5, res);
        auto grads = autograd::grad({(fused * out_w).sum()}, {x, w, b, r}, {}, false, false, true);
        auto bn = functional::batch_norm(x, rm2, rv2, w, b, training);
        auto separate = relu(with_residual ? bn + r : bn);
        auto want = autograd::grad({(separate * out_w).sum()}, {x, w, b, r}, {}, false, false, true);
        EXPECT_EQ(fused.to_vector(), separate.to_vector());
        EXPECT_EQ(rm.to_vector(), rm2.to_vector());
        EXPECT_EQ(rv.to_vector(), rv2.to_vector());
        for (size_t i = 0; i < grads.size(); ++i) {
          ASSERT_EQ(grads[i].defined(), want[i].defined()) << i;
          if (grads[i].defined()) {
            EXPECT_EQ(grads[i].to_vector(), want[i].to_vector()) << i;
          }
        }
      }
    }
  }
  // A residual that broadcasts runs the separate ops.
  auto x = randn<float>({2, 3, 4, 4});
  auto r = randn<float>({3, 1, 1});
  EXPECT_EQ(functional::batch_norm_relu(x, {}, {}, {}, {}, true, 0.1, 1e-5, r).to_vector(),
            relu(functional::batch_norm(x, {}, {}, {}, {}, true) + r).to_vector());
}

// Planes of 256 values or more get their statistics in one pass (Note [Batch statistics in one
// pass]): against the two passes in double, on data whose mean (1000) dwarfs its spread (0.01),
// where E[x^2] - E[x]^2 would lose every digit; and the same bits on one thread and two.
TEST(BatchNorm, StatisticsOfLargePlanesInOnePass) {
  const Shape shape{128, 4, 17, 19};  // 512 planes: several chunks on two threads
  auto x = (randn<float>(shape) * 0.01f + 1000.0f) + arange<float>(4).reshape({1, 4, 1, 1});
  const std::vector<float> v = x.to_vector();
  const int64_t inner = 17 * 19, count = 128 * inner;
  std::vector<std::vector<float>> stats;
  const int threads_before = get_num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    auto rm = zeros<float>({4}), rv = zeros<float>({4});
    functional::batch_norm(x, rm, rv, Tensor<float>(), Tensor<float>(), true, 1.0);
    stats.push_back(rm.to_vector());
    stats.push_back(rv.to_vector());
  }
  set_num_threads(threads_before);
  EXPECT_EQ(stats[0], stats[2]);
  EXPECT_EQ(stats[1], stats[3]);
  for (int64_t c = 0; c < 4; ++c) {
    double mean = 0, m2 = 0;
    for (int64_t n = 0; n < 128; ++n)
      for (int64_t i = 0; i < inner; ++i) mean += v[static_cast<size_t>((n * 4 + c) * inner + i)];
    mean /= static_cast<double>(count);
    for (int64_t n = 0; n < 128; ++n)
      for (int64_t i = 0; i < inner; ++i) {
        const double d = v[static_cast<size_t>((n * 4 + c) * inner + i)] - mean;
        m2 += d * d;
      }
    const double unbiased = m2 / static_cast<double>(count - 1);
    EXPECT_NEAR(stats[0][static_cast<size_t>(c)], mean, 1e-7 * mean) << c;
    EXPECT_NEAR(stats[1][static_cast<size_t>(c)], unbiased, 1e-4 * unbiased) << c;
  }
}

// A failed call leaves a batch norm as it was: no batch counted, no running statistics moved;
// the fused form too, called by a BasicBlock (whose errors name the batch norm).
TEST(BatchNorm, FailedCallsLeaveTheModuleAsItWas) {
  using ember::testing::expect_error;
  BatchNorm2d<float> bn(3);
  const auto x = randn<float>({2, 3, 2, 2});
  expect_error<ValueError>([&] { bn(randn<float>({1, 3, 1, 1})); }, "expected more than 1 value per channel");
  expect_error<ShapeError>([&] { bn.forward_relu(x, randn<float>({2, 3, 1, 2})); },
                           "BatchNorm2d: forward_relu's residual [2, 3, 1, 2] must have the input's shape");
  const auto five = randn<float>({5});
  expect_error<ShapeError>(
      [&] { functional::batch_norm_relu(x, bn.running_mean, bn.running_var, {}, {}, true, 0.1, 1e-5, five); },
      "batch_norm_relu: shapes [2, 3, 2, 2] and [5] cannot be broadcast");
  EXPECT_EQ(bn.num_batches_tracked.item(), 0);
  EXPECT_EQ(bn.running_mean.to_vector(), std::vector<float>(3, 0.0f));
  EXPECT_EQ(bn.running_var.to_vector(), std::vector<float>(3, 1.0f));
  BasicBlock<float> block(3, 3, 1);
  expect_error<ValueError>([&] { block(randn<float>({1, 3, 1, 1})); },
                           "bn1: batch_norm_relu: expected more than 1 value per channel");
  EXPECT_EQ(block.bn1->num_batches_tracked.item(), 0);
  EXPECT_EQ(block.bn1->running_mean.to_vector(), std::vector<float>(3, 0.0f));
  bn.forward_relu(x, x);
  EXPECT_EQ(bn.num_batches_tracked.item(), 1);
}

// A BasicBlock runs its batch norms fused with the ReLUs (and the shortcut) unless a hook on the
// batch norm must see its output; both give the same bits, forward and backward.
TEST(Residual, BasicBlockFusedAndHookedAgree) {
  for (const auto& [in, out, stride] : {std::tuple{8, 8, 1}, std::tuple{8, 16, 2}}) {
    manual_seed(11);
    BasicBlock<float> fused(in, out, stride);
    manual_seed(11);
    BasicBlock<float> hooked(in, out, stride);
    int seen = 0;
    for (auto* bn : {hooked.bn1.get(), hooked.bn2.get()}) {
      bn->weight.detach().copy_(randn<float>({out}));  // both signs: ReLU masks of every density
      bn->register_forward_hook([&seen](Module<float>&, const Tensor<float>&, const Tensor<float>&) {
        ++seen;
        return Tensor<float>();
      });
    }
    fused.bn1->weight.detach().copy_(hooked.bn1->weight.detach());
    fused.bn2->weight.detach().copy_(hooked.bn2->weight.detach());
    const auto x = randn<float>({4, in, 10, 10});
    const auto out_w = randn<float>({4, out, 10 / stride, 10 / stride});
    auto xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
    auto ya = fused(xa), yb = hooked(xb);
    EXPECT_EQ(seen, 2);
    EXPECT_EQ(ya.to_vector(), yb.to_vector());
    (ya * out_w).sum().backward();
    (yb * out_w).sum().backward();
    EXPECT_EQ(xa.grad().to_vector(), xb.grad().to_vector());
    const auto pa = fused.named_parameters(), pb = hooked.named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_EQ(pa[i].second.grad().to_vector(), pb[i].second.grad().to_vector()) << pa[i].first;
    }
    EXPECT_EQ(fused.bn2->running_var.to_vector(), hooked.bn2->running_var.to_vector());
  }
}
}  // namespace
}  // namespace ember::nn

namespace ember::nn {
namespace {
TEST(Losses, ObjectsCallTheFunctionalForms) {
  auto a = randn<float>({4, 3}), b = randn<float>({4, 3});
  EXPECT_TRUE(allclose(MSELoss<float>{}(a, b), functional::mse_loss(a, b)));
  EXPECT_TRUE(allclose(L1Loss<float>{.reduction = Reduction::Sum}(a, b), functional::l1_loss(a, b, Reduction::Sum)));
  auto targets = tensor<int64_t>({0, 2, 1, 1}, {4});
  CrossEntropyLoss<float> ce{{.label_smoothing = 0.1}};
  EXPECT_TRUE(allclose(ce(a, targets), functional::cross_entropy(a, targets, {.label_smoothing = 0.1})));
  auto y = tensor<float>({1, -1, 1, -1}, {4});
  EXPECT_TRUE(std::isfinite(CosineEmbeddingLoss<float>{}(a, b, y).item()));
  EXPECT_THROW(CosineEmbeddingLoss<float>{}(a, b, tensor<float>({1, 0, 1, 1}, {4})), ValueError);
  EXPECT_GE(TripletMarginLoss<float>{}(a, b, a).item(), 0.0f);
  Dropout2d<float> d2(0.5);
  auto x = ones<float>({2, 64, 3, 3});
  auto out = d2(x).to_vector();
  // Whole channels are kept (x2) or dropped (0).
  for (size_t ch = 0; ch < 128; ++ch)
    for (size_t k = 1; k < 9; ++k) EXPECT_EQ(out[ch * 9 + k], out[ch * 9]);
  d2.eval();
  EXPECT_EQ(d2(x).to_vector(), x.to_vector());
}
}  // namespace
}  // namespace ember::nn

namespace ember::nn {
namespace {
TEST(Conv, Conv1dTakesItsOwnOptionsAndStillTheConv2dOnes) {
  manual_seed(3);
  Conv1d conv(3, 4, 3, {.stride = 2, .padding = 1, .bias = false});
  EXPECT_EQ(conv.options.stride, 2);
  EXPECT_FALSE(conv.bias.defined());
  auto x = randn<float>({2, 3, 9});
  EXPECT_EQ(conv(x).shape(), Shape({2, 4, 5}));
  Conv1d same(3, 4, 4, {.padding = "same", .dilation = 2});
  EXPECT_EQ(same(x).shape(), Shape({2, 4, 9}));
  // Conv2dOptions converts (its width components), as programs written before Conv1dOptions did.
  Conv2dOptions wide{.stride = IntPair(1, 2), .padding = Padding(0, 1), .bias = false};
  Conv1d old(3, 4, 3, wide);
  old.weight = conv.weight;
  EXPECT_EQ(old.options.stride, 2);
  EXPECT_EQ(functional::conv1d(x, conv.weight, Tensor<float>(), wide).to_vector(), conv(x).to_vector());
}

// LibTorch's member pattern: holders as members, assigned from register_module, called directly.
struct HolderNet : Module<float> {
  ModuleHolder<Linear<float>> fc1{nullptr}, fc2;
  ModuleHolder<Module<float>> act;
  HolderNet() {
    // Registered in another order than declared: the calls decide (Note [Registration order]).
    fc2 = register_module("fc2", Linear(4, 2));
    act = register_module("act", ReLU());
    fc1 = register_module("fc1", Linear(3, 4));
  }
  Tensor<float> forward(const Tensor<float>& x) override { return fc2(act(fc1(x))); }
  std::string type_name() const override { return "HolderNet"; }
};

TEST(Module, LibTorchMemberPatternWithHolders) {
  manual_seed(1);
  HolderNet net;
  EXPECT_EQ(net(ones<float>({5, 3})).shape(), Shape({5, 2}));
  EXPECT_EQ(names(net.state_dict()), (std::vector<std::string>{"fc2.weight", "fc2.bias", "fc1.weight", "fc1.bias"}));
  EXPECT_EQ(net.fc1->weight.shape(), Shape({4, 3}));
  std::shared_ptr<Linear<float>> as_pointer = net.fc1;  // holders convert to shared_ptr
  EXPECT_EQ(as_pointer.get(), net.fc1.get());
  // The holder shares the registered module: loading a state dict reaches the member.
  StateDict sd = net.state_dict();
  sd[2].tensor = full<float>({4, 3}, 0.5f);
  net.load_state_dict(sd);
  EXPECT_EQ(net.fc1->weight.to_vector(), std::vector<float>(12, 0.5f));
  ModuleHolder<Linear<float>> empty;
  EXPECT_THROW(empty(ones<float>({1, 3})), ValueError);
}

TEST(Module, AMovedFromModuleSaysSoWhenCalled) {
  Linear<float> lin(3, 2);
  Sequential<float> seq;
  seq.push_back(std::move(lin));
  try {
    lin(ones<float>({1, 3}));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("Linear: this module was moved from"), std::string::npos) << e.what();
  }
  EXPECT_EQ(seq(ones<float>({1, 3})).shape(), Shape({1, 2}));  // the module it moved into works
}

TEST(Pooling, MaxPoolPropagatesNaNAndTakesTheFirstMaximum) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto x = tensor<float>({1, 5, 5, 2, nan, 0, 3, 3, -1, -2, -3, -4, -1, -1, -1, -1}, {1, 1, 4, 4});
  auto y = x.clone().requires_grad_(true);
  auto out = functional::max_pool2d(y, 2);
  auto v = out.to_vector();
  EXPECT_TRUE(std::isnan(v[0]));  // the NaN at row 1, column 0
  EXPECT_EQ(v[1], 5.0f);            // 5 twice: the first one (row 0, column 2) wins
  EXPECT_EQ(v[2], -1.0f);
  EXPECT_EQ(v[3], -1.0f);
  out.sum().backward();
  // Ties: the gradient goes to the first maximum only, as PyTorch.
  EXPECT_EQ(y.grad().to_vector(), (std::vector<float>{0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0}));
}

// With dilation a window can lie wholly in the padding (PyTorch bounds the padding by half the
// kernel, not by half its dilated extent): PyTorch 1.13 gives -inf there (values printed by
// F.max_pool2d(x, 2, stride=(3, 1), padding=(1, 0), dilation=2) on a 1x7 plane: all five -inf).
// Such a window passes no gradient; once its index pointed past the plane, and the forward read
// and the backward wrote out of bounds.
// max_pool2d and avg_pool2d, forward and backward, against their definitions on random
// geometries: strides, padding up to half the kernel, dilation, ceil_mode, count_include_pad.
// (Random geometries found the windows wholly in the padding below.)
TEST(Pooling, GeometriesMatchTheDefinition) {
  std::mt19937 rng(23);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const double inf = std::numeric_limits<double>::infinity();
  for (int k = 0; k < 60;) {
    const int64_t n = pick(1, 2), c = pick(1, 3), h = pick(1, 9), w = pick(1, 9), kh = pick(1, 4), kw = pick(1, 4);
    const int64_t sh = pick(1, 3), sw = pick(1, 3), ph = pick(0, kh / 2), pw = pick(0, kw / 2);
    const bool ceil = pick(0, 1) == 1, include_pad = pick(0, 1) == 1, max = k % 2 == 0;
    const int64_t d = max && pick(0, 2) == 0 ? 2 : 1;
    auto out_size = [&](int64_t in, int64_t kk, int64_t st, int64_t p) {
      const int64_t span = in + 2 * p - d * (kk - 1) - 1;
      if (span < 0) return int64_t(0);
      int64_t o = (ceil ? (span + st - 1) / st : span / st) + 1;
      if (ceil && (o - 1) * st >= in + p) --o;
      return o;
    };
    const int64_t ho = out_size(h, kh, sh, ph), wo = out_size(w, kw, sw, pw);
    if (ho <= 0 || wo <= 0) continue;
    ++k;
    SCOPED_TRACE(::testing::Message() << (max ? "max" : "avg") << " " << h << "x" << w << " kernel " << kh << "x" << kw
                                      << " stride " << sh << "," << sw << " padding " << ph << "," << pw << " dilation "
                                      << d << " ceil " << ceil << " count_include_pad " << include_pad);
    const Tensor<double> x = randn<double>({n, c, h, w}).requires_grad_(true);
    const Tensor<double> y =
        max ? functional::max_pool2d(x, {kh, kw}, {.stride = {sh, sw}, .padding = {ph, pw}, .dilation = d, .ceil_mode = ceil})
            : functional::avg_pool2d(x, {kh, kw},
                                     {.stride = {sh, sw}, .padding = {ph, pw}, .ceil_mode = ceil, .count_include_pad = include_pad});
    ASSERT_EQ(y.shape(), (Shape{n, c, ho, wo}));
    const Tensor<double> gy = randn<double>(y.shape());
    (y * gy).sum().backward();
    const std::vector<double> X = x.detach().to_vector(), G = gy.to_vector(), Y = y.to_vector(), GX = x.grad().to_vector();
    std::vector<double> want_y(Y.size()), want_gx(X.size());
    for (int64_t p = 0; p < n * c; ++p)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          const size_t yi = static_cast<size_t>((p * ho + oh) * wo + ow);
          if (max) {
            double best = -inf;
            int64_t at = -1;
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * sh - ph + i * d, iw = ow * sw - pw + j * d;
                if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                const int64_t xi = (p * h + ih) * w + iw;
                if (X[static_cast<size_t>(xi)] > best) best = X[static_cast<size_t>(xi)], at = xi;
              }
            want_y[yi] = best;
            if (at >= 0) want_gx[static_cast<size_t>(at)] += G[yi];
            continue;
          }
          // PyTorch's divisor: the window clipped to the padded input, or to the input itself.
          const int64_t h0 = oh * sh - ph, w0 = ow * sw - pw;
          const int64_t h1 = std::min(h0 + kh, h + ph), w1 = std::min(w0 + kw, w + pw);
          const int64_t hs = std::max<int64_t>(h0, 0), ws = std::max<int64_t>(w0, 0), he = std::min(h1, h), we = std::min(w1, w);
          const double divisor = double(include_pad ? (h1 - h0) * (w1 - w0) : (he - hs) * (we - ws));
          for (int64_t ih = hs; ih < he; ++ih)
            for (int64_t iw = ws; iw < we; ++iw) {
              want_y[yi] += X[static_cast<size_t>((p * h + ih) * w + iw)] / divisor;
              want_gx[static_cast<size_t>((p * h + ih) * w + iw)] += G[yi] / divisor;
            }
        }
    for (size_t i = 0; i < Y.size(); ++i) {
      if (std::isinf(want_y[i])) {
        ASSERT_EQ(Y[i], want_y[i]) << "output " << i;  // a window wholly in the padding
      } else {
        ASSERT_NEAR(Y[i], want_y[i], 1e-12 * (1 + std::abs(want_y[i]))) << "output " << i;
      }
    }
    for (size_t i = 0; i < GX.size(); ++i) ASSERT_NEAR(GX[i], want_gx[i], 1e-12 * (1 + std::abs(want_gx[i]))) << "gradient " << i;
  }
}

TEST(Pooling, MaxPoolWindowsWhollyInThePaddingGiveMinusInfinityAndNoGradient) {
  const float inf = std::numeric_limits<float>::infinity();
  auto x = arange<float>(0, 7).reshape({1, 1, 1, 7}).requires_grad_(true);
  auto y = functional::max_pool2d(x, 2, {.stride = {3, 1}, .padding = {1, 0}, .dilation = 2});
  ASSERT_EQ(y.shape(), Shape({1, 1, 1, 5}));
  for (float v : y.to_vector()) EXPECT_EQ(v, -inf);
  y.sum().backward();
  EXPECT_EQ(x.grad().to_vector(), std::vector<float>(7, 0.0f));
  // Some windows empty, some not: 3 rows, one column, kernel (1, 2), padding (0, 1), dilation 2:
  // the one output column reads columns -1 and 1, both outside.
  auto z = arange<double>(0, 6).reshape({2, 1, 3, 1}).requires_grad_(true);
  auto out = functional::max_pool2d(z, {1, 2}, {.stride = {1, 2}, .padding = {0, 1}, .dilation = 2, .ceil_mode = true});
  ASSERT_EQ(out.shape(), Shape({2, 1, 3, 1}));
  for (double v : out.to_vector()) EXPECT_EQ(v, -std::numeric_limits<double>::infinity());
  // The gradient of the gradient (scatter_add's path, with a graph): zero too.
  auto w = arange<double>(1, 7).reshape({2, 1, 3, 1}).requires_grad_(true);
  auto pooled = functional::max_pool2d(w, {1, 2}, {.stride = {1, 2}, .padding = {0, 1}, .dilation = 2});
  auto g = autograd::grad({pooled.sum() + (w * w).sum() * 0.5}, {w}, true)[0];  // 0 + w
  EXPECT_EQ(g.to_vector(), w.detach().to_vector());
  (g * g).sum().backward();  // 2 w through w * w, 0 through the pooling's gradient
  EXPECT_EQ(w.grad().to_vector(), (w.detach() * 2.0).to_vector());
  // The gradient arriving at a -inf output may be infinite (here 2 * -inf): still none passes.
  auto v = arange<double>(1, 7).reshape({2, 1, 3, 1}).requires_grad_(true);
  auto squared = functional::max_pool2d(v, {1, 2}, {.stride = {1, 2}, .padding = {0, 1}, .dilation = 2});
  auto gv = autograd::grad({(squared * squared).sum() + (v * v).sum() * 0.5}, {v}, true)[0];
  EXPECT_EQ(gv.to_vector(), v.detach().to_vector());
}
}  // namespace
}  // namespace ember::nn

namespace ember::nn {
namespace {
TEST(Recurrent, LSTMAndGRUMatchPyTorch) {
  const std::string data = ember::testing::data_dir();
  auto refs = ember::testing::load_reference("torch_rnn_io.txt");
  auto check = [](const Tensor<float>& got, const ember::testing::RefTensor& want, const char* what) {
    ASSERT_EQ(got.shape(), want.shape) << what;
    auto g = got.to_vector();
    for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want.values[i], 1e-5) << what << " " << i;
  };
  {
    LSTM lstm(3, 4, {.num_layers = 2, .batch_first = true, .bidirectional = true});
    EXPECT_EQ(lstm.state_dict()[0].name, "weight_ih_l0");
    EXPECT_EQ(lstm.state_dict()[4].name, "weight_ih_l0_reverse");
    ember::load(lstm, data + "/torch_lstm.safetensors");
    auto& io = refs.at("lstm");
    auto x = io[0].second.as<float>(true);
    auto [y, h, c] = lstm.forward_with_state(x);
    check(y, io[1].second, "lstm output");
    check(h, io[2].second, "lstm h_n");
    EXPECT_EQ(c.shape(), Shape({4, 2, 4}));
    (y.sum() + h.sum() * 2.0).backward();
    check(x.grad(), io[3].second, "lstm input grad");
  }
  {
    GRU gru(3, 4, {.batch_first = true});
    ember::load(gru, data + "/torch_gru.safetensors");
    auto& io = refs.at("gru");
    auto x = io[0].second.as<float>(true);
    auto [y, h, unused] = gru.forward_with_state(x);
    check(y, io[1].second, "gru output");
    check(h, io[2].second, "gru h_n");
    (y.sum() + h.sum() * 2.0).backward();
    check(x.grad(), io[3].second, "gru input grad");
  }
  LSTM<float> bad(3, 4);
  EXPECT_THROW(bad(zeros<float>({5, 2, 7})), ShapeError);
}

TEST(Recurrent, ElmanRNNAndCellsMatchPyTorch) {
  using ember::testing::expect_error;
  const std::string data = ember::testing::data_dir();
  auto refs = ember::testing::load_reference("torch_rnn_cells_io.txt");
  auto check = [](const Tensor<float>& got, const ember::testing::RefTensor& want, const std::string& what) {
    ASSERT_TRUE(got.defined()) << what;
    ASSERT_EQ(got.shape(), want.shape) << what;
    auto g = got.to_vector();
    for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want.values[i], 1e-5) << what << " " << i;
  };
  for (const char* name : {"rnn_relu", "rnn_tanh"}) {
    SCOPED_TRACE(name);
    const bool relu = std::string(name) == "rnn_relu";
    RNN rnn = relu ? RNN(3, 4, {.num_layers = 2, .nonlinearity = "relu", .batch_first = true, .bidirectional = true})
                   : RNN(3, 4, {.batch_first = true});
    EXPECT_EQ(rnn.state_dict()[0].name, "weight_ih_l0");
    ember::load(rnn, data + "/torch_" + name + ".safetensors");
    auto& io = refs.at(name);
    auto x = io[0].second.as<float>(true);
    Tensor<float> h0;  // the tanh case starts from the cells' h (the script's h1)
    if (!relu) h0 = refs.at("rnncell")[1].second.as<float>().reshape({1, 2, 4}).requires_grad_();
    auto [y, h, none] = rnn.forward_with_state(x, h0);
    EXPECT_FALSE(none.defined());
    check(y, io[1].second, "output");
    check(h, io[2].second, "h_n");
    (y.sum() + h.sum() * 2.0).backward();
    check(x.grad(), io[3].second, "input grad");
    if (!relu) check(h0.grad(), io[4].second, "h_0 grad");
  }
  for (const char* name : {"rnncell", "lstmcell", "grucell"}) {
    SCOPED_TRACE(name);
    const std::string n = name;
    auto& io = refs.at(name);
    auto x = io[0].second.as<float>(true), h = io[1].second.as<float>(true), c = io[2].second.as<float>(true);
    Tensor<float> h_next, c_next;
    std::unique_ptr<Module<float>> cell;
    if (n == "rnncell") {
      auto m = std::make_unique<RNNCell<float>>(3, 4);
      ember::load(*m, data + "/torch_rnncell.safetensors");
      h_next = m->forward(x, h);
      cell = std::move(m);
    } else if (n == "lstmcell") {
      auto m = std::make_unique<LSTMCell<float>>(3, 4);
      ember::load(*m, data + "/torch_lstmcell.safetensors");
      std::tie(h_next, c_next) = m->forward_with_state(x, h, c);
      cell = std::move(m);
    } else {
      auto m = std::make_unique<GRUCell<float>>(3, 4);
      ember::load(*m, data + "/torch_grucell.safetensors");
      h_next = m->forward(x, h);
      cell = std::move(m);
    }
    EXPECT_EQ(cell->state_dict()[0].name, "weight_ih");
    check(h_next, io[3].second, "h'");
    if (c_next.defined()) {
      (h_next.sum() + c_next.sum() * 2.0).backward();
      check(c_next, io[6].second, "c'");
      check(c.grad(), io[7].second, "c grad");
    } else {
      h_next.sum().backward();
    }
    check(x.grad(), io[4].second, "x grad");
    check(h.grad(), io[5].second, "h grad");
  }
  // Unbatched and zero states: one step from h = 0 is the batched step of a batch of one.
  GRUCell gru(3, 4);
  auto x = randn<float>({3});
  EXPECT_EQ(gru(x).to_vector(), gru.forward(x.unsqueeze(0), zeros<float>({1, 4})).squeeze(0).to_vector());
  LSTMCell lstm(3, 4, {.bias = false});
  EXPECT_EQ(lstm.named_parameters().size(), 2u);
  EXPECT_EQ(lstm(x).shape(), Shape({4}));
  RNN<double> rnn(3, 4, {.nonlinearity = "relu"});
  auto xd = randn<double>({5, 2, 3}, true);
  EXPECT_TRUE(ember::testing::gradcheck([&](const std::vector<Tensor<double>>& in) { return rnn(in[0]); }, {xd}));
  expect_error<ValueError>([] { RNN(3, 4, {.nonlinearity = "sigmoid"}); },
                           "RNN: nonlinearity must be \"tanh\" or \"relu\", got \"sigmoid\"");
  expect_error<ValueError>([] { RNNCell(3, 4, {.nonlinearity = "gelu"}); }, "RNNCell: nonlinearity");
  // Refused before any weight is drawn: the generator is where it was.
  manual_seed(5);
  const float first_draw = randn<float>({1}).item();
  manual_seed(5);
  expect_error<ValueError>([] { RNN(3, 4, {.nonlinearity = "sigmoid"}); }, "RNN: nonlinearity");
  expect_error<ValueError>([] { RNNCell(3, 4, {.nonlinearity = "gelu"}); }, "RNNCell: nonlinearity");
  EXPECT_EQ(randn<float>({1}).item(), first_draw);
  expect_error<ShapeError>([&] { gru(randn<float>({2, 5})); }, "GRUCell: input must be [N, 3]");
  expect_error<ShapeError>([&] { gru.forward(randn<float>({2, 3}), randn<float>({3, 4})); },
                           "GRUCell: hidden state of shape [3, 4] for the input [2, 3], expected [2, 4]");
  expect_error<ShapeError>([&] { lstm.forward_with_state(randn<float>({2, 3}), {}, randn<float>({2, 5})); },
                           "LSTMCell: cell state of shape [2, 5]");
}

// PyTorch's layers take one sample without its batch dim ("unbatched": [C, H, W] to Conv2d,
// [L, H_in] to an LSTM, [L, E] to attention) and treat it as a batch of one: the same values and
// gradients as the batch of one (values bit for bit; gradients summed in another order where
// the sample feeds several views).
TEST(Module, UnbatchedInputsAreABatchOfOne) {
  using ember::testing::expect_error;
  manual_seed(3);
  auto same = [](Module<float>& m, const Tensor<float>& sample, int64_t batch_dim) {
    Tensor<float> x = sample.detach().requires_grad_(true);
    Tensor<float> xb = sample.detach().unsqueeze(batch_dim).requires_grad_(true);
    Tensor<float> y = m(x), yb = m(xb);
    ASSERT_EQ(y.shape(), yb.squeeze(batch_dim).shape()) << m.type_name();
    EXPECT_EQ(y.to_vector(), yb.to_vector()) << m.type_name();
    Tensor<float> w = randn<float>(y.shape());
    (y * w).sum().backward();
    (yb * w.unsqueeze(batch_dim)).sum().backward();
    EXPECT_TRUE(allclose(x.grad(), xb.grad().squeeze(batch_dim), 1e-6, 1e-7)) << m.type_name();
  };
  Conv2d<float> conv(3, 4, 3, {.stride = 2, .padding = 1});
  same(conv, randn<float>({3, 9, 8}), 0);
  Conv1d<float> conv1(3, 2, 3, {.padding = 1});
  same(conv1, randn<float>({3, 7}), 0);
  ConvTranspose2d<float> convt(3, 2, 4, {.stride = 2, .padding = 1});
  same(convt, randn<float>({3, 4, 5}), 0);
  MaxPool2d<float> max_pool(2);
  same(max_pool, randn<float>({2, 6, 7}), 0);
  AvgPool2d<float> avg_pool(3, {.stride = 2, .padding = 1});
  same(avg_pool, randn<float>({2, 6, 7}), 0);
  MaxPool1d<float> max_pool1(2);
  same(max_pool1, randn<float>({2, 9}), 0);
  LSTM<float> lstm(5, 3, {.num_layers = 2, .batch_first = true, .bidirectional = true});
  same(lstm, randn<float>({4, 5}), 0);
  GRU<float> gru(5, 3);
  same(gru, randn<float>({4, 5}), 1);
  MultiheadAttention<float> mha(8, 2);
  same(mha, randn<float>({5, 8}), 1);
  TransformerEncoderLayer<float> encoder(8, 2, {.dim_feedforward = 16, .dropout = 0.0, .batch_first = true});
  same(encoder, randn<float>({5, 8}), 0);

  // States, masks and weights of an unbatched call drop the batch dim too.
  auto [y, h, c] = lstm.forward_with_state(randn<float>({4, 5}), zeros<float>({4, 3}), zeros<float>({4, 3}));
  EXPECT_EQ(y.shape(), Shape({4, 6}));
  EXPECT_EQ(h.shape(), Shape({4, 3}));
  EXPECT_EQ(c.shape(), Shape({4, 3}));
  Tensor<float> q = randn<float>({5, 8}), kv = randn<float>({6, 8});
  auto [out, weights] = mha.attention(q, kv, kv, tensor<uint8_t>({0, 0, 1, 0, 0, 1}));
  EXPECT_EQ(out.shape(), Shape({5, 8}));
  ASSERT_EQ(weights.shape(), Shape({5, 6}));
  EXPECT_EQ(weights.select(1, 2).abs().sum().item(), 0.0f);  // the masked key gets no weight
  EXPECT_EQ(mha.attention(q, kv, kv, {}, true, {}, false).second.shape(), Shape({2, 5, 6}));

  expect_error<ShapeError>([&] { lstm.forward_with_state(randn<float>({4, 5}), zeros<float>({4, 1, 3})); },
                           "LSTM: for the unbatched 2-D input [4, 5] the initial state must be 2-D");
  expect_error<ShapeError>([&] { mha.attention(q, kv.unsqueeze(1), kv.unsqueeze(1)); },
                           "for the unbatched 2-D query [5, 8], key and value must be 2-D too");
  expect_error<ShapeError>([&] { mha.attention(q, kv, kv, zeros<uint8_t>({1, 6})); },
                           "key_padding_mask must be 1-D [S], got [1, 6]");
  expect_error<ShapeError>([&] { conv(randn<float>({9, 8})); }, "must be 4-D [N, C, H, W] (or 3-D [C, H, W], unbatched)");
  expect_error<ShapeError>([&] { max_pool(randn<float>({9, 8})); }, "must be 3-D [C, H, W] or 4-D [N, C, H, W]");
  expect_error<ShapeError>([&] { lstm(randn<float>({5})); }, "or 2-D [L, 5] unbatched), got [5]");
}

// The activation modules call the functional forms (checked against PyTorch, gradients
// included, in the op registry); here the gradients at the kinks, which random inputs never hit,
// against PyTorch 1.13's (printed by torch for these inputs), and PReLU's parameter.
TEST(Activations, KinksFollowPyTorchAndPReLULearnsItsSlope) {
  using ember::testing::expect_error;
  auto grad_of = [](auto f, std::vector<double> at) {
    Tensor<double> x = tensor<double>(at).requires_grad_(true);
    f(x).sum().backward();
    return x.grad().to_vector();
  };
  EXPECT_EQ(grad_of([](const auto& x) { return hardtanh(x); }, {-1, 1, 0}), (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(grad_of([](const auto& x) { return relu6(x); }, {0, 6, 3}), (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(grad_of([](const auto& x) { return hardswish(x); }, {-3, 3, 0, -4, 4}),
            (std::vector<double>{-0.5, 1.5, 0.5, 0, 1}));
  const auto hs = grad_of([](const auto& x) { return hardsigmoid(x); }, {-3, 3, 0});
  EXPECT_EQ(hs[0], 0.0);
  EXPECT_EQ(hs[1], 0.0);
  EXPECT_DOUBLE_EQ(hs[2], 1.0 / 6.0);
  EXPECT_TRUE(std::isnan(relu6(tensor<float>({std::nanf("")})).item()));  // NaN passes, as clamp

  PReLU<double> prelu(3);
  EXPECT_EQ(prelu.state_dict()[0].name, "weight");
  EXPECT_EQ(prelu.weight.to_vector(), (std::vector<double>{0.25, 0.25, 0.25}));
  EXPECT_EQ(prelu.str(), "PReLU(num_parameters=3)");
  Tensor<double> x = tensor<double>({-2, 1, -4, 3, -1, -1}, {2, 3});
  Tensor<double> y = prelu(x);
  EXPECT_EQ(y.to_vector(), (std::vector<double>{-0.5, 1, -1, 3, -0.25, -0.25}));
  y.sum().backward();
  EXPECT_EQ(prelu.weight.grad().to_vector(), (std::vector<double>{-2, -1, -5}));
  EXPECT_EQ(Sequential(ELU(0.5), Softplus(2.0, 10.0), Hardtanh(-2.0, 2.0), GLU()).str(),
            "Sequential(\n  (0): ELU(alpha=0.5)\n  (1): Softplus(beta=2, threshold=10)\n"
            "  (2): Hardtanh(min_val=-2, max_val=2)\n  (3): GLU(dim=-1)\n)");

  expect_error<ShapeError>([&] { prelu(ones<double>({2, 4})); },
                           "prelu: weight [3] must be 1-D with 1 element or one per channel (4 for input [2, 4])");
  expect_error<ShapeError>([] { glu(ones<float>({2, 3})); }, "glu: dim 1 of input [2, 3] has size 3; it must be even");
  expect_error<ValueError>([] { hardtanh(ones<float>({2}), 1.0, -1.0); }, "hardtanh: min_val 1 is greater than max_val -1");
  expect_error<ValueError>([] { CELU<float>(0.0); }, "CELU: alpha must not be 0");
  expect_error<ValueError>([] { PReLU<float>(0); }, "PReLU: num_parameters must be positive");

  // The shrinks pass no gradient at +-lambd itself (strict comparisons, as PyTorch's backwards).
  EXPECT_EQ(grad_of([](const auto& x) { return softshrink(x, 0.5); }, {0.5, -0.5, 0.6, -0.6, 0.1}),
            (std::vector<double>{0, 0, 1, 1, 0}));
  EXPECT_EQ(grad_of([](const auto& x) { return hardshrink(x, 0.5); }, {0.5, -0.5, 0.6, -0.6}),
            (std::vector<double>{0, 0, 1, 1}));
  EXPECT_EQ(Threshold<double>(0.5, -7.0)(tensor<double>({0.5, 0.7, -1.0})).to_vector(),
            (std::vector<double>{-7.0, 0.7, -7.0}));
  // RReLU: in training each negative element gets its own slope in [lower, upper] (its gradient),
  // in evaluation the mean slope.
  RReLU<double> rrelu_module(0.1, 0.3);
  Tensor<double> neg = full<double>({1000}, -2.0).requires_grad_(true);
  Tensor<double> out = rrelu_module(neg);
  out.sum().backward();
  const auto slopes = neg.grad().to_vector();
  const auto [lo, hi] = std::minmax_element(slopes.begin(), slopes.end());
  EXPECT_GE(*lo, 0.1);
  EXPECT_LE(*hi, 0.3);
  EXPECT_GT(*hi - *lo, 0.1);  // not one slope for all
  for (size_t i = 0; i < slopes.size(); ++i) EXPECT_DOUBLE_EQ(out.to_vector()[i], -2.0 * slopes[i]);
  EXPECT_EQ(rrelu_module(tensor<double>({3.0})).item(), 3.0);
  rrelu_module.eval();
  EXPECT_DOUBLE_EQ(rrelu_module(tensor<double>({-2.0})).item(), -0.4);
  EXPECT_EQ(Sequential(Softshrink(0.25), Hardshrink(), Tanhshrink(), Threshold(0.1, 20.0), Softmin(1), RReLU()).str(),
            "Sequential(\n  (0): Softshrink(lambd=0.25)\n  (1): Hardshrink(lambd=0.5)\n  (2): Tanhshrink()\n"
            "  (3): Threshold(threshold=0.1, value=20)\n  (4): Softmin(dim=1)\n"
            "  (5): RReLU(lower=0.125, upper=0.333333)\n)");
  expect_error<ValueError>([] { softshrink(ones<float>({2}), -0.1); }, "softshrink: lambd must be >= 0, got -0.1");
  expect_error<ValueError>([] { Hardshrink<float>(-1.0); }, "Hardshrink: lambd must be >= 0");
  expect_error<ValueError>([] { rrelu(ones<float>({2}), 0.5, 0.1, true); },
                           "rrelu: lower 0.5 is greater than upper 0.1");
}

// Values and gradients against PyTorch are in the op registry; here the shapes each loss
// accepts, the clamp of gaussian_nll_loss and the errors.
TEST(Functional, RankingMarginAndLikelihoodLosses) {
  using ember::testing::expect_error;
  namespace F = functional;
  // gaussian_nll_loss: one variance per sample as [N] or [N, 1]; var below eps counts as eps and
  // keeps its gradient (PyTorch clamps a copy under no_grad).
  auto input = tensor<double>({0.5, -1.0, 2.0, 0.0}, {2, 2}), target = zeros<double>({2, 2});
  auto per_sample = tensor<double>({0.5, 2.0}, {2});
  EXPECT_EQ(F::gaussian_nll_loss(input, target, per_sample).item(),
            F::gaussian_nll_loss(input, target, per_sample.unsqueeze(1)).item());
  auto tiny = tensor<double>({0.0, 1.0}, {2}).requires_grad_();
  auto clamped = F::gaussian_nll_loss(input, target, tiny, false, 1e-3, F::Reduction::None);
  EXPECT_DOUBLE_EQ(clamped.to_vector()[0], 0.5 * (std::log(1e-3) + 0.25 / 1e-3));
  clamped.sum().backward();
  EXPECT_NE(tiny.grad().to_vector()[0], 0.0);
  expect_error<ShapeError>([&] { F::gaussian_nll_loss(input, target, ones<double>({3})); },
                           "gaussian_nll_loss: var [3] must have the input's shape [2, 2]");
  expect_error<ValueError>([&] { F::gaussian_nll_loss(input, target, tensor<double>({1.0, -1.0}, {2})); },
                           "gaussian_nll_loss: var has negative entries");
  // multi_margin_loss: one sample [C] with one target; bad p and targets.
  auto scores = tensor<double>({0.1, 0.9, -0.3}, {3});
  EXPECT_DOUBLE_EQ(F::multi_margin_loss(scores, tensor<int64_t>({1}, {1})).item(), ((1 - 0.8) + 0.0) / 3.0);
  expect_error<ValueError>([&] { F::multi_margin_loss(scores, tensor<int64_t>({1}, {1}), 3); },
                           "multi_margin_loss: p must be 1 or 2, got 3");
  expect_error<IndexError>([&] { F::multi_margin_loss(scores, tensor<int64_t>({3}, {1})); },
                           "multi_margin_loss: target 3 is out of range for 3 classes");
  expect_error<ShapeError>([&] { F::multi_margin_loss(ones<double>({2, 3}), tensor<int64_t>({0}, {1})); },
                           "expected scores [N, C] (or [C]) and targets [N], got [2, 3] and [1]");
  expect_error<ShapeError>([&] { F::margin_ranking_loss(ones<double>({2}), ones<double>({2}), ones<double>({2, 1})); },
                           "must have the same number of dims");
  // hinge_embedding_loss: y = 1 passes x, y = -1 the margin's excess.
  EXPECT_EQ(F::hinge_embedding_loss(tensor<double>({0.3, 0.3}, {2}), tensor<double>({1, -1}, {2}), 1.0,
                                    F::Reduction::None)
                .to_vector(),
            (std::vector<double>{0.3, 0.7}));
  // The loss objects hold the options.
  EXPECT_DOUBLE_EQ(
      MarginRankingLoss<double>{.margin = 0.5}(ones<double>({1}), zeros<double>({1}), -ones<double>({1})).item(), 1.5);
  EXPECT_DOUBLE_EQ(PoissonNLLLoss<double>{.log_input = false}(ones<double>({1}), ones<double>({1})).item(),
                   1.0 - std::log(1.0 + 1e-8));
  EXPECT_GT(SoftMarginLoss<double>{}(zeros<double>({2}), ones<double>({2})).item(), 0.69);
  EXPECT_NEAR(MultiLabelSoftMarginLoss<double>{}(zeros<double>({1, 2}), ones<double>({1, 2})).item(), std::log(2.0),
              1e-15);
  const MultiMarginLoss<double> squared{.p = 2};
  EXPECT_DOUBLE_EQ(squared(tensor<double>({0.0, 0.5}, {1, 2}), tensor<int64_t>({1}, {1})).item(), 0.25 / 2.0);
  EXPECT_DOUBLE_EQ(
      GaussianNLLLoss<double>{.full = true}(zeros<double>({1}), zeros<double>({1}), ones<double>({1})).item(),
      0.5 * std::log(2 * 3.14159265358979323846));
  EXPECT_DOUBLE_EQ(HingeEmbeddingLoss<double>{.margin = 2.0}(zeros<double>({1}), -ones<double>({1})).item(), 2.0);
}

// Values and gradients against PyTorch are in the op registry; here the eps clamps at their
// edges (PyTorch 1.13's outputs for these inputs) and the errors.
TEST(Functional, CosineSimilarityPairwiseDistanceNormalize) {
  using ember::testing::expect_error;
  namespace F = functional;
  const Tensor<double> tiny = tensor<double>({1e-9, 0}, {1, 2}), v = tensor<double>({3, 4}, {1, 2});
  EXPECT_NEAR(F::cosine_similarity(tiny, v).item(), 0.06, 1e-15);  // |tiny| clamped to 1e-8
  EXPECT_NEAR(CosineSimilarity<double>{}(tensor<double>({1e-5, 0}, {1, 2}), tensor<double>({2e-5, 0}, {1, 2})).item(),
              1.0, 1e-15);
  EXPECT_NEAR(PairwiseDistance<double>{}(v, v).item(), std::sqrt(2.0) * 1e-6, 1e-18);
  EXPECT_EQ(F::normalize(tensor<double>({0, 0, 3, 4}, {2, 2})).to_vector(), (std::vector<double>{0, 0, 0.6, 0.8}));
  EXPECT_EQ(F::cosine_similarity(ones<float>({2, 3, 4}), ones<float>({4}), -1).shape(), Shape({2, 3}));
  expect_error<ShapeError>([] { F::cosine_similarity(ones<float>({2, 3}), ones<float>({2, 4})); },
                           "cosine_similarity");
  expect_error<IndexError>([] { F::cosine_similarity(ones<float>({2, 3}), ones<float>({2, 3}), 2); },
                           "cosine_similarity: dim 2 is out of range");
  expect_error<ShapeError>([] { F::pairwise_distance(scalar_tensor<float>(1), scalar_tensor<float>(2)); },
                           "pairwise_distance: the inputs are 0-D");
  expect_error<IndexError>([] { F::normalize(ones<float>({3}), 2.0, 1); }, "normalize: dim 1 is out of range");
}

// Running statistics, eval mode and the unbatched form against PyTorch 1.13 (the numbers it
// printed for these inputs); the functional form's values and gradients are in the op registry.
TEST(Normalization, InstanceNormTracksStatisticsAsPyTorch) {
  using ember::testing::expect_error;
  InstanceNorm1d<float> norm(2, {.momentum = 0.5, .affine = true, .track_running_stats = true});
  EXPECT_EQ(names(norm.state_dict()),
            (std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_EQ(norm.str(), "InstanceNorm1d(2, eps=0.000010, momentum=0.500000, affine=True, track_running_stats=True)");
  norm(tensor<float>({1, 2, 4, 0, 3, 3, 2, 2, 5, -1, 1, 6}, {2, 2, 3}));
  const auto mean = norm.running_mean.to_vector(), var = norm.running_var.to_vector();
  EXPECT_NEAR(mean[0], 1.3333332538604736, 1e-6);
  EXPECT_NEAR(mean[1], 1.0, 1e-6);
  EXPECT_NEAR(var[0], 1.8333333730697632, 1e-6);
  EXPECT_NEAR(var[1], 4.5, 1e-6);
  EXPECT_EQ(norm.num_batches_tracked.item(), 0);  // PyTorch registers it and never counts
  norm.eval();
  const auto y = norm(tensor<float>({1, 2, 3, 4}, {2, 2})).to_vector();  // unbatched [C, L]
  const std::vector<double> want{-0.24618226289749146, 0.49236464500427246, 0.9428080320358276, 1.4142119884490967};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(y[i], want[i], 1e-6) << i;

  InstanceNorm2d<float> plain(3);  // PyTorch's defaults: nothing per channel, batch statistics always
  EXPECT_TRUE(plain.state_dict().empty());
  plain.eval();
  const Tensor<float> out = plain(randn<float>({2, 5, 4, 4}) * 3.0f + 1.0f);  // any channel count
  EXPECT_NEAR(out.mean().item(), 0.0, 1e-5);
  expect_error<ShapeError>([&] { norm(ones<float>({2, 3, 4})); }, "InstanceNorm1d: input [2, 3, 4] has 3 channels, expected 2");
  expect_error<ShapeError>([&] { plain(ones<float>({2, 3})); }, "InstanceNorm2d: expected a 3-D (unbatched) or 4-D input");
  expect_error<ValueError>([] { instance_norm(ones<float>({2, 3, 1, 1})); },
                           "instance_norm: expected more than 1 spatial element");
  expect_error<ShapeError>([] { instance_norm(ones<float>({2, 3, 4}), {}, {}, ones<float>({2})); },
                           "instance_norm: weight [2] must be [3]");
  expect_error<ValueError>([] { instance_norm(ones<float>({2, 3, 4}), {}, {}, {}, {}, false); },
                           "use_input_stats = false normalises with running statistics, and none were given");
}

// pixel_shuffle's layout (values against PyTorch in the op registry): channel c r^2 + i r + j goes
// to pixel (h r + i, w r + j) of channel c; unshuffle inverts it, for integer tensors too.
TEST(Upsample, PixelShuffleAndOneDimensionalPooling) {
  using ember::testing::expect_error;
  const Tensor<int64_t> x = arange<int64_t>(0, 8).reshape({1, 4, 1, 2});
  EXPECT_EQ(pixel_shuffle(x, 2).shape(), Shape({1, 1, 2, 4}));
  EXPECT_EQ(pixel_shuffle(x, 2).to_vector(), (std::vector<int64_t>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_EQ(pixel_unshuffle(pixel_shuffle(x, 2), 2).to_vector(), x.to_vector());
  PixelShuffle<float> shuffle(3);
  EXPECT_EQ(shuffle(ones<float>({2, 5, 18, 2, 3})).shape(), Shape({2, 5, 2, 6, 9}));
  EXPECT_EQ(Sequential(PixelShuffle(2), PixelUnshuffle(2)).str(),
            "Sequential(\n  (0): PixelShuffle(upscale_factor=2)\n  (1): PixelUnshuffle(downscale_factor=2)\n)");
  expect_error<ShapeError>([&] { shuffle(ones<float>({2, 8, 3, 3})); },
                           "pixel_shuffle: the 8 channels of input [2, 8, 3, 3] are not divisible by upscale_factor^2 = 9");
  expect_error<ShapeError>([] { pixel_unshuffle(ones<float>({2, 8, 3, 4}), 2); },
                           "height and width of input [2, 8, 3, 4] are not divisible by downscale_factor 2");
  expect_error<ValueError>([] { pixel_shuffle(ones<float>({1, 4, 2, 2}), 0); }, "upscale_factor must be positive");
  expect_error<ShapeError>([] { pixel_shuffle(ones<float>({4, 2}), 2); }, "must have at least 3 dims");

  AvgPool1d<float> avg(2);
  EXPECT_EQ(avg(tensor<float>({1, 3, 5, 7, 2, 2}, {1, 6})).to_vector(), (std::vector<float>{2, 6, 2}));  // unbatched
  AdaptiveAvgPool1d<float> adaptive(2);
  EXPECT_EQ(adaptive(tensor<float>({1, 2, 3, 4, 5, 6}, {1, 1, 6})).to_vector(), (std::vector<float>{2, 5}));
  EXPECT_EQ(adaptive.str(), "AdaptiveAvgPool1d(output_size=2)");
  expect_error<ShapeError>([&] { avg(ones<float>({6})); }, "avg_pool1d: input must be 2-D [C, L] or 3-D [N, C, L]");
  expect_error<ValueError>([] { adaptive_avg_pool1d(ones<float>({1, 6}), 0); }, "output size must be positive");

  // Adaptive max pooling's indices, PyTorch's (return_indices=True) for the same inputs: ties go to
  // the first maximum; overlapping bins share it.
  const auto tied = AdaptiveMaxPool1d<float>(3).forward_with_indices(tensor<float>({3, 1, 3, 2, 5, 5, 0}, {1, 1, 7}));
  EXPECT_EQ(tied.values.to_vector(), (std::vector<float>{3, 5, 5}));
  EXPECT_EQ(tied.indices.to_vector(), (std::vector<int64_t>{0, 4, 4}));
  const Tensor<float> plane = tensor<float>({4,  0,  25, 3,  31, 14, 6,  10, 18, 26, 11, 13, 32, 8,  30, 1,  17, 16,
                                             34, 20, 15, 5,  19, 2,  23, 9,  33, 28, 29, 27, 22, 21, 7,  24, 12},
                                            {5, 7});  // unbatched [C, H, W] with C = 1
  AdaptiveMaxPool2d<float> bins({3, 4});
  const auto pooled = bins.forward_with_indices(plane.unsqueeze(0));
  EXPECT_EQ(pooled.values.to_vector(), (std::vector<float>{18, 26, 32, 32, 30, 26, 34, 33, 29, 27, 33, 33}));
  EXPECT_EQ(pooled.indices.to_vector(), (std::vector<int64_t>{8, 9, 12, 12, 14, 9, 18, 26, 28, 29, 26, 26}));
  EXPECT_EQ(pooled.indices.shape(), Shape({1, 3, 4}));
  EXPECT_EQ(bins(plane.unsqueeze(0)).to_vector(), pooled.values.to_vector());
  EXPECT_EQ(bins.str(), "AdaptiveMaxPool2d(output_size=(3, 4))");
  // Bins that tile the plane run as max_pool2d: the same maxima as the bins taken one by one.
  const Tensor<float> grid = randn<float>({2, 3, 6, 8});
  EXPECT_EQ(adaptive_max_pool2d(grid, {3, 2}).to_vector(), adaptive_max_pool2d_with_indices(grid, {3, 2}).values.to_vector());
  expect_error<ShapeError>([] { adaptive_max_pool2d(ones<float>({4, 4}), {2, 2}); },
                           "adaptive_max_pool2d: input must be [N, C, H, W] or [C, H, W], got [4, 4]");
  expect_error<ValueError>([] { adaptive_max_pool1d(ones<float>({1, 6}), 0); }, "output size must be positive");
  expect_error<ShapeError>([] { adaptive_max_pool2d(ones<float>({1, 0, 3}), {1, 1}); }, "has an empty plane");
}

// The padding layers call ember::pad (checked against PyTorch in the op registry); here their pad
// order, printing and errors, Unflatten, and ConvTranspose1d's parameters (its values and
// gradients are in the registry).
TEST(Module, PaddingLayersUnflattenAndConvTranspose1d) {
  using ember::testing::expect_error;
  EXPECT_EQ(ReflectionPad1d(2)(arange<float>(0, 4).reshape({1, 4})).to_vector(),
            (std::vector<float>{2, 1, 0, 1, 2, 3, 2, 1}));  // PyTorch's output
  EXPECT_EQ(ReplicationPad2d(std::vector<int64_t>{1, 0, 0, 1})(arange<float>(0, 4).reshape({1, 2, 2})).to_vector(),
            (std::vector<float>{0, 0, 1, 2, 2, 3, 2, 2, 3}));
  EXPECT_EQ(ConstantPad2d(1, 7.0)(zeros<float>({1, 1, 1, 1})).to_vector(), (std::vector<float>{7, 7, 7, 7, 0, 7, 7, 7, 7}));
  EXPECT_EQ(ZeroPad2d(std::vector<int64_t>{1, 0, 2, 1})(ones<float>({2, 3, 4, 4})).shape(), Shape({2, 3, 7, 5}));
  EXPECT_EQ(Sequential(ZeroPad2d(std::vector<int64_t>{1, 0, 2, 1}), ConstantPad1d(2, 3.5), ReflectionPad2d(1),
                       Unflatten(1, {2, 5}))
                .str(),
            "Sequential(\n  (0): ZeroPad2d((1, 0, 2, 1))\n  (1): ConstantPad1d(padding=(2, 2), value=3.5)\n"
            "  (2): ReflectionPad2d((1, 1, 1, 1))\n  (3): Unflatten(dim=1, unflattened_size=(2, 5))\n)");
  expect_error<ValueError>([] { ZeroPad2d(std::vector<int64_t>{1, 2, 3}); }, "ZeroPad2d: expected 1 or 4 pads, got 3");
  expect_error<ShapeError>([] { ReflectionPad2d(1)(ones<float>({4, 4})); }, "ReflectionPad2d: expected a 3-D or 4-D input");

  Unflatten<float> unflatten(-1, {2, -1});
  EXPECT_EQ(unflatten(ones<float>({3, 8})).shape(), Shape({3, 2, 4}));
  expect_error<ShapeError>([&] { unflatten(ones<float>({3, 7})); }, "dim 1 of input [3, 7] (size 7) cannot be split into (2, -1)");
  expect_error<IndexError>([] { Unflatten<float>(2, {1})(ones<float>({3, 7})); }, "Unflatten: dim 2 is out of range");

  ConvTranspose1d<float> up(4, 6, 3, {.stride = 2, .groups = 2});
  EXPECT_EQ(names(up.state_dict()), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(up.weight.shape(), Shape({4, 3, 3}));
  EXPECT_EQ(up(ones<float>({2, 4, 5})).shape(), Shape({2, 6, 11}));
  EXPECT_EQ(up(ones<float>({4, 5})).shape(), Shape({6, 11}));  // unbatched
  EXPECT_EQ(up.str(), "ConvTranspose1d(4, 6, kernel_size=(3,), stride=(2,))");
  expect_error<ShapeError>([&] { up(ones<float>({2, 3, 5})); },
                           "conv_transpose1d: input [2, 3, 5] has 3 channels but weight [4, 3, 3] expects 4");
  expect_error<ShapeError>([] { Conv1d(4, 6, 3)(ones<float>({2, 3, 5})); },
                           "conv1d: input [2, 3, 5] has 3 channels but weight [6, 4, 3] expects 4");
}

TEST(Recurrent, GradcheckThroughLSTMParameters) {
  LSTM<double> lstm(2, 3);
  auto x = ember::testing::leaf({4, 1, 2}, 21);
  auto params = lstm.parameters();
  std::vector<Tensor<double>> inputs{x};
  for (auto& p : params) inputs.push_back(p);
  auto f = [&lstm](const std::vector<Tensor<double>>& in) {
    auto named = lstm.named_parameters();
    for (size_t i = 0; i < named.size(); ++i) lstm.entry(named[i].first) = in[i + 1];
    return std::get<0>(lstm.forward_with_state(in[0]));
  };
  EXPECT_TRUE(ember::testing::gradcheck(f, inputs));
}
TEST(Upsample, ResamplesAsInterpolateAndRefusesBadOptions) {
  using ember::testing::expect_error;
  Upsample<double> up({.scale_factor = {2}});
  EXPECT_EQ(up.str(), "Upsample(scale_factor=2, mode='nearest')");
  EXPECT_EQ(Upsample<float>({.size = {5, 7}, .mode = "bilinear"}).str(), "Upsample(size=(5, 7), mode='bilinear')");
  EXPECT_TRUE(up.state_dict().empty());
  auto x = tensor<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  EXPECT_EQ(up(x).to_vector(), (std::vector<double>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
  // Bilinear with corners aligned keeps the corners and interpolates between them.
  auto y = functional::interpolate(x, {.size = {3, 3}, .mode = "bilinear", .align_corners = true});
  EXPECT_EQ(y.to_vector(), (std::vector<double>{1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4}));
  // The identity size is a new tensor, not the input.
  auto same = functional::interpolate(x, {.size = {2, 2}});
  EXPECT_FALSE(same.is_same(x));
  EXPECT_EQ(same.to_vector(), x.to_vector());
  expect_error<ValueError>([&] { functional::interpolate(x, {}); }, "exactly one of size and scale_factor");
  expect_error<ValueError>([&] { functional::interpolate(x, {.size = {4}, .scale_factor = {2}}); }, "exactly one");
  expect_error<ValueError>([&] { functional::interpolate(x, {.scale_factor = {0.0}}); },
                           "scale_factor must be positive and finite, got 0");
  expect_error<ShapeError>([&] { functional::interpolate(x, {.scale_factor = {0.4}}); }, "gives an empty output");
  expect_error<ShapeError>([&] { functional::interpolate(x, {.size = {2, 3, 4}}); },
                           "3 sizes for 2 spatial dims of the input [1, 1, 2, 2]");
  expect_error<ShapeError>([&] { functional::interpolate(x, {.size = {4}, .mode = "linear"}); },
                           "mode \"linear\" needs a 3-D input, got [1, 1, 2, 2]");
  expect_error<ValueError>([&] { functional::interpolate(x, {.size = {4}, .mode = "bicubic"}); },
                           "mode \"bicubic\" is not supported");
  expect_error<ValueError>([&] { functional::interpolate(x, {.size = {4}, .align_corners = false}); },
                           "align_corners applies to the linear modes only");
  expect_error<ShapeError>([&] { functional::interpolate(ones<double>({4, 4}), {.size = {2}}); }, "must be 3-D");
  expect_error<ValueError>([&] { functional::interpolate(x, {.size = {int64_t(1) << 40, 2}}); },
                           "more than the allocation limit");
  expect_error<ShapeError>([&] { functional::interpolate(x, {.scale_factor = {1e10}}); }, "at most 2^62");
  expect_error<ShapeError>([&] { functional::interpolate(x, {.scale_factor = {1e300}}); }, "larger than 2^62");
}

TEST(DistillationLoss, RefusesBadOptionsAndShapes) {
  const Tensor<float> s = zeros<float>({2, 3}), t = zeros<float>({2, 3});
  const Tensor<int64_t> y = tensor<int64_t>({0, 2}, {2});
  EXPECT_THROW(nn::functional::distillation_loss(s, zeros<float>({2, 4}), y), ShapeError);
  EXPECT_THROW(nn::functional::distillation_loss(s, t, y, {.temperature = 0.0}), ValueError);
  EXPECT_THROW(nn::functional::distillation_loss(s, t, y, {.alpha = 1.5}), ValueError);
  // Equal logits: the soft term is 0 and the loss is (1 - alpha) * cross entropy = 0.1 * log 3.
  EXPECT_NEAR(nn::functional::distillation_loss(s, t, y).item(), 0.1 * std::log(3.0), 1e-6);
}
}  // namespace
}  // namespace ember::nn
