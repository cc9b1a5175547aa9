#pragma once
// Pooling layers: MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, AdaptiveMaxPool1d/2d (NCHW; NCL
// for 1-d); the functions
// they call are ember/ops/pooling.hpp's.
#include <string>

#include "ember/nn/conv.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/pooling.hpp"

namespace ember::nn {

using ember::AvgPool2dOptions;
using ember::MaxPool2dOptions;

namespace functional {
using ember::adaptive_avg_pool1d;
using ember::adaptive_avg_pool2d;
using ember::adaptive_max_pool1d;
using ember::adaptive_max_pool1d_with_indices;
using ember::adaptive_max_pool2d;
using ember::adaptive_max_pool2d_with_indices;
using ember::avg_pool1d;
using ember::avg_pool2d;
using ember::max_pool1d;
using ember::max_pool2d;
}  // namespace functional

template <FloatingElement T = float>
class MaxPool2d : public Module<T> {
 public:
  explicit MaxPool2d(IntPair kernel_size, MaxPool2dOptions options = {}) : k_(kernel_size), o_(options) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::max_pool2d(x, k_, o_); }
  std::string type_name() const override { return "MaxPool2d"; }
  IntPair kernel_size() const noexcept { return k_; }
  const MaxPool2dOptions& options() const noexcept { return o_; }
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
  IntPair kernel_size() const noexcept { return k_; }
  const AvgPool2dOptions& options() const noexcept { return o_; }

 private:
  IntPair k_;
  AvgPool2dOptions o_;
};

template <FloatingElement T = float>
class AvgPool1d : public Module<T> {
 public:
  explicit AvgPool1d(int64_t kernel_size, AvgPool2dOptions options = {}) : k_(kernel_size), o_(options) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::avg_pool1d(x, k_, o_); }
  std::string type_name() const override { return "AvgPool1d"; }

 private:
  int64_t k_;
  AvgPool2dOptions o_;
};

template <FloatingElement T = float>
class AdaptiveAvgPool1d : public Module<T> {
 public:
  explicit AdaptiveAvgPool1d(int64_t output_size) : out_(output_size) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::adaptive_avg_pool1d(x, out_); }
  std::string type_name() const override { return "AdaptiveAvgPool1d"; }
  std::string extra_repr() const override { return "output_size=" + std::to_string(out_); }

 private:
  int64_t out_;
};

template <FloatingElement T = float>
class AdaptiveAvgPool2d : public Module<T> {
 public:
  explicit AdaptiveAvgPool2d(IntPair output_size) : out_(output_size) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::adaptive_avg_pool2d(x, out_); }
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  IntPair output_size() const noexcept { return out_; }
  std::string extra_repr() const override {
    return "output_size=(" + std::to_string(out_.h) + ", " + std::to_string(out_.w) + ")";
  }

 private:
  IntPair out_;
};

/// forward gives the maxima; forward_with_indices also their indices (LibTorch's names).
template <FloatingElement T = float>
class AdaptiveMaxPool1d : public Module<T> {
 public:
  explicit AdaptiveMaxPool1d(int64_t output_size) : out_(output_size) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::adaptive_max_pool1d(x, out_); }
  ValuesIndices<T> forward_with_indices(const Tensor<T>& x) {
    return functional::adaptive_max_pool1d_with_indices(x, out_);
  }
  std::string type_name() const override { return "AdaptiveMaxPool1d"; }
  std::string extra_repr() const override { return "output_size=" + std::to_string(out_); }

 private:
  int64_t out_;
};

template <FloatingElement T = float>
class AdaptiveMaxPool2d : public Module<T> {
 public:
  explicit AdaptiveMaxPool2d(IntPair output_size) : out_(output_size) {}
  Tensor<T> forward(const Tensor<T>& x) override { return functional::adaptive_max_pool2d(x, out_); }
  ValuesIndices<T> forward_with_indices(const Tensor<T>& x) {
    return functional::adaptive_max_pool2d_with_indices(x, out_);
  }
  std::string type_name() const override { return "AdaptiveMaxPool2d"; }
  IntPair output_size() const noexcept { return out_; }
  std::string extra_repr() const override {
    return "output_size=(" + std::to_string(out_.h) + ", " + std::to_string(out_.w) + ")";
  }

 private:
  IntPair out_;
};

}  // namespace ember::nn
