// Every SIMD kernel table against the scalar reference, at awkward sizes and on pointers offset
// by one element (so vector loads are unaligned), contiguous, broadcast and strided.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/backend/kernels.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"

namespace ember::backend {
namespace {

const std::vector<int64_t> kSizes = {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 1023, 1025};
// Past the length where loops over two contiguous operands switch to half-width packets
// (Note [Two-stream loops]), with a ragged tail.
constexpr int64_t kLongSize = (int64_t(1) << 17) + 9;
const std::vector<int64_t> kSizesAndLong = [] {
  auto sizes = kSizes;
  sizes.push_back(kLongSize);
  return sizes;
}();

std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (isa_available(isa)) out.push_back(isa);
  return out;
}

// Distance in units in the last place (0 for equal values, both NaN, or equal infinities).
template <class T>
double ulp_distance(T a, T b) {
  if (std::isnan(a) || std::isnan(b)) return (std::isnan(a) && std::isnan(b)) ? 0 : 1e30;
  if (a == b) return 0;
  if (std::isinf(a) || std::isinf(b)) return 1e30;
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  I ia, ib;
  std::memcpy(&ia, &a, sizeof a);
  std::memcpy(&ib, &b, sizeof b);
  if (ia < 0) ia = std::numeric_limits<I>::min() - ia;
  if (ib < 0) ib = std::numeric_limits<I>::min() - ib;
  // The difference in unsigned arithmetic (exact for any two values of I): converting each
  // 64-bit pattern to double first would round them to multiples of 512 or more and hide (or
  // invent) differences of a few ulp.
  using U = std::make_unsigned_t<I>;
  const U diff = ia > ib ? U(U(ia) - U(ib)) : U(U(ib) - U(ia));
  return static_cast<double>(diff);
}

// Inputs covering ordinary values, zeros, large magnitudes and specials.
template <class T>
std::vector<T> test_values(size_t n, unsigned seed, double lo, double hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  const T specials[] = {T(0), -T(0), T(1), T(-1), std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN(),
                        T(80), T(-80), T(700), T(-700), std::numeric_limits<T>::denorm_min(),
                        T(0.5), T(2.5), T(-2.5)};
  for (size_t i = 0; i < n && i < sizeof(specials) / sizeof(T); ++i) v[(i * 7919) % n] = specials[i];
  return v;
}

// GELU's contract where 1 + erf cancels: an absolute error of 2 eps |x| (Note [GELU accuracy]).
template <class T>
bool gelu_close(T ref, T simd, T x) {
  return std::fabs(static_cast<double>(ref) - static_cast<double>(simd)) <=
         2.0 * std::numeric_limits<T>::epsilon() * std::fabs(static_cast<double>(x));
}

// Each kernel's accuracy class and test parameters, from the op table
// (include/ember/ops/op_table.def).
enum class Accuracy { Exact, Ulp4, Ulp4OrCancels };

Accuracy accuracy_of(Unary op) {
  switch (op) {
#define EMBER_UNARY(name, Kernel, Accuracy_, ...) case Unary::Kernel: return Accuracy::Accuracy_;
#define EMBER_UNARY_P1 EMBER_UNARY
#define EMBER_UNARY_P2 EMBER_UNARY
#define EMBER_UNARY_KERNEL(Kernel, Accuracy_, ...) case Unary::Kernel: return Accuracy::Accuracy_;
#include "ember/ops/op_table.def"
    case Unary::Count: break;
  }
  return Accuracy::Exact;
}

Accuracy accuracy_of(Binary op) {
  switch (op) {
#define EMBER_BINARY_KERNEL(Kernel, Accuracy_) case Binary::Kernel: return Accuracy::Accuracy_;
#include "ember/ops/op_table.def"
    case Binary::Count: break;
  }
  return Accuracy::Exact;
}

KernelParams params_for(Unary op) {
  switch (op) {
#define EMBER_UNARY_P1(name, Kernel, Accuracy, Saves, lo, hi, torch, a, a_default, a_test, ...) \
  case Unary::Kernel: return {a_test, 0};
#define EMBER_UNARY_P2(name, Kernel, Accuracy, Saves, lo, hi, torch, a, a_default, a_test, b, \
                       b_default, b_test, ...)                                                \
  case Unary::Kernel: return {a_test, b_test};
#define EMBER_UNARY_KERNEL(Kernel, Accuracy, a_test, b_test) case Unary::Kernel: return {a_test, b_test};
#include "ember/ops/op_table.def"
    default: return {1.75, 0};
  }
}

template <class T>
void check_unary(Isa isa) {
  const auto& ref = kernels_for<T>(Isa::Scalar);
  const auto& simd = kernels_for<T>(isa);
  for (int o = 0; o < static_cast<int>(Unary::Count); ++o) {
    const Unary op = static_cast<Unary>(o);
    const KernelParams p = params_for(op);
    for (int64_t n : kSizes) {
      for (int64_t stride : {1, 2}) {
        auto x = test_values<T>(static_cast<size_t>(n * stride + 2), 11 + unsigned(n), -20, 20);
        std::vector<T> a(static_cast<size_t>(n + 1)), b(static_cast<size_t>(n + 1));
        // Offset by one element: unaligned loads and stores.
        ref.unary(op, p, n, x.data() + 1, stride, a.data() + 1);
        simd.unary(op, p, n, x.data() + 1, stride, b.data() + 1);
        for (int64_t i = 1; i <= n; ++i) {
          const double d = ulp_distance(a[static_cast<size_t>(i)], b[static_cast<size_t>(i)]);
          if (accuracy_of(op) == Accuracy::Exact) {
            ASSERT_EQ(d, 0) << "op " << o << " n " << n << " stride " << stride << " i " << i
                            << " x=" << x[static_cast<size_t>(1 + (i - 1) * stride)];
          } else if (accuracy_of(op) == Accuracy::Ulp4OrCancels) {  // Note [GELU accuracy]
            const T xi = x[static_cast<size_t>(1 + (i - 1) * stride)];
            ASSERT_TRUE(d <= 4 || gelu_close(a[static_cast<size_t>(i)], b[static_cast<size_t>(i)], xi))
                << "gelu n " << n << " x=" << xi << " ref " << a[static_cast<size_t>(i)] << " simd "
                << b[static_cast<size_t>(i)];
          } else {
            ASSERT_LE(d, 4) << "op " << o << " n " << n << " stride " << stride << " i " << i
                            << " x=" << x[static_cast<size_t>(1 + (i - 1) * stride)] << " ref "
                            << a[static_cast<size_t>(i)] << " simd " << b[static_cast<size_t>(i)];
          }
        }
      }
    }
  }
}

template <class T>
void check_binary_compare_where(Isa isa) {
  const auto& ref = kernels_for<T>(Isa::Scalar);
  const auto& simd = kernels_for<T>(isa);
  for (int64_t n : kSizesAndLong) {
    auto a = test_values<T>(static_cast<size_t>(2 * n + 2), 3, -5, 5);
    auto b = test_values<T>(static_cast<size_t>(2 * n + 2), 4, 0.5, 3);
    // The masks select on b's sign: both branches.
    auto signed_b = test_values<T>(static_cast<size_t>(2 * n + 2), 5, -3, 3);
    for (auto [sa, sb] : {std::pair<int64_t, int64_t>{1, 1}, {1, 0}, {0, 1}, {2, 1}, {1, 2}}) {
      for (int o = 0; o < static_cast<int>(Binary::Count); ++o) {
        const auto op = static_cast<Binary>(o);
        const T* pb = (op == Binary::MaskPositive || op == Binary::LeakyMask ? signed_b : b).data() + 1;
        const KernelParams p{0.2, 0};
        std::vector<T> r(static_cast<size_t>(n + 1)), s(static_cast<size_t>(n + 1));
        ref.binary(op, p, n, a.data() + 1, sa, pb, sb, r.data() + 1);
        simd.binary(op, p, n, a.data() + 1, sa, pb, sb, s.data() + 1);
        const double tol = accuracy_of(op) == Accuracy::Exact ? 0 : 4;
        for (int64_t i = 1; i <= n; ++i)
          ASSERT_LE(ulp_distance(r[static_cast<size_t>(i)], s[static_cast<size_t>(i)]), tol)
              << "binary " << o << " n " << n << " i " << i;
      }
      for (int o = 0; o < static_cast<int>(Compare::Count); ++o) {
        std::vector<uint8_t> r(static_cast<size_t>(n + 1)), s(static_cast<size_t>(n + 1));
        ref.compare(static_cast<Compare>(o), n, a.data() + 1, sa, b.data() + 1, sb, r.data() + 1);
        simd.compare(static_cast<Compare>(o), n, a.data() + 1, sa, b.data() + 1, sb, s.data() + 1);
        ASSERT_EQ(r, s) << "compare " << o << " n " << n;
      }
      std::vector<uint8_t> c(static_cast<size_t>(2 * n + 2));
      for (size_t i = 0; i < c.size(); ++i) c[i] = (i * 37 % 5) < 2;
      std::vector<T> r(static_cast<size_t>(n + 1)), s(static_cast<size_t>(n + 1));
      ref.where(n, c.data() + 1, sa, a.data() + 1, sa, b.data() + 1, sb, r.data() + 1);
      simd.where(n, c.data() + 1, sa, a.data() + 1, sa, b.data() + 1, sb, s.data() + 1);
      for (int64_t i = 1; i <= n; ++i)
        ASSERT_EQ(ulp_distance(r[static_cast<size_t>(i)], s[static_cast<size_t>(i)]), 0);
    }
  }
}

template <class T>
void check_reductions(Isa isa) {
  const auto& ref = kernels_for<T>(Isa::Scalar);
  const auto& simd = kernels_for<T>(isa);
  for (int64_t n : kSizes) {
    for (int64_t stride : {1, 3}) {
      std::mt19937 rng(static_cast<unsigned>(n));
      std::uniform_real_distribution<double> dist(0.5, 1.5);
      std::vector<T> x(static_cast<size_t>(n * stride + 2));
      for (auto& v : x) v = static_cast<T>(dist(rng));
      for (int o = 0; o < static_cast<int>(Reduce::Count); ++o) {
        const Reduce op = static_cast<Reduce>(o);
        if (op == Reduce::Prod && n > 100) continue;  // overflows to inf in float
        T r = ref.reduce(op, n, x.data() + 1, stride);
        T s = simd.reduce(op, n, x.data() + 1, stride);
        if (op == Reduce::Max || op == Reduce::Min) {
          ASSERT_EQ(r, s) << "reduce " << o << " n " << n;
        } else {
          ASSERT_NEAR(r, s, (sizeof(T) == 4 ? 1e-5 : 1e-12) * std::max<double>(1.0, std::fabs(r)))
              << "reduce " << o << " n " << n;
        }
        std::vector<T> acc_r(static_cast<size_t>(n + 1), T(0.25)), acc_s = acc_r;
        ref.accumulate(op, n, x.data() + 1, stride, acc_r.data() + 1);
        simd.accumulate(op, n, x.data() + 1, stride, acc_s.data() + 1);
        ASSERT_EQ(acc_r, acc_s) << "accumulate " << o << " n " << n;
      }
      if (n > 0) {
        x[static_cast<size_t>(1 + (n / 2) * stride)] = T(7);  // a unique max
        EXPECT_EQ(ref.arg_reduce(true, n, x.data() + 1, stride),
                  simd.arg_reduce(true, n, x.data() + 1, stride));
        EXPECT_EQ(ref.arg_reduce(false, n, x.data() + 1, stride),
                  simd.arg_reduce(false, n, x.data() + 1, stride));
        x[static_cast<size_t>(1 + (n - 1) * stride)] = std::numeric_limits<T>::quiet_NaN();
        EXPECT_EQ(simd.arg_reduce(true, n, x.data() + 1, stride), n - 1);
        EXPECT_TRUE(std::isnan(simd.reduce(Reduce::Max, n, x.data() + 1, stride)));
      }
    }
  }
  // accumulate over a long contiguous run takes the half-width path (Note [Two-stream loops]).
  const auto x = test_values<T>(static_cast<size_t>(kLongSize + 1), 9, 0.5, 1.5);
  for (int o = 0; o < static_cast<int>(Reduce::Count); ++o) {
    std::vector<T> acc_r(static_cast<size_t>(kLongSize + 1), T(0.25)), acc_s = acc_r;
    ref.accumulate(static_cast<Reduce>(o), kLongSize, x.data() + 1, 1, acc_r.data() + 1);
    simd.accumulate(static_cast<Reduce>(o), kLongSize, x.data() + 1, 1, acc_s.data() + 1);
    for (size_t i = 0; i < acc_r.size(); ++i)
      ASSERT_EQ(ulp_distance(acc_r[i], acc_s[i]), 0) << "accumulate " << o << " at " << i;
  }
}

// One strided product C = 1.5 op(A) op(B) + beta C on pointers offset by one element, rows
// padded past their ends. C starts random, or NaN for beta == 0 (which must not read it).
template <class T>
struct GemmCase {
  int64_t m, n, k;
  bool ta, tb;
  T beta;
  int64_t lda, ldb, ldc;
  std::vector<T> a, b, c;

  GemmCase(int64_t m_, int64_t n_, int64_t k_, bool ta_, bool tb_, T beta_, std::mt19937& rng)
      : m(m_), n(n_), k(k_), ta(ta_), tb(tb_), beta(beta_),
        lda((ta ? m : k) + 3), ldb((tb ? k : n) + 1), ldc(n + 2) {
    std::uniform_real_distribution<double> dist(-1, 1);
    a.resize(static_cast<size_t>((ta ? k : m) * lda + 1));
    b.resize(static_cast<size_t>((tb ? n : k) * ldb + 1));
    c.resize(static_cast<size_t>(m * ldc + 1));
    for (auto& v : a) v = static_cast<T>(dist(rng));
    for (auto& v : b) v = static_cast<T>(dist(rng));
    for (auto& v : c) v = beta == T(0) ? std::numeric_limits<T>::quiet_NaN() : T(dist(rng));
  }

  /// C after the product with the given kernels (C itself is left as it was).
  std::vector<T> run(const Kernels<T>& kt) const {
    std::vector<T> out = c;
    kt.gemm(ta, tb, m, n, k, T(1.5), a.data() + 1, lda, b.data() + 1, ldb, beta, out.data() + 1, ldc);
    return out;
  }

  std::string name() const {
    return "gemm m" + std::to_string(m) + " n" + std::to_string(n) + " k" + std::to_string(k) +
           " ta" + std::to_string(ta) + " tb" + std::to_string(tb);
  }

  /// want and got agree to the summation tolerance on C, and exactly (NaN included) elsewhere.
  void expect_close(const std::vector<T>& want, const std::vector<T>& got) const {
    const double tol = (sizeof(T) == 4 ? 1e-5 : 1e-13) * static_cast<double>(k + 1) * 4;
    for (size_t at = 0; at < want.size(); ++at) {
      const int64_t i = (static_cast<int64_t>(at) - 1) / ldc, j = (static_cast<int64_t>(at) - 1) % ldc;
      if (at > 0 && i < m && j < n) {
        ASSERT_NEAR(want[at], got[at], tol) << name() << " (" << i << "," << j << ")";
      } else {
        ASSERT_EQ(ulp_distance(want[at], got[at]), 0) << name() << ": wrote outside C at " << at;
      }
    }
  }
};

template <class T>
void check_gemm(Isa isa) {
  std::mt19937 rng(5);
  const int64_t dims[][3] = {{0, 3, 4}, {1, 1, 1}, {7, 9, 5}, {17, 33, 15}, {64, 64, 64},
                             {31, 1025, 3}, {100, 17, 257}, {3, 5, 0}};
  for (auto& d : dims)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (T beta : {T(0), T(0.5)}) {
          const GemmCase<T> g(d[0], d[1], d[2], ta, tb, beta, rng);
          g.expect_close(g.run(kernels_for<T>(Isa::Scalar)), g.run(kernels_for<T>(isa)));
        }
}

TEST(Kernels, DispatchPicksAnAvailableIsa) {
  EXPECT_TRUE(isa_available(Isa::Scalar));
  EXPECT_TRUE(isa_available(best_isa()));
  EXPECT_TRUE(isa_available(kernels<float>().isa));
  EXPECT_EQ(kernels_for<float>(Isa::Scalar).isa, Isa::Scalar);
  EXPECT_STREQ(isa_name(), isa_name(kernels<float>().isa));
  EXPECT_STREQ(isa_name(Isa::Neon), "neon");
#if defined(__aarch64__)
  EXPECT_TRUE(isa_available(Isa::Neon));  // part of every ARMv8-A CPU
#else
  EXPECT_FALSE(isa_available(Isa::Neon));
  EXPECT_THROW(kernels_for<float>(Isa::Neon), ember::ValueError);
#endif
}

TEST(Kernels, UnaryMatchesScalar) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_unary<float>(isa);
    check_unary<double>(isa);
  }
}

// Exact GELU and erf densely over the range where their vector paths switch pieces (the erf
// split at 0.875, saturation at kErfSat) and GELU's cancelling negative side.
template <class T>
void check_gelu_erf_dense(Isa isa) {
  const auto& ref = kernels_for<T>(Isa::Scalar);
  const auto& simd = kernels_for<T>(isa);
  const int64_t n = 200001;
  std::vector<T> x(static_cast<size_t>(n)), a(x.size()), b(x.size());
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = static_cast<T>(-10.0 + 20.0 * double(i) / double(n - 1));
  for (Unary op : {Unary::Gelu, Unary::Erf}) {
    ref.unary(op, {}, n, x.data(), 1, a.data());
    simd.unary(op, {}, n, x.data(), 1, b.data());
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_TRUE(ulp_distance(a[i], b[i]) <= 4 || (op == Unary::Gelu && gelu_close(a[i], b[i], x[i])))
          << (op == Unary::Gelu ? "gelu" : "erf") << " x=" << x[i] << " ref " << a[i] << " simd " << b[i];
  }
}

TEST(Kernels, GeluAndErfMatchScalarDensely) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_gelu_erf_dense<float>(isa);
    check_gelu_erf_dense<double>(isa);
  }
}

TEST(Kernels, BinaryCompareWhereMatchScalar) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_binary_compare_where<float>(isa);
    check_binary_compare_where<double>(isa);
  }
}

TEST(Kernels, ReductionsMatchScalar) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_reductions<float>(isa);
    check_reductions<double>(isa);
  }
}

TEST(Kernels, GemmMatchesScalar) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_gemm<float>(isa);
    check_gemm<double>(isa);
  }
}

// Products big enough for the blocked path and for threads (work >= 192^3): B read in place
// with a ragged last panel, B packed in several NC blocks, k in several KC slices, few rows with
// many columns. On 2 threads rows are shared out with stealing, or columns split; the result
// must not depend on the thread count.
template <class T>
void check_blocked_gemm(Isa isa) {
  std::mt19937 rng(7);
  // Rows that leave the blocked path a short last tile, which shares the rows of the tile before
  // it (300, 29, 16), ones that do not, and a lean-path product (15 rows).
  const int64_t dims[][3] = {{300, 200, 130}, {150, 1100, 50}, {120, 100, 1200}, {29, 700, 400},
                             {16, 300, 500},  {15, 40, 60}};
  const int threads_before = get_num_threads();
  for (auto& d : dims)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const GemmCase<T> g(d[0], d[1], d[2], ta, tb, ta ? T(0.5) : T(0), rng);
        const auto want = g.run(kernels_for<T>(Isa::Scalar));
        set_num_threads(1);
        const auto one = g.run(kernels_for<T>(isa));
        set_num_threads(2);
        const auto two = g.run(kernels_for<T>(isa));
        g.expect_close(want, one);
        for (size_t at = 0; at < one.size(); ++at)
          ASSERT_EQ(ulp_distance(one[at], two[at]), 0) << "1 vs 2 threads: " << g.name() << " at " << at;
      }
  set_num_threads(threads_before);
}

TEST(Kernels, BlockedAndThreadedGemmMatchScalar) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_blocked_gemm<float>(isa);
    check_blocked_gemm<double>(isa);
  }
}

TEST(Kernels, ScalarGemmMatchesNaiveProduct) {
  const auto& ref = kernels_for<double>(Isa::Scalar);
  const int64_t m = 5, n = 7, k = 3;
  std::vector<double> a(m * k), b(k * n), c(m * n, 1.0);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5 * static_cast<double>(i) - 2;
  for (size_t i = 0; i < b.size(); ++i) b[i] = 1.0 - 0.25 * static_cast<double>(i);
  ref.gemm(false, false, m, n, k, 2.0, a.data(), k, b.data(), n, 3.0, c.data(), n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double expect = 3.0;
      for (int64_t p = 0; p < k; ++p) expect += 2.0 * a[i * k + p] * b[p * n + j];
      EXPECT_DOUBLE_EQ(c[i * n + j], expect);
    }
}

// Convolution lowering: the scalar kernels against the definition, the SIMD ones against the
// scalar (bit-identical: they copy, and add each column once in the same order). The shapes
// cover the flat-tap path (unit strides, wo == w, with and without dilation), the unpadded-rows
// path (unit strides, no column padding, with and without row padding), strides, rows and
// columns entirely in the padding, and long rows.
std::vector<ConvShape> conv_shapes() {
  // c, h, w, kh, kw, stride h/w, pad h/w, dilation h/w; padding is symmetric here.
  const int64_t g[][11] = {{2, 5, 7, 3, 3, 1, 1, 1, 1, 1, 1}, {3, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1},
                           {1, 6, 9, 5, 5, 1, 1, 0, 0, 1, 1}, {2, 7, 7, 3, 3, 1, 1, 2, 2, 2, 2},
                           {2, 4, 37, 1, 3, 1, 1, 0, 1, 1, 1}, {1, 3, 3, 3, 3, 1, 1, 2, 2, 1, 1},
                           {2, 9, 10, 2, 3, 3, 2, 1, 0, 1, 2}, {4, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1},
                           {3, 16, 16, 1, 1, 2, 2, 0, 0, 1, 1}, {2, 6, 70, 3, 3, 2, 2, 1, 1, 1, 1},
                           {1, 4, 67, 1, 2, 1, 2, 0, 0, 1, 1}, {2, 6, 9, 3, 3, 1, 1, 1, 0, 1, 1},
                           {1, 8, 10, 2, 2, 1, 1, 1, 0, 2, 2}, {1, 12, 28, 5, 5, 1, 1, 0, 0, 1, 1},
                           // flat taps on rows of whole vectors, vectors of whole rows, run
                           // tails, dilation and wide kernels
                           {2, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1}, {3, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1},
                           {1, 16, 16, 3, 3, 1, 1, 2, 2, 2, 2}, {1, 5, 48, 3, 5, 1, 1, 1, 2, 1, 1},
                           {1, 8, 8, 5, 5, 1, 1, 2, 2, 1, 1}, {1, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1},
                           {1, 3, 16, 1, 17, 1, 1, 0, 8, 1, 1},
                           // stride-2 columns by phases: DCGAN's k4 p1 on odd and even planes
                           // (rows of 3 and 7 values), padding past a whole phase, and a plane
                           // too large for the phase buffer
                           {2, 7, 7, 4, 4, 2, 2, 1, 1, 1, 1}, {2, 14, 14, 4, 4, 2, 2, 1, 1, 1, 1},
                           {1, 11, 13, 3, 5, 1, 2, 2, 3, 1, 2}, {1, 40, 200, 3, 3, 2, 2, 1, 1, 1, 1},
                           // rows split by whole packets and a masked one, unit row stride with
                           // dilation, row padding past a stride, rows of half a packet or less
                           {1, 6, 33, 3, 3, 2, 2, 1, 1, 1, 1}, {2, 5, 32, 4, 4, 2, 2, 1, 1, 1, 1},
                           {1, 9, 12, 3, 3, 1, 2, 2, 1, 2, 1}, {1, 4, 6, 5, 3, 3, 2, 3, 0, 1, 1},
                           {3, 8, 9, 3, 3, 2, 2, 1, 1, 1, 1},
                           // unpadded columns (Note [Unpadded rows]): rows of half a packet in
                           // an odd count, of one, two, two and a half, three and five packets,
                           // with row padding and dilation
                           {3, 11, 12, 5, 5, 1, 1, 0, 0, 1, 1}, {2, 7, 20, 3, 5, 1, 1, 0, 0, 1, 1},
                           {1, 5, 34, 3, 3, 1, 1, 0, 0, 1, 1}, {1, 6, 44, 2, 5, 1, 1, 1, 0, 1, 1},
                           {1, 4, 52, 2, 3, 1, 1, 0, 0, 1, 2}, {2, 5, 44, 3, 5, 1, 1, 2, 0, 2, 1},
                           // planes to one pixel: kernel as large as the plane, with padding,
                           // strided and dilated
                           {3, 4, 4, 4, 4, 1, 1, 0, 0, 1, 1}, {2, 2, 2, 4, 4, 1, 1, 1, 1, 1, 1},
                           {1, 5, 5, 2, 2, 4, 4, 0, 0, 4, 4}, {2, 4, 4, 4, 4, 2, 2, 0, 0, 1, 1}};
  std::vector<ConvShape> out;
  for (auto& v : g) {
    ConvShape s{v[0], v[1], v[2], v[3], v[4], 0, 0, v[5], v[6], v[7], v[8], v[9], v[10]};
    s.ho = (s.h + 2 * s.pad_h - s.dil_h * (s.kh - 1) - 1) / s.stride_h + 1;
    s.wo = (s.w + 2 * s.pad_w - s.dil_w * (s.kw - 1) - 1) / s.stride_w + 1;
    out.push_back(s);
  }
  return out;
}

// Calls f(col, pixel) for every entry of the columns, by the definition: pixel is the index of
// the input element the entry copies, or -1 where the tap falls in the padding.
template <class F>
void for_each_column_entry(const ConvShape& s, F f) {
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        for (int64_t oh = 0; oh < s.ho; ++oh)
          for (int64_t ow = 0; ow < s.wo; ++ow) {
            const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h, iw = ow * s.stride_w - s.pad_w + j * s.dil_w;
            const bool in = ih >= 0 && ih < s.h && iw >= 0 && iw < s.w;
            f(static_cast<size_t>((((c * s.kh + i) * s.kw + j) * s.ho + oh) * s.wo + ow),
              in ? (c * s.h + ih) * s.w + iw : int64_t(-1));
          }
}

template <class T>
void check_conv_lowering(Isa isa) {
  const auto& ref = kernels_for<T>(Isa::Scalar);
  const auto& k = kernels_for<T>(isa);
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (const ConvShape& s : conv_shapes()) {
    SCOPED_TRACE(::testing::Message() << "c" << s.c << " " << s.h << "x" << s.w << " k" << s.kh << "x" << s.kw
                                      << " s" << s.stride_h << "," << s.stride_w << " p" << s.pad_h << ","
                                      << s.pad_w << " d" << s.dil_h << "," << s.dil_w);
    std::vector<T> x(static_cast<size_t>(s.c * s.h * s.w));
    for (auto& v : x) v = static_cast<T>(dist(rng));
    // The rows of cols lie ld apart, 3 more than a row holds: what lies between them is neither
    // written by im2col nor read by col2im.
    const int64_t hw = s.ho * s.wo, ld = hw + 3, rows = s.c * s.kh * s.kw;
    const size_t ncols = static_cast<size_t>(rows * ld);
    auto at = [&](size_t col) { return static_cast<size_t>(static_cast<int64_t>(col) / hw * ld) + col % static_cast<size_t>(hw); };
    // Poisoned outputs: every element must be written.
    std::vector<T> cols(ncols, std::numeric_limits<T>::quiet_NaN());
    k.im2col(s, x.data(), cols.data(), ld);
    std::vector<T> expect(ncols, std::numeric_limits<T>::quiet_NaN());
    for_each_column_entry(s, [&](size_t col, int64_t pixel) {
      expect[at(col)] = pixel >= 0 ? x[static_cast<size_t>(pixel)] : T(0);
    });
    for (size_t i = 0; i < ncols; ++i) {
      if (std::isnan(expect[i])) {
        ASSERT_TRUE(std::isnan(cols[i])) << "im2col wrote between rows, element " << i;
      } else {
        ASSERT_EQ(cols[i], expect[i]) << "im2col element " << i;
      }
    }

    // col2im is the adjoint: <im2col(x), g> == <x, col2im(g)> term by term; checked against the
    // definition (accumulating onto a non-zero x) and the SIMD result against the scalar one.
    std::vector<T> g(ncols);
    for (auto& v : g) v = static_cast<T>(dist(rng));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = hw; i < ld; ++i) g[static_cast<size_t>(r * ld + i)] = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> base(x.size());
    for (auto& v : base) v = static_cast<T>(dist(rng));
    std::vector<T> want = base;
    for_each_column_entry(s, [&](size_t col, int64_t pixel) {
      if (pixel >= 0) want[static_cast<size_t>(pixel)] += g[at(col)];
    });
    std::vector<T> got_ref = base, got = base, g_ref = g, g_simd = g;  // cols is scratch
    ref.col2im(s, g_ref.data(), got_ref.data(), ld);
    k.col2im(s, g_simd.data(), got.data(), ld);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(got_ref[i], want[i], sizeof(T) == 4 ? 1e-5 : 1e-13) << "col2im element " << i;
      ASSERT_EQ(got[i], got_ref[i]) << "col2im element " << i;
    }
  }
}

// Batch-norm loops: centered_sums against double sums of the definition (both forms, added to
// what *s1 and *s2 hold), affine2 bit-identical to the scalar reference, with and without b.
template <class T>
void check_channel_kernels(Isa isa) {
  const auto& ref = kernels_for<T>(Isa::Scalar);
  const auto& k = kernels_for<T>(isa);
  for (int64_t n : kSizes) {
    auto x = test_values<T>(static_cast<size_t>(n + 1), 31 + unsigned(n), -3, 5);
    auto y = test_values<T>(static_cast<size_t>(n + 1), 37 + unsigned(n), -2, 2);
    for (auto* v : {&x, &y})
      for (auto& e : *v)
        if (!std::isfinite(e) || std::fabs(e) > 100) e = T(0.25);
    const T c = T(0.75);
    double want1 = 1, want2 = 2, dy1 = 1, dy2 = 2;
    for (int64_t i = 1; i <= n; ++i) {
      const double d = double(x[size_t(i)]) - double(c);
      want1 += d;
      want2 += d * d;
      dy1 += double(y[size_t(i)]);
      dy2 += double(y[size_t(i)]) * d;
    }
    double s1 = 1, s2 = 2, g1 = 1, g2 = 2;
    k.centered_sums(n, x.data() + 1, c, nullptr, &s1, &s2);
    k.centered_sums(n, x.data() + 1, c, y.data() + 1, &g1, &g2);
    const double tol = (sizeof(T) == 4 ? 1e-5 : 1e-12) * double(n + 1) * 10;
    EXPECT_NEAR(s1, want1, tol) << n;
    EXPECT_NEAR(s2, want2, tol) << n;
    EXPECT_NEAR(g1, dy1, tol) << n;
    EXPECT_NEAR(g2, dy2, tol) << n;

    std::vector<T> a(static_cast<size_t>(n + 1)), b(a.size()), a2(a.size()), b2(a.size());
    ref.affine2(n, x.data() + 1, T(1.5), nullptr, T(0), T(-0.25), a.data() + 1);
    k.affine2(n, x.data() + 1, T(1.5), nullptr, T(0), T(-0.25), b.data() + 1);
    ref.affine2(n, x.data() + 1, T(1.5), y.data() + 1, T(-0.5), T(0.125), a2.data() + 1);
    k.affine2(n, x.data() + 1, T(1.5), y.data() + 1, T(-0.5), T(0.125), b2.data() + 1);
    for (int64_t i = 1; i <= n; ++i) {
      ASSERT_EQ(a[size_t(i)], b[size_t(i)]) << "affine2 n " << n << " i " << i;
      ASSERT_EQ(a2[size_t(i)], b2[size_t(i)]) << "affine2 with b, n " << n << " i " << i;
      ASSERT_EQ(a2[size_t(i)], x[size_t(i)] * T(1.5) + y[size_t(i)] * T(-0.5) + T(0.125));
    }
  }
}

TEST(Kernels, ChannelKernelsMatchDefinitionAndScalar) {
  check_channel_kernels<float>(Isa::Scalar);
  check_channel_kernels<double>(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_channel_kernels<float>(isa);
    check_channel_kernels<double>(isa);
  }
}

// ---- The table itself (Note [Kernel table by name]) ------------------------------------------------

template <class T>
bool has_entry(const Kernels<T>& t, Entry e) {
  switch (e) {
#define EMBER_ENTRY_PRESENT(name) \
  case Entry::name: return t.name != nullptr;
    EMBER_KERNEL_ENTRIES(EMBER_ENTRY_PRESENT)
#undef EMBER_ENTRY_PRESENT
    case Entry::Count: break;
  }
  return false;
}

template <class T>
void check_table(Isa isa) {
  const Kernels<T>& k = kernels_for<T>(isa);
  EXPECT_EQ(k.isa, isa);
  for (unsigned i = 0; i < static_cast<unsigned>(Entry::Count); ++i) {
    const Entry e = static_cast<Entry>(i);
    SCOPED_TRACE(entry_name(e));
    if (entry_optional(e)) {
      EXPECT_EQ(k.supports(e), has_entry(k, e));
    } else {
      EXPECT_TRUE(has_entry(k, e));
      EXPECT_TRUE(k.supports(e));  // every CPU table implements every entry itself today
    }
  }
  // A table that leaves entries out borrows them from the reference and says so.
  Kernels<T> partial = kernels_for<T>(Isa::Scalar);
  partial.gemm = nullptr;
  partial.adam_step = nullptr;
  partial.conv_flat = nullptr;
  const Kernels<T> done = complete_with(partial, k);
  EXPECT_EQ(done.gemm, k.gemm);
  EXPECT_EQ(done.adam_step, k.adam_step);
  EXPECT_EQ(done.unary, kernels_for<T>(Isa::Scalar).unary);
  EXPECT_FALSE(done.supports(Entry::gemm));
  EXPECT_FALSE(done.supports(Entry::adam_step));
  EXPECT_TRUE(done.supports(Entry::unary));
  EXPECT_EQ(done.supports(Entry::conv_flat), false);
  EXPECT_EQ(done.conv_flat, k.conv_flat);
}

TEST(Kernels, TablesAreCompleteAndSayWhatTheySupport) {
  EXPECT_STREQ(entry_name(Entry::gemm), "gemm");
  EXPECT_STREQ(entry_name(Entry::adam_step), "adam_step");
  EXPECT_TRUE(entry_optional(Entry::conv_flat));
  EXPECT_FALSE(entry_optional(Entry::max_pool2d));
  check_table<float>(Isa::Scalar);
  check_table<double>(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_table<float>(isa);
    check_table<double>(isa);
  }
}

// ---- Batch norm's channel passes ------------------------------------------------------------------

// channel_sums and channel_affine are, by definition, the per-plane kernels applied plane by plane.
template <class T>
void check_channel_passes(Isa isa) {
  const auto& k = kernels_for<T>(isa);
  const auto& ref = kernels_for<T>(Isa::Scalar);
  for (int64_t inner : {1, 7, 17, 64}) {
    SCOPED_TRACE(::testing::Message() << "inner " << inner);
    const int64_t n = 3, c = 5, planes = n * c;
    auto x = test_values<T>(static_cast<size_t>(planes * inner), 41 + unsigned(inner), -3, 5);
    auto y = test_values<T>(x.size(), 43 + unsigned(inner), -2, 2);
    for (auto* v : {&x, &y})
      for (auto& e : *v)
        if (!std::isfinite(e) || std::fabs(e) > 100) e = T(0.5);
    std::vector<T> center(static_cast<size_t>(c)), alpha(center.size()), beta(center.size()), gamma(center.size());
    for (int64_t ch = 0; ch < c; ++ch) {
      center[size_t(ch)] = T(0.25) * T(ch);
      alpha[size_t(ch)] = T(1.5) - T(ch);
      beta[size_t(ch)] = T(0.125) * T(ch + 1);
      gamma[size_t(ch)] = T(-0.5) + T(ch);
    }
    for (const T* cen : {static_cast<const T*>(nullptr), static_cast<const T*>(center.data())}) {
      for (const T* yy : {static_cast<const T*>(nullptr), static_cast<const T*>(y.data())}) {
        if (cen == nullptr && yy != nullptr) continue;
        std::vector<double> got(static_cast<size_t>(2 * c), 1.0), want = got, scalar = got;
        k.channel_sums(n, c, inner, x.data(), cen, yy, got.data());
        ref.channel_sums(n, c, inner, x.data(), cen, yy, scalar.data());
        for (int64_t i = 0; i < n; ++i)
          for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t off = (i * c + ch) * inner;
            if (cen == nullptr) {
              want[size_t(2 * ch)] += k.reduce(Reduce::Sum, inner, x.data() + off, 1);
            } else {
              k.centered_sums(inner, x.data() + off, cen[ch], yy ? yy + off : nullptr, &want[size_t(2 * ch)],
                              &want[size_t(2 * ch + 1)]);
            }
          }
        EXPECT_EQ(got, want);
        for (size_t i = 0; i < got.size(); ++i)
          EXPECT_NEAR(got[i], scalar[i], (sizeof(T) == 4 ? 1e-4 : 1e-11) * (1 + std::fabs(scalar[i])));
      }
    }
    // Planes 4 .. 12 (a run starting mid-sample), with and without the b term.
    const int64_t first = 4, count = 9;
    for (bool with_b : {false, true}) {
      std::vector<T> got(x.size(), T(7)), want = got, scalar = got;
      const size_t off = size_t(first * inner);
      k.channel_affine(count, first, c, inner, x.data() + off, alpha.data(), with_b ? y.data() + off : nullptr,
                       with_b ? beta.data() : nullptr, gamma.data(), got.data() + off);
      ref.channel_affine(count, first, c, inner, x.data() + off, alpha.data(), with_b ? y.data() + off : nullptr,
                         with_b ? beta.data() : nullptr, gamma.data(), scalar.data() + off);
      for (int64_t p = first; p < first + count; ++p) {
        const size_t ch = size_t(p % c), po = size_t(p * inner);
        k.affine2(inner, x.data() + po, alpha[ch], with_b ? y.data() + po : nullptr, with_b ? beta[ch] : T(0),
                  gamma[ch], want.data() + po);
      }
      EXPECT_EQ(got, want);
      EXPECT_EQ(got, scalar);  // affine2 is bit-identical across ISAs
    }
  }
}

TEST(Kernels, ChannelPassesArePlaneKernelsPlaneByPlane) {
  check_channel_passes<float>(Isa::Scalar);
  check_channel_passes<double>(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_channel_passes<float>(isa);
    check_channel_passes<double>(isa);
  }
}

// ---- General max pooling, scatter-add ---------------------------------------------------------------

template <class T>
void check_max_pool2d(Isa isa) {
  const auto& k = kernels_for<T>(isa);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(0, 4);
  // h, w, kh, kw, stride, pad, dilation
  const std::array<int64_t, 7> cases[] = {{5, 7, 3, 3, 1, 1, 1}, {8, 9, 3, 2, 2, 1, 1}, {9, 9, 3, 3, 2, 0, 2},
                                          {4, 11, 2, 4, 3, 1, 1}, {6, 6, 1, 1, 1, 0, 1}, {7, 5, 5, 5, 2, 2, 1}};
  for (const auto& cs : cases) {
    const auto [h, w, kh, kw, st, pad, dil] = cs;
    SCOPED_TRACE(::testing::Message() << h << "x" << w << " k " << kh << "x" << kw << " s " << st << " p " << pad
                                      << " d " << dil);
    const int64_t ho = (h + 2 * pad - dil * (kh - 1) - 1) / st + 1, wo = (w + 2 * pad - dil * (kw - 1) - 1) / st + 1;
    const PoolShape s{h, w, ho, wo, kh, kw, st, st, pad, pad, dil, dil};
    const int64_t planes = 2;
    std::vector<T> x(static_cast<size_t>(planes * h * w));
    for (auto& v : x) v = static_cast<T>(small(rng));
    for (size_t i = 3; i < x.size(); i += 29) x[i] = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> y(static_cast<size_t>(planes * ho * wo));
    std::vector<int64_t> idx(y.size(), -1);
    k.max_pool2d(s, planes, x.data(), y.data(), idx.data());
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          // The definition: the window in row-major order, inside the plane; the first NaN, else
          // the first of the largest.
          int64_t want = -1;
          bool nan = false;
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t r = oh * st - pad + i * dil, q = ow * st - pad + j * dil;
              if (r < 0 || r >= h || q < 0 || q >= w) continue;
              const int64_t at = r * w + q;
              const T v = x[size_t(p * h * w + at)];
              if (nan) continue;
              if (std::isnan(v)) {
                want = at;
                nan = true;
              } else if (want < 0 || v > x[size_t(p * h * w + want)]) {
                want = at;
              }
            }
          const size_t o = size_t((p * ho + oh) * wo + ow);
          ASSERT_EQ(idx[o], want) << "plane " << p << " output " << oh << ", " << ow;
          const T v = x[size_t(p * h * w + want)];
          if (std::isnan(v)) {
            ASSERT_TRUE(std::isnan(y[o]));
          } else {
            ASSERT_EQ(y[o], v);
          }
        }
  }
}

template <class T>
void check_index_accumulate(Isa isa) {
  const auto& k = kernels_for<T>(isa);
  const std::vector<int64_t> idx = {3, 0, 3, 5, 1, 3, 0};  // repeats add up in order
  const std::vector<T> src = {T(1), T(-9), T(2), T(-9), T(4), T(-9), T(8), T(-9), T(16), T(-9), T(32), T(-9),
                              T(64)};
  std::vector<T> dst(6, T(0.5));
  k.index_accumulate(int64_t(idx.size()), idx.data(), src.data(), 2, dst.data());
  EXPECT_EQ(dst, (std::vector<T>{T(0.5 + 2 + 64), T(0.5 + 16), T(0.5), T(0.5 + 1 + 4 + 32), T(0.5), T(0.5 + 8)}));
}

// Sparse times dense on rows of every length (none, one, unequal neighbours) and every column
// count around the pack widths, with values spanning 2^-20 .. 2^20 so that any change in the order
// of a sum changes its bits: the definition evaluated here in T, and the same bits on every ISA.
template <class T>
void check_csr_mm(Isa isa) {
  const auto& k = kernels_for<T>(isa);
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> mantissa(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-20, 20);
  const int64_t m = 13, kdim = 37;
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> cols;
  std::vector<T> values;
  for (int64_t r = 0; r < m; ++r) {
    const int64_t len = r == 2 ? 0 : (r == 5 ? 1 : static_cast<int64_t>(rng() % 30));
    for (int64_t t = 0; t < len; ++t) {
      cols.push_back(static_cast<int32_t>(rng() % kdim));  // repeats allowed: the sum still has its order
      values.push_back(static_cast<T>(std::ldexp(mantissa(rng), exponent(rng))));
    }
    offsets.push_back(static_cast<int64_t>(cols.size()));
  }
  for (int64_t n : {1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 64, 67}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const int64_t ldb = n + 3, ldc = n + 2;
    std::vector<T> b(static_cast<size_t>(kdim * ldb));
    for (T& v : b) v = static_cast<T>(std::ldexp(mantissa(rng), exponent(rng)));
    std::vector<T> c(static_cast<size_t>(m * ldc), T(-7)), want = c;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t i = 0; i < n; ++i) {
        T sum = 0;
        for (int64_t j = offsets[static_cast<size_t>(r)]; j < offsets[static_cast<size_t>(r) + 1]; ++j) {
          const T product = values[static_cast<size_t>(j)] * b[static_cast<size_t>(cols[static_cast<size_t>(j)] * ldb + i)];
          sum = sum + product;
        }
        want[static_cast<size_t>(r * ldc + i)] = sum;
      }
    ASSERT_TRUE(k.csr_mm(m, n, kdim, offsets.data(), cols.data(), values.data(), b.data(), ldb, c.data(), ldc));
    ASSERT_EQ(c, want);  // the -7 between rows untouched as well
    // A range of rows alone: offsets index from the arrays' starts.
    std::vector<T> part(static_cast<size_t>(4 * ldc), T(-7));
    ASSERT_TRUE(k.csr_mm(4, n, kdim, offsets.data() + 6, cols.data(), values.data(), b.data(), ldb, part.data(), ldc));
    // A column index outside [0, k) is reported, and nothing past b is read (ASan's watch).
    std::vector<int32_t> broken = cols;
    broken[broken.size() / 2] = static_cast<int32_t>(kdim);
    EXPECT_FALSE(k.csr_mm(m, n, kdim, offsets.data(), broken.data(), values.data(), b.data(), ldb, c.data(), ldc));
    broken[broken.size() / 2] = -1;
    EXPECT_FALSE(k.csr_mm(m, n, kdim, offsets.data(), broken.data(), values.data(), b.data(), ldb, c.data(), ldc));
    ASSERT_TRUE(std::equal(part.begin(), part.end(), want.begin() + 6 * ldc));
  }
}

TEST(Kernels, SparseTimesDenseMatchesItsDefinitionOnEveryIsa) {
  std::vector<Isa> isas = simd_isas();
  isas.insert(isas.begin(), Isa::Scalar);
  for (Isa isa : isas) {
    SCOPED_TRACE(isa_name(isa));
    check_csr_mm<float>(isa);
    check_csr_mm<double>(isa);
  }
}

TEST(Kernels, MaxPoolAndScatterAddMatchTheirDefinitions) {
  std::vector<Isa> isas = simd_isas();
  isas.insert(isas.begin(), Isa::Scalar);
  for (Isa isa : isas) {
    SCOPED_TRACE(isa_name(isa));
    check_max_pool2d<float>(isa);
    check_max_pool2d<double>(isa);
    check_index_accumulate<float>(isa);
    check_index_accumulate<double>(isa);
  }
}

// ---- Fused optimizer steps ----------------------------------------------------------------------------

// The steps against their formulas evaluated here in T, one rounding per operation (this file is
// compiled without FMA contraction targets), at every tail length: bit for bit on every ISA.
template <class T>
void check_optimizer_steps(Isa isa) {
  const auto& k = kernels_for<T>(isa);
  for (int64_t n : kSizes) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    auto p0 = test_values<T>(static_cast<size_t>(n), 51 + unsigned(n), -2, 2);
    auto g = test_values<T>(p0.size(), 53 + unsigned(n), -1, 1);
    auto b0 = test_values<T>(p0.size(), 57 + unsigned(n), -1, 1);
    for (auto* v : {&p0, &g, &b0})
      for (auto& e : *v)
        if (!std::isfinite(e) || std::fabs(e) > 10) e = T(0.25);
    for (bool nesterov : {false, true}) {
      const SgdStep c{0.9, 0.75, -0.01, nesterov};
      std::vector<T> p = p0, buf = b0;
      k.sgd_step(c, n, p.data(), g.data(), buf.data());
      for (size_t i = 0; i < p.size(); ++i) {
        const T mom = T(c.momentum), omd = T(c.one_minus_dampening), nlr = T(c.neg_lr);
        const T m1 = b0[i] * mom, m2 = g[i] * omd, b = m1 + m2;
        ASSERT_EQ(buf[i], b) << i;
        const T bm = b * mom, d = nesterov ? g[i] + bm : b, upd = d * nlr;
        ASSERT_EQ(p[i], p0[i] + upd) << i;
      }
    }
    const AdamStep a{0.9, 0.1, 0.999, 1.0 - 0.999, 1e-8, std::sqrt(1.0 - 0.999 * 0.999), -(1e-3 / (1.0 - 0.81))};
    std::vector<T> p = p0, m = b0, v(p0.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = b0[i] * b0[i];
    const std::vector<T> m0 = m, v0 = v;
    k.adam_step(a, n, p.data(), g.data(), m.data(), v.data());
    for (size_t i = 0; i < p.size(); ++i) {
      const T t1 = m0[i] * T(a.beta1), t2 = g[i] * T(a.one_minus_beta1), mi = t1 + t2;
      const T gg = g[i] * g[i], t3 = v0[i] * T(a.beta2), t4 = gg * T(a.one_minus_beta2), vi = t3 + t4;
      ASSERT_EQ(m[i], mi) << i;
      ASSERT_EQ(v[i], vi) << i;
      const T denom = std::sqrt(vi) / T(a.bias_correction2_sqrt) + T(a.eps);
      const T upd = (mi / denom) * T(a.neg_step_size);
      ASSERT_EQ(p[i], p0[i] + upd) << i;
    }
  }
}

TEST(Kernels, OptimizerStepsFollowTheirFormulasBitForBit) {
  std::vector<Isa> isas = simd_isas();
  isas.insert(isas.begin(), Isa::Scalar);
  for (Isa isa : isas) {
    SCOPED_TRACE(isa_name(isa));
    check_optimizer_steps<float>(isa);
    check_optimizer_steps<double>(isa);
  }
}

TEST(Kernels, ConvLoweringMatchesDefinitionAndScalar) {
  check_conv_lowering<float>(Isa::Scalar);
  check_conv_lowering<double>(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_conv_lowering<float>(isa);
    check_conv_lowering<double>(isa);
  }
}


// Flat convolutions (Note [Flat convolution]) against the definition, summed in double: several
// images at strides wider than one image (as groups leave them), every row-tile size, output
// channel counts that leave partial tiles, pixel tails, dilation, even kernels with uneven
// "same" padding, wide kernels whose rows split into several weight-gradient tiles, and images
// of more than one weight-gradient chunk. Without AVX2 or AVX-512 both entries are null.
struct FlatCase {
  int64_t c, m, h, w, kh, kw, pad_h, pad_w, dil_h, dil_w;
  int64_t ho = 0;  // output rows; 0: as many as the input's
};

template <class T>
void check_flat_conv(Isa isa) {
  const auto& k = kernels_for<T>(isa);
  if (isa != Isa::Avx512 && isa != Isa::Avx2) {
    EXPECT_EQ(k.conv_flat, nullptr);
    EXPECT_EQ(k.conv_flat_images, nullptr);
    EXPECT_EQ(k.conv_flat_weight_grad, nullptr);
    return;
  }
  ASSERT_NE(k.conv_flat, nullptr);
  ASSERT_NE(k.conv_flat_images, nullptr);
  ASSERT_NE(k.conv_flat_weight_grad, nullptr);
  const FlatCase cases[] = {{3, 16, 32, 32, 3, 3, 1, 1, 1, 1}, {2, 1, 5, 7, 3, 3, 1, 1, 1, 1},
                            {4, 29, 9, 6, 3, 3, 1, 1, 1, 1},   {1, 13, 8, 8, 5, 5, 2, 2, 1, 1},
                            {2, 6, 7, 9, 3, 3, 2, 2, 2, 2},    {2, 5, 6, 6, 4, 4, 1, 1, 1, 1},
                            {1, 9, 5, 11, 1, 7, 0, 3, 1, 1},   {1, 3, 40, 41, 3, 3, 1, 1, 1, 1},
                            {3, 14, 4, 4, 3, 3, 1, 1, 1, 1},   {2, 11, 3, 2, 3, 3, 1, 1, 1, 1},
                            // fewer output rows than input rows (rows unpadded, columns
                            // "same", or any plane seen as a grid of its own width) and more
                            {1, 6, 28, 28, 5, 5, 0, 0, 1, 1, 24}, {6, 16, 12, 12, 5, 5, 0, 0, 1, 1, 8},
                            {2, 3, 5, 6, 3, 3, 2, 1, 1, 1, 7}};
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (const FlatCase& f : cases) {
    const int64_t ho = f.ho > 0 ? f.ho : f.h;
    const ConvShape s{f.c, f.h, f.w, f.kh, f.kw, ho, f.w, 1, 1, f.pad_h, f.pad_w, f.dil_h, f.dil_w};
    SCOPED_TRACE(::testing::Message() << "c" << f.c << " m" << f.m << " " << f.h << "x" << f.w << " k" << f.kh
                                      << "x" << f.kw << " p" << f.pad_h << "," << f.pad_w << " d" << f.dil_h);
    ASSERT_TRUE(conv_flat_applies(s));
    // Its weight gradient, up to 64 output channels (more go through the GEMM: faster there).
    ASSERT_TRUE(conv_flat_weight_grad_applies(s, f.m));
    EXPECT_TRUE(conv_flat_weight_grad_applies(s, kConvFlatMaxWgradOutputs));
    EXPECT_FALSE(conv_flat_weight_grad_applies(s, kConvFlatMaxWgradOutputs + 1));
    const int64_t n = 3, K = f.c * f.kh * f.kw, hw = ho * f.w, plane = f.h * f.w;
    const int64_t x_stride = f.c * plane + 5, y_stride = f.m * hw + 3;  // gaps between images
    std::vector<T> x(static_cast<size_t>(n * x_stride)), w(static_cast<size_t>(f.m * K));
    std::vector<T> gy(static_cast<size_t>(n * y_stride));
    for (auto& v : x) v = static_cast<T>(dist(rng));
    for (auto& v : w) v = static_cast<T>(dist(rng));
    for (auto& v : gy) v = static_cast<T>(dist(rng));
    // NaN in the gaps: a lane outside an image that were read would poison the sums.
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t g = f.c * plane; g < x_stride; ++g) x[static_cast<size_t>(b * x_stride + g)] = std::numeric_limits<T>::quiet_NaN();
      for (int64_t g = f.m * hw; g < y_stride; ++g) gy[static_cast<size_t>(b * y_stride + g)] = std::numeric_limits<T>::quiet_NaN();
    }
    // The columns of image b by the definition: cols(b, t, p), 0 in the padding.
    auto cols = [&](int64_t b, int64_t t, int64_t p) -> double {
      const int64_t c = t / (f.kh * f.kw), i = t / f.kw % f.kh, j = t % f.kw;
      const int64_t ih = p / f.w + i * f.dil_h - f.pad_h, iw = p % f.w + j * f.dil_w - f.pad_w;
      if (ih < 0 || ih >= f.h || iw < 0 || iw >= f.w) return 0.0;
      return double(x[static_cast<size_t>(b * x_stride + (c * f.h + ih) * f.w + iw)]);
    };
    const double tol = sizeof(T) == 4 ? 2e-5 : 1e-12;

    std::vector<T> y(static_cast<size_t>(n * y_stride), std::numeric_limits<T>::quiet_NaN());
    k.conv_flat(s, f.m, w.data(), n, x.data(), x_stride, y.data(), y_stride);
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t o = 0; o < f.m; ++o) {
        for (int64_t p = 0; p < hw; ++p) {
          double want = 0, scale = 0;
          for (int64_t t = 0; t < K; ++t) {
            const double term = double(w[static_cast<size_t>(o * K + t)]) * cols(b, t, p);
            want += term;
            scale += std::abs(term);
          }
          ASSERT_NEAR(double(y[static_cast<size_t>(b * y_stride + o * hw + p)]), want, tol * (1 + scale))
              << "conv_flat image " << b << " channel " << o << " pixel " << p;
        }
        // The gap after each image is not written.
      }
      for (int64_t g = f.m * hw; g < y_stride; ++g) ASSERT_TRUE(std::isnan(y[static_cast<size_t>(b * y_stride + g)]));
    }

    // conv_flat_images: the images side by side ([c][n][h * w] in, [m][n][hw] out), each pixel's
    // sum in conv_flat's order (the same bits), with the weights in place and read through a tap
    // table (stored [K][m]: row stride 1, tap t at t * m).
    if (ho == f.h) {
      std::vector<T> xs(static_cast<size_t>(n * f.c * plane)), wt(w.size());
      for (int64_t b = 0; b < n; ++b)
        for (int64_t c = 0; c < f.c * plane; ++c)
          xs[static_cast<size_t>((c / plane * n + b) * plane + c % plane)] = x[static_cast<size_t>(b * x_stride + c)];
      std::vector<int64_t> taps(static_cast<size_t>(K));
      for (int64_t t = 0; t < K; ++t) {
        taps[static_cast<size_t>(t)] = t * f.m;
        for (int64_t o = 0; o < f.m; ++o) wt[static_cast<size_t>(t * f.m + o)] = w[static_cast<size_t>(o * K + t)];
      }
      for (bool table : {false, true}) {
        std::vector<T> ys(static_cast<size_t>(f.m * n * hw), std::numeric_limits<T>::quiet_NaN());
        k.conv_flat_images(s, f.m, table ? wt.data() : w.data(), 1, table ? taps.data() : nullptr, n, xs.data(),
                           ys.data());
        for (int64_t o = 0; o < f.m; ++o)
          for (int64_t b = 0; b < n; ++b)
            for (int64_t p = 0; p < hw; ++p)
              ASSERT_EQ(ys[static_cast<size_t>((o * n + b) * hw + p)],
                        y[static_cast<size_t>(b * y_stride + o * hw + p)])
                  << "conv_flat_images (tap table " << table << ") image " << b << " channel " << o << " pixel " << p;
      }
    }

    std::vector<T> gw(static_cast<size_t>(f.m * K));
    for (auto& v : gw) v = static_cast<T>(dist(rng));
    const std::vector<T> gw0 = gw;  // accumulated into
    k.conv_flat_weight_grad(s, f.m, n, x.data(), x_stride, gy.data(), y_stride, gw.data());
    for (int64_t o = 0; o < f.m; ++o) {
      for (int64_t t = 0; t < K; ++t) {
        double want = double(gw0[static_cast<size_t>(o * K + t)]), scale = std::abs(want);
        for (int64_t b = 0; b < n; ++b)
          for (int64_t p = 0; p < hw; ++p) {
            const double term = double(gy[static_cast<size_t>(b * y_stride + o * hw + p)]) * cols(b, t, p);
            want += term;
            scale += std::abs(term);
          }
        ASSERT_NEAR(double(gw[static_cast<size_t>(o * K + t)]), want, tol * (1 + scale))
            << "conv_flat_weight_grad channel " << o << " tap " << t;
      }
    }
  }
}

TEST(Kernels, FlatConvolutionMatchesDefinition) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_flat_conv<float>(isa);
    check_flat_conv<double>(isa);
  }
  check_flat_conv<float>(Isa::Scalar);
}


// conv_winograd (Note [Winograd convolution]) against the definition in double, on shapes around
// its edges: "same" 3x3 planes, odd sizes (a last tile half outside the output), rows wider than
// a vector of tiles, planes narrower than one, a 1x1 image, no padding and two-pixel padding, more
// than one block of tiles, channel counts that leave partial GEMM tiles; NaN between the images in
// the input (a lane read outside an image would poison the sums) and the output (not written).
// Also: each image gets the bits it gets alone, and a borrowed workspace changes no bit; and the
// weight gradient by the same transforms.
void check_winograd(Isa isa) {
  const auto& k = kernels_for<float>(isa);
  EXPECT_EQ(kernels_for<double>(isa).conv_winograd, nullptr);  // double keeps the definition's sums
  EXPECT_EQ(kernels_for<double>(isa).conv_winograd_weight_grad, nullptr);
  EXPECT_EQ(kernels_for<double>(isa).conv_winograd_weights, nullptr);
  if (k.conv_flat == nullptr) {
    EXPECT_EQ(k.conv_winograd_weights, nullptr);
    EXPECT_EQ(k.conv_winograd, nullptr);
    EXPECT_EQ(k.conv_winograd_weight_grad, nullptr);
    return;
  }
  ASSERT_NE(k.conv_winograd_weights, nullptr);
  ASSERT_NE(k.conv_winograd, nullptr);
  ASSERT_NE(k.conv_winograd_weight_grad, nullptr);
  struct WinogradCase {
    int64_t c, m, h, w, pad_h, pad_w, n;
  };
  const WinogradCase cases[] = {{16, 16, 12, 12, 1, 1, 3}, {3, 5, 7, 9, 1, 1, 2},   {17, 33, 14, 14, 1, 1, 2},
                                {4, 6, 6, 70, 1, 1, 2},    {5, 4, 9, 3, 1, 1, 3},   {2, 3, 1, 1, 1, 1, 2},
                                {6, 7, 8, 11, 0, 0, 3},    {3, 2, 5, 6, 2, 2, 2},   {8, 9, 33, 31, 1, 1, 5},
                                {1, 1, 3, 3, 0, 0, 1}};
  std::mt19937 rng(13);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (const WinogradCase& f : cases) {
    const int64_t ho = f.h + 2 * f.pad_h - 2, wo = f.w + 2 * f.pad_w - 2;
    const ConvShape s{f.c, f.h, f.w, 3, 3, ho, wo, 1, 1, f.pad_h, f.pad_w, 1, 1};
    SCOPED_TRACE(::testing::Message() << "c" << f.c << " m" << f.m << " " << f.h << "x" << f.w << " p" << f.pad_h
                                      << "," << f.pad_w << " n" << f.n);
    ASSERT_TRUE(conv_winograd_applies(s));
    const int64_t n = f.n, K = f.c * 9, hw = ho * wo, plane = f.h * f.w;
    const int64_t x_stride = f.c * plane + 5, y_stride = f.m * hw + 3;
    std::vector<float> x(static_cast<size_t>(n * x_stride), std::numeric_limits<float>::quiet_NaN());
    std::vector<float> w(static_cast<size_t>(f.m * K));
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < f.c * plane; ++i) {
        x[static_cast<size_t>(b * x_stride + i)] = static_cast<float>(dist(rng));
      }
    for (auto& v : w) v = static_cast<float>(dist(rng));
    // The weights transformed in two shares of the output channels, as threads share them.
    std::vector<float> u(static_cast<size_t>(conv_winograd_weights_size(f.m, f.c)), 0.0f);
    k.conv_winograd_weights(f.m, f.c, f.m / 2, f.m, w.data(), u.data());
    k.conv_winograd_weights(f.m, f.c, 0, f.m / 2, w.data(), u.data());
    std::vector<float> y(static_cast<size_t>(n * y_stride), std::numeric_limits<float>::quiet_NaN());
    k.conv_winograd(s, f.m, u.data(), n, x.data(), x_stride, y.data(), y_stride);
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t o = 0; o < f.m; ++o)
        for (int64_t p = 0; p < hw; ++p) {
          double want = 0, scale = 0;
          for (int64_t t = 0; t < K; ++t) {
            const int64_t c = t / 9, i = t / 3 % 3, j = t % 3;
            const int64_t ih = p / wo + i - f.pad_h, iw = p % wo + j - f.pad_w;
            if (ih < 0 || ih >= f.h || iw < 0 || iw >= f.w) continue;
            const double term = double(w[static_cast<size_t>(o * K + t)]) *
                                double(x[static_cast<size_t>(b * x_stride + (c * f.h + ih) * f.w + iw)]);
            want += term;
            scale += std::abs(term);
          }
          ASSERT_NEAR(double(y[static_cast<size_t>(b * y_stride + o * hw + p)]), want, 1e-5 * (1 + scale))
              << "image " << b << " channel " << o << " pixel " << p;
        }
      for (int64_t g = f.m * hw; g < y_stride; ++g) ASSERT_TRUE(std::isnan(y[static_cast<size_t>(b * y_stride + g)]));
    }
    // The weight gradient, accumulated into gw.
    std::vector<float> gy(static_cast<size_t>(n * y_stride), std::numeric_limits<float>::quiet_NaN());
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < f.m * hw; ++i) gy[static_cast<size_t>(b * y_stride + i)] = static_cast<float>(dist(rng));
    std::vector<float> gw(w.size());
    for (auto& v : gw) v = static_cast<float>(dist(rng));
    const std::vector<float> gw0 = gw;
    k.conv_winograd_weight_grad(s, f.m, n, x.data(), x_stride, gy.data(), y_stride, gw.data());
    for (int64_t o = 0; o < f.m; ++o)
      for (int64_t t = 0; t < K; ++t) {
        const int64_t c = t / 9, i = t / 3 % 3, j = t % 3;
        double want = double(gw0[static_cast<size_t>(o * K + t)]), scale = std::abs(want);
        for (int64_t b = 0; b < n; ++b)
          for (int64_t p = 0; p < hw; ++p) {
            const int64_t ih = p / wo + i - f.pad_h, iw = p % wo + j - f.pad_w;
            if (ih < 0 || ih >= f.h || iw < 0 || iw >= f.w) continue;
            const double term = double(gy[static_cast<size_t>(b * y_stride + o * hw + p)]) *
                                double(x[static_cast<size_t>(b * x_stride + (c * f.h + ih) * f.w + iw)]);
            want += term;
            scale += std::abs(term);
          }
        ASSERT_NEAR(double(gw[static_cast<size_t>(o * K + t)]), want, 1e-5 * (1 + scale))
            << "weight gradient, channel " << o << " tap " << t;
      }
    // One image at a time, and with a borrowed workspace (an inference plan's arena): the same bits.
    const size_t bytes = static_cast<size_t>(conv_winograd_scratch(s, f.m, false)) * sizeof(float) + 64 +
                         k.gemm_workspace(f.m, conv_winograd_tiles(s, f.m), f.c);
    std::vector<std::byte> arena(bytes + 64);
    auto* aligned = arena.data() + (64 - reinterpret_cast<uintptr_t>(arena.data()) % 64) % 64;
    for (bool borrowed : {false, true}) {
      const GemmWorkspace workspace(borrowed ? aligned : nullptr, borrowed ? bytes : 0);
      std::vector<float> one(static_cast<size_t>(n * y_stride), std::numeric_limits<float>::quiet_NaN());
      for (int64_t b = 0; b < n; ++b) {
        k.conv_winograd(s, f.m, u.data(), 1, x.data() + b * x_stride, x_stride, one.data() + b * y_stride, y_stride);
      }
      for (size_t i = 0; i < y.size(); ++i) {
        if (std::isnan(y[i])) continue;
        ASSERT_EQ(one[i], y[i]) << (borrowed ? "borrowed workspace, " : "") << "one image at a time, element " << i;
      }
    }
  }
}

TEST(Kernels, WinogradConvolutionMatchesDefinition) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_winograd(isa);
  }
  check_winograd(Isa::Scalar);
}

// conv_flat of stride-2 convolutions (the input split into phases: Note [Strided flat
// convolution]) against the definition: DCGAN's 4x4 kernels padded by 1 (28 -> 14, 14 -> 7), 3x3
// and 1x1 downsampling, odd sizes (a zero row or column past the image in a phase plane), a row
// padding that leaves the phase planes taller than the output (one image at a time), dilation,
// and enough images that several lie side by side with a partial last group; NaN between the
// images, in the input and the output.
template <class T>
void check_strided_flat_conv(Isa isa) {
  const auto& k = kernels_for<T>(isa);
  if (k.conv_flat == nullptr) return;
  struct StridedCase {
    int64_t c, m, h, w, kh, kw, pad_h, pad_w, dil, n;
  };
  const StridedCase cases[] = {{1, 17, 28, 28, 4, 4, 1, 1, 1, 3}, {5, 20, 14, 14, 4, 4, 1, 1, 1, 8},
                               {3, 6, 8, 8, 3, 3, 1, 1, 1, 21},   {4, 9, 7, 9, 3, 3, 1, 1, 1, 3},
                               {2, 7, 9, 7, 3, 3, 0, 1, 1, 4},    {3, 5, 10, 10, 3, 3, 2, 2, 2, 2},
                               {6, 15, 6, 6, 1, 1, 0, 0, 1, 5},   {2, 4, 11, 12, 5, 5, 2, 2, 1, 3}};
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (const StridedCase& f : cases) {
    const int64_t ho = (f.h + 2 * f.pad_h - f.dil * (f.kh - 1) - 1) / 2 + 1;
    const int64_t wo = (f.w + 2 * f.pad_w - f.dil * (f.kw - 1) - 1) / 2 + 1;
    const ConvShape s{f.c, f.h, f.w, f.kh, f.kw, ho, wo, 2, 2, f.pad_h, f.pad_w, f.dil, f.dil};
    SCOPED_TRACE(::testing::Message() << "c" << f.c << " m" << f.m << " " << f.h << "x" << f.w << " k" << f.kh
                                      << " p" << f.pad_h << "," << f.pad_w << " d" << f.dil << " n" << f.n);
    ASSERT_TRUE(conv_flat_strided_applies(s));
    ASSERT_FALSE(conv_flat_applies(s));
    const int64_t n = f.n, K = f.c * f.kh * f.kw, hw = ho * wo, plane = f.h * f.w;
    const int64_t x_stride = f.c * plane + 5, y_stride = f.m * hw + 3;  // gaps between images
    std::vector<T> x(static_cast<size_t>(n * x_stride), std::numeric_limits<T>::quiet_NaN());
    std::vector<T> w(static_cast<size_t>(f.m * K));
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < f.c * plane; ++i) x[static_cast<size_t>(b * x_stride + i)] = static_cast<T>(dist(rng));
    for (auto& v : w) v = static_cast<T>(dist(rng));
    std::vector<T> y(static_cast<size_t>(n * y_stride), std::numeric_limits<T>::quiet_NaN());
    k.conv_flat(s, f.m, w.data(), n, x.data(), x_stride, y.data(), y_stride);
    const double tol = sizeof(T) == 4 ? 2e-5 : 1e-12;
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t o = 0; o < f.m; ++o)
        for (int64_t p = 0; p < hw; ++p) {
          double want = 0, scale = 0;
          for (int64_t t = 0; t < K; ++t) {
            const int64_t c = t / (f.kh * f.kw), i = t / f.kw % f.kh, j = t % f.kw;
            const int64_t ih = p / wo * 2 + i * f.dil - f.pad_h, iw = p % wo * 2 + j * f.dil - f.pad_w;
            if (ih < 0 || ih >= f.h || iw < 0 || iw >= f.w) continue;
            const double term = double(w[static_cast<size_t>(o * K + t)]) *
                                double(x[static_cast<size_t>(b * x_stride + (c * f.h + ih) * f.w + iw)]);
            want += term;
            scale += std::abs(term);
          }
          ASSERT_NEAR(double(y[static_cast<size_t>(b * y_stride + o * hw + p)]), want, tol * (1 + scale))
              << "image " << b << " channel " << o << " pixel " << p;
        }
      for (int64_t g = f.m * hw; g < y_stride; ++g) ASSERT_TRUE(std::isnan(y[static_cast<size_t>(b * y_stride + g)]));
    }
  }
  // DCGAN's 7 -> 3: output rows narrower than a phase plane's (4), no fixed offsets.
  EXPECT_FALSE(conv_flat_strided_applies(ConvShape{128, 7, 7, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1}));
}

TEST(Kernels, StridedFlatConvolutionMatchesDefinition) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_strided_flat_conv<float>(isa);
    check_strided_flat_conv<double>(isa);
  }
}

// conv_flat_weight_grad of stride-1 convolutions without padding whose output rows are narrower
// than the input's (read row by row): against the definition, for rows of whole vectors, a masked
// last vector or one vector alone, dilations, up to kConvValidMaxOutputs output channels, with NaN
// between the images (a lane read past a row's end into the gap would poison the sums).
template <class T>
void check_valid_conv_weight_grad(Isa isa) {
  const auto& k = kernels_for<T>(isa);
  if (k.conv_flat_weight_grad == nullptr) return;
  struct ValidCase {
    int64_t c, m, h, w, kh, kw, dil_h, dil_w;
  };
  const ValidCase cases[] = {{1, 6, 28, 28, 5, 5, 1, 1}, {6, 8, 12, 12, 5, 5, 1, 1}, {2, 3, 9, 21, 3, 4, 1, 1},
                             {1, 5, 7, 5, 3, 3, 2, 2},   {3, 7, 6, 40, 2, 7, 1, 1},  {1, 1, 3, 20, 1, 5, 1, 3}};
  std::mt19937 rng(9);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (const ValidCase& f : cases) {
    const int64_t ho = f.h - f.dil_h * (f.kh - 1), wo = f.w - f.dil_w * (f.kw - 1);
    const ConvShape s{f.c, f.h, f.w, f.kh, f.kw, ho, wo, 1, 1, 0, 0, f.dil_h, f.dil_w};
    SCOPED_TRACE(::testing::Message() << "c" << f.c << " m" << f.m << " " << f.h << "x" << f.w << " k" << f.kh << "x"
                                      << f.kw << " d" << f.dil_h << "," << f.dil_w);
    ASSERT_TRUE(conv_flat_weight_grad_applies(s, f.m));
    ASSERT_FALSE(conv_flat_weight_grad_applies(s, kConvValidMaxOutputs + 1));
    const int64_t n = 3, K = f.c * f.kh * f.kw, hw = ho * wo, plane = f.h * f.w;
    const int64_t x_stride = f.c * plane + 17, gy_stride = f.m * hw + 19;
    std::vector<T> x(static_cast<size_t>(n * x_stride), std::numeric_limits<T>::quiet_NaN());
    std::vector<T> gy(static_cast<size_t>(n * gy_stride), std::numeric_limits<T>::quiet_NaN());
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t i = 0; i < f.c * plane; ++i) x[static_cast<size_t>(b * x_stride + i)] = static_cast<T>(dist(rng));
      for (int64_t i = 0; i < f.m * hw; ++i) gy[static_cast<size_t>(b * gy_stride + i)] = static_cast<T>(dist(rng));
    }
    std::vector<T> gw(static_cast<size_t>(f.m * K));
    for (auto& v : gw) v = static_cast<T>(dist(rng));
    const std::vector<T> gw0 = gw;  // accumulated into
    k.conv_flat_weight_grad(s, f.m, n, x.data(), x_stride, gy.data(), gy_stride, gw.data());
    const double tol = sizeof(T) == 4 ? 2e-5 : 1e-12;
    for (int64_t o = 0; o < f.m; ++o) {
      for (int64_t t = 0; t < K; ++t) {
        const int64_t c = t / (f.kh * f.kw), i = t / f.kw % f.kh, j = t % f.kw;
        double want = double(gw0[static_cast<size_t>(o * K + t)]), scale = std::abs(want);
        for (int64_t b = 0; b < n; ++b)
          for (int64_t py = 0; py < ho; ++py)
            for (int64_t px = 0; px < wo; ++px) {
              const double term = double(gy[static_cast<size_t>(b * gy_stride + o * hw + py * wo + px)]) *
                                  double(x[static_cast<size_t>(b * x_stride + c * plane + (py + i * f.dil_h) * f.w +
                                                               px + j * f.dil_w)]);
              want += term;
              scale += std::abs(term);
            }
        ASSERT_NEAR(double(gw[static_cast<size_t>(o * K + t)]), want, tol * (1 + scale))
            << "channel " << o << " tap " << t;
      }
    }
  }
}

TEST(Kernels, ValidConvWeightGradMatchesDefinition) {
  // No padding at the top and left but an output that reaches past the image (padding at the
  // bottom or right, which the shape does not name): not "valid".
  EXPECT_FALSE(conv_flat_weight_grad_applies(ConvShape{7, 12, 17, 2, 1, 12, 19, 1, 1, 0, 0, 1, 1}, 8));
  EXPECT_FALSE(conv_flat_weight_grad_applies(ConvShape{5, 9, 5, 4, 4, 8, 3, 1, 1, 0, 0, 1, 1}, 6));
  EXPECT_TRUE(conv_flat_weight_grad_applies(ConvShape{5, 9, 5, 4, 4, 6, 2, 1, 1, 0, 0, 1, 1}, 6));
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_valid_conv_weight_grad<float>(isa);
    check_valid_conv_weight_grad<double>(isa);
  }
}

// 2x2 max pooling: the scalar kernel against the definition (first maximum in row-major order,
// first NaN wins), the SIMD ones bit-identical to it, on planes of odd and even sizes, narrower
// and wider than a vector, with ties (values from a small set) and NaNs; planes of at most 8
// output columns and even width run several output rows per vector (the last step of a plane
// with fewer rows: 14x6, 7x16, 35x2, 10x10, 12x14).
template <class T>
void check_max_pool2x2(Isa isa) {
  const auto& ref = kernels_for<T>(Isa::Scalar);
  const auto& k = kernels_for<T>(isa);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(0, 3);
  const std::pair<int64_t, int64_t> sizes[] = {{2, 2},  {3, 5},  {4, 32},  {6, 34},  {5, 66},  {8, 8},  {24, 24},
                                                {1, 40}, {2, 97}, {14, 6}, {7, 16}, {35, 2}, {10, 10}, {12, 14}};
  for (auto [h, w] : sizes) {
    SCOPED_TRACE(::testing::Message() << h << "x" << w);
    const int64_t planes = 3, ho = h / 2, wo = w / 2;
    std::vector<T> x(static_cast<size_t>(planes * h * w));
    for (auto& v : x) v = static_cast<T>(small(rng));
    for (size_t i = 0; i < x.size(); i += 37) x[i] = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> y(static_cast<size_t>(planes * ho * wo)), y_ref = y;
    std::vector<int64_t> idx(y.size(), -1), idx_ref = idx;
    k.max_pool2x2(planes, h, w, x.data(), y.data(), idx.data());
    ref.max_pool2x2(planes, h, w, x.data(), y_ref.data(), idx_ref.data());
    for (int64_t p = 0; p < planes; ++p) {
      for (int64_t o = 0; o < ho * wo; ++o) {
        const size_t at = static_cast<size_t>(p * ho * wo + o);
        // The definition: scan the window in row-major order.
        const int64_t oh = o / wo, ow = o % wo;
        int64_t want = -1;
        for (int64_t i = 0; i < 2 && want < 0; ++i)
          for (int64_t j = 0; j < 2; ++j) {
            const int64_t pix = (2 * oh + i) * w + 2 * ow + j;
            if (std::isnan(x[static_cast<size_t>(p * h * w + pix)])) {
              want = pix;
              break;
            }
          }
        if (want < 0) {
          T best = -std::numeric_limits<T>::infinity();
          for (int64_t i = 0; i < 2; ++i)
            for (int64_t j = 0; j < 2; ++j) {
              const int64_t pix = (2 * oh + i) * w + 2 * ow + j;
              if (want < 0 || x[static_cast<size_t>(p * h * w + pix)] > best) {
                best = x[static_cast<size_t>(p * h * w + pix)];
                want = pix;
              }
            }
        }
        ASSERT_EQ(idx_ref[at], want) << "plane " << p << " output " << o;
        ASSERT_EQ(idx[at], idx_ref[at]) << "plane " << p << " output " << o;
        const T v = x[static_cast<size_t>(p * h * w + want)];
        if (std::isnan(v)) {
          ASSERT_TRUE(std::isnan(y[at]) && std::isnan(y_ref[at]));
        } else {
          ASSERT_EQ(y_ref[at], v);
          ASSERT_EQ(y[at], v);
        }
      }
    }
  }
}

TEST(Kernels, MaxPool2x2MatchesDefinitionAndScalar) {
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    check_max_pool2x2<float>(isa);
    check_max_pool2x2<double>(isa);
  }
  check_max_pool2x2<float>(Isa::Scalar);
}

}  // namespace
}  // namespace ember::backend
