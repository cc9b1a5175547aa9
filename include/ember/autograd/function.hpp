#pragma once
// Custom autograd functions: a forward and a backward of your own, like torch.autograd.Function.
//
//   struct Cube : ember::autograd::Function<Cube> {
//     static ember::Tensor<double> forward(ember::autograd::FunctionCtx<double>& ctx,
//                                          const ember::Tensor<double>& x) {
//       ctx.save_for_backward({x});
//       return x * x * x;
//     }
//     static std::vector<ember::Tensor<double>> backward(ember::autograd::FunctionCtx<double>& ctx,
//                                                        const ember::Tensor<double>& grad) {
//       auto x = ctx.saved()[0];
//       return {grad * x * x * 3.0};
//     }
//   };
//   auto y = Cube::apply(x);   // y.backward() calls Cube::backward
//
// forward runs with grad mode off. Its tensor arguments (Tensor<T>, in order) are the inputs that
// backward returns one gradient for (an undefined tensor means "no gradient"); other arguments
// are passed through. backward is recorded like any op: if it is written with ember ops, it is
// differentiable itself.
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/autograd/record.hpp"

namespace ember::autograd {

template <FloatingElement T>
class FunctionCtx {
 public:
  /// Tensors backward needs; in-place changes to them before backward are detected.
  void save_for_backward(const std::vector<Tensor<T>>& tensors) {
    saved_.clear();
    for (const auto& t : tensors) saved_.emplace_back(t);
  }
  /// The saved tensors (throws AutogradError if one was modified in place since).
  std::vector<Tensor<T>> saved() const {
    std::vector<Tensor<T>> out;
    for (const auto& s : saved_) out.push_back(s.get("custom function"));
    return out;
  }
  /// Non-tensor values for backward.
  std::map<std::string, double> data;
  /// Whether input i (counting tensor arguments only) requires grad.
  bool needs_input_grad(size_t i) const { return i < needs_.size() && needs_[i]; }

  std::vector<bool> needs_;  // set by Function::apply

 private:
  std::vector<SavedTensor<T>> saved_;
};

template <class Derived>
struct Function {
  template <class... Args>
  static auto apply(Args&&... args) {
    using Out = decltype(Derived::forward(std::declval<FunctionCtx<double>&>(), args...));
    return run<typename Out::value_type>(std::forward<Args>(args)...);
  }

 private:
  template <class T, class... Args>
  static Tensor<T> run(Args&&... args) {
    auto ctx = std::make_shared<FunctionCtx<T>>();
    std::vector<const TensorBase*> inputs;
    auto collect = [&](const auto& a) {
      if constexpr (std::is_same_v<std::decay_t<decltype(a)>, Tensor<T>>) {
        inputs.push_back(&a);
        ctx->needs_.push_back(a.requires_grad());
      }
    };
    (collect(args), ...);
    Tensor<T> out;
    {
      AutoGradMode off(false);
      out = Derived::forward(*ctx, args...);
    }
    bool any = false;
    for (const TensorBase* in : inputs) any = any || requires_grad_of(*in);
    if (any && grad_mode_enabled()) {
      // The output may alias an input; give it its own handle so that wiring it into the graph
      // does not touch the input's history.
      out = out.detach();
      const size_t n = inputs.size();
      record(out, typeid(Derived).name(), inputs, [ctx, n](const Tensor<T>& g) {
        std::vector<Tensor<T>> grads = Derived::backward(*ctx, g);
        if (grads.size() != n) {
          throw AutogradError("custom function: backward returned " + std::to_string(grads.size()) +
                              " gradients for " + std::to_string(n) + " tensor inputs");
        }
        return grads;
      });
    }
    return out;
  }
};

}  // namespace ember::autograd
