#include "common/cifar_models.hpp"

#include "ember/nn.hpp"

namespace ember::examples {

std::shared_ptr<nn::Module<float>> make_cifar_resnet(int64_t channels, int64_t classes, int64_t width) {
  return std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(channels, width, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(width), nn::ReLU(),
      nn::BasicBlock(width, width, 1), nn::BasicBlock(width, 2 * width, 2), nn::BasicBlock(2 * width, 4 * width, 2),
      nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(4 * width, classes));
}

}  // namespace ember::examples
