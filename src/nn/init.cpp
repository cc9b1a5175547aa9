#include "ember/nn/init.hpp"

#include <cmath>
#include <mutex>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"

namespace ember::nn::init {

namespace {
Generator& pick(Generator* gen) { return gen ? *gen : default_generator(); }

// Writes f() into every element of t (any layout) under no-grad.
template <FloatingElement T, class F>
Tensor<T>& fill_with(Tensor<T>& t, Generator* gen, F f) {
  if (!t.defined()) throw ValueError("init: the tensor is undefined");
  NoGradGuard no_grad;
  Generator& g = pick(gen);
  std::vector<T> values(static_cast<size_t>(t.numel()));
  {
    std::lock_guard<std::mutex> lock(g.mutex());
    for (auto& v : values) v = static_cast<T>(f(g));
  }
  Tensor<T> src = Tensor<T>::from_base(t).detach().clone();
  std::copy(values.begin(), values.end(), src.data());
  t.copy_(src);
  return t;
}
}  // namespace

Fans calculate_fan_in_and_fan_out(const TensorBase& t) {
  if (t.dim() < 2) {
    throw ValueError("init: fan in and fan out need a tensor with at least 2 dims, got shape " +
                     t.shape().str());
  }
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.shape()[d];
  return {t.shape()[1] * receptive, t.shape()[0] * receptive};
}

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" || nl == "sigmoid" ||
      nl == "conv_transpose1d" || nl == "conv_transpose2d") {
    return 1.0;
  }
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 3.0 / 4.0;
  throw ValueError("calculate_gain: unsupported nonlinearity \"" + nl + "\"");
}

template <FloatingElement T>
Tensor<T>& uniform_(Tensor<T>& t, double a, double b, Generator* gen) {
  return fill_with(t, gen, [a, b](Generator& g) { return a + (b - a) * g.uniform(); });
}

template <FloatingElement T>
Tensor<T>& normal_(Tensor<T>& t, double mean, double std, Generator* gen) {
  return fill_with(t, gen, [mean, std](Generator& g) { return mean + std * g.normal(); });
}

template <FloatingElement T>
Tensor<T>& trunc_normal_(Tensor<T>& t, double mean, double std, double a, double b, Generator* gen) {
  if (!(a < b)) throw ValueError("trunc_normal_: expected a < b");
  return fill_with(t, gen, [=](Generator& g) {
    for (int tries = 0; tries < 1000; ++tries) {
      double v = mean + std * g.normal();
      if (v >= a && v <= b) return v;
    }
    return std::fmin(std::fmax(mean, a), b);  // the interval is far in the tail
  });
}

template <FloatingElement T>
Tensor<T>& constant_(Tensor<T>& t, double value) {
  if (!t.defined()) throw ValueError("init: the tensor is undefined");
  NoGradGuard no_grad;
  t.fill_(static_cast<T>(value));
  return t;
}
template <FloatingElement T> Tensor<T>& zeros_(Tensor<T>& t) { return constant_(t, 0.0); }
template <FloatingElement T> Tensor<T>& ones_(Tensor<T>& t) { return constant_(t, 1.0); }

template <FloatingElement T>
Tensor<T>& xavier_uniform_(Tensor<T>& t, double gain, Generator* gen) {
  Fans f = calculate_fan_in_and_fan_out(t);
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(f.fan_in + f.fan_out));
  return uniform_(t, -bound, bound, gen);
}

template <FloatingElement T>
Tensor<T>& xavier_normal_(Tensor<T>& t, double gain, Generator* gen) {
  Fans f = calculate_fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out)), gen);
}

namespace {
double kaiming_std(const TensorBase& t, double a, FanMode mode, const std::string& nl) {
  Fans f = calculate_fan_in_and_fan_out(t);
  const int64_t fan = mode == FanMode::FanIn ? f.fan_in : f.fan_out;
  if (fan == 0) throw ValueError("kaiming init: a tensor with a zero-size dim has no fan");
  return calculate_gain(nl, a) / std::sqrt(static_cast<double>(fan));
}
}  // namespace

template <FloatingElement T>
Tensor<T>& kaiming_uniform_(Tensor<T>& t, double a, FanMode mode, const std::string& nl, Generator* gen) {
  const double bound = std::sqrt(3.0) * kaiming_std(t, a, mode, nl);
  return uniform_(t, -bound, bound, gen);
}

template <FloatingElement T>
Tensor<T>& kaiming_normal_(Tensor<T>& t, double a, FanMode mode, const std::string& nl, Generator* gen) {
  return normal_(t, 0.0, kaiming_std(t, a, mode, nl), gen);
}

template <FloatingElement T>
Tensor<T>& orthogonal_(Tensor<T>& t, double gain, Generator* gen) {
  if (!t.defined() || t.dim() < 2) {
    throw ValueError("orthogonal_: expected a tensor with at least 2 dims");
  }
  const int64_t rows = t.shape()[0], cols = t.numel() / rows;
  // Gram-Schmidt (twice, for stability) on the columns of a normal sample of the taller shape;
  // signs follow the diagonal of R, as in PyTorch, so the result is uniform (Haar).
  const bool transpose = rows < cols;
  const int64_t m = transpose ? cols : rows, n = transpose ? rows : cols;
  Generator& g = pick(gen);
  std::vector<double> a(static_cast<size_t>(m * n));
  {
    std::lock_guard<std::mutex> lock(g.mutex());
    for (auto& v : a) v = g.normal();
  }
  auto at = [&](int64_t i, int64_t j) -> double& { return a[static_cast<size_t>(i * n + j)]; };
  for (int64_t j = 0; j < n; ++j) {
    double r_jj = 0;
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t k = 0; k < j; ++k) {
        double dot = 0;
        for (int64_t i = 0; i < m; ++i) dot += at(i, k) * at(i, j);
        for (int64_t i = 0; i < m; ++i) at(i, j) -= dot * at(i, k);
      }
    }
    for (int64_t i = 0; i < m; ++i) r_jj += at(i, j) * at(i, j);
    r_jj = std::sqrt(r_jj);
    for (int64_t i = 0; i < m; ++i) at(i, j) /= (r_jj > 0 ? r_jj : 1.0);
  }
  std::vector<T> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[static_cast<size_t>(r * cols + c)] = static_cast<T>(gain * (transpose ? at(c, r) : at(r, c)));
  NoGradGuard no_grad;
  Tensor<T> src = Tensor<T>::from_base(t).detach().clone();
  std::copy(out.begin(), out.end(), src.data());
  t.copy_(src);
  return t;
}

#define EMBER_INSTANTIATE(T)                                                                   \
  template Tensor<T>& uniform_(Tensor<T>&, double, double, Generator*);                        \
  template Tensor<T>& normal_(Tensor<T>&, double, double, Generator*);                         \
  template Tensor<T>& trunc_normal_(Tensor<T>&, double, double, double, double, Generator*);   \
  template Tensor<T>& constant_(Tensor<T>&, double);                                           \
  template Tensor<T>& zeros_(Tensor<T>&);                                                      \
  template Tensor<T>& ones_(Tensor<T>&);                                                       \
  template Tensor<T>& xavier_uniform_(Tensor<T>&, double, Generator*);                         \
  template Tensor<T>& xavier_normal_(Tensor<T>&, double, Generator*);                          \
  template Tensor<T>& kaiming_uniform_(Tensor<T>&, double, FanMode, const std::string&, Generator*); \
  template Tensor<T>& kaiming_normal_(Tensor<T>&, double, FanMode, const std::string&, Generator*);  \
  template Tensor<T>& orthogonal_(Tensor<T>&, double, Generator*);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::nn::init
