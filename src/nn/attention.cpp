// Attention as a composite of matmul, masked softmax and linear layers: gradients and double
// gradients come from autograd.
#include "ember/nn/attention.hpp"

#include <cmath>
#include <limits>

#include "../ops/common.hpp"
#include "ember/nn/functional.hpp"
#include "ember/nn/init.hpp"

namespace ember::nn {

using detail::cat_str;

namespace functional {

namespace {
// 1 above the diagonal: position i may not attend to j > i.
Tensor<uint8_t> causal_mask(int64_t l, int64_t s) {
  std::vector<uint8_t> m(static_cast<size_t>(l * s));
  for (int64_t i = 0; i < l; ++i)
    for (int64_t j = 0; j < s; ++j) m[static_cast<size_t>(i * s + j)] = j > i;
  return tensor<uint8_t>(m, {l, s});
}

template <FloatingElement T>
Tensor<T> masked_scores(const Tensor<T>& scores, const Tensor<uint8_t>& mask) {
  return masked_fill(scores, mask, -std::numeric_limits<double>::infinity());
}
}  // namespace

template <FloatingElement T>
Tensor<T> scaled_dot_product_attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                       const Tensor<T>& attn_mask, double dropout_p, bool is_causal,
                                       bool training) {
  if (!q.defined() || !k.defined() || !v.defined() || q.dim() < 2 || k.dim() < 2 || v.dim() < 2) {
    throw ShapeError("scaled_dot_product_attention: q, k and v need at least 2 dims");
  }
  const int64_t d = q.shape()[q.dim() - 1];
  Tensor<T> scores = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(d)));
  if (is_causal) {
    scores = masked_scores(scores, causal_mask(scores.shape()[scores.dim() - 2], scores.shape()[scores.dim() - 1]));
  }
  if (attn_mask.defined()) scores = scores + attn_mask;
  Tensor<T> attn = softmax(scores, -1);
  if (dropout_p > 0.0 && training) attn = dropout(attn, dropout_p, true);
  return matmul(attn, v);
}

template <FloatingElement T>
std::pair<Tensor<T>, Tensor<T>> multi_head_attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                                     const Tensor<T>& in_w, const Tensor<T>& in_b,
                                                     const Tensor<T>& out_w, const Tensor<T>& out_b,
                                                     const MultiheadAttentionArgs& a) {
  if (!q.defined() || !k.defined() || !v.defined() || q.dim() != 3 || k.dim() != 3 || v.dim() != 3) {
    throw ShapeError("multi_head_attention: query, key and value must be 3-D [N, L, E]");
  }
  const int64_t n = q.shape()[0], l = q.shape()[1], e = q.shape()[2], s = k.shape()[1], h = a.num_heads;
  if (h <= 0 || e % h != 0) {
    throw ValueError(cat_str("multi_head_attention: embed_dim ", e, " is not divisible by num_heads ", h));
  }
  if (k.shape() != v.shape() || k.shape()[0] != n || k.shape()[2] != e) {
    throw ShapeError(cat_str("multi_head_attention: query ", q.shape(), ", key ", k.shape(), " and value ",
                             v.shape(), " do not fit together"));
  }
  if (!in_w.defined() || in_w.shape() != Shape({3 * e, e})) {
    throw ShapeError(cat_str("multi_head_attention: in_proj_weight ", in_w.defined() ? in_w.shape() : Shape{},
                             " does not fit the query ", q.shape(), " of embedding dim ", e, " (expected [", 3 * e,
                             ", ", e, "])"));
  }
  const int64_t dh = e / h;
  auto part = [&](const Tensor<T>& t, int64_t i) { return t.defined() ? t.narrow(0, i * e, e) : Tensor<T>(); };
  auto heads = [&](const Tensor<T>& x, int64_t len) {  // [N, len, E] -> [N, H, len, dh]
    return x.reshape({n, len, h, dh}).permute({0, 2, 1, 3});
  };
  Tensor<T> qh = heads(linear(q, part(in_w, 0), part(in_b, 0)), l);
  Tensor<T> kh = heads(linear(k, part(in_w, 1), part(in_b, 1)), s);
  Tensor<T> vh = heads(linear(v, part(in_w, 2), part(in_b, 2)), s);
  Tensor<T> scores = matmul(qh, kh.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(dh)));
  if (a.attn_mask.defined()) {
    Tensor<uint8_t> m = a.attn_mask;
    if (m.dim() == 3) {
      if (m.shape() != Shape({n * h, l, s})) {
        throw ShapeError(cat_str("multi_head_attention: attn_mask ", m.shape(), " must be [", l, ", ", s, "] or [",
                                 n * h, ", ", l, ", ", s, "]"));
      }
      m = m.reshape({n, h, l, s});
    } else if (m.shape() != Shape({l, s})) {
      throw ShapeError(cat_str("multi_head_attention: attn_mask ", m.shape(), " must be [", l, ", ", s, "]"));
    }
    scores = masked_scores(scores, m);
  }
  if (a.is_causal) scores = masked_scores(scores, causal_mask(l, s));
  if (a.key_padding_mask.defined()) {
    if (a.key_padding_mask.shape() != Shape({n, s})) {
      throw ShapeError(cat_str("multi_head_attention: key_padding_mask ", a.key_padding_mask.shape(),
                               " must be [", n, ", ", s, "]"));
    }
    scores = masked_scores(scores, a.key_padding_mask.reshape({n, 1, 1, s}));
  }
  Tensor<T> attn = softmax(scores, -1);
  Tensor<T> used = a.dropout > 0.0 && a.training ? dropout(attn, a.dropout, true) : attn;
  // The heads' outputs are gathered in the query's order of rows: sequence-first when the query
  // is a sequence-first batch seen batch-first (MultiheadAttention without batch_first), so the
  // output projection and the caller's residual add run on contiguous rows.
  const Tensor<T> per_head = matmul(used, vh);  // [N, H, L, dh]
  Tensor<T> out;
  if (n > 1 && l > 1 && q.strides()[0] < q.strides()[1]) {
    out = linear(per_head.permute({2, 0, 1, 3}).reshape({l, n, e}), out_w, out_b).transpose(0, 1);
  } else {
    out = linear(per_head.permute({0, 2, 1, 3}).reshape({n, l, e}), out_w, out_b);
  }
  Tensor<T> weights;
  if (a.need_weights) weights = a.average_attn_weights ? attn.mean(1) : attn;
  return {out, weights};
}

}  // namespace functional

template <FloatingElement T>
MultiheadAttention<T>::MultiheadAttention(int64_t e, int64_t h, MultiheadAttentionOptions o)
    : embed_dim(e), num_heads(h), options(o) {
  if (e <= 0 || h <= 0 || e % h != 0) {
    throw ValueError(cat_str("MultiheadAttention: embed_dim ", e, " must be divisible by num_heads ", h));
  }
  in_proj_weight = this->register_parameter("in_proj_weight", empty<T>({3 * e, e}));
  init::xavier_uniform_(in_proj_weight);
  if (o.bias) in_proj_bias = this->register_parameter("in_proj_bias", zeros<T>({3 * e}));
  out_proj = this->register_module("out_proj", Linear<T>(e, e, {.bias = o.bias}));
  if (o.bias) init::zeros_(out_proj->bias);
}

template <FloatingElement T>
std::pair<Tensor<T>, Tensor<T>> MultiheadAttention<T>::attention(const Tensor<T>& query, const Tensor<T>& key,
                                                                 const Tensor<T>& value,
                                                                 const Tensor<uint8_t>& key_padding_mask,
                                                                 bool need_weights, const Tensor<uint8_t>& attn_mask,
                                                                 bool average_attn_weights, bool is_causal) {
  if (query.defined() && query.dim() == 2) {
    // Unbatched: query [L, E], key and value [S, E], key_padding_mask [S]; a batch of one.
    if (!key.defined() || !value.defined() || key.dim() != 2 || value.dim() != 2) {
      throw ShapeError(cat_str("MultiheadAttention: for the unbatched 2-D query ", query.shape(),
                               ", key and value must be 2-D too, got ", key.defined() ? key.shape() : Shape{},
                               " and ", value.defined() ? value.shape() : Shape{}));
    }
    if (key_padding_mask.defined() && key_padding_mask.dim() != 1) {
      throw ShapeError(cat_str("MultiheadAttention: for the unbatched query ", query.shape(),
                               ", key_padding_mask must be 1-D [S], got ", key_padding_mask.shape()));
    }
    const int64_t batch_dim = options.batch_first ? 0 : 1;
    auto [out, weights] = attention(query.unsqueeze(batch_dim), key.unsqueeze(batch_dim), value.unsqueeze(batch_dim),
                                    key_padding_mask.defined() ? key_padding_mask.unsqueeze(0) : key_padding_mask,
                                    need_weights, attn_mask, average_attn_weights, is_causal);
    return {out.squeeze(batch_dim), weights.defined() ? weights.squeeze(0) : weights};
  }
  auto batch_first = [this](const Tensor<T>& t) { return options.batch_first ? t : t.transpose(0, 1); };
  for (const Tensor<T>* t : {&query, &key, &value}) {
    if (t->defined() && t->dim() == 3 && t->shape()[2] != embed_dim) {
      throw ShapeError(cat_str("MultiheadAttention(embed_dim=", embed_dim, ", num_heads=", num_heads, "): ",
                               t == &query ? "query " : t == &key ? "key " : "value ", t->shape(),
                               " has embedding dim ", t->shape()[2], ", expected ", embed_dim));
    }
  }
  functional::MultiheadAttentionArgs args;
  args.num_heads = num_heads;
  args.key_padding_mask = key_padding_mask;
  args.attn_mask = attn_mask;
  args.is_causal = is_causal;
  args.need_weights = need_weights;
  args.average_attn_weights = average_attn_weights;
  args.dropout = options.dropout;
  args.training = this->is_training();
  auto [out, weights] = functional::multi_head_attention(batch_first(query), batch_first(key), batch_first(value),
                                                         in_proj_weight, in_proj_bias, out_proj->weight,
                                                         out_proj->bias, args);
  return {options.batch_first ? out : out.transpose(0, 1), weights};
}

template <FloatingElement T>
Tensor<T> MultiheadAttention<T>::forward(const Tensor<T>& x) {
  return attention(x, x, x).first;
}

template <FloatingElement T>
TransformerEncoderLayer<T>::TransformerEncoderLayer(int64_t d, int64_t nhead, TransformerEncoderLayerOptions o)
    : options(o) {
  if (o.activation != "relu" && o.activation != "gelu") {
    throw ValueError("TransformerEncoderLayer: activation must be \"relu\" or \"gelu\", got \"" + o.activation + "\"");
  }
  self_attn = this->register_module(
      "self_attn", MultiheadAttention<T>(d, nhead, {.dropout = o.dropout, .batch_first = o.batch_first}));
  linear1 = this->register_module("linear1", Linear<T>(d, o.dim_feedforward));
  dropout = this->register_module("dropout", Dropout<T>(o.dropout));
  linear2 = this->register_module("linear2", Linear<T>(o.dim_feedforward, d));
  norm1 = this->register_module("norm1", LayerNorm<T>(d, {.eps = o.layer_norm_eps}));
  norm2 = this->register_module("norm2", LayerNorm<T>(d, {.eps = o.layer_norm_eps}));
  dropout1 = this->register_module("dropout1", Dropout<T>(o.dropout));
  dropout2 = this->register_module("dropout2", Dropout<T>(o.dropout));
}

template <FloatingElement T>
Tensor<T> TransformerEncoderLayer<T>::feed_forward(const Tensor<T>& x) {
  Tensor<T> hdn = (*linear1)(x);
  hdn = options.activation == "gelu" ? gelu(hdn) : relu(hdn);
  return (*dropout2)((*linear2)((*dropout)(hdn)));
}

template <FloatingElement T>
Tensor<T> TransformerEncoderLayer<T>::forward_masked(const Tensor<T>& src, const Tensor<uint8_t>& mask,
                                                     const Tensor<uint8_t>& kpm, bool is_causal) {
  auto sa = [&](const Tensor<T>& x) {
    return (*dropout1)(self_attn->attention(x, x, x, kpm, false, mask, true, is_causal).first);
  };
  Tensor<T> x = src;
  if (options.norm_first) {
    x = x + sa((*norm1)(x));
    x = x + feed_forward((*norm2)(x));
  } else {
    x = (*norm1)(x + sa(x));
    x = (*norm2)(x + feed_forward(x));
  }
  return x;
}

namespace {

// A fresh layer with `layer`'s sizes, options, weights and mode: PyTorch's deep copy.
template <class Layer>
std::shared_ptr<Layer> copy_layer(const Layer& layer) {
  auto copy = std::make_shared<Layer>(layer.self_attn->embed_dim, layer.self_attn->num_heads, layer.options);
  copy->load_state_dict(layer.state_dict());
  copy->train(layer.is_training());
  return copy;
}

// Registers `layers` (num_layers copies of `layer`) on `stack` and keeps typed handles to them.
template <class T, class Layer>
std::shared_ptr<ModuleList<T>> register_copies(Module<T>& stack, const char* what, const Layer& layer,
                                               int64_t num_layers, std::vector<std::shared_ptr<Layer>>& handles) {
  if (num_layers < 0) throw ValueError(cat_str(what, ": num_layers must be >= 0, got ", num_layers));
  auto list = stack.register_module("layers", ModuleList<T>());
  for (int64_t i = 0; i < num_layers; ++i) {
    handles.push_back(copy_layer(layer));
    list->push_back(handles.back());
  }
  return list.ptr();
}

[[noreturn]] void needs_more_inputs(const char* module, const char* call) {
  throw ValueError(cat_str(module, ": forward(x) with one input is not enough; call ", call));
}

}  // namespace

template <FloatingElement T>
TransformerDecoderLayer<T>::TransformerDecoderLayer(int64_t d, int64_t nhead, TransformerDecoderLayerOptions o)
    : options(o) {
  if (o.activation != "relu" && o.activation != "gelu") {
    throw ValueError("TransformerDecoderLayer: activation must be \"relu\" or \"gelu\", got \"" + o.activation +
                     "\"");
  }
  const MultiheadAttentionOptions attn{.dropout = o.dropout, .batch_first = o.batch_first};
  self_attn = this->register_module("self_attn", MultiheadAttention<T>(d, nhead, attn));
  multihead_attn = this->register_module("multihead_attn", MultiheadAttention<T>(d, nhead, attn));
  linear1 = this->register_module("linear1", Linear<T>(d, o.dim_feedforward));
  dropout = this->register_module("dropout", Dropout<T>(o.dropout));
  linear2 = this->register_module("linear2", Linear<T>(o.dim_feedforward, d));
  norm1 = this->register_module("norm1", LayerNorm<T>(d, {.eps = o.layer_norm_eps}));
  norm2 = this->register_module("norm2", LayerNorm<T>(d, {.eps = o.layer_norm_eps}));
  norm3 = this->register_module("norm3", LayerNorm<T>(d, {.eps = o.layer_norm_eps}));
  dropout1 = this->register_module("dropout1", Dropout<T>(o.dropout));
  dropout2 = this->register_module("dropout2", Dropout<T>(o.dropout));
  dropout3 = this->register_module("dropout3", Dropout<T>(o.dropout));
}

template <FloatingElement T>
Tensor<T> TransformerDecoderLayer<T>::forward(const Tensor<T>&) {
  needs_more_inputs("TransformerDecoderLayer", "forward(tgt, memory) or layer(tgt, memory)");
}

template <FloatingElement T>
Tensor<T> TransformerDecoderLayer<T>::forward(const Tensor<T>& tgt, const Tensor<T>& memory,
                                              const TransformerDecoderMasks& m) {
  auto sa = [&](const Tensor<T>& x) {
    return (*dropout1)(
        self_attn->attention(x, x, x, m.tgt_key_padding_mask, false, m.tgt_mask, true, m.tgt_is_causal).first);
  };
  auto ca = [&](const Tensor<T>& x) {
    return (*dropout2)(multihead_attn
                           ->attention(x, memory, memory, m.memory_key_padding_mask, false, m.memory_mask, true,
                                       m.memory_is_causal)
                           .first);
  };
  auto ff = [&](const Tensor<T>& x) {
    Tensor<T> hdn = (*linear1)(x);
    hdn = options.activation == "gelu" ? gelu(hdn) : relu(hdn);
    return (*dropout3)((*linear2)((*dropout)(hdn)));
  };
  Tensor<T> x = tgt;
  if (options.norm_first) {
    x = x + sa((*norm1)(x));
    x = x + ca((*norm2)(x));
    x = x + ff((*norm3)(x));
  } else {
    x = (*norm1)(x + sa(x));
    x = (*norm2)(x + ca(x));
    x = (*norm3)(x + ff(x));
  }
  return x;
}

template <FloatingElement T>
TransformerEncoder<T>::TransformerEncoder(const TransformerEncoderLayer<T>& layer, int64_t num_layers) {
  layers = register_copies(*this, "TransformerEncoder", layer, num_layers, layer_list_);
}

template <FloatingElement T>
TransformerEncoder<T>::TransformerEncoder(const TransformerEncoderLayer<T>& layer, int64_t num_layers,
                                          LayerNorm<T> final_norm)
    : TransformerEncoder(layer, num_layers) {
  norm = this->register_module("norm", std::move(final_norm));
}

template <FloatingElement T>
Tensor<T> TransformerEncoder<T>::forward_masked(const Tensor<T>& src, const Tensor<uint8_t>& mask,
                                                const Tensor<uint8_t>& src_key_padding_mask, bool is_causal) {
  Tensor<T> x = src;
  for (const auto& layer : layer_list_) x = layer->forward_masked(x, mask, src_key_padding_mask, is_causal);
  return norm ? (*norm)(x) : x;
}

template <FloatingElement T>
TransformerDecoder<T>::TransformerDecoder(const TransformerDecoderLayer<T>& layer, int64_t num_layers) {
  layers = register_copies(*this, "TransformerDecoder", layer, num_layers, layer_list_);
}

template <FloatingElement T>
TransformerDecoder<T>::TransformerDecoder(const TransformerDecoderLayer<T>& layer, int64_t num_layers,
                                          LayerNorm<T> final_norm)
    : TransformerDecoder(layer, num_layers) {
  norm = this->register_module("norm", std::move(final_norm));
}

template <FloatingElement T>
Tensor<T> TransformerDecoder<T>::forward(const Tensor<T>&) {
  needs_more_inputs("TransformerDecoder", "forward(tgt, memory) or decoder(tgt, memory)");
}

template <FloatingElement T>
Tensor<T> TransformerDecoder<T>::forward(const Tensor<T>& tgt, const Tensor<T>& memory,
                                         const TransformerDecoderMasks& masks) {
  Tensor<T> x = tgt;
  for (const auto& layer : layer_list_) x = layer->forward(x, memory, masks);
  return norm ? (*norm)(x) : x;
}

template <FloatingElement T>
Transformer<T>::Transformer(TransformerOptions o) : options(o) {
  const TransformerEncoderLayerOptions layer{.dim_feedforward = o.dim_feedforward, .dropout = o.dropout,
                                             .activation = o.activation, .layer_norm_eps = o.layer_norm_eps,
                                             .batch_first = o.batch_first, .norm_first = o.norm_first};
  encoder = this->register_module(
      "encoder", TransformerEncoder<T>(TransformerEncoderLayer<T>(o.d_model, o.nhead, layer), o.num_encoder_layers,
                                       LayerNorm<T>(o.d_model, {.eps = o.layer_norm_eps})));
  decoder = this->register_module(
      "decoder", TransformerDecoder<T>(TransformerDecoderLayer<T>(o.d_model, o.nhead, layer), o.num_decoder_layers,
                                       LayerNorm<T>(o.d_model, {.eps = o.layer_norm_eps})));
  for (Tensor<T>& p : this->parameters())
    if (p.dim() > 1) init::xavier_uniform_(p);
}

template <FloatingElement T>
Tensor<T> Transformer<T>::forward(const Tensor<T>&) {
  needs_more_inputs("Transformer", "forward(src, tgt) or transformer(src, tgt)");
}

template <FloatingElement T>
Tensor<T> Transformer<T>::forward(const Tensor<T>& src, const Tensor<T>& tgt, const TransformerMasks& m) {
  if (!src.defined() || !tgt.defined() || src.dim() != tgt.dim() || src.dim() < 2 || src.dim() > 3) {
    throw ShapeError(cat_str("Transformer: src and tgt must both be 3-D (batched) or 2-D (unbatched), got ",
                             src.defined() ? src.shape() : Shape{}, " and ", tgt.defined() ? tgt.shape() : Shape{}));
  }
  const int64_t batch_dim = options.batch_first ? 0 : 1;
  if (src.dim() == 3 && src.shape()[batch_dim] != tgt.shape()[batch_dim]) {
    throw ShapeError(cat_str("Transformer: the batch sizes of src ", src.shape(), " and tgt ", tgt.shape(),
                             " differ (batch dim ", batch_dim, options.batch_first ? ", batch_first" : "", ")"));
  }
  if (src.shape()[src.dim() - 1] != options.d_model || tgt.shape()[tgt.dim() - 1] != options.d_model) {
    throw ShapeError(cat_str("Transformer: the feature sizes of src ", src.shape(), " and tgt ", tgt.shape(),
                             " must equal d_model ", options.d_model));
  }
  const Tensor<T> memory = encoder->forward_masked(src, m.src_mask, m.src_key_padding_mask, m.src_is_causal);
  return decoder->forward(tgt, memory,
                          {m.tgt_mask, m.memory_mask, m.tgt_key_padding_mask, m.memory_key_padding_mask,
                           m.tgt_is_causal, m.memory_is_causal});
}

template <FloatingElement T>
Tensor<uint8_t> Transformer<T>::generate_square_subsequent_mask(int64_t size) {
  if (size < 0) throw ValueError(cat_str("Transformer::generate_square_subsequent_mask: size ", size, " < 0"));
  return functional::causal_mask(size, size);
}

#define EMBER_INSTANTIATE(T)                                                                           \
  template Tensor<T> functional::scaled_dot_product_attention(const Tensor<T>&, const Tensor<T>&,       \
                                                              const Tensor<T>&, const Tensor<T>&, double, \
                                                              bool, bool);                              \
  template std::pair<Tensor<T>, Tensor<T>> functional::multi_head_attention(                            \
      const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,         \
      const Tensor<T>&, const Tensor<T>&, const functional::MultiheadAttentionArgs&);                   \
  template class MultiheadAttention<T>;                                                                 \
  template class TransformerEncoderLayer<T>;                                                            \
  template class TransformerDecoderLayer<T>;                                                            \
  template class TransformerEncoder<T>;                                                                 \
  template class TransformerDecoder<T>;                                                                 \
  template class Transformer<T>;
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::nn
