// Rows of a product shared out among threads, with stealing (Note [GEMM design] in gemm.inl).
// Internal. The functions are defined in parallel.cpp, outside the ISA-specific objects, which
// must not define weak symbols; nothing here allocates, so the GEMM still cannot throw.
#pragma once

#include <cstdint>
#include <mutex>

namespace ember::backend {

struct RowRange {
  int64_t lo, hi;
};

/// Each of `parts` threads starts with an equal contiguous share of rows [0, m) and takes it
/// front to back; a thread whose share is done takes a few rows from the back of the fullest
/// share. A VM's vCPU often runs 10-20% slower than its sibling for a while, or stops for tens
/// of microseconds; with fixed shares the whole product then waits for the slow thread.
class RowShares {
 public:
  static constexpr int kMaxParts = 256;

  /// parts <= kMaxParts. Stolen pieces are at most `step` rows, cut so that the rest of the
  /// share stays a whole number of steps from its front.
  RowShares(int64_t m, int parts, int64_t step);
  ~RowShares();
  RowShares(const RowShares&) = delete;
  RowShares& operator=(const RowShares&) = delete;

  /// The next rows for thread t: up to `own` rows from the front of its share, else a stolen
  /// piece; lo == hi when no rows are left anywhere.
  RowRange claim(int t, int64_t own);

 private:
  std::mutex mutex_;
  int parts_;
  int64_t step_;
  RowRange left_[kMaxParts];  // per thread: the rows not yet claimed
};

}  // namespace ember::backend
