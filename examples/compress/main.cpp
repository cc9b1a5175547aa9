// ember-compress: a network taken through the lightweight-model techniques, each stage measured
// the same way. A teacher CNN (ember-mnist's) is trained (or loaded), then:
//   student_labels  a CNN with a quarter of the teacher's parameters, trained on the labels;
//   student_kd      the same student trained on the teacher's softened outputs as well
//                   (nn::functional::distillation_loss, Hinton et al. 2015);
//   pruned_90       the teacher with 90% of its weights pruned (prune::global_unstructured over
//                   every convolution and linear layer), fine-tuned, the masks made permanent;
//   channels_50     the teacher with half of its channels and hidden units removed
//                   (prune::shrink), fine-tuned;
//   int8            the teacher quantized to int8 (quant::quantize, 1,000 calibration images).
// Prints a table (parameters, non-zero parameters, file size, test accuracy, latency per image at
// batch 1 and per batch of 64), writes compress.csv and compress.png, and ends with one line per
// stage: stage=NAME accuracy=A size_bytes=N latency_ms_b1=X latency_ms_b64=Y.
//
//   ember-compress --data data/fashion-mnist --epochs 3 --out out/compress
//   ember-compress --teacher out/fashion-mnist-cnn/model.safetensors
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <numeric>
#include <optional>
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
using Model = std::shared_ptr<nn::Module<float>>;

constexpr const char* kProgram = "ember-compress";

struct Options {
  std::string data, out = "out/compress", teacher;
  int64_t epochs = 3;  // every training stage
  int64_t shift = 2;   // random translation of the students' training images, in pixels (0: none)
  int64_t train_limit = 0, test_limit = 0;
  int64_t threads = 0;
  uint64_t seed = 1;
  double temperature = 4.0, alpha = 0.9;
};

const char* kUsage =
    "usage: ember-compress [--data DIR] [--out DIR] [--epochs N] [--teacher model.safetensors]\n"
    "                      [--temperature 4] [--alpha 0.9] [--shift 2] [--train-limit N]\n"
    "                      [--test-limit N] [--threads N] [--seed N]\n"
    "Trains ember-mnist's CNN on --data (or loads --teacher, a model ember-mnist saved), then a\n"
    "student a quarter of its size on the labels and by distillation, prunes the teacher to 90%\n"
    "sparsity and to half of its channels (each fine-tuned), and quantizes it to int8. Writes each\n"
    "stage's model, compress.csv and compress.png to --out. The students see each training image\n"
    "shifted by up to --shift pixels, both the same shifts.\n";

Options parse_flags(int argc, char** argv) {
  Options o;
  ex::for_each_flag(argc, argv, kUsage, [&](const std::string& flag, const std::string& v) {
    if (flag == "--data") o.data = v;
    else if (flag == "--out") o.out = v;
    else if (flag == "--teacher") o.teacher = v;
    else if (flag == "--epochs") o.epochs = ex::integer_flag(flag, v, 1);
    else if (flag == "--shift") o.shift = ex::integer_flag(flag, v, 0);
    else if (flag == "--train-limit") o.train_limit = ex::integer_flag(flag, v, 1);
    else if (flag == "--test-limit") o.test_limit = ex::integer_flag(flag, v, 1);
    else if (flag == "--threads") o.threads = ex::integer_flag(flag, v, 1);
    else if (flag == "--seed") o.seed = static_cast<uint64_t>(ex::integer_flag(flag, v, 0));
    else if (flag == "--temperature" || flag == "--alpha") {
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(d > 0) || (flag == "--alpha" && d > 1)) {
        throw ex::UsageError(fmt::format("{}: '{}' is not a number in range", flag, v));
      }
      (flag == "--alpha" ? o.alpha : o.temperature) = d;
    } else {
      throw ex::UsageError("unknown flag '" + flag + "'");
    }
  });
  return o;
}

struct Data {
  Tensor<uint8_t> images;  // [N, 1, 28, 28]
  Tensor<int64_t> labels;
  int64_t size() const { return images.shape()[0]; }
};

Data load(const std::string& dir, bool train, int64_t limit) {
  ember::data::LabeledImages d = ember::data::load_mnist(dir, train);
  Data out{d.images.dim() == 3 ? d.images.unsqueeze(1) : d.images, d.labels};
  if (limit > 0 && limit < out.size()) {
    out.images = out.images.narrow(0, 0, limit);
    out.labels = out.labels.narrow(0, 0, limit);
  }
  out.images = out.images.contiguous();
  out.labels = out.labels.contiguous();
  return out;
}

// Under a quarter of the teacher's parameters: the same two conv stages at half the width and a
// 48-unit hidden layer (80,650 parameters against 421,738, 19%). Large enough to learn what the
// soft targets say beyond the labels: a student of a quarter of this width (26,722) gained
// nothing from distillation (docs/examples.md).
Model make_student() {
  return std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 16, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(16), nn::ReLU(), nn::MaxPool2d(2),
      nn::Conv2d(16, 32, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(32), nn::ReLU(), nn::MaxPool2d(2),
      nn::Flatten(), nn::Linear(32 * 7 * 7, 48), nn::ReLU(), nn::Linear(48, 10));
}

// The images of `index`, each moved by up to `shift` pixels in both directions (zeros fill in):
// the augmentation that gives a teacher something to say about images it has not seen, the
// patient, consistent teaching of Beyer et al. 2022 (the teacher labels the student's view).
Tensor<uint8_t> shifted_batch(const Tensor<uint8_t>& images, const Tensor<int64_t>& index, int64_t shift,
                              ember::Generator& rng) {
  const Tensor<uint8_t> batch = images.index_select(0, index).contiguous();
  if (shift == 0) return batch;
  const int64_t n = batch.shape()[0], h = batch.shape()[2], w = batch.shape()[3];
  std::vector<uint8_t> out(static_cast<size_t>(batch.numel()), 0);
  const uint8_t* in = batch.data_ptr();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t dy = static_cast<int64_t>(rng.below(static_cast<uint64_t>(2 * shift + 1))) - shift;
    const int64_t dx = static_cast<int64_t>(rng.below(static_cast<uint64_t>(2 * shift + 1))) - shift;
    for (int64_t y = std::max<int64_t>(0, dy); y < std::min(h, h + dy); ++y)
      for (int64_t x = std::max<int64_t>(0, dx); x < std::min(w, w + dx); ++x)
        out[static_cast<size_t>((i * h + y) * w + x)] = in[(i * h + y - dy) * w + x - dx];
  }
  return ember::tensor<uint8_t>(std::move(out), batch.shape());
}

// Epochs of Adam with a cosine schedule; with a teacher, the distillation loss on its outputs.
void fit(nn::Module<float>& model, const Data& train, const ex::Normalization& norm, int64_t epochs, double lr,
         nn::Module<float>* teacher, const Options& o, const std::string& stage, int64_t shift = 0) {
  constexpr int64_t kBatch = 64;
  ember::Generator rng(o.seed);
  ember::optim::Adam adam(model.parameters(), {.lr = lr});
  const int64_t n = train.size(), per_epoch = (n + kBatch - 1) / kBatch;
  ember::optim::CosineAnnealingLR schedule(adam, epochs * per_epoch);
  if (teacher != nullptr) teacher->eval();
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    model.train();
    ex::EpochProgress progress(epoch, epochs, per_epoch, ex::stdout_is_terminal());
    const std::vector<int64_t> order = ember::randperm(n, &rng).to_vector();
    for (int64_t b = 0; b < per_epoch; ++b) {
      const int64_t start = b * kBatch, len = std::min(kBatch, n - start);
      const Tensor<int64_t> index = ember::tensor<int64_t>(
          std::vector<int64_t>(order.begin() + start, order.begin() + start + len), {len});
      const Tensor<float> x = ex::to_input(shifted_batch(train.images, index, shift, rng), norm);
      const Tensor<int64_t> y = train.labels.index_select(0, index);
      const Tensor<float> logits = model(x);
      Tensor<float> loss;
      if (teacher != nullptr) {
        Tensor<float> soft;
        {
          ember::NoGradGuard no_grad;
          soft = (*teacher)(x);
        }
        loss = nn::functional::distillation_loss(logits, soft, y, {.temperature = o.temperature, .alpha = o.alpha});
      } else {
        loss = nn::functional::cross_entropy(logits, y);
      }
      adam.zero_grad();
      loss.backward();
      adam.step();
      schedule.step();
      ember::NoGradGuard no_grad;
      progress.update(len, static_cast<double>(loss.item<float>()), logits.argmax(1).eq(y).sum().item());
    }
    const double seconds = progress.finish();
    std::printf("%s: epoch %lld/%lld, train loss %.4f, %.1f s\n", stage.c_str(), static_cast<long long>(epoch + 1),
                static_cast<long long>(epochs), progress.mean_loss(), seconds);
  }
  model.eval();
}

using Forward = std::function<Tensor<float>(const Tensor<float>&)>;

double accuracy(const Forward& f, const Data& test, const ex::Normalization& norm) {
  ember::NoGradGuard no_grad;
  int64_t correct = 0;
  for (int64_t start = 0; start < test.size(); start += 500) {
    const int64_t len = std::min<int64_t>(500, test.size() - start);
    correct += f(ex::to_input(test.images.narrow(0, start, len), norm)).argmax(1).eq(test.labels.narrow(0, start, len)).sum().item();
  }
  return static_cast<double>(correct) / static_cast<double>(test.size());
}

// Milliseconds per call on a batch of `batch` test images: the median of enough repeats.
double latency_ms(const Forward& f, const Data& test, const ex::Normalization& norm, int64_t batch) {
  ember::NoGradGuard no_grad;
  const Tensor<float> x = ex::to_input(test.images.narrow(0, 0, std::min(batch, test.size())), norm);
  (void)f(x);
  std::vector<double> times;
  const int repeats = batch == 1 ? 101 : 15;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    (void)f(x);
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(times.begin(), times.begin() + repeats / 2, times.end());
  return times[static_cast<size_t>(repeats / 2)];
}

struct Row {
  std::string stage;
  int64_t parameters = 0, nonzero = 0, size_bytes = 0;
  double accuracy = 0, ms_b1 = 0, ms_b64 = 0;
};

std::pair<int64_t, int64_t> count_parameters(const nn::Module<float>& m) {
  int64_t all = 0, nonzero = 0;
  for (const Tensor<float>& p : m.parameters()) {
    all += p.numel();
    nonzero += p.ne(0.0f).sum().item();
  }
  return {all, nonzero};
}

Row measure(const std::string& stage, const nn::Module<float>& m, const Forward& f, const std::string& file,
            const Data& test, const ex::Normalization& norm) {
  Row r;
  r.stage = stage;
  std::tie(r.parameters, r.nonzero) = count_parameters(m);
  r.size_bytes = static_cast<int64_t>(fs::file_size(file));
  r.accuracy = accuracy(f, test, norm);
  r.ms_b1 = latency_ms(f, test, norm, 1);
  r.ms_b64 = latency_ms(f, test, norm, 64);
  std::printf("%s: test accuracy %.2f%%\n", stage.c_str(), 100.0 * r.accuracy);
  return r;
}

Forward forward_of(nn::Module<float>& m) {
  return [&m](const Tensor<float>& x) { return m(x); };
}

// Two panels of bars, one per stage: test accuracy and file size.
void write_chart(const std::string& path, const std::vector<Row>& rows) {
  const int bar = 56, gap = 18, left = 60, top = 40, height = 220;
  const int panel = static_cast<int>(rows.size()) * (bar + gap) + gap;
  ex::Canvas canvas(left + 2 * panel + 3 * left / 2, top + height + 90);
  const ex::Rgb colors[] = {{60, 110, 180}, {230, 140, 40}, {60, 160, 80}, {200, 60, 60}, {140, 90, 180}, {120, 120, 120}};
  double max_size = 1;
  for (const Row& r : rows) max_size = std::max(max_size, static_cast<double>(r.size_bytes));
  for (int p = 0; p < 2; ++p) {
    const int x0 = left + p * (panel + left);
    canvas.text(x0, 10, p == 0 ? "TEST ACCURACY (%)" : "FILE SIZE (KB)", {0, 0, 0}, 2);
    canvas.line(x0, top + height, x0 + panel, top + height, {0, 0, 0});
    for (size_t i = 0; i < rows.size(); ++i) {
      const double v = p == 0 ? rows[i].accuracy : static_cast<double>(rows[i].size_bytes) / max_size;
      const int h = static_cast<int>(v * height);
      const int x = x0 + gap + static_cast<int>(i) * (bar + gap);
      canvas.fill_rect(x, top + height - h, bar, h, colors[i % 6]);
      const std::string label = p == 0 ? fmt::format("{:.1f}", 100.0 * rows[i].accuracy)
                                       : fmt::format("{}", rows[i].size_bytes / 1024);
      canvas.text(x, top + height - h - 12, label, {0, 0, 0});
      canvas.text(x, top + height + 8 + (static_cast<int>(i) % 2) * 14, rows[i].stage, {0, 0, 0});
    }
  }
  ex::write_png(path, canvas.image());
}

int run(const Options& o) {
  if (o.threads > 0) ember::set_num_threads(static_cast<int>(o.threads));
  ember::manual_seed(o.seed);
  fs::create_directories(o.out);
  const ex::ExampleSpec spec = ex::mnist_spec();
  std::string dir = o.data;
  for (const std::string& d : spec.default_data_dirs)
    if (dir.empty() && fs::is_directory(d)) dir = d;
  if (dir.empty()) throw ember::IOError("no data set found: pass --data DIR (" + spec.get_data_hint + ")");
  const Data train = load(dir, true, o.train_limit), test = load(dir, false, o.test_limit);
  ex::Normalization norm = ex::channel_statistics(train.images);
  std::printf("data: %s, %lld training and %lld test images\n", dir.c_str(), static_cast<long long>(train.size()),
              static_cast<long long>(test.size()));
  std::vector<Row> rows;

  // Teacher: trained here, or ember-mnist's saved cnn.
  Model teacher;
  if (!o.teacher.empty()) {
    ex::SavedClassifier saved = ex::load_classifier(o.teacher, spec);
    if (saved.model_name != "cnn") {
      throw ember::ValueError(fmt::format("--teacher {}: a '{}' model; ember-compress takes ember-mnist's cnn", o.teacher,
                                          saved.model_name));
    }
    teacher = saved.model;
    norm = saved.norm;  // the input scaling it was trained with, for every stage
  } else {
    teacher = ex::make_mnist_cnn(1, 28, 10);
    fit(*teacher, train, norm, o.epochs, 2e-3, nullptr, o, "teacher");
  }
  teacher->eval();
  const std::string teacher_file = o.out + "/teacher.safetensors";
  ember::save(*teacher, teacher_file);
  rows.push_back(measure("teacher", *teacher, forward_of(*teacher), teacher_file, test, norm));

  // Students: on the labels alone, and distilled from the teacher, the same epochs and seed.
  for (const bool distilled : {false, true}) {
    ember::manual_seed(o.seed + 1);
    Model student = make_student();
    const std::string name = distilled ? "student_kd" : "student_labels";
    fit(*student, train, norm, o.epochs, 2e-3, distilled ? teacher.get() : nullptr, o, name, o.shift);
    const std::string file = o.out + "/" + name + ".safetensors";
    ember::save(*student, file);
    rows.push_back(measure(name, *student, forward_of(*student), file, test, norm));
  }

  // 90% of the teacher's weights pruned at once (global magnitude), fine-tuned with the masks.
  {
    Model pruned = ex::make_mnist_cnn(1, 28, 10);
    pruned->load_state_dict(teacher->state_dict());
    std::vector<std::pair<nn::Module<float>*, std::string>> weights;
    for (auto& [path, m] : pruned->named_modules()) {
      if (m->type_name() == "Conv2d" || m->type_name() == "Linear") weights.emplace_back(m, "weight");
    }
    ember::prune::global_unstructured(weights, 0.9);
    fit(*pruned, train, norm, o.epochs, 5e-4, nullptr, o, "pruned_90");
    for (auto& [m, name] : weights) ember::prune::remove(*m, name);
    // Saved without its zeros (Note [Sparse files]); run with its sparse enough Linear layers as
    // SparseLinear (the convolutions stay dense).
    const std::string file = o.out + "/pruned_90.safetensors";
    ember::prune::save_sparse(*pruned, file);
    const auto [parameters, nonzero] = count_parameters(*pruned);
    const ember::prune::SparsifyReport sparse = ember::prune::sparsify(*pruned);
    std::printf("pruned_90:\n%s", sparse.str().c_str());
    Row r = measure("pruned_90", *pruned, forward_of(*pruned), file, test, norm);
    r.parameters = parameters;
    r.nonzero = nonzero;
    rows.push_back(r);
  }

  // Half of the teacher's channels and hidden units removed, fine-tuned.
  {
    Model shrunk = ex::make_mnist_cnn(1, 28, 10);
    shrunk->load_state_dict(teacher->state_dict());
    shrunk->eval();
    const ember::prune::ShrinkReport report = ember::prune::shrink(*shrunk, {.amount = 0.5});
    std::printf("channels_50:\n%s", report.str().c_str());
    fit(*shrunk, train, norm, o.epochs, 5e-4, nullptr, o, "channels_50");
    const std::string file = o.out + "/channels_50.safetensors";
    ember::save(*shrunk, file);
    rows.push_back(measure("channels_50", *shrunk, forward_of(*shrunk), file, test, norm));
  }

  // The teacher in int8, calibrated on the first 1,000 training images.
  {
    std::vector<Tensor<float>> calibration;
    const int64_t count = std::min<int64_t>(1000, train.size());
    for (int64_t s = 0; s < count; s += 100) {
      calibration.push_back(ex::to_input(train.images.narrow(0, s, std::min<int64_t>(100, count - s)), norm));
    }
    const ember::quant::QuantizedModel q = ember::quant::quantize(*teacher, calibration);
    const std::string file = o.out + "/int8.safetensors";
    ember::quant::save(q, file);
    Row r = measure("int8", *teacher, [&q](const Tensor<float>& x) { return q(x); }, file, test, norm);
    r.nonzero = r.parameters;  // the int8 weights, one byte each
    rows.push_back(r);
  }

  std::printf("\n%-15s %11s %11s %11s %9s %12s %13s\n", "stage", "parameters", "non-zero", "size_bytes", "accuracy",
              "ms/image b1", "ms/batch b64");
  std::string csv = "stage,parameters,nonzero_parameters,size_bytes,accuracy,latency_ms_b1,latency_ms_b64\n";
  for (const Row& r : rows) {
    std::printf("%-15s %11lld %11lld %11lld %8.2f%% %12.3f %13.3f\n", r.stage.c_str(), static_cast<long long>(r.parameters),
                static_cast<long long>(r.nonzero), static_cast<long long>(r.size_bytes), 100.0 * r.accuracy, r.ms_b1,
                r.ms_b64);
    csv += fmt::format("{},{},{},{},{:.4f},{:.4f},{:.4f}\n", r.stage, r.parameters, r.nonzero, r.size_bytes, r.accuracy,
                       r.ms_b1, r.ms_b64);
  }
  ember::io::write_file_atomically(o.out + "/compress.csv", std::vector<uint8_t>(csv.begin(), csv.end()));
  write_chart(o.out + "/compress.png", rows);
  std::printf("\n");
  for (const Row& r : rows) {
    std::printf("stage=%s accuracy=%.4f size_bytes=%lld latency_ms_b1=%.4f latency_ms_b64=%.4f\n", r.stage.c_str(),
                r.accuracy, static_cast<long long>(r.size_bytes), r.ms_b1, r.ms_b64);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ex::run_program(kProgram, [&] { return run(parse_flags(argc, argv)); });
}
