// Optimizer trajectories against torch.optim (10 steps, float32 and float64), state dicts, and
// argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "ember/ember.hpp"
#include "ember/optim/lr_scheduler.hpp"
#include "support/expect_error.hpp"
#include "support/reference_file.hpp"

namespace ember::testing {
namespace {

template <FloatingElement T>
std::function<void()> make_optimizer(const std::string& name, Tensor<T>& w, Tensor<T>& b,
                                     std::shared_ptr<void>& keep) {
  using namespace optim;
  auto hold = [&keep](auto opt) {
    keep = opt;
    return [opt] { opt->step(); };
  };
  if (name == "sgd") return hold(std::make_shared<SGD<T>>(std::vector<Tensor<T>>{w, b}, SGDOptions{.lr = 0.1}));
  if (name == "sgd_momentum") {
    return hold(std::make_shared<SGD<T>>(std::vector<Tensor<T>>{w, b}, SGDOptions{.lr = 0.1, .momentum = 0.9}));
  }
  if (name == "sgd_nesterov_wd") {
    return hold(std::make_shared<SGD<T>>(
        std::vector<Tensor<T>>{w, b},
        SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}));
  }
  if (name == "sgd_dampening") {
    return hold(std::make_shared<SGD<T>>(std::vector<Tensor<T>>{w, b},
                                         SGDOptions{.lr = 0.1, .momentum = 0.5, .dampening = 0.3}));
  }
  if (name == "sgd_groups") {
    using G = typename SGD<T>::Base::Group;
    return hold(std::make_shared<SGD<T>>(std::vector<G>{
        G{{w}, SGDOptions{.lr = 0.1}}, G{{b}, SGDOptions{.lr = 0.01, .momentum = 0.9}}}));
  }
  if (name == "adam") return hold(std::make_shared<Adam<T>>(std::vector<Tensor<T>>{w, b}, AdamOptions{.lr = 0.01}));
  if (name == "adam_amsgrad_wd") {
    return hold(std::make_shared<Adam<T>>(
        std::vector<Tensor<T>>{w, b},
        AdamOptions{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .weight_decay = 0.1, .amsgrad = true}));
  }
  if (name == "adamw") {
    return hold(std::make_shared<AdamW<T>>(std::vector<Tensor<T>>{w, b},
                                           AdamWOptions{.lr = 0.01, .weight_decay = 0.05}));
  }
  if (name == "rmsprop") {
    return hold(std::make_shared<RMSprop<T>>(std::vector<Tensor<T>>{w, b}, RMSpropOptions{.lr = 0.01}));
  }
  if (name == "rmsprop_centered_momentum") {
    return hold(std::make_shared<RMSprop<T>>(
        std::vector<Tensor<T>>{w, b},
        RMSpropOptions{.lr = 0.01, .alpha = 0.9, .weight_decay = 0.01, .momentum = 0.5, .centered = true}));
  }
  if (name == "adagrad") {
    return hold(std::make_shared<Adagrad<T>>(
        std::vector<Tensor<T>>{w, b},
        AdagradOptions{.lr = 0.1, .lr_decay = 0.01, .initial_accumulator_value = 0.1}));
  }
  if (name == "adamax") {
    return hold(std::make_shared<Adamax<T>>(std::vector<Tensor<T>>{w, b},
                                            AdamaxOptions{.lr = 0.05, .weight_decay = 0.01}));
  }
  if (name == "radam") return hold(std::make_shared<RAdam<T>>(std::vector<Tensor<T>>{w, b}, RAdamOptions{.lr = 0.05}));
  if (name == "radam_betas_wd") {
    return hold(std::make_shared<RAdam<T>>(std::vector<Tensor<T>>{w, b},
                                           RAdamOptions{.lr = 0.05, .beta1 = 0.8, .beta2 = 0.9, .weight_decay = 0.01}));
  }
  if (name == "nadam") return hold(std::make_shared<NAdam<T>>(std::vector<Tensor<T>>{w, b}, NAdamOptions{.lr = 0.05}));
  if (name == "nadam_betas_wd") {
    return hold(std::make_shared<NAdam<T>>(
        std::vector<Tensor<T>>{w, b},
        NAdamOptions{.lr = 0.05, .beta1 = 0.8, .beta2 = 0.95, .weight_decay = 0.01, .momentum_decay = 0.01}));
  }
  return nullptr;
}

template <FloatingElement T>
void check_trajectories(const std::string& file, double tol) {
  auto cases = load_reference(file);
  ASSERT_EQ(cases.size(), 16u);
  for (auto& [name, lines] : cases) {
    SCOPED_TRACE(name);
    Tensor<T> x = lines[0].second.template as<T>(), y = lines[1].second.template as<T>();
    Tensor<T> w = lines[2].second.template as<T>(true), b = lines[3].second.template as<T>(true);
    std::shared_ptr<void> keep;
    auto step = make_optimizer<T>(name, w, b, keep);
    ASSERT_TRUE(step) << "no optimizer for case " << name;
    for (size_t k = 4; k + 1 < lines.size(); k += 2) {
      w.set_grad(Tensor<T>());
      b.set_grad(Tensor<T>());
      auto d = tanh(matmul(x, w.t()) + b) - y;
      (d * d).mean().backward();
      step();
      auto ew = lines[k].second.values, eb = lines[k + 1].second.values;
      auto gw = w.to_vector(), gb = b.to_vector();
      for (size_t i = 0; i < gw.size(); ++i)
        ASSERT_NEAR(gw[i], ew[i], tol * (1 + std::fabs(ew[i]))) << "step " << (k - 2) / 2 << " w[" << i << "]";
      for (size_t i = 0; i < gb.size(); ++i)
        ASSERT_NEAR(gb[i], eb[i], tol * (1 + std::fabs(eb[i]))) << "step " << (k - 2) / 2 << " b[" << i << "]";
    }
  }
}

TEST(Optim, TrajectoriesMatchTorchFloat64) { check_trajectories<double>("torch_optim_float64.txt", 1e-12); }
TEST(Optim, TrajectoriesMatchTorchFloat32) { check_trajectories<float>("torch_optim_float32.txt", 2e-6); }

// Contiguous parameters take the fused one-pass update (Note [Fused Adam]), strided ones the
// composite: both must follow the same trajectory.
TEST(Optim, FusedAndCompositeAdamAgree) {
  for (bool decoupled : {false, true}) {
    manual_seed(3);
    Tensor<double> contiguous = randn<double>({5, 7}).requires_grad_(true);
    Tensor<double> strided = contiguous.detach().t().contiguous().t().requires_grad_(true);  // [5, 7] as a
    ASSERT_FALSE(strided.is_contiguous());                                                   // transposed view
    const Tensor<double> target = randn<double>({5, 7});
    auto run = [&](Tensor<double>& p) {
      std::unique_ptr<optim::OptimizerBase> opt;
      if (decoupled) {
        opt = std::make_unique<optim::AdamW<double>>(std::vector<Tensor<double>>{p},
                                                     optim::AdamWOptions{.lr = 0.05, .weight_decay = 0.1});
      } else {
        opt = std::make_unique<optim::Adam<double>>(std::vector<Tensor<double>>{p},
                                                    optim::AdamOptions{.lr = 0.05, .weight_decay = 0.1});
      }
      for (int step = 0; step < 8; ++step) {
        opt->zero_grad();
        ((p - target).square() * p).sum().backward();
        opt->step();
      }
    };
    run(contiguous);
    run(strided);
    const std::vector<double> a = contiguous.to_vector(), b = strided.to_vector();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-13) << i << (decoupled ? " AdamW" : " Adam");
  }
}

TEST(LRScheduler, SchedulesMatchTorch) {
  using namespace optim;
  auto cases = load_reference("torch_sched.txt");
  ASSERT_EQ(cases.size(), 22u);
  const std::vector<double> metrics = {1, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85};
  for (auto& [name, lines] : cases) {
    SCOPED_TRACE(name);
    auto w = zeros<double>({2}, true), b = zeros<double>({2}, true);
    using G = SGD<double>::Base::Group;
    SGD<double> opt(std::vector<G>{G{{w}, {.lr = 0.1, .momentum = 0.9}}, G{{b}, {.lr = 0.01, .momentum = 0.9}}});
    std::shared_ptr<LRScheduler> sched;
    std::shared_ptr<SequentialLR> seq;
    std::shared_ptr<ChainedScheduler> chain;
    std::shared_ptr<ReduceLROnPlateau> plateau;
    if (name == "step") sched = std::make_shared<StepLR>(opt, 3, 0.5);
    if (name == "multistep") sched = std::make_shared<MultiStepLR>(opt, std::vector<int64_t>{2, 5, 6}, 0.3);
    if (name == "exponential") sched = std::make_shared<ExponentialLR>(opt, 0.9);
    if (name == "cosine") sched = std::make_shared<CosineAnnealingLR>(opt, 5, 0.001);
    if (name == "linear") sched = std::make_shared<LinearLR>(opt, 0.25, 1.0, 4);
    if (name == "onecycle") sched = std::make_shared<OneCycleLR>(opt, 1.0, OneCycleOptions{.total_steps = 12});
    if (name == "onecycle_three_phase_linear") {
      sched = std::make_shared<OneCycleLR>(
          opt, 1.0, OneCycleOptions{.total_steps = 12, .pct_start = 0.25, .cos_anneal = false, .three_phase = true});
    }
    if (name == "sequential") {
      auto a = std::make_shared<LinearLR>(opt, 0.1, 1.0, 3);
      auto e = std::make_shared<ExponentialLR>(opt, 0.9);
      seq = std::make_shared<SequentialLR>(opt, std::vector<std::shared_ptr<LRScheduler>>{a, e},
                                           std::vector<int64_t>{3});
    }
    if (name == "plateau") {
      plateau = std::make_shared<ReduceLROnPlateau>(
          opt, ReduceLROnPlateauOptions{.factor = 0.5, .patience = 2, .cooldown = 1});
    }
    if (name == "lambda") {
      sched = std::make_shared<LambdaLR>(opt, [](int64_t e) { return std::pow(0.95, e) * (e + 1.0) / (e + 2.0); });
    }
    if (name == "lambda_per_group") {
      sched = std::make_shared<LambdaLR>(
          opt, std::vector<LambdaLR::Lambda>{[](int64_t e) { return 1.0 / (e + 1.0); },
                                             [](int64_t e) { return std::pow(0.5, static_cast<double>(e / 3)); }});
    }
    if (name == "constant") sched = std::make_shared<ConstantLR>(opt, 0.5, 4);
    if (name == "polynomial") sched = std::make_shared<PolynomialLR>(opt, 6, 2.0);
    if (name == "warm_restarts") sched = std::make_shared<CosineAnnealingWarmRestarts>(opt, 3, 2, 0.001);
    if (name == "warm_restarts_fixed") sched = std::make_shared<CosineAnnealingWarmRestarts>(opt, 4);
    if (name == "cyclic_triangular2") {
      sched = std::make_shared<CyclicLR>(
          opt, 0.01, 0.1, CyclicLROptions{.step_size_up = 2, .step_size_down = 3, .mode = CyclicMode::Triangular2});
    }
    if (name == "cyclic_exp_range") {
      sched = std::make_shared<CyclicLR>(opt, 0.01, 0.1,
                                         CyclicLROptions{.step_size_up = 3, .mode = CyclicMode::ExpRange,
                                                         .gamma = 0.9, .cycle_momentum = false});
    }
    if (name == "multiplicative") {
      sched = std::make_shared<MultiplicativeLR>(opt, [](int64_t e) { return e % 2 != 0 ? 0.9 : 1.05; });
    }
    if (name == "multiplicative_per_group") {
      sched = std::make_shared<MultiplicativeLR>(
          opt, std::vector<MultiplicativeLR::Lambda>{[](int64_t) { return 0.95; },
                                                     [](int64_t e) { return 1.0 / (1.0 + 0.1 * e); }});
    }
    if (name == "chained") {
      chain = std::make_shared<ChainedScheduler>(std::vector<std::shared_ptr<LRScheduler>>{
          std::make_shared<ConstantLR>(opt, 0.1, 2), std::make_shared<ExponentialLR>(opt, 0.9)});
    }
    if (name == "chained_three") {
      chain = std::make_shared<ChainedScheduler>(std::vector<std::shared_ptr<LRScheduler>>{
          std::make_shared<LinearLR>(opt, 0.2, 1.0, 4),
          std::make_shared<MultiStepLR>(opt, std::vector<int64_t>{3, 7}, 0.5),
          std::make_shared<MultiplicativeLR>(opt, [](int64_t) { return 0.97; })});
    }
    if (name == "sequential_multiplicative") {
      auto e = std::make_shared<ExponentialLR>(opt, 0.8);
      auto m = std::make_shared<MultiplicativeLR>(opt, [](int64_t k) { return k % 3 != 0 ? 0.9 : 1.2; });
      seq = std::make_shared<SequentialLR>(opt, std::vector<std::shared_ptr<LRScheduler>>{e, m},
                                           std::vector<int64_t>{4});
    }
    ASSERT_TRUE(sched || seq || plateau || chain);
    for (size_t k = 0; k + 1 < lines.size(); k += 2) {
      const auto& lr = lines[k].second.values;
      const auto& m = lines[k + 1].second.values;
      for (size_t g = 0; g < 2; ++g) {
        EXPECT_NEAR(opt.lr(g), lr[g], 1e-12) << "step " << k / 2 << " group " << g;
        EXPECT_NEAR(opt.momentum(g), m[g], 1e-12) << "step " << k / 2 << " group " << g;
      }
      opt.step();
      if (plateau) {
        plateau->step(metrics[k / 2]);
      } else if (k + 2 < lines.size()) {
        if (seq) seq->step();
        else if (chain) chain->step();
        else sched->step();
      }
    }
  }
}

TEST(LRScheduler, BadArgumentsAreRefusedAndLeaveTheOptimizerAsItWas) {
  using namespace optim;
  auto p = zeros<float>({2}, true), q = zeros<float>({2}, true);
  using G = SGD<float>::Base::Group;
  SGD<float> sgd(std::vector<G>{G{{p}, {.lr = 0.1}}, G{{q}, {.lr = 0.01}}});
  auto one = [](int64_t) { return 1.0; };
  expect_error<ValueError>([&] { LambdaLR(sgd, std::vector<LambdaLR::Lambda>{one}); },
                           "LambdaLR: 1 lr_lambdas for 2 parameter groups");
  expect_error<ValueError>([&] { LambdaLR(sgd, LambdaLR::Lambda()); }, "LambdaLR: lr_lambda of group 0 is empty");
  expect_error<ValueError>([&] { ConstantLR(sgd, 1.5); }, "ConstantLR: factor must be in [0, 1], got 1.5");
  expect_error<ValueError>([&] { PolynomialLR(sgd, 0); }, "PolynomialLR: total_iters must be positive, got 0");
  expect_error<ValueError>([&] { CosineAnnealingWarmRestarts(sgd, 0); }, "T_0 must be positive, got 0");
  expect_error<ValueError>([&] { CosineAnnealingWarmRestarts(sgd, 3, 0); }, "T_mult must be >= 1, got 0");
  expect_error<ValueError>([&] { CyclicLR(sgd, 0.001, 0.1, {.step_size_up = 0}); },
                           "CyclicLR: step_size_up must be positive");
  Adagrad<float> adagrad({p}, {.lr = 0.5});
  expect_error<ValueError>([&] { CyclicLR(adagrad, 0.001, 0.1); }, "CyclicLR: cycle_momentum needs an optimizer");
  EXPECT_EQ(sgd.lr(0), 0.1);
  EXPECT_EQ(sgd.lr(1), 0.01);
  EXPECT_EQ(adagrad.lr(0), 0.5);
  // Without momentum cycling any optimizer cycles its learning rate, from base_lr.
  CyclicLR cyclic(adagrad, 0.001, 0.1, {.step_size_up = 4, .cycle_momentum = false});
  EXPECT_EQ(adagrad.lr(0), 0.001);
  for (int i = 0; i < 4; ++i) cyclic.step();
  EXPECT_NEAR(adagrad.lr(0), 0.1, 1e-15);
}

TEST(LRScheduler, ChainedSchedulerResumesAndRefusesWhatItCannotChain) {
  using namespace optim;
  auto p = zeros<double>({2}, true);
  auto make = [](SGD<double>& sgd) {
    return std::make_shared<ChainedScheduler>(std::vector<std::shared_ptr<LRScheduler>>{
        std::make_shared<StepLR>(sgd, 2, 0.5), std::make_shared<MultiplicativeLR>(sgd, [](int64_t e) {
          return 1.0 - 0.05 * static_cast<double>(e);
        })});
  };
  SGD<double> whole({p}, 0.1);
  auto unbroken = make(whole);
  std::vector<double> expected;
  for (int e = 0; e < 8; ++e) {
    expected.push_back(whole.lr(0));
    unbroken->step();
  }
  // Stop after 3 steps, save, continue in a new optimizer and chain.
  SGD<double> first({p}, 0.1);
  auto a = make(first);
  for (int e = 0; e < 3; ++e) a->step();
  const auto saved = a->state_dict();
  EXPECT_EQ(saved.count("1.factor.0"), 1u);
  SGD<double> second({p}, 0.1);
  auto b = make(second);
  b->load_state_dict(saved);
  for (int e = 3; e < 8; ++e) {
    EXPECT_NEAR(second.lr(0), expected[static_cast<size_t>(e)], 1e-15) << "epoch " << e;
    b->step();
  }
  // A bad state changes nothing; an unknown key is named.
  const double before = second.lr(0);
  auto broken = saved;
  broken["1.factor.0"] = std::numeric_limits<double>::quiet_NaN();
  expect_error<ValueError>([&] { b->load_state_dict(broken); }, "factor.0 = nan is not a finite number");
  auto unknown = saved;
  unknown["2.last_epoch"] = 1;
  expect_error<ValueError>([&] { b->load_state_dict(unknown); }, "key \"2.last_epoch\" names none of the 2");
  EXPECT_EQ(second.lr(0), before);
  EXPECT_EQ(b->state_dict(), [&] {
    SGD<double> third({p}, 0.1);
    auto c = make(third);
    c->load_state_dict(saved);
    for (int e = 3; e < 8; ++e) c->step();
    return c->state_dict();
  }());
  // A function that throws mid-chain leaves every member where it was.
  SGD<double> sgd({p}, 0.1);
  int calls = 0;
  ChainedScheduler throwing({std::make_shared<ExponentialLR>(sgd, 0.9),
                             std::make_shared<MultiplicativeLR>(sgd, [&calls](int64_t) -> double {
                               if (++calls == 2) throw std::runtime_error("no factor today");
                               return 0.5;
                             })});
  throwing.step();
  const auto state = throwing.state_dict();
  const double lr = sgd.lr(0);
  EXPECT_THROW(throwing.step(), std::runtime_error);
  EXPECT_EQ(throwing.state_dict(), state);
  EXPECT_EQ(sgd.lr(0), lr);

  // What cannot be chained, and a chain over two optimizers.
  expect_error<ValueError>([&] { ChainedScheduler({}); }, "ChainedScheduler: expected at least one scheduler");
  expect_error<ValueError>(
      [&] { ChainedScheduler({std::make_shared<LambdaLR>(sgd, [](int64_t) { return 1.0; })}); },
      "scheduler 0 (LambdaLR) is not chainable");
  expect_error<ValueError>([&] { ChainedScheduler({std::make_shared<ExponentialLR>(sgd, 0.9),
                                                   std::make_shared<CosineAnnealingLR>(sgd, 5)}); },
                           "scheduler 1 (CosineAnnealingLR) is not chainable");
  SGD<double> other({p}, 0.1);
  expect_error<ValueError>([&] { ChainedScheduler({std::make_shared<ExponentialLR>(sgd, 0.9),
                                                   std::make_shared<ExponentialLR>(other, 0.9)}); },
                           "scheduler 1 steps another optimizer than scheduler 0");
  expect_error<ValueError>([&] { MultiplicativeLR(sgd, MultiplicativeLR::Lambda()); },
                           "MultiplicativeLR: lr_lambda of group 0 is empty");
}

TEST(LRScheduler, GroupsAddedLaterKeepTheirRate) {
  using namespace optim;
  auto p = zeros<double>({2}, true), q = zeros<double>({2}, true);
  SGD<double> sgd({p}, 0.1);
  StepLR step(sgd, 1, 0.5);
  sgd.add_param_group({{q}, {.lr = 0.3}});
  step.step();
  EXPECT_NEAR(sgd.lr(0), 0.05, 1e-15);
  EXPECT_EQ(sgd.lr(1), 0.3);  // as PyTorch: the scheduler's base_lrs do not cover it
  EXPECT_EQ(step.get_last_lr().size(), 1u);
}

TEST(Optim, ClipGradNormAndValue) {
  auto a = tensor<double>({3, 4}, {2}, true), b = tensor<double>({12}, {1}, true);
  a.set_grad(tensor<double>({3, 4}, {2}));
  b.set_grad(tensor<double>({12}, {1}));
  const double total = optim::clip_grad_norm_<double>({a, b}, 6.5);
  EXPECT_DOUBLE_EQ(total, 13.0);
  EXPECT_NEAR(a.grad().at({0}), 3 * 6.5 / (13 + 1e-6), 1e-12);
  optim::clip_grad_value_<double>({a, b}, 1.0);
  EXPECT_EQ(b.grad().item(), 1.0);
  auto c = tensor<double>({1}, {1}, true);
  EXPECT_EQ(optim::clip_grad_norm_<double>({c}, 1.0), 0.0);  // no gradient: nothing to clip
}

TEST(Optim, ApiContractAndStateDictRoundTrip) {
  nn::Sequential net(nn::Linear(4, 8), nn::ReLU(), nn::Linear(8, 3));
  optim::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  optim::Adam adam(net.parameters(), {.lr = 1e-3});
  Generator gen(3);
  auto x = randn<float>({5, 4}, false, &gen);
  auto targets = tensor<int64_t>({0, 2, 1, 1, 0}, {5});
  for (int i = 0; i < 3; ++i) {
    sgd.zero_grad();
    auto loss = nn::functional::cross_entropy(net(x), targets);
    loss.backward();
    sgd.step();
  }
  auto state = sgd.state_dict();
  ASSERT_EQ(state.params.size(), 4u);
  EXPECT_TRUE(state.params[0].tensors.count("momentum_buffer"));
  EXPECT_EQ(state.groups[0].at("momentum"), 0.9);
  // A fresh optimizer loaded with the state continues exactly like the original.
  auto params_copy = net.state_dict();
  optim::SGD<float> resumed(net.parameters(), {.lr = 0.5});
  resumed.load_state_dict(state);
  EXPECT_EQ(resumed.param_groups()[0].options.lr, 0.1);
  EXPECT_EQ(resumed.param_groups()[0].options.momentum, 0.9);
  sgd.zero_grad();
  nn::functional::cross_entropy(net(x), targets).backward();
  auto grads = net.parameters();
  std::vector<Tensor<float>> saved_grads;
  for (auto& p : grads) saved_grads.push_back(p.grad().clone());
  sgd.step();
  auto after_original = net.state_dict();
  net.load_state_dict(params_copy);
  for (size_t i = 0; i < grads.size(); ++i) grads[i].set_grad(saved_grads[i]);
  resumed.step();
  auto after_resumed = net.state_dict();
  for (size_t i = 0; i < after_original.size(); ++i) {
    EXPECT_EQ(Tensor<float>::from_base(after_original[i].tensor).to_vector(),
              Tensor<float>::from_base(after_resumed[i].tensor).to_vector());
  }
  (void)adam;
}

// Every field of every options struct goes into a state dict and comes back: a field missing
// from a fields() list would come back with the base value instead.
template <class Options>
void expect_round_trip(const Options& changed, size_t field_count) {
  const auto m = optim::options_to_map(changed);
  EXPECT_EQ(m.size(), field_count);
  const Options back = optim::options_from_map(m, Options{});
  EXPECT_EQ(optim::options_to_map(back), m);
  EXPECT_EQ(optim::options_from_map({}, changed).lr, changed.lr);  // missing keys keep the base
}

TEST(Optim, OptionsRoundTripThroughTheirFieldLists) {
  expect_round_trip(optim::SGDOptions{.lr = 0.5, .momentum = 0.8, .dampening = 0.1, .weight_decay = 0.2,
                                      .nesterov = true, .maximize = true}, 6);
  expect_round_trip(optim::AdamOptions{.lr = 0.5, .beta1 = 0.7, .beta2 = 0.8, .eps = 0.1, .weight_decay = 0.2,
                                       .amsgrad = true, .maximize = true}, 7);
  expect_round_trip(optim::AdamWOptions{.lr = 0.5, .beta1 = 0.7, .beta2 = 0.8, .eps = 0.1, .weight_decay = 0.3,
                                        .amsgrad = true, .maximize = true}, 7);
  expect_round_trip(optim::RMSpropOptions{.lr = 0.5, .alpha = 0.7, .eps = 0.1, .weight_decay = 0.2, .momentum = 0.3,
                                          .centered = true, .maximize = true}, 7);
  expect_round_trip(optim::AdagradOptions{.lr = 0.5, .lr_decay = 0.1, .weight_decay = 0.2,
                                          .initial_accumulator_value = 0.3, .eps = 0.4, .maximize = true}, 6);
  // AdamW's options become Adam's by name, its own default weight decay included.
  optim::AdamW<double> adamw({zeros<double>({2}).requires_grad_(true)});
  EXPECT_EQ(adamw.param_groups()[0].options.weight_decay, 1e-2);
}

// Adamax's and RAdam's state (exp_inf; RAdam's step count decides its branch) resumes exactly.
TEST(Optim, AdamaxAndRAdamResumeFromTheirStateDict) {
  auto run = [](auto make) {
    auto w = tensor<double>({0.5, -1.0, 2.0}, {3}, true);
    auto first = make(w);
    auto step = [&w](auto& opt) {
      w.set_grad(Tensor<double>());
      (w * w * w).sum().backward();
      opt.step();
    };
    for (int i = 0; i < 4; ++i) step(*first);
    auto resumed = make(w);
    resumed->load_state_dict(first->state_dict());
    auto w_copy = w.detach().clone();
    for (int i = 0; i < 4; ++i) step(*first);
    const auto expected = w.to_vector();
    {
      NoGradGuard no_grad;
      w.copy_(w_copy);
    }
    for (int i = 0; i < 4; ++i) step(*resumed);
    EXPECT_EQ(w.to_vector(), expected);
  };
  run([](Tensor<double>& w) { return std::make_unique<optim::Adamax<double>>(std::vector<Tensor<double>>{w}); });
  run([](Tensor<double>& w) {
    return std::make_unique<optim::RAdam<double>>(std::vector<Tensor<double>>{w}, optim::RAdamOptions{.lr = 0.1});
  });
  run([](Tensor<double>& w) {  // mu_product, a number, resumes too
    return std::make_unique<optim::NAdam<double>>(std::vector<Tensor<double>>{w}, optim::NAdamOptions{.lr = 0.1});
  });
}

// NAdam's numbers: mu_product is 0-dim in its state (a parameter-shaped one is refused), and the
// decoupled weight decay (NAdamW) scales the weights by 1 - lr * weight_decay before the step
// without decay.
TEST(Optim, NAdamStateAndDecoupledWeightDecay) {
  auto w = tensor<double>({0.5, -1.0, 2.0}, {3}, true);
  auto grad_of = [](const Tensor<double>& p) { return (p * p * p).detach(); };
  optim::NAdam<double> nadam({w}, {.lr = 0.1});
  w.set_grad(grad_of(w));
  nadam.step();
  optim::OptimizerState state = nadam.state_dict();
  ASSERT_EQ(state.params[0].tensors.at("mu_product").shape(), Shape{});
  EXPECT_EQ(Tensor<double>::from_base(state.params[0].tensors.at("mu_product")).item(),
            static_cast<double>(static_cast<float>(0.9 * (1.0 - 0.5 * std::pow(0.96, 0.004)))));
  state.params[0].tensors["mu_product"] = ones<double>({3});
  expect_error<ValueError>([&] { nadam.load_state_dict(state); },
                           "mu_product of group 0 parameter 0 is float64 [3], expected a number: float64 []");

  auto a = tensor<double>({0.5, -1.0, 2.0}, {3}, true), b = tensor<double>({0.5, -1.0, 2.0}, {3}, true);
  optim::NAdam<double> decoupled({a}, {.lr = 0.1, .weight_decay = 0.2, .decoupled_weight_decay = true});
  optim::NAdam<double> plain({b}, {.lr = 0.1});
  for (int step = 0; step < 3; ++step) {
    a.set_grad(grad_of(a));
    b.set_grad(grad_of(a));
    {
      NoGradGuard no_grad;
      b.copy_(a * (1.0 - 0.1 * 0.2));
    }
    decoupled.step();
    plain.step();
    const std::vector<double> x = a.to_vector(), y = b.to_vector();
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], 1e-15) << "step " << step << " [" << i << "]";
  }
}

TEST(Optim, Errors) {
  auto p = randn<float>({3}, true);
  auto q = p * 2.0;
  EXPECT_THROW(optim::SGD<float>({q}, {.lr = 0.1}), ValueError);
  EXPECT_THROW(optim::SGD<float>({p, p}, {.lr = 0.1}), ValueError);
  EXPECT_THROW(optim::SGD<float>({p}, {.lr = -1}), ValueError);
  optim::SGD<float> sgd({p}, {.lr = 0.1});
  optim::OptimizerState wrong;
  EXPECT_THROW(sgd.load_state_dict(wrong), ValueError);
  EXPECT_THROW(optim::SGD<float>({p}, {.lr = 0.1, .nesterov = true}), ValueError);
  // torch.optim's option checks, at construction (NaN fails them too) ...
  using ember::testing::expect_error;
  expect_error<ValueError>([&] { optim::Adam<float>({p}, {.beta1 = 1.0}); }, "Adam: beta1 must be in [0, 1), got 1");
  expect_error<ValueError>([&] { optim::Adam<float>({p}, {.lr = std::nan("")}); }, "Adam: lr must be >= 0, got nan");
  expect_error<ValueError>([&] { optim::AdamW<float>({p}, {.eps = -1e-8}); }, "eps must be >= 0");
  expect_error<ValueError>([&] { optim::SGD<float>({p}, {.lr = 0.1, .weight_decay = -0.1}); },
                           "SGD: weight_decay must be >= 0, got -0.1");
  expect_error<ValueError>([&] { optim::RMSprop<float>({p}, {.alpha = -0.5}); }, "RMSprop: alpha must be >= 0");
  expect_error<ValueError>([&] { optim::Adagrad<float>({p}, {.lr_decay = -1}); }, "Adagrad: lr_decay must be >= 0");
  expect_error<ValueError>([&] { optim::Adamax<float>({p}, {.beta2 = 1.0}); },
                           "Adamax: beta2 must be in [0, 1), got 1");
  expect_error<ValueError>([&] { optim::RAdam<float>({p}, {.lr = -0.1}); }, "RAdam: lr must be >= 0, got -0.1");
  expect_error<ValueError>([&] { optim::NAdam<float>({p}, {.momentum_decay = -1}); },
                           "NAdam: momentum_decay must be >= 0, got -1");
  // ... and at each step, before anything changes: a group's options may be edited in between.
  optim::AdamW<float> adamw({p}, {.lr = 0.1});
  p.set_grad(ones<float>({3}));
  adamw.param_groups()[0].options.beta2 = 1.5;
  const auto before = p.to_vector();
  expect_error<ValueError>([&] { adamw.step(); }, "AdamW: beta2 must be in [0, 1), got 1.5");
  EXPECT_EQ(p.to_vector(), before);
}

}  // namespace
}  // namespace ember::testing
