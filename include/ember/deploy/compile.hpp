#pragma once
// deploy::compile: a model's forward traced into a Plan (Note [Inference plan] in
// ember/deploy/plan.hpp). Programs that only load and run plans need ember/deploy/plan.hpp alone
// and link ember::runtime.
#include "ember/core/shape.hpp"
#include "ember/deploy/plan.hpp"
#include "ember/nn/module.hpp"
#include "ember/quant/quantize.hpp"

namespace ember::deploy {

struct CompileOptions {
  /// Fold batch norm into the convolution or linear layer before it.
  bool fold_batch_norm = true;
  /// Run elementwise ops on a step's output in place, right after it.
  bool fuse_elementwise = true;
};

/// Traces one forward of `model` (in eval mode) on an input of `input_shape` and plans it
/// (Note [Inference plan]). Throws ember::Error naming the op and layer the plan cannot run.
Plan compile(nn::Module<float>& model, const Shape& input_shape, const CompileOptions& options = {});

/// The same for a quantized model (ember::quant::quantize or quantize_dynamic): int8 Linear and
/// Conv2d steps on its packed weights, uint8 activations between them, and the plan's output
/// that of `model` bit for bit (Note [Int8 steps] in src/deploy/plan_quant.cpp). Stages that
/// compute in float are traced as a float model's ops are; one a plan cannot run (AdaptiveAvgPool2d to 2 x 2, say)
/// is refused with its index.
Plan compile(const quant::QuantizedModel& model, const Shape& input_shape, const CompileOptions& options = {});

}  // namespace ember::deploy
