// The Environment's life in one process (no mpirun: MPI starts as a group of one): calls before
// it, during it, after it, and a second Environment.
#include <gtest/gtest.h>

#include "ember/distributed.hpp"
#include "ember/ember.hpp"
#include "support/expect_error.hpp"

namespace ember {
namespace {

using distributed::DistributedError;
using testing::expect_error;

TEST(Environment, CallsOutsideItThrowAndASecondOneIsRefused) {
  EXPECT_FALSE(distributed::is_initialized());
  expect_error<DistributedError>([] { distributed::all_reduce(ones<float>(Shape{2})); },
                                 "all_reduce: no ember::distributed::Environment is running (create one at the top of main)");
  expect_error<DistributedError>([] { (void)distributed::rank(); }, "rank: no ember::distributed::Environment");
  expect_error<ValueError>([] { data::DistributedSampler s(10, {}); }, "no ember::distributed::Environment is running");
  data::DistributedSampler explicit_ranks(10, {.shuffle = false, .num_replicas = 3, .rank = 2});
  EXPECT_EQ(explicit_ranks.indices(), (std::vector<int64_t>{2, 5, 8, 1}));  // padded from the start
  {
    distributed::Environment env;
    EXPECT_TRUE(distributed::is_initialized());
    EXPECT_EQ(distributed::world_size(), 1);
    EXPECT_EQ(distributed::rank(), 0);
    Tensor<float> t = full<float>(Shape{3}, 2.0f);
    distributed::all_reduce(t, distributed::ReduceOp::Avg);
    EXPECT_EQ(t.to_vector()[0], 2.0f);
    EXPECT_EQ(distributed::all_gather(t).shape(), (Shape{1, 3}));
    data::DistributedSampler s(10, {.shuffle = false});
    EXPECT_EQ(s.num_samples(), 10);
    // A one-rank DDP step gives the plain gradients.
    nn::Linear<double> lin(3, 2);
    distributed::DistributedDataParallel ddp(lin);
    ddp(ones<double>(Shape{4, 3})).sum().backward();
    EXPECT_EQ(lin.bias.grad().to_vector(), (std::vector<double>{4.0, 4.0}));
    expect_error<DistributedError>([] { distributed::Environment again; }, "one per process");
    EXPECT_EQ(distributed::timeout().count(), 1800.0);  // PyTorch's default
    distributed::set_timeout(std::chrono::seconds(90));
    EXPECT_EQ(distributed::timeout().count(), 90.0);
    expect_error<ValueError>([] { distributed::set_timeout(std::chrono::seconds(0)); }, "must be positive");
    distributed::set_timeout(std::chrono::minutes(30));
  }
  EXPECT_FALSE(distributed::is_initialized());
  expect_error<DistributedError>([] { distributed::barrier(); }, "barrier: no ember::distributed::Environment is running (it has ended)");
  expect_error<DistributedError>([] { distributed::Environment again; }, "MPI cannot be initialised again");
}

}  // namespace
}  // namespace ember
