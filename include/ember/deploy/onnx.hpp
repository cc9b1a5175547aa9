#pragma once
// ONNX export: a model's forward as an ONNX file that ONNX runtimes, converters and viewers read
// (Note [ONNX export] in src/deploy/onnx_export.cpp), as torch.onnx.export writes one from Python.
//
//   model.eval();
//   ember::deploy::export_onnx(model, {1, 1, 28, 28}, "model.onnx");
//   ember::deploy::export_onnx(model, {64, 1, 28, 28}, "model.onnx", {.dynamic_batch = true});
//
// The forward is traced as deploy::compile traces it, so a model exports when it compiles to a
// plan (conv2d, linear, batch norm, elementwise ops, max pooling, global average pooling, views).
#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/shape.hpp"
#include "ember/deploy/plan.hpp"
#include "ember/nn/module.hpp"

namespace ember::deploy {

struct OnnxOptions {
  /// The first dim of the input and the output becomes the symbolic "batch" (torch.onnx.export's
  /// dynamic_axes={"input": {0: "batch"}, ...}); views must then keep it as their first dim.
  bool dynamic_batch = false;
  /// Fold batch norm into the convolution or linear layer before it (torch.onnx.export does in
  /// eval mode); otherwise each one is a BatchNormalization node.
  bool fold_batch_norm = true;
  std::string input_name = "input";
  std::string output_name = "output";
  /// Also the ModelProto's graph name.
  std::string graph_name = "ember";
};

/// The opset the files use (ai.onnx), and their IR version.
inline constexpr int64_t kOnnxOpset = 13;
inline constexpr int64_t kOnnxIrVersion = 7;

/// Traces one forward of `model` (in eval mode) on an input of `input_shape` and writes it to
/// `path` as an ONNX model (atomically: a failed export leaves no file and any old one intact).
/// Throws ember::Error naming the op and layer that has no ONNX form here.
void export_onnx(nn::Module<float>& model, const Shape& input_shape, const std::string& path,
                 const OnnxOptions& options = {});
/// The same for a compiled float plan (deploy::compile or deploy::load): its steps, fused
/// elementwise ops as nodes of their own. A plan of a quantized model is refused.
void export_onnx(const Plan& plan, const std::string& path, const OnnxOptions& options = {});
/// The serialized ModelProto of a plan, for programs that keep it in memory.
std::vector<uint8_t> to_onnx(const Plan& plan, const OnnxOptions& options = {});

}  // namespace ember::deploy
