#pragma once
// Attention and transformer layers with PyTorch's parameter names and semantics:
// MultiheadAttention (in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias) and
// TransformerEncoderLayer (self_attn, linear1, linear2, norm1, norm2), post-norm or pre-norm.
#include <string>
#include <utility>

#include "ember/nn/dropout.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/module.hpp"
#include "ember/nn/normalization.hpp"

namespace ember::nn {

namespace functional {
/// softmax(q k^T / sqrt(d) + mask) v over the last two dims. attn_mask: a float mask added to the
/// scores, or (bool_mask) a uint8 mask whose 1s are masked out; is_causal masks the future.
template <FloatingElement T>
Tensor<T> scaled_dot_product_attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                       const Tensor<T>& attn_mask = Tensor<T>(), double dropout_p = 0.0,
                                       bool is_causal = false, bool training = true);

struct MultiheadAttentionArgs {
  int64_t num_heads = 1;
  Tensor<uint8_t> key_padding_mask;  // [N, S], 1 = ignore that key
  Tensor<uint8_t> attn_mask;         // [L, S] or [N * heads, L, S], 1 = masked
  bool is_causal = false;
  bool need_weights = true;
  bool average_attn_weights = true;
  double dropout = 0.0;
  bool training = false;
};

/// Multi-head attention on batch-first inputs q [N, L, E], k and v [N, S, E]. Returns the output
/// [N, L, E] and the attention weights ([N, L, S] averaged over heads, or [N, heads, L, S]).
template <FloatingElement T>
std::pair<Tensor<T>, Tensor<T>> multi_head_attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                                     const Tensor<T>& in_proj_weight, const Tensor<T>& in_proj_bias,
                                                     const Tensor<T>& out_proj_weight,
                                                     const Tensor<T>& out_proj_bias,
                                                     const MultiheadAttentionArgs& args);
}  // namespace functional

struct MultiheadAttentionOptions {
  double dropout = 0.0;
  bool bias = true;
  bool batch_first = false;
};

template <FloatingElement T = float>
class MultiheadAttention : public Module<T> {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, MultiheadAttentionOptions options = {});
  /// Self-attention: attention(x, x, x).first.
  Tensor<T> forward(const Tensor<T>& x) override;
  /// query, key, value in [L, N, E] (or [N, L, E] with batch_first); returns the output and the
  /// attention weights (undefined when need_weights is false).
  std::pair<Tensor<T>, Tensor<T>> attention(const Tensor<T>& query, const Tensor<T>& key, const Tensor<T>& value,
                                            const Tensor<uint8_t>& key_padding_mask = Tensor<uint8_t>(),
                                            bool need_weights = true,
                                            const Tensor<uint8_t>& attn_mask = Tensor<uint8_t>(),
                                            bool average_attn_weights = true, bool is_causal = false);
  std::string type_name() const override { return "MultiheadAttention"; }

  Tensor<T> in_proj_weight, in_proj_bias;
  std::shared_ptr<Linear<T>> out_proj;
  int64_t embed_dim, num_heads;
  MultiheadAttentionOptions options;
};
MultiheadAttention(int64_t, int64_t)->MultiheadAttention<float>;
MultiheadAttention(int64_t, int64_t, MultiheadAttentionOptions)->MultiheadAttention<float>;

struct TransformerEncoderLayerOptions {
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  std::string activation = "relu";  // or "gelu"
  double layer_norm_eps = 1e-5;
  bool batch_first = false;
  bool norm_first = false;
};

template <FloatingElement T = float>
class TransformerEncoderLayer : public Module<T> {
 public:
  TransformerEncoderLayer(int64_t d_model, int64_t nhead, TransformerEncoderLayerOptions options = {});
  Tensor<T> forward(const Tensor<T>& src) override { return forward_masked(src); }
  Tensor<T> forward_masked(const Tensor<T>& src, const Tensor<uint8_t>& src_mask = Tensor<uint8_t>(),
                           const Tensor<uint8_t>& src_key_padding_mask = Tensor<uint8_t>(),
                           bool is_causal = false);
  std::string type_name() const override { return "TransformerEncoderLayer"; }

  std::shared_ptr<MultiheadAttention<T>> self_attn;
  std::shared_ptr<Linear<T>> linear1, linear2;
  std::shared_ptr<LayerNorm<T>> norm1, norm2;
  std::shared_ptr<Dropout<T>> dropout, dropout1, dropout2;
  TransformerEncoderLayerOptions options;

 private:
  Tensor<T> feed_forward(const Tensor<T>& x);
};
TransformerEncoderLayer(int64_t, int64_t)->TransformerEncoderLayer<float>;
TransformerEncoderLayer(int64_t, int64_t, TransformerEncoderLayerOptions)->TransformerEncoderLayer<float>;

extern template class MultiheadAttention<float>;
extern template class MultiheadAttention<double>;
extern template class TransformerEncoderLayer<float>;
extern template class TransformerEncoderLayer<double>;

}  // namespace ember::nn
