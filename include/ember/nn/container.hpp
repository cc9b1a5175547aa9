#pragma once
// Sequential, ModuleList (children named "0", "1", ... as in PyTorch, so state dict keys match:
// "0.weight", "3.running_mean"), ModuleDict (children by name) and Functional (a function as a
// module). Sequential and ModuleList iterate in order: `for (auto& m : seq) ...`.
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "ember/nn/module.hpp"

namespace ember::nn {

/// Iterates a container's modules in order (range-for over Sequential and ModuleList).
template <FloatingElement T>
class ChildIterator {
 public:
  using value_type = std::shared_ptr<Module<T>>;
  using difference_type = std::ptrdiff_t;
  ChildIterator() = default;
  ChildIterator(const Module<T>* owner, size_t i) : owner_(owner), i_(i) {}
  const std::shared_ptr<Module<T>>& operator*() const { return owner_->child(i_); }
  ChildIterator& operator++() {
    ++i_;
    return *this;
  }
  ChildIterator operator++(int) {
    ChildIterator old = *this;
    ++i_;
    return old;
  }
  bool operator==(const ChildIterator& o) const { return owner_ == o.owner_ && i_ == o.i_; }

 private:
  const Module<T>* owner_ = nullptr;
  size_t i_ = 0;
};

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
    // Errors leaving a child carry its registered name ("3: conv2d: ..."), so no copy of the names.
    for (size_t i = 0; i < this->num_children(); ++i) y = (*this->child(i))(y);
    return y;
  }
  std::string type_name() const override { return "Sequential"; }
  size_t size() const noexcept { return size_; }
  std::shared_ptr<Module<T>> operator[](size_t i) const { return this->child(i); }
  ChildIterator<T> begin() const { return {this, 0}; }
  ChildIterator<T> end() const { return {this, this->num_children()}; }

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
  std::shared_ptr<Module<T>> operator[](size_t i) const { return this->child(i); }
  ChildIterator<T> begin() const { return {this, 0}; }
  ChildIterator<T> end() const { return {this, this->num_children()}; }

 private:
  size_t size_ = 0;
};

template <class M, class... Ms>
ModuleList(M&&, Ms&&...) -> ModuleList<typename std::decay_t<M>::value_type>;

/// A function as a module, to put in a Sequential (LibTorch's nn::Functional):
/// `nn::Sequential(nn::Linear(4, 8), nn::Functional(ember::relu<float>), nn::Linear(8, 2))`.
template <FloatingElement T = float>
class Functional : public Module<T> {
 public:
  using Function = std::function<Tensor<T>(const Tensor<T>&)>;
  explicit Functional(Function fn, std::string name = "Functional") : fn_(std::move(fn)), name_(std::move(name)) {
    if (!fn_) throw ValueError("Functional: the function is empty");
  }
  Tensor<T> forward(const Tensor<T>& x) override { return fn_(x); }
  std::string type_name() const override { return name_; }

 private:
  Function fn_;
  std::string name_;
};
template <FloatingElement T>
Functional(Tensor<T> (*)(const Tensor<T>&)) -> Functional<T>;
template <FloatingElement T>
Functional(Tensor<T> (*)(const Tensor<T>&), std::string) -> Functional<T>;
template <class F>
  requires(!std::is_pointer_v<F>)
Functional(F) -> Functional<float>;
template <class F>
  requires(!std::is_pointer_v<F>)
Functional(F, std::string) -> Functional<float>;

/// Modules by name, in insertion order (LibTorch's ModuleDict); their names are the state_dict
/// prefixes. No forward of its own.
template <FloatingElement T = float>
class ModuleDict : public Module<T> {
 public:
  ModuleDict() = default;
  /// Adds (registers) a module under `key` and returns a holder that shares it.
  template <class M>
  auto insert(const std::string& key, M&& module) {
    return this->register_module(key, std::forward<M>(module));
  }
  bool contains(const std::string& key) const {
    for (const auto& [name, m] : this->named_children())
      if (name == key) return true;
    return false;
  }
  /// The module under `key` (IndexError naming it when absent).
  std::shared_ptr<Module<T>> operator[](const std::string& key) const {
    for (const auto& [name, m] : this->named_children())
      if (name == key) return m;
    throw IndexError("ModuleDict: no module named \"" + key + "\"");
  }
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const auto& [name, m] : this->named_children()) out.push_back(name);
    return out;
  }
  size_t size() const noexcept { return this->num_children(); }
  Tensor<T> forward(const Tensor<T>&) override {
    throw ValueError("ModuleDict: it has no forward; call its modules yourself");
  }
  std::string type_name() const override { return "ModuleDict"; }
};

}  // namespace ember::nn
