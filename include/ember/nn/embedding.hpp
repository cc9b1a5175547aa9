#pragma once
// Embedding: a lookup table of num_embeddings rows, PyTorch's nn.Embedding (parameter "weight").
#include <cstdint>
#include <string>

#include "ember/core/error.hpp"
#include "ember/nn/module.hpp"

namespace ember::nn {

template <FloatingElement T = float>
class Embedding : public Module<T> {
 public:
  /// padding_idx < 0: none (PyTorch's None); negative PyTorch indices are not supported.
  Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx = -1);
  Tensor<T> forward(const Tensor<T>&) override {
    throw ValueError("Embedding: call it with a Tensor<int64_t> of indices (forward_indices)");
  }
  Tensor<T> operator()(const Tensor<int64_t>& indices) { return forward_indices(indices); }
  Tensor<T> forward_indices(const Tensor<int64_t>& indices);
  std::string type_name() const override { return "Embedding"; }

  Tensor<T> weight;
  int64_t num_embeddings, embedding_dim, padding_idx;
};
Embedding(int64_t, int64_t)->Embedding<float>;
Embedding(int64_t, int64_t, int64_t)->Embedding<float>;

extern template class Embedding<float>;
extern template class Embedding<double>;

}  // namespace ember::nn
