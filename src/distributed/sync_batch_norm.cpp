#include "ember/distributed/sync_batch_norm.hpp"

namespace ember::nn {

template <FloatingElement T>
int64_t convert_sync_batch_norm(Module<T>& module) {
  int64_t converted = 0;
  for (auto& [path, m] : module.named_modules()) {
    if (auto* bn = dynamic_cast<BatchNorm<T>*>(m)) {
      bn->synchronize_statistics(&distributed::functional::all_reduce_sum<T>);
      ++converted;
    }
  }
  return converted;
}

template int64_t convert_sync_batch_norm(Module<float>&);
template int64_t convert_sync_batch_norm(Module<double>&);

}  // namespace ember::nn
