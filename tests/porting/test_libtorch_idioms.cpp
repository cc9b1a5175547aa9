// The spellings a LibTorch program uses, each working in ember as written there (or with the
// documented ember spelling): a port should be mechanical.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "ember/ember.hpp"

namespace ember {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("ember_porting_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(LibTorchIdioms, ItemWithAType) {
  Tensor<float> loss = scalar_tensor<float>(2.5f);
  EXPECT_EQ(loss.item<float>(), 2.5f);
  EXPECT_EQ(loss.item<double>(), 2.5);
  EXPECT_EQ(loss.item<int64_t>(), 2);
  EXPECT_THROW(scalar_tensor<float>(1e30f).item<int64_t>(), ValueError);
  EXPECT_THROW(ones<float>({2}).item<float>(), ValueError);
  EXPECT_EQ(arange<int64_t>(3, 4).item<int64_t>(), 3);
}

TEST(LibTorchIdioms, IntegerLabelsCompareAndReduce) {
  Tensor<int64_t> pred = tensor<int64_t>({1, 2, 3, 3}), target = tensor<int64_t>({1, 0, 3, 2});
  EXPECT_EQ(pred.eq(target).sum().item<int64_t>(), 2);  // LibTorch's accuracy line
  EXPECT_EQ(ember::ne(pred, target).to_vector(), (std::vector<uint8_t>{0, 1, 0, 1}));
  EXPECT_EQ(pred.gt(target).sum().item(), 2);
  EXPECT_EQ(pred.eq(3.0).to_vector(), (std::vector<uint8_t>{0, 0, 1, 1}));
  EXPECT_THROW(pred.eq(2.5), ValueError);  // not an int64 value: no silent rounding
  EXPECT_EQ(pred.max().item(), 3);
  EXPECT_EQ(target.min().item(), 0);
  EXPECT_EQ(pred.sum().item(), 9);
  EXPECT_EQ(tensor<int32_t>({-5, 7}).sum().item(), 2);
  EXPECT_EQ(pred.all().item(), 1);
  EXPECT_EQ(target.all().item(), 0);
  EXPECT_EQ(zeros<uint8_t>({3}).any().item(), 0);
  EXPECT_EQ(ones<float>({2}).all().item(), 1);
  EXPECT_TRUE(equal(pred, tensor<int64_t>({1, 2, 3, 3})));
  EXPECT_FALSE(equal(pred, target));
  EXPECT_FALSE(equal(pred, tensor<int64_t>({1, 2, 3})));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(equal(tensor<float>({nan}), tensor<float>({nan})));  // as torch.equal
  EXPECT_THROW(tensor<int64_t>({std::numeric_limits<int64_t>::max(), 1}).sum(), ValueError);
  EXPECT_THROW(zeros<int64_t>({0}).max(), ValueError);
  // Argmax of logits against labels, as a LibTorch evaluation loop writes it.
  Tensor<float> logits = tensor<float>({0.1f, 0.9f, 0.8f, 0.2f}, {2, 2});
  EXPECT_EQ(logits.argmax(1).eq(tensor<int64_t>({1, 1})).sum().item<int64_t>(), 1);
}

TEST(LibTorchIdioms, MemberForms) {
  manual_seed(9);
  Tensor<float> w = empty<float>({1000});
  w.uniform_(-2.0, 3.0);
  EXPECT_GE(w.min().item(), -2.0f);
  EXPECT_LT(w.max().item(), 3.0f);
  w.normal_(5.0, 0.5);
  EXPECT_NEAR(w.mean().item(), 5.0, 0.1);
  Tensor<float> leaf = zeros<float>({2}).requires_grad_(true);
  EXPECT_THROW(leaf.uniform_(), AutogradError);  // as LibTorch: under NoGradGuard only
  {
    NoGradGuard no_grad;
    leaf.normal_();
  }
  Tensor<float> x = tensor<float>({3, 4, 0, 5}, {2, 2});
  EXPECT_EQ(x.norm(2.0, 1).to_vector(), (std::vector<float>{5, 5}));
  EXPECT_EQ(x.masked_fill(x.eq(0.0), -1.0).to_vector(), (std::vector<float>{3, 4, -1, 5}));
}

TEST(LibTorchIdioms, IndexingWithSlicesAndTopk) {
  using namespace ember::indexing;
  Tensor<float> x = arange<float>(0, 12).reshape({3, 4});
  EXPECT_EQ(x[1].to_vector(), (std::vector<float>{4, 5, 6, 7}));
  EXPECT_EQ(x.index({Slice(), 0}).to_vector(), (std::vector<float>{0, 4, 8}));
  EXPECT_EQ(x.index({Slice(1, None), Slice(None, None, 2)}).to_vector(), (std::vector<float>{4, 6, 8, 10}));
  EXPECT_EQ(x.index({-1, Slice(-2, None)}).to_vector(), (std::vector<float>{10, 11}));
  EXPECT_THROW(x.index({0, 0, 0}), IndexError);
  x.index_put_({Slice(), 1}, 0.5f);
  x.index_put_({0}, tensor<float>({9, 9, 9, 9}));
  EXPECT_EQ(x.to_vector(), (std::vector<float>{9, 9, 9, 9, 4, 0.5f, 6, 7, 8, 0.5f, 10, 11}));
  // topk: descending values, ties to the lower index, NaN the largest; values are differentiable.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor<float> v = tensor<float>({1, 5, 3, 5, nan, 2}, {2, 3}).requires_grad_(true);
  auto [values, indices] = v.topk(2, 1);
  EXPECT_EQ(indices.to_vector(), (std::vector<int64_t>{1, 2, 1, 0}));
  EXPECT_EQ(values.detach().narrow(0, 0, 1).to_vector(), (std::vector<float>{5, 3}));
  EXPECT_TRUE(std::isnan(values.to_vector()[2]));
  auto smallest = ember::topk(v.detach(), 1, 1, /*largest=*/false);
  EXPECT_EQ(smallest.indices.to_vector(), (std::vector<int64_t>{0, 2}));
  values.narrow(0, 0, 1).sum().backward();
  EXPECT_EQ(v.grad().to_vector(), (std::vector<float>{0, 1, 1, 0, 0, 0}));
  EXPECT_EQ(ember::topk(arange<float>(0, 5), 3).indices.to_vector(), (std::vector<int64_t>{4, 3, 2}));
  EXPECT_THROW(v.topk(4, 1), ValueError);
}

TEST(LibTorchIdioms, PositionalLearningRates) {
  nn::Linear<float> net(2, 2);
  optim::SGD sgd(net.parameters(), 0.1);
  optim::Adam adam(net.parameters(), 0.01);
  optim::AdamW adamw(net.parameters(), 0.02);
  optim::RMSprop rms(net.parameters(), 0.03);
  optim::Adagrad ada(net.parameters(), 0.04);
  EXPECT_EQ(sgd.lr(0), 0.1);
  EXPECT_EQ(adam.lr(0), 0.01);
  EXPECT_EQ(adamw.lr(0), 0.02);
  EXPECT_EQ(adamw.param_groups()[0].options.weight_decay, 1e-2);  // AdamW's other defaults stay
  EXPECT_EQ(rms.lr(0), 0.03);
  EXPECT_EQ(ada.lr(0), 0.04);
}

TEST(LibTorchIdioms, CatAndStackOfABracedList) {
  Tensor<float> a = ones<float>({2, 1}), b = zeros<float>({2, 2});
  EXPECT_EQ(cat({a, b}, 1).shape(), Shape({2, 3}));
  EXPECT_EQ(stack({a, a}, 0).shape(), Shape({2, 2, 1}));
  EXPECT_EQ(cat({arange<int64_t>(0, 2), arange<int64_t>(5, 6)}).to_vector(), (std::vector<int64_t>{0, 1, 5}));
}

TEST(LibTorchIdioms, ContainersIterateApplyAndHoldFunctions) {
  manual_seed(3);
  nn::Sequential<float> seq(nn::Linear(4, 8), nn::Functional(ember::relu<float>), nn::Linear(8, 2),
                            nn::Functional([](const Tensor<float>& x) { return x * 2.0; }, "Double"));
  std::vector<std::string> kinds;
  for (const auto& m : seq) kinds.push_back(m->type_name());
  EXPECT_EQ(kinds, (std::vector<std::string>{"Linear", "Functional", "Linear", "Double"}));
  EXPECT_EQ(seq(ones<float>({3, 4})).shape(), Shape({3, 2}));
  // apply visits every module, children first (PyTorch's order), e.g. to initialise weights.
  std::vector<std::string> visited;
  seq.apply([&](nn::Module<float>& m) {
    visited.push_back(m.type_name());
    if (auto* lin = dynamic_cast<nn::Linear<float>*>(&m)) nn::init::constant_(lin->weight, 0.5);
  });
  EXPECT_EQ(visited.back(), "Sequential");
  EXPECT_EQ(visited.size(), 5u);
  for (const auto& [name, p] : seq.named_parameters()) {
    if (name.find("weight") != std::string::npos) {
      EXPECT_EQ(p.to_vector()[0], 0.5f) << name;
    }
  }
  nn::ModuleList<float> list(nn::Linear(2, 2), nn::ReLU());
  int count = 0;
  for (const auto& m : list) count += m ? 1 : 0;
  EXPECT_EQ(count, 2);
  nn::ModuleDict<float> dict;
  auto enc = dict.insert("encoder", nn::Linear(3, 4));
  dict.insert("head", nn::Linear(4, 1));
  EXPECT_EQ(dict.keys(), (std::vector<std::string>{"encoder", "head"}));
  EXPECT_TRUE(dict.contains("head"));
  EXPECT_EQ(dict["encoder"].get(), enc.get());
  EXPECT_THROW(dict["decoder"], IndexError);
  EXPECT_EQ(dict.state_dict()[0].name, "encoder.weight");
}

TEST(LibTorchIdioms, TopLevelFunctionalForms) {
  Tensor<float> logits = zeros<float>({2, 3});
  Tensor<int64_t> target = tensor<int64_t>({0, 2});
  EXPECT_NEAR(ember::nll_loss(log_softmax(logits, 1), target).item(), std::log(3.0), 1e-6);
  EXPECT_NEAR(ember::cross_entropy(logits, target).item(), std::log(3.0), 1e-6);
  EXPECT_EQ(ember::dropout(ones<float>({4}), 0.5, /*training=*/false).to_vector(), std::vector<float>(4, 1.0f));
  EXPECT_EQ(ember::max_pool2d(ones<float>({1, 1, 4, 4}), 2).shape(), Shape({1, 1, 2, 2}));
  EXPECT_NEAR(ember::binary_cross_entropy(full<float>({2}, 0.5f), ones<float>({2})).item(), std::log(2.0), 1e-6);
}

TEST(LibTorchIdioms, RangeForOverADataLoaderRunsOneEpoch) {
  auto ds = std::make_shared<data::TensorDataset<float, int64_t>>(zeros<float>({10, 2}), arange<int64_t>(0, 10));
  data::DataLoader<float, int64_t> loader(ds, {.batch_size = 4, .shuffle = true, .seed = 1});
  std::vector<std::vector<int64_t>> epochs;
  for (int e = 0; e < 2; ++e) {
    std::vector<int64_t> seen;
    for (auto& batch : loader) {
      for (int64_t v : batch.target.to_vector()) seen.push_back(v);
    }
    EXPECT_EQ(seen.size(), 10u);
    epochs.push_back(seen);
  }
  EXPECT_NE(epochs[0], epochs[1]);  // epoch 0, then epoch 1
  loader.start_epoch(0);            // the same order as the first range-for
  std::vector<int64_t> again;
  while (auto b = loader.next())
    for (int64_t v : b->target.to_vector()) again.push_back(v);
  EXPECT_EQ(again, epochs[0]);
}

TEST(LibTorchIdioms, SamplersPlugIntoTheDataLoader) {
  auto ds = std::make_shared<data::TensorDataset<float, int64_t>>(zeros<float>({10, 1}), arange<int64_t>(0, 10));
  auto labels = [&](std::shared_ptr<const data::Sampler> sampler, int64_t epoch, bool drop_last = false) {
    data::DataLoader<float, int64_t> loader(ds, {.batch_size = 3, .drop_last = drop_last, .sampler = sampler});
    loader.start_epoch(epoch);
    std::vector<int64_t> out;
    while (auto b = loader.next())
      for (int64_t v : b->target.to_vector()) out.push_back(v);
    return out;
  };
  EXPECT_EQ(labels(std::make_shared<data::SequentialSampler>(), 0), arange<int64_t>(0, 10).to_vector());
  auto random = std::make_shared<data::RandomSampler>(7);
  EXPECT_EQ(labels(random, 1), labels(random, 1));  // depends on (seed, epoch) only
  EXPECT_NE(labels(random, 1), labels(random, 2));
  // Three ranks: 4 samples each (10 padded to 12 by repeating the start), together every sample,
  // each epoch shuffled the same way on every rank.
  std::vector<int64_t> all;
  for (int64_t rank = 0; rank < 3; ++rank) {
    auto part = labels(std::make_shared<data::DistributedSampler>(10, 3, rank, true, 5), 4);
    EXPECT_EQ(part.size(), 4u);
    all.insert(all.end(), part.begin(), part.end());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  EXPECT_EQ(all, arange<int64_t>(0, 10).to_vector());
  auto trimmed = std::make_shared<data::DistributedSampler>(10, 3, 2, false, 0, /*drop_last=*/true);
  EXPECT_EQ(trimmed->indices(10, 0), (std::vector<int64_t>{2, 5, 8}));
  EXPECT_EQ(trimmed->indices(), (std::vector<int64_t>{2, 5, 8}));
  EXPECT_THROW(data::DistributedSampler(10, 2, 2), ValueError);
}

// A data set whose sampler returns an index past the end.
class BadSampler : public data::Sampler {
 public:
  int64_t num_samples(int64_t) const override { return 1; }
  std::vector<int64_t> indices(int64_t n, int64_t) const override { return {n}; }
};

TEST(LibTorchIdioms, MnistDatasetGivesImagesWithAChannel) {
  const std::string dir = temp_path("mnist");
  fs::create_directories(dir);
  auto idx = [](uint8_t ndim, std::vector<uint32_t> dims, size_t n) {
    std::vector<uint8_t> b{0, 0, 8, ndim};
    for (uint32_t d : dims)
      for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
    for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(i % 10));
    return b;
  };
  io::write_file_atomically(dir + "/train-images-idx3-ubyte", idx(3, {4, 28, 28}, 4 * 28 * 28));
  io::write_file_atomically(dir + "/train-labels-idx1-ubyte", idx(1, {4}, 4));
  auto mnist = std::make_shared<data::MNIST>(dir, true);
  EXPECT_EQ(mnist->size(), 4);
  data::DataLoader<float, int64_t> loader(mnist, {.batch_size = 2});
  for (auto& batch : loader) {
    EXPECT_EQ(batch.data.shape(), Shape({2, 1, 28, 28}));
    EXPECT_LE(batch.data.max().item(), 1.0f);
  }
  data::DataLoader<float, int64_t> bad(mnist, {.sampler = std::make_shared<BadSampler>()});
  EXPECT_THROW(bad.start_epoch(0), IndexError);
  fs::remove_all(dir);
}

TEST(LibTorchIdioms, SaveAndLoadThroughPointersAndOptimizersOnTheirOwn) {
  manual_seed(5);
  auto net = std::make_shared<nn::Linear<float>>(3, 2);
  save(net, temp_path("net.safetensors"));
  auto copy = std::make_shared<nn::Linear<float>>(3, 2);
  load(copy, temp_path("net.safetensors"));
  EXPECT_EQ(copy->weight.to_vector(), net->weight.to_vector());
  nn::Linear<double> in_double(3, 2);  // from bytes, converted to the module's type
  load(in_double, io::read_file(temp_path("net.safetensors")), "in memory");
  EXPECT_EQ(in_double.weight.to<float>().to_vector(), net->weight.to_vector());
  optim::Adam adam(net->parameters(), 0.01);
  adam.zero_grad();
  (*net)(ones<float>({1, 3})).sum().backward();
  adam.step();
  save(adam, temp_path("adam.ckpt"));
  optim::Adam restored(net->parameters(), 0.5);
  load(restored, temp_path("adam.ckpt"));
  EXPECT_EQ(restored.lr(0), 0.01);
  const auto a = adam.state_dict(), b = restored.state_dict();
  EXPECT_EQ(Tensor<float>::from_base(b.params[0].tensors.at("exp_avg")).to_vector(),
            Tensor<float>::from_base(a.params[0].tensors.at("exp_avg")).to_vector());
  optim::SGD sgd(net->parameters(), 0.1);
  EXPECT_THROW(load(sgd, temp_path("adam.ckpt")), ValueError);  // another optimizer's state
  fs::remove(temp_path("net.safetensors"));
  fs::remove(temp_path("adam.ckpt"));
}

}  // namespace
}  // namespace ember
