// torch.optim.LBFGS (torch/optim/lbfgs.py), step for step: the same iteration, the same tests to
// stop, the same line search, so that trajectories match PyTorch's (tests/optim compares them).
// Dot products and the numbers torch keeps as tensors (ro, H_diag, gtd) are in T; the loss and the
// line search's step lengths in double, as torch's Python floats.
#include "ember/optim/lbfgs.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/reduction.hpp"
#include "ember/ops/shape_ops.hpp"

namespace ember::optim {

namespace {

// The minimum of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clamped to the
// bounds (by default the interval between x1 and x2); their middle when the cubic has none.
double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2, double lo, double hi) {
  const double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
  const double d2_square = d1 * d1 - g1 * g2;
  if (d2_square >= 0) {
    const double d2 = std::sqrt(d2_square);
    const double min_pos = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                                    : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
    return std::min(std::max(min_pos, lo), hi);
  }
  return (lo + hi) / 2.0;
}
double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2) {
  return cubic_interpolate(x1, f1, g1, x2, f2, g2, std::min(x1, x2), std::max(x1, x2));
}

template <FloatingElement T>
T dot_of(const Tensor<T>& a, const Tensor<T>& b) {
  return dot(a, b).item();
}
template <FloatingElement T>
T abs_max(const Tensor<T>& a) {
  return amax(a.abs()).item();
}

// A point of the line search: its step length, loss, gradient and directional derivative.
template <FloatingElement T>
struct LinePoint {
  double t = 0, f = 0;
  Tensor<T> g;
  double gtd = 0;
};

template <FloatingElement T>
struct LineSearchResult {
  double f;
  Tensor<T> g;
  double t;
  int64_t evals;
};

// The line search satisfying the strong Wolfe conditions (sufficient decrease c1, curvature c2):
// a bracketing phase, then a zoom by cubic interpolation, as torch's _strong_wolfe. `evaluate(t)`
// returns the loss and the flat gradient at x + t d.
template <FloatingElement T, class Evaluate>
LineSearchResult<T> strong_wolfe(Evaluate&& evaluate, double t, const Tensor<T>& d, double f, const Tensor<T>& g,
                                 double gtd, double tolerance_change, double c1 = 1e-4, double c2 = 0.9,
                                 int64_t max_ls = 25) {
  const double d_norm = static_cast<double>(abs_max(d));
  double f_new;
  Tensor<T> g_new;
  std::tie(f_new, g_new) = evaluate(t);
  int64_t evals = 1;
  double gtd_new = static_cast<double>(dot_of(g_new, d));
  LinePoint<T> prev{0, f, g, gtd};
  bool done = false;
  int64_t ls_iter = 0;
  std::vector<LinePoint<T>> bracket;  // one point (done) or two
  while (ls_iter < max_ls) {
    // Not a sufficient decrease, or no longer decreasing: the minimum is bracketed.
    if (f_new > f + c1 * t * gtd || (ls_iter > 1 && f_new >= prev.f)) {
      bracket = {prev, {t, f_new, g_new, gtd_new}};
      break;
    }
    if (std::fabs(gtd_new) <= -c2 * gtd) {
      bracket = {{t, f_new, g_new, gtd_new}};
      done = true;
      break;
    }
    if (gtd_new >= 0) {
      bracket = {prev, {t, f_new, g_new, gtd_new}};
      break;
    }
    // Extrapolate between a hundredth and ten times beyond the current step.
    const double min_step = t + 0.01 * (t - prev.t), max_step = t * 10;
    const double next = cubic_interpolate(prev.t, prev.f, prev.gtd, t, f_new, gtd_new, min_step, max_step);
    prev = {t, f_new, g_new, gtd_new};
    t = next;
    std::tie(f_new, g_new) = evaluate(t);
    ++evals;
    gtd_new = static_cast<double>(dot_of(g_new, d));
    ++ls_iter;
  }
  if (ls_iter == max_ls) bracket = {{0, f, g, gtd}, {t, f_new, g_new, gtd_new}};

  // Zoom: shrink the bracket until a point satisfies both conditions.
  bool insufficient_progress = false;
  size_t low = 0, high = 1;
  if (bracket.size() == 2 && bracket[0].f > bracket[1].f) std::swap(low, high);
  while (!done && ls_iter < max_ls) {
    if (std::fabs(bracket[1].t - bracket[0].t) * d_norm < tolerance_change) break;
    t = cubic_interpolate(bracket[0].t, bracket[0].f, bracket[0].gtd, bracket[1].t, bracket[1].f, bracket[1].gtd);
    // Too close to an end of the bracket: move a tenth of its width inside, unless the last
    // step was not too close.
    const double b_max = std::max(bracket[0].t, bracket[1].t), b_min = std::min(bracket[0].t, bracket[1].t);
    const double eps = 0.1 * (b_max - b_min);
    if (std::min(b_max - t, t - b_min) < eps) {
      if (insufficient_progress || t >= b_max || t <= b_min) {
        t = std::fabs(t - b_max) < std::fabs(t - b_min) ? b_max - eps : b_min + eps;
        insufficient_progress = false;
      } else {
        insufficient_progress = true;
      }
    } else {
      insufficient_progress = false;
    }
    std::tie(f_new, g_new) = evaluate(t);
    ++evals;
    gtd_new = static_cast<double>(dot_of(g_new, d));
    ++ls_iter;
    if (f_new > f + c1 * t * gtd || f_new >= bracket[low].f) {
      bracket[high] = {t, f_new, g_new, gtd_new};
      low = bracket[0].f <= bracket[1].f ? 0 : 1;
      high = 1 - low;
    } else {
      if (std::fabs(gtd_new) <= -c2 * gtd) {
        done = true;
      } else if (gtd_new * (bracket[high].t - bracket[low].t) >= 0) {
        bracket[high] = bracket[low];
      }
      bracket[low] = {t, f_new, g_new, gtd_new};
    }
  }
  const LinePoint<T>& best = bracket.size() == 1 ? bracket[0] : bracket[low];
  return {best.f, best.g, best.t, evals};
}

}  // namespace

template <FloatingElement T>
LBFGS<T>::LBFGS(std::vector<Tensor<T>> params, LBFGSOptions o) : Base(std::move(params), o) {}

template <FloatingElement T>
void LBFGS<T>::step() {
  throw ValueError(
      "LBFGS: step() needs a closure that re-evaluates the loss, since L-BFGS evaluates it several times "
      "per step: step([&] { opt.zero_grad(); auto loss = ...; loss.backward(); return loss; })");
}

template <FloatingElement T>
int64_t LBFGS<T>::numel() const {
  int64_t n = 0;
  for (const auto& g : this->groups_)
    for (const auto& p : g.params) n += p.numel();
  return n;
}

template <FloatingElement T>
Tensor<T> LBFGS<T>::gather_flat_grad() const {
  std::vector<Tensor<T>> views;
  for (const auto& p : this->groups_[0].params) {
    const Tensor<T> g = p.grad();
    views.push_back(g.defined() ? g.reshape({-1}) : zeros<T>({p.numel()}));
  }
  return cat(views, 0);
}

template <FloatingElement T>
void LBFGS<T>::add_grad(double step_size, const Tensor<T>& update) {
  int64_t offset = 0;
  for (auto& p : this->groups_[0].params) {
    p.add_(update.narrow(0, offset, p.numel()).reshape(p.shape()), step_size);
    offset += p.numel();
  }
}

template <FloatingElement T>
std::vector<Tensor<T>> LBFGS<T>::clone_params() const {
  std::vector<Tensor<T>> values;
  for (const auto& p : this->groups_[0].params) values.push_back(p.detach().clone());
  return values;
}

template <FloatingElement T>
void LBFGS<T>::set_params(const std::vector<Tensor<T>>& values) {
  auto& params = this->groups_[0].params;
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(values[i]);
}

template <FloatingElement T>
Tensor<T> LBFGS<T>::step(const LossClosure& closure) {
  if (!closure) throw ValueError("LBFGS: step(closure) was given an empty closure");
  if (this->groups_.size() != 1) {
    throw ValueError("LBFGS: the parameters must be one group (torch's LBFGS has no per-parameter options), got " +
                     std::to_string(this->groups_.size()));
  }
  if (this->groups_[0].params.empty()) throw ValueError("LBFGS: step(closure) on an optimizer with no parameters");
  const LBFGSOptions& o = this->groups_[0].options;
  o.validate();
  const int64_t max_eval = o.max_eval > 0 ? o.max_eval : o.max_iter * 5 / 4;
  const bool wolfe = o.line_search_fn == "strong_wolfe";

  NoGradGuard no_grad;
  auto evaluate = [&closure] {
    autograd::AutoGradMode with_grad(true);
    Tensor<T> loss = closure();
    if (!loss.defined() || loss.numel() != 1) {
      throw ValueError("LBFGS: the closure must return the loss, one element; it returned " +
                       (loss.defined() ? "a tensor of shape " + loss.shape().str()
                                       : std::string("an undefined tensor")));
    }
    return loss;
  };

  // A closure that throws leaves the parameters and the history as they were before this step
  // (the history's tensors are never changed in place).
  const std::vector<Tensor<T>> start = clone_params();
  const History saved = state_;
  try {
    Tensor<T> orig_loss = evaluate();
    double loss = static_cast<double>(orig_loss.item());
    int64_t current_evals = 1;
    History& s = state_;
    s.func_evals += 1;

    Tensor<T> flat_grad = gather_flat_grad();
    if (static_cast<double>(abs_max(flat_grad)) <= o.tolerance_grad) return orig_loss;

    int64_t n_iter = 0;
    while (n_iter < o.max_iter) {
      ++n_iter;
      ++s.n_iter;
      if (s.n_iter == 1) {
        s.d = -flat_grad;
        s.old_dirs.clear();
        s.old_stps.clear();
        s.ro.clear();
        s.h_diag = 1;
      } else {
        // The curvature pair of the last step joins the history when it keeps the Hessian
        // estimate positive definite.
        const Tensor<T> y = flat_grad - s.prev_flat_grad;
        const Tensor<T> step = s.d * s.t;
        const T ys = dot_of(y, step);
        if (ys > T(1e-10)) {
          while (static_cast<int64_t>(s.old_dirs.size()) >= o.history_size) {  // >=: history_size may shrink
            s.old_dirs.pop_front();
            s.old_stps.pop_front();
            s.ro.pop_front();
          }
          s.old_dirs.push_back(y);
          s.old_stps.push_back(step);
          s.ro.push_back(T(1) / ys);
          s.h_diag = ys / dot_of(y, y);
        }
        // The two-loop recursion: d = -H g with the history's inverse Hessian estimate.
        const size_t num_old = s.old_dirs.size();
        std::vector<T> al(num_old);
        Tensor<T> q = -flat_grad;
        for (size_t i = num_old; i-- > 0;) {
          al[i] = dot_of(s.old_stps[i], q) * s.ro[i];
          q.add_(s.old_dirs[i], -static_cast<double>(al[i]));
        }
        Tensor<T> r = q * static_cast<double>(s.h_diag);
        for (size_t i = 0; i < num_old; ++i) {
          const T be_i = dot_of(s.old_dirs[i], r) * s.ro[i];
          r.add_(s.old_stps[i], static_cast<double>(al[i] - be_i));
        }
        s.d = r;
      }
      s.prev_flat_grad = flat_grad.clone();
      s.prev_loss = loss;

      // The first iteration's step is at most lr / |g|_1, in T as torch computes it.
      if (s.n_iter == 1) {
        const T inverse = T(1) / flat_grad.abs().sum().item();
        s.t = inverse < T(1) ? static_cast<double>(inverse * static_cast<T>(o.lr)) : o.lr;
      } else {
        s.t = o.lr;
      }
      const double gtd = static_cast<double>(dot_of(flat_grad, s.d));
      if (gtd > -o.tolerance_change) break;  // not a descent direction

      int64_t ls_evals = 0;
      bool optimal = false;
      if (wolfe) {
        const std::vector<Tensor<T>> x_init = clone_params();
        auto along = [&](double t) {
          add_grad(t, s.d);
          const double f = static_cast<double>(evaluate().item());
          Tensor<T> g = gather_flat_grad();
          set_params(x_init);
          return std::pair<double, Tensor<T>>{f, g};
        };
        LineSearchResult<T> found = strong_wolfe<T>(along, s.t, s.d, loss, flat_grad, gtd, o.tolerance_change);
        loss = found.f;
        flat_grad = found.g;
        s.t = found.t;
        ls_evals = found.evals;
        add_grad(s.t, s.d);
        optimal = static_cast<double>(abs_max(flat_grad)) <= o.tolerance_grad;
      } else {
        add_grad(s.t, s.d);
        if (n_iter != o.max_iter) {
          loss = static_cast<double>(evaluate().item());
          flat_grad = gather_flat_grad();
          optimal = static_cast<double>(abs_max(flat_grad)) <= o.tolerance_grad;
          ls_evals = 1;
        }
      }
      current_evals += ls_evals;
      s.func_evals += ls_evals;

      if (n_iter == o.max_iter || current_evals >= max_eval || optimal) break;
      if (static_cast<double>(abs_max(s.d * s.t)) <= o.tolerance_change) break;  // the parameters stall
      if (std::fabs(loss - s.prev_loss) < o.tolerance_change) break;            // the loss stalls
    }
    return orig_loss;
  } catch (...) {
    set_params(start);
    state_ = saved;
    throw;
  }
}

// ---- state dicts ---------------------------------------------------------------------------------

template <FloatingElement T>
std::map<std::string, double> LBFGS<T>::options_to_map(const LBFGSOptions& o) const {
  std::map<std::string, double> m = optim::options_to_map(o);
  m["line_search_strong_wolfe"] = o.line_search_fn == "strong_wolfe" ? 1 : 0;
  return m;
}

template <FloatingElement T>
LBFGSOptions LBFGS<T>::options_from_map(const std::map<std::string, double>& m, const LBFGSOptions& base) const {
  LBFGSOptions o = optim::options_from_map(m, base);
  if (const auto it = m.find("line_search_strong_wolfe"); it != m.end()) {
    o.line_search_fn = it->second != 0 ? "strong_wolfe" : "";
  }
  return o;
}

namespace {
template <Element U>
Tensor<U> number(U value) {
  return scalar_tensor<U>(value);
}
}  // namespace

template <FloatingElement T>
OptimizerState LBFGS<T>::state_dict() const {
  OptimizerState out;
  out.kind = kind();
  for (const auto& g : this->groups_) {
    out.groups.push_back(options_to_map(g.options));
    for (size_t i = 0; i < g.params.size(); ++i) out.params.emplace_back();
  }
  if (out.params.empty() || state_.n_iter == 0) return out;
  OptimizerState::ParamState& first = out.params[0];
  const History& s = state_;
  first.step = s.n_iter;
  first.tensors["func_evals"] = number<int64_t>(s.func_evals);
  first.tensors["d"] = s.d.clone();
  first.tensors["prev_flat_grad"] = s.prev_flat_grad.clone();
  first.tensors["t"] = number<double>(s.t);
  first.tensors["prev_loss"] = number<double>(s.prev_loss);
  first.tensors["H_diag"] = number<T>(s.h_diag);
  const int64_t n = s.d.numel();
  auto stacked = [n](const std::deque<Tensor<T>>& rows) {
    return rows.empty() ? zeros<T>({0, n}) : stack(std::vector<Tensor<T>>(rows.begin(), rows.end()), 0);
  };
  first.tensors["old_dirs"] = stacked(s.old_dirs);
  first.tensors["old_stps"] = stacked(s.old_stps);
  first.tensors["ro"] = tensor<T>(std::vector<T>(s.ro.begin(), s.ro.end()), {static_cast<int64_t>(s.ro.size())});
  return out;
}

template <FloatingElement T>
void LBFGS<T>::load_state_dict(const OptimizerState& state) {
  // Everything is checked before anything changes.
  this->check_state_groups(state);
  const std::string who = "LBFGS load_state_dict: ";
  std::vector<LBFGSOptions> options;
  for (size_t g = 0; g < state.groups.size(); ++g) {
    options.push_back(options_from_map(state.groups[g], this->groups_[g].options));
    try {
      options.back().validate();
    } catch (const ValueError& e) {
      throw ValueError(who + "group " + std::to_string(g) + ": " + e.what());
    }
  }
  for (size_t k = 1; k < state.params.size(); ++k) {
    if (!state.params[k].tensors.empty() || state.params[k].step != 0) {
      throw ValueError(who + "parameter " + std::to_string(k) +
                       " has state; LBFGS keeps all of it on the first parameter");
    }
  }
  History s;
  if (!state.params.empty() && (state.params[0].step != 0 || !state.params[0].tensors.empty())) {
    const OptimizerState::ParamState& first = state.params[0];
    const int64_t n = numel();
    auto get = [&](const char* name, DType dtype, const Shape& shape) -> const TensorBase& {
      const auto it = first.tensors.find(name);
      if (it == first.tensors.end()) throw ValueError(who + "the state has no \"" + std::string(name) + "\"");
      const TensorBase& t = it->second;
      if (!t.defined() || t.dtype() != dtype || t.shape() != shape) {
        throw ValueError(who + "\"" + name + "\" is " +
                         (t.defined() ? std::string(dtype_name(t.dtype())) + " " + t.shape().str()
                                      : std::string("undefined")) +
                         ", expected " + dtype_name(dtype) + " " + shape.str());
      }
      return t;
    };
    const std::vector<std::string> names = {"func_evals", "d",        "prev_flat_grad", "t",  "prev_loss",
                                            "H_diag",     "old_dirs", "old_stps",       "ro"};
    for (const auto& [name, t] : first.tensors) {
      if (std::find(names.begin(), names.end(), name) == names.end()) {
        throw ValueError(who + "the state has \"" + name + "\", which LBFGS does not keep (another optimizer's?)");
      }
    }
    if (first.step < 1) throw ValueError(who + "a history with n_iter " + std::to_string(first.step));
    const int64_t kept = first.tensors.count("ro") ? first.tensors.at("ro").numel() : 0;
    if (kept > options[0].history_size) {
      throw ValueError(who + "the history holds " + std::to_string(kept) + " pairs, more than history_size " +
                       std::to_string(options[0].history_size));
    }
    s.n_iter = first.step;
    s.func_evals = Tensor<int64_t>::from_base(get("func_evals", DType::Int64, Shape{})).item();
    s.d = Tensor<T>::from_base(get("d", dtype_of<T>, Shape{n})).clone();
    s.prev_flat_grad = Tensor<T>::from_base(get("prev_flat_grad", dtype_of<T>, Shape{n})).clone();
    s.t = Tensor<double>::from_base(get("t", DType::Float64, Shape{})).item();
    s.prev_loss = Tensor<double>::from_base(get("prev_loss", DType::Float64, Shape{})).item();
    s.h_diag = Tensor<T>::from_base(get("H_diag", dtype_of<T>, Shape{})).item();
    const Tensor<T> dirs = Tensor<T>::from_base(get("old_dirs", dtype_of<T>, Shape{kept, n}));
    const Tensor<T> stps = Tensor<T>::from_base(get("old_stps", dtype_of<T>, Shape{kept, n}));
    const std::vector<T> ro = Tensor<T>::from_base(get("ro", dtype_of<T>, Shape{kept})).to_vector();
    for (int64_t i = 0; i < kept; ++i) {
      s.old_dirs.push_back(dirs[i].clone());
      s.old_stps.push_back(stps[i].clone());
    }
    s.ro.assign(ro.begin(), ro.end());
    if (s.func_evals < 0 || !std::isfinite(s.t)) {
      throw ValueError(who + "func_evals " + std::to_string(s.func_evals) + " or t " + std::to_string(s.t) +
                       " out of range");
    }
  }
  for (size_t g = 0; g < this->groups_.size(); ++g) this->groups_[g].options = options[g];
  state_ = std::move(s);
}

template class LBFGS<float>;
template class LBFGS<double>;

}  // namespace ember::optim
