#pragma once
// Conv1d, Conv2d and ConvTranspose2d with PyTorch's arguments, defaults, parameter shapes and
// initialisation.
#include <array>
#include <string>

#include "ember/nn/module.hpp"
#include "ember/ops/conv.hpp"

namespace ember::nn {

using ember::IntPair;

/// Padding: a number, {height, width}, "valid" (none) or "same" (output size = input size at
/// stride 1; an even kernel pads one more at the bottom and right, as PyTorch).
struct Padding {
  int64_t h = 0, w = 0;
  bool same = false;
  Padding(int64_t v) : h(v), w(v) {}  // NOLINT
  Padding(int64_t a, int64_t b) : h(a), w(b) {}
  template <size_t N>
  Padding(const char (&mode)[N]) : Padding(std::string(mode)) {}  // NOLINT: `.padding = "same"`
  explicit Padding(const std::string& mode);
};

/// Conv1d's options, PyTorch's arguments for one spatial dim: `{.stride = 2, .padding = "same"}`.
struct Conv1dOptions {
  int64_t stride = 1;
  Padding padding = 0;  // a number, "valid" or "same"
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

struct Conv2dOptions {
  IntPair stride = 1;
  Padding padding = 0;
  IntPair dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  /// The width components, so that programs that configured Conv1d with Conv2dOptions compile.
  operator Conv1dOptions() const {  // NOLINT: implicit on purpose
    Padding p = padding;
    p.h = p.w;
    return {stride.w, p, dilation.w, groups, bias};
  }
};

struct ConvTranspose2dOptions {
  IntPair stride = 1;
  IntPair padding = 0;
  IntPair output_padding = 0;
  int64_t groups = 1;
  bool bias = true;
  IntPair dilation = 1;
};

struct ConvTranspose1dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t output_padding = 0;
  int64_t groups = 1;
  bool bias = true;
  int64_t dilation = 1;
};
/// The geometry Conv2dOptions describe for a kh x kw kernel ("same" resolved as PyTorch does);
/// `op` names the caller in errors.
Conv2dGeometry conv2d_geometry(const Conv2dOptions& options, int64_t kh, int64_t kw, const char* op);

namespace functional {
/// x [N, C, H, W], weight [O, C / groups, kh, kw].
template <FloatingElement T>
Tensor<T> conv2d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>(),
                 const Conv2dOptions& options = {});
/// x [N, C, L], weight [O, C / groups, k].
template <FloatingElement T>
Tensor<T> conv1d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>(),
                 const Conv1dOptions& options = {});
/// x [N, C_in, H, W], weight [C_in, C_out / groups, kh, kw].
template <FloatingElement T>
Tensor<T> conv_transpose2d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>(),
                           const ConvTranspose2dOptions& options = {});
/// x [N, C_in, L] (or [C_in, L]), weight [C_in, C_out / groups, k]: conv_transpose2d over a height of 1.
template <FloatingElement T>
Tensor<T> conv_transpose1d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>(),
                           const ConvTranspose1dOptions& options = {});
}  // namespace functional

template <FloatingElement T = float>
class Conv2d : public Module<T> {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, IntPair kernel_size, Conv2dOptions options = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override;

  Tensor<T> weight, bias;
  int64_t in_channels, out_channels;
  IntPair kernel_size;
  Conv2dOptions options;
};
Conv2d(int64_t, int64_t, IntPair)->Conv2d<float>;
Conv2d(int64_t, int64_t, IntPair, Conv2dOptions)->Conv2d<float>;

template <FloatingElement T = float>
class Conv1d : public Module<T> {
 public:
  Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv1dOptions options = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "Conv1d"; }
  std::string extra_repr() const override;

  Tensor<T> weight, bias;
  int64_t in_channels, out_channels, kernel_size;
  Conv1dOptions options;
};
Conv1d(int64_t, int64_t, int64_t)->Conv1d<float>;
Conv1d(int64_t, int64_t, int64_t, Conv1dOptions)->Conv1d<float>;

template <FloatingElement T = float>
class ConvTranspose2d : public Module<T> {
 public:
  ConvTranspose2d(int64_t in_channels, int64_t out_channels, IntPair kernel_size,
                  ConvTranspose2dOptions options = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "ConvTranspose2d"; }
  std::string extra_repr() const override;

  Tensor<T> weight, bias;
  int64_t in_channels, out_channels;
  IntPair kernel_size;
  ConvTranspose2dOptions options;
};
ConvTranspose2d(int64_t, int64_t, IntPair)->ConvTranspose2d<float>;
ConvTranspose2d(int64_t, int64_t, IntPair, ConvTranspose2dOptions)->ConvTranspose2d<float>;

template <FloatingElement T = float>
class ConvTranspose1d : public Module<T> {
 public:
  ConvTranspose1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, ConvTranspose1dOptions options = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "ConvTranspose1d"; }
  std::string extra_repr() const override;

  Tensor<T> weight, bias;
  int64_t in_channels, out_channels, kernel_size;
  ConvTranspose1dOptions options;
};
ConvTranspose1d(int64_t, int64_t, int64_t)->ConvTranspose1d<float>;
ConvTranspose1d(int64_t, int64_t, int64_t, ConvTranspose1dOptions)->ConvTranspose1d<float>;

extern template class ConvTranspose1d<float>;
extern template class ConvTranspose1d<double>;
extern template class Conv2d<float>;
extern template class Conv2d<double>;
extern template class Conv1d<float>;
extern template class Conv1d<double>;
extern template class ConvTranspose2d<float>;
extern template class ConvTranspose2d<double>;

}  // namespace ember::nn
