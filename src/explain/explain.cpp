#include "ember/explain/explain.hpp"

#include "checks.hpp"
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "ember/autograd/autograd.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"
#include "ember/nn/dropout.hpp"
#include "ember/nn/functional.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/reduction.hpp"
#include "ember/ops/shape_ops.hpp"


namespace ember::explain {
namespace {

using detail::check_inputs;
using detail::target_logits;

template <FloatingElement T>
Forward<T> forward_of(nn::Module<T>& model) {
  return [&model](const Tensor<T>& x) { return model(x); };
}

// `times` copies of `t` stacked along dim 0.
template <Element U>
Tensor<U> repeat_batch(const Tensor<U>& t, int64_t times) {
  std::vector<Tensor<U>> parts(static_cast<size_t>(times), t);
  return cat(parts, 0);
}

// P_n(z) and P_n'(z) by the three-term recurrence.
void legendre(int64_t n, double z, double& value, double& derivative) {
  double p0 = 1, p1 = 0;
  for (int64_t k = 1; k <= n; ++k) {
    const double p2 = p1;
    p1 = p0;
    p0 = ((2.0 * static_cast<double>(k) - 1) * z * p1 - (static_cast<double>(k) - 1) * p2) / static_cast<double>(k);
  }
  value = p0;
  derivative = static_cast<double>(n) * (z * p0 - p1) / (z * z - 1);
}

// The nodes and weights of the n-point Gauss-Legendre rule on [-1, 1] (Newton on P_n), ascending
// as numpy's leggauss.
void gauss_legendre(int64_t n, std::vector<double>& nodes, std::vector<double>& weights) {
  nodes.assign(static_cast<size_t>(n), 0.0);
  weights.assign(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < (n + 1) / 2; ++i) {
    double z = std::cos(std::numbers::pi * (static_cast<double>(i) + 0.75) / (static_cast<double>(n) + 0.5));
    double value = 0, derivative = 0;
    for (int iter = 0; iter < 100; ++iter) {
      legendre(n, z, value, derivative);
      const double dz = value / derivative;
      z -= dz;
      if (std::abs(dz) < 1e-16) break;
    }
    legendre(n, z, value, derivative);
    const double w = 2 / ((1 - z * z) * derivative * derivative);
    nodes[static_cast<size_t>(i)] = -z;
    nodes[static_cast<size_t>(n - 1 - i)] = z;
    weights[static_cast<size_t>(i)] = weights[static_cast<size_t>(n - 1 - i)] = w;
  }
}

void check_steps(const char* method, int64_t steps, Method rule) {
  if (steps < 1) throw ValueError(std::string(method) + ": steps must be >= 1, got " + std::to_string(steps));
  if (rule == Method::RiemannTrapezoid && steps < 2)
    throw ValueError(std::string(method) + ": the trapezoid rule needs steps >= 2, got " + std::to_string(steps));
}

// Bilinear resize of [N, h, w] to [N, H, W] with align_corners = false (PyTorch's source index:
// (dst + 0.5) * in / out - 0.5, clamped at 0).
template <FloatingElement T>
Tensor<T> resize_bilinear(const Tensor<T>& maps, int64_t out_h, int64_t out_w) {
  const int64_t n = maps.size(0), in_h = maps.size(1), in_w = maps.size(2);
  const std::vector<T> in = maps.contiguous().to_vector();
  std::vector<T> out(static_cast<size_t>(n * out_h * out_w));
  auto source = [](int64_t dst, int64_t in_size, int64_t out_size, int64_t& i0, int64_t& i1, double& frac) {
    const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
    const double src = std::max((static_cast<double>(dst) + 0.5) * scale - 0.5, 0.0);
    i0 = std::min(static_cast<int64_t>(src), in_size - 1);
    i1 = std::min(i0 + 1, in_size - 1);
    frac = src - static_cast<double>(i0);
  };
  for (int64_t b = 0; b < n; ++b)
    for (int64_t y = 0; y < out_h; ++y) {
      int64_t y0, y1;
      double fy;
      source(y, in_h, out_h, y0, y1, fy);
      for (int64_t x = 0; x < out_w; ++x) {
        int64_t x0, x1;
        double fx;
        source(x, in_w, out_w, x0, x1, fx);
        auto at = [&](int64_t yy, int64_t xx) { return static_cast<double>(in[static_cast<size_t>((b * in_h + yy) * in_w + xx)]); };
        const double v = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
        out[static_cast<size_t>((b * out_h + y) * out_w + x)] = static_cast<T>(v);
      }
    }
  return tensor<T>(out, {n, out_h, out_w});
}

// Puts every module's training flag back on scope exit (pre-order, so each module ends with its
// own flag whatever its parent's train() did).
template <FloatingElement T>
class ModeRestorer {
 public:
  explicit ModeRestorer(nn::Module<T>& root) {
    for (auto& [path, m] : root.named_modules()) saved_.emplace_back(m, m->is_training());
  }
  ~ModeRestorer() {
    for (auto& [m, training] : saved_) m->train(training);
  }
  ModeRestorer(const ModeRestorer&) = delete;
  ModeRestorer& operator=(const ModeRestorer&) = delete;

 private:
  std::vector<std::pair<nn::Module<T>*, bool>> saved_;
};

}  // namespace

std::vector<double> integration_points(Method method, int64_t steps) {
  check_steps("integration_points", steps, method);
  const double n = static_cast<double>(steps);
  std::vector<double> out(static_cast<size_t>(steps));
  for (int64_t i = 0; i < steps; ++i) {
    const double k = static_cast<double>(i);
    switch (method) {
      case Method::RiemannLeft: out[static_cast<size_t>(i)] = steps == 1 ? 0.0 : k * (1 - 1 / n) / (n - 1); break;
      case Method::RiemannRight: out[static_cast<size_t>(i)] = steps == 1 ? 1.0 : 1 / n + k * (1 - 1 / n) / (n - 1); break;
      case Method::RiemannMiddle:
        out[static_cast<size_t>(i)] = steps == 1 ? 0.5 : 1 / (2 * n) + k * (1 - 1 / n) / (n - 1);
        break;
      case Method::RiemannTrapezoid: out[static_cast<size_t>(i)] = k / (n - 1); break;
      case Method::GaussLegendre: break;
    }
  }
  if (method == Method::GaussLegendre) {
    std::vector<double> nodes, weights;
    gauss_legendre(steps, nodes, weights);
    for (int64_t i = 0; i < steps; ++i) out[static_cast<size_t>(i)] = 0.5 * (nodes[static_cast<size_t>(i)] + 1);
  }
  return out;
}

std::vector<double> integration_weights(Method method, int64_t steps) {
  check_steps("integration_weights", steps, method);
  if (method == Method::GaussLegendre) {
    std::vector<double> nodes, weights;
    gauss_legendre(steps, nodes, weights);
    for (double& w : weights) w *= 0.5;
    return weights;
  }
  std::vector<double> out(static_cast<size_t>(steps), 1.0 / static_cast<double>(steps));
  if (method == Method::RiemannTrapezoid) {
    out.front() /= 2;
    out.back() /= 2;
  }
  return out;
}

template <FloatingElement T>
Tensor<T> saliency(const Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target, SaliencyOptions options) {
  check_inputs("saliency", x, target);
  autograd::AutoGradMode enable(true);
  Tensor<T> input = x.detach().clone();
  input.requires_grad_(true);
  const Tensor<T> score = target_logits("saliency", model(input), target).sum();
  Tensor<T> grad = autograd::grad({score}, {input})[0];
  return options.abs ? abs(grad) : grad;
}

template <FloatingElement T>
Tensor<T> saliency(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target, SaliencyOptions options) {
  return saliency(forward_of(model), x, target, options);
}

template <FloatingElement T>
Attribution<T> integrated_gradients(const Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                                    const IntegratedGradientsOptions<T>& options) {
  const char* name = "integrated_gradients";
  const int64_t n = check_inputs(name, x, target);
  check_steps(name, options.steps, options.method);
  if (options.internal_batch_size < 0)
    throw ValueError(std::string(name) + ": internal_batch_size must be >= 0, got " + std::to_string(options.internal_batch_size));
  const Tensor<T> input = x.detach().contiguous();
  Tensor<T> baseline;
  if (!options.baseline.defined()) {
    baseline = zeros_like(input);
  } else if (options.baseline.shape() == input.shape()) {
    baseline = options.baseline.detach().contiguous();
  } else if (options.baseline.dim() + 1 == input.dim() &&
             Shape(std::vector<int64_t>(input.shape().begin() + 1, input.shape().end())) == options.baseline.shape()) {
    baseline = options.baseline.detach().unsqueeze(0).expand(input.shape()).contiguous();
  } else {
    throw ShapeError(std::string(name) + ": baseline must have x's shape " + input.shape().str() +
                     " or one sample's, got " + options.baseline.shape().str());
  }
  const std::vector<double> alphas = integration_points(options.method, options.steps);
  const std::vector<double> weights = integration_weights(options.method, options.steps);
  const int64_t per_pass = options.internal_batch_size == 0 ? options.steps
                                                             : std::max<int64_t>(1, options.internal_batch_size / n);
  const Tensor<T> diff = input - baseline;
  Tensor<T> total = zeros_like(input);
  autograd::AutoGradMode enable(true);
  for (int64_t first = 0; first < options.steps; first += per_pass) {
    const int64_t count = std::min(per_pass, options.steps - first);
    std::vector<Tensor<T>> scaled;
    for (int64_t s = first; s < first + count; ++s)
      scaled.push_back(baseline + diff * static_cast<T>(alphas[static_cast<size_t>(s)]));
    Tensor<T> batch = cat(scaled, 0);
    batch.requires_grad_(true);
    const Tensor<T> score = target_logits(name, model(batch), repeat_batch(target, count)).sum();
    const Tensor<T> grad = autograd::grad({score}, {batch})[0];
    NoGradGuard no_grad;
    for (int64_t s = 0; s < count; ++s)
      total.add_(grad.narrow(0, s * n, n), weights[static_cast<size_t>(first + s)]);
  }
  NoGradGuard no_grad;
  Attribution<T> out;
  out.attributions = diff * total;
  const Tensor<T> gain = target_logits(name, model(input), target) - target_logits(name, model(baseline), target);
  out.delta = out.attributions.reshape({n, -1}).sum(1) - gain;
  return out;
}

template <FloatingElement T>
Attribution<T> integrated_gradients(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                                    const IntegratedGradientsOptions<T>& options) {
  return integrated_gradients(forward_of(model), x, target, options);
}

template <FloatingElement T>
Tensor<T> grad_cam(nn::Module<T>& model, nn::Module<T>& layer, const Tensor<T>& x, const Tensor<int64_t>& target,
                   GradCamOptions options) {
  const char* name = "grad_cam";
  check_inputs(name, x, target);
  bool inside = false;
  for (auto& [path, m] : model.named_modules()) inside = inside || m == &layer;
  if (!inside) {
    throw ValueError(std::string(name) + ": the layer (" + layer.type_name() +
                     ") is not part of the model; pass a module registered inside it, e.g. *net[3]");
  }
  // The layer's output becomes a leaf of the rest of the forward pass, so its gradient is there
  // whether or not the parameters before it require grad.
  Tensor<T> activation;
  const int64_t hook = layer.register_forward_hook([&activation](nn::Module<T>&, const Tensor<T>&, const Tensor<T>& y) {
    activation = y.detach();
    activation.requires_grad_(true);
    return activation;
  });
  struct RemoveHook {
    nn::Module<T>& m;
    int64_t id;
    ~RemoveHook() { m.remove_hook(id); }
  } remove{layer, hook};
  autograd::AutoGradMode enable(true);
  const Tensor<T> score = target_logits(name, model(x.detach()), target).sum();
  if (!activation.defined()) {
    throw ValueError(std::string(name) + ": the layer (" + layer.type_name() + ") was not called by the model's forward");
  }
  if (activation.dim() != 4) {
    throw ShapeError(std::string(name) + ": the layer's output must be [N, K, h, w], got " + activation.shape().str());
  }
  const Tensor<T> grad = autograd::grad({score}, {activation})[0];
  NoGradGuard no_grad;
  const Tensor<T> weights = grad.mean({2, 3}, true);
  Tensor<T> cam = (weights * activation.detach()).sum(1);
  if (options.relu) cam = relu(cam);
  if (options.upsample && x.dim() == 4) cam = resize_bilinear(cam, x.size(2), x.size(3));
  return cam;
}

template <FloatingElement T>
Tensor<T> occlusion(const Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                    const OcclusionOptions& options) {
  const char* name = "occlusion";
  const int64_t n = check_inputs(name, x, target);
  const int64_t dims = x.dim() - 1;
  if (static_cast<int64_t>(options.window.size()) != dims || static_cast<int64_t>(options.stride.size()) != dims) {
    throw ShapeError(std::string(name) + ": window and stride need one entry per input dimension after the batch (" +
                     std::to_string(dims) + " for x " + x.shape().str() + "), got " +
                     std::to_string(options.window.size()) + " and " + std::to_string(options.stride.size()));
  }
  if (options.windows_per_pass < 1) throw ValueError(std::string(name) + ": windows_per_pass must be >= 1");
  std::vector<int64_t> sizes(static_cast<size_t>(dims)), counts(static_cast<size_t>(dims));
  int64_t positions = 1, features = 1;
  for (int64_t d = 0; d < dims; ++d) {
    const int64_t size = x.size(d + 1), w = options.window[static_cast<size_t>(d)], s = options.stride[static_cast<size_t>(d)];
    if (w < 1 || w > size || s < 1) {
      throw ValueError(std::string(name) + ": window " + std::to_string(w) + " and stride " + std::to_string(s) +
                       " in dimension " + std::to_string(d + 1) + " must be >= 1, the window at most " + std::to_string(size));
    }
    sizes[static_cast<size_t>(d)] = size;
    counts[static_cast<size_t>(d)] = (size - w + s - 1) / s + 1;
    positions *= counts[static_cast<size_t>(d)];
    features *= size;
  }
  // The flat feature offsets a window at position `p` covers (cut at the edges).
  auto covered = [&](int64_t p) {
    std::vector<int64_t> start(static_cast<size_t>(dims)), end(static_cast<size_t>(dims));
    for (int64_t d = dims - 1; d >= 0; --d) {
      const size_t k = static_cast<size_t>(d);
      start[k] = (p % counts[k]) * options.stride[k];
      end[k] = std::min(start[k] + options.window[k], sizes[k]);
      p /= counts[k];
    }
    std::vector<int64_t> offsets{0};
    for (int64_t d = 0; d < dims; ++d) {
      const size_t k = static_cast<size_t>(d);
      std::vector<int64_t> next;
      for (int64_t o : offsets)
        for (int64_t i = start[k]; i < end[k]; ++i) next.push_back(o * sizes[k] + i);
      offsets = std::move(next);
    }
    return offsets;
  };
  NoGradGuard no_grad;
  const Tensor<T> input = x.detach().contiguous();
  const std::vector<T> values = input.to_vector();
  const std::vector<T> reference = target_logits(name, model(input), target).to_vector();
  std::vector<double> total(static_cast<size_t>(n * features), 0.0), cover(static_cast<size_t>(features), 0.0);
  for (int64_t first = 0; first < positions; first += options.windows_per_pass) {
    const int64_t count = std::min(options.windows_per_pass, positions - first);
    std::vector<T> batch;
    batch.reserve(static_cast<size_t>(count * n * features));
    std::vector<std::vector<int64_t>> regions;
    for (int64_t p = first; p < first + count; ++p) {
      regions.push_back(covered(p));
      const size_t at = batch.size();
      batch.insert(batch.end(), values.begin(), values.end());
      for (int64_t b = 0; b < n; ++b)
        for (int64_t o : regions.back()) batch[at + static_cast<size_t>(b * features + o)] = static_cast<T>(options.baseline);
    }
    Shape shape = input.shape();
    std::vector<int64_t> dims_out(shape.begin(), shape.end());
    dims_out[0] = count * n;
    const std::vector<T> scores =
        target_logits(name, model(tensor<T>(batch, Shape(dims_out))), repeat_batch(target, count)).to_vector();
    for (int64_t j = 0; j < count; ++j) {
      for (int64_t o : regions[static_cast<size_t>(j)]) cover[static_cast<size_t>(o)] += 1;
      for (int64_t b = 0; b < n; ++b) {
        const double drop = static_cast<double>(reference[static_cast<size_t>(b)]) -
                            static_cast<double>(scores[static_cast<size_t>(j * n + b)]);
        for (int64_t o : regions[static_cast<size_t>(j)]) total[static_cast<size_t>(b * features + o)] += drop;
      }
    }
  }
  std::vector<T> out(total.size());
  for (size_t i = 0; i < total.size(); ++i) {
    const double c = cover[i % static_cast<size_t>(features)];
    out[i] = static_cast<T>(c > 0 ? total[i] / c : 0.0);
  }
  return tensor<T>(out, input.shape());
}

template <FloatingElement T>
Tensor<T> occlusion(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                    const OcclusionOptions& options) {
  return occlusion(forward_of(model), x, target, options);
}

template <FloatingElement T>
Uncertainty<T> mc_dropout(nn::Module<T>& model, const Tensor<T>& x, MonteCarloOptions options) {
  const char* name = "mc_dropout";
  if (options.samples < 1) throw ValueError(std::string(name) + ": samples must be >= 1, got " + std::to_string(options.samples));
  detail::check_batch(name, x);
  ModeRestorer<T> restore(model);
  model.eval();
  bool any_dropout = false;
  for (auto& [path, m] : model.named_modules()) {
    if (dynamic_cast<nn::Dropout<T>*>(m) != nullptr || dynamic_cast<nn::Dropout2d<T>*>(m) != nullptr) {
      m->train(true);
      any_dropout = true;
    }
  }
  if (!any_dropout) {
    throw ValueError(std::string(name) + ": the model (" + model.type_name() +
                     ") has no Dropout module, so every pass would give the same prediction");
  }
  NoGradGuard no_grad;
  const Tensor<T> input = x.detach();
  Tensor<T> sum_probs, sum_neg_entropy;
  for (int64_t s = 0; s < options.samples; ++s) {
    const Tensor<T> logits = model(input);
    if (logits.dim() != 2 || logits.size(0) != x.size(0)) {
      throw ShapeError(std::string(name) + ": the model must map a batch of " + std::to_string(x.size(0)) +
                       " inputs to logits [N, C], got " + logits.shape().str());
    }
    const Tensor<T> logp = log_softmax(logits, 1);
    const Tensor<T> p = exp(logp);
    const Tensor<T> neg_entropy = (p * logp).sum(1);
    sum_probs = s == 0 ? p : sum_probs + p;
    sum_neg_entropy = s == 0 ? neg_entropy : sum_neg_entropy + neg_entropy;
  }
  Uncertainty<T> out;
  const T count = static_cast<T>(options.samples);
  out.mean_probs = sum_probs / count;
  // 0 log 0 = 0: probabilities that underflowed to zero add nothing.
  const Tensor<T> safe = clamp(out.mean_probs, static_cast<double>(std::numeric_limits<T>::min()), 1.0);
  out.entropy = -(out.mean_probs * log(safe)).sum(1);
  out.mutual_information = clamp(out.entropy + sum_neg_entropy / count, 0.0, std::numeric_limits<double>::infinity());
  return out;
}

#define EMBER_EXPLAIN_INSTANTIATE(T)                                                                                  \
  template Tensor<T> saliency<T>(const Forward<T>&, const Tensor<T>&, const Tensor<int64_t>&, SaliencyOptions);       \
  template Tensor<T> saliency<T>(nn::Module<T>&, const Tensor<T>&, const Tensor<int64_t>&, SaliencyOptions);          \
  template Attribution<T> integrated_gradients<T>(const Forward<T>&, const Tensor<T>&, const Tensor<int64_t>&,        \
                                                  const IntegratedGradientsOptions<T>&);                              \
  template Attribution<T> integrated_gradients<T>(nn::Module<T>&, const Tensor<T>&, const Tensor<int64_t>&,           \
                                                  const IntegratedGradientsOptions<T>&);                              \
  template Tensor<T> grad_cam<T>(nn::Module<T>&, nn::Module<T>&, const Tensor<T>&, const Tensor<int64_t>&,            \
                                 GradCamOptions);                                                                      \
  template Tensor<T> occlusion<T>(const Forward<T>&, const Tensor<T>&, const Tensor<int64_t>&, const OcclusionOptions&); \
  template Tensor<T> occlusion<T>(nn::Module<T>&, const Tensor<T>&, const Tensor<int64_t>&, const OcclusionOptions&);    \
  template Uncertainty<T> mc_dropout<T>(nn::Module<T>&, const Tensor<T>&, MonteCarloOptions);
EMBER_EXPLAIN_INSTANTIATE(float)
EMBER_EXPLAIN_INSTANTIATE(double)
#undef EMBER_EXPLAIN_INSTANTIATE

}  // namespace ember::explain

