#pragma once
// Learning-rate schedules with torch.optim.lr_scheduler's names, arguments and values. Create the
// scheduler after the optimizer and call step() once per epoch (or per batch for OneCycleLR),
// after optimizer.step().
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ember/optim/optimizer.hpp"

namespace ember::optim {

class ChainedScheduler;

class LRScheduler {
 public:
  explicit LRScheduler(ParamGroupControl& optimizer);
  virtual ~LRScheduler() = default;
  /// Advances one epoch and sets the optimizer's learning rates.
  virtual void step();
  /// Jumps to `epoch` (used by SequentialLR at its milestones).
  void step_to(int64_t epoch);
  std::vector<double> get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const noexcept { return last_epoch_; }
  /// The position in the schedule (for checkpoints); the schedule's own arguments are not
  /// included: construct the same scheduler and load this into it.
  virtual std::map<std::string, double> state_dict() const;
  virtual void load_state_dict(const std::map<std::string, double>& state);
  /// Whether the schedule multiplies the learning rate by factors that ChainedScheduler can
  /// combine with others' (PyTorch's chainable schedulers), or sets it from the initial one.
  virtual bool chainable() const { return false; }
  virtual const char* name() const { return "LRScheduler"; }

 protected:
  friend class ChainedScheduler;
  /// The learning rate of `group` at `epoch`, from its initial value.
  virtual double lr_at(size_t group, int64_t epoch) const = 0;
  /// Called with the new epoch by step() and step_to() before the learning rates are set, for
  /// schedules that keep state of their own (MultiplicativeLR's product).
  virtual void advance(int64_t /*epoch*/) {}
  /// Call at the end of a derived constructor: sets the epoch-0 learning rates.
  void initial_step();
  void apply();

  ParamGroupControl& optimizer_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = -1;
};

/// lr * gamma^(epoch // step_size)
class StepLR : public LRScheduler {
 public:
  StepLR(ParamGroupControl& optimizer, int64_t step_size, double gamma = 0.1);
  const char* name() const override { return "StepLR"; }
  bool chainable() const override { return true; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  int64_t step_size_;
  double gamma_;
};

/// lr * gamma^(number of milestones <= epoch)
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(ParamGroupControl& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);
  const char* name() const override { return "MultiStepLR"; }
  bool chainable() const override { return true; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  std::vector<int64_t> milestones_;
  double gamma_;
};

/// lr * gamma^epoch
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(ParamGroupControl& optimizer, double gamma);
  const char* name() const override { return "ExponentialLR"; }
  bool chainable() const override { return true; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  double gamma_;
};

/// eta_min + (lr - eta_min) (1 + cos(pi epoch / T_max)) / 2
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(ParamGroupControl& optimizer, int64_t t_max, double eta_min = 0.0);
  const char* name() const override { return "CosineAnnealingLR"; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  int64_t t_max_;
  double eta_min_;
};

/// lr * factor, the factor going linearly from start_factor to end_factor over total_iters
/// (a warm-up when start_factor < 1).
class LinearLR : public LRScheduler {
 public:
  LinearLR(ParamGroupControl& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0,
           int64_t total_iters = 5);
  const char* name() const override { return "LinearLR"; }
  bool chainable() const override { return true; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  double start_, end_;
  int64_t total_;
};

/// lr * lr_lambda(epoch), one function for every group or one per group (warm-ups, custom decays).
class LambdaLR : public LRScheduler {
 public:
  using Lambda = std::function<double(int64_t epoch)>;
  LambdaLR(ParamGroupControl& optimizer, Lambda lr_lambda);
  LambdaLR(ParamGroupControl& optimizer, std::vector<Lambda> lr_lambdas);
  const char* name() const override { return "LambdaLR"; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  std::vector<Lambda> lambdas_;
};

/// The learning rate times lr_lambda(epoch) at each step from epoch 1 (one function for every
/// group or one per group): lr_lambda(1) * ... * lr_lambda(epoch) times the initial rate. Each
/// function is called once per step, with that step's epoch. At a SequentialLR milestone it
/// carries on from the rate it finds, as PyTorch's.
class MultiplicativeLR : public LRScheduler {
 public:
  using Lambda = std::function<double(int64_t epoch)>;
  MultiplicativeLR(ParamGroupControl& optimizer, Lambda lr_lambda);
  MultiplicativeLR(ParamGroupControl& optimizer, std::vector<Lambda> lr_lambdas);
  const char* name() const override { return "MultiplicativeLR"; }
  bool chainable() const override { return true; }
  /// Adds the running products ("factor.<group>").
  std::map<std::string, double> state_dict() const override;
  void load_state_dict(const std::map<std::string, double>& state) override;

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  void advance(int64_t epoch) override;
  std::vector<Lambda> lambdas_;
  std::vector<double> factors_;
};

/// lr * factor for the first total_iters epochs, lr after.
class ConstantLR : public LRScheduler {
 public:
  ConstantLR(ParamGroupControl& optimizer, double factor = 1.0 / 3, int64_t total_iters = 5);
  const char* name() const override { return "ConstantLR"; }
  bool chainable() const override { return true; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  double factor_;
  int64_t total_;
};

/// lr * (1 - min(epoch, total_iters) / total_iters)^power: 0 from total_iters on.
class PolynomialLR : public LRScheduler {
 public:
  PolynomialLR(ParamGroupControl& optimizer, int64_t total_iters = 5, double power = 1.0);
  const char* name() const override { return "PolynomialLR"; }
  bool chainable() const override { return true; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  int64_t total_;
  double power_;
};

/// SGDR (Loshchilov and Hutter 2017): cosine annealing from lr to eta_min over T_i epochs, then a
/// restart at lr; the first period is T_0 and each next one T_mult times longer.
class CosineAnnealingWarmRestarts : public LRScheduler {
 public:
  CosineAnnealingWarmRestarts(ParamGroupControl& optimizer, int64_t t_0, int64_t t_mult = 1, double eta_min = 0.0);
  const char* name() const override { return "CosineAnnealingWarmRestarts"; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  int64_t t_0_, t_mult_;
  double eta_min_;
};

enum class CyclicMode { Triangular, Triangular2, ExpRange };

struct CyclicLROptions {
  int64_t step_size_up = 2000;
  int64_t step_size_down = 0;  // 0: the same as step_size_up
  CyclicMode mode = CyclicMode::Triangular;
  double gamma = 1.0;  // ExpRange: the amplitude times gamma^iteration
  bool cycle_momentum = true;
  double base_momentum = 0.8;
  double max_momentum = 0.9;
};

/// Cyclical learning rates (Smith 2017): from base_lr up to max_lr in step_size_up iterations and
/// back in step_size_down, the amplitude constant (Triangular), halved each cycle (Triangular2) or
/// scaled by gamma^iteration (ExpRange); momentum (SGD's, or Adam's beta1) cycles inversely
/// between max_momentum and base_momentum. The group learning rates start at base_lr. Step it
/// once per batch.
class CyclicLR : public LRScheduler {
 public:
  CyclicLR(ParamGroupControl& optimizer, double base_lr, double max_lr, CyclicLROptions options = {});
  void step() override;
  const char* name() const override { return "CyclicLR"; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  /// The position in the cycle (0 at base_lr, 1 at max_lr) and the amplitude's scale at `epoch`.
  std::pair<double, double> cycle_at(int64_t epoch) const;
  void apply_momentum();
  double base_lr_, max_lr_;
  CyclicLROptions o_;
};

struct OneCycleOptions {
  int64_t total_steps = 0;  // or epochs * steps_per_epoch
  int64_t epochs = 0;
  int64_t steps_per_epoch = 0;
  double pct_start = 0.3;
  bool cos_anneal = true;  // anneal_strategy "cos" (true) or "linear"
  bool cycle_momentum = true;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
};

/// The 1cycle policy: warm up from max_lr / div_factor to max_lr, then anneal to
/// max_lr / (div_factor * final_div_factor); momentum (SGD's, or Adam's beta1) cycles inversely.
/// Step it once per batch.
class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(ParamGroupControl& optimizer, double max_lr, OneCycleOptions options);
  void step() override;
  const char* name() const override { return "OneCycleLR"; }

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  double momentum_at(int64_t epoch) const;
  struct Phase {
    double end_step;
    double start_lr_factor, end_lr_factor;  // of max_lr
    bool momentum_up;
  };
  double anneal(double start, double end, double pct) const;
  std::vector<double> max_lrs_;
  OneCycleOptions o_;
  int64_t total_;
  std::vector<Phase> phases_;
};

/// Runs `schedulers` one after another, switching at `milestones` (epochs).
class SequentialLR {
 public:
  SequentialLR(ParamGroupControl& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  void step();
  std::vector<double> get_last_lr() const;

 private:
  ParamGroupControl& optimizer_;
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
  int64_t last_epoch_ = 0;
};

/// Steps several schedulers of one optimizer together, the learning rate being the initial one
/// times each schedule's factor (PyTorch's ChainedScheduler): ConstantLR(opt, 0.1, 2) with
/// ExponentialLR(opt, 0.9) gives 0.1, 0.09, 0.81, 0.729, ... times the initial rate. The members
/// must be chainable (StepLR, MultiStepLR, ExponentialLR, LinearLR, ConstantLR, PolynomialLR,
/// MultiplicativeLR); the others set the rate from the initial one, which in PyTorch overwrites
/// what the schedulers before them did, and are refused. Two schedulers stepped on one optimizer
/// without it do not combine: the last one stepped sets the rate.
class ChainedScheduler {
 public:
  explicit ChainedScheduler(std::vector<std::shared_ptr<LRScheduler>> schedulers);
  void step();
  std::vector<double> get_last_lr() const;
  /// The members' states, keys prefixed by their index ("0.last_epoch", "1.factor.0", ...).
  std::map<std::string, double> state_dict() const;
  void load_state_dict(const std::map<std::string, double>& state);

 private:
  void apply();
  /// Runs `change` on the members; if it throws, every member gets its state back.
  template <class F>
  void all_or_nothing(F&& change);
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<double> last_lr_;
};

struct ReduceLROnPlateauOptions {
  bool mode_max = false;  // "min" (false) or "max"
  double factor = 0.1;
  int64_t patience = 10;
  double threshold = 1e-4;
  bool threshold_abs = false;  // threshold_mode "rel" (false) or "abs"
  int64_t cooldown = 0;
  double min_lr = 0.0;
  double eps = 1e-8;
};

/// Cuts the learning rate by `factor` when a metric stops improving for `patience` epochs.
class ReduceLROnPlateau {
 public:
  explicit ReduceLROnPlateau(ParamGroupControl& optimizer, ReduceLROnPlateauOptions options = {});
  void step(double metric);
  std::vector<double> get_last_lr() const;
  std::map<std::string, double> state_dict() const;
  void load_state_dict(const std::map<std::string, double>& state);

 private:
  bool better(double a) const;
  ParamGroupControl& optimizer_;
  ReduceLROnPlateauOptions o_;
  double best_;
  int64_t bad_epochs_ = 0, cooldown_counter_ = 0, last_epoch_ = 0;
};

}  // namespace ember::optim
