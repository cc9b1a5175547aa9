// The caching allocator behind Storage (Note [Memory] in storage.hpp).
#include "ember/core/storage.hpp"

#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
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

class CachingAllocator {
 public:
  ~CachingAllocator() { release_all(); }

  void* allocate(size_t capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.allocations;
      stats_.live_bytes += static_cast<int64_t>(capacity);
      if (stats_.live_bytes > stats_.peak_live_bytes) stats_.peak_live_bytes = stats_.live_bytes;
      auto it = free_.find(capacity);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
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
          free_[capacity].push_back(p);
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
    for (auto& [size, list] : free_)
      for (void* p : list) std::free(p);
    free_.clear();
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
  std::unordered_map<size_t, std::vector<void*>> free_;
  MemoryStats stats_;
};

CachingAllocator& allocator() {
  // Never destroyed: storages freed during static destruction must still find it.
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t nbytes) {
  if (nbytes == 0) return std::make_shared<Storage>(nullptr, 0, 0);
  if (nbytes > (size_t(1) << 60)) {
    throw ValueError("allocator: request of " + std::to_string(nbytes) + " bytes is too large");
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
