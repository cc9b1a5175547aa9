// Inference plans (Note [Inference plan] in ember/deploy/plan.hpp): the tracer that turns one
// forward into steps, the folding and fusing passes, the arena layout and the steps' kernels.
#include "ember/deploy/compile.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <map>
#include <sstream>
#include <tuple>
#include <vector>

#include "../core/internal.hpp"
#include "../ops/conv_forward.hpp"
#include "../ops/trace.hpp"
#include "plan_build.hpp"
#include "plan_data.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/core/error.hpp"
#include "ember/ops/factory.hpp"

namespace ember::deploy {

using backend::Binary;
using backend::Unary;
using backend::KernelParams;
using ember::detail::cat_str;

namespace {

// ---- Passes ----------------------------------------------------------------------------------

// Reads of each root value by the steps (the output counts as one more).
std::vector<int> read_counts(const PlanData& p) {
  std::vector<int> reads(p.values.size(), 0);
  for (const Step& s : p.steps) {
    if (s.in0 >= 0) ++reads[static_cast<size_t>(p.root(s.in0))];
    if (s.in1 >= 0) ++reads[static_cast<size_t>(p.root(s.in1))];
  }
  ++reads[static_cast<size_t>(p.output)];
  return reads;
}

// The step that writes root value v, or -1 (the input).
int producer_of(const PlanData& p, int v) {
  for (size_t i = 0; i < p.steps.size(); ++i)
    if (p.steps[i].out == v) return static_cast<int>(i);
  return -1;
}

// The step that writes `value` (through its views), when that step is the only one that reads it:
// a pass may then change how the value is made. Null for the input or a value read elsewhere.
Step* sole_producer(PlanData& p, int value) {
  const int v = p.root(value);
  const int i = producer_of(p, v);
  if (i < 0 || read_counts(p)[static_cast<size_t>(v)] != 1) return nullptr;
  return &p.steps[static_cast<size_t>(i)];
}

void fold_batch_norm(PlanData& p) {
  for (size_t i = 0; i < p.steps.size(); ++i) {
    Step& bn = p.steps[i];
    if (bn.kind != StepKind::ChannelAffine) continue;
    Step* producer = sole_producer(p, bn.in0);
    if (producer == nullptr) continue;
    Step& prod = *producer;
    const bool conv = prod.kind == StepKind::Conv2d && prod.channels == bn.channels;
    const bool transposed = prod.kind == StepKind::ConvTranspose2d && prod.channels == bn.channels;
    const bool linear = prod.kind == StepKind::Linear && prod.out_features == bn.channels && bn.inner == 1;
    if ((!conv && !transposed && !linear) || !prod.post.empty()) continue;
    const auto c = static_cast<size_t>(bn.channels);
    if (transposed) {
      // Weights [o, cg, kh, kw]: output channel g * cg + ci is column ci of the rows of group g.
      const auto& d = prod.conv.d;
      const auto taps = static_cast<size_t>(d.kh * d.kw), cg = static_cast<size_t>(d.cg);
      const auto og = static_cast<size_t>(d.og);
      for (size_t row = 0; row < static_cast<size_t>(d.o); ++row)
        for (size_t ci = 0; ci < cg; ++ci)
          for (size_t t = 0; t < taps; ++t) prod.weight[(row * cg + ci) * taps + t] *= bn.weight[row / og * cg + ci];
    } else {
      const size_t per_channel = prod.weight.size() / c;
      for (size_t o = 0; o < c; ++o)
        for (size_t t = 0; t < per_channel; ++t) prod.weight[o * per_channel + t] *= bn.weight[o];
    }
    if (prod.bias.empty()) prod.bias.assign(c, 0.0f);
    for (size_t o = 0; o < c; ++o) prod.bias[o] = prod.bias[o] * bn.weight[o] + bn.bias[o];
    prod.out = bn.out;
    prod.folded_batch_norm = true;
    p.steps.erase(p.steps.begin() + static_cast<std::ptrdiff_t>(i));
    --i;
  }
}

// conv_transpose2d adds its bias as a broadcasting add of a [1, C, 1, 1] constant: the step adds
// it itself (the same float additions, so the same bits).
void fold_channel_bias(PlanData& p) {
  for (size_t i = 0; i < p.steps.size(); ++i) {
    Step& add = p.steps[i];
    if (add.kind != StepKind::BroadcastBinary || add.binary_op != backend::Binary::Add || add.constant_operand == 0) {
      continue;
    }
    Step* producer = sole_producer(p, add.in0);
    if (producer == nullptr || producer->kind != StepKind::ConvTranspose2d || !producer->bias.empty() ||
        !producer->post.empty()) {
      continue;
    }
    const Shape per_channel{1, producer->channels, 1, 1};
    if (add.weight_shape != per_channel ||
        p.values[static_cast<size_t>(add.out)].shape != p.values[static_cast<size_t>(producer->out)].shape) {
      continue;
    }
    producer->bias = add.weight;
    producer->out = add.out;
    p.steps.erase(p.steps.begin() + static_cast<std::ptrdiff_t>(i));
    --i;
  }
}

void fuse_elementwise(PlanData& p) {
  for (size_t i = 0; i < p.steps.size(); ++i) {
    Step& u = p.steps[i];
    if (u.kind != StepKind::Unary) continue;
    Step* producer = sole_producer(p, u.in0);
    if (producer == nullptr) continue;
    Step& prod = *producer;
    prod.post.push_back({u.unary_op, u.unary_params});
    prod.out = u.out;
    p.steps.erase(p.steps.begin() + static_cast<std::ptrdiff_t>(i));
    --i;
  }
}

// Offsets for every intermediate buffer and scratch area (Note [Inference plan]).
void plan_arena(PlanData& p) {
  struct Buffer {
    int64_t bytes, first, last;
    int64_t* offset;
  };
  std::vector<Buffer> buffers;
  std::vector<int64_t> first(p.values.size(), -1), last(p.values.size(), -1);
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const Step& s = p.steps[i];
    first[static_cast<size_t>(s.out)] = static_cast<int64_t>(i);
    last[static_cast<size_t>(s.out)] = std::max(last[static_cast<size_t>(s.out)], static_cast<int64_t>(i));
    for (int in : {s.in0, s.in1}) {
      if (in >= 0) last[static_cast<size_t>(p.root(in))] = static_cast<int64_t>(i);
    }
  }
  for (size_t v = 1; v < p.values.size(); ++v) {
    if (p.values[v].alias_of >= 0 || first[v] < 0 || static_cast<int>(v) == p.output) continue;
    buffers.push_back({round_up_arena(value_bytes(p.values[v])), first[v],
                       std::max(first[v], last[v]), &p.values[v].offset});
  }
  for (size_t i = 0; i < p.steps.size(); ++i) {
    Step& s = p.steps[i];
    if (s.scratch_bytes > 0) {
      buffers.push_back({round_up_arena(s.scratch_bytes), static_cast<int64_t>(i), static_cast<int64_t>(i), &s.scratch_offset});
    }
  }
  std::stable_sort(buffers.begin(), buffers.end(), [](const Buffer& a, const Buffer& b) { return a.bytes > b.bytes; });
  std::vector<const Buffer*> placed;
  int64_t end = 0;
  for (Buffer& b : buffers) {
    // The lowest offset clear of every placed buffer whose lifetime meets this one's.
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (const Buffer* q : placed) {
      if (q->first <= b.last && b.first <= q->last) busy.emplace_back(*q->offset, *q->offset + q->bytes);
    }
    std::sort(busy.begin(), busy.end());
    int64_t at = 0;
    for (const auto& [lo, hi] : busy) {
      if (at + b.bytes <= lo) break;
      at = std::max(at, hi);
    }
    *b.offset = at;
    end = std::max(end, at + b.bytes);
    placed.push_back(&b);
  }
  p.arena_bytes = static_cast<size_t>(end);
}

}  // namespace

void finish_plan(PlanData& p, const CompileOptions& options) {
  fold_channel_bias(p);
  if (options.fold_batch_norm) fold_batch_norm(p);
  if (options.fuse_elementwise) fuse_elementwise(p);
  plan_arena(p);
  p.bind_owned_weights();
  for (Step& s : p.steps) prepare_winograd(s);
}

void Plan::run(const Tensor<float>& input, const Tensor<float>& output, std::span<std::byte> arena) const {
  const PlanData& p = checked_plan(data());
  for (const auto& [t, what, want] :
       {std::tuple<const Tensor<float>*, const char*, const Shape*>{&input, "input", &p.input_shape},
        {&output, "output", &p.output_shape}}) {
    if (!t->defined()) throw ValueError(cat_str("deploy::Plan::run: the ", what, " is undefined"));
    if (t->shape() != *want) {
      throw ShapeError(cat_str("deploy::Plan::run: ", what, " of shape ", t->shape(), ", the plan was compiled for ",
                               *want));
    }
    if (!t->is_contiguous()) throw ValueError(cat_str("deploy::Plan::run: the ", what, " must be contiguous"));
  }
  run(std::span<const float>(input.data_ptr(), static_cast<size_t>(input.numel())),
      std::span<float>(output.data_ptr(), static_cast<size_t>(output.numel())), arena);
}

Tensor<float> Plan::operator()(const Tensor<float>& input) const {
  const PlanData& p = checked_plan(data());
  Tensor<float> output = empty<float>(p.output_shape);
  std::vector<std::byte> arena(p.arena_bytes + kArenaAlignment);
  auto* base = arena.data();
  const size_t skip = (kArenaAlignment - reinterpret_cast<uintptr_t>(base) % kArenaAlignment) % kArenaAlignment;
  run(input.contiguous(), output, std::span<std::byte>(base + skip, p.arena_bytes));
  return output;
}

Plan compile(nn::Module<float>& model, const Shape& input_shape, const CompileOptions& options) {
  if (model.is_training()) {
    throw ValueError("deploy::compile: the model is in training mode; call model.eval() first (dropout and batch "
                     "norm compute differently when training)");
  }
  for (int64_t d : input_shape) {
    if (d <= 0) throw ShapeError(cat_str("deploy::compile: input shape ", input_shape, " has a dim that is not positive"));
  }
  auto data = std::make_shared<PlanData>();
  data->input_shape = input_shape;
  Tracer tracer(*data);
  const Tensor<float> x = zeros<float>(input_shape);
  tracer.add_value(x);
  // The model's parameters and buffers (and what elementwise ops make of them alone) may be
  // operands of elementwise steps; anything else off the data flow may not.
  for (const auto& [name, p] : model.named_parameters()) tracer.add_constant(p);
  for (const auto& [name, b] : model.named_buffers()) {
    if (b.dtype() == DType::Float32) tracer.add_constant(Tensor<float>::from_base(b));
  }
  Tensor<float> y;
  {
    NoGradGuard no_grad;
    ember::detail::OpTracerScope scope(&tracer);
    y = model(x);
  }
  const int out = tracer.id_of(y);
  if (out < 0) {
    throw ValueError(cat_str("deploy::compile: the model's output (shape ", y.defined() ? y.shape().str() : "undefined",
                             ") was computed by an op a plan cannot run (", kSupported, ")"));
  }
  data->output = data->root(out);
  data->output_shape = y.shape();
  if (data->output == 0) throw ValueError("deploy::compile: the model's output is its input: there is nothing to plan");
  finish_plan(*data, options);
  return Plan(std::move(data));
}

}  // namespace ember::deploy
