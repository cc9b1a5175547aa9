#pragma once
// LSTM and GRU with PyTorch's gate order (LSTM: i, f, g, o; GRU: r, z, n), parameter names
// (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._reverse) and initialisation.
#include <string>
#include <tuple>
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

 private:
  std::string name_;
  int64_t gates_;
};

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

extern template class RNNBase<float>;
extern template class RNNBase<double>;
extern template class LSTM<float>;
extern template class LSTM<double>;
extern template class GRU<float>;
extern template class GRU<double>;

}  // namespace ember::nn
