#pragma once
// deploy::compile: a model's forward traced into a Plan (Note [Inference plan] in
// ember/deploy/plan.hpp). Programs that only load and run plans need ember/deploy/plan.hpp alone
// and link ember::runtime.
#include "ember/core/shape.hpp"
#include "ember/deploy/plan.hpp"
#include "ember/nn/module.hpp"

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

}  // namespace ember::deploy
