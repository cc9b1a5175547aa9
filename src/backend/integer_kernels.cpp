// The integer element types' kernels (IntegerKernels in ember/backend/kernels.hpp): scalar code,
// the same rules as the float tables' (scalar_ops.hpp) where they overlap.
#include <algorithm>
#include <cstdint>

#include "ember/backend/kernels.hpp"
#include "scalar_ops.hpp"

namespace ember::backend {
namespace {

template <class T>
void compare(Compare op, int64_t n, const T* a, int64_t sa, const T* b, int64_t sb, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = scalar::apply_compare(op, a[i * sa], b[i * sb]) ? 1 : 0;
}

template <class T>
bool sum(int64_t n, const T* x, int64_t sx, int64_t* acc) {
  int64_t s = *acc;
  for (int64_t i = 0; i < n; ++i) {
    if (__builtin_add_overflow(s, static_cast<int64_t>(x[i * sx]), &s)) return false;
  }
  *acc = s;
  return true;
}

template <class T>
void extreme(bool is_max, int64_t n, const T* x, int64_t sx, T* acc) {
  T best = *acc;
  for (int64_t i = 0; i < n; ++i) best = is_max ? std::max(best, x[i * sx]) : std::min(best, x[i * sx]);
  *acc = best;
}

template <class T>
void count_nonzero(int64_t n, const T* x, int64_t sx, int64_t* count) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += x[i * sx] != T(0) ? 1 : 0;
  *count += c;
}

template <class T>
constexpr IntegerKernels<T> kTable{.compare = &compare<T>, .sum = &sum<T>, .extreme = &extreme<T>,
                                   .count_nonzero = &count_nonzero<T>};

}  // namespace

template <class T>
const IntegerKernels<T>& integer_kernels() noexcept {
  return kTable<T>;
}
template const IntegerKernels<int64_t>& integer_kernels<int64_t>() noexcept;
template const IntegerKernels<int32_t>& integer_kernels<int32_t>() noexcept;
template const IntegerKernels<uint8_t>& integer_kernels<uint8_t>() noexcept;
template const IntegerKernels<int8_t>& integer_kernels<int8_t>() noexcept;

}  // namespace ember::backend
