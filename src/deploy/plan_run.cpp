// What ember::runtime holds of a plan: running it, printing it, and its special members
// (Note [Inference plan] in ember/deploy/plan.hpp). No tensors, no autograd, no modules.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>

#include "../core/internal.hpp"
#include "ember/core/error.hpp"
#include "ember/deploy/plan.hpp"
#include "plan_data.hpp"

namespace ember::deploy {

using backend::Binary;
using backend::Unary;
using ember::detail::cat_str;

const PlanData& checked_plan(const PlanData* p) {
  if (p == nullptr) throw ValueError("deploy::Plan: this plan is empty (assign it the result of deploy::compile or load)");
  return *p;
}

namespace {

// ---- Steps -------------------------------------------------------------------------------------

void run_post(const backend::Kernels<float>& k, const Step& s, int64_t n, float* y) {
  for (const PostOp& op : s.post) k.unary(op.op, op.params, n, y, 1, y);
}

// y[r][j] += bias[j] for rows of `inner` elements, the bias indexed by the row's channel.
void add_channel_bias(const backend::Kernels<float>& k, std::span<const float> bias, int64_t rows,
                      int64_t channels, int64_t inner, float* y) {
  if (bias.empty()) return;
  if (inner == 1) {
    for (int64_t r = 0; r < rows / channels; ++r) k.binary(Binary::Add, channels, y + r * channels, 1, bias.data(), 1, y + r * channels);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    k.binary(Binary::Add, inner, y + r * inner, 1, bias.data() + r % channels, 0, y + r * inner);
  }
}

void run_step(const backend::Kernels<float>& k, const Step& s, const float* x0, const float* x1, float* y,
              std::byte* scratch) {
  switch (s.kind) {
    case StepKind::Conv2d: {
      const auto& d = s.conv.d;
      // The scratch: the column matrix, then the GEMM's packing buffers.
      const int64_t cols = round_up_arena(conv_scratch_bytes(s.conv));
      const backend::GemmWorkspace workspace(scratch == nullptr ? nullptr : scratch + cols,
                                             static_cast<size_t>(std::max<int64_t>(0, s.scratch_bytes - cols)));
      ember::detail::conv_forward_samples(k, s.conv, x0, s.w.data(), y, 0, d.n, reinterpret_cast<float*>(scratch));
      add_channel_bias(k, s.b, d.n * d.o, d.o, d.hw_out(), y);
      run_post(k, s, d.n * d.o * d.hw_out(), y);
      return;
    }
    case StepKind::Linear:
      if (s.rows > 0) {
        const backend::GemmWorkspace workspace(scratch, static_cast<size_t>(s.scratch_bytes));
        // The operands matmul(x, weight.t()) hands the GEMM (src/ops/linalg.cpp).
        k.gemm(false, true, s.rows, s.out_features, s.in_features, 1.0f, x0, std::max<int64_t>(s.in_features, 1),
               s.w.data(), std::max<int64_t>(s.in_features, 1), 0.0f, y, s.out_features);
      }
      add_channel_bias(k, s.b, s.rows * s.out_features, s.out_features, 1, y);
      run_post(k, s, s.rows * s.out_features, y);
      return;
    case StepKind::ChannelAffine:
      k.channel_affine(s.planes, 0, s.channels, s.inner, x0, s.w.data(), nullptr, nullptr, s.b.data(), y);
      run_post(k, s, s.planes * s.inner, y);
      return;
    case StepKind::Unary:
      k.unary(s.unary_op, s.unary_params, s.numel, x0, 1, y);
      run_post(k, s, s.numel, y);
      return;
    case StepKind::Binary:
      k.binary(s.binary_op, s.numel, x0, 1, x1, 1, y);
      run_post(k, s, s.numel, y);
      return;
    case StepKind::MaxPool: {
      auto* idx = reinterpret_cast<int64_t*>(scratch);
      if (s.two_by_two) {
        k.max_pool2x2(s.planes, s.pool.h, s.pool.w, x0, y, idx);
      } else {
        k.max_pool2d(s.pool, s.planes, x0, y, idx);
      }
      run_post(k, s, s.planes * s.pool.ho * s.pool.wo, y);
      return;
    }
    case StepKind::MeanHW: {
      // As mean() over the last two dims: a sum per plane, then one scaling pass.
      for (int64_t p = 0; p < s.planes; ++p) y[p] = 0.0f + k.reduce(backend::Reduce::Sum, s.inner, x0 + p * s.inner, 1);
      const float scale = 1.0f / static_cast<float>(s.inner);
      k.unary(Unary::MulScalar, {static_cast<double>(scale), 0.0}, s.planes, y, 1, y);
      run_post(k, s, s.planes, y);
      return;
    }
    case StepKind::Count: break;
  }
}

// The op's name in the op table ("relu", "leaky_relu"); kernels without a public op of the same
// name go by the kernel's ("Gelu").
const char* unary_name(Unary op) {
  switch (op) {
#define EMBER_UNARY(name, Kernel, ...) \
  case Unary::Kernel: return #name;
#define EMBER_UNARY_P1 EMBER_UNARY
#define EMBER_UNARY_P2 EMBER_UNARY
#define EMBER_UNARY_KERNEL(Kernel, ...) \
  case Unary::Kernel: return #Kernel;
#include "ember/ops/op_table.def"
    default: break;
  }
  return "elementwise op";
}

// The binary kernel's name in lower case ("add", "mul", "maskpositive").
std::string binary_name(Binary op) {
  std::string name = "binary op";
  switch (op) {
#define EMBER_BINARY_KERNEL(Kernel, ...) \
  case Binary::Kernel: name = #Kernel; break;
#include "ember/ops/op_table.def"
    default: break;
  }
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string step_str(const PlanData& p, const Step& s) {
  // Strings, not streams: iostreams would add a few hundred KB to a static runtime program.
  std::string out = s.kind == StepKind::Unary    ? std::string(unary_name(s.unary_op))
                    : s.kind == StepKind::Binary ? binary_name(s.binary_op)
                                                 : s.name;
  out += cat_str(" ", p.values[static_cast<size_t>(s.in0)].shape);
  if (s.in1 >= 0) out += cat_str(", ", p.values[static_cast<size_t>(s.in1)].shape);
  out += cat_str(" -> ", p.values[static_cast<size_t>(s.out)].shape);
  if (s.folded_batch_norm) out += ", batch norm folded";
  for (const PostOp& op : s.post) out += cat_str(", ", unary_name(op.op), " fused");
  if (s.kind == StepKind::Conv2d) out += s.conv.flat ? " (flat)" : s.conv.pointwise ? " (pointwise)" : " (im2col)";
  return out;
}


}  // namespace

Plan::Plan() = default;
Plan::~Plan() = default;
Plan::Plan(const Plan&) = default;
Plan& Plan::operator=(const Plan&) = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;
Plan::Plan(std::shared_ptr<const PlanData> data) : data_(std::move(data)) {}

const Shape& Plan::input_shape() const { return checked_plan(data_.get()).input_shape; }
const Shape& Plan::output_shape() const { return checked_plan(data_.get()).output_shape; }
size_t Plan::arena_bytes() const { return checked_plan(data_.get()).arena_bytes; }
size_t Plan::num_steps() const { return checked_plan(data_.get()).steps.size(); }

std::string Plan::str() const {
  const PlanData& p = checked_plan(data_.get());
  std::string out = cat_str("Plan(input ", p.input_shape, ", output ", p.output_shape, ", arena ", p.arena_bytes,
                            " bytes)\n");
  for (size_t i = 0; i < p.steps.size(); ++i) out += cat_str("  (", i, "): ", step_str(p, p.steps[i]), "\n");
  return out;
}

void Plan::run(std::span<const float> input, std::span<float> output, std::span<std::byte> arena) const {
  const PlanData& p = checked_plan(data_.get());
  if (input.size() != static_cast<size_t>(p.input_shape.numel()) ||
      output.size() != static_cast<size_t>(p.output_shape.numel())) {
    throw ShapeError(cat_str("deploy::Plan::run: ", input.size(), " input and ", output.size(),
                             " output values, the plan was compiled for ", p.input_shape, " -> ", p.output_shape));
  }
  if (arena.size() < p.arena_bytes) {
    throw ValueError(cat_str("deploy::Plan::run: an arena of ", arena.size(), " bytes, the plan needs ", p.arena_bytes));
  }
  if (reinterpret_cast<uintptr_t>(arena.data()) % kArenaAlignment != 0) {
    throw ValueError(cat_str("deploy::Plan::run: the arena must be aligned to ", kArenaAlignment, " bytes"));
  }
  const auto* in_lo = reinterpret_cast<const std::byte*>(input.data());
  const auto* out_lo = reinterpret_cast<const std::byte*>(output.data());
  if (in_lo < out_lo + output.size_bytes() && out_lo < in_lo + input.size_bytes()) {
    throw ValueError("deploy::Plan::run: the output overlaps the input");
  }
  const auto& k = backend::kernels<float>();
  auto at = [&](int v) -> float* {
    if (v < 0) return nullptr;
    const int r = p.root(v);
    if (r == 0) return const_cast<float*>(input.data());
    if (r == p.output) return output.data();
    return reinterpret_cast<float*>(arena.data() + p.values[static_cast<size_t>(r)].offset);
  };
  for (const Step& s : p.steps) {
    run_step(k, s, at(s.in0), at(s.in1), at(s.out), s.scratch_bytes > 0 ? arena.data() + s.scratch_offset : nullptr);
  }
}

}  // namespace ember::deploy
