// LibTorch twins of bench_layers.cpp: the same layers, shapes, modes and steps.
#include <dlfcn.h>
#include <torch/torch.h>

#include <vector>

#include "common.hpp"
#include "ctc_case.hpp"
#include "ember/ember.hpp"

namespace {

namespace nn = torch::nn;

template <class M>
void run_layer(benchmark::State& state, M layer, std::vector<int64_t> in, bool backward) {
  const int t = static_cast<int>(state.range(0));
  torch::set_num_threads(t);
  using SetFn = void (*)(int);
  if (auto f = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(t);
  torch::manual_seed(0);
  torch::Tensor x = torch::randn(in).requires_grad_(backward);
  layer->train();
  for (auto _ : state) {
    if (backward) {
      layer->zero_grad();
      x.mutable_grad() = torch::Tensor();
      layer->forward(x).sum().backward();
    } else {
      torch::NoGradGuard no_grad;
      benchmark::DoNotOptimize(layer->forward(x));
    }
  }
}

// MultiheadAttention's forward takes (query, key, value) and returns a pair.
struct SelfAttentionImpl : nn::Module {
  nn::MultiheadAttention mha{nullptr};
  explicit SelfAttentionImpl(int64_t d, int64_t h) { mha = register_module("mha", nn::MultiheadAttention(d, h)); }
  torch::Tensor forward(torch::Tensor x) {  // x [B, S, D]; LibTorch's MHA is sequence-first
    auto s = x.transpose(0, 1);
    return std::get<0>(mha->forward(s, s, s)).transpose(0, 1);
  }
};
TORCH_MODULE(SelfAttention);

#define TORCH_LAYER_BENCH(name, make, ...)                                                         \
  void BM_torch_layer_##name##_fwd(benchmark::State& s) { run_layer(s, make, __VA_ARGS__, false); } \
  void BM_torch_layer_##name##_fwdbwd(benchmark::State& s) { run_layer(s, make, __VA_ARGS__, true); } \
  BENCHMARK(BM_torch_layer_##name##_fwd)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime(); \
  BENCHMARK(BM_torch_layer_##name##_fwdbwd)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime()

TORCH_LAYER_BENCH(linear_128x784_512, nn::Linear(784, 512), {128, 784});
TORCH_LAYER_BENCH(conv_lenet1_n64_1to6_28_k5, nn::Conv2d(nn::Conv2dOptions(1, 6, 5)), {64, 1, 28, 28});
TORCH_LAYER_BENCH(conv_lenet2_n64_6to16_12_k5, nn::Conv2d(nn::Conv2dOptions(6, 16, 5)), {64, 6, 12, 12});
TORCH_LAYER_BENCH(conv_resnet1_n128_3to64_32_k3, nn::Conv2d(nn::Conv2dOptions(3, 64, 3).padding(1)), {128, 3, 32, 32});
TORCH_LAYER_BENCH(conv_resnet2_n128_64to64_32_k3, nn::Conv2d(nn::Conv2dOptions(64, 64, 3).padding(1)),
                  {128, 64, 32, 32});
TORCH_LAYER_BENCH(conv_resnet18_n16_256to256_14_k3, nn::Conv2d(nn::Conv2dOptions(256, 256, 3).padding(1).bias(false)),
                  {16, 256, 14, 14});
TORCH_LAYER_BENCH(conv_resnet18_n16_512to512_7_k3, nn::Conv2d(nn::Conv2dOptions(512, 512, 3).padding(1).bias(false)),
                  {16, 512, 7, 7});
TORCH_LAYER_BENCH(conv_dcgan_n64_64to128_14_k4s2, nn::Conv2d(nn::Conv2dOptions(64, 128, 4).stride(2).padding(1).bias(false)),
                  {64, 64, 14, 14});
TORCH_LAYER_BENCH(conv_dcgan_n64_128to256_7_k4s2, nn::Conv2d(nn::Conv2dOptions(128, 256, 4).stride(2).padding(1).bias(false)),
                  {64, 128, 7, 7});
TORCH_LAYER_BENCH(convt_dcgan_n64_256to128_4_k3s2,
                  nn::ConvTranspose2d(nn::ConvTranspose2dOptions(256, 128, 3).stride(2).padding(1).bias(false)), {64, 256, 4, 4});
TORCH_LAYER_BENCH(convt_dcgan_n64_128to64_7_k4s2,
                  nn::ConvTranspose2d(nn::ConvTranspose2dOptions(128, 64, 4).stride(2).padding(1).bias(false)), {64, 128, 7, 7});
TORCH_LAYER_BENCH(conv_depthwise_n64_96_32_k3,
                  nn::Conv2d(nn::Conv2dOptions(96, 96, 3).padding(1).groups(96).bias(false)), {64, 96, 32, 32});
TORCH_LAYER_BENCH(conv_depthwise_n64_144_16_k3s2,
                  nn::Conv2d(nn::Conv2dOptions(144, 144, 3).stride(2).padding(1).groups(144).bias(false)),
                  {64, 144, 16, 16});
TORCH_LAYER_BENCH(conv_grouped_n64_128_16_k3g32,
                  nn::Conv2d(nn::Conv2dOptions(128, 128, 3).padding(1).groups(32).bias(false)), {64, 128, 16, 16});
TORCH_LAYER_BENCH(batchnorm2d_n128_64_32, nn::BatchNorm2d(64), {128, 64, 32, 32});
TORCH_LAYER_BENCH(layernorm_32x64_128, nn::LayerNorm(nn::LayerNormOptions({128})), {32, 64, 128});
TORCH_LAYER_BENCH(groupnorm_n64_64_32_g32, nn::GroupNorm(nn::GroupNormOptions(32, 64)), {64, 64, 32, 32});
TORCH_LAYER_BENCH(mha_b32_s64_d128_h4, SelfAttention(128, 4), {32, 64, 128});

// bench_layers.cpp's CTC case: the same log-probabilities (ember's generator, copied over), targets
// and lengths (bench/ctc_case.hpp).
void run_ctc(benchmark::State& state, bool backward) {
  const int t = static_cast<int>(state.range(0));
  torch::set_num_threads(t);
  using C = ember_bench::CtcCase;
  C c = ember_bench::ctc_case();
  std::vector<float> values = c.log_probs.to_vector();
  torch::Tensor log_probs = torch::from_blob(values.data(), {C::kFrames, C::kBatch, C::kClasses}).clone();
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor targets = torch::from_blob(c.targets.data(), {C::kBatch, C::kLabels}, i64).clone();
  torch::Tensor input_lengths = torch::from_blob(c.input_lengths.data(), {C::kBatch}, i64).clone();
  torch::Tensor target_lengths = torch::from_blob(c.target_lengths.data(), {C::kBatch}, i64).clone();
  log_probs.requires_grad_(backward);
  for (auto _ : state) {
    if (backward) {
      log_probs.mutable_grad() = torch::Tensor();
      torch::ctc_loss(log_probs, targets, input_lengths, target_lengths).backward();
    } else {
      torch::NoGradGuard no_grad;
      benchmark::DoNotOptimize(torch::ctc_loss(log_probs, targets, input_lengths, target_lengths));
    }
  }
}
void BM_torch_layer_ctc_loss_t150_n32_c40_fwd(benchmark::State& s) { run_ctc(s, false); }
void BM_torch_layer_ctc_loss_t150_n32_c40_fwdbwd(benchmark::State& s) { run_ctc(s, true); }
#define TORCH_CTC_BENCH(name) \
  BENCHMARK(name)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime()
TORCH_CTC_BENCH(BM_torch_layer_ctc_loss_t150_n32_c40_fwd);
TORCH_CTC_BENCH(BM_torch_layer_ctc_loss_t150_n32_c40_fwdbwd);
#undef TORCH_CTC_BENCH

}  // namespace
