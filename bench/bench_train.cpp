// Whole training steps (zero_grad, forward, loss, backward, optimizer step) on random data, the
// models of shared/anchors/train.cpp and a DCGAN step. bench_train_torch.cpp has the LibTorch twins.
#include "common.hpp"
#include "ember/ember.hpp"

namespace {

namespace nn = ember::nn;
using ember::Tensor;

template <class Net, class Opt, class Loss>
void run_steps(benchmark::State& state, Net& net, Opt& opt, Loss loss_of, int64_t batch) {
  ember::reset_peak_memory();
  for (auto _ : state) {
    opt.zero_grad();
    auto loss = loss_of(net);
    loss.backward();
    opt.step();
  }
  state.SetItemsProcessed(state.iterations() * batch);  // samples/s
  state.counters["peak_MB"] = static_cast<double>(ember::memory_stats().peak_live_bytes) / 1e6;
}

void BM_ember_train_mlp(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  nn::Sequential net(nn::Linear(784, 512), nn::ReLU(), nn::Linear(512, 512), nn::ReLU(), nn::Linear(512, 10));
  ember::optim::SGD sgd(net.parameters(), {.lr = 0.01, .momentum = 0.9});
  auto x = ember::randn<float>({128, 784});
  auto y = ember::randint<int64_t>(0, 10, {128});
  run_steps(state, net, sgd, [&](auto& n) { return nn::functional::cross_entropy(n(x), y); }, 128);
}

void BM_ember_train_lenet(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  nn::Sequential net(nn::Conv2d(1, 6, 5), nn::ReLU(), nn::MaxPool2d(2), nn::Conv2d(6, 16, 5), nn::ReLU(),
                     nn::MaxPool2d(2), nn::Flatten(), nn::Linear(256, 120), nn::ReLU(), nn::Linear(120, 84),
                     nn::ReLU(), nn::Linear(84, 10));
  ember::optim::SGD sgd(net.parameters(), {.lr = 0.01, .momentum = 0.9});
  auto x = ember::randn<float>({64, 1, 28, 28});
  auto y = ember::randint<int64_t>(0, 10, {64});
  run_steps(state, net, sgd, [&](auto& n) { return nn::functional::cross_entropy(n(x), y); }, 64);
}

void BM_ember_train_resnet(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  nn::Sequential net(nn::Conv2d(3, 16, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(16), nn::ReLU(),
                     nn::BasicBlock(16, 16, 1), nn::BasicBlock(16, 32, 2), nn::BasicBlock(32, 64, 2),
                     nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(64, 10));
  ember::optim::SGD sgd(net.parameters(), {.lr = 0.01, .momentum = 0.9});
  auto x = ember::randn<float>({128, 3, 32, 32});
  auto y = ember::randint<int64_t>(0, 10, {128});
  run_steps(state, net, sgd, [&](auto& n) { return nn::functional::cross_entropy(n(x), y); }, 128);
}

void BM_ember_train_transformer(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  nn::TransformerEncoderLayer layer(128, 4, {.dim_feedforward = 512, .dropout = 0.0});
  ember::optim::Adam adam(layer.parameters(), {.lr = 1e-3});
  auto x = ember::randn<float>({64, 32, 128});  // (seq, batch, d_model)
  run_steps(state, layer, adam, [&](auto& l) { return l(x).mean(); }, 32);
}

// One DCGAN step of LibTorch's example (examples/libtorch-ports/dcgan.cpp): the discriminator on a real
// and a generated batch of 64, its Adam step, then the generator through the discriminator and its step.
void BM_ember_train_dcgan(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  nn::Sequential gen(nn::ConvTranspose2d(100, 256, 4, {.bias = false}), nn::BatchNorm2d(256), nn::ReLU(),
                     nn::ConvTranspose2d(256, 128, 3, {.stride = 2, .padding = 1, .bias = false}),
                     nn::BatchNorm2d(128), nn::ReLU(),
                     nn::ConvTranspose2d(128, 64, 4, {.stride = 2, .padding = 1, .bias = false}),
                     nn::BatchNorm2d(64), nn::ReLU(),
                     nn::ConvTranspose2d(64, 1, 4, {.stride = 2, .padding = 1, .bias = false}), nn::Tanh());
  nn::Sequential disc(nn::Conv2d(1, 64, 4, {.stride = 2, .padding = 1, .bias = false}), nn::LeakyReLU(0.2),
                      nn::Conv2d(64, 128, 4, {.stride = 2, .padding = 1, .bias = false}), nn::BatchNorm2d(128),
                      nn::LeakyReLU(0.2), nn::Conv2d(128, 256, 4, {.stride = 2, .padding = 1, .bias = false}),
                      nn::BatchNorm2d(256), nn::LeakyReLU(0.2),
                      nn::Conv2d(256, 1, 3, {.stride = 1, .padding = 0, .bias = false}), nn::Sigmoid());
  ember::optim::Adam gen_opt(gen.parameters(), {.lr = 2e-4, .beta1 = 0.5});
  ember::optim::Adam disc_opt(disc.parameters(), {.lr = 2e-4, .beta1 = 0.5});
  const int64_t n = 64;
  auto real = ember::rand<float>({n, 1, 28, 28}) * 2.0f - 1.0f;
  auto ones = ember::ones<float>({n}), zeros = ember::zeros<float>({n});
  ember::reset_peak_memory();
  for (auto _ : state) {
    disc.zero_grad();
    nn::functional::binary_cross_entropy(disc(real).reshape({n}), ones).backward();
    auto fake = gen(ember::randn<float>({n, 100, 1, 1}));
    nn::functional::binary_cross_entropy(disc(fake.detach()).reshape({n}), zeros).backward();
    disc_opt.step();
    gen.zero_grad();
    nn::functional::binary_cross_entropy(disc(fake).reshape({n}), ones).backward();
    gen_opt.step();
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["peak_MB"] = static_cast<double>(ember::memory_stats().peak_live_bytes) / 1e6;
}

}  // namespace

#define EMBER_TRAIN(name) \
  BENCHMARK(name)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime()
EMBER_TRAIN(BM_ember_train_mlp);
EMBER_TRAIN(BM_ember_train_lenet);
EMBER_TRAIN(BM_ember_train_resnet);
EMBER_TRAIN(BM_ember_train_transformer);
EMBER_TRAIN(BM_ember_train_dcgan);
