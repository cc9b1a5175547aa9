#pragma once
// The phase planes and wide rows of the depthwise kernels (Note [Depthwise convolution] in
// src/backend/conv_depthwise.inl), for vectors of W lanes: shared by each ISA's kernels and by
// conv_depthwise_scratch (src/backend/dispatch.cpp), which sizes an inference plan's scratch for
// the widest vectors. In an anonymous namespace, as the packets (simd_vec.hpp): each ISA's
// translation unit keeps its own copy.
#include <algorithm>
#include <cstdint>

#include "ember/backend/kernels.hpp"

namespace ember::backend {
namespace {

template <int W>
struct DepthwiseLayout {
  static constexpr int kUnroll = 4;  // vectors in flight in the forward and input gradient
  int64_t sh, sw, ru, cv, q, rows;
  int64_t wide;    // values of ho wide rows, rounded up to whole vectors
  int64_t gather;  // values of `rows` phase rows, rounded up likewise
  int64_t plane;   // one phase plane with the slack its reads run into
  int64_t padded;  // the padded input rows of a stride above 2
  int64_t taps;
  int64_t off[kConvDepthwiseMaxTaps];    // tap t in the phase planes (plane base + row and column)
  int64_t shift[kConvDepthwiseMaxTaps];  // its offset within the plane
  int64_t phase[kConvDepthwiseMaxTaps];

  explicit DepthwiseLayout(const ConvShape& s)
      : sh(s.stride_h), sw(s.stride_w), ru((s.kh - 1) * s.dil_h / s.stride_h), cv((s.kw - 1) * s.dil_w / s.stride_w),
        q(s.wo + cv), rows(s.ho + ru), taps(s.kh * s.kw) {
    wide = (s.ho * q + W - 1) / W * W;
    gather = (rows * q + W - 1) / W * W;
    plane = std::max(rows * q, ru * q + cv + wide) + 2 * W;
    padded = sw > 2 ? std::min(s.h, rows * sh) * row_pitch() : 0;
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t t = i * s.kw + j, ei = i * s.dil_h, ej = j * s.dil_w;
        phase[t] = (ei % sh) * sw + ej % sw;
        shift[t] = ei / sh * q + ej / sw;
        off[t] = phase[t] * plane + shift[t];
      }
  }
  int64_t phases() const { return sh * sw; }
  int64_t row_pitch() const { return sw * q + 2 * W; }  // between padded input rows
  int64_t margin() const { return ru * q + cv; }        // zeros before the input gradient's wide rows
  // Scratch values of each kernel: the phases, padded rows and wide rows (and the weight
  // gradient's accumulators); the input gradient's phases, then its wide rows after the margin.
  int64_t forward_scratch() const { return phases() * plane + padded + wide; }
  int64_t weight_grad_scratch() const { return forward_scratch() + taps * W; }
  int64_t input_grad_scratch() const { return phases() * gather + margin() + gather; }
};

}  // namespace
}  // namespace ember::backend
