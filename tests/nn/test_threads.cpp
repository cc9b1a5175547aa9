// Thread safety: one model in eval mode, called from several threads at once under NoGradGuard,
// gives bit-identical results to one thread; separate training graphs on separate threads are
// independent. CI also runs this file under ThreadSanitizer.
#include <gtest/gtest.h>

#include <thread>

#include "ember/ember.hpp"

namespace ember::nn {
namespace {

TEST(Threads, SharedModelInferenceMatchesOneThread) {
  manual_seed(3);
  Sequential net(Conv2d(1, 4, 3, {.padding = 1}), BatchNorm2d(4), ReLU(), MaxPool2d(2), Flatten(),
                 Linear(4 * 4 * 4, 16), GELU(), LayerNorm(16), Linear(16, 3));
  net.eval();
  std::vector<Tensor<float>> inputs;
  std::vector<std::vector<float>> expected;
  {
    NoGradGuard no_grad;
    for (int i = 0; i < 4; ++i) {
      inputs.push_back(randn<float>({8, 1, 8, 8}));
      expected.push_back(net(inputs.back()).to_vector());
    }
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      NoGradGuard no_grad;
      for (int rep = 0; rep < 25; ++rep) {
        const int i = (t + rep) % 4;
        if (net(inputs[static_cast<size_t>(i)]).to_vector() != expected[static_cast<size_t>(i)]) {
          ++mismatches[static_cast<size_t>(t)];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(Threads, IndependentTrainingOnEachThread) {
  std::vector<double> losses(3, 0.0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&losses, t] {
      Generator gen(static_cast<uint64_t>(t));
      Sequential<double> net(Linear<double>(4, 8), Tanh<double>(), Linear<double>(8, 1));
      optim::Adam<double> adam(net.parameters(), {.lr = 1e-2});
      auto x = randn<double>({32, 4}, false, &gen);
      auto y = x.sum(1, true);
      // The layers' initial weights come from the shared default generator, in whatever order
      // the threads reach it: compare each run with its own start.
      double first = 0, last = 0;
      for (int step = 0; step < 100; ++step) {
        adam.zero_grad();
        auto loss = functional::mse_loss(net(x), y);
        loss.backward();
        adam.step();
        (step == 0 ? first : last) = loss.item();
      }
      losses[static_cast<size_t>(t)] = last / first;
    });
  }
  for (auto& th : threads) th.join();
  for (double ratio : losses) EXPECT_LT(ratio, 0.2);
}

}  // namespace
}  // namespace ember::nn
