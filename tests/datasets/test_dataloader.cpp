// DataLoader: batches and their order depend only on the seed and the epoch (not on the worker
// count), worker exceptions reach the consumer naming the sample, and destruction mid-epoch joins
// the workers promptly. CI runs this file under ThreadSanitizer too.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "ember/ember.hpp"

namespace ember::data {
namespace {

std::shared_ptr<TensorDataset<float, int64_t>> numbers(int64_t n) {
  return std::make_shared<TensorDataset<float, int64_t>>(arange<float>(static_cast<double>(n)).reshape({n, 1}),
                                                         arange<int64_t>(static_cast<double>(n)));
}

// Labels of every batch of one epoch.
std::vector<std::vector<int64_t>> epoch_labels(DataLoader<float, int64_t>& loader, int64_t epoch) {
  std::vector<std::vector<int64_t>> out;
  loader.start_epoch(epoch);
  while (auto b = loader.next()) {
    out.push_back(b->target.to_vector());
    EXPECT_EQ(b->data.shape()[1], 1);
  }
  return out;
}

TEST(DataLoader, OrderDependsOnSeedAndEpochOnly) {
  auto ds = numbers(23);
  std::vector<std::vector<std::vector<int64_t>>> by_workers;
  for (int workers : {0, 1, 3}) {
    DataLoader<float, int64_t> loader(ds, {.batch_size = 5, .shuffle = true, .seed = 7, .num_workers = workers});
    EXPECT_EQ(loader.batches_per_epoch(), 5);
    auto e0 = epoch_labels(loader, 0);
    auto e1 = epoch_labels(loader, 1);
    EXPECT_NE(e0, e1);
    ASSERT_EQ(e0.size(), 5u);
    EXPECT_EQ(e0.back().size(), 3u);  // the last, partial batch
    std::vector<int64_t> all;
    for (auto& b : e0) all.insert(all.end(), b.begin(), b.end());
    std::sort(all.begin(), all.end());
    for (int64_t i = 0; i < 23; ++i) EXPECT_EQ(all[static_cast<size_t>(i)], i);
    by_workers.push_back(e0);
    by_workers.push_back(e1);
  }
  EXPECT_EQ(by_workers[0], by_workers[2]);
  EXPECT_EQ(by_workers[0], by_workers[4]);
  EXPECT_EQ(by_workers[1], by_workers[5]);
  DataLoader<float, int64_t> plain(ds, {.batch_size = 10, .drop_last = true});
  auto seq = epoch_labels(plain, 0);
  ASSERT_EQ(seq.size(), 2u);
  EXPECT_EQ(seq[1].front(), 10);
  EXPECT_THROW((DataLoader<float, int64_t>(ds, {.batch_size = 0})), ValueError);
  DataLoader<float, int64_t> unstarted(ds, {});
  EXPECT_THROW(unstarted.next(), ValueError);
}

TEST(DataLoader, AugmentationIsTheSameForAnyWorkerCount) {
  LabeledImages imgs{randint<uint8_t>(0, 256, {12, 3, 8, 8}).to<uint8_t>(), randint<int64_t>(0, 10, {12}),
                     Tensor<int64_t>()};
  auto ds = std::make_shared<ImageDataset>(
      imgs, Compose{{RandomCrop{8, 2}, RandomHorizontalFlip{0.5}, Normalize{{0.5}, {0.25}}}});
  std::vector<std::vector<float>> results;
  for (int workers : {0, 2}) {
    DataLoader<float, int64_t> loader(ds, {.batch_size = 4, .shuffle = true, .seed = 3, .num_workers = workers});
    loader.start_epoch(2);
    std::vector<float> all;
    while (auto b = loader.next()) {
      EXPECT_EQ(b->data.shape(), Shape({4, 3, 8, 8}));
      auto v = b->data.to_vector();
      all.insert(all.end(), v.begin(), v.end());
    }
    results.push_back(all);
  }
  EXPECT_EQ(results[0], results[1]);
}

class Faulty : public Dataset<float, int64_t> {
 public:
  int64_t size() const override { return 10; }
  Example<float, int64_t> get(int64_t i, Generator&) const override {
    if (i == 6) throw FormatError("corrupt image");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return {full<float>({2}, static_cast<float>(i)), scalar_tensor<int64_t>(i)};
  }
};

TEST(DataLoader, WorkerExceptionsReachTheConsumerWithTheSample) {
  auto ds = std::make_shared<Faulty>();
  for (int workers : {0, 2}) {
    DataLoader<float, int64_t> loader(ds, {.batch_size = 3, .num_workers = workers});
    loader.start_epoch(0);
    EXPECT_TRUE(loader.next().has_value());  // samples 0..2
    try {
      loader.next();  // samples 3..5
      loader.next();  // 6..8: fails
      FAIL() << "expected FormatError";
    } catch (const FormatError& e) {
      EXPECT_EQ(std::string(e.what()), "dataset sample 6: corrupt image");
    }
  }
}

// A long data set that counts the samples it has produced.
class Counting : public Dataset<float, int64_t> {
 public:
  int64_t size() const override { return 100000; }
  Example<float, int64_t> get(int64_t i, Generator&) const override {
    ++produced;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    return {full<float>({2}, static_cast<float>(i)), scalar_tensor<int64_t>(i)};
  }
  mutable std::atomic<int64_t> produced{0};
};

// Promptness without a clock: stopping (by restarting or destroying) must not let the workers
// finish the epoch, and nothing runs after the loader is gone.
TEST(DataLoader, DestructionMidEpochJoinsPromptly) {
  auto ds = std::make_shared<Counting>();
  {
    DataLoader<float, int64_t> loader(ds, {.batch_size = 1, .num_workers = 3, .prefetch = 2});
    loader.start_epoch(0);
    EXPECT_TRUE(loader.next().has_value());
    loader.start_epoch(1);  // restarting stops the running epoch too
    EXPECT_TRUE(loader.next().has_value());
  }
  const int64_t at_destruction = ds->produced.load();
  EXPECT_LT(at_destruction, 100);  // a handful of prefetched samples, not the epoch's 100000
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(ds->produced.load(), at_destruction);  // all workers joined
}

}  // namespace
}  // namespace ember::data
