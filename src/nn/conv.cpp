#include "ember/nn/conv.hpp"

#include <cmath>
#include <cstring>

#include "ember/core/error.hpp"
#include "ember/nn/init.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"

namespace ember::nn {

Padding::Padding(const std::string& m) {
  if (m == "same") {
    same = true;
  } else if (m != "valid") {
    throw ValueError("conv: padding must be a number, {h, w}, \"valid\" or \"same\", got \"" + m + "\"");
  }
}

Conv2dGeometry conv2d_geometry(const Conv2dOptions& o, int64_t kh, int64_t kw, const char* op) {
  Conv2dGeometry g;
  g.stride = {o.stride.h, o.stride.w};
  g.dilation = {o.dilation.h, o.dilation.w};
  g.groups = o.groups;
  if (o.padding.same) {
    if (o.stride.h != 1 || o.stride.w != 1) {
      throw ValueError(std::string(op) + ": padding \"same\" needs stride 1, as in PyTorch");
    }
    const int64_t th = o.dilation.h * (kh - 1), tw = o.dilation.w * (kw - 1);
    g.padding = {th / 2, th - th / 2, tw / 2, tw - tw / 2};
  } else {
    g.padding = {o.padding.h, o.padding.h, o.padding.w, o.padding.w};
  }
  return g;
}

namespace {


// PyTorch's default for conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
template <FloatingElement T>
void init_conv(Tensor<T>& weight, Tensor<T>& bias, int64_t fan_in) {
  if (weight.numel() > 0) init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined() && fan_in > 0) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    init::uniform_(bias, -bound, bound);
  }
}

std::string pair_str(const IntPair& p) {
  // Appends rather than "(" + ...: GCC 12 warns falsely (-Wrestrict) on that form.
  std::string s("(");
  s.append(std::to_string(p.h)).append(", ").append(std::to_string(p.w)).append(")");
  return s;
}

void check_channels(const char* op, int64_t in, int64_t out, int64_t groups) {
  if (in <= 0 || out <= 0 || groups <= 0 || in % groups != 0 || out % groups != 0) {
    throw ValueError(std::string(op) + ": in_channels " + std::to_string(in) + " and out_channels " +
                     std::to_string(out) + " must be positive and divisible by groups " +
                     std::to_string(groups));
  }
}

}  // namespace

namespace functional {

template <FloatingElement T>
Tensor<T> conv2d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias, const Conv2dOptions& o) {
  if (!weight.defined() || weight.dim() != 4) {
    throw ShapeError("conv2d: weight must be 4-D [out, in / groups, kh, kw], got " +
                     (weight.defined() ? weight.shape().str() : std::string("undefined")));
  }
  return ember::conv2d(x, weight, bias, conv2d_geometry(o, weight.shape()[2], weight.shape()[3], "conv2d"));
}

template <FloatingElement T>
Tensor<T> conv1d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias, const Conv1dOptions& o) {
  if (x.defined() && x.dim() == 2) return conv1d(x.unsqueeze(0), weight, bias, o).squeeze(0);  // unbatched [C, L]
  if (!x.defined() || x.dim() != 3) {
    throw ShapeError("conv1d: input must be 2-D [C, L] or 3-D [N, C, L], got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (!weight.defined() || weight.dim() != 3) {
    throw ShapeError("conv1d: weight must be 3-D [out, in / groups, k], got " +
                     (weight.defined() ? weight.shape().str() : std::string("undefined")));
  }
  if (o.groups > 0 && x.shape()[1] != weight.shape()[1] * o.groups) {
    throw ShapeError("conv1d: input " + x.shape().str() + " has " + std::to_string(x.shape()[1]) +
                     " channels but weight " + weight.shape().str() + " expects " +
                     std::to_string(weight.shape()[1] * o.groups) + " (" + std::to_string(weight.shape()[1]) +
                     " per group x " + std::to_string(o.groups) + " groups)");
  }
  Conv2dOptions o2{IntPair(1, o.stride), o.padding, IntPair(1, o.dilation), o.groups, o.bias};
  if (!o.padding.same) o2.padding = Padding(0, o.padding.w);
  Conv2dGeometry g = conv2d_geometry(o2, 1, weight.shape()[2], "conv1d");
  return ember::conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, g).squeeze(2);
}

template <FloatingElement T>
Tensor<T> conv_transpose2d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias,
                           const ConvTranspose2dOptions& o) {
  if (x.defined() && x.dim() == 3) return conv_transpose2d(x.unsqueeze(0), weight, bias, o).squeeze(0);
  if (!x.defined() || x.dim() != 4) {
    throw ShapeError("conv_transpose2d: input must be 3-D [C, H, W] or 4-D [N, C, H, W], got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (!weight.defined() || weight.dim() != 4) {
    throw ShapeError("conv_transpose2d: weight must be 4-D [in, out / groups, kh, kw]");
  }
  if (x.shape()[1] != weight.shape()[0]) {
    throw ShapeError("conv_transpose2d: input " + x.shape().str() + " has " + std::to_string(x.shape()[1]) +
                     " channels but weight " + weight.shape().str() + " expects " +
                     std::to_string(weight.shape()[0]));
  }
  if (o.output_padding.h >= std::max(o.stride.h, o.dilation.h) ||
      o.output_padding.w >= std::max(o.stride.w, o.dilation.w) || o.output_padding.h < 0 ||
      o.output_padding.w < 0) {
    throw ValueError("conv_transpose2d: output_padding must be smaller than stride or dilation");
  }
  Conv2dGeometry g;
  g.stride = {o.stride.h, o.stride.w};
  g.dilation = {o.dilation.h, o.dilation.w};
  g.groups = o.groups;
  // The extra output rows and columns of output_padding are padding at the bottom and right of
  // the forward convolution this is the gradient of.
  g.padding = {o.padding.h, o.padding.h - o.output_padding.h, o.padding.w, o.padding.w - o.output_padding.w};
  const int64_t kh = weight.shape()[2], kw = weight.shape()[3];
  const int64_t ho = (x.shape()[2] - 1) * o.stride.h - 2 * o.padding.h + o.dilation.h * (kh - 1) +
                     o.output_padding.h + 1;
  const int64_t wo = (x.shape()[3] - 1) * o.stride.w - 2 * o.padding.w + o.dilation.w * (kw - 1) +
                     o.output_padding.w + 1;
  if (ho <= 0 || wo <= 0) {
    throw ShapeError("conv_transpose2d: input " + x.shape().str() + " gives an empty output");
  }
  Tensor<T> y = conv2d_input_grad(x, weight, {ho, wo}, g);
  if (bias.defined()) y = y + bias.reshape({1, bias.numel(), 1, 1});
  return y;
}

template <FloatingElement T>
Tensor<T> conv_transpose1d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias,
                           const ConvTranspose1dOptions& o) {
  if (x.defined() && x.dim() == 2) return conv_transpose1d(x.unsqueeze(0), weight, bias, o).squeeze(0);
  if (!x.defined() || x.dim() != 3) {
    throw ShapeError("conv_transpose1d: input must be 2-D [C, L] or 3-D [N, C, L], got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (!weight.defined() || weight.dim() != 3) {
    throw ShapeError("conv_transpose1d: weight must be 3-D [in, out / groups, k], got " +
                     (weight.defined() ? weight.shape().str() : std::string("undefined")));
  }
  if (x.shape()[1] != weight.shape()[0]) {
    throw ShapeError("conv_transpose1d: input " + x.shape().str() + " has " + std::to_string(x.shape()[1]) +
                     " channels but weight " + weight.shape().str() + " expects " + std::to_string(weight.shape()[0]));
  }
  const ConvTranspose2dOptions o2{IntPair(1, o.stride), IntPair(0, o.padding), IntPair(0, o.output_padding),
                                  o.groups, o.bias, IntPair(1, o.dilation)};
  return conv_transpose2d(x.unsqueeze(2), weight.unsqueeze(2), bias, o2).squeeze(2);
}

}  // namespace functional

template <FloatingElement T>
ConvTranspose1d<T>::ConvTranspose1d(int64_t in, int64_t out, int64_t k, ConvTranspose1dOptions o)
    : in_channels(in), out_channels(out), kernel_size(k), options(o) {
  check_channels("ConvTranspose1d", in, out, o.groups);
  if (k <= 0) throw ValueError("ConvTranspose1d: kernel_size must be positive");
  weight = this->register_parameter("weight", empty<T>({in, out / o.groups, k}));
  if (o.bias) bias = this->register_parameter("bias", empty<T>({out}));
  init_conv(weight, bias, out / o.groups * k);  // PyTorch's fan: weight.size(1) * k
}

template <FloatingElement T>
Tensor<T> ConvTranspose1d<T>::forward(const Tensor<T>& x) {
  return functional::conv_transpose1d(x, weight, bias, options);
}

template <FloatingElement T>
std::string ConvTranspose1d<T>::extra_repr() const {
  return std::to_string(in_channels) + ", " + std::to_string(out_channels) + ", kernel_size=(" +
         std::to_string(kernel_size) + ",), stride=(" + std::to_string(options.stride) + ",)";
}

template <FloatingElement T>
Conv2d<T>::Conv2d(int64_t in, int64_t out, IntPair k, Conv2dOptions o)
    : in_channels(in), out_channels(out), kernel_size(k), options(o) {
  check_channels("Conv2d", in, out, o.groups);
  if (k.h <= 0 || k.w <= 0) throw ValueError("Conv2d: kernel_size must be positive");
  weight = this->register_parameter("weight", empty<T>({out, in / o.groups, k.h, k.w}));
  if (o.bias) bias = this->register_parameter("bias", empty<T>({out}));
  init_conv(weight, bias, in / o.groups * k.h * k.w);
}

template <FloatingElement T>
Tensor<T> Conv2d<T>::forward(const Tensor<T>& x) {
  return functional::conv2d(x, weight, bias, options);
}

template <FloatingElement T>
std::string Conv2d<T>::extra_repr() const {
  std::string s = std::to_string(in_channels) + ", " + std::to_string(out_channels) +
                  ", kernel_size=" + pair_str(kernel_size) + ", stride=" + pair_str(options.stride);
  if (options.padding.same) {
    s += ", padding=same";
  } else if (options.padding.h || options.padding.w) {
    s += ", padding=(" + std::to_string(options.padding.h) + ", " + std::to_string(options.padding.w) + ")";
  }
  if (options.dilation.h != 1 || options.dilation.w != 1) s += ", dilation=" + pair_str(options.dilation);
  if (options.groups != 1) s += ", groups=" + std::to_string(options.groups);
  if (!options.bias) s += ", bias=False";
  return s;
}

template <FloatingElement T>
Conv1d<T>::Conv1d(int64_t in, int64_t out, int64_t k, Conv1dOptions o)
    : in_channels(in), out_channels(out), kernel_size(k), options(o) {
  check_channels("Conv1d", in, out, o.groups);
  if (k <= 0) throw ValueError("Conv1d: kernel_size must be positive");
  weight = this->register_parameter("weight", empty<T>({out, in / o.groups, k}));
  if (o.bias) bias = this->register_parameter("bias", empty<T>({out}));
  init_conv(weight, bias, in / o.groups * k);
}

template <FloatingElement T>
Tensor<T> Conv1d<T>::forward(const Tensor<T>& x) {
  return functional::conv1d(x, weight, bias, options);
}

template <FloatingElement T>
std::string Conv1d<T>::extra_repr() const {
  return std::to_string(in_channels) + ", " + std::to_string(out_channels) + ", kernel_size=(" +
         std::to_string(kernel_size) + ",), stride=(" + std::to_string(options.stride) + ",)";
}

template <FloatingElement T>
ConvTranspose2d<T>::ConvTranspose2d(int64_t in, int64_t out, IntPair k, ConvTranspose2dOptions o)
    : in_channels(in), out_channels(out), kernel_size(k), options(o) {
  check_channels("ConvTranspose2d", in, out, o.groups);
  if (k.h <= 0 || k.w <= 0) throw ValueError("ConvTranspose2d: kernel_size must be positive");
  weight = this->register_parameter("weight", empty<T>({in, out / o.groups, k.h, k.w}));
  if (o.bias) bias = this->register_parameter("bias", empty<T>({out}));
  // PyTorch computes the fan from weight.size(1) here: out / groups * kh * kw.
  init_conv(weight, bias, out / o.groups * k.h * k.w);
}

template <FloatingElement T>
Tensor<T> ConvTranspose2d<T>::forward(const Tensor<T>& x) {
  return functional::conv_transpose2d(x, weight, bias, options);
}

template <FloatingElement T>
std::string ConvTranspose2d<T>::extra_repr() const {
  return std::to_string(in_channels) + ", " + std::to_string(out_channels) + ", kernel_size=" +
         pair_str(kernel_size) + ", stride=" + pair_str(options.stride);
}

#define EMBER_INSTANTIATE(T)                                                                      \
  template Tensor<T> functional::conv2d(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,     \
                                        const Conv2dOptions&);                                    \
  template Tensor<T> functional::conv1d(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,     \
                                        const Conv1dOptions&);                                    \
  template Tensor<T> functional::conv_transpose2d(const Tensor<T>&, const Tensor<T>&,             \
                                                  const Tensor<T>&, const ConvTranspose2dOptions&); \
  template Tensor<T> functional::conv_transpose1d(const Tensor<T>&, const Tensor<T>&,             \
                                                  const Tensor<T>&, const ConvTranspose1dOptions&); \
  template class ConvTranspose1d<T>;                                                              \
  template class Conv2d<T>;                                                                       \
  template class Conv1d<T>;                                                                       \
  template class ConvTranspose2d<T>;
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::nn
