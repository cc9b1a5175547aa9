// Structured pruning that shrinks a network (Note [Shrinking] in ember/prune/shrink.hpp).
#include "ember/prune/shrink.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <set>

#include "../core/internal.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"
#include "ember/nn/container.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/normalization.hpp"
#include "ember/ops/factory.hpp"

namespace ember::prune {
namespace {

using ember::detail::cat_str;
using Layers = std::vector<std::pair<std::string, nn::Module<float>*>>;

void flatten_modules(nn::Module<float>& m, const std::string& path, Layers& out) {
  if (dynamic_cast<nn::Sequential<float>*>(&m) != nullptr) {
    for (const auto& [name, child] : m.named_children()) {
      flatten_modules(*child, path.empty() ? name : path + "." + name, out);
    }
    return;
  }
  out.emplace_back(path, &m);
}

// Modules that compute each channel from that channel alone (and, for pooling, keep the channel
// count): outputs pass through them to the consumer unchanged in number.
bool keeps_channels(const nn::Module<float>& m) {
  static const std::set<std::string> names = {"ReLU", "LeakyReLU", "GELU", "SiLU",      "Sigmoid",
                                              "Tanh", "Mish",      "Dropout", "Dropout2d", "Identity",
                                              "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"};
  return names.count(m.type_name()) != 0;
}

int64_t outputs_of(const nn::Module<float>& m) {
  if (const auto* c = dynamic_cast<const nn::Conv2d<float>*>(&m)) return c->out_channels;
  return dynamic_cast<const nn::Linear<float>&>(m).out_features;
}

bool is_affine(const nn::Module<float>& m) {
  const auto* c = dynamic_cast<const nn::Conv2d<float>*>(&m);
  return (c != nullptr && c->options.groups == 1) || dynamic_cast<const nn::Linear<float>*>(&m) != nullptr;
}

// Where a layer's outputs go (Note [Shrinking]): the consumer's index, the batch norm between
// (or -1), and whether a Flatten turns the channels into blocks of the consumer's inputs. A
// consumer of -1 gives the reason in `why`.
struct Link {
  int64_t consumer = -1, batch_norm = -1;
  bool flattened = false;
  std::string why;
};

Link follow(const Layers& layers, size_t i) {
  Link link;
  const bool conv = dynamic_cast<const nn::Conv2d<float>*>(layers[i].second) != nullptr;
  for (size_t j = i + 1; j < layers.size(); ++j) {
    nn::Module<float>& m = *layers[j].second;
    if (is_affine(m)) {
      const bool to_conv = dynamic_cast<const nn::Conv2d<float>*>(&m) != nullptr;
      if (to_conv && (!conv || link.flattened)) {
        link.why = cat_str("its outputs reach the Conv2d '", layers[j].first, "' as other than channels");
        return link;
      }
      if (!to_conv && conv && !link.flattened) {
        link.why = cat_str("its channels reach the Linear '", layers[j].first, "' without a Flatten");
        return link;
      }
      link.consumer = static_cast<int64_t>(j);
      return link;
    }
    if (const auto* bn = dynamic_cast<const nn::BatchNorm<float>*>(&m);
        bn != nullptr && j == i + 1 && bn->num_features == outputs_of(*layers[i].second)) {
      link.batch_norm = static_cast<int64_t>(j);
      continue;
    }
    if (dynamic_cast<const nn::Flatten<float>*>(&m) != nullptr && conv && !link.flattened) {
      link.flattened = true;
      continue;
    }
    if (keeps_channels(m) && (!link.flattened || m.type_name().find("Pool") == std::string::npos)) continue;
    link.why = cat_str("its outputs go through '", layers[j].first, "' (", m.type_name(),
                       "), which does not keep each channel to itself");
    return link;
  }
  link.why = "it is the last layer: its outputs are the model's";
  return link;
}

// The outputs a layer keeps: the largest L_n norms, ties to the lower index, in index order.
std::vector<int64_t> kept_outputs(const Tensor<float>& weight, double amount, double norm, const std::string& path) {
  const int64_t out = weight.shape()[0], per = weight.numel() / std::max<int64_t>(out, 1);
  const std::vector<float> w = weight.contiguous().to_vector();
  const auto removed = static_cast<int64_t>(std::nearbyint(amount * static_cast<double>(out)));
  if (removed >= out) {
    throw ValueError(cat_str("prune::shrink: amount ", amount, " would remove all ", out, " outputs of '", path, "'"));
  }
  std::vector<double> score(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    double s = 0.0;
    for (int64_t t = 0; t < per; ++t) s += std::pow(std::abs(static_cast<double>(w[o * per + t])), norm);
    score[static_cast<size_t>(o)] = s;
  }
  std::vector<int64_t> order(static_cast<size_t>(out));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)]; });
  order.resize(static_cast<size_t>(out - removed));
  std::sort(order.begin(), order.end());
  return order;
}

// rows (dim 0) and column blocks (dim 1, in blocks of `block` columns) of a weight.
Tensor<float> select(const Tensor<float>& w, const std::vector<int64_t>& rows, const std::vector<int64_t>& cols,
                     int64_t block) {
  const Tensor<float> wc = w.contiguous();
  const int64_t in = w.shape()[1], inner = w.numel() / std::max<int64_t>(w.shape()[0] * in, 1);
  std::vector<int64_t> dims(w.shape().begin(), w.shape().end());
  dims[0] = static_cast<int64_t>(rows.size());
  dims[1] = static_cast<int64_t>(cols.size()) * block;
  Tensor<float> out = empty<float>(Shape(dims));
  const float* src = wc.data();
  float* dst = out.data();
  for (int64_t r : rows) {
    for (int64_t c : cols) {
      for (int64_t b = 0; b < block; ++b) {
        const float* from = src + (r * in + c * block + b) * inner;
        std::copy(from, from + inner, dst);
        dst += inner;
      }
    }
  }
  return out;
}

Tensor<float> pick(const Tensor<float>& v, const std::vector<int64_t>& keep) {
  const std::vector<float> all = v.contiguous().to_vector();
  std::vector<float> out;
  for (int64_t k : keep) out.push_back(all[static_cast<size_t>(k)]);
  return tensor<float>(out, {static_cast<int64_t>(keep.size())});
}

void copy_into(Tensor<float> dst, const Tensor<float>& src, bool requires_grad) {
  dst.copy_(src);
  dst.requires_grad_(requires_grad);
}

std::vector<int64_t> all_of(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

int64_t count_parameters(const nn::Module<float>& m) {
  int64_t n = 0;
  for (const Tensor<float>& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

std::string ShrinkReport::str() const {
  std::string s;
  for (const Layer& l : layers) s += cat_str(l.path, ": ", l.outputs_before, " -> ", l.outputs_after, " outputs\n");
  return s + cat_str("parameters: ", parameters_before, " -> ", parameters_after, "\n");
}

ShrinkReport shrink(nn::Module<float>& model, const ShrinkOptions& options) {
  if (!(options.amount >= 0.0 && options.amount < 1.0)) {
    throw ValueError(cat_str("prune::shrink: amount ", options.amount, " is outside [0, 1)"));
  }
  if (!(options.norm >= 1.0) || !std::isfinite(options.norm)) {
    throw ValueError(cat_str("prune::shrink: norm ", options.norm, " is not a finite number >= 1"));
  }
  Layers layers;
  flatten_modules(model, "", layers);
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < layers.size(); ++i) index[layers[i].first] = i;
  // Which layers shrink, and where their outputs go.
  std::vector<Link> links(layers.size());
  std::vector<bool> shrinks(layers.size(), false);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!is_affine(*layers[i].second)) continue;
    links[i] = follow(layers, i);
    shrinks[i] = options.layers.empty() && links[i].consumer >= 0;
  }
  for (const std::string& name : options.layers) {
    auto it = index.find(name);
    if (it == index.end() || !is_affine(*layers[it->second].second)) {
      std::string affine;
      for (size_t i = 0; i < layers.size(); ++i) {
        if (is_affine(*layers[i].second)) affine += (affine.empty() ? "" : ", ") + layers[i].first;
      }
      throw ValueError(cat_str("prune::shrink: '", name, "' is not a Conv2d (groups 1) or Linear of the model (they are: ",
                               affine.empty() ? std::string("none") : affine, ")"));
    }
    if (links[it->second].consumer < 0) {
      throw ValueError(cat_str("prune::shrink: '", name, "' cannot be shrunk: ", links[it->second].why));
    }
    shrinks[it->second] = true;
  }
  ShrinkReport report;
  report.parameters_before = count_parameters(model);
  // The outputs each layer keeps, and the inputs it keeps (its producer's outputs).
  NoGradGuard no_grad;
  std::vector<std::vector<int64_t>> keep_out(layers.size()), keep_in(layers.size());
  std::vector<int64_t> block(layers.size(), 1);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!is_affine(*layers[i].second)) continue;
    nn::Module<float>& m = *layers[i].second;
    const Tensor<float>& weight = dynamic_cast<nn::Conv2d<float>*>(&m) ? dynamic_cast<nn::Conv2d<float>&>(m).weight
                                                                       : dynamic_cast<nn::Linear<float>&>(m).weight;
    keep_out[i] = shrinks[i] ? kept_outputs(weight, options.amount, options.norm, layers[i].first) : all_of(weight.shape()[0]);
    if (keep_in[i].empty()) keep_in[i] = all_of(weight.shape()[1]);
    if (shrinks[i]) {
      const auto c = static_cast<size_t>(links[i].consumer);
      keep_in[c] = keep_out[i];
      if (links[i].flattened) {
        const int64_t features = dynamic_cast<nn::Linear<float>&>(*layers[c].second).in_features;
        const int64_t channels = weight.shape()[0];
        if (features % channels != 0) {
          throw ValueError(cat_str("prune::shrink: the Linear '", layers[c].first, "' takes ", features,
                                   " features, not a whole number of blocks for the ", channels, " channels of '",
                                   layers[i].first, "'"));
        }
        block[c] = features / channels;
      }
      report.layers.push_back({layers[i].first, weight.shape()[0], static_cast<int64_t>(keep_out[i].size())});
    }
  }
  // The new layers, all built before any replaces its original.
  struct Replacement {
    std::string path;
    std::function<void()> apply;
  };
  std::vector<Replacement> replacements;
  for (size_t i = 0; i < layers.size(); ++i) {
    nn::Module<float>& m = *layers[i].second;
    const bool narrower_in = is_affine(m) && keep_in[i].size() * static_cast<size_t>(block[i]) !=
                                                 static_cast<size_t>(dynamic_cast<nn::Conv2d<float>*>(&m)
                                                                         ? dynamic_cast<nn::Conv2d<float>&>(m).in_channels
                                                                         : dynamic_cast<nn::Linear<float>&>(m).in_features);
    if (!shrinks[i] && !narrower_in) continue;
    const std::string& path = layers[i].first;
    if (auto* conv = dynamic_cast<nn::Conv2d<float>*>(&m)) {
      auto fresh = std::make_shared<nn::Conv2d<float>>(static_cast<int64_t>(keep_in[i].size()),
                                                       static_cast<int64_t>(keep_out[i].size()), conv->kernel_size,
                                                       conv->options);
      copy_into(fresh->weight, select(conv->weight, keep_out[i], keep_in[i], 1), conv->weight.requires_grad());
      if (conv->bias.defined()) copy_into(fresh->bias, pick(conv->bias, keep_out[i]), conv->bias.requires_grad());
      fresh->train(conv->is_training());
      replacements.push_back({path, [&model, path, fresh] { model.replace_module(path, std::move(*fresh)); }});
    } else {
      auto& lin = dynamic_cast<nn::Linear<float>&>(m);
      auto fresh = std::make_shared<nn::Linear<float>>(static_cast<int64_t>(keep_in[i].size()) * block[i],
                                                       static_cast<int64_t>(keep_out[i].size()),
                                                       nn::LinearOptions{.bias = lin.bias.defined()});
      copy_into(fresh->weight, select(lin.weight, keep_out[i], keep_in[i], block[i]), lin.weight.requires_grad());
      if (lin.bias.defined()) copy_into(fresh->bias, pick(lin.bias, keep_out[i]), lin.bias.requires_grad());
      fresh->train(lin.is_training());
      replacements.push_back({path, [&model, path, fresh] { model.replace_module(path, std::move(*fresh)); }});
    }
    if (shrinks[i] && links[i].batch_norm >= 0) {
      const auto b = static_cast<size_t>(links[i].batch_norm);
      auto& bn = dynamic_cast<nn::BatchNorm<float>&>(*layers[b].second);
      const auto n = static_cast<int64_t>(keep_out[i].size());
      auto fill = [&](nn::BatchNorm<float>& fresh) {
        if (bn.weight.defined()) copy_into(fresh.weight, pick(bn.weight, keep_out[i]), bn.weight.requires_grad());
        if (bn.bias.defined()) copy_into(fresh.bias, pick(bn.bias, keep_out[i]), bn.bias.requires_grad());
        if (bn.running_mean.defined()) fresh.running_mean.copy_(pick(bn.running_mean, keep_out[i]));
        if (bn.running_var.defined()) fresh.running_var.copy_(pick(bn.running_var, keep_out[i]));
        if (bn.num_batches_tracked.defined()) fresh.num_batches_tracked.copy_(bn.num_batches_tracked);
        fresh.train(bn.is_training());
        if (bn.keeps_eval()) fresh.keep_eval();
      };
      const std::string bn_path = layers[b].first;
      if (dynamic_cast<nn::BatchNorm2d<float>*>(&bn) != nullptr) {
        auto fresh = std::make_shared<nn::BatchNorm2d<float>>(n, bn.options);
        fill(*fresh);
        replacements.push_back({bn_path, [&model, bn_path, fresh] { model.replace_module(bn_path, std::move(*fresh)); }});
      } else if (dynamic_cast<nn::BatchNorm1d<float>*>(&bn) != nullptr) {
        auto fresh = std::make_shared<nn::BatchNorm1d<float>>(n, bn.options);
        fill(*fresh);
        replacements.push_back({bn_path, [&model, bn_path, fresh] { model.replace_module(bn_path, std::move(*fresh)); }});
      } else {
        throw ValueError(cat_str("prune::shrink: '", bn_path, "' (", bn.type_name(), ") after '", path,
                                 "' is not a BatchNorm1d or BatchNorm2d"));
      }
    }
  }
  for (const Replacement& r : replacements) r.apply();
  report.parameters_after = count_parameters(model);
  return report;
}

}  // namespace ember::prune
