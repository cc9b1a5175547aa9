// Inference plans (Note [Inference plan] in ember/deploy/plan.hpp): the tracer that turns one
// forward into steps, the folding and fusing passes, the arena layout and the steps' kernels.
#include "ember/deploy/plan.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <sstream>
#include <tuple>
#include <vector>

#include "../core/internal.hpp"
#include "../ops/conv_forward.hpp"
#include "../ops/trace.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/core/error.hpp"
#include "ember/ops/factory.hpp"

namespace ember::deploy {

using backend::Binary;
using backend::Unary;
using backend::UnaryParams;
using ember::detail::cat_str;

namespace {

constexpr const char* kSupported =
    "a plan runs conv2d, linear, batch_norm in eval mode, elementwise ops on tensors of one shape, max_pool2d, "
    "adaptive_avg_pool2d to 1 x 1 and views";

enum class StepKind : uint8_t { Conv2d, Linear, ChannelAffine, Unary, Binary, MaxPool, MeanHW };

struct PostOp {
  Unary op;
  UnaryParams params;
};

int64_t round_up(int64_t bytes) {
  const auto a = static_cast<int64_t>(Plan::kArenaAlignment);
  return (bytes + a - 1) / a * a;
}

}  // namespace

struct Step {
  StepKind kind = StepKind::Unary;
  int in0 = -1, in1 = -1, out = -1;  // value ids
  // Conv2d and Linear: weights and bias (empty: none). ChannelAffine: scale and shift.
  std::vector<float> weight, bias;
  ember::detail::ConvForward<float> conv{};
  int64_t rows = 0, in_features = 0, out_features = 0;  // Linear
  Unary unary_op = Unary::Relu;
  UnaryParams unary_params{};
  Binary binary_op = Binary::Add;
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

  int root(int v) const {
    while (values[static_cast<size_t>(v)].alias_of >= 0) v = values[static_cast<size_t>(v)].alias_of;
    return v;
  }
};

namespace {

// Records the ops of one forward as steps (src/ops/trace.hpp).
class Tracer final : public ember::detail::OpTracer {
 public:
  explicit Tracer(PlanData& plan) : plan_(plan) {}

  int add_value(const Tensor<float>& t, int alias_of = -1) {
    const int id = static_cast<int>(plan_.values.size());
    plan_.values.push_back({t.shape(), alias_of, -1});
    ids_[t.impl()] = id;
    keep_.push_back(t);  // the address stays this tensor's while tracing
    return id;
  }
  int id_of(const Tensor<float>& t) const {
    if (!t.defined()) return -1;
    auto it = ids_.find(t.impl());
    return it == ids_.end() ? -1 : it->second;
  }

  void conv2d(const Tensor<float>& x, const Tensor<float>& w, const Tensor<float>& b, const Conv2dGeometry& g,
              const Tensor<float>& y) override {
    Step s = step("conv2d");
    s.kind = StepKind::Conv2d;
    s.in0 = input_of(x, "conv2d");
    const ember::detail::ConvDims d = ember::detail::conv_dims("conv2d", x.shape(), w.shape(), g);
    s.conv = ember::detail::conv_forward_setup(backend::kernels<float>(), d, g);
    s.weight = w.contiguous().to_vector();
    if (b.defined()) s.bias = b.contiguous().to_vector();
    s.channels = d.o;
    s.inner = d.hw_out();
    s.scratch_bytes = s.conv.cols_elements() * static_cast<int64_t>(sizeof(float));
    finish(s, y);
  }

  void linear(const Tensor<float>& x, const Tensor<float>& w, const Tensor<float>& b,
              const Tensor<float>& y) override {
    Step s = step("linear");
    s.kind = StepKind::Linear;
    s.in0 = input_of(x, "linear");
    s.in_features = w.shape()[1];
    s.out_features = w.shape()[0];
    s.rows = x.numel() / std::max<int64_t>(s.in_features, 1);
    s.weight = w.contiguous().to_vector();
    if (b.defined()) s.bias = b.contiguous().to_vector();
    s.channels = s.out_features;
    finish(s, y);
  }

  void channel_affine(const Tensor<float>& x, const std::vector<float>& scale, const std::vector<float>& shift,
                      const Tensor<float>& y) override {
    Step s = step("batch_norm");
    s.kind = StepKind::ChannelAffine;
    s.in0 = input_of(x, "batch_norm");
    s.channels = x.shape()[1];
    s.planes = x.shape()[0] * s.channels;
    s.inner = x.numel() / std::max<int64_t>(s.planes, 1);
    s.weight = scale;
    s.bias = shift;
    finish(s, y);
  }

  void unary(const Tensor<float>& x, Unary op, UnaryParams params, const Tensor<float>& y) override {
    Step s = step("elementwise op");
    s.kind = StepKind::Unary;
    s.in0 = input_of(x, "elementwise op");
    s.unary_op = op;
    s.unary_params = params;
    s.numel = x.numel();
    finish(s, y);
  }

  void binary(const Tensor<float>& a, const Tensor<float>& b, Binary op, const char* name,
              const Tensor<float>& y) override {
    Step s = step(name);
    s.kind = StepKind::Binary;
    s.in0 = input_of(a, name);
    s.in1 = input_of(b, name);
    if (a.shape() != b.shape()) {
      unsupported(cat_str(name, " of ", a.shape(), " and ", b.shape(), " (broadcasting)"));
    }
    s.binary_op = op;
    s.numel = a.numel();
    finish(s, y);
  }

  void max_pool2d(const Tensor<float>& x, const backend::PoolShape& shape, bool two_by_two,
                  const Tensor<float>& y) override {
    Step s = step("max_pool2d");
    s.kind = StepKind::MaxPool;
    s.in0 = input_of(x, "max_pool2d");
    s.pool = shape;
    s.two_by_two = two_by_two;
    s.planes = x.shape()[0] * x.shape()[1];
    s.scratch_bytes = s.planes * shape.ho * shape.wo * static_cast<int64_t>(sizeof(int64_t));
    finish(s, y);
  }

  void mean_hw(const Tensor<float>& x, const Tensor<float>& y) override {
    Step s = step("adaptive_avg_pool2d");
    s.kind = StepKind::MeanHW;
    s.in0 = input_of(x, "adaptive_avg_pool2d");
    s.inner = x.shape()[x.dim() - 2] * x.shape()[x.dim() - 1];
    s.planes = x.numel() / std::max<int64_t>(s.inner, 1);
    if (s.inner == 0) unsupported("adaptive_avg_pool2d of an empty image");
    finish(s, y);
  }

  void view(const Tensor<float>& x, const Tensor<float>& y) override {
    const int v = id_of(x);
    if (v < 0) return;  // not on the data flow (yet): a consumer will say so
    add_value(y, plan_.root(v));
  }

  [[noreturn]] void unsupported(const std::string& what) override {
    throw ValueError(cat_str("deploy::compile: ", what, " is not supported (", kSupported, ")"));
  }

 private:
  static Step step(const char* name) {
    Step s;
    s.name = name;
    return s;
  }
  int input_of(const Tensor<float>& t, const char* op) {
    const int v = id_of(t);
    if (v < 0) {
      throw ValueError(cat_str("deploy::compile: ", op, ": an operand of shape ", t.shape(),
                               " was computed by an op a plan cannot run, or is not derived from the input (",
                               kSupported, ")"));
    }
    return v;
  }
  void finish(Step& s, const Tensor<float>& y) {
    s.out = add_value(y);
    plan_.steps.push_back(std::move(s));
  }

  PlanData& plan_;
  std::map<const void*, int> ids_;
  std::vector<Tensor<float>> keep_;
};

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

void fold_batch_norm(PlanData& p) {
  for (size_t i = 0; i < p.steps.size(); ++i) {
    Step& bn = p.steps[i];
    if (bn.kind != StepKind::ChannelAffine) continue;
    const int v = p.root(bn.in0);
    const int pi = producer_of(p, v);
    if (pi < 0 || read_counts(p)[static_cast<size_t>(v)] != 1) continue;
    Step& prod = p.steps[static_cast<size_t>(pi)];
    const bool conv = prod.kind == StepKind::Conv2d && prod.channels == bn.channels;
    const bool linear = prod.kind == StepKind::Linear && prod.out_features == bn.channels && bn.inner == 1;
    if ((!conv && !linear) || !prod.post.empty()) continue;
    const auto c = static_cast<size_t>(bn.channels);
    const size_t per_channel = prod.weight.size() / c;
    if (prod.bias.empty()) prod.bias.assign(c, 0.0f);
    for (size_t o = 0; o < c; ++o) {
      for (size_t t = 0; t < per_channel; ++t) prod.weight[o * per_channel + t] *= bn.weight[o];
      prod.bias[o] = prod.bias[o] * bn.weight[o] + bn.bias[o];
    }
    prod.out = bn.out;
    prod.folded_batch_norm = true;
    p.steps.erase(p.steps.begin() + static_cast<std::ptrdiff_t>(i));
    --i;
  }
}

void fuse_elementwise(PlanData& p) {
  for (size_t i = 0; i < p.steps.size(); ++i) {
    Step& u = p.steps[i];
    if (u.kind != StepKind::Unary) continue;
    const int v = p.root(u.in0);
    const int pi = producer_of(p, v);
    if (pi < 0 || read_counts(p)[static_cast<size_t>(v)] != 1) continue;
    Step& prod = p.steps[static_cast<size_t>(pi)];
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
    buffers.push_back({round_up(p.values[v].shape.numel() * static_cast<int64_t>(sizeof(float))), first[v],
                       std::max(first[v], last[v]), &p.values[v].offset});
  }
  for (size_t i = 0; i < p.steps.size(); ++i) {
    Step& s = p.steps[i];
    if (s.scratch_bytes > 0) {
      buffers.push_back({round_up(s.scratch_bytes), static_cast<int64_t>(i), static_cast<int64_t>(i), &s.scratch_offset});
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

// ---- Steps -------------------------------------------------------------------------------------

void run_post(const backend::Kernels<float>& k, const Step& s, int64_t n, float* y) {
  for (const PostOp& op : s.post) k.unary(op.op, op.params, n, y, 1, y);
}

// y[r][j] += bias[j] for rows of `inner` elements, the bias indexed by the row's channel.
void add_channel_bias(const backend::Kernels<float>& k, const std::vector<float>& bias, int64_t rows,
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
      ember::detail::conv_forward_samples(k, s.conv, x0, s.weight.data(), y, 0, d.n, reinterpret_cast<float*>(scratch));
      add_channel_bias(k, s.bias, d.n * d.o, d.o, d.hw_out(), y);
      run_post(k, s, d.n * d.o * d.hw_out(), y);
      return;
    }
    case StepKind::Linear:
      if (s.rows > 0) {
        // The operands matmul(x, weight.t()) hands the GEMM (src/ops/linalg.cpp).
        k.gemm(false, true, s.rows, s.out_features, s.in_features, 1.0f, x0, std::max<int64_t>(s.in_features, 1),
               s.weight.data(), std::max<int64_t>(s.in_features, 1), 0.0f, y, s.out_features);
      }
      add_channel_bias(k, s.bias, s.rows * s.out_features, s.out_features, 1, y);
      run_post(k, s, s.rows * s.out_features, y);
      return;
    case StepKind::ChannelAffine:
      k.channel_affine(s.planes, 0, s.channels, s.inner, x0, s.weight.data(), nullptr, nullptr, s.bias.data(), y);
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

std::string step_str(const PlanData& p, const Step& s) {
  std::ostringstream out;
  out << (s.kind == StepKind::Unary ? unary_name(s.unary_op) : s.name.c_str()) << " "
      << p.values[static_cast<size_t>(s.in0)].shape.str();
  if (s.in1 >= 0) out << ", " << p.values[static_cast<size_t>(s.in1)].shape.str();
  out << " -> " << p.values[static_cast<size_t>(s.out)].shape.str();
  if (s.folded_batch_norm) out << ", batch norm folded";
  for (const PostOp& op : s.post) out << ", " << unary_name(op.op) << " fused";
  if (s.kind == StepKind::Conv2d) out << (s.conv.flat ? " (flat)" : s.conv.pointwise ? " (pointwise)" : " (im2col)");
  return out.str();
}

const PlanData& checked(const std::shared_ptr<const PlanData>& d) {
  if (!d) throw ValueError("deploy::Plan: this plan is empty (assign it the result of deploy::compile)");
  return *d;
}

}  // namespace

Plan::Plan() = default;
Plan::~Plan() = default;
Plan::Plan(const Plan&) = default;
Plan& Plan::operator=(const Plan&) = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;
Plan::Plan(std::shared_ptr<const PlanData> data) : data_(std::move(data)) {}

const Shape& Plan::input_shape() const { return checked(data_).input_shape; }
const Shape& Plan::output_shape() const { return checked(data_).output_shape; }
size_t Plan::arena_bytes() const { return checked(data_).arena_bytes; }
size_t Plan::num_steps() const { return checked(data_).steps.size(); }

std::string Plan::str() const {
  const PlanData& p = checked(data_);
  std::ostringstream out;
  out << "Plan(input " << p.input_shape.str() << ", output " << p.output_shape.str() << ", arena " << p.arena_bytes
      << " bytes)\n";
  for (size_t i = 0; i < p.steps.size(); ++i) out << "  (" << i << "): " << step_str(p, p.steps[i]) << "\n";
  return out.str();
}

void Plan::run(const Tensor<float>& input, const Tensor<float>& output, std::span<std::byte> arena) const {
  const PlanData& p = checked(data_);
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
  if (arena.size() < p.arena_bytes) {
    throw ValueError(cat_str("deploy::Plan::run: an arena of ", arena.size(), " bytes, the plan needs ", p.arena_bytes));
  }
  if (reinterpret_cast<uintptr_t>(arena.data()) % kArenaAlignment != 0) {
    throw ValueError(cat_str("deploy::Plan::run: the arena must be aligned to ", kArenaAlignment, " bytes"));
  }
  if (output.numel() > 0 && input.numel() > 0) {
    const auto* in_lo = reinterpret_cast<const std::byte*>(input.data_ptr());
    const auto* out_lo = reinterpret_cast<const std::byte*>(output.data_ptr());
    const size_t in_bytes = static_cast<size_t>(input.numel()) * sizeof(float);
    const size_t out_bytes = static_cast<size_t>(output.numel()) * sizeof(float);
    if (in_lo < out_lo + out_bytes && out_lo < in_lo + in_bytes) {
      throw ValueError("deploy::Plan::run: the output overlaps the input");
    }
  }
  const auto& k = backend::kernels<float>();
  auto at = [&](int v) -> float* {
    if (v < 0) return nullptr;
    const int r = p.root(v);
    if (r == 0) return const_cast<float*>(input.data_ptr());
    if (r == p.output) return output.data_ptr();
    return reinterpret_cast<float*>(arena.data() + p.values[static_cast<size_t>(r)].offset);
  };
  for (const Step& s : p.steps) {
    run_step(k, s, at(s.in0), at(s.in1), at(s.out), s.scratch_bytes > 0 ? arena.data() + s.scratch_offset : nullptr);
  }
}

Tensor<float> Plan::operator()(const Tensor<float>& input) const {
  const PlanData& p = checked(data_);
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
  if (options.fold_batch_norm) fold_batch_norm(*data);
  if (options.fuse_elementwise) fuse_elementwise(*data);
  plan_arena(*data);
  return Plan(std::move(data));
}

}  // namespace ember::deploy
