#pragma once
// Upsample (torch.nn.Upsample): interpolate with fixed options, e.g. a generator's
// nn::Upsample({.scale_factor = {2}, .mode = "nearest"}) before a convolution.
#include <sstream>
#include <string>

#include "ember/nn/module.hpp"
#include "ember/ops/shape_ops.hpp"
#include "ember/ops/upsampling.hpp"

namespace ember::nn {

using ember::InterpolateOptions;
using UpsampleOptions = InterpolateOptions;

namespace functional {
using ember::interpolate;
using ember::pixel_shuffle;
using ember::pixel_unshuffle;
}  // namespace functional

template <FloatingElement T = float>
class Upsample : public Module<T> {
 public:
  explicit Upsample(UpsampleOptions options) : options_(std::move(options)) {}
  Tensor<T> forward(const Tensor<T>& x) override { return interpolate(x, options_); }
  std::string type_name() const override { return "Upsample"; }
  const UpsampleOptions& options() const noexcept { return options_; }
  std::string extra_repr() const override {
    std::ostringstream s;
    auto list = [&s](const auto& v) {
      if (v.size() == 1) {
        s << v[0];
        return;
      }
      s << "(";
      for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
      s << ")";
    };
    if (!options_.scale_factor.empty()) {
      s << "scale_factor=";
      list(options_.scale_factor);
    } else {
      s << "size=";
      list(options_.size);
    }
    s << ", mode='" << options_.mode << "'";
    return s.str();
  }

 private:
  UpsampleOptions options_;
};

/// torch.nn.PixelShuffle / PixelUnshuffle (ember::pixel_shuffle, pixel_unshuffle).
template <FloatingElement T = float>
class PixelShuffle : public Module<T> {
 public:
  explicit PixelShuffle(int64_t upscale_factor) : r_(upscale_factor) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::pixel_shuffle(x, r_); }
  std::string type_name() const override { return "PixelShuffle"; }
  std::string extra_repr() const override { return "upscale_factor=" + std::to_string(r_); }

 private:
  int64_t r_;
};

template <FloatingElement T = float>
class PixelUnshuffle : public Module<T> {
 public:
  explicit PixelUnshuffle(int64_t downscale_factor) : r_(downscale_factor) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::pixel_unshuffle(x, r_); }
  std::string type_name() const override { return "PixelUnshuffle"; }
  std::string extra_repr() const override { return "downscale_factor=" + std::to_string(r_); }

 private:
  int64_t r_;
};

}  // namespace ember::nn
