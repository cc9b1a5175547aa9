#pragma once
// Recording ops on the tape. Each op calls `autograd::needs_grad(inputs...)` and, when it is true,
// `record(out, "name", {inputs...}, backward)` where `backward(grad)` returns one gradient per
// input, written with public tensor ops so that it is itself differentiable (double backward).
// Tensors the backward needs are captured as SavedTensor, which detects in-place changes.
#include <array>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/autograd/node.hpp"
#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"

namespace ember::autograd {

inline bool requires_grad_of(const TensorBase& t) noexcept {
  return t.defined() && t.impl()->autograd != nullptr && t.impl()->autograd->requires_grad;
}

template <class... Ts>
bool needs_grad(const Ts&... inputs) noexcept {
  return grad_mode_enabled() && (requires_grad_of(inputs) || ...);
}

/// A tensor saved for backward, with the version its storage had when it was saved.
template <FloatingElement T>
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor<T>& t) : tensor_(t), version_(t.defined() ? t.version() : 0) {}
  /// The saved tensor; throws AutogradError naming `op` if it was changed in place since.
  const Tensor<T>& get(const char* op) const {
    if (tensor_.defined() && tensor_.version() != version_) throw_modified(op);
    return tensor_;
  }

 private:
  [[noreturn]] void throw_modified(const char* op) const;
  Tensor<T> tensor_;
  uint64_t version_ = 0;
};

namespace detail {

template <class R>
std::vector<TensorBase> to_bases(R&& r) {
  using D = std::decay_t<R>;
  if constexpr (std::is_base_of_v<TensorBase, D>) {
    return {TensorBase(std::forward<R>(r))};
  } else {
    std::vector<TensorBase> out;
    out.reserve(r.size());
    for (auto& t : r) out.emplace_back(t);
    return out;
  }
}

/// Wires `out` to `node` whose edges point at `inputs`' gradient edges.
void connect(TensorBase& out, const std::shared_ptr<Node>& node,
             std::initializer_list<const TensorBase*> inputs, const char* name);
void connect(TensorBase& out, const std::shared_ptr<Node>& node,
             const std::vector<const TensorBase*>& inputs, const char* name);
[[noreturn]] void throw_released(const std::string& name);
/// Throws AutogradError naming `op` if `t` is a view recorded before its storage's last history
/// change (Note [Stale views] in node.cpp).
void check_view_current(const TensorBase& t, const char* op);

/// The output of `node` as a differentiable tensor, for backward formulas that use the result.
TensorBase output_alias(const TensorBase& detached_output, Node* node);

template <FloatingElement TOut, class F, bool kUsesResult>
class FnNode final : public Node {
 public:
  FnNode(const char* name, F&& f) : name_(name), fn_(std::move(f)) {}
  std::vector<TensorBase> apply(const TensorBase& grad_output) override {
    if (!fn_) throw_released(name_);
    Tensor<TOut> g = Tensor<TOut>::from_base(grad_output);
    if constexpr (kUsesResult) {
      if (result_version_ != result_.version()) {
        throw AutogradError(std::string("one of the tensors needed for gradient computation has "
                                        "been modified by an in-place operation: the output of ") +
                            name_);
      }
      Tensor<TOut> r = Tensor<TOut>::from_base(output_alias(result_, this));
      return to_bases((*fn_)(g, r));
    } else {
      return to_bases((*fn_)(g));
    }
  }
  std::string name() const override { return name_; }
  void release_saved() noexcept override {
    fn_.reset();
    result_ = Tensor<TOut>();
  }
  void save_result(const Tensor<TOut>& out) {
    result_ = out.detach();
    result_version_ = out.version();
  }

 private:
  const char* name_;
  std::optional<F> fn_;
  Tensor<TOut> result_;
  uint64_t result_version_ = 0;
};

}  // namespace detail

/// Records `out = op(inputs)` with `backward(grad) -> gradients per input`.
template <FloatingElement T, class F>
void record(Tensor<T>& out, const char* name, std::initializer_list<const TensorBase*> inputs,
            F&& backward) {
  auto node = std::make_shared<detail::FnNode<T, std::decay_t<F>, false>>(name, std::forward<F>(backward));
  detail::connect(out, node, inputs, name);
}

/// Same, for ops with a run-time number of inputs.
template <FloatingElement T, class F>
void record(Tensor<T>& out, const char* name, const std::vector<const TensorBase*>& inputs,
            F&& backward) {
  auto node = std::make_shared<detail::FnNode<T, std::decay_t<F>, false>>(name, std::forward<F>(backward));
  detail::connect(out, node, inputs, name);
}

/// Same, for backward formulas that use the op's result: `backward(grad, result)`.
template <FloatingElement T, class F>
void record_with_result(Tensor<T>& out, const char* name,
                        std::initializer_list<const TensorBase*> inputs, F&& backward) {
  auto node = std::make_shared<detail::FnNode<T, std::decay_t<F>, true>>(name, std::forward<F>(backward));
  node->save_result(out);
  detail::connect(out, node, inputs, name);
}

/// Records a two-input op whose gradient for each input needs only the other input and the
/// incoming gradient (mul, mm, bmm, the convolution gradients): `grad_a(grad, b)` and
/// `grad_b(grad, a)`. Each input is saved only when the other one needs a gradient, and a
/// gradient is computed only for an input that requires one.
template <FloatingElement T, class GradA, class GradB>
void record_bilinear(Tensor<T>& out, const char* name, const Tensor<T>& a, const Tensor<T>& b, GradA&& grad_a,
                     GradB&& grad_b) {
  const bool need_a = requires_grad_of(a), need_b = requires_grad_of(b);
  record(out, name, {&a, &b},
         [sa = need_b ? SavedTensor<T>(a) : SavedTensor<T>(), sb = need_a ? SavedTensor<T>(b) : SavedTensor<T>(),
          need_a, need_b, name, grad_a = std::forward<GradA>(grad_a),
          grad_b = std::forward<GradB>(grad_b)](const Tensor<T>& g) {
           std::vector<Tensor<T>> grads(2);
           if (need_a) grads[0] = grad_a(g, sb.get(name));
           if (need_b) grads[1] = grad_b(g, sa.get(name));
           return grads;
         });
}

}  // namespace ember::autograd
