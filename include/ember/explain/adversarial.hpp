#pragma once
// Adversarial examples: inputs changed within a small L-infinity budget so that the model errs
// (FGSM, PGD), for measuring robustness and for adversarial training.
//
//   Tensor<float> adv = ember::adversarial::fgsm(net, x, y, 0.1);   // in [0, 1], |adv - x| <= 0.1
#include <cstdint>
#include <functional>

#include "ember/core/generator.hpp"
#include "ember/core/tensor.hpp"
#include "ember/explain/explain.hpp"
#include "ember/nn/module.hpp"

namespace ember::adversarial {

/// The loss an attack ascends: logits [N, C] and the labels to a scalar. Cross-entropy by default.
template <FloatingElement T>
using Loss = std::function<Tensor<T>(const Tensor<T>& logits, const Tensor<int64_t>& labels)>;

template <FloatingElement T>
struct FgsmOptions {
  double clamp_min = 0.0, clamp_max = 1.0;  // the valid input range
  bool targeted = false;                    // step toward the labels instead of away
  Loss<T> loss;                             // empty: cross-entropy
};

template <FloatingElement T>
struct PgdOptions {
  double eps = 0.1;     // L-infinity radius
  double alpha = 0.01;  // step size
  int64_t steps = 10;
  bool random_start = true;
  double clamp_min = 0.0, clamp_max = 1.0;
  bool targeted = false;
  Loss<T> loss;
  Generator* generator = nullptr;  // for the random start; the default generator when null
};

/// Goodfellow et al.'s fast gradient sign method: clamp(x + eps * sign(d loss / d x)) (minus,
/// toward `y`, when targeted). Returns the adversarial batch, detached, in x's shape.
template <FloatingElement T>
Tensor<T> fgsm(const explain::Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& y, double eps,
               const FgsmOptions<T>& options = {});
template <FloatingElement T>
Tensor<T> fgsm(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& y, double eps,
               const FgsmOptions<T>& options = {});

/// Madry et al.'s projected gradient descent in the L-infinity ball of radius eps around x.
template <FloatingElement T>
Tensor<T> pgd(const explain::Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& y,
              const PgdOptions<T>& options = {});
template <FloatingElement T>
Tensor<T> pgd(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& y, const PgdOptions<T>& options = {});

}  // namespace ember::adversarial
