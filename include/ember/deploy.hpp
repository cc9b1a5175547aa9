#pragma once
// ember::deploy: compiled inference plans with a planned memory arena (Note [Inference plan]).
//
//   auto plan = ember::deploy::compile(model, {1, 1, 28, 28});
//   std::vector<std::byte> arena(plan.arena_bytes() + 64);  // or any 64-byte aligned buffer
//   plan.run(image, logits, aligned_span);
#include "ember/deploy/compile.hpp"
#include "ember/deploy/onnx.hpp"
#include "ember/deploy/plan.hpp"
