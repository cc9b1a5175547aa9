#pragma once
// Residual connections: Residual (x + f(x)) and the ResNet BasicBlock with torchvision's names
// (conv1, bn1, conv2, bn2, downsample.0, downsample.1).
#include <memory>
#include <string>

#include "ember/nn/container.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/normalization.hpp"

namespace ember::nn {

/// x + fn(x); the wrapped module is registered as "fn".
template <FloatingElement T = float>
class Residual : public Module<T> {
 public:
  template <class M>
  explicit Residual(M&& fn) : fn_(this->register_module("fn", std::forward<M>(fn))) {}
  Tensor<T> forward(const Tensor<T>& x) override { return x + this->call_child("fn", *fn_, x); }
  std::string type_name() const override { return "Residual"; }

 private:
  std::shared_ptr<Module<T>> fn_;
};
template <class M>
Residual(M&&) -> Residual<typename std::decay_t<M>::value_type>;

/// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), where the shortcut is a 1x1 convolution
/// with batch norm when the stride or the channel count changes, else the identity.
template <FloatingElement T = float>
class BasicBlock : public Module<T> {
 public:
  BasicBlock(int64_t in_planes, int64_t planes, int64_t stride = 1);
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "BasicBlock"; }

  std::shared_ptr<Conv2d<T>> conv1, conv2;
  std::shared_ptr<BatchNorm2d<T>> bn1, bn2;
  std::shared_ptr<Sequential<T>> downsample;  // null for the identity shortcut
};
BasicBlock(int64_t, int64_t)->BasicBlock<float>;
BasicBlock(int64_t, int64_t, int64_t)->BasicBlock<float>;

template <FloatingElement T>
BasicBlock<T>::BasicBlock(int64_t in_planes, int64_t planes, int64_t stride) {
  conv1 = this->register_module("conv1", Conv2d<T>(in_planes, planes, 3, {.stride = stride, .padding = 1, .bias = false}));
  bn1 = this->register_module("bn1", BatchNorm2d<T>(planes));
  conv2 = this->register_module("conv2", Conv2d<T>(planes, planes, 3, {.padding = 1, .bias = false}));
  bn2 = this->register_module("bn2", BatchNorm2d<T>(planes));
  if (stride != 1 || in_planes != planes) {
    downsample = this->register_module(
        "downsample", Sequential<T>(Conv2d<T>(in_planes, planes, 1, {.stride = stride, .bias = false}),
                                    BatchNorm2d<T>(planes)));
  }
}

template <FloatingElement T>
Tensor<T> BasicBlock<T>::forward(const Tensor<T>& x) {
  // Each batch norm with its ReLU (and the shortcut) as one node, the same values with fewer passes
  // (Note [Batch norm with ReLU]), unless hooks on the batch norm must see its own output.
  auto bn_relu = [this](const char* name, BatchNorm2d<T>& bn, const Tensor<T>& in, const Tensor<T>& residual) {
    if (!bn.has_hooks()) {
      try {
        return bn.forward_relu(in, residual);
      } catch (Error& e) {  // named as operator() names a child's errors
        e.prepend_module(name);
        throw;
      }
    }
    const Tensor<T> y = this->call_child(name, bn, in);
    return relu(residual.defined() ? y + residual : y);
  };
  const Tensor<T> out = bn_relu("bn1", *bn1, this->call_child("conv1", *conv1, x), Tensor<T>());
  const Tensor<T> main = this->call_child("conv2", *conv2, out);
  return bn_relu("bn2", *bn2, main, downsample ? this->call_child("downsample", *downsample, x) : x);
}

}  // namespace ember::nn
