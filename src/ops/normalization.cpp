// Normalisation and embedding lookups. Batch norm and layer norm are fused nodes with named
// backward functions (Note [Fused batch norm], Note [Fused layer norm]); group norm, RMS norm and
// embedding are composites of differentiable primitives (their gradients, through the statistics
// too, come from autograd).
#include "ember/ops/normalization.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.hpp"
#include "rows.hpp"
#include "trace.hpp"
#include "ember/autograd/autograd.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/ops/shape_ops.hpp"

namespace ember {

using detail::cat_str;


namespace {
// [1, C, 1, ...] for broadcasting per-channel vectors against x [N, C, ...].
Shape channel_shape(const Shape& x) {
  Shape s = Shape::filled(x.size(), 1);
  s[1] = x[1];
  return s;
}
}  // namespace

// Note [Fused batch norm]
// Batch norm is the costliest composite in convolutional networks: as primitives it makes about ten
// passes over an [N, C, H, W] activation with per-channel broadcasting in each. The training and
// eval forms therefore run as one node with channel-wise loops on the backend's centered_sums and
// affine2 kernels: two passes for the statistics and one for y = x * scale[c] + shift[c]; the
// backward makes two (the per-channel sums of dy and dy * xhat, then dx). When a backward builds a graph itself (create_graph), the gradients come
// from the textbook formula in public ops instead, recomputing the statistics from x, so that
// they stay differentiable. docs/benchmarks.md has the before/after measurements.
namespace {

struct BnDims {
  int64_t n, c, inner;
};

// Planes per step of a fused pass: a few KiB, so that what one kernel writes the next reads from L1.
int64_t l1_planes(int64_t inner) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(inner, 1)); }

// What a fused pass does after the affine kernel (Note [Batch norm with ReLU]): a residual added,
// then a ReLU.
template <class T>
struct AffineEpilogue {
  const T* residual = nullptr;
  bool relu = false;
};

// out = a * alpha[c] + b * beta[c] + gamma[c] per plane (b, beta null: no b term), then `epilogue`,
// on ember's threads in memory order. Walking channel by channel instead jumps C * inner elements
// between planes of a few KiB each, which starves the hardware prefetcher: these passes ran at a
// third of the speed.
template <class T>
void channel_affine(const BnDims& d, const T* a, const std::vector<T>& alpha, const T* b, const std::vector<T>* beta,
                    const std::vector<T>& gamma, T* out, const AffineEpilogue<T>& epilogue = {}) {
  const auto& k = backend::kernels<T>();
  const bool fused = epilogue.residual != nullptr || epilogue.relu;
  detail::parallel_for(0, d.n * d.c, std::max<int64_t>(1, 32768 / std::max<int64_t>(d.inner, 1)),
                       [&](int64_t first, int64_t end) {
    const int64_t span = fused ? l1_planes(d.inner) : end - first;
    for (int64_t p = first; p < end; p += span) {
      const int64_t planes = std::min(span, end - p), off = p * d.inner, len = planes * d.inner;
      k.channel_affine(planes, p, d.c, d.inner, a + off, alpha.data(), b ? b + off : nullptr,
                       beta ? beta->data() : nullptr, gamma.data(), out + off);
      if (epilogue.residual) {
        k.binary(backend::Binary::Add, {}, len, out + off, 1, epilogue.residual + off, 1, out + off);
      }
      if (epilogue.relu) k.unary(backend::Unary::Relu, {}, len, out + off, 1, out + off);
    }
  });
}

// Per-channel sums (the backend's channel_sums: plain sums without center, centred sums with it)
// over x [N, C, inner]; returns {s1[c], s2[c]} for every channel. Samples are taken in blocks of a
// fixed size, each block's sums added in order, so results do not depend on the thread count.
template <class T>
std::pair<std::vector<double>, std::vector<double>> channel_sums(const BnDims& d, const T* x, const T* center,
                                                                 const T* y) {
  const auto& k = backend::kernels<T>();
  const int64_t block = std::max<int64_t>(1, 65536 / std::max<int64_t>(d.c * d.inner, 1));
  const int64_t blocks = (d.n + block - 1) / block;
  std::vector<double> part(static_cast<size_t>(blocks * d.c * 2), 0.0);
  detail::parallel_for(0, blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t first = blk * block, off = first * d.c * d.inner;
      k.channel_sums(std::min(d.n, first + block) - first, d.c, d.inner, x + off, center, y ? y + off : nullptr,
                     part.data() + blk * d.c * 2);
    }
  });
  std::pair<std::vector<double>, std::vector<double>> out{std::vector<double>(static_cast<size_t>(d.c), 0.0),
                                                          std::vector<double>(static_cast<size_t>(d.c), 0.0)};
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t ch = 0; ch < d.c; ++ch) {
      out.first[static_cast<size_t>(ch)] += part[static_cast<size_t>((blk * d.c + ch) * 2)];
      out.second[static_cast<size_t>(ch)] += part[static_cast<size_t>((blk * d.c + ch) * 2 + 1)];
    }
  return out;
}

BnDims bn_dims(const Shape& s) {
  int64_t inner = 1;
  for (int64_t d = 2; d < s.size(); ++d) inner *= s[d];
  return {s[0], s[1], inner};
}

// Note [Batch statistics in one pass]
// The batch mean and variance took two passes over x: the sums, then the squares centred on the
// mean (no cancellation when the mean is large). For planes of at least kOnePassPlane values
// each plane now gives both from one read of memory: its sum, then its squares centred on its
// own mean while it is in L1. The planes of a channel combine in double by Chan, Golub and
// LeVeque's formula (M2 = the planes' M2 summed + inner * (plane mean - mean)^2 summed), in plane
// order, so the result does not depend on the thread count. Smaller planes keep the two passes:
// there a kernel call per plane costs more than the second read of an activation that the caches
// hold.
constexpr int64_t kOnePassPlane = 256;

// Per-channel batch mean and 1 / sqrt(biased var + eps) of a contiguous x; also the biased
// variance (for the running statistics).
template <class T>
void batch_statistics(const Tensor<T>& x, double eps, std::vector<T>& mean, std::vector<T>& invstd,
                      std::vector<double>& var) {
  const BnDims d = bn_dims(x.shape());
  mean.assign(static_cast<size_t>(d.c), T(0));
  invstd.assign(static_cast<size_t>(d.c), T(0));
  var.assign(static_cast<size_t>(d.c), 0.0);
  const T* px = x.data();
  const double count = static_cast<double>(d.n * d.inner);
  if (d.inner >= kOnePassPlane) {  // Note [Batch statistics in one pass]
    const auto& k = backend::kernels<T>();
    const double inner = static_cast<double>(d.inner);
    std::vector<double> plane_mean(static_cast<size_t>(d.n * d.c)), plane_m2(plane_mean.size());
    detail::parallel_for(0, d.n * d.c, std::max<int64_t>(1, 65536 / d.inner), [&](int64_t first, int64_t end) {
      for (int64_t p = first; p < end; ++p) {
        const T* xp = px + p * d.inner;
        const T center = static_cast<T>(static_cast<double>(k.reduce(backend::Reduce::Sum, d.inner, xp, 1)) / inner);
        double s1 = 0, s2 = 0;
        k.centered_sums(d.inner, xp, center, nullptr, &s1, &s2);
        plane_mean[static_cast<size_t>(p)] = static_cast<double>(center) + s1 / inner;
        plane_m2[static_cast<size_t>(p)] = s2 - s1 * s1 / inner;
      }
    });
    for (int64_t ch = 0; ch < d.c; ++ch) {
      double sum = 0, m2 = 0;
      for (int64_t i = 0; i < d.n; ++i) sum += plane_mean[static_cast<size_t>(i * d.c + ch)];
      const double m = sum / static_cast<double>(d.n);
      for (int64_t i = 0; i < d.n; ++i) {
        const size_t p = static_cast<size_t>(i * d.c + ch);
        m2 += plane_m2[p] + inner * (plane_mean[p] - m) * (plane_mean[p] - m);
      }
      const size_t c = static_cast<size_t>(ch);
      mean[c] = static_cast<T>(m);
      var[c] = m2 / count;
      invstd[c] = static_cast<T>(1.0 / std::sqrt(var[c] + eps));
    }
    return;
  }
  const auto sums = channel_sums<T>(d, px, nullptr, nullptr);
  for (size_t ch = 0; ch < mean.size(); ++ch) mean[ch] = static_cast<T>(sums.first[ch] / count);
  // Centred second pass: no cancellation for large means.
  const auto centred = channel_sums<T>(d, px, mean.data(), nullptr);
  for (size_t ch = 0; ch < mean.size(); ++ch) {
    var[ch] = centred.second[ch] / count;
    invstd[ch] = static_cast<T>(1.0 / std::sqrt(var[ch] + eps));
  }
}

// y = x * scale[c] + shift[c] for a contiguous x, then `epilogue`.
template <class T>
Tensor<T> channel_affine(const Tensor<T>& x, const std::vector<T>& scale, const std::vector<T>& shift,
                         const AffineEpilogue<T>& epilogue = {}) {
  Tensor<T> y = empty<T>(x.shape());
  channel_affine<T>(bn_dims(x.shape()), x.data(), scale, nullptr, nullptr, shift, y.data(), epilogue);
  return y;
}

// The textbook batch-norm gradients in public ops (differentiable), statistics recomputed from x.
template <class T>
std::vector<Tensor<T>> batch_norm_grads_composite(const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& weight,
                                                  bool has_bias, bool training, const Tensor<T>& running_mean,
                                                  const Tensor<T>& running_var, double eps,
                                                  const std::vector<int64_t>& dims, const Shape& cs) {
  std::vector<Tensor<T>> grads(3);
  Tensor<T> xhat, invstd;
  if (training) {
    const Tensor<T> mean = ember::mean(x, dims, true);
    invstd = rsqrt(ember::var(x, dims, true, 0) + eps);
    xhat = (x - mean) * invstd;
  } else {
    invstd = rsqrt(running_var.reshape(cs) + eps);
    xhat = (x - running_mean.reshape(cs)) * invstd;
  }
  const Tensor<T> gxhat = weight.defined() ? g * weight.reshape(cs) : g;
  if (x.requires_grad()) {
    grads[0] = training ? invstd * (gxhat - ember::mean(gxhat, dims, true) -
                                    xhat * ember::mean(gxhat * xhat, dims, true))
                        : gxhat * invstd;
  }
  if (weight.defined() && weight.requires_grad()) grads[1] = ember::sum(g * xhat, dims);
  if (has_bias) grads[2] = ember::sum(g, dims);
  return grads;
}

// What batch norm's backward needs: x and the weight, the statistics the forward used (batch or
// running, the running ones copied as they were) and the forward's per-channel vectors.
template <class T>
struct BatchNormSaved {
  autograd::SavedTensor<T> x, weight;
  bool has_bias, use_batch;
  Tensor<T> running_mean, running_var;
  std::vector<T> mean, invstd, w;
  double eps;
  std::vector<int64_t> dims;
  Shape cs;
};

// Gradients of batch_norm for x, weight and bias (Note [Fused batch norm]).
template <class T>
std::vector<Tensor<T>> batch_norm_backward(const Tensor<T>& g, const BatchNormSaved<T>& s) {
  const Tensor<T>& x = s.x.get("batch_norm");
  const Tensor<T>& weight = s.weight.get("batch_norm");
  if (autograd::grad_mode_enabled()) {  // create_graph: see Note [Fused batch norm]
    return batch_norm_grads_composite(g, x, weight, s.has_bias, s.use_batch, s.running_mean, s.running_var, s.eps,
                                      s.dims, s.cs);
  }
  const Tensor<T> gc = g.contiguous(), xc = x.detach().contiguous();
  const BnDims d = bn_dims(xc.shape());
  const T *pg = gc.data(), *px = xc.data();
  const auto [sum_dy, sum_dy_xc] = channel_sums<T>(d, px, s.mean.data(), pg);
  std::vector<Tensor<T>> grads(3);
  if (x.requires_grad()) {
    // dx = k_dy * dy + k_x * (x - mean) + k_0 per channel (training), dx = k_dy * dy (eval).
    const double m = static_cast<double>(d.n * d.inner);
    std::vector<T> k_dy(static_cast<size_t>(d.c)), k_x(k_dy.size()), k_shift(k_dy.size());
    for (size_t c = 0; c < k_dy.size(); ++c) {
      const double is = s.invstd[c], wc = s.w[c];
      k_dy[c] = static_cast<T>(wc * is);
      k_x[c] = s.use_batch ? static_cast<T>(-wc * is * is * is * sum_dy_xc[c] / m) : T(0);
      const T k_0 = s.use_batch ? static_cast<T>(-wc * is * sum_dy[c] / m) : T(0);
      k_shift[c] = k_0 - k_x[c] * s.mean[c];
    }
    Tensor<T> gx = empty<T>(xc.shape());
    channel_affine<T>(d, pg, k_dy, px, &k_x, k_shift, gx.data());
    grads[0] = gx;
  }
  if (weight.defined() && weight.requires_grad()) {
    std::vector<T> gw(static_cast<size_t>(d.c));
    for (size_t c = 0; c < gw.size(); ++c) gw[c] = static_cast<T>(sum_dy_xc[c] * s.invstd[c]);
    grads[1] = tensor<T>(gw, {d.c});
  }
  if (s.has_bias) {
    std::vector<T> gb(static_cast<size_t>(d.c));
    for (size_t c = 0; c < gb.size(); ++c) gb[c] = static_cast<T>(sum_dy[c]);
    grads[2] = tensor<T>(gb, {d.c});
  }
  return grads;
}

// Gradients of y = relu(batch_norm(x) + residual) for x, weight, bias (and residual): ReLU's
// masked gradient, which is also the residual's, then batch norm's (Note [Batch norm with ReLU]).
template <class T>
std::vector<Tensor<T>> batch_norm_relu_backward(const Tensor<T>& g, const Tensor<T>& y, const BatchNormSaved<T>& s,
                                                bool has_residual) {
  const Tensor<T> gy = relu_backward(g, y);
  std::vector<Tensor<T>> grads = batch_norm_backward(gy, s);
  if (has_residual) grads.push_back(gy);
  return grads;
}

// batch_norm, and with `relu` relu(batch_norm(x) + residual) (residual undefined or of x's shape).
template <FloatingElement T>
Tensor<T> batch_norm_node(const Tensor<T>& x, Tensor<T> running_mean, Tensor<T> running_var, const Tensor<T>& weight,
                          const Tensor<T>& bias, bool training, double momentum, double eps, const Tensor<T>& residual,
                          bool relu) {
  detail::TracedOp traced;
  const char* name = relu ? "batch_norm_relu" : "batch_norm";
  if (!x.defined() || x.dim() < 2) throw ShapeError(cat_str(name, ": input must be [N, C, ...]"));
  const int64_t c = x.shape()[1];
  for (const Tensor<T>* t : std::initializer_list<const Tensor<T>*>{&running_mean, &running_var, &weight, &bias}) {
    if (t->defined() && (t->dim() != 1 || t->shape()[0] != c)) {
      throw ShapeError(cat_str(name, ": per-channel tensor of shape ", t->shape(), " for ", c, " channels (input ",
                               x.shape(), ")"));
    }
  }
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  const Shape cs = channel_shape(x.shape());
  const bool use_batch = training || !running_mean.defined() || !running_var.defined();
  const int64_t count = x.numel() / std::max<int64_t>(c, 1);
  if (use_batch && training && count <= 1) {
    throw ValueError(cat_str(name, ": expected more than 1 value per channel when training, got input ", x.shape()));
  }
  const Tensor<T> xc = x.detach().contiguous();
  std::vector<T> mean, invstd;
  if (use_batch) {
    std::vector<double> var;
    batch_statistics(xc, eps, mean, invstd, var);
    if (training && running_mean.defined() && running_var.defined()) {
      NoGradGuard no_grad;
      const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
      std::vector<T> batch_var(var.size());
      for (size_t k = 0; k < var.size(); ++k) batch_var[k] = static_cast<T>(var[k] * unbias);
      running_mean.mul_(1.0 - momentum).add_(tensor<T>(mean, {c}), momentum);
      running_var.mul_(1.0 - momentum).add_(tensor<T>(batch_var, {c}), momentum);
    }
  } else {
    mean = running_mean.detach().contiguous().to_vector();
    invstd = running_var.detach().contiguous().to_vector();
    for (T& v : invstd) v = static_cast<T>(1.0 / std::sqrt(static_cast<double>(v) + eps));
  }
  // y = (x - mean) * invstd * w + b = x * scale + shift
  const std::vector<T> w = weight.defined() ? weight.detach().contiguous().to_vector() : std::vector<T>(size_t(c), T(1));
  const std::vector<T> b = bias.defined() ? bias.detach().contiguous().to_vector() : std::vector<T>(size_t(c), T(0));
  std::vector<T> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
  for (size_t k = 0; k < scale.size(); ++k) {
    scale[k] = invstd[k] * w[k];
    shift[k] = b[k] - mean[k] * scale[k];
  }
  const Tensor<T> rc = residual.defined() ? residual.detach().contiguous() : Tensor<T>();
  Tensor<T> y = channel_affine(xc, scale, shift, {.residual = rc.defined() ? rc.data() : nullptr, .relu = relu});
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) {
      if (use_batch) t->unsupported("batch_norm with batch statistics (the model is in training mode, or has no running statistics)");
      t->channel_affine(x, scale, shift, y);
    }
  }
  if (autograd::needs_grad(x, weight, bias, residual)) {
    // Eval mode saves the running statistics as they are now: later updates must not change it.
    Tensor<T> saved_mean = use_batch ? Tensor<T>() : running_mean.detach().clone();
    Tensor<T> saved_var = use_batch ? Tensor<T>() : running_var.detach().clone();
    BatchNormSaved<T> saved{autograd::SavedTensor<T>(x), autograd::SavedTensor<T>(weight), bias.defined(), use_batch,
                            saved_mean, saved_var, std::move(mean), std::move(invstd), w, eps, dims, cs};
    if (!relu) {
      autograd::record(y, "batch_norm", {&x, &weight, &bias},
                       [saved = std::move(saved)](const Tensor<T>& g) { return batch_norm_backward(g, saved); });
    } else {
      autograd::record_with_result(y, "batch_norm_relu", {&x, &weight, &bias, &residual},
                                   [saved = std::move(saved), has_residual = residual.defined()](
                                       const Tensor<T>& g, const Tensor<T>& r) {
                                     return batch_norm_relu_backward(g, r, saved, has_residual);
                                   });
    }
  }
  return y;
}

}  // namespace

template <FloatingElement T>
Tensor<T> batch_norm(const Tensor<T>& x, Tensor<T> running_mean, Tensor<T> running_var, const Tensor<T>& weight,
                     const Tensor<T>& bias, bool training, double momentum, double eps) {
  return batch_norm_node(x, std::move(running_mean), std::move(running_var), weight, bias, training, momentum, eps,
                         Tensor<T>(), false);
}

// Note [Batch norm with ReLU]
// A ResNet block ends both its batch norms in ReLU, the second after adding the shortcut. As
// separate ops the forward makes one more pass over memory for the add and one for the ReLU
// after batch norm's affine pass. batch_norm_relu runs the add and the ReLU on a few planes at a
// time right after the affine kernel wrote them, while they are in L1 (on a ResNet's [128, 16,
// 32, 32] activation the forward takes two thirds of the separate ops' time). The backward is
// the separate ops': ReLU's masked gradient (which is also the residual's) in one pass, then
// batch norm's two. Finding the mask from x inside those two passes instead (the pre-activation
// recomputed a few planes at a time with the backend's affine and mask kernels) measured slower
// than relu_backward's pass: three L1-bound kernels per few planes cost more than one pass over
// memory. Every value is the one the separate ops give (the same kernels on the same operands in
// the same order: the tests compare bits), so a block computes the same fused or not. Under a
// tracer (deploy::compile) the separate ops run, each traced.
template <FloatingElement T>
Tensor<T> batch_norm_relu(const Tensor<T>& x, Tensor<T> running_mean, Tensor<T> running_var, const Tensor<T>& weight,
                          const Tensor<T>& bias, bool training, double momentum, double eps,
                          const Tensor<T>& residual) {
  if (detail::tracing() || (residual.defined() && (!x.defined() || residual.shape() != x.shape()))) {
    // Shapes that cannot be added fail before batch norm updates the running statistics.
    if (x.defined() && residual.defined()) detail::broadcast_shapes(x.shape(), residual.shape(), "batch_norm_relu");
    const Tensor<T> y = batch_norm(x, std::move(running_mean), std::move(running_var), weight, bias, training,
                                   momentum, eps);
    return relu(residual.defined() ? y + residual : y);
  }
  return batch_norm_node(x, std::move(running_mean), std::move(running_var), weight, bias, training, momentum, eps,
                         residual, true);
}

// Note [Fused layer norm]
// As batch norm (Note [Fused batch norm]), layer norm runs as one node: per row of the normalized
// shape, the statistics in two passes (sum, then centred sums), then xhat and the affine map; the
// backward recomputes xhat from x and the saved statistics and makes, per row, one pass for
// sum(dy * w) and sum(dy * w * (x - mean)) and one for dx. The weight and bias gradients are
// column sums over rows, added in fixed blocks of rows and then block by block, so they do not
// depend on the thread count. A backward that builds a graph (create_graph) differentiates the
// composite form instead: it recomputes y from public ops and asks autograd::grad for its
// gradients with create_graph, so they stay differentiable. The rows are short (a transformer's
// d_model), so every pass works on data in L1.
namespace {

template <FloatingElement T>
Tensor<T> layer_norm_composite(const Tensor<T>& x, int64_t k, const Tensor<T>& weight, const Tensor<T>& bias,
                               double eps) {
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < k; ++i) dims.push_back(x.dim() - k + i);
  Tensor<T> y = (x - ember::mean(x, dims, true)) * rsqrt(ember::var(x, dims, true, 0) + eps);
  if (weight.defined()) y = y * weight;
  if (bias.defined()) y = y + bias;
  return y;
}

template <FloatingElement T>
std::vector<Tensor<T>> layer_norm_grads_composite(const Tensor<T>& g, const Tensor<T>& x, int64_t k,
                                                  const Tensor<T>& weight, const Tensor<T>& bias, double eps) {
  std::vector<Tensor<T>> inputs;
  std::vector<size_t> slot;
  const Tensor<T>* all[3] = {&x, &weight, &bias};
  for (size_t i = 0; i < 3; ++i) {
    if (all[i]->defined() && all[i]->requires_grad()) {
      inputs.push_back(*all[i]);
      slot.push_back(i);
    }
  }
  std::vector<Tensor<T>> grads(3);
  if (inputs.empty()) return grads;
  const Tensor<T> y = layer_norm_composite(x, k, weight, bias, eps);
  std::vector<Tensor<T>> got = autograd::grad({y}, inputs, {g}, /*create_graph=*/true, /*retain_graph=*/true,
                                              /*allow_unused=*/true);
  for (size_t i = 0; i < slot.size(); ++i) grads[slot[i]] = got[i];
  return grads;
}

// Rows per block of the weight and bias gradient sums (Note [Fused layer norm]).
constexpr int64_t kLayerNormBlock = 64;

// What layer norm's backward needs: x, weight and bias, the normalized dims, and the forward's
// per-row statistics.
template <class T>
struct LayerNormSaved {
  autograd::SavedTensor<T> x, weight, bias;
  int64_t nd, D, R;
  double eps;
  std::vector<T> mean, rstd;
};

// Gradients of layer_norm for x, weight and bias (Note [Fused layer norm]).
template <class T>
std::vector<Tensor<T>> layer_norm_backward(const Tensor<T>& g, const LayerNormSaved<T>& s) {
  const int64_t nd = s.nd, D = s.D, R = s.R;
  const double eps = s.eps;
  const std::vector<T>& mean = s.mean;
  const std::vector<T>& rstd = s.rstd;
  const Tensor<T>& x = s.x.get("layer_norm");
  const Tensor<T>& weight = s.weight.get("layer_norm");
  const Tensor<T>& bias = s.bias.get("layer_norm");
  if (autograd::grad_mode_enabled())  // create_graph: see Note [Fused layer norm]
    return layer_norm_grads_composite(g, x, nd, weight, bias, eps);
  const bool need_x = x.requires_grad();
  const bool need_w = weight.defined() && weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  if (R == 0 || D == 0) {  // nothing to normalize: zero gradients
    return std::vector<Tensor<T>>{need_x ? zeros<T>(x.shape()) : Tensor<T>(),
                                  need_w ? zeros<T>(weight.shape()) : Tensor<T>(),
                                  need_b ? zeros<T>(bias.shape()) : Tensor<T>()};
  }
  const Tensor<T> gc = g.contiguous(), xc = x.detach().contiguous();
  const Tensor<T> wc = weight.defined() ? weight.detach().contiguous() : Tensor<T>();
  const T* pg = gc.data();
  const T* px = xc.data();
  const T* pw = wc.defined() ? wc.data() : nullptr;
  Tensor<T> gx = need_x ? empty<T>(x.shape()) : Tensor<T>();
  T* pgx = need_x ? gx.data() : nullptr;
  const int64_t blocks = (R + kLayerNormBlock - 1) / kLayerNormBlock;
  std::vector<T> dw(static_cast<size_t>(need_w ? blocks * D : 0), T(0));
  std::vector<T> db(static_cast<size_t>(need_b ? blocks * D : 0), T(0));
  const auto& k = backend::kernels<T>();
  const double inv_d = 1.0 / static_cast<double>(D);
  detail::parallel_for(0, blocks, std::max<int64_t>(1, 4096 / std::max<int64_t>(kLayerNormBlock * D, 1)),
                       [&](int64_t bb, int64_t be) {
    std::vector<T> gw_row(static_cast<size_t>(D)), xhat_row(static_cast<size_t>(D));
    for (int64_t blk = bb; blk < be; ++blk) {
      for (int64_t r = blk * kLayerNormBlock; r < std::min(R, (blk + 1) * kLayerNormBlock); ++r) {
        const T* xr = px + r * D;
        const T* gr = pg + r * D;
        const T m = mean[static_cast<size_t>(r)], rs = rstd[static_cast<size_t>(r)];
        if (need_x) {
          // dx = rs * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = dy * w
          const T* gw = gr;
          if (pw) {
            k.binary(backend::Binary::Mul, {}, D, gr, 1, pw, 1, gw_row.data());
            gw = gw_row.data();
          }
          double s1 = 0, s2 = 0;  // sum gw, sum gw * (x - mean)
          k.centered_sums(D, xr, m, gw, &s1, &s2);
          const double r3 = double(rs) * double(rs) * double(rs);
          k.affine2(D, gw, rs, xr, static_cast<T>(-r3 * s2 * inv_d),
                    static_cast<T>(-double(rs) * s1 * inv_d + r3 * s2 * inv_d * double(m)), pgx + r * D);
        }
        if (need_w) {
          k.affine2(D, xr, rs, nullptr, T(0), -m * rs, xhat_row.data());
          k.binary(backend::Binary::Mul, {}, D, xhat_row.data(), 1, gr, 1, xhat_row.data());
          k.accumulate(backend::Reduce::Sum, D, xhat_row.data(), 1, dw.data() + blk * D);
        }
        if (need_b) k.accumulate(backend::Reduce::Sum, D, gr, 1, db.data() + blk * D);
      }
    }
  });
  std::vector<Tensor<T>> grads(3);
  grads[0] = gx;
  auto column_sums = [&](std::vector<T>& partial, const Tensor<T>& like) {
    for (int64_t blk = 1; blk < blocks; ++blk) k.accumulate(backend::Reduce::Sum, D, partial.data() + blk * D, 1, partial.data());
    partial.resize(static_cast<size_t>(D));
    return tensor<T>(partial, like.shape());
  };
  if (need_w) grads[1] = column_sums(dw, weight);
  if (need_b) grads[2] = column_sums(db, bias);
  return grads;
}

}  // namespace

template <FloatingElement T>
Tensor<T> layer_norm(const Tensor<T>& x, const Shape& ns, const Tensor<T>& weight, const Tensor<T>& bias,
                     double eps) {
  detail::TracedOp traced;
  if (!x.defined()) throw ValueError("layer_norm: the input is undefined");
  const int64_t nd = ns.size();
  bool fits = nd >= 1 && x.dim() >= nd;
  for (int64_t i = 0; fits && i < nd; ++i) fits = x.shape()[x.dim() - nd + i] == ns[i];
  if (!fits) {
    throw ShapeError(cat_str("layer_norm: input ", x.shape(), " does not end with the normalized shape ", ns));
  }
  for (const Tensor<T>* p : {&weight, &bias}) {
    if (p->defined() && p->shape() != ns) {
      throw ShapeError(cat_str("layer_norm: ", p == &weight ? "weight " : "bias ", p->shape(),
                               " must have the normalized shape ", ns));
    }
  }
  const Tensor<T> xc = x.detach().contiguous();
  const int64_t D = ns.numel(), R = D == 0 ? 0 : xc.numel() / D;
  const Tensor<T> wc = weight.defined() ? weight.detach().contiguous() : Tensor<T>();
  const Tensor<T> bc = bias.defined() ? bias.detach().contiguous() : Tensor<T>();
  std::vector<T> mean(static_cast<size_t>(R)), rstd(static_cast<size_t>(R));
  Tensor<T> y = empty<T>(x.shape());
  if (R > 0 && D > 0) {
    const T* px = xc.data();
    const T* pw = wc.defined() ? wc.data() : nullptr;
    const T* pb = bc.defined() ? bc.data() : nullptr;
    T* py = y.data();
    const auto& k = backend::kernels<T>();
    detail::parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        detail::layer_norm_row(k, D, px + r * D, pw, pb, eps, py + r * D, &mean[static_cast<size_t>(r)],
                               &rstd[static_cast<size_t>(r)]);
      }
    });
  }
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) {
      t->layer_norm(x, D, wc.defined() ? wc.to_vector() : std::vector<float>(),
                    bc.defined() ? bc.to_vector() : std::vector<float>(), eps, y);
    }
  }
  if (autograd::needs_grad(x, weight, bias)) {
    autograd::record(y, "layer_norm", {&x, &weight, &bias},
                     [saved = LayerNormSaved<T>{autograd::SavedTensor<T>(x), autograd::SavedTensor<T>(weight),
                                                autograd::SavedTensor<T>(bias), nd, D, R, eps, std::move(mean),
                                                std::move(rstd)}](const Tensor<T>& g) {
                       return layer_norm_backward(g, saved);
                     });
  }
  return y;
}

namespace {

// y = x * weight[c] + bias[c] over the channels of x [N, C, ...] in one pass of batch norm's
// channel kernel (group norm's affine map; a plan runs it as the same channel-affine step). The
// backward in public ops, so it stays differentiable.
template <FloatingElement T>
Tensor<T> channel_scale_shift(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias) {
  detail::TracedOp traced;
  const auto c = static_cast<size_t>(x.shape()[1]);
  const std::vector<T> w = weight.defined() ? weight.detach().contiguous().to_vector() : std::vector<T>(c, T(1));
  const std::vector<T> b = bias.defined() ? bias.detach().contiguous().to_vector() : std::vector<T>(c, T(0));
  Tensor<T> y = x.numel() == 0 ? empty<T>(x.shape()) : channel_affine(x.detach().contiguous(), w, b);
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->channel_affine(x, w, b, y);
  }
  if (autograd::needs_grad(x, weight, bias)) {
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
    autograd::record(y, "group_norm", {&x, &weight, &bias},
                     [sx = weight.defined() && weight.requires_grad() ? autograd::SavedTensor<T>(x)
                                                                      : autograd::SavedTensor<T>(),
                      sw = autograd::SavedTensor<T>(weight), nx = x.requires_grad(),
                      nb = bias.defined() && bias.requires_grad(), dims](const Tensor<T>& g) {
                       std::vector<Tensor<T>> grads(3);
                       const Tensor<T> w = sw.get("group_norm");
                       if (nx) grads[0] = w.defined() ? channel_scale_shift(g, w, Tensor<T>()) : g;
                       if (w.defined() && w.requires_grad()) grads[1] = (g * sx.get("group_norm")).sum(dims);
                       if (nb) grads[2] = g.sum(dims);
                       return grads;
                     });
  }
  return y;
}

}  // namespace

template <FloatingElement T>
Tensor<T> group_norm(const Tensor<T>& x, int64_t groups, const Tensor<T>& weight, const Tensor<T>& bias,
                     double eps) {
  if (!x.defined() || x.dim() < 2) throw ShapeError("group_norm: input must be [N, C, ...]");
  const int64_t n = x.shape()[0], c = x.shape()[1];
  if (groups <= 0 || c % groups != 0) {
    throw ValueError(cat_str("group_norm: ", c, " channels are not divisible into ", groups, " groups"));
  }
  for (const Tensor<T>* p : {&weight, &bias}) {
    if (p->defined() && p->shape() != Shape{c}) {
      throw ShapeError(cat_str("group_norm: ", p == &weight ? "weight " : "bias ", p->shape(), " must be [", c,
                               "], one value per channel of the input ", x.shape()));
    }
  }
  // The group size is spelled out rather than inferred with -1, which an empty batch leaves undetermined.
  int64_t group_size = c / groups;
  for (int64_t d = 2; d < x.dim(); ++d) group_size *= x.shape()[d];
  // Each group is a row that layer norm without weights normalizes (the same formula: its mean and
  // biased variance), so the row kernel, its backward and the inference plans serve both.
  const Tensor<T> y =
      layer_norm(x.reshape({n, groups, group_size}), Shape{group_size}, Tensor<T>(), Tensor<T>(), eps).reshape(x.shape());
  return weight.defined() || bias.defined() ? channel_scale_shift(y, weight, bias) : y;
}

// Each (sample, channel) plane is a channel of batch_norm over a batch of one, as PyTorch computes
// it; the running statistics (when given) move by the batch's mean of the per-sample statistics.
template <FloatingElement T>
Tensor<T> instance_norm(const Tensor<T>& x, Tensor<T> running_mean, Tensor<T> running_var, const Tensor<T>& weight,
                        const Tensor<T>& bias, bool use_input_stats, double momentum, double eps) {
  if (!x.defined() || x.dim() < 3) {
    throw ShapeError(cat_str("instance_norm: input ", x.defined() ? x.shape() : Shape{},
                             " must be [N, C, ...] with at least one spatial dim"));
  }
  const int64_t n = x.shape()[0], c = x.shape()[1];
  for (const Tensor<T>* p : std::initializer_list<const Tensor<T>*>{&weight, &bias, &running_mean, &running_var}) {
    if (p->defined() && p->shape() != Shape{c}) {
      const char* what = p == &weight ? "weight " : p == &bias ? "bias " : p == &running_mean ? "running_mean " : "running_var ";
      throw ShapeError(cat_str("instance_norm: ", what, p->shape(), " must be [", c, "], one value per channel of the input ",
                               x.shape()));
    }
  }
  if (running_mean.defined() != running_var.defined()) {
    throw ValueError("instance_norm: give both running_mean and running_var, or neither");
  }
  if (!use_input_stats) {
    if (!running_mean.defined()) {
      throw ValueError("instance_norm: use_input_stats = false normalises with running statistics, and none were given");
    }
    return batch_norm(x, running_mean, running_var, weight, bias, false, momentum, eps);
  }
  int64_t spatial = 1;
  for (int64_t d = 2; d < x.dim(); ++d) spatial *= x.shape()[d];
  if (spatial <= 1) {
    throw ValueError(cat_str("instance_norm: expected more than 1 spatial element when using input statistics, got input ",
                             x.shape()));
  }
  if (n == 0) return x * 1.0;
  if (!running_mean.defined()) return group_norm(x, c, weight, bias, eps);  // a group per channel
  Shape planes = x.shape();
  planes[0] = 1;
  planes[1] = n * c;
  auto per_plane = [n](const Tensor<T>& t) { return t.defined() ? repeat(t, {n}) : t; };
  auto detached = [](const Tensor<T>& t) { return t.defined() ? t.detach() : t; };
  Tensor<T> plane_mean = per_plane(detached(running_mean)), plane_var = per_plane(detached(running_var));
  Tensor<T> y = batch_norm(x.reshape(planes), plane_mean, plane_var, per_plane(weight), per_plane(bias), true, momentum, eps);
  if (running_mean.defined()) {
    NoGradGuard no_grad;
    running_mean.copy_(plane_mean.reshape({n, c}).mean(0));
    running_var.copy_(plane_var.reshape({n, c}).mean(0));
  }
  return y.reshape(x.shape());
}

template <FloatingElement T>
Tensor<T> rms_norm(const Tensor<T>& x, const Shape& ns, const Tensor<T>& weight, double eps) {
  if (!x.defined()) throw ValueError("rms_norm: the input is undefined");
  const int64_t k = ns.size();
  bool fits = k >= 1 && x.dim() >= k;
  for (int64_t i = 0; fits && i < k; ++i) fits = x.shape()[x.dim() - k + i] == ns[i];
  if (!fits) throw ShapeError(cat_str("rms_norm: input ", x.shape(), " does not end with ", ns));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < k; ++i) dims.push_back(x.dim() - k + i);
  Tensor<T> y = x * rsqrt(ember::mean(x * x, dims, true) + eps);
  return weight.defined() ? y * weight : y;
}

template <FloatingElement T>
Tensor<T> embedding(const Tensor<int64_t>& indices, const Tensor<T>& weight, int64_t padding_idx) {
  if (!indices.defined() || !weight.defined() || weight.dim() != 2) {
    throw ShapeError("embedding: expected indices and a 2-D weight [num_embeddings, dim]");
  }
  Shape out_shape = indices.shape();
  out_shape.push_back(weight.shape()[1]);
  Tensor<int64_t> flat = indices.reshape({-1});
  const int64_t rows_in_table = weight.shape()[0];
  const std::vector<int64_t> wanted = flat.to_vector();
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (wanted[i] < 0 || wanted[i] >= rows_in_table) {
      throw IndexError(cat_str("embedding: index ", wanted[i], " at position ", i, " is out of range for ",
                               rows_in_table, " embeddings (weight ", weight.shape(), ")"));
    }
  }
  Tensor<T> rows = weight.index_select(0, flat);
  if (padding_idx >= 0) {
    // Rows at padding_idx keep their value but get no gradient.
    Tensor<uint8_t> pad = tensor<uint8_t>([&] {
      std::vector<uint8_t> m;
      for (int64_t v : wanted) m.push_back(v == padding_idx);
      return m;
    }(), {flat.numel(), 1});
    rows = where(pad, weight.detach().index_select(0, flat), rows);
  }
  return rows.reshape(out_shape);
}

namespace {

// The bags of an embedding_bag input as the positions each one takes, [begin, end) into the flat
// input; checks the layout as PyTorch does.
std::vector<int64_t> bag_bounds(const Tensor<int64_t>& input, const Tensor<int64_t>& offsets,
                                bool include_last_offset) {
  const int64_t n = input.numel();
  std::vector<int64_t> bounds;
  if (input.dim() == 2) {
    if (offsets.defined()) {
      throw ValueError(cat_str("embedding_bag: a 2-D input ", input.shape(),
                               " holds one bag per row; offsets must be undefined"));
    }
    const int64_t bags = input.shape()[0], per_bag = input.shape()[1];
    for (int64_t b = 0; b <= bags; ++b) bounds.push_back(b * per_bag);
    return bounds;
  }
  if (input.dim() != 1) {
    throw ShapeError(cat_str("embedding_bag: input must be 1-D (with offsets) or 2-D [bags, n], got ", input.shape()));
  }
  if (!offsets.defined() || offsets.dim() != 1) {
    throw ShapeError(cat_str("embedding_bag: a 1-D input needs 1-D offsets (where each bag starts), got ",
                             offsets.defined() ? offsets.shape().str() : std::string("none")));
  }
  bounds = offsets.contiguous().to_vector();
  if (!bounds.empty() && bounds.front() != 0) {
    throw ValueError(cat_str("embedding_bag: offsets[0] must be 0 (the first bag starts the input), got ",
                             bounds.front()));
  }
  if (include_last_offset) {
    if (bounds.empty()) throw ValueError("embedding_bag: include_last_offset needs at least one offset");
  } else {
    bounds.push_back(n);  // no offsets: no bags (the input's entries belong to none)
  }
  for (size_t i = 1; i < bounds.size(); ++i) {
    if (bounds[i] < bounds[i - 1] || bounds[i] > n) {
      throw ValueError(cat_str("embedding_bag: offsets must not decrease nor pass the input's length ", n,
                               "; bag ", i - 1, " would span [", bounds[i - 1], ", ", bounds[i], ")"));
    }
  }
  if (include_last_offset && bounds.back() != n) {
    throw ValueError(cat_str("embedding_bag: with include_last_offset the last offset must be the input's length ",
                             n, ", got ", bounds.back()));
  }
  return bounds;
}

}  // namespace

template <FloatingElement T>
Tensor<T> embedding_bag(const Tensor<int64_t>& input, const Tensor<T>& weight, const Tensor<int64_t>& offsets,
                        const EmbeddingBagOptions& o, const Tensor<T>& per_sample_weights) {
  if (!input.defined() || !weight.defined() || weight.dim() != 2) {
    throw ShapeError("embedding_bag: expected indices and a 2-D weight [num_embeddings, dim]");
  }
  const std::vector<int64_t> bounds = bag_bounds(input, offsets, o.include_last_offset);
  if (per_sample_weights.defined()) {
    if (o.mode != EmbeddingBagMode::Sum) {
      throw ValueError("embedding_bag: per_sample_weights is only supported for the Sum mode");
    }
    if (per_sample_weights.shape() != input.shape()) {
      throw ShapeError(cat_str("embedding_bag: per_sample_weights ", per_sample_weights.shape(),
                               " must have the input's shape ", input.shape()));
    }
  }
  const std::vector<int64_t> wanted = input.contiguous().to_vector();
  const int64_t rows_in_table = weight.shape()[0], dim = weight.shape()[1];
  // The positions kept (padding left out) and the bag of each.
  std::vector<int64_t> kept, kept_rows, bag_of;
  const int64_t bags = static_cast<int64_t>(bounds.size()) - 1;
  std::vector<int64_t> counts(static_cast<size_t>(bags), 0), starts(static_cast<size_t>(bags), 0);
  for (int64_t b = 0; b < bags; ++b) {
    starts[static_cast<size_t>(b)] = static_cast<int64_t>(kept.size());
    for (int64_t i = bounds[static_cast<size_t>(b)]; i < bounds[static_cast<size_t>(b) + 1]; ++i) {
      const int64_t v = wanted[static_cast<size_t>(i)];
      if (v < 0 || v >= rows_in_table) {
        throw IndexError(cat_str("embedding_bag: index ", v, " at position ", i, " is out of range for ",
                                 rows_in_table, " embeddings (weight ", weight.shape(), ")"));
      }
      if (v == o.padding_idx) continue;
      kept.push_back(i);
      kept_rows.push_back(v);
      bag_of.push_back(b);
      ++counts[static_cast<size_t>(b)];
    }
  }
  const int64_t k = static_cast<int64_t>(kept.size());
  // Empty bags give zeros that are still on the weight's graph (the sum of no rows), as PyTorch's.
  Tensor<T> rows = weight.index_select(0, tensor<int64_t>(kept_rows, {k}));
  if (per_sample_weights.defined()) {
    rows = rows * per_sample_weights.reshape({-1}).index_select(0, tensor<int64_t>(kept, {k})).unsqueeze(1);
  }
  if (o.mode == EmbeddingBagMode::Max) {
    if (bags == 0) return rows;  // [0, dim]
    // Each bag's maximum per column, the gradient to the row it came from (max along dim 0).
    std::vector<Tensor<T>> maxima;
    for (int64_t b = 0; b < bags; ++b) {
      const int64_t c = counts[static_cast<size_t>(b)];
      const Tensor<T> bag = rows.narrow(0, starts[static_cast<size_t>(b)], c);
      maxima.push_back(c == 0 ? sum(bag, {0}) : max(bag, 0).values);
    }
    return stack(maxima, 0);
  }
  Tensor<int64_t> index = tensor<int64_t>(bag_of, {k, 1}).expand({k, dim});
  Tensor<T> out = scatter_add(zeros<T>({bags, dim}), 0, index, rows);
  if (o.mode == EmbeddingBagMode::Mean) {
    std::vector<T> divisors;
    for (int64_t c : counts) divisors.push_back(static_cast<T>(std::max<int64_t>(c, 1)));
    out = out / tensor<T>(divisors, {bags, 1});
  }
  return out;
}

#define EMBER_INSTANTIATE(T)                                                                         \
  template Tensor<T> batch_norm(const Tensor<T>&, Tensor<T>, Tensor<T>, const Tensor<T>&, const Tensor<T>&, \
                                bool, double, double);                                               \
  template Tensor<T> batch_norm_relu(const Tensor<T>&, Tensor<T>, Tensor<T>, const Tensor<T>&, const Tensor<T>&, \
                                     bool, double, double, const Tensor<T>&);                          \
  template Tensor<T> layer_norm(const Tensor<T>&, const Shape&, const Tensor<T>&, const Tensor<T>&, double); \
  template Tensor<T> group_norm(const Tensor<T>&, int64_t, const Tensor<T>&, const Tensor<T>&, double); \
  template Tensor<T> rms_norm(const Tensor<T>&, const Shape&, const Tensor<T>&, double);             \
  template Tensor<T> instance_norm(const Tensor<T>&, Tensor<T>, Tensor<T>, const Tensor<T>&, const Tensor<T>&, \
                                   bool, double, double);                                            \
  template Tensor<T> embedding(const Tensor<int64_t>&, const Tensor<T>&, int64_t);                   \
  template Tensor<T> embedding_bag(const Tensor<int64_t>&, const Tensor<T>&, const Tensor<int64_t>&,    \
                                   const EmbeddingBagOptions&, const Tensor<T>&);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember
