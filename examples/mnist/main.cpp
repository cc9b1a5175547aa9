// ember-mnist: trains an MLP or a CNN on MNIST or Fashion-MNIST (any data set in MNIST's IDX
// format), shows its progress, evaluates on the test set after each epoch and saves the model
// (safetensors, loadable by PyTorch), metrics and pictures; --predict classifies a PNG with a
// saved model. See docs/examples.md.
//
//   scripts/get-data.sh fashion-mnist
//   ember-mnist --data data/fashion-mnist --model cnn --epochs 3
//   ember-mnist --predict shirt.png --weights out/fashion-mnist-cnn/model.safetensors
#include "common/mnist_models.hpp"

int main(int argc, char** argv) {
  return ember::examples::run_classifier_example(argc, argv, ember::examples::mnist_spec());
}
