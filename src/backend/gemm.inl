// GEMM, included by cpu_kernels.inl inside each ISA's namespace (no include guard by design).
//
// Note [GEMM design]
// GotoBLAS/BLIS structure. C is cut into MR x NR tiles; a micro-kernel keeps one tile in
// registers and runs a long stretch of the k loop on it with one broadcast of A and NR/W vector
// loads of B per step, so every FMA has its operands in registers or cache and C is touched
// once per stretch. For the operands to stream, they are first copied ("packed") into the
// layouts the kernel walks linearly: A as MR-row panels stored column by column
// (a[p * MR + i]), B as NR-column panels stored row by row (b[p * NR + j]), B zero-padded to
// full vectors. Packing absorbs the transpose flags, so one kernel serves all four layouts.
//
// Blocking (big problems): k is cut into KC-deep slices, m into MC-row blocks, n into NC-column
// blocks, in the loop order
//   jc (NC) -> pc (KC, pack a KC x NC block of B) -> ic (MC, pack an MC x KC block of A)
//     -> jr (NR) -> ir (MR) -> micro-kernel,
// so the packed A block stays in L2 while every B panel passes over it, and the packed B block
// stays in L3 while the A blocks go by. beta applies on the first KC slice only; later slices
// accumulate into C.
//
// Small problems, and m <= MR (one row panel: nothing would reuse a packed B), take a lean
// path: only k is sliced, A and B are read in place -- the kernel broadcasts A either down a
// column (transposed A) or along a row (row-major A) -- and the only thing packed is a B panel
// whose rows are not contiguous (transposed B) or too short for full vector loads (the ragged
// last panel).
//
// A row-major B whose rows are less than a page apart is not packed on the blocked path: the
// kernel reads its full panels in place (reads_b_in_place), which saves a copy of B per thread.
//
// Threads: each thread packs into its own thread-local buffers. Usually C's rows are shared out
// (RowShares): each thread starts with an equal contiguous share, takes it a couple of tiles at
// a time, and when done takes tiles from the back of the fullest share, so that one slow or
// descheduled vCPU does not hold up the product. An element of C goes through the same
// operations in the same order whichever thread computes it, so results do not depend on the
// thread count.
//
// Edges: the kernel is instantiated for every row count 1..MR and vector count 1..NR/W, so a
// ragged tile wastes no broadcasts; a partial last vector is loaded and stored under a mask.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#include "ember/backend/parallel.hpp"
#include "row_shares.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "gemm_simd.inl"

namespace ember::backend::EMBER_ISA_NS {
namespace {
namespace gemm_impl {

// ---------------------------------------------------------------------------------------------
// Shapes and blocking.
//
// Register budget: MR * NR/W accumulators + NR/W B vectors + 1 broadcast must fit the register
// file (32 zmm, 16 ymm). AVX-512: 14 x 2 + 2 + 1 = 31. AVX2: 6 x 2 + 2 + 1 = 15. A tall tile
// means few B loads per FMA; per k step the kernel issues MR broadcasts + NR/W loads against
// MR * NR/W FMAs, well within two loads per cycle.
//
// Blocking was measured on the target (Zen 4: 32 KiB L1d, 1 MiB L2, 32 MiB shared L3; fp32
// square, 1 thread). The kernel needs only ~7 bytes per cycle of A and B, which L2 supplies
// easily, so B micro-panels need not fit in L1; what costs is the C tile's load and store per
// KC slice (C is in L3 or memory for big problems). Hence a deep KC: 256 -> 102, 512 -> 108,
// 1024 -> 111 GFLOP/s at N = 2048. MC keeps the packed A block (MC * KC, 224 KiB) in L2 beside
// the B panel being read; NC keeps the B block (KC * NC, 4 MiB) a modest share of L3 with both
// cores busy. Variations of MC (28..168) and NC (512..4096) moved results by less than noise.

#if defined(__AVX512F__)
template <class T>
struct Shape {
  static constexpr int W = Vec<T>::W;
  static constexpr int MR = 14;
  static constexpr int NV = 2;
  static constexpr int64_t KC = 4096 / sizeof(T);  // 1024 fp32, 512 fp64
  static constexpr int64_t MC = 14 * 4;
  static constexpr int64_t NC = 1024;
};
#elif defined(__AVX2__)
template <class T>
struct Shape {
  static constexpr int W = Vec<T>::W;
  static constexpr int MR = 6;
  static constexpr int NV = 2;
  static constexpr int64_t KC = 4096 / sizeof(T);
  static constexpr int64_t MC = 6 * 8;
  static constexpr int64_t NC = 1024;
};
#elif defined(EMBER_NEON_PACKETS)
// NEON: 32 q registers. 8 x 2 accumulators + 2 B vectors + 8 A registers (a row-major A read in
// place: W k of each row) = 26. An 8 x 3 tile (29 with a packed A) made g++ spill accumulators in
// the row-major case, where the eight A rows take eight registers; per FMA it saves only a
// sixth of the loads. KC keeps an 8-column B micro-panel (16 KiB) in a 64 KiB L1d and the packed
// A block (MC * KC, 128 KiB) in a 256 KiB-1 MiB L2, the Cortex-A7x and Neoverse range; not
// timed on hardware yet (docs/benchmarks.md counts instructions under qemu).
template <class T>
struct Shape {
  static constexpr int W = Vec<T>::W;
  static constexpr int MR = 8;
  static constexpr int NV = 2;
  static constexpr int64_t KC = 2048 / sizeof(T);
  static constexpr int64_t MC = 8 * 8;
  static constexpr int64_t NC = 1024;
};
#else
// Portable: 128-bit vectors (SSE2 / NEON); 4 x 2 accumulators fit 16 vector registers with room
// for B, the broadcast and a product (no FMA on baseline x86-64).
template <class T>
struct Shape {
  static constexpr int W = 16 / sizeof(T);
  static constexpr int MR = 4;
  static constexpr int NV = 2;
  static constexpr int64_t KC = 1024 / sizeof(T);
  static constexpr int64_t MC = 4 * 32;
  static constexpr int64_t NC = 2048;
};
#endif

// Up to this many multiply-adds the lean path wins: with everything in L1/L2, blocking has
// nothing to gain and packing B would be a visible share of the time.
constexpr int64_t kSmallWork = int64_t(128) * 128 * 128;
// Below this, handing half the work to the pool costs more than it saves: a parallel_for round
// trip measured ~45 us on the 2-vCPU development VM (two futex wake-ups), i.e. the time of a
// ~190^3 fp32 product on one core. Each thread gets at least half this much work.
constexpr int64_t kParallelWork = int64_t(192) * 192 * 192;

// Calls f(integral_constant<int, I>) for I = 0 .. N-1, unrolled whatever the optimisation level,
// so that accumulator arrays indexed by I become registers.
template <class F, int... I>
[[gnu::always_inline]] inline void static_for_impl(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, class F>
[[gnu::always_inline]] inline void static_for(F&& f) {
  static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// ---------------------------------------------------------------------------------------------
// Micro-kernel.
//
// C[0:MR_, 0:nr] = alpha * sum_p A(i, p) * b[p * bs + j] + beta * C  (beta == 0: C not read),
// p < kc. A(i, p) is a[p * as + i] -- a packed panel (as == MR) or a transposed A in place
// (as == lda) -- or, with kARows, a[i * as + p]: a row-major A in place (as == lda). b is a
// packed B panel (bs == NR) or a non-transposed B in place (bs == ldb); every B row must hold
// NV_ * W readable elements, nr <= NV_ * W only limits what is written.
// Whether the vector unit multiplies by one lane of a register (NEON's fmla by element): the
// micro-kernel then loads W rows of a packed A column at once instead of broadcasting each.
template <class V>
constexpr bool by_element() {
  if constexpr (requires { V::kByElement; }) {
    return V::kByElement;
  } else {
    return false;
  }
}

template <class T>
using TileFn = void (*)(int64_t kc, const T* a, int64_t as, const T* b, int64_t bs, T* c,
                        int64_t ldc, T alpha, T beta, int nr);

template <class T, int MR_, int NV_, bool kARows>
void tile_kernel(int64_t kc, const T* a, int64_t as, const T* b, int64_t bs, T* c, int64_t ldc,
                 T alpha, T beta, int nr) {
  using V = Vec<T>;
  using R = typename V::R;
  constexpr int W = V::W;
  constexpr int NR_ = NV_ * W;

  // C is only touched after the k loop. Ask for it now (it may be in L3 or memory) and again
  // shortly before the end: the A and B streams evict whatever arrives early from L1.
  auto prefetch_c = [&] {
    T* ci = c;
    for (int i = 0; i < MR_; ++i, ci += ldc) {
      __builtin_prefetch(ci, 1);
      __builtin_prefetch(ci + NR_ - 1, 1);
    }
  };
  prefetch_c();

  R acc[MR_][NV_];
  static_for<MR_>([&](auto i) { static_for<NV_>([&](auto j) { acc[i][j] = V::zero(); }); });
  // kARows: A is a row-major block used in place, row i at a + i * as. One base pointer per
  // three rows lets x86 addressing ([base + as*1], [base + as*2]) reach every row while all
  // the pointers and the stride stay in registers.
  constexpr int kGroups = kARows ? (MR_ + 2) / 3 : 1;
  const T* ag[kGroups];
  static_for<kGroups>([&](auto g) { ag[g] = a + 3 * g * (kARows ? as : 0); });
  // Two passes over one loop rather than a helper called twice: the accumulators must stay in
  // registers, which needs everything in one function body.
  constexpr int64_t kLate = 32;  // ~1000 cycles ahead of the epilogue: covers an L2/L3 hit
  int64_t p = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t end = pass == 0 ? std::max<int64_t>(0, kc - kLate) : kc;
    if constexpr (by_element<V>() && kARows) {
      // Row-major A in place: W consecutive k of each row in one load, then W k steps that
      // multiply B's rows by each lane (MR_ A + NV_ B + MR_ x NV_ accumulators: 26 registers).
      for (; p + W <= end; p += W) {
        R arow[MR_];
        static_for<MR_>([&](auto i) { arow[i] = V::load(ag[i / 3] + (i % 3) * as); });
        static_for<W>([&](auto l) {
          R bv[NV_];
          static_for<NV_>([&](auto j) { bv[j] = V::load(b + decltype(l)::value * bs + j * W); });
          static_for<MR_>([&](auto i) {
            static_for<NV_>([&](auto j) {
              acc[i][j] = V::template fmadd_lane<decltype(l)::value>(bv[j], arow[i], acc[i][j]);
            });
          });
        });
        static_for<kGroups>([&](auto g) { ag[g] += W; });
        b += W * bs;
      }
    }
    for (; p < end; ++p) {
      R bv[NV_];
      static_for<NV_>([&](auto j) { bv[j] = V::load(b + j * W); });
      if constexpr (by_element<V>() && !kARows) {
        // Whole groups of W rows by element; a last partial group by broadcast (a transposed A
        // read in place may end right after its last row).
        constexpr int kGrouped = MR_ / W * W;
        static_for<MR_ / W>([&](auto g) {
          const R ag4 = V::load(a + g * W);
          static_for<W>([&](auto l) {
            constexpr int i = decltype(g)::value * W + decltype(l)::value;
            static_for<NV_>([&](auto j) {
              acc[i][j] = V::template fmadd_lane<decltype(l)::value>(bv[j], ag4, acc[i][j]);
            });
          });
        });
        static_for<MR_ - kGrouped>([&](auto r) {
          const R ai = V::set1(a[kGrouped + r]);
          static_for<NV_>([&](auto j) { acc[kGrouped + r][j] = V::fmadd(ai, bv[j], acc[kGrouped + r][j]); });
        });
      } else {
        static_for<MR_>([&](auto i) {
          const R ai = kARows ? V::set1(ag[i / 3][(i % 3) * as]) : V::set1(a[i]);
          static_for<NV_>([&](auto j) { acc[i][j] = V::fmadd(ai, bv[j], acc[i][j]); });
        });
      }
      if constexpr (kARows) {
        static_for<kGroups>([&](auto g) { ++ag[g]; });
      } else {
        a += as;
      }
      b += bs;
    }
    if (pass == 0) prefetch_c();
  }

  const R va = V::set1(alpha);
  if (nr == NR_) {
    T* ci = c;
    if (beta == T(0)) {
      static_for<MR_>([&](auto i) {
        static_for<NV_>([&](auto j) { V::store(ci + j * W, V::mul(va, acc[i][j])); });
        ci += ldc;
      });
    } else {
      const R vb = V::set1(beta);
      static_for<MR_>([&](auto i) {
        static_for<NV_>([&](auto j) {
          V::store(ci + j * W, V::fmadd(vb, V::load(ci + j * W), V::mul(va, acc[i][j])));
        });
        ci += ldc;
      });
    }
    return;
  }
  // Ragged right edge: spill the tile and merge the valid part with partial vectors; rare
  // enough that keeping the fast path above free of it matters more.
  alignas(64) T tile[MR_][NR_];
  static_for<MR_>([&](auto i) {
    static_for<NV_>([&](auto j) { V::store(&tile[i][j * W], V::mul(va, acc[i][j])); });
  });
  const R vb = V::set1(beta);
  for (int i = 0; i < MR_; ++i, c += ldc) {
    for (int j0 = 0; j0 < nr; j0 += W) {
      const int n = std::min(W, nr - j0);
      R r = V::load(&tile[i][j0]);
      if (beta != T(0)) r = V::fmadd(vb, V::load_n(c + j0, n), r);
      V::store_n(c + j0, r, n);
    }
  }
}


// kTiles<T>.fn[a_rows][mr - 1][nv - 1]: the kernel for an mr-row tile of nv vectors.
template <class T>
struct TileTable {
  TileFn<T> fn[2][Shape<T>::MR][Shape<T>::NV];
};

template <class T, int... I>
constexpr TileTable<T> make_tile_table(std::integer_sequence<int, I...>) {
  constexpr int NV = Shape<T>::NV;
  TileTable<T> t{};
  ((t.fn[0][I / NV][I % NV] = &tile_kernel<T, I / NV + 1, I % NV + 1, false>), ...);
  ((t.fn[1][I / NV][I % NV] = &tile_kernel<T, I / NV + 1, I % NV + 1, true>), ...);
  return t;
}

template <class T>
inline constexpr TileTable<T> kTiles =
    make_tile_table<T>(std::make_integer_sequence<int, Shape<T>::MR * Shape<T>::NV>{});

/// a_rows: A is row-major in place (element (i, p) at a[i * as + p]); otherwise a packed panel
/// or a transposed A in place (a[p * as + i]).
template <class T>
inline void run_tile(bool a_rows, int mr, int nr, int64_t kc, const T* a, int64_t as,
                     const T* b, int64_t bs, T* c, int64_t ldc, T alpha, T beta) {
  constexpr int W = Shape<T>::W;
  kTiles<T>.fn[a_rows][mr - 1][(nr + W - 1) / W - 1](kc, a, as, b, bs, c, ldc, alpha, beta, nr);
}

// ---------------------------------------------------------------------------------------------
// Packing. Two source layouts cover A and B in both orientations:
//   pack_copy:      out[p * R + i] = src[p * ld + i]   (A transposed, B not: rows are copied)
//   pack_transpose: out[p * R + i] = src[i * ld + p]   (A not transposed, B transposed)
// for p < kc, i < r. Columns r .. R-1 are written as zeros: B's feed full-width vector loads
// (their products land in accumulator lanes that are never stored, but must not be NaN or
// denormal); A's are never read, as the kernel instantiated for r rows reads r.

#if defined(EMBER_GEMM_HAS_TRANSPOSE)

template <class T, int R>
void pack_copy(const T* src, int64_t ld, int r, int64_t kc, T* out) {
  using V = Vec<T>;
  constexpr int W = V::W;
  constexpr int NB = (R + W - 1) / W;
  if constexpr (R % W == 0) {
    if (r == R) {
      for (int64_t p = 0; p < kc; ++p, src += ld, out += R)
        static_for<NB>([&](auto j) { V::store(out + j * W, V::load(src + j * W)); });
      return;
    }
  }
  for (int64_t p = 0; p < kc; ++p, src += ld, out += R) {
    static_for<NB>([&](auto j) {
      constexpr int lanes = std::min(W, R - decltype(j)::value * W);
      const int n = std::clamp(r - decltype(j)::value * W, 0, W);
      const typename V::R v = n == W ? V::load(src + j * W)
                              : n > 0 ? V::load_n(src + j * W, n)
                                      : V::zero();
      if constexpr (lanes == W) {
        V::store(out + j * W, v);
      } else {
        V::store_n(out + j * W, v, lanes);
      }
    });
  }
}

// Source rows I0 .. I0+W of pack_transpose: W x W squares, W consecutive p of each row in, W
// packed rows out. A separate template so that the lane count and the number of real rows of a
// full panel are constants: the common case is straight-line loads, shuffles and stores.
template <class T, int R, int I0>
[[gnu::always_inline]] inline void pack_transpose_rows(const T* src, int64_t ld, int r,
                                                        int64_t kc, T* out) {
  using V = Vec<T>;
  constexpr int W = V::W;
  constexpr int kLanes = std::min(W, R - I0);  // packed columns this block fills
  const int rows = std::clamp(r - I0, 0, kLanes);
  src += I0 * ld;
  out += I0;
  for (int64_t p = 0; p < kc; p += W, out += W * R) {
    const int np = static_cast<int>(std::min<int64_t>(W, kc - p));
    typename V::R v[W];
    if (rows == kLanes && np == W) {
      static_for<W>([&](auto q) { v[q] = q < kLanes ? V::load(src + q * ld + p) : V::zero(); });
    } else {
      for (int q = 0; q < W; ++q)
        v[q] = q >= rows ? V::zero() : V::load_n(src + q * ld + p, np);
    }
    V::transpose(v);
    if (np == W) {
      static_for<W>([&](auto q) {
        if constexpr (kLanes == W) {
          V::store(out + q * R, v[q]);
        } else {
          V::store_n(out + q * R, v[q], kLanes);
        }
      });
    } else {
      for (int q = 0; q < np; ++q) V::store_n(out + q * R, v[q], kLanes);
    }
  }
}

template <class T, int R>
void pack_transpose(const T* src, int64_t ld, int r, int64_t kc, T* out) {
  constexpr int W = Vec<T>::W;
  static_for<(R + W - 1) / W>([&](auto blk) {
    pack_transpose_rows<T, R, decltype(blk)::value * W>(src, ld, r, kc, out);
  });
}

#else  // no in-register transpose: plain loops, fine for the portable build

template <class T, int R>
void pack_copy(const T* src, int64_t ld, int r, int64_t kc, T* out) {
  for (int64_t p = 0; p < kc; ++p, src += ld, out += R) {
    int i = 0;
    for (; i < r; ++i) out[i] = src[i];
    for (; i < R; ++i) out[i] = T(0);
  }
}

template <class T, int R>
void pack_transpose(const T* src, int64_t ld, int r, int64_t kc, T* out) {
  // Row by row of src: reads are contiguous, writes stride R (within a small panel).
  for (int i = 0; i < R; ++i) {
    T* o = out + i;
    if (i < r) {
      const T* s = src + i * ld;
      for (int64_t p = 0; p < kc; ++p) o[p * R] = s[p];
    } else {
      for (int64_t p = 0; p < kc; ++p) o[p * R] = T(0);
    }
  }
}

#endif

// Rows i0 .. i0+mr of op(A), columns p0 .. p0+kc, as one MR panel.
template <class T>
inline void pack_a(bool trans_a, const T* a, int64_t lda, int64_t i0, int mr, int64_t p0,
                   int64_t kc, T* out) {
  constexpr int MR = Shape<T>::MR;
  if (trans_a) {
    pack_copy<T, MR>(a + p0 * lda + i0, lda, mr, kc, out);
  } else {
    pack_transpose<T, MR>(a + i0 * lda + p0, lda, mr, kc, out);
  }
}

// Rows p0 .. p0+kc of op(B), columns j0 .. j0+nr, as one NR panel.
template <class T>
inline void pack_b(bool trans_b, const T* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                   int nr, T* out) {
  constexpr int NR = Shape<T>::NV * Shape<T>::W;
  if (trans_b) {
    pack_transpose<T, NR>(b + j0 * ldb + p0, ldb, nr, kc, out);
  } else {
    pack_copy<T, NR>(b + p0 * ldb + j0, ldb, nr, kc, out);
  }
}

// ---------------------------------------------------------------------------------------------
// Packing buffers: one pair per thread, 64-byte aligned, grown on demand and kept for the
// thread's lifetime so that steady-state calls never allocate.
class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { std::free(ptr_); }

  /// Room for n elements of T, or nullptr when memory is exhausted (the caller falls back to
  /// an unpacked loop: kernels never throw).
  template <class T>
  T* get(int64_t n) {
    const size_t need = static_cast<size_t>(n) * sizeof(T);
    if (need > bytes_) {
      const size_t bytes = (std::max(need, bytes_ + bytes_ / 2) + 4095) & ~size_t(4095);
      void* p = std::aligned_alloc(64, bytes);
      if (p == nullptr) return nullptr;
      std::free(ptr_);
      ptr_ = p;
      bytes_ = bytes;
    }
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Room for n elements of T for the A panel (the front of a borrowed GemmWorkspace) or the B
// panel (its back, clear of what A took), else the thread's own buffer.
template <class T>
T* borrowed_a(int64_t n) {
  detail::BorrowedWorkspace& w = detail::borrowed_gemm_workspace();
  const size_t need = static_cast<size_t>(n) * sizeof(T);
  if (w.data == nullptr || need > w.bytes) return nullptr;
  w.a_used = need;
  return reinterpret_cast<T*>(w.data);
}
template <class T>
T* borrowed_b(int64_t n) {
  detail::BorrowedWorkspace& w = detail::borrowed_gemm_workspace();
  const size_t need = static_cast<size_t>(n) * sizeof(T);
  const size_t a_used = w.a_used;
  w.a_used = 0;  // B is the last request of a product
  if (w.data == nullptr || need > w.bytes) return nullptr;
  const size_t start = (w.bytes - need) / 64 * 64;
  if (start < a_used) return nullptr;
  return reinterpret_cast<T*>(w.data + start);
}

inline PackBuffer& pack_buffer_a() {
  static thread_local PackBuffer buf;
  return buf;
}
inline PackBuffer& pack_buffer_b() {
  static thread_local PackBuffer buf;
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Drivers. All take the full problem description; offsets select a sub-problem.

struct Problem {
  bool trans_a, trans_b;
  int64_t lda, ldb, ldc;
};

// Where row i0 of op(A) / column j0 of op(B) starts.
template <class T>
inline const T* a_from_row(const Problem& pb, const T* a, int64_t i0) {
  return pb.trans_a ? a + i0 : a + i0 * pb.lda;
}
template <class T>
inline const T* b_from_col(const Problem& pb, const T* b, int64_t j0) {
  return pb.trans_b ? b + j0 * pb.ldb : b + j0;
}

// Last resort when a packing buffer cannot be allocated: slow, but needs no memory.
template <class T>
void gemm_unpacked(const Problem& pb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                   const T* b, T beta, T* c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      T s = T(0);
      for (int64_t p = 0; p < k; ++p) {
        const T av = pb.trans_a ? a[p * pb.lda + i] : a[i * pb.lda + p];
        const T bv = pb.trans_b ? b[j * pb.ldb + p] : b[p * pb.ldb + j];
        s += av * bv;
      }
      T* cij = c + i * pb.ldc + j;
      *cij = beta == T(0) ? alpha * s : alpha * s + beta * *cij;
    }
  }
}

// The block size that cuts `total` into the fewest blocks of at most `cap`, evened out and
// rounded up to a multiple of `unit`, so that a remainder never makes one thin block.
inline int64_t balanced_block(int64_t total, int64_t cap, int64_t unit) {
  const int64_t nblocks = (total + cap - 1) / cap;
  const int64_t even = (total + nblocks - 1) / nblocks;
  return std::min(cap, (even + unit - 1) / unit * unit);
}

// The height of the row tile that starts `rest` rows before the end of a block: MR, except that
// a last tile of fewer than MR / 2 rows shares the rows of the tile before it (14 + 2 rows run
// as 8 + 8). Two rows keep four accumulators, too few to cover the FMA latency: in a DCGAN
// convolution's product (128 rows) the 2-row tile took 4% of the time for 1.6% of the rows.
// Each element of C is the same sum whichever tile computes it. Only the blocked path splits:
// on the lean path, whose row-major A is read in place, 8 + 8 rows ran 47% slower than 14 + 2
// (LeNet's 16-channel convolution, perf, 2026-12-05).
template <int MR>
inline int tile_rows(int64_t rest) {
  if (rest > MR && rest < MR + MR / 2) return static_cast<int>((rest + 1) / 2);
  return static_cast<int>(std::min<int64_t>(MR, rest));
}

// The lean path (Note [GEMM design]). k is still cut into KC slices: that bounds the B panel
// buffer and keeps the C round trips as rare as on the blocked path.
template <class T>
void gemm_direct(const Problem& pb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                 const T* b, T beta, T* c) {
  using S = Shape<T>;
  constexpr int MR = S::MR;
  constexpr int NR = S::NV * S::W;
  const int64_t kc_max = balanced_block(k, S::KC, 8);
  const bool pack_b_some = pb.trans_b || n % NR != 0;
  T* bbuf = nullptr;
  if (pack_b_some) {
    bbuf = borrowed_b<T>(NR * kc_max);
    if (bbuf == nullptr) bbuf = pack_buffer_b().get<T>(NR * kc_max);
    if (bbuf == nullptr) return gemm_unpacked(pb, m, n, k, alpha, a, b, beta, c);
  }
  // A(i, p): a[i * lda + p] ("rows") or, transposed, a[p * lda + i].
  const bool a_rows = !pb.trans_a;
  for (int64_t pc = 0; pc < k; pc += kc_max) {
    const int64_t kc = std::min(kc_max, k - pc);
    const T beta_pc = pc == 0 ? beta : T(1);
    const T* a_pc = a_rows ? a + pc : a + pc * pb.lda;
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
      const int nr = static_cast<int>(std::min<int64_t>(NR, n - j0));
      const T* bp = b + pc * pb.ldb + j0;
      int64_t bs = pb.ldb;
      if (pb.trans_b || nr < NR) {
        pack_b(pb.trans_b, b, pb.ldb, pc, kc, j0, nr, bbuf);
        bp = bbuf;
        bs = NR;
      }
      for (int64_t i0 = 0; i0 < m; i0 += MR) {
        const int mr = static_cast<int>(std::min<int64_t>(MR, m - i0));
        run_tile(a_rows, mr, nr, kc, a_rows ? a_pc + i0 * pb.lda : a_pc + i0, pb.lda, bp, bs,
                 c + i0 * pb.ldc + j0, pb.ldc, alpha, beta_pc);
      }
    }
  }
}

// Whether the blocked path reads B's full panels where they lie instead of packing them: a
// row-major B whose rows are less than a page apart. The kernel then loads two cache lines per
// k step at a fixed stride, which the prefetchers follow from L2 as easily as a packed panel;
// packing would copy all of B once per thread and per call (3-6% of an N = 256 product, twice
// over at 2 threads: 86-90% -> 91% of the FMA peak). Rows a page apart or more alias in L1 and
// the TLB (N = 1024: 109 -> 105 GFLOP/s in place), so those are packed as before.
template <class T>
inline bool reads_b_in_place(const Problem& pb) {
  return !pb.trans_b && pb.ldb * static_cast<int64_t>(sizeof(T)) < 4096;
}

// Whether B is one KC x NC block: then a thread's packed B stays valid from one row range of a
// product to the next.
template <class T>
inline bool single_b_block(int64_t n, int64_t k) {
  return k <= Shape<T>::KC && n <= Shape<T>::NC;
}

// The blocked path for C[0:m, 0:n] (Note [GEMM design]). b_packed: this thread's B buffer
// already holds B, packed by an earlier call for other rows of the same product (only
// meaningful when single_b_block).
template <class T>
void gemm_blocked(const Problem& pb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                  const T* b, T beta, T* c, bool b_packed = false) {
  using S = Shape<T>;
  constexpr int MR = S::MR;
  constexpr int NR = S::NV * S::W;
  const int64_t kc_max = balanced_block(k, S::KC, 8);
  const int64_t mc_max = balanced_block(m, S::MC, MR);
  const int64_t nc_max = balanced_block(n, S::NC, NR);
  const bool b_in_place = reads_b_in_place<T>(pb);
  T* abuf = borrowed_a<T>(mc_max * kc_max);
  if (abuf == nullptr) abuf = pack_buffer_a().get<T>(mc_max * kc_max);
  // In place, only a ragged last panel is packed (at offset 0).
  T* bbuf = borrowed_b<T>(b_in_place ? NR * kc_max : nc_max * kc_max);
  if (bbuf == nullptr) bbuf = pack_buffer_b().get<T>(b_in_place ? NR * kc_max : nc_max * kc_max);
  if (abuf == nullptr || bbuf == nullptr) return gemm_unpacked(pb, m, n, k, alpha, a, b, beta, c);

  for (int64_t jc = 0; jc < n; jc += nc_max) {
    const int64_t nc = std::min(nc_max, n - jc);
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = std::min(kc_max, k - pc);
      const T beta_pc = pc == 0 ? beta : T(1);
      auto packed_panel = [&](int64_t jr) { return b_in_place ? bbuf : bbuf + jr * kc; };
      for (int64_t jr = 0; jr < nc; jr += NR) {
        const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
        if (!b_packed && (!b_in_place || nr < NR)) {
          pack_b(pb.trans_b, b, pb.ldb, pc, kc, jc + jr, nr, packed_panel(jr));
        }
      }
      for (int64_t ic = 0; ic < m; ic += mc_max) {
        const int64_t mc = std::min(mc_max, m - ic);
        // A panel of MR x kc per tile, whatever its height.
        for (int64_t ir = 0, mr = 0, t = 0; ir < mc; ir += mr, ++t) {
          mr = tile_rows<MR>(mc - ir);
          pack_a(pb.trans_a, a, pb.lda, ic + ir, static_cast<int>(mr), pc, kc, abuf + t * MR * kc);
        }
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          const bool in_place = b_in_place && nr == NR;
          const T* bp = in_place ? b + pc * pb.ldb + jc + jr : packed_panel(jr);
          const int64_t bs = in_place ? pb.ldb : NR;
          for (int64_t ir = 0, mr = 0, t = 0; ir < mc; ir += mr, ++t) {
            mr = tile_rows<MR>(mc - ir);
            run_tile(false, static_cast<int>(mr), nr, kc, abuf + t * MR * kc, MR, bp, bs,
                     c + (ic + ir) * pb.ldc + jc + jr, pb.ldc, alpha, beta_pc);
          }
        }
      }
    }
  }
}

// C = beta * C, for k == 0 (beta == 0 writes zeros whatever C held).
template <class T>
void scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    T* ci = c + i * ldc;
    if (beta == T(0)) {
      std::fill(ci, ci + n, T(0));
    } else if (beta != T(1)) {
      for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
    }
  }
}

}  // namespace gemm_impl

// An upper bound of what the drivers ask of the packing buffers for an m x n x k product and any
// of its threaded sub-problems (which take the same path): the lean path one B panel of NR x kc,
// the blocked one an A block and a B block, where balanced_block(total, cap, unit) never exceeds
// min(cap, total rounded up to unit). Each rounded to a cache line, plus one line of slack for
// B's alignment at the end of a borrowed workspace.
template <class T>
size_t gemm_workspace(int64_t m, int64_t n, int64_t k) {
  using S = gemm_impl::Shape<T>;
  constexpr int64_t NR = S::NV * S::W;
  auto up = [](int64_t v, int64_t u) { return (std::max<int64_t>(v, 1) + u - 1) / u * u; };
  const int64_t kc = std::min<int64_t>(S::KC, up(k, 8));
  const auto line = [](int64_t elems) { return (static_cast<size_t>(elems) * sizeof(T) + 63) / 64 * 64; };
  if (m * n * k <= gemm_impl::kSmallWork || m <= S::MR) return line(NR * kc) + 64;
  return line(std::min<int64_t>(S::MC, up(m, S::MR)) * kc) + line(std::min<int64_t>(S::NC, up(n, NR)) * kc) + 64;
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  using namespace gemm_impl;
  constexpr int MR = Shape<T>::MR;
  constexpr int W = Shape<T>::W;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) return scale_c(m, n, beta, c, ldc);

  const Problem pb{trans_a, trans_b, lda, ldb, ldc};
  const int64_t work = m * n * k;
  const bool direct = work <= kSmallWork || m <= MR;
  const int threads =
      work < kParallelWork || ember::detail::in_parallel_region() ? 1 : ember::get_num_threads();
  const int64_t chunks = std::min<int64_t>(std::min<int64_t>(threads, RowShares::kMaxParts),
                                           work / (kParallelWork / 2));
  if (chunks <= 1) {
    return direct ? gemm_direct(pb, m, n, k, alpha, a, b, beta, c)
                  : gemm_blocked(pb, m, n, k, alpha, a, b, beta, c);
  }

  // Rows are shared out when each thread then packs only its own rows of A: B is read in place
  // or is the smaller operand (every thread packs all of it). Otherwise each thread takes an
  // equal range of columns and packs all of A.
  const bool b_in_place = !direct && reads_b_in_place<T>(pb);
  const bool split_rows = !direct && (m >= n || (b_in_place && m >= chunks * MR));
  if (split_rows) {
    // Claims of two tiles' height (at N = 256 and 512 on 2 threads: one or two tiles 202-219
    // GFLOP/s, four 188-218, fixed shares 189-194 in the same noisy phase), but only where no B
    // block is packed again for them; otherwise each thread claims its whole share at once.
    const bool single_block = single_b_block<T>(n, k);
    const int64_t claim_rows = single_block || b_in_place ? 2 * MR : m;
    RowShares shares(m, static_cast<int>(chunks), MR);
    ember::detail::parallel_for(0, chunks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        bool b_packed = false;
        for (;;) {
          const auto [lo, hi] = shares.claim(static_cast<int>(t), claim_rows);
          if (lo == hi) break;
          gemm_blocked(pb, hi - lo, n, k, alpha, a_from_row(pb, a, lo), b, beta, c + lo * ldc,
                       b_packed && single_block);
          b_packed = true;
        }
      }
    });
    return;
  }
  // Ranges are equal to within a vector of columns rather than whole tiles: with few tiles per
  // thread, whole-tile ranges leave one thread with a full extra tile, which costs more than one
  // more ragged tile.
  auto bound = [&](int64_t t) {
    return t >= chunks ? n : std::min(n, (n * t / chunks + W / 2) / W * W);
  };
  ember::detail::parallel_for(0, chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t lo = bound(t), hi = bound(t + 1);
      if (lo >= hi) continue;
      if (direct) {
        gemm_direct(pb, m, hi - lo, k, alpha, a, b_from_col(pb, b, lo), beta, c + lo);
      } else {
        gemm_blocked(pb, m, hi - lo, k, alpha, a, b_from_col(pb, b, lo), beta, c + lo);
      }
    }
  });
}

}  // namespace
}  // namespace ember::backend::EMBER_ISA_NS

#undef EMBER_GEMM_HAS_TRANSPOSE
