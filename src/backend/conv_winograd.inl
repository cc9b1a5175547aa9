// Winograd's minimal filtering for 3x3 convolutions, included by cpu_kernels.inl inside each ISA's
// namespace after conv_flat.inl (no include guard by design).
//
// Note [Winograd convolution]
// F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes
// a 2x2 block of outputs of a stride-1 3x3 correlation from the 4x4 input patch d under it as
//   Y = A^T [(G g G^T) (.) (B^T d B)] A,
// with (.) the elementwise product of the 16 "positions" and
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// Summed over input channels, each position is a product of matrices: M[p] (m x tiles) = U[p]
// (m x c, the transformed weights) . V[p] (c x tiles, the transformed patches), 16 GEMMs of
// 4 c m multiply-adds per tile against 9 * 4 c m for the convolution itself: 2.25x fewer. What it
// costs instead is the transforms (about 8 adds per input and 6 per output value and channel) and
// writing V and M to L2 and reading them back, so it wins where the products dominate and loses
// where the flat kernels already run near the FMA peak (where each tier runs it: Note [Where
// Winograd runs] in src/ops/conv_forward.cpp). The weight gradient takes the same transforms
// backwards (conv_winograd_weight_grad below).
//
// Lanes run over the tiles of a tile row (2 output rows); the patches' columns 2 tx + s are read
// as two masked loads and a deinterleave (even and odd lanes), so that padding and the image's
// edges are zeros that were never read. A block of whole tile rows, possibly across images, is
// transformed into V, multiplied position by position with the ISA's own GEMM (whose result for
// one element does not depend on the block's width, so neither the threads nor the batch change
// a bit), and transformed back into the output. Tile rows narrower than a vector store their
// lanes over the start of the next one, which that row then overwrites. The rows two tile rows
// ahead are prefetched: without it the first loads of every channel's rows waited on memory and
// the input transform took twice as long (a 16-channel 32x32 layer, 3.9 against 1.9 ms).
//
// Rounding: each output is a sum of c * 16 transformed products instead of c * 9 plain ones, with
// the transforms' adds in front; the error stays at the plain sum's size (tests bound it against
// a double reference: about 1e-6 relative at 16 channels, the flat kernel's order).
#include <algorithm>
#include <cstdint>

namespace ember::backend::EMBER_ISA_NS {
namespace {
namespace conv_impl {

#if defined(EMBER_HAVE_FLAT_CONV)

// The thread's buffer for U, V and M (kept between calls, as the GEMM's packing buffers).
inline gemm_impl::PackBuffer& winograd_buffer() {
  static thread_local gemm_impl::PackBuffer buf;
  return buf;
}

// U[p][o][ci] = (G g G^T)[p] for rows o0 <= o < o1 of the m x c 3x3 kernels of w ([m][c][9]), W
// channels at a time. U is 16/9 of the weights and, for many channels, larger than L2: its
// writes are what this costs (512 x 512: 2.2 ms on AVX-512, more than a 7x7 image's products),
// so the ops transform once per call for all their threads and plans once for good.
template <class T>
void conv_winograd_weights(int64_t m, int64_t c, int64_t o0, int64_t o1, const T* w, T* u) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const T half = T(0.5);
  for (int64_t o = o0; o < o1; ++o) {
    for (int64_t c0 = 0; c0 < c; c0 += W) {
      const int nc = static_cast<int>(std::min<int64_t>(W, c - c0));
      alignas(64) T g[9][W] = {};
      for (int l = 0; l < nc; ++l)
        for (int k = 0; k < 9; ++k) g[k][l] = w[(o * c + c0 + l) * 9 + k];
      // t = G g (rows), then t G^T (columns).
      V t[4][3];
      for (int j = 0; j < 3; ++j) {
        const V g0 = V::load(g[j]), g1 = V::load(g[3 + j]), g2 = V::load(g[6 + j]);
        t[0][j] = g0;
        t[1][j] = (g0 + g1 + g2) * V(half);
        t[2][j] = (g0 - g1 + g2) * V(half);
        t[3][j] = g2;
      }
      T* out = u + o * c + c0;
      const int64_t pos = m * c;
      for (int i = 0; i < 4; ++i) {
        t[i][0].store_n(out + (4 * i) * pos, nc);
        ((t[i][0] + t[i][1] + t[i][2]) * V(half)).store_n(out + (4 * i + 1) * pos, nc);
        ((t[i][0] - t[i][1] + t[i][2]) * V(half)).store_n(out + (4 * i + 2) * pos, nc);
        t[i][2].store_n(out + (4 * i + 3) * pos, nc);
      }
    }
  }
}

// The lanes of the input loads of each block of W tiles of a tile row that lie inside the image:
// load k of the block from tx0 reads columns 2 tx0 + off[k] - pad_w + lane, off = {0, W, 2, W + 2}.
template <class T>
struct WinogradColumns {
  static constexpr int W = Pack<T>::kWidth;
  static constexpr int64_t kMaxBlocks = (kConvWinogradMaxWidth / 2 + W - 1) / W;
  int64_t blocks;
  typename Pack<T>::Mask mask[kMaxBlocks][4];
  explicit WinogradColumns(const ConvShape& s) : blocks(((s.wo + 1) / 2 + W - 1) / W) {
    for (int64_t blk = 0; blk < std::min(blocks, kMaxBlocks); ++blk) {
      const int64_t off[4] = {0, W, 2, 2 + W};
      for (int k = 0; k < 4; ++k) {
        const int64_t c0 = 2 * blk * W + off[k] - s.pad_w;
        const int lo = static_cast<int>(std::clamp<int64_t>(-c0, 0, W));
        const int hi = static_cast<int>(std::clamp<int64_t>(s.w - c0, 0, W));
        mask[blk][k] = Pack<T>::first_n(hi) & ~Pack<T>::first_n(lo);
      }
    }
  }
};

// V[p][ci][r * tw + tx] = (B^T d B)[p] of the patch of tile (ty, tx) for tile rows r < rows of the
// images' tile rows from r0 on (row r0 + r is tile row ty of image b = (r0 + r) / th); V's rows of
// one channel ldv apart, its positions c * ldv. The images have total_rows tile rows in all.
template <class T>
void winograd_input(const ConvShape& s, const WinogradColumns<T>& cols, const T* x, int64_t x_stride, int64_t r0,
                    int64_t rows, int64_t total_rows, T* vt, int64_t ldv) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const int64_t c = s.c, th = (s.ho + 1) / 2, tw = (s.wo + 1) / 2, plane = s.h * s.w;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = (r0 + r) / th, ty = (r0 + r) % th;
    T* vrow = vt + r * tw;
    for (int64_t ci = 0; ci < c; ++ci) {
      const T* xc = x + b * x_stride + ci * plane;
      const T* xr[4];
      for (int i = 0; i < 4; ++i) {
        const int64_t ih = 2 * ty + i - s.pad_h;
        xr[i] = ih < 0 || ih >= s.h ? nullptr : xc + ih * s.w - s.pad_w;
      }
      // The new input rows of the tile row three ahead, in the next image after the last rows
      // of this one (left to the hardware, each image's first rows came from memory: a batch too
      // large for the caches ran at 0.87x the speed of a cached one).
      if (const int64_t ahead = r0 + r + 3; ahead < total_rows) {
        const T* xa = x + ahead / th * x_stride + ci * plane;
        const int64_t ta = ahead % th;
        for (int64_t ih = 2 * ta - s.pad_h; ih < 2 * ta + 2 - s.pad_h; ++ih) {
          if (ih < 0 || ih >= s.h) continue;
          for (int64_t q = 0; q < s.w; q += 64 / static_cast<int64_t>(sizeof(T))) __builtin_prefetch(xa + ih * s.w + q);
        }
      }
      for (int64_t blk = 0; blk < cols.blocks; ++blk) {
        const int64_t tx0 = blk * W;
        const auto* mk = cols.mask[blk];
        V d[4][4];
        for (int i = 0; i < 4; ++i) {
          if (xr[i] == nullptr) {
            for (int j = 0; j < 4; ++j) d[i][j] = V(T(0));
            continue;
          }
          const T* p = xr[i] + 2 * tx0;
          deinterleave(V::load_masked(p, mk[0]), V::load_masked(p + W, mk[1]), d[i][0], d[i][1]);
          deinterleave(V::load_masked(p + 2, mk[2]), V::load_masked(p + 2 + W, mk[3]), d[i][2], d[i][3]);
        }
        V t[4][4];  // B^T d
        for (int j = 0; j < 4; ++j) {
          t[0][j] = d[0][j] - d[2][j];
          t[1][j] = d[1][j] + d[2][j];
          t[2][j] = d[2][j] - d[1][j];
          t[3][j] = d[1][j] - d[3][j];
        }
        T* out = vrow + ci * ldv + tx0;
        const int64_t pos = c * ldv;
        for (int i = 0; i < 4; ++i) {  // (B^T d) B
          (t[i][0] - t[i][2]).store(out + (4 * i) * pos);
          (t[i][1] + t[i][2]).store(out + (4 * i + 1) * pos);
          (t[i][2] - t[i][1]).store(out + (4 * i + 2) * pos);
          (t[i][1] - t[i][3]).store(out + (4 * i + 3) * pos);
        }
      }
    }
  }
}

// gw[o][ci][i][j] += sum over pixels of gy[o][p] * x[ci] at the tap's place, one image: where no
// scratch is left (kernels never throw).
template <class T>
void weight_grad_by_definition(const ConvShape& s, int64_t m, const T* x, const T* gy, T* gw) {
  for (int64_t o = 0; o < m; ++o)
    for (int64_t ci = 0; ci < s.c; ++ci)
      for (int64_t t = 0; t < 9; ++t) {
        T sum = T(0);
        for (int64_t oh = 0; oh < s.ho; ++oh)
          for (int64_t ow = 0; ow < s.wo; ++ow) {
            const int64_t ih = oh + t / 3 - s.pad_h, iw = ow + t % 3 - s.pad_w;
            if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) sum += gy[(o * s.ho + oh) * s.wo + ow] * x[(ci * s.h + ih) * s.w + iw];
          }
        gw[(o * s.c + ci) * 9 + t] += sum;
      }
}

// conv_winograd's result where no scratch is left (kernels never throw): the same transforms,
// one tile and output channel at a time.
template <class T>
void winograd_by_definition(const ConvShape& s, int64_t m, const T* u, int64_t n, const T* x, int64_t x_stride,
                            T* y, int64_t y_stride) {
  const int64_t c = s.c, plane = s.h * s.w, out_plane = s.ho * s.wo;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ty = 0; ty < (s.ho + 1) / 2; ++ty)
      for (int64_t tx = 0; tx < (s.wo + 1) / 2; ++tx)
        for (int64_t o = 0; o < m; ++o) {
          T acc[16] = {};
          for (int64_t ci = 0; ci < c; ++ci) {
            T d[4][4], t[4][4];
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) {
                const int64_t ih = 2 * ty + i - s.pad_h, iw = 2 * tx + j - s.pad_w;
                const bool inside = ih >= 0 && ih < s.h && iw >= 0 && iw < s.w;
                d[i][j] = inside ? x[b * x_stride + ci * plane + ih * s.w + iw] : T(0);
              }
            for (int j = 0; j < 4; ++j) {  // B^T d
              t[0][j] = d[0][j] - d[2][j];
              t[1][j] = d[1][j] + d[2][j];
              t[2][j] = d[2][j] - d[1][j];
              t[3][j] = d[1][j] - d[3][j];
            }
            for (int i = 0; i < 4; ++i) {  // (B^T d) B, times U
              const T v[4] = {t[i][0] - t[i][2], t[i][1] + t[i][2], t[i][2] - t[i][1], t[i][1] - t[i][3]};
              for (int j = 0; j < 4; ++j) acc[4 * i + j] += u[((4 * i + j) * m + o) * c + ci] * v[j];
            }
          }
          T a[2][4];  // A^T M, then A
          for (int j = 0; j < 4; ++j) {
            a[0][j] = acc[j] + acc[4 + j] + acc[8 + j];
            a[1][j] = acc[4 + j] - acc[8 + j] - acc[12 + j];
          }
          for (int i = 0; i < 2; ++i) {
            const T out[2] = {a[i][0] + a[i][1] + a[i][2], a[i][1] - a[i][2] - a[i][3]};
            for (int j = 0; j < 2; ++j) {
              const int64_t oh = 2 * ty + i, ow = 2 * tx + j;
              if (oh < s.ho && ow < s.wo) y[b * y_stride + o * out_plane + oh * s.wo + ow] = out[j];
            }
          }
        }
}

// The scratch of a call: from a borrowed workspace (an inference plan's arena) when it holds it
// and the GEMM's packing after it, which then packs there (`rest`); else from the thread's buffer.
template <class T>
struct WinogradScratch {
  detail::BorrowedWorkspace borrowed;
  size_t own_bytes;
  bool in_workspace;
  GemmWorkspace rest;  // the GEMM's room after ours, or the borrowed workspace as it was
  T* data;
  WinogradScratch(const ConvShape& s, int64_t m, int64_t tiles, bool weight_grad)
      : borrowed(detail::borrowed_gemm_workspace()),
        own_bytes((static_cast<size_t>(conv_winograd_scratch(s, m, weight_grad)) * sizeof(T) + 63) / 64 * 64),
        in_workspace(borrowed.data != nullptr && borrowed.bytes >= own_bytes + gemm_workspace<T>(m, tiles, s.c)),
        rest(in_workspace ? borrowed.data + own_bytes : borrowed.data,
             in_workspace ? borrowed.bytes - own_bytes : borrowed.bytes),
        data(in_workspace ? reinterpret_cast<T*>(borrowed.data)
                          : winograd_buffer().get<T>(conv_winograd_scratch(s, m, weight_grad))) {}
};

template <class T>
void conv_winograd(const ConvShape& s, int64_t m, const T* u, int64_t n, const T* x, int64_t x_stride, T* y,
                   int64_t y_stride) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  static_assert(W <= kConvWinogradSlack, "a vector of slack after the last tile row");
  const int64_t c = s.c, th = (s.ho + 1) / 2, tw = (s.wo + 1) / 2;
  if (m <= 0 || n <= 0 || s.ho <= 0 || s.wo <= 0) return;
  const WinogradColumns<T> cols(s);
  const int64_t tiles_per_block = conv_winograd_tiles(s, m), rows_per_block = tiles_per_block / tw;
  const int64_t ldv = tiles_per_block + kConvWinogradSlack;
  const WinogradScratch<T> scratch(s, m, tiles_per_block, false);
  if (scratch.data == nullptr || cols.blocks > cols.kMaxBlocks) {
    return winograd_by_definition(s, m, u, n, x, x_stride, y, y_stride);
  }
  T* vt = scratch.data;
  T* mt = vt + 16 * c * ldv;
  const int64_t out_plane = s.ho * s.wo, total_rows = n * th;
  for (int64_t r0 = 0; r0 < total_rows; r0 += rows_per_block) {
    const int64_t rows = std::min(rows_per_block, total_rows - r0);
    winograd_input(s, cols, x, x_stride, r0, rows, total_rows, vt, ldv);
    const int64_t tiles = rows * tw;
    for (int64_t p = 0; p < 16; ++p) {
      gemm<T>(false, false, m, tiles, c, T(1), u + p * m * c, c, vt + p * c * ldv, ldv, T(0), mt + p * m * ldv, ldv);
    }
    // The outputs: A^T M A per tile, its two rows' columns interleaved.
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = (r0 + r) / th, ty = (r0 + r) % th;
      const bool second_row = 2 * ty + 1 < s.ho;
      for (int64_t o = 0; o < m; ++o) {
        const T* in = mt + o * ldv + r * tw;
        T* yo = y + b * y_stride + o * out_plane + 2 * ty * s.wo;
        const int64_t pos = m * ldv;
        for (int64_t tx0 = 0; tx0 < tw; tx0 += W) {
          V a0[4], a1[4];  // A^T M
          for (int j = 0; j < 4; ++j) {
            const V m0 = V::load(in + j * pos + tx0), m1 = V::load(in + (4 + j) * pos + tx0);
            const V m2 = V::load(in + (8 + j) * pos + tx0), m3 = V::load(in + (12 + j) * pos + tx0);
            a0[j] = m0 + m1 + m2;
            a1[j] = m1 - m2 - m3;
          }
          const int64_t ncols = std::min<int64_t>(2 * W, s.wo - 2 * tx0);
          auto put = [&](V even, V odd, T* row) {
            V lo, hi;
            interleave(even, odd, lo, hi);
            if (ncols >= 2 * W) {
              lo.store(row);
              hi.store(row + W);
            } else if (ncols > W) {
              lo.store(row);
              hi.store_n(row + W, static_cast<int>(ncols - W));
            } else {
              lo.store_n(row, static_cast<int>(ncols));
            }
          };
          put(a0[0] + a0[1] + a0[2], a0[1] - a0[2] - a0[3], yo + 2 * tx0);
          if (second_row) put(a1[0] + a1[1] + a1[2], a1[1] - a1[2] - a1[3], yo + s.wo + 2 * tx0);
        }
      }
    }
  }
}

// The weight gradient by the same transforms: with dU = (A gy A^T) (.) V summed over the tiles
// (A gy A^T: the 2x2 output gradient of a tile spread over the 16 positions), gw += G^T dU G. Per
// position the sum over tiles is a GEMM, Mw[p] (m x c) += Yh[p] (m x tiles) . V[p]^T, block after
// block of tiles; G^T Mw G at the end. gw[o * 9 c + ci * 9 + t] is accumulated into, as
// conv_flat_weight_grad's.
template <class T>
void conv_winograd_weight_grad(const ConvShape& s, int64_t m, int64_t n, const T* x, int64_t x_stride, const T* gy,
                               int64_t gy_stride, T* gw) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const int64_t c = s.c, th = (s.ho + 1) / 2, tw = (s.wo + 1) / 2;
  if (m <= 0 || n <= 0 || s.ho <= 0 || s.wo <= 0) return;
  const WinogradColumns<T> cols(s);
  const int64_t tiles_per_block = conv_winograd_tiles(s, m), rows_per_block = tiles_per_block / tw;
  const int64_t ldv = tiles_per_block + kConvWinogradSlack;
  const WinogradScratch<T> scratch(s, m, tiles_per_block, true);
  if (scratch.data == nullptr || cols.blocks > cols.kMaxBlocks) {
    for (int64_t b = 0; b < n; ++b) weight_grad_by_definition(s, m, x + b * x_stride, gy + b * gy_stride, gw);
    return;
  }
  T* mw = scratch.data;  // [p][o][ci]
  T* vt = mw + 16 * m * c;
  T* yh = vt + 16 * c * ldv;
  const int64_t out_plane = s.ho * s.wo, total_rows = n * th;
  for (int64_t r0 = 0; r0 < total_rows; r0 += rows_per_block) {
    const int64_t rows = std::min(rows_per_block, total_rows - r0);
    winograd_input(s, cols, x, x_stride, r0, rows, total_rows, vt, ldv);
    // Yh[p][o][tile] = (A gy A^T)[p]: rows (g0, g0 + g1, g0 - g1, -g1) of the tile's two output
    // rows, then the same across its two columns.
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = (r0 + r) / th, ty = (r0 + r) % th;
      const bool second_row = 2 * ty + 1 < s.ho;
      for (int64_t o = 0; o < m; ++o) {
        const T* g0 = gy + b * gy_stride + o * out_plane + 2 * ty * s.wo;
        T* out = yh + o * ldv + r * tw;
        const int64_t pos = m * ldv;
        for (int64_t tx0 = 0; tx0 < tw; tx0 += W) {
          const int64_t ncols = std::min<int64_t>(2 * W, s.wo - 2 * tx0);
          const auto lo = V::first_n(static_cast<int>(std::min<int64_t>(ncols, W)));
          const auto hi = V::first_n(static_cast<int>(std::max<int64_t>(ncols - W, 0)));
          V e[2], od[2];  // the tile rows' even and odd columns
          deinterleave(V::load_masked(g0 + 2 * tx0, lo), V::load_masked(g0 + 2 * tx0 + W, hi), e[0], od[0]);
          if (second_row) {
            deinterleave(V::load_masked(g0 + s.wo + 2 * tx0, lo), V::load_masked(g0 + s.wo + 2 * tx0 + W, hi), e[1],
                         od[1]);
          } else {
            e[1] = od[1] = V(T(0));
          }
          V t[4][2];  // A gy
          for (int j = 0; j < 2; ++j) {
            const V a = j == 0 ? e[0] : od[0], bb = j == 0 ? e[1] : od[1];
            t[0][j] = a;
            t[1][j] = a + bb;
            t[2][j] = a - bb;
            t[3][j] = -bb;
          }
          for (int i = 0; i < 4; ++i) {  // (A gy) A^T
            t[i][0].store(out + (4 * i) * pos + tx0);
            (t[i][0] + t[i][1]).store(out + (4 * i + 1) * pos + tx0);
            (t[i][0] - t[i][1]).store(out + (4 * i + 2) * pos + tx0);
            (-t[i][1]).store(out + (4 * i + 3) * pos + tx0);
          }
        }
      }
    }
    const int64_t tiles = rows * tw;
    const T beta = r0 == 0 ? T(0) : T(1);
    for (int64_t p = 0; p < 16; ++p) {
      gemm<T>(false, true, m, c, tiles, T(1), yh + p * m * ldv, ldv, vt + p * c * ldv, ldv, beta, mw + p * m * c, c);
    }
  }
  // gw += G^T Mw G, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1].
  const T half = T(0.5);
  for (int64_t o = 0; o < m; ++o)
    for (int64_t ci = 0; ci < c; ++ci) {
      T q[4][4], t[3][4];
      for (int p = 0; p < 16; ++p) q[p / 4][p % 4] = mw[(p * m + o) * c + ci];
      for (int j = 0; j < 4; ++j) {
        t[0][j] = q[0][j] + (q[1][j] + q[2][j]) * half;
        t[1][j] = (q[1][j] - q[2][j]) * half;
        t[2][j] = (q[1][j] + q[2][j]) * half + q[3][j];
      }
      T* g = gw + (o * c + ci) * 9;
      for (int i = 0; i < 3; ++i) {
        g[3 * i] += t[i][0] + (t[i][1] + t[i][2]) * half;
        g[3 * i + 1] += (t[i][1] - t[i][2]) * half;
        g[3 * i + 2] += (t[i][1] + t[i][2]) * half + t[i][3];
      }
    }
}

#endif

}  // namespace conv_impl
}  // namespace
}  // namespace ember::backend::EMBER_ISA_NS
