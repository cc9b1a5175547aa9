// Pruning by masks (Note [Pruning masks] in ember/prune/masks.hpp).
#include "ember/prune/masks.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "../core/internal.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"

namespace ember::prune {
namespace {

using ember::detail::cat_str;

std::string hook_key(const std::string& name) { return "ember.prune." + name; }

Tensor<float> own_parameter(nn::Module<float>& m, const std::string& name) {
  for (auto& [n, p] : m.named_parameters(false)) {
    if (n == name) return p;
  }
  return Tensor<float>();
}

Tensor<float> own_buffer(nn::Module<float>& m, const std::string& name) {
  for (auto& b : m.named_buffers(false)) {
    if (b.name == name && b.tensor.dtype() == DType::Float32) return Tensor<float>::from_base(b.tensor);
  }
  return Tensor<float>();
}

bool pruned(nn::Module<float>& m, const std::string& name) { return m.forward_pre_hook_id(hook_key(name)) >= 0; }

// The forward pre-hook of a pruned tensor: the module's handle `weight` becomes name_orig *
// name_mask before each forward.
struct MaskHook {
  Tensor<float> weight;
  std::string name;
  Tensor<float> operator()(nn::Module<float>& m, const Tensor<float>&) const {
    ember::detail::rebind(weight, own_parameter(m, name + "_orig") * own_buffer(m, name + "_mask"));
    return Tensor<float>();
  }
};

std::string describe(nn::Module<float>& m, const std::string& name) {
  return cat_str("parameter '", name, "' of ", m.type_name());
}

// The tensor's values as pruning ranks them (the masked values when already pruned: PyTorch's
// getattr(module, name)) and its current mask (ones when not pruned).
std::pair<std::vector<float>, std::vector<float>> current(nn::Module<float>& m, const std::string& name,
                                                          const char* op, Shape& shape) {
  NoGradGuard no_grad;
  if (pruned(m, name)) {
    const Tensor<float> orig = own_parameter(m, name + "_orig"), mask = own_buffer(m, name + "_mask");
    shape = orig.shape();
    return {(orig * mask).contiguous().to_vector(), mask.contiguous().to_vector()};
  }
  const Tensor<float> p = own_parameter(m, name);
  if (!p.defined()) {
    std::string names;
    for (auto& [n, t] : m.named_parameters(false)) names += (names.empty() ? "" : ", ") + n;
    throw ValueError(cat_str("prune::", op, ": ", m.type_name(), " has no parameter '", name, "' (its parameters: ",
                             names.empty() ? std::string("none") : names, ")"));
  }
  shape = p.shape();
  return {p.contiguous().to_vector(), std::vector<float>(static_cast<size_t>(p.numel()), 1.0f)};
}

// Zeroes in `mask` the `count` entries of `candidates` with the smallest scores (ties to the lower index).
void prune_smallest(std::vector<float>& mask, const std::vector<int64_t>& candidates, const std::vector<double>& score,
                    int64_t count) {
  std::vector<size_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
  for (int64_t i = 0; i < count; ++i) mask[static_cast<size_t>(candidates[order[static_cast<size_t>(i)]])] = 0.0f;
}

// An unstructured method on the entries still unpruned (PyTorch's PruningContainer): `score`
// gives each candidate's importance, the lowest pruned.
template <class Score>
std::vector<float> unstructured_mask(const std::vector<float>& values, std::vector<float> mask, Amount amount,
                                     const std::string& what, Score score_of) {
  std::vector<int64_t> candidates;
  for (size_t i = 0; i < mask.size(); ++i) {
    if (mask[i] == 1.0f) candidates.push_back(static_cast<int64_t>(i));
  }
  const int64_t count = amount.count_of(static_cast<int64_t>(candidates.size()), what);
  std::vector<double> score;
  score.reserve(candidates.size());
  for (int64_t i : candidates) score.push_back(score_of(values[static_cast<size_t>(i)]));
  prune_smallest(mask, candidates, score, count);
  return mask;
}

// Installs `mask` for `name` (Note [Pruning masks]); the mask is checked already.
void install(nn::Module<float>& m, const std::string& name, const Shape& shape, const std::vector<float>& mask) {
  {
    NoGradGuard no_grad;
    const Tensor<float> values = tensor<float>(mask, shape);
    if (pruned(m, name)) {
      own_buffer(m, name + "_mask").copy_(values);
    } else {
      Tensor<float> weight = m.remove_parameter(name);
      Tensor<float> orig = weight.detach().clone();
      m.register_parameter(name + "_orig", orig, weight.requires_grad());
      m.register_buffer(name + "_mask", values);
      m.register_forward_pre_hook(MaskHook{weight, name}, hook_key(name));
    }
  }
  // The module's tensor is the masked one from now on (in the caller's grad mode), as PyTorch
  // sets the attribute.
  const auto* hook = m.forward_pre_hook(m.forward_pre_hook_id(hook_key(name)));
  (*hook->target<MaskHook>())(m, Tensor<float>());
}

}  // namespace

int64_t Amount::count_of(int64_t n, const std::string& what) const {
  if (is_count_) {
    if (count_ < 0) throw ValueError(cat_str("prune: amount=", count_, " for ", what, " is negative"));
    if (count_ > n) {
      throw ValueError(cat_str("prune: amount=", count_, " for ", what,
                               " should be smaller than the number of parameters to prune=", n));
    }
    return count_;
  }
  if (!(fraction_ >= 0.0 && fraction_ <= 1.0)) {
    throw ValueError(cat_str("prune: amount=", fraction_, " for ", what, " should be a fraction in [0, 1] or a count"));
  }
  return static_cast<int64_t>(std::nearbyint(fraction_ * static_cast<double>(n)));
}

void l1_unstructured(nn::Module<float>& module, const std::string& name, Amount amount) {
  Shape shape;
  auto [values, mask] = current(module, name, "l1_unstructured", shape);
  const std::vector<float> next = unstructured_mask(values, std::move(mask), amount, describe(module, name),
                                                    [](float v) { return std::abs(static_cast<double>(v)); });
  install(module, name, shape, next);
}

void random_unstructured(nn::Module<float>& module, const std::string& name, Amount amount, Generator* gen) {
  Shape shape;
  auto [values, mask] = current(module, name, "random_unstructured", shape);
  // Each entry's importance is a uniform draw of its own.
  const std::vector<float> noise = rand<float>({static_cast<int64_t>(values.size())}, gen).to_vector();
  const std::vector<float> next = unstructured_mask(noise, std::move(mask), amount, describe(module, name),
                                                    [](float u) { return static_cast<double>(u); });
  install(module, name, shape, next);
}

void ln_structured(nn::Module<float>& module, const std::string& name, Amount amount, double n, int64_t dim) {
  Shape shape;
  auto [values, mask] = current(module, name, "ln_structured", shape);
  const std::string what = describe(module, name);
  const auto rank = static_cast<int64_t>(shape.size());
  if (rank < 1) throw ValueError(cat_str("prune::ln_structured: ", what, " is a scalar: it has no channels"));
  if (dim < -rank || dim >= rank) {
    throw ValueError(cat_str("prune::ln_structured: dim ", dim, " is out of range for ", what, " of shape ", shape));
  }
  if (dim < 0) dim += rank;
  if (!(n >= 1.0)) throw ValueError(cat_str("prune::ln_structured: n=", n, " should be at least 1 (or infinity)"));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= shape[static_cast<size_t>(d)];
  for (int64_t d = dim + 1; d < rank; ++d) inner *= shape[static_cast<size_t>(d)];
  const int64_t channels = shape[static_cast<size_t>(dim)];
  auto at = [&](int64_t o, int64_t c, int64_t i) { return static_cast<size_t>((o * channels + c) * inner + i); };
  // The channels with an unpruned entry, and their norms.
  std::vector<int64_t> live;
  std::vector<double> norm;
  for (int64_t c = 0; c < channels; ++c) {
    double any = 0.0, s = 0.0;
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        any += mask[at(o, c, i)];
        const double v = std::abs(static_cast<double>(values[at(o, c, i)]));
        s = std::isinf(n) ? std::max(s, v) : s + std::pow(v, n);
      }
    }
    if (any == 0.0) continue;
    live.push_back(c);
    norm.push_back(std::isinf(n) ? s : std::pow(s, 1.0 / n));
  }
  const int64_t count = amount.count_of(static_cast<int64_t>(live.size()), what);
  std::vector<size_t> order(live.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return norm[a] < norm[b]; });
  std::vector<float> next = mask;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t c = live[order[static_cast<size_t>(k)]];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) next[at(o, c, i)] = 0.0f;
  }
  install(module, name, shape, next);
}

void custom_from_mask(nn::Module<float>& module, const std::string& name, const Tensor<float>& mask) {
  Shape shape;
  auto [values, current_mask] = current(module, name, "custom_from_mask", shape);
  if (!mask.defined() || mask.shape() != shape) {
    throw ShapeError(cat_str("prune::custom_from_mask: a mask of shape ", mask.defined() ? mask.shape().str() : "undefined",
                             " for ", describe(module, name), " of shape ", shape));
  }
  const std::vector<float> given = mask.contiguous().to_vector();
  for (size_t i = 0; i < given.size(); ++i) {
    if (given[i] != 0.0f && given[i] != 1.0f) {
      throw ValueError(cat_str("prune::custom_from_mask: the mask for ", describe(module, name), " holds ", given[i],
                               " (element ", i, "); a mask holds zeros and ones"));
    }
    current_mask[i] *= given[i];
  }
  install(module, name, shape, current_mask);
}

void global_unstructured(const std::vector<std::pair<nn::Module<float>*, std::string>>& parameters, Amount amount) {
  if (parameters.empty()) throw ValueError("prune::global_unstructured: no parameters");
  std::vector<float> values, mask;
  std::vector<Shape> shapes;
  for (const auto& [m, name] : parameters) {
    if (m == nullptr) throw ValueError("prune::global_unstructured: a null module");
    Shape shape;
    auto [v, k] = current(*m, name, "global_unstructured", shape);
    values.insert(values.end(), v.begin(), v.end());
    mask.insert(mask.end(), k.begin(), k.end());
    shapes.push_back(shape);
  }
  const std::vector<float> next = unstructured_mask(values, std::move(mask), amount, "the parameters together",
                                                    [](float v) { return std::abs(static_cast<double>(v)); });
  size_t at = 0;
  for (size_t p = 0; p < parameters.size(); ++p) {
    const auto n = static_cast<size_t>(shapes[p].numel());
    install(*parameters[p].first, parameters[p].second, shapes[p],
            std::vector<float>(next.begin() + static_cast<std::ptrdiff_t>(at),
                               next.begin() + static_cast<std::ptrdiff_t>(at + n)));
    at += n;
  }
}

void remove(nn::Module<float>& module, const std::string& name) {
  const int64_t id = module.forward_pre_hook_id(hook_key(name));
  if (id < 0) throw ValueError(cat_str("prune::remove: ", describe(module, name), " is not pruned"));
  const MaskHook* hook = module.forward_pre_hook(id)->target<MaskHook>();
  Tensor<float> weight = hook->weight;
  const Tensor<float> orig = own_parameter(module, name + "_orig");
  {
    NoGradGuard no_grad;
    ember::detail::rebind(weight, (orig * own_buffer(module, name + "_mask")).contiguous().clone());
  }
  const bool requires_grad = orig.requires_grad();
  module.remove_hook(id);
  module.remove_parameter(name + "_orig");
  module.remove_buffer(name + "_mask");
  module.register_parameter(name, weight, requires_grad);
}

bool is_pruned(nn::Module<float>& module) {
  for (auto& [path, m] : module.named_modules()) {
    for (auto& [name, p] : m->named_parameters(false)) {
      if (name.size() > 5 && name.ends_with("_orig") && pruned(*m, name.substr(0, name.size() - 5))) return true;
    }
  }
  return false;
}

}  // namespace ember::prune
