#pragma once
// An inference plan: one forward of a model, traced into a static list of steps whose
// intermediate buffers share one caller-supplied arena.
//
// Note [Inference plan]
// compile() runs the model once on zeros of the given shape with a tracer installed
// (src/ops/trace.hpp): the ops a plan can run (conv2d, conv_transpose2d, linear, batch_norm in eval
// mode, layer_norm, the elementwise ops, cat, permute, matmul, max_pool2d, avg_pool2d,
// adaptive_avg_pool2d to 1 x 1, softmax and log_softmax over the last dim, views) report their
// operands, attributes and result, and become
// steps; the model's weights are copied into the plan, so the plan outlives the model and does not
// see later changes to it. The model's parameters and buffers are constants, and so is what
// elementwise ops and views make of constants alone (a pruned module's weight_orig * weight_mask,
// exp of a log-scale): those ops are not recorded, the ops that read their results take them as
// weights, and an elementwise op of a value and a constant holds the constant's values. An
// elementwise op whose operands differ in shape broadcasts as PyTorch's do. Any other op that
// touches the data flow is refused with an error naming the op and the layer path (the module
// path is prepended as the error leaves each module), so a plan never runs a partial graph. Then:
//   - a transposed convolution's bias (a broadcasting add of a parameter) is added by its step;
//   - batch norm after a convolution (transposed too) or linear layer whose output nothing else
//     reads is folded into its weights and bias (w' = w * scale, b' = b * scale + shift): within
//     a float rounding of the model's output;
//   - an elementwise op applied to a step's output that nothing else reads runs in place right
//     after that step (fused): the same kernel on the same values, so the same bits;
//   - views are aliases: they cost nothing at run time;
//   - a convolution over a batch splits its samples among as many workers as the compiling
//     process has threads (set_num_threads), each with its own column matrix and packing room,
//     and lowers as many of them into one GEMM as the op does (the same bits);
//   - every intermediate buffer and every step's scratch (a convolution's column matrix, max
//     pooling's indices, the GEMM's packing buffers) gets an offset in one arena: buffers whose
//     lifetimes (first write to last read) overlap get disjoint ranges, placed largest first at
//     the lowest offset free for their lifetime. The model's output buffer is the caller's output.
// run() checks the input and output shapes, the arena's size and its 64-byte alignment before
// anything runs, then calls the backend kernels on the arena directly, the GEMM packing into the
// step's scratch (backend::GemmWorkspace): no tensor, no allocation, and on one thread no lock,
// from the first run on. Scratch is sized for every kernel table of the compiling machine, so a
// plan runs allocation-free on any tier of it; loaded on another architecture, a GEMM that needs
// more packing room than reserved grows its thread's own buffers once instead.
//
// The steps call the same kernels with the same operands as the ops, so a plan with nothing
// folded gives the model's output bit for bit.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ember/core/shape.hpp"
#include "ember/core/tensor.hpp"

namespace ember::deploy {

struct PlanData;  // the steps, the weights and the arena layout (src/deploy/plan.cpp)

/// A compiled forward: `plan.run(input, output, arena)`.
class Plan {
 public:
  /// The alignment run() requires of the arena.
  static constexpr size_t kArenaAlignment = 64;

  Plan();
  ~Plan();
  Plan(const Plan&);
  Plan& operator=(const Plan&);
  Plan(Plan&&) noexcept;
  Plan& operator=(Plan&&) noexcept;

  const Shape& input_shape() const;
  const Shape& output_shape() const;
  /// The exact arena size run() needs: intermediate buffers and scratch, as planned.
  size_t arena_bytes() const;
  /// The steps, one per line ("conv2d 1x28x28 -> 32x28x28, batch norm folded, relu fused").
  std::string str() const;
  size_t num_steps() const;
  /// Whether steps run on the int8 kernels (a plan of a quantized model).
  bool has_int8_steps() const;

  /// Runs the plan: input and output are contiguous float tensors of input_shape() and
  /// output_shape(), arena at least arena_bytes() long and aligned to kArenaAlignment. Checks
  /// all of that before anything runs (ember::ShapeError, ember::ValueError), then makes no
  /// heap allocation.
  void run(const Tensor<float>& input, const Tensor<float>& output, std::span<std::byte> arena) const;
  /// The same on raw contiguous buffers of input_shape().numel() and output_shape().numel()
  /// floats (what ember::runtime programs call: it has no tensors).
  void run(std::span<const float> input, std::span<float> output, std::span<std::byte> arena) const;
  /// Convenience: allocates the output and an arena and runs.
  Tensor<float> operator()(const Tensor<float>& input) const;

  /// For the compiler (ember/deploy/compile.hpp) and the file reader; PlanData is internal.
  explicit Plan(std::shared_ptr<const PlanData> data);
  const PlanData* data() const noexcept { return data_.get(); }

 private:
  std::shared_ptr<const PlanData> data_;
};

/// Writes the plan as one file (Note [Plan file] in src/deploy/plan_file.cpp): the steps, the
/// weights, the arena size and a CRC-32 over the whole file; atomically, as ember's other savers.
void save(const Plan& plan, const std::string& path);
/// Memory-maps a file save() wrote and returns its plan, whose weights are read from the mapping.
/// The file is checked whole before anything is returned: a truncated, altered or foreign file
/// throws ember::FormatError naming it (ember::IOError when it cannot be read).
Plan load(const std::string& path);
/// The same from bytes in memory (a plan linked into a program); the weights are copied. `name`
/// is used in errors.
Plan parse(std::span<const uint8_t> bytes, const std::string& name = "plan");

}  // namespace ember::deploy
