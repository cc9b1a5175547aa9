#include "ember/autograd/grad_mode.hpp"

namespace ember::autograd {
namespace {
thread_local bool t_grad_mode = true;
thread_local bool t_anomaly_mode = false;
}  // namespace
bool grad_mode_enabled() noexcept { return t_grad_mode; }
void set_grad_mode(bool enabled) noexcept { t_grad_mode = enabled; }
bool anomaly_mode_enabled() noexcept { return t_anomaly_mode; }
void set_anomaly_mode(bool enabled) noexcept { t_anomaly_mode = enabled; }
}  // namespace ember::autograd
