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
#include <tuple>
#include <utility>
#include <vector>

#include "ember/core/tensor.hpp"
#include "ember/nn/module.hpp"
#include "ember/nn/rnn.hpp"
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
  /// ReLU fused as for the quantized ones: for a layer the accuracy needs in float, or one whose
  /// int8 form gains nothing on the target.
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

/// Note [Dynamic RNN]
/// An LSTM or GRU quantized as torch.ao.nn.quantized.dynamic.LSTM / GRU (the fbgemm x86 path,
/// reduce_range = True): each layer and direction's input-to-hidden and hidden-to-hidden weights
/// are int8 (symmetric, per output row or per tensor); every projection quantizes its float input
/// to 7-bit uint8 with that input's own range at the call: the input projection once over the whole
/// sequence of the layer, the recurrent one at every time step over the state h [N, H]; int32
/// sums, then float with the bias (b_hh inside the recurrent projection, so the GRU's reset gate
/// multiplies it, as PyTorch's). The gates, the cell and the states are float, with the same
/// recurrence as nn::LSTM / nn::GRU (one function runs both). Inference only: no gradients.
class DynamicRNN final : public Stage {
 public:
  /// The quantized projections in PyTorch's order: for each layer and direction "ih_l0", "hh_l0",
  /// "ih_l0_reverse", ... each a dynamic quantized Linear (Stage) of [gates * hidden, in].
  using Projections = std::vector<std::pair<std::string, std::shared_ptr<const Stage>>>;
  /// Checks that the projections fit the sizes (what quant::load relies on).
  DynamicRNN(bool lstm, int64_t input_size, int64_t hidden_size, nn::RNNOptions options,
             Projections projections);

  /// (output, h_n, c_n) as nn::LSTM::forward_with_state / nn::GRU's (c_n undefined for a GRU);
  /// states default to zeros [layers * directions, N, hidden].
  std::tuple<Tensor<float>, Tensor<float>, Tensor<float>> forward_with_state(
      const Tensor<float>& x, const Tensor<float>& h0 = Tensor<float>(),
      const Tensor<float>& c0 = Tensor<float>()) const;
  /// The output sequence (a stage of a QuantizedModel).
  Activation run(const Activation& x) const override;
  /// "DynamicQuantizedLSTM(10, 20, num_layers=2)", as PyTorch prints it.
  std::string str() const override;

  bool is_lstm() const noexcept { return lstm_; }
  int64_t input_size() const noexcept { return input_size_; }
  int64_t hidden_size() const noexcept { return hidden_size_; }
  const nn::RNNOptions& options() const noexcept { return options_; }
  const Projections& projections() const noexcept { return projections_; }

 private:
  bool lstm_;
  int64_t input_size_, hidden_size_;
  nn::RNNOptions options_;
  Projections projections_;
};

/// Post-training static quantization (torch.ao.quantization's prepare + calibrate + convert).
/// `model` must be in eval mode; `calibration` holds at least one non-empty batch.
QuantizedModel quantize(nn::Module<float>& model, const std::vector<Tensor<float>>& calibration,
                        const QuantizeOptions& options = {});

/// Dynamic quantization (torch.ao.quantization.quantize_dynamic): Linear, LSTM and GRU layers get
/// int8 weights and quantize each batch's activations with that batch's range (Note [Dynamic
/// RNN]); the other layers run in float. An LSTM or GRU stage passes on its output sequence.
QuantizedModel quantize_dynamic(nn::Module<float>& model, const DynamicOptions& options = {});
/// One LSTM or GRU, for models that carry its states between calls (forward_with_state).
std::shared_ptr<const DynamicRNN> quantize_dynamic(const nn::LSTM<float>& lstm,
                                                   const DynamicOptions& options = {});
std::shared_ptr<const DynamicRNN> quantize_dynamic(const nn::GRU<float>& gru,
                                                   const DynamicOptions& options = {});

/// Saves a quantized model as safetensors (int8 weights as I8, scales as F32, zero points as I64,
/// each stage's kind and geometry in the metadata; names in docs/api.md), atomically.
void save(const QuantizedModel& model, const std::string& path);
/// Loads what save wrote; a file of another kind, a corrupted one or one whose tensors do not fit
/// its stages throws ember::FormatError naming the file.
QuantizedModel load(const std::string& path);

}  // namespace ember::quant
