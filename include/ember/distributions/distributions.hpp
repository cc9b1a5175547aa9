#pragma once
// ember::distributions: torch.distributions' Normal, Uniform, Exponential, Laplace, Bernoulli and
// Categorical, with
// kl_divergence between two of a kind. Parameters are tensors that broadcast against each other
// (their broadcast shape is the batch shape); log_prob, entropy, cdf, the moments, rsample and
// kl_divergence are built from differentiable tensor ops, so gradients reach the parameters (a VAE's
// reparameterised sample, a policy gradient's log-probability). Arguments are validated as torch
// does by default (validate_args): a parameter or value outside its support throws ValueError
// naming the distribution. Sampling takes an optional Generator (the global one otherwise);
// samples follow ember's random streams, not torch's.
//
//   distributions::Normal<float> q(mu, sigma);
//   Tensor<float> z = q.rsample();                       // mu + sigma * eps, differentiable
//   Tensor<float> kl = distributions::kl_divergence(q, distributions::Normal<float>(zeros, ones));
//   distributions::Categorical<float> pi({.logits = policy_logits});
//   Tensor<int64_t> a = pi.sample();
//   Tensor<float> loss = -(pi.log_prob(a) * advantage).mean();
#include <string>

#include "ember/core/generator.hpp"
#include "ember/core/tensor.hpp"

namespace ember::distributions {

/// The normal distribution N(loc, scale^2), scale > 0 (torch.distributions.Normal).
template <FloatingElement T>
class Normal {
 public:
  Normal(const Tensor<T>& loc, const Tensor<T>& scale);
  Normal(double loc, double scale);

  const Shape& batch_shape() const { return batch_shape_; }
  const Tensor<T>& loc() const { return loc_; }
  const Tensor<T>& scale() const { return scale_; }
  Tensor<T> mean() const { return loc_; }
  Tensor<T> mode() const { return loc_; }
  Tensor<T> stddev() const { return scale_; }
  Tensor<T> variance() const;

  /// sample_shape + batch_shape values; rsample is loc + scale * eps (eps standard normal), with
  /// gradients to loc and scale; sample is the same without them.
  Tensor<T> rsample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  Tensor<T> sample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  /// value broadcasts against the batch shape; NaN values throw.
  Tensor<T> log_prob(const Tensor<T>& value) const;
  Tensor<T> cdf(const Tensor<T>& value) const;
  /// The value whose cdf is q: loc + scale sqrt(2) erfinv(2q - 1), -inf / +inf at 0 / 1; a q
  /// outside [0, 1] (or NaN) throws.
  Tensor<T> icdf(const Tensor<T>& q) const;
  Tensor<T> entropy() const;

 private:
  Tensor<T> loc_, scale_;
  Shape batch_shape_;
};

/// The continuous uniform distribution on [low, high), low < high (torch.distributions.Uniform).
template <FloatingElement T>
class Uniform {
 public:
  Uniform(const Tensor<T>& low, const Tensor<T>& high);
  Uniform(double low, double high);

  const Shape& batch_shape() const { return batch_shape_; }
  const Tensor<T>& low() const { return low_; }
  const Tensor<T>& high() const { return high_; }
  Tensor<T> mean() const;
  Tensor<T> stddev() const;
  Tensor<T> variance() const;

  /// low + u * (high - low), u uniform in [0, 1): gradients to low and high.
  Tensor<T> rsample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  Tensor<T> sample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  /// -log(high - low); a value outside [low, high) throws.
  Tensor<T> log_prob(const Tensor<T>& value) const;
  /// (value - low) / (high - low), clamped to [0, 1].
  Tensor<T> cdf(const Tensor<T>& value) const;
  /// low + q (high - low); a q outside [0, 1] (or NaN) throws.
  Tensor<T> icdf(const Tensor<T>& q) const;
  Tensor<T> entropy() const;

 private:
  Tensor<T> low_, high_;
  Shape batch_shape_;
};

/// The exponential distribution with density rate exp(-rate x) on [0, inf), rate > 0
/// (torch.distributions.Exponential).
template <FloatingElement T>
class Exponential {
 public:
  explicit Exponential(const Tensor<T>& rate);
  explicit Exponential(double rate);

  const Shape& batch_shape() const { return batch_shape_; }
  const Tensor<T>& rate() const { return rate_; }
  Tensor<T> mean() const;
  Tensor<T> mode() const;
  Tensor<T> stddev() const;
  Tensor<T> variance() const;

  /// e / rate, e a standard exponential draw (-log(1 - u), u uniform in [0, 1)): gradients to rate.
  Tensor<T> rsample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  Tensor<T> sample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  /// log(rate) - rate value; a negative or NaN value throws.
  Tensor<T> log_prob(const Tensor<T>& value) const;
  Tensor<T> cdf(const Tensor<T>& value) const;
  /// -log1p(-q) / rate; a q outside [0, 1] throws.
  Tensor<T> icdf(const Tensor<T>& q) const;
  Tensor<T> entropy() const;

 private:
  Tensor<T> rate_;
  Shape batch_shape_;
};

/// The Laplace distribution with density exp(-|x - loc| / scale) / (2 scale), scale > 0
/// (torch.distributions.Laplace).
template <FloatingElement T>
class Laplace {
 public:
  Laplace(const Tensor<T>& loc, const Tensor<T>& scale);
  Laplace(double loc, double scale);

  const Shape& batch_shape() const { return batch_shape_; }
  const Tensor<T>& loc() const { return loc_; }
  const Tensor<T>& scale() const { return scale_; }
  Tensor<T> mean() const { return loc_; }
  Tensor<T> mode() const { return loc_; }
  Tensor<T> stddev() const;
  Tensor<T> variance() const;

  /// loc - scale sign(u) log1p(-|u|), u uniform in [eps - 1, 1) as torch draws it: gradients to
  /// loc and scale.
  Tensor<T> rsample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  Tensor<T> sample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  /// -log(2 scale) - |value - loc| / scale; a NaN value throws.
  Tensor<T> log_prob(const Tensor<T>& value) const;
  Tensor<T> cdf(const Tensor<T>& value) const;
  /// loc - scale sign(q - 1/2) log1p(-2 |q - 1/2|); a q outside [0, 1] throws.
  Tensor<T> icdf(const Tensor<T>& q) const;
  Tensor<T> entropy() const;

 private:
  Tensor<T> loc_, scale_;
  Shape batch_shape_;
};

/// Bernoulli and Categorical take their parameters as probabilities or as logits, exactly one
/// of the two (as torch's probs= / logits= keywords): `Bernoulli<float>({.logits = l})`.
template <FloatingElement T>
struct ProbsOrLogits {
  Tensor<T> probs;
  Tensor<T> logits;
};

/// 1 with probability probs, 0 otherwise (torch.distributions.Bernoulli). From probs in [0, 1],
/// logits = log(p) - log1p(-p) on p clamped to [eps, 1 - eps] (torch's probs_to_logits); from
/// logits, probs = sigmoid(logits).
template <FloatingElement T>
class Bernoulli {
 public:
  explicit Bernoulli(const ProbsOrLogits<T>& params);

  const Shape& batch_shape() const { return batch_shape_; }
  const Tensor<T>& probs() const { return probs_; }
  const Tensor<T>& logits() const { return logits_; }
  Tensor<T> mean() const { return probs_; }
  Tensor<T> variance() const;

  /// Zeros and ones (no gradient: Bernoulli has no reparameterised sample).
  Tensor<T> sample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  /// value * logits - softplus(logits), computed without overflow; values other than 0 and 1 throw.
  Tensor<T> log_prob(const Tensor<T>& value) const;
  Tensor<T> entropy() const;

 private:
  Tensor<T> probs_, logits_;
  Shape batch_shape_;
};

/// One of K categories, the last dimension of probs or logits (torch.distributions.Categorical):
/// probs are normalised to sum 1 (non-negative, not all zero), logits to logsumexp 0. Values are
/// int64 category indices; the batch shape is the parameters' shape without its last dimension.
template <FloatingElement T>
class Categorical {
 public:
  explicit Categorical(const ProbsOrLogits<T>& params);

  const Shape& batch_shape() const { return batch_shape_; }
  int64_t num_categories() const { return num_categories_; }
  /// Normalised: probs sum to 1 and logits are log(probs) along the last dimension.
  const Tensor<T>& probs() const { return probs_; }
  const Tensor<T>& logits() const { return logits_; }

  /// sample_shape + batch_shape indices, drawn by inverting each row's cumulative probabilities.
  Tensor<int64_t> sample(const Shape& sample_shape = {}, Generator* gen = nullptr) const;
  /// logits[..., value]; value broadcasts against the batch shape; indices outside [0, K) throw.
  Tensor<T> log_prob(const Tensor<int64_t>& value) const;
  Tensor<T> entropy() const;

 private:
  Tensor<T> probs_, logits_;
  Shape batch_shape_;
  int64_t num_categories_ = 0;
};

/// KL(p || q) per batch element, torch.distributions.kl_divergence's closed forms; +inf where q
/// gives zero probability to what p can draw (Bernoulli, Categorical: a zero probability;
/// Uniform: p's interval not inside q's).
template <FloatingElement T>
Tensor<T> kl_divergence(const Normal<T>& p, const Normal<T>& q);
template <FloatingElement T>
Tensor<T> kl_divergence(const Uniform<T>& p, const Uniform<T>& q);
template <FloatingElement T>
Tensor<T> kl_divergence(const Exponential<T>& p, const Exponential<T>& q);
template <FloatingElement T>
Tensor<T> kl_divergence(const Laplace<T>& p, const Laplace<T>& q);
template <FloatingElement T>
Tensor<T> kl_divergence(const Bernoulli<T>& p, const Bernoulli<T>& q);
template <FloatingElement T>
Tensor<T> kl_divergence(const Categorical<T>& p, const Categorical<T>& q);

}  // namespace ember::distributions
