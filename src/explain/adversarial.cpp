#include "ember/explain/adversarial.hpp"

#include <string>

#include "checks.hpp"
#include "ember/autograd/autograd.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"
#include "ember/nn/functional.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"

namespace ember::adversarial {
namespace {

template <FloatingElement T>
explain::Forward<T> forward_of(nn::Module<T>& model) {
  return [&model](const Tensor<T>& x) { return model(x); };
}

// d loss / d x at `x` (the loss of the model's logits and `y`).
template <FloatingElement T>
Tensor<T> input_gradient(const char* attack, const explain::Forward<T>& model, const Tensor<T>& x,
                         const Tensor<int64_t>& y, const Loss<T>& loss) {
  autograd::AutoGradMode enable(true);
  Tensor<T> input = x.detach().clone();
  input.requires_grad_(true);
  const Tensor<T> logits = model(input);
  explain::detail::target_logits(attack, logits, y);  // checks the shape and the labels' range
  const Tensor<T> value = loss ? loss(logits, y) : nn::functional::cross_entropy(logits, y);
  if (value.numel() != 1)
    throw ShapeError(std::string(attack) + ": the loss must be a scalar, got " + value.shape().str());
  return autograd::grad({value}, {input})[0];
}

void check_range(const char* attack, double lo, double hi) {
  if (!(lo <= hi)) throw ValueError(std::string(attack) + ": clamp_min must be <= clamp_max");
}

}  // namespace

template <FloatingElement T>
Tensor<T> fgsm(const explain::Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& y, double eps,
               const FgsmOptions<T>& options) {
  explain::detail::check_inputs("fgsm", x, y);
  if (!(eps >= 0)) throw ValueError("fgsm: eps must be >= 0, got " + std::to_string(eps));
  check_range("fgsm", options.clamp_min, options.clamp_max);
  const Tensor<T> grad = input_gradient("fgsm", model, x, y, options.loss);
  NoGradGuard no_grad;
  const Tensor<T> step = sign(grad) * static_cast<T>(options.targeted ? -eps : eps);
  return clamp(x.detach() + step, options.clamp_min, options.clamp_max);
}

template <FloatingElement T>
Tensor<T> fgsm(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& y, double eps, const FgsmOptions<T>& options) {
  return fgsm(forward_of(model), x, y, eps, options);
}

template <FloatingElement T>
Tensor<T> pgd(const explain::Forward<T>& model, const Tensor<T>& x, const Tensor<int64_t>& y, const PgdOptions<T>& o) {
  explain::detail::check_inputs("pgd", x, y);
  if (!(o.eps >= 0) || !(o.alpha >= 0)) {
    throw ValueError("pgd: eps and alpha must be >= 0, got eps=" + std::to_string(o.eps) + ", alpha=" + std::to_string(o.alpha));
  }
  if (o.steps < 1) throw ValueError("pgd: steps must be >= 1, got " + std::to_string(o.steps));
  check_range("pgd", o.clamp_min, o.clamp_max);
  NoGradGuard no_grad;
  const Tensor<T> origin = x.detach();
  const Tensor<T> lower = origin - static_cast<T>(o.eps), upper = origin + static_cast<T>(o.eps);
  Tensor<T> adv = origin.clone();
  if (o.random_start) {
    adv = clamp(adv + (rand<T>(origin.shape(), false, o.generator) * static_cast<T>(2 * o.eps) - static_cast<T>(o.eps)),
                o.clamp_min, o.clamp_max);
  }
  for (int64_t s = 0; s < o.steps; ++s) {
    const Tensor<T> grad = input_gradient("pgd", model, adv, y, o.loss);
    const Tensor<T> step = sign(grad) * static_cast<T>(o.targeted ? -o.alpha : o.alpha);
    adv = clamp(minimum(maximum(adv + step, lower), upper), o.clamp_min, o.clamp_max);
  }
  return adv;
}

template <FloatingElement T>
Tensor<T> pgd(nn::Module<T>& model, const Tensor<T>& x, const Tensor<int64_t>& y, const PgdOptions<T>& options) {
  return pgd(forward_of(model), x, y, options);
}

#define EMBER_ADVERSARIAL_INSTANTIATE(T)                                                                       \
  template Tensor<T> fgsm<T>(const explain::Forward<T>&, const Tensor<T>&, const Tensor<int64_t>&, double,    \
                             const FgsmOptions<T>&);                                                           \
  template Tensor<T> fgsm<T>(nn::Module<T>&, const Tensor<T>&, const Tensor<int64_t>&, double, const FgsmOptions<T>&); \
  template Tensor<T> pgd<T>(const explain::Forward<T>&, const Tensor<T>&, const Tensor<int64_t>&, const PgdOptions<T>&); \
  template Tensor<T> pgd<T>(nn::Module<T>&, const Tensor<T>&, const Tensor<int64_t>&, const PgdOptions<T>&);
EMBER_ADVERSARIAL_INSTANTIATE(float)
EMBER_ADVERSARIAL_INSTANTIATE(double)
#undef EMBER_ADVERSARIAL_INSTANTIATE

}  // namespace ember::adversarial
