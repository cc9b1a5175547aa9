#pragma once
// Why a network decided what it did, and how sure it is: Captum's attribution methods (saliency,
// integrated gradients, Grad-CAM, occlusion) and Monte Carlo dropout, as free functions over a
// module (or any callable) that maps a batch of inputs to logits [N, C].
//
//   Tensor<int64_t> target = logits.argmax(1);
//   auto ig = ember::explain::integrated_gradients(net, x, target);   // ig.attributions, ig.delta
//   Tensor<float> cam = ember::explain::grad_cam(net, *conv2, x, target);
//
// Every method leaves the model as it found it (mode, hooks, parameter gradients) and the caller's
// input untouched, also when it throws. `target` holds one class index per sample.
#include <cstdint>
#include <functional>
#include <vector>

#include "ember/core/tensor.hpp"
#include "ember/nn/module.hpp"

namespace ember::explain {

/// A batch of inputs to logits [N, C]; a module converts to it.
template <FloatingElement T>
using Forward = std::function<Tensor<T>(const Tensor<T>&)>;

struct SaliencyOptions {
  bool abs = true;  // Captum's default: the magnitude of the gradient
};

/// The integration rules of Captum's integrated gradients (its points and weights).
enum class Method { RiemannLeft, RiemannRight, RiemannMiddle, RiemannTrapezoid, GaussLegendre };

template <FloatingElement T>
struct IntegratedGradientsOptions {
  Tensor<T> baseline;  // undefined: zeros; else x's shape, or x's without the batch dimension
  int64_t steps = 50;
  Method method = Method::GaussLegendre;
  /// At most this many scaled inputs per forward pass (0: all steps times the batch at once).
  int64_t internal_batch_size = 0;
};

template <FloatingElement T>
struct Attribution {
  Tensor<T> attributions;  // the input's shape
  Tensor<T> delta;         // [N]: sum of attributions - (F(x) - F(baseline)) for the target
};

struct GradCamOptions {
  bool relu = true;      // ReLU of the weighted sum (Grad-CAM's definition)
  bool upsample = true;  // bilinear (align_corners = false) to the input's height and width
};

struct OcclusionOptions {
  std::vector<int64_t> window = {1, 4, 4};  // per input dimension after the batch
  std::vector<int64_t> stride = {1, 2, 2};
  double baseline = 0.0;
  int64_t windows_per_pass = 16;  // occluded copies evaluated per forward pass
};

/// The integration points (alphas in [0, 1]) and weights of `method` for `steps` steps, as Captum
/// computes them (Riemann trapezoid: linspace(0, 1, n) with 1/n weights halved at the ends;
/// Gauss-Legendre: the nodes and weights of leggauss(n) mapped to [0, 1]).
std::vector<double> integration_points(Method method, int64_t steps);
std::vector<double> integration_weights(Method method, int64_t steps);

/// d logit[target] / d x, in x's shape (absolute values with abs).
template <FloatingElement T>
Tensor<T> saliency(const Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                   SaliencyOptions options = {});
template <FloatingElement T>
Tensor<T> saliency(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                   SaliencyOptions options = {});

/// (x - baseline) times the path integral of the target logit's gradient from baseline to x.
template <FloatingElement T>
Attribution<T> integrated_gradients(const Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                                    const IntegratedGradientsOptions<T>& options = {});
template <FloatingElement T>
Attribution<T> integrated_gradients(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                                    const IntegratedGradientsOptions<T>& options = {});

/// ReLU(sum_k mean_hw(d logit[target] / d A_k) * A_k) for the output A [N, K, h, w] of `layer` (a
/// module inside `model`), [N, H, W] after upsampling to x's size (or [N, h, w]).
template <FloatingElement T>
Tensor<T> grad_cam(nn::Module<T>& model, nn::Module<T>& layer, const Tensor<T>& x, const Tensor<int64_t>& target,
                   GradCamOptions options = {});

/// For each input element: the mean, over the windows that cover it, of the drop of the target
/// logit when the window is set to the baseline. Windows start every `stride` and the last one
/// in each dimension may be cut at the edge (ceil((D - window) / stride) + 1 per dimension).
template <FloatingElement T>
Tensor<T> occlusion(const Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                    const OcclusionOptions& options = {});
template <FloatingElement T>
Tensor<T> occlusion(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& target,
                    const OcclusionOptions& options = {});

// ---- Uncertainty ---------------------------------------------------------------------------------

struct MonteCarloOptions {
  int64_t samples = 100;
};

template <FloatingElement T>
struct Uncertainty {
  Tensor<T> mean_probs;          // [N, C]: the softmax averaged over the passes
  Tensor<T> entropy;             // [N]: of mean_probs (predictive entropy, nats)
  Tensor<T> mutual_information;  // [N]: entropy minus the mean entropy of each pass (epistemic)
};

/// Monte Carlo dropout (Gal and Ghahramani): `samples` passes with dropout active and everything
/// else (batch norm) in eval mode; every module's mode is restored afterwards.
template <FloatingElement T>
Uncertainty<T> mc_dropout(nn::Module<T>& model, const Tensor<T>& x, MonteCarloOptions options = {});

}  // namespace ember::explain
