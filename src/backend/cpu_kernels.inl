// The body of the CPU kernels. Each ISA's .cpp defines EMBER_ISA_NS and includes this file.
//
// Note [SIMD paths]
// The scalar backend (no x86 target flags) is the reference: plain loops over scalar_ops.hpp,
// glibc for the transcendentals. The AVX2 and AVX-512 backends run the same kernels on packets
// (simd_vec.hpp, simd_math.hpp) for contiguous operands and for the stride-0 broadcast cases,
// each op written once as a template on the packet type. The contract with the reference:
// arithmetic, comparisons, min/max/clamp/relu, rounding and selection are bit-identical (NaNs
// included); transcendentals are within a few ulp; sums may differ by reassociation only.
// Tails go through masked loads and stores, so every element takes the same path whatever its
// position. Other strides use the scalar loops (unary ops first gather their input into the
// output, which is contiguous, and then run in place).
//
// Included once per ISA translation unit: no include guard by design.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ember/backend/parallel.hpp"
#include "scalar_ops.hpp"
#include "simd_math.hpp"
#include "tables.hpp"

#ifndef EMBER_ISA_NS
#error "define EMBER_ISA_NS before including cpu_kernels.inl"
#endif

namespace ember::backend::EMBER_ISA_NS {
namespace {

using scalar::apply_binary;
using scalar::apply_compare;

// scalar::apply_unary is an inline function with external linkage: an out-of-line copy emitted
// here would be compiled with this file's target flags, and the linker keeps one copy for the
// whole program, which could then run AVX-512 code on behalf of the scalar backend. Calling it
// only from this internal function, which inlines it whole, keeps such a copy out of the object.
template <class T>
[[gnu::flatten]] T ref_unary(Unary op, KernelParams p, T x) {
  return scalar::apply_unary(op, p, x);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__FMA__)
constexpr bool kSimd = true;
template <class T>
using Pack = std::conditional_t<std::is_same_v<T, float>, simd::F32x16, simd::F64x8>;
// Half-width packets for the tails of short rows (Note [im2col loops]).
constexpr bool kHalfPack = true;
template <class T>
using HalfPack = std::conditional_t<std::is_same_v<T, float>, simd::F32x8, simd::F64x4>;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr bool kSimd = true;
template <class T>
using Pack = std::conditional_t<std::is_same_v<T, float>, simd::F32x8, simd::F64x4>;
constexpr bool kHalfPack = false;
template <class T>
using HalfPack = Pack<T>;
#elif defined(EMBER_NEON_PACKETS)
constexpr bool kSimd = true;
template <class T>
using Pack = std::conditional_t<std::is_same_v<T, float>, simd::F32x4, simd::F64x2>;
constexpr bool kHalfPack = false;
template <class T>
using HalfPack = Pack<T>;
#else
constexpr bool kSimd = false;  // the reference backend: scalar loops only
template <class T>
using Pack = simd::Scalar<T>;
constexpr bool kHalfPack = false;
template <class T>
using HalfPack = Pack<T>;
#endif

// ---- Operand access for the packet loops: a contiguous array or one broadcast value. ----------

template <class V>
struct Contig {
  const typename V::value_type* p;
  V at(int64_t i) const { return V::load(p + i); }
  V at_n(int64_t i, int r) const { return V::load_n(p + i, r); }
};

template <class V>
struct Bcast {
  V v;
  V at(int64_t) const { return v; }
  V at_n(int64_t, int) const { return v; }
};

/// Calls body(src_a, src_b) with the operand views matching strides (1,1), (1,0) or (0,1);
/// returns false for any other combination.
template <class V, class Body>
inline bool with_sources(const typename V::value_type* a, int64_t sa,
                         const typename V::value_type* b, int64_t sb, Body body) {
  if (sa == 1 && sb == 1) {
    body(Contig<V>{a}, Contig<V>{b});
  } else if (sa == 1 && sb == 0) {
    body(Contig<V>{a}, Bcast<V>{V(*b)});
  } else if (sa == 0 && sb == 1) {
    body(Bcast<V>{V(*a)}, Contig<V>{b});
  } else {
    return false;
  }
  return true;
}

/// y[i] = f(a[i], b[i]) for operand views a, b; y contiguous.
template <class V, class A, class B, class F>
inline void map2(int64_t n, A a, B b, typename V::value_type* y, F f) {
  constexpr int W = V::kWidth;
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {  // two packets per trip: cheap ops are loop-bound
    V r0 = f(a.at(i), b.at(i));
    V r1 = f(a.at(i + W), b.at(i + W));
    r0.store(y + i);
    r1.store(y + i + W);
  }
  for (; i + W <= n; i += W) f(a.at(i), b.at(i)).store(y + i);
  if (i < n) {
    const int r = int(n - i);
    f(a.at_n(i, r), b.at_n(i, r)).store_n(y + i, r);
  }
}

/// y[i] = f(x[i]), contiguous.
template <class V, class F>
inline void map1(int64_t n, const typename V::value_type* x, typename V::value_type* y, F f) {
  map2<V>(n, Contig<V>{x}, Bcast<V>{V(typename V::value_type(0))}, y,
          [&](V u, V) { return f(u); });
}

/// Like map1, but f(x, redo) also flags lanes whose result must come from fix(x[i]) instead.
/// x may equal y: x[i] is read before y[i] is written.
template <class V, class F, class Fix>
inline void map1_redo(int64_t n, const typename V::value_type* x, typename V::value_type* y,
                      F f, Fix fix) {
  using T = typename V::value_type;
  constexpr int W = V::kWidth;
  for (int64_t i = 0; i < n; i += W) {
    const int r = n - i < W ? int(n - i) : W;
    typename V::Mask redo;
    V res = f(r == W ? V::load(x + i) : V::load_n(x + i, r), redo);
    uint32_t bits = mask_bits(redo) & ((2u << (r - 1)) - 1u);
    if (bits == 0) {
      if (r == W) res.store(y + i);
      else res.store_n(y + i, r);
      continue;
    }
    T tmp[W];
    res.store(tmp);
    for (; bits; bits &= bits - 1) {
      const int l = __builtin_ctz(bits);
      tmp[l] = fix(x[i + l]);
    }
    std::memcpy(y + i, tmp, sizeof(T) * size_t(r));
  }
}

// ---- unary ---------------------------------------------------------------------------------

// GELU's reference formula 0.5 x (1 + erf(x / sqrt2)) (and the tanh form) cancels for x below
// about -0.67: 1 + erf(.) is then smaller than 1/2, and a one-ulp difference in erf becomes many
// ulps of the result. Lanes there take the scalar reference, so the result stays within a few
// ulp of it; the packet path covers the rest.
template <class T>
T gelu_tanh_ref(T x) {
  // As scalar::apply_unary, with the product kept out of an FMA (Note [Contraction]).
  constexpr T kSqrt2OverPi = T(0.79788456080286535588);
  T cube = no_contract(simd::Scalar<T>(T(0.044715) * x * x * x)).v;
  T inner = kSqrt2OverPi * (x + cube);
  return T(0.5) * x * (T(1) + std::tanh(inner));
}

/// The packet path for a contiguous unary op; false when the op has none (the caller then runs
/// the scalar loop). x may equal y.
template <class T>
bool unary_contig(Unary op, KernelParams p, int64_t n, const T* x, T* y) {
  using V = Pack<T>;
  namespace m = simd;
  const V pa = V(T(p.a));
  const V pb = V(T(p.b));
  const V zero = V(T(0));
  const V one = V(T(1));
  const V half = V(T(0.5));
  switch (op) {
    case Unary::Neg: map1<V>(n, x, y, [](V v) { return -v; }); return true;
    case Unary::Abs: map1<V>(n, x, y, [](V v) { return abs(v); }); return true;
    case Unary::Square: map1<V>(n, x, y, [](V v) { return v * v; }); return true;
    case Unary::Sqrt: map1<V>(n, x, y, [](V v) { return sqrt(v); }); return true;
    case Unary::Rsqrt: map1<V>(n, x, y, [&](V v) { return one / sqrt(v); }); return true;
    case Unary::Reciprocal: map1<V>(n, x, y, [&](V v) { return one / v; }); return true;
    case Unary::Floor: map1<V>(n, x, y, [](V v) { return floor(v); }); return true;
    case Unary::Ceil: map1<V>(n, x, y, [](V v) { return ceil(v); }); return true;
    case Unary::Round: map1<V>(n, x, y, [](V v) { return round_even(v); }); return true;
    case Unary::Relu:  // max(0, x) is `0 > x ? 0 : x`: keeps NaN and -0 (Note [Packet min/max])
      map1<V>(n, x, y, [&](V v) { return max(zero, v); });
      return true;
    case Unary::Clamp:  // x < a ? a : (x > b ? b : x), operand order as in Relu
      map1<V>(n, x, y, [&](V v) { return min(pb, max(pa, v)); });
      return true;
    case Unary::LeakyRelu:
      map1<V>(n, x, y, [&](V v) { return select(gt(v, zero), v, v * pa); });
      return true;
    case Unary::Sign:
      map1<V>(n, x, y, [&](V v) {
        V s = select(gt(v, zero), one, select(lt(v, zero), -one, zero));
        return select(is_nan(v), v, s);
      });
      return true;
    case Unary::AddScalar: map1<V>(n, x, y, [&](V v) { return v + pa; }); return true;
    case Unary::MulScalar: map1<V>(n, x, y, [&](V v) { return v * pa; }); return true;
    case Unary::RsubScalar: map1<V>(n, x, y, [&](V v) { return pa - v; }); return true;
    case Unary::RdivScalar: map1<V>(n, x, y, [&](V v) { return pa / v; }); return true;
    case Unary::Exp: map1<V>(n, x, y, [](V v) { return m::exp(v); }); return true;
    case Unary::Log: map1<V>(n, x, y, [](V v) { return m::log(v); }); return true;
    case Unary::Log1p: map1<V>(n, x, y, [](V v) { return m::log1p(v); }); return true;
    case Unary::Expm1: map1<V>(n, x, y, [](V v) { return m::expm1(v); }); return true;
    case Unary::Tanh: map1<V>(n, x, y, [](V v) { return m::tanh(v); }); return true;
    case Unary::Sigmoid: map1<V>(n, x, y, [](V v) { return m::sigmoid(v); }); return true;
    case Unary::Erf: map1<V>(n, x, y, [](V v) { return m::erf(v); }); return true;
    case Unary::Silu: map1<V>(n, x, y, [](V v) { return v * m::sigmoid(v); }); return true;
    case Unary::Elu:
      map1<V>(n, x, y, [&](V v) { return select(gt(v, zero), v, pa * m::expm1(v)); });
      return true;
    case Unary::Softplus:
      map1<V>(n, x, y, [&](V v) {
        V bx = v * pa;
        return select(gt(bx, pb), v, m::log1p(m::exp(bx)) / pa);
      });
      return true;
    case Unary::Mish:  // Note [Mish] (src/backend/scalar_ops.hpp)
      map1<V>(n, x, y, [&](V v) {
        V e = m::exp(min(v, V(T(20))));
        V q = e * (e + V(T(2)));
        return v * (q / (q + V(T(2))));
      });
      return true;
    case Unary::Gelu:
      // Float: x Phi(x) from a fitted log Phi (no cancellation). Double: PyTorch's formula,
      // x/2 (1 + erf(x/sqrt2)), whose sum cancels for x below about -1, leaving an absolute
      // error of a few ulp of x/2 (as the scalar reference's and PyTorch's): Note [GELU accuracy].
      if constexpr (sizeof(T) == 4) {
        map1<V>(n, x, y, [](V v) { return m::gelu_float(v); });
      } else {
        map1<V>(n, x, y, [&](V v) { return half * v * (one + m::erf(v * V(T(0.70710678118654752440)))); });
      }
      return true;
    case Unary::GeluTanh:
      map1_redo<V>(
          n, x, y,
          [&](V v, typename V::Mask& redo) {
            V cube = no_contract(V(T(0.044715)) * v * v * v);
            V t1 = one + m::tanh(V(T(0.79788456080286535588)) * (v + cube));
            redo = lt(t1, half);
            return half * v * t1;
          },
          [](T v) { return gelu_tanh_ref(v); });
      return true;
    default:
      return false;  // Sin, Cos, PowScalar
  }
}

template <class T>
void unary(Unary op, KernelParams p, int64_t n, const T* x, int64_t sx, T* y) {
  if constexpr (kSimd) {
    if (sx == 1) {
      if (unary_contig(op, p, n, x, y)) return;
    } else {
      // Gather into y and run in place, a chunk at a time so the chunk is still in cache. Safe
      // even if x overlaps y the way an in-place op would: element i is read before any write
      // to an index >= i.
      constexpr int64_t kChunk = 1024;
      for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
        const int64_t len = std::min(kChunk, n - i0);
        for (int64_t i = i0; i < i0 + len; ++i) y[i] = x[i * sx];
        if (!unary_contig(op, p, len, y + i0, y + i0)) {
          for (int64_t i = i0; i < i0 + len; ++i) y[i] = ref_unary(op, p, y[i]);
        }
      }
      return;
    }
  } else if (sx == 1) {
    switch (op) {  // the commonest ops get a branch-free loop the compiler vectorises
      case Unary::Neg: for (int64_t i = 0; i < n; ++i) y[i] = -x[i]; return;
      case Unary::Square: for (int64_t i = 0; i < n; ++i) y[i] = x[i] * x[i]; return;
      case Unary::Relu: for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i]; return;
      case Unary::AddScalar: { T a = T(p.a); for (int64_t i = 0; i < n; ++i) y[i] = x[i] + a; return; }
      case Unary::MulScalar: { T a = T(p.a); for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a; return; }
      default: break;
    }
  }
  for (int64_t i = 0; i < n; ++i) y[i] = ref_unary(op, p, x[i * sx]);
}

// ---- binary, compare, where ------------------------------------------------------------------

/// NaN-propagating max/min as scalar::apply_binary: a NaN a wins, then a NaN b.
template <class V>
inline V max_nan(V a, V b) {
  return select(is_nan(a), a, select(is_nan(b), b, max(a, b)));
}
template <class V>
inline V min_nan(V a, V b) {
  return select(is_nan(a), a, select(is_nan(b), b, min(a, b)));
}

// Note [Two-stream loops]
// On Zen 4, a loop that streams two arrays in and one out of L3 or memory runs 7% (1M floats)
// to 15-20% (4M) faster on 256-bit packets than on 512-bit ones; in L1 and L2 the two widths
// tie, and one input stream (relu) shows no difference. So elementwise loops over two
// contiguous operands of at least this many elements use the half-width packets.
constexpr int64_t kHalfWidthStreams = int64_t(1) << 17;

/// f(std::type_identity<P>{}) with P the packet type for a loop of n elements over two
/// contiguous operands.
template <class T, class F>
inline void with_two_stream_pack(int64_t n, F f) {
  if constexpr (kHalfPack) {
    if (n >= kHalfWidthStreams) return f(std::type_identity<HalfPack<T>>{});
  }
  f(std::type_identity<Pack<T>>{});
}

template <class V, class T>
[[gnu::always_inline]] inline bool binary_packets(Binary op, KernelParams p, int64_t n, const T* a,
                                                  int64_t sa, const T* b, int64_t sb, T* y) {
  auto run = [&](auto f) {
    return with_sources<V>(a, sa, b, sb, [&](auto va, auto vb) { map2<V>(n, va, vb, y, f); });
  };
  switch (op) {
    case Binary::Add: return run([](V u, V v) { return u + v; });
    case Binary::Sub: return run([](V u, V v) { return u - v; });
    case Binary::Mul: return run([](V u, V v) { return u * v; });
    case Binary::Div: return run([](V u, V v) { return u / v; });
    case Binary::Max: return run([](V u, V v) { return max_nan(u, v); });
    case Binary::Min: return run([](V u, V v) { return min_nan(u, v); });
    case Binary::MaskPositive: return run([](V u, V v) { return select(gt(v, V(T(0))), u, V(T(0))); });
    case Binary::LeakyMask: {
      const V slope(T(p.a));
      return run([slope](V u, V v) { return select(gt(v, V(T(0))), u, u * slope); });
    }
    default: return false;  // Pow
  }
}

template <class T>
bool binary_simd(Binary op, KernelParams p, int64_t n, const T* a, int64_t sa, const T* b, int64_t sb, T* y) {
  if (sa != 1 || sb != 1) return binary_packets<Pack<T>>(op, p, n, a, sa, b, sb, y);
  bool done = false;
  with_two_stream_pack<T>(n, [&](auto pack) {
    done = binary_packets<typename decltype(pack)::type>(op, p, n, a, sa, b, sb, y);
  });
  return done;
}

template <class T, class F>
inline void binary_loop(int64_t n, const T* a, int64_t sa, const T* b, int64_t sb, T* y, F f) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const T bv = *b;
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = *a;
    for (int64_t i = 0; i < n; ++i) y[i] = f(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i * sa], b[i * sb]);
  }
}

template <class T>
void binary(Binary op, KernelParams p, int64_t n, const T* a, int64_t sa, const T* b, int64_t sb, T* y) {
  if constexpr (kSimd) {
    if (n > 0 && binary_simd(op, p, n, a, sa, b, sb, y)) return;
  }
  switch (op) {
    case Binary::Add: return binary_loop(n, a, sa, b, sb, y, [](T u, T v) { return u + v; });
    case Binary::Sub: return binary_loop(n, a, sa, b, sb, y, [](T u, T v) { return u - v; });
    case Binary::Mul: return binary_loop(n, a, sa, b, sb, y, [](T u, T v) { return u * v; });
    case Binary::Div: return binary_loop(n, a, sa, b, sb, y, [](T u, T v) { return u / v; });
    default:
      return binary_loop(n, a, sa, b, sb, y, [op, p](T u, T v) { return apply_binary(op, u, v, p); });
  }
}

template <class T>
bool compare_simd(Compare op, int64_t n, const T* a, int64_t sa, const T* b, int64_t sb,
                  uint8_t* y) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  auto run = [&](auto pred) {
    return with_sources<V>(a, sa, b, sb, [&](auto va, auto vb) {
      int64_t i = 0;
      for (; i + W <= n; i += W) V::store_bytes01(y + i, pred(va.at(i), vb.at(i)));
      if (i < n) {
        const int r = int(n - i);
        V::store_bytes01_n(y + i, pred(va.at_n(i, r), vb.at_n(i, r)), r);
      }
    });
  };
  switch (op) {
    case Compare::Eq: return run([](V u, V v) { return eq(u, v); });
    case Compare::Ne: return run([](V u, V v) { return ne(u, v); });
    case Compare::Lt: return run([](V u, V v) { return lt(u, v); });
    case Compare::Le: return run([](V u, V v) { return le(u, v); });
    case Compare::Gt: return run([](V u, V v) { return gt(u, v); });
    case Compare::Ge: return run([](V u, V v) { return ge(u, v); });
    default: return false;
  }
}

template <class T>
void compare(Compare op, int64_t n, const T* a, int64_t sa, const T* b, int64_t sb, uint8_t* y) {
  if constexpr (kSimd) {
    if (n > 0 && compare_simd(op, n, a, sa, b, sb, y)) return;
  }
  for (int64_t i = 0; i < n; ++i) y[i] = apply_compare(op, a[i * sa], b[i * sb]) ? 1 : 0;
}

template <class T>
void where(int64_t n, const uint8_t* c, int64_t sc, const T* a, int64_t sa, const T* b,
           int64_t sb, T* y) {
  if constexpr (kSimd) {
    using V = Pack<T>;
    constexpr int W = V::kWidth;
    auto run = [&](auto va, auto vb) {
      int64_t i = 0;
      for (; i + W <= n; i += W) select(V::nonzero_bytes(c + i), va.at(i), vb.at(i)).store(y + i);
      if (i < n) {
        const int r = int(n - i);
        select(V::nonzero_bytes_n(c + i, r), va.at_n(i, r), vb.at_n(i, r)).store_n(y + i, r);
      }
    };
    if (n > 0 && sc == 1 && (sa == 0 || sa == 1) && (sb == 0 || sb == 1)) {
      if (sa == 1 && sb == 1) run(Contig<V>{a}, Contig<V>{b});
      else if (sa == 1) run(Contig<V>{a}, Bcast<V>{V(*b)});
      else if (sb == 1) run(Bcast<V>{V(*a)}, Contig<V>{b});
      else run(Bcast<V>{V(*a)}, Bcast<V>{V(*b)});
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) y[i] = c[i * sc] ? a[i * sa] : b[i * sb];
}

// ---- reductions ------------------------------------------------------------------------------

template <class T>
int64_t first_nan(int64_t n, const T* x) {
  for (int64_t i = 0; i < n; ++i)
    if (x[i] != x[i]) return i;
  return -1;
}

/// Contiguous reduction on packets: four independent accumulators (latency, and smaller
/// rounding error for sums). Max/Min run on the plain packet max/min and track NaNs apart.
template <class T>
T reduce_contig(Reduce op, int64_t n, const T* x) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const T ident = scalar::reduce_identity<T>(op);
  auto step = [op](V acc, V v) {
    switch (op) {
      case Reduce::Sum: return acc + v;
      case Reduce::Prod: return acc * v;
      case Reduce::Max: return max(acc, v);
      case Reduce::Min: return min(acc, v);
      default: return fma(v, v, acc);  // SumSquares
    }
  };
  V acc[4] = {V(ident), V(ident), V(ident), V(ident)};
  typename V::Mask nan = is_nan(V(T(0)));
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    for (int k = 0; k < 4; ++k) {
      V v = V::load(x + i + k * W);
      nan = nan | is_nan(v);
      acc[k] = step(acc[k], v);
    }
  }
  for (; i + W <= n; i += W) {
    V v = V::load(x + i);
    nan = nan | is_nan(v);
    acc[0] = step(acc[0], v);
  }
  if (i < n) {
    const int r = int(n - i);
    V v = select(V::first_n(r), V::load_n(x + i, r), V(ident));
    nan = nan | is_nan(v);
    acc[0] = step(acc[0], v);
  }
  if ((op == Reduce::Max || op == Reduce::Min) && any(nan)) return x[first_nan(n, x)];
  V a = acc[0];
  for (int k = 1; k < 4; ++k) a = op == Reduce::SumSquares ? a + acc[k] : step(a, acc[k]);
  switch (op) {
    case Reduce::Prod: return reduce_mul(a);
    case Reduce::Max: return reduce_max(a);
    case Reduce::Min: return reduce_min(a);
    default: return reduce_add(a);
  }
}

template <class T>
T reduce(Reduce op, int64_t n, const T* x, int64_t sx) {
  if constexpr (kSimd) {
    if (sx == 1) return reduce_contig(op, n, x);
  }
  // Eight independent partial results: shorter dependency chains and, for sums, smaller
  // rounding error than one running total.
  constexpr int kLanes = 8;
  T part[kLanes];
  for (T& v : part) v = scalar::reduce_identity<T>(op);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] = scalar::reduce_step(op, part[l], x[(i + l) * sx]);
  for (; i < n; ++i) part[0] = scalar::reduce_step(op, part[0], x[i * sx]);
  T acc = part[0];
  for (int l = 1; l < kLanes; ++l) acc = scalar::reduce_merge(op, acc, part[l]);
  return acc;
}

template <class T>
void accumulate(Reduce op, int64_t n, const T* x, int64_t sx, T* acc) {
  if constexpr (kSimd) {
    if (sx == 1) {
      // Two contiguous streams in: half-width packets when long (Note [Two-stream loops]).
      auto run = [&](auto f) {
        with_two_stream_pack<T>(n, [&](auto pack) {
          using V = typename decltype(pack)::type;
          map2<V>(n, Contig<V>{acc}, Contig<V>{x}, acc, f);
        });
      };
      switch (op) {
        case Reduce::Sum: run([](auto s, auto v) { return s + v; }); return;
        case Reduce::Prod: run([](auto s, auto v) { return s * v; }); return;
        case Reduce::Max: run([](auto s, auto v) { return max_nan(s, v); }); return;
        case Reduce::Min: run([](auto s, auto v) { return min_nan(s, v); }); return;
        case Reduce::SumSquares:  // square rounded on its own, as in the scalar backend
          run([](auto s, auto v) { return s + no_contract(v * v); });
          return;
        default: break;
      }
    }
    if (op == Reduce::SumSquares) {  // keep the product out of an FMA here too
      for (int64_t i = 0; i < n; ++i) {
        const T v = x[i * sx];
        acc[i] = acc[i] + no_contract(simd::Scalar<T>(v * v)).v;
      }
      return;
    }
  } else if (sx == 1 && op == Reduce::Sum) {
    for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) acc[i] = scalar::reduce_step(op, acc[i], x[i * sx]);
}

/// Contiguous arg max/min in two passes: the extreme value on packets (stopping at the first
/// NaN, which wins), then the first index holding it.
template <class T>
int64_t arg_reduce_contig(bool is_max, int64_t n, const T* x) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const T ident = is_max ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  V best = V(ident);
  int64_t i = 0;
  for (; i < n; i += W) {
    const int r = n - i < W ? int(n - i) : W;
    V v = r == W ? V::load(x + i) : select(V::first_n(r), V::load_n(x + i, r), V(ident));
    auto nan = is_nan(v);
    if (any(nan)) return i + __builtin_ctz(mask_bits(nan));
    best = is_max ? max(best, v) : min(best, v);
  }
  const T target = is_max ? reduce_max(best) : reduce_min(best);
  for (i = 0; i + W <= n; i += W) {
    const uint32_t hit = mask_bits(eq(V::load(x + i), V(target)));
    if (hit) return i + __builtin_ctz(hit);
  }
  for (; i < n; ++i)
    if (x[i] == target) return i;
  return 0;  // unreachable: the extreme value is one of the elements
}

template <class T>
int64_t arg_reduce(bool is_max, int64_t n, const T* x, int64_t sx) {
  if constexpr (kSimd) {
    if (sx == 1) return arg_reduce_contig(is_max, n, x);
  }
  int64_t best = 0;
  T bv = x[0];
  if (bv != bv) return 0;
  for (int64_t i = 1; i < n; ++i) {
    T v = x[i * sx];
    if (v != v) return i;
    if (is_max ? v > bv : v < bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

// ---- Convolution lowering -------------------------------------------------------------------
// Note [im2col loops]
// Rows are short (a feature map's width: 32, 24, 16, 8, ...), so the contiguous runs are copied,
// zeroed and added with packets, then a half-width packet and one masked packet for the tail
// (a plain 8-lane store is cheaper than a masked 16-lane one): memcpy/memset calls per row
// cost more than the copying itself (they took a third of a ResNet training step), and
// compiler-vectorised loops run up to 15 tail elements one by one. The backend files are built
// with -fno-tree-loop-distribute-patterns so that GCC does not turn the remaining scalar loops
// into such calls.

template <class T>
inline void zero_run(T* dst, int64_t n) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const V z(T(0));
  int64_t i = 0;
  for (; i + W <= n; i += W) z.store(dst + i);
  if constexpr (kHalfPack) {
    using H = HalfPack<T>;
    if (i + H::kWidth <= n) {
      H(T(0)).store(dst + i);
      i += H::kWidth;
    }
  }
  if (i < n) z.store_n(dst + i, int(n - i));
}

template <class T>
inline void copy_run(const T* src, T* dst, int64_t n) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  int64_t i = 0;
  for (; i + W <= n; i += W) V::load(src + i).store(dst + i);
  if constexpr (kHalfPack) {
    using H = HalfPack<T>;
    if (i + H::kWidth <= n) {
      H::load(src + i).store(dst + i);
      i += H::kWidth;
    }
  }
  if (i < n) V::load_n(src + i, int(n - i)).store_n(dst + i, int(n - i));
}

template <class T>
inline void add_run(const T* src, T* dst, int64_t n) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  int64_t i = 0;
  for (; i + W <= n; i += W) (V::load(dst + i) + V::load(src + i)).store(dst + i);
  if constexpr (kHalfPack) {
    using H = HalfPack<T>;
    if (i + H::kWidth <= n) {
      (H::load(dst + i) + H::load(src + i)).store(dst + i);
      i += H::kWidth;
    }
  }
  if (i < n) (V::load_n(dst + i, int(n - i)) + V::load_n(src + i, int(n - i))).store_n(dst + i, int(n - i));
}

// dst[k] = src[2k] for k < n (stride-2 convolutions), reading src[0 .. 2n-2] only: two loads
// (masked at the end) and a deinterleave per packet of outputs.
template <class T>
inline void gather2_run(const T* src, T* dst, int64_t n) {
  using V = Pack<T>;
  constexpr int64_t W = V::kWidth;
  V even, odd;
  for (int64_t k = 0; k < n; k += W) {
    const int m = static_cast<int>(std::min<int64_t>(W, n - k));
    const int need = 2 * m - 1;  // inputs this packet reads
    const T* s = src + 2 * k;
    deinterleave(need >= W ? V::load(s) : V::load_n(s, need),
                 need > W ? V::load_n(s + W, need - W) : V(T(0)), even, odd);
    even.store_n(dst + k, m);
  }
}

struct ValidRange {
  int64_t lo, hi;
};
// The output columns [lo, hi) whose input column ow * stride + off lies in [0, w).
inline ValidRange valid_columns(int64_t off, int64_t stride, int64_t w, int64_t wo) {
  if (stride == 1) {  // no divisions: this runs once per kernel tap, ~600 times an image
    const int64_t lo = std::clamp<int64_t>(-off, 0, wo);
    return {lo, std::clamp<int64_t>(w - off, lo, wo)};
  }
  const int64_t lo = off >= 0 ? 0 : std::min<int64_t>(wo, (-off + stride - 1) / stride);
  const int64_t hi = w - off <= 0 ? lo : std::clamp<int64_t>((w - off + stride - 1) / stride, lo, wo);
  return {lo, hi};
}

// With unit strides and wo == w, the output rows of one kernel tap read consecutive input rows
// at a fixed offset: the whole tap is one flat run of the plane, except the |off| edge columns
// of each row, which fall outside the image (they would read the neighbouring row) and are 0.
inline bool flat_taps(const ConvShape& s) { return s.stride_h == 1 && s.stride_w == 1 && s.wo == s.w; }

// The output rows [lo, hi) of tap row i whose input row lies inside the image.
inline ValidRange valid_rows(const ConvShape& s, int64_t i) {
  const int64_t first = i * s.dil_h - s.pad_h;  // input row of output row 0
  const int64_t lo = std::clamp<int64_t>(-first, 0, s.ho);
  const int64_t hi = std::clamp<int64_t>(s.h - first, lo, s.ho);
  return {lo, hi};
}

// Note [Stride-2 columns]
// A stride-2 tap reads every other input column, a short gather per output row (rows of 3 to 16
// values in DCGAN and a ResNet's downsampling), which left im2col a fifth of a DCGAN step. Each
// channel is first split into its even and odd columns, with zero borders: phase p = off & 1 of
// a tap whose column offset is off holds x[r][2q + p] at column left + q, so the tap's row oh
// is the run phase[p][ih] from column left + (off >> 1) on, padding included, a plain copy. Rows
// are written in order with whole vectors, each spilling into the next row's place before that
// row is written; only a row whose vectors would pass the end of the tap's row is copied to its
// exact length. Planes too large for the stack buffer take the general loop.
// What makes this cheap on DCGAN's small planes (7x7 and 14x14, rows of 3 to 7 values), where a
// misjudged branch per row cost more than the copy: the buffer has zero rows above and below the
// image as well, so every tap moves all of its output rows with the same trip counts (no tests
// of which rows lie inside); its borders are zeroed once per call, not per channel (the split
// rewrites the same interior each time, col2im's drain leaves it zero); the split and the drain
// are packet permutes (deinterleave / interleave); and rows of at most half a vector move as
// half-width vectors (bench_kernels.cpp's dcgan_* cases measure them).

// The phase buffer's layout for one channel of `s` (Note [Stride-2 columns]): two planes (even
// and odd columns) of `rows` rows, `top` of them zero above the image and the rest below it, as
// many as the taps read; each row wp wide with the image's columns from `left` on.
template <class T>
struct Stride2Phases {
  static constexpr int64_t kMaxBuffer = 16384 / sizeof(T);  // on the stack
  int64_t left, vec, wp, top, rows;
  Stride2Phases(const ConvShape& s, int64_t width) {
    const int64_t q_min = (-s.pad_w) >> 1, q_max = ((s.kw - 1) * s.dil_w - s.pad_w) >> 1;
    const int64_t half = (s.w + 1) / 2;  // even columns
    left = std::max<int64_t>(0, -q_min);
    vec = (s.wo + width - 1) / width * width;
    wp = left + std::max(half, std::max<int64_t>(q_max, 0) + vec) + width;
    top = s.pad_h;
    rows = top + std::max(s.h, (s.ho - 1) * s.stride_h + (s.kh - 1) * s.dil_h - s.pad_h + 1);
  }
  bool fits() const { return 2 * rows * wp <= kMaxBuffer; }
  // Where the even (p = 0) or odd (p = 1) columns of the image's row r start.
  int64_t row(int64_t p, int64_t r) const { return (p * rows + top + r) * wp + left; }
  // Where tap (i, j)'s output row 0 starts.
  int64_t tap(const ConvShape& s, int64_t i, int64_t j) const {
    const int64_t off = j * s.dil_w - s.pad_w;
    return row(off & 1, i * s.dil_h - s.pad_h) + (off >> 1);
  }
  // The output rows moved as whole vectors: those whose vectors end inside the tap's row.
  int64_t whole_rows(const ConvShape& s) const {
    const int64_t hw = s.ho * s.wo;
    return hw >= vec ? std::min(s.ho, (hw - vec) / s.wo + 1) : 0;
  }
};

// x[2q] into even[q] and x[2q + 1] into odd[q] for the n values of x (a row of a plane).
template <class T>
inline void split_even_odd(const T* x, T* even, T* odd, int64_t n) {
  using V = Pack<T>;
  constexpr int64_t W = V::kWidth;
  int64_t i = 0;
  V e, o;
  for (; i + 2 * W <= n; i += 2 * W) {
    deinterleave(V::load(x + i), V::load(x + i + W), e, o);
    e.store(even + i / 2);
    o.store(odd + i / 2);
  }
  if (i == n) return;
  const int r = static_cast<int>(n - i);  // 0 < r < 2W: masked loads, as the row may end the plane
  deinterleave(r >= W ? V::load(x + i) : V::load_n(x + i, r), r > W ? V::load_n(x + i + W, r - W) : V(T(0)), e, o);
  const int ne = (r + 1) / 2, no = r / 2;
  if (ne == W) e.store(even + i / 2); else e.store_n(even + i / 2, ne);
  if (no > 0) o.store_n(odd + i / 2, no);
}

// The inverse of split_even_odd, added into x: x[2q] += even[q], x[2q + 1] += odd[q]; even and
// odd are left zero.
template <class T>
inline void drain_even_odd(T* even, T* odd, T* x, int64_t n) {
  using V = Pack<T>;
  constexpr int64_t W = V::kWidth;
  const V zero(T(0));
  int64_t i = 0;
  V lo, hi;
  for (; i + 2 * W <= n; i += 2 * W) {
    interleave(V::load(even + i / 2), V::load(odd + i / 2), lo, hi);
    (V::load(x + i) + lo).store(x + i);
    (V::load(x + i + W) + hi).store(x + i + W);
    zero.store(even + i / 2);
    zero.store(odd + i / 2);
  }
  if (i == n) return;
  const int r = static_cast<int>(n - i), ne = (r + 1) / 2, no = r / 2;
  interleave(ne == W ? V::load(even + i / 2) : V::load_n(even + i / 2, ne),
             no > 0 ? V::load_n(odd + i / 2, no) : zero, lo, hi);
  if (r >= W) {
    (V::load(x + i) + lo).store(x + i);
    if (r > W) (V::load_n(x + i + W, r - W) + hi).store_n(x + i + W, r - W);
  } else {
    (V::load_n(x + i, r) + lo).store_n(x + i, r);
  }
  if (ne == W) zero.store(even + i / 2); else zero.store_n(even + i / 2, ne);
  if (no > 0) zero.store_n(odd + i / 2, no);
}

// Asks for the n values at p to be brought into the cache (for writing when `write`): the next
// channel's plane while this one's taps are moved. In a training step the image was written long
// before (by the forward pass, for a weight gradient) and the split's row-sized masked loads
// waited on memory otherwise: a third of the lowering's time in a DCGAN step.
template <bool write = false, class T>
inline void prefetch_run(const T* p, int64_t n) {
  const char* b = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < n * int64_t(sizeof(T)); off += 64) __builtin_prefetch(b + off, write ? 1 : 0, 3);
}

template <class V, class T>
void im2col_stride2(const ConvShape& s, const Stride2Phases<T>& g, const T* __restrict x, T* __restrict cols,
                    int64_t ld) {
  constexpr int64_t W = V::kWidth;
  const int64_t wo = s.wo, step = s.stride_h * g.wp, whole = g.whole_rows(s);
  const int last = static_cast<int>(wo - (g.vec - W));  // the row's lanes in its last vector
  alignas(64) T phase[Stride2Phases<T>::kMaxBuffer];
  // The borders, once: each channel rewrites the same interior.
  std::fill(phase, phase + 2 * g.rows * g.wp, T(0));
  T* row = cols;
  for (int64_t c = 0; c < s.c; ++c) {
    const T* xc = x + c * s.h * s.w;
    if (c + 1 < s.c) prefetch_run(xc + s.h * s.w, s.h * s.w);
    for (int64_t r = 0; r < s.h; ++r) split_even_odd(xc + r * s.w, phase + g.row(0, r), phase + g.row(1, r), s.w);
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j, row += ld) {
        const T* src = phase + g.tap(s, i, j);
        T* dst = row;
        int64_t oh = 0;
        if (g.vec == W) {  // DCGAN's rows: one vector each, no inner loop
          for (; oh < whole; ++oh, src += step, dst += wo) V::load(src).store(dst);
        } else {
          for (; oh < whole; ++oh, src += step, dst += wo)
            for (int64_t k = 0; k < g.vec; k += W) V::load(src + k).store(dst + k);
        }
        for (; oh < s.ho; ++oh, src += step, dst += wo) {  // the phase buffer has room to read whole vectors
          int64_t k = 0;
          for (; k + W < g.vec; k += W) V::load(src + k).store(dst + k);
          V::load(src + k).store_n(dst + k, last);
        }
      }
    }
  }
}

// The adjoint of im2col_stride2: each tap's rows are added into the phase buffer (whole vectors
// whose lanes past the row add zero), which is then added back into the plane.
template <class V, class T>
void col2im_stride2(const ConvShape& s, const Stride2Phases<T>& g, const T* __restrict cols, T* __restrict x,
                    int64_t ld) {
  constexpr int64_t W = V::kWidth;
  const int64_t wo = s.wo, step = s.stride_h * g.wp, whole = g.whole_rows(s);
  const int last = static_cast<int>(wo - (g.vec - W));  // the row's lanes in its last vector
  const auto tail = V::first_n(last);
  alignas(64) T phase[Stride2Phases<T>::kMaxBuffer];
  // Zeroed once: what lands in the borders (the padding's share) is never read back, and each
  // channel drains the interior to zero again.
  std::fill(phase, phase + 2 * g.rows * g.wp, T(0));
  const T* row = cols;
  for (int64_t c = 0; c < s.c; ++c) {
    prefetch_run<true>(x + c * s.h * s.w, s.h * s.w);  // drained into after the taps
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j, row += ld) {
        T* dst = phase + g.tap(s, i, j);
        const T* src = row;
        int64_t oh = 0;
        if (g.vec == W) {
          for (; oh < whole; ++oh, src += wo, dst += step)
            (V::load(dst) + select(tail, V::load(src), V(T(0)))).store(dst);
        }
        for (; oh < whole; ++oh, src += wo, dst += step) {
          int64_t k = 0;
          for (; k + W < g.vec; k += W) (V::load(dst + k) + V::load(src + k)).store(dst + k);
          (V::load(dst + k) + select(tail, V::load(src + k), V(T(0)))).store(dst + k);
        }
        for (; oh < s.ho; ++oh, src += wo, dst += step) {  // lanes past the row add zero to the phase buffer
          int64_t k = 0;
          for (; k + W < g.vec; k += W) (V::load(dst + k) + V::load(src + k)).store(dst + k);
          (V::load(dst + k) + V::load_n(src + k, last)).store(dst + k);
        }
      }
    }
    T* xc = x + c * s.h * s.w;
    for (int64_t r = 0; r < s.h; ++r) drain_even_odd(phase + g.row(0, r), phase + g.row(1, r), xc + r * s.w, s.w);
  }
}

// f(std::type_identity<P>{}, layout) with the packet P that moves the rows of `s` and the phase
// buffer's layout for it; false (f not called) when the buffer would not fit. Rows of at most half
// a vector move as half-width vectors (a 16-float store for a row of 3 writes 13 values only to
// overwrite them).
template <class T, class F>
bool with_stride2_phases(const ConvShape& s, F f) {
  const bool half = kHalfPack && 2 * s.wo <= Pack<T>::kWidth;
  const Stride2Phases<T> g(s, half ? HalfPack<T>::kWidth : Pack<T>::kWidth);
  if (!g.fits()) return false;
  if (half) {
    f(std::type_identity<HalfPack<T>>{}, g);
  } else {
    f(std::type_identity<Pack<T>>{}, g);
  }
  return true;
}

// Output planes of one pixel (DCGAN's 4x4 -> 1x1 and 3x3 -> 1x1 layers, a plane seen whole): each
// row of the columns holds one value, which the row loops below would reach through three run
// calls. Without padding the column is the image itself, cols[t * ld] = x[t].
template <class T>
void im2col_one_pixel(const ConvShape& s, const T* __restrict x, T* __restrict cols, int64_t ld) {
  for (int64_t c = 0; c < s.c; ++c) {
    const T* xc = x + c * s.h * s.w;
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t ih = i * s.dil_h - s.pad_h;
      for (int64_t j = 0; j < s.kw; ++j, cols += ld) {
        const int64_t iw = j * s.dil_w - s.pad_w;
        *cols = ih >= 0 && ih < s.h && iw >= 0 && iw < s.w ? xc[ih * s.w + iw] : T(0);
      }
    }
  }
}

template <class T>
void col2im_one_pixel(const ConvShape& s, const T* __restrict cols, T* __restrict x, int64_t ld) {
  for (int64_t c = 0; c < s.c; ++c) {
    T* xc = x + c * s.h * s.w;
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t ih = i * s.dil_h - s.pad_h;
      for (int64_t j = 0; j < s.kw; ++j, cols += ld) {
        const int64_t iw = j * s.dil_w - s.pad_w;
        if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) xc[ih * s.w + iw] += *cols;
      }
    }
  }
}

// Note [Unpadded rows]
// The taps of a stride-1 convolution without column padding (LeNet's unpadded 5x5: rows of 24
// and 8 values out of rows of 28 and 12) read whole rows at a fixed offset: c * kh * kw * ho
// short runs per image. Through im2col's general loop each row paid more for its tests (which
// taps, which rows, then copy_run's packet loop, half packet and tail: ~5 cycles for a row of 8)
// than for its copy, and each tap as much again for working out its ranges and calls. Here the
// whole lowering is one template per row length, with a row's packets unrolled (and, on AVX-512,
// two rows of half a packet stored as one packet), picked once per call. col2im adds the taps
// column by column of the kernel (j outer, then i): a tap then adds into the rows of the tap
// before it at the same offset, while the tap order of the general loop (i outer, then j) adds
// each row again at an offset of one value, whose loads had to wait for the stores still in
// flight to the bytes they overlap (store forwarding fails on such partial overlaps). Each
// table, the scalar one included, takes this path, so their sums stay in the same order.
inline bool unpadded_columns(const ConvShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && s.pad_w == 0 && (s.kw - 1) * s.dil_w + s.wo <= s.w;
}

// One tap's rows: rows runs of n == kFull packets (+ a half packet when kHalf) values, src_ld
// apart, to dst one after another.
template <class T, int kFull, bool kHalf>
[[gnu::always_inline]] inline void copy_tap_rows(int64_t rows, const T* __restrict src, int64_t src_ld,
                                                 T* __restrict dst) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  constexpr int n = kFull * W + (kHalf ? HalfPack<T>::kWidth : 0);
  int64_t r = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if constexpr (kFull == 0 && kHalf) {  // two rows of half a packet per store
    for (; r + 2 <= rows; r += 2, src += 2 * src_ld, dst += 2 * n) {
      if constexpr (std::is_same_v<T, float>) {
        _mm512_storeu_ps(dst, _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(src)),
                                                 _mm256_loadu_ps(src + src_ld), 1));
      } else {
        _mm512_storeu_pd(dst, _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_loadu_pd(src)),
                                                 _mm256_loadu_pd(src + src_ld), 1));
      }
    }
  }
#endif
  for (; r < rows; ++r, src += src_ld, dst += n) {
    for (int v = 0; v < kFull; ++v) V::load(src + v * W).store(dst + v * W);
    if constexpr (kHalf) HalfPack<T>::load(src + kFull * W).store(dst + kFull * W);
  }
}

// kFull < 0: rows of any length (copy_run).
template <class T, int kFull, bool kHalf>
void im2col_unpadded(const ConvShape& s, const T* __restrict x, T* __restrict cols, int64_t ld) {
  const int64_t wo = s.wo;
  for (int64_t c = 0; c < s.c; ++c) {
    const T* xc = x + c * s.h * s.w;
    for (int64_t i = 0; i < s.kh; ++i) {
      const ValidRange rows = valid_rows(s, i);
      const bool edges = rows.lo > 0 || rows.hi < s.ho;
      const T* src = xc + (rows.lo + i * s.dil_h - s.pad_h) * s.w;
      for (int64_t j = 0; j < s.kw; ++j, cols += ld, src += s.dil_w) {
        if (edges) {
          zero_run(cols, rows.lo * wo);
          zero_run(cols + rows.hi * wo, (s.ho - rows.hi) * wo);
        }
        if constexpr (kFull < 0) {
          for (int64_t oh = rows.lo; oh < rows.hi; ++oh) copy_run(src + (oh - rows.lo) * s.w, cols + oh * wo, wo);
        } else {
          copy_tap_rows<T, kFull, kHalf>(rows.hi - rows.lo, src, s.w, cols + rows.lo * wo);
        }
      }
    }
  }
}

// f(kFull, kHalf), as integral constants, for rows of n values: a few whole packets, or (AVX-512)
// some and a half one; kFull = -1 for any other length.
template <class T, class F>
void with_row_packets(int64_t n, F f) {
  constexpr int64_t W = Pack<T>::kWidth;
  using std::integral_constant, std::true_type, std::false_type;
  if constexpr (kSimd) {
    if (kHalfPack && n % W == HalfPack<T>::kWidth) {
      switch (n / W) {
        case 0: return f(integral_constant<int, 0>{}, true_type{});
        case 1: return f(integral_constant<int, 1>{}, true_type{});
        case 2: return f(integral_constant<int, 2>{}, true_type{});
        default: break;
      }
    } else if (n % W == 0) {
      switch (n / W) {
        case 1: return f(integral_constant<int, 1>{}, false_type{});
        case 2: return f(integral_constant<int, 2>{}, false_type{});
        case 3: return f(integral_constant<int, 3>{}, false_type{});
        case 4: return f(integral_constant<int, 4>{}, false_type{});
        default: break;
      }
    }
  }
  f(integral_constant<int, -1>{}, false_type{});
}

// The adjoint of im2col_unpadded: each tap's rows added into the image.
template <class T, int kFull, bool kHalf>
void col2im_unpadded(const ConvShape& s, const T* __restrict cols, T* __restrict x, int64_t ld) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const int64_t wo = s.wo;
  for (int64_t c = 0; c < s.c; ++c) {
    T* xc = x + c * s.h * s.w;
    const T* cc = cols + c * s.kh * s.kw * ld;
    for (int64_t j = 0; j < s.kw; ++j) {
      for (int64_t i = 0; i < s.kh; ++i) {
        const ValidRange rows = valid_rows(s, i);
        const T* src = cc + (i * s.kw + j) * ld + rows.lo * wo;
        T* dst = xc + (rows.lo + i * s.dil_h - s.pad_h) * s.w + j * s.dil_w;
        for (int64_t oh = rows.lo; oh < rows.hi; ++oh, src += wo, dst += s.w) {
          if constexpr (kFull < 0) {
            add_run(src, dst, wo);
          } else {
            for (int v = 0; v < kFull; ++v) (V::load(dst + v * W) + V::load(src + v * W)).store(dst + v * W);
            if constexpr (kHalf) {
              using H = HalfPack<T>;
              (H::load(dst + kFull * W) + H::load(src + kFull * W)).store(dst + kFull * W);
            }
          }
        }
      }
    }
  }
}

template <class T>
void im2col(const ConvShape& s, const T* __restrict x, T* __restrict cols, int64_t ld) {
  const int64_t wo = s.wo, sw = s.stride_w;
  if (s.ho == 1 && s.wo == 1) {
    im2col_one_pixel(s, x, cols, ld);
    return;
  }
  if (s.stride_w == 2 && with_stride2_phases<T>(s, [&](auto packet, const Stride2Phases<T>& g) {
        im2col_stride2<typename decltype(packet)::type>(s, g, x, cols, ld);
      }))
    return;
  if (unpadded_columns(s)) {  // Note [Unpadded rows]
    with_row_packets<T>(s.wo, [&](auto full, auto half) { im2col_unpadded<T, full(), half()>(s, x, cols, ld); });
    return;
  }
  const bool flat = flat_taps(s);
  // A running row pointer: computing each row's offset from ld cost GCC a register in the row
  // loops below (LeNet's rows of 8: im2col 35% slower on AVX-512).
  T* next_row = cols;
  for (int64_t c = 0; c < s.c; ++c) {
    const T* xc = x + c * s.h * s.w;
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        T* row = next_row;
        next_row += ld;
        const int64_t off = j * s.dil_w - s.pad_w;
        const ValidRange r = valid_columns(off, sw, s.w, wo);
        if (flat) {
          const ValidRange rows = valid_rows(s, i);
          zero_run(row, rows.lo * wo);
          zero_run(row + rows.hi * wo, (s.ho - rows.hi) * wo);
          if (rows.hi > rows.lo) {
            // dst [rows.lo * wo + r.lo, rows.hi * wo - (wo - r.hi)) reads the plane from
            // (rows.lo + first) * w + r.lo + off on: in bounds, edges of the end rows excluded.
            const int64_t begin = rows.lo * wo + r.lo, end = rows.hi * wo - (wo - r.hi);
            const int64_t src = (rows.lo + i * s.dil_h - s.pad_h) * s.w + r.lo + off;
            if (end > begin) copy_run(xc + src, row + begin, end - begin);
            for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
              for (int64_t ow = 0; ow < r.lo; ++ow) row[oh * wo + ow] = T(0);
              for (int64_t ow = r.hi; ow < wo; ++ow) row[oh * wo + ow] = T(0);
            }
          }
          continue;
        }
        if (sw == 1 && s.stride_h == 1 && r.lo == 0 && r.hi == wo) {
          // Unit strides, no column padding (LeNet-like maps with rows narrower than the input):
          // the rows outside the image are two zero blocks, the others plain copies without
          // per-row checks (rows of 8 or 24 floats are mostly overhead otherwise).
          const ValidRange rows = valid_rows(s, i);
          zero_run(row, rows.lo * wo);
          zero_run(row + rows.hi * wo, (s.ho - rows.hi) * wo);
          const T* src = xc + (rows.lo + i * s.dil_h - s.pad_h) * s.w + off;
          for (int64_t oh = rows.lo; oh < rows.hi; ++oh, src += s.w) copy_run(src, row + oh * wo, wo);
          continue;
        }
        for (int64_t oh = 0; oh < s.ho; ++oh) {
          const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
          T* dst = row + oh * wo;
          if (ih < 0 || ih >= s.h) {
            zero_run(dst, wo);
            continue;
          }
          const T* src = xc + ih * s.w;  // valid columns read src[ow * sw + off]; off may be < 0
          zero_run(dst, r.lo);
          if (sw == 1) {
            copy_run(src + (r.lo + off), dst + r.lo, r.hi - r.lo);
          } else if (sw == 2) {
            gather2_run(src + (r.lo * 2 + off), dst + r.lo, r.hi - r.lo);
          } else {
            for (int64_t ow = r.lo; ow < r.hi; ++ow) dst[ow] = src[ow * sw + off];
          }
          zero_run(dst + r.hi, wo - r.hi);
        }
      }
    }
  }
}

template <class T>
void col2im(const ConvShape& s, T* __restrict cols, T* __restrict x, int64_t ld) {
  const int64_t wo = s.wo, sw = s.stride_w;
  if (s.ho == 1 && s.wo == 1) {
    col2im_one_pixel(s, cols, x, ld);
    return;
  }
  if (s.stride_w == 2 && with_stride2_phases<T>(s, [&](auto packet, const Stride2Phases<T>& g) {
        col2im_stride2<typename decltype(packet)::type>(s, g, cols, x, ld);
      }))
    return;
  if (unpadded_columns(s)) {  // Note [Unpadded rows]
    with_row_packets<T>(s.wo, [&](auto full, auto half) { col2im_unpadded<T, full(), half()>(s, cols, x, ld); });
    return;
  }
  const bool flat = flat_taps(s);
  T* next_row = cols;
  for (int64_t c = 0; c < s.c; ++c) {
    T* xc = x + c * s.h * s.w;
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        T* row = next_row;
        next_row += ld;
        const int64_t off = j * s.dil_w - s.pad_w;
        const ValidRange r = valid_columns(off, sw, s.w, wo);
        if (flat) {  // as im2col's flat taps; the edge entries are zeroed first (cols is scratch)
          const ValidRange rows = valid_rows(s, i);
          if (rows.hi <= rows.lo) continue;
          for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
            for (int64_t ow = 0; ow < r.lo; ++ow) row[oh * wo + ow] = T(0);
            for (int64_t ow = r.hi; ow < wo; ++ow) row[oh * wo + ow] = T(0);
          }
          const int64_t begin = rows.lo * wo + r.lo, end = rows.hi * wo - (wo - r.hi);
          const int64_t dst = (rows.lo + i * s.dil_h - s.pad_h) * s.w + r.lo + off;
          if (end > begin) add_run(row + begin, xc + dst, end - begin);
          continue;
        }
        if (sw == 1 && s.stride_h == 1 && r.lo == 0 && r.hi == wo) {  // as im2col's unpadded rows
          const ValidRange rows = valid_rows(s, i);
          T* dst = xc + (rows.lo + i * s.dil_h - s.pad_h) * s.w + off;
          for (int64_t oh = rows.lo; oh < rows.hi; ++oh, dst += s.w) add_run(row + oh * wo, dst, wo);
          continue;
        }
        for (int64_t oh = 0; oh < s.ho; ++oh) {
          const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
          if (ih < 0 || ih >= s.h) continue;
          const T* src = row + oh * wo;
          T* dst = xc + ih * s.w;
          if (sw == 1) {
            add_run(src + r.lo, dst + (r.lo + off), r.hi - r.lo);
          } else {
            for (int64_t ow = r.lo; ow < r.hi; ++ow) dst[ow * sw + off] += src[ow];
          }
        }
      }
    }
  }
}

// ---- Batch-norm channel loops (Note [Fused batch norm] in src/nn/normalization.cpp) -----------

template <class T>
void centered_sums(int64_t n, const T* x, T c, const T* y, double* s1, double* s2) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const V vc(c);
  V a0(T(0)), a1(T(0)), b0(T(0)), b1(T(0));  // two accumulators each: the adds are latency-bound
  int64_t i = 0;
  if (y == nullptr) {
    for (; i + 2 * W <= n; i += 2 * W) {
      const V d0 = V::load(x + i) - vc, d1 = V::load(x + i + W) - vc;
      a0 = a0 + d0;
      a1 = a1 + d1;
      b0 = b0 + d0 * d0;
      b1 = b1 + d1 * d1;
    }
    for (; i < n; i += W) {
      const int r = int(std::min<int64_t>(W, n - i));
      const auto live = V::first_n(r);
      const V d = select(live, V::load_n(x + i, r) - vc, V(T(0)));
      a0 = a0 + d;
      b0 = b0 + d * d;
    }
  } else {
    for (; i + 2 * W <= n; i += 2 * W) {
      const V g0 = V::load(y + i), g1 = V::load(y + i + W);
      a0 = a0 + g0;
      a1 = a1 + g1;
      b0 = b0 + g0 * (V::load(x + i) - vc);
      b1 = b1 + g1 * (V::load(x + i + W) - vc);
    }
    for (; i < n; i += W) {
      const int r = int(std::min<int64_t>(W, n - i));
      const V g = V::load_n(y + i, r);  // zero in the dead lanes
      a0 = a0 + g;
      b0 = b0 + g * (V::load_n(x + i, r) - vc);
    }
  }
  *s1 += static_cast<double>(reduce_add(a0)) + static_cast<double>(reduce_add(a1));
  *s2 += static_cast<double>(reduce_add(b0)) + static_cast<double>(reduce_add(b1));
}

template <class T>
void affine2(int64_t n, const T* a, T alpha, const T* b, T beta, T gamma, T* out) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const V va(alpha), vb(beta), vg(gamma);
  // no_contract keeps each product rounded on its own, as in the scalar reference (the compiler
  // would otherwise fuse multiply and add on FMA targets).
  auto f = [&](V x) { return no_contract(x * va) + vg; };
  auto f2 = [&](V x, V y) { return no_contract(no_contract(x * va) + no_contract(y * vb)) + vg; };
  int64_t i = 0;
  if (b == nullptr) {
    for (; i + W <= n; i += W) f(V::load(a + i)).store(out + i);
    if (i < n) f(V::load_n(a + i, int(n - i))).store_n(out + i, int(n - i));
  } else {
    for (; i + W <= n; i += W) f2(V::load(a + i), V::load(b + i)).store(out + i);
    if (i < n) {
      const int r = int(n - i);
      f2(V::load_n(a + i, r), V::load_n(b + i, r)).store_n(out + i, r);
    }
  }
}

// ---- 2x2 max pooling ---------------------------------------------------------------------------

// One window's candidates in scan order: a candidate replaces the best so far when larger, or
// when it is the first NaN; the first of equal maxima stays. (Every ISA runs this rule.)
// Branch-free: on real data which candidate wins is unpredictable.
template <class T>
inline void pool_take(T v, int64_t at, T& best, int64_t& best_at) {
  const bool take = (v > best) | ((v != v) & (best == best));
  best = take ? v : best;
  best_at = take ? at : best_at;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
// pool_take's rule over 16 windows' four candidates (in scan order; the first at index first, the
// others at first + offs[c]), and the first n windows' maxima and their indices stored.
inline void store_window_maxima(const __m512 (&cand)[4], __m512i first, const int32_t (&offs)[4], int n, float* y,
                                int64_t* idx) {
  __m512 best = cand[0];
  __m512i at = first;
  for (int c = 1; c < 4; ++c) {
    const __mmask16 take = _mm512_cmp_ps_mask(cand[c], best, _CMP_GT_OQ) |
                           (_mm512_cmp_ps_mask(cand[c], cand[c], _CMP_UNORD_Q) &
                            _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
    best = _mm512_mask_mov_ps(best, take, cand[c]);
    at = _mm512_mask_add_epi32(at, take, first, _mm512_set1_epi32(offs[c]));
  }
  const __mmask16 out = __mmask16((1u << n) - 1u);
  _mm512_mask_storeu_ps(y, out, best);
  _mm512_mask_storeu_epi64(idx, __mmask8(out), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(at)));
  _mm512_mask_storeu_epi64(idx + 8, __mmask8(out >> 8), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(at, 1)));
}
#endif

// Float planes whose output rows are at most 8 windows wide and whose width is even (LeNet-5's
// second pooling: 8x8 -> 4x4), 16 / wo output rows per step: their input rows are one run of at
// most 64 floats, four registers, from which each candidate is two permutes and a blend. One row
// per step, as max_pool2x2_row_simd does, left three quarters of the lanes idle at wo = 4. Returns
// whether it ran (AVX-512 only); lane indices are 32-bit, as there.
inline bool max_pool2x2_narrow_planes_simd(int64_t planes, int64_t h, int64_t w, const float* x, float* y,
                                           int64_t* idx) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  const int64_t ho = h / 2, wo = w / 2;
  const int64_t rows = 16 / wo;  // output rows per step
  // Lane l: window l % wo of the step's output row l / wo; its candidates' offsets in the step's input.
  alignas(64) int32_t first_offset[16] = {};
  for (int64_t l = 0; l < rows * wo; ++l) first_offset[l] = int32_t(l / wo * 2 * w + 2 * (l % wo));
  const int32_t offs[4] = {0, 1, int32_t(w), int32_t(w + 1)};
  const __m512i first_in_step = _mm512_load_si512(first_offset);
  __m512i at_in_step[4];
  __mmask16 upper[4];  // lanes whose candidate lies in the upper two registers
  for (int c = 0; c < 4; ++c) {
    at_in_step[c] = _mm512_add_epi32(first_in_step, _mm512_set1_epi32(offs[c]));
    upper[c] = _mm512_cmpge_epi32_mask(at_in_step[c], _mm512_set1_epi32(32));
  }
  for (int64_t pl = 0; pl < planes; ++pl, x += h * w, y += ho * wo, idx += ho * wo) {
    for (int64_t oh = 0; oh < ho; oh += rows) {
      const int64_t step_rows = std::min(rows, ho - oh);
      const int64_t floats = step_rows * 2 * w;
      const float* src = x + 2 * oh * w;
      __m512 in[4];
      for (int k = 0; k < 4; ++k) {
        const int64_t left = std::clamp<int64_t>(floats - 16 * k, 0, 16);
        in[k] = _mm512_maskz_loadu_ps(__mmask16((1u << left) - 1u), src + 16 * k);
      }
      __m512 cand[4];
      for (int c = 0; c < 4; ++c) {
        cand[c] = _mm512_mask_blend_ps(upper[c], _mm512_permutex2var_ps(in[0], at_in_step[c], in[1]),
                                       _mm512_permutex2var_ps(in[2], at_in_step[c], in[3]));
      }
      const __m512i first = _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * oh * w)), first_in_step);
      store_window_maxima(cand, first, offs, int(step_rows * wo), y + oh * wo, idx + oh * wo);
    }
  }
  return true;
#else
  (void)planes, (void)h, (void)w, (void)x, (void)y, (void)idx;
  return false;
#endif
}

// Output row oh of a float plane, 16 windows per step (the last one masked): the even and odd
// columns of both input rows, then pool_take's rule lane by lane (8 windows on AVX2). Returns
// the windows done (all of them, or none without AVX2 or AVX-512). Lane indices are 32-bit: the
// caller checks that the plane is small enough.
inline int64_t max_pool2x2_row_simd(const float* x, int64_t w, int64_t oh, int64_t wo, float* y,
                                    int64_t* idx) {
  int64_t ow = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const int32_t offs[4] = {0, 1, int32_t(w), int32_t(w + 1)};
  for (; ow < wo; ow += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, wo - ow));  // windows this step
    const __mmask16 lo = __mmask16((1u << std::min(2 * n, 16)) - 1u);
    const __mmask16 hi = __mmask16((1u << std::max(2 * n - 16, 0)) - 1u);
    const float* r0 = x + 2 * oh * w + 2 * ow;
    const float* r1 = r0 + w;
    const __m512 a0 = _mm512_maskz_loadu_ps(lo, r0), a1 = _mm512_maskz_loadu_ps(hi, r0 + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(lo, r1), b1 = _mm512_maskz_loadu_ps(hi, r1 + 16);
    const __m512 cand[4] = {_mm512_permutex2var_ps(a0, even, a1), _mm512_permutex2var_ps(a0, odd, a1),
                            _mm512_permutex2var_ps(b0, even, b1), _mm512_permutex2var_ps(b0, odd, b1)};
    const __m512i first = _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * oh * w + 2 * ow)), even);
    store_window_maxima(cand, first, offs, n, y + ow, idx + ow);
  }
#elif defined(__AVX2__)
  // 8 windows per step: the 16 floats of each input row split into even and odd columns
  // (shuffle within 128-bit lanes, then a cross-lane permute), the last step masked.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i even = _mm256_add_epi32(lane, lane);
  const int32_t offs[4] = {0, 1, int32_t(w), int32_t(w + 1)};
  auto split = [](__m256 lo, __m256 hi, bool odd) {
    const __m256 mixed = odd ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))
                             : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(mixed), _MM_SHUFFLE(3, 1, 2, 0)));
  };
  for (; ow < wo; ow += 8) {
    const int n = static_cast<int>(std::min<int64_t>(8, wo - ow));  // windows this step
    const __m256i lo = simd::avx2_tail_mask32(std::min(2 * n, 8));
    const __m256i hi = simd::avx2_tail_mask32(std::max(2 * n - 8, 0));
    const float* r0 = x + 2 * oh * w + 2 * ow;
    const float* r1 = r0 + w;
    const __m256 a0 = _mm256_maskload_ps(r0, lo), a1 = _mm256_maskload_ps(r0 + 8, hi);
    const __m256 b0 = _mm256_maskload_ps(r1, lo), b1 = _mm256_maskload_ps(r1 + 8, hi);
    const __m256 cand[4] = {split(a0, a1, false), split(a0, a1, true), split(b0, b1, false), split(b0, b1, true)};
    const __m256i first = _mm256_add_epi32(_mm256_set1_epi32(int32_t(2 * oh * w + 2 * ow)), even);
    __m256 best = cand[0];
    __m256i at = first;
    for (int c = 1; c < 4; ++c) {
      const __m256 take = _mm256_or_ps(_mm256_cmp_ps(cand[c], best, _CMP_GT_OQ),
                                       _mm256_and_ps(_mm256_cmp_ps(cand[c], cand[c], _CMP_UNORD_Q),
                                                     _mm256_cmp_ps(best, best, _CMP_ORD_Q)));
      best = _mm256_blendv_ps(best, cand[c], take);
      at = _mm256_blendv_epi8(at, _mm256_add_epi32(first, _mm256_set1_epi32(offs[c])), _mm256_castps_si256(take));
    }
    const __m256i out = simd::avx2_tail_mask32(n);
    _mm256_maskstore_ps(y + ow, out, best);
    const __m256i out_lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(out));
    const __m256i out_hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(out, 1));
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(idx + ow), out_lo,
                           _mm256_cvtepi32_epi64(_mm256_castsi256_si128(at)));
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(idx + ow + 4), out_hi,
                           _mm256_cvtepi32_epi64(_mm256_extracti128_si256(at, 1)));
  }
#else
  (void)x, (void)w, (void)oh, (void)wo, (void)y, (void)idx;
#endif
  return ow;
}

template <class T>
void max_pool2x2(int64_t planes, int64_t h, int64_t w, const T* x, T* y, int64_t* idx) {
  const int64_t ho = h / 2, wo = w / 2;
  const bool simd = std::is_same_v<T, float> && h * w <= INT32_MAX;
  if constexpr (std::is_same_v<T, float>) {
    if (simd && wo >= 1 && w == 2 * wo && wo <= 8 && max_pool2x2_narrow_planes_simd(planes, h, w, x, y, idx)) return;
  }
  for (int64_t pl = 0; pl < planes; ++pl, x += h * w, y += ho * wo, idx += ho * wo) {
    for (int64_t oh = 0; oh < ho; ++oh) {
      int64_t ow = 0;
      if constexpr (std::is_same_v<T, float>) {
        if (simd) ow = max_pool2x2_row_simd(x, w, oh, wo, y + oh * wo, idx + oh * wo);
      }
      for (; ow < wo; ++ow) {
        const int64_t at = 2 * oh * w + 2 * ow;
        T best = x[at];
        int64_t best_at = at;
        pool_take(x[at + 1], at + 1, best, best_at);
        pool_take(x[at + w], at + w, best, best_at);
        pool_take(x[at + w + 1], at + w + 1, best, best_at);
        y[oh * wo + ow] = best;
        idx[oh * wo + ow] = best_at;
      }
    }
  }
}

// ---- General max pooling ------------------------------------------------------------------------

// The first and one-past-last kernel offsets i with 0 <= start + i * d < size (i < k).
inline int64_t first_inside(int64_t start, int64_t d) { return start < 0 ? (-start + d - 1) / d : 0; }
inline int64_t end_inside(int64_t start, int64_t d, int64_t size, int64_t k) {
  return std::min<int64_t>(k, size - start <= 0 ? 0 : (size - start + d - 1) / d);
}

template <class T>
void max_pool2d(const PoolShape& s, int64_t planes, const T* x, T* y, int64_t* idx) {
  const int64_t h = s.h, w = s.w, ho = s.ho, wo = s.wo;
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* src = x + plane * h * w;
    int64_t* dst = idx + plane * ho * wo;
    T* values = y + plane * ho * wo;
    for (int64_t oh = 0; oh < ho; ++oh) {
      const int64_t ih0 = oh * s.stride_h - s.pad_h;
      const int64_t i_lo = first_inside(ih0, s.dil_h), i_hi = end_inside(ih0, s.dil_h, h, s.kh);
      for (int64_t ow = 0; ow < wo; ++ow) {
        const int64_t iw0 = ow * s.stride_w - s.pad_w;
        const bool inside = iw0 >= 0 && iw0 + (s.kw - 1) * s.dil_w < w;
        const int64_t j_lo = inside ? 0 : first_inside(iw0, s.dil_w);
        const int64_t j_hi = inside ? s.kw : end_inside(iw0, s.dil_w, w, s.kw);
        if (i_lo >= i_hi || j_lo >= j_hi) {  // the window is all padding
          dst[oh * wo + ow] = -1;
          values[oh * wo + ow] = -std::numeric_limits<T>::infinity();
          continue;
        }
        // The scan is branch-free (random data makes the max unpredictable); a NaN, rare, is
        // looked for afterwards.
        int64_t best = (ih0 + i_lo * s.dil_h) * w + iw0 + j_lo * s.dil_w;
        T best_v = src[best];
        bool nan = false;
        for (int64_t i = i_lo; i < i_hi; ++i) {
          const int64_t row = (ih0 + i * s.dil_h) * w + iw0;
          for (int64_t j = j_lo; j < j_hi; ++j) {
            const int64_t at = row + j * s.dil_w;
            const T v = src[at];
            const bool more = v > best_v;
            best_v = more ? v : best_v;
            best = more ? at : best;
            nan = nan || v != v;
          }
        }
        if (nan) {  // the first NaN wins, as PyTorch
          for (int64_t i = i_lo; i < i_hi && !(best_v != best_v); ++i)
            for (int64_t j = j_lo; j < j_hi; ++j) {
              const int64_t at = (ih0 + i * s.dil_h) * w + iw0 + j * s.dil_w;
              if (src[at] != src[at]) {
                best = at;
                best_v = src[at];
                break;
              }
            }
        }
        dst[oh * wo + ow] = best;
        values[oh * wo + ow] = src[best];
      }
    }
  }
}

// ---- Scatter-add ----------------------------------------------------------------------------------

template <class T>
void index_accumulate(int64_t n, const int64_t* idx, const T* src, int64_t ss, T* dst) {
  for (int64_t i = 0; i < n; ++i) dst[idx[i]] += src[i * ss];
}

// ---- Sparse (CSR) times dense ------------------------------------------------------------------

// Columns of b in packs (four at once, so four sums run side by side); with fewer columns than a
// pack (a batch of one), four rows at once instead. Either way each sum runs in the order of its
// nonzeros, so every ISA gives the scalar reference's bits. Column indices are checked as they
// are used (a compare and a min beside loads the loop makes anyway, cheaper than a pass of its own):
// one out of range reads row k - 1 instead, and the call reports it.
template <class T>
bool csr_mm(int64_t m, int64_t n, int64_t k, const int64_t* row_offsets, const int32_t* cols, const T* values,
            const T* b, int64_t ldb, T* c, int64_t ldc) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  if (k <= 0) return row_offsets[m] == row_offsets[0];
  const uint32_t last = static_cast<uint32_t>(k - 1);
  uint32_t bad = 0;
  auto row_of_b = [&](int64_t j) {
    const uint32_t col = static_cast<uint32_t>(cols[j]);
    bad |= static_cast<uint32_t>(col > last);
    return b + static_cast<int64_t>(std::min(col, last)) * ldb;
  };
  if (n >= W) {
    for (int64_t r = 0; r < m; ++r) {
      const int64_t begin = row_offsets[r], end = row_offsets[r + 1];
      T* cr = c + r * ldc;
      int64_t i = 0;
      for (; i + 4 * W <= n; i += 4 * W) {
        V a0(T(0)), a1(T(0)), a2(T(0)), a3(T(0));
        for (int64_t j = begin; j < end; ++j) {
          const V v(values[j]);
          const T* br = row_of_b(j) + i;
          a0 = a0 + no_contract(v * V::load(br));
          a1 = a1 + no_contract(v * V::load(br + W));
          a2 = a2 + no_contract(v * V::load(br + 2 * W));
          a3 = a3 + no_contract(v * V::load(br + 3 * W));
        }
        a0.store(cr + i);
        a1.store(cr + i + W);
        a2.store(cr + i + 2 * W);
        a3.store(cr + i + 3 * W);
      }
      for (; i + W <= n; i += W) {
        V a(T(0));
        for (int64_t j = begin; j < end; ++j) a = a + no_contract(V(values[j]) * V::load(row_of_b(j) + i));
        a.store(cr + i);
      }
      if (i < n) {
        const int rest = int(n - i);
        V a(T(0));
        for (int64_t j = begin; j < end; ++j) a = a + no_contract(V(values[j]) * V::load_n(row_of_b(j) + i, rest));
        a.store_n(cr + i, rest);
      }
    }
    return bad == 0;
  }
  // The product rounded on its own: the SIMD tables' translation units would fuse it into the sum.
  auto gathered = [&](int64_t j, int64_t i) {
    T product = values[j] * row_of_b(j)[i];
#if defined(__x86_64__)
    __asm__("" : "+x"(product));
#elif defined(__aarch64__)
    __asm__("" : "+w"(product));
#endif
    return product;
  };
  int64_t r = 0;
  for (; r + 4 <= m; r += 4) {
    const int64_t* o = row_offsets + r;
    const int64_t common = std::min(std::min(o[1] - o[0], o[2] - o[1]), std::min(o[3] - o[2], o[4] - o[3]));
    for (int64_t i = 0; i < n; ++i) {
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t t = 0; t < common; ++t) {
        s0 += gathered(o[0] + t, i);
        s1 += gathered(o[1] + t, i);
        s2 += gathered(o[2] + t, i);
        s3 += gathered(o[3] + t, i);
      }
      for (int64_t j = o[0] + common; j < o[1]; ++j) s0 += gathered(j, i);
      for (int64_t j = o[1] + common; j < o[2]; ++j) s1 += gathered(j, i);
      for (int64_t j = o[2] + common; j < o[3]; ++j) s2 += gathered(j, i);
      for (int64_t j = o[3] + common; j < o[4]; ++j) s3 += gathered(j, i);
      c[r * ldc + i] = s0;
      c[(r + 1) * ldc + i] = s1;
      c[(r + 2) * ldc + i] = s2;
      c[(r + 3) * ldc + i] = s3;
    }
  }
  for (; r < m; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      T s = 0;
      for (int64_t j = row_offsets[r]; j < row_offsets[r + 1]; ++j) s += gathered(j, i);
      c[r * ldc + i] = s;
    }
  }
  return bad == 0;
}

// ---- Batch norm's channel passes ------------------------------------------------------------------

template <class T>
void channel_sums(int64_t n, int64_t channels, int64_t inner, const T* x, const T* center, const T* y,
                  double* acc) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < channels; ++ch) {
      const int64_t off = (i * channels + ch) * inner;
      if (center == nullptr) {
        acc[2 * ch] += reduce<T>(Reduce::Sum, inner, x + off, 1);
      } else {
        centered_sums<T>(inner, x + off, center[ch], y ? y + off : nullptr, &acc[2 * ch], &acc[2 * ch + 1]);
      }
    }
}

template <class T>
void channel_affine(int64_t planes, int64_t first_plane, int64_t channels, int64_t inner, const T* a,
                    const T* alpha, const T* b, const T* beta, const T* gamma, T* out) {
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t ch = (first_plane + p) % channels;
    affine2<T>(inner, a + p * inner, alpha[ch], b ? b + p * inner : nullptr, beta ? beta[ch] : T(0), gamma[ch],
               out + p * inner);
  }
}

// ---- Fused optimizer steps ------------------------------------------------------------------------

// Each product is rounded on its own (no_contract), as torch.optim's composite update rounds it,
// so every ISA takes the same trajectory as the scalar reference and the composite path.
template <class V, class T>
V load_r(const T* p, int r) {
  return r == V::kWidth ? V::load(p) : V::load_n(p, r);
}
template <class V, class T>
void store_r(V x, T* p, int r) {
  if (r == V::kWidth) {
    x.store(p);
  } else {
    x.store_n(p, r);
  }
}

template <class T>
void sgd_step(const SgdStep& k, int64_t n, T* p, const T* g, T* buf) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const V mom(static_cast<T>(k.momentum)), omd(static_cast<T>(k.one_minus_dampening)),
      nlr(static_cast<T>(k.neg_lr));
  auto step = [&](int64_t i, int r) {
    const V gv = load_r<V>(g + i, r);
    const V b = no_contract(load_r<V>(buf + i, r) * mom) + no_contract(gv * omd);
    store_r(b, buf + i, r);
    const V d = k.nesterov ? gv + no_contract(b * mom) : b;
    store_r((load_r<V>(p + i, r) + no_contract(d * nlr)), p + i, r);
  };
  int64_t i = 0;
  for (; i + W <= n; i += W) step(i, W);
  if (i < n) step(i, int(n - i));
}

template <class T>
void adam_step(const AdamStep& k, int64_t n, T* p, const T* g, T* m, T* v) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const V b1(static_cast<T>(k.beta1)), omb1(static_cast<T>(k.one_minus_beta1)), b2(static_cast<T>(k.beta2)),
      omb2(static_cast<T>(k.one_minus_beta2)), eps(static_cast<T>(k.eps)),
      bc2(static_cast<T>(k.bias_correction2_sqrt)), step_size(static_cast<T>(k.neg_step_size));
  auto step = [&](int64_t i, int r) {
    const V gv = load_r<V>(g + i, r);
    const V mi = no_contract(load_r<V>(m + i, r) * b1) + no_contract(gv * omb1);
    const V vi = no_contract(load_r<V>(v + i, r) * b2) + no_contract(no_contract(gv * gv) * omb2);
    store_r(mi, m + i, r);
    store_r(vi, v + i, r);
    const V update = no_contract((mi / (sqrt(vi) / bc2 + eps)) * step_size);
    store_r((load_r<V>(p + i, r) + update), p + i, r);
  };
  int64_t i = 0;
  for (; i + W <= n; i += W) step(i, W);
  if (i < n) step(i, int(n - i));
}

}  // namespace
}  // namespace ember::backend::EMBER_ISA_NS

#include "gemm.inl"
#include "conv_flat.inl"
#include "conv_winograd.inl"
#include "conv_depthwise.inl"

namespace ember::backend::EMBER_ISA_NS {
#if defined(EMBER_HAVE_FLAT_CONV)
#define EMBER_FLAT_CONV(T)                                                              \
  .conv_flat = &conv_impl::conv_flat<T>, .conv_flat_images = &conv_impl::conv_flat_images<T>, \
  .conv_flat_weight_grad = &conv_impl::conv_flat_weight_grad<T>,                                      \
  .conv_winograd_weights = std::is_same_v<T, float> ? &conv_impl::conv_winograd_weights<T> : nullptr, \
  .conv_winograd = std::is_same_v<T, float> ? &conv_impl::conv_winograd<T> : nullptr,                 \
  .conv_winograd_weight_grad = std::is_same_v<T, float> ? &conv_impl::conv_winograd_weight_grad<T> : nullptr
#else
#define EMBER_FLAT_CONV(T)                                                                        \
  .conv_flat = nullptr, .conv_flat_images = nullptr, .conv_flat_weight_grad = nullptr,           \
  .conv_winograd_weights = nullptr, .conv_winograd = nullptr, .conv_winograd_weight_grad = nullptr
#endif
#define EMBER_KERNEL_TABLE(T)                                                                   \
  Kernels<T> {                                                                                  \
    .isa = EMBER_ISA_ENUM, .unary = &unary<T>, .binary = &binary<T>, .compare = &compare<T>,     \
    .where = &where<T>, .reduce = &reduce<T>, .accumulate = &accumulate<T>,                     \
    .arg_reduce = &arg_reduce<T>, .gemm_workspace = &gemm_workspace<T>, .gemm = &gemm<T>, .im2col = &im2col<T>, .col2im = &col2im<T>, \
    EMBER_FLAT_CONV(T), .conv_depthwise = &conv_impl::conv_depthwise<T>,                        \
    .conv_depthwise_input_grad = &conv_impl::conv_depthwise_input_grad<T>,                      \
    .conv_depthwise_weight_grad = &conv_impl::conv_depthwise_weight_grad<T>,                    \
    .centered_sums = &centered_sums<T>, .affine2 = &affine2<T>,                                 \
    .channel_sums = &channel_sums<T>, .channel_affine = &channel_affine<T>,                     \
    .max_pool2x2 = &max_pool2x2<T>, .max_pool2d = &max_pool2d<T>,                               \
    .index_accumulate = &index_accumulate<T>, .csr_mm = &csr_mm<T>, .sgd_step = &sgd_step<T>, .adam_step = &adam_step<T> \
  }
const Kernels<float> kTableF32 = EMBER_KERNEL_TABLE(float);
const Kernels<double> kTableF64 = EMBER_KERNEL_TABLE(double);
#undef EMBER_KERNEL_TABLE
#undef EMBER_FLAT_CONV
#undef EMBER_HAVE_FLAT_CONV
#undef EMBER_FLAT_CONV_AVX512
}  // namespace ember::backend::EMBER_ISA_NS
