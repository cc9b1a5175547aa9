// ember-gan: a DCGAN (the LibTorch example's generator and discriminator) trained on MNIST or
// Fashion-MNIST, with a progress bar, a PNG grid of samples from a fixed noise batch after each
// epoch, checkpoints that resume bit for bit, and quality measured by a classifier from
// ember-mnist. --samples N --model FILE generates images from a saved generator. See
// docs/examples.md.
//
//   scripts/get-data.sh fashion-mnist
//   ember-gan --data data/fashion-mnist --epochs 5 --out out/gan
//   ember-gan --samples 64 --model out/gan/generator.safetensors --out out/gan
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <string>
#include <vector>

#include "common/classifier.hpp"
#include "common/flags.hpp"
#include "common/image.hpp"
#include "common/mnist_models.hpp"
#include "common/progress.hpp"
#include "ember/ember.hpp"

namespace {

namespace fs = std::filesystem;
namespace nn = ember::nn;
namespace ex = ember::examples;
using ember::Tensor;

constexpr int64_t kNoiseSize = 100;
constexpr const char* kProgram = "ember-gan";

struct Options {
  std::string data, out = "out/gan", classifier, resume, model, evaluate;
  int64_t epochs = 5, batch_size = 64, batches = 0, samples = 0, threads = 0, workers = 2;
  int64_t metric_samples = 1000, fid_samples = 5000, classifier_epochs = 2;
  uint64_t seed = 1;
};

const char* kUsage =
    "usage: ember-gan [--data DIR] [--epochs N] [--out DIR] [--classifier FILE] [--resume CHECKPOINT]\n"
    "                 [--batch-size N] [--batches N] [--threads N] [--workers N] [--seed N]\n"
    "                 [--metric-samples N] [--fid-samples N] [--classifier-epochs N]\n"
    "       ember-gan --samples N --model GENERATOR.safetensors [--out DIR]\n"
    "       ember-gan --evaluate SAMPLES.safetensors [--data DIR] [--classifier FILE]\n"
    "Trains a DCGAN on MNIST-format images (data/fashion-mnist or data/mnist by default), writes\n"
    "samples_epoch_E.png, generator.safetensors, discriminator.safetensors, checkpoint.safetensors\n"
    "and metrics.csv to --out after each epoch and generator.onnx at the end, and prints\n"
    "classifier_confidence=, class_entropy=, feature_fid= and feature_fid_real= after each epoch,\n"
    "measured with a classifier from ember-mnist (--classifier, or one trained into OUT/classifier\n"
    "when absent).\n";

Options parse_flags(int argc, char** argv) {
  Options o;
  auto integer = ex::integer_flag;
  ex::for_each_flag(argc, argv, kUsage, [&](const std::string& flag, const std::string& v) {
    if (flag == "--data") o.data = v;
    else if (flag == "--out") o.out = v;
    else if (flag == "--classifier") o.classifier = v;
    else if (flag == "--resume") o.resume = v;
    else if (flag == "--model") o.model = v;
    else if (flag == "--evaluate") o.evaluate = v;
    else if (flag == "--epochs") o.epochs = integer(flag, v, 1);
    else if (flag == "--batch-size") o.batch_size = integer(flag, v, 1);
    else if (flag == "--batches") o.batches = integer(flag, v, 1);
    else if (flag == "--samples") o.samples = integer(flag, v, 1);
    else if (flag == "--threads") o.threads = integer(flag, v, 1);
    else if (flag == "--workers") o.workers = integer(flag, v, 0);
    else if (flag == "--seed") o.seed = static_cast<uint64_t>(integer(flag, v, 0));
    else if (flag == "--metric-samples") o.metric_samples = integer(flag, v, 10);
    else if (flag == "--fid-samples") o.fid_samples = integer(flag, v, 10);
    else if (flag == "--classifier-epochs") o.classifier_epochs = integer(flag, v, 1);
    else throw ex::UsageError(fmt::format("unknown flag {}", flag));
  });
  if (o.samples > 0 && o.model.empty()) throw ex::UsageError("--samples needs --model GENERATOR.safetensors");
  if (o.samples == 0 && !o.model.empty()) throw ex::UsageError("--model is for --samples N");
  return o;
}

// ---- The DCGAN (LibTorch's examples/cpp/dcgan) ------------------------------------------------

struct Generator : nn::Module<float> {
  Generator() {
    conv1 = register_module("conv1", nn::ConvTranspose2d(kNoiseSize, 256, 4, {.bias = false}));
    batch_norm1 = register_module("batch_norm1", nn::BatchNorm2d(256));
    conv2 = register_module("conv2", nn::ConvTranspose2d(256, 128, 3, {.stride = 2, .padding = 1, .bias = false}));
    batch_norm2 = register_module("batch_norm2", nn::BatchNorm2d(128));
    conv3 = register_module("conv3", nn::ConvTranspose2d(128, 64, 4, {.stride = 2, .padding = 1, .bias = false}));
    batch_norm3 = register_module("batch_norm3", nn::BatchNorm2d(64));
    conv4 = register_module("conv4", nn::ConvTranspose2d(64, 1, 4, {.stride = 2, .padding = 1, .bias = false}));
  }
  // noise [N, 100, 1, 1] -> images [N, 1, 28, 28] in [-1, 1]
  Tensor<float> forward(const Tensor<float>& noise) override {
    Tensor<float> x = ember::relu(batch_norm1(conv1(noise)));
    x = ember::relu(batch_norm2(conv2(x)));
    x = ember::relu(batch_norm3(conv3(x)));
    return ember::tanh(conv4(x));
  }
  std::string type_name() const override { return "Generator"; }

  nn::ModuleHolder<nn::ConvTranspose2d<float>> conv1, conv2, conv3, conv4;
  nn::ModuleHolder<nn::BatchNorm2d<float>> batch_norm1, batch_norm2, batch_norm3;
};

// Logits (BCEWithLogits), not probabilities: the LibTorch example's sigmoid folded into the loss.
nn::Sequential<float> make_discriminator() {
  return nn::Sequential(nn::Conv2d(1, 64, 4, {.stride = 2, .padding = 1, .bias = false}), nn::LeakyReLU(0.2),
                        nn::Conv2d(64, 128, 4, {.stride = 2, .padding = 1, .bias = false}), nn::BatchNorm2d(128),
                        nn::LeakyReLU(0.2), nn::Conv2d(128, 256, 4, {.stride = 2, .padding = 1, .bias = false}),
                        nn::BatchNorm2d(256), nn::LeakyReLU(0.2), nn::Conv2d(256, 1, 3, {.bias = false}),
                        nn::Flatten({.start_dim = 0}));
}

// DCGAN's initialisation (Radford et al.): convolutions N(0, 0.02), batch norm scale N(1, 0.02).
void dcgan_init(nn::Module<float>& m) {
  const std::string type = m.type_name();
  if (type == "Conv2d" || type == "ConvTranspose2d") {
    nn::init::normal_(m.named_parameters(false).front().second, 0.0, 0.02);
  } else if (type == "BatchNorm2d") {
    auto& bn = dynamic_cast<nn::BatchNorm<float>&>(m);
    nn::init::normal_(bn.weight, 1.0, 0.02);
    nn::init::zeros_(bn.bias);
  }
}

// Both networks under one root, so that one checkpoint (and one state dict) holds them.
struct Gan : nn::Module<float> {
  Gan() {
    generator = register_module("generator", Generator());
    discriminator = register_module("discriminator", make_discriminator());
  }
  Tensor<float> forward(const Tensor<float>& noise) override { return generator(noise); }
  std::string type_name() const override { return "Gan"; }
  nn::ModuleHolder<Generator> generator;
  nn::ModuleHolder<nn::Sequential<float>> discriminator;
};

// ---- Pictures and quality ---------------------------------------------------------------------

// Generated images in [-1, 1] as uint8 [N, 1, 28, 28].
Tensor<uint8_t> to_pixels(const Tensor<float>& images) {
  return ember::clamp((images + 1.0f) * 127.5f + 0.5f, 0.0, 255.0).to<uint8_t>();
}

void write_grid(const std::string& path, const Tensor<uint8_t>& pixels, const std::string& caption) {
  const int64_t n = pixels.size(0), cols = std::min<int64_t>(n, 8), rows = (n + cols - 1) / cols;
  const int zoom = 2, cell = 28 * zoom + 4, top = ex::Canvas::text_height(2) + 10;
  ex::Canvas canvas(static_cast<int>(cols * cell + 4), static_cast<int>(rows * cell + 4 + top), {255, 255, 255});
  canvas.text(4, 4, caption, {0, 0, 0}, 2);
  for (int64_t i = 0; i < n; ++i) {
    const ex::Image img = ex::image_from_tensor(pixels[i]);
    canvas.blit(img, static_cast<int>(4 + (i % cols) * cell), static_cast<int>(top + 4 + (i / cols) * cell), zoom);
  }
  ex::write_png(path, canvas.image());
}

// Symmetric eigenvalues and vectors (cyclic Jacobi); `a` row-major n x n, overwritten.
void symmetric_eigen(std::vector<double>& a, int64_t n, std::vector<double>& values, std::vector<double>& vectors) {
  vectors.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) vectors[static_cast<size_t>(i * n + i)] = 1.0;
  auto at = [n](std::vector<double>& m, int64_t r, int64_t c) -> double& { return m[static_cast<size_t>(r * n + c)]; };
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, total = 0;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < n; ++c) (r == c ? total : off) += at(a, r, c) * at(a, r, c);
    if (off <= 1e-22 * (total + off)) break;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = at(a, p, q);
        if (std::abs(apq) < 1e-300) continue;
        const double theta = (at(a, q, q) - at(a, p, p)) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // columns p, q
          const double akp = at(a, k, p), akq = at(a, k, q);
          at(a, k, p) = c * akp - s * akq;
          at(a, k, q) = s * akp + c * akq;
        }
        for (int64_t k = 0; k < n; ++k) {  // rows p, q
          const double apk = at(a, p, k), aqk = at(a, q, k);
          at(a, p, k) = c * apk - s * aqk;
          at(a, q, k) = s * apk + c * aqk;
        }
        for (int64_t k = 0; k < n; ++k) {
          const double vkp = at(vectors, k, p), vkq = at(vectors, k, q);
          at(vectors, k, p) = c * vkp - s * vkq;
          at(vectors, k, q) = s * vkp + c * vkq;
        }
      }
  }
  values.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = at(a, i, i);
}

struct Moments {
  std::vector<double> mean, cov;  // d, d x d (unbiased)
  int64_t dim = 0;
};

Moments moments(const Tensor<float>& features) {
  const Tensor<double> f = features.to<double>();
  const int64_t n = f.size(0), d = f.size(1);
  const Tensor<double> mu = f.mean(0);
  const Tensor<double> centered = f - mu;
  const Tensor<double> cov = ember::mm(centered.transpose(0, 1), centered) / static_cast<double>(n - 1);
  return {mu.to_vector(), cov.contiguous().to_vector(), d};
}

// ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), the Frechet distance of two
// Gaussians (FID's formula), with S1^1/2 from the eigen decomposition of S1.
double frechet_distance(const Moments& a, const Moments& b) {
  const int64_t d = a.dim;
  double dist = 0;
  for (int64_t i = 0; i < d; ++i) {
    const double diff = a.mean[static_cast<size_t>(i)] - b.mean[static_cast<size_t>(i)];
    dist += diff * diff + a.cov[static_cast<size_t>(i * d + i)] + b.cov[static_cast<size_t>(i * d + i)];
  }
  std::vector<double> work = a.cov, values, vectors;
  symmetric_eigen(work, d, values, vectors);
  const Tensor<double> v = ember::tensor<double>(vectors, {d, d});
  std::vector<double> roots(values.size());
  for (size_t i = 0; i < values.size(); ++i) roots[i] = std::sqrt(std::max(values[i], 0.0));
  const Tensor<double> sqrt_a = ember::mm(v * ember::tensor<double>(roots, {1, d}), v.transpose(0, 1));
  const Tensor<double> m = ember::mm(ember::mm(sqrt_a, ember::tensor<double>(b.cov, {d, d})), sqrt_a);
  std::vector<double> mw = m.contiguous().to_vector();
  for (int64_t r = 0; r < d; ++r)  // symmetric up to rounding; make it exactly so
    for (int64_t c = r + 1; c < d; ++c) {
      const double s = 0.5 * (mw[static_cast<size_t>(r * d + c)] + mw[static_cast<size_t>(c * d + r)]);
      mw[static_cast<size_t>(r * d + c)] = mw[static_cast<size_t>(c * d + r)] = s;
    }
  symmetric_eigen(mw, d, values, vectors);
  double trace_sqrt = 0;
  for (double x : values) trace_sqrt += std::sqrt(std::max(x, 0.0));
  return dist - 2 * trace_sqrt;
}

struct Judge {
  ex::SavedClassifier classifier;
  Moments real_a;        // features of the first half of the test set
  double real_fid = 0;   // first half against the second
  size_t fid_count = 0;  // images on each side of an FID
};

// The classifier's penultimate features and class probabilities for uint8 images, in batches.
void classify(ex::SavedClassifier& c, const Tensor<uint8_t>& pixels, Tensor<float>* features, Tensor<float>* probs) {
  ember::NoGradGuard no_grad;
  std::vector<Tensor<float>> fs_, ps;
  for (int64_t start = 0; start < pixels.size(0); start += 500) {
    const int64_t len = std::min<int64_t>(500, pixels.size(0) - start);
    const Tensor<float> x = ex::to_input(pixels.narrow(0, start, len), c.norm);
    if (features) fs_.push_back(nn::features(*c.model, x, ex::kMnistCnnFeatures));
    if (probs) ps.push_back(ember::softmax((*c.model)(x), 1));
  }
  if (features) *features = ember::cat(fs_, 0);
  if (probs) *probs = ember::cat(ps, 0);
}

Judge make_judge(const Options& o, const std::string& data_dir) {
  const std::string path = !o.classifier.empty() ? o.classifier
                         : ex::train_classifier_if_absent(data_dir, o.out, o.classifier_epochs, "no --classifier given");
  Judge j{ex::load_classifier(path, ex::mnist_spec()), {}, 0, 0};
  if (j.classifier.model_name != "cnn" || j.classifier.channels != 1 || j.classifier.size != 28)
    throw ember::ValueError(fmt::format("--classifier {}: expected ember-mnist's cnn for 1 x 28 x 28 images, got {} for {} x {} x {}",
                                        path, j.classifier.model_name, j.classifier.channels, j.classifier.size,
                                        j.classifier.size));
  const ember::data::LabeledImages test = ember::data::load_mnist(data_dir, false);
  const int64_t half = std::min(o.fid_samples, test.images.size(0) / 2);
  const Tensor<uint8_t> images = test.images.reshape({-1, 1, 28, 28});
  Tensor<float> fa, fb;
  classify(j.classifier, images.narrow(0, 0, half), &fa, nullptr);
  classify(j.classifier, images.narrow(0, half, half), &fb, nullptr);
  j.real_a = moments(fa);
  j.real_fid = frechet_distance(j.real_a, moments(fb));
  j.fid_count = static_cast<size_t>(half);
  return j;
}

struct Quality {
  double confidence = 0, entropy = 0, fid = 0;
};

// Confidence and class entropy of the first metric_samples images, FID of the first fid_count
// against the first half of the test set.
Quality score(Judge& j, const Tensor<uint8_t>& pixels, int64_t metric_samples) {
  const int64_t m = std::min(metric_samples, pixels.size(0));
  const int64_t f = std::min(static_cast<int64_t>(j.fid_count), pixels.size(0));
  Tensor<float> features, probs;
  classify(j.classifier, pixels.narrow(0, 0, f), &features, nullptr);
  classify(j.classifier, pixels.narrow(0, 0, m), nullptr, &probs);
  Quality q;
  const int64_t classes = probs.size(1);
  const std::vector<float> p = probs.contiguous().to_vector();
  std::vector<double> histogram(static_cast<size_t>(classes), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    const float* row = p.data() + i * classes;
    const int64_t best = std::max_element(row, row + classes) - row;
    histogram[static_cast<size_t>(best)] += 1;
    if (row[best] >= 0.9f) q.confidence += 1;
  }
  q.confidence /= static_cast<double>(m);
  for (double h : histogram)
    if (h > 0) q.entropy -= h / static_cast<double>(m) * std::log2(h / static_cast<double>(m));
  q.fid = frechet_distance(moments(features), j.real_a);
  return q;
}

// The generator's images for a fixed noise stream (as many as the metrics use), in eval mode.
Tensor<uint8_t> sample_for_metrics(const Judge& j, Generator& g, const Options& o, uint64_t seed) {
  ember::NoGradGuard no_grad;
  ember::Generator noise_rng(seed);
  const bool was_training = g.is_training();
  g.eval();
  const int64_t n = std::max(o.metric_samples, static_cast<int64_t>(j.fid_count));
  std::vector<Tensor<uint8_t>> parts;
  for (int64_t start = 0; start < n; start += 500)
    parts.push_back(to_pixels(g(ember::randn<float>({std::min<int64_t>(500, n - start), kNoiseSize, 1, 1}, &noise_rng))));
  g.train(was_training);
  return ember::cat(parts, 0);
}

void print_quality(const Quality& q, const Judge& j) {
  std::printf("classifier_confidence=%.4f\nclass_entropy=%.4f\nfeature_fid=%.3f\nfeature_fid_real=%.3f\n",
              q.confidence, q.entropy, q.fid, j.real_fid);
  std::fflush(stdout);
}

// ---- Checkpoints: both networks, both optimizers, the epoch and the RNG in one file --------------

ember::optim::OptimizerState join_states(const ember::optim::OptimizerState& g, const ember::optim::OptimizerState& d) {
  ember::optim::OptimizerState s = g;
  s.groups.insert(s.groups.end(), d.groups.begin(), d.groups.end());
  s.params.insert(s.params.end(), d.params.begin(), d.params.end());
  return s;
}

std::pair<ember::optim::OptimizerState, ember::optim::OptimizerState> split_states(const ember::optim::OptimizerState& s,
                                                                                  size_t generator_params,
                                                                                  const std::string& source) {
  if (s.groups.size() != 2 || s.params.size() < generator_params)
    throw ember::FormatError(source + ": not an ember-gan checkpoint (expected two optimizer groups)");
  ember::optim::OptimizerState g = s, d = s;
  g.groups = {s.groups[0]};
  d.groups = {s.groups[1]};
  g.params.assign(s.params.begin(), s.params.begin() + static_cast<std::ptrdiff_t>(generator_params));
  d.params.assign(s.params.begin() + static_cast<std::ptrdiff_t>(generator_params), s.params.end());
  return {g, d};
}

std::string find_data(const Options& o) {
  if (!o.data.empty()) return o.data;
  for (const char* dir : {"data/fashion-mnist", "data/mnist"})
    if (fs::exists(dir)) return dir;
  throw ex::UsageError("no data: run scripts/get-data.sh fashion-mnist (or mnist), or pass --data DIR");
}

int generate(const Options& o) {
  Generator g;
  ember::load(g, o.model);  // strict: a file of another architecture throws, naming it
  g.eval();
  ember::NoGradGuard no_grad;
  ember::Generator rng(o.seed);
  const Tensor<uint8_t> pixels = to_pixels(g(ember::randn<float>({o.samples, kNoiseSize, 1, 1}, &rng)));
  fs::create_directories(o.out);
  const std::string path = o.out + "/generated.png";
  write_grid(path, pixels, fmt::format("{} samples from {}", o.samples, fs::path(o.model).filename().string()));
  std::printf("wrote %s\n", path.c_str());
  return 0;
}

// Scores images made elsewhere (tools/twin_gan.py's PyTorch DCGAN) with the same classifier and
// metrics: a safetensors file with "samples", float [N, 1, 28, 28] in [-1, 1].
int evaluate(const Options& o) {
  const ember::io::SafetensorsFile file = ember::io::read_safetensors(o.evaluate);
  const auto it = std::find_if(file.tensors.begin(), file.tensors.end(), [](const nn::NamedTensor& t) { return t.name == "samples"; });
  if (it == file.tensors.end() || it->tensor.dtype() != ember::DType::Float32 || it->tensor.dim() != 4 ||
      it->tensor.shape()[1] != 1 || it->tensor.shape()[2] != 28 || it->tensor.shape()[3] != 28)
    throw ember::FormatError(o.evaluate + ": expected a float32 tensor \"samples\" of shape [N, 1, 28, 28]");
  Judge j = make_judge(o, find_data(o));
  print_quality(score(j, to_pixels(Tensor<float>::from_base(it->tensor)), o.metric_samples), j);
  return 0;
}

int train(const Options& o) {
  const std::string data_dir = find_data(o);
  fs::create_directories(o.out);
  ember::manual_seed(o.seed);
  Gan gan;
  gan.apply(dcgan_init);
  Generator& generator = *gan.generator;
  nn::Sequential<float>& discriminator = *gan.discriminator;
  ember::optim::Adam generator_optimizer(generator.parameters(), {.lr = 2e-4, .beta1 = 0.5});
  ember::optim::Adam discriminator_optimizer(discriminator.parameters(), {.lr = 2e-4, .beta1 = 0.5});
  const nn::BCEWithLogitsLoss<float> bce;

  int64_t first_epoch = 0;
  if (!o.resume.empty()) {
    const ember::Checkpoint c = ember::load_checkpoint(o.resume);
    auto [gs, ds] = split_states(c.optimizer, generator.parameters().size(), o.resume);
    const ember::optim::OptimizerState g_before = generator_optimizer.state_dict();
    generator_optimizer.load_state_dict(gs);
    try {
      discriminator_optimizer.load_state_dict(ds);
      gan.load_state_dict(c.model);
    } catch (...) {
      generator_optimizer.load_state_dict(g_before);
      throw;
    }
    ember::default_generator().set_state(c.rng);
    first_epoch = c.step;
    std::printf("resumed from %s after epoch %lld\n", o.resume.c_str(), static_cast<long long>(first_epoch));
  }
  if (first_epoch >= o.epochs) {
    std::printf("%s: already trained for %lld epochs\n", o.resume.c_str(), static_cast<long long>(first_epoch));
    return 0;
  }

  // Building the classifier draws initial weights; keep that out of the training's random stream,
  // so a resumed run continues it exactly.
  const ember::Generator::State rng_before_judge = ember::default_generator().state();
  Judge judge_state = make_judge(o, data_dir);
  ember::default_generator().set_state(rng_before_judge);
  std::printf("feature_fid_real=%.3f\n", judge_state.real_fid);

  // Images in [-1, 1], as the generator's tanh gives them.
  auto dataset = std::make_shared<ember::data::MNIST>(data_dir, true, ember::data::Normalize{{0.5}, {0.5}});
  ember::data::DataLoader<float, int64_t> loader(
      dataset, {.batch_size = o.batch_size, .shuffle = true, .seed = o.seed, .num_workers = static_cast<int>(o.workers)});
  const int64_t batches = o.batches > 0 ? std::min(o.batches, loader.batches_per_epoch()) : loader.batches_per_epoch();
  ember::Generator fixed_rng(o.seed + 1000);
  const Tensor<float> fixed_noise = ember::randn<float>({64, kNoiseSize, 1, 1}, &fixed_rng);

  std::string csv = "epoch,d_loss,g_loss,d_real,d_fake,classifier_confidence,class_entropy,feature_fid,"
                    "feature_fid_real,seconds\n";
  if (first_epoch > 0 && fs::exists(o.out + "/metrics.csv")) {
    // Keep the rows of the epochs before the checkpoint.
    const std::vector<uint8_t> old = ember::io::read_file(o.out + "/metrics.csv");
    std::string text(old.begin(), old.end());
    csv.clear();
    size_t at = 0;
    for (int64_t line = 0; line <= first_epoch && at < text.size(); ++line) {
      const size_t end = text.find('\n', at);
      csv += text.substr(at, end == std::string::npos ? std::string::npos : end - at + 1);
      at = end == std::string::npos ? text.size() : end + 1;
    }
  }
  const bool live = ex::stdout_is_terminal();
  for (int64_t epoch = first_epoch; epoch < o.epochs; ++epoch) {
    loader.start_epoch(epoch);
    ex::EpochProgress progress(epoch, o.epochs, batches, live);
    double g_loss_sum = 0, d_real_sum = 0, d_fake_sum = 0;
    for (int64_t b = 0; b < batches; ++b) {
      auto batch = loader.next();
      if (!batch) break;
      const int64_t n = batch->data.size(0);
      // The discriminator: real images (labels smoothed to [0.8, 1)) and detached fakes.
      discriminator.zero_grad();
      const Tensor<float> real_labels = ember::empty<float>({n}).uniform_(0.8, 1.0);
      const Tensor<float> real_logits = discriminator(batch->data);
      const Tensor<float> d_loss_real = bce(real_logits, real_labels);
      d_loss_real.backward();
      const Tensor<float> fake_images = generator(ember::randn<float>({n, kNoiseSize, 1, 1}));
      const Tensor<float> fake_logits = discriminator(fake_images.detach());
      const Tensor<float> d_loss_fake = bce(fake_logits, ember::zeros<float>({n}));
      d_loss_fake.backward();
      discriminator_optimizer.step();
      // The generator: make the discriminator call its fakes real.
      generator.zero_grad();
      const Tensor<float> g_loss = bce(discriminator(fake_images), ember::ones<float>({n}));
      g_loss.backward();
      generator_optimizer.step();

      const double d_loss = static_cast<double>(d_loss_real.item<float>() + d_loss_fake.item<float>());
      ember::NoGradGuard no_grad;
      const int64_t correct = (real_logits > 0.0f).sum().item() + (fake_logits < 0.0f).sum().item();
      g_loss_sum += static_cast<double>(g_loss.item<float>());
      d_real_sum += static_cast<double>(ember::sigmoid(real_logits).mean().item<float>());
      d_fake_sum += static_cast<double>(ember::sigmoid(fake_logits).mean().item<float>());
      progress.update(2 * n, d_loss, correct);
    }
    const double seconds = progress.finish();
    const double nb = static_cast<double>(batches);

    gan.eval();
    {
      ember::NoGradGuard no_grad;
      write_grid(fmt::format("{}/samples_epoch_{}.png", o.out, epoch + 1), to_pixels(generator(fixed_noise)),
                 fmt::format("EPOCH {}", epoch + 1));
    }
    gan.train();
    const Quality q = score(judge_state, sample_for_metrics(judge_state, generator, o, o.seed + 2000), o.metric_samples);
    std::printf("epoch %lld/%lld: D loss %.4f (accuracy %.1f%%) | G loss %.4f | D(x) %.3f D(G(z)) %.3f | %.1f s\n",
                static_cast<long long>(epoch + 1), static_cast<long long>(o.epochs), progress.mean_loss(),
                100 * progress.accuracy(), g_loss_sum / nb, d_real_sum / nb, d_fake_sum / nb, seconds);
    print_quality(q, judge_state);
    csv += fmt::format("{},{:.5f},{:.5f},{:.4f},{:.4f},{:.4f},{:.4f},{:.3f},{:.3f},{:.1f}\n", epoch + 1,
                       progress.mean_loss(), g_loss_sum / nb, d_real_sum / nb, d_fake_sum / nb, q.confidence,
                       q.entropy, q.fid, judge_state.real_fid, seconds);
    ember::io::write_file_atomically(o.out + "/metrics.csv", std::vector<uint8_t>(csv.begin(), csv.end()));
    ember::save(generator, o.out + "/generator.safetensors");
    ember::save(discriminator, o.out + "/discriminator.safetensors");
    ember::Checkpoint c;
    c.model = gan.state_dict();
    c.optimizer = join_states(generator_optimizer.state_dict(), discriminator_optimizer.state_dict());
    c.step = epoch + 1;
    c.rng = ember::default_generator().state();
    ember::save_checkpoint(o.out + "/checkpoint.safetensors", c);
  }
  // The generator for other runtimes: an ONNX graph of any batch (noise [N, 100, 1, 1] in).
  gan.eval();
  ember::deploy::export_onnx(generator, {1, kNoiseSize, 1, 1}, o.out + "/generator.onnx", {.dynamic_batch = true});
  std::printf("wrote %s/generator.safetensors, generator.onnx, discriminator.safetensors, checkpoint.safetensors, "
              "metrics.csv, samples_epoch_*.png\n",
              o.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ex::run_program(kProgram, [&] {
    const Options o = parse_flags(argc, argv);
    if (o.threads > 0) ember::set_num_threads(static_cast<int>(o.threads));
    if (!o.evaluate.empty()) return evaluate(o);
    return o.samples > 0 ? generate(o) : train(o);
  });
}
