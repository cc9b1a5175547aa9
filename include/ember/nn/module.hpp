#pragma once
// nn::Module: the base of every layer. Like torch.nn.Module, a module registers its parameters,
// buffers and submodules by name, and the dotted paths of those names ("features.0.weight") are
// its state_dict keys, the same as PyTorch's, so weights move between the two.
//
//   struct Net : ember::nn::Module<float> {
//     ember::nn::ModuleHolder<ember::nn::Linear<float>> fc1, fc2;   // LibTorch: torch::nn::Linear fc1{nullptr}
//     Net() {
//       fc1 = register_module("fc1", ember::nn::Linear<float>(784, 128));
//       fc2 = register_module("fc2", ember::nn::Linear<float>(128, 10));
//     }
//     ember::Tensor<float> forward(const ember::Tensor<float>& x) override {
//       return fc2(ember::relu(fc1(x)));
//     }
//   };
//
// Modules are composed at run time (no networks as types) and are move-only: register_module
// takes the module by value (a temporary, or std::move of one you built) and returns a holder
// that shares the registered module, callable like it (`fc1(x)`, `fc1->weight`); keep that, not
// the moved-from original (which throws when called, naming the cause). A registered parameter
// and the member that names it are the same tensor handle, so loading a state dict (which copies
// values in place) updates both.
//
// Note [Registration order]
// state_dict(), parameters() and printing follow the order of the register_* calls, never the
// order members are declared in (C++ constructs members before the constructor body runs, so
// the calls decide). PyTorch orders by assignment in __init__ the same way; write the calls in
// PyTorch's order to get PyTorch's state_dict order. Loading matches by name, so the order never
// changes which tensor gets which values.
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <typeinfo>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"

namespace ember::nn {

/// One entry of a state dict. Parameters are float or double; buffers may also be integer
/// (BatchNorm's num_batches_tracked is int64, as in PyTorch).
struct NamedTensor {
  std::string name;
  TensorBase tensor;
};
/// Ordered as PyTorch orders it: a module's own parameters, then its buffers, then each child's.
using StateDict = std::vector<NamedTensor>;

/// What a non-strict load_state_dict left out, as PyTorch's return value names it: the module's
/// keys the state dict lacked (they keep their values) and the state dict's keys the module
/// lacks (ignored).
struct LoadResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
  bool complete() const noexcept { return missing_keys.empty() && unexpected_keys.empty(); }
};

/// A shared handle to a registered module (LibTorch's ModuleHolder): `fc(x)` calls it with its
/// hooks, `fc->weight` reaches its members; it converts to std::shared_ptr<M> (and to a pointer to
/// a base), so it can be kept as either.
template <class M>
class ModuleHolder {
 public:
  ModuleHolder() = default;
  ModuleHolder(std::nullptr_t) noexcept {}  // NOLINT: `ModuleHolder<Linear<float>> fc{nullptr}`
  ModuleHolder(std::shared_ptr<M> module) noexcept : module_(std::move(module)) {}  // NOLINT
  template <class U>
    requires std::is_convertible_v<U*, M*>
  ModuleHolder(const ModuleHolder<U>& other) noexcept : module_(other.ptr()) {}  // NOLINT

  template <class U>
    requires std::is_convertible_v<M*, U*>
  operator std::shared_ptr<U>() const noexcept {  // NOLINT: implicit, for existing shared_ptr members
    return module_;
  }
  const std::shared_ptr<M>& ptr() const noexcept { return module_; }
  M* get() const noexcept { return module_.get(); }
  explicit operator bool() const noexcept { return module_ != nullptr; }
  M& operator*() const { return *checked(); }
  M* operator->() const { return checked(); }
  /// Calls the module (its operator(): hooks, then forward).
  template <class... Args>
  decltype(auto) operator()(Args&&... args) const {
    return (*checked())(std::forward<Args>(args)...);
  }

 private:
  M* checked() const {
    if (!module_) throw ValueError("ModuleHolder: empty (assign it the result of register_module first)");
    return module_.get();
  }
  std::shared_ptr<M> module_;
};

template <FloatingElement T = float>
class Module {
 public:
  using value_type = T;
  /// Called before forward with the input; a defined return value replaces the input.
  using ForwardPreHook = std::function<Tensor<T>(Module&, const Tensor<T>&)>;
  /// Called after forward with input and output; a defined return value replaces the output.
  using ForwardHook = std::function<Tensor<T>(Module&, const Tensor<T>&, const Tensor<T>&)>;

  Module() = default;
  /// The moved-from module is an empty shell that throws when called (naming why).
  Module(Module&&) noexcept = default;
  Module& operator=(Module&&) noexcept = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  /// The computation. Call the module (operator()) rather than forward, so that hooks run.
  virtual Tensor<T> forward(const Tensor<T>& input) = 0;
  /// Runs the forward pre-hooks, forward and the forward hooks.
  Tensor<T> operator()(const Tensor<T>& input);

  /// The class name shown when printing ("Linear").
  virtual std::string type_name() const = 0;
  /// The arguments shown when printing ("in_features=3, out_features=4, bias=True").
  virtual std::string extra_repr() const { return ""; }

  // ---- Registration (for subclasses) -----------------------------------------------------------
  /// Registers a parameter under `name` and returns the handle to keep as a member.
  Tensor<T> register_parameter(const std::string& name, Tensor<T> tensor, bool requires_grad = true);
  /// Registers a buffer (state that is saved but not trained, e.g. running statistics).
  template <Element U>
  Tensor<U> register_buffer(const std::string& name, Tensor<U> tensor) {
    add_buffer(name, tensor);
    return tensor;
  }
  /// Unregisters this module's own parameter `name` and returns it (reparametrizations such as
  /// ember::prune's replace it by `name_orig`); its order among the others is forgotten, as in
  /// PyTorch, where re-registering appends. Throws IndexError naming the parameters there are.
  Tensor<T> remove_parameter(const std::string& name);
  /// Unregisters this module's own buffer `name`; throws IndexError when there is none.
  void remove_buffer(const std::string& name);
  /// Registers a submodule (taken by value and moved to the heap) and returns a holder that
  /// shares it; keep the holder, not the moved-from original.
  template <class M>
  ModuleHolder<std::decay_t<M>> register_module(const std::string& name, M&& module) {
    static_assert(!std::is_lvalue_reference_v<M>,
                  "register_module(name, module): modules are move-only; register a temporary and keep the "
                  "result, `fc1 = register_module(\"fc1\", nn::Linear(3, 4));` with a member "
                  "`nn::ModuleHolder<nn::Linear<float>> fc1;` (see Note [Registration order] in nn/module.hpp)");
    auto ptr = std::make_shared<std::decay_t<M>>(std::forward<M>(module));
    add_child(name, ptr);
    return ModuleHolder<std::decay_t<M>>(std::move(ptr));
  }
  template <class M>
  ModuleHolder<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return ModuleHolder<M>(std::move(module));
  }
  template <class M>
  ModuleHolder<M> register_module(const std::string& name, const ModuleHolder<M>& module) {
    return register_module(name, module.ptr());
  }

  /// Replaces the registered child at `path` ("fc", "2" in a Sequential, "layer4.1.conv2") by
  /// `module`, keeping every other module and weight (PyTorch's set_submodule; transfer learning's
  /// new head: `net.replace_module("fc", nn::Linear(512, 5))`). A child of the same class is
  /// replaced in place, so the parent's own member (a ModuleHolder) and every other handle see the
  /// new module; a child of another class can be replaced only where nothing else holds it (a
  /// container's child), since a member holder of the old class could not hold it.
  template <class M>
  ModuleHolder<std::decay_t<M>> replace_module(const std::string& path, M&& module) {
    static_assert(!std::is_lvalue_reference_v<M>,
                  "replace_module(path, module): modules are move-only; pass a temporary or std::move");
    using D = std::decay_t<M>;
    static_assert(std::is_base_of_v<Module, D>, "replace_module: the replacement must be an nn::Module of the same T");
    std::shared_ptr<Module>& slot = child_slot(path);
    if (typeid(*slot) == typeid(D)) {
      if constexpr (std::is_move_assignable_v<D>) {
        Module& old = *slot;
        const std::string name = old.registered_name_;
        static_cast<D&>(old) = std::forward<M>(module);
        old.registered_name_ = name;
        return ModuleHolder<D>(std::static_pointer_cast<D>(slot));
      }
    }
    if (slot.use_count() > 1) {
      throw TypeError("replace_module(\"" + path + "\"): the " + slot->type_name() +
                      " there is also held elsewhere (a ModuleHolder member of its parent, or a handle of "
                      "yours) that would keep calling it, so it can only be replaced by another " +
                      slot->type_name() + ", not a " + module.type_name());
    }
    auto fresh = std::make_shared<D>(std::forward<M>(module));
    fresh->registered_name_ = slot->registered_name_;
    slot = fresh;
    return ModuleHolder<D>(std::move(fresh));
  }

  /// Whether replace_module(path, m) can put a module of another class there: nothing but this
  /// parent holds the child (a container's child, not a ModuleHolder member's).
  bool replaceable_by_another_class(const std::string& path) { return child_slot(path).use_count() == 1; }

  // ---- Introspection ---------------------------------------------------------------------------
  std::vector<std::pair<std::string, Tensor<T>>> named_parameters(bool recurse = true) const;
  std::vector<Tensor<T>> parameters(bool recurse = true) const;
  std::vector<NamedTensor> named_buffers(bool recurse = true) const;
  /// Direct children, in registration order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;
  /// This module ("") and all descendants, depth first, with dotted paths.
  std::vector<std::pair<std::string, Module*>> named_modules();
  /// The number of direct children, and child i (in registration order), without copying the list.
  size_t num_children() const noexcept { return children_.size(); }
  const std::shared_ptr<Module>& child(size_t i) const { return children_.at(i).second; }
  /// Calls fn on every descendant, then on this module (PyTorch's order), e.g. to initialise
  /// weights: `net.apply([](nn::Module<float>& m) { ... })`.
  Module& apply(const std::function<void(Module&)>& fn) {
    for (auto& [name, c] : children_) c->apply(fn);
    fn(*this);
    return *this;
  }
  /// The parameter or buffer at a dotted path (throws IndexError naming it when absent).
  TensorBase& entry(const std::string& dotted_name);
  /// The descendant module at a dotted path ("layer3", "features.0"); throws IndexError naming the
  /// path and the children there when absent.
  Module& submodule(const std::string& dotted_path);

  // ---- Modes and gradients ----------------------------------------------------------------------
  /// Training mode (dropout active, batch norm uses batch statistics); recursive. A module marked
  /// keep_eval stays in eval mode.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const noexcept { return training_; }
  /// Keeps this module in eval mode through later train() calls (batch norm in a frozen backbone
  /// keeps its running statistics while the rest fine-tunes; see nn::freeze), or releases it.
  void keep_eval(bool on = true) {
    keep_eval_ = on;
    if (on) training_ = false;
  }
  bool keeps_eval() const noexcept { return keep_eval_; }
  /// Resets the gradients of all parameters (to undefined, or to zeros when set_to_none is false).
  void zero_grad(bool set_to_none = true);

  // ---- State dicts ------------------------------------------------------------------------------
  StateDict state_dict() const;
  /// Copies values into the registered tensors (in place). With `strict`, every missing,
  /// unexpected and mis-shaped name is listed in one ValueError; without, missing and unexpected
  /// names are returned (a backbone loaded into a model with a new head) but shape or dtype
  /// mismatches still throw. Nothing is copied when it throws.
  LoadResult load_state_dict(const StateDict& state, bool strict = true);

  // ---- Hooks ------------------------------------------------------------------------------------
  /// Returns an id for remove_hook.
  int64_t register_forward_pre_hook(ForwardPreHook hook);
  /// The same with a key that finds it again (ember::prune keys its hooks by the pruned tensor).
  int64_t register_forward_pre_hook(ForwardPreHook hook, std::string key);
  /// The id of the forward pre-hook registered with `key`, or -1.
  int64_t forward_pre_hook_id(const std::string& key) const;
  /// The forward pre-hook registered under `id`, or null.
  const ForwardPreHook* forward_pre_hook(int64_t id) const;
  int64_t register_forward_hook(ForwardHook hook);
  /// Whether any forward pre-hook or forward hook is registered on this module.
  bool has_hooks() const noexcept { return !pre_hooks_.empty() || !post_hooks_.empty(); }
  void remove_hook(int64_t id);

  /// A table of the module tree with each module's output shape for an input of `input_shape`,
  /// and parameter counts (runs one forward without grad, in eval mode).
  std::string summary(const Shape& input_shape);
  /// PyTorch-style module tree.
  std::string str() const;

 protected:
  /// Calls a child. Errors leaving any registered module (called this way, through a holder or
  /// directly) carry the names it was registered under, "features.0: conv2d: ...".
  Tensor<T> call_child(const std::string& name, Module& child, const Tensor<T>& input);

 private:
  void add_buffer(const std::string& name, const TensorBase& tensor);
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  std::shared_ptr<Module>& child_slot(const std::string& dotted_path);
  void check_new_name(const std::string& name, const char* what) const;
  void collect_state(const std::string& prefix, StateDict& out) const;
  void str_into(std::string& out, int indent) const;

  std::vector<std::pair<std::string, Tensor<T>>> params_;
  std::vector<NamedTensor> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::vector<std::pair<int64_t, ForwardPreHook>> pre_hooks_;
  std::vector<std::pair<int64_t, ForwardHook>> post_hooks_;
  std::vector<std::pair<int64_t, std::string>> hook_keys_;
  int64_t next_hook_id_ = 0;
  bool training_ = true;
  bool keep_eval_ = false;
  // The name this module was first registered under, put in front of errors leaving it.
  std::string registered_name_;
  // Set in the source of a move, so that the defaulted moves mark the shell they leave behind.
  struct MovedFrom {
    bool value = false;
    MovedFrom() = default;
    MovedFrom(MovedFrom&& o) noexcept : value(o.value) { o.value = true; }
    MovedFrom& operator=(MovedFrom&& o) noexcept {
      if (this != &o) {
        value = o.value;
        o.value = true;
      }
      return *this;
    }
  };
  MovedFrom moved_from_;
};

template <FloatingElement T>
std::ostream& operator<<(std::ostream& os, const Module<T>& m);

extern template class Module<float>;
extern template class Module<double>;

}  // namespace ember::nn
