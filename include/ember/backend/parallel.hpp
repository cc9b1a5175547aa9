#pragma once
// Note [Threads]
// ember runs large loops on a small pool of worker threads (set_num_threads, default: the
// number of hardware threads). Work is split into contiguous chunks whose boundaries depend only on
// the range, the grain and the thread count, so a run with a given thread count is deterministic.
// A parallel_for issued from inside a pool task runs serially on the calling thread.
#include <cstdint>
#include <type_traits>
#include <utility>

namespace ember {

/// Sets the number of threads ember's kernels use (>= 1); throws ember::ValueError otherwise.
void set_num_threads(int n);
int get_num_threads();

namespace detail {

/// A non-owning reference to a callable `void(int64_t begin, int64_t end)`.
class RangeFn {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, RangeFn>>>
  RangeFn(F&& f) noexcept  // NOLINT: implicit by design
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, int64_t b, int64_t e) { (*static_cast<std::remove_reference_t<F>*>(o))(b, e); }) {}
  void operator()(int64_t b, int64_t e) const { call_(obj_, b, e); }

 private:
  void* obj_;
  void (*call_)(void*, int64_t, int64_t);
};

/// Runs fn over [begin, end) split into chunks of at least `grain` iterations on ember's pool;
/// the calling thread takes a chunk too. Exceptions thrown by fn reach the caller (the first one).
void parallel_for(int64_t begin, int64_t end, int64_t grain, RangeFn fn);

/// True on a pool worker thread (used to keep nested calls serial).
bool in_parallel_region() noexcept;

}  // namespace detail
}  // namespace ember
