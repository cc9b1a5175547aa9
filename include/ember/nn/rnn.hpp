#pragma once
// RNN (Elman, tanh or relu), LSTM and GRU with PyTorch's gate order (LSTM: i, f, g, o; GRU: r, z,
// n), parameter names (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._reverse) and
// initialisation; their one-step cells RNNCell, LSTMCell and GRUCell (weight_ih, weight_hh,
// bias_ih, bias_hh).
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ember/nn/module.hpp"

namespace ember::nn {

struct RNNOptions {
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
  double dropout = 0.0;  // between layers, while training
  bool bidirectional = false;
};

template <FloatingElement T = float>
class RNNBase : public Module<T> {
 public:
  RNNBase(int64_t input_size, int64_t hidden_size, RNNOptions options, int64_t gates, const char* name);
  std::string type_name() const override { return name_; }
  std::string extra_repr() const override;

  int64_t input_size, hidden_size;
  RNNOptions options;

 protected:
  /// Returns the outputs [L, N, dirs * H] (batch first if so configured) and the final states.
  std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> run(const Tensor<T>& x, const Tensor<T>& h0,
                                                  const Tensor<T>& c0);
  bool relu_ = false;  // an RNN's nonlinearity (tanh otherwise)

 private:
  std::string name_;
  int64_t gates_;
};

/// Options of nn::RNN: those of LSTM and GRU, and the nonlinearity, "tanh" or "relu".
struct ElmanRNNOptions {
  int64_t num_layers = 1;
  std::string nonlinearity = "tanh";
  bool bias = true;
  bool batch_first = false;
  double dropout = 0.0;  // between layers, while training
  bool bidirectional = false;
};

/// PyTorch's RNN: h_t = nonlinearity(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh); forward(x) gives y.
template <FloatingElement T = float>
class RNN : public RNNBase<T> {
 public:
  RNN(int64_t input_size, int64_t hidden_size, ElmanRNNOptions options = {});
  Tensor<T> forward(const Tensor<T>& x) override { return std::get<0>(forward_with_state(x)); }
  /// Returns (output, h_n, undefined); h_0 defaults to zeros [layers * dirs, N, H].
  std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> forward_with_state(const Tensor<T>& x,
                                                                 const Tensor<T>& h0 = Tensor<T>());
  std::string nonlinearity;
};
RNN(int64_t, int64_t)->RNN<float>;
RNN(int64_t, int64_t, ElmanRNNOptions)->RNN<float>;

/// y, (h_n, c_n) = lstm(x, (h_0, c_0)); forward(x) gives y.
template <FloatingElement T = float>
class LSTM : public RNNBase<T> {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, RNNOptions options = {})
      : RNNBase<T>(input_size, hidden_size, options, 4, "LSTM") {}
  Tensor<T> forward(const Tensor<T>& x) override { return std::get<0>(forward_with_state(x)); }
  /// Returns (output, h_n, c_n); h_0 and c_0 default to zeros [layers * dirs, N, H].
  std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> forward_with_state(const Tensor<T>& x,
                                                                 const Tensor<T>& h0 = Tensor<T>(),
                                                                 const Tensor<T>& c0 = Tensor<T>());
};
LSTM(int64_t, int64_t)->LSTM<float>;
LSTM(int64_t, int64_t, RNNOptions)->LSTM<float>;

/// y, h_n = gru(x, h_0); forward(x) gives y.
template <FloatingElement T = float>
class GRU : public RNNBase<T> {
 public:
  GRU(int64_t input_size, int64_t hidden_size, RNNOptions options = {})
      : RNNBase<T>(input_size, hidden_size, options, 3, "GRU") {}
  Tensor<T> forward(const Tensor<T>& x) override { return std::get<0>(forward_with_state(x)); }
  /// Returns (output, h_n, undefined).
  std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> forward_with_state(const Tensor<T>& x,
                                                                 const Tensor<T>& h0 = Tensor<T>());
};
GRU(int64_t, int64_t)->GRU<float>;
GRU(int64_t, int64_t, RNNOptions)->GRU<float>;

/// One time step, for loops written by hand (PyTorch's RNNCell, LSTMCell, GRUCell): input [N, in]
/// (or [in] unbatched), states [N, H] (or [H]), zeros when not given.
template <FloatingElement T = float>
class RNNCellBase : public Module<T> {
 public:
  RNNCellBase(int64_t input_size, int64_t hidden_size, bool bias, int64_t gates, const char* name);
  std::string type_name() const override { return name_; }
  std::string extra_repr() const override;

  int64_t input_size, hidden_size;
  bool bias;
  Tensor<T> weight_ih, weight_hh, bias_ih, bias_hh;

 protected:
  /// The next (h, c) from x and the states (c: LSTMCell only; undefined for the others).
  std::pair<Tensor<T>, Tensor<T>> step(const Tensor<T>& x, const Tensor<T>& h, const Tensor<T>& c);
  bool relu_ = false;  // an RNNCell's nonlinearity (tanh otherwise)

 private:
  std::string name_;
  int64_t gates_;
};

struct RNNCellOptions {
  bool bias = true;
  std::string nonlinearity = "tanh";  // or "relu"
};

/// h' = nonlinearity(x W_ih^T + b_ih + h W_hh^T + b_hh).
template <FloatingElement T = float>
class RNNCell : public RNNCellBase<T> {
 public:
  RNNCell(int64_t input_size, int64_t hidden_size, RNNCellOptions options = {});
  Tensor<T> forward(const Tensor<T>& x) override { return forward(x, Tensor<T>()); }
  Tensor<T> forward(const Tensor<T>& x, const Tensor<T>& h) { return this->step(x, h, Tensor<T>()).first; }
  std::string nonlinearity;
};
RNNCell(int64_t, int64_t)->RNNCell<float>;
RNNCell(int64_t, int64_t, RNNCellOptions)->RNNCell<float>;

struct LSTMCellOptions {
  bool bias = true;
};

/// (h', c') = lstm_cell(x, (h, c)), PyTorch's gate order i, f, g, o; forward(x) gives h'.
template <FloatingElement T = float>
class LSTMCell : public RNNCellBase<T> {
 public:
  LSTMCell(int64_t input_size, int64_t hidden_size, LSTMCellOptions options = {})
      : RNNCellBase<T>(input_size, hidden_size, options.bias, 4, "LSTMCell") {}
  Tensor<T> forward(const Tensor<T>& x) override { return forward_with_state(x).first; }
  std::pair<Tensor<T>, Tensor<T>> forward_with_state(const Tensor<T>& x, const Tensor<T>& h = Tensor<T>(),
                                                     const Tensor<T>& c = Tensor<T>()) {
    return this->step(x, h, c);
  }
};
LSTMCell(int64_t, int64_t)->LSTMCell<float>;
LSTMCell(int64_t, int64_t, LSTMCellOptions)->LSTMCell<float>;

using GRUCellOptions = LSTMCellOptions;

/// h' = gru_cell(x, h), PyTorch's gate order r, z, n (r gates the recurrent bias of n too).
template <FloatingElement T = float>
class GRUCell : public RNNCellBase<T> {
 public:
  GRUCell(int64_t input_size, int64_t hidden_size, GRUCellOptions options = {})
      : RNNCellBase<T>(input_size, hidden_size, options.bias, 3, "GRUCell") {}
  Tensor<T> forward(const Tensor<T>& x) override { return forward(x, Tensor<T>()); }
  Tensor<T> forward(const Tensor<T>& x, const Tensor<T>& h) { return this->step(x, h, Tensor<T>()).first; }
};
GRUCell(int64_t, int64_t)->GRUCell<float>;
GRUCell(int64_t, int64_t, GRUCellOptions)->GRUCell<float>;

extern template class RNNBase<float>;
extern template class RNNBase<double>;
extern template class LSTM<float>;
extern template class LSTM<double>;
extern template class GRU<float>;
extern template class GRU<double>;
extern template class RNN<float>;
extern template class RNN<double>;
extern template class RNNCellBase<float>;
extern template class RNNCellBase<double>;
extern template class RNNCell<float>;
extern template class RNNCell<double>;
extern template class LSTMCell<float>;
extern template class LSTMCell<double>;
extern template class GRUCell<float>;
extern template class GRUCell<double>;

}  // namespace ember::nn
