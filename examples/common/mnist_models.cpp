#include "common/mnist_models.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <vector>
#include <string>

#include "ember/ember.hpp"

namespace ember::examples {
namespace {

namespace nn = ember::nn;
using Model = std::shared_ptr<nn::Module<float>>;

Model make_mlp(int64_t channels, int64_t size, int64_t classes) {
  return std::make_shared<nn::Sequential<float>>(nn::Flatten(), nn::Linear(channels * size * size, 512), nn::ReLU(),
                                                 nn::Dropout(0.2), nn::Linear(512, 512), nn::ReLU(), nn::Dropout(0.2),
                                                 nn::Linear(512, classes));
}

// LeNet-5 (the input padded by 2, as for 28x28 digits).
Model make_lenet(int64_t channels, int64_t size, int64_t classes) {
  const int64_t side = (size / 2 - 4) / 2;
  return std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(channels, 6, 5, {.padding = 2}), nn::ReLU(), nn::MaxPool2d(2), nn::Conv2d(6, 16, 5), nn::ReLU(),
      nn::MaxPool2d(2), nn::Flatten(), nn::Linear(16 * side * side, 120), nn::ReLU(), nn::Linear(120, 84),
      nn::ReLU(), nn::Linear(84, classes));
}

std::vector<std::string> class_names(const std::string& dir) {
  std::string lower = dir;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower.find("fashion") != std::string::npos)
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  return {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
}

}  // namespace

// Two conv-BN-ReLU-pool stages and a dropout-regularised classifier.
std::shared_ptr<nn::Module<float>> make_mnist_cnn(int64_t channels, int64_t size, int64_t classes) {
  const int64_t side = size / 4;
  return std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(channels, 32, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(32), nn::ReLU(), nn::MaxPool2d(2),
      nn::Conv2d(32, 64, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(64), nn::ReLU(), nn::MaxPool2d(2),
      nn::Flatten(), nn::Dropout(0.25), nn::Linear(64 * side * side, 128), nn::ReLU(), nn::Dropout(0.5),
      nn::Linear(128, classes));
}

ExampleSpec mnist_spec() {
  ExampleSpec spec;
  spec.program = "ember-mnist";
  spec.about = "trains a classifier on MNIST-format images (MNIST, Fashion-MNIST, ...)";
  spec.default_data_dirs = {"data/mnist", "data/fashion-mnist"};
  spec.get_data_hint = "run scripts/get-data.sh fashion-mnist (or mnist), or pass --data DIR";
  spec.models = {
      ModelChoice{"cnn", "2 x (conv3x3-BN-ReLU-maxpool), dropout, 128-unit hidden layer",
                  {.epochs = 5, .batch_size = 64, .lr = 2e-3, .optimizer = "adam", .schedule = "onecycle"},
                  make_mnist_cnn},
      ModelChoice{"mlp", "784-512-512-10 with ReLU and dropout 0.2",
                  {.epochs = 10, .batch_size = 128, .lr = 1e-3, .optimizer = "adam", .schedule = "cosine"},
                  make_mlp},
      ModelChoice{"lenet", "LeNet-5: conv5x5(6)-pool-conv5x5(16)-pool-120-84-10",
                  {.epochs = 5, .batch_size = 64, .lr = 0.05, .optimizer = "sgd", .momentum = 0.9, .schedule = "cosine"},
                  make_lenet},
  };
  spec.load = [](const std::string& dir, bool train) { return ember::data::load_mnist(dir, train); };
  spec.class_names = class_names;
  return spec;
}

std::string train_classifier_if_absent(const std::string& data, const std::string& out_dir, int64_t epochs,
                                       const std::string& reason) {
  const std::string path = out_dir + "/classifier/model.safetensors";
  if (std::filesystem::exists(path)) return path;
  std::printf("%s: training ember-mnist's cnn on %s for %lld epochs into %s/classifier\n", reason.c_str(),
              data.c_str(), static_cast<long long>(epochs), out_dir.c_str());
  std::fflush(stdout);
  std::vector<std::string> args = {"ember-mnist", "--data", data,       "--model", "cnn",
                                   "--epochs",    std::to_string(epochs), "--out",  out_dir + "/classifier"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (run_classifier_example(static_cast<int>(argv.size()), argv.data(), mnist_spec()) != 0)
    throw Error("training the classifier failed (see above)");
  return path;
}

}  // namespace ember::examples
