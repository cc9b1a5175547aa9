// ember-cifar10: trains a small ResNet (BasicBlocks with BatchNorm) on the CIFAR-10 binary
// batches with random crops and flips, SGD with Nesterov momentum and weight decay, a one-cycle
// schedule and label smoothing; the same flags and outputs as ember-mnist. See docs/examples.md.
//
//   ember-cifar10 --data data/cifar-10-batches-bin --epochs 10
#include <fstream>
#include <string>

#include "common/cifar_models.hpp"
#include "common/classifier.hpp"
#include "ember/ember.hpp"

namespace {

using ember::examples::ModelChoice;

std::vector<std::string> class_names(const std::string& dir) {
  std::vector<std::string> names;
  std::ifstream meta(dir + "/batches.meta.txt");  // shipped with the binary version
  for (std::string line; std::getline(meta, line);)
    if (!line.empty() && line.find(',') == std::string::npos) names.push_back(line);
  if (names.size() == 10) return names;
  return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
}

}  // namespace

int main(int argc, char** argv) {
  ember::examples::ExampleSpec spec;
  spec.program = "ember-cifar10";
  spec.about = "trains a small ResNet on the CIFAR-10 binary version";
  spec.default_data_dirs = {"data/cifar-10-batches-bin"};
  spec.get_data_hint = "run scripts/get-data.sh cifar10 for where to put the files, or pass --data DIR";
  const ember::examples::Recipe recipe{.epochs = 10, .batch_size = 128, .lr = 0.1, .optimizer = "sgd",
                                       .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4,
                                       .schedule = "onecycle", .label_smoothing = 0.1};
  spec.models = {
      ModelChoice{"resnet", "ResNet-8: stem + BasicBlocks of 32, 64, 128 channels", recipe,
                  [](int64_t c, int64_t, int64_t k) { return ember::examples::make_cifar_resnet(c, k, 32); }},
      ModelChoice{"resnet-small", "the same with 16, 32, 64 channels (4x fewer operations)", recipe,
                  [](int64_t c, int64_t, int64_t k) { return ember::examples::make_cifar_resnet(c, k, 16); }},
  };
  spec.load = [](const std::string& dir, bool train) { return ember::data::load_cifar10(dir, train); };
  spec.class_names = class_names;
  spec.crop_padding = 4;
  return ember::examples::run_classifier_example(argc, argv, spec);
}
