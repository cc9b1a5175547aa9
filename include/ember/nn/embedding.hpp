#pragma once
// Embedding: a lookup table of num_embeddings rows, PyTorch's nn.Embedding (parameter "weight"), and
// EmbeddingBag, its bags of rows reduced.
#include <cstdint>
#include <string>

#include "ember/core/error.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/normalization.hpp"

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

/// EmbeddingBag: PyTorch's nn.EmbeddingBag (parameter "weight", initialised N(0, 1), the
/// padding_idx row zero): each bag's rows summed, averaged (the default) or maxed without the
/// rows in between; a text classifier's bag of words. Bags as embedding_bag takes them.
template <FloatingElement T = float>
class EmbeddingBag : public Module<T> {
 public:
  EmbeddingBag(int64_t num_embeddings, int64_t embedding_dim, const EmbeddingBagOptions& options = {});
  Tensor<T> forward(const Tensor<T>&) override {
    throw ValueError("EmbeddingBag: call it with a Tensor<int64_t> of indices (and offsets)");
  }
  Tensor<T> operator()(const Tensor<int64_t>& input, const Tensor<int64_t>& offsets = Tensor<int64_t>(),
                       const Tensor<T>& per_sample_weights = Tensor<T>()) {
    return forward_indices(input, offsets, per_sample_weights);
  }
  Tensor<T> forward_indices(const Tensor<int64_t>& input, const Tensor<int64_t>& offsets = Tensor<int64_t>(),
                            const Tensor<T>& per_sample_weights = Tensor<T>());
  std::string type_name() const override { return "EmbeddingBag"; }

  Tensor<T> weight;
  int64_t num_embeddings, embedding_dim;
  EmbeddingBagOptions options;
};
EmbeddingBag(int64_t, int64_t)->EmbeddingBag<float>;
EmbeddingBag(int64_t, int64_t, const EmbeddingBagOptions&)->EmbeddingBag<float>;

extern template class Embedding<float>;
extern template class Embedding<double>;
extern template class EmbeddingBag<float>;
extern template class EmbeddingBag<double>;

}  // namespace ember::nn
