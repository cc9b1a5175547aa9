// Pruning by masks (Note [Pruning masks]) against torch.nn.utils.prune on the same weights
// (tests/data/torch_prune.safetensors from tools/make_torch_refs.py): the masks, their
// combination when pruning twice, the state-dict layout; the reparametrization in training
// (gradients reach weight_orig through the mask), remove(), and the errors that leave the module
// as it was.
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"
#include "support/reference_file.hpp"

namespace {

using namespace ember;
using ember::testing::expect_error;

struct Refs {
  std::map<std::string, Tensor<float>> tensors;
  std::map<std::string, std::string> metadata;
};

const Refs& refs() {
  static const Refs r = [] {
    Refs out;
    const io::SafetensorsFile f = io::read_safetensors(ember::testing::data_dir() + "/torch_prune.safetensors");
    for (const auto& e : f.tensors) out.tensors.emplace(e.name, Tensor<float>::from_base(e.tensor));
    out.metadata = f.metadata;
    return out;
  }();
  return r;
}

std::vector<float> ref(const std::string& name) { return refs().tensors.at(name).to_vector(); }

Tensor<float> own(nn::Module<float>& m, const std::string& name) {
  for (const auto& e : m.state_dict()) {
    if (e.name == name) return Tensor<float>::from_base(e.tensor);
  }
  return Tensor<float>();
}

std::string keys(const nn::Module<float>& m) {
  std::string s;
  for (const auto& e : m.state_dict()) s += (s.empty() ? "" : ",") + e.name;
  return s;
}

nn::Linear<float> linear_with(int64_t in, int64_t out, const std::string& weight) {
  nn::Linear<float> m(in, out);
  NoGradGuard no_grad;
  m.weight.copy_(refs().tensors.at(weight));
  return m;
}

TEST(PruneMasks, EqualPyTorchsAndCombineAsItsContainer) {
  nn::Linear<float> lin = linear_with(5, 6, "lin.weight");
  prune::l1_unstructured(lin, "weight", 0.3);
  EXPECT_EQ(own(lin, "weight_mask").to_vector(), ref("l1.mask"));
  EXPECT_EQ(keys(lin), refs().metadata.at("pruned_keys"));
  prune::l1_unstructured(lin, "weight", 0.5);  // half of the entries still unpruned
  EXPECT_EQ(own(lin, "weight_mask").to_vector(), ref("l1_twice.mask"));
  prune::ln_structured(lin, "weight", 1, 2.0, 0);  // a count, among rows with unpruned entries
  EXPECT_EQ(own(lin, "weight_mask").to_vector(), ref("l1_ln.mask"));
  // The module's weight is the masked one.
  EXPECT_EQ(lin.weight.to_vector(), (own(lin, "weight_orig") * own(lin, "weight_mask")).to_vector());
  prune::remove(lin, "weight");
  EXPECT_EQ(keys(lin), refs().metadata.at("removed_keys"));
  EXPECT_FALSE(prune::is_pruned(lin));
  EXPECT_TRUE(lin.weight.is_leaf());
  EXPECT_TRUE(lin.weight.requires_grad());
  EXPECT_EQ(lin.named_parameters()[1].first, "weight");

  nn::Conv2d<float> conv(3, 4, 3);
  {
    NoGradGuard no_grad;
    conv.weight.copy_(refs().tensors.at("conv.weight"));
  }
  prune::ln_structured(conv, "weight", 0.5, 1.0, 0);
  EXPECT_EQ(own(conv, "weight_mask").to_vector(), ref("ln1_dim0.mask"));
  prune::ln_structured(conv, "weight", 1, std::numeric_limits<double>::infinity(), 1);
  EXPECT_EQ(own(conv, "weight_mask").to_vector(), ref("ln_inf_dim1.mask"));

  nn::Linear<float> a = linear_with(4, 3, "a.weight"), b = linear_with(3, 2, "b.weight");
  prune::l1_unstructured(a, "weight", 2);
  prune::global_unstructured({{&a, "weight"}, {&b, "weight"}}, 0.4);
  EXPECT_EQ(own(a, "weight_mask").to_vector(), ref("global.a_mask"));
  EXPECT_EQ(own(b, "weight_mask").to_vector(), ref("global.b_mask"));
}

TEST(PruneMasks, TrainTheOriginalThroughTheMask) {
  manual_seed(4);
  nn::Sequential<float> net(nn::Linear(6, 8), nn::ReLU(), nn::Linear(8, 3));
  auto& first = dynamic_cast<nn::Linear<float>&>(net.submodule("0"));
  prune::l1_unstructured(first, "weight", 0.5);
  EXPECT_TRUE(prune::is_pruned(net));
  optim::SGD sgd(net.parameters(), {.lr = 0.5});  // made after pruning: it holds 0.weight_orig
  const Tensor<float> x = randn<float>({5, 6});
  const Tensor<int64_t> y = tensor<int64_t>({0, 1, 2, 1, 0}, {5});
  const Tensor<float> mask = own(first, "weight_mask");
  const std::vector<float> before = own(first, "weight_orig").to_vector();
  for (int step = 0; step < 3; ++step) {
    sgd.zero_grad();
    nn::functional::cross_entropy(net(x), y).backward();
    const std::vector<float> g = own(first, "weight_orig").grad().to_vector(), m = mask.to_vector();
    for (size_t i = 0; i < g.size(); ++i) {
      if (m[i] == 0.0f) {
        EXPECT_EQ(g[i], 0.0f) << i;  // pruned entries get no gradient
      }
    }
    sgd.step();
  }
  const std::vector<float> after = own(first, "weight_orig").to_vector(), m = mask.to_vector();
  bool moved = false;
  for (size_t i = 0; i < after.size(); ++i) {
    if (m[i] == 0.0f) {
      EXPECT_EQ(after[i], before[i]) << i;
    }
    moved = moved || (m[i] == 1.0f && after[i] != before[i]);
  }
  EXPECT_TRUE(moved);
  // The forward used the masked weights: zero wherever the mask is.
  const std::vector<float> w = first.weight.to_vector();
  for (size_t i = 0; i < w.size(); ++i) {
    if (m[i] == 0.0f) {
      EXPECT_EQ(w[i], 0.0f) << i;
    }
  }
  // A pruned state dict loads into a module pruned the same way.
  nn::Sequential<float> twin(nn::Linear(6, 8), nn::ReLU(), nn::Linear(8, 3));
  prune::random_unstructured(dynamic_cast<nn::Linear<float>&>(twin.submodule("0")), "weight", 0.5);
  twin.load_state_dict(net.state_dict());
  NoGradGuard no_grad;
  EXPECT_EQ(twin(x).to_vector(), net(x).to_vector());
}

TEST(PruneMasks, AnOptimizerMadeBeforePruningSaysSo) {
  nn::Linear<float> lin(3, 2);
  optim::Adam adam(lin.parameters(), {.lr = 0.1});
  prune::l1_unstructured(lin, "weight", 0.5);
  nn::functional::mse_loss(lin(ones<float>({1, 3})), zeros<float>({1, 2})).backward();
  expect_error<ValueError>([&] { adam.step(); }, "make the optimizer after pruning");
}

TEST(PruneMasks, RefuseAndLeaveTheModuleAsItWas) {
  nn::Linear<float> lin(4, 3);
  const std::string before = keys(lin);
  expect_error<ValueError>([&] { prune::l1_unstructured(lin, "weights", 0.5); }, "Linear has no parameter 'weights' (its parameters: weight, bias)");
  expect_error<ValueError>([&] { prune::l1_unstructured(lin, "weight", 1.5); }, "amount=1.5");
  expect_error<ValueError>([&] { prune::l1_unstructured(lin, "weight", 13); }, "should be smaller than the number of parameters to prune=12");
  expect_error<ValueError>([&] { prune::l1_unstructured(lin, "weight", -1); }, "negative");
  expect_error<ValueError>([&] { prune::ln_structured(lin, "weight", 0.5, 2.0, 2); }, "dim 2 is out of range");
  expect_error<ValueError>([&] { prune::ln_structured(lin, "weight", 0.5, 0.5, 0); }, "n=0.5");
  expect_error<ShapeError>([&] { prune::custom_from_mask(lin, "weight", ones<float>({3, 3})); }, "a mask of shape [3, 3]");
  expect_error<ValueError>([&] { prune::custom_from_mask(lin, "weight", full<float>({3, 4}, 0.5)); }, "zeros and ones");
  expect_error<ValueError>([&] { prune::remove(lin, "weight"); }, "is not pruned");
  nn::Linear<float> other(2, 2);
  expect_error<ValueError>([&] { prune::global_unstructured({{&lin, "weight"}, {&other, "nope"}}, 0.5); }, "no parameter 'nope'");
  EXPECT_EQ(keys(lin), before);
  EXPECT_FALSE(prune::is_pruned(lin));
  // A count of more than the entries left unpruned, the second time.
  prune::l1_unstructured(lin, "weight", 10);
  expect_error<ValueError>([&] { prune::l1_unstructured(lin, "weight", 3); }, "number of parameters to prune=2");
  EXPECT_EQ(own(lin, "weight_mask").sum().item(), 2.0f);
}

}  // namespace
