#pragma once
// Attention and transformer layers with PyTorch's parameter names and semantics:
// MultiheadAttention (in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias),
// TransformerEncoderLayer (self_attn, linear1, linear2, norm1, norm2) and TransformerDecoderLayer
// (self_attn, multihead_attn, linear1, linear2, norm1, norm2, norm3), post-norm or pre-norm; their
// stacks TransformerEncoder and TransformerDecoder (layers.0, ..., norm) and Transformer (encoder,
// decoder). Masks are uint8 as MultiheadAttention's: 1 = masked out (PyTorch's True in a bool mask).
#include <string>
#include <utility>
#include <vector>

#include "ember/nn/container.hpp"
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

/// TransformerDecoderLayer takes the same options as the encoder layer, as in PyTorch.
using TransformerDecoderLayerOptions = TransformerEncoderLayerOptions;

/// The masks of a decoder's target (self-attention) and memory (cross-attention): attention masks
/// [T, T] and [T, S] (or per head, [N * nhead, ...]), key padding masks [N, T] and [N, S]; 1 =
/// masked out. An is_causal flag masks the future positions as well.
struct TransformerDecoderMasks {
  Tensor<uint8_t> tgt_mask, memory_mask;
  Tensor<uint8_t> tgt_key_padding_mask, memory_key_padding_mask;
  bool tgt_is_causal = false;
  bool memory_is_causal = false;
};

/// Self-attention over the target, attention to the encoder's output (the memory), feed-forward.
template <FloatingElement T = float>
class TransformerDecoderLayer : public Module<T> {
 public:
  TransformerDecoderLayer(int64_t d_model, int64_t nhead, TransformerDecoderLayerOptions options = {});
  /// A decoder layer needs the memory too: throws, naming forward(tgt, memory).
  Tensor<T> forward(const Tensor<T>& tgt) override;
  Tensor<T> forward(const Tensor<T>& tgt, const Tensor<T>& memory, const TransformerDecoderMasks& masks = {});
  using Module<T>::operator();
  /// forward(tgt, memory, masks), as `layer(tgt, memory)` is called in PyTorch (no hooks run).
  Tensor<T> operator()(const Tensor<T>& tgt, const Tensor<T>& memory, const TransformerDecoderMasks& masks = {}) {
    return forward(tgt, memory, masks);
  }
  std::string type_name() const override { return "TransformerDecoderLayer"; }

  std::shared_ptr<MultiheadAttention<T>> self_attn, multihead_attn;
  std::shared_ptr<Linear<T>> linear1, linear2;
  std::shared_ptr<LayerNorm<T>> norm1, norm2, norm3;
  std::shared_ptr<Dropout<T>> dropout, dropout1, dropout2, dropout3;
  TransformerDecoderLayerOptions options;
};
TransformerDecoderLayer(int64_t, int64_t)->TransformerDecoderLayer<float>;
TransformerDecoderLayer(int64_t, int64_t, TransformerDecoderLayerOptions)->TransformerDecoderLayer<float>;

/// num_layers copies of `layer`, its weights included (PyTorch deep-copies the layer, so every copy
/// starts from the same weights), then `norm` when one is given.
template <FloatingElement T = float>
class TransformerEncoder : public Module<T> {
 public:
  TransformerEncoder(const TransformerEncoderLayer<T>& layer, int64_t num_layers);
  TransformerEncoder(const TransformerEncoderLayer<T>& layer, int64_t num_layers, LayerNorm<T> norm);
  Tensor<T> forward(const Tensor<T>& src) override { return forward_masked(src); }
  Tensor<T> forward_masked(const Tensor<T>& src, const Tensor<uint8_t>& mask = Tensor<uint8_t>(),
                           const Tensor<uint8_t>& src_key_padding_mask = Tensor<uint8_t>(),
                           bool is_causal = false);
  std::string type_name() const override { return "TransformerEncoder"; }

  std::shared_ptr<ModuleList<T>> layers;
  std::shared_ptr<LayerNorm<T>> norm;  // null without a final norm

 private:
  std::vector<std::shared_ptr<TransformerEncoderLayer<T>>> layer_list_;
};
template <FloatingElement T>
TransformerEncoder(const TransformerEncoderLayer<T>&, int64_t) -> TransformerEncoder<T>;
template <FloatingElement T>
TransformerEncoder(const TransformerEncoderLayer<T>&, int64_t, LayerNorm<T>) -> TransformerEncoder<T>;

/// num_layers copies of a decoder layer, weights included, then `norm` when one is given.
template <FloatingElement T = float>
class TransformerDecoder : public Module<T> {
 public:
  TransformerDecoder(const TransformerDecoderLayer<T>& layer, int64_t num_layers);
  TransformerDecoder(const TransformerDecoderLayer<T>& layer, int64_t num_layers, LayerNorm<T> norm);
  /// A decoder needs the memory too: throws, naming forward(tgt, memory).
  Tensor<T> forward(const Tensor<T>& tgt) override;
  Tensor<T> forward(const Tensor<T>& tgt, const Tensor<T>& memory, const TransformerDecoderMasks& masks = {});
  using Module<T>::operator();
  Tensor<T> operator()(const Tensor<T>& tgt, const Tensor<T>& memory, const TransformerDecoderMasks& masks = {}) {
    return forward(tgt, memory, masks);
  }
  std::string type_name() const override { return "TransformerDecoder"; }

  std::shared_ptr<ModuleList<T>> layers;
  std::shared_ptr<LayerNorm<T>> norm;  // null without a final norm

 private:
  std::vector<std::shared_ptr<TransformerDecoderLayer<T>>> layer_list_;
};
template <FloatingElement T>
TransformerDecoder(const TransformerDecoderLayer<T>&, int64_t) -> TransformerDecoder<T>;
template <FloatingElement T>
TransformerDecoder(const TransformerDecoderLayer<T>&, int64_t, LayerNorm<T>) -> TransformerDecoder<T>;

struct TransformerOptions {
  int64_t d_model = 512;
  int64_t nhead = 8;
  int64_t num_encoder_layers = 6;
  int64_t num_decoder_layers = 6;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  std::string activation = "relu";  // or "gelu"
  double layer_norm_eps = 1e-5;
  bool batch_first = false;
  bool norm_first = false;
};

/// Every mask of Transformer::forward (see TransformerDecoderMasks); src_mask is [S, S].
struct TransformerMasks {
  Tensor<uint8_t> src_mask, tgt_mask, memory_mask;
  Tensor<uint8_t> src_key_padding_mask, tgt_key_padding_mask, memory_key_padding_mask;
  bool src_is_causal = false;
  bool tgt_is_causal = false;
  bool memory_is_causal = false;
};

/// PyTorch's nn.Transformer: an encoder and a decoder stack, each with a final LayerNorm, every
/// matrix initialised Xavier-uniform. src [S, N, E] and tgt [T, N, E] ([N, S, E] and [N, T, E] with
/// batch_first, or unbatched [S, E] and [T, E]) give [T, N, E].
template <FloatingElement T = float>
class Transformer : public Module<T> {
 public:
  explicit Transformer(TransformerOptions options = {});
  /// A transformer needs the target too: throws, naming forward(src, tgt).
  Tensor<T> forward(const Tensor<T>& src) override;
  Tensor<T> forward(const Tensor<T>& src, const Tensor<T>& tgt, const TransformerMasks& masks = {});
  using Module<T>::operator();
  Tensor<T> operator()(const Tensor<T>& src, const Tensor<T>& tgt, const TransformerMasks& masks = {}) {
    return forward(src, tgt, masks);
  }
  std::string type_name() const override { return "Transformer"; }
  /// [size, size], 1 above the diagonal: position i may not attend to j > i (PyTorch's float mask
  /// of the same name has -inf there).
  static Tensor<uint8_t> generate_square_subsequent_mask(int64_t size);

  std::shared_ptr<TransformerEncoder<T>> encoder;
  std::shared_ptr<TransformerDecoder<T>> decoder;
  TransformerOptions options;
};
Transformer()->Transformer<float>;
Transformer(TransformerOptions)->Transformer<float>;

extern template class MultiheadAttention<float>;
extern template class MultiheadAttention<double>;
extern template class TransformerEncoderLayer<float>;
extern template class TransformerEncoderLayer<double>;
extern template class TransformerDecoderLayer<float>;
extern template class TransformerDecoderLayer<double>;
extern template class TransformerEncoder<float>;
extern template class TransformerEncoder<double>;
extern template class TransformerDecoder<float>;
extern template class TransformerDecoder<double>;
extern template class Transformer<float>;
extern template class Transformer<double>;

}  // namespace ember::nn
