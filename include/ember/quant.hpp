#pragma once
// ember::quant: quantized tensors (PyTorch's affine scheme) and the int8 kernels behind them.
#include "ember/quant/observer.hpp"
#include "ember/quant/qtensor.hpp"
#include "ember/quant/quantize.hpp"
