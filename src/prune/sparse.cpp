// Sparse Linear layers for pruned models and the sparse file format (Note [Sparse files]).
#include "ember/prune/sparse.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <set>

#include "../core/internal.hpp"
#include "ember/core/error.hpp"
#include "ember/io/safetensors.hpp"
#include "ember/nn/linear.hpp"
#include "ember/ops/factory.hpp"
#include "ember/prune/masks.hpp"

namespace ember::prune {

using ember::detail::cat_str;

namespace {

const std::string kMaskSuffix = ":mask";
const std::string kValuesSuffix = ":values";
const std::string kShapePrefix = "shape:";

// NaN counts as nonzero (NaN != 0), as in to_csr.
template <class T>
int64_t count_nonzero(const Tensor<T>& t) {
  return t.ne(0.0).sum().item();
}

// The mask and values of Note [Sparse files] for t, or nothing when the dense tensor is smaller.
template <class T>
bool append_sparse(const std::string& name, const Tensor<T>& t, nn::StateDict& out,
                   std::map<std::string, std::string>& metadata) {
  const int64_t n = t.numel(), nnz = count_nonzero(t);
  const int64_t mask_bytes = (n + 7) / 8;
  if (n == 0 || nnz * int64_t(sizeof(T)) + mask_bytes >= n * int64_t(sizeof(T))) return false;
  const Tensor<T> c = t.detach().contiguous();
  const T* p = c.data_ptr();
  std::vector<uint8_t> mask(static_cast<size_t>(mask_bytes), 0);
  std::vector<T> values;
  values.reserve(static_cast<size_t>(nnz));
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] != T(0) || p[i] != p[i]) {
      mask[static_cast<size_t>(i / 8)] |= static_cast<uint8_t>(1u << (i % 8));
      values.push_back(p[i]);
    }
  }
  out.push_back({name + kMaskSuffix, tensor<uint8_t>(std::move(mask), {mask_bytes})});
  out.push_back({name + kValuesSuffix, tensor<T>(std::move(values), {nnz})});
  std::string shape;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d > 0) shape += ',';
    shape += std::to_string(t.shape()[d]);
  }
  metadata[kShapePrefix + name] = shape;
  return true;
}

[[noreturn]] void bad_file(const std::string& path, const std::string& tensor,
                           const std::string& rule) {
  throw FormatError(cat_str(path, ": tensor '", tensor, "': ", rule));
}

Shape parse_shape(const std::string& path, const std::string& name, const std::string& text) {
  Shape shape;
  size_t at = 0;
  while (at <= text.size() && !text.empty()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string part = text.substr(at, comma - at);
    if (part.empty() || part.size() > 18 ||
        part.find_first_not_of("0123456789") != std::string::npos) {
      bad_file(path, name, "its shape '" + text + "' is not a list of sizes like 128,3136");
    }
    if (shape.size() >= kMaxDims)
      bad_file(path, name, "its shape '" + text + "' has too many dims");
    shape.push_back(std::stoll(part));
    at = comma + 1;
  }
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d != 0 && numel > (int64_t(1) << 40) / d)
      bad_file(path, name, "its shape '" + text + "' is too large");
    numel *= d;
  }
  return shape;
}

template <class T>
TensorBase expand_sparse(const std::string& path, const std::string& name, const Shape& shape,
                         const Tensor<uint8_t>& mask, const Tensor<T>& values) {
  const int64_t n = shape.numel(), mask_bytes = (n + 7) / 8;
  if (mask.dim() != 1 || mask.numel() != mask_bytes) {
    bad_file(path, name + kMaskSuffix,
             cat_str("a mask for ", n, " elements holds ", mask_bytes, " bytes, got shape ",
                     mask.shape().str()));
  }
  const uint8_t* m = mask.data_ptr();
  int64_t set = 0;
  for (int64_t i = 0; i < mask_bytes; ++i) set += __builtin_popcount(m[i]);
  if (n % 8 != 0 && (m[mask_bytes - 1] >> (n % 8)) != 0) {
    bad_file(path, name + kMaskSuffix, cat_str("bits past element ", n, " are set"));
  }
  if (values.dim() != 1 || values.numel() != set) {
    bad_file(path, name + kValuesSuffix,
             cat_str("the mask has ", set, " bits set, so ", set, " values, got shape ",
                     values.shape().str()));
  }
  std::vector<T> dense(static_cast<size_t>(n), T(0));
  const T* v = values.data_ptr();
  for (int64_t i = 0, j = 0; i < n; ++i) {
    if ((m[i / 8] >> (i % 8)) & 1u) dense[static_cast<size_t>(i)] = v[j++];
  }
  return tensor<T>(std::move(dense), shape);
}

}  // namespace

std::string SparsifyReport::str() const {
  std::string out;
  for (const Layer& l : layers) {
    char zeros[32];
    std::snprintf(zeros, sizeof zeros, "%.1f",
                  l.weights ? 100.0 * double(l.weights - l.nonzeros) / double(l.weights) : 0.0);
    out += cat_str("  ", l.path, ": SparseLinear with ", l.nonzeros, " of ", l.weights,
                   " weights (", zeros, "% zeros)\n");
  }
  return out;
}

SparsifyReport sparsify(nn::Module<float>& model, const SparsifyOptions& options) {
  if (!(options.min_sparsity >= 0.0 && options.min_sparsity <= 1.0)) {
    throw ValueError(
        cat_str("prune::sparsify: min_sparsity must be in [0, 1], got ", options.min_sparsity));
  }
  std::map<std::string, nn::Linear<float>*> linears;
  std::vector<std::string> order;
  for (auto& [path, m] : model.named_modules()) {
    if (auto* lin = dynamic_cast<nn::Linear<float>*>(m); lin != nullptr && !path.empty()) {
      linears.emplace(path, lin);
      order.push_back(path);
    }
  }
  const std::set<std::string> wanted(options.layers.begin(), options.layers.end());
  for (const std::string& name : wanted) {
    if (!linears.count(name)) {
      throw ValueError(cat_str("prune::sparsify: layer '", name, "' is not a Linear of the model"));
    }
  }
  // Every new layer is built and every slot checked before the first is swapped.
  SparsifyReport report;
  std::vector<std::pair<std::string, nn::SparseLinear<float>>> swaps;
  for (const std::string& path : order) {
    if (!wanted.empty() && !wanted.count(path)) continue;
    nn::Linear<float>& lin = *linears.at(path);
    if (is_pruned(lin)) {
      throw ValueError(cat_str("prune::sparsify: Linear '", path,
                               "' is pruned by a mask; prune::remove(layer, \"weight\") first "
                               "makes the zeros permanent"));
    }
    const int64_t weights = lin.weight.numel(), nonzeros = count_nonzero(lin.weight);
    if (weights == 0 || double(weights - nonzeros) < options.min_sparsity * double(weights))
      continue;
    if (!model.replaceable_by_another_class(path)) {
      throw ValueError(cat_str(
          "prune::sparsify: Linear '", path,
          "' is held by a ModuleHolder<Linear> member of its parent, where a SparseLinear cannot "
          "go; put it in a container (Sequential) or name the layers to swap in options.layers"));
    }
    swaps.emplace_back(path, nn::SparseLinear<float>(lin));
    report.layers.push_back({path, nonzeros, weights});
  }
  for (auto& [path, layer] : swaps) model.replace_module(path, std::move(layer));
  return report;
}

void save_sparse(const nn::Module<float>& module, const std::string& path) {
  nn::StateDict out;
  std::map<std::string, std::string> metadata{{"format", "ember.sparse"}};
  for (const nn::NamedTensor& e : module.state_dict()) {
    bool sparse = false;
    if (e.tensor.dtype() == DType::Float32) {
      sparse = append_sparse(e.name, Tensor<float>::from_base(e.tensor), out, metadata);
    } else if (e.tensor.dtype() == DType::Float64) {
      sparse = append_sparse(e.name, Tensor<double>::from_base(e.tensor), out, metadata);
    }
    if (!sparse) out.push_back(e);
  }
  io::write_safetensors(path, out, metadata);
}

nn::LoadResult load_sparse(nn::Module<float>& module, const std::string& path, bool strict) {
  return load_sparse(module, io::read_file(path), path, strict);
}

nn::LoadResult load_sparse(nn::Module<float>& module, const std::vector<uint8_t>& bytes, const std::string& path,
                           bool strict) {
  const io::SafetensorsFile file = io::parse_safetensors(bytes, path);
  std::map<std::string, TensorBase> masks, values;
  nn::StateDict state;
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  const std::string& mask_suffix = kMaskSuffix;
  const std::string& values_suffix = kValuesSuffix;
  for (const nn::NamedTensor& e : file.tensors) {
    if (ends_with(e.name, mask_suffix)) {
      if (e.tensor.dtype() != DType::UInt8) bad_file(path, e.name, "a mask is U8");
      masks.emplace(e.name.substr(0, e.name.size() - mask_suffix.size()), e.tensor);
    } else if (ends_with(e.name, values_suffix)) {
      values.emplace(e.name.substr(0, e.name.size() - values_suffix.size()), e.tensor);
    }
  }
  for (const nn::NamedTensor& e : file.tensors) {
    if (ends_with(e.name, values_suffix)) {
      const std::string name = e.name.substr(0, e.name.size() - values_suffix.size());
      if (!masks.count(name))
        bad_file(path, e.name, "values without a mask '" + name + mask_suffix + "'");
      continue;
    }
    if (!ends_with(e.name, mask_suffix)) {
      state.push_back(e);
      continue;
    }
    const std::string name = e.name.substr(0, e.name.size() - mask_suffix.size());
    const auto v = values.find(name);
    if (v == values.end())
      bad_file(path, e.name, "a mask without values '" + name + values_suffix + "'");
    const auto shape_text = file.metadata.find(kShapePrefix + name);
    if (shape_text == file.metadata.end()) {
      bad_file(path, e.name,
               "no metadata entry '" + kShapePrefix + name + "' gives its shape");
    }
    const Shape shape = parse_shape(path, name, shape_text->second);
    const Tensor<uint8_t> mask = Tensor<uint8_t>::from_base(e.tensor);
    if (v->second.dtype() == DType::Float32) {
      state.push_back(
          {name, expand_sparse(path, name, shape, mask, Tensor<float>::from_base(v->second))});
    } else if (v->second.dtype() == DType::Float64) {
      state.push_back(
          {name, expand_sparse(path, name, shape, mask, Tensor<double>::from_base(v->second))});
    } else {
      bad_file(path, name + values_suffix, "sparse values are F32 or F64");
    }
  }
  return module.load_state_dict(state, strict);
}

}  // namespace ember::prune
