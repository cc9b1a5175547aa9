// Single layers, forward (no grad) and forward + backward (input and parameter gradients), at
// the shapes issue #3 names: Linear, Conv2d at LeNet and ResNet-CIFAR shapes, BatchNorm2d
// (training), LayerNorm, GroupNorm, MultiheadAttention. bench_layers_torch.cpp has the LibTorch
// twins.
#include <functional>
#include <memory>
#include <vector>

#include "common.hpp"
#include "ctc_case.hpp"
#include "ember/ember.hpp"

namespace {

namespace nn = ember::nn;
using ember::Tensor;

using Layer = std::shared_ptr<nn::Module<float>>;

void run_layer(benchmark::State& state, const Layer& layer, const ember::Shape& in, bool backward) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  Tensor<float> x = ember::randn<float>(in).requires_grad_(backward);
  layer->train();
  for (auto _ : state) {
    if (backward) {
      layer->zero_grad();
      x.set_grad(Tensor<float>());
      (*layer)(x).sum().backward();
    } else {
      ember::NoGradGuard no_grad;
      benchmark::DoNotOptimize((*layer)(x));
    }
  }
}

#define EMBER_LAYER_BENCH(name, make, ...)                                                         \
  void BM_ember_layer_##name##_fwd(benchmark::State& s) { run_layer(s, make, __VA_ARGS__, false); } \
  void BM_ember_layer_##name##_fwdbwd(benchmark::State& s) { run_layer(s, make, __VA_ARGS__, true); } \
  BENCHMARK(BM_ember_layer_##name##_fwd)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime(); \
  BENCHMARK(BM_ember_layer_##name##_fwdbwd)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime()

EMBER_LAYER_BENCH(linear_128x784_512, std::make_shared<nn::Linear<float>>(784, 512), {128, 784});
EMBER_LAYER_BENCH(conv_lenet1_n64_1to6_28_k5, std::make_shared<nn::Conv2d<float>>(1, 6, 5), {64, 1, 28, 28});
EMBER_LAYER_BENCH(conv_lenet2_n64_6to16_12_k5, std::make_shared<nn::Conv2d<float>>(6, 16, 5), {64, 6, 12, 12});
EMBER_LAYER_BENCH(conv_resnet1_n128_3to64_32_k3,
                  std::make_shared<nn::Conv2d<float>>(3, 64, 3, nn::Conv2dOptions{.padding = 1}), {128, 3, 32, 32});
EMBER_LAYER_BENCH(conv_resnet2_n128_64to64_32_k3,
                  std::make_shared<nn::Conv2d<float>>(64, 64, 3, nn::Conv2dOptions{.padding = 1}), {128, 64, 32, 32});
// ResNet-18's last two stages at 224 x 224 input (many channels on small planes), batch 16.
EMBER_LAYER_BENCH(conv_resnet18_n16_256to256_14_k3,
                  std::make_shared<nn::Conv2d<float>>(256, 256, 3, nn::Conv2dOptions{.padding = 1, .bias = false}),
                  {16, 256, 14, 14});
EMBER_LAYER_BENCH(conv_resnet18_n16_512to512_7_k3,
                  std::make_shared<nn::Conv2d<float>>(512, 512, 3, nn::Conv2dOptions{.padding = 1, .bias = false}),
                  {16, 512, 7, 7});
// DCGAN's stride-2 layers (LibTorch's example, batch 64): the discriminator's 64 -> 128 and 128 -> 256
// convolutions and the generator's 256 -> 128 and 128 -> 64 transposed convolutions.
EMBER_LAYER_BENCH(conv_dcgan_n64_64to128_14_k4s2,
                  std::make_shared<nn::Conv2d<float>>(64, 128, 4, nn::Conv2dOptions{.stride = 2, .padding = 1, .bias = false}),
                  {64, 64, 14, 14});
EMBER_LAYER_BENCH(conv_dcgan_n64_128to256_7_k4s2,
                  std::make_shared<nn::Conv2d<float>>(128, 256, 4, nn::Conv2dOptions{.stride = 2, .padding = 1, .bias = false}),
                  {64, 128, 7, 7});
EMBER_LAYER_BENCH(convt_dcgan_n64_256to128_4_k3s2,
                  std::make_shared<nn::ConvTranspose2d<float>>(256, 128, 3, nn::ConvTranspose2dOptions{.stride = 2, .padding = 1, .bias = false}),
                  {64, 256, 4, 4});
EMBER_LAYER_BENCH(convt_dcgan_n64_128to64_7_k4s2,
                  std::make_shared<nn::ConvTranspose2d<float>>(128, 64, 4, nn::ConvTranspose2dOptions{.stride = 2, .padding = 1, .bias = false}),
                  {64, 128, 7, 7});
// Depthwise (MobileNetV2's 3x3 of 96 channels at 32x32 and of 144 at stride 2) and grouped (ResNeXt's
// 128 channels in 32 groups of 4) convolutions.
EMBER_LAYER_BENCH(conv_depthwise_n64_96_32_k3,
                  std::make_shared<nn::Conv2d<float>>(96, 96, 3,
                                                      nn::Conv2dOptions{.padding = 1, .groups = 96, .bias = false}),
                  {64, 96, 32, 32});
EMBER_LAYER_BENCH(conv_depthwise_n64_144_16_k3s2,
                  std::make_shared<nn::Conv2d<float>>(
                      144, 144, 3, nn::Conv2dOptions{.stride = 2, .padding = 1, .groups = 144, .bias = false}),
                  {64, 144, 16, 16});
EMBER_LAYER_BENCH(conv_grouped_n64_128_16_k3g32,
                  std::make_shared<nn::Conv2d<float>>(128, 128, 3,
                                                      nn::Conv2dOptions{.padding = 1, .groups = 32, .bias = false}),
                  {64, 128, 16, 16});
EMBER_LAYER_BENCH(batchnorm2d_n128_64_32, std::make_shared<nn::BatchNorm2d<float>>(64), {128, 64, 32, 32});

// The CIFAR ResNet's first BasicBlock: its batch norms with the ReLUs and the shortcut fused (Note
// [Batch norm with ReLU]), and as separate ops in the same run (a forward hook on each batch norm
// makes the block call them one by one).
Layer basic_block(bool separate) {
  auto block = std::make_shared<nn::BasicBlock<float>>(16, 16, 1);
  if (separate) {
    for (auto* bn : {block->bn1.get(), block->bn2.get()}) {
      bn->register_forward_hook(
          [](nn::Module<float>&, const Tensor<float>&, const Tensor<float>&) { return Tensor<float>(); });
    }
  }
  return block;
}
EMBER_LAYER_BENCH(basicblock_n128_16_32, basic_block(false), {128, 16, 32, 32});
EMBER_LAYER_BENCH(basicblock_n128_16_32_separate, basic_block(true), {128, 16, 32, 32});
EMBER_LAYER_BENCH(layernorm_32x64_128, std::make_shared<nn::LayerNorm<float>>(ember::Shape{128}), {32, 64, 128});
EMBER_LAYER_BENCH(groupnorm_n64_64_32_g32, std::make_shared<nn::GroupNorm<float>>(32, 64), {64, 64, 32, 32});
EMBER_LAYER_BENCH(mha_b32_s64_d128_h4,
                  std::make_shared<nn::MultiheadAttention<float>>(128, 4, nn::MultiheadAttentionOptions{.batch_first = true}),
                  {32, 64, 128});

// CTC loss (bench/ctc_case.hpp's inputs), Mean reduction; the LibTorch twin uses the same values.
struct EmberCtc {
  Tensor<float> log_probs;
  Tensor<int64_t> targets, input_lengths, target_lengths;
};
EmberCtc ember_ctc() {
  using C = ember_bench::CtcCase;
  const C c = ember_bench::ctc_case();
  return {c.log_probs, ember::tensor<int64_t>(c.targets, {C::kBatch, C::kLabels}),
          ember::tensor<int64_t>(c.input_lengths, {C::kBatch}), ember::tensor<int64_t>(c.target_lengths, {C::kBatch})};
}

void BM_ember_layer_ctc_loss_t150_n32_c40_fwd(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  const EmberCtc c = ember_ctc();
  for (auto _ : state) {
    ember::NoGradGuard no_grad;
    benchmark::DoNotOptimize(nn::functional::ctc_loss(c.log_probs, c.targets, c.input_lengths, c.target_lengths));
  }
}
void BM_ember_layer_ctc_loss_t150_n32_c40_fwdbwd(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  EmberCtc c = ember_ctc();
  c.log_probs.requires_grad_(true);
  for (auto _ : state) {
    c.log_probs.set_grad(Tensor<float>());
    nn::functional::ctc_loss(c.log_probs, c.targets, c.input_lengths, c.target_lengths).backward();
  }
}
#define EMBER_CTC_BENCH(name) \
  BENCHMARK(name)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime()
EMBER_CTC_BENCH(BM_ember_layer_ctc_loss_t150_n32_c40_fwd);
EMBER_CTC_BENCH(BM_ember_layer_ctc_loss_t150_n32_c40_fwdbwd);
#undef EMBER_CTC_BENCH

}  // namespace
