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
// observed parameters (Note [Int8 GEMM]); their int32 sums become float outputs (bias and ReLU
// applied) for the next stage. Pooling, flattening and ReLU run on those floats; Dropout and
// Identity vanish (eval mode). Any other module is refused with its path and type: the stages
// must be able to run, and load, without the float model.
#include <memory>
#include <string>
#include <vector>

#include "ember/core/tensor.hpp"
#include "ember/nn/module.hpp"

namespace ember::quant {

enum class Observer : uint8_t { MinMax, Histogram };

struct QuantizeOptions {
  /// Weights per output channel (torch's default_per_channel_weight_observer) or per tensor.
  bool per_channel = true;
  /// How activation ranges are observed (torch's x86 default: Histogram).
  Observer observer = Observer::Histogram;
};

struct DynamicOptions {
  bool per_channel = true;
};

/// One step of a QuantizedModel (Note [Quantized model]).
class Stage {
 public:
  virtual ~Stage() = default;
  virtual Tensor<float> run(const Tensor<float>& x) const = 0;
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
