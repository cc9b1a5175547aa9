#pragma once
// Gradients without touching grad(): ember::autograd::grad({y}, {x}, /*create_graph=*/true).
#include <functional>
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

/// Runs `callback` once the backward pass now running on this thread has finished (every
/// gradient accumulated), before backward() returns; PyTorch's Engine.queue_callback. Data
/// parallel training uses it to wait for its gradient all-reduces. Outside a backward pass it
/// throws AutogradError. Callbacks run in the order queued; one that throws ends the backward
/// with its exception (later callbacks do not run).
void queue_callback(std::function<void()> callback);

}  // namespace ember::autograd
