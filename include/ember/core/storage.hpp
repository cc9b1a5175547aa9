#pragma once
// Storage: a reference-counted, 64-byte-aligned buffer shared by a tensor and its views.
//
// Note [Memory]
// Buffers come from a caching allocator: a freed buffer goes to a per-size free list and the next
// request of that size class reuses it, so a training loop that makes the same tensors every step
// stops asking the OS for memory after the first step. memory_stats() reports live and cached
// bytes; empty_cache() returns the cached ones to the OS.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace ember {

struct MemoryStats {
  int64_t live_bytes = 0;     // held by storages now (rounded to size classes)
  int64_t peak_live_bytes = 0;
  int64_t cached_bytes = 0;   // freed and kept for reuse
  int64_t allocations = 0;    // requests served
  int64_t os_allocations = 0; // requests that went to the OS
};

MemoryStats memory_stats();
/// Returns cached buffers to the OS.
void empty_cache();
/// Resets peak_live_bytes to the current live bytes.
void reset_peak_memory();
/// The largest single buffer ember asks for: by default the machine's physical memory, so that a
/// request no machine here could serve (a shape from a hostile header, a typo) is a ValueError
/// naming the size before the system allocator is asked. Process-wide; bytes >= 1.
int64_t max_allocation_bytes();
void set_max_allocation_bytes(int64_t bytes);

class Storage {
 public:
  /// A buffer of at least `nbytes` bytes (nullptr data for 0). Contents are uninitialised.
  static std::shared_ptr<Storage> allocate(size_t nbytes);

  Storage(void* data, size_t nbytes, size_t capacity) noexcept
      : data_(data), nbytes_(nbytes), capacity_(capacity) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();

  void* data() const noexcept { return data_; }
  size_t nbytes() const noexcept { return nbytes_; }

  /// Bumped by every in-place write through any view; autograd compares it with the value seen
  /// when a tensor was saved for backward.
  uint64_t version() const noexcept { return version_.load(std::memory_order_relaxed); }
  void bump_version() noexcept { version_.fetch_add(1, std::memory_order_relaxed); }
  /// Bumped when a tensor on this storage gets a new autograd history in place (an in-place op
  /// recorded for autograd, or detach_): views taken before still lead to the old history, and
  /// autograd refuses them (Note [Stale views]).
  uint64_t history() const noexcept { return history_.load(std::memory_order_relaxed); }
  void bump_history() noexcept { history_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_;
  size_t nbytes_;
  size_t capacity_;
  std::atomic<uint64_t> version_{0};
  std::atomic<uint64_t> history_{0};
};

}  // namespace ember
