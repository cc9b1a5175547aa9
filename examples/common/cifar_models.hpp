#pragma once
// ember-cifar10's model, shared with the programs that measure it (ember-bench-plans).
#include <cstdint>
#include <memory>

#include "ember/nn/module.hpp"

namespace ember::examples {

/// ResNet-8: a 3x3 stem of `width` channels and BasicBlocks of width, 2 width (stride 2) and
/// 4 width (stride 2) channels, global average pooling and a linear classifier.
std::shared_ptr<nn::Module<float>> make_cifar_resnet(int64_t channels, int64_t classes, int64_t width);

}  // namespace ember::examples
