// The caching allocator behind Storage (Note [Memory] in storage.hpp).
#include "ember/core/storage.hpp"

#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "ember/core/error.hpp"

namespace ember {
namespace {

constexpr size_t kAlignment = 64;
// Cached bytes beyond this are returned to the OS instead of kept.
constexpr size_t kMaxCachedBytes = size_t(2) << 30;

// Size classes: multiples of 64 bytes up to 4 KiB, then four classes per power of two, so a
// request wastes at most 25% and buffers of similar sizes are reused for each other.
size_t size_class(size_t n) {
  if (n <= 4096) return (n + kAlignment - 1) & ~(kAlignment - 1);
  size_t p = size_t(1) << (63 - __builtin_clzll(n - 1));  // highest power of two below n
  size_t quarter = p / 4;
  return (n + quarter - 1) / quarter * quarter;
}

// A dense index for each size class (for the free-list table).
constexpr size_t kSmallClasses = 4096 / kAlignment;  // 64 B .. 4 KiB
constexpr size_t kClassCount = kSmallClasses + 4 * 64;
size_t class_index(size_t capacity) {
  if (capacity <= 4096) return capacity / kAlignment - 1;
  const int log2 = 63 - __builtin_clzll(capacity - 1);  // capacity in (2^log2, 2^(log2+1)]
  const size_t quarter = (size_t(1) << log2) / 4;
  const size_t step = (capacity - (size_t(1) << log2)) / quarter - 1;  // 0..3
  return kSmallClasses + static_cast<size_t>(log2 - 12) * 4 + step;
}

class CachingAllocator {
 public:
  ~CachingAllocator() { release_all(); }

  void* allocate(size_t capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.allocations;
      stats_.live_bytes += static_cast<int64_t>(capacity);
      if (stats_.live_bytes > stats_.peak_live_bytes) stats_.peak_live_bytes = stats_.live_bytes;
      std::vector<void*>& list = free_[class_index(capacity)];
      if (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        stats_.cached_bytes -= static_cast<int64_t>(capacity);
        return p;
      }
      ++stats_.os_allocations;
    }
    void* p = std::aligned_alloc(kAlignment, capacity);
    if (p == nullptr) {
      release_all();  // give the cache back and try once more before failing
      p = std::aligned_alloc(kAlignment, capacity);
    }
    if (p == nullptr) {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.live_bytes -= static_cast<int64_t>(capacity);
      throw ValueError("allocator: out of memory allocating " + std::to_string(capacity) +
                       " bytes");
    }
    return p;
  }

  void deallocate(void* p, size_t capacity) noexcept {
    bool keep;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.live_bytes -= static_cast<int64_t>(capacity);
      keep = static_cast<size_t>(stats_.cached_bytes) + capacity <= kMaxCachedBytes;
      if (keep) {
        try {
          free_[class_index(capacity)].push_back(p);
          stats_.cached_bytes += static_cast<int64_t>(capacity);
        } catch (...) {
          keep = false;
        }
      }
    }
    if (!keep) std::free(p);
  }

  void release_all() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& list : free_) {
      for (void* p : list) std::free(p);
      list.clear();
    }
    stats_.cached_bytes = 0;
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_live_bytes = stats_.live_bytes;
  }

 private:
  std::mutex mutex_;
  std::vector<void*> free_[kClassCount];
  MemoryStats stats_;
};

CachingAllocator& allocator() {
  // Never destroyed: storages freed during static destruction must still find it.
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

// 0 until first use: then the physical memory (sysconf), unless set.
std::atomic<int64_t> g_max_allocation{0};

int64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return int64_t(1) << 60;
  return static_cast<int64_t>(pages) > (int64_t(1) << 60) / page ? int64_t(1) << 60
                                                                   : static_cast<int64_t>(pages) * page;
}

}  // namespace

int64_t max_allocation_bytes() {
  int64_t v = g_max_allocation.load(std::memory_order_relaxed);
  if (v == 0) {
    int64_t expected = 0;
    v = physical_memory_bytes();
    if (!g_max_allocation.compare_exchange_strong(expected, v, std::memory_order_relaxed)) v = expected;
  }
  return v;
}

void set_max_allocation_bytes(int64_t bytes) {
  if (bytes < 1) throw ValueError("set_max_allocation_bytes: expected at least 1 byte, got " + std::to_string(bytes));
  g_max_allocation.store(bytes, std::memory_order_relaxed);
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes) {
  if (nbytes == 0) return std::make_shared<Storage>(nullptr, 0, 0);
  const int64_t limit = max_allocation_bytes();
  if (nbytes > static_cast<size_t>(limit)) {
    throw ValueError("allocator: a request of " + std::to_string(nbytes) + " bytes exceeds the limit of " +
                     std::to_string(limit) + " bytes (the physical memory unless set_max_allocation_bytes changed it)");
  }
  size_t capacity = size_class(nbytes);
  void* p = allocator().allocate(capacity);
  try {
    return std::make_shared<Storage>(p, nbytes, capacity);
  } catch (...) {
    allocator().deallocate(p, capacity);
    throw;
  }
}

Storage::~Storage() {
  if (data_ != nullptr) allocator().deallocate(data_, capacity_);
}

MemoryStats memory_stats() { return allocator().stats(); }
void empty_cache() { allocator().release_all(); }
void reset_peak_memory() { allocator().reset_peak(); }

}  // namespace ember
