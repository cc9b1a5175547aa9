// L-BFGS against torch.optim.LBFGS (trajectories, losses and evaluation counts from
// tools/make_torch_refs.py), its state dict, and bad use.
#include <gtest/gtest.h>

#include <cmath>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"
#include "support/reference_file.hpp"

namespace ember::testing {
namespace {

using optim::LBFGS;
using optim::LBFGSOptions;

LBFGSOptions options_for(const std::string& name) {
  if (name == "fixed_step") return {.lr = 0.2};
  if (name == "strong_wolfe") return {.line_search_fn = "strong_wolfe"};
  if (name == "short_history") return {.lr = 0.1, .max_iter = 6, .history_size = 2};
  if (name == "wolfe_max_eval") {
    return {.lr = 0.7, .max_iter = 10, .max_eval = 8, .history_size = 3, .line_search_fn = "strong_wolfe"};
  }
  if (name == "rosenbrock_wolfe") return {.max_iter = 15, .line_search_fn = "strong_wolfe"};
  if (name == "wolfe_long_step" || name == "rosenbrock_long_step") {
    return {.lr = 20, .max_iter = 15, .line_search_fn = "strong_wolfe"};
  }
  if (name == "rosenbrock") return {.lr = 0.01, .max_iter = 10, .tolerance_change = 1e-6};
  ADD_FAILURE() << "no options for case " << name;
  return {};
}

// The loss of the reference script's problems: the regression of test_optim, or Rosenbrock's
// function of w plus b^2.
template <FloatingElement T>
Tensor<T> problem_loss(bool rosenbrock, const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& w,
                       const Tensor<T>& b) {
  if (rosenbrock) {
    const Tensor<T> w0 = w[0], w1 = w[1];
    return (1.0 - w0).square() + 100.0 * (w1 - w0.square()).square() + b.square().sum();
  }
  const Tensor<T> d = tanh(matmul(x, w.t()) + b) - y;
  return (d * d).mean();
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << what << "[" << i << "]";
  }
}

TEST(LBFGS, TrajectoriesMatchTorchFloat64) {
  auto cases = load_reference("torch_lbfgs_float64.txt");
  ASSERT_EQ(cases.size(), 8u);
  for (auto& [name, lines] : cases) {
    SCOPED_TRACE(name);
    const bool rosenbrock = name.rfind("rosenbrock", 0) == 0;
    Tensor<double> x = lines[0].second.as<double>(), y = lines[1].second.as<double>();
    Tensor<double> w = lines[2].second.as<double>(true), b = lines[3].second.as<double>(true);
    LBFGS<double> opt({w, b}, options_for(name));
    auto closure = [&] {
      opt.zero_grad();
      Tensor<double> loss = problem_loss(rosenbrock, x, y, w, b);
      loss.backward();
      return loss;
    };
    for (size_t k = 4; k + 3 < lines.size(); k += 4) {
      const std::string step = "step " + std::to_string((k - 4) / 4);
      const Tensor<double> loss = opt.step(closure);
      expect_close({loss.item()}, lines[k].second.values, 1e-10, step + " loss");
      expect_close(w.to_vector(), lines[k + 1].second.values, 1e-9, step + " w");
      expect_close(b.to_vector(), lines[k + 2].second.values, 1e-9, step + " b");
      const optim::OptimizerState state = opt.state_dict();
      const auto evals = static_cast<double>(
          Tensor<int64_t>::from_base(state.params[0].tensors.at("func_evals")).item());
      EXPECT_EQ(evals, lines[k + 3].second.values[0]) << step << " func_evals";
      EXPECT_EQ(static_cast<double>(state.params[0].step), lines[k + 3].second.values[1]) << step << " n_iter";
    }
  }
}

// In float the line search finds the same minimum (to float's precision).
TEST(LBFGS, FloatConvergesWhereDoubleDoes) {
  auto cases = load_reference("torch_lbfgs_float64.txt");
  const auto& lines = cases.at("strong_wolfe");
  Tensor<float> x = lines[0].second.as<float>(), y = lines[1].second.as<float>();
  Tensor<float> w = lines[2].second.as<float>(true), b = lines[3].second.as<float>(true);
  LBFGS opt(std::vector<Tensor<float>>{w, b}, LBFGSOptions{.line_search_fn = "strong_wolfe"});
  Tensor<float> loss;
  for (int step = 0; step < 3; ++step) {
    loss = opt.step([&] {
      opt.zero_grad();
      Tensor<float> l = problem_loss(false, x, y, w, b);
      l.backward();
      return l;
    });
  }
  EXPECT_LT(loss.item(), 1e-5f);
  const std::vector<float> got = w.to_vector();
  expect_close(std::vector<double>(got.begin(), got.end()), lines[lines.size() - 3].second.values, 2e-3, "w");
}

// A state dict taken between steps resumes the same trajectory, bit for bit.
TEST(LBFGS, ResumesFromItsStateDict) {
  auto run = [](int before, int after, bool resume) {
    manual_seed(5);
    Tensor<double> w = randn<double>({4, 3}).requires_grad_(true);
    const Tensor<double> target = randn<double>({4, 3});
    const LBFGSOptions o{.max_iter = 4, .history_size = 3, .line_search_fn = "strong_wolfe"};
    auto opt = std::make_unique<LBFGS<double>>(std::vector<Tensor<double>>{w}, o);
    auto closure = [&] {
      opt->zero_grad();
      Tensor<double> loss = ((w - target).square() * (w.square() + 1.0)).sum();
      loss.backward();
      return loss;
    };
    for (int i = 0; i < before; ++i) opt->step(closure);
    if (resume) {
      const optim::OptimizerState state = opt->state_dict();
      opt = std::make_unique<LBFGS<double>>(std::vector<Tensor<double>>{w}, LBFGSOptions{});
      opt->load_state_dict(state);
    }
    for (int i = 0; i < after; ++i) opt->step(closure);
    return w.to_vector();
  };
  const std::vector<double> straight = run(2, 2, false), resumed = run(2, 2, true);
  ASSERT_EQ(straight.size(), resumed.size());
  for (size_t i = 0; i < straight.size(); ++i) EXPECT_EQ(straight[i], resumed[i]) << i;
  EXPECT_NE(straight, run(2, 0, false));  // the last two steps moved w
}

TEST(LBFGS, BadUseThrowsAndChangesNothing) {
  Tensor<double> w = tensor<double>({1.0, -2.0}, {2}).requires_grad_(true);
  LBFGS<double> opt({w}, LBFGSOptions{.line_search_fn = "strong_wolfe"});
  expect_error<ValueError>([&] { opt.step(); }, "LBFGS: step() needs a closure");
  expect_error<ValueError>([&] { opt.step([&] { return w * 2.0; }); },
                           "the closure must return the loss, one element; it returned a tensor of shape [2]");
  // A closure that fails part way through the line search leaves w and the history as they were.
  int calls = 0;
  auto closure = [&] {
    opt.zero_grad();
    Tensor<double> loss = (w.square() * w.square()).sum();
    loss.backward();
    if (++calls == 4) throw IOError("data went away");
    return loss;
  };
  EXPECT_THROW(opt.step(closure), IOError);
  EXPECT_EQ(w.to_vector(), (std::vector<double>{1.0, -2.0}));
  EXPECT_EQ(opt.state_dict().params[0].step, 0);
  calls = -100;
  opt.step(closure);
  EXPECT_NE(w.to_vector(), (std::vector<double>{1.0, -2.0}));

  expect_error<ValueError>([&] { LBFGS<double>({w}, LBFGSOptions{.history_size = 0}); },
                           "LBFGS: history_size must be >= 1, got 0");
  expect_error<ValueError>([&] { LBFGS<double>({w}, LBFGSOptions{.line_search_fn = "backtracking"}); },
                           "line_search_fn must be \"\" (none) or \"strong_wolfe\", got \"backtracking\"");
  Tensor<double> v = zeros<double>({3}, true);
  LBFGS<double> two({w}, 0.5);
  two.add_param_group({{v}, LBFGSOptions{}});
  expect_error<ValueError>([&] { two.step([&] { return w.sum(); }); }, "the parameters must be one group");
  LBFGS<double> none(std::vector<Tensor<double>>{}, 0.5);
  expect_error<ValueError>([&] { none.step([&] { return w.sum(); }); }, "LBFGS: step(closure) on an optimizer with no");

  // Another optimizer's state, and a history of the wrong size, are refused and change nothing.
  optim::Adam<double> adam({w}, 0.1);
  w.set_grad(ones<double>({2}));
  adam.step();
  const optim::OptimizerState before = opt.state_dict();
  expect_error<ValueError>([&] { opt.load_state_dict(adam.state_dict()); },
                           "the state was saved by Adam, not by LBFGS");
  optim::OptimizerState wrong = before;
  wrong.params[0].tensors["d"] = zeros<double>({3});
  expect_error<ValueError>([&] { opt.load_state_dict(wrong); }, "\"d\" is float64 [3], expected float64 [2]");
  EXPECT_EQ(opt.state_dict().params[0].step, before.params[0].step);
}

}  // namespace
}  // namespace ember::testing
