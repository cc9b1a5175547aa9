// The thread's op tracer (src/ops/trace.hpp).
#include "trace.hpp"

namespace ember::detail {
namespace {
thread_local OpTracer* t_tracer = nullptr;
thread_local int t_depth = 0;
}  // namespace

OpTracerScope::OpTracerScope(OpTracer* tracer) noexcept : previous_(t_tracer) {
  t_tracer = tracer;
  t_depth = 0;
}
OpTracerScope::~OpTracerScope() { t_tracer = previous_; }

bool tracing() noexcept { return t_tracer != nullptr; }

TracedOp::TracedOp() noexcept {
  if (t_tracer == nullptr) return;
  counted_ = true;
  if (t_depth++ == 0) outermost_ = t_tracer;
}
TracedOp::~TracedOp() {
  if (counted_) --t_depth;
}

}  // namespace ember::detail
