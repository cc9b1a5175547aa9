// ember::distributions against torch.distributions (tools/make_torch_refs.py's
// torch_distributions_{float32,float64}.txt), gradchecks in double of everything differentiable,
// the samplers' statistics and shapes, a fit by maximum likelihood, and bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"
#include "support/gradcheck.hpp"
#include "support/reference_file.hpp"

namespace {

using namespace ember;
namespace D = ember::distributions;
using ember::testing::expect_error;
using ember::testing::gradcheck;
using ember::testing::load_reference;
using ember::testing::RefCases;
using ember::testing::RefTensor;
using TD = Tensor<double>;

const RefTensor& ref(const RefCases& cases, const std::string& name, const std::string& tag) {
  for (const auto& [t, v] : cases.at(name))
    if (t == tag) return v;
  throw std::runtime_error("no " + tag + " in case " + name);
}

template <class T>
void expect_matches(const Tensor<T>& got, const RefTensor& want, const char* what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(got.shape(), want.shape);
  const std::vector<T> g = got.contiguous().to_vector();
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-13;
  for (size_t i = 0; i < g.size(); ++i) {
    const double w = want.values[i];
    if (std::isinf(w)) {
      EXPECT_EQ(double(g[i]), w) << "element " << i;
    } else {
      EXPECT_NEAR(double(g[i]), w, tol * (1 + std::abs(w))) << "element " << i;
    }
  }
}

Tensor<int64_t> indices(const RefTensor& t) {
  std::vector<int64_t> v;
  for (double x : t.values) v.push_back(static_cast<int64_t>(x));
  return tensor<int64_t>(v, t.shape);
}

template <class T>
void check_against_torch(const char* file) {
  const RefCases c = load_reference(file);
  auto in = [&](const char* name, const char* tag) { return ref(c, name, tag).template as<T>(); };
  {
    D::Normal<T> n(in("normal", "loc"), in("normal", "scale"));
    const Tensor<T> v = in("normal", "value");
    expect_matches(n.log_prob(v), ref(c, "normal", "log_prob"), "Normal.log_prob");
    expect_matches(n.cdf(v), ref(c, "normal", "cdf"), "Normal.cdf");
    expect_matches(n.icdf(in("normal", "quantile")), ref(c, "normal", "icdf"), "Normal.icdf");
    expect_matches(n.entropy(), ref(c, "normal", "entropy"), "Normal.entropy");
    expect_matches(n.mean(), ref(c, "normal", "mean"), "Normal.mean");
    expect_matches(n.variance(), ref(c, "normal", "variance"), "Normal.variance");
    expect_matches(D::kl_divergence(n, D::Normal<T>(in("normal", "loc2"), in("normal", "scale2"))),
                   ref(c, "normal", "kl"), "kl(Normal, Normal)");
  }
  {
    D::Uniform<T> u(in("uniform", "low"), in("uniform", "high"));
    const Tensor<T> v = in("uniform", "value");
    expect_matches(u.log_prob(v), ref(c, "uniform", "log_prob"), "Uniform.log_prob");
    expect_matches(u.cdf(v), ref(c, "uniform", "cdf"), "Uniform.cdf");
    expect_matches(u.icdf(in("uniform", "quantile")), ref(c, "uniform", "icdf"), "Uniform.icdf");
    expect_matches(u.entropy(), ref(c, "uniform", "entropy"), "Uniform.entropy");
    expect_matches(u.mean(), ref(c, "uniform", "mean"), "Uniform.mean");
    expect_matches(u.variance(), ref(c, "uniform", "variance"), "Uniform.variance");
    expect_matches(u.stddev(), ref(c, "uniform", "stddev"), "Uniform.stddev");
    expect_matches(D::kl_divergence(u, D::Uniform<T>(in("uniform", "low2"), in("uniform", "high2"))),
                   ref(c, "uniform", "kl"), "kl(Uniform, Uniform)");
  }
  {
    D::Exponential<T> e(in("exponential", "rate"));
    const Tensor<T> v = in("exponential", "value");
    expect_matches(e.log_prob(v), ref(c, "exponential", "log_prob"), "Exponential.log_prob");
    expect_matches(e.cdf(v), ref(c, "exponential", "cdf"), "Exponential.cdf");
    expect_matches(e.icdf(in("exponential", "quantile")), ref(c, "exponential", "icdf"), "Exponential.icdf");
    expect_matches(e.entropy(), ref(c, "exponential", "entropy"), "Exponential.entropy");
    expect_matches(e.mean(), ref(c, "exponential", "mean"), "Exponential.mean");
    expect_matches(e.variance(), ref(c, "exponential", "variance"), "Exponential.variance");
    expect_matches(e.stddev(), ref(c, "exponential", "stddev"), "Exponential.stddev");
    expect_matches(D::kl_divergence(e, D::Exponential<T>(in("exponential", "rate2"))), ref(c, "exponential", "kl"),
                   "kl(Exponential, Exponential)");
  }
  {
    D::Laplace<T> l(in("laplace", "loc"), in("laplace", "scale"));
    const Tensor<T> v = in("laplace", "value");
    expect_matches(l.log_prob(v), ref(c, "laplace", "log_prob"), "Laplace.log_prob");
    expect_matches(l.cdf(v), ref(c, "laplace", "cdf"), "Laplace.cdf");
    expect_matches(l.icdf(in("laplace", "quantile")), ref(c, "laplace", "icdf"), "Laplace.icdf");
    expect_matches(l.entropy(), ref(c, "laplace", "entropy"), "Laplace.entropy");
    expect_matches(l.mean(), ref(c, "laplace", "mean"), "Laplace.mean");
    expect_matches(l.variance(), ref(c, "laplace", "variance"), "Laplace.variance");
    expect_matches(l.stddev(), ref(c, "laplace", "stddev"), "Laplace.stddev");
    expect_matches(D::kl_divergence(l, D::Laplace<T>(in("laplace", "loc2"), in("laplace", "scale2"))),
                   ref(c, "laplace", "kl"), "kl(Laplace, Laplace)");
  }
  {
    D::Bernoulli<T> b({.probs = in("bernoulli_probs", "probs")});
    const Tensor<T> v = in("bernoulli_probs", "value");
    expect_matches(b.log_prob(v), ref(c, "bernoulli_probs", "log_prob"), "Bernoulli(probs).log_prob");
    expect_matches(b.entropy(), ref(c, "bernoulli_probs", "entropy"), "Bernoulli(probs).entropy");
    expect_matches(b.logits(), ref(c, "bernoulli_probs", "logits"), "Bernoulli(probs).logits");
    expect_matches(b.mean(), ref(c, "bernoulli_probs", "mean"), "Bernoulli(probs).mean");
    expect_matches(b.variance(), ref(c, "bernoulli_probs", "variance"), "Bernoulli(probs).variance");
    expect_matches(D::kl_divergence(b, D::Bernoulli<T>({.probs = in("bernoulli_probs", "probs2")})),
                   ref(c, "bernoulli_probs", "kl"), "kl(Bernoulli, Bernoulli) from probs");
  }
  {
    D::Bernoulli<T> b({.logits = in("bernoulli_logits", "logits")});
    const Tensor<T> v = in("bernoulli_logits", "value");
    expect_matches(b.log_prob(v), ref(c, "bernoulli_logits", "log_prob"), "Bernoulli(logits).log_prob");
    expect_matches(b.entropy(), ref(c, "bernoulli_logits", "entropy"), "Bernoulli(logits).entropy");
    expect_matches(b.probs(), ref(c, "bernoulli_logits", "probs"), "Bernoulli(logits).probs");
    expect_matches(D::kl_divergence(b, D::Bernoulli<T>({.logits = in("bernoulli_logits", "logits2")})),
                   ref(c, "bernoulli_logits", "kl"), "kl(Bernoulli, Bernoulli) from logits");
  }
  {
    D::Categorical<T> k({.probs = in("categorical_probs", "probs")});
    const Tensor<int64_t> v = indices(ref(c, "categorical_probs", "value"));
    expect_matches(k.log_prob(v), ref(c, "categorical_probs", "log_prob"), "Categorical(probs).log_prob");
    expect_matches(k.entropy(), ref(c, "categorical_probs", "entropy"), "Categorical(probs).entropy");
    expect_matches(k.probs(), ref(c, "categorical_probs", "probs_n"), "Categorical(probs).probs");
    expect_matches(k.logits(), ref(c, "categorical_probs", "logits"), "Categorical(probs).logits");
    expect_matches(D::kl_divergence(k, D::Categorical<T>({.probs = in("categorical_probs", "probs2")})),
                   ref(c, "categorical_probs", "kl"), "kl(Categorical, Categorical) from probs");
  }
  {
    D::Categorical<T> k({.logits = in("categorical_logits", "logits")});
    const Tensor<int64_t> v = indices(ref(c, "categorical_logits", "value"));
    expect_matches(k.log_prob(v), ref(c, "categorical_logits", "log_prob"), "Categorical(logits).log_prob");
    expect_matches(k.entropy(), ref(c, "categorical_logits", "entropy"), "Categorical(logits).entropy");
    expect_matches(k.probs(), ref(c, "categorical_logits", "probs"), "Categorical(logits).probs");
    expect_matches(k.logits(), ref(c, "categorical_logits", "logits_n"), "Categorical(logits).logits");
    expect_matches(D::kl_divergence(k, D::Categorical<T>({.logits = in("categorical_logits", "logits2")})),
                   ref(c, "categorical_logits", "kl"), "kl(Categorical, Categorical) from logits");
  }
}

TEST(Distributions, MatchTorchInDouble) { check_against_torch<double>("torch_distributions_float64.txt"); }
TEST(Distributions, MatchTorchInFloat) { check_against_torch<float>("torch_distributions_float32.txt"); }

TD leaf(std::vector<double> v, const Shape& shape) { return tensor<double>(std::move(v), shape, true); }

TEST(Distributions, GradientsMatchFiniteDifferences) {
  const TD loc = leaf({0.3, -1.2, 2.0}, {3}), scale = leaf({0.5, 1.7, 0.9}, {3});
  const TD value = leaf({0.1, 0.4, 1.5, -2.0, 0.9, 3.1}, {2, 3});
  const TD loc2 = leaf({0.2, -0.5, 1.0}, {3}), scale2 = leaf({1.1, 0.6, 2.0}, {3});
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Normal<double>(in[0], in[1]).log_prob(in[2]); },
                        {loc, scale, value}));
  EXPECT_TRUE(
      gradcheck([](const auto& in) { return D::Normal<double>(in[0], in[1]).cdf(in[2]); }, {loc, scale, value}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Normal<double>(in[0], in[1]).entropy(); }, {loc, scale}));
  const TD quantile = leaf({0.1, 0.4, 0.95, 0.02, 0.5, 0.999}, {2, 3});
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Normal<double>(in[0], in[1]).icdf(in[2]); },
                        {loc, scale, quantile}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) { return D::kl_divergence(D::Normal<double>(in[0], in[1]), D::Normal<double>(in[2], in[3])); },
      {loc, scale, loc2, scale2}));
  // The reparameterised sample, with the same noise on every call.
  EXPECT_TRUE(gradcheck(
      [](const auto& in) {
        Generator gen(11);
        return D::Normal<double>(in[0], in[1]).rsample({4}, &gen);
      },
      {loc, scale}));

  const TD low = leaf({-1.0, 0.5}, {2}), high = leaf({1.5, 0.75}, {2});
  const TD low2 = leaf({-2.0, 0.0}, {2}), high2 = leaf({2.0, 1.0}, {2});
  EXPECT_TRUE(gradcheck(
      [](const auto& in) { return D::Uniform<double>(in[0], in[1]).log_prob(tensor<double>({0.2, 0.6}, {2})); },
      {low, high}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) {
        Generator gen(5);
        return D::Uniform<double>(in[0], in[1]).rsample({3}, &gen);
      },
      {low, high}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) { return D::Uniform<double>(in[0], in[1]).cdf(tensor<double>({0.2, 0.6}, {2})); },
      {low, high}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Uniform<double>(in[0], in[1]).icdf(in[2]); },
                        {low, high, leaf({0.3, 0.9}, {2})}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) {
        return D::kl_divergence(D::Uniform<double>(in[0], in[1]), D::Uniform<double>(in[2], in[3]));
      },
      {low, high, low2, high2}));

  const TD rate = leaf({0.5, 2.0, 1.3}, {3}), rate2 = leaf({1.5, 0.2, 1.3}, {3});
  const TD positive = leaf({0.1, 2.0, 0.7, 3.5, 0.4, 1.2}, {2, 3});
  EXPECT_TRUE(
      gradcheck([](const auto& in) { return D::Exponential<double>(in[0]).log_prob(in[1]); }, {rate, positive}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Exponential<double>(in[0]).cdf(in[1]); }, {rate, positive}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Exponential<double>(in[0]).icdf(in[1]); }, {rate, quantile}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Exponential<double>(in[0]).entropy(); }, {rate}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) { return D::kl_divergence(D::Exponential<double>(in[0]), D::Exponential<double>(in[1])); },
      {rate, rate2}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) {
        Generator gen(3);
        return D::Exponential<double>(in[0]).rsample({4}, &gen);
      },
      {rate}));
  // (values off the location: |value - loc| has no derivative there)
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Laplace<double>(in[0], in[1]).log_prob(in[2]); },
                        {loc, scale, value}));
  EXPECT_TRUE(
      gradcheck([](const auto& in) { return D::Laplace<double>(in[0], in[1]).cdf(in[2]); }, {loc, scale, value}));
  // (and q off 1/2, where sign(q - 1/2) gives 0 as torch's formula does)
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Laplace<double>(in[0], in[1]).icdf(in[2]); },
                        {loc, scale, leaf({0.1, 0.4, 0.95, 0.02, 0.6, 0.999}, {2, 3})}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Laplace<double>(in[0], in[1]).entropy(); }, {loc, scale}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) {
        return D::kl_divergence(D::Laplace<double>(in[0], in[1]), D::Laplace<double>(in[2], in[3]));
      },
      {loc, scale, loc2, scale2}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) {
        Generator gen(7);
        return D::Laplace<double>(in[0], in[1]).rsample({4}, &gen);
      },
      {loc, scale}));

  const TD logits = leaf({-3.0, 0.4, 2.5, -0.6}, {4}), logits2 = leaf({1.0, -0.7, 0.3, 2.0}, {4});
  const TD probs = leaf({0.1, 0.5, 0.8, 0.35}, {4});
  const TD bits = tensor<double>({1.0, 0.0, 1.0, 0.0}, {4});
  EXPECT_TRUE(gradcheck([&](const auto& in) { return D::Bernoulli<double>({.logits = in[0]}).log_prob(bits); },
                        {logits}));
  EXPECT_TRUE(gradcheck([&](const auto& in) { return D::Bernoulli<double>({.probs = in[0]}).log_prob(bits); },
                        {probs}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Bernoulli<double>({.logits = in[0]}).entropy(); }, {logits}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) {
        return D::kl_divergence(D::Bernoulli<double>({.logits = in[0]}), D::Bernoulli<double>({.logits = in[1]}));
      },
      {logits, logits2}));

  const TD cat_logits = leaf({0.5, -1.0, 2.0, 0.0, 3.0, 3.0, -2.0, 0.1}, {2, 4});
  const TD cat_logits2 = leaf({1.0, 0.0, -1.0, 2.0}, {4});
  const TD cat_probs = leaf({1.0, 2.0, 0.5, 5.0, 0.25, 0.3, 0.2, 0.25}, {2, 4});
  const Tensor<int64_t> picks = tensor<int64_t>({3, 0, 1, 2}, {2, 2});  // broadcast against batch [2]
  EXPECT_TRUE(gradcheck([&](const auto& in) { return D::Categorical<double>({.logits = in[0]}).log_prob(picks); },
                        {cat_logits}));
  EXPECT_TRUE(gradcheck([&](const auto& in) { return D::Categorical<double>({.probs = in[0]}).log_prob(picks); },
                        {cat_probs}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return D::Categorical<double>({.probs = in[0]}).entropy(); },
                        {cat_probs}));
  EXPECT_TRUE(gradcheck(
      [](const auto& in) {
        return D::kl_divergence(D::Categorical<double>({.logits = in[0]}), D::Categorical<double>({.logits = in[1]}));
      },
      {cat_logits, cat_logits2}));
}

TEST(Distributions, SamplesHaveTheirShapesAndStatistics) {
  Generator gen(2024);
  const int64_t n = 200000;
  D::Normal<double> normal(tensor<double>({1.5, -3.0}, {2}), tensor<double>({2.0, 0.25}, {2}));
  const TD z = normal.sample({n}, &gen);
  ASSERT_EQ(z.shape(), (Shape{n, 2}));
  EXPECT_FALSE(z.requires_grad());
  const TD mean = z.mean(0), sd = z.std(0, false);
  EXPECT_NEAR(mean.to_vector()[0], 1.5, 0.02);
  EXPECT_NEAR(mean.to_vector()[1], -3.0, 0.003);
  EXPECT_NEAR(sd.to_vector()[0], 2.0, 0.02);
  EXPECT_NEAR(sd.to_vector()[1], 0.25, 0.003);

  D::Uniform<double> uniform(-1.0, 3.0);
  const TD u = uniform.sample({n}, &gen);
  ASSERT_EQ(u.shape(), (Shape{n}));
  EXPECT_GE(u.min().item(), -1.0);
  EXPECT_LT(u.max().item(), 3.0);
  EXPECT_NEAR(u.mean().item(), 1.0, 0.02);

  D::Exponential<double> exponential(tensor<double>({0.5, 4.0}, {2}));
  const TD x = exponential.sample({n}, &gen);
  ASSERT_EQ(x.shape(), (Shape{n, 2}));
  EXPECT_GE(x.min().item(), 0.0);
  EXPECT_NEAR(x.mean(0).to_vector()[0], 2.0, 0.02);
  EXPECT_NEAR(x.mean(0).to_vector()[1], 0.25, 0.003);
  EXPECT_NEAR(x.std(0, false).to_vector()[0], 2.0, 0.03);

  D::Laplace<double> laplace(1.0, 0.5);
  const TD l = laplace.sample({n}, &gen);
  EXPECT_NEAR(l.mean().item(), 1.0, 0.005);
  EXPECT_NEAR(l.std(0, false).item(), 0.5 * std::sqrt(2.0), 0.005);
  EXPECT_NEAR((l - 1.0).abs().mean().item(), 0.5, 0.005);  // E|x - loc| = scale

  D::Bernoulli<float> coin({.probs = tensor<float>({0.3f, 0.0f, 1.0f}, {3})});
  const Tensor<float> flips = coin.sample({n}, &gen);
  ASSERT_EQ(flips.shape(), (Shape{n, 3}));
  const std::vector<float> rate = flips.mean(0).to_vector();
  EXPECT_NEAR(rate[0], 0.3, 0.005);
  EXPECT_EQ(rate[1], 0.0f);
  EXPECT_EQ(rate[2], 1.0f);

  // A zero-probability category is never drawn; the others at their rates.
  D::Categorical<double> cat({.probs = tensor<double>({0.1, 0.2, 0.0, 0.7, 3.0, 1.0, 0.0, 0.0}, {2, 4})});
  const Tensor<int64_t> draws = cat.sample({n}, &gen);
  ASSERT_EQ(draws.shape(), (Shape{n, 2}));
  std::vector<double> count0(4), count1(4);
  const std::vector<int64_t> d = draws.to_vector();
  for (int64_t i = 0; i < n; ++i) {
    count0[static_cast<size_t>(d[static_cast<size_t>(2 * i)])] += 1.0 / n;
    count1[static_cast<size_t>(d[static_cast<size_t>(2 * i + 1)])] += 1.0 / n;
  }
  EXPECT_NEAR(count0[0], 0.1, 0.005);
  EXPECT_NEAR(count0[1], 0.2, 0.005);
  EXPECT_EQ(count0[2], 0.0);
  EXPECT_NEAR(count0[3], 0.7, 0.005);
  EXPECT_NEAR(count1[0], 0.75, 0.005);
  EXPECT_EQ(count1[2] + count1[3], 0.0);

  // The same seed, the same draws; no sample shape gives one draw per batch element.
  Generator a(7), b(7);
  EXPECT_EQ(normal.sample({}, &a).to_vector(), normal.sample({}, &b).to_vector());
  EXPECT_EQ(cat.sample({3, 5}, &a).to_vector(), cat.sample({3, 5}, &b).to_vector());
  EXPECT_EQ(cat.sample({3, 5}, &a).shape(), (Shape{3, 5, 2}));
  EXPECT_EQ(D::Categorical<double>({.logits = zeros<double>({6})}).sample().shape(), Shape{});
}

// A Normal fitted by maximum likelihood through log_prob: its parameters reach the data's mean
// and standard deviation.
// icdf inverts cdf, out to the infinite ends (the registry's torch values stop at 0.999).
TEST(Distributions, IcdfInvertsCdf) {
  const D::Normal<double> n(tensor<double>({0.3, -2.0}, {2}), tensor<double>({0.5, 3.0}, {2}));
  const std::vector<double> ends = n.icdf(tensor<double>({0.0, 1.0}, {2})).to_vector();
  EXPECT_EQ(ends[0], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(ends[1], std::numeric_limits<double>::infinity());
  for (double q : {0.001, 0.01, 0.3, 0.5, 0.77, 0.999999}) {  // (torch's 2q - 1 rounds away small q's digits)
    const Tensor<double> qs = full<double>({2}, q);
    EXPECT_TRUE(allclose(n.cdf(n.icdf(qs)), qs, 1e-13, 0.0)) << q;
  }
  const D::Uniform<double> u(-1.0, 3.0);
  EXPECT_EQ(u.icdf(tensor<double>({0.0, 0.25, 1.0}, {3})).to_vector(), (std::vector<double>{-1.0, 0.0, 3.0}));
}

TEST(Distributions, MaximumLikelihoodFitFindsTheDataMoments) {
  Generator gen(3);
  const Tensor<float> data = randn<float>({4000}, &gen) * 0.5f + 3.0f;
  Tensor<float> mu = zeros<float>({1}, true), log_sigma = zeros<float>({1}, true);
  optim::Adam adam({mu, log_sigma}, {.lr = 0.05});
  for (int step = 0; step < 600; ++step) {
    adam.zero_grad();
    const Tensor<float> nll = -D::Normal<float>(mu, log_sigma.exp()).log_prob(data).mean();
    nll.backward();
    adam.step();
  }
  EXPECT_NEAR(mu.item(), data.mean().item(), 1e-3);
  EXPECT_NEAR(std::exp(log_sigma.item()), data.std(0).item(), 2e-3);
}

TEST(Distributions, BadArgumentsThrowNamingTheDistribution) {
  const Tensor<float> one = ones<float>({2});
  expect_error<ValueError>([&] { D::Normal<float>(one, tensor<float>({1.0f, 0.0f}, {2})); },
                           "Normal: scale must be positive, got 0 at element 1");
  expect_error<ValueError>([&] { D::Normal<float>(tensor<float>({NAN}, {1}), one); }, "Normal: loc must be a number");
  expect_error<ValueError>([&] { D::Exponential<float>(tensor<float>({1.0f, -2.0f}, {2})); },
                           "Exponential: rate must be positive, got -2 at element 1 of [2]");
  expect_error<ValueError>([&] { D::Exponential<float>(1.0).log_prob(tensor<float>({-0.5f}, {1})); },
                           "Exponential.log_prob: value must be non-negative, got -0.5");
  expect_error<ValueError>([&] { D::Laplace<float>(0.0, 0.0); }, "Laplace: scale must be positive, got 0");
  expect_error<ValueError>([&] { D::Laplace<float>(0.0, 1.0).icdf(tensor<float>({-0.1f}, {1})); },
                           "Laplace.icdf: q must be a probability in [0, 1], got -0.1");
  expect_error<ValueError>([&] { D::Normal<float>(one, one).icdf(tensor<float>({0.5f, 1.5f}, {2})); },
                           "Normal.icdf: q must be a probability in [0, 1], got 1.5 at element 1 of [2]");
  expect_error<ValueError>([&] { D::Uniform<float>(0.0, 1.0).icdf(tensor<float>({NAN}, {1})); },
                           "Uniform.icdf: q must be a probability in [0, 1], got nan");
  expect_error<ShapeError>([&] { D::Normal<float>(ones<float>({3}), one); }, "Normal");
  expect_error<ValueError>([&] { D::Normal<float>(0.0, 1.0).log_prob(tensor<float>({NAN}, {1})); },
                           "Normal.log_prob: value must be a number");
  expect_error<ValueError>([&] { D::Normal<float>(Tensor<float>(), one); }, "Normal: loc is undefined");
  expect_error<ValueError>([&] { D::Uniform<float>(2.0, 2.0); }, "Uniform: low must be less than high");
  expect_error<ValueError>([&] { D::Uniform<float>(0.0, 1.0).log_prob(tensor<float>({1.5f}, {1})); },
                           "Uniform.log_prob: value 1.5 at element 0 of [1] is outside the support [0, 1]");
  expect_error<ValueError>([&] { D::Bernoulli<float>({.probs = tensor<float>({0.5f, 1.5f}, {2})}); },
                           "Bernoulli: probs must be in [0, 1], got 1.5 at element 1");
  expect_error<ValueError>([&] { D::Bernoulli<float>({.probs = one, .logits = one}); },
                           "Bernoulli: give exactly one of probs and logits (both were given)");
  expect_error<ValueError>([&] { D::Bernoulli<float>({}); }, "neither was given");
  expect_error<ValueError>([&] { D::Bernoulli<float>({.logits = one}).log_prob(tensor<float>({0.5f, 1.0f}, {2})); },
                           "Bernoulli.log_prob: value must be 0 or 1, got 0.5");
  expect_error<ShapeError>([&] { D::Categorical<float>({.probs = scalar_tensor<float>(1.0f)}); },
                           "Categorical: probs [] must have at least one dimension");
  expect_error<ValueError>([&] { D::Categorical<float>({.probs = tensor<float>({-0.1f, 1.0f}, {2})}); },
                           "Categorical: probs must be non-negative and finite");
  expect_error<ValueError>([&] { D::Categorical<float>({.probs = zeros<float>({2, 3})}); },
                           "Categorical: the sum of probs along the last dimension must be positive");
  expect_error<ValueError>(
      [&] { D::Categorical<float>({.logits = zeros<float>({4})}).log_prob(tensor<int64_t>({1, 4}, {2})); },
      "Categorical.log_prob: value 4 at element 1 of [2] is not a category in [0, 4)");
  expect_error<ShapeError>(
      [&] {
        D::kl_divergence(D::Categorical<float>({.logits = zeros<float>({4})}),
                         D::Categorical<float>({.logits = zeros<float>({3})}));
      },
      "kl_divergence(Categorical, Categorical): 4 against 3 categories");
}

}  // namespace
