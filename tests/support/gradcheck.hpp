#pragma once
// Finite-difference gradient checks in double (central differences), as torch.autograd.gradcheck.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ember/ember.hpp"

namespace ember::testing {

using TensorD = Tensor<double>;
using Fn = std::function<TensorD(const std::vector<TensorD>&)>;

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
};

/// The full Jacobian of f at `inputs` by central differences: rows = output elements, one block
/// of columns per input.
inline std::vector<std::vector<double>> numerical_jacobian(const Fn& f,
                                                           const std::vector<TensorD>& inputs,
                                                           size_t which, double eps) {
  // Grad mode stays on: f may itself call autograd::grad (gradgradcheck).
  TensorD x = inputs[which];
  double* p = x.data();
  const int64_t n = x.numel();
  std::vector<std::vector<double>> cols;
  for (int64_t i = 0; i < n; ++i) {
    const double orig = p[i];
    p[i] = orig + eps;
    std::vector<double> plus = f(inputs).to_vector();
    p[i] = orig - eps;
    std::vector<double> minus = f(inputs).to_vector();
    p[i] = orig;
    std::vector<double> col(plus.size());
    for (size_t j = 0; j < plus.size(); ++j) col[j] = (plus[j] - minus[j]) / (2 * eps);
    cols.push_back(std::move(col));
  }
  return cols;  // cols[i][j] = d out_j / d x_i
}

/// Checks d f / d inputs (every input must be a contiguous leaf that requires grad).
inline ::testing::AssertionResult gradcheck(const Fn& f, const std::vector<TensorD>& inputs,
                                            GradcheckOptions opt = {}) {
  TensorD out = f(inputs);
  const int64_t n_out = out.numel();
  if (!out.requires_grad()) {
    return ::testing::AssertionFailure() << "the output does not require grad";
  }
  // Analytical Jacobian: one backward per output element with a one-hot gradient.
  std::vector<std::vector<std::vector<double>>> analytical(inputs.size());
  for (int64_t j = 0; j < n_out; ++j) {
    std::vector<double> onehot(static_cast<size_t>(n_out), 0.0);
    onehot[static_cast<size_t>(j)] = 1.0;
    std::vector<TensorD> grads = autograd::grad({out}, inputs, {tensor<double>(onehot, out.shape())},
                                                /*create_graph=*/false, /*retain_graph=*/true,
                                                /*allow_unused=*/true);
    for (size_t k = 0; k < inputs.size(); ++k) {
      std::vector<double> g = grads[k].defined() ? grads[k].to_vector()
                                                 : std::vector<double>(static_cast<size_t>(inputs[k].numel()), 0.0);
      if (static_cast<int64_t>(g.size()) != inputs[k].numel()) {
        return ::testing::AssertionFailure()
               << "gradient " << k << " has " << g.size() << " elements, input has "
               << inputs[k].numel();
      }
      analytical[k].push_back(std::move(g));  // analytical[k][j][i]
    }
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    auto numerical = numerical_jacobian(f, inputs, k, opt.eps);
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      for (int64_t j = 0; j < n_out; ++j) {
        const double a = n_out ? analytical[k][static_cast<size_t>(j)][static_cast<size_t>(i)] : 0.0;
        const double num = numerical[static_cast<size_t>(i)][static_cast<size_t>(j)];
        if (!(std::fabs(a - num) <= opt.atol + opt.rtol * std::fabs(num))) {
          return ::testing::AssertionFailure()
                 << "input " << k << " element " << i << ", output element " << j
                 << ": analytical " << a << " vs numerical " << num;
        }
      }
    }
  }
  return ::testing::AssertionSuccess();
}

/// Checks the gradient of the gradient: the map inputs -> d<f(inputs), v>/d inputs (v fixed and
/// random) is itself gradchecked, which exercises every backward formula's own backward.
inline ::testing::AssertionResult gradgradcheck(const Fn& f, const std::vector<TensorD>& inputs,
                                                GradcheckOptions opt = {}) {
  Generator gen(1234);
  TensorD probe = f(inputs);
  TensorD v = randn<double>(probe.shape(), false, &gen);
  Fn first_grads = [&f, v](const std::vector<TensorD>& xs) {
    TensorD out = f(xs);
    std::vector<TensorD> g = autograd::grad({out}, xs, {v}, /*create_graph=*/true,
                                            /*retain_graph=*/true, /*allow_unused=*/true);
    std::vector<TensorD> flat;
    for (size_t k = 0; k < g.size(); ++k) {
      flat.push_back(g[k].defined() ? g[k].reshape({-1}) : zeros<double>({xs[k].numel()}));
    }
    TensorD all = cat(flat, 0);
    if (!all.requires_grad()) all = all + (xs[0] * 0.0).sum();  // keeps a graph when constant
    return all;
  };
  return gradcheck(first_grads, inputs, opt);
}

/// A random double leaf that requires grad.
inline TensorD leaf(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator gen(seed);
  TensorD t = rand<double>(shape, false, &gen) * (hi - lo) + lo;
  return t.detach().requires_grad_(true);
}

/// The same values as `x` in a non-contiguous layout (transposed storage, or stride 2 for 1-D).
inline TensorD noncontiguous(const TensorD& x) {
  if (x.dim() >= 2) return x.transpose(0, 1).contiguous().transpose(0, 1);
  if (x.dim() == 1) return stack(std::vector<TensorD>{x, x}, 1).select(1, 0);
  return x;
}

}  // namespace ember::testing
