#pragma once
// Thread-local switches of the autograd recorder.

namespace ember {

namespace autograd {
bool grad_mode_enabled() noexcept;
void set_grad_mode(bool enabled) noexcept;
bool anomaly_mode_enabled() noexcept;
void set_anomaly_mode(bool enabled) noexcept;

/// Sets grad mode for the current thread while in scope, restoring the old value on exit.
class AutoGradMode {
 public:
  explicit AutoGradMode(bool enabled) noexcept : prev_(grad_mode_enabled()) { set_grad_mode(enabled); }
  ~AutoGradMode() { set_grad_mode(prev_); }
  AutoGradMode(const AutoGradMode&) = delete;
  AutoGradMode& operator=(const AutoGradMode&) = delete;

 private:
  bool prev_;
};

/// While in scope, a NaN in any gradient computed by backward throws AutogradError naming the
/// forward op that the failing backward belongs to (and the shapes it saw). Slows backward down.
class DetectAnomalyGuard {
 public:
  DetectAnomalyGuard() noexcept : prev_(anomaly_mode_enabled()) { set_anomaly_mode(true); }
  ~DetectAnomalyGuard() { set_anomaly_mode(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};
}  // namespace autograd

/// Disables gradient recording on this thread while in scope (torch::NoGradGuard).
class NoGradGuard : public autograd::AutoGradMode {
 public:
  NoGradGuard() noexcept : AutoGradMode(false) {}
};

}  // namespace ember
