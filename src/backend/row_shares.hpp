// Rows of a product shared out among threads, with stealing (Note [GEMM design] in gemm.inl).
// Internal; defined in parallel.cpp, outside the ISA-specific objects, which must not define
// weak symbols (std::vector and std::mutex code would be).
#pragma once

#include <cstdint>
#include <memory>

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
  /// Stolen pieces are at most `step` rows, cut so that the rest of the share stays a whole
  /// number of steps from its front.
  RowShares(int64_t m, int parts, int64_t step);
  ~RowShares();
  RowShares(const RowShares&) = delete;
  RowShares& operator=(const RowShares&) = delete;

  /// The next rows for thread t: up to `own` rows from the front of its share, else a stolen
  /// piece; lo == hi when no rows are left anywhere.
  RowRange claim(int t, int64_t own);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ember::backend
