// Backend kernels alone, at the shapes of the training benchmarks: where a layer's time goes
// (bench_layers.cpp) is easier to act on once its lowering steps are measured one by one.
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "ember/backend/kernels.hpp"

namespace {

// One sample of the ResNet-CIFAR, LeNet and DCGAN convolutions (channels, size, kernel, stride, pad); a DCGAN
// case is the discriminator's convolution, whose lowering the generator's transposed one shares (adjoint).
struct ConvCase {
  const char* name;
  int64_t c, hw, k, stride, pad;
  int64_t side_by_side = 1;  // images whose columns share a GEMM in a batch of 64
};
constexpr ConvCase kCases[] = {
    {"resnet_16x32x32_k3", 16, 32, 3, 1, 1}, {"resnet_32x16x16_k3", 32, 16, 3, 1, 1},
    {"resnet_64x8x8_k3", 64, 8, 3, 1, 1},    {"resnet_16x32x32_k3_s2", 16, 32, 3, 2, 1},
    {"lenet_1x28x28_k5", 1, 28, 5, 1, 0},    {"lenet_6x12x12_k5", 6, 12, 5, 1, 0},
    {"dcgan_64x14x14_k4_s2", 64, 14, 4, 2, 1, 6},
    {"dcgan_128x7x7_k4_s2", 128, 7, 4, 2, 1, 29},
    {"dcgan_128x7x7_k3_s2", 128, 7, 3, 2, 1, 16},
    {"resnet18_64x56x56_k3", 64, 56, 3, 1, 1},    {"resnet18_256x14x14_k3", 256, 14, 3, 1, 1},
    {"resnet18_512x7x7_k3", 512, 7, 3, 1, 1},
};

ember::backend::ConvShape shape_of(const ConvCase& c) {
  const int64_t out = (c.hw + 2 * c.pad - c.k) / c.stride + 1;
  return {c.c, c.hw, c.hw, c.k, c.k, out, out, c.stride, c.stride, c.pad, c.pad, 1, 1};
}

// im2col (to_columns) or col2im of `images` images whose columns lie side by side in one matrix,
// as conv2d puts them for one GEMM when an image's are narrow (Note [Columns of several images]),
// in GB/s of the column matrix written or read plus the images.
void BM_ember_lowering(benchmark::State& state, ConvCase c, bool to_columns, int64_t images) {
  const auto s = shape_of(c);
  const int64_t hw = s.ho * s.wo, ld = images * hw, rows = s.c * s.kh * s.kw, image = s.c * s.h * s.w;
  std::vector<float> x(static_cast<size_t>(images * image), 1.0f), cols(static_cast<size_t>(rows * ld), 1.0f);
  const auto& k = ember::backend::kernels<float>();
  for (auto _ : state) {
    for (int64_t b = 0; b < images; ++b) {
      if (to_columns) {
        k.im2col(s, x.data() + b * image, cols.data() + b * hw, ld);
      } else {
        k.col2im(s, cols.data() + b * hw, x.data() + b * image, ld);
      }
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * images * (rows * hw + image) * int64_t(sizeof(float)));
}

// The flat convolution kernels (Note [Flat convolution]) or Winograd's (Note [Winograd
// convolution]) on a batch of 16 images (or, "/images:128", a batch larger than the caches, as the
// CIFAR ResNet's training step has), c -> c channels, in GFLOP/s of the convolution's
// multiply-adds (as the GEMM would count them; Winograd does 2.25x fewer).
constexpr int64_t kFlatBatch = 16, kTrainingBatch = 128;

void BM_ember_conv_flat(benchmark::State& state, ConvCase c, bool weight_grad, bool winograd, int64_t images) {
  const auto s = shape_of(c);
  const auto& k = ember::backend::kernels<float>();
  if (winograd ? k.conv_winograd == nullptr || !ember::backend::conv_winograd_applies(s)
               : k.conv_flat == nullptr || !ember::backend::conv_flat_applies(s)) {
    state.SkipWithError("no such convolution kernels for this CPU or shape");
    return;
  }
  const int64_t K = s.c * s.kh * s.kw, hw = s.ho * s.wo, m = s.c;
  std::vector<float> x(static_cast<size_t>(images * s.c * s.h * s.w), 0.5f);
  std::vector<float> w(static_cast<size_t>(m * K), 0.25f);
  std::vector<float> y(static_cast<size_t>(images * m * hw), 1.0f);
  std::vector<float> u(winograd ? static_cast<size_t>(ember::backend::conv_winograd_weights_size(m, s.c)) : 0);
  if (winograd) k.conv_winograd_weights(m, s.c, 0, m, w.data(), u.data());  // once, as the ops and plans do
  for (auto _ : state) {
    if (weight_grad) {
      (winograd ? k.conv_winograd_weight_grad : k.conv_flat_weight_grad)(s, m, images, x.data(), s.c * s.h * s.w,
                                                                         y.data(), m * hw, w.data());
    } else {
      (winograd ? k.conv_winograd : k.conv_flat)(s, m, winograd ? u.data() : w.data(), images, x.data(),
                                                 s.c * s.h * s.w, y.data(), m * hw);
    }
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] = benchmark::Counter(double(2 * images * m * K * hw) * double(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

// 2x2 max pooling of a batch of 64 at LeNet-5's two poolings (6 planes of 24x24, 16 of 8x8), in
// GB/s of the input read.
void BM_ember_max_pool2x2(benchmark::State& state, int64_t channels, int64_t hw) {
  const int64_t planes = 64 * channels, out = (hw / 2) * (hw / 2);
  std::vector<float> x(static_cast<size_t>(planes * hw * hw)), y(static_cast<size_t>(planes * out));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 7919) % 101);
  std::vector<int64_t> idx(y.size());
  const auto& k = ember::backend::kernels<float>();
  for (auto _ : state) {
    k.max_pool2x2(planes, hw, hw, x.data(), y.data(), idx.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * planes * hw * hw * int64_t(sizeof(float)));
}

[[maybe_unused]] const bool kRegistered = [] {
  benchmark::RegisterBenchmark("BM_ember_max_pool2x2/lenet_64x6x24x24", BM_ember_max_pool2x2, 6, 24)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_ember_max_pool2x2/lenet_64x16x8x8", BM_ember_max_pool2x2, 16, 8)
      ->Unit(benchmark::kMicrosecond);
  for (const ConvCase& c : kCases) {
    if (c.stride != 1 || c.pad * 2 + 1 != c.k) continue;
    for (bool winograd : {false, true}) {
      const std::string kind = winograd ? "BM_ember_conv_winograd" : "BM_ember_conv_flat";
      for (const int64_t images : {kFlatBatch, kTrainingBatch}) {
        if (images == kTrainingBatch && std::string_view(c.name).substr(0, 7) != "resnet_") continue;
        const std::string batch = images == kFlatBatch ? "" : "/images:" + std::to_string(images);
        benchmark::RegisterBenchmark((kind + "/" + c.name + batch).c_str(), BM_ember_conv_flat, c, false, winograd,
                                     images)
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark((kind + "_wgrad/" + c.name + batch).c_str(), BM_ember_conv_flat, c, true,
                                     winograd, images)
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (const ConvCase& c : kCases) {
    for (bool to_columns : {true, false}) {
      const std::string name = std::string(to_columns ? "BM_ember_im2col/" : "BM_ember_col2im/") + c.name;
      benchmark::RegisterBenchmark(name.c_str(), BM_ember_lowering, c, to_columns, 1)->Unit(benchmark::kMicrosecond);
      if (c.side_by_side > 1) {
        benchmark::RegisterBenchmark((name + "/images:" + std::to_string(c.side_by_side)).c_str(), BM_ember_lowering,
                                     c, to_columns, c.side_by_side)
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  return true;
}();

}  // namespace
