#include <ember/ember.hpp>

#include <cstdio>

int main() {
  ember::manual_seed(42);
  ember::Tensor<double> a = ember::randn<double>({3, 4}, /*requires_grad=*/true);
  auto b = ember::tensor<double>({1, 2, 3, 4}, {4});
  auto y = (ember::tanh(a * b + 1.0) * ember::exp(a)).sum();
  y.backward();
  ember::Tensor<double> g = a.grad();
  std::printf("consumer: y = %.6f, grad shape [%lld, %lld]\n", y.item(),
              static_cast<long long>(g.shape()[0]), static_cast<long long>(g.shape()[1]));
  return g.shape() == ember::Shape({3, 4}) ? 0 : 1;
}
