// ember-transfer: transfer and few-shot learning side by side. A CNN is pretrained on half of the
// classes of Fashion-MNIST (or loaded), then the other half is learned from k labelled examples
// per class, four ways: training from scratch, a linear probe on the frozen features, full
// fine-tuning with a lower learning rate for the body, and prototypes (the nearest class mean of
// the embeddings, no training). Prints a table, writes transfer.csv and transfer.png. With
// --target-data the backbone trained on Fashion-MNIST learns MNIST's digits instead.
//
//   scripts/get-data.sh fashion-mnist
//   ember-transfer --data data/fashion-mnist --out out/transfer
//   ember-transfer --data data/fashion-mnist --target-data data/mnist --out out/transfer-mnist
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <numeric>
#include <string>
#include <vector>

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

constexpr const char* kProgram = "ember-transfer";
constexpr const char* kHead = "13";  // make_mnist_cnn's last Linear
constexpr int64_t kFeatures = 128;   // its input: the embedding

struct Options {
  std::string data, target_data, out = "out/transfer", backbone;
  int64_t epochs = 5;             // pretraining
  int64_t tune_epochs = 3;        // each method on the k-shot set (at least min_steps steps)
  int64_t min_steps = 150;
  int64_t draws = 5;
  double lr = 1e-3;       // scratch, the linear probe's and fine-tuning's new head
  double body_lr = 3e-4;  // fine-tuning's pretrained body: a third of the head's
  int64_t threads = 0;
  uint64_t seed = 1;
  std::vector<int64_t> shots = {1, 5, 10, 50, 0};  // 0: all
  // Fashion-MNIST's T-shirt/top, Pullover, Sandal, Sneaker, Bag: the backbone sees tops, footwear
  // and a bag; the new task (Trouser, Dress, Coat, Shirt, Ankle boot) is related but unseen.
  std::vector<int64_t> pretrain_classes = {0, 2, 5, 7, 8};
};

const char* kUsage =
    "usage: ember-transfer [--data DIR] [--out DIR] [--epochs N] [--backbone FILE] [--target-data DIR]\n"
    "                      [--shots 1,5,10,50,all] [--draws N] [--tune-epochs N] [--min-steps N]\n"
    "                      [--pretrain-classes 0,2,5,7,8] [--lr 1e-3] [--body-lr 3e-4] [--threads N]\n"
    "                      [--seed N]\n"
    "Pretrains ember-mnist's CNN on half of the classes of --data (--pretrain-classes, or loads\n"
    "--backbone), then learns the other half (or every class of --target-data) from k examples per\n"
    "class four ways: scratch, linear_probe, fine_tune, prototypes. Writes backbone.safetensors,\n"
    "transfer.csv and transfer.png to --out.\n";

std::vector<int64_t> parse_list(const std::string& flag, const std::string& v, bool allow_all) {
  std::vector<int64_t> out;
  size_t at = 0;
  while (at <= v.size()) {
    const size_t comma = std::min(v.find(',', at), v.size());
    const std::string item = v.substr(at, comma - at);
    if (allow_all && item == "all") {
      out.push_back(0);
    } else {
      try {
        size_t used = 0;
        const long long k = std::stoll(item, &used);
        if (used != item.size() || k < (allow_all ? 1 : 0) || (!allow_all && k > 9)) throw std::invalid_argument(item);
        out.push_back(k);
      } catch (const std::exception&) {
        throw ex::UsageError(fmt::format("{} expects {}, comma-separated; got '{}'", flag,
                                     allow_all ? "positive integers or 'all'" : "class indices 0-9", item));
      }
    }
    at = comma + 1;
  }
  return out;
}

Options parse_flags(int argc, char** argv) {
  Options o;
  auto integer = ex::integer_flag;
  auto number = [](const std::string& flag, const std::string& v) {
    try {
      size_t used = 0;
      const double x = std::stod(v, &used);
      if (used == v.size() && x > 0 && std::isfinite(x)) return x;
    } catch (const std::exception&) {
    }
    throw ex::UsageError(fmt::format("{} expects a positive number, got '{}'", flag, v));
  };
  ex::for_each_flag(argc, argv, kUsage, [&](const std::string& flag, const std::string& v) {
    if (flag == "--data") o.data = v;
    else if (flag == "--target-data") o.target_data = v;
    else if (flag == "--out") o.out = v;
    else if (flag == "--backbone") o.backbone = v;
    else if (flag == "--epochs") o.epochs = integer(flag, v, 1);
    else if (flag == "--tune-epochs") o.tune_epochs = integer(flag, v, 1);
    else if (flag == "--min-steps") o.min_steps = integer(flag, v, 1);
    else if (flag == "--draws") o.draws = integer(flag, v, 1);
    else if (flag == "--lr") o.lr = number(flag, v);
    else if (flag == "--body-lr") o.body_lr = number(flag, v);
    else if (flag == "--threads") o.threads = integer(flag, v, 1);
    else if (flag == "--seed") o.seed = static_cast<uint64_t>(integer(flag, v, 0));
    else if (flag == "--shots") o.shots = parse_list(flag, v, true);
    else if (flag == "--pretrain-classes") o.pretrain_classes = parse_list(flag, v, false);
    else throw ex::UsageError(fmt::format("unknown flag {}", flag));
  });
  if (o.data.empty()) {
    for (const char* dir : {"data/fashion-mnist", "data/mnist"})
      if (fs::exists(dir)) o.data = dir;
    if (o.data.empty()) throw ex::UsageError("no data: run scripts/get-data.sh fashion-mnist, or pass --data DIR");
  }
  return o;
}

// ---- Data -----------------------------------------------------------------------------------------

// Images [N, 1, 28, 28] with labels 0..classes-1.
struct Split {
  Tensor<uint8_t> images;
  std::vector<int64_t> labels;
  int64_t classes = 0;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

// The images of `keep` (in that order, relabelled 0, 1, ...).
Split select_classes(const ember::data::LabeledImages& d, const std::vector<int64_t>& keep) {
  const std::vector<int64_t> labels = d.labels.to_vector();
  std::vector<int64_t> index;
  Split s;
  for (size_t i = 0; i < labels.size(); ++i) {
    const auto it = std::find(keep.begin(), keep.end(), labels[i]);
    if (it == keep.end()) continue;
    index.push_back(static_cast<int64_t>(i));
    s.labels.push_back(it - keep.begin());
  }
  s.images = d.images.reshape({-1, 1, 28, 28}).index_select(0, ember::tensor<int64_t>(index, {static_cast<int64_t>(index.size())}));
  s.classes = static_cast<int64_t>(keep.size());
  return s;
}

Split subset(const Split& s, const std::vector<int64_t>& index) {
  Split out;
  out.images = s.images.index_select(0, ember::tensor<int64_t>(index, {static_cast<int64_t>(index.size())}));
  for (int64_t i : index) out.labels.push_back(s.labels[static_cast<size_t>(i)]);
  out.classes = s.classes;
  return out;
}

// k random examples of every class (all of them when k is 0); throws when a class has fewer.
Split draw_shots(const Split& train, int64_t k, ember::Generator& rng) {
  std::vector<int64_t> chosen;
  for (int64_t c = 0; c < train.classes; ++c) {
    std::vector<int64_t> members;
    for (int64_t i = 0; i < train.size(); ++i)
      if (train.labels[static_cast<size_t>(i)] == c) members.push_back(i);
    if (k > static_cast<int64_t>(members.size()))
      throw ember::ValueError(fmt::format("{}: --shots {}: class {} of the new task has only {} training images",
                                         kProgram, k, c, members.size()));
    const int64_t take = k == 0 ? static_cast<int64_t>(members.size()) : k;
    const std::vector<int64_t> perm = ember::randperm(static_cast<int64_t>(members.size()), &rng).to_vector();
    for (int64_t j = 0; j < take; ++j) chosen.push_back(members[static_cast<size_t>(perm[static_cast<size_t>(j)])]);
  }
  return subset(train, chosen);
}

// Mean and standard deviation of the pixels in [0, 1] (the network's input normalisation).
struct Normalization {
  float mean = 0, std = 1;
};

Tensor<float> to_input(const Tensor<uint8_t>& images, Normalization n) {
  return (images.to<float>() * (1.0f / 255.0f) - n.mean) * (1.0f / n.std);
}

// Training augmentation, the same for every method that trains: a random shift of up to two
// pixels (zero-padded) and a horizontal flip with probability one half.
Tensor<uint8_t> augment(const Tensor<uint8_t>& batch, ember::Generator& rng) {
  const int64_t n = batch.size(0);
  std::vector<uint8_t> in = batch.contiguous().to_vector(), out(in.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int dx = static_cast<int>(rng.below(5)) - 2, dy = static_cast<int>(rng.below(5)) - 2;
    const bool flip = rng.below(2) == 1;
    const uint8_t* src = in.data() + i * 784;
    uint8_t* dst = out.data() + i * 784;
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        const int sx0 = x - dx, sy = y - dy;
        const int sx = flip ? 27 - sx0 : sx0;
        if (sx >= 0 && sx < 28 && sy >= 0 && sy < 28) dst[y * 28 + x] = src[sy * 28 + sx];
      }
  }
  return ember::tensor<uint8_t>(out, batch.shape());
}

Tensor<int64_t> label_tensor(const Split& s, const std::vector<int64_t>& index) {
  std::vector<int64_t> l;
  for (int64_t i : index) l.push_back(s.labels[static_cast<size_t>(i)]);
  return ember::tensor<int64_t>(l, {static_cast<int64_t>(l.size())});
}

// ---- Training and evaluation --------------------------------------------------------------------

// Minibatch training with cross-entropy for `epochs` passes (at least `min_steps` steps), with
// augmentation; `progress` draws a bar when given.
void fit(nn::Module<float>& model, ember::optim::OptimizerBase& optimizer, const Split& data, Normalization norm,
         int64_t epochs, int64_t min_steps, int64_t batch_size, ember::Generator& rng, bool show_progress) {
  const int64_t n = data.size(), per_epoch = (n + batch_size - 1) / batch_size;
  const int64_t total_epochs = std::max(epochs, (min_steps + per_epoch - 1) / per_epoch);
  model.train();
  for (int64_t epoch = 0; epoch < total_epochs; ++epoch) {
    std::optional<ex::EpochProgress> progress;
    if (show_progress) progress.emplace(epoch, total_epochs, per_epoch, ex::stdout_is_terminal());
    const std::vector<int64_t> order = ember::randperm(n, &rng).to_vector();
    for (int64_t b = 0; b < per_epoch; ++b) {
      const int64_t start = b * batch_size, len = std::min(batch_size, n - start);
      const std::vector<int64_t> index(order.begin() + start, order.begin() + start + len);
      const Tensor<int64_t> labels = label_tensor(data, index);
      const Tensor<uint8_t> images =
          augment(data.images.index_select(0, ember::tensor<int64_t>(index, {len})), rng);
      const Tensor<float> logits = model(to_input(images, norm));
      const Tensor<float> loss = nn::functional::cross_entropy(logits, labels);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      if (progress) {
        ember::NoGradGuard no_grad;
        progress->update(len, static_cast<double>(loss.item<float>()),
                         logits.argmax(1).eq(labels).sum().item());
      }
    }
    if (progress) progress->finish();
  }
}

double accuracy(nn::Module<float>& model, const Split& test, Normalization norm) {
  ember::NoGradGuard no_grad;
  model.eval();
  int64_t correct = 0;
  for (int64_t start = 0; start < test.size(); start += 1000) {
    const int64_t len = std::min<int64_t>(1000, test.size() - start);
    std::vector<int64_t> index(static_cast<size_t>(len));
    std::iota(index.begin(), index.end(), start);
    const Tensor<float> logits = model(to_input(test.images.narrow(0, start, len), norm));
    correct += logits.argmax(1).eq(label_tensor(test, index)).sum().item();
  }
  return static_cast<double>(correct) / static_cast<double>(test.size());
}

Tensor<float> embed(nn::Module<float>& model, const Tensor<uint8_t>& images, Normalization norm) {
  ember::NoGradGuard no_grad;
  model.eval();
  std::vector<Tensor<float>> parts;
  for (int64_t start = 0; start < images.size(0); start += 1000) {
    const int64_t len = std::min<int64_t>(1000, images.size(0) - start);
    parts.push_back(nn::features(model, to_input(images.narrow(0, start, len), norm), ex::kMnistCnnFeatures));
  }
  return ember::cat(parts, 0);
}

// The pretrained network with a new, untrained head for `classes` classes.
Model pretrained_with_new_head(const nn::StateDict& backbone, int64_t old_classes, int64_t classes) {
  Model m = ex::make_mnist_cnn(1, 28, old_classes);
  m->load_state_dict(backbone);
  m->replace_module(kHead, nn::Linear(kFeatures, classes));
  return m;
}

struct Task {
  Split train, test;
};

double run_method(const std::string& method, const nn::StateDict& backbone, int64_t old_classes, const Task& task,
                  const Split& shots, Normalization norm, const Options& o, ember::Generator& rng) {
  const int64_t classes = task.train.classes, batch = std::min<int64_t>(64, shots.size());
  if (method == "scratch") {
    Model m = ex::make_mnist_cnn(1, 28, classes);
    ember::optim::Adam<float> opt(m->parameters(), {.lr = o.lr});
    fit(*m, opt, shots, norm, o.tune_epochs, o.min_steps, batch, rng, false);
    return accuracy(*m, task.test, norm);
  }
  if (method == "linear_probe") {
    Model m = pretrained_with_new_head(backbone, old_classes, classes);
    nn::Module<float>& head = m->submodule(kHead);
    nn::freeze(*m, {.batch_norm_eval = true});
    nn::unfreeze(head);
    ember::optim::Adam<float> opt(head.parameters(), {.lr = o.lr});
    fit(*m, opt, shots, norm, o.tune_epochs, o.min_steps, batch, rng, false);
    return accuracy(*m, task.test, norm);
  }
  if (method == "fine_tune") {
    // Every weight trains, the body slower than the new head (--body-lr); batch norm keeps the
    // pretrained statistics (a few examples per class would make poor batch statistics).
    Model m = pretrained_with_new_head(backbone, old_classes, classes);
    nn::Module<float>& head = m->submodule(kHead);
    std::vector<Tensor<float>> body;
    for (auto& [name, p] : m->named_parameters())
      if (name.rfind(std::string(kHead) + ".", 0) != 0) body.push_back(p);
    for (auto& [path, sub] : m->named_modules())
      if (dynamic_cast<nn::BatchNorm<float>*>(sub) != nullptr) sub->keep_eval();
    ember::optim::Adam opt({{body, {.lr = o.body_lr}}, {head.parameters(), {.lr = o.lr}}});
    fit(*m, opt, shots, norm, o.tune_epochs, o.min_steps, batch, rng, false);
    return accuracy(*m, task.test, norm);
  }
  // prototypes: each class's mean embedding; a test image takes the class of the nearest mean.
  Model m = pretrained_with_new_head(backbone, old_classes, classes);
  const Tensor<float> support = embed(*m, shots.images, norm), query = embed(*m, task.test.images, norm);
  std::vector<Tensor<float>> means;
  for (int64_t c = 0; c < classes; ++c) {
    std::vector<int64_t> members;
    for (int64_t i = 0; i < shots.size(); ++i)
      if (shots.labels[static_cast<size_t>(i)] == c) members.push_back(i);
    means.push_back(support.index_select(0, ember::tensor<int64_t>(members, {static_cast<int64_t>(members.size())}))
                        .mean(0, true));
  }
  const Tensor<float> centers = ember::cat(means, 0);  // [classes, 128]
  std::vector<int64_t> all(static_cast<size_t>(task.test.size()));
  std::iota(all.begin(), all.end(), 0);
  const int64_t correct = ember::cdist(query, centers).argmin(1).eq(label_tensor(task.test, all)).sum().item();
  return static_cast<double>(correct) / static_cast<double>(task.test.size());
}

struct Cell {
  std::string method;
  int64_t k;
  double mean, std;
  int64_t draws;
};

void write_plot(const std::string& path, const std::vector<Cell>& cells, const std::vector<int64_t>& shots,
                int64_t all_k, const std::string& title) {
  const std::vector<std::pair<std::string, ex::Rgb>> methods = {
      {"scratch", {200, 60, 50}}, {"linear_probe", {50, 110, 200}}, {"fine_tune", {40, 150, 70}}, {"prototypes", {150, 80, 170}}};
  std::vector<ex::Series> series;
  for (const auto& [name, color] : methods) {
    ex::Series s{name, {}, {}, color};
    for (int64_t k : shots)
      for (const Cell& c : cells)
        if (c.method == name && c.k == k) {
          s.x.push_back(std::log10(static_cast<double>(k == 0 ? all_k : k)));
          s.y.push_back(100 * c.mean);
        }
    series.push_back(s);
  }
  ex::Canvas canvas(760, 460);
  ex::draw_chart(canvas, 10, 10, 740, 440, title, "LOG10 EXAMPLES PER CLASS", series, true);
  ex::write_png(path, canvas.image());
}

int run(const Options& o) {
  fs::create_directories(o.out);
  ember::manual_seed(o.seed);
  const ember::data::LabeledImages source_train = ember::data::load_mnist(o.data, true);
  const ember::data::LabeledImages source_test = ember::data::load_mnist(o.data, false);
  const std::vector<int64_t>& old_classes = o.pretrain_classes;
  std::vector<int64_t> new_classes;
  for (int64_t c = 0; c < 10; ++c)
    if (std::find(old_classes.begin(), old_classes.end(), c) == old_classes.end()) new_classes.push_back(c);
  if (old_classes.empty() || new_classes.empty())
    throw ex::UsageError("--pretrain-classes must leave classes for the new task (and name at least one)");
  auto class_list = [](const std::vector<int64_t>& v) { return fmt::format("{}", fmt::join(v, ",")); };
  const Split pre_train = select_classes(source_train, old_classes);

  const Tensor<float> pixels = pre_train.images.to<float>() * (1.0f / 255.0f);
  const Normalization norm{pixels.mean().item<float>(), ember::std(pixels).item<float>()};

  nn::StateDict backbone;
  Model pre = ex::make_mnist_cnn(1, 28, static_cast<int64_t>(old_classes.size()));
  if (!o.backbone.empty()) {
    ember::load(*pre, o.backbone);
    std::printf("backbone: %s\n", o.backbone.c_str());
  } else {
    std::printf("pretraining ember-mnist's cnn on classes %s of %s (%lld images, %lld epochs)\n",
                class_list(old_classes).c_str(), o.data.c_str(),
                static_cast<long long>(pre_train.size()), static_cast<long long>(o.epochs));
    ember::optim::Adam<float> opt(pre->parameters(), {.lr = 1e-3});
    ember::Generator rng(o.seed);
    fit(*pre, opt, pre_train, norm, o.epochs, 0, 64, rng, true);
    ember::save(*pre, o.out + "/backbone.safetensors");
  }
  const double pre_accuracy = accuracy(*pre, select_classes(source_test, old_classes), norm);
  std::printf("backbone_accuracy=%.4f (test images of classes %s)\n", pre_accuracy, class_list(old_classes).c_str());
  backbone = pre->state_dict();

  Task task;
  std::string task_name;
  if (o.target_data.empty()) {
    task = {select_classes(source_train, new_classes), select_classes(source_test, new_classes)};
    task_name = fmt::format("classes {} of {}", class_list(new_classes), fs::path(o.data).filename().string());
  } else {
    const std::vector<int64_t> digits = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    task = {select_classes(ember::data::load_mnist(o.target_data, true), digits),
            select_classes(ember::data::load_mnist(o.target_data, false), digits)};
    task_name = fmt::format("all classes of {}", fs::path(o.target_data).filename().string());
  }
  int64_t smallest = task.train.size();
  for (int64_t c = 0; c < task.train.classes; ++c)
    smallest = std::min<int64_t>(smallest, std::count(task.train.labels.begin(), task.train.labels.end(), c));
  for (int64_t k : o.shots)
    if (k > smallest)
      throw ember::ValueError(fmt::format("{}: --shots {}: the smallest class of the new task ({}) has only {} "
                                          "training images",
                                          kProgram, k, task_name, smallest));
  std::printf("new task: %s, %lld training and %lld test images\n", task_name.c_str(),
              static_cast<long long>(task.train.size()), static_cast<long long>(task.test.size()));

  const std::vector<std::string> methods = {"scratch", "linear_probe", "fine_tune", "prototypes"};
  std::vector<Cell> cells;
  std::printf("\n%-6s", "k");
  for (const auto& m : methods) std::printf(" | %-17s", m.c_str());
  std::printf("\n");
  std::fflush(stdout);
  for (int64_t k : o.shots) {
    const int64_t draws = k == 0 ? 1 : o.draws;  // "all" has one draw: the whole training set
    std::vector<std::vector<double>> results(methods.size());
    for (int64_t d = 0; d < draws; ++d) {
      ember::Generator shot_rng(o.seed * 1000003 + static_cast<uint64_t>(k) * 7919 + static_cast<uint64_t>(d));
      const Split shots = draw_shots(task.train, k, shot_rng);
      for (size_t mi = 0; mi < methods.size(); ++mi) {
        ember::Generator rng(o.seed + 17 * static_cast<uint64_t>(d) + 1);  // same batches and augmentation for all
        ember::manual_seed(o.seed + static_cast<uint64_t>(d));            // same new-head initialisation
        results[mi].push_back(run_method(methods[mi], backbone, static_cast<int64_t>(old_classes.size()), task, shots,
                                         norm, o, rng));
      }
    }
    std::printf("%-6s", k == 0 ? "all" : std::to_string(k).c_str());
    for (size_t mi = 0; mi < methods.size(); ++mi) {
      const std::vector<double>& r = results[mi];
      const double mean = std::accumulate(r.begin(), r.end(), 0.0) / static_cast<double>(r.size());
      double var = 0;
      for (double x : r) var += (x - mean) * (x - mean);
      const double sd = r.size() > 1 ? std::sqrt(var / static_cast<double>(r.size() - 1)) : 0.0;
      cells.push_back({methods[mi], k, mean, sd, draws});
      std::printf(" | %6.2f%% +- %5.2f", 100 * mean, 100 * sd);
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  std::string csv = "method,k,mean_accuracy,std_accuracy,draws\n";
  for (const Cell& c : cells)
    csv += fmt::format("{},{},{:.4f},{:.4f},{}\n", c.method, c.k == 0 ? "all" : std::to_string(c.k), c.mean, c.std,
                       c.draws);
  ember::io::write_file_atomically(o.out + "/transfer.csv", std::vector<uint8_t>(csv.begin(), csv.end()));
  const int64_t all_k = task.train.size() / task.train.classes;
  write_plot(o.out + "/transfer.png", cells, o.shots, all_k, "TEST ACCURACY (%) ON THE NEW CLASSES");
  std::printf("wrote %s/transfer.csv, transfer.png%s\n", o.out.c_str(), o.backbone.empty() ? ", backbone.safetensors" : "");
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
