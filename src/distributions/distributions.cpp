// torch.distributions' Normal, Uniform, Bernoulli and Categorical: each formula is torch's, written
// with ember's differentiable ops, so values match it and gradients flow to the parameters.
#include "ember/distributions/distributions.hpp"

#include <cmath>
#include <functional>
#include <limits>
#include <mutex>
#include <numbers>
#include <vector>

#include "../ops/common.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/ops/activation.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/reduction.hpp"

namespace ember::distributions {

namespace {

using detail::broadcast_shapes;
using detail::cat_str;

template <class T>
void require(const Tensor<T>& t, const char* dist, const char* what) {
  if (!t.defined()) throw ValueError(cat_str(dist, ": ", what, " is undefined"));
}

// Throws unless ok(v) for every element v of t, naming the first that is not.
template <class T>
void check_each(const Tensor<T>& t, const char* dist, const char* what, const char* must,
                const std::function<bool(double)>& ok) {
  const std::vector<T> v = t.detach().contiguous().to_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!ok(static_cast<double>(v[i]))) {
      throw ValueError(cat_str(dist, ": ", what, " must be ", must, ", got ", static_cast<double>(v[i]),
                               " at element ", i, " of ", t.shape()));
    }
  }
}

bool not_nan(double v) { return !std::isnan(v); }
bool in_unit_interval(double v) { return v >= 0 && v <= 1; }

Shape extended(const Shape& sample_shape, const Shape& batch_shape) {
  Shape s = sample_shape;
  for (int64_t i = 0; i < batch_shape.size(); ++i) s.push_back(batch_shape[i]);
  return s;
}

// torch's clamp_probs: probabilities kept eps away from 0 and 1 before a log.
template <class T>
Tensor<T> clamp_probs(const Tensor<T>& p) {
  const double eps = std::numeric_limits<T>::epsilon();
  return clamp(p, eps, 1.0 - eps);
}

template <class T>
Tensor<T> as_mask(const Tensor<uint8_t>& m) {
  return m.template to<T>();
}

// Binary cross entropy with logits, elementwise: -(y log sigmoid(l) + (1 - y) log sigmoid(-l)),
// without overflow for large |l| and with the gradient sigmoid(l) - y everywhere (the form
// max(l, 0) - l y + log1p(exp(-|l|)) has none at l = 0, which probs 0.5 give).
template <class T>
Tensor<T> bce_with_logits(const Tensor<T>& l, const Tensor<T>& y) {
  return -(y * logsigmoid(l) + (1.0 - y) * logsigmoid(-l));
}

// A location-scale family's parameters, checked (loc a number, scale positive) and broadcast
// into `loc_out` and `scale_out`; returns the batch shape.
template <class T>
Shape location_and_scale(const char* dist, const Tensor<T>& loc, const Tensor<T>& scale, Tensor<T>& loc_out,
                         Tensor<T>& scale_out) {
  require(loc, dist, "loc");
  require(scale, dist, "scale");
  const Shape batch_shape = broadcast_shapes(loc.shape(), scale.shape(), dist);
  check_each(loc, dist, "loc", "a number", not_nan);
  check_each(scale, dist, "scale", "positive", [](double v) { return v > 0; });
  loc_out = loc.expand(batch_shape);
  scale_out = scale.expand(batch_shape);
  return batch_shape;
}

void exactly_one(bool probs, bool logits, const char* dist) {
  if (probs == logits) {
    throw ValueError(cat_str(dist, ": give exactly one of probs and logits (",
                             probs ? "both were given" : "neither was given", ")"));
  }
}

}  // namespace

// ---- Normal -----------------------------------------------------------------------------------

template <FloatingElement T>
Normal<T>::Normal(const Tensor<T>& loc, const Tensor<T>& scale)
    : batch_shape_(location_and_scale("Normal", loc, scale, loc_, scale_)) {}

template <FloatingElement T>
Normal<T>::Normal(double loc, double scale) : Normal(scalar_tensor<T>(T(loc)), scalar_tensor<T>(T(scale))) {}

template <FloatingElement T>
Tensor<T> Normal<T>::variance() const {
  return scale_.square();
}

template <FloatingElement T>
Tensor<T> Normal<T>::rsample(const Shape& sample_shape, Generator* gen) const {
  const Tensor<T> eps = randn<T>(extended(sample_shape, batch_shape_), gen);
  return loc_ + eps * scale_;
}

template <FloatingElement T>
Tensor<T> Normal<T>::sample(const Shape& sample_shape, Generator* gen) const {
  NoGradGuard no_grad;
  return rsample(sample_shape, gen).detach();
}

template <FloatingElement T>
Tensor<T> Normal<T>::log_prob(const Tensor<T>& value) const {
  require(value, "Normal.log_prob", "value");
  check_each(value, "Normal.log_prob", "value", "a number", not_nan);
  const Tensor<T> var = scale_.square();
  return -(value - loc_).square() / (var * 2.0) - scale_.log() - std::log(std::sqrt(2 * std::numbers::pi));
}

template <FloatingElement T>
Tensor<T> Normal<T>::cdf(const Tensor<T>& value) const {
  require(value, "Normal.cdf", "value");
  check_each(value, "Normal.cdf", "value", "a number", not_nan);
  return (erf((value - loc_) * reciprocal(scale_) / std::sqrt(2.0)) + 1.0) * 0.5;
}

template <FloatingElement T>
Tensor<T> Normal<T>::icdf(const Tensor<T>& q) const {
  require(q, "Normal.icdf", "q");
  check_each(q, "Normal.icdf", "q", "a probability in [0, 1]", in_unit_interval);
  return loc_ + scale_ * erfinv(q * 2.0 - 1.0) * std::sqrt(2.0);
}

template <FloatingElement T>
Tensor<T> Normal<T>::entropy() const {
  return scale_.log() + (0.5 + 0.5 * std::log(2 * std::numbers::pi));
}

// ---- Uniform ----------------------------------------------------------------------------------

template <FloatingElement T>
Uniform<T>::Uniform(const Tensor<T>& low, const Tensor<T>& high) {
  require(low, "Uniform", "low");
  require(high, "Uniform", "high");
  batch_shape_ = broadcast_shapes(low.shape(), high.shape(), "Uniform");
  low_ = low.expand(batch_shape_);
  high_ = high.expand(batch_shape_);
  const std::vector<T> lo = low_.detach().contiguous().to_vector(), hi = high_.detach().contiguous().to_vector();
  for (size_t i = 0; i < lo.size(); ++i) {
    if (!(lo[i] < hi[i])) {
      throw ValueError(cat_str("Uniform: low must be less than high, got low ", static_cast<double>(lo[i]),
                               " and high ", static_cast<double>(hi[i]), " at element ", i, " of ", batch_shape_));
    }
  }
}

template <FloatingElement T>
Uniform<T>::Uniform(double low, double high) : Uniform(scalar_tensor<T>(T(low)), scalar_tensor<T>(T(high))) {}

template <FloatingElement T>
Tensor<T> Uniform<T>::mean() const {
  return (high_ + low_) / 2.0;
}

template <FloatingElement T>
Tensor<T> Uniform<T>::stddev() const {
  return (high_ - low_) / std::sqrt(12.0);
}

template <FloatingElement T>
Tensor<T> Uniform<T>::variance() const {
  return (high_ - low_).square() / 12.0;
}

template <FloatingElement T>
Tensor<T> Uniform<T>::rsample(const Shape& sample_shape, Generator* gen) const {
  const Tensor<T> u = rand<T>(extended(sample_shape, batch_shape_), gen);
  return low_ + u * (high_ - low_);
}

template <FloatingElement T>
Tensor<T> Uniform<T>::sample(const Shape& sample_shape, Generator* gen) const {
  NoGradGuard no_grad;
  return rsample(sample_shape, gen).detach();
}

namespace {

// torch's support check for Uniform: low <= value <= high (its interval is closed; log_prob is
// then -inf at high itself).
template <class T>
void check_in_interval(const Tensor<T>& value, const Tensor<T>& low, const Tensor<T>& high, const char* what) {
  require(value, what, "value");
  const Shape shape = broadcast_shapes(value.shape(), low.shape(), what);
  const std::vector<T> v = value.detach().expand(shape).contiguous().to_vector();
  const std::vector<T> lo = low.detach().expand(shape).contiguous().to_vector();
  const std::vector<T> hi = high.detach().expand(shape).contiguous().to_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!(lo[i] <= v[i] && v[i] <= hi[i])) {
      throw ValueError(cat_str(what, ": value ", static_cast<double>(v[i]), " at element ", i, " of ", shape,
                               " is outside the support [", static_cast<double>(lo[i]), ", ",
                               static_cast<double>(hi[i]), "]"));
    }
  }
}

}  // namespace

template <FloatingElement T>
Tensor<T> Uniform<T>::log_prob(const Tensor<T>& value) const {
  check_in_interval(value, low_, high_, "Uniform.log_prob");
  const Tensor<T> v = value.detach();
  const Tensor<T> inside = as_mask<T>(le(low_.detach(), v)) * as_mask<T>(gt(high_.detach(), v));
  return inside.log() - (high_ - low_).log();
}

template <FloatingElement T>
Tensor<T> Uniform<T>::cdf(const Tensor<T>& value) const {
  check_in_interval(value, low_, high_, "Uniform.cdf");
  return clamp((value - low_) / (high_ - low_), 0.0, 1.0);
}

template <FloatingElement T>
Tensor<T> Uniform<T>::icdf(const Tensor<T>& q) const {
  require(q, "Uniform.icdf", "q");
  check_each(q, "Uniform.icdf", "q", "a probability in [0, 1]", in_unit_interval);
  return q * (high_ - low_) + low_;
}

template <FloatingElement T>
Tensor<T> Uniform<T>::entropy() const {
  return (high_ - low_).log();
}

// ---- Exponential ------------------------------------------------------------------------------

template <FloatingElement T>
Exponential<T>::Exponential(const Tensor<T>& rate) {
  require(rate, "Exponential", "rate");
  check_each(rate, "Exponential", "rate", "positive", [](double v) { return v > 0; });
  rate_ = rate;
  batch_shape_ = rate.shape();
}

template <FloatingElement T>
Exponential<T>::Exponential(double rate) : Exponential(scalar_tensor<T>(T(rate))) {}

template <FloatingElement T>
Tensor<T> Exponential<T>::mean() const {
  return reciprocal(rate_);
}

template <FloatingElement T>
Tensor<T> Exponential<T>::mode() const {
  return zeros_like(rate_);
}

template <FloatingElement T>
Tensor<T> Exponential<T>::stddev() const {
  return reciprocal(rate_);
}

template <FloatingElement T>
Tensor<T> Exponential<T>::variance() const {
  return reciprocal(rate_).square();
}

template <FloatingElement T>
Tensor<T> Exponential<T>::rsample(const Shape& sample_shape, Generator* gen) const {
  Tensor<T> e;
  {
    NoGradGuard no_grad;
    e = -log1p(-rand<T>(extended(sample_shape, batch_shape_), gen));
  }
  return e / rate_;
}

template <FloatingElement T>
Tensor<T> Exponential<T>::sample(const Shape& sample_shape, Generator* gen) const {
  NoGradGuard no_grad;
  return rsample(sample_shape, gen).detach();
}

template <FloatingElement T>
Tensor<T> Exponential<T>::log_prob(const Tensor<T>& value) const {
  require(value, "Exponential.log_prob", "value");
  check_each(value, "Exponential.log_prob", "value", "non-negative", [](double v) { return v >= 0; });
  return rate_.log() - rate_ * value;
}

template <FloatingElement T>
Tensor<T> Exponential<T>::cdf(const Tensor<T>& value) const {
  require(value, "Exponential.cdf", "value");
  check_each(value, "Exponential.cdf", "value", "non-negative", [](double v) { return v >= 0; });
  return 1.0 - exp(-rate_ * value);
}

template <FloatingElement T>
Tensor<T> Exponential<T>::icdf(const Tensor<T>& q) const {
  require(q, "Exponential.icdf", "q");
  check_each(q, "Exponential.icdf", "q", "a probability in [0, 1]", in_unit_interval);
  return -log1p(-q) / rate_;
}

template <FloatingElement T>
Tensor<T> Exponential<T>::entropy() const {
  return 1.0 - rate_.log();
}

// ---- Laplace ----------------------------------------------------------------------------------

template <FloatingElement T>
Laplace<T>::Laplace(const Tensor<T>& loc, const Tensor<T>& scale)
    : batch_shape_(location_and_scale("Laplace", loc, scale, loc_, scale_)) {}

template <FloatingElement T>
Laplace<T>::Laplace(double loc, double scale) : Laplace(scalar_tensor<T>(T(loc)), scalar_tensor<T>(T(scale))) {}

template <FloatingElement T>
Tensor<T> Laplace<T>::stddev() const {
  return scale_ * std::sqrt(2.0);
}

template <FloatingElement T>
Tensor<T> Laplace<T>::variance() const {
  return scale_.square() * 2.0;
}

template <FloatingElement T>
Tensor<T> Laplace<T>::rsample(const Shape& sample_shape, Generator* gen) const {
  Tensor<T> sign_u, log_tail;
  {
    NoGradGuard no_grad;
    // u uniform in [eps - 1, 1), as torch draws it: never -1, whose log1p(-|u|) would be -inf.
    const double eps = std::numeric_limits<T>::epsilon();
    const Tensor<T> u = rand<T>(extended(sample_shape, batch_shape_), gen) * (2.0 - eps) + (eps - 1.0);
    sign_u = sign(u);
    log_tail = log1p(-abs(u));
  }
  return loc_ - scale_ * sign_u * log_tail;
}

template <FloatingElement T>
Tensor<T> Laplace<T>::sample(const Shape& sample_shape, Generator* gen) const {
  NoGradGuard no_grad;
  return rsample(sample_shape, gen).detach();
}

template <FloatingElement T>
Tensor<T> Laplace<T>::log_prob(const Tensor<T>& value) const {
  require(value, "Laplace.log_prob", "value");
  check_each(value, "Laplace.log_prob", "value", "a number", not_nan);
  return -(scale_ * 2.0).log() - (value - loc_).abs() / scale_;
}

template <FloatingElement T>
Tensor<T> Laplace<T>::cdf(const Tensor<T>& value) const {
  require(value, "Laplace.cdf", "value");
  check_each(value, "Laplace.cdf", "value", "a number", not_nan);
  const Tensor<T> d = value - loc_;
  return 0.5 - sign(d) * expm1(-d.abs() / scale_) * 0.5;
}

template <FloatingElement T>
Tensor<T> Laplace<T>::icdf(const Tensor<T>& q) const {
  require(q, "Laplace.icdf", "q");
  check_each(q, "Laplace.icdf", "q", "a probability in [0, 1]", in_unit_interval);
  const Tensor<T> term = q - 0.5;
  return loc_ - scale_ * sign(term) * log1p(term.abs() * -2.0);
}

template <FloatingElement T>
Tensor<T> Laplace<T>::entropy() const {
  return (scale_ * 2.0).log() + 1.0;
}

// ---- Bernoulli --------------------------------------------------------------------------------

template <FloatingElement T>
Bernoulli<T>::Bernoulli(const ProbsOrLogits<T>& params) {
  exactly_one(params.probs.defined(), params.logits.defined(), "Bernoulli");
  if (params.probs.defined()) {
    check_each(params.probs, "Bernoulli", "probs", "in [0, 1]", in_unit_interval);
    probs_ = params.probs;
    const Tensor<T> p = clamp_probs(probs_);
    logits_ = p.log() - log1p(-p);
  } else {
    check_each(params.logits, "Bernoulli", "logits", "a number", not_nan);
    logits_ = params.logits;
    probs_ = sigmoid(logits_);
  }
  batch_shape_ = probs_.shape();
}

template <FloatingElement T>
Tensor<T> Bernoulli<T>::variance() const {
  return probs_ * (1.0 - probs_);
}

template <FloatingElement T>
Tensor<T> Bernoulli<T>::sample(const Shape& sample_shape, Generator* gen) const {
  NoGradGuard no_grad;
  return bernoulli(probs_.detach().expand(extended(sample_shape, batch_shape_)).contiguous(), gen);
}

template <FloatingElement T>
Tensor<T> Bernoulli<T>::log_prob(const Tensor<T>& value) const {
  require(value, "Bernoulli.log_prob", "value");
  check_each(value, "Bernoulli.log_prob", "value", "0 or 1", [](double v) { return v == 0 || v == 1; });
  const Shape shape = broadcast_shapes(logits_.shape(), value.shape(), "Bernoulli.log_prob");
  return -bce_with_logits(logits_.expand(shape), value.expand(shape));
}

template <FloatingElement T>
Tensor<T> Bernoulli<T>::entropy() const {
  return bce_with_logits(logits_, probs_);
}

// ---- Categorical ------------------------------------------------------------------------------

template <FloatingElement T>
Categorical<T>::Categorical(const ProbsOrLogits<T>& params) {
  exactly_one(params.probs.defined(), params.logits.defined(), "Categorical");
  const Tensor<T>& given = params.probs.defined() ? params.probs : params.logits;
  const char* what = params.probs.defined() ? "probs" : "logits";
  if (given.dim() < 1 || given.shape()[given.dim() - 1] < 1) {
    throw ShapeError(cat_str("Categorical: ", what, " ", given.shape(),
                             " must have at least one dimension, the categories, of size >= 1"));
  }
  num_categories_ = given.shape()[given.dim() - 1];
  if (params.probs.defined()) {
    check_each(given, "Categorical", "probs", "non-negative and finite",
               [](double v) { return v >= 0 && std::isfinite(v); });
    const Tensor<T> total = given.sum(-1, true);
    check_each(total, "Categorical", "the sum of probs along the last dimension", "positive",
               [](double v) { return v > 0; });
    probs_ = given / total;
    logits_ = clamp_probs(probs_).log();
  } else {
    check_each(given, "Categorical", "logits", "a number or -inf",
               [](double v) { return !std::isnan(v) && v != std::numeric_limits<double>::infinity(); });
    logits_ = given - given.logsumexp(-1, true);
    probs_ = softmax(logits_, -1);
  }
  Shape batch;
  for (int64_t i = 0; i + 1 < given.dim(); ++i) batch.push_back(given.shape()[i]);
  batch_shape_ = batch;
}

template <FloatingElement T>
Tensor<int64_t> Categorical<T>::sample(const Shape& sample_shape, Generator* gen) const {
  const int64_t k = num_categories_;
  const std::vector<T> p = probs_.detach().contiguous().to_vector();
  const int64_t rows = static_cast<int64_t>(p.size()) / k;
  Tensor<int64_t> out = zeros<int64_t>(extended(sample_shape, batch_shape_));
  int64_t* o = out.data_ptr();
  const int64_t draws = out.numel() / std::max<int64_t>(rows, 1);
  Generator& g = gen != nullptr ? *gen : default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  for (int64_t s = 0; s < draws; ++s) {
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p.data() + r * k;
      const double u = g.uniform();
      // The first category whose cumulative probability passes u; rounding that leaves u past
      // the total picks the last category with a positive probability.
      double cumulative = 0;
      int64_t pick = -1;
      for (int64_t c = 0; c < k && pick < 0; ++c) {
        cumulative += static_cast<double>(row[c]);
        if (u < cumulative && row[c] > 0) pick = c;
      }
      for (int64_t c = k - 1; pick < 0; --c)
        if (c == 0 || row[c] > 0) pick = c;
      o[s * rows + r] = pick;
    }
  }
  return out;
}

template <FloatingElement T>
Tensor<T> Categorical<T>::log_prob(const Tensor<int64_t>& value) const {
  require(value, "Categorical.log_prob", "value");
  const std::vector<int64_t> v = value.contiguous().to_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0 || v[i] >= num_categories_) {
      throw ValueError(cat_str("Categorical.log_prob: value ", v[i], " at element ", i, " of ", value.shape(),
                               " is not a category in [0, ", num_categories_, ")"));
    }
  }
  const Tensor<int64_t> index = value.unsqueeze(-1);
  Shape shape = broadcast_shapes(index.shape(), logits_.shape(), "Categorical.log_prob");
  Shape index_shape = shape;
  index_shape[index_shape.size() - 1] = 1;
  return logits_.expand(shape).gather(-1, index.expand(index_shape).contiguous()).squeeze(-1);
}

template <FloatingElement T>
Tensor<T> Categorical<T>::entropy() const {
  const Tensor<T> logits = clamp(logits_, std::numeric_limits<T>::lowest(), std::numeric_limits<double>::infinity());
  return -(logits * probs_).sum(-1);
}

// ---- kl_divergence ----------------------------------------------------------------------------

template <FloatingElement T>
Tensor<T> kl_divergence(const Normal<T>& p, const Normal<T>& q) {
  const Tensor<T> var_ratio = (p.scale() / q.scale()).square();
  const Tensor<T> t1 = ((p.loc() - q.loc()) / q.scale()).square();
  return (var_ratio + t1 - 1.0 - var_ratio.log()) * 0.5;
}

template <FloatingElement T>
Tensor<T> kl_divergence(const Uniform<T>& p, const Uniform<T>& q) {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor<T> result = ((q.high() - q.low()) / (p.high() - p.low())).log();
  const Shape shape = result.shape();
  result = masked_fill(result, gt(q.low().detach(), p.low().detach()).expand(shape), inf);
  return masked_fill(result, lt(q.high().detach(), p.high().detach()).expand(shape), inf);
}

template <FloatingElement T>
Tensor<T> kl_divergence(const Exponential<T>& p, const Exponential<T>& q) {
  const Tensor<T> rate_ratio = q.rate() / p.rate();
  return rate_ratio - rate_ratio.log() - 1.0;
}

template <FloatingElement T>
Tensor<T> kl_divergence(const Laplace<T>& p, const Laplace<T>& q) {
  const Tensor<T> scale_ratio = p.scale() / q.scale();
  const Tensor<T> loc_abs_diff = (p.loc() - q.loc()).abs();
  return -scale_ratio.log() + loc_abs_diff / q.scale() + scale_ratio * exp(-loc_abs_diff / p.scale()) - 1.0;
}

template <FloatingElement T>
Tensor<T> kl_divergence(const Bernoulli<T>& p, const Bernoulli<T>& q) {
  const double inf = std::numeric_limits<double>::infinity();
  const Shape shape = broadcast_shapes(p.batch_shape(), q.batch_shape(), "kl_divergence(Bernoulli, Bernoulli)");
  const Tensor<T> pp = p.probs().expand(shape), qp = q.probs().expand(shape);
  const Tensor<T> pl = p.logits().expand(shape), ql = q.logits().expand(shape);
  Tensor<T> t1 = pp * (softplus(-ql) - softplus(-pl));
  t1 = masked_fill(masked_fill(t1, eq(qp.detach(), 0.0), inf), eq(pp.detach(), 0.0), 0.0);
  Tensor<T> t2 = (1.0 - pp) * (softplus(ql) - softplus(pl));
  t2 = masked_fill(masked_fill(t2, eq(qp.detach(), 1.0), inf), eq(pp.detach(), 1.0), 0.0);
  return t1 + t2;
}

template <FloatingElement T>
Tensor<T> kl_divergence(const Categorical<T>& p, const Categorical<T>& q) {
  if (p.num_categories() != q.num_categories()) {
    throw ShapeError(cat_str("kl_divergence(Categorical, Categorical): ", p.num_categories(), " against ",
                             q.num_categories(), " categories"));
  }
  const double inf = std::numeric_limits<double>::infinity();
  const Shape shape = broadcast_shapes(p.probs().shape(), q.probs().shape(), "kl_divergence(Categorical, Categorical)");
  Tensor<T> t = p.probs().expand(shape) * (p.logits().expand(shape) - q.logits().expand(shape));
  t = masked_fill(t, eq(q.probs().detach(), 0.0).expand(shape), inf);
  t = masked_fill(t, eq(p.probs().detach(), 0.0).expand(shape), 0.0);
  return t.sum(-1);
}

#define EMBER_INSTANTIATE(T)                                                       \
  template class Normal<T>;                                                        \
  template class Uniform<T>;                                                       \
  template class Exponential<T>;                                                   \
  template class Laplace<T>;                                                       \
  template class Bernoulli<T>;                                                     \
  template class Categorical<T>;                                                   \
  template Tensor<T> kl_divergence(const Normal<T>&, const Normal<T>&);            \
  template Tensor<T> kl_divergence(const Uniform<T>&, const Uniform<T>&);          \
  template Tensor<T> kl_divergence(const Exponential<T>&, const Exponential<T>&);  \
  template Tensor<T> kl_divergence(const Laplace<T>&, const Laplace<T>&);          \
  template Tensor<T> kl_divergence(const Bernoulli<T>&, const Bernoulli<T>&);      \
  template Tensor<T> kl_divergence(const Categorical<T>&, const Categorical<T>&);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::distributions
