#pragma once
// nn::init: in-place initialisers with torch.nn.init's names, formulas and defaults. Each fills
// the tensor under no-grad and returns it; `gen` defaults to the global generator.
#include <string>

#include "ember/core/generator.hpp"
#include "ember/core/tensor.hpp"

namespace ember::nn::init {

enum class FanMode { FanIn, FanOut };

struct Fans {
  int64_t fan_in;
  int64_t fan_out;
};
/// fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (tensors of >= 2 dims).
Fans calculate_fan_in_and_fan_out(const TensorBase& t);
/// The recommended gain for a nonlinearity: "linear", "conv2d", "sigmoid", "tanh", "relu",
/// "leaky_relu" (param = negative slope, default 0.01), "selu".
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

template <FloatingElement T> Tensor<T>& uniform_(Tensor<T>& t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
template <FloatingElement T> Tensor<T>& normal_(Tensor<T>& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
/// Normal restricted to [a, b] by redrawing (torch.nn.init.trunc_normal_).
template <FloatingElement T> Tensor<T>& trunc_normal_(Tensor<T>& t, double mean = 0.0, double std = 1.0,
                                                      double a = -2.0, double b = 2.0, Generator* gen = nullptr);
template <FloatingElement T> Tensor<T>& constant_(Tensor<T>& t, double value);
template <FloatingElement T> Tensor<T>& zeros_(Tensor<T>& t);
template <FloatingElement T> Tensor<T>& ones_(Tensor<T>& t);
template <FloatingElement T> Tensor<T>& xavier_uniform_(Tensor<T>& t, double gain = 1.0, Generator* gen = nullptr);
template <FloatingElement T> Tensor<T>& xavier_normal_(Tensor<T>& t, double gain = 1.0, Generator* gen = nullptr);
template <FloatingElement T>
Tensor<T>& kaiming_uniform_(Tensor<T>& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                            const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
template <FloatingElement T>
Tensor<T>& kaiming_normal_(Tensor<T>& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                           const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
/// A (semi-)orthogonal matrix, from the QR decomposition of a normal sample, scaled by gain.
template <FloatingElement T> Tensor<T>& orthogonal_(Tensor<T>& t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace ember::nn::init
