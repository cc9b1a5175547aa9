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
    const Tensor<T>& x_t = xw[static_cast<size_t>(t)];
    if (cell == RnnCell::LSTM) {
      auto g = (x_t + recur(h)).split(hidden, 1);  // i, f, g, o
      Tensor<T> i = sigmoid(g[0]), f = sigmoid(g[1]), cand = tanh(g[2]), o = sigmoid(g[3]);
      c = f * c + i * cand;
      h = o * tanh(c);
    } else {
      auto xg = x_t.split(hidden, 1);  // r, z, n
      auto hg =
          recur(h).split(hidden, 1);  // r, z, n, b_hh included: r gates the recurrent bias too
      Tensor<T> r = sigmoid(xg[0] + hg[0]), z = sigmoid(xg[1] + hg[1]);
      Tensor<T> cand = tanh(xg[2] + r * hg[2]);
      h = (1.0 - z) * cand + z * h;
    }
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
  if (c0.defined() && shape.cell == RnnCell::GRU)
    throw ValueError(name + ": a GRU has no cell state");
  const bool lstm = shape.cell == RnnCell::LSTM;
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
  const detail::RnnShape shape{name_.c_str(),
                               gates_ == 4 ? detail::RnnCell::LSTM : detail::RnnCell::GRU,
                               input_size, hidden_size, options};
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

template class RNNBase<float>;
template class RNNBase<double>;
template class LSTM<float>;
template class LSTM<double>;
template class GRU<float>;
template class GRU<double>;

}  // namespace ember::nn
