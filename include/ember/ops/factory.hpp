#pragma once
// Tensor factories. Shapes are a braced list or a std::vector<int64_t>: zeros<float>({2, 3}).
#include <vector>

#include "ember/core/generator.hpp"
#include "ember/core/tensor.hpp"

namespace ember {

/// A tensor of `shape` holding `values` (row-major; their count must equal the element count).
template <Element T = float>
Tensor<T> tensor(std::vector<T> values, const Shape& shape, bool requires_grad = false);
/// A 1-D tensor holding `values`.
template <Element T = float>
Tensor<T> tensor(std::vector<T> values);
/// A 0-dim tensor holding one value.
template <Element T = float>
Tensor<T> scalar_tensor(T value, bool requires_grad = false);

template <Element T = float>
Tensor<T> empty(const Shape& shape, bool requires_grad = false);
template <Element T = float>
Tensor<T> zeros(const Shape& shape, bool requires_grad = false);
template <Element T = float>
Tensor<T> ones(const Shape& shape, bool requires_grad = false);
template <Element T = float>
Tensor<T> full(const Shape& shape, T value, bool requires_grad = false);
/// start, start + step, ... < end (as torch.arange).
template <Element T = float>
Tensor<T> arange(double start, double end, double step = 1.0);
template <Element T = float>
Tensor<T> arange(double end);
/// `steps` values evenly spaced from start to end inclusive.
template <FloatingElement T = float>
Tensor<T> linspace(double start, double end, int64_t steps);
/// n x m identity (m = n by default).
template <Element T = float>
Tensor<T> eye(int64_t n, int64_t m = -1);

/// Uniform in [0, 1).
template <FloatingElement T = float>
Tensor<T> rand(const Shape& shape, bool requires_grad = false, Generator* gen = nullptr);
/// Standard normal.
template <FloatingElement T = float>
Tensor<T> randn(const Shape& shape, bool requires_grad = false, Generator* gen = nullptr);
/// rand(shape, &gen) and randn(shape, &gen), as LibTorch's randn(size, generator): without these a
/// Generator* would convert to the bool requires_grad and the generator would be ignored.
template <FloatingElement T = float>
Tensor<T> rand(const Shape& shape, Generator* gen) {
  return rand<T>(shape, false, gen);
}
template <FloatingElement T = float>
Tensor<T> randn(const Shape& shape, Generator* gen) {
  return randn<T>(shape, false, gen);
}
/// Uniform integers in [low, high).
template <Element T = int64_t>
Tensor<T> randint(int64_t low, int64_t high, const Shape& shape, Generator* gen = nullptr);
/// 1 with probability p (elementwise), else 0.
template <FloatingElement T = float>
Tensor<T> bernoulli(const Tensor<T>& p, Generator* gen = nullptr);
template <FloatingElement T = float>
Tensor<T> bernoulli(const Shape& shape, double p, Generator* gen = nullptr);
/// A random permutation of 0..n-1.
Tensor<int64_t> randperm(int64_t n, Generator* gen = nullptr);

template <Element T>
Tensor<T> empty_like(const Tensor<T>& t) { return empty<T>(t.shape()); }
template <Element T>
Tensor<T> zeros_like(const Tensor<T>& t) { return zeros<T>(t.shape()); }
template <Element T>
Tensor<T> ones_like(const Tensor<T>& t) { return ones<T>(t.shape()); }
template <Element T>
Tensor<T> full_like(const Tensor<T>& t, T value) { return full<T>(t.shape(), value); }
template <FloatingElement T>
Tensor<T> rand_like(const Tensor<T>& t, Generator* gen = nullptr) { return rand<T>(t.shape(), false, gen); }
template <FloatingElement T>
Tensor<T> randn_like(const Tensor<T>& t, Generator* gen = nullptr) { return randn<T>(t.shape(), false, gen); }

}  // namespace ember
