#pragma once
// Post-training quantization of a float model: static (activation ranges from calibration
// batches) and dynamic (activations quantized per batch), save and load.
//
// Note [Quantized model]
// quantize() walks the model's layers in order through nested Sequential containers, folds each
// BatchNorm2d into the Conv2d before it and each ReLU into the Linear or Conv2d before it, runs the
// calibration batches through the folded float layers to observe every quantized layer's input,
// and builds a QuantizedModel: a list of stages. Linear and Conv2d stages hold int8 weights
// (per output channel or per tensor, symmetric) and quantize their input to 7-bit uint8 with the
// observed parameters (Note [Int8 GEMM]). Where the next Linear or Conv2d follows directly or
// through MaxPool2d and Flatten, a stage requantizes its int32 sums (bias and ReLU applied) into
// that layer's input parameters and hands it uint8, channels last for images, so images never go
// back to float or channels first between quantized layers: max pooling works on the uint8 values
// (exact: max commutes with a monotonic quantization), Flatten keeps the channels-last order and
// the Linear after it has its weight columns permuted to match. Elsewhere a quantized stage
// outputs floats (bias and ReLU applied): the last layer, or before AvgPool2d, a lone ReLU and the
// like, which run on floats. A ResNet BasicBlock is one stage: its convolutions (batch norms folded,
// conv1's ReLU fused, the downsampling shortcut's too) in int8, conv1 handing conv2 uint8 in
// conv2's input parameters, conv2 and the shortcut giving floats that are added and rectified in
// float; calibration observes the block's input (conv1's and the shortcut's) and conv2's. Dropout
// and Identity vanish (eval mode). Any other module is refused with its path and type: the stages
// must be able to run, and load, without the float model.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ember/core/tensor.hpp"
#include "ember/nn/module.hpp"
#include "ember/quant/observer.hpp"

namespace ember::quant {

enum class Observer : uint8_t { MinMax, Histogram };

struct QuantizeOptions {
  /// Weights per output channel (torch's default_per_channel_weight_observer) or per tensor.
  bool per_channel = true;
  /// How activation ranges are observed (torch's x86 default: Histogram).
  Observer observer = Observer::Histogram;
  /// Linear or Conv2d layers to leave in float, by their path in the model ("0", "features.3";
  /// torch's qconfig = None on a submodule), with the batch norm after them folded in and their
  /// ReLU fused as for the quantized ones. For a layer whose int8 form gains nothing, such as a
  /// first convolution with one input channel (a GEMM with K = 9), or one the accuracy needs.
  std::vector<std::string> keep_float;
};

struct DynamicOptions {
  bool per_channel = true;
};

/// What flows between the stages of a QuantizedModel: float values (channels first, as the float
/// model's layers see them) or uint8 values in the parameters `params` (channels last when
/// 4-D: [N, H, W, C]), which a quantized consumer takes as they are.
struct Activation {
  Tensor<float> value;
  Tensor<uint8_t> quantized;
  QParams params;
};

/// One step of a QuantizedModel (Note [Quantized model]).
class Stage {
 public:
  virtual ~Stage() = default;
  virtual Activation run(const Activation& x) const = 0;
  /// The stage on a float input, its output as float.
  Tensor<float> forward(const Tensor<float>& x) const;
  /// A static Linear or Conv2d stage's input parameters (what it quantizes its input with, and
  /// the uint8 activations it takes as they are); nullopt for other stages.
  virtual std::optional<QParams> input_params() const { return std::nullopt; }
  /// "QuantizedConv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), relu, scale=0.0123, zero_point=0)".
  virtual std::string str() const = 0;
};

/// A quantized model: float in, float out, callable like a module.
class QuantizedModel {
 public:
  QuantizedModel() = default;
  explicit QuantizedModel(std::vector<std::shared_ptr<const Stage>> stages) : stages_(std::move(stages)) {}
  /// Runs the stages; errors name the stage.
  Tensor<float> operator()(const Tensor<float>& x) const;
  Tensor<float> forward(const Tensor<float>& x) const { return (*this)(x); }
  /// One line per stage, as nn::Module::str() prints a model.
  std::string str() const;
  size_t num_stages() const noexcept { return stages_.size(); }
  const Stage& stage(size_t i) const { return *stages_.at(i); }
  const std::vector<std::shared_ptr<const Stage>>& stages() const noexcept { return stages_; }

 private:
  std::vector<std::shared_ptr<const Stage>> stages_;
};

/// Post-training static quantization (torch.ao.quantization's prepare + calibrate + convert).
/// `model` must be in eval mode; `calibration` holds at least one non-empty batch.
QuantizedModel quantize(nn::Module<float>& model, const std::vector<Tensor<float>>& calibration,
                        const QuantizeOptions& options = {});

/// Dynamic quantization (torch.ao.quantization.quantize_dynamic): Linear layers get int8 weights
/// and quantize each batch's activations with that batch's range; the other layers run in float.
QuantizedModel quantize_dynamic(nn::Module<float>& model, const DynamicOptions& options = {});

/// Saves a quantized model as safetensors (int8 weights as I8, scales as F32, zero points as I64,
/// each stage's kind and geometry in the metadata; names in docs/api.md), atomically.
void save(const QuantizedModel& model, const std::string& path);
/// Loads what save wrote; a file of another kind, a corrupted one or one whose tensors do not fit
/// its stages throws ember::FormatError naming the file.
QuantizedModel load(const std::string& path);

}  // namespace ember::quant
