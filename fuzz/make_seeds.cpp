// Writes the fuzzers' seed corpora, made by ember itself: valid files of each format, small
// enough for fast mutation. Usage: ember_fuzz_seeds OUT_DIR (writes OUT_DIR/<target>/...).
#include <png.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "ember/ember.hpp"
#include "../tests/support/gzip.hpp"
#include "fuzz_model.hpp"

namespace {

using ember::testing::gzip;
using ember::testing::put_be32;

namespace fs = std::filesystem;
using namespace ember;

namespace {

// x * scale (a parameter, broadcast over the batch), an outer sum of two computed values, and a
// concatenation.
class BroadcastSeed : public nn::Module<float> {
 public:
  BroadcastSeed() { scale = register_parameter("scale", randn<float>({3})); }
  Tensor<float> forward(const Tensor<float>& x) override {
    const Tensor<float> outer = (x * scale).reshape({2, 3, 1}) + relu(x).reshape({2, 1, 3});
    return cat<float>({outer, sigmoid(outer), x.reshape({2, 1, 3})}, 1);
  }
  std::string type_name() const override { return "BroadcastSeed"; }
  Tensor<float> scale;
};

}  // namespace

std::vector<uint8_t> idx(uint8_t type, const std::vector<uint32_t>& dims, size_t elem) {
  std::vector<uint8_t> b{0, 0, type, static_cast<uint8_t>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) {
    put_be32(b, d);
    n *= d;
  }
  for (size_t i = 0; i < n * elem; ++i) b.push_back(static_cast<uint8_t>(i * 37 + 11));
  return b;
}

template <class Optimizer>
void checkpoint_seed(const std::string& path, Optimizer& (*make)(nn::Module<float>&), int steps) {
  fuzz::Model m;
  Optimizer& opt = make(m.net);
  optim::StepLR sched(opt, 2, 0.5);
  for (int i = 0; i < steps; ++i) {
    m.step(opt);
    sched.step();
  }
  save_checkpoint(path, make_checkpoint(m.net, opt, &sched, steps));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out(argv[1]);
  for (const char* t : {"safetensors", "checkpoint", "idx", "cifar", "plan", "png"}) fs::create_directories(out / t);
  manual_seed(1);
  fuzz::Model m;
  io::write_safetensors((out / "safetensors" / "model.safetensors").string(), m.net.state_dict());
  io::write_safetensors((out / "safetensors" / "dtypes.safetensors").string(),
                        {{"f64", ones<double>({2})}, {"i64", arange<int64_t>(0, 3)}, {"u8", zeros<uint8_t>({2, 2})},
                         {"i32", zeros<int32_t>({0, 3})}, {"scalar", scalar_tensor<float>(1.5f)}});
  {
    // A pruned model in the sparse format (a mask and the nonzeros for its first weight).
    nn::Sequential<float> pruned(nn::Linear(2, 3), nn::ReLU(), nn::Linear(3, 2));
    auto& first = dynamic_cast<nn::Linear<float>&>(pruned.submodule("0"));
    prune::l1_unstructured(first, "weight", 4L);
    prune::remove(first, "weight");
    prune::save_sparse(pruned, (out / "safetensors" / "sparse.safetensors").string());
  }
  using namespace ember::fuzz;
  checkpoint_seed<optim::SGD<float>>((out / "checkpoint" / "sgd.ckpt").string(), &make_sgd, 2);
  checkpoint_seed<optim::Adam<float>>((out / "checkpoint" / "adam.ckpt").string(), &make_adam, 2);
  checkpoint_seed<optim::Adam<float>>((out / "checkpoint" / "adamw.ckpt").string(), &make_adamw, 1);
  checkpoint_seed<optim::RMSprop<float>>((out / "checkpoint" / "rmsprop.ckpt").string(), &make_rmsprop, 2);
  checkpoint_seed<optim::Adagrad<float>>((out / "checkpoint" / "adagrad.ckpt").string(), &make_adagrad, 0);
  io::write_file_atomically((out / "idx" / "images.idx").string(), idx(0x08, {2, 3, 3}, 1));
  io::write_file_atomically((out / "idx" / "floats.idx").string(), idx(0x0D, {3, 2}, 4));
  io::write_file_atomically((out / "idx" / "shorts.idx").string(), idx(0x0B, {5}, 2));
  io::write_file_atomically((out / "idx" / "doubles.idx").string(), idx(0x0E, {1, 1, 2}, 8));
  io::write_file_atomically((out / "idx" / "images.idx.gz").string(), gzip(idx(0x08, {2, 4, 4}, 1)));
  std::vector<uint8_t> cifar;
  for (int r = 0; r < 2; ++r) {
    cifar.push_back(static_cast<uint8_t>(r * 7 % 10));
    for (int i = 0; i < 3072; ++i) cifar.push_back(static_cast<uint8_t>(i * (r + 3)));
  }
  io::write_file_atomically((out / "cifar" / "two.bin").string(), cifar);
  // Plans: every step kind, small.
  {
    nn::Sequential<float> cnn(nn::Conv2d(1, 2, 3, {.padding = 1}), nn::BatchNorm2d(2), nn::ReLU(), nn::MaxPool2d(2),
                              nn::Conv2d(2, 2, 3, {.stride = 2, .bias = false}), nn::Flatten(), nn::Linear(2, 3),
                              nn::Tanh());
    cnn.eval();
    deploy::save(deploy::compile(cnn, {1, 1, 6, 6}), (out / "plan" / "cnn.ember").string());
    deploy::save(deploy::compile(cnn, {1, 1, 6, 6}, {.fold_batch_norm = false, .fuse_elementwise = false}),
                 (out / "plan" / "cnn_unfused.ember").string());
    nn::Sequential<float> res(nn::Conv2d(2, 4, 1), nn::BasicBlock(4, 4, 1), nn::AdaptiveAvgPool2d(1), nn::Flatten(),
                              nn::Linear(4, 2));
    res.eval();
    deploy::save(deploy::compile(res, {1, 2, 4, 4}), (out / "plan" / "residual.ember").string());
    nn::Sequential<float> head(nn::LayerNorm(Shape{2, 3}), nn::Flatten(), nn::Linear(6, 4), nn::LayerNorm(4),
                               nn::Softmax(1), nn::Linear(4, 3), nn::LogSoftmax(1));
    head.eval();
    deploy::save(deploy::compile(head, {2, 2, 3}), (out / "plan" / "norm_softmax.ember").string());
    // Broadcasting steps, one with a constant operand, concatenations; average pooling.
    nn::Sequential<float> pooled(nn::Conv2d(1, 2, 3, {.padding = 1}), nn::AvgPool2d(3, {.stride = 2, .padding = 1,
                                 .ceil_mode = true, .count_include_pad = false}));
    pooled.eval();
    deploy::save(deploy::compile(pooled, {1, 1, 6, 6}), (out / "plan" / "avg_pool.ember").string());
    // Transposed convolutions: through columns with output_padding, on the flat kernels.
    nn::Sequential<float> gen(nn::ConvTranspose2d(2, 2, 3, {.stride = 2, .padding = 1, .output_padding = 1}),
                              nn::ReLU(), nn::ConvTranspose2d(2, 1, 3, {.padding = 1}));
    gen.eval();
    deploy::save(deploy::compile(gen, {1, 2, 2, 2}), (out / "plan" / "conv_transpose.ember").string());
    // A stride-2 one wide enough for the phased path (on AVX-512), on two images.
    nn::Sequential<float> phased(nn::ConvTranspose2d(2, 8, 4, {.stride = 2, .padding = 1}));
    phased.eval();
    deploy::save(deploy::compile(phased, {2, 2, 2, 2}), (out / "plan" / "conv_transpose_phases.ember").string());
    nn::Sequential<float> up(nn::Upsample({.scale_factor = {2}, .mode = "nearest"}),
                             nn::Upsample({.size = {5, 3}, .mode = "bilinear"}));
    up.eval();
    deploy::save(deploy::compile(up, {1, 1, 2, 2}), (out / "plan" / "upsample.ember").string());
    BroadcastSeed broadcast;
    broadcast.eval();
    deploy::save(deploy::compile(broadcast, {2, 3}), (out / "plan" / "broadcast.ember").string());
    // Int8: uint8 images through pooling into a flattened linear layer; a dynamic MLP; a part
    // model ending on uint8 images (a dequantize step).
    nn::Sequential<float> small(nn::Conv2d(1, 2, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
                                nn::Linear(18, 3));
    small.eval();
    const quant::QuantizedModel q = quant::quantize(small, {randn<float>({4, 1, 6, 6})});
    deploy::save(deploy::compile(q, {1, 1, 6, 6}), (out / "plan" / "int8_cnn.ember").string());
    deploy::save(deploy::compile(quant::QuantizedModel({q.stages()[0], q.stages()[1]}), {1, 1, 6, 6}),
                 (out / "plan" / "int8_part.ember").string());
    nn::Sequential<float> mlp(nn::Linear(5, 4), nn::ReLU(), nn::Linear(4, 2));
    mlp.eval();
    deploy::save(deploy::compile(quant::quantize_dynamic(mlp), {2, 5}), (out / "plan" / "int8_dynamic.ember").string());
  }
  // PNGs for ember-run's decoder: gray, RGB, RGBA and a colormapped (palette) one.
  using Seed = std::pair<const char*, png_uint_32>;
  for (auto [name, format] : {Seed{"gray.png", PNG_FORMAT_GRAY}, Seed{"rgb.png", PNG_FORMAT_RGB},
                              Seed{"rgba.png", PNG_FORMAT_RGBA}, Seed{"palette.png", PNG_FORMAT_RGB_COLORMAP}}) {
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    image.width = 7;
    image.height = 5;
    image.format = format;
    image.colormap_entries = format == PNG_FORMAT_RGB_COLORMAP ? 16 : 0;
    std::vector<uint8_t> pixels(PNG_IMAGE_SIZE(image));
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 29 % 251);
    std::vector<uint8_t> colormap(PNG_IMAGE_COLORMAP_SIZE(image));
    for (size_t i = 0; i < colormap.size(); ++i) colormap[i] = static_cast<uint8_t>(i * 7);
    if (format == PNG_FORMAT_RGB_COLORMAP) {
      for (auto& p : pixels) p %= 16;
    }
    png_image_write_to_file(&image, (out / "png" / name).string().c_str(), 0, pixels.data(), 0,
                            format == PNG_FORMAT_RGB_COLORMAP ? colormap.data() : nullptr);
  }
  std::printf("seeds written to %s\n", out.string().c_str());
  return 0;
}
