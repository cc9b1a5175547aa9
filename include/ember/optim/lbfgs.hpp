#pragma once
// L-BFGS with torch.optim.LBFGS's algorithm, options and defaults (and LibTorch's
// torch::optim::LBFGS), so that trajectories match. Each step re-evaluates the loss several times,
// so it takes a closure that clears the gradients, computes the loss, runs backward and returns
// the loss:
//
//   ember::optim::LBFGS lbfgs(net.parameters(), {.lr = 1, .line_search_fn = "strong_wolfe"});
//   lbfgs.step([&] {
//     lbfgs.zero_grad();
//     auto loss = nn::functional::mse_loss(net(x), y);
//     loss.backward();
//     return loss;
//   });
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "ember/optim/optimizer.hpp"

namespace ember::optim {

struct LBFGSOptions {
  double lr = 1.0;
  int64_t max_iter = 20;  // iterations per step()
  int64_t max_eval = 0;   // loss evaluations per step(); 0: max_iter * 5 / 4, PyTorch's default
  double tolerance_grad = 1e-7;    // stop when every gradient element is at most this in size
  double tolerance_change = 1e-9;  // stop when the loss or the parameters change less than this
  int64_t history_size = 100;      // the curvature pairs kept
  std::string line_search_fn;      // "" (a step of lr) or "strong_wolfe"
  /// Throws ValueError naming the first option out of its range.
  void validate() const;
  static constexpr auto fields() {
    return std::tuple{option_field("lr", &LBFGSOptions::lr),
                      option_field("max_iter", &LBFGSOptions::max_iter),
                      option_field("max_eval", &LBFGSOptions::max_eval),
                      option_field("tolerance_grad", &LBFGSOptions::tolerance_grad),
                      option_field("tolerance_change", &LBFGSOptions::tolerance_change),
                      option_field("history_size", &LBFGSOptions::history_size)};
  }
};

/// Limited-memory BFGS (Nocedal and Wright, Numerical Optimization, algorithms 7.4 and 7.5, with
/// the strong Wolfe line search of algorithms 3.5 and 3.6), on all parameters as one vector, as
/// torch.optim.LBFGS: one parameter group, the state kept on the first parameter.
template <FloatingElement T = float>
class LBFGS : public Optimizer<T, LBFGSOptions> {
 public:
  using Base = Optimizer<T, LBFGSOptions>;
  using LossClosure = std::function<Tensor<T>()>;
  LBFGS(std::vector<Tensor<T>> params, LBFGSOptions options = {});
  /// LibTorch's positional form: LBFGS(params, lr) is LBFGS(params, {.lr = lr}).
  LBFGS(std::vector<Tensor<T>> params, double lr) : LBFGS(std::move(params), LBFGSOptions{.lr = lr}) {}

  /// Up to max_iter iterations (and max_eval evaluations of `closure`); returns the loss of the
  /// first evaluation, as PyTorch does. The closure runs with gradients enabled.
  Tensor<T> step(const LossClosure& closure);
  /// Throws ValueError: L-BFGS evaluates the loss several times per step; call step(closure).
  void step() override;

  /// The state of torch's LBFGS on the first parameter: "d", "prev_flat_grad" (all parameters
  /// as one vector), "old_dirs" and "old_stps" (history x numel), "ro", and the numbers "t",
  /// "H_diag", "prev_loss", "func_evals" (0-dim); the step count is n_iter.
  OptimizerState state_dict() const override;
  void load_state_dict(const OptimizerState& state) override;

 protected:
  std::string kind() const override { return "LBFGS"; }
  std::map<std::string, double> options_to_map(const LBFGSOptions& o) const override;
  LBFGSOptions options_from_map(const std::map<std::string, double>& m, const LBFGSOptions& base) const override;

 private:
  struct History {
    int64_t func_evals = 0, n_iter = 0;
    Tensor<T> d, prev_flat_grad;  // undefined before the first iteration
    double t = 0, prev_loss = 0;
    T h_diag = 1;
    std::deque<Tensor<T>> old_dirs, old_stps;
    std::deque<T> ro;
  };
  History state_;

  int64_t numel() const;
  Tensor<T> gather_flat_grad() const;
  void add_grad(double step_size, const Tensor<T>& update);
  std::vector<Tensor<T>> clone_params() const;
  void set_params(const std::vector<Tensor<T>>& values);
};

LBFGS(std::vector<Tensor<float>>, double)->LBFGS<float>;
LBFGS(std::vector<Tensor<double>>, double)->LBFGS<double>;
LBFGS(std::vector<Tensor<float>>, LBFGSOptions)->LBFGS<float>;
LBFGS(std::vector<Tensor<double>>, LBFGSOptions)->LBFGS<double>;

extern template class LBFGS<float>;
extern template class LBFGS<double>;

}  // namespace ember::optim
