#pragma once
// The image-classifier program both bundled examples are made of: flags, data loading, the
// training loop with a progress bar, test evaluation after each epoch, and the outputs (model as
// safetensors, metrics CSV, learning-curve and prediction PNGs), plus the --predict mode that
// loads a saved model and classifies a PNG as a deployed program would.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ember/data/readers.hpp"
#include "ember/nn/module.hpp"

namespace ember::examples {

/// A model's default training recipe; each field has a flag that overrides it.
struct Recipe {
  int64_t epochs = 1;
  int64_t batch_size = 64;
  double lr = 1e-3;
  std::string optimizer = "adam";  // sgd, adam or adamw
  double momentum = 0.9;           // SGD
  bool nesterov = false;           // SGD
  double weight_decay = 0.0;
  std::string schedule = "none";   // none, onecycle or cosine (stepped per batch)
  double label_smoothing = 0.0;
};

struct ModelChoice {
  std::string name;
  std::string description;
  Recipe recipe;
  /// Builds the untrained model for images of `channels` x `size` x `size` and `classes` classes.
  std::function<std::shared_ptr<nn::Module<float>>(int64_t channels, int64_t size, int64_t classes)> make;
};

struct ExampleSpec {
  std::string program;  // "ember-mnist"
  std::string about;    // one line for --help
  /// --data defaults to the first of these that exists.
  std::vector<std::string> default_data_dirs;
  std::string get_data_hint;  // how to get data when none is found
  std::vector<ModelChoice> models;  // the first is the default
  std::function<data::LabeledImages(const std::string& dir, bool train)> load;
  /// Class names for a data set directory (the digits, Fashion-MNIST's names, ...).
  std::function<std::vector<std::string>(const std::string& dir)> class_names;
  /// Random crop (with this padding) and horizontal flip during training; 0: no augmentation.
  int64_t crop_padding = 0;
};

/// The whole program; returns the exit code (0 done, 1 error, 2 bad flags).
int run_classifier_example(int argc, char** argv, const ExampleSpec& spec);

/// Per-channel mean and standard deviation of the training images, scaled to [0, 1].
struct Normalization {
  std::vector<double> mean, std;
};
/// The per-channel statistics of uint8 images [N, C, H, W].
Normalization channel_statistics(const Tensor<uint8_t>& images);
/// uint8 images [N, C, H, W] to the network's input: (x / 255 - mean[c]) / std[c].
Tensor<float> to_input(const Tensor<uint8_t>& images, const Normalization& norm);

/// A model saved by the program of `spec` (its model.safetensors), rebuilt and in eval mode.
struct SavedClassifier {
  std::shared_ptr<nn::Module<float>> model;
  std::string model_name;
  Normalization norm;
  std::vector<std::string> classes;
  int64_t channels = 0, size = 0;
};
/// Throws ember::FormatError naming the file when it was not saved by spec.program.
SavedClassifier load_classifier(const std::string& path, const ExampleSpec& spec);

}  // namespace ember::examples
