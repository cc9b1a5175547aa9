#pragma once
// Batch norm over the whole batch of a data-parallel run (PyTorch's SyncBatchNorm): in training,
// the mean and variance are those of every rank's batch together, so N ranks with B/N samples
// each normalise as one process with B would. Same parameters, buffers and state-dict names as
// BatchNorm1d/2d; in eval mode it uses the running statistics like them.
//
//   auto bn = nn::SyncBatchNorm<float>(64);
//   nn::convert_sync_batch_norm(model);   // every BatchNorm in a model, in place
#include <cstdint>

#include "ember/distributed/collectives.hpp"
#include "ember/nn/normalization.hpp"

namespace ember::nn {

template <FloatingElement T = float>
class SyncBatchNorm : public BatchNorm<T> {
 public:
  explicit SyncBatchNorm(int64_t num_features, BatchNormOptions options = {})
      : BatchNorm<T>(num_features, options, 2, 5, "SyncBatchNorm") {
    this->synchronize_statistics(&distributed::functional::all_reduce_sum<T>);
  }
};
SyncBatchNorm(int64_t)->SyncBatchNorm<float>;
SyncBatchNorm(int64_t, BatchNormOptions)->SyncBatchNorm<float>;

/// Makes every BatchNorm1d/2d in `module` (recursively) a SyncBatchNorm in place, keeping its
/// weights and statistics and every handle to it; returns how many it converted.
template <FloatingElement T>
int64_t convert_sync_batch_norm(Module<T>& module);

extern template int64_t convert_sync_batch_norm(Module<float>&);
extern template int64_t convert_sync_batch_norm(Module<double>&);

}  // namespace ember::nn
