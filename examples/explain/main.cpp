// ember-explain: what a classifier from ember-mnist looks at, how FGSM fools it, and how sure it
// is. Writes PNGs: saliency, integrated gradients and Grad-CAM over test images; an FGSM panel and
// the accuracy against eps; the most and least certain test images by Monte Carlo dropout, and the
// predictive entropy of test images against the same images rotated. See docs/examples.md.
//
//   scripts/get-data.sh fashion-mnist
//   ember-mnist --data data/fashion-mnist --model cnn --out out/fashion-mnist-cnn
//   ember-explain --data data/fashion-mnist --model out/fashion-mnist-cnn/model.safetensors --out out/explain
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <numbers>
#include <numeric>
#include <string>
#include <vector>

#include "common/classifier.hpp"
#include "common/flags.hpp"
#include "common/image.hpp"
#include "common/mnist_models.hpp"
#include "ember/ember.hpp"

namespace {

namespace fs = std::filesystem;
namespace nn = ember::nn;
namespace ex = ember::examples;
namespace explain = ember::explain;
using ember::Tensor;

constexpr const char* kProgram = "ember-explain";
constexpr const char* kCamLayer = "6";  // make_mnist_cnn's second conv block (after BN and ReLU), 64 x 14 x 14

struct Options {
  std::string data, out = "out/explain", model;
  int64_t epochs = 3, images = 8, mc_samples = 30, uncertainty_images = 2000, threads = 0;
  uint64_t seed = 1;
};

const char* kUsage =
    "usage: ember-explain [--data DIR] [--out DIR] [--model FILE] [--epochs N] [--images N]\n"
    "                     [--mc-samples N] [--uncertainty-images N] [--threads N] [--seed N]\n"
    "Explains a classifier saved by ember-mnist (--model; without one, its cnn is trained for\n"
    "--epochs into OUT/classifier): writes explanations.png, fgsm.png, fgsm_accuracy.png and\n"
    "uncertainty.png, and prints test_accuracy=, fgsm_accuracy_eps_0.1= and ig_completeness_max=.\n";

Options parse_flags(int argc, char** argv) {
  Options o;
  ex::for_each_flag(argc, argv, kUsage, [&](const std::string& flag, const std::string& v) {
    if (flag == "--data") o.data = v;
    else if (flag == "--out") o.out = v;
    else if (flag == "--model") o.model = v;
    else if (flag == "--epochs") o.epochs = ex::integer_flag(flag, v, 1);
    else if (flag == "--images") o.images = ex::integer_flag(flag, v, 1);
    else if (flag == "--mc-samples") o.mc_samples = ex::integer_flag(flag, v, 2);
    else if (flag == "--uncertainty-images") o.uncertainty_images = ex::integer_flag(flag, v, 16);
    else if (flag == "--threads") o.threads = ex::integer_flag(flag, v, 1);
    else if (flag == "--seed") o.seed = static_cast<uint64_t>(ex::integer_flag(flag, v, 0));
    else throw ex::UsageError(fmt::format("unknown flag {}", flag));
  });
  if (o.data.empty()) {
    for (const char* dir : {"data/fashion-mnist", "data/mnist"})
      if (fs::exists(dir)) o.data = dir;
    if (o.data.empty()) throw ex::UsageError("no data: run scripts/get-data.sh fashion-mnist, or pass --data DIR");
  }
  return o;
}

// ---- Pictures -----------------------------------------------------------------------------------

// A perceptual colour map from dark blue through red to yellow (v in [0, 1]).
ex::Rgb heat(double v) {
  const ex::Rgb stops[] = {{0, 0, 80}, {120, 20, 140}, {220, 50, 60}, {250, 160, 30}, {255, 250, 180}};
  v = std::clamp(v, 0.0, 1.0) * 4;
  const int i = std::min(static_cast<int>(v), 3);
  const double t = v - i;
  auto mix = [t](uint8_t a, uint8_t b) { return static_cast<uint8_t>(std::lround(a + t * (b - a))); };
  return {mix(stops[i].r, stops[i + 1].r), mix(stops[i].g, stops[i + 1].g), mix(stops[i].b, stops[i + 1].b)};
}

// A 28 x 28 image (pixels 0..255) at `zoom`, optionally overlaid by a map scaled to its own maximum.
void draw_image(ex::Canvas& canvas, int x, int y, int zoom, const std::vector<float>& pixels,
                const std::vector<float>* map = nullptr) {
  float top = 0;
  if (map)
    for (float v : *map) top = std::max(top, std::abs(v));
  for (int r = 0; r < 28; ++r)
    for (int c = 0; c < 28; ++c) {
      const double g = pixels[static_cast<size_t>(r * 28 + c)] / 255.0;
      ex::Rgb color{static_cast<uint8_t>(g * 255), static_cast<uint8_t>(g * 255), static_cast<uint8_t>(g * 255)};
      if (map) {
        const ex::Rgb h = heat(top > 0 ? std::abs((*map)[static_cast<size_t>(r * 28 + c)]) / top : 0.0);
        color = {static_cast<uint8_t>(0.35 * color.r + 0.65 * h.r), static_cast<uint8_t>(0.35 * color.g + 0.65 * h.g),
                 static_cast<uint8_t>(0.35 * color.b + 0.65 * h.b)};
      }
      canvas.fill_rect(x + c * zoom, y + r * zoom, zoom, zoom, color);
    }
}

std::vector<float> row_of(const Tensor<float>& t, int64_t i) { return t[i].contiguous().to_vector(); }

std::string short_name(const std::string& name) {
  std::string s = name.substr(0, std::min<size_t>(name.size(), 11));
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

// ---- The model on pixels --------------------------------------------------------------------------

// ember-mnist's models take normalised input; the explanations and attacks work on pixels in [0, 1].
struct OnPixels : nn::Module<float> {
  OnPixels(std::shared_ptr<nn::Module<float>> inner, const ex::Normalization& norm)
      : pixel_mean(static_cast<float>(norm.mean.at(0))), pixel_std(static_cast<float>(norm.std.at(0))) {
    net = register_module("net", std::move(inner));
  }
  Tensor<float> forward(const Tensor<float>& pixels) override { return net((pixels - pixel_mean) * (1.0f / pixel_std)); }
  std::string type_name() const override { return "OnPixels"; }
  nn::ModuleHolder<nn::Module<float>> net;
  float pixel_mean, pixel_std;
};

Tensor<float> pixels_of(const Tensor<uint8_t>& images) { return images.to<float>() * (1.0f / 255.0f); }

double accuracy(const explain::Forward<float>& f, const Tensor<float>& pixels, const Tensor<int64_t>& labels) {
  ember::NoGradGuard no_grad;
  int64_t correct = 0;
  for (int64_t start = 0; start < pixels.size(0); start += 500) {
    const int64_t len = std::min<int64_t>(500, pixels.size(0) - start);
    correct += f(pixels.narrow(0, start, len)).argmax(1).eq(labels.narrow(0, start, len)).sum().item();
  }
  return static_cast<double>(correct) / static_cast<double>(pixels.size(0));
}

double fgsm_accuracy(const explain::Forward<float>& f, const Tensor<float>& pixels, const Tensor<int64_t>& labels,
                     double eps) {
  if (eps == 0) return accuracy(f, pixels, labels);
  std::vector<Tensor<float>> parts;
  for (int64_t start = 0; start < pixels.size(0); start += 500) {
    const int64_t len = std::min<int64_t>(500, pixels.size(0) - start);
    parts.push_back(ember::adversarial::fgsm(f, pixels.narrow(0, start, len), labels.narrow(0, start, len), eps));
  }
  return accuracy(f, ember::cat(parts, 0), labels);
}

// Rotates 28 x 28 images by `degrees` about their centre (bilinear, zero outside).
Tensor<float> rotate(const Tensor<float>& pixels, const std::vector<double>& degrees) {
  const int64_t n = pixels.size(0);
  const std::vector<float> in = pixels.contiguous().to_vector();
  std::vector<float> out(in.size(), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const double a = degrees[static_cast<size_t>(i)] * std::numbers::pi / 180, c = std::cos(a), s = std::sin(a);
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        const double dx = x - 13.5, dy = y - 13.5;
        const double sx = c * dx + s * dy + 13.5, sy = -s * dx + c * dy + 13.5;
        const int x0 = static_cast<int>(std::floor(sx)), y0 = static_cast<int>(std::floor(sy));
        const double fx = sx - x0, fy = sy - y0;
        double v = 0;
        for (int k = 0; k < 4; ++k) {
          const int xx = x0 + (k & 1), yy = y0 + (k >> 1);
          if (xx < 0 || yy < 0 || xx >= 28 || yy >= 28) continue;
          const double w = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy);
          v += w * in[static_cast<size_t>(i * 784 + yy * 28 + xx)];
        }
        out[static_cast<size_t>(i * 784 + y * 28 + x)] = static_cast<float>(v);
      }
  }
  return ember::tensor<float>(out, pixels.shape());
}

int run(const Options& o) {
  fs::create_directories(o.out);
  ember::manual_seed(o.seed);
  const std::string model_path =
      !o.model.empty() ? o.model : ex::train_classifier_if_absent(o.data, o.out, o.epochs, "no --model given");
  ex::SavedClassifier saved = ex::load_classifier(model_path, ex::mnist_spec());
  if (saved.channels != 1 || saved.size != 28)
    throw ember::ValueError(fmt::format("{}: expected a model for 1 x 28 x 28 images", model_path));
  nn::Module<float>& model = *saved.model;
  OnPixels wrapped(saved.model, saved.norm);
  const explain::Forward<float> f = [&wrapped](const Tensor<float>& p) { return wrapped(p); };

  const ember::data::LabeledImages test = ember::data::load_mnist(o.data, false);
  const Tensor<float> pixels = pixels_of(test.images.reshape({-1, 1, 28, 28}));
  const Tensor<int64_t> labels = test.labels;
  const double test_accuracy = accuracy(f, pixels, labels);

  // ---- Attributions for the first images ----
  const int64_t n = std::min<int64_t>(o.images, pixels.size(0));
  const Tensor<float> x = pixels.narrow(0, 0, n);
  Tensor<float> probs;
  {
    ember::NoGradGuard no_grad;
    probs = ember::softmax(f(x), 1);
  }
  const Tensor<int64_t> predicted = probs.argmax(1);
  const Tensor<float> sal = explain::saliency(f, x, predicted);
  const explain::Attribution<float> ig = explain::integrated_gradients(f, x, predicted, {.internal_batch_size = 400});
  const bool has_cam = saved.model_name == "cnn";
  Tensor<float> cam;
  if (has_cam) cam = explain::grad_cam(wrapped, model.submodule(kCamLayer), x, predicted);
  double completeness = 0;
  {
    ember::NoGradGuard no_grad;
    const std::vector<float> gain = (f(x).gather(1, predicted.reshape({n, 1})) -
                                     f(ember::zeros_like(x)).gather(1, predicted.reshape({n, 1})))
                                        .to_vector();
    const std::vector<float> delta = ig.delta.to_vector();
    for (size_t i = 0; i < delta.size(); ++i)
      completeness = std::max(completeness, std::abs(static_cast<double>(delta[i])) /
                                                std::max(1e-12, std::abs(static_cast<double>(gain[i]))));
  }
  {
    const int zoom = 4, cell = 28 * zoom, pad = 10, caption = 2 * ex::Canvas::text_height(1) + 8;
    const int columns = has_cam ? 4 : 3;
    const std::vector<std::string> heads = {"IMAGE", "SALIENCY", "INTEGRATED GRAD.", "GRAD-CAM"};
    ex::Canvas canvas(columns * (cell + pad) + pad, static_cast<int>(n) * (cell + caption + pad) + 30);
    for (int c = 0; c < columns; ++c) canvas.text(pad + c * (cell + pad), 10, heads[static_cast<size_t>(c)], {0, 0, 0});
    const std::vector<int64_t> pred = predicted.to_vector(), truth = labels.narrow(0, 0, n).to_vector();
    for (int64_t i = 0; i < n; ++i) {
      const int y = 30 + static_cast<int>(i) * (cell + caption + pad);
      const std::vector<float> img = row_of(test.images.reshape({-1, 28, 28}).narrow(0, i, 1).to<float>(), 0);
      const std::vector<float> s = row_of(sal, i), g = row_of(ig.attributions, i);
      draw_image(canvas, pad, y, zoom, img);
      draw_image(canvas, pad + (cell + pad), y, zoom, img, &s);
      draw_image(canvas, pad + 2 * (cell + pad), y, zoom, img, &g);
      if (has_cam) {
        const std::vector<float> m = row_of(cam, i);
        draw_image(canvas, pad + 3 * (cell + pad), y, zoom, img, &m);
      }
      const auto p = static_cast<size_t>(pred[static_cast<size_t>(i)]), t = static_cast<size_t>(truth[static_cast<size_t>(i)]);
      const ex::Rgb ink = p == t ? ex::Rgb{0, 120, 0} : ex::Rgb{190, 0, 0};
      canvas.text(pad, y + cell + 4,
                  fmt::format("PRED {} {:.0f}%", short_name(saved.classes[p]),
                              100 * probs[static_cast<int64_t>(i)][static_cast<int64_t>(p)].item<float>()),
                  ink);
      canvas.text(pad, y + cell + 6 + ex::Canvas::text_height(1), "TRUE " + short_name(saved.classes[t]), {60, 60, 60});
    }
    ex::write_png(o.out + "/explanations.png", canvas.image());
  }

  // ---- FGSM ----
  const std::vector<double> eps_values = {0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3};
  std::vector<double> eps_accuracy;
  for (double eps : eps_values) eps_accuracy.push_back(fgsm_accuracy(f, pixels, labels, eps));
  {
    const int64_t shown = std::min<int64_t>(4, n);
    const Tensor<float> adv = ember::adversarial::fgsm(f, x.narrow(0, 0, shown), labels.narrow(0, 0, shown), 0.1);
    Tensor<int64_t> adv_pred;
    {
      ember::NoGradGuard no_grad;
      adv_pred = f(adv).argmax(1);
    }
    const int zoom = 4, cell = 28 * zoom, pad = 10, caption = ex::Canvas::text_height(1) + 8;
    ex::Canvas canvas(3 * (cell + pad) + pad, static_cast<int>(shown) * (cell + caption + pad) + 30);
    const std::vector<std::string> heads = {"ORIGINAL", "PERTURBATION", "FGSM EPS 0.1"};
    for (int c = 0; c < 3; ++c) canvas.text(pad + c * (cell + pad), 10, heads[static_cast<size_t>(c)], {0, 0, 0});
    for (int64_t i = 0; i < shown; ++i) {
      const int y = 30 + static_cast<int>(i) * (cell + caption + pad);
      std::vector<float> orig = row_of(x * 255.0f, i), after = row_of(adv * 255.0f, i), diff(784);
      for (size_t k = 0; k < 784; ++k) diff[k] = 127.5f + (after[k] - orig[k]) * 5.0f;  // +-0.1 -> +-127
      draw_image(canvas, pad, y, zoom, orig);
      draw_image(canvas, pad + (cell + pad), y, zoom, diff);
      draw_image(canvas, pad + 2 * (cell + pad), y, zoom, after);
      const auto before_label = static_cast<size_t>(predicted[i].item()), after_label = static_cast<size_t>(adv_pred[i].item());
      canvas.text(pad, y + cell + 4, short_name(saved.classes[before_label]), {0, 0, 0});
      canvas.text(pad + 2 * (cell + pad), y + cell + 4, short_name(saved.classes[after_label]),
                  after_label == before_label ? ex::Rgb{0, 120, 0} : ex::Rgb{190, 0, 0});
    }
    ex::write_png(o.out + "/fgsm.png", canvas.image());
    ex::Canvas chart(720, 420);
    std::vector<double> percent;
    for (double a : eps_accuracy) percent.push_back(100 * a);
    ex::draw_chart(chart, 10, 10, 700, 400, "TEST ACCURACY (%) UNDER FGSM", "EPS (PIXELS IN [0, 1])",
                   {{"FGSM", eps_values, percent, {200, 60, 50}}});
    ex::write_png(o.out + "/fgsm_accuracy.png", chart.image());
  }

  // ---- Uncertainty ----
  const int64_t m = std::min(o.uncertainty_images, pixels.size(0));
  double mean_entropy = 0, mean_entropy_rotated = 0;
  {
    const Tensor<float> subset = pixels.narrow(0, 0, m);
    ember::Generator angle_rng(o.seed + 7);
    std::vector<double> angles(static_cast<size_t>(m));
    for (double& a : angles) a = (angle_rng.below(2) ? 1 : -1) * (45 + 45 * angle_rng.uniform());
    const Tensor<float> rotated = rotate(subset, angles);
    std::vector<float> entropy, entropy_rotated;
    for (int64_t start = 0; start < m; start += 500) {
      const int64_t len = std::min<int64_t>(500, m - start);
      const auto u = explain::mc_dropout(wrapped, subset.narrow(0, start, len), {.samples = o.mc_samples});
      const auto r = explain::mc_dropout(wrapped, rotated.narrow(0, start, len), {.samples = o.mc_samples});
      const std::vector<float> e = u.entropy.to_vector(), er = r.entropy.to_vector();
      entropy.insert(entropy.end(), e.begin(), e.end());
      entropy_rotated.insert(entropy_rotated.end(), er.begin(), er.end());
    }
    mean_entropy = std::accumulate(entropy.begin(), entropy.end(), 0.0) / static_cast<double>(m);
    mean_entropy_rotated = std::accumulate(entropy_rotated.begin(), entropy_rotated.end(), 0.0) / static_cast<double>(m);
    std::vector<int64_t> order(static_cast<size_t>(m));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return entropy[static_cast<size_t>(a)] < entropy[static_cast<size_t>(b)];
    });
    const int zoom = 3, cell = 28 * zoom, pad = 8, caption = ex::Canvas::text_height(1) + 6, per_row = 8;
    const int chart_h = 300, width = per_row * (cell + pad) + pad;
    ex::Canvas canvas(width, 2 * (cell + caption + pad + 20) + chart_h + 40);
    auto strip = [&](int y, const std::string& title, const std::vector<int64_t>& which) {
      canvas.text(pad, y, title, {0, 0, 0});
      for (size_t k = 0; k < which.size(); ++k) {
        const int64_t i = which[k];
        const int xx = pad + static_cast<int>(k) * (cell + pad);
        draw_image(canvas, xx, y + 14, zoom, row_of(subset * 255.0f, i));
        canvas.text(xx, y + 16 + cell, fmt::format("H {:.2f}", entropy[static_cast<size_t>(i)]), {60, 60, 60});
      }
    };
    strip(6, "MOST CERTAIN (LOWEST PREDICTIVE ENTROPY)", std::vector<int64_t>(order.begin(), order.begin() + per_row));
    strip(6 + cell + caption + pad + 20, "LEAST CERTAIN (HIGHEST PREDICTIVE ENTROPY)",
          std::vector<int64_t>(order.end() - per_row, order.end()));
    // Histograms of the entropy, test images against the same images rotated by 45-90 degrees.
    const int bins = 20;
    const double top = std::log(static_cast<double>(saved.classes.size()));
    ex::Series plain{"TEST IMAGES", {}, {}, {50, 110, 200}}, turned{"ROTATED 45-90 DEG", {}, {}, {200, 60, 50}};
    for (int b = 0; b < bins; ++b) {
      const double lo = top * b / bins, hi = top * (b + 1) / bins;
      auto share = [&](const std::vector<float>& v) {
        return 100.0 * static_cast<double>(std::count_if(v.begin(), v.end(), [&](float e) {
                 return e >= lo && (e < hi || (b == bins - 1 && e <= hi + 1e-6));
               })) / static_cast<double>(v.size());
      };
      plain.x.push_back((lo + hi) / 2);
      plain.y.push_back(share(entropy));
      turned.x.push_back((lo + hi) / 2);
      turned.y.push_back(share(entropy_rotated));
    }
    ex::draw_chart(canvas, 0, 2 * (cell + caption + pad + 20) + 20, width, chart_h, "% OF IMAGES BY PREDICTIVE ENTROPY",
                   "PREDICTIVE ENTROPY (NATS)", {plain, turned});
    ex::write_png(o.out + "/uncertainty.png", canvas.image());
  }

  std::printf("test_accuracy=%.4f\n", test_accuracy);
  for (size_t k = 0; k < eps_values.size(); ++k)
    std::printf("fgsm_accuracy_eps_%g=%.4f\n", eps_values[k], eps_accuracy[k]);
  std::printf("ig_completeness_max=%.5f\n", completeness);
  std::printf("mean_entropy_test=%.4f\nmean_entropy_rotated=%.4f\n", mean_entropy, mean_entropy_rotated);
  std::printf("wrote %s/explanations.png, fgsm.png, fgsm_accuracy.png, uncertainty.png\n", o.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ex::run_program(kProgram, [&] {
    const Options o = parse_flags(argc, argv);
    if (o.threads > 0) ember::set_num_threads(static_cast<int>(o.threads));
    return run(o);
  });
}
