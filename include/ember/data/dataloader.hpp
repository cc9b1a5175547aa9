#pragma once
// Datasets, transforms and a multi-threaded DataLoader (torch.utils.data).
//
//   auto train = std::make_shared<ember::data::ImageDataset>(ember::data::load_mnist("data/mnist", true),
//                                                           ember::data::Normalize{{0.1307}, {0.3081}});
//   ember::data::DataLoader<float, int64_t> loader(train, {.batch_size = 64, .shuffle = true,
//                                                          .seed = 1, .num_workers = 2});
//   for (int64_t epoch = 0; epoch < 3; ++epoch) {
//     loader.start_epoch(epoch);
//     while (auto batch = loader.next()) { ... batch->data, batch->target ... }
//   }
//
// Note [Data determinism]
// The batch order depends only on (seed, epoch), and every sample is produced with a Generator
// seeded from (seed, epoch, sample index), so augmentations are the same whatever the number of
// workers. Workers prefetch a bounded number of batches; an exception in a worker reaches the
// consumer at that batch's next(), naming the sample; destroying the loader (or starting another
// epoch) mid-epoch stops and joins the workers. Workers share an epoch's state with the loader
// (not the loader itself), so with a timeout a worker stuck in a sample can be left behind safely.
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "ember/core/generator.hpp"
#include "ember/core/tensor.hpp"
#include "ember/data/readers.hpp"

namespace ember::data {

template <Element X, Element Y>
struct Example {
  Tensor<X> data;
  Tensor<Y> target;
};

template <Element X, Element Y>
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  /// Sample i. Random augmentation must draw from `gen` (see Note [Data determinism]).
  virtual Example<X, Y> get(int64_t i, Generator& gen) const = 0;
};

/// Rows of two tensors with the same first dim.
template <Element X, Element Y>
class TensorDataset : public Dataset<X, Y> {
 public:
  TensorDataset(Tensor<X> data, Tensor<Y> targets);
  int64_t size() const override { return data_.shape()[0]; }
  Example<X, Y> get(int64_t i, Generator&) const override { return {data_.select(0, i), targets_.select(0, i)}; }

 private:
  Tensor<X> data_;
  Tensor<Y> targets_;
};

/// A transform of one float image [C, H, W] (or [H, W]).
using Transform = std::function<Tensor<float>(const Tensor<float>&, Generator&)>;

/// Applies transforms in order.
struct Compose {
  std::vector<Transform> transforms;
  Tensor<float> operator()(const Tensor<float>& x, Generator& gen) const;
};
/// (x - mean[c]) / std[c] per channel (one value for all channels when given one).
struct Normalize {
  std::vector<double> mean, std;
  Tensor<float> operator()(const Tensor<float>& x, Generator& gen) const;
};
/// Pads each side by `padding` (zeros), then crops a random size x size window.
struct RandomCrop {
  int64_t size;
  int64_t padding = 0;
  Tensor<float> operator()(const Tensor<float>& x, Generator& gen) const;
};
/// Mirrors the image left-right with probability p.
struct RandomHorizontalFlip {
  double p = 0.5;
  Tensor<float> operator()(const Tensor<float>& x, Generator& gen) const;
};

/// Labeled uint8 images as float images in [0, 1] (to-float), then `transform`.
class ImageDataset : public Dataset<float, int64_t> {
 public:
  explicit ImageDataset(LabeledImages images, Transform transform = nullptr);
  int64_t size() const override { return images_.labels.numel(); }
  Example<float, int64_t> get(int64_t i, Generator& gen) const override;

 private:
  LabeledImages images_;
  Transform transform_;
};

/// MNIST-format data as LibTorch's torch::data::datasets::MNIST gives it: images [1, rows, cols]
/// as floats in [0, 1], then `transform`; labels int64 (load_mnist reads the files).
class MNIST : public ImageDataset {
 public:
  explicit MNIST(const std::string& root, bool train = true, Transform transform = nullptr);
};

/// The order in which a DataLoader visits samples in an epoch (torch.utils.data's samplers).
class Sampler {
 public:
  virtual ~Sampler() = default;
  /// How many indices an epoch yields for a data set of `dataset_size` samples.
  virtual int64_t num_samples(int64_t dataset_size) const = 0;
  /// The indices of epoch `epoch` (the DataLoader's start_epoch passes it: PyTorch's set_epoch).
  virtual std::vector<int64_t> indices(int64_t dataset_size, int64_t epoch) const = 0;
};

/// 0, 1, ..., n - 1.
class SequentialSampler : public Sampler {
 public:
  int64_t num_samples(int64_t n) const override { return n; }
  std::vector<int64_t> indices(int64_t n, int64_t epoch) const override;
};

/// A permutation that depends only on (seed, epoch).
class RandomSampler : public Sampler {
 public:
  explicit RandomSampler(uint64_t seed = 0) : seed_(seed) {}
  int64_t num_samples(int64_t n) const override { return n; }
  std::vector<int64_t> indices(int64_t n, int64_t epoch) const override;

 private:
  uint64_t seed_;
};

struct DistributedSamplerOptions {
  bool shuffle = true;
  uint64_t seed = 0;
  bool drop_last = false;
  /// -1: the world size and rank of the running ember::distributed::Environment.
  int64_t num_replicas = -1;
  int64_t rank = -1;
};

/// PyTorch's DistributedSampler: this rank's share of the data set, every rank the same number of
/// samples (padded by repeating the start of the order, or trimmed with drop_last), the order
/// shuffled from (seed, epoch) identically on every rank. Ranks together see every sample. In a
/// DataLoader, start_epoch(e) picks the epoch; on its own, set_epoch(e) then indices().
class DistributedSampler : public Sampler {
 public:
  /// `DistributedSampler(train->size(), {.shuffle = true, .seed = 0})`.
  DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options);
  /// LibTorch's positional order (DistributedRandomSampler(size, num_replicas, rank)).
  DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank, bool shuffle = true,
                     uint64_t seed = 0, bool drop_last = false);
  int64_t num_samples(int64_t n) const override;
  std::vector<int64_t> indices(int64_t n, int64_t epoch) const override;
  void set_epoch(int64_t epoch) noexcept { epoch_ = epoch; }
  /// This rank's indices of the data set given at construction, for the epoch set.
  std::vector<int64_t> indices() const;
  int64_t num_samples() const;
  int64_t num_replicas() const noexcept { return replicas_; }
  int64_t rank() const noexcept { return rank_; }

 private:
  int64_t replicas_, rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t dataset_size_;
  int64_t epoch_ = 0;
};

namespace detail {
/// The running Environment's rank and world size; ember::distributed sets it while one runs.
using ProcessGroupQuery = void (*)(int64_t& rank, int64_t& world_size);
void set_process_group_query(ProcessGroupQuery query) noexcept;
}  // namespace detail

struct DataLoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;
  int num_workers = 0;  // 0: batches are made on the calling thread; at most kMaxWorkers
  int prefetch = 2;     // batches made ahead, per worker
  /// Seconds next() waits for a worker's batch before it throws TimeoutError, and the most the
  /// loader waits for its workers when it stops (a worker stuck in a sample is then left to
  /// finish on its own; it holds the dataset, not the loader). 0: wait as long as it takes.
  double timeout = 0;
  /// The order of samples; when set it replaces shuffle/seed's order.
  std::shared_ptr<const Sampler> sampler = nullptr;
};

template <Element X, Element Y>
class DataLoader {
 public:
  /// The most worker threads a loader starts.
  static constexpr int kMaxWorkers = 256;

  DataLoader(std::shared_ptr<const Dataset<X, Y>> dataset, DataLoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const;
  /// Starts (or restarts) an epoch; an epoch in progress is stopped first.
  void start_epoch(int64_t epoch);
  /// The next batch ([B, ...] stacked), or nullopt at the end of the epoch.
  std::optional<Example<X, Y>> next();

  /// Range-for over one epoch, as LibTorch's `for (auto& batch : *loader)`: each begin() starts
  /// the next epoch (0, 1, ... after the last one started).
  class Iterator {
   public:
    using value_type = Example<X, Y>;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    explicit Iterator(DataLoader* loader) : loader_(loader) { ++*this; }
    Example<X, Y>& operator*() const { return **current_; }
    Example<X, Y>* operator->() const { return &**current_; }
    Iterator& operator++() {
      current_ = std::make_shared<std::optional<Example<X, Y>>>(loader_->next());
      if (!*current_) current_.reset();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return current_ == nullptr; }

   private:
    DataLoader* loader_ = nullptr;
    // Shared so that the iterator stays copyable; the batch is the one next() returned.
    std::shared_ptr<std::optional<Example<X, Y>>> current_;
  };
  Iterator begin() {
    start_epoch(next_epoch_);
    return Iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  struct Epoch;  // one epoch's order, queue and workers' shared state
  void stop_workers();

  std::shared_ptr<const Dataset<X, Y>> dataset_;
  DataLoaderOptions options_;
  std::shared_ptr<Epoch> epoch_;
  int64_t next_epoch_ = 0;  // the epoch a range-for starts
  std::vector<std::thread> workers_;
};

extern template class DataLoader<float, int64_t>;
extern template class DataLoader<double, int64_t>;
extern template class DataLoader<float, float>;
extern template class TensorDataset<float, int64_t>;
extern template class TensorDataset<double, int64_t>;
extern template class TensorDataset<float, float>;

}  // namespace ember::data
