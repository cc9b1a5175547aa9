#pragma once
// Internal: what builds a plan's steps, shared by deploy::compile of a float model (plan.cpp,
// tracing its forward) and of a quantized one (plan_quant.cpp).
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../core/internal.hpp"
#include "../ops/conv_forward.hpp"
#include "../ops/trace.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"
#include "ember/deploy/compile.hpp"
#include "ember/ops/factory.hpp"
#include "plan_data.hpp"

namespace ember::deploy {

using ember::detail::cat_str;

inline constexpr const char* kSupported =
    "a plan runs conv2d, conv_transpose2d, linear, batch_norm in eval mode, layer_norm, group_norm, "
    "elementwise ops (broadcasting, with the model's parameters and buffers as operands), cat, permute, matmul, "
    "max_pool2d, avg_pool2d, adaptive_avg_pool2d to 1 x 1, interpolate, softmax and log_softmax over the last "
    "dim, and views";


// The GEMM's packing scratch for an m x n x k product on every kernel table this machine has
// (a plan may be loaded where another tier runs), rounded to the arena's alignment.
inline int64_t gemm_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  size_t most = 0;
  for (backend::Isa isa : {backend::Isa::Scalar, backend::Isa::Avx2, backend::Isa::Avx512, backend::Isa::Neon}) {
    if (backend::isa_available(isa)) most = std::max(most, backend::kernels_for<float>(isa).gemm_workspace(m, n, k));
  }
  return round_up_arena(static_cast<int64_t>(most));
}

// What conv_winograd takes of a step's scratch for m output channels from c input channels of
// shape cs where some tier may run it (its products, then the GEMM's packing), else 0: a plan
// may be loaded where another tier runs.
inline int64_t winograd_bytes(const backend::ConvShape& cs, int64_t c, int64_t m) {
  if (!ember::detail::winograd_candidate(cs, c, m)) return 0;
  return round_up_arena(backend::conv_winograd_scratch(cs, m, false) * int64_t(sizeof(float))) + 64 +
         gemm_workspace_bytes(m, backend::conv_winograd_tiles(cs, m), c);
}

// Records the ops of one forward as steps (src/ops/trace.hpp).
class Tracer final : public ember::detail::OpTracer {
 public:
  explicit Tracer(PlanData& plan) : plan_(plan) {}

  int add_value(const Tensor<float>& t, int alias_of = -1) {
    const int id = static_cast<int>(plan_.values.size());
    plan_.values.push_back({t.shape(), ElemType::F32, alias_of, -1});
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
    conv_step(s, x, w.shape(), w.contiguous().to_vector(), g);
    if (b.defined()) s.bias = b.contiguous().to_vector();
    finish(s, y);
  }

  void conv2d_input_grad(const Tensor<float>& x, const Tensor<float>& w, const Conv2dGeometry& g,
                         const Tensor<float>& y) override {
    Step s = step("conv_transpose2d");
    s.kind = StepKind::ConvTranspose2d;
    s.in0 = input_of(x, "conv_transpose2d");
    const ember::detail::ConvDims d = ember::detail::conv_dims("conv_transpose2d", y.shape(), w.shape(), g);
    s.conv = ember::detail::conv_transpose_setup(backend::kernels<float>(), d, g);
    s.weight = w.contiguous().to_vector();
    s.weight_shape = w.shape();
    s.geometry = g;
    s.channels = d.c;
    s.inner = d.h * d.w;
    // Per worker the column matrix and the GEMM's packing room, or the flat kernels' (m = cg rows
    // of K = og * kh * kw taps; the flat path threads over the samples itself, the phased one per
    // worker).
    s.workers = s.conv.flat ? 1 : std::clamp<int64_t>(get_num_threads(), 1, d.n);
    const backend::ConvShape ts = ember::detail::transposed_flat_shape(d, s.conv.shape);
    const int64_t flat_room = std::max(conv_transpose_panel_bytes(s.conv), winograd_bytes(ts, d.og, d.cg));
    s.scratch_bytes = conv_transpose_flipped_bytes(s.conv) + s.workers * conv_worker_bytes(s, flat_room);
    finish(s, y);
  }

  void avg_pool2d(const Tensor<float>& x, const Conv2dGeometry& g, int64_t kh, int64_t kw,
                  const std::vector<float>& divisors, const Tensor<float>& y) override {
    Step s = step("avg_pool2d");
    s.kind = StepKind::AvgPool2d;
    const int64_t c = x.shape()[1];
    conv_step(s, x, Shape{c, 1, kh, kw}, std::vector<float>(static_cast<size_t>(c * kh * kw), 1.0f), g);
    s.divisors = divisors;
    finish(s, y);
  }

  // A convolution's fields (a Conv2d or AvgPool2d step), its weights and its scratch.
  void conv_step(Step& s, const Tensor<float>& x, const Shape& w_shape, std::vector<float> w,
                 const Conv2dGeometry& g) {
    s.in0 = input_of(x, s.name.c_str());
    const ember::detail::ConvDims d = ember::detail::conv_dims(s.name.c_str(), x.shape(), w_shape, g);
    s.conv = ember::detail::conv_forward_setup(backend::kernels<float>(), d, g);
    s.weight = std::move(w);
    s.channels = d.o;
    s.inner = d.hw_out();
    s.weight_shape = w_shape;
    s.geometry = g;
    // The column matrix, then the packing room of the GEMM or of the flat kernels' weights.
    int64_t flat_weights = round_up_arena((d.og + backend::kConvFlatRowBlock) * d.k() * int64_t(sizeof(float))) + 64;
    if (backend::conv_flat_strided_applies(s.conv.shape)) {  // and the phase planes
      const int64_t images = backend::conv_flat_strided_images(s.conv.shape, d.og, d.n);
      flat_weights += round_up_arena(backend::conv_flat_strided_scratch(s.conv.shape, d.og, images) *
                                     int64_t(sizeof(float))) + 64;
    }
    flat_weights = std::max(flat_weights, winograd_bytes(s.conv.shape, d.cg, d.og));
    // Per worker: the samples of a batch split among as many workers as this process has threads
    // (the flat kernels thread over the samples themselves).
    s.workers = s.conv.flat ? 1 : std::clamp<int64_t>(get_num_threads(), 1, d.n);
    s.scratch_bytes = s.workers * conv_worker_bytes(s, flat_weights);
  }

  // A convolution step's scratch per worker: the columns of the images its GEMMs lower at once
  // (conv_step_images), then the GEMM's packing room or the flat kernels' (`flat_room`).
  // Sized for the column matrix where the phased path runs too (it takes less), so that the file
  // loads where the GEMM and col2im run.
  static int64_t conv_worker_bytes(const Step& s, int64_t flat_room) {
    const auto& d = s.conv.d;
    ember::detail::ConvForward<float> columns = s.conv;
    columns.phased = false;
    const int64_t images =
        s.conv.pointwise || s.conv.flat ? 1 : ember::detail::images_per_gemm(d, (d.n + s.workers - 1) / s.workers);
    const GemmDims g = conv_gemm_dims(s, images);
    const int64_t depthwise_room =
        s.conv.depthwise ? backend::conv_depthwise_scratch(s.conv.shape) * int64_t(sizeof(float)) : 0;
    return conv_columns_bytes(columns, images) +
           std::max({gemm_workspace_bytes(g.m, g.n, g.k), flat_room, depthwise_room});
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
    s.scratch_bytes = gemm_workspace_bytes(s.rows, s.out_features, s.in_features);
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

  /// Marks t as a constant: a parameter or buffer of the model compiled.
  void add_constant(const Tensor<float>& t) {
    constants_.insert(t.impl());
    keep_.push_back(t);
  }
  bool is_constant(const Tensor<float>& t) const { return t.defined() && constants_.count(t.impl()) > 0; }
  // Whether x is off the data flow (Note [Inference plan]); then y, made from x alone, is a
  // constant when x is one.
  bool off_flow(const Tensor<float>& x, const Tensor<float>& y) {
    if (id_of(x) >= 0) return false;
    if (is_constant(x)) add_constant(y);
    return true;
  }

  void unary(const Tensor<float>& x, backend::Unary op, backend::KernelParams params, const Tensor<float>& y) override {
    if (off_flow(x, y)) return;
    Step s = step("elementwise op");
    s.kind = StepKind::Unary;
    s.in0 = input_of(x, "elementwise op");
    s.unary_op = op;
    s.unary_params = params;
    s.numel = x.numel();
    finish(s, y);
  }

  void binary(const Tensor<float>& a, const Tensor<float>& b, backend::Binary op, const char* name,
              const Tensor<float>& y) override {
    const int ia = id_of(a), ib = id_of(b);
    if (ia < 0 && ib < 0) {  // not on the data flow; of constants, a constant
      if (is_constant(a) && is_constant(b)) add_constant(y);
      return;
    }
    Step s = step(name);
    s.binary_op = op;
    s.numel = y.numel();
    if (ia >= 0 && ib >= 0 && a.shape() == b.shape()) {
      s.kind = StepKind::Binary;
      s.in0 = ia;
      s.in1 = ib;
      finish(s, y);
      return;
    }
    // Broadcast, or a constant operand (anything else off the data flow was computed from the
    // input by an op a plan cannot run: input_of refuses it).
    s.kind = StepKind::BroadcastBinary;
    if (ia < 0 && is_constant(a)) {
      s.constant_operand = 1;
    } else if (ib < 0 && is_constant(b)) {
      s.constant_operand = 2;
    }
    const Tensor<float>& data = s.constant_operand == 1 ? b : a;
    s.in0 = input_of(data, name);
    if (s.constant_operand == 0) s.in1 = input_of(b, name);
    if (s.constant_operand != 0) {
      const Tensor<float>& c = s.constant_operand == 1 ? a : b;
      s.weight = c.contiguous().to_vector();
      s.weight_shape = c.shape();
    }
    if (y.dim() > kMaxValueRank) unsupported(cat_str(name, " of rank ", y.dim()));
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

  void interpolate(const Tensor<float>& x, const std::vector<ember::detail::ResampleAxis>& axes,
                   const Tensor<float>& y) override {
    if (axes.empty()) {  // a copy of x: an alias
      add_value(y, plan_.root(input_of(x, "interpolate")));
      return;
    }
    int from = input_of(x, "interpolate");
    Shape shape = x.shape();
    for (size_t i = 0; i < axes.size(); ++i) {
      const ember::detail::ResampleAxis& a = axes[i];
      Step s = step("interpolate");
      s.kind = StepKind::Resample;
      s.in0 = from;
      s.in_features = shape[a.dim];
      s.out_features = static_cast<int64_t>(a.i0.size());
      s.planes = 1;
      s.inner = 1;
      for (int64_t d = 0; d < shape.size(); ++d) {
        if (d < a.dim) s.planes *= shape[d];
        if (d > a.dim) s.inner *= shape[d];
      }
      if (s.in_features > kMaxResample || s.out_features > kMaxResample) {
        unsupported(cat_str("interpolate of ", x.shape(), " to ", y.shape()));
      }
      for (const std::vector<int64_t>* indices : {&a.i0, &a.i1}) {
        for (int64_t v : *indices) s.ints.push_back(static_cast<int32_t>(v));
      }
      s.weight = a.near;
      s.bias = a.far;
      // The planes split among as many workers as this process has threads, each with room for the
      // linear modes' second products, a row (or the gathered positions) at a time.
      s.workers = std::clamp<int64_t>(get_num_threads(), 1, std::max<int64_t>(s.planes, 1));
      if (!s.bias.empty()) {
        s.scratch_bytes = s.workers * round_up_arena(std::max(s.out_features, s.inner) * int64_t(sizeof(float)));
      }
      shape[a.dim] = s.out_features;
      finish(s, i + 1 == axes.size() ? y : empty<float>(shape));
      from = plan_.steps.back().out;
    }
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

  void softmax(const Tensor<float>& x, int64_t n, bool log, const Tensor<float>& y) override {
    const char* name = log ? "log_softmax" : "softmax";
    Step s = step(name);
    s.kind = StepKind::Softmax;
    s.in0 = input_of(x, name);
    if (x.numel() == 0) unsupported(cat_str(name, " of the empty ", x.shape()));
    s.log_softmax = log;
    s.inner = n;
    s.planes = x.numel() / n;
    finish(s, y);
  }

  void layer_norm(const Tensor<float>& x, int64_t d, const std::vector<float>& weight, const std::vector<float>& bias,
                  double eps, const Tensor<float>& y) override {
    Step s = step("layer_norm");
    s.kind = StepKind::LayerNorm;
    s.in0 = input_of(x, "layer_norm");
    if (d == 0 || x.numel() == 0) unsupported(cat_str("layer_norm of the empty ", x.shape()));
    s.inner = d;
    s.planes = x.numel() / d;
    s.weight = weight;
    s.bias = bias;
    s.eps = eps;
    finish(s, y);
  }

  void cat(const std::vector<Tensor<float>>& tensors, int64_t dim, const Tensor<float>& y) override {
    std::vector<const Tensor<float>*> parts;  // the empty ones add nothing
    bool constants = true;
    for (const Tensor<float>& t : tensors) {
      if (t.numel() > 0) parts.push_back(&t);
      constants = constants && id_of(t) < 0 && is_constant(t);
    }
    if (constants) {  // of constants, a constant
      add_constant(y);
      return;
    }
    if (parts.empty()) unsupported("cat of empty tensors");
    if (parts.size() == 1) {  // a copy: the same values, so an alias
      add_value(y, plan_.root(input_of(*parts[0], "cat")));
      return;
    }
    // A chain of two-operand steps, each writing the next one's first operand.
    int acc = input_of(*parts[0], "cat");
    Shape acc_shape = parts[0]->shape();
    for (size_t i = 1; i < parts.size(); ++i) {
      Step s = step("cat");
      s.kind = StepKind::Concat;
      s.in0 = acc;
      s.in1 = input_of(*parts[i], "cat");
      const int64_t joined = acc_shape[dim] + parts[i]->shape()[dim];
      Shape next = acc_shape;
      next[dim] = joined;
      if (!concat_layout(acc_shape, parts[i]->shape(), next, dim, s)) {
        unsupported(cat_str("cat of ", acc_shape, " and ", parts[i]->shape(), " along dim ", dim));
      }
      finish(s, i + 1 == parts.size() ? y : empty<float>(next));
      acc = plan_.steps.back().out;
      acc_shape = next;
    }
  }

  void permute(const Tensor<float>& x, const Shape& perm, const Tensor<float>& y) override {
    if (off_flow(x, y)) return;
    Step s = step("permute");
    s.kind = StepKind::Permute;
    s.in0 = input_of(x, "permute");
    s.perm = perm;
    if (perm.size() > kMaxValueRank) unsupported(cat_str("permute of rank ", perm.size()));
    s.numel = x.numel();
    finish(s, y);
  }

  void matmul(const Tensor<float>& a, const Tensor<float>& b, const Tensor<float>& y) override {
    if (id_of(a) < 0 && id_of(b) < 0) {  // not on the data flow; of constants, a constant
      if (is_constant(a) && is_constant(b)) add_constant(y);
      return;
    }
    Step s = step("matmul");
    s.kind = StepKind::MatMul;
    s.in0 = input_of(a, "matmul");
    if (a.dim() < 2 || b.dim() < 2) unsupported(cat_str("matmul of ", a.shape(), " and ", b.shape(), " (a vector)"));
    const Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
    if (!batch_b.empty() && batch_b != batch_a) {
      unsupported(cat_str("matmul of ", a.shape(), " and ", b.shape(), " (batch dims that differ)"));
    }
    s.rows = a.shape()[a.dim() - 2];
    s.in_features = a.shape()[a.dim() - 1];
    s.out_features = b.shape()[b.dim() - 1];
    s.planes = batch_a.numel();
    s.b_batches = batch_b.numel();
    if (id_of(b) < 0 && is_constant(b)) {
      s.constant_operand = 2;
      s.weight = b.contiguous().to_vector();
      s.weight_shape = b.shape();
    } else {
      s.in1 = input_of(b, "matmul");
    }
    // A shared second operand folds the batch into the rows of one product, as the op does.
    const int64_t m = s.b_batches == 1 ? s.planes * s.rows : s.rows;
    s.scratch_bytes = gemm_workspace_bytes(m, s.out_features, s.in_features);
    finish(s, y);
  }

  void view(const Tensor<float>& x, const Tensor<float>& y) override {
    if (off_flow(x, y)) return;  // a consumer will say so, unless x is a constant
    add_value(y, plan_.root(id_of(x)));
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
  std::set<const void*> constants_;
  std::vector<Tensor<float>> keep_;
};

/// The passes (batch norm folding, elementwise fusion, as `options` asks) and the arena layout
/// of a plan whose steps are all recorded and whose output is set.
void finish_plan(PlanData& p, const CompileOptions& options);

}  // namespace ember::deploy
