// ember's thread pool (Note [Threads] in parallel.hpp).
#include "ember/backend/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ember/core/error.hpp"
#include "row_shares.hpp"

namespace ember {
namespace {

thread_local bool t_in_pool_task = false;

struct Job {
  detail::RangeFn fn;
  int64_t begin, end, chunk, nchunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::exception_ptr error;
  std::mutex error_mutex;

  Job(detail::RangeFn f, int64_t b, int64_t e, int64_t c)
      : fn(f), begin(b), end(e), chunk(c), nchunks((e - b + c - 1) / c) {}

  // Takes chunks until none are left; returns when this thread can take no more.
  void work() {
    for (int64_t i = next.fetch_add(1); i < nchunks; i = next.fetch_add(1)) {
      int64_t b = begin + i * chunk;
      int64_t e = std::min(end, b + chunk);
      try {
        fn(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }
};

class Pool {
 public:
  Pool() { resize(default_threads()); }
  ~Pool() { stop_workers(); }

  static int default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
  }

  int size() const { return threads_.load(); }

  void resize(int n) {
    std::lock_guard<std::mutex> use(use_mutex_);
    stop_workers();
    threads_ = n;
    stop_ = false;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void run(int64_t begin, int64_t end, int64_t grain, detail::RangeFn fn) {
    const int64_t total = end - begin;
    const int64_t threads = threads_.load(std::memory_order_relaxed);
    if (threads <= 1 || total <= grain || t_in_pool_task) {
      fn(begin, end);
      return;
    }
    // One user thread at a time gets the pool; others run serially.
    std::unique_lock<std::mutex> use(use_mutex_, std::try_to_lock);
    if (!use.owns_lock()) {
      fn(begin, end);
      return;
    }
    const int64_t pieces = std::min<int64_t>(threads, (total + grain - 1) / grain);
    Job job(fn, begin, end, (total + pieces - 1) / pieces);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    t_in_pool_task = true;
    job.work();
    t_in_pool_task = false;
    auto finished = [&] {
      return job.done.load(std::memory_order_acquire) == job.nchunks &&
             users_.load(std::memory_order_acquire) == 0;
    };
    spin_until(finished);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      finished_.wait(lock, finished);
      job_ = nullptr;
    }
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  // Waking a sleeping thread costs tens of microseconds on a VM, more than a typical parallel
  // loop takes: threads spin briefly for the next job (or for the last chunk) before they sleep.
  template <class Pred>
  static void spin_until(Pred done) {
    const auto limit = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
    for (int i = 0; !done(); ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > limit) return;
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] {
        return stop_.load(std::memory_order_acquire) ||
               generation_.load(std::memory_order_acquire) != seen;
      });
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || (job_ != nullptr && generation_.load() != seen); });
      if (stop_) return;
      seen = generation_.load();
      Job* job = job_;
      users_.fetch_add(1, std::memory_order_acq_rel);
      lock.unlock();
      t_in_pool_task = true;
      job->work();
      t_in_pool_task = false;
      lock.lock();
      users_.fetch_sub(1, std::memory_order_acq_rel);
      finished_.notify_all();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex use_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  std::vector<std::thread> workers_;
  std::atomic<int> threads_{1};
  static constexpr int kSpinMicros = 100;
  Job* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> users_{0};
  std::atomic<bool> stop_{false};
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1 || n > 4096) {
    throw ValueError("set_num_threads: expected a thread count in [1, 4096], got " +
                     std::to_string(n));
  }
  if (pool().size() != n) pool().resize(n);
}

int get_num_threads() { return pool().size(); }

namespace backend {

RowShares::RowShares(int64_t m, int parts, int64_t step) : parts_(parts), step_(step) {
  for (int t = 0; t < parts; ++t) left_[t] = {m * t / parts, m * (t + 1) / parts};
}

RowShares::~RowShares() = default;

RowRange RowShares::claim(int t, int64_t own) {
  std::lock_guard<std::mutex> lock(mutex_);
  RowRange& mine = left_[t];
  if (mine.lo < mine.hi) {
    const int64_t lo = mine.lo;
    mine.lo = std::min(mine.hi, lo + own);
    return {lo, mine.lo};
  }
  RowRange* victim = &mine;
  for (int p = 0; p < parts_; ++p) {
    if (left_[p].hi - left_[p].lo > victim->hi - victim->lo) victim = &left_[p];
  }
  const int64_t rows = victim->hi - victim->lo;
  if (rows == 0) return {0, 0};
  // What lies beyond whole steps from the front, so the victim's next claims stay whole.
  const int64_t take = rows - (rows - 1) / step_ * step_;
  victim->hi -= take;
  return {victim->hi, victim->hi + take};
}

}  // namespace backend

namespace detail {
void parallel_for(int64_t begin, int64_t end, int64_t grain, RangeFn fn) {
  if (end <= begin) return;
  pool().run(begin, end, std::max<int64_t>(grain, 1), fn);
}
bool in_parallel_region() noexcept { return t_in_pool_task; }
}  // namespace detail
}  // namespace ember
