#pragma once
// Optimizers with torch.optim's update rules, options and defaults, so that trajectories match.
//
//   ember::optim::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
//   ember::optim::Adam adam(net.parameters(), {.lr = 1e-3});
//   sgd.zero_grad(); loss.backward(); sgd.step();
//
// Parameter groups carry their own options: SGD sgd({{head.parameters(), {.lr = 0.1}},
// {body.parameters(), {.lr = 0.01}}}). State is kept per parameter position (group, index), never
// by address, and state_dict() / load_state_dict() move it with the positions, as PyTorch does.
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember::optim {

/// One named field of an options struct (a double or a bool), as state dicts name it.
template <class Options, class Value>
struct OptionField {
  const char* name;
  Value Options::*member;
};
template <class Options, class Value>
constexpr OptionField<Options, Value> option_field(const char* name, Value Options::*member) {
  return {name, member};
}

/// An options struct by name (bools as 0 / 1): what state_dict() stores for each group. Every
/// options struct lists its fields once, in `static constexpr auto fields()`.
template <class Options>
std::map<std::string, double> options_to_map(const Options& o) {
  std::map<std::string, double> m;
  std::apply([&](const auto&... f) { ((m[f.name] = static_cast<double>(o.*f.member)), ...); }, Options::fields());
  return m;
}
/// The inverse of options_to_map: fields missing from `m` keep their value in `base`.
template <class Options>
Options options_from_map(const std::map<std::string, double>& m, Options base) {
  std::apply([&](const auto&... f) {
    auto read = [&](const auto& field) {
      const auto it = m.find(field.name);
      if (it == m.end()) return;
      using Value = std::remove_reference_t<decltype(base.*field.member)>;
      if constexpr (std::is_same_v<Value, bool>) {
        base.*field.member = it->second != 0;
      } else {
        base.*field.member = static_cast<Value>(it->second);
      }
    };
    (read(f), ...);
  }, Options::fields());
  return base;
}

/// An optimizer's state: per parameter (by position) named tensors and counters, and per group the
/// options by name (lr, momentum, betas as beta1/beta2, ...).
struct OptimizerState {
  struct ParamState {
    std::map<std::string, TensorBase> tensors;  // momentum_buffer, exp_avg, exp_avg_sq, ...
    int64_t step = 0;
  };
  std::vector<ParamState> params;  // in group order, then parameter order
  std::vector<std::map<std::string, double>> groups;
  /// The optimizer that made the state ("SGD", "Adam", ...); empty when unknown.
  std::string kind;
};

/// What learning-rate schedulers see of an optimizer: its groups' learning rates and, where the
/// optimizer has one, momentum (SGD's momentum, Adam's beta1), which OneCycleLR cycles.
class ParamGroupControl {
 public:
  virtual ~ParamGroupControl() = default;
  virtual size_t num_groups() const = 0;
  virtual double lr(size_t group) const = 0;
  virtual void set_lr(size_t group, double lr) = 0;
  virtual bool has_momentum() const { return false; }
  virtual double momentum(size_t) const { return 0.0; }
  virtual void set_momentum(size_t, double) {}

  /// The learning rate a group had when the first scheduler was attached (PyTorch's
  /// "initial_lr"): every later scheduler starts from it.
  double initial_lr(size_t group) {
    if (initial_lrs_.size() < num_groups()) initial_lrs_.resize(num_groups(), -1.0);
    if (initial_lrs_[group] < 0) initial_lrs_[group] = lr(group);
    return initial_lrs_[group];
  }

 private:
  std::vector<double> initial_lrs_;
};

/// What a training loop needs of any optimizer, whatever its element type and options, so that
/// one can be chosen at run time: `std::unique_ptr<optim::OptimizerBase> opt = ...`.
class OptimizerBase : public ParamGroupControl {
 public:
  /// Resets every parameter's gradient (to undefined by default, as PyTorch 2).
  virtual void zero_grad(bool set_to_none = true) = 0;
  /// One update of every parameter that has a gradient.
  virtual void step() = 0;
  virtual OptimizerState state_dict() const = 0;
  /// Throws ValueError when the state does not fit (group or parameter counts, tensor shapes).
  virtual void load_state_dict(const OptimizerState& state) = 0;
};

template <FloatingElement T, class Options>
class Optimizer : public OptimizerBase {
 public:
  struct Group {
    std::vector<Tensor<T>> params;
    Options options;
  };

  /// Parameters that do not require grad (frozen, nn::freeze) are skipped by step(); an optimizer
  /// given only such parameters throws, since it could never change anything.
  Optimizer(std::vector<Tensor<T>> params, Options options) {
    add_param_group({std::move(params), options});
    check_trainable();
  }
  /// Parameter groups, each with its own options (PyTorch's
  /// `Adam([{"params": body, "lr": 1e-4}, {"params": head, "lr": 1e-3}])`):
  /// `optim::Adam opt({{body->parameters(), {.lr = 1e-4}}, {head->parameters(), {.lr = 1e-3}}});`.
  /// A parameter may be in one group only.
  explicit Optimizer(std::vector<Group> groups) {
    for (auto& g : groups) add_param_group(std::move(g));
    check_trainable();
  }
  void add_param_group(Group group);
  void zero_grad(bool set_to_none = true) override;

  size_t num_groups() const override { return groups_.size(); }
  double lr(size_t g) const override { return groups_.at(g).options.lr; }
  void set_lr(size_t g, double lr) override { groups_.at(g).options.lr = lr; }

  std::vector<Group>& param_groups() noexcept { return groups_; }
  const std::vector<Group>& param_groups() const noexcept { return groups_; }

  OptimizerState state_dict() const override;
  void load_state_dict(const OptimizerState& state) override;

 protected:
  struct Slot {
    std::map<std::string, Tensor<T>> tensors;
    int64_t step = 0;
  };
  /// The state slot of parameter `index` of group `group`.
  Slot& slot(size_t group, size_t index);
  /// Calls f(options, param, grad, slot) under no-grad for every parameter with a gradient; grad
  /// is negated when the group maximizes. Defined where the optimizers' steps are.
  template <class F>
  void for_each_grad(F&& f);
  /// Throws ValueError unless `state` is this kind of optimizer's with as many groups and
  /// parameters, its groups' options named as this optimizer's and finite.
  void check_state_groups(const OptimizerState& state) const;
  /// The optimizer's name in state dicts ("SGD", "Adam", ...); empty: not checked on load.
  virtual std::string kind() const { return {}; }
  /// The per-parameter state tensors a step keeps: `required` are all there once a parameter
  /// has state, `optional` may be; those named in `numbers` too are 0-dim (NAdam's mu_product),
  /// the others of the parameter's shape. load_state_dict refuses other names and missing required
  /// ones. Without a list (the default) any names are accepted.
  struct StateNames {
    std::vector<std::string> required, optional, numbers;
  };
  virtual std::optional<StateNames> state_names() const { return std::nullopt; }
  /// The group options by name for state dicts; from the options' field list by default.
  virtual std::map<std::string, double> options_to_map(const Options& o) const {
    return optim::options_to_map(o);
  }
  virtual Options options_from_map(const std::map<std::string, double>& m, const Options& base) const {
    return optim::options_from_map(m, base);
  }

  std::vector<Group> groups_;
  std::vector<std::vector<Slot>> slots_;

 private:
  void check_trainable() const;
};

// ---- SGD ---------------------------------------------------------------------------------------

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &SGDOptions::lr),
                      option_field("momentum", &SGDOptions::momentum),
                      option_field("dampening", &SGDOptions::dampening),
                      option_field("weight_decay", &SGDOptions::weight_decay),
                      option_field("nesterov", &SGDOptions::nesterov),
                      option_field("maximize", &SGDOptions::maximize)};
  }
};

template <FloatingElement T = float>
class SGD : public Optimizer<T, SGDOptions> {
 public:
  using Base = Optimizer<T, SGDOptions>;
  SGD(std::vector<Tensor<T>> params, SGDOptions options = {});
  /// LibTorch's positional form: SGD(params, lr) is SGD(params, {.lr = lr}).
  SGD(std::vector<Tensor<T>> params, double lr) : SGD(std::move(params), SGDOptions{.lr = lr}) {}
  explicit SGD(std::vector<typename Base::Group> groups);
  void step() override;
  bool has_momentum() const override { return true; }
  double momentum(size_t g) const override { return this->groups_.at(g).options.momentum; }
  void set_momentum(size_t g, double m) override { this->groups_.at(g).options.momentum = m; }

 protected:
  std::string kind() const override { return "SGD"; }
  std::optional<typename Base::StateNames> state_names() const override {
    return typename Base::StateNames{{}, {"momentum_buffer"}};
  }
};

// ---- RMSprop and Adagrad -------------------------------------------------------------------------

struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  bool maximize = false;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &RMSpropOptions::lr),
                      option_field("alpha", &RMSpropOptions::alpha),
                      option_field("eps", &RMSpropOptions::eps),
                      option_field("weight_decay", &RMSpropOptions::weight_decay),
                      option_field("momentum", &RMSpropOptions::momentum),
                      option_field("centered", &RMSpropOptions::centered),
                      option_field("maximize", &RMSpropOptions::maximize)};
  }
};

template <FloatingElement T = float>
class RMSprop : public Optimizer<T, RMSpropOptions> {
 public:
  using Base = Optimizer<T, RMSpropOptions>;
  RMSprop(std::vector<Tensor<T>> params, RMSpropOptions options = {});
  /// LibTorch's positional form: RMSprop(params, lr) is RMSprop(params, {.lr = lr}).
  RMSprop(std::vector<Tensor<T>> params, double lr) : RMSprop(std::move(params), RMSpropOptions{.lr = lr}) {}
  explicit RMSprop(std::vector<typename Base::Group> groups);
  void step() override;

 protected:
  std::string kind() const override { return "RMSprop"; }
  std::optional<typename Base::StateNames> state_names() const override {
    return typename Base::StateNames{{"square_avg"}, {"momentum_buffer", "grad_avg"}};
  }
};

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double initial_accumulator_value = 0.0;
  double eps = 1e-10;
  bool maximize = false;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &AdagradOptions::lr),
                      option_field("lr_decay", &AdagradOptions::lr_decay),
                      option_field("weight_decay", &AdagradOptions::weight_decay),
                      option_field("initial_accumulator_value", &AdagradOptions::initial_accumulator_value),
                      option_field("eps", &AdagradOptions::eps),
                      option_field("maximize", &AdagradOptions::maximize)};
  }
};

template <FloatingElement T = float>
class Adagrad : public Optimizer<T, AdagradOptions> {
 public:
  using Base = Optimizer<T, AdagradOptions>;
  Adagrad(std::vector<Tensor<T>> params, AdagradOptions options = {});
  /// LibTorch's positional form: Adagrad(params, lr) is Adagrad(params, {.lr = lr}).
  Adagrad(std::vector<Tensor<T>> params, double lr) : Adagrad(std::move(params), AdagradOptions{.lr = lr}) {}
  explicit Adagrad(std::vector<typename Base::Group> groups);
  void step() override;

 protected:
  std::string kind() const override { return "Adagrad"; }
  std::optional<typename Base::StateNames> state_names() const override {
    return typename Base::StateNames{{"sum"}, {}};
  }
};

// ---- Adamax and RAdam ---------------------------------------------------------------------------

/// An optimizer whose momentum is Adam's beta1 (what OneCycleLR and CyclicLR cycle).
template <FloatingElement T, class Options>
class Beta1Optimizer : public Optimizer<T, Options> {
 public:
  using Optimizer<T, Options>::Optimizer;
  bool has_momentum() const override { return true; }
  double momentum(size_t g) const override { return this->groups_.at(g).options.beta1; }
  void set_momentum(size_t g, double m) override { this->groups_.at(g).options.beta1 = m; }
};

struct AdamaxOptions {
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool maximize = false;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &AdamaxOptions::lr),
                      option_field("beta1", &AdamaxOptions::beta1),
                      option_field("beta2", &AdamaxOptions::beta2),
                      option_field("eps", &AdamaxOptions::eps),
                      option_field("weight_decay", &AdamaxOptions::weight_decay),
                      option_field("maximize", &AdamaxOptions::maximize)};
  }
};

/// Adam with the infinity norm (Kingma and Ba 2015, section 7.1): u = max(beta2 u, |g| + eps).
template <FloatingElement T = float>
class Adamax : public Beta1Optimizer<T, AdamaxOptions> {
 public:
  using Base = Beta1Optimizer<T, AdamaxOptions>;
  Adamax(std::vector<Tensor<T>> params, AdamaxOptions options = {});
  /// LibTorch's positional form: Adamax(params, lr) is Adamax(params, {.lr = lr}).
  Adamax(std::vector<Tensor<T>> params, double lr) : Adamax(std::move(params), AdamaxOptions{.lr = lr}) {}
  explicit Adamax(std::vector<typename Base::Group> groups);
  void step() override;

 protected:
  std::string kind() const override { return "Adamax"; }
  std::optional<typename Base::StateNames> state_names() const override {
    return typename Base::StateNames{{"exp_avg", "exp_inf"}, {}};
  }
};

struct RAdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool maximize = false;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &RAdamOptions::lr),
                      option_field("beta1", &RAdamOptions::beta1),
                      option_field("beta2", &RAdamOptions::beta2),
                      option_field("eps", &RAdamOptions::eps),
                      option_field("weight_decay", &RAdamOptions::weight_decay),
                      option_field("maximize", &RAdamOptions::maximize)};
  }
};

/// Rectified Adam (Liu et al. 2020): SGD with momentum while the variance estimate is unreliable
/// (rho_t <= 5), Adam with the rectification term after.
template <FloatingElement T = float>
class RAdam : public Beta1Optimizer<T, RAdamOptions> {
 public:
  using Base = Beta1Optimizer<T, RAdamOptions>;
  RAdam(std::vector<Tensor<T>> params, RAdamOptions options = {});
  /// LibTorch's positional form: RAdam(params, lr) is RAdam(params, {.lr = lr}).
  RAdam(std::vector<Tensor<T>> params, double lr) : RAdam(std::move(params), RAdamOptions{.lr = lr}) {}
  explicit RAdam(std::vector<typename Base::Group> groups);
  void step() override;

 protected:
  std::string kind() const override { return "RAdam"; }
  std::optional<typename Base::StateNames> state_names() const override {
    return typename Base::StateNames{{"exp_avg", "exp_avg_sq"}, {}};
  }
};

struct NAdamOptions {
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum_decay = 4e-3;
  bool decoupled_weight_decay = false;  // NAdamW: the decay applied to the weights, as AdamW's
  bool maximize = false;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &NAdamOptions::lr),
                      option_field("beta1", &NAdamOptions::beta1),
                      option_field("beta2", &NAdamOptions::beta2),
                      option_field("eps", &NAdamOptions::eps),
                      option_field("weight_decay", &NAdamOptions::weight_decay),
                      option_field("momentum_decay", &NAdamOptions::momentum_decay),
                      option_field("decoupled_weight_decay", &NAdamOptions::decoupled_weight_decay),
                      option_field("maximize", &NAdamOptions::maximize)};
  }
};

/// Adam with Nesterov momentum (Dozat 2016), its momentum warmed up by momentum_decay:
/// mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)). As PyTorch, the product of the mu_t is kept
/// as a float32 number whatever the parameters' type.
template <FloatingElement T = float>
class NAdam : public Beta1Optimizer<T, NAdamOptions> {
 public:
  using Base = Beta1Optimizer<T, NAdamOptions>;
  NAdam(std::vector<Tensor<T>> params, NAdamOptions options = {});
  /// LibTorch's positional form: NAdam(params, lr) is NAdam(params, {.lr = lr}).
  NAdam(std::vector<Tensor<T>> params, double lr) : NAdam(std::move(params), NAdamOptions{.lr = lr}) {}
  explicit NAdam(std::vector<typename Base::Group> groups);
  void step() override;

 protected:
  std::string kind() const override { return "NAdam"; }
  std::optional<typename Base::StateNames> state_names() const override {
    return typename Base::StateNames{{"exp_avg", "exp_avg_sq", "mu_product"}, {}, {"mu_product"}};
  }
};

// ---- Adam and AdamW ----------------------------------------------------------------------------

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  bool maximize = false;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &AdamOptions::lr),
                      option_field("beta1", &AdamOptions::beta1),
                      option_field("beta2", &AdamOptions::beta2),
                      option_field("eps", &AdamOptions::eps),
                      option_field("weight_decay", &AdamOptions::weight_decay),
                      option_field("amsgrad", &AdamOptions::amsgrad),
                      option_field("maximize", &AdamOptions::maximize)};
  }
};

/// Adam; with decoupled = true it is AdamW (weight decay applied to the weights, not the gradient).
template <FloatingElement T = float>
class Adam : public Beta1Optimizer<T, AdamOptions> {
 public:
  using Base = Beta1Optimizer<T, AdamOptions>;
  Adam(std::vector<Tensor<T>> params, AdamOptions options = {});
  /// LibTorch's positional form: Adam(params, lr) is Adam(params, {.lr = lr}).
  Adam(std::vector<Tensor<T>> params, double lr) : Adam(std::move(params), AdamOptions{.lr = lr}) {}
  explicit Adam(std::vector<typename Base::Group> groups);
  void step() override;

 protected:
  bool decoupled_weight_decay_ = false;
  std::string kind() const override { return decoupled_weight_decay_ ? "AdamW" : "Adam"; }
  std::optional<typename Base::StateNames> state_names() const override {
    return typename Base::StateNames{{"exp_avg", "exp_avg_sq"}, {"max_exp_avg_sq"}};
  }
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // AdamW's default, unlike Adam's 0
  bool amsgrad = false;
  bool maximize = false;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &AdamWOptions::lr),
                      option_field("beta1", &AdamWOptions::beta1),
                      option_field("beta2", &AdamWOptions::beta2),
                      option_field("eps", &AdamWOptions::eps),
                      option_field("weight_decay", &AdamWOptions::weight_decay),
                      option_field("amsgrad", &AdamWOptions::amsgrad),
                      option_field("maximize", &AdamWOptions::maximize)};
  }
};

template <FloatingElement T = float>
class AdamW : public Adam<T> {
 public:
  AdamW(std::vector<Tensor<T>> params, AdamWOptions options = {});
  AdamW(std::vector<Tensor<T>> params, double lr) : AdamW(std::move(params), AdamWOptions{.lr = lr}) {}
};

SGD(std::vector<Tensor<float>>, double)->SGD<float>;
SGD(std::vector<Tensor<double>>, double)->SGD<double>;
Adam(std::vector<Tensor<float>>, double)->Adam<float>;
Adam(std::vector<Tensor<double>>, double)->Adam<double>;
AdamW(std::vector<Tensor<float>>, double)->AdamW<float>;
AdamW(std::vector<Tensor<double>>, double)->AdamW<double>;
RMSprop(std::vector<Tensor<float>>, double)->RMSprop<float>;
RMSprop(std::vector<Tensor<double>>, double)->RMSprop<double>;
Adagrad(std::vector<Tensor<float>>, double)->Adagrad<float>;
Adagrad(std::vector<Tensor<double>>, double)->Adagrad<double>;
SGD(std::vector<Tensor<float>>, SGDOptions)->SGD<float>;
SGD(std::vector<Tensor<double>>, SGDOptions)->SGD<double>;
Adam(std::vector<Tensor<float>>, AdamOptions)->Adam<float>;
Adam(std::vector<Tensor<double>>, AdamOptions)->Adam<double>;
AdamW(std::vector<Tensor<float>>, AdamWOptions)->AdamW<float>;
RMSprop(std::vector<Tensor<float>>, RMSpropOptions)->RMSprop<float>;
RMSprop(std::vector<Tensor<double>>, RMSpropOptions)->RMSprop<double>;
Adagrad(std::vector<Tensor<float>>, AdagradOptions)->Adagrad<float>;
Adagrad(std::vector<Tensor<double>>, AdagradOptions)->Adagrad<double>;
AdamW(std::vector<Tensor<double>>, AdamWOptions)->AdamW<double>;
NAdam(std::vector<Tensor<float>>, NAdamOptions)->NAdam<float>;
NAdam(std::vector<Tensor<double>>, NAdamOptions)->NAdam<double>;

extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;
extern template class AdamW<float>;
extern template class AdamW<double>;
extern template class RMSprop<float>;
extern template class RMSprop<double>;
extern template class Adagrad<float>;
extern template class Adagrad<double>;
extern template class Adamax<float>;
extern template class Adamax<double>;
extern template class RAdam<float>;
extern template class RAdam<double>;
extern template class NAdam<float>;
extern template class NAdam<double>;

/// Scales all gradients so that their joint p-norm is at most max_norm; returns the norm before
/// clipping (torch.nn.utils.clip_grad_norm_). Parameters without a gradient are skipped.
template <FloatingElement T>
double clip_grad_norm_(const std::vector<Tensor<T>>& params, double max_norm, double norm_type = 2.0);
/// Clamps every gradient element to [-clip_value, clip_value].
template <FloatingElement T>
void clip_grad_value_(const std::vector<Tensor<T>>& params, double clip_value);

}  // namespace ember::optim
