#pragma once
// The model and optimizers the checkpoint fuzzer restores into; make_seeds writes checkpoints
// of the same shapes so that the seeds reach the restore and step paths.
#include <memory>
#include <vector>

#include "ember/ember.hpp"

namespace ember::fuzz {

struct Model {
  nn::Sequential<float> net{nn::Linear(2, 3), nn::ReLU(), nn::Linear(3, 2)};
  template <class Optimizer>
  void step(Optimizer& opt) {
    opt.zero_grad();
    net(ones<float>({2, 2})).sum().backward();
    opt.step();
  }
};

// Optimizers outlive the call (the harness is single-threaded; one of each at a time).
template <class O, class Options>
O& keep(nn::Module<float>& m, Options o) {
  static std::unique_ptr<O> held;
  held = std::make_unique<O>(m.parameters(), o);
  return *held;
}
inline optim::SGD<float>& make_sgd(nn::Module<float>& m) {
  return keep<optim::SGD<float>>(m, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
}
inline optim::Adam<float>& make_adam(nn::Module<float>& m) {
  return keep<optim::Adam<float>>(m, optim::AdamOptions{.lr = 0.01, .amsgrad = true});
}
inline optim::Adam<float>& make_adamw(nn::Module<float>& m) {
  static std::unique_ptr<optim::AdamW<float>> held;
  held = std::make_unique<optim::AdamW<float>>(m.parameters(), optim::AdamWOptions{.lr = 0.01});
  return *held;
}
inline optim::RMSprop<float>& make_rmsprop(nn::Module<float>& m) {
  return keep<optim::RMSprop<float>>(m, optim::RMSpropOptions{.momentum = 0.5, .centered = true});
}
inline optim::Adagrad<float>& make_adagrad(nn::Module<float>& m) {
  return keep<optim::Adagrad<float>>(m, optim::AdagradOptions{});
}

}  // namespace ember::fuzz
