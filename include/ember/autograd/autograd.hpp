#pragma once
// Gradients without touching grad(): ember::autograd::grad({y}, {x}, /*create_graph=*/true).
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember::autograd {

/// d(sum of outputs)/d(inputs). Each output must have one element unless grad_outputs are given.
/// With create_graph the results are differentiable (higher-order gradients); the graph is kept
/// when create_graph or retain_graph is set. An input that the outputs do not depend on throws
/// AutogradError unless allow_unused, which gives an undefined tensor for it.
std::vector<Tensor<float>> grad(const std::vector<Tensor<float>>& outputs,
                                const std::vector<Tensor<float>>& inputs, bool create_graph = false,
                                bool allow_unused = false);
std::vector<Tensor<double>> grad(const std::vector<Tensor<double>>& outputs,
                                 const std::vector<Tensor<double>>& inputs,
                                 bool create_graph = false, bool allow_unused = false);
std::vector<Tensor<float>> grad(const std::vector<Tensor<float>>& outputs,
                                const std::vector<Tensor<float>>& inputs,
                                const std::vector<Tensor<float>>& grad_outputs,
                                bool create_graph = false, bool retain_graph = false,
                                bool allow_unused = false);
std::vector<Tensor<double>> grad(const std::vector<Tensor<double>>& outputs,
                                 const std::vector<Tensor<double>>& inputs,
                                 const std::vector<Tensor<double>>& grad_outputs,
                                 bool create_graph = false, bool retain_graph = false,
                                 bool allow_unused = false);

}  // namespace ember::autograd
