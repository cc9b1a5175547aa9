#pragma once
// Collectives on tensors across the ranks of the Environment (torch.distributed's names):
//
//   ember::distributed::all_reduce(grad, ReduceOp::Avg);           // in place, every rank
//   auto work = ember::distributed::all_reduce_async(t);          // overlaps what follows
//   ...; work.wait();
//   ember::distributed::broadcast(weights, /*root=*/0);
//   Tensor<float> all = ember::distributed::all_gather(local);    // [world_size, ...local shape]
//
// Every element type works; tensors may be non-contiguous (the result is written back through
// their strides). Every rank must pass tensors of the same dtype and shape (a DistributedError on
// every rank otherwise, see Note [Distributed processes]).
#include <chrono>
#include <cstdint>
#include <memory>

#include "ember/core/tensor.hpp"

namespace ember::distributed {

/// Avg is Sum divided by the number of ranks (floating-point tensors only).
enum class ReduceOp { Sum, Avg, Max, Min };

namespace detail {
struct WorkState;
}

/// A collective in flight (torch.distributed's Work). wait() finishes it, writes its result into
/// the tensors it was given and rethrows its error, if any; the destructor waits too, so a
/// tensor is never left half written.
class Work {
 public:
  Work() = default;
  explicit Work(std::shared_ptr<detail::WorkState> state) noexcept : state_(std::move(state)) {}
  Work(Work&&) noexcept = default;
  Work& operator=(Work&& other) noexcept;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;
  ~Work();
  void wait();
  /// Whether it has finished (does not wait).
  bool is_completed();
  /// When the communication thread started and finished it (valid once completed).
  std::chrono::steady_clock::time_point started() const;
  std::chrono::steady_clock::time_point ended() const;

 private:
  std::shared_ptr<detail::WorkState> state_;
};

/// Reduces `t` over all ranks; every rank gets the result in `t`.
template <Element T>
void all_reduce(const Tensor<T>& t, ReduceOp op = ReduceOp::Sum);
template <Element T>
[[nodiscard]] Work all_reduce_async(const Tensor<T>& t, ReduceOp op = ReduceOp::Sum);

/// Copies `root`'s `t` into `t` on every other rank.
template <Element T>
void broadcast(const Tensor<T>& t, int root = 0);
template <Element T>
[[nodiscard]] Work broadcast_async(const Tensor<T>& t, int root = 0);

/// Every rank's `t`, stacked: [world_size, ...t's shape].
template <Element T>
Tensor<T> all_gather(const Tensor<T>& t);
/// Writes every rank's `input` into `output` ([world_size, ...input's shape]).
template <Element T>
[[nodiscard]] Work all_gather_async(const Tensor<T>& output, const Tensor<T>& input);

/// Reduces `input` ([world_size * k, ...]) over all ranks and gives rank r rows r*k .. (r+1)*k-1
/// of the result ([k, ...]; torch's reduce_scatter_tensor).
template <Element T>
Tensor<T> reduce_scatter(const Tensor<T>& input, ReduceOp op = ReduceOp::Sum);
template <Element T>
[[nodiscard]] Work reduce_scatter_async(const Tensor<T>& output, const Tensor<T>& input,
                                        ReduceOp op = ReduceOp::Sum);

/// Returns once every rank has called it.
void barrier();

namespace functional {
/// The sum of `x` over all ranks, differentiable: its gradient is the sum of the ranks' gradients
/// (SyncBatchNorm's statistics use it).
template <FloatingElement T>
Tensor<T> all_reduce_sum(const Tensor<T>& x);
}  // namespace functional

}  // namespace ember::distributed
