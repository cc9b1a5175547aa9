// LSTM and GRU as compositions of differentiable ops: the input projections of all time steps
// are one GEMM per layer and direction; each step adds the recurrent projection.
#include "ember/nn/rnn.hpp"

#include <cmath>

#include "../ops/common.hpp"
#include "ember/nn/functional.hpp"
#include "ember/nn/init.hpp"
#include "rnn_run.hpp"

namespace ember::nn {

using ember::detail::cat_str;

template <FloatingElement T>
RNNBase<T>::RNNBase(int64_t in, int64_t hidden, RNNOptions o, int64_t gates, const char* name)
    : input_size(in), hidden_size(hidden), options(o), name_(name), gates_(gates) {
  if (in <= 0 || hidden <= 0 || o.num_layers <= 0) {
    throw ValueError(name_ + ": input_size, hidden_size and num_layers must be positive");
  }
  if (o.dropout < 0 || o.dropout > 1) throw ValueError(name_ + ": dropout must be in [0, 1]");
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  const int64_t dirs = o.bidirectional ? 2 : 1;
  for (int64_t layer = 0; layer < o.num_layers; ++layer) {
    for (int64_t d = 0; d < dirs; ++d) {
      const std::string sfx = "_l" + std::to_string(layer) + (d ? "_reverse" : "");
      const int64_t layer_in = layer == 0 ? in : hidden * dirs;
      auto add = [&](const std::string& n, const Shape& s) {
        Tensor<T> p = this->register_parameter(n + sfx, empty<T>(s));
        init::uniform_(p, -bound, bound);
      };
      add("weight_ih", {gates * hidden, layer_in});
      add("weight_hh", {gates * hidden, hidden});
      if (o.bias) {
        add("bias_ih", {gates * hidden});
        add("bias_hh", {gates * hidden});
      }
    }
  }
}

template <FloatingElement T>
std::string RNNBase<T>::extra_repr() const {
  return std::to_string(input_size) + ", " + std::to_string(hidden_size) +
         (options.num_layers != 1 ? ", num_layers=" + std::to_string(options.num_layers) : "") +
         (options.batch_first ? ", batch_first=True" : "") + (options.bidirectional ? ", bidirectional=True" : "");
}

namespace detail {

RnnCell cell_of(int64_t gates, bool relu) {
  return gates == 4 ? RnnCell::LSTM : gates == 3 ? RnnCell::GRU : relu ? RnnCell::RnnRelu : RnnCell::RnnTanh;
}

template <FloatingElement T>
std::pair<Tensor<T>, Tensor<T>> recurrence_step(RnnCell cell, int64_t hidden, const Tensor<T>& xw,
                                                const Tensor<T>& hw, const Tensor<T>& h, const Tensor<T>& c) {
  switch (cell) {
    case RnnCell::LSTM: {
      auto g = (xw + hw).split(hidden, -1);  // i, f, g, o
      Tensor<T> i = sigmoid(g[0]), f = sigmoid(g[1]), cand = tanh(g[2]), o = sigmoid(g[3]);
      Tensor<T> c_next = f * c + i * cand;
      return {o * tanh(c_next), c_next};
    }
    case RnnCell::GRU: {
      auto xg = xw.split(hidden, -1), hg = hw.split(hidden, -1);  // r, z, n; r gates the recurrent bias too
      Tensor<T> r = sigmoid(xg[0] + hg[0]), z = sigmoid(xg[1] + hg[1]);
      Tensor<T> cand = tanh(xg[2] + r * hg[2]);
      return {(1.0 - z) * cand + z * h, Tensor<T>()};
    }
    case RnnCell::RnnTanh:
      return {tanh(xw + hw), Tensor<T>()};
    case RnnCell::RnnRelu:
      return {relu(xw + hw), Tensor<T>()};
  }
  throw ValueError("recurrence_step: unknown cell");
}

namespace {

// One direction of one layer over the whole sequence, from the input projections of every step.
template <FloatingElement T>
std::tuple<std::vector<Tensor<T>>, Tensor<T>, Tensor<T>> scan(
    RnnCell cell, int64_t hidden, const std::vector<Tensor<T>>& xw,
    const std::function<Tensor<T>(const Tensor<T>&)>& recur, Tensor<T> h, Tensor<T> c,
    bool reverse) {
  const int64_t len = static_cast<int64_t>(xw.size());
  std::vector<Tensor<T>> ys(static_cast<size_t>(len));
  for (int64_t s = 0; s < len; ++s) {
    const int64_t t = reverse ? len - 1 - s : s;
    std::tie(h, c) = recurrence_step(cell, hidden, xw[static_cast<size_t>(t)], recur(h), h, c);
    ys[static_cast<size_t>(t)] = h;
  }
  return {ys, h, c};
}

}  // namespace

template <FloatingElement T>
std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> run_rnn(const RnnShape& shape, bool training,
                                                    const Tensor<T>& x_in, const Tensor<T>& h0,
                                                    const Tensor<T>& c0,
                                                    const RnnProjection<T>& project) {
  const std::string name = shape.name;
  const RNNOptions& options = shape.options;
  const int64_t input_size = shape.input_size, hidden_size = shape.hidden_size;
  if (x_in.defined() && x_in.dim() == 2) {
    // Unbatched [L, input_size] with states [layers * directions, hidden] (batch_first does not
    // apply), as PyTorch takes it: a batch of one.
    for (const Tensor<T>* s : {&h0, &c0}) {
      if (s->defined() && s->dim() != 2) {
        throw ShapeError(cat_str(name, ": for the unbatched 2-D input ", x_in.shape(),
                                 " the initial state must be 2-D [layers * directions, ", hidden_size, "], got ",
                                 s->shape()));
      }
    }
    RnnShape batched = shape;
    batched.options.batch_first = false;
    auto one = [](const Tensor<T>& t) { return t.defined() ? t.unsqueeze(1) : t; };
    auto [y, h, c] = run_rnn<T>(batched, training, x_in.unsqueeze(1), one(h0), one(c0), project);
    return {y.squeeze(1), h.squeeze(1), c.defined() ? c.squeeze(1) : c};
  }
  if (!x_in.defined() || x_in.dim() != 3) {
    throw ShapeError(cat_str(name, ": input must be 3-D [L, N, ", input_size, "] (or [N, L, ",
                             input_size, "] with batch_first, or 2-D [L, ", input_size, "] unbatched), got ",
                             x_in.defined() ? x_in.shape() : Shape{}));
  }
  Tensor<T> x = options.batch_first ? x_in.transpose(0, 1) : x_in;
  if (x.shape()[2] != input_size) {
    throw ShapeError(cat_str(name, ": input ", x_in.shape(), " has ", x.shape()[2],
                             " features, expected ", input_size));
  }
  const int64_t len = x.shape()[0], n = x.shape()[1], dirs = options.bidirectional ? 2 : 1;
  if (len == 0) {
    throw ValueError(cat_str(name, ": input ", x_in.shape(), " has a sequence length of 0; expected at least one step"));
  }
  const Shape state_shape{options.num_layers * dirs, n, hidden_size};
  for (const Tensor<T>* s : {&h0, &c0}) {
    if (s->defined() && s->shape() != state_shape) {
      throw ShapeError(
          cat_str(name, ": initial state of shape ", s->shape(), ", expected ", state_shape));
    }
  }
  const bool lstm = shape.cell == RnnCell::LSTM;
  if (c0.defined() && !lstm) {
    throw ValueError(name + (shape.cell == RnnCell::GRU ? ": a GRU has no cell state" : ": an RNN has no cell state"));
  }
  std::vector<Tensor<T>> h_n, c_n;
  Tensor<T> layer_in = x;
  for (int64_t layer = 0; layer < options.num_layers; ++layer) {
    std::vector<Tensor<T>> outs;
    for (int64_t d = 0; d < dirs; ++d) {
      // All time steps' input projections at once: [L, N, gates * H].
      Tensor<T> xw_all = project(layer_in, layer, d, false);
      std::vector<Tensor<T>> xw;
      for (int64_t t = 0; t < len; ++t) xw.push_back(xw_all.select(0, t));
      const int64_t k = layer * dirs + d;
      Tensor<T> h = h0.defined() ? h0.select(0, k) : zeros<T>({n, hidden_size});
      Tensor<T> c = !lstm          ? Tensor<T>()
                    : c0.defined() ? c0.select(0, k)
                                   : zeros<T>({n, hidden_size});
      auto recur = [&](const Tensor<T>& state) { return project(state, layer, d, true); };
      auto [ys, hl, cl] = scan<T>(shape.cell, hidden_size, xw, recur, h, c, d == 1);
      outs.push_back(stack(ys, 0));
      h_n.push_back(hl);
      c_n.push_back(cl);
    }
    layer_in = dirs == 1 ? outs[0] : cat(outs, 2);
    if (options.dropout > 0 && training && layer + 1 < options.num_layers) {
      layer_in = functional::dropout(layer_in, options.dropout, true);
    }
  }
  Tensor<T> y = options.batch_first ? layer_in.transpose(0, 1) : layer_in;
  return {y, stack(h_n, 0), lstm ? stack(c_n, 0) : Tensor<T>()};
}

template std::pair<Tensor<float>, Tensor<float>> recurrence_step(RnnCell, int64_t, const Tensor<float>&,
                                                                  const Tensor<float>&, const Tensor<float>&,
                                                                  const Tensor<float>&);
template std::pair<Tensor<double>, Tensor<double>> recurrence_step(RnnCell, int64_t, const Tensor<double>&,
                                                                    const Tensor<double>&, const Tensor<double>&,
                                                                    const Tensor<double>&);
template std::tuple<Tensor<float>, Tensor<float>, Tensor<float>> run_rnn<float>(
    const RnnShape&, bool, const Tensor<float>&, const Tensor<float>&, const Tensor<float>&,
    const RnnProjection<float>&);
template std::tuple<Tensor<double>, Tensor<double>, Tensor<double>> run_rnn<double>(
    const RnnShape&, bool, const Tensor<double>&, const Tensor<double>&, const Tensor<double>&,
    const RnnProjection<double>&);

}  // namespace detail

template <FloatingElement T>
std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> RNNBase<T>::run(const Tensor<T>& x, const Tensor<T>& h0,
                                                            const Tensor<T>& c0) {
  const detail::RnnShape shape{name_.c_str(), detail::cell_of(gates_, relu_), input_size, hidden_size, options};
  // Weights and biases by (layer, direction, recurrent), looked up once: the recurrent
  // projection runs at every time step.
  const int64_t dirs = options.bidirectional ? 2 : 1;
  std::vector<std::pair<Tensor<T>, Tensor<T>>> params;
  for (int64_t layer = 0; layer < options.num_layers; ++layer)
    for (int64_t d = 0; d < dirs; ++d)
      for (const char* kind : {"_ih", "_hh"}) {
        const std::string sfx = kind + ("_l" + std::to_string(layer)) + (d ? "_reverse" : "");
        params.emplace_back(Tensor<T>::from_base(this->entry("weight" + sfx)),
                            options.bias ? Tensor<T>::from_base(this->entry("bias" + sfx)) : Tensor<T>());
      }
  auto project = [&](const Tensor<T>& in, int64_t layer, int64_t d, bool recurrent) {
    const auto& [w, b] = params[static_cast<size_t>((layer * dirs + d) * 2 + (recurrent ? 1 : 0))];
    return functional::linear(in, w, b);
  };
  return detail::run_rnn<T>(shape, this->is_training(), x, h0, c0, project);
}

template <FloatingElement T>
std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> LSTM<T>::forward_with_state(const Tensor<T>& x, const Tensor<T>& h0,
                                                                       const Tensor<T>& c0) {
  return this->run(x, h0, c0);
}

template <FloatingElement T>
std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> GRU<T>::forward_with_state(const Tensor<T>& x,
                                                                       const Tensor<T>& h0) {
  return this->run(x, h0, Tensor<T>());
}

namespace {

void check_nonlinearity(const char* module, const std::string& nonlinearity) {
  if (nonlinearity != "tanh" && nonlinearity != "relu") {
    throw ValueError(cat_str(module, ": nonlinearity must be \"tanh\" or \"relu\", got \"", nonlinearity, "\""));
  }
}

// Checked before the base class draws the weights: a refused call leaves the generator as it was.
RNNOptions rnn_options(const ElmanRNNOptions& o) {
  check_nonlinearity("RNN", o.nonlinearity);
  return {.num_layers = o.num_layers, .bias = o.bias, .batch_first = o.batch_first, .dropout = o.dropout,
          .bidirectional = o.bidirectional};
}

// The same for RNNCell.
bool cell_bias(const RNNCellOptions& o) {
  check_nonlinearity("RNNCell", o.nonlinearity);
  return o.bias;
}

}  // namespace

template <FloatingElement T>
RNN<T>::RNN(int64_t input_size, int64_t hidden_size, ElmanRNNOptions options)
    : RNNBase<T>(input_size, hidden_size, rnn_options(options), 1, "RNN"),
      nonlinearity(options.nonlinearity) {
  this->relu_ = nonlinearity == "relu";
}

template <FloatingElement T>
std::tuple<Tensor<T>, Tensor<T>, Tensor<T>> RNN<T>::forward_with_state(const Tensor<T>& x, const Tensor<T>& h0) {
  return this->run(x, h0, Tensor<T>());
}

template <FloatingElement T>
RNNCellBase<T>::RNNCellBase(int64_t in, int64_t hidden, bool with_bias, int64_t gates, const char* name)
    : input_size(in), hidden_size(hidden), bias(with_bias), name_(name), gates_(gates) {
  if (in <= 0 || hidden <= 0) {
    throw ValueError(cat_str(name_, ": input_size and hidden_size must be positive, got ", in, " and ", hidden));
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  auto add = [&](const char* n, const Shape& s) {
    Tensor<T> p = this->register_parameter(n, empty<T>(s));
    init::uniform_(p, -bound, bound);
    return p;
  };
  weight_ih = add("weight_ih", {gates * hidden, in});
  weight_hh = add("weight_hh", {gates * hidden, hidden});
  if (with_bias) {
    bias_ih = add("bias_ih", {gates * hidden});
    bias_hh = add("bias_hh", {gates * hidden});
  }
}

template <FloatingElement T>
std::string RNNCellBase<T>::extra_repr() const {
  return std::to_string(input_size) + ", " + std::to_string(hidden_size) + (bias ? "" : ", bias=False");
}

template <FloatingElement T>
std::pair<Tensor<T>, Tensor<T>> RNNCellBase<T>::step(const Tensor<T>& x, const Tensor<T>& h, const Tensor<T>& c) {
  if (!x.defined() || x.dim() < 1 || x.dim() > 2 || x.shape()[x.dim() - 1] != input_size) {
    throw ShapeError(cat_str(name_, ": input must be [N, ", input_size, "] (or [", input_size, "] unbatched), got ",
                             x.defined() ? x.shape() : Shape{}));
  }
  const bool unbatched = x.dim() == 1;
  const Shape state = unbatched ? Shape{hidden_size} : Shape{x.shape()[0], hidden_size};
  for (const Tensor<T>* s : {&h, &c}) {
    if (s->defined() && s->shape() != state) {
      throw ShapeError(cat_str(name_, ": ", s == &h ? "hidden" : "cell", " state of shape ", s->shape(),
                               " for the input ", x.shape(), ", expected ", state));
    }
  }
  const detail::RnnCell cell = detail::cell_of(gates_, relu_);
  const Tensor<T> h0 = h.defined() ? h : zeros<T>(state);
  const Tensor<T> c0 = cell != detail::RnnCell::LSTM ? Tensor<T>() : c.defined() ? c : zeros<T>(state);
  return detail::recurrence_step(cell, hidden_size, functional::linear(x, weight_ih, bias_ih),
                                 functional::linear(h0, weight_hh, bias_hh), h0, c0);
}

template <FloatingElement T>
RNNCell<T>::RNNCell(int64_t input_size, int64_t hidden_size, RNNCellOptions options)
    : RNNCellBase<T>(input_size, hidden_size, cell_bias(options), 1, "RNNCell"), nonlinearity(options.nonlinearity) {
  this->relu_ = nonlinearity == "relu";
}

template class RNNBase<float>;
template class RNNBase<double>;
template class RNN<float>;
template class RNN<double>;
template class RNNCellBase<float>;
template class RNNCellBase<double>;
template class RNNCell<float>;
template class RNNCell<double>;
template class LSTMCell<float>;
template class LSTMCell<double>;
template class GRUCell<float>;
template class GRUCell<double>;
template class LSTM<float>;
template class LSTM<double>;
template class GRU<float>;
template class GRU<double>;

}  // namespace ember::nn
