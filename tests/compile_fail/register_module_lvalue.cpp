// Must not compile: registering a module lvalue (LibTorch's member pattern with a module value)
// would leave the member a moved-from shell. The compiler's message says what to write instead.
#include "ember/nn/linear.hpp"

struct Net : ember::nn::Module<float> {
  ember::nn::Linear<float> fc1{3, 4};
  Net() { register_module("fc1", fc1); }
  ember::Tensor<float> forward(const ember::Tensor<float>& x) override { return fc1(x); }
  std::string type_name() const override { return "Net"; }
};

int main() { Net net; }
