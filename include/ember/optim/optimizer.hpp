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

template <FloatingElement T, class Options>
class Optimizer {
 public:
  struct Group {
    std::vector<Tensor<T>> params;
    Options options;
  };

  Optimizer(std::vector<Tensor<T>> params, Options options) { add_param_group({std::move(params), options}); }
  explicit Optimizer(std::vector<Group> groups) {
    for (auto& g : groups) add_param_group(std::move(g));
  }
  virtual ~Optimizer() = default;

  void add_param_group(Group group);
  /// Resets every parameter's gradient (to undefined by default, as PyTorch 2).
  void zero_grad(bool set_to_none = true);
  /// One update of every parameter that has a gradient.
  virtual void step() = 0;

  std::vector<Group>& param_groups() noexcept { return groups_; }
  const std::vector<Group>& param_groups() const noexcept { return groups_; }

  OptimizerState state_dict() const;
  /// Throws ValueError when the state does not fit (group or parameter counts, tensor shapes).
  void load_state_dict(const OptimizerState& state);

 protected:
  struct Slot {
    std::map<std::string, Tensor<T>> tensors;
    int64_t step = 0;
  };
  /// The state slot of parameter `index` of group `group`.
  Slot& slot(size_t group, size_t index);
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

 protected:
  std::map<std::string, double> options_to_map(const SGDOptions& o) const override;
  SGDOptions options_from_map(const std::map<std::string, double>& m, const SGDOptions& base) const override;
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
AdamW(std::vector<Tensor<double>>, AdamWOptions)->AdamW<double>;

extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;
extern template class AdamW<float>;
extern template class AdamW<double>;

}  // namespace ember::optim
