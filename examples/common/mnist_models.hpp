#pragma once
// ember-mnist's models and data set description, shared with the programs that reuse its models
// (ember-gan's quality classifier, ember-transfer's backbone).
#include <memory>
#include <string>

#include "common/classifier.hpp"

namespace ember::examples {

/// The CNN: two conv-BN-ReLU-pool stages and a dropout-regularised 128-unit classifier; its
/// penultimate features (128) are the output of layer "11".
std::shared_ptr<nn::Module<float>> make_mnist_cnn(int64_t channels, int64_t size, int64_t classes);
/// The layer of make_mnist_cnn whose output is the penultimate features.
inline constexpr const char* kMnistCnnFeatures = "11";
/// ember-mnist's whole description: its models (cnn, mlp, lenet) with their recipes, MNIST-format
/// loading and class names.
ExampleSpec mnist_spec();

/// OUT_DIR/classifier/model.safetensors, after training ember-mnist's cnn there on `data` for
/// `epochs` when the file is absent (the programs that measure with a classifier and got none).
std::string train_classifier_if_absent(const std::string& data, const std::string& out_dir, int64_t epochs,
                                       const std::string& reason);

}  // namespace ember::examples
