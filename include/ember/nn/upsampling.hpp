#pragma once
// Upsample (torch.nn.Upsample): interpolate with fixed options, e.g. a generator's
// nn::Upsample({.scale_factor = {2}, .mode = "nearest"}) before a convolution.
#include <sstream>
#include <string>

#include "ember/nn/module.hpp"
#include "ember/ops/upsampling.hpp"

namespace ember::nn {

using ember::InterpolateOptions;
using UpsampleOptions = InterpolateOptions;

namespace functional {
using ember::interpolate;
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

}  // namespace ember::nn
