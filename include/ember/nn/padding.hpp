#pragma once
// Padding layers with PyTorch's names: ZeroPad2d, ConstantPad1d/2d, ReflectionPad1d/2d,
// ReplicationPad1d/2d. Each holds its pads (left, right[, top, bottom]: one number pads every
// side) and calls ember::pad.
#include <sstream>
#include <string>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/shape_ops.hpp"

namespace ember::nn {

namespace functional {
using ember::pad;
using ember::PadMode;
}  // namespace functional

template <FloatingElement T = float>
class PadLayer : public Module<T> {
 public:
  /// spatial_dims 1 (pads {left, right}) or 2 ({left, right, top, bottom}).
  PadLayer(std::vector<int64_t> pads, int64_t spatial_dims, PadMode mode, double value, const char* name)
      : pads_(std::move(pads)), mode_(mode), value_(value), spatial_dims_(spatial_dims), name_(name) {
    if (pads_.size() == 1) pads_.assign(static_cast<size_t>(2 * spatial_dims), pads_[0]);
    if (static_cast<int64_t>(pads_.size()) != 2 * spatial_dims) {
      throw ValueError(name_ + ": expected 1 or " + std::to_string(2 * spatial_dims) + " pads, got " +
                       std::to_string(pads_.size()));
    }
  }
  Tensor<T> forward(const Tensor<T>& x) override {
    // PyTorch's layers take a batch or one sample: [N, C, *spatial] or [C, *spatial].
    if (!x.defined() || x.dim() < spatial_dims_ + 1 || x.dim() > spatial_dims_ + 2) {
      throw ShapeError(name_ + ": expected a " + std::to_string(spatial_dims_ + 1) + "-D or " +
                       std::to_string(spatial_dims_ + 2) + "-D input, got " +
                       (x.defined() ? x.shape().str() : std::string("undefined")));
    }
    return ember::pad(x, pads_, mode_, value_);
  }
  std::string type_name() const override { return name_; }
  std::string extra_repr() const override {
    std::ostringstream s;
    const bool constant = name_.rfind("Constant", 0) == 0;  // PyTorch prints ZeroPad2d's pads alone
    s << (constant ? "padding=(" : "(");
    for (size_t i = 0; i < pads_.size(); ++i) s << (i ? ", " : "") << pads_[i];
    s << ")";
    if (constant) s << ", value=" << value_;
    return s.str();
  }
  const std::vector<int64_t>& padding() const noexcept { return pads_; }

 private:
  std::vector<int64_t> pads_;
  PadMode mode_;
  double value_;
  int64_t spatial_dims_;
  std::string name_;
};

#define EMBER_PAD_LAYER(Name, dims, mode)                                                     \
  template <FloatingElement T = float>                                                        \
  class Name : public PadLayer<T> {                                                           \
   public:                                                                                    \
    explicit Name(int64_t padding) : PadLayer<T>({padding}, dims, mode, 0.0, #Name) {}        \
    explicit Name(std::vector<int64_t> padding) : PadLayer<T>(std::move(padding), dims, mode, 0.0, #Name) {} \
  };                                                                                          \
  Name(int64_t)->Name<float>;                                                                 \
  Name(std::vector<int64_t>)->Name<float>;
EMBER_PAD_LAYER(ZeroPad2d, 2, PadMode::Constant)
EMBER_PAD_LAYER(ReflectionPad1d, 1, PadMode::Reflect)
EMBER_PAD_LAYER(ReflectionPad2d, 2, PadMode::Reflect)
EMBER_PAD_LAYER(ReplicationPad1d, 1, PadMode::Replicate)
EMBER_PAD_LAYER(ReplicationPad2d, 2, PadMode::Replicate)
#undef EMBER_PAD_LAYER

#define EMBER_CONSTANT_PAD_LAYER(Name, dims)                                                                   \
  template <FloatingElement T = float>                                                                         \
  class Name : public PadLayer<T> {                                                                            \
   public:                                                                                                     \
    Name(int64_t padding, double value) : PadLayer<T>({padding}, dims, PadMode::Constant, value, #Name) {}     \
    Name(std::vector<int64_t> padding, double value)                                                           \
        : PadLayer<T>(std::move(padding), dims, PadMode::Constant, value, #Name) {}                            \
  };                                                                                                           \
  Name(int64_t, double)->Name<float>;                                                                          \
  Name(std::vector<int64_t>, double)->Name<float>;
EMBER_CONSTANT_PAD_LAYER(ConstantPad1d, 1)
EMBER_CONSTANT_PAD_LAYER(ConstantPad2d, 2)
#undef EMBER_CONSTANT_PAD_LAYER

}  // namespace ember::nn
