#include "classifier.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "ember/ember.hpp"
#ifdef EMBER_EXAMPLES_HAVE_MPI
#include "ember/distributed.hpp"
#endif
#include "image.hpp"
#include "progress.hpp"

namespace ember::examples {
namespace {

namespace fs = std::filesystem;

// ---- Flags -------------------------------------------------------------------------------------

struct Options {
  std::string data, model, out, optimizer, schedule, predict, weights, keep_float;
  int64_t epochs = 0, batch_size = 0, threads = 0, workers = 1, limit_train = 0, limit_test = 0;
  uint64_t seed = 0;
  double lr = 0, momentum = 0, weight_decay = 0, label_smoothing = 0, adversarial_eps = 0,
         adversarial_weight = 0.3;
  bool invert = false, quantize = false, distributed = false;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string usage(const ExampleSpec& spec) {
  std::string models;
  for (const ModelChoice& m : spec.models) models += fmt::format("    {:<8} {}\n", m.name, m.description);
  const Recipe& r = spec.models.front().recipe;
  return fmt::format(
      "{}: {}\n\n"
      "usage: {} [--data DIR] [--model NAME] [--epochs N] [--batch-size N] [--lr X]\n"
      "       {:{}} [--optimizer sgd|adam|adamw] [--momentum X] [--weight-decay X]\n"
      "       {:{}} [--schedule none|onecycle|cosine] [--label-smoothing X] [--threads N]\n"
      "       {:{}} [--workers N] [--seed N] [--out DIR] [--limit-train N] [--limit-test N]\n"
      "       {:{}} [--adversarial-training EPS] [--adversarial-weight W] [--quantize [--keep-float L,...]]\n"
      "       mpirun -np N {} --distributed ...\n"
      "       {} --predict IMAGE.png [--weights FILE] [--invert]\n\n"
      "  --data DIR      data set directory (default: the first of {} that exists)\n"
      "  --model NAME    one of:\n{}"
      "  --epochs, --batch-size, --lr, --optimizer, --momentum, --weight-decay, --schedule,\n"
      "  --label-smoothing   override the model's recipe (default model: {} epochs, batch {},\n"
      "                  {} lr {}, schedule {})\n"
      "  --threads N     compute threads (default: all cores); --workers N: data-loading threads (1)\n"
      "  --seed N        initialisation, shuffling and augmentation seed (0)\n"
      "  --out DIR       where model.safetensors, metrics.csv, curves.png and predictions.png go\n"
      "                  (default out/<data set>-<model>)\n"
      "  --limit-train N, --limit-test N   use only the first N images (quick runs)\n"
      "  --adversarial-training EPS   train on each batch and its FGSM version at EPS (pixels in [0, 1])\n"
      "  --adversarial-weight W   the FGSM batch's share of the loss (default 0.3)\n"
      "  --quantize      also quantize the trained model to int8 (calibrated on 1,000 training images),\n"
      "                  report its test accuracy and write model-int8.safetensors\n"
      "  --keep-float L,...   with --quantize: leave these Linear/Conv2d layers (state-dict prefixes, e.g. 0)\n"
      "                  in float\n"
      "  --distributed   data-parallel training, one rank per process started by mpirun: each trains on\n"
      "                  its share of every batch (--batch-size is the whole batch, split evenly), batch\n"
      "                  norm sees the whole batch, gradients are averaged; rank 0 prints and writes\n"
      "                  the outputs. Threads per rank default to the cores divided among the ranks\n"
      "  --predict IMAGE.png   classify a PNG with a saved model (--weights, default\n"
      "                  <out>/model.safetensors); --invert for dark-on-light pictures\n",
      spec.program, spec.about, spec.program, "", spec.program.size(), "", spec.program.size(), "",
      spec.program.size(), "", spec.program.size(), spec.program, spec.program, fmt::join(spec.default_data_dirs, ", "), models, r.epochs,
      r.batch_size, r.optimizer, r.lr, r.schedule);
}

Options parse_flags(int argc, char** argv, const ExampleSpec& spec) {
  Options o;
  std::map<std::string, std::function<void(const std::string&)>> with_value;
  auto integer = [](int64_t& dst, int64_t min) {
    return [&dst, min](const std::string& v) {
      size_t used = 0;
      long long x = 0;
      try {
        x = std::stoll(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || v.empty() || x < min)
        throw UsageError(fmt::format("expected an integer >= {}, got '{}'", min, v));
      dst = x;
    };
  };
  auto real = [](double& dst) {
    return [&dst](const std::string& v) {
      size_t used = 0;
      double x = 0;
      try {
        x = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || v.empty() || !std::isfinite(x) || x < 0)
        throw UsageError(fmt::format("expected a non-negative number, got '{}'", v));
      dst = x;
    };
  };
  auto text = [](std::string& dst) { return [&dst](const std::string& v) { dst = v; }; };
  int64_t seed = 0;
  with_value["--data"] = text(o.data);
  with_value["--model"] = text(o.model);
  with_value["--out"] = text(o.out);
  with_value["--optimizer"] = text(o.optimizer);
  with_value["--schedule"] = text(o.schedule);
  with_value["--predict"] = text(o.predict);
  with_value["--weights"] = text(o.weights);
  with_value["--keep-float"] = text(o.keep_float);
  with_value["--epochs"] = integer(o.epochs, 1);
  with_value["--batch-size"] = integer(o.batch_size, 1);
  with_value["--threads"] = integer(o.threads, 1);
  with_value["--workers"] = integer(o.workers, 0);
  with_value["--limit-train"] = integer(o.limit_train, 1);
  with_value["--limit-test"] = integer(o.limit_test, 1);
  with_value["--seed"] = integer(seed, 0);
  with_value["--lr"] = real(o.lr);
  with_value["--momentum"] = real(o.momentum);
  with_value["--weight-decay"] = real(o.weight_decay);
  with_value["--label-smoothing"] = real(o.label_smoothing);
  with_value["--adversarial-training"] = real(o.adversarial_eps);
  with_value["--adversarial-weight"] = real(o.adversarial_weight);
  o.momentum = o.weight_decay = o.label_smoothing = -1;  // -1: the recipe's value
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", usage(spec).c_str());
      std::exit(0);
    }
    if (flag == "--invert") {
      o.invert = true;
      continue;
    }
    if (flag == "--quantize") {
      o.quantize = true;
      continue;
    }
    if (flag == "--distributed") {
      o.distributed = true;
      continue;
    }
    auto it = with_value.find(flag);
    if (it == with_value.end()) throw UsageError(fmt::format("unknown flag '{}'", flag));
    if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", flag));
    try {
      it->second(argv[++i]);
    } catch (const UsageError& e) {
      throw UsageError(fmt::format("{}: {}", flag, e.what()));
    }
  }
  if (!o.keep_float.empty() && !o.quantize) throw UsageError("--keep-float goes with --quantize");
  if (o.adversarial_weight > 1)
    throw UsageError(fmt::format("--adversarial-weight: expected a number in [0, 1], got {:g}", o.adversarial_weight));
  o.seed = static_cast<uint64_t>(seed);
  return o;
}

const ModelChoice& find_model(const ExampleSpec& spec, const std::string& name) {
  for (const ModelChoice& m : spec.models)
    if (m.name == name) return m;
  std::string names;
  for (const ModelChoice& m : spec.models) names += fmt::format("{}{}", names.empty() ? "" : ", ", m.name);
  throw UsageError(fmt::format("--model: unknown model '{}' (expected one of {})", name, names));
}

// ---- Data ----------------------------------------------------------------------------------------

// Images as [N, C, H, W] (MNIST files hold [N, H, W]), the first `limit` of them when limit > 0.
data::LabeledImages as_nchw(data::LabeledImages d, int64_t limit) {
  if (d.images.dim() == 3) d.images = d.images.unsqueeze(1);
  if (d.images.dim() != 4 || d.images.shape()[2] != d.images.shape()[3])
    throw FormatError(fmt::format("expected square images [N, C, H, W], got {}", d.images.shape().str()));
  if (limit > 0 && limit < d.images.shape()[0]) {
    d.images = d.images.narrow(0, 0, limit);
    d.labels = d.labels.narrow(0, 0, limit);
  }
  d.images = d.images.contiguous();
  d.labels = d.labels.contiguous();
  return d;
}


std::string join(const std::vector<double>& v) { return fmt::format("{:.9g}", fmt::join(v, ",")); }
std::vector<double> split_numbers(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stod(item));
  return out;
}
std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

std::string data_set_name(const std::string& dir) {
  std::string name = fs::path(dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(dir).lexically_normal().parent_path().filename().string();
  return name.empty() ? "data" : name;
}

// ---- Training ------------------------------------------------------------------------------------

std::unique_ptr<optim::OptimizerBase> make_optimizer(const Recipe& r, const std::vector<Tensor<float>>& params) {
  if (r.optimizer == "sgd")
    return std::make_unique<optim::SGD<float>>(
        params, optim::SGDOptions{.lr = r.lr, .momentum = r.momentum, .weight_decay = r.weight_decay,
                                  .nesterov = r.nesterov && r.momentum > 0});
  if (r.optimizer == "adam")
    return std::make_unique<optim::Adam<float>>(params, optim::AdamOptions{.lr = r.lr, .weight_decay = r.weight_decay});
  if (r.optimizer == "adamw")
    return std::make_unique<optim::AdamW<float>>(
        params, optim::AdamWOptions{.lr = r.lr, .weight_decay = r.weight_decay});
  throw UsageError(fmt::format("--optimizer: unknown optimizer '{}' (expected sgd, adam or adamw)", r.optimizer));
}

std::unique_ptr<optim::LRScheduler> make_schedule(const Recipe& r, optim::OptimizerBase& opt, int64_t total_steps) {
  if (r.schedule == "none") return nullptr;
  if (r.schedule == "onecycle")
    return std::make_unique<optim::OneCycleLR>(opt, r.lr, optim::OneCycleOptions{.total_steps = total_steps});
  if (r.schedule == "cosine") return std::make_unique<optim::CosineAnnealingLR>(opt, total_steps);
  throw UsageError(fmt::format("--schedule: unknown schedule '{}' (expected none, onecycle or cosine)", r.schedule));
}

struct Evaluation {
  double loss = 0, accuracy = 0;
  std::vector<int64_t> predictions;
};

// Correct argmax predictions of logits [N, C] against labels [N]; the predictions are appended to
// `predictions` when given.
int64_t count_correct(const Tensor<float>& logits, const Tensor<int64_t>& labels,
                      std::vector<int64_t>* predictions = nullptr) {
  const std::vector<int64_t> predicted = logits.detach().argmax(1).to_vector();
  const std::vector<int64_t> truth = labels.to_vector();
  int64_t correct = 0;
  for (size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == truth[i];
  if (predictions) predictions->insert(predictions->end(), predicted.begin(), predicted.end());
  return correct;
}

Evaluation evaluate(nn::Module<float>& model, const data::LabeledImages& test, const Normalization& norm) {
  NoGradGuard no_grad;
  model.eval();
  const int64_t n = test.images.shape()[0], batch = 500;
  Evaluation e;
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t len = std::min(batch, n - start);
    const Tensor<float> logits = model(to_input(test.images.narrow(0, start, len), norm));
    const Tensor<int64_t> labels = test.labels.narrow(0, start, len);
    loss_sum += nn::functional::cross_entropy(logits, labels, {.reduction = nn::Reduction::Sum}).item();
    correct += count_correct(logits, labels, &e.predictions);
  }
  e.loss = loss_sum / static_cast<double>(n);
  e.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  return e;
}

// The normalisation as [1, C, 1, 1] tensors: normalised = (pixels - mean) / std.
struct PixelScale {
  Tensor<float> mean, std;
  explicit PixelScale(const Normalization& norm) {
    const int64_t c = static_cast<int64_t>(norm.mean.size());
    mean = tensor<float>(std::vector<float>(norm.mean.begin(), norm.mean.end()), {1, c, 1, 1});
    std = tensor<float>(std::vector<float>(norm.std.begin(), norm.std.end()), {1, c, 1, 1});
  }
};

// The model on pixels in [0, 1] (normalised inside), so that attacks measure eps in pixel units.
explain::Forward<float> on_pixels(nn::Module<float>& model, const PixelScale& scale) {
  return [&model, scale](const Tensor<float>& pixels) { return model((pixels - scale.mean) / scale.std); };
}

// FGSM of a normalised batch at `eps` pixel units, returned normalised.
Tensor<float> fgsm_normalized(nn::Module<float>& model, const Normalization& norm, const Tensor<float>& x,
                              const Tensor<int64_t>& labels, double eps) {
  const PixelScale scale(norm);
  NoGradGuard no_grad;
  const Tensor<float> pixels = clamp(x * scale.std + scale.mean, 0.0, 1.0);
  const Tensor<float> adv = adversarial::fgsm(on_pixels(model, scale), pixels, labels, eps);
  return (adv - scale.mean) / scale.std;
}

// Test accuracy on FGSM examples at `eps` (pixel units), the model in eval mode.
double fgsm_accuracy(nn::Module<float>& model, const data::LabeledImages& test, const Normalization& norm, double eps) {
  model.eval();
  const explain::Forward<float> f = on_pixels(model, PixelScale(norm));
  const int64_t n = test.images.shape()[0], batch = 500;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t len = std::min(batch, n - start);
    const Tensor<float> pixels = test.images.narrow(0, start, len).to<float>() / 255.0f;
    const Tensor<int64_t> labels = test.labels.narrow(0, start, len);
    const Tensor<float> adv = adversarial::fgsm(f, pixels, labels, eps);
    NoGradGuard no_grad;
    correct += count_correct(f(adv), labels);
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

struct EpochRow {
  int64_t epoch;
  double train_loss, train_accuracy, test_loss, test_accuracy, seconds, lr;
};

void write_metrics(const std::string& path, const std::vector<EpochRow>& rows) {
  std::string csv = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,epoch_seconds,lr\n";
  for (const EpochRow& r : rows)
    csv += fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{:.3f},{:.6g}\n", r.epoch, r.train_loss, r.train_accuracy,
                       r.test_loss, r.test_accuracy, r.seconds, r.lr);
  io::write_file_atomically(path, std::vector<uint8_t>(csv.begin(), csv.end()));
}

struct LossTrace {
  std::vector<double> x, y;  // fractional epoch, mean training loss over the last stretch
};

void write_curves(const std::string& path, const std::string& title, const LossTrace& trace,
                  const std::vector<EpochRow>& rows) {
  Canvas canvas(1000, 420);
  canvas.text((1000 - Canvas::text_width(title, 2)) / 2, 8, title, {40, 40, 40}, 2);
  Series train_loss{"train loss", trace.x, trace.y, {31, 119, 180}};
  Series test_loss{"test loss", {}, {}, {214, 39, 40}};
  Series train_acc{"train accuracy %", {}, {}, {31, 119, 180}};
  Series test_acc{"test accuracy %", {}, {}, {214, 39, 40}};
  for (const EpochRow& r : rows) {
    const double x = static_cast<double>(r.epoch);
    test_loss.x.push_back(x);
    test_loss.y.push_back(r.test_loss);
    train_acc.x.push_back(x);
    train_acc.y.push_back(100 * r.train_accuracy);
    test_acc.x.push_back(x);
    test_acc.y.push_back(100 * r.test_accuracy);
  }
  draw_chart(canvas, 10, 36, 480, 374, "loss", "epoch", {train_loss, test_loss});
  draw_chart(canvas, 510, 36, 480, 374, "accuracy", "epoch", {train_acc, test_acc}, true);
  write_png(path, canvas.image());
}

// The first 64 test images, each with its predicted label (green when right, red when wrong) and,
// when wrong, the true label below.
void write_prediction_grid(const std::string& path, const data::LabeledImages& test,
                           const std::vector<int64_t>& predicted, const std::vector<std::string>& classes) {
  const int64_t count = std::min<int64_t>(64, test.images.shape()[0]);
  const int cols = 8, zoom = 3, size = static_cast<int>(test.images.shape()[2]) * zoom;
  const int cell_w = std::max(size, 90) + 10, cell_h = size + 34;
  const int rows = static_cast<int>((count + cols - 1) / cols);
  Canvas canvas(cols * cell_w + 10, rows * cell_h + 34);
  canvas.text(10, 8, "predicted (true when wrong) for the first test images", {40, 40, 40}, 2);
  const std::vector<int64_t> truth = test.labels.narrow(0, 0, count).to_vector();
  auto name = [&](int64_t k) {
    std::string s = k < static_cast<int64_t>(classes.size()) ? classes[static_cast<size_t>(k)] : std::to_string(k);
    return s.substr(0, 15);
  };
  for (int64_t i = 0; i < count; ++i) {
    const int x = 10 + static_cast<int>(i % cols) * cell_w, y = 34 + static_cast<int>(i / cols) * cell_h;
    const bool right = predicted[static_cast<size_t>(i)] == truth[static_cast<size_t>(i)];
    canvas.blit(image_from_tensor(test.images.select(0, i)), x, y, zoom);
    canvas.frame_rect(x - 2, y - 2, size + 4, size + 4, right ? Rgb{40, 160, 60} : Rgb{220, 30, 30}, 2);
    canvas.text(x, y + size + 5, name(predicted[static_cast<size_t>(i)]), right ? Rgb{30, 130, 50} : Rgb{210, 30, 30});
    if (!right) canvas.text(x, y + size + 16, fmt::format("({})", name(truth[static_cast<size_t>(i)])), {110, 110, 110});
  }
  write_png(path, canvas.image());
}

std::string resolve_data_dir(const Options& o, const ExampleSpec& spec) {
  if (!o.data.empty()) return o.data;
  for (const std::string& d : spec.default_data_dirs)
    if (fs::is_directory(d)) return d;
  throw IOError(fmt::format("no data set found (looked for {}); {}", fmt::join(spec.default_data_dirs, ", "),
                            spec.get_data_hint));
}

// Post-training static quantization of the trained model (ember::quant), calibrated on the
// first 1,000 training images: its test accuracy beside the float model's, and the file sizes.
void report_int8(nn::Module<float>& model, const data::LabeledImages& train, const data::LabeledImages& test,
                 const Normalization& norm, const std::string& out, const std::string& keep_float, int64_t channels,
                 int64_t size) {
  NoGradGuard no_grad;
  model.eval();
  const int64_t calibration = std::min<int64_t>(1000, train.images.shape()[0]);
  std::vector<Tensor<float>> batches;
  for (int64_t s = 0; s < calibration; s += 100)
    batches.push_back(to_input(train.images.narrow(0, s, std::min<int64_t>(100, calibration - s)), norm));
  const quant::QuantizedModel q = quant::quantize(model, batches, {.keep_float = split_names(keep_float)});
  const int64_t n = test.images.shape()[0];
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += 500) {
    const int64_t len = std::min<int64_t>(500, n - start);
    correct += count_correct(q(to_input(test.images.narrow(0, start, len), norm)), test.labels.narrow(0, start, len));
  }
  const std::string path = out + "/model-int8.safetensors";
  quant::save(q, path);
  std::printf("int8_test_accuracy=%.4f\n", static_cast<double>(correct) / static_cast<double>(n));
  std::printf("int8_calibration_images=%lld\n", static_cast<long long>(calibration));
  std::printf("model_bytes=%lld\nint8_model_bytes=%lld\n",
              static_cast<long long>(std::filesystem::file_size(out + "/model.safetensors")),
              static_cast<long long>(std::filesystem::file_size(path)));
  // The quantized model as an inference plan too (int8 steps; docs/deploy.md).
  try {
    deploy::save(deploy::compile(q, {1, channels, size, size}), out + "/model-int8.ember");
    std::printf("int8 plan: ember-run %s/model-int8.ember %s/sample.png --mean %s --std %s\n", out.c_str(), out.c_str(),
                join(norm.mean).c_str(), join(norm.std).c_str());
  } catch (const Error& e) {
    std::printf("no int8 inference plan: %s\n", e.what());
  }
}

// The trained model as an inference plan for one image (ember::deploy, docs/deploy.md), the first
// test image as a PNG, and the ember-run command that classifies it with the training's
// normalisation.
void export_plan(nn::Module<float>& model, int64_t channels, int64_t size, const data::LabeledImages& test,
                 const Normalization& norm, const std::string& out) {
  NoGradGuard no_grad;
  model.eval();
  try {
    deploy::save(deploy::compile(model, {1, channels, size, size}), out + "/model.ember");
  } catch (const Error& e) {
    std::printf("no inference plan: %s\n", e.what());
    return;
  }
  // And as ONNX, any batch size, for ONNX runtimes and viewers (docs/deploy.md).
  deploy::export_onnx(model, {1, channels, size, size}, out + "/model.onnx", {.dynamic_batch = true});
  write_png(out + "/sample.png", image_from_tensor(test.images.select(0, 0)));
  std::printf("onnx: %s/model.onnx\n", out.c_str());
  std::printf("plan: ember-run %s/model.ember %s/sample.png --mean %s --std %s\n", out.c_str(), out.c_str(),
              join(norm.mean).c_str(), join(norm.std).c_str());
}

int train(const Options& o, const ExampleSpec& spec) {
  const ModelChoice& choice = find_model(spec, o.model.empty() ? spec.models.front().name : o.model);
  Recipe r = choice.recipe;
  if (o.epochs) r.epochs = o.epochs;
  if (o.batch_size) r.batch_size = o.batch_size;
  if (o.lr > 0) r.lr = o.lr;
  if (!o.optimizer.empty()) r.optimizer = o.optimizer;
  if (!o.schedule.empty()) r.schedule = o.schedule;
  if (o.momentum >= 0) r.momentum = o.momentum;
  if (o.weight_decay >= 0) r.weight_decay = o.weight_decay;
  if (o.weight_decay < 0 && r.optimizer == "adamw" && choice.recipe.optimizer != "adamw") r.weight_decay = 1e-2;
  if (o.label_smoothing >= 0) r.label_smoothing = o.label_smoothing;

  const std::string dir = resolve_data_dir(o, spec);
  const data::LabeledImages train_set = as_nchw(spec.load(dir, true), o.limit_train);
  const data::LabeledImages test_set = as_nchw(spec.load(dir, false), o.limit_test);
  const std::vector<std::string> classes = spec.class_names(dir);
  const int64_t channels = train_set.images.shape()[1], size = train_set.images.shape()[2];
  if (test_set.images.shape()[1] != channels || test_set.images.shape()[2] != size)
    throw FormatError(fmt::format("{}: train images are {}x{}x{} but test images {}", dir, channels, size, size,
                                  test_set.images.shape().str()));
  const int64_t num_classes = static_cast<int64_t>(classes.size());
  const std::string out = o.out.empty() ? "out/" + data_set_name(dir) + "-" + choice.name : o.out;

  // Data-parallel: rank 0 prints and writes; every rank trains on its share of each batch.
  int64_t world = 1, rank = 0;
#ifdef EMBER_EXAMPLES_HAVE_MPI
  if (o.distributed) {
    world = distributed::world_size();
    rank = distributed::rank();
  }
#endif
  const bool lead = rank == 0;
  if (r.batch_size % world != 0)
    throw UsageError(fmt::format("--batch-size {} does not split evenly over {} ranks", r.batch_size, world));
  if (lead) fs::create_directories(out);

  manual_seed(o.seed);
  const std::shared_ptr<nn::Module<float>> model = choice.make(channels, size, num_classes);
#ifdef EMBER_EXAMPLES_HAVE_MPI
  std::unique_ptr<distributed::DistributedDataParallel<float>> ddp;
  if (o.distributed) {
    nn::convert_sync_batch_norm(*model);
    ddp = std::make_unique<distributed::DistributedDataParallel<float>>(*model);
  }
  auto forward = [&](const Tensor<float>& x) { return ddp ? (*ddp)(x) : (*model)(x); };
#else
  auto forward = [&](const Tensor<float>& x) { return (*model)(x); };
#endif
  int64_t param_count = 0;
  for (const auto& p : model->parameters()) param_count += p.numel();
  const Normalization norm = channel_statistics(train_set.images);

  std::vector<data::Transform> transforms;
  if (spec.crop_padding > 0) {
    transforms.push_back(data::RandomCrop{size, spec.crop_padding});
    transforms.push_back(data::RandomHorizontalFlip{});
  }
  transforms.push_back(data::Normalize{norm.mean, norm.std});
  auto dataset = std::make_shared<data::ImageDataset>(train_set, data::Compose{transforms});
  // The distributed sampler splits the single run's shuffled order among the ranks, so that the
  // ranks' batches together are the single run's batches.
  data::DataLoader<float, int64_t> loader(
      dataset, {.batch_size = r.batch_size / world,
                .shuffle = true,
                .seed = o.seed,
                .num_workers = static_cast<int>(o.workers),
                .sampler = o.distributed ? std::make_shared<data::DistributedSampler>(
                                               dataset->size(), data::DistributedSamplerOptions{.seed = o.seed})
                                         : nullptr});
  const int64_t batches = loader.batches_per_epoch();
  std::unique_ptr<optim::OptimizerBase> optimizer = make_optimizer(r, model->parameters());
  std::unique_ptr<optim::LRScheduler> schedule = make_schedule(r, *optimizer, r.epochs * batches);

  if (lead) {
    std::printf("%s: model %s (%lld parameters), data %s: %lld train / %lld test images %lldx%lldx%lld, %lld classes\n",
                spec.program.c_str(), choice.name.c_str(), static_cast<long long>(param_count), dir.c_str(),
                static_cast<long long>(train_set.images.shape()[0]), static_cast<long long>(test_set.images.shape()[0]),
                static_cast<long long>(channels), static_cast<long long>(size), static_cast<long long>(size),
                static_cast<long long>(num_classes));
    std::printf("%s: %s lr %g%s, batch %lld, %lld epochs, schedule %s, label smoothing %g, %d threads (%s), seed %llu\n",
                spec.program.c_str(), r.optimizer.c_str(), r.lr,
                r.weight_decay > 0 ? fmt::format(" weight decay {:g}", r.weight_decay).c_str() : "",
                static_cast<long long>(r.batch_size), static_cast<long long>(r.epochs), r.schedule.c_str(),
                r.label_smoothing, get_num_threads(), backend::isa_name(backend::kernels<float>().isa),
                static_cast<unsigned long long>(o.seed));
    if (o.distributed) {
      std::printf("%s: data-parallel over %lld ranks, batch %lld per rank, %d threads each\n", spec.program.c_str(),
                  static_cast<long long>(world), static_cast<long long>(r.batch_size / world), get_num_threads());
    }
    std::fflush(stdout);
  }

  const bool live = stdout_is_terminal();
  std::vector<EpochRow> rows;
  LossTrace trace;
  Evaluation last;
  double train_seconds = 0;
  const int64_t trace_every = std::max<int64_t>(1, batches / 20);
  for (int64_t epoch = 0; epoch < r.epochs; ++epoch) {
    model->train();
    loader.start_epoch(epoch);
    EpochProgress progress(epoch, r.epochs, batches, live, !lead, world);
    double stretch_loss = 0;
    int64_t stretch = 0, done = 0;
    while (auto batch = loader.next()) {
      const Tensor<float> logits = forward(batch->data);
      Tensor<float> loss = nn::functional::cross_entropy(logits, batch->target, {.label_smoothing = r.label_smoothing});
      if (o.adversarial_eps > 0) {
        // Goodfellow et al.'s objective, (1 - w) * clean loss + w * FGSM loss. The attack sees the
        // model as the test's attack does (eval mode: no dropout), so it trains against the
        // perturbations that will be measured; w = 0.3 rather than their 0.5 keeps the clean
        // accuracy within 2 points (docs/examples.md).
        model->eval();
        const Tensor<float> adv = fgsm_normalized(*model, norm, batch->data, batch->target, o.adversarial_eps);
        model->train();
        const auto w = static_cast<float>(o.adversarial_weight);
        loss = loss * (1 - w) + nn::functional::cross_entropy((*model)(adv), batch->target,
                                                              {.label_smoothing = r.label_smoothing}) * w;
      }
      optimizer->zero_grad();
      loss.backward();
      optimizer->step();
      if (schedule) schedule->step();
      const int64_t correct = count_correct(logits, batch->target);
      const double loss_value = loss.item();
      if (!std::isfinite(loss_value))
        throw ValueError(fmt::format("the training loss became {} at epoch {} batch {}; try a smaller --lr",
                                     loss_value, epoch + 1, done + 1));
      progress.update(batch->target.numel(), loss_value, correct);
      stretch_loss += loss_value;
      ++stretch;
      ++done;
      if (stretch == trace_every || done == batches) {
        trace.x.push_back(static_cast<double>(epoch) + static_cast<double>(done) / static_cast<double>(batches));
        trace.y.push_back(stretch_loss / static_cast<double>(stretch));
        stretch_loss = 0;
        stretch = 0;
      }
    }
    const double seconds = progress.finish();
    train_seconds += seconds;
    double train_loss = progress.mean_loss(), train_accuracy = progress.accuracy();
#ifdef EMBER_EXAMPLES_HAVE_MPI
    if (o.distributed) {
      // The ranks' shares are equal, so the epoch's figures are the means of theirs.
      Tensor<double> figures = tensor<double>({train_loss, train_accuracy}, {2});
      distributed::all_reduce(figures, distributed::ReduceOp::Avg);
      train_loss = figures.to_vector()[0];
      train_accuracy = figures.to_vector()[1];
    }
#endif
    if (!lead) continue;  // the test set is evaluated once, by rank 0
    last = evaluate(*model, test_set, norm);
    rows.push_back({epoch + 1, train_loss, train_accuracy, last.loss, last.accuracy, seconds, optimizer->lr(0)});
    std::printf("epoch %lld/%lld: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.1f s, %.0f samples/s\n",
                static_cast<long long>(epoch + 1), static_cast<long long>(r.epochs), train_loss,
                100 * train_accuracy, last.loss, 100 * last.accuracy, seconds,
                static_cast<double>(train_set.images.shape()[0]) / seconds);
    std::fflush(stdout);
    write_metrics(out + "/metrics.csv", rows);
  }
  if (!lead) return 0;

  const std::map<std::string, std::string> metadata = {
      {"ember.program", spec.program},
      {"ember.model", choice.name},
      {"ember.input", fmt::format("{},{},{}", channels, size, size)},
      {"ember.mean", join(norm.mean)},
      {"ember.std", join(norm.std)},
      {"ember.classes", fmt::format("{}", fmt::join(classes, ","))},
      {"ember.test_accuracy", fmt::format("{:.4f}", last.accuracy)}};
  io::write_safetensors(out + "/model.safetensors", model->state_dict(), metadata);
  write_curves(out + "/curves.png", fmt::format("{} {} on {}", spec.program, choice.name, data_set_name(dir)), trace,
               rows);
  write_prediction_grid(out + "/predictions.png", test_set, last.predictions, classes);
  {
    std::string csv = "index,label,predicted\n";
    const std::vector<int64_t> truth = test_set.labels.to_vector();
    for (size_t i = 0; i < last.predictions.size(); ++i)
      csv += fmt::format("{},{},{}\n", i, truth[i], last.predictions[i]);
    io::write_file_atomically(out + "/test_predictions.csv", std::vector<uint8_t>(csv.begin(), csv.end()));
  }
  export_plan(*model, channels, size, test_set, norm, out);
  std::printf("test_accuracy=%.4f\n", last.accuracy);
  std::printf("fgsm_accuracy_eps_0.1=%.4f\n", fgsm_accuracy(*model, test_set, norm, 0.1));
  std::printf("train_time_s=%.1f\n", train_seconds);
  if (o.quantize) report_int8(*model, train_set, test_set, norm, out, o.keep_float, channels, size);
  std::printf("wrote %s/model.safetensors (loads in PyTorch), model.ember (the inference plan), sample.png, "
              "metrics.csv, curves.png, predictions.png, test_predictions.csv\n",
              out.c_str());
  return 0;
}

int predict(const Options& o, const ExampleSpec& spec) {
  const std::string weights = !o.weights.empty() ? o.weights
                              : !o.out.empty()    ? o.out + "/model.safetensors"
                                                  : throw UsageError("--predict needs --weights FILE (or --out DIR)");
  const SavedClassifier saved = load_classifier(weights, spec);
  const std::shared_ptr<nn::Module<float>>& model = saved.model;
  const Normalization& norm = saved.norm;
  const std::vector<std::string>& classes = saved.classes;
  const int64_t channels = saved.channels, size = saved.size;

  Image img = read_png(o.predict, static_cast<int>(channels));
  if (img.width != size || img.height != size) img = resize(img, static_cast<int>(size), static_cast<int>(size));
  if (o.invert)
    for (uint8_t& v : img.pixels) v = static_cast<uint8_t>(255 - v);
  std::vector<uint8_t> chw(img.pixels.size());
  for (int64_t ch = 0; ch < channels; ++ch)
    for (int64_t k = 0; k < size * size; ++k)
      chw[static_cast<size_t>(ch * size * size + k)] = img.pixels[static_cast<size_t>(k * channels + ch)];
  NoGradGuard no_grad;
  const Tensor<float> probs = softmax((*model)(to_input(tensor<uint8_t>(chw, {1, channels, size, size}), norm)), 1);
  std::vector<float> p = probs.to_vector();
  std::vector<size_t> order(p.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  for (size_t k = 0; k < std::min<size_t>(3, order.size()); ++k)
    std::printf("  %-16s %6.2f%%\n", classes[order[k]].c_str(), 100.0 * p[order[k]]);
  std::printf("prediction=%zu\n", order[0]);
  std::printf("class=%s\n", classes[order[0]].c_str());
  return 0;
}

}  // namespace

Normalization channel_statistics(const Tensor<uint8_t>& images) {
  const int64_t n = images.shape()[0], c = images.shape()[1], plane = images.shape()[2] * images.shape()[3];
  const uint8_t* p = images.data();
  Normalization out;
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* q = p + (i * c + ch) * plane;
      uint64_t s = 0, s2 = 0;
      for (int64_t k = 0; k < plane; ++k) {
        s += q[k];
        s2 += static_cast<uint64_t>(q[k]) * q[k];
      }
      sum += static_cast<double>(s);
      sum_sq += static_cast<double>(s2);
    }
    const double count = static_cast<double>(n * plane);
    const double mean = sum / count / 255.0;
    const double var = std::max(sum_sq / count / (255.0 * 255.0) - mean * mean, 1e-12);
    out.mean.push_back(mean);
    out.std.push_back(std::sqrt(var));
  }
  return out;
}

// uint8 images [N, C, H, W] to the network's input: (x / 255 - mean[c]) / std[c].
Tensor<float> to_input(const Tensor<uint8_t>& images, const Normalization& norm) {
  const int64_t c = images.shape()[1];
  std::vector<float> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
  for (int64_t ch = 0; ch < c; ++ch) {
    scale[static_cast<size_t>(ch)] = static_cast<float>(1.0 / (255.0 * norm.std[static_cast<size_t>(ch)]));
    shift[static_cast<size_t>(ch)] = static_cast<float>(-norm.mean[static_cast<size_t>(ch)] / norm.std[static_cast<size_t>(ch)]);
  }
  return images.to<float>() * tensor<float>(scale, {1, c, 1, 1}) + tensor<float>(shift, {1, c, 1, 1});
}

SavedClassifier load_classifier(const std::string& weights, const ExampleSpec& spec) {
  const io::SafetensorsFile file = io::read_safetensors(weights);
  auto meta = [&](const std::string& key) {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end())
      throw FormatError(fmt::format("{}: no '{}' metadata; expected a model saved by {}", weights, key, spec.program));
    return it->second;
  };
  if (meta("ember.program") != spec.program)
    throw FormatError(fmt::format("{}: saved by {}, not {}", weights, meta("ember.program"), spec.program));
  SavedClassifier out;
  out.model_name = meta("ember.model");
  const ModelChoice& choice = find_model(spec, out.model_name);
  const std::vector<double> input = split_numbers(meta("ember.input"));
  out.norm = Normalization{split_numbers(meta("ember.mean")), split_numbers(meta("ember.std"))};
  out.classes = split_names(meta("ember.classes"));
  if (input.size() != 3 || out.norm.mean.size() != static_cast<size_t>(input[0]) ||
      out.norm.std.size() != out.norm.mean.size())
    throw FormatError(fmt::format("{}: inconsistent input metadata", weights));
  out.channels = static_cast<int64_t>(input[0]);
  out.size = static_cast<int64_t>(input[1]);
  out.model = choice.make(out.channels, out.size, static_cast<int64_t>(out.classes.size()));
  out.model->load_state_dict(file.tensors, true);
  out.model->eval();
  return out;
}

// A rank of a data-parallel run: an error on one rank is printed and then leaves the
// Environment's scope, which aborts the whole job (the other ranks would wait for this one).
int train_distributed(int argc, char** argv, const Options& o, const ExampleSpec& spec) {
#ifdef EMBER_EXAMPLES_HAVE_MPI
  if (!o.predict.empty()) throw UsageError("--distributed trains; --predict runs in one process");
  distributed::Environment env(argc, argv);
  if (o.threads == 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    set_num_threads(std::max(1, cores / distributed::local_world_size()));
  }
  try {
    return train(o, spec);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: rank %d: error: %s\n", spec.program.c_str(), distributed::rank(), e.what());
    throw;
  }
#else
  (void)argc;
  (void)argv;
  (void)o;
  throw UsageError(fmt::format("--distributed: {} was built without MPI (EMBER_WITH_MPI=OFF)", spec.program));
#endif
}

int run_classifier_example(int argc, char** argv, const ExampleSpec& spec) {
  try {
    const Options o = parse_flags(argc, argv, spec);
    if (o.threads > 0) set_num_threads(static_cast<int>(o.threads));
    if (o.distributed) return train_distributed(argc, argv, o, spec);
    return o.predict.empty() ? train(o, spec) : predict(o, spec);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", spec.program.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", spec.program.c_str(), e.what());
    return 1;
  }
}

}  // namespace ember::examples
