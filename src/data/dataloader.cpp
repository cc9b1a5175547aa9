#include "ember/data/dataloader.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <system_error>

#include "../ops/common.hpp"

namespace ember::data {

using ember::detail::cat_str;

namespace {
// A well-mixed 64-bit seed from several numbers (SplitMix64 steps).
uint64_t mix(uint64_t a, uint64_t b, uint64_t c = 0) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
               (c + 0x1D8E4E27C47D124Full) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return x;
}
}  // namespace

template <Element X, Element Y>
TensorDataset<X, Y>::TensorDataset(Tensor<X> data, Tensor<Y> targets)
    : data_(std::move(data)), targets_(std::move(targets)) {
  if (!data_.defined() || !targets_.defined() || data_.dim() == 0 || targets_.dim() == 0 ||
      data_.shape()[0] != targets_.shape()[0]) {
    throw ShapeError("TensorDataset: data and targets need the same first dim, got " +
                     (data_.defined() ? data_.shape().str() : std::string("undefined")) + " and " +
                     (targets_.defined() ? targets_.shape().str() : std::string("undefined")));
  }
}

Tensor<float> Compose::operator()(const Tensor<float>& x, Generator& gen) const {
  Tensor<float> y = x;
  for (const auto& t : transforms) y = t(y, gen);
  return y;
}

Tensor<float> Normalize::operator()(const Tensor<float>& x, Generator&) const {
  if (mean.empty() || mean.size() != std.size()) {
    throw ValueError("Normalize: give as many means as standard deviations (at least one)");
  }
  const int64_t c = x.dim() == 3 ? x.shape()[0] : 1;
  if (mean.size() != 1 && static_cast<int64_t>(mean.size()) != c) {
    throw ShapeError(cat_str("Normalize: ", mean.size(), " means for an image of shape ", x.shape()));
  }
  std::vector<float> m(static_cast<size_t>(c)), s(static_cast<size_t>(c));
  for (int64_t i = 0; i < c; ++i) {
    m[static_cast<size_t>(i)] = static_cast<float>(mean[mean.size() == 1 ? 0 : static_cast<size_t>(i)]);
    s[static_cast<size_t>(i)] = static_cast<float>(std[std.size() == 1 ? 0 : static_cast<size_t>(i)]);
    if (s[static_cast<size_t>(i)] == 0) throw ValueError("Normalize: a standard deviation is 0");
  }
  const Shape cs = x.dim() == 3 ? Shape{c, 1, 1} : Shape{};
  return (x - tensor<float>(m, cs)) / tensor<float>(s, cs);
}

Tensor<float> RandomCrop::operator()(const Tensor<float>& x, Generator& gen) const {
  if (x.dim() < 2) throw ShapeError(cat_str("RandomCrop: expected an image [C, H, W] or [H, W], got ", x.shape()));
  Tensor<float> p = padding > 0 ? pad(x, {padding, padding, padding, padding}) : x;
  const int64_t h = p.shape()[p.dim() - 2], w = p.shape()[p.dim() - 1];
  if (size > h || size > w || size <= 0) {
    throw ShapeError(cat_str("RandomCrop: size ", size, " does not fit the padded image ", p.shape()));
  }
  const int64_t top = static_cast<int64_t>(gen.below(static_cast<uint64_t>(h - size + 1)));
  const int64_t left = static_cast<int64_t>(gen.below(static_cast<uint64_t>(w - size + 1)));
  return p.narrow(-2, top, size).narrow(-1, left, size).contiguous();
}

Tensor<float> RandomHorizontalFlip::operator()(const Tensor<float>& x, Generator& gen) const {
  if (gen.uniform() >= p) return x;
  const int64_t w = x.shape()[x.dim() - 1];
  std::vector<int64_t> idx(static_cast<size_t>(w));
  for (int64_t i = 0; i < w; ++i) idx[static_cast<size_t>(i)] = w - 1 - i;
  return x.index_select(x.dim() - 1, tensor<int64_t>(idx));
}

ImageDataset::ImageDataset(LabeledImages images, Transform transform)
    : images_(std::move(images)), transform_(std::move(transform)) {
  if (!images_.images.defined() || !images_.labels.defined() ||
      images_.images.shape()[0] != images_.labels.numel()) {
    throw ShapeError("ImageDataset: images and labels do not match");
  }
}

Example<float, int64_t> ImageDataset::get(int64_t i, Generator& gen) const {
  Tensor<float> x = images_.images.select(0, i).to<float>() * (1.0 / 255.0);
  if (transform_) x = transform_(x, gen);
  return {x, images_.labels.select(0, i)};
}

// The state one epoch's workers share with the loader. A fresh one per epoch: a worker left
// behind by a timeout can only ever write into its own, abandoned epoch.
template <Element X, Element Y>
struct DataLoader<X, Y>::Epoch {
  struct Slot {
    std::optional<Example<X, Y>> batch;
    std::exception_ptr error;
  };
  std::shared_ptr<const Dataset<X, Y>> dataset;
  DataLoaderOptions options;
  int64_t epoch = 0;
  std::vector<int64_t> order;
  int64_t num_batches = 0;
  int64_t consumed = 0;  // touched by the consumer only

  std::mutex mutex;
  std::condition_variable cv;
  std::map<int64_t, Slot> ready;
  int64_t next_to_make = 0;
  int64_t taken = 0;  // batches the consumer has taken, for the prefetch window
  int live_workers = 0;
  bool stop = false;

  Example<X, Y> make_batch(int64_t k) const {
    const int64_t n = static_cast<int64_t>(order.size()), b = options.batch_size;
    const int64_t begin = k * b;  // k < num_batches, so begin < n: no overflow
    const int64_t end = begin + std::min(b, n - begin);
    std::vector<Tensor<X>> xs;
    std::vector<Tensor<Y>> ys;
    for (int64_t j = begin; j < end; ++j) {
      const int64_t idx = order[static_cast<size_t>(j)];
      Generator gen(mix(options.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(idx) + 1));
      try {
        Example<X, Y> ex = dataset->get(idx, gen);
        xs.push_back(ex.data);
        ys.push_back(ex.target);
      } catch (Error& e) {
        e.prepend_module("dataset sample " + std::to_string(idx));
        throw;
      } catch (const std::exception& e) {
        throw ValueError("dataset sample " + std::to_string(idx) + ": " + e.what());
      }
    }
    return {stack(xs, 0), stack(ys, 0)};
  }

  static void work(std::shared_ptr<Epoch> self) {
    Epoch& e = *self;
    const int64_t ahead = static_cast<int64_t>(e.options.prefetch) * std::max(1, e.options.num_workers);
    for (;;) {
      int64_t k;
      {
        std::unique_lock<std::mutex> lock(e.mutex);
        e.cv.wait(lock, [&] { return e.stop || (e.next_to_make < e.num_batches && e.next_to_make < e.taken + ahead); });
        if (e.stop || e.next_to_make >= e.num_batches) break;
        k = e.next_to_make++;
      }
      Slot slot;
      try {
        slot.batch = e.make_batch(k);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(e.mutex);
        e.ready[k] = std::move(slot);
      }
      e.cv.notify_all();
    }
    {
      std::lock_guard<std::mutex> lock(e.mutex);
      --e.live_workers;
    }
    e.cv.notify_all();
  }
};

MNIST::MNIST(const std::string& root, bool train, Transform transform)
    : ImageDataset(
          [&] {
            LabeledImages d = load_mnist(root, train);
            d.images = d.images.unsqueeze(1);  // [N, 1, rows, cols], as LibTorch's MNIST
            return d;
          }(),
          std::move(transform)) {}

std::vector<int64_t> SequentialSampler::indices(int64_t n, int64_t) const {
  std::vector<int64_t> out(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = i;
  return out;
}

std::vector<int64_t> RandomSampler::indices(int64_t n, int64_t epoch) const {
  Generator gen(mix(seed_, static_cast<uint64_t>(epoch)));
  return randperm(n, &gen).to_vector();
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank, bool shuffle,
                                       uint64_t seed, bool drop_last)
    : replicas_(num_replicas), rank_(rank), shuffle_(shuffle), seed_(seed), drop_last_(drop_last),
      dataset_size_(dataset_size) {
  if (num_replicas < 1 || rank < 0 || rank >= num_replicas) {
    throw ValueError(cat_str("DistributedSampler: rank ", rank, " of ", num_replicas,
                             " replicas (need 0 <= rank < num_replicas)"));
  }
  if (dataset_size < 0) throw ValueError(cat_str("DistributedSampler: dataset_size must be >= 0, got ", dataset_size));
}

namespace detail {
namespace {
std::atomic<ProcessGroupQuery> process_group_query{nullptr};
}  // namespace
void set_process_group_query(ProcessGroupQuery query) noexcept { process_group_query.store(query); }
}  // namespace detail

namespace {
DistributedSamplerOptions resolved(DistributedSamplerOptions o) {
  if (o.num_replicas >= 0 && o.rank >= 0) return o;
  detail::ProcessGroupQuery query = detail::process_group_query.load();
  if (query == nullptr) {
    throw ValueError("DistributedSampler: num_replicas and rank were not given and no "
                     "ember::distributed::Environment is running to supply them");
  }
  int64_t rank = 0, size = 1;
  query(rank, size);
  if (o.num_replicas < 0) o.num_replicas = size;
  if (o.rank < 0) o.rank = rank;
  return o;
}
}  // namespace

DistributedSampler::DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options)
    : DistributedSampler(dataset_size, resolved(options).num_replicas, resolved(options).rank, options.shuffle,
                         options.seed, options.drop_last) {}

std::vector<int64_t> DistributedSampler::indices() const {
  return indices(dataset_size_, epoch_);
}

int64_t DistributedSampler::num_samples() const {
  return num_samples(dataset_size_);
}

int64_t DistributedSampler::num_samples(int64_t n) const {
  return drop_last_ ? n / replicas_ : n / replicas_ + (n % replicas_ != 0 ? 1 : 0);
}

std::vector<int64_t> DistributedSampler::indices(int64_t n, int64_t epoch) const {
  std::vector<int64_t> order;
  if (shuffle_) {
    Generator gen(mix(seed_, static_cast<uint64_t>(epoch)));
    order = randperm(n, &gen).to_vector();
  } else {
    order = SequentialSampler().indices(n, epoch);
  }
  const int64_t per_rank = num_samples(n), total = per_rank * replicas_;
  if (n == 0) return {};
  // Pad by repeating the order from its start (PyTorch's rule), or trim.
  for (int64_t i = n; i < total; ++i) order.push_back(order[static_cast<size_t>((i - n) % n)]);
  order.resize(static_cast<size_t>(total));
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(per_rank));
  for (int64_t i = rank_; i < total; i += replicas_) mine.push_back(order[static_cast<size_t>(i)]);
  return mine;
}

template <Element X, Element Y>
DataLoader<X, Y>::DataLoader(std::shared_ptr<const Dataset<X, Y>> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  if (!dataset_) throw ValueError("DataLoader: the dataset is null");
  if (options.batch_size <= 0) throw ValueError(cat_str("DataLoader: batch_size must be positive, got ", options.batch_size));
  if (options.num_workers < 0 || options.num_workers > kMaxWorkers || options.prefetch < 1) {
    throw ValueError(cat_str("DataLoader: num_workers must be in [0, ", kMaxWorkers, "] and prefetch >= 1, got ",
                             options.num_workers, " and ", options.prefetch));
  }
  if (!(options.timeout >= 0) || options.timeout > 1e9) {
    throw ValueError(cat_str("DataLoader: timeout must be in [0, 1e9] seconds, got ", options.timeout));
  }
}

template <Element X, Element Y>
DataLoader<X, Y>::~DataLoader() {
  stop_workers();
}

template <Element X, Element Y>
int64_t DataLoader<X, Y>::batches_per_epoch() const {
  const int64_t size = dataset_->size();
  const int64_t n = options_.sampler ? options_.sampler->num_samples(size) : size, b = options_.batch_size;
  return n / b + (!options_.drop_last && n % b != 0 ? 1 : 0);  // (n + b - 1) / b overflows for huge b
}

template <Element X, Element Y>
void DataLoader<X, Y>::stop_workers() {
  if (!epoch_) return;
  Epoch& e = *epoch_;
  bool all_done = true;
  {
    std::unique_lock<std::mutex> lock(e.mutex);
    e.stop = true;
    e.cv.notify_all();
    if (options_.timeout > 0) {
      all_done = e.cv.wait_for(lock, std::chrono::duration<double>(options_.timeout), [&] { return e.live_workers == 0; });
    }
  }
  for (auto& t : workers_) {
    if (all_done) {
      t.join();
    } else {
      t.detach();  // stuck in a sample: it finishes on its own, holding only the epoch's state
    }
  }
  workers_.clear();
}

template <Element X, Element Y>
void DataLoader<X, Y>::start_epoch(int64_t epoch) {
  stop_workers();
  auto e = std::make_shared<Epoch>();
  e->dataset = dataset_;
  e->options = options_;
  e->epoch = epoch;
  const int64_t n = dataset_->size();
  if (n < 0) throw ValueError(cat_str("DataLoader: the dataset's size is negative (", n, ")"));
  if (options_.sampler) {
    e->order = options_.sampler->indices(n, epoch);
    if (static_cast<int64_t>(e->order.size()) != options_.sampler->num_samples(n)) {
      throw ValueError(cat_str("DataLoader: the sampler gave ", e->order.size(), " indices, its num_samples says ",
                               options_.sampler->num_samples(n)));
    }
    for (size_t i = 0; i < e->order.size(); ++i) {
      if (e->order[i] < 0 || e->order[i] >= n) {
        throw IndexError(cat_str("DataLoader: the sampler's index ", e->order[i], " at position ", i,
                                 " is out of range for a data set of ", n, " samples"));
      }
    }
  } else if (options_.shuffle) {
    Generator gen(mix(options_.seed, static_cast<uint64_t>(epoch)));
    e->order = randperm(n, &gen).to_vector();
  } else {
    e->order.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) e->order[static_cast<size_t>(i)] = i;
  }
  e->num_batches = batches_per_epoch();
  epoch_ = e;
  next_epoch_ = epoch + 1;
  for (int w = 0; w < options_.num_workers; ++w) {
    {
      std::lock_guard<std::mutex> lock(e->mutex);
      ++e->live_workers;
    }
    try {
      workers_.emplace_back(&Epoch::work, e);
    } catch (const std::system_error& err) {
      {
        std::lock_guard<std::mutex> lock(e->mutex);
        --e->live_workers;
      }
      stop_workers();
      epoch_.reset();
      throw ValueError(cat_str("DataLoader: cannot start worker ", w, " of ", options_.num_workers, ": ", err.what()));
    }
  }
}

template <Element X, Element Y>
std::optional<Example<X, Y>> DataLoader<X, Y>::next() {
  if (!epoch_) throw ValueError("DataLoader: call start_epoch(epoch) before next()");
  Epoch& e = *epoch_;
  if (e.consumed >= e.num_batches) return std::nullopt;
  if (options_.num_workers == 0) return e.make_batch(e.consumed++);
  typename Epoch::Slot slot;
  {
    std::unique_lock<std::mutex> lock(e.mutex);
    auto arrived = [&] { return e.ready.count(e.consumed) > 0; };
    if (options_.timeout > 0) {
      if (!e.cv.wait_for(lock, std::chrono::duration<double>(options_.timeout), arrived)) {
        throw TimeoutError(cat_str("DataLoader: batch ", e.consumed, " of epoch ", e.epoch, " was not ready after ",
                                   options_.timeout, " s (a sample that hangs?)"));
      }
    } else {
      e.cv.wait(lock, arrived);
    }
    slot = std::move(e.ready[e.consumed]);
    e.ready.erase(e.consumed);
    ++e.consumed;
    e.taken = e.consumed;
  }
  e.cv.notify_all();  // room for one more batch ahead
  if (slot.error) std::rethrow_exception(slot.error);
  return std::move(slot.batch);
}

template class TensorDataset<float, int64_t>;
template class TensorDataset<double, int64_t>;
template class TensorDataset<float, float>;
template class DataLoader<float, int64_t>;
template class DataLoader<double, int64_t>;
template class DataLoader<float, float>;

}  // namespace ember::data
