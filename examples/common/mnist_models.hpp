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

}  // namespace ember::examples
