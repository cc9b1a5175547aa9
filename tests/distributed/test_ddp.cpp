// DistributedDataParallel and SyncBatchNorm, run by ctest under mpirun with 2 and 4 ranks.
//
// Every rank trains the data-parallel model on its share of each batch and, alongside it, a plain
// copy of the model on the whole batch (the single process the run must equal). In double the
// two agree to 1e-10 relative after 100 steps; only summation order separates them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "ember/distributed.hpp"
#include "ember/ember.hpp"
#include "support/expect_error.hpp"

namespace ember {
namespace {

using distributed::DistributedDataParallel;
using distributed::DistributedError;
using testing::expect_error;
namespace F = nn::functional;

int rank() { return distributed::rank(); }
int size() { return distributed::world_size(); }

template <FloatingElement T>
std::unique_ptr<nn::Sequential<T>> make_mlp() {
  return std::make_unique<nn::Sequential<T>>(nn::Linear<T>(12, 16), nn::Tanh<T>(), nn::Linear<T>(16, 8),
                                             nn::ReLU<T>(), nn::Linear<T>(8, 3));
}

template <FloatingElement T>
std::unique_ptr<nn::Sequential<T>> make_cnn() {
  // No bias before batch norm: its gradient is zero but for rounding, which Adam would scale up to
  // full steps in either run.
  return std::make_unique<nn::Sequential<T>>(
      nn::Conv2d<T>(1, 4, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d<T>(4), nn::ReLU<T>(), nn::MaxPool2d<T>(2),
      nn::Conv2d<T>(4, 6, 3, {.bias = false}), nn::BatchNorm2d<T>(6), nn::ReLU<T>(), nn::Flatten<T>(), nn::Linear<T>(24, 3));
}

// The batch of step `step` (the same on every rank), and this rank's rows of it.
template <FloatingElement T>
struct Batch {
  Tensor<T> x, x_mine;
  Tensor<int64_t> y, y_mine;
};

template <FloatingElement T>
Batch<T> batch(int64_t step, const Shape& sample_shape, int64_t global_batch) {
  Generator gen(1000 + static_cast<uint64_t>(step));
  std::vector<int64_t> dims{global_batch};
  for (int64_t d : sample_shape) dims.push_back(d);
  Batch<T> b;
  b.x = randn<T>(Shape(dims), &gen);
  b.y = randint<int64_t>(0, 3, Shape{global_batch}, &gen);
  const int64_t local = global_batch / size();
  b.x_mine = b.x.narrow(0, rank() * local, local);
  b.y_mine = b.y.narrow(0, rank() * local, local);
  return b;
}

template <FloatingElement T>
double max_relative_difference(nn::Module<T>& a, nn::Module<T>& b) {
  const nn::StateDict sa = a.state_dict(), sb = b.state_dict();
  double worst = 0;
  for (size_t i = 0; i < sa.size(); ++i) {
    if (sa[i].tensor.dtype() != dtype_of<T>) continue;
    const std::vector<T> va = Tensor<T>::from_base(sa[i].tensor).to_vector();
    const std::vector<T> vb = Tensor<T>::from_base(sb[i].tensor).to_vector();
    double scale = 1e-30, diff = 0;
    for (size_t k = 0; k < va.size(); ++k) {
      scale = std::max(scale, std::abs(static_cast<double>(vb[k])));
      diff = std::max(diff, std::abs(static_cast<double>(va[k]) - static_cast<double>(vb[k])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

enum class Opt { SGD, Adam };

template <FloatingElement T>
std::unique_ptr<optim::OptimizerBase> make_optimizer(Opt which, nn::Module<T>& m) {
  if (which == Opt::SGD) return std::make_unique<optim::SGD<T>>(m.parameters(), optim::SGDOptions{.lr = 0.05, .momentum = 0.9});
  return std::make_unique<optim::Adam<T>>(m.parameters(), optim::AdamOptions{.lr = 1e-2});
}

// Trains the data-parallel model and the whole-batch reference side by side for `steps` steps and
// returns how far apart their weights and buffers end up.
template <FloatingElement T>
double train_side_by_side(bool cnn, Opt which, int steps, double bucket_cap_mb) {
  manual_seed(static_cast<uint64_t>(rank()) + 7);  // ranks start apart: DDP must broadcast rank 0's weights
  std::unique_ptr<nn::Sequential<T>> model = cnn ? make_cnn<T>() : make_mlp<T>();
  std::unique_ptr<nn::Sequential<T>> reference = cnn ? make_cnn<T>() : make_mlp<T>();
  if (cnn) {
    EXPECT_EQ(nn::convert_sync_batch_norm(*model), 2);
  }
  DistributedDataParallel<T> ddp(*model, {.bucket_cap_mb = bucket_cap_mb});
  reference->load_state_dict(model->state_dict());
  auto opt = make_optimizer(which, *model);
  auto ref_opt = make_optimizer(which, *reference);
  const Shape sample = cnn ? Shape{1, 8, 8} : Shape{12};
  for (int step = 0; step < steps; ++step) {
    Batch<T> b = batch<T>(step, sample, 8);
    opt->zero_grad();
    F::cross_entropy(ddp(b.x_mine), b.y_mine).backward();
    opt->step();
    ref_opt->zero_grad();
    F::cross_entropy((*reference)(b.x), b.y).backward();
    ref_opt->step();
  }
  return max_relative_difference(*model, *reference);
}

TEST(DistributedDataParallel, MlpInDoubleEqualsOneProcessWithTheWholeBatch) {
  EXPECT_LT(train_side_by_side<double>(false, Opt::SGD, 100, 0.0005), 1e-10);
  EXPECT_LT(train_side_by_side<double>(false, Opt::Adam, 100, 0.0005), 1e-10);
}

TEST(DistributedDataParallel, CnnWithSyncBatchNormInDoubleEqualsOneProcess) {
  EXPECT_LT(train_side_by_side<double>(true, Opt::SGD, 100, 0.0005), 1e-10);
  EXPECT_LT(train_side_by_side<double>(true, Opt::Adam, 100, 0.0005), 1e-10);
}

TEST(DistributedDataParallel, FloatRunsAgreeWithinSummationOrder) {
  EXPECT_LT(train_side_by_side<float>(false, Opt::SGD, 100, 25), 1e-3);
  EXPECT_LT(train_side_by_side<float>(true, Opt::Adam, 100, 25), 1e-3);
}

TEST(DistributedDataParallel, BucketsFollowReverseRegistrationOrderUpToTheCap) {
  manual_seed(1);
  auto model = make_mlp<float>();
  // Linear(12,16) weight 768 B, bias 64 B; Linear(16,8) 512 + 32; Linear(8,3) 96 + 12.
  DistributedDataParallel ddp(*model, {.bucket_cap_mb = 600.0 / (1024 * 1024)});
  const std::vector<std::vector<std::string>> expected{
      {"4.bias", "4.weight", "2.bias"}, {"2.weight", "0.bias"}, {"0.weight"}};
  EXPECT_EQ(ddp.bucket_names(), expected);
  EXPECT_EQ(ddp.last_step_stats().buckets, 3);
  DistributedDataParallel one(*model);
  EXPECT_EQ(one.bucket_names().size(), 1u);
}

TEST(DistributedDataParallel, NoSyncAccumulatesLocallyAndTheNextStepAveragesTheSum) {
  manual_seed(3);
  auto model = make_mlp<double>();
  DistributedDataParallel ddp(*model, {.bucket_cap_mb = 0.001});
  auto reference = make_mlp<double>();
  reference->load_state_dict(model->state_dict());
  Batch<double> first = batch<double>(0, Shape{12}, 8), second = batch<double>(1, Shape{12}, 8);
  {
    auto guard = ddp.no_sync();
    F::cross_entropy(ddp(first.x_mine), first.y_mine).backward();
  }
  // Before the synchronised step the gradients are this rank's own.
  auto local = make_mlp<double>();
  local->load_state_dict(model->state_dict());
  F::cross_entropy((*local)(first.x_mine), first.y_mine).backward();
  EXPECT_EQ(model->parameters()[0].grad().to_vector(), local->parameters()[0].grad().to_vector());

  F::cross_entropy(ddp(second.x_mine), second.y_mine).backward();
  (F::cross_entropy((*reference)(first.x), first.y) + F::cross_entropy((*reference)(second.x), second.y)).backward();
  const auto got = model->parameters(), want = reference->parameters();
  for (size_t i = 0; i < got.size(); ++i) {
    const auto g = got[i].grad().to_vector(), w = want[i].grad().to_vector();
    for (size_t k = 0; k < g.size(); ++k) EXPECT_NEAR(g[k], w[k], 1e-12);
  }
}

// A model whose second branch runs only when asked.
template <FloatingElement T>
class Branchy : public nn::Module<T> {
 public:
  Branchy() {
    a = this->register_module("a", nn::Linear<T>(4, 2));
    b = this->register_module("b", nn::Linear<T>(4, 2));
  }
  Tensor<T> forward(const Tensor<T>& x) override { return use_b ? a(x) + b(x) : a(x); }
  std::string type_name() const override { return "Branchy"; }
  nn::ModuleHolder<nn::Linear<T>> a, b;
  bool use_b = true;
};

TEST(DistributedDataParallel, UnusedParametersThrowOnEveryRankWithoutHanging) {
  Branchy<double> model;
  model.use_b = false;
  DistributedDataParallel ddp(model);
  Tensor<double> x = ones<double>(Shape{2, 4});
  expect_error<DistributedError>([&] { ddp(x).sum().backward(); },
                                 "these parameters got no gradient in this step: b.weight, b.bias");
  // The group is intact: a normal step works afterwards.
  model.use_b = true;
  model.zero_grad();
  ddp(x).sum().backward();
  EXPECT_TRUE(model.b->weight.grad().defined());
}

TEST(DistributedDataParallel, FindUnusedParametersAveragesZerosForThem) {
  Branchy<double> model;
  model.use_b = rank() == 0;  // b is used by rank 0 only
  DistributedDataParallel ddp(model, {.find_unused_parameters = true});
  Tensor<double> x = ones<double>(Shape{2, 4});
  ddp(x).sum().backward();
  // d(sum)/d(b.bias) is 2 (batch) on rank 0 and 0 elsewhere: averaged, 2 / size on every rank.
  for (double g : model.b->bias.grad().to_vector()) EXPECT_DOUBLE_EQ(g, 2.0 / size());
  for (double g : model.a->bias.grad().to_vector()) EXPECT_DOUBLE_EQ(g, 2.0);
}

TEST(DistributedDataParallel, ModelsThatDifferAcrossRanksAreReportedAtConstruction) {
  nn::Sequential<float> model(nn::Linear<float>(4, rank() == 1 ? 5 : 6), nn::Linear<float>(rank() == 1 ? 5 : 6, 2));
  expect_error<DistributedError>([&] { DistributedDataParallel ddp(model); },
                                 "rank 1's model differs from rank 0's at entry 0: rank 0 has parameter 0.weight [6, 4], "
                                 "rank 1 has parameter 0.weight [5, 4]");
  nn::Sequential<float> longer;
  longer.push_back(nn::Linear<float>(4, 4));
  if (rank() == 1) longer.push_back(nn::Linear<float>(4, 4));
  expect_error<DistributedError>([&] { DistributedDataParallel ddp(longer); }, "rank 1 has parameter 1.weight [4, 4]");
  expect_error<ValueError>([&] { DistributedDataParallel ddp(longer, {.bucket_cap_mb = 0}); }, "bucket_cap_mb");
}

TEST(DistributedDataParallel, ConstructionBroadcastsRankZerosWeightsAndBuffers) {
  manual_seed(static_cast<uint64_t>(rank()) + 100);
  auto model = make_cnn<float>();
  Tensor<float>::from_base(model->submodule("1").entry("running_mean")).fill_(static_cast<float>(rank()));
  DistributedDataParallel ddp(*model);
  for (const auto& [name, p] : model->named_parameters()) {
    Tensor<float> gathered = distributed::all_gather(p.detach());
    for (int q = 1; q < size(); ++q) {
      EXPECT_EQ(gathered.select(0, q).to_vector(), gathered.select(0, 0).to_vector()) << name;
    }
  }
  EXPECT_EQ(Tensor<float>::from_base(model->submodule("1").entry("running_mean")).to_vector()[0], 0.0f);
}

TEST(SyncBatchNorm, TrainingStatisticsAreThoseOfTheWholeBatch) {
  nn::SyncBatchNorm<double> sync(3);
  nn::BatchNorm2d<double> plain(3);
  EXPECT_EQ(sync.type_name(), "SyncBatchNorm");
  Generator gen(5);
  Tensor<double> all = randn<double>(Shape{2 * size(), 3, 4, 4}, &gen) * 3.0 + 1.0;
  Tensor<double> mine = all.narrow(0, 2 * rank(), 2).contiguous().requires_grad_();
  Tensor<double> whole = all.clone().requires_grad_();
  Tensor<double> weights = randn<double>(Shape{2 * size(), 3, 4, 4}, &gen);
  Tensor<double> y = sync(mine);
  (y * weights.narrow(0, 2 * rank(), 2)).sum().backward();
  Tensor<double> y_ref = plain(whole);
  (y_ref * weights).sum().backward();
  const auto got = y.to_vector(), want = y_ref.narrow(0, 2 * rank(), 2).contiguous().to_vector();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
  const auto g = mine.grad().to_vector(), gw = whole.grad().narrow(0, 2 * rank(), 2).contiguous().to_vector();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], gw[i], 1e-12);
  // Parameter gradients are per-rank partial sums; summed over the ranks they are the whole one.
  Tensor<double> wg = sync.weight.grad().clone();
  distributed::all_reduce(wg);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(wg.to_vector()[i], plain.weight.grad().to_vector()[i], 1e-10);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(sync.running_mean.to_vector()[i], plain.running_mean.to_vector()[i], 1e-12);
    EXPECT_NEAR(sync.running_var.to_vector()[i], plain.running_var.to_vector()[i], 1e-12);
  }
  // Eval mode uses the running statistics, as BatchNorm does.
  sync.eval();
  plain.eval();
  const auto e = sync(mine.detach()).to_vector(), ew = plain(mine.detach()).to_vector();
  for (size_t i = 0; i < e.size(); ++i) EXPECT_NEAR(e[i], ew[i], 1e-12);
}

}  // namespace
}  // namespace ember
