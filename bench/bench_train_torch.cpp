// LibTorch twins of bench_train.cpp (the models of shared/anchors/train.cpp).
#include <dlfcn.h>
#include <torch/torch.h>

#include "common.hpp"

namespace {

namespace nn = torch::nn;

void set_threads(int64_t t) {
  torch::set_num_threads(static_cast<int>(t));
  using SetFn = void (*)(int);
  if (auto f = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(static_cast<int>(t));
}

template <class Net, class Opt, class Loss>
void run_steps(benchmark::State& state, Net& net, Opt& opt, Loss loss_of, int64_t batch) {
  for (auto _ : state) {
    opt.zero_grad();
    auto loss = loss_of(net);
    loss.backward();
    opt.step();
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

struct BlockImpl : nn::Module {
  nn::Conv2d c1{nullptr}, c2{nullptr}, dc{nullptr};
  nn::BatchNorm2d b1{nullptr}, b2{nullptr}, db{nullptr};
  bool down;
  BlockImpl(int cin, int cout, int stride) : down(stride != 1 || cin != cout) {
    c1 = register_module("c1", nn::Conv2d(nn::Conv2dOptions(cin, cout, 3).stride(stride).padding(1).bias(false)));
    b1 = register_module("b1", nn::BatchNorm2d(cout));
    c2 = register_module("c2", nn::Conv2d(nn::Conv2dOptions(cout, cout, 3).padding(1).bias(false)));
    b2 = register_module("b2", nn::BatchNorm2d(cout));
    if (down) {
      dc = register_module("dc", nn::Conv2d(nn::Conv2dOptions(cin, cout, 1).stride(stride).bias(false)));
      db = register_module("db", nn::BatchNorm2d(cout));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    auto y = torch::relu(b1(c1(x)));
    y = b2(c2(y));
    return torch::relu(y + (down ? db(dc(x)) : x));
  }
};
TORCH_MODULE(Block);

void BM_torch_train_mlp(benchmark::State& state) {
  set_threads(state.range(0));
  torch::manual_seed(0);
  nn::Sequential net(nn::Linear(784, 512), nn::ReLU(), nn::Linear(512, 512), nn::ReLU(), nn::Linear(512, 10));
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto x = torch::randn({128, 784});
  auto y = torch::randint(0, 10, {128}, torch::kLong);
  run_steps(state, net, sgd, [&](auto& n) { return nn::functional::cross_entropy(n->forward(x), y); }, 128);
}

void BM_torch_train_lenet(benchmark::State& state) {
  set_threads(state.range(0));
  torch::manual_seed(0);
  nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(1, 6, 5)), nn::ReLU(), nn::MaxPool2d(2),
                     nn::Conv2d(nn::Conv2dOptions(6, 16, 5)), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
                     nn::Linear(256, 120), nn::ReLU(), nn::Linear(120, 84), nn::ReLU(), nn::Linear(84, 10));
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto x = torch::randn({64, 1, 28, 28});
  auto y = torch::randint(0, 10, {64}, torch::kLong);
  run_steps(state, net, sgd, [&](auto& n) { return nn::functional::cross_entropy(n->forward(x), y); }, 64);
}

void BM_torch_train_resnet(benchmark::State& state) {
  set_threads(state.range(0));
  torch::manual_seed(0);
  nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(3, 16, 3).padding(1).bias(false)), nn::BatchNorm2d(16),
                     nn::ReLU(), Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                     nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})), nn::Flatten(),
                     nn::Linear(64, 10));
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto x = torch::randn({128, 3, 32, 32});
  auto y = torch::randint(0, 10, {128}, torch::kLong);
  run_steps(state, net, sgd, [&](auto& n) { return nn::functional::cross_entropy(n->forward(x), y); }, 128);
}

void BM_torch_train_transformer(benchmark::State& state) {
  set_threads(state.range(0));
  torch::manual_seed(0);
  nn::TransformerEncoderLayer layer(nn::TransformerEncoderLayerOptions(128, 4).dim_feedforward(512).dropout(0.0));
  torch::optim::Adam adam(layer->parameters(), torch::optim::AdamOptions(1e-3));
  auto x = torch::randn({64, 32, 128});
  run_steps(state, layer, adam, [&](auto& l) { return l->forward(x).mean(); }, 32);
}

void BM_torch_train_dcgan(benchmark::State& state) {
  set_threads(state.range(0));
  torch::manual_seed(0);
  using CT = nn::ConvTranspose2dOptions;
  using C = nn::Conv2dOptions;
  nn::Sequential gen(nn::ConvTranspose2d(CT(100, 256, 4).bias(false)), nn::BatchNorm2d(256), nn::ReLU(),
                     nn::ConvTranspose2d(CT(256, 128, 3).stride(2).padding(1).bias(false)), nn::BatchNorm2d(128),
                     nn::ReLU(), nn::ConvTranspose2d(CT(128, 64, 4).stride(2).padding(1).bias(false)),
                     nn::BatchNorm2d(64), nn::ReLU(),
                     nn::ConvTranspose2d(CT(64, 1, 4).stride(2).padding(1).bias(false)), nn::Tanh());
  const auto leaky = nn::LeakyReLUOptions().negative_slope(0.2);
  nn::Sequential disc(nn::Conv2d(C(1, 64, 4).stride(2).padding(1).bias(false)), nn::LeakyReLU(leaky),
                      nn::Conv2d(C(64, 128, 4).stride(2).padding(1).bias(false)), nn::BatchNorm2d(128),
                      nn::LeakyReLU(leaky), nn::Conv2d(C(128, 256, 4).stride(2).padding(1).bias(false)),
                      nn::BatchNorm2d(256), nn::LeakyReLU(leaky),
                      nn::Conv2d(C(256, 1, 3).stride(1).padding(0).bias(false)), nn::Sigmoid());
  torch::optim::Adam gen_opt(gen->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
  torch::optim::Adam disc_opt(disc->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
  const int64_t n = 64;
  auto real = torch::rand({n, 1, 28, 28}) * 2 - 1;
  auto ones = torch::ones({n}), zeros = torch::zeros({n});
  for (auto _ : state) {
    disc->zero_grad();
    torch::binary_cross_entropy(disc->forward(real).reshape({n}), ones).backward();
    auto fake = gen->forward(torch::randn({n, 100, 1, 1}));
    torch::binary_cross_entropy(disc->forward(fake.detach()).reshape({n}), zeros).backward();
    disc_opt.step();
    gen->zero_grad();
    torch::binary_cross_entropy(disc->forward(fake).reshape({n}), ones).backward();
    gen_opt.step();
  }
  state.SetItemsProcessed(state.iterations() * n);
}

}  // namespace

#define TORCH_TRAIN(name) \
  BENCHMARK(name)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime()
TORCH_TRAIN(BM_torch_train_mlp);
TORCH_TRAIN(BM_torch_train_lenet);
TORCH_TRAIN(BM_torch_train_resnet);
TORCH_TRAIN(BM_torch_train_transformer);
TORCH_TRAIN(BM_torch_train_dcgan);
