// Collectives on tensors, run by ctest under mpirun with 2 and 4 ranks (tests/CMakeLists.txt).
// Every rank runs every test; a check that fails on one rank fails the run.
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "ember/distributed.hpp"
#include "ember/ember.hpp"
#include "support/expect_error.hpp"

namespace ember {
namespace {

using distributed::DistributedError;
using distributed::ReduceOp;
using testing::expect_error;

int rank() { return distributed::rank(); }
int size() { return distributed::world_size(); }

TEST(Environment, RanksAndSizes) {
  ASSERT_TRUE(distributed::is_initialized());
  EXPECT_GE(rank(), 0);
  EXPECT_LT(rank(), size());
  const char* expected = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (expected != nullptr) {
    EXPECT_EQ(size(), std::stoi(expected));
  }
  // mpirun starts every rank of these tests on this machine.
  EXPECT_EQ(distributed::local_world_size(), size());
  EXPECT_EQ(distributed::local_rank(), rank());
}

template <class T>
class AllReduceTyped : public ::testing::Test {};
using Elements = ::testing::Types<float, double, int64_t, int32_t, uint8_t, int8_t>;
TYPED_TEST_SUITE(AllReduceTyped, Elements);

TYPED_TEST(AllReduceTyped, SumMaxMinOfEveryElementType) {
  using T = TypeParam;
  const int r = rank(), n = size();
  // Element i of rank r holds (i + r) % 7: small enough for int8 sums over 4 ranks.
  auto make = [&] {
    std::vector<T> v(6);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>((static_cast<int>(i) + r) % 7);
    return tensor<T>(v, Shape{2, 3});
  };
  Tensor<T> sum = make(), max = make(), min = make();
  distributed::all_reduce(sum);
  distributed::all_reduce(max, ReduceOp::Max);
  distributed::all_reduce(min, ReduceOp::Min);
  for (int i = 0; i < 6; ++i) {
    int s = 0, hi = 0, lo = 7;
    for (int q = 0; q < n; ++q) {
      s += (i + q) % 7;
      hi = std::max(hi, (i + q) % 7);
      lo = std::min(lo, (i + q) % 7);
    }
    EXPECT_EQ(sum.to_vector()[static_cast<size_t>(i)], static_cast<T>(s));
    EXPECT_EQ(max.to_vector()[static_cast<size_t>(i)], static_cast<T>(hi));
    EXPECT_EQ(min.to_vector()[static_cast<size_t>(i)], static_cast<T>(lo));
  }
}

TEST(AllReduce, AverageOfFloatingTensors) {
  Tensor<double> t = full<double>(Shape{3}, static_cast<double>(rank()));
  distributed::all_reduce(t, ReduceOp::Avg);
  const double mean = (size() - 1) / 2.0;
  for (double v : t.to_vector()) EXPECT_DOUBLE_EQ(v, mean);
}

TEST(AllReduce, NonContiguousTensorIsWrittenThroughItsStrides) {
  Tensor<float> base = arange<float>(12).reshape({3, 4});
  Tensor<float> view = base.transpose(0, 1);  // [4, 3], not contiguous
  ASSERT_FALSE(view.is_contiguous());
  distributed::all_reduce(view);
  const std::vector<float> got = base.to_vector();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], static_cast<float>(i) * static_cast<float>(size()));
}

TEST(AllReduce, ParameterThatRequiresGradIsReducedInPlace) {
  Tensor<float> w = full<float>(Shape{2}, 1.0f, true);
  distributed::all_reduce(w);
  EXPECT_EQ(w.to_vector()[0], static_cast<float>(size()));
  EXPECT_TRUE(w.requires_grad());
}

TEST(Broadcast, FromEveryRoot) {
  for (int root = 0; root < size(); ++root) {
    Tensor<int64_t> t = full<int64_t>(Shape{5}, 100 * rank() + 7);
    distributed::broadcast(t, root);
    for (int64_t v : t.to_vector()) EXPECT_EQ(v, 100 * root + 7);
  }
}

TEST(AllGather, StacksEveryRanksTensor) {
  Tensor<float> mine = full<float>(Shape{2, 2}, static_cast<float>(rank()));
  Tensor<float> all = distributed::all_gather(mine);
  ASSERT_EQ(all.shape(), (Shape{size(), 2, 2}));
  for (int q = 0; q < size(); ++q) {
    for (float v : all.select(0, q).to_vector()) EXPECT_EQ(v, static_cast<float>(q));
  }
}

TEST(ReduceScatter, EachRankGetsItsRowsOfTheSum) {
  const int n = size();
  // Row j of every rank's input holds j + rank.
  Tensor<double> input = empty<double>(Shape{2 * n, 3});
  for (int j = 0; j < 2 * n; ++j) input.select(0, j).fill_(static_cast<double>(j + rank()));
  Tensor<double> out = distributed::reduce_scatter(input);
  ASSERT_EQ(out.shape(), (Shape{2, 3}));
  const double rank_sum = n * (n - 1) / 2.0;
  for (int j = 0; j < 2; ++j) {
    const int row = 2 * rank() + j;
    for (double v : out.select(0, j).to_vector()) EXPECT_DOUBLE_EQ(v, row * n + rank_sum);
  }
  Tensor<double> avg = distributed::reduce_scatter(input, ReduceOp::Avg);
  EXPECT_DOUBLE_EQ(avg.to_vector()[0], (2 * rank() * n + rank_sum) / n);
}

TEST(Async, SeveralCollectivesInFlightFinishInAnyWaitOrder) {
  std::vector<Tensor<float>> tensors;
  std::vector<distributed::Work> works;
  for (int i = 0; i < 4; ++i) {
    tensors.push_back(full<float>(Shape{1000}, static_cast<float>(i + rank())));
    works.push_back(distributed::all_reduce_async(tensors.back()));
  }
  for (int i = 3; i >= 0; --i) works[static_cast<size_t>(i)].wait();
  const float rank_sum = static_cast<float>(size() * (size() - 1) / 2);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(tensors[static_cast<size_t>(i)].to_vector()[999], static_cast<float>(i * size()) + rank_sum);
    EXPECT_TRUE(works[static_cast<size_t>(i)].is_completed());
  }
  distributed::barrier();
}

TEST(Async, WorkLeftUnwaitedFinishesInItsDestructor) {
  Tensor<int32_t> t = full<int32_t>(Shape{4}, 1);
  { distributed::Work w = distributed::broadcast_async(t, size() - 1); }
  EXPECT_EQ(t.to_vector()[0], 1);
  Tensor<int32_t> u = full<int32_t>(Shape{4}, rank());
  { distributed::Work w = distributed::all_reduce_async(u, ReduceOp::Max); }
  EXPECT_EQ(u.to_vector()[3], size() - 1);
}

TEST(Async, CollectivesQueuedAndAwaitedOnOtherThreads) {
  // A worker thread queues collectives; another thread waits for one queued by the main thread.
  Tensor<double> a = full<double>(Shape{64}, 1.0 + rank());
  Tensor<double> b = full<double>(Shape{64}, 2.0);
  std::thread worker([&] {
    distributed::all_reduce(a);
    distributed::all_reduce(a, ReduceOp::Max);
  });
  worker.join();
  distributed::Work w = distributed::all_reduce_async(b, ReduceOp::Avg);
  std::thread waiter([&] { w.wait(); });
  waiter.join();
  const double sum = size() + size() * (size() - 1) / 2.0;
  EXPECT_EQ(a.to_vector()[63], sum);
  EXPECT_EQ(b.to_vector()[0], 2.0);
}

// ---- Calls that differ across ranks: an error on every rank, never a hang ----------------------

TEST(BadCalls, ShapesThatDifferAcrossRanksAreNamed) {
  Tensor<float> t = zeros<float>(Shape{rank() == 1 ? 3 : 4});
  expect_error<DistributedError>([&] { distributed::all_reduce(t); }, "rank 1: float32 [3] Sum");
  expect_error<DistributedError>([&] { distributed::all_reduce(t); }, "rank 0: float32 [4] Sum");
  // The group still works afterwards.
  Tensor<float> ok = ones<float>(Shape{2});
  distributed::all_reduce(ok);
  EXPECT_EQ(ok.to_vector()[0], static_cast<float>(size()));
}

TEST(BadCalls, DtypesThatDifferAcrossRanks) {
  expect_error<DistributedError>(
      [&] {
        if (rank() == 0) {
          distributed::all_reduce(zeros<float>(Shape{2}));
        } else {
          distributed::all_reduce(zeros<double>(Shape{2}));
        }
      },
      "rank 1: float64 [2]");
}

TEST(BadCalls, DifferentCollectivesOrOpsAcrossRanks) {
  Tensor<float> t = zeros<float>(Shape{2});
  expect_error<DistributedError>(
      [&] {
        if (rank() == 0) {
          distributed::all_reduce(t, ReduceOp::Max);
        } else {
          distributed::all_reduce(t, ReduceOp::Sum);
        }
      },
      "rank 0: float32 [2] Max");
}

TEST(BadCalls, RootOutOfRange) {
  Tensor<float> t = zeros<float>(Shape{2});
  expect_error<DistributedError>([&] { distributed::broadcast(t, size()); }, "root " + std::to_string(size()) +
                                                                                 " is out of range for " +
                                                                                 std::to_string(size()) + " ranks");
  expect_error<DistributedError>([&] { distributed::broadcast(t, -1); }, "out of range");
}

TEST(BadCalls, WrongOutputOnOneRankStopsEveryRank) {
  Tensor<float> in = zeros<float>(Shape{2});
  Tensor<float> out = zeros<float>(rank() == 0 ? Shape{size(), 2} : Shape{size(), 3});
  if (size() > 1) {
    expect_error<DistributedError>([&] { distributed::all_gather_async(out, in).wait(); },
                                   "rank 1: error: the output is [" + std::to_string(size()) + ", 3], expected [" +
                                       std::to_string(size()) + ", 2]");
  }
  Tensor<float> odd = zeros<float>(Shape{2 * size() + 1});
  expect_error<DistributedError>([&] { distributed::reduce_scatter(odd); }, "no first dim divisible");
}

TEST(BadCalls, AverageOfIntegersAndUndefinedTensors) {
  expect_error<DistributedError>([&] { distributed::all_reduce(zeros<int64_t>(Shape{2}), ReduceOp::Avg); },
                                 "ReduceOp::Avg needs a floating-point tensor, got int64");
  expect_error<DistributedError>([&] { distributed::all_reduce(Tensor<float>()); }, "undefined");
}

// ---- Differentiable all-reduce -------------------------------------------------------------

TEST(Functional, AllReduceSumGradientIsTheSumOfTheRanksGradients) {
  Tensor<double> x = full<double>(Shape{3}, 1.0, true);
  // Rank r weighs the sum by (r + 1): d/dx = sum over ranks of (r + 1).
  Tensor<double> y = distributed::functional::all_reduce_sum(x * 2.0);
  EXPECT_DOUBLE_EQ(y.to_vector()[0], 2.0 * size());
  (y * static_cast<double>(rank() + 1)).sum().backward();
  const double expected = 2.0 * size() * (size() + 1) / 2.0;
  for (double g : x.grad().to_vector()) EXPECT_DOUBLE_EQ(g, expected);
}

// ---- DistributedSampler from the environment ------------------------------------------------

TEST(DistributedSampler, TakesRankAndWorldFromTheEnvironment) {
  data::DistributedSampler sampler(10, {.shuffle = true, .seed = 3});
  EXPECT_EQ(sampler.num_replicas(), size());
  EXPECT_EQ(sampler.rank(), rank());
  sampler.set_epoch(2);
  const std::vector<int64_t> mine = sampler.indices();
  const int64_t per_rank = (10 + size() - 1) / size();
  ASSERT_EQ(static_cast<int64_t>(mine.size()), per_rank);
  Tensor<int64_t> all = distributed::all_gather(tensor<int64_t>(mine, Shape{per_rank}));
  std::vector<int64_t> seen = all.to_vector();
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  EXPECT_EQ(seen.size(), 10u);  // every sample, padding aside
  // Another epoch, another order; the same epoch, the same order.
  sampler.set_epoch(3);
  EXPECT_NE(sampler.indices(), mine);
  sampler.set_epoch(2);
  EXPECT_EQ(sampler.indices(), mine);
}

}  // namespace
}  // namespace ember
