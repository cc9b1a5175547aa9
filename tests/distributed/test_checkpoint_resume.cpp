// Checkpoints of a data-parallel run: `--save PATH` trains 5 of 10 steps, rank 0 writes the
// checkpoint, then trains on; `--resume PATH` (run by ctest with another number of ranks) starts
// from different weights, restores the checkpoint and trains the last 5 steps. Both must end where
// one process training on the whole batch for 10 steps ends (double, 1e-10 relative).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "ember/distributed.hpp"
#include "ember/ember.hpp"
#include "support/expect_error.hpp"

namespace ember {
namespace {

namespace F = nn::functional;
std::string g_mode, g_path;
constexpr int kSteps = 10, kSaveAt = 5;
constexpr int64_t kBatch = 8;

std::unique_ptr<nn::Sequential<double>> make_model(uint64_t seed) {
  manual_seed(seed);
  return std::make_unique<nn::Sequential<double>>(nn::Linear<double>(6, 16), nn::Tanh<double>(),
                                                  nn::Linear<double>(16, 3));
}

void step(const std::function<Tensor<double>(const Tensor<double>&)>& forward, optim::Adam<double>& opt, int s,
          bool whole_batch) {
  Generator gen(500 + static_cast<uint64_t>(s));
  Tensor<double> x = randn<double>(Shape{kBatch, 6}, &gen);
  Tensor<int64_t> y = randint<int64_t>(0, 3, Shape{kBatch}, &gen);
  if (!whole_batch) {
    const int64_t local = kBatch / distributed::world_size();
    x = x.narrow(0, distributed::rank() * local, local);
    y = y.narrow(0, distributed::rank() * local, local);
  }
  opt.zero_grad();
  F::cross_entropy(forward(x), y).backward();
  opt.step();
}

double max_relative_difference(nn::Module<double>& a, nn::Module<double>& b) {
  double worst = 0;
  const auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto va = pa[i].to_vector(), vb = pb[i].to_vector();
    double scale = 1e-30, diff = 0;
    for (size_t k = 0; k < va.size(); ++k) {
      scale = std::max(scale, std::abs(vb[k]));
      diff = std::max(diff, std::abs(va[k] - vb[k]));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

TEST(DistributedCheckpoint, ResumesOnAnyNumberOfRanks) {
  ASSERT_FALSE(g_path.empty()) << "run with --save PATH or --resume PATH";
  // One process, the whole batch, all 10 steps.
  auto reference = make_model(42);
  optim::Adam<double> ref_opt(reference->parameters(), {.lr = 1e-2});
  for (int s = 0; s < kSteps; ++s) step([&](const Tensor<double>& x) { return (*reference)(x); }, ref_opt, s, true);

  const bool resume = g_mode == "--resume";
  // Resumed runs start from other weights on every rank: the checkpoint must bring them back.
  auto model = make_model(resume ? 1000 + static_cast<uint64_t>(distributed::rank()) : 42);
  optim::Adam<double> opt(model->parameters(), {.lr = 1e-2});
  distributed::DistributedDataParallel ddp(*model);
  auto forward = [&](const Tensor<double>& x) { return ddp(x); };
  int first = 0;
  if (resume) {
    first = static_cast<int>(restore_checkpoint(distributed::load_checkpoint(g_path), *model, opt, nullptr));
    EXPECT_EQ(first, kSaveAt);
  }
  for (int s = first; s < kSteps; ++s) {
    step(forward, opt, s, false);
    if (!resume && s + 1 == kSaveAt) distributed::save_checkpoint(g_path, make_checkpoint(*model, opt, nullptr, kSaveAt));
  }
  EXPECT_LT(max_relative_difference(*model, *reference), 1e-10);
}

TEST(DistributedCheckpoint, EachRankResumesItsOwnGenerator) {
  const std::string path = g_path + ".rng";
  const int n = distributed::world_size(), r = distributed::rank();
  auto model = make_model(1);
  optim::Adam<double> opt(model->parameters());
  manual_seed(77);
  for (int i = 0; i <= r; ++i) (void)randn<float>(Shape{3});  // the ranks' generators part ways
  const Generator::State mine = default_generator().state();
  distributed::save_checkpoint(path, make_checkpoint(*model, opt, nullptr, 0));
  (void)randn<float>(Shape{5});
  const Checkpoint c = distributed::load_checkpoint(path);
  EXPECT_EQ(c.extra.at("ember.distributed.ranks"), std::to_string(n));
  EXPECT_EQ(std::vector<uint64_t>(c.rng.s, c.rng.s + 4), std::vector<uint64_t>(mine.s, mine.s + 4));
  // The plain checkpoint loader sees rank 0's, as before.
  if (r == 0) {
    const Checkpoint plain = load_checkpoint(path);
    EXPECT_EQ(std::vector<uint64_t>(plain.rng.s, plain.rng.s + 4), std::vector<uint64_t>(mine.s, mine.s + 4));
  }
  distributed::barrier();
  if (r == 0) std::remove(path.c_str());
}

TEST(DistributedCheckpoint, FailuresStopEveryRankWithTheReason) {
  // Present on the last rank only (as a file on one machine's disk): every rank throws, naming
  // the ranks that could not read it.
  const bool has_it = distributed::rank() == distributed::world_size() - 1;
  const std::string file = g_path + (has_it ? ".present" : ".absent");
  if (has_it) {
    auto model = make_model(1);
    optim::Adam<double> opt(model->parameters());
    save_checkpoint(file, make_checkpoint(*model, opt, nullptr, 0));
  }
  if (distributed::world_size() > 1) {
    testing::expect_error<IOError>([&] { (void)distributed::load_checkpoint(file); },
                                   "could not be read on every rank: rank 0: ");
  } else {
    EXPECT_EQ(distributed::load_checkpoint(file).step, 0);
  }
  if (has_it) std::remove(file.c_str());
  // A directory that does not exist: rank 0's write fails, and every rank hears why.
  auto model = make_model(1);
  optim::Adam<double> opt(model->parameters());
  testing::expect_error<IOError>(
      [&] { distributed::save_checkpoint("/nonexistent-dir/ckpt.safetensors", make_checkpoint(*model, opt, nullptr, 0)); },
      "distributed::save_checkpoint: rank 0 could not write /nonexistent-dir/ckpt.safetensors: ");
}

}  // namespace
}  // namespace ember

int main(int argc, char** argv) {
  ember::distributed::Environment env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--save") == 0 || std::strcmp(argv[i], "--resume") == 0) {
      ember::g_mode = argv[i];
      ember::g_path = argv[i + 1];
    }
  }
  return RUN_ALL_TESTS();
}
