// torch.optim's update rules (the single-tensor, foreach=False forms, op for op).
#include "ember/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/reduction.hpp"
#include "ember/optim/lbfgs.hpp"

namespace ember::optim {

namespace {
std::string pos(size_t g, size_t i) {
  return "group " + std::to_string(g) + " parameter " + std::to_string(i);
}

// torch.optim's checks of the options, at construction and again at each step (a group's options
// may be changed in between). Written as "ok" conditions so that NaN fails them.
void require_option(bool ok, const char* optimizer, const char* option, double value, const char* rule) {
  if (!ok) {
    std::ostringstream msg;
    msg << optimizer << ": " << option << " must be " << rule << ", got " << value;
    throw ValueError(msg.str());
  }
}
void check_options(const SGDOptions& o) {
  require_option(o.lr >= 0, "SGD", "lr", o.lr, ">= 0");
  require_option(o.momentum >= 0, "SGD", "momentum", o.momentum, ">= 0");
  require_option(o.weight_decay >= 0, "SGD", "weight_decay", o.weight_decay, ">= 0");
  require_option(std::isfinite(o.dampening), "SGD", "dampening", o.dampening, "finite");
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
    throw ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0");
  }
}
// AdamW shares Adam's options; its constructor checks them under Adam's name, its step under its own.
void check_options(const AdamOptions& o, const char* who = "Adam") {
  require_option(o.lr >= 0, who, "lr", o.lr, ">= 0");
  require_option(o.eps >= 0, who, "eps", o.eps, ">= 0");
  require_option(o.beta1 >= 0 && o.beta1 < 1, who, "beta1", o.beta1, "in [0, 1)");
  require_option(o.beta2 >= 0 && o.beta2 < 1, who, "beta2", o.beta2, "in [0, 1)");
  require_option(o.weight_decay >= 0, who, "weight_decay", o.weight_decay, ">= 0");
}
void check_options(const RMSpropOptions& o) {
  require_option(o.lr >= 0, "RMSprop", "lr", o.lr, ">= 0");
  require_option(o.eps >= 0, "RMSprop", "eps", o.eps, ">= 0");
  require_option(o.alpha >= 0, "RMSprop", "alpha", o.alpha, ">= 0");
  require_option(o.momentum >= 0, "RMSprop", "momentum", o.momentum, ">= 0");
  require_option(o.weight_decay >= 0, "RMSprop", "weight_decay", o.weight_decay, ">= 0");
}
void check_options(const AdagradOptions& o) {
  require_option(o.lr >= 0, "Adagrad", "lr", o.lr, ">= 0");
  require_option(o.lr_decay >= 0, "Adagrad", "lr_decay", o.lr_decay, ">= 0");
  require_option(o.eps >= 0, "Adagrad", "eps", o.eps, ">= 0");
  require_option(o.weight_decay >= 0, "Adagrad", "weight_decay", o.weight_decay, ">= 0");
  require_option(o.initial_accumulator_value >= 0, "Adagrad", "initial_accumulator_value",
                 o.initial_accumulator_value, ">= 0");
}
// Adamax and RAdam have Adam's options (and the same checks) under their own names.
template <class O>
void check_adam_like(const O& o, const char* who) {
  require_option(o.lr >= 0, who, "lr", o.lr, ">= 0");
  require_option(o.eps >= 0, who, "eps", o.eps, ">= 0");
  require_option(o.beta1 >= 0 && o.beta1 < 1, who, "beta1", o.beta1, "in [0, 1)");
  require_option(o.beta2 >= 0 && o.beta2 < 1, who, "beta2", o.beta2, "in [0, 1)");
  require_option(o.weight_decay >= 0, who, "weight_decay", o.weight_decay, ">= 0");
}
void check_options(const AdamaxOptions& o) { check_adam_like(o, "Adamax"); }
void check_options(const RAdamOptions& o) { check_adam_like(o, "RAdam"); }
void check_options(const NAdamOptions& o) {
  check_adam_like(o, "NAdam");
  require_option(o.momentum_decay >= 0, "NAdam", "momentum_decay", o.momentum_decay, ">= 0");
}
void check_options(const LBFGSOptions& o) { o.validate(); }
}  // namespace

void LBFGSOptions::validate() const {
  require_option(lr >= 0 && std::isfinite(lr), "LBFGS", "lr", lr, "finite and >= 0");
  require_option(max_iter >= 1, "LBFGS", "max_iter", static_cast<double>(max_iter), ">= 1");
  require_option(max_eval >= 0, "LBFGS", "max_eval", static_cast<double>(max_eval), ">= 0 (0: max_iter * 5 / 4)");
  require_option(tolerance_grad >= 0, "LBFGS", "tolerance_grad", tolerance_grad, ">= 0");
  require_option(tolerance_change >= 0, "LBFGS", "tolerance_change", tolerance_change, ">= 0");
  require_option(history_size >= 1, "LBFGS", "history_size", static_cast<double>(history_size), ">= 1");
  if (!line_search_fn.empty() && line_search_fn != "strong_wolfe") {
    throw ValueError("LBFGS: line_search_fn must be \"\" (none) or \"strong_wolfe\", got \"" + line_search_fn + "\"");
  }
}

template <FloatingElement T, class Options>
void Optimizer<T, Options>::add_param_group(Group group) {
  for (size_t i = 0; i < group.params.size(); ++i) {
    const Tensor<T>& p = group.params[i];
    if (!p.defined()) throw ValueError("optimizer: " + pos(groups_.size(), i) + " is undefined");
    if (!p.is_leaf()) {
      throw ValueError("optimizer: " + pos(groups_.size(), i) +
                       " is not a leaf tensor; optimize "
                       "the parameters themselves");
    }
    auto same = [&p](const Tensor<T>& q) { return q.impl() == p.impl(); };
    bool repeated =
        std::any_of(group.params.begin(), group.params.begin() + static_cast<long>(i), same);
    for (const auto& g : groups_)
      repeated = repeated || std::any_of(g.params.begin(), g.params.end(), same);
    if (repeated) {
      throw ValueError("optimizer: " + pos(groups_.size(), i) + " is given more than once");
    }
  }
  check_options(group.options);
  slots_.emplace_back(group.params.size());
  groups_.push_back(std::move(group));
}

template <FloatingElement T, class Options>
void Optimizer<T, Options>::check_trainable() const {
  size_t count = 0;
  for (const auto& g : groups_) {
    count += g.params.size();
    for (const auto& p : g.params)
      if (p.requires_grad()) return;
  }
  if (count == 0) return;  // an empty optimizer, filled later with add_param_group
  throw ValueError("optimizer: none of the " + std::to_string(count) +
                   " parameters given requires grad (all frozen, e.g. by nn::freeze), so step() could never "
                   "change one; give it the parameters that train");
}

template <FloatingElement T, class Options>
void Optimizer<T, Options>::zero_grad(bool set_to_none) {
  for (auto& g : groups_)
    for (auto& p : g.params) {
      if (set_to_none) {
        p.set_grad(Tensor<T>());
      } else if (p.grad().defined()) {
        NoGradGuard no_grad;
        p.grad().zero_();
      }
    }
}

template <FloatingElement T, class Options>
typename Optimizer<T, Options>::Slot& Optimizer<T, Options>::slot(size_t group, size_t index) {
  return slots_[group][index];
}

template <FloatingElement T, class Options>
template <class F>
void Optimizer<T, Options>::for_each_grad(F&& f) {
  NoGradGuard no_grad;
  // Checked before any update, so that a refused step changes nothing.
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      if (groups_[g].params[i].is_leaf()) continue;
      throw ValueError(kind() + ": parameter " + std::to_string(i) + " of group " + std::to_string(g) +
                       " is no longer a leaf tensor (a module's weight that ember::prune reparametrized after "
                       "this optimizer was made?): make the optimizer after pruning");
    }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Options& o = groups_[g].options;
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      Tensor<T>& p = groups_[g].params[i];
      Tensor<T> grad = p.grad();
      if (!grad.defined() || !p.requires_grad()) continue;
      if (o.maximize) grad = -grad;
      f(o, p, grad, slot(g, i));
    }
  }
}

template <FloatingElement T, class Options>
OptimizerState Optimizer<T, Options>::state_dict() const {
  OptimizerState s;
  s.kind = kind();
  for (size_t g = 0; g < groups_.size(); ++g) {
    s.groups.push_back(options_to_map(groups_[g].options));
    for (const Slot& sl : slots_[g]) {
      OptimizerState::ParamState ps;
      ps.step = sl.step;
      for (const auto& [name, t] : sl.tensors) ps.tensors[name] = t.detach().clone();
      s.params.push_back(std::move(ps));
    }
  }
  return s;
}

template <FloatingElement T, class Options>
void Optimizer<T, Options>::check_state_groups(const OptimizerState& s) const {
  const std::string me = kind().empty() ? std::string("optimizer") : kind();
  const std::string who = me + " load_state_dict: ";
  if (!s.kind.empty() && !kind().empty() && s.kind != kind()) {
    throw ValueError(who + "the state was saved by " + s.kind + ", not by " + kind());
  }
  size_t total = 0;
  for (const auto& g : groups_) total += g.params.size();
  if (s.groups.size() != groups_.size() || s.params.size() != total) {
    throw ValueError(who + "the state has " + std::to_string(s.groups.size()) + " groups and " +
                     std::to_string(s.params.size()) + " parameters, the optimizer " +
                     std::to_string(groups_.size()) + " and " + std::to_string(total));
  }
  const Options probe = groups_.empty() ? Options{} : groups_[0].options;
  const std::map<std::string, double> known = options_to_map(probe);
  for (size_t g = 0; g < s.groups.size(); ++g) {
    for (const auto& [name, value] : s.groups[g]) {
      if (!known.count(name)) {
        throw ValueError(who + "group " + std::to_string(g) + " has the option \"" + name + "\", which " + me +
                         " does not have (the state of another optimizer?)");
      }
      if (!std::isfinite(value)) {
        throw ValueError(who + "group " + std::to_string(g) + " option " + name + " = " + std::to_string(value) +
                         " is not finite");
      }
    }
  }
}

template <FloatingElement T, class Options>
void Optimizer<T, Options>::load_state_dict(const OptimizerState& s) {
  // Everything is checked before anything changes: a state that does not fit leaves the
  // optimizer as it was.
  check_state_groups(s);
  const std::string me = kind().empty() ? std::string("optimizer") : kind();
  const std::string who = me + " load_state_dict: ";
  const std::optional<StateNames> names = state_names();
  auto listed = [](const std::vector<std::string>& v, const std::string& n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  };
  size_t k = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i, ++k) {
      const OptimizerState::ParamState& ps = s.params[k];
      if (ps.step < 0) throw ValueError(who + pos(g, i) + " has a negative step count " + std::to_string(ps.step));
      for (const auto& [name, t] : ps.tensors) {
        if (names && !listed(names->required, name) && !listed(names->optional, name)) {
          throw ValueError(who + pos(g, i) + " has the state \"" + name + "\", which " + me +
                           " does not keep (the state of another optimizer?)");
        }
        const bool number = names && listed(names->numbers, name);
        const Shape want = number ? Shape{} : groups_[g].params[i].shape();
        if (!t.defined() || t.dtype() != dtype_of<T> || t.shape() != want) {
          throw ValueError(who + name + " of " + pos(g, i) + " is " +
                           (t.defined() ? std::string(dtype_name(t.dtype())) + " " + t.shape().str()
                                        : std::string("undefined")) +
                           (number ? ", expected a number: " : ", the parameter ") + dtype_name(dtype_of<T>) + " " +
                           want.str());
        }
      }
      if (names && !ps.tensors.empty()) {
        for (const auto& name : names->required) {
          if (!ps.tensors.count(name)) {
            throw ValueError(who + pos(g, i) + " has state but no \"" + name + "\"");
          }
        }
      }
    }
  }
  k = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].options = options_from_map(s.groups[g], groups_[g].options);
    for (size_t i = 0; i < groups_[g].params.size(); ++i, ++k) {
      Slot& sl = slots_[g][i];
      sl.step = s.params[k].step;
      sl.tensors.clear();
      for (const auto& [name, t] : s.params[k].tensors) {
        sl.tensors[name] = Tensor<T>::from_base(t).detach().clone();
      }
    }
  }
}

// ---- SGD ---------------------------------------------------------------------------------------

template <FloatingElement T>
SGD<T>::SGD(std::vector<Tensor<T>> params, SGDOptions o) : Base(std::move(params), o) {}
template <FloatingElement T>
SGD<T>::SGD(std::vector<typename Base::Group> groups) : Base(std::move(groups)) {}

namespace {

// SGD with an existing momentum buffer in one pass instead of three (as Note [Fused Adam]).
template <FloatingElement T>
bool sgd_fused_step(const SGDOptions& o, Tensor<T>& p, const Tensor<T>& grad, Tensor<T>& buf) {
  if (!p.is_contiguous() || !grad.is_contiguous() || !buf.is_contiguous() || grad.shape() != p.shape() ||
      buf.shape() != p.shape()) {
    return false;
  }
  const backend::SgdStep k{o.momentum, 1.0 - o.dampening, -o.lr, o.nesterov};
  T* pp = p.data();
  const T* pg = grad.data();
  T* pb = buf.data();
  const auto& kern = backend::kernels<T>();
  detail::parallel_for(0, p.numel(), 32768, [&](int64_t b, int64_t e) {
    kern.sgd_step(k, e - b, pp + b, pg + b, pb + b);
  });
  for (const Tensor<T>* t : {&p, &buf}) t->impl()->storage->bump_version();
  return true;
}

}  // namespace

template <FloatingElement T>
void SGD<T>::step() {
  for (const auto& g : this->groups_) check_options(g.options);
  this->for_each_grad([](const SGDOptions& o, Tensor<T>& p, Tensor<T> d_p, auto& slot) {
    if (o.weight_decay != 0) d_p = add(d_p, p, o.weight_decay);
    if (o.momentum != 0) {
      auto it = slot.tensors.find("momentum_buffer");
      if (it == slot.tensors.end()) {
        it = slot.tensors.emplace("momentum_buffer", d_p.detach().clone()).first;
      } else if (sgd_fused_step(o, p, d_p, it->second)) {
        return;
      } else {
        it->second.mul_(o.momentum).add_(d_p, 1.0 - o.dampening);
      }
      d_p = o.nesterov ? add(d_p, it->second, o.momentum) : it->second;
    }
    p.add_(d_p, -o.lr);
  });
}

// ---- Adam --------------------------------------------------------------------------------------

template <FloatingElement T>
Adam<T>::Adam(std::vector<Tensor<T>> params, AdamOptions o) : Base(std::move(params), o) {}
template <FloatingElement T>
Adam<T>::Adam(std::vector<typename Base::Group> groups) : Base(std::move(groups)) {}

namespace {

// Note [Fused Adam]
// The composite Adam update makes eight passes over each parameter's size (and allocates two
// temporaries); for the contiguous tensors of a model it runs as one pass instead (the backend's
// adam_step), computing per element exactly the composite's operations in the same order, each
// product rounded on its own, so the trajectories are those of
// torch.optim.Adam either way (tests/optim compares both with PyTorch). AMSGrad and strided
// tensors take the composite path. Weight decay is already in `grad` (Adam) or applied to p
// (AdamW) by the caller. Returns false when it does not apply.
template <FloatingElement T>
bool adam_fused_step(const AdamOptions& o, Tensor<T>& p, const Tensor<T>& grad, Tensor<T>& exp_avg,
                     Tensor<T>& exp_avg_sq, int64_t step) {
  if (o.amsgrad || !p.is_contiguous() || !grad.is_contiguous() || !exp_avg.is_contiguous() ||
      !exp_avg_sq.is_contiguous() || grad.shape() != p.shape() || exp_avg.shape() != p.shape() ||
      exp_avg_sq.shape() != p.shape()) {
    return false;
  }
  const double bias_correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
  const backend::AdamStep k{o.beta1, 1.0 - o.beta1, o.beta2, 1.0 - o.beta2, o.eps, std::sqrt(bias_correction2),
                            -(o.lr / bias_correction1)};
  T* pp = p.data();
  const T* pg = grad.data();
  T* pm = exp_avg.data();
  T* pv = exp_avg_sq.data();
  const auto& kern = backend::kernels<T>();
  detail::parallel_for(0, p.numel(), 32768, [&](int64_t b, int64_t e) {
    kern.adam_step(k, e - b, pp + b, pg + b, pm + b, pv + b);
  });
  for (const Tensor<T>* t : {&p, &exp_avg, &exp_avg_sq}) t->impl()->storage->bump_version();
  return true;
}

}  // namespace

template <FloatingElement T>
void Adam<T>::step() {
  const std::string who = this->kind();
  for (const auto& g : this->groups_) check_options(g.options, who.c_str());
  this->for_each_grad([this](const AdamOptions& o, Tensor<T>& p, Tensor<T> grad, auto& slot) {
    if (slot.tensors.empty()) {
      slot.tensors["exp_avg"] = zeros_like(p.detach());
      slot.tensors["exp_avg_sq"] = zeros_like(p.detach());
      if (o.amsgrad) slot.tensors["max_exp_avg_sq"] = zeros_like(p.detach());
    }
    const int64_t step = ++slot.step;
    if (o.weight_decay != 0) {
      if (decoupled_weight_decay_) {
        p.mul_(1.0 - o.lr * o.weight_decay);
      } else {
        grad = add(grad, p, o.weight_decay);
      }
    }
    Tensor<T>& exp_avg = slot.tensors["exp_avg"];
    Tensor<T>& exp_avg_sq = slot.tensors["exp_avg_sq"];
    if (adam_fused_step(o, p, grad, exp_avg, exp_avg_sq, step)) return;
    exp_avg.mul_(o.beta1).add_(grad, 1.0 - o.beta1);
    exp_avg_sq.mul_(o.beta2).addcmul_(grad, grad.detach(), 1.0 - o.beta2);
    const double bias_correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
    const double bias_correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
    const double step_size = o.lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    Tensor<T> denom;
    if (o.amsgrad) {
      Tensor<T>& max_sq = slot.tensors["max_exp_avg_sq"];
      if (!max_sq.defined()) max_sq = zeros_like(p.detach());
      max_sq = maximum(max_sq, exp_avg_sq);
      denom = (sqrt(max_sq) / bias_correction2_sqrt).add_(o.eps);
    } else {
      denom = (sqrt(exp_avg_sq) / bias_correction2_sqrt).add_(o.eps);
    }
    p.addcdiv_(exp_avg, denom, -step_size);
  });
}

template <FloatingElement T>
AdamW<T>::AdamW(std::vector<Tensor<T>> params, AdamWOptions o)
    : Adam<T>(std::move(params), optim::options_from_map(optim::options_to_map(o), AdamOptions{})) {
  this->decoupled_weight_decay_ = true;
}

// ---- RMSprop -----------------------------------------------------------------------------------

template <FloatingElement T>
RMSprop<T>::RMSprop(std::vector<Tensor<T>> params, RMSpropOptions o) : Base(std::move(params), o) {}
template <FloatingElement T>
RMSprop<T>::RMSprop(std::vector<typename Base::Group> groups) : Base(std::move(groups)) {}

template <FloatingElement T>
void RMSprop<T>::step() {
  for (const auto& g : this->groups_) check_options(g.options);
  this->for_each_grad([](const RMSpropOptions& o, Tensor<T>& p, Tensor<T> grad, auto& slot) {
    if (slot.tensors.empty()) {
      slot.tensors["square_avg"] = zeros_like(p.detach());
      if (o.momentum > 0) slot.tensors["momentum_buffer"] = zeros_like(p.detach());
      if (o.centered) slot.tensors["grad_avg"] = zeros_like(p.detach());
    }
    ++slot.step;
    if (o.weight_decay != 0) grad = add(grad, p, o.weight_decay);
    Tensor<T>& square_avg = slot.tensors["square_avg"];
    square_avg.mul_(o.alpha).addcmul_(grad, grad, 1.0 - o.alpha);
    Tensor<T> avg;
    if (o.centered) {
      Tensor<T>& grad_avg = slot.tensors["grad_avg"];
      if (!grad_avg.defined()) grad_avg = zeros_like(p.detach());
      grad_avg.mul_(o.alpha).add_(grad, 1.0 - o.alpha);
      avg = sqrt(square_avg - grad_avg * grad_avg);
    } else {
      avg = sqrt(square_avg);
    }
    avg.add_(o.eps);
    if (o.momentum > 0) {
      Tensor<T>& buf = slot.tensors["momentum_buffer"];
      if (!buf.defined()) buf = zeros_like(p.detach());
      buf.mul_(o.momentum).addcdiv_(grad, avg);
      p.add_(buf, -o.lr);
    } else {
      p.addcdiv_(grad, avg, -o.lr);
    }
  });
}

// ---- Adagrad -----------------------------------------------------------------------------------

template <FloatingElement T>
Adagrad<T>::Adagrad(std::vector<Tensor<T>> params, AdagradOptions o) : Base(std::move(params), o) {}
template <FloatingElement T>
Adagrad<T>::Adagrad(std::vector<typename Base::Group> groups) : Base(std::move(groups)) {}

template <FloatingElement T>
void Adagrad<T>::step() {
  for (const auto& g : this->groups_) check_options(g.options);
  this->for_each_grad([](const AdagradOptions& o, Tensor<T>& p, Tensor<T> grad, auto& slot) {
    if (slot.tensors.empty()) {
      slot.tensors["sum"] = full_like(p.detach(), static_cast<T>(o.initial_accumulator_value));
    }
    const int64_t step = ++slot.step;
    if (o.weight_decay != 0) grad = add(grad, p, o.weight_decay);
    const double clr = o.lr / (1.0 + static_cast<double>(step - 1) * o.lr_decay);
    Tensor<T>& sum = slot.tensors["sum"];
    sum.addcmul_(grad, grad, 1.0);
    Tensor<T> std = sqrt(sum).add_(o.eps);
    p.addcdiv_(grad, std, -clr);
  });
}

// ---- Adamax and RAdam ---------------------------------------------------------------------------

template <FloatingElement T>
Adamax<T>::Adamax(std::vector<Tensor<T>> params, AdamaxOptions o) : Base(std::move(params), o) {}
template <FloatingElement T>
Adamax<T>::Adamax(std::vector<typename Base::Group> groups) : Base(std::move(groups)) {}

template <FloatingElement T>
void Adamax<T>::step() {
  for (const auto& g : this->groups_) check_options(g.options);
  this->for_each_grad([](const AdamaxOptions& o, Tensor<T>& p, Tensor<T> grad, auto& slot) {
    if (slot.tensors.empty()) {
      slot.tensors["exp_avg"] = zeros_like(p.detach());
      slot.tensors["exp_inf"] = zeros_like(p.detach());
    }
    const int64_t step = ++slot.step;
    if (o.weight_decay != 0) grad = add(grad, p, o.weight_decay);
    Tensor<T>& exp_avg = slot.tensors["exp_avg"];
    Tensor<T>& exp_inf = slot.tensors["exp_inf"];
    exp_avg.mul_(o.beta1).add_(grad, 1.0 - o.beta1);
    exp_inf.copy_(maximum(exp_inf.mul_(o.beta2), abs(grad).add_(o.eps)));
    const double clr = o.lr / (1.0 - std::pow(o.beta1, static_cast<double>(step)));
    p.addcdiv_(exp_avg, exp_inf, -clr);
  });
}

template <FloatingElement T>
RAdam<T>::RAdam(std::vector<Tensor<T>> params, RAdamOptions o) : Base(std::move(params), o) {}
template <FloatingElement T>
RAdam<T>::RAdam(std::vector<typename Base::Group> groups) : Base(std::move(groups)) {}

template <FloatingElement T>
void RAdam<T>::step() {
  for (const auto& g : this->groups_) check_options(g.options);
  this->for_each_grad([](const RAdamOptions& o, Tensor<T>& p, Tensor<T> grad, auto& slot) {
    if (slot.tensors.empty()) {
      slot.tensors["exp_avg"] = zeros_like(p.detach());
      slot.tensors["exp_avg_sq"] = zeros_like(p.detach());
    }
    const double step = static_cast<double>(++slot.step);
    if (o.weight_decay != 0) grad = add(grad, p, o.weight_decay);
    Tensor<T>& exp_avg = slot.tensors["exp_avg"];
    Tensor<T>& exp_avg_sq = slot.tensors["exp_avg_sq"];
    exp_avg.mul_(o.beta1).add_(grad, 1.0 - o.beta1);
    exp_avg_sq.mul_(o.beta2).addcmul_(grad, grad, 1.0 - o.beta2);
    const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
    const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
    const Tensor<T> corrected = exp_avg / bias_correction1;
    // The length of the approximated simple moving average, and its limit.
    const double rho_inf = 2.0 / (1.0 - o.beta2) - 1.0;
    const double rho_t = rho_inf - 2.0 * step * std::pow(o.beta2, step) / bias_correction2;
    if (rho_t > 5.0) {
      const double rect = std::sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t));
      const Tensor<T> adaptive_lr = std::sqrt(bias_correction2) / sqrt(exp_avg_sq).add_(o.eps);
      p.sub_(corrected * o.lr * adaptive_lr * rect);
    } else {
      p.sub_(corrected * o.lr);
    }
  });
}

// ---- Gradient clipping
// ----------------------------------------------------------------------------

template <FloatingElement T>
double clip_grad_norm_(const std::vector<Tensor<T>>& params, double max_norm, double norm_type) {
  NoGradGuard no_grad;
  std::vector<Tensor<T>> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  double total = 0.0;
  if (std::isinf(norm_type)) {
    for (const auto& g : grads) total = std::max(total, static_cast<double>(abs(g).max().item()));
  } else {
    // As PyTorch: the norm of the per-tensor norms.
    for (const auto& g : grads)
      total += std::pow(static_cast<double>(norm(g, norm_type).item()), norm_type);
    total = std::pow(total, 1.0 / norm_type);
  }
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for (auto& g : grads) g.mul_(coef);
  }
  return total;
}

template <FloatingElement T>
void clip_grad_value_(const std::vector<Tensor<T>>& params, double clip_value) {
  NoGradGuard no_grad;
  for (const auto& p : params) {
    Tensor<T> g = p.grad();
    if (g.defined()) g.clamp_(-clip_value, clip_value);
  }
}

// ---- NAdam -------------------------------------------------------------------------------------

template <FloatingElement T>
NAdam<T>::NAdam(std::vector<Tensor<T>> params, NAdamOptions o) : Base(std::move(params), o) {}
template <FloatingElement T>
NAdam<T>::NAdam(std::vector<typename Base::Group> groups) : Base(std::move(groups)) {}

template <FloatingElement T>
void NAdam<T>::step() {
  for (const auto& g : this->groups_) check_options(g.options);
  this->for_each_grad([](const NAdamOptions& o, Tensor<T>& p, Tensor<T> grad, auto& slot) {
    if (slot.tensors.empty()) {
      slot.tensors["exp_avg"] = zeros_like(p.detach());
      slot.tensors["exp_avg_sq"] = zeros_like(p.detach());
      slot.tensors["mu_product"] = scalar_tensor<T>(T(1));
    }
    const auto step = static_cast<double>(++slot.step);
    if (o.weight_decay != 0) {
      if (o.decoupled_weight_decay) {
        p.mul_(1.0 - o.lr * o.weight_decay);
      } else {
        grad = add(grad, p, o.weight_decay);
      }
    }
    // The momentum of this step and the next; their running product in float32, as torch keeps it.
    const double mu = o.beta1 * (1.0 - 0.5 * std::pow(0.96, step * o.momentum_decay));
    const double mu_next = o.beta1 * (1.0 - 0.5 * std::pow(0.96, (step + 1) * o.momentum_decay));
    Tensor<T>& mu_product = slot.tensors["mu_product"];
    const float product = static_cast<float>(mu_product.item()) * static_cast<float>(mu);
    mu_product = scalar_tensor<T>(static_cast<T>(product));
    const double product_next = static_cast<double>(product) * mu_next;
    Tensor<T>& exp_avg = slot.tensors["exp_avg"];
    Tensor<T>& exp_avg_sq = slot.tensors["exp_avg_sq"];
    exp_avg.mul_(o.beta1).add_(grad, 1.0 - o.beta1);
    exp_avg_sq.mul_(o.beta2).addcmul_(grad, grad, 1.0 - o.beta2);
    const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
    const Tensor<T> denom = sqrt(exp_avg_sq / bias_correction2).add_(o.eps);
    p.addcdiv_(grad, denom, -o.lr * (1.0 - mu) / (1.0 - static_cast<double>(product)));
    p.addcdiv_(exp_avg, denom, -o.lr * mu_next / (1.0 - product_next));
  });
}

template class Optimizer<float, SGDOptions>;
template class Optimizer<double, SGDOptions>;
template class Optimizer<float, AdamOptions>;
template class Optimizer<double, AdamOptions>;
template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;
template class AdamW<float>;
template class AdamW<double>;
template class Optimizer<float, RMSpropOptions>;
template class Optimizer<double, RMSpropOptions>;
template class Optimizer<float, AdagradOptions>;
template class Optimizer<double, AdagradOptions>;
template class RMSprop<float>;
template class RMSprop<double>;
template class Adagrad<float>;
template class Adagrad<double>;
template class Optimizer<float, AdamaxOptions>;
template class Optimizer<double, AdamaxOptions>;
template class Optimizer<float, RAdamOptions>;
template class Optimizer<double, RAdamOptions>;
template class Optimizer<float, LBFGSOptions>;
template class Optimizer<double, LBFGSOptions>;
template class Optimizer<float, NAdamOptions>;
template class Optimizer<double, NAdamOptions>;
template class NAdam<float>;
template class NAdam<double>;
template class Adamax<float>;
template class Adamax<double>;
template class RAdam<float>;
template class RAdam<double>;
template double clip_grad_norm_<float>(const std::vector<Tensor<float>>&, double, double);
template double clip_grad_norm_<double>(const std::vector<Tensor<double>>&, double, double);
template void clip_grad_value_<float>(const std::vector<Tensor<float>>&, double);
template void clip_grad_value_<double>(const std::vector<Tensor<double>>&, double);

}  // namespace ember::optim
