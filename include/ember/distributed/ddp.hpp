#pragma once
// Data-parallel training (PyTorch's DistributedDataParallel): every rank holds the whole model,
// trains on its own share of each batch, and the ranks average their gradients during backward.
//
//   ember::distributed::Environment env(argc, argv);
//   Net model;
//   ember::distributed::DistributedDataParallel ddp(model);        // rank 0's weights everywhere
//   ember::optim::SGD opt(model.parameters(), {.lr = 0.1});
//   data::DataLoader<float, int64_t> loader(train, {.batch_size = 64,
//       .sampler = std::make_shared<data::DistributedSampler>(train->size(), data::DistributedSamplerOptions{})});
//   for (...) { opt.zero_grad(); auto loss = F::cross_entropy(ddp(x), y); loss.backward(); opt.step(); }
//
// Note [Gradient buckets]
// The parameters that require grad are split into buckets of at most bucket_cap_mb, in reverse
// registration order (backward reaches the last layers first). A hook on each parameter copies
// its gradient into its bucket once backward has accumulated it; when a bucket is complete, its
// all-reduce is queued for the communication thread (Note [Distributed processes]), which runs it
// while backward goes on with the earlier layers. Buckets start in index order on every rank, whatever
// order the hooks fire in, so the ranks' collectives always match. When backward has finished,
// a callback queued on the autograd engine waits for the buckets still in flight. Each rank's
// gradient is divided by the number of ranks as it is copied into its bucket, so the sum the
// all-reduce computes is the average, and grad() becomes a view of its bucket afterwards
// (PyTorch's gradient_as_bucket_view): no pass of its own for either. Parameters that got no gradient in a step (a branch not taken)
// contribute zeros with find_unused_parameters; otherwise the step throws naming them, after
// the all-reduces have completed, so no rank is left waiting.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ember/distributed/collectives.hpp"
#include "ember/nn/module.hpp"

namespace ember::distributed {

struct DDPOptions {
  /// The most bytes of gradient per bucket, in MiB (PyTorch's default 25). Smaller buckets start
  /// their all-reduces earlier in backward and overlap more of it, at a latency cost each.
  double bucket_cap_mb = 25;
  /// Copy rank 0's buffers (batch norm's running statistics) to every rank before each forward
  /// in training.
  bool broadcast_buffers = true;
  /// Let parameters get no gradient in a step (they contribute zeros) instead of throwing.
  bool find_unused_parameters = false;
};

/// What the last synchronised backward did.
struct DDPStepStats {
  int64_t buckets = 0;
  int64_t bytes = 0;
  /// Seconds the backward thread spent in communication: starting and advancing the buckets'
  /// all-reduces in the gradient hooks, and waiting for them at the end. All of it lengthens the
  /// step; the rest of the all-reduce time was hidden behind backward.
  double exposed_seconds = 0;
  /// The part of exposed_seconds spent waiting after backward had finished.
  double final_wait_seconds = 0;
  /// The buckets' all-reduce time (on the communication thread) and the part of it that ran
  /// while backward was still computing, in seconds.
  double all_reduce_seconds = 0;
  double overlapped_seconds = 0;
};

template <FloatingElement T>
class DistributedDataParallel {
 public:
  /// Checks that every rank's model has the same parameters (names, shapes, in order; a
  /// DistributedError naming the first that differs, on every rank) and copies rank 0's
  /// parameters and buffers to the others. `module` must outlive this object.
  explicit DistributedDataParallel(nn::Module<T>& module, DDPOptions options = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  /// The wrapped module's forward; arms the gradient all-reduce for the next backward (unless
  /// inside no_sync()).
  Tensor<T> operator()(const Tensor<T>& input);
  Tensor<T> forward(const Tensor<T>& input) { return (*this)(input); }
  nn::Module<T>& module() noexcept;

  /// While the guard lives, forwards arm no all-reduce: gradients accumulate locally (gradient
  /// accumulation; the first backward after it averages the sum).
  class [[nodiscard]] NoSync {
   public:
    explicit NoSync(DistributedDataParallel& ddp);
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool previous_;
  };
  NoSync no_sync() { return NoSync(*this); }

  /// The parameter names in each bucket, in the order the buckets are all-reduced.
  std::vector<std::vector<std::string>> bucket_names() const;
  const DDPStepStats& last_step_stats() const noexcept;

 private:
  struct Reducer;
  std::unique_ptr<Reducer> reducer_;
};

DistributedDataParallel(nn::Module<float>&) -> DistributedDataParallel<float>;
DistributedDataParallel(nn::Module<float>&, DDPOptions) -> DistributedDataParallel<float>;
DistributedDataParallel(nn::Module<double>&) -> DistributedDataParallel<double>;
DistributedDataParallel(nn::Module<double>&, DDPOptions) -> DistributedDataParallel<double>;

extern template class DistributedDataParallel<float>;
extern template class DistributedDataParallel<double>;

}  // namespace ember::distributed
