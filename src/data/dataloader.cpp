#include "ember/data/dataloader.hpp"

#include <algorithm>

#include "../ops/common.hpp"

namespace ember::data {

using detail::cat_str;

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

template <Element X, Element Y>
DataLoader<X, Y>::DataLoader(std::shared_ptr<const Dataset<X, Y>> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  if (!dataset_) throw ValueError("DataLoader: the dataset is null");
  if (options.batch_size <= 0) throw ValueError(cat_str("DataLoader: batch_size must be positive, got ", options.batch_size));
  if (options.num_workers < 0 || options.prefetch < 1) {
    throw ValueError("DataLoader: num_workers must be >= 0 and prefetch >= 1");
  }
}

template <Element X, Element Y>
DataLoader<X, Y>::~DataLoader() {
  stop_workers();
}

template <Element X, Element Y>
int64_t DataLoader<X, Y>::batches_per_epoch() const {
  const int64_t n = dataset_->size(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

template <Element X, Element Y>
void DataLoader<X, Y>::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

template <Element X, Element Y>
void DataLoader<X, Y>::start_epoch(int64_t epoch) {
  stop_workers();
  epoch_ = epoch;
  const int64_t n = dataset_->size();
  order_.resize(static_cast<size_t>(n));
  if (options_.shuffle) {
    Generator gen(mix(options_.seed, static_cast<uint64_t>(epoch)));
    order_ = randperm(n, &gen).to_vector();
  } else {
    for (int64_t i = 0; i < n; ++i) order_[static_cast<size_t>(i)] = i;
  }
  num_batches_ = batches_per_epoch();
  consumed_ = 0;
  started_ = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ready_.clear();
    next_to_make_ = 0;
    stop_ = false;
  }
  for (int w = 0; w < options_.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
}

template <Element X, Element Y>
Example<X, Y> DataLoader<X, Y>::make_batch(int64_t k) const {
  const int64_t begin = k * options_.batch_size;
  const int64_t end = std::min<int64_t>(begin + options_.batch_size, static_cast<int64_t>(order_.size()));
  std::vector<Tensor<X>> xs;
  std::vector<Tensor<Y>> ys;
  for (int64_t j = begin; j < end; ++j) {
    const int64_t idx = order_[static_cast<size_t>(j)];
    Generator gen(mix(options_.seed, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(idx) + 1));
    try {
      Example<X, Y> ex = dataset_->get(idx, gen);
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

template <Element X, Element Y>
void DataLoader<X, Y>::worker_loop() {
  const int64_t ahead = static_cast<int64_t>(options_.prefetch) * std::max(1, options_.num_workers);
  for (;;) {
    int64_t k;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || (next_to_make_ < num_batches_ && next_to_make_ < consumed_ + ahead); });
      if (stop_ || next_to_make_ >= num_batches_) return;
      k = next_to_make_++;
    }
    Slot slot;
    try {
      slot.batch = make_batch(k);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_[k] = std::move(slot);
    }
    cv_.notify_all();
  }
}

template <Element X, Element Y>
std::optional<Example<X, Y>> DataLoader<X, Y>::next() {
  if (!started_) throw ValueError("DataLoader: call start_epoch(epoch) before next()");
  if (consumed_ >= num_batches_) return std::nullopt;
  if (options_.num_workers == 0) return make_batch(consumed_++);
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return ready_.count(consumed_) > 0; });
    slot = std::move(ready_[consumed_]);
    ready_.erase(consumed_);
    ++consumed_;
  }
  cv_.notify_all();  // room for one more batch ahead
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
