#pragma once
// What a heavily pruned network is worth once its zeros are known: layers that skip them
// (Linear layers swapped for nn::SparseLinear) and files that do not store them.
//
// Note [Sparse files]
// save_sparse writes a safetensors file of the module's state dict in which each floating tensor
// that is smaller so is stored as its nonzeros: "<name>:mask", U8, one bit per element in
// row-major order (element i is bit i % 8 of byte i / 8; the bits past the last element zero), and
// "<name>:values", the nonzero elements in that order, with the shape in the metadata entry
// "shape:<name>" ("128,3136"). Other tensors are stored as ember::save stores them; the metadata
// "format" is "ember.sparse". At 90% zeros a float tensor takes 0.1 * 4 + 1/8 bytes per element
// against 4: 7.6 times smaller. load_sparse checks every rule (mask length, bits past the end,
// one value per set bit, a shape for every mask) before anything is loaded.
#include <cstdint>
#include <string>
#include <vector>

#include "ember/nn/module.hpp"

namespace ember::prune {

/// The fraction of zeros from which nn::SparseLinear outruns the dense Linear at the example
/// models' shapes, at batch 1 and 64, on the AVX-512 and AVX2 tables (docs/benchmarks.md, "Sparse
/// Linear": about 83% at batch 1, 60-70% at batch 64).
inline constexpr double kSparseLinearBreakEven = 0.85;

struct SparsifyOptions {
  /// Linear layers with at least this fraction of zero weights become nn::SparseLinear.
  double min_sparsity = kSparseLinearBreakEven;
  /// The layers to consider, by path ("9", "head.fc"); empty: every Linear of the model.
  std::vector<std::string> layers;
};

struct SparsifyReport {
  struct Layer {
    std::string path;
    int64_t nonzeros = 0, weights = 0;
  };
  std::vector<Layer> layers;  // the layers swapped, in model order
  /// One line per swapped layer.
  std::string str() const;
};

/// Replaces the Linear layers of `model` with at least options.min_sparsity zeros in their
/// weights by nn::SparseLinear layers computing the same (their nonzeros, the same bias). Throws
/// ember::ValueError for a min_sparsity outside [0, 1], a named layer that is not a Linear of the
/// model, a Linear still pruned by a mask (prune::remove it first) or one held where a layer of
/// another class cannot go (a ModuleHolder<Linear> member: containers' children can be swapped);
/// the model is then unchanged. Optimizers made before hold the old parameters: make them again.
SparsifyReport sparsify(nn::Module<float>& model, const SparsifyOptions& options = {});

/// Writes the state dict of `module` to `path` in the format of Note [Sparse files], atomically.
void save_sparse(const nn::Module<float>& module, const std::string& path);
/// Loads a file written by save_sparse (or a plain safetensors state dict) into `module`, as
/// ember::load does; throws ember::FormatError naming the file, the tensor and the rule broken.
nn::LoadResult load_sparse(nn::Module<float>& module, const std::string& path, bool strict = true);
/// The same from the bytes of such a file; `source` names it in errors.
nn::LoadResult load_sparse(nn::Module<float>& module, const std::vector<uint8_t>& bytes, const std::string& source,
                           bool strict = true);

}  // namespace ember::prune
