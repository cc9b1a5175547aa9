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
#include <string>
#include <utility>
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember::optim {

/// An optimizer's state: per parameter (by position) named tensors and counters, and per group the
/// options by name (lr, momentum, betas as beta1/beta2, ...).
struct OptimizerState {
  struct ParamState {
    std::map<std::string, TensorBase> tensors;  // momentum_buffer, exp_avg, exp_avg_sq, ...
    int64_t step = 0;
  };
  std::vector<ParamState> params;  // in group order, then parameter order
  std::vector<std::map<std::string, double>> groups;
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

  Optimizer(std::vector<Tensor<T>> params, Options options) { add_param_group({std::move(params), options}); }
  explicit Optimizer(std::vector<Group> groups) {
    for (auto& g : groups) add_param_group(std::move(g));
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
  virtual std::map<std::string, double> options_to_map(const Options& o) const = 0;
  virtual Options options_from_map(const std::map<std::string, double>& m, const Options& base) const = 0;

  std::vector<Group> groups_;
  std::vector<std::vector<Slot>> slots_;
};

// ---- SGD ---------------------------------------------------------------------------------------

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};

template <FloatingElement T = float>
class SGD : public Optimizer<T, SGDOptions> {
 public:
  using Base = Optimizer<T, SGDOptions>;
  SGD(std::vector<Tensor<T>> params, SGDOptions options = {});
  explicit SGD(std::vector<typename Base::Group> groups);
  void step() override;
  bool has_momentum() const override { return true; }
  double momentum(size_t g) const override { return this->groups_.at(g).options.momentum; }
  void set_momentum(size_t g, double m) override { this->groups_.at(g).options.momentum = m; }

 protected:
  std::map<std::string, double> options_to_map(const SGDOptions& o) const override;
  SGDOptions options_from_map(const std::map<std::string, double>& m, const SGDOptions& base) const override;
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
};

template <FloatingElement T = float>
class RMSprop : public Optimizer<T, RMSpropOptions> {
 public:
  using Base = Optimizer<T, RMSpropOptions>;
  RMSprop(std::vector<Tensor<T>> params, RMSpropOptions options = {});
  explicit RMSprop(std::vector<typename Base::Group> groups);
  void step() override;

 protected:
  std::map<std::string, double> options_to_map(const RMSpropOptions& o) const override;
  RMSpropOptions options_from_map(const std::map<std::string, double>& m, const RMSpropOptions& base) const override;
};

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double initial_accumulator_value = 0.0;
  double eps = 1e-10;
  bool maximize = false;
};

template <FloatingElement T = float>
class Adagrad : public Optimizer<T, AdagradOptions> {
 public:
  using Base = Optimizer<T, AdagradOptions>;
  Adagrad(std::vector<Tensor<T>> params, AdagradOptions options = {});
  explicit Adagrad(std::vector<typename Base::Group> groups);
  void step() override;

 protected:
  std::map<std::string, double> options_to_map(const AdagradOptions& o) const override;
  AdagradOptions options_from_map(const std::map<std::string, double>& m, const AdagradOptions& base) const override;
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
};

/// Adam; with decoupled = true it is AdamW (weight decay applied to the weights, not the gradient).
template <FloatingElement T = float>
class Adam : public Optimizer<T, AdamOptions> {
 public:
  using Base = Optimizer<T, AdamOptions>;
  Adam(std::vector<Tensor<T>> params, AdamOptions options = {});
  explicit Adam(std::vector<typename Base::Group> groups);
  void step() override;
  bool has_momentum() const override { return true; }
  double momentum(size_t g) const override { return this->groups_.at(g).options.beta1; }
  void set_momentum(size_t g, double m) override { this->groups_.at(g).options.beta1 = m; }

 protected:
  bool decoupled_weight_decay_ = false;
  std::map<std::string, double> options_to_map(const AdamOptions& o) const override;
  AdamOptions options_from_map(const std::map<std::string, double>& m, const AdamOptions& base) const override;
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // AdamW's default, unlike Adam's 0
  bool amsgrad = false;
  bool maximize = false;
};

template <FloatingElement T = float>
class AdamW : public Adam<T> {
 public:
  AdamW(std::vector<Tensor<T>> params, AdamWOptions options = {});
};

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

/// Scales all gradients so that their joint p-norm is at most max_norm; returns the norm before
/// clipping (torch.nn.utils.clip_grad_norm_). Parameters without a gradient are skipped.
template <FloatingElement T>
double clip_grad_norm_(const std::vector<Tensor<T>>& params, double max_norm, double norm_type = 2.0);
/// Clamps every gradient element to [-clip_value, clip_value].
template <FloatingElement T>
void clip_grad_value_(const std::vector<Tensor<T>>& params, double clip_value);

}  // namespace ember::optim
