#include "ember/optim/lr_scheduler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"

namespace ember::optim {

namespace {
constexpr double kPi = 3.14159265358979323846;
}

LRScheduler::LRScheduler(ParamGroupControl& optimizer) : optimizer_(optimizer) {
  for (size_t g = 0; g < optimizer_.num_groups(); ++g) base_lrs_.push_back(optimizer_.initial_lr(g));
}

void LRScheduler::initial_step() {
  last_epoch_ = 0;
  apply();
}

void LRScheduler::apply() {
  last_lr_.clear();
  // Groups added to the optimizer after the scheduler was made keep their rate, as in PyTorch.
  const size_t groups = std::min(optimizer_.num_groups(), base_lrs_.size());
  for (size_t g = 0; g < groups; ++g) {
    const double lr = lr_at(g, last_epoch_);
    optimizer_.set_lr(g, lr);
    last_lr_.push_back(lr);
  }
}

void LRScheduler::step() {
  advance(last_epoch_ + 1);
  ++last_epoch_;
  apply();
}

std::map<std::string, double> LRScheduler::state_dict() const {
  std::map<std::string, double> s{{"last_epoch", static_cast<double>(last_epoch_)}};
  for (size_t g = 0; g < base_lrs_.size(); ++g) s["base_lr." + std::to_string(g)] = base_lrs_[g];
  return s;
}

namespace {

// A counter stored as a double in a state dict: it must be a whole number in [lo, 2^53] (every
// such number is exact in a double); anything else (NaN, infinities, 2.5, 1e300) is refused
// before it is converted.
int64_t state_count(const std::map<std::string, double>& state, const std::string& key, const char* who,
                    int64_t lo) {
  auto it = state.find(key);
  if (it == state.end()) throw ValueError(std::string(who) + " load_state_dict: no " + key + " in the state");
  const double v = it->second;
  if (!(v >= static_cast<double>(lo) && v <= 9007199254740992.0) || v != std::floor(v)) {
    throw ValueError(std::string(who) + " load_state_dict: " + key + " = " + std::to_string(v) +
                     " is not a whole number in [" + std::to_string(lo) + ", 2^53]");
  }
  return static_cast<int64_t>(v);
}

double state_value(const std::map<std::string, double>& state, const std::string& key, const char* who,
                   bool allow_infinite) {
  auto it = state.find(key);
  if (it == state.end()) throw ValueError(std::string(who) + " load_state_dict: no " + key + " in the state");
  if (std::isnan(it->second) || (!allow_infinite && std::isinf(it->second))) {
    throw ValueError(std::string(who) + " load_state_dict: " + key + " = " + std::to_string(it->second) +
                     " is not a finite number");
  }
  return it->second;
}

}  // namespace

void LRScheduler::load_state_dict(const std::map<std::string, double>& state) {
  // Everything is checked before anything changes.
  const int64_t last_epoch = state_count(state, "last_epoch", "scheduler", -1);
  std::vector<double> base_lrs(base_lrs_.size());
  for (size_t g = 0; g < base_lrs_.size(); ++g) {
    base_lrs[g] = state_value(state, "base_lr." + std::to_string(g), "scheduler", false);
  }
  base_lrs_ = std::move(base_lrs);
  last_epoch_ = last_epoch;
  apply();
}

std::map<std::string, double> MultiplicativeLR::state_dict() const {
  std::map<std::string, double> s = LRScheduler::state_dict();
  for (size_t g = 0; g < factors_.size(); ++g) s["factor." + std::to_string(g)] = factors_[g];
  return s;
}

void MultiplicativeLR::load_state_dict(const std::map<std::string, double>& state) {
  std::vector<double> factors(factors_.size());
  for (size_t g = 0; g < factors.size(); ++g) {
    factors[g] = state_value(state, "factor." + std::to_string(g), "MultiplicativeLR", false);
  }
  std::swap(factors_, factors);
  try {
    LRScheduler::load_state_dict(state);
  } catch (...) {
    std::swap(factors_, factors);
    throw;
  }
}

void LRScheduler::step_to(int64_t epoch) {
  advance(epoch);
  last_epoch_ = epoch;
  apply();
}

StepLR::StepLR(ParamGroupControl& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) throw ValueError("StepLR: step_size must be positive, got " + std::to_string(step_size));
  initial_step();
}
double StepLR::lr_at(size_t g, int64_t epoch) const {
  return base_lrs_[g] * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

MultiStepLR::MultiStepLR(ParamGroupControl& optimizer, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(optimizer), milestones_(std::move(milestones)), gamma_(gamma) {
  if (!std::is_sorted(milestones_.begin(), milestones_.end())) {
    throw ValueError("MultiStepLR: milestones must be increasing");
  }
  initial_step();
}
double MultiStepLR::lr_at(size_t g, int64_t epoch) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
  return base_lrs_[g] * std::pow(gamma_, static_cast<double>(passed));
}

ExponentialLR::ExponentialLR(ParamGroupControl& optimizer, double gamma)
    : LRScheduler(optimizer), gamma_(gamma) {
  initial_step();
}
double ExponentialLR::lr_at(size_t g, int64_t epoch) const {
  return base_lrs_[g] * std::pow(gamma_, static_cast<double>(epoch));
}

CosineAnnealingLR::CosineAnnealingLR(ParamGroupControl& optimizer, int64_t t_max, double eta_min)
    : LRScheduler(optimizer), t_max_(t_max), eta_min_(eta_min) {
  if (t_max <= 0) throw ValueError("CosineAnnealingLR: T_max must be positive, got " + std::to_string(t_max));
  initial_step();
}
double CosineAnnealingLR::lr_at(size_t g, int64_t epoch) const {
  return eta_min_ + (base_lrs_[g] - eta_min_) *
                        (1 + std::cos(kPi * static_cast<double>(epoch) / static_cast<double>(t_max_))) / 2;
}

LinearLR::LinearLR(ParamGroupControl& optimizer, double start_factor, double end_factor, int64_t total_iters)
    : LRScheduler(optimizer), start_(start_factor), end_(end_factor), total_(total_iters) {
  if (start_factor <= 0 || start_factor > 1 || end_factor < 0 || end_factor > 1) {
    throw ValueError("LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1]");
  }
  if (total_iters <= 0) throw ValueError("LinearLR: total_iters must be positive");
  initial_step();
}
double LinearLR::lr_at(size_t g, int64_t epoch) const {
  const double t = static_cast<double>(std::min(epoch, total_)) / static_cast<double>(total_);
  return base_lrs_[g] * (start_ + (end_ - start_) * t);
}

LambdaLR::LambdaLR(ParamGroupControl& optimizer, Lambda lr_lambda)
    : LambdaLR(optimizer, std::vector<Lambda>(optimizer.num_groups(), std::move(lr_lambda))) {}

namespace {
// One function per group, none empty (LambdaLR's and MultiplicativeLR's lr_lambdas).
void check_lambdas(const char* who, const std::vector<std::function<double(int64_t)>>& lambdas, size_t groups) {
  if (lambdas.size() != groups) {
    throw ValueError(std::string(who) + ": " + std::to_string(lambdas.size()) + " lr_lambdas for " +
                     std::to_string(groups) + " parameter groups; give one, or one per group");
  }
  for (size_t g = 0; g < lambdas.size(); ++g) {
    if (!lambdas[g]) throw ValueError(std::string(who) + ": lr_lambda of group " + std::to_string(g) + " is empty");
  }
}
}  // namespace

LambdaLR::LambdaLR(ParamGroupControl& optimizer, std::vector<Lambda> lr_lambdas)
    : LRScheduler(optimizer), lambdas_(std::move(lr_lambdas)) {
  check_lambdas("LambdaLR", lambdas_, optimizer.num_groups());
  initial_step();
}
double LambdaLR::lr_at(size_t g, int64_t epoch) const { return base_lrs_[g] * lambdas_[g](epoch); }

MultiplicativeLR::MultiplicativeLR(ParamGroupControl& optimizer, Lambda lr_lambda)
    : MultiplicativeLR(optimizer, std::vector<Lambda>(optimizer.num_groups(), std::move(lr_lambda))) {}

MultiplicativeLR::MultiplicativeLR(ParamGroupControl& optimizer, std::vector<Lambda> lr_lambdas)
    : LRScheduler(optimizer), lambdas_(std::move(lr_lambdas)), factors_(base_lrs_.size(), 1.0) {
  check_lambdas("MultiplicativeLR", lambdas_, optimizer.num_groups());
  initial_step();
}

double MultiplicativeLR::lr_at(size_t g, int64_t) const { return base_lrs_[g] * factors_[g]; }

void MultiplicativeLR::advance(int64_t epoch) {
  std::vector<double> next = factors_;  // a function that throws changes nothing
  for (size_t g = 0; g < next.size(); ++g) {
    if (epoch > 0) {
      next[g] *= lambdas_[g](epoch);
    } else if (base_lrs_[g] != 0) {  // a SequentialLR milestone: carry on from the current rate
      next[g] = optimizer_.lr(g) / base_lrs_[g];
    }
  }
  factors_ = std::move(next);
}

ConstantLR::ConstantLR(ParamGroupControl& optimizer, double factor, int64_t total_iters)
    : LRScheduler(optimizer), factor_(factor), total_(total_iters) {
  if (!(factor >= 0 && factor <= 1)) {
    throw ValueError("ConstantLR: factor must be in [0, 1], got " + std::to_string(factor));
  }
  if (total_iters < 0) throw ValueError("ConstantLR: total_iters must be >= 0, got " + std::to_string(total_iters));
  initial_step();
}
double ConstantLR::lr_at(size_t g, int64_t epoch) const {
  return epoch < total_ ? base_lrs_[g] * factor_ : base_lrs_[g];
}

PolynomialLR::PolynomialLR(ParamGroupControl& optimizer, int64_t total_iters, double power)
    : LRScheduler(optimizer), total_(total_iters), power_(power) {
  if (total_iters <= 0) {
    throw ValueError("PolynomialLR: total_iters must be positive, got " + std::to_string(total_iters));
  }
  initial_step();
}
double PolynomialLR::lr_at(size_t g, int64_t epoch) const {
  const double done = static_cast<double>(std::min(epoch, total_)) / static_cast<double>(total_);
  return base_lrs_[g] * std::pow(1.0 - done, power_);
}

CosineAnnealingWarmRestarts::CosineAnnealingWarmRestarts(ParamGroupControl& optimizer, int64_t t_0, int64_t t_mult,
                                                         double eta_min)
    : LRScheduler(optimizer), t_0_(t_0), t_mult_(t_mult), eta_min_(eta_min) {
  if (t_0 <= 0) throw ValueError("CosineAnnealingWarmRestarts: T_0 must be positive, got " + std::to_string(t_0));
  if (t_mult < 1) throw ValueError("CosineAnnealingWarmRestarts: T_mult must be >= 1, got " + std::to_string(t_mult));
  initial_step();
}
double CosineAnnealingWarmRestarts::lr_at(size_t g, int64_t epoch) const {
  // The epoch's place in its period, in whole epochs (as PyTorch counts them when stepped one by one).
  int64_t t_cur = epoch, t_i = t_0_;
  if (t_mult_ == 1) {
    t_cur = epoch % t_0_;
  } else {
    while (t_cur >= t_i) {
      t_cur -= t_i;
      t_i *= t_mult_;
    }
  }
  return eta_min_ + (base_lrs_[g] - eta_min_) *
                        (1 + std::cos(kPi * static_cast<double>(t_cur) / static_cast<double>(t_i))) / 2;
}

namespace {
// Checks the options, then starts every group at base_lr (before the scheduler records the
// groups' initial learning rates, as PyTorch's CyclicLR sets them before its base class does).
ParamGroupControl& cyclic_start(ParamGroupControl& optimizer, double base_lr, const CyclicLROptions& o) {
  if (o.step_size_up <= 0 || o.step_size_down < 0) {
    throw ValueError("CyclicLR: step_size_up must be positive and step_size_down >= 0 (0: the same as up), got " +
                     std::to_string(o.step_size_up) + " and " + std::to_string(o.step_size_down));
  }
  if (o.cycle_momentum && !optimizer.has_momentum()) {
    throw ValueError("CyclicLR: cycle_momentum needs an optimizer with momentum (SGD or Adam)");
  }
  for (size_t g = 0; g < optimizer.num_groups(); ++g) optimizer.set_lr(g, base_lr);
  return optimizer;
}
}  // namespace

CyclicLR::CyclicLR(ParamGroupControl& optimizer, double base_lr, double max_lr, CyclicLROptions o)
    : LRScheduler(cyclic_start(optimizer, base_lr, o)), base_lr_(base_lr), max_lr_(max_lr), o_(o) {
  if (o_.step_size_down == 0) o_.step_size_down = o_.step_size_up;
  initial_step();
  apply_momentum();
}

std::pair<double, double> CyclicLR::cycle_at(int64_t epoch) const {
  const double total = static_cast<double>(o_.step_size_up + o_.step_size_down);
  const double ratio = static_cast<double>(o_.step_size_up) / total;
  const double e = static_cast<double>(epoch);
  const double cycle = std::floor(1 + e / total);
  const double x = 1.0 + e / total - cycle;
  const double position = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
  double scale = 1.0;
  if (o_.mode == CyclicMode::Triangular2) scale = 1.0 / std::pow(2.0, cycle - 1);
  if (o_.mode == CyclicMode::ExpRange) scale = std::pow(o_.gamma, e);
  return {position, scale};
}

double CyclicLR::lr_at(size_t, int64_t epoch) const {
  const auto [position, scale] = cycle_at(epoch);
  return base_lr_ + (max_lr_ - base_lr_) * position * scale;
}

void CyclicLR::apply_momentum() {
  if (!o_.cycle_momentum) return;
  const auto [position, scale] = cycle_at(last_epoch_);
  const double m = o_.max_momentum - (o_.max_momentum - o_.base_momentum) * position * scale;
  for (size_t g = 0; g < optimizer_.num_groups(); ++g) optimizer_.set_momentum(g, m);
}

void CyclicLR::step() {
  LRScheduler::step();
  apply_momentum();
}

OneCycleLR::OneCycleLR(ParamGroupControl& optimizer, double max_lr, OneCycleOptions o)
    : LRScheduler(optimizer), o_(o) {
  total_ = o.total_steps > 0 ? o.total_steps : o.epochs * o.steps_per_epoch;
  if (total_ <= 0) {
    throw ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch, all positive");
  }
  if (o.pct_start < 0 || o.pct_start > 1) throw ValueError("OneCycleLR: pct_start must be in [0, 1]");
  if (o.cycle_momentum && !optimizer.has_momentum()) {
    throw ValueError("OneCycleLR: cycle_momentum needs an optimizer with momentum (SGD or Adam)");
  }
  const double total = static_cast<double>(total_);
  const double initial = 1.0 / o.div_factor, min = initial / o.final_div_factor;
  if (o.three_phase) {
    phases_ = {{o.pct_start * total - 1, initial, 1.0, false},
               {2 * o.pct_start * total - 2, 1.0, initial, true},
               {total - 1, initial, min, true}};
  } else {
    phases_ = {{o.pct_start * total - 1, initial, 1.0, false}, {total - 1, 1.0, min, true}};
  }
  for (size_t g = 0; g < optimizer.num_groups(); ++g) max_lrs_.push_back(max_lr);
  initial_step();
  if (o.cycle_momentum) {
    for (size_t g = 0; g < optimizer.num_groups(); ++g) optimizer.set_momentum(g, momentum_at(0));
  }
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (o_.cos_anneal) return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1);
  return (end - start) * pct + start;
}

double OneCycleLR::lr_at(size_t g, int64_t epoch) const {
  if (epoch > total_) {
    throw ValueError("OneCycleLR: stepped " + std::to_string(epoch) + " times, more than total_steps " +
                     std::to_string(total_));
  }
  double start = 0;
  for (size_t i = 0; i < phases_.size(); ++i) {
    const Phase& p = phases_[i];
    if (static_cast<double>(epoch) <= p.end_step || i + 1 == phases_.size()) {
      const double pct = (static_cast<double>(epoch) - start) / (p.end_step - start);
      return anneal(max_lrs_[g] * p.start_lr_factor, max_lrs_[g] * p.end_lr_factor, pct);
    }
    start = p.end_step;
  }
  return max_lrs_[g];
}

double OneCycleLR::momentum_at(int64_t epoch) const {
  double start = 0;
  for (size_t i = 0; i < phases_.size(); ++i) {
    const Phase& p = phases_[i];
    if (static_cast<double>(epoch) <= p.end_step || i + 1 == phases_.size()) {
      const double pct = (static_cast<double>(epoch) - start) / (p.end_step - start);
      // Momentum moves against the learning rate; the last of three phases keeps it at the max.
      if (o_.three_phase && i == 2) return o_.max_momentum;
      return p.momentum_up ? anneal(o_.base_momentum, o_.max_momentum, pct)
                           : anneal(o_.max_momentum, o_.base_momentum, pct);
    }
    start = p.end_step;
  }
  return o_.max_momentum;
}

void OneCycleLR::step() {
  LRScheduler::step();
  if (o_.cycle_momentum) {
    for (size_t g = 0; g < optimizer_.num_groups(); ++g) optimizer_.set_momentum(g, momentum_at(last_epoch_));
  }
}

SequentialLR::SequentialLR(ParamGroupControl& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones)
    : optimizer_(optimizer), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  if (schedulers_.empty() || milestones_.size() + 1 != schedulers_.size()) {
    throw ValueError("SequentialLR: expected one more scheduler than milestones, got " +
                     std::to_string(schedulers_.size()) + " and " + std::to_string(milestones_.size()));
  }
  // As PyTorch: start again from the initial learning rates with the first scheduler.
  for (size_t g = 0; g < optimizer_.num_groups(); ++g) optimizer_.set_lr(g, optimizer_.initial_lr(g));
  schedulers_[0]->step_to(0);
}

void SequentialLR::step() {
  ++last_epoch_;
  const size_t idx = static_cast<size_t>(
      std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin());
  if (idx > 0 && milestones_[idx - 1] == last_epoch_) {
    schedulers_[idx]->step_to(0);
  } else {
    schedulers_[idx]->step();
  }
}

std::vector<double> SequentialLR::get_last_lr() const {
  std::vector<double> out;
  for (size_t g = 0; g < optimizer_.num_groups(); ++g) out.push_back(optimizer_.lr(g));
  return out;
}

ChainedScheduler::ChainedScheduler(std::vector<std::shared_ptr<LRScheduler>> schedulers)
    : schedulers_(std::move(schedulers)) {
  if (schedulers_.empty()) throw ValueError("ChainedScheduler: expected at least one scheduler");
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    const std::string which = "ChainedScheduler: scheduler " + std::to_string(i);
    if (!schedulers_[i]) throw ValueError(which + " is null");
    if (!schedulers_[i]->chainable()) {
      throw ValueError(which + " (" + schedulers_[i]->name() +
                       ") is not chainable: it sets the learning rate from the initial one (in PyTorch, over what "
                       "the schedulers before it did); chain StepLR, MultiStepLR, ExponentialLR, LinearLR, "
                       "ConstantLR, PolynomialLR or MultiplicativeLR, or run schedules in turn with SequentialLR");
    }
    if (&schedulers_[i]->optimizer_ != &schedulers_[0]->optimizer_) {
      throw ValueError(which + " steps another optimizer than scheduler 0");
    }
  }
  apply();
}

void ChainedScheduler::apply() {
  ParamGroupControl& optimizer = schedulers_[0]->optimizer_;
  last_lr_.clear();
  size_t groups = optimizer.num_groups();
  for (const auto& s : schedulers_) groups = std::min(groups, s->base_lrs_.size());
  for (size_t g = 0; g < groups; ++g) {
    double lr = schedulers_[0]->base_lrs_[g];
    for (const auto& s : schedulers_) {
      const double from = s->base_lrs_[g];
      lr = from == 0 ? 0.0 : lr * (s->lr_at(g, s->last_epoch_) / from);
    }
    optimizer.set_lr(g, lr);
    last_lr_.push_back(lr);
  }
}

template <class F>
void ChainedScheduler::all_or_nothing(F&& change) {
  std::vector<std::map<std::string, double>> saved;
  for (const auto& s : schedulers_) saved.push_back(s->state_dict());
  try {
    change();
  } catch (...) {
    for (size_t i = 0; i < schedulers_.size(); ++i) schedulers_[i]->load_state_dict(saved[i]);
    apply();
    throw;
  }
  apply();
}

void ChainedScheduler::step() {
  // A member that throws (a MultiplicativeLR function) leaves every member as it was.
  all_or_nothing([&] {
    for (const auto& s : schedulers_) s->step();
  });
}

std::vector<double> ChainedScheduler::get_last_lr() const { return last_lr_; }

std::map<std::string, double> ChainedScheduler::state_dict() const {
  std::map<std::string, double> out;
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    for (const auto& [key, value] : schedulers_[i]->state_dict()) out[std::to_string(i) + "." + key] = value;
  }
  return out;
}

void ChainedScheduler::load_state_dict(const std::map<std::string, double>& state) {
  std::vector<std::map<std::string, double>> parts(schedulers_.size());
  for (const auto& [key, value] : state) {
    const size_t dot = key.find('.');
    size_t i = schedulers_.size();
    if (dot != std::string::npos && dot > 0 && dot < 10 &&
        key.find_first_not_of("0123456789") == dot) {
      i = static_cast<size_t>(std::stoull(key.substr(0, dot)));
    }
    if (i >= schedulers_.size()) {
      throw ValueError("ChainedScheduler load_state_dict: key \"" + key + "\" names none of the " +
                       std::to_string(schedulers_.size()) + " schedulers");
    }
    parts[i][key.substr(dot + 1)] = value;
  }
  all_or_nothing([&] {
    for (size_t i = 0; i < schedulers_.size(); ++i) schedulers_[i]->load_state_dict(parts[i]);
  });
}

ReduceLROnPlateau::ReduceLROnPlateau(ParamGroupControl& optimizer, ReduceLROnPlateauOptions o)
    : optimizer_(optimizer), o_(o) {
  if (o.factor >= 1.0) throw ValueError("ReduceLROnPlateau: factor must be < 1");
  best_ = o.mode_max ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
}

bool ReduceLROnPlateau::better(double a) const {
  if (!o_.mode_max) return o_.threshold_abs ? a < best_ - o_.threshold : a < best_ * (1 - o_.threshold);
  return o_.threshold_abs ? a > best_ + o_.threshold : a > best_ * (1 + o_.threshold);
}

void ReduceLROnPlateau::step(double metric) {
  ++last_epoch_;
  if (better(metric)) {
    best_ = metric;
    bad_epochs_ = 0;
  } else {
    ++bad_epochs_;
  }
  if (cooldown_counter_ > 0) {
    --cooldown_counter_;
    bad_epochs_ = 0;
  }
  if (bad_epochs_ > o_.patience) {
    for (size_t g = 0; g < optimizer_.num_groups(); ++g) {
      const double old_lr = optimizer_.lr(g);
      const double new_lr = std::max(old_lr * o_.factor, o_.min_lr);
      if (old_lr - new_lr > o_.eps) optimizer_.set_lr(g, new_lr);
    }
    cooldown_counter_ = o_.cooldown;
    bad_epochs_ = 0;
  }
}

std::map<std::string, double> ReduceLROnPlateau::state_dict() const {
  return {{"best", best_},
          {"num_bad_epochs", static_cast<double>(bad_epochs_)},
          {"cooldown_counter", static_cast<double>(cooldown_counter_)},
          {"last_epoch", static_cast<double>(last_epoch_)}};
}

void ReduceLROnPlateau::load_state_dict(const std::map<std::string, double>& s) {
  const char* who = "ReduceLROnPlateau";
  const double best = state_value(s, "best", who, true);  // +-inf before the first step
  const int64_t bad_epochs = state_count(s, "num_bad_epochs", who, 0);
  const int64_t cooldown = state_count(s, "cooldown_counter", who, 0);
  const int64_t last_epoch = state_count(s, "last_epoch", who, -1);
  best_ = best;
  bad_epochs_ = bad_epochs;
  cooldown_counter_ = cooldown;
  last_epoch_ = last_epoch;
}

std::vector<double> ReduceLROnPlateau::get_last_lr() const {
  std::vector<double> out;
  for (size_t g = 0; g < optimizer_.num_groups(); ++g) out.push_back(optimizer_.lr(g));
  return out;
}

}  // namespace ember::optim
