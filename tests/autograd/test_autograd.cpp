// The autograd engine: accumulation, retained graphs, autograd::grad, higher order, guards,
// version counters, custom functions, hooks, anomaly mode, deep graphs and threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"

namespace ember {
namespace {

TEST(Autograd, ApiContractExample) {
  manual_seed(42);
  Tensor<double> a = randn<double>({3, 4}, /*requires_grad=*/true);
  auto b = tensor<double>({1, 2, 3, 4}, {4});
  auto y = (tanh(a * b + 1.0) * exp(a)).sum();
  y.backward();
  Tensor<double> g = a.grad();
  ASSERT_EQ(g.shape(), Shape({3, 4}));
  // d/da tanh(a b + 1) e^a = b (1 - tanh^2) e^a + tanh e^a
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      double av = a.at({i, j}), bv = b.at({j});
      double t = std::tanh(av * bv + 1.0);
      EXPECT_NEAR(g.at({i, j}), bv * (1 - t * t) * std::exp(av) + t * std::exp(av), 1e-12);
    }
}

TEST(Autograd, GradientsAccumulateUntilZeroed) {
  auto x = tensor<double>({1, 2, 3}, {3}, true);
  auto y = (x * x).sum() + x.sum();  // x used three times
  y.backward({}, /*retain_graph=*/true);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, 5, 7}));
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 10, 14}));
  x.grad().zero_();
  (x * 3.0).sum().backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, 3, 3}));
  EXPECT_FALSE(x.grad().requires_grad());
}

// A leaf keeps the gradient buffer the engine hands it when no other tensor can see that buffer
// (no copy per parameter and step), and copies it otherwise, so that accumulating into .grad
// later never writes into another tensor.
TEST(Autograd, LeafTakesAnUnsharedGradientBufferAndCopiesASharedOne) {
  // mm's gradient for a weight used as w.t() arrives as the transpose of a transposed product:
  // a view whose base is gone.
  auto x = tensor<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  auto w = tensor<double>({1, 0, -1, 2, 0.5, 3}, {2, 3}, true);
  const double* seen = nullptr;
  w.register_hook([&seen](const Tensor<double>& g) {
    seen = g.data_ptr();
    return Tensor<double>();
  });
  mm(x, w.t()).sum().backward();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{5, 7, 9, 5, 7, 9}));
  EXPECT_EQ(w.grad().data_ptr(), seen);

  // A gradient that shares its storage with a live tensor is copied.
  auto keep = tensor<double>({1, 2, 3, 4}, {2, 2});
  auto a = zeros<double>({2, 2}, true);
  a.register_hook([&keep](const Tensor<double>&) { return keep.t().t(); });
  (a * 1.0).sum().backward();
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{1, 2, 3, 4}));
  a.grad().add_(tensor<double>({10, 10, 10, 10}, {2, 2}));
  EXPECT_EQ(keep.to_vector(), (std::vector<double>{1, 2, 3, 4}));

  // So is one that covers only part of its buffer: the grad does not keep the rest alive.
  auto b = zeros<double>({2}, true);
  b.register_hook([](const Tensor<double>&) {
    Tensor<double> big = full<double>({1 << 20}, 7.0);
    return big.narrow(0, 1, 2);
  });
  const int64_t live_before = memory_stats().live_bytes;
  (b * 1.0).sum().backward();
  EXPECT_LT(memory_stats().live_bytes - live_before, int64_t(1) << 20);
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{7, 7}));
}

// Scales by a factor and records the address of the gradient it sends back.
struct RecordedScale : autograd::Function<RecordedScale> {
  static inline std::vector<const double*> sent;
  static Tensor<double> forward(autograd::FunctionCtx<double>& ctx, const Tensor<double>& x, double factor) {
    ctx.saved_data["factor"] = factor;
    return x * factor;
  }
  static std::vector<Tensor<double>> backward(autograd::FunctionCtx<double>& ctx, const Tensor<double>& g) {
    Tensor<double> gx = g * ctx.saved_data["factor"].toDouble();
    sent.push_back(gx.data_ptr());
    return {gx};
  }
};

// Note [Gradients summed in place]: the gradients of a tensor's several uses are summed into one of
// their own buffers when nothing else refers to it, and never into a gradient someone else holds.
TEST(Autograd, GradientsOfSeveralUsesAreSummedIntoAnUnsharedBuffer) {
  auto x = tensor<double>({1, 2, 3}, {3}, true);
  auto a = x * 1.0;
  const double* summed = nullptr;
  a.register_hook([&summed](const Tensor<double>& g) {
    summed = g.data_ptr();
    return Tensor<double>();
  });
  RecordedScale::sent.clear();
  (RecordedScale::apply(a, 2.0) + RecordedScale::apply(a, 3.0)).sum().backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{5, 5, 5}));
  ASSERT_EQ(RecordedScale::sent.size(), 2u);
  EXPECT_EQ(summed, RecordedScale::sent[0]);  // the first arrival's buffer, not a new one

  // add's backward hands the same gradient to both of its inputs: a + a sums into a new buffer,
  // and the caller's gradient stays as it was.
  auto b = exp(x.detach()).requires_grad_(true);
  auto c = b * 1.0;
  const Tensor<double> upstream = tensor<double>({1, 10, 100}, {3});
  (c + c + c * 2.0).backward(upstream);
  EXPECT_EQ(upstream.to_vector(), (std::vector<double>{1, 10, 100}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{4, 40, 400}));

  // Building a graph, the sum stays a recorded op: a second derivative through it.
  auto z = tensor<double>({2}, {1}, true);
  auto u = z * z;
  auto gz = autograd::grad({(u * z + u * 2.0).sum()}, {z}, true)[0];  // 3 z^2 + 4 z
  EXPECT_EQ(gz.to_vector(), (std::vector<double>{20}));
  EXPECT_EQ(autograd::grad({gz.sum()}, {z})[0].to_vector(), (std::vector<double>{16}));  // 6 z + 4
}

TEST(Autograd, ExplicitGradientForNonScalar) {
  auto x = tensor<double>({1, 2, 3}, {3}, true);
  auto y = x * x;
  y.backward(tensor<double>({1, 0.5, 2}, {3}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 2, 12}));
}

TEST(Autograd, GradFunctionLeavesGradUntouched) {
  auto x = tensor<double>({1, 2}, {2}, true);
  auto y = (x * x * x).sum();
  auto g = autograd::grad({y}, {x}, /*create_graph=*/true);
  EXPECT_EQ(g[0].to_vector(), (std::vector<double>{3, 12}));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_TRUE(g[0].requires_grad());
  auto gg = autograd::grad({g[0].sum()}, {x});
  EXPECT_EQ(gg[0].to_vector(), (std::vector<double>{6, 12}));  // 6x
  // Third order through the double-backward graph.
  auto g1 = autograd::grad({(x * x * x).sum()}, {x}, true)[0];
  auto g2 = autograd::grad({g1.sum()}, {x}, true)[0];
  auto g3 = autograd::grad({g2.sum()}, {x})[0];
  EXPECT_EQ(g3.to_vector(), (std::vector<double>{6, 6}));
  // Non-leaf inputs.
  auto h = x * 2.0;
  auto gh = autograd::grad({(h * h).sum()}, {h});
  EXPECT_EQ(gh[0].to_vector(), (std::vector<double>{4, 8}));
  // Unused inputs.
  auto unused = tensor<double>({1}, {1}, true);
  auto r = autograd::grad({(x * 2.0).sum()}, {x, unused}, false, /*allow_unused=*/true);
  EXPECT_TRUE(r[0].defined());
  EXPECT_FALSE(r[1].defined());
}

TEST(Autograd, BackwardWithCreateGraphMakesDifferentiableGrads) {
  auto x = tensor<double>({0.5, -1.0}, {2}, true);
  auto y = sin(x).sum();
  y.backward({}, false, /*create_graph=*/true);
  Tensor<double> g = x.grad();
  EXPECT_TRUE(g.requires_grad());
  auto gg = autograd::grad({g.sum()}, {x});
  EXPECT_NEAR(gg[0].at({0}), -std::sin(0.5), 1e-12);
  EXPECT_NEAR(gg[0].at({1}), -std::sin(-1.0), 1e-12);
}

TEST(Autograd, NoGradGuardIsThreadLocal) {
  auto x = randn<float>({3}, true);
  {
    NoGradGuard guard;
    auto y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(autograd::grad_mode_enabled());
    bool other_thread_mode = false;
    std::thread t([&] { other_thread_mode = autograd::grad_mode_enabled(); });
    t.join();
    EXPECT_TRUE(other_thread_mode);
  }
  EXPECT_TRUE((x * 2.0).requires_grad());
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE((x * 2.0).is_leaf());
  EXPECT_FALSE((x * 2.0).detach().requires_grad());
}

TEST(Autograd, InPlaceChangeOfSavedTensorThrows) {
  auto w = randn<double>({3}, true);
  auto a = w * 2.0;
  auto c = a * w;  // saves a
  {
    NoGradGuard g;
    a.mul_(3.0);
  }
  try {
    c.sum().backward();
    FAIL() << "expected AutogradError";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("mul: one of the tensors needed for gradient computation"),
              std::string::npos)
        << e.what();
  }
  // A saved output modified in place (through autograd) is caught as well.
  auto x = randn<double>({3}, true);
  auto b = exp(x * 1.0);
  b.add_(1.0);
  EXPECT_THROW(b.sum().backward(), AutogradError);
}

TEST(Autograd, InPlaceOnNonLeafIsRecorded) {
  auto x = tensor<double>({1, 2, 3}, {3}, true);
  auto y = x * 2.0;
  y.add_(1.0);
  y.mul_(3.0);
  y.relu_();
  y.sum().backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 6, 6}));
  EXPECT_EQ(y.to_vector(), (std::vector<double>{9, 15, 21}));
}

// Writes into a view of a tensor in the graph, and views taken before their base changed in place,
// would give gradients that skip the write (PyTorch rebases the base's history instead): refused,
// with nothing written.
TEST(Autograd, WritesThroughViewsAndStaleViewsAreRefused) {
  auto x = tensor<double>({1, 2, 3}, {3}, true);
  auto h = x * 2.0;
  ember::testing::expect_error<AutogradError>([&] { h.index_put_({indexing::Slice(0, 1)}, 5.0); },
                                              "fill_: writing into a view (shape [1]) of a tensor in the autograd graph");
  ember::testing::expect_error<AutogradError>([&] { h.slice(0, 1, 3).copy_(zeros<double>({2})); },
                                              "copy_: writing into a view (shape [2])");
  ember::testing::expect_error<AutogradError>([&] { zeros<double>({4}).slice(0, 0, 3).copy_(x); },
                                              "copy_: writing into a view (shape [3])");
  EXPECT_EQ(h.to_vector(), (std::vector<double>{2, 4, 6}));  // nothing written
  {
    NoGradGuard g;  // untracked writes are allowed, as in PyTorch
    h.slice(0, 0, 1).fill_(2.0);
  }
  // A view taken before h.mul_ still leads to h's old history: its gradient would be 2, not 6.
  auto before = h.slice(0, 0, 2);
  h.mul_(3.0);
  ember::testing::expect_error<AutogradError>([&] { before.sum(); },
                                              "sum: the tensor of shape [2] is a view taken before the tensor");
  ember::testing::expect_error<AutogradError>([&] { before.backward(ones<double>({2})); }, "backward: the tensor of shape [2] is a view");
  auto after = h.slice(0, 0, 2);
  after.sum().backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 6, 0}));
  // Detaching the base in place leaves earlier views stale too; under NoGradGuard views stay usable.
  auto y = x * 1.0;
  auto v = y.slice(0, 1, 2);
  y.detach_();
  EXPECT_THROW((v * 2.0).sum(), AutogradError);
  auto z = x * 1.0;
  auto w = z.slice(0, 1, 2);
  {
    NoGradGuard g;
    z.mul_(2.0);
  }
  x.set_grad(Tensor<double>());
  (w * 1.0).sum().backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 1, 0}));
}

struct Cube : autograd::Function<Cube> {
  static Tensor<double> forward(autograd::FunctionCtx<double>& ctx, const Tensor<double>& x,
                                double scale) {
    ctx.save_for_backward({x});
    ctx.data["scale"] = scale;
    return x * x * x * scale;
  }
  static std::vector<Tensor<double>> backward(autograd::FunctionCtx<double>& ctx,
                                              const Tensor<double>& grad) {
    auto x = ctx.saved()[0];
    return {grad * x * x * (3.0 * ctx.data["scale"])};
  }
};

struct WrongArity : autograd::Function<WrongArity> {
  static Tensor<double> forward(autograd::FunctionCtx<double>&, const Tensor<double>& x) {
    return x * 1.0;
  }
  static std::vector<Tensor<double>> backward(autograd::FunctionCtx<double>&,
                                              const Tensor<double>& g) {
    return {g, g};
  }
};

TEST(Autograd, CustomFunction) {
  auto x = tensor<double>({1, 2}, {2}, true);
  auto y = Cube::apply(x, 2.0);
  EXPECT_EQ(y.to_vector(), (std::vector<double>{2, 16}));
  EXPECT_TRUE(y.requires_grad());
  y.sum().backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 24}));
  // Its backward is made of ember ops, so it has a second derivative.
  auto g = autograd::grad({Cube::apply(x, 1.0).sum()}, {x}, true)[0];
  auto gg = autograd::grad({g.sum()}, {x})[0];
  EXPECT_EQ(gg.to_vector(), (std::vector<double>{6, 12}));
  EXPECT_THROW(WrongArity::apply(x).sum().backward(), AutogradError);
}

// A float function in LibTorch's style: non-tensor arguments between tensors, saved_data of
// several types, one gradient per forward argument with trailing ones omitted.
struct ScaledProduct : autograd::Function<ScaledProduct> {
  static Tensor<float> forward(autograd::FunctionCtx<float>& ctx, const Tensor<float>& a, double scale,
                               const Tensor<float>& b, int power, bool negate) {
    ctx.save_for_backward({a, b});
    ctx.saved_data["scale"] = scale;
    ctx.saved_data["power"] = power;
    ctx.saved_data["negate"] = negate;
    ctx.saved_data["shape"] = std::vector<int64_t>{a.shape()[0]};
    ctx.saved_data["b"] = b;
    Tensor<float> y = a * b * scale;
    for (int i = 1; i < power; ++i) y = y * b;
    return negate ? -y : y;
  }
  static std::vector<Tensor<float>> backward(autograd::FunctionCtx<float>& ctx, const Tensor<float>& g) {
    const double scale = ctx.saved_data["scale"].toDouble();
    const int64_t power = ctx.saved_data["power"].toInt();
    const double sign = ctx.saved_data["negate"].toBool() ? -1.0 : 1.0;
    EXPECT_EQ(ctx.saved_data["shape"].to<std::vector<int64_t>>()[0], 2);
    EXPECT_THROW(ctx.saved_data["power"].to<double>(), AutogradError);  // stored as int
    const Tensor<float> b = ctx.saved_data["b"].toTensor<float>();
    const Tensor<float> a = ctx.saved()[0];
    Tensor<float> b_pow = ones_like(b);
    for (int64_t i = 0; i < power; ++i) b_pow = b_pow * b;
    Tensor<float> da = g * b_pow * (scale * sign);
    Tensor<float> db = g * a * b_pow / b * (scale * sign * static_cast<double>(power));
    if (!ctx.needs_input_grad(1)) return {da};  // trailing gradients left out
    return {da, Tensor<float>(), db};           // undefined for `scale`; power and negate omitted
  }
};

struct GradForANumber : autograd::Function<GradForANumber> {
  static Tensor<float> forward(autograd::FunctionCtx<float>&, const Tensor<float>& x, double) { return x * 1.0; }
  static std::vector<Tensor<float>> backward(autograd::FunctionCtx<float>&, const Tensor<float>& g) {
    return {g, g};  // a gradient for the double: refused
  }
};

TEST(Autograd, CustomFunctionInFloatFollowsLibTorchsRules) {
  Tensor<float> a = tensor<float>({1, 2}, {2}, true), b = tensor<float>({3, 4}, {2}, true);
  Tensor<float> y = ScaledProduct::apply(a, 0.5, b, 2, true);  // -0.5 a b^2
  EXPECT_EQ(y.to_vector(), (std::vector<float>{-4.5f, -16.0f}));
  y.sum().backward();
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{-4.5f, -8.0f}));  // -0.5 b^2
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{-3.0f, -8.0f}));  // -a b
  Tensor<float> c = tensor<float>({3, 4}, {2});  // no gradient wanted: backward returns one
  Tensor<float> a2 = tensor<float>({1, 2}, {2}, true);
  ScaledProduct::apply(a2, 1.0, c, 1, false).sum().backward();
  EXPECT_EQ(a2.grad().to_vector(), (std::vector<float>{3, 4}));
  try {
    GradForANumber::apply(a2, 2.0).sum().backward();
    FAIL() << "expected AutogradError";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("forward argument 1, which is not a tensor"), std::string::npos) << e.what();
  }
}

TEST(Autograd, HooksAndRetainGrad) {
  auto x = tensor<double>({1, 2}, {2}, true);
  x.register_hook([](const Tensor<double>& g) { return g * 10.0; });
  auto h = x * 3.0;
  h.retain_grad();
  int calls = 0;
  h.register_hook([&calls](const Tensor<double>& g) {
    ++calls;
    return g * 2.0;
  });
  (h * h).sum().backward();
  EXPECT_EQ(calls, 1);
  // dL/dh = 2h = {6, 12}; the hook doubles it for what flows on; retain_grad keeps the original.
  EXPECT_EQ(h.grad().to_vector(), (std::vector<double>{6, 12}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{360, 720}));  // 2h * 2 * 3 * 10
}

TEST(Autograd, AnomalyModeNamesTheForwardOp) {
  auto x = tensor<double>({0.0, 1.0}, {2}, true);
  autograd::DetectAnomalyGuard anomaly;
  auto y = (sqrt(x) * 0.0).sum();  // d sqrt at 0 is 0 * inf = NaN
  try {
    y.backward();
    FAIL() << "expected AutogradError";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("backward of sqrt returned NaN"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("sqrt([2])"), std::string::npos) << e.what();
  }
}

TEST(Autograd, DeepChainDoesNotOverflowTheStack) {
  int64_t n = 1000000;
  if (const char* env = std::getenv("EMBER_DEEP_CHAIN")) n = std::atoll(env);
  auto x = tensor<float>({1.0f}, {1}, true);
  {
    Tensor<float> y = x;
    for (int64_t i = 0; i < n; ++i) y = y * 1.0;
    y.sum().backward();
    EXPECT_EQ(x.grad().item(), 1.0f);
    // Dropping y releases the whole chain, iteratively.
  }
  {
    Tensor<float> y = x;
    for (int64_t i = 0; i < n; ++i) y = y + 1.0;
    EXPECT_EQ(y.item(), 1.0f + static_cast<float>(n));
    // Destroyed without a backward.
  }
}

TEST(Autograd, SeparateGraphsOnSeparateThreads) {
  std::vector<std::thread> threads;
  std::vector<double> results(4, 0.0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &results] {
      double total = 0;
      for (int i = 0; i < 200; ++i) {
        auto x = full<double>({8}, static_cast<double>(t + 1), true);
        auto y = (x * x * x).sum();
        y.backward();
        total += x.grad().sum().item();  // 8 * 3 (t+1)^2
      }
      results[static_cast<size_t>(t)] = total;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_DOUBLE_EQ(results[static_cast<size_t>(t)], 200.0 * 24 * (t + 1) * (t + 1));
}

TEST(Autograd, PostAccumulateGradHookSeesTheAccumulatedGradient) {
  Tensor<double> w = tensor<double>({1.0, 2.0}, Shape{2}, true);
  std::vector<double> seen;
  const uint64_t id = w.register_post_accumulate_grad_hook([&](const Tensor<double>& leaf) {
    seen.push_back(leaf.grad().to_vector()[1]);
  });
  (w * w).sum().backward();  // grad 2w = [2, 4]
  (w * 3.0).sum().backward();  // accumulated: [5, 7]
  EXPECT_EQ(seen, (std::vector<double>{4.0, 7.0}));
  w.remove_post_accumulate_grad_hook(id);
  (w * 3.0).sum().backward();
  EXPECT_EQ(seen.size(), 2u);
  Tensor<double> plain = tensor<double>({1.0}, Shape{1});
  EXPECT_THROW(plain.register_post_accumulate_grad_hook([](const Tensor<double>&) {}), AutogradError);
  Tensor<double> inner = w * 2.0;
  EXPECT_THROW(inner.register_post_accumulate_grad_hook([](const Tensor<double>&) {}), AutogradError);
}

TEST(Autograd, QueuedCallbackRunsAfterEveryGradientIsAccumulated) {
  Tensor<double> a = tensor<double>({1.0}, Shape{1}, true);
  Tensor<double> b = tensor<double>({2.0}, Shape{1}, true);
  std::vector<std::string> order;
  for (auto* t : {&a, &b}) {
    t->register_post_accumulate_grad_hook([&, t](const Tensor<double>&) {
      order.push_back(t == &a ? "a" : "b");
      if (order.size() == 1) {
        autograd::queue_callback([&] {
          // Both leaves have their gradients by now.
          order.push_back("callback " + std::to_string(a.grad().item()) + " " + std::to_string(b.grad().item()));
        });
      }
    });
  }
  (a * b).sum().backward();
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[2], "callback 2.000000 1.000000");
  EXPECT_THROW(autograd::queue_callback([] {}), AutogradError);  // no backward running
  // A callback that throws ends backward with its error.
  Tensor<double> c = tensor<double>({1.0}, Shape{1}, true);
  c.register_post_accumulate_grad_hook([](const Tensor<double>&) {
    autograd::queue_callback([] { throw ValueError("from the callback"); });
  });
  EXPECT_THROW((c * 2.0).sum().backward(), ValueError);
}

TEST(Autograd, GraphIsFreedWithItsOutputs) {
  auto x = randn<float>({256, 256}, true);
  const int64_t before = memory_stats().live_bytes;
  {
    auto y = tanh(x * 2.0).exp().sum();
    EXPECT_GT(memory_stats().live_bytes, before);  // saved activations are alive
  }
  EXPECT_EQ(memory_stats().live_bytes, before);
  {
    auto y = tanh(x * 2.0).exp().sum();
    y.backward();
  }
  // Only x.grad remains.
  EXPECT_EQ(memory_stats().live_bytes, before + 256 * 256 * 4);
}

}  // namespace
}  // namespace ember

namespace ember {
namespace {
// The training loop shown in README.md, kept compiling and checked to learn.
TEST(Readme, TrainingLoopLearns) {
  namespace nn = ember::nn;
  ember::manual_seed(0);
  auto x = ember::randn<float>({256, 20});
  auto y = ember::randint<int64_t>(0, 4, {256});
  nn::Sequential net(nn::Linear(20, 64), nn::ReLU(), nn::Linear(64, 4));
  ember::optim::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  float first = 0, last = 0;
  for (int step = 0; step < 100; ++step) {
    auto loss = nn::functional::cross_entropy(net(x), y);
    sgd.zero_grad();
    loss.backward();
    sgd.step();
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_LT(last, 0.5f * first);
  const std::string path = ::testing::TempDir() + "/readme_net.safetensors";
  ember::save(net, path);
  EXPECT_EQ(ember::io::read_safetensors(path).tensors[0].name, "0.weight");
}
}  // namespace
}  // namespace ember
