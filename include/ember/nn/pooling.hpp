#pragma once
// Pooling layers: MaxPool1d/2d, AvgPool2d, AdaptiveAvgPool2d (NCHW; NCL for 1-d).
#include <string>

#include "ember/nn/conv.hpp"
#include "ember/nn/module.hpp"

namespace ember::nn {

struct MaxPool2dOptions {
  IntPair stride = 0;  // 0: the kernel size, as PyTorch's default
  IntPair padding = 0;
  IntPair dilation = 1;
  bool ceil_mode = false;
};

struct AvgPool2dOptions {
  IntPair stride = 0;  // 0: the kernel size
  IntPair padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
};

namespace functional {
template <FloatingElement T>
Tensor<T> max_pool2d(const Tensor<T>& x, IntPair kernel_size, const MaxPool2dOptions& options = {});
template <FloatingElement T>
Tensor<T> max_pool1d(const Tensor<T>& x, int64_t kernel_size, const MaxPool2dOptions& options = {});
template <FloatingElement T>
Tensor<T> avg_pool2d(const Tensor<T>& x, IntPair kernel_size, const AvgPool2dOptions& options = {});
/// Averages over the bins PyTorch uses: bin i covers [floor(i H / out), ceil((i + 1) H / out)).
template <FloatingElement T>
Tensor<T> adaptive_avg_pool2d(const Tensor<T>& x, IntPair output_size);
}  // namespace functional

template <FloatingElement T = float>
class MaxPool2d : public Module<T> {
 public:
  explicit MaxPool2d(IntPair kernel_size, MaxPool2dOptions options = {}) : k_(kernel_size), o_(options) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::max_pool2d(x, k_, o_); }
  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override {
    return "kernel_size=" + std::to_string(k_.h) + ", stride=" + std::to_string(o_.stride.h ? o_.stride.h : k_.h);
  }

 private:
  IntPair k_;
  MaxPool2dOptions o_;
};
MaxPool2d(IntPair)->MaxPool2d<float>;
MaxPool2d(IntPair, MaxPool2dOptions)->MaxPool2d<float>;
MaxPool2d(int)->MaxPool2d<float>;

template <FloatingElement T = float>
class MaxPool1d : public Module<T> {
 public:
  explicit MaxPool1d(int64_t kernel_size, MaxPool2dOptions options = {}) : k_(kernel_size), o_(options) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::max_pool1d(x, k_, o_); }
  std::string type_name() const override { return "MaxPool1d"; }

 private:
  int64_t k_;
  MaxPool2dOptions o_;
};

template <FloatingElement T = float>
class AvgPool2d : public Module<T> {
 public:
  explicit AvgPool2d(IntPair kernel_size, AvgPool2dOptions options = {}) : k_(kernel_size), o_(options) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::avg_pool2d(x, k_, o_); }
  std::string type_name() const override { return "AvgPool2d"; }

 private:
  IntPair k_;
  AvgPool2dOptions o_;
};

template <FloatingElement T = float>
class AdaptiveAvgPool2d : public Module<T> {
 public:
  explicit AdaptiveAvgPool2d(IntPair output_size) : out_(output_size) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::adaptive_avg_pool2d(x, out_); }
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override {
    return "output_size=(" + std::to_string(out_.h) + ", " + std::to_string(out_.w) + ")";
  }

 private:
  IntPair out_;
};

}  // namespace ember::nn
