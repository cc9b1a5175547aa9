#include "ember/distributed/ddp.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <sstream>

#include "context.hpp"
#include "ember/autograd/autograd.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/shape_ops.hpp"

namespace ember::distributed {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Every rank's description of its model, one line per parameter and buffer; compared with rank
// 0's on every rank, so all of them throw the same error (or none does) before any collective
// could wait for a rank that will not join it.
void check_same_model(const std::string& description) {
  detail::Context& ctx = detail::active_context("DistributedDataParallel");
  std::lock_guard lock(ctx.mutex);
  int64_t longest = static_cast<int64_t>(description.size()) + 1;
  detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, &longest, 1, MPI_INT64_T, MPI_MAX, ctx.comm),
                    "DistributedDataParallel", "MPI_Allreduce");
  std::vector<char> mine(static_cast<size_t>(longest), '\0');
  std::copy(description.begin(), description.end(), mine.begin());
  std::vector<char> all(mine.size() * static_cast<size_t>(ctx.size));
  detail::check_mpi(MPI_Allgather(mine.data(), static_cast<int>(longest), MPI_CHAR, all.data(),
                                  static_cast<int>(longest), MPI_CHAR, ctx.comm),
                    "DistributedDataParallel", "MPI_Allgather");
  const std::vector<std::string> reference = split_lines(std::string(all.data()));
  for (int r = 1; r < ctx.size; ++r) {
    const std::vector<std::string> theirs = split_lines(std::string(all.data() + static_cast<size_t>(r) * mine.size()));
    const size_t n = std::max(reference.size(), theirs.size());
    for (size_t i = 0; i < n; ++i) {
      const std::string a = i < reference.size() ? reference[i] : "nothing";
      const std::string b = i < theirs.size() ? theirs[i] : "nothing";
      if (a == b) continue;
      throw DistributedError("DistributedDataParallel: rank " + std::to_string(r) + "'s model differs from rank 0's at entry " +
                             std::to_string(i) + ": rank 0 has " + a + ", rank " + std::to_string(r) + " has " + b +
                             " (" + std::to_string(reference.size()) + " and " + std::to_string(theirs.size()) +
                             " parameters and buffers)");
    }
  }
}

template <Element U>
void broadcast_packed(const std::vector<Tensor<U>>& tensors) {
  if (tensors.empty()) return;
  NoGradGuard no_grad;
  int64_t total = 0;
  for (const auto& t : tensors) total += t.numel();
  Tensor<U> flat = empty<U>(Shape{total});
  int64_t offset = 0;
  for (const auto& t : tensors) {
    flat.narrow(0, offset, t.numel()).view(t.shape()).copy_(t.detach());
    offset += t.numel();
  }
  broadcast(flat, 0);
  offset = 0;
  for (const auto& t : tensors) {
    t.detach().copy_(flat.narrow(0, offset, t.numel()).view(t.shape()));
    offset += t.numel();
  }
}

}  // namespace

template <FloatingElement T>
struct DistributedDataParallel<T>::Reducer {
  struct Bucket {
    std::vector<size_t> members;
    Tensor<T> flat;
    int64_t pending = 0;
    Work work;
  };

  nn::Module<T>& module;
  DDPOptions options;
  std::vector<std::string> names;
  std::vector<Tensor<T>> params;
  std::vector<uint64_t> hook_ids;
  // The buffers rank 0 hands out (batch norm's statistics), gathered once.
  std::vector<Tensor<T>> floating_buffers;
  std::vector<Tensor<int64_t>> integral_buffers;
  std::vector<size_t> bucket_of;
  std::vector<int64_t> offset_of;
  std::vector<bool> ready;
  std::vector<Bucket> buckets;
  size_t next_launch = 0;
  bool armed = false;
  bool callback_queued = false;
  bool sync_enabled = true;
  DDPStepStats stats;
  double exposed = 0;  // this step's seconds in communication calls so far
  int world = world_size();

  Reducer(nn::Module<T>& m, DDPOptions o) : module(m), options(o) {}

  void build_buckets() {
    const double cap = options.bucket_cap_mb * 1024.0 * 1024.0;
    std::vector<int64_t> sizes;
    // Reverse registration order: backward produces the last layers' gradients first.
    for (size_t k = params.size(); k-- > 0;) {
      const int64_t n = params[k].numel();
      const bool full = !buckets.empty() &&
                        static_cast<double>((sizes.back() + n) * static_cast<int64_t>(sizeof(T))) > cap;
      if (buckets.empty() || full) {
        buckets.emplace_back();
        sizes.push_back(0);
      }
      bucket_of[k] = buckets.size() - 1;
      offset_of[k] = sizes.back();
      buckets.back().members.push_back(k);
      sizes.back() += n;
    }
    for (size_t b = 0; b < buckets.size(); ++b) {
      buckets[b].flat = zeros<T>(Shape{sizes[b]});
      buckets[b].pending = static_cast<int64_t>(buckets[b].members.size());
      stats.bytes += sizes[b] * static_cast<int64_t>(sizeof(T));
    }
    stats.buckets = static_cast<int64_t>(buckets.size());
  }

  Tensor<T> slot(size_t k) const {
    return buckets[bucket_of[k]].flat.narrow(0, offset_of[k], params[k].numel()).view(params[k].shape());
  }

  void reset_step() {
    std::fill(ready.begin(), ready.end(), false);
    for (auto& b : buckets) b.pending = static_cast<int64_t>(b.members.size());
    next_launch = 0;
    callback_queued = false;
    exposed = 0;
  }

  void launch_ready_buckets() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      Bucket& b = buckets[next_launch];
      b.work = detail::start_all_reduce(b.flat, ReduceOp::Sum, "DistributedDataParallel", false);
      ++next_launch;
    }
  }

  void on_gradient(size_t k) {
    if (!armed) return;
    if (!callback_queued) {
      autograd::queue_callback([this] { finish(); });
      callback_queued = true;
    }
    {
      // Each rank's share is divided by the number of ranks as it enters the bucket, so the
      // all-reduce's sum is the average with no pass of its own.
      NoGradGuard no_grad;
      Tensor<T> s = slot(k);
      const Tensor<T> grad = params[k].grad();
      const double share = 1.0 / world;
      if (grad.data_ptr() == s.data_ptr()) {
        if (world > 1) s.mul_(share);
      } else if (grad.is_contiguous()) {
        // Copied and scaled in one pass.
        backend::kernels<T>().unary(backend::Unary::MulScalar, {share, 0.0}, s.numel(), grad.data_ptr(), 1,
                                    s.data_ptr());
      } else {
        s.copy_(grad.detach());
        if (world > 1) s.mul_(share);
      }
    }
    if (!ready[k]) {
      ready[k] = true;
      --buckets[bucket_of[k]].pending;
    }
    const auto start = Clock::now();
    launch_ready_buckets();
    exposed += std::chrono::duration<double>(Clock::now() - start).count();
  }

  void finish() {
    armed = false;
    std::string unused;
    for (size_t k = 0; k < params.size(); ++k) {
      if (ready[k]) continue;
      if (!options.find_unused_parameters) unused += (unused.empty() ? "" : ", ") + names[k];
      NoGradGuard no_grad;
      slot(k).zero_();
      ready[k] = true;
      --buckets[bucket_of[k]].pending;
    }
    const auto wait_start = Clock::now();
    launch_ready_buckets();
    for (auto& b : buckets) b.work.wait();
    stats.final_wait_seconds = std::chrono::duration<double>(Clock::now() - wait_start).count();
    stats.all_reduce_seconds = stats.overlapped_seconds = 0;
    for (auto& b : buckets) {
      stats.all_reduce_seconds += std::chrono::duration<double>(b.work.ended() - b.work.started()).count();
      if (b.work.started() < wait_start) {
        stats.overlapped_seconds +=
            std::chrono::duration<double>(std::min(b.work.ended(), wait_start) - b.work.started()).count();
      }
    }
    stats.exposed_seconds = exposed + stats.final_wait_seconds;
    exposed = 0;
    // The gradients become views of their buckets (PyTorch's gradient_as_bucket_view), saving a
    // copy back: zero_grad() then drops or zeroes them, and a backward without it adds into them.
    for (size_t k = 0; k < params.size(); ++k) {
      Tensor<T> averaged = slot(k);
      if (params[k].grad().data_ptr() != averaged.data_ptr()) params[k].set_grad(averaged);
    }
    reset_step();
    if (!unused.empty()) {
      throw DistributedError("DistributedDataParallel: rank " + std::to_string(rank()) +
                             ": these parameters got no gradient in this step: " + unused +
                             " (construct it with .find_unused_parameters = true when a step may leave some out)");
    }
  }
};

template <FloatingElement T>
DistributedDataParallel<T>::DistributedDataParallel(nn::Module<T>& module, DDPOptions options)
    : reducer_(std::make_unique<Reducer>(module, options)) {
  if (!(options.bucket_cap_mb > 0)) {
    throw ValueError("DistributedDataParallel: bucket_cap_mb must be positive, got " +
                     std::to_string(options.bucket_cap_mb));
  }
  Reducer& r = *reducer_;
  std::string description;
  for (const auto& [name, p] : module.named_parameters()) {
    description += "parameter " + name + " " + p.shape().str() + (p.requires_grad() ? "" : " frozen") + "\n";
  }
  for (const auto& b : module.named_buffers()) {
    description += "buffer " + b.name + " " + dtype_name(b.tensor.dtype()) + " " + b.tensor.shape().str() + "\n";
  }
  check_same_model(description);

  std::vector<Tensor<T>> parameters;
  for (const auto& [name, p] : module.named_parameters()) {
    parameters.push_back(p);
    if (p.requires_grad()) {
      r.names.push_back(name);
      r.params.push_back(p);
    }
  }
  for (const auto& b : module.named_buffers()) {
    if (b.tensor.dtype() == dtype_of<T>) r.floating_buffers.push_back(Tensor<T>::from_base(b.tensor));
    if (b.tensor.dtype() == DType::Int64) r.integral_buffers.push_back(Tensor<int64_t>::from_base(b.tensor));
  }
  parameters.insert(parameters.end(), r.floating_buffers.begin(), r.floating_buffers.end());
  broadcast_packed(parameters);
  broadcast_packed(r.integral_buffers);

  r.bucket_of.resize(r.params.size());
  r.offset_of.resize(r.params.size());
  r.ready.assign(r.params.size(), false);
  r.build_buckets();
  Reducer* self = reducer_.get();
  for (size_t k = 0; k < r.params.size(); ++k) {
    r.hook_ids.push_back(r.params[k].register_post_accumulate_grad_hook([self, k](const Tensor<T>&) { self->on_gradient(k); }));
  }
}

template <FloatingElement T>
DistributedDataParallel<T>::~DistributedDataParallel() {
  Reducer& r = *reducer_;
  for (size_t k = 0; k < r.params.size(); ++k) r.params[k].remove_post_accumulate_grad_hook(r.hook_ids[k]);
}

template <FloatingElement T>
Tensor<T> DistributedDataParallel<T>::operator()(const Tensor<T>& input) {
  Reducer& r = *reducer_;
  if (r.options.broadcast_buffers && r.module.is_training() && r.world > 1) {
    broadcast_packed(r.floating_buffers);
    broadcast_packed(r.integral_buffers);
  }
  r.reset_step();
  r.armed = r.sync_enabled && autograd::grad_mode_enabled();
  return r.module(input);
}

template <FloatingElement T>
nn::Module<T>& DistributedDataParallel<T>::module() noexcept {
  return reducer_->module;
}

template <FloatingElement T>
DistributedDataParallel<T>::NoSync::NoSync(DistributedDataParallel& ddp) : ddp_(ddp), previous_(ddp.reducer_->sync_enabled) {
  ddp_.reducer_->sync_enabled = false;
}

template <FloatingElement T>
DistributedDataParallel<T>::NoSync::~NoSync() {
  ddp_.reducer_->sync_enabled = previous_;
}

template <FloatingElement T>
std::vector<std::vector<std::string>> DistributedDataParallel<T>::bucket_names() const {
  std::vector<std::vector<std::string>> out;
  for (const auto& b : reducer_->buckets) {
    out.emplace_back();
    for (size_t k : b.members) out.back().push_back(reducer_->names[k]);
  }
  return out;
}

template <FloatingElement T>
const DDPStepStats& DistributedDataParallel<T>::last_step_stats() const noexcept {
  return reducer_->stats;
}

template class DistributedDataParallel<float>;
template class DistributedDataParallel<double>;

}  // namespace ember::distributed
