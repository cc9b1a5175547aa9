#pragma once
// Custom autograd functions: a forward and a backward of your own, like torch.autograd.Function
// (and LibTorch's torch::autograd::Function), for float or double.
//
//   struct Scale : ember::autograd::Function<Scale> {
//     static ember::Tensor<float> forward(ember::autograd::FunctionCtx<float>& ctx,
//                                         const ember::Tensor<float>& x, double factor) {
//       ctx.save_for_backward({x});
//       ctx.saved_data["factor"] = factor;
//       return x * factor;
//     }
//     static std::vector<ember::Tensor<float>> backward(ember::autograd::FunctionCtx<float>& ctx,
//                                                       const ember::Tensor<float>& grad) {
//       return {grad * ctx.saved_data["factor"].toDouble()};  // nothing for `factor`: omitted
//     }
//   };
//   auto y = Scale::apply(x, 2.0);   // y.backward() calls Scale::backward
//
// The element type comes from the arguments (the first Tensor<float> or Tensor<double>). forward
// runs with grad mode off. backward returns one gradient per forward argument, in order, as in
// LibTorch: an undefined tensor for an argument that gets none (non-tensor arguments must get an
// undefined one), and undefined gradients at the end may be left out. backward is recorded like
// any op: if it is written with ember ops, it is differentiable itself.
#include <any>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <typeinfo>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/autograd/record.hpp"

namespace ember::autograd {

/// A value of any type kept for backward in FunctionCtx::saved_data, read back as LibTorch's
/// IValue is: toInt(), toDouble(), toBool(), toTensor<T>(), or to<U>() for any stored type U.
class SavedValue {
 public:
  SavedValue() = default;
  template <class U, class = std::enable_if_t<!std::is_same_v<std::decay_t<U>, SavedValue>>>
  SavedValue(U&& v) : value_(std::forward<U>(v)) {}  // NOLINT: implicit, as `saved_data["k"] = 3`

  /// The stored value as exactly U (AutogradError naming both types otherwise).
  template <class U>
  U to() const {
    if (const U* p = std::any_cast<U>(&value_)) return *p;
    throw AutogradError(std::string("custom function: saved_data holds ") + type_name() + ", not " +
                        typeid(U).name());
  }
  /// Any stored integer type (or bool) as int64.
  int64_t toInt() const {
    if (const auto* p = std::any_cast<int>(&value_)) return *p;
    if (const auto* p = std::any_cast<long>(&value_)) return *p;
    if (const auto* p = std::any_cast<long long>(&value_)) return *p;
    if (const auto* p = std::any_cast<unsigned>(&value_)) return *p;
    if (const auto* p = std::any_cast<bool>(&value_)) return *p ? 1 : 0;
    return to<int64_t>();
  }
  /// A stored floating-point or integer value as double.
  double toDouble() const {
    if (const auto* p = std::any_cast<double>(&value_)) return *p;
    if (const auto* p = std::any_cast<float>(&value_)) return *p;
    return static_cast<double>(toInt());
  }
  bool toBool() const {
    if (const auto* p = std::any_cast<bool>(&value_)) return *p;
    return to<bool>();
  }
  template <Element U>
  Tensor<U> toTensor() const {
    return to<Tensor<U>>();
  }
  bool has_value() const noexcept { return value_.has_value(); }

 private:
  const char* type_name() const noexcept { return value_.has_value() ? value_.type().name() : "nothing"; }
  std::any value_;
};

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
  /// Values of any type for backward (ints, doubles, bools, tensors, vectors, ...), as LibTorch's
  /// ctx->saved_data.
  std::map<std::string, SavedValue> saved_data;
  /// Numbers for backward (the older, double-only form of saved_data).
  std::map<std::string, double> data;
  /// Whether input i (counting tensor arguments only) requires grad.
  bool needs_input_grad(size_t i) const { return i < needs_.size() && needs_[i]; }

  std::vector<bool> needs_;  // set by Function::apply

 private:
  std::vector<SavedTensor<T>> saved_;
};

namespace detail {
template <class A>
struct function_element {
  using type = void;
};
template <FloatingElement U>
struct function_element<Tensor<U>> {
  using type = U;
};
// The element type of the first float or double tensor among Args (void without one).
template <class... Args>
struct first_tensor_element {
  using type = void;
};
template <class A, class... Rest>
struct first_tensor_element<A, Rest...> {
  using here = typename function_element<std::remove_cvref_t<A>>::type;
  using type = std::conditional_t<std::is_void_v<here>, typename first_tensor_element<Rest...>::type, here>;
};
}  // namespace detail

template <class Derived>
struct Function {
  template <class... Args>
  static auto apply(Args&&... args) {
    using T = typename detail::first_tensor_element<Args...>::type;
    static_assert(!std::is_void_v<T>, "Function::apply: pass at least one Tensor<float> or Tensor<double>");
    static_assert(requires { Derived::forward(std::declval<FunctionCtx<T>&>(), std::declval<Args&>()...); },
                  "Function::apply: Derived::forward must take (FunctionCtx<T>&, the arguments given to apply), "
                  "with T the element type of the first tensor argument");
    return run<T>(std::forward<Args>(args)...);
  }

 private:
  template <class T, class... Args>
  static Tensor<T> run(Args&&... args) {
    auto ctx = std::make_shared<FunctionCtx<T>>();
    std::vector<const TensorBase*> inputs;
    std::vector<size_t> input_position;  // the forward argument each tensor input is
    size_t position = 0;
    auto collect = [&](const auto& a) {
      if constexpr (std::is_same_v<std::decay_t<decltype(a)>, Tensor<T>>) {
        inputs.push_back(&a);
        input_position.push_back(position);
        ctx->needs_.push_back(a.requires_grad());
      }
      ++position;
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
      record(out, typeid(Derived).name(), inputs, [ctx, input_position](const Tensor<T>& g) {
        constexpr size_t arguments = sizeof...(Args);
        std::vector<Tensor<T>> grads = Derived::backward(*ctx, g);
        if (grads.size() > arguments) {
          throw AutogradError("custom function: backward returned " + std::to_string(grads.size()) +
                              " gradients for " + std::to_string(arguments) + " forward arguments");
        }
        // One gradient per forward argument (LibTorch's rule); non-tensor arguments get none.
        std::vector<bool> is_tensor(arguments, false);
        for (size_t p : input_position) is_tensor[p] = true;
        for (size_t i = 0; i < grads.size(); ++i) {
          if (!is_tensor[i] && grads[i].defined()) {
            throw AutogradError("custom function: backward returned a gradient for forward argument " +
                                std::to_string(i) + ", which is not a tensor (return an undefined Tensor there)");
          }
        }
        std::vector<Tensor<T>> per_input(input_position.size());
        for (size_t k = 0; k < input_position.size(); ++k) {
          if (input_position[k] < grads.size()) per_input[k] = grads[input_position[k]];
        }
        return per_input;
      });
    }
    return out;
  }
};

}  // namespace ember::autograd
