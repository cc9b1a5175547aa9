#pragma once
// Internal: the LSTM and GRU recurrences with the layers' projections passed in, shared by
// nn::LSTM / nn::GRU (float or double weights, differentiable) and the dynamically quantized
// RNNs of ember::quant (int8 weights, inputs quantized per call).
#include <functional>
#include <tuple>

#include "ember/nn/rnn.hpp"

namespace ember::nn::detail {

enum class RnnCell : uint8_t { LSTM, GRU, RnnTanh, RnnRelu };

struct RnnShape {
  const char* name;  // for errors: "LSTM", "DynamicQuantizedGRU"
  RnnCell cell;
  int64_t input_size, hidden_size;
  RNNOptions options;
  int64_t gates() const noexcept { return cell == RnnCell::LSTM ? 4 : cell == RnnCell::GRU ? 3 : 1; }
};

/// x [..., features] -> x W^T + b [..., gates * hidden] of layer `layer`, direction `direction`
/// (1: reverse): its input projection (recurrent false) or its recurrent one.
template <class T>
using RnnProjection =
    std::function<Tensor<T>(const Tensor<T>& x, int64_t layer, int64_t direction, bool recurrent)>;

/// The recurrence of a layer with `gates` gates (4 LSTM, 3 GRU, 1 RNN with relu or tanh).
RnnCell cell_of(int64_t gates, bool relu);

/// One step of the recurrence from the step's input projection xw = x W_ih^T + b_ih and recurrent
/// projection hw = h W_hh^T + b_hh ([N, gates * hidden]) and the states h and c (c: LSTM only):
/// returns the new (h, c), c undefined but for an LSTM.
template <FloatingElement T>
std::pair<Tensor<T>, Tensor<T>> recurrence_step(RnnCell cell, int64_t hidden, const Tensor<T>& xw,
                                                const Tensor<T>& hw, const Tensor<T>& h, const Tensor<T>& c);

/// The RNN over x ([L, N, in], or [N, L, in] with batch_first) from the states h0 and c0 (zeros
/// when undefined; c0 LSTM only): returns (outputs, h_n, c_n), c_n undefined for a GRU. Dropout
/// between layers applies when `training`.
template <FloatingElement T>
std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> run_rnn(const RnnShape& shape, bool training,
                                                    const Tensor<T>& x, const Tensor<T>& h0,
                                                    const Tensor<T>& c0,
                                                    const RnnProjection<T>& project);

extern template std::tuple<Tensor<float>, Tensor<float>, Tensor<float>> run_rnn<float>(
    const RnnShape&, bool, const Tensor<float>&, const Tensor<float>&, const Tensor<float>&,
    const RnnProjection<float>&);
extern template std::tuple<Tensor<double>, Tensor<double>, Tensor<double>> run_rnn<double>(
    const RnnShape&, bool, const Tensor<double>&, const Tensor<double>&, const Tensor<double>&,
    const RnnProjection<double>&);

}  // namespace ember::nn::detail
