#pragma once
// Sequential and ModuleList. Children are named "0", "1", ... as in PyTorch, so state dict keys
// match ("0.weight", "3.running_mean").
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "ember/nn/module.hpp"

namespace ember::nn {

template <FloatingElement T = float>
class Sequential : public Module<T> {
 public:
  Sequential() = default;
  /// Sequential(nn::Linear(4, 8), nn::ReLU(), ...): modules are moved in, in order.
  template <class M, class... Ms>
    requires std::is_base_of_v<Module<T>, std::decay_t<M>>
  explicit Sequential(M&& first, Ms&&... rest) {
    push_back(std::forward<M>(first));
    (push_back(std::forward<Ms>(rest)), ...);
  }

  template <class M>
  void push_back(M&& module) {
    if constexpr (std::is_convertible_v<std::decay_t<M>, std::shared_ptr<Module<T>>>) {
      this->register_module(std::to_string(size_), std::shared_ptr<Module<T>>(module));
    } else {
      this->register_module(std::to_string(size_), std::forward<M>(module));
    }
    ++size_;
  }

  Tensor<T> forward(const Tensor<T>& x) override {
    Tensor<T> y = x;
    for (auto& [name, child] : this->named_children()) y = this->call_child(name, *child, y);
    return y;
  }
  std::string type_name() const override { return "Sequential"; }
  size_t size() const noexcept { return size_; }
  std::shared_ptr<Module<T>> operator[](size_t i) const { return this->children().at(i); }

 private:
  size_t size_ = 0;
};

template <class M, class... Ms>
Sequential(M&&, Ms&&...) -> Sequential<typename std::decay_t<M>::value_type>;

/// Holds modules for a forward written by hand; it has no forward of its own.
template <FloatingElement T = float>
class ModuleList : public Module<T> {
 public:
  ModuleList() = default;
  template <class M, class... Ms>
    requires std::is_base_of_v<Module<T>, std::decay_t<M>>
  explicit ModuleList(M&& first, Ms&&... rest) {
    push_back(std::forward<M>(first));
    (push_back(std::forward<Ms>(rest)), ...);
  }
  template <class M>
  void push_back(M&& module) {
    this->register_module(std::to_string(size_++), std::forward<M>(module));
  }
  Tensor<T> forward(const Tensor<T>&) override {
    throw ValueError("ModuleList: it has no forward; call its modules yourself");
  }
  std::string type_name() const override { return "ModuleList"; }
  size_t size() const noexcept { return size_; }
  std::shared_ptr<Module<T>> operator[](size_t i) const { return this->children().at(i); }

 private:
  size_t size_ = 0;
};

template <class M, class... Ms>
ModuleList(M&&, Ms&&...) -> ModuleList<typename std::decay_t<M>::value_type>;

}  // namespace ember::nn
