// prune::sparsify (Linear layers past the break-even sparsity become SparseLinear, computing the
// same; errors leave the model as it was) and the sparse file format (Note [Sparse files]): the
// round trip, its size, and a file broken in each way it can be.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"

namespace {

using namespace ember;
using ember::testing::expect_error;
namespace fs = std::filesystem;

std::shared_ptr<nn::Sequential<float>> make_net() {
  manual_seed(3);
  return std::make_shared<nn::Sequential<float>>(nn::Linear(30, 40), nn::ReLU(), nn::Linear(40, 20),
                                                 nn::ReLU(), nn::Linear(20, 5));
}

// 90% of the first two layers' weights pruned and made permanent.
void prune_90(nn::Sequential<float>& net) {
  for (const char* path : {"0", "2"}) {
    auto& lin = dynamic_cast<nn::Linear<float>&>(net.submodule(path));
    prune::l1_unstructured(lin, "weight", 0.9);
    prune::remove(lin, "weight");
  }
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("ember_test_sparse_" + name)).string();
}

TEST(Sparsify, SwapsTheSparseLinearLayersAndComputesTheSame) {
  auto net = make_net();
  prune_90(*net);
  net->eval();
  const Tensor<float> x = randn<float>({7, 30});
  const Tensor<float> before = (*net)(x);
  const prune::SparsifyReport report = prune::sparsify(*net);
  ASSERT_EQ(report.layers.size(), 2u);  // the last layer keeps its weights
  EXPECT_EQ(report.layers[0].path, "0");
  EXPECT_EQ(report.layers[0].weights, 1200);
  EXPECT_EQ(report.layers[0].nonzeros, 120);
  EXPECT_NE(report.str().find("0: SparseLinear with 120 of 1200 weights (90.0% zeros)"),
            std::string::npos)
      << report.str();
  EXPECT_EQ(net->submodule("0").type_name(), "SparseLinear");
  EXPECT_EQ(net->submodule("4").type_name(), "Linear");
  EXPECT_LT((before - (*net)(x)).abs().max().item(), 1e-5f);
  EXPECT_LT((before.narrow(0, 2, 1) - (*net)(x.narrow(0, 2, 1))).abs().max().item(), 1e-5f);
}

TEST(Sparsify, InferencePlansNameTheSparseLayer) {
  auto net = make_net();
  prune_90(*net);
  net->eval();
  const deploy::Plan dense_plan = deploy::compile(*net, {1, 30});  // compiled before: dense layers
  EXPECT_GT(dense_plan.arena_bytes(), 0u);
  prune::sparsify(*net);
  try {
    (void)deploy::compile(*net, {1, 30});
    FAIL() << "a SparseLinear compiled";
  } catch (const Error& e) {
    EXPECT_EQ(e.module_path(), "0");
    EXPECT_NE(std::string(e.what()).find("sparse_linear (nn::SparseLinear)"), std::string::npos) << e.what();
  }
}

TEST(Sparsify, RefusesWithoutChangingTheModel) {
  auto net = make_net();
  expect_error<ValueError>([&] { (void)prune::sparsify(*net, {.min_sparsity = 1.5}); },
                           "min_sparsity must be in [0, 1]");
  expect_error<ValueError>([&] { (void)prune::sparsify(*net, {.layers = {"1"}}); },
                           "layer '1' is not a Linear");
  // The second layer is still pruned by a mask: nothing is swapped, the first layer included.
  prune::l1_unstructured(dynamic_cast<nn::Linear<float>&>(net->submodule("0")), "weight", 0.9);
  prune::remove(dynamic_cast<nn::Linear<float>&>(net->submodule("0")), "weight");
  prune::l1_unstructured(dynamic_cast<nn::Linear<float>&>(net->submodule("2")), "weight", 0.9);
  expect_error<ValueError>([&] { (void)prune::sparsify(*net); }, "Linear '2' is pruned by a mask");
  EXPECT_EQ(net->submodule("0").type_name(), "Linear");
  // A Linear that is a member of its parent cannot become a SparseLinear.
  struct Head : nn::Module<float> {
    Head() { fc = register_module("fc", nn::Linear(4, 3)); }
    Tensor<float> forward(const Tensor<float>& x) override { return fc(x); }
    std::string type_name() const override { return "Head"; }
    nn::ModuleHolder<nn::Linear<float>> fc;
  } head;
  {
    NoGradGuard no_grad;
    head.fc->weight.zero_();
  }
  expect_error<ValueError>([&] { (void)prune::sparsify(head); },
                           "Linear 'fc' is held by a ModuleHolder<Linear> member");
}

TEST(SparseFile, RoundTripsSmallerThanTheDenseFile) {
  auto net = make_net();
  prune_90(*net);
  const std::string sparse_file = temp_path("net.safetensors"),
                    dense_file = temp_path("dense.safetensors");
  prune::save_sparse(*net, sparse_file);
  save(*net, dense_file);
  // 1,200 + 800 weights at 90% zeros stored by bit mask and values; the rest dense.
  EXPECT_LT(fs::file_size(sparse_file) * 3, fs::file_size(dense_file));
  const io::SafetensorsFile f = io::read_safetensors(sparse_file);
  EXPECT_EQ(f.metadata.at("format"), "ember.sparse");
  EXPECT_EQ(f.metadata.at("shape:0.weight"), "40,30");
  auto twin = make_net();
  EXPECT_TRUE(prune::load_sparse(*twin, sparse_file).complete());
  std::map<std::string, std::vector<float>> loaded;  // by name: prune::remove re-registers weights last
  for (const auto& [name, p] : twin->named_parameters()) loaded[name] = p.to_vector();
  for (const auto& [name, p] : net->named_parameters()) EXPECT_EQ(p.to_vector(), loaded.at(name)) << name;
  // A plain file loads too; a sparse file of another model does not.
  EXPECT_TRUE(prune::load_sparse(*twin, dense_file).complete());
  nn::Sequential<float> other(nn::Linear(30, 41));
  expect_error<Error>([&] { (void)prune::load_sparse(other, sparse_file); },
                     "0.weight (expected [41, 30] float32, got [40, 30]");
  fs::remove(sparse_file);
  fs::remove(dense_file);
}

TEST(SparseFile, BrokenFilesAreRefusedBeforeAnythingLoads) {
  auto net = make_net();
  prune_90(*net);
  const std::string good = temp_path("good.safetensors");
  prune::save_sparse(*net, good);
  const io::SafetensorsFile f = io::read_safetensors(good);
  auto write_changed = [&](auto change) {
    nn::StateDict tensors = f.tensors;
    std::map<std::string, std::string> metadata = f.metadata;
    change(tensors, metadata);
    const std::string path = temp_path("broken.safetensors");
    io::write_safetensors(path, tensors, metadata);
    return path;
  };
  auto find = [](nn::StateDict& t, const std::string& name) -> TensorBase& {
    for (auto& e : t)
      if (e.name == name) return e.tensor;
    throw std::runtime_error("no " + name);
  };
  auto twin = make_net();
  const std::vector<float> first_weights = twin->named_parameters()[0].second.to_vector();
  auto expect_refused = [&](const std::string& path, const std::string& text) {
    expect_error<FormatError>([&] { (void)prune::load_sparse(*twin, path); }, text);
    EXPECT_EQ(twin->named_parameters()[0].second.to_vector(), first_weights);  // nothing loaded
  };
  expect_refused(write_changed([](auto&, auto& m) { m.erase("shape:2.weight"); }),
                 "tensor '2.weight:mask': no metadata entry 'shape:2.weight'");
  expect_refused(write_changed([](auto&, auto& m) { m["shape:2.weight"] = "20,x"; }),
                 "is not a list of sizes");
  expect_refused(write_changed([](auto&, auto& m) { m["shape:2.weight"] = "20,41"; }),
                 "tensor '2.weight:mask': a mask for 820 elements holds 103 bytes");
  expect_refused(write_changed([&](auto& t, auto&) {
                   Tensor<float> v = Tensor<float>::from_base(find(t, "2.weight:values"));
                   find(t, "2.weight:values") = v.narrow(0, 0, v.numel() - 1).contiguous();
                 }),
                 "tensor '2.weight:values': the mask has 80 bits set, so 80 values");
  expect_refused(write_changed([&](auto& t, auto&) {
                   std::erase_if(
                       t, [](const nn::NamedTensor& e) { return e.name == "2.weight:values"; });
                 }),
                 "a mask without values '2.weight:values'");
  expect_refused(write_changed([&](auto& t, auto&) {
                   std::erase_if(
                       t, [](const nn::NamedTensor& e) { return e.name == "0.weight:mask"; });
                 }),
                 "values without a mask '0.weight:mask'");
  expect_refused(
      write_changed([&](auto& t, auto& m) {
        m["shape:2.weight"] = "793";  // 100 mask bytes, the last with 7 bits past the end
        Tensor<uint8_t> mask = Tensor<uint8_t>::from_base(find(t, "2.weight:mask")).clone();
        mask.data_ptr()[99] = 0xFF;
        find(t, "2.weight:mask") = mask;
      }),
      "tensor '2.weight:mask': bits past element 793 are set");
  fs::remove(good);
  fs::remove(temp_path("broken.safetensors"));
}

}  // namespace
