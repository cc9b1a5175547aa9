#include "ember/distributed/collectives.hpp"

#include <mpi.h>

#include <array>
#include <climits>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

#include "context.hpp"
#include "ember/autograd/function.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/ops/factory.hpp"

namespace ember::distributed {
namespace detail {
namespace {

template <Element T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  if constexpr (std::is_same_v<T, int64_t>) return MPI_INT64_T;
  if constexpr (std::is_same_v<T, int32_t>) return MPI_INT32_T;
  if constexpr (std::is_same_v<T, uint8_t>) return MPI_UINT8_T;
  if constexpr (std::is_same_v<T, int8_t>) return MPI_INT8_T;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
    default: return MPI_SUM;
  }
}

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "Sum";
    case ReduceOp::Avg: return "Avg";
    case ReduceOp::Max: return "Max";
    case ReduceOp::Min: return "Min";
  }
  return "?";
}

// What a rank passed to a collective, compared across ranks before any data moves.
struct Call {
  int64_t kind = 0;    // which collective
  int64_t dtype = -1;  // -1: undefined tensor
  int64_t root = 0;
  int64_t reduce = 0;
  Shape shape;
  std::string summary;      // "float32 [3, 4]", shown when the ranks disagree
  std::string local_error;  // a problem only this rank can see (an output of the wrong shape)
};

constexpr int kMaxDims = 8;
constexpr int kDescriptor = 5 + kMaxDims;  // kind, dtype, root, reduce, ndim, dims (folded past 8)
constexpr int kMessage = 240;

// One all-reduce of [descriptor, -descriptor, error flag] with MAX: equal maxima and minima mean
// every rank passed the same; otherwise every rank learns it at once and they exchange their
// summaries, so all of them throw the same error and none is left waiting in the collective.
void agree(Context& ctx, const char* op, const Call& call) {
  std::array<int64_t, 2 * kDescriptor + 1> buf{};
  std::array<int64_t, kDescriptor> d{call.kind, call.dtype, call.root, call.reduce, call.shape.size()};
  for (int64_t i = 0; i < call.shape.size(); ++i) {
    const size_t slot = 5 + static_cast<size_t>(std::min<int64_t>(i, kMaxDims - 1));
    d[slot] = d[slot] * 1000003 + call.shape[i] + 1;
  }
  for (size_t i = 0; i < d.size(); ++i) {
    buf[i] = d[i];
    buf[kDescriptor + i] = -d[i];
  }
  buf[2 * kDescriptor] = call.local_error.empty() ? 0 : 1;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(buf.size()), MPI_INT64_T, MPI_MAX, ctx.comm),
            op, "MPI_Allreduce");
  bool same = buf[2 * kDescriptor] == 0;
  for (size_t i = 0; i < d.size(); ++i) same = same && buf[i] == -buf[kDescriptor + i];
  if (same) return;

  std::array<char, kMessage> mine{};
  const std::string text = call.local_error.empty() ? call.summary : "error: " + call.local_error;
  std::memcpy(mine.data(), text.data(), std::min(text.size(), mine.size() - 1));
  std::vector<char> all(static_cast<size_t>(kMessage) * static_cast<size_t>(ctx.size));
  check_mpi(MPI_Allgather(mine.data(), kMessage, MPI_CHAR, all.data(), kMessage, MPI_CHAR, ctx.comm), op,
            "MPI_Allgather");
  std::string message = std::string(op) + ": the ranks' calls do not match:";
  for (int r = 0; r < ctx.size; ++r) {
    message += (r == 0 ? " rank " : "; rank ") + std::to_string(r) + ": " +
               std::string(all.data() + static_cast<size_t>(r) * kMessage);
  }
  throw DistributedError(message);
}

template <Element T>
std::string summary_of(const Tensor<T>& t, const std::string& extra = "") {
  if (!t.defined()) return "an undefined tensor";
  return std::string(dtype_name(dtype_of<T>)) + " " + t.shape().str() + extra;
}

template <Element T>
Call describe(int64_t kind, const Tensor<T>& t, int64_t root, ReduceOp op, const std::string& extra = "") {
  Call call;
  call.kind = kind;
  call.dtype = t.defined() ? static_cast<int64_t>(dtype_of<T>) : -1;
  call.root = root;
  call.reduce = static_cast<int64_t>(op);
  if (t.defined()) call.shape = t.shape();
  call.summary = summary_of(t, extra);
  return call;
}

// Checks every rank can see alike once the calls agree, so that they all throw or none does.
template <Element T>
void check_common(const char* op, const Tensor<T>& t, ReduceOp reduce) {
  if (!t.defined()) throw DistributedError(std::string(op) + ": the tensor is undefined");
  if (t.numel() > INT_MAX) {
    throw DistributedError(std::string(op) + ": " + t.shape().str() + " has more than 2^31 - 1 elements, more than "
                           "one MPI call takes; split it");
  }
  if constexpr (!FloatingElement<T>) {
    if (reduce == ReduceOp::Avg) {
      throw DistributedError(std::string(op) + ": ReduceOp::Avg needs a floating-point tensor, got " +
                             dtype_name(dtype_of<T>));
    }
  }
}

// A contiguous tensor holding t's values: t itself when it is contiguous, else a copy that the
// work writes back on completion.
template <Element T>
Tensor<T> staging(const Tensor<T>& t) {
  NoGradGuard no_grad;
  return t.is_contiguous() ? t.detach() : t.contiguous().detach();
}

template <Element T>
std::function<void()> write_back(const Tensor<T>& target, const Tensor<T>& buffer, ReduceOp op, int size) {
  const bool copy = target.impl()->storage != buffer.impl()->storage;
  if constexpr (FloatingElement<T>) {
    const double divisor = op == ReduceOp::Avg ? static_cast<double>(size) : 1.0;
    return [target, buffer, divisor, copy] {
      NoGradGuard no_grad;
      if (divisor != 1.0) buffer.detach().div_(divisor);
      if (copy) target.detach().copy_(buffer);
    };
  } else {
    (void)op;
    (void)size;
    return [target, buffer, copy] {
      NoGradGuard no_grad;
      if (copy) target.detach().copy_(buffer);
    };
  }
}

// Whether `output` has the shape the collective writes; otherwise the reason, for agree() to tell
// every rank.
template <Element T>
bool output_fits(const Tensor<T>& output, const Shape& expected, Call& call) {
  if (output.defined() && output.shape() == expected) return true;
  call.local_error = "the output is " + (output.defined() ? output.shape().str() : std::string("undefined")) +
                     ", expected " + expected.str();
  return false;
}

enum Kind : int64_t { kAllReduce = 1, kBroadcast, kAllGather, kReduceScatter };

}  // namespace

template <Element T>
Work start_all_reduce(const Tensor<T>& t, ReduceOp op, const char* name, bool check) {
  Context& ctx = active_context(name);
  auto state = std::make_shared<WorkState>();
  state->op = name;
  Call call = describe(kAllReduce, t, 0, op, std::string(" ") + op_name(op));
  Tensor<T> buffer = t.defined() ? staging(t) : Tensor<T>();
  state->run = [&ctx, name, check, call, buffer, op] {
    if (check) {
      agree(ctx, name, call);
      check_common(name, buffer, op);
    }
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(), static_cast<int>(buffer.numel()), mpi_type<T>(),
                            mpi_op(op), ctx.comm),
              name, "MPI_Allreduce");
  };
  if (t.defined()) state->finish = write_back(t, buffer, op, ctx.size);
  return submit(std::move(state));
}

}  // namespace detail

using detail::active_context;
using detail::check_mpi;
using detail::Context;

Work& Work::operator=(Work&& other) noexcept {
  if (this != &other) {
    try {
      wait();
    } catch (...) {  // NOLINT(bugprone-empty-catch): the work being replaced has nobody to report to
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

Work::~Work() {
  try {
    wait();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor cannot throw; wait() reports errors
  }
}

namespace {
// Once the communication thread is done with it: the result written back, or the error thrown,
// once.
void report(detail::WorkState& state) {
  if (state.reported) return;
  state.reported = true;
  if (state.error) std::rethrow_exception(state.error);
  if (state.finish) state.finish();
}
}  // namespace

bool Work::is_completed() {
  if (!state_) return true;
  if (!state_->done.load(std::memory_order_acquire)) return false;
  // The communication thread lets go of the state while holding its lock: wait until it has.
  { std::lock_guard lock(state_->mutex); }
  report(*state_);
  return true;
}

void Work::wait() {
  if (!state_) return;
  // A short spell of yielding first: small collectives finish within microseconds, sooner than a
  // sleeping thread would be woken.
  for (int i = 0; i < 64 && !state_->done.load(std::memory_order_acquire); ++i) std::this_thread::yield();
  {
    const double limit = detail::context().timeout_seconds.load();
    std::unique_lock lock(state_->mutex);
    if (!state_->finished.wait_for(lock, std::chrono::duration<double>(limit),
                                   [&] { return state_->done.load(std::memory_order_acquire); })) {
      std::ostringstream why;
      why << "waited " << limit << " s for " << state_->op
          << " (the timeout: EMBER_DISTRIBUTED_TIMEOUT or distributed::set_timeout): another rank has stopped or "
             "skipped a collective";
      detail::abort_job(why.str());
    }
  }
  report(*state_);
}

std::chrono::steady_clock::time_point Work::started() const {
  return state_ ? state_->started : std::chrono::steady_clock::time_point();
}
std::chrono::steady_clock::time_point Work::ended() const {
  return state_ ? state_->ended : std::chrono::steady_clock::time_point();
}

template <Element T>
Work all_reduce_async(const Tensor<T>& t, ReduceOp op) {
  return detail::start_all_reduce(t, op, "all_reduce", true);
}

template <Element T>
void all_reduce(const Tensor<T>& t, ReduceOp op) {
  all_reduce_async(t, op).wait();
}

template <Element T>
Work broadcast_async(const Tensor<T>& t, int root) {
  Context& ctx = active_context("broadcast");
  auto state = std::make_shared<detail::WorkState>();
  state->op = "broadcast";
  detail::Call call =
      detail::describe(detail::kBroadcast, t, root, ReduceOp::Sum, " from root " + std::to_string(root));
  Tensor<T> buffer = t.defined() ? detail::staging(t) : Tensor<T>();
  state->run = [&ctx, call, buffer, root] {
    detail::agree(ctx, "broadcast", call);
    detail::check_common("broadcast", buffer, ReduceOp::Sum);
    if (root < 0 || root >= ctx.size) {
      throw DistributedError("broadcast: root " + std::to_string(root) + " is out of range for " +
                             std::to_string(ctx.size) + " ranks");
    }
    check_mpi(MPI_Bcast(buffer.data_ptr(), static_cast<int>(buffer.numel()), detail::mpi_type<T>(), root, ctx.comm),
              "broadcast", "MPI_Bcast");
  };
  if (t.defined()) state->finish = detail::write_back(t, buffer, ReduceOp::Sum, ctx.size);
  return detail::submit(std::move(state));
}

template <Element T>
void broadcast(const Tensor<T>& t, int root) {
  broadcast_async(t, root).wait();
}

template <Element T>
Work all_gather_async(const Tensor<T>& output, const Tensor<T>& input) {
  Context& ctx = active_context("all_gather");
  detail::Call call = detail::describe(detail::kAllGather, input, 0, ReduceOp::Sum);
  bool output_ok = false;
  if (input.defined()) {
    std::vector<int64_t> dims{ctx.size};
    for (int64_t d : input.shape()) dims.push_back(d);
    output_ok = detail::output_fits(output, Shape(dims), call);
  }
  auto state = std::make_shared<detail::WorkState>();
  state->op = "all_gather";
  Tensor<T> in = input.defined() ? detail::staging(input) : Tensor<T>();
  Tensor<T> out = output_ok ? detail::staging(output) : Tensor<T>();
  state->run = [&ctx, call, in, out] {
    detail::agree(ctx, "all_gather", call);
    detail::check_common("all_gather", in, ReduceOp::Sum);
    const int count = static_cast<int>(in.numel());
    check_mpi(MPI_Allgather(in.data_ptr(), count, detail::mpi_type<T>(), out.data_ptr(), count,
                            detail::mpi_type<T>(), ctx.comm),
              "all_gather", "MPI_Allgather");
  };
  if (output_ok) state->finish = detail::write_back(output, out, ReduceOp::Sum, ctx.size);
  return detail::submit(std::move(state));
}

template <Element T>
Tensor<T> all_gather(const Tensor<T>& t) {
  const int size = world_size();
  std::vector<int64_t> dims{size};
  if (t.defined()) {
    for (int64_t d : t.shape()) dims.push_back(d);
  }
  Tensor<T> out = t.defined() ? empty<T>(Shape(dims)) : Tensor<T>();
  all_gather_async(out, t).wait();
  return out;
}

template <Element T>
Work reduce_scatter_async(const Tensor<T>& output, const Tensor<T>& input, ReduceOp op) {
  Context& ctx = active_context("reduce_scatter");
  detail::Call call =
      detail::describe(detail::kReduceScatter, input, 0, op, std::string(" ") + detail::op_name(op));
  bool output_ok = false;
  if (input.defined()) {
    if (input.dim() == 0 || input.shape()[0] % ctx.size != 0) {
      call.local_error = "the input " + input.shape().str() + " has no first dim divisible by the " +
                         std::to_string(ctx.size) + " ranks";
    } else {
      std::vector<int64_t> dims(input.shape().begin(), input.shape().end());
      dims[0] /= ctx.size;
      output_ok = detail::output_fits(output, Shape(dims), call);
    }
  }
  auto state = std::make_shared<detail::WorkState>();
  state->op = "reduce_scatter";
  Tensor<T> in = input.defined() ? detail::staging(input) : Tensor<T>();
  Tensor<T> out = output_ok ? detail::staging(output) : Tensor<T>();
  state->run = [&ctx, call, in, out, op] {
    detail::agree(ctx, "reduce_scatter", call);
    detail::check_common("reduce_scatter", in, op);
    check_mpi(MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(), static_cast<int>(out.numel()),
                                       detail::mpi_type<T>(), detail::mpi_op(op), ctx.comm),
              "reduce_scatter", "MPI_Reduce_scatter_block");
  };
  if (output_ok) state->finish = detail::write_back(output, out, op, ctx.size);
  return detail::submit(std::move(state));
}

template <Element T>
Tensor<T> reduce_scatter(const Tensor<T>& input, ReduceOp op) {
  Tensor<T> out;
  if (input.defined() && input.dim() > 0) {
    std::vector<int64_t> dims(input.shape().begin(), input.shape().end());
    dims[0] /= world_size();
    out = empty<T>(Shape(dims));
  }
  reduce_scatter_async(out, input, op).wait();
  return out;
}

void barrier() {
  Context& ctx = active_context("barrier");
  auto state = std::make_shared<detail::WorkState>();
  state->op = "barrier";
  state->run = [&ctx] { check_mpi(MPI_Barrier(ctx.comm), "barrier", "MPI_Barrier"); };
  detail::submit(std::move(state)).wait();
}

namespace functional {
namespace {
struct AllReduceSum : autograd::Function<AllReduceSum> {
  template <FloatingElement T>
  static Tensor<T> forward(autograd::FunctionCtx<T>&, const Tensor<T>& x) {
    Tensor<T> y = x.clone();
    all_reduce(y, ReduceOp::Sum);
    return y;
  }
  template <FloatingElement T>
  static std::vector<Tensor<T>> backward(autograd::FunctionCtx<T>&, const Tensor<T>& grad) {
    return {AllReduceSum::apply(grad)};
  }
};
}  // namespace

template <FloatingElement T>
Tensor<T> all_reduce_sum(const Tensor<T>& x) {
  return AllReduceSum::apply(x);
}
template Tensor<float> all_reduce_sum(const Tensor<float>&);
template Tensor<double> all_reduce_sum(const Tensor<double>&);
}  // namespace functional

#define EMBER_DISTRIBUTED_INSTANTIATE(T)                                                    \
  template Work detail::start_all_reduce(const Tensor<T>&, ReduceOp, const char*, bool);    \
  template void all_reduce(const Tensor<T>&, ReduceOp);                                     \
  template Work all_reduce_async(const Tensor<T>&, ReduceOp);                               \
  template void broadcast(const Tensor<T>&, int);                                           \
  template Work broadcast_async(const Tensor<T>&, int);                                     \
  template Tensor<T> all_gather(const Tensor<T>&);                                          \
  template Work all_gather_async(const Tensor<T>&, const Tensor<T>&);                       \
  template Tensor<T> reduce_scatter(const Tensor<T>&, ReduceOp);                            \
  template Work reduce_scatter_async(const Tensor<T>&, const Tensor<T>&, ReduceOp);
EMBER_DISTRIBUTED_INSTANTIATE(float)
EMBER_DISTRIBUTED_INSTANTIATE(double)
EMBER_DISTRIBUTED_INSTANTIATE(int64_t)
EMBER_DISTRIBUTED_INSTANTIATE(int32_t)
EMBER_DISTRIBUTED_INSTANTIATE(uint8_t)
EMBER_DISTRIBUTED_INSTANTIATE(int8_t)
#undef EMBER_DISTRIBUTED_INSTANTIATE

}  // namespace ember::distributed
