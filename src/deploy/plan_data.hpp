#pragma once
// Internal: what a Plan holds (Note [Inference plan] in ember/deploy/plan.hpp), shared by the
// compiler and runner (plan.cpp) and the file format (plan_file.cpp).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../ops/conv_forward.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/core/shape.hpp"
#include "ember/deploy/plan.hpp"

namespace ember::deploy {

enum class StepKind : uint8_t { Conv2d, Linear, ChannelAffine, Unary, Binary, MaxPool, MeanHW, Count };

struct PostOp {
  backend::Unary op;
  backend::UnaryParams params;
};

struct Step {
  StepKind kind = StepKind::Unary;
  int in0 = -1, in1 = -1, out = -1;  // value ids
  // Conv2d and Linear: weights and bias (empty: none); ChannelAffine: scale and shift. The
  // vectors own them in a compiled or parsed plan; w and b are what the step reads (the vectors,
  // or a memory-mapped file's bytes).
  std::vector<float> weight, bias;
  std::span<const float> w, b;
  Shape weight_shape;                   // Conv2d: [O, C / groups, kh, kw]
  Conv2dGeometry geometry{};            // Conv2d
  ember::detail::ConvForward<float> conv{};
  int64_t rows = 0, in_features = 0, out_features = 0;  // Linear
  backend::Unary unary_op = backend::Unary::Relu;
  backend::UnaryParams unary_params{};
  backend::Binary binary_op = backend::Binary::Add;
  backend::PoolShape pool{};
  bool two_by_two = false;
  int64_t numel = 0, planes = 0, inner = 0, channels = 0;
  std::vector<PostOp> post;  // fused elementwise ops, in order
  std::string name;          // the op, for str() and errors
  bool folded_batch_norm = false;
  int64_t scratch_bytes = 0, scratch_offset = 0;
};

struct Value {
  Shape shape;
  int alias_of = -1;    // a view of this value
  int64_t offset = -1;  // in the arena, for intermediate buffers
};

struct PlanData {
  Shape input_shape, output_shape;
  std::vector<Value> values;  // values[0] is the input
  std::vector<Step> steps;
  int output = -1;  // the root value written to the caller's output tensor
  size_t arena_bytes = 0;
  std::shared_ptr<const void> mapping;  // a loaded file's bytes, when the steps read weights there

  int root(int v) const {
    while (values[static_cast<size_t>(v)].alias_of >= 0) v = values[static_cast<size_t>(v)].alias_of;
    return v;
  }
  /// Points every step's w and b at its own vectors.
  void bind_owned_weights() {
    for (Step& s : steps) {
      s.w = s.weight;
      s.b = s.bias;
    }
  }
};

/// The plan's data; throws ember::ValueError for an empty (default-constructed) plan.
const PlanData& checked_plan(const PlanData* p);

inline int64_t round_up_arena(int64_t bytes) {
  const auto a = static_cast<int64_t>(Plan::kArenaAlignment);
  return (bytes + a - 1) / a * a;
}

/// The column-matrix scratch a convolution step reserves: enough for the im2col path whatever
/// table runs it (a plan compiled where the flat kernels exist may run where they do not).
inline int64_t conv_scratch_bytes(const ember::detail::ConvForward<float>& f) {
  return f.pointwise ? 0 : f.d.k() * f.d.hw_out() * static_cast<int64_t>(sizeof(float));
}

}  // namespace ember::deploy
