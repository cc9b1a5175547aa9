#pragma once
// The argument checks every explain and adversarial function makes before it runs anything.
#include <cmath>
#include <string>

#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"

namespace ember::explain::detail {

// The checks of x every method makes before it runs anything: a batch of finite values.
template <FloatingElement T>
int64_t check_batch(const char* method, const Tensor<T>& x) {
  if (!x.defined() || x.dim() < 1 || x.size(0) < 1) {
    throw ShapeError(std::string(method) + ": x must be a batch [N, ...] with N >= 1, got " +
                     (x.defined() ? x.shape().str() : "an undefined tensor"));
  }
  const std::vector<T> values = x.contiguous().to_vector();
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(static_cast<double>(values[i]))) {
      throw ValueError(std::string(method) + ": x has a non-finite value (" +
                       std::to_string(static_cast<double>(values[i])) + ") at flat index " + std::to_string(i));
    }
  }
  return x.size(0);
}

// ... and of the targets: one class index per sample.
template <FloatingElement T>
int64_t check_inputs(const char* method, const Tensor<T>& x, const Tensor<int64_t>& target) {
  const int64_t n = check_batch(method, x);
  if (!target.defined() || target.shape() != Shape{n}) {
    throw ShapeError(std::string(method) + ": target must hold one class index per sample, shape [" +
                     std::to_string(n) + "], got " + (target.defined() ? target.shape().str() : "an undefined tensor"));
  }
  return n;
}

// logits[i, target[i]] for each sample, after checking the logits' shape and the targets' range.
template <FloatingElement T>
Tensor<T> target_logits(const char* method, const Tensor<T>& logits, const Tensor<int64_t>& target) {
  const int64_t n = target.size(0);
  if (logits.dim() != 2 || logits.size(0) != n) {
    throw ShapeError(std::string(method) + ": the model must map a batch of " + std::to_string(n) +
                     " inputs to logits [" + std::to_string(n) + ", C], got " + logits.shape().str());
  }
  const std::vector<int64_t> t = target.contiguous().to_vector();
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] < 0 || t[i] >= logits.size(1)) {
      throw IndexError(std::string(method) + ": target[" + std::to_string(i) + "] = " + std::to_string(t[i]) +
                       " is out of range for " + std::to_string(logits.size(1)) + " classes");
    }
  }
  return logits.gather(1, target.reshape({n, 1})).reshape({n});
}

}  // namespace ember::explain::detail
