// LibTorch's autograd example, ported: basic operations, higher-order gradients (a gradient
// penalty) and two custom functions (a linear layer, and a multiplication by a constant kept in
// saved_data). What changed: see README.md.
#include <iostream>
#include <vector>

#include <ember/ember.hpp>

using ember::Tensor;
using ember::autograd::FunctionCtx;

void basic_autograd_operations_example() {
  std::cout << "====== Running: \"Basic autograd operations\" ======\n";
  Tensor<float> x = ember::ones<float>({2, 2}, /*requires_grad=*/true);
  std::cout << x << "\n";
  Tensor<float> y = x + 2.0;
  std::cout << y << "\n";
  std::cout << y.grad_fn()->name() << "\n";  // the op's name ("add"; LibTorch prints AddBackward1)
  Tensor<float> z = y * y * 3.0;
  Tensor<float> out = z.mean();
  std::cout << z << "\n" << out << "\n";
  out.backward();
  std::cout << x.grad() << "\n";

  // A vector-Jacobian product: backward of a non-scalar output with a gradient for it.
  x = ember::randn<float>({3}, true);
  y = x * 2.0;
  while (y.norm().item() < 1000) y = y * 2.0;
  const Tensor<float> v = ember::tensor<float>({0.1f, 1.0f, 0.0001f});
  y.backward(v);
  std::cout << x.grad() << "\n";

  std::cout << x.requires_grad() << "\n" << x.pow(2.0).requires_grad() << "\n";
  {
    ember::NoGradGuard no_grad;
    std::cout << x.pow(2.0).requires_grad() << "\n";
  }
  // detach() gives a tensor with the same values that is not in the graph.
  Tensor<float> d = x.detach();
  std::cout << d.requires_grad() << "\n" << ember::equal(x, d) << "\n";
}

void compute_higher_order_gradients_example() {
  std::cout << "====== Running \"Computing higher-order gradients\" ======\n";
  // One training step of a linear model with a gradient penalty on its input.
  ember::nn::Linear model(4, 3);
  Tensor<float> input = ember::randn<float>({3, 4}, true);
  Tensor<float> output = model(input);
  Tensor<float> loss = ember::nn::functional::mse_loss(output, ember::zeros<float>({3, 3}));
  // create_graph: the gradient is itself differentiable.
  Tensor<float> grad_output = ember::ones_like(output);
  Tensor<float> gradient = ember::autograd::grad({output}, {input}, {grad_output}, /*create_graph=*/true)[0];
  Tensor<float> gradient_penalty = (gradient.norm(2.0, 1) - 1.0).pow(2.0).mean();
  Tensor<float> combined = loss + gradient_penalty;
  combined.backward();
  std::cout << input.grad() << "\n";
}

// A linear layer as a custom function: y = x w^T + b.
struct LinearFunction : ember::autograd::Function<LinearFunction> {
  static Tensor<float> forward(FunctionCtx<float>& ctx, const Tensor<float>& input, const Tensor<float>& weight,
                               const Tensor<float>& bias) {
    ctx.save_for_backward({input, weight, bias});
    Tensor<float> output = input.matmul(weight.t());
    if (bias.defined()) output = output + bias.unsqueeze(0).expand(output.shape());
    return output;
  }
  static std::vector<Tensor<float>> backward(FunctionCtx<float>& ctx, const Tensor<float>& grad_output) {
    const std::vector<Tensor<float>> saved = ctx.saved();
    const Tensor<float>& input = saved[0];
    const Tensor<float>& weight = saved[1];
    Tensor<float> grad_input = grad_output.matmul(weight);
    Tensor<float> grad_weight = grad_output.t().matmul(input);
    Tensor<float> grad_bias = grad_output.sum(0);
    return {grad_input, grad_weight, grad_bias};
  }
};

// Multiplication by a number, kept in saved_data; forward's second argument gets no gradient.
struct MulConstant : ember::autograd::Function<MulConstant> {
  static Tensor<float> forward(FunctionCtx<float>& ctx, const Tensor<float>& tensor, double constant) {
    ctx.saved_data["constant"] = constant;
    return tensor * constant;
  }
  static std::vector<Tensor<float>> backward(FunctionCtx<float>& ctx, const Tensor<float>& grad_output) {
    return {grad_output * ctx.saved_data["constant"].toDouble(), Tensor<float>()};
  }
};

void custom_function_example() {
  std::cout << "====== Running \"Using custom autograd function in C++\" ======\n";
  {
    Tensor<float> x = ember::randn<float>({2, 3}, true);
    Tensor<float> weight = ember::randn<float>({4, 3}, true);
    Tensor<float> bias = ember::randn<float>({4}, true);
    Tensor<float> y = LinearFunction::apply(x, weight, bias);
    y.sum().backward();
    std::cout << x.grad() << "\n" << weight.grad() << "\n" << bias.grad() << "\n";
  }
  {
    Tensor<float> x = ember::randn<float>({2}, true);
    Tensor<float> y = MulConstant::apply(x, 5.5);
    y.sum().backward();
    std::cout << x.grad() << "\n";
  }
}

int main() {
  ember::manual_seed(0);
  std::cout << "ember autograd example\n\n";
  basic_autograd_operations_example();
  std::cout << "\n";
  compute_higher_order_gradients_example();
  std::cout << "\n";
  custom_function_example();
}
