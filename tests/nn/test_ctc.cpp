// nn::functional::ctc_loss beyond the op registry's PyTorch cases: the loss against every
// alignment enumerated, the gradient with respect to unnormalised log-probabilities, float on
// long sequences, training to a target, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "ember/ember.hpp"
#include "ember/nn.hpp"
#include "support/expect_error.hpp"
#include "support/gradcheck.hpp"

namespace ember {
namespace {

namespace F = nn::functional;
using testing::expect_error;

// -log of the summed probability of every path over `frames` frames of C classes that collapses
// (repeats merged, then blanks dropped) to `target`: the definition, by enumeration.
double brute_force_ctc(const std::vector<double>& lp, int64_t frames, int64_t classes,
                       const std::vector<int64_t>& target, int64_t blank) {
  std::vector<int64_t> path(static_cast<size_t>(frames), 0);
  double total = 0.0;
  while (true) {
    std::vector<int64_t> collapsed;
    int64_t prev = -1;
    double logp = 0.0;
    for (int64_t t = 0; t < frames; ++t) {
      const int64_t c = path[static_cast<size_t>(t)];
      logp += lp[static_cast<size_t>(t * classes + c)];
      if (c != prev && c != blank) collapsed.push_back(c);
      prev = c;
    }
    if (collapsed == target) total += std::exp(logp);
    int64_t t = 0;
    while (t < frames && ++path[static_cast<size_t>(t)] == classes) path[static_cast<size_t>(t++)] = 0;
    if (t == frames) break;
  }
  return -std::log(total);
}

TEST(CTCLoss, EqualsTheSumOverEveryAlignment) {
  manual_seed(3);
  const int64_t frames = 6, classes = 4;
  const Tensor<double> lp = log_softmax(randn<double>({frames, 1, classes}), 2);
  const std::vector<double> values = lp.to_vector();
  // Repeated labels need a blank between them; the last case needs every frame.
  for (const auto& [target, blank] : std::vector<std::pair<std::vector<int64_t>, int64_t>>{
           {{1, 2}, 0}, {{1, 1}, 0}, {{2, 2, 2}, 0}, {{}, 0}, {{0, 3, 0}, 2}, {{1, 2, 3, 1, 2, 3}, 0}}) {
    const double expected = brute_force_ctc(values, frames, classes, target, blank);
    const Tensor<double> loss = F::ctc_loss(lp, tensor<int64_t>(target, {1, static_cast<int64_t>(target.size())}),
                                            std::vector<int64_t>{frames},
                                            std::vector<int64_t>{static_cast<int64_t>(target.size())}, blank,
                                            F::Reduction::Sum);
    EXPECT_NEAR(loss.item(), expected, 1e-12 * std::abs(expected) + 1e-12) << "target of " << target.size();
  }
  // Three repeated labels cannot fit in four frames: infinite, or 0 under zero_infinity.
  const Tensor<double> short_lp = lp.slice(0, 0, 4);
  const Tensor<int64_t> three = tensor<int64_t>({2, 2, 2}, {1, 3});
  EXPECT_TRUE(std::isinf(F::ctc_loss(short_lp, three, std::vector<int64_t>{4}, std::vector<int64_t>{3}).item()));
  EXPECT_EQ(F::ctc_loss(short_lp, three, std::vector<int64_t>{4}, std::vector<int64_t>{3}, 0, F::Reduction::Mean, true)
                .item(),
            0.0);
  // An empty input with an empty target is certain (loss 0), with a label impossible.
  const Tensor<int64_t> one = tensor<int64_t>({1}, {1, 1});
  EXPECT_EQ(F::ctc_loss(lp, one, std::vector<int64_t>{0}, std::vector<int64_t>{0}).item(), 0.0);
  EXPECT_TRUE(std::isinf(F::ctc_loss(lp, one, std::vector<int64_t>{0}, std::vector<int64_t>{1}).item()));
}

TEST(CTCLoss, GradientIsTheDerivativeOfUnnormalisedLogProbs) {
  manual_seed(5);
  // Not a log_softmax: the gradient must be d loss / d log_probs itself, frames past each input
  // length getting none.
  Tensor<double> lp = (randn<double>({7, 3, 5}) * 0.7).requires_grad_(true);
  const Tensor<int64_t> targets = tensor<int64_t>({1, 3, 3, 4, 2, 0, 0, 0, 0}, {3, 3});
  auto f = [&](const std::vector<Tensor<double>>& x) {
    return F::ctc_loss(x[0], targets, std::vector<int64_t>{7, 5, 3}, std::vector<int64_t>{3, 2, 0}, 0,
                       F::Reduction::None);
  };
  EXPECT_TRUE(testing::gradcheck(f, {lp}));
  F::ctc_loss(lp, targets, std::vector<int64_t>{7, 5, 3}, std::vector<int64_t>{3, 2, 0}).backward();
  const Tensor<double> g = lp.grad();
  for (int64_t t = 5; t < 7; ++t) EXPECT_EQ(g.select(0, t).select(0, 1).abs().sum().item(), 0.0);
  // Through log_softmax each frame's gradient sums to zero over the classes.
  Tensor<double> logits = randn<double>({7, 3, 5}).requires_grad_(true);
  F::ctc_loss(log_softmax(logits, 2), targets, std::vector<int64_t>{7, 5, 3}, std::vector<int64_t>{3, 2, 0}).backward();
  EXPECT_LT(logits.grad().sum(2).abs().max().item(), 1e-12);
}

TEST(CTCLoss, FloatHoldsOnLongSequences) {
  manual_seed(7);
  const int64_t frames = 300, n = 4, classes = 30, length = 80;
  const Tensor<double> logits = randn<double>({frames, n, classes});
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n * length; ++i) labels.push_back(1 + (i * 7 + i / 5) % (classes - 1));
  const Tensor<int64_t> targets = tensor<int64_t>(labels, {n, length});
  const std::vector<int64_t> inputs{300, 280, 250, 200}, lengths{80, 75, 60, 80};
  Tensor<double> ld = log_softmax(logits, 2).detach().requires_grad_(true);
  Tensor<float> lf = ld.to<float>().detach().requires_grad_(true);
  const Tensor<double> d = F::ctc_loss(ld, targets, inputs, lengths, 0, F::Reduction::None);
  const Tensor<float> f = F::ctc_loss(lf, targets, inputs, lengths, 0, F::Reduction::None);
  const std::vector<double> dv = d.to_vector();
  const std::vector<float> fv = f.to_vector();
  for (size_t i = 0; i < dv.size(); ++i) {
    ASSERT_TRUE(std::isfinite(dv[i]));
    EXPECT_NEAR(fv[i], dv[i], 1e-6 * dv[i]) << "sample " << i;
  }
  d.sum().backward();
  f.sum().backward();
  // Losses of 500-800 nats: in float alone exp(alpha + beta - lp + loss) would be off by 1e-4.
  EXPECT_LT((lf.grad().to<double>() - ld.grad()).abs().max().item(), 1e-5);
}

TEST(CTCLoss, TrainsFramesToSpellTheTarget) {
  manual_seed(11);
  const int64_t frames = 12, classes = 6;
  Tensor<float> logits = (randn<float>({frames, 2, classes}) * 0.1f).requires_grad_(true);
  const Tensor<int64_t> targets = tensor<int64_t>({3, 3, 1, 5, 2, 4, 4, 0}, {2, 4});
  const std::vector<int64_t> lengths{4, 3};
  nn::CTCLoss<float> criterion;
  optim::Adam<float> adam({logits}, 0.1);
  float first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    adam.zero_grad();
    Tensor<float> loss = criterion(log_softmax(logits, 2), targets, tensor<int64_t>({12, 10}, {2}),
                                   tensor<int64_t>(lengths, {2}));
    loss.backward();
    adam.step();
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_LT(last, 0.05f * first);
  // Greedy decoding (best class per frame, repeats merged, blanks dropped) spells each target.
  const Tensor<int64_t> best = logits.detach().argmax(2);
  for (int64_t i = 0; i < 2; ++i) {
    std::vector<int64_t> decoded;
    int64_t prev = -1;
    for (int64_t t = 0; t < (i == 0 ? 12 : 10); ++t) {
      const int64_t c = best.select(0, t).select(0, i).item();
      if (c != prev && c != 0) decoded.push_back(c);
      prev = c;
    }
    const std::vector<int64_t> row = targets.select(0, i).to_vector();
    EXPECT_EQ(decoded, std::vector<int64_t>(row.begin(), row.begin() + lengths[static_cast<size_t>(i)]));
  }
}

TEST(CTCLoss, BadInputThrowsNamingIt) {
  const Tensor<float> lp = log_softmax(randn<float>({5, 2, 4}), 2);
  const Tensor<int64_t> targets = tensor<int64_t>({1, 2, 3, 0}, {2, 2});
  const std::vector<int64_t> in{5, 4}, len{2, 1};
  expect_error<ShapeError>([&] { F::ctc_loss(lp.select(1, 0).select(0, 0), targets, in, len); },
                           "ctc_loss: log_probs must be [T, N, C] (or [T, C] unbatched), got [4]");
  expect_error<IndexError>([&] { F::ctc_loss(lp, targets, in, len, 4); }, "blank 4 is out of range for 4 classes");
  expect_error<IndexError>([&] { F::ctc_loss(lp, tensor<int64_t>({1, 0, 3, 0}, {2, 2}), in, len); },
                           "target 0 of sample 0 (position 1) must be a class in [0, 4) other than the blank 0");
  expect_error<IndexError>([&] { F::ctc_loss(lp, tensor<int64_t>({1, 7, 3, 0}, {2, 2}), in, len); },
                           "target 7 of sample 0");
  expect_error<ValueError>([&] { F::ctc_loss(lp, targets, std::vector<int64_t>{6, 4}, len); },
                           "input_lengths[0] = 6 is outside [0, 5] (log_probs [5, 2, 4])");
  expect_error<ValueError>([&] { F::ctc_loss(lp, targets, in, std::vector<int64_t>{2, -1}); },
                           "target_lengths[1] = -1 is negative");
  expect_error<ShapeError>([&] { F::ctc_loss(lp, targets, std::vector<int64_t>{5}, len); },
                           "must each hold one length per sample (2)");
  expect_error<ShapeError>([&] { F::ctc_loss(lp, targets, in, std::vector<int64_t>{3, 1}); },
                           "targets [2, 2] are shorter than target length 3");
  expect_error<ShapeError>([&] { F::ctc_loss(lp, tensor<int64_t>({1, 2, 3, 1}, {4}), in, len); },
                           "concatenated targets [4] must hold the sum of target_lengths (3)");
  expect_error<ShapeError>([&] { F::ctc_loss(lp, tensor<int64_t>({1, 2, 3}, {3, 1}), in, len); },
                           "must have one row per sample (2)");
  expect_error<ValueError>([&] { F::ctc_loss(Tensor<float>(), targets, in, len); }, "ctc_loss: an input tensor is");
}

TEST(CTCLoss, RefusesDoubleBackwardAndInPlaceChanges) {
  Tensor<double> logits = randn<double>({5, 1, 3}).requires_grad_(true);
  const Tensor<int64_t> targets = tensor<int64_t>({1, 2}, {1, 2});
  Tensor<double> loss = F::ctc_loss(log_softmax(logits, 2), targets, std::vector<int64_t>{5}, std::vector<int64_t>{2});
  auto grads = autograd::grad({loss}, {logits}, true);
  expect_error<AutogradError>([&] { grads[0].sum().backward(); },
                              "ctc_loss: the gradient of its gradient (double backward) is not supported");
  Tensor<double> lp = randn<double>({5, 1, 3}).requires_grad_(true);
  Tensor<double> shifted = lp * 1.0;
  Tensor<double> l2 = F::ctc_loss(shifted, targets, std::vector<int64_t>{5}, std::vector<int64_t>{2});
  shifted.add_(1.0);
  EXPECT_THROW(l2.backward(), AutogradError);
}

}  // namespace
}  // namespace ember
