#pragma once
// Internal: a QuantizedModel's stages as plain data, for deploy::compile (src/deploy/plan_quant.cpp),
// which lowers them into plan steps without the stage classes (quantize.cpp).
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "int8_layer.hpp"
#include "ember/quant/quantize.hpp"

namespace ember::quant::detail {

enum class StageKind : uint8_t { Int8Linear, Int8Conv2d, MaxPool, Flatten, BasicBlock, Other };

struct StageInfo {
  StageKind kind = StageKind::Other;
  /// The stage itself: what Other stages (and the float paths of the rest) run.
  std::shared_ptr<const Stage> stage;
  /// Int8Linear, Int8Conv2d: the layer, its arrays pointing into the stage.
  Int8Affine layer;
  std::array<int64_t, 3> chw{0, 0, 0};  // Int8Linear fed a flattened channels-last image
  int64_t in_channels = 0, kh = 0, kw = 0;  // Int8Conv2d
  Conv2dGeometry geometry{};
  /// MaxPool on uint8 images (when it pools them: not in ceil mode): kernel, stride (0: the
  /// kernel), padding, dilation.
  bool pools_quantized = false;
  std::array<int64_t, 2> kernel{0, 0}, stride{0, 0}, padding{0, 0}, dilation{1, 1};
  /// Flatten: whether it flattens all but the batch dim, and keeps uint8 images channels last.
  bool flattens_all = false, channels_last = false;
  /// BasicBlock: conv1 (uint8 out), conv2 and the downsampling shortcut when there is one (float
  /// out), Int8Conv2d each: the block computes relu(conv2(conv1(x)) + shortcut(x)), the sum in float.
  std::vector<StageInfo> parts;
};

/// The stages of `model`, in order.
std::vector<StageInfo> stage_infos(const QuantizedModel& model);

}  // namespace ember::quant::detail
