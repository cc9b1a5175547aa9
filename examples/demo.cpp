// ember-demo: trains a small MLP on a generated three-class spiral problem with plain tensors and
// autograd, printing the loss as it falls. It needs no data files.
//
//   ember-demo [--steps N] [--seed S] [--threads T]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ember/ember.hpp"

namespace {

using ember::Tensor;

// Three interleaved spirals in the plane: points [n*3, 2] and labels [n*3].
void make_spirals(int64_t per_class, ember::Generator& gen, Tensor<float>& x, Tensor<int64_t>& y) {
  const int64_t classes = 3, n = per_class * classes;
  std::vector<float> pts(static_cast<size_t>(n * 2));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t c = 0; c < classes; ++c) {
    for (int64_t i = 0; i < per_class; ++i) {
      const double r = static_cast<double>(i) / static_cast<double>(per_class);
      const double t = static_cast<double>(c) * 4.0 + 4.0 * r + 0.2 * gen.normal();
      const int64_t k = c * per_class + i;
      pts[static_cast<size_t>(2 * k)] = static_cast<float>(r * std::sin(t));
      pts[static_cast<size_t>(2 * k + 1)] = static_cast<float>(r * std::cos(t));
      labels[static_cast<size_t>(k)] = c;
    }
  }
  x = ember::tensor<float>(pts, {n, 2});
  y = ember::tensor<int64_t>(labels, {n});
}

// A weight initialised as PyTorch's nn.Linear does: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
Tensor<float> linear_weight(int64_t in, int64_t out, ember::Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  return (ember::rand<float>({in, out}, false, &gen) * (2 * bound) - bound).requires_grad_(true);
}

long parse_flag(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const long steps = parse_flag(argc, argv, "--steps", 600);
    const long seed = parse_flag(argc, argv, "--seed", 0);
    const long threads = parse_flag(argc, argv, "--threads", 0);
    if (threads > 0) ember::set_num_threads(static_cast<int>(threads));
    ember::Generator gen(static_cast<uint64_t>(seed));

    Tensor<float> x;
    Tensor<int64_t> y;
    make_spirals(200, gen, x, y);
    const int64_t hidden = 64, classes = 3;
    std::vector<Tensor<float>> params = {
        linear_weight(2, hidden, gen),       ember::zeros<float>({hidden}, true),
        linear_weight(hidden, hidden, gen),  ember::zeros<float>({hidden}, true),
        linear_weight(hidden, classes, gen), ember::zeros<float>({classes}, true)};
    auto forward = [&](const Tensor<float>& in) {
      auto h = ember::relu(ember::matmul(in, params[0]) + params[1]);
      h = ember::relu(ember::matmul(h, params[2]) + params[3]);
      return ember::matmul(h, params[4]) + params[5];
    };

    std::printf("ember-demo: 3-class spirals, %lld points, MLP 2-%lld-%lld-%lld, %d thread(s), isa %s\n",
                static_cast<long long>(x.shape()[0]), static_cast<long long>(hidden),
                static_cast<long long>(hidden), static_cast<long long>(classes),
                ember::get_num_threads(),
                ember::backend::isa_name(ember::backend::kernels<float>().isa));
    const double lr = 0.5, momentum = 0.9;
    std::vector<Tensor<float>> velocity;
    for (auto& p : params) velocity.push_back(ember::zeros_like(p));
    double first_loss = 0, loss_value = 0;
    for (long step = 0; step <= steps; ++step) {
      auto logits = forward(x);
      // Cross-entropy: the mean negative log-probability of the true class.
      auto loss = -ember::log_softmax(logits, 1).gather(1, y.unsqueeze(1)).mean();
      loss.backward();
      {
        ember::NoGradGuard no_grad;
        for (size_t i = 0; i < params.size(); ++i) {
          velocity[i].mul_(momentum).add_(params[i].grad());
          params[i].sub_(velocity[i], lr);
          params[i].grad().zero_();
        }
      }
      loss_value = loss.item();
      if (step == 0) first_loss = loss_value;
      if (step % 100 == 0) std::printf("step %4ld  loss %.4f\n", step, loss_value);
    }
    ember::NoGradGuard no_grad;
    auto predicted = forward(x).argmax(1);
    int64_t correct = 0;
    auto p = predicted.to_vector(), t = y.to_vector();
    for (size_t i = 0; i < p.size(); ++i) correct += p[i] == t[i];
    const double accuracy = static_cast<double>(correct) / static_cast<double>(p.size());
    std::printf("loss %.4f -> %.4f, train accuracy %.3f\n", first_loss, loss_value, accuracy);
    std::printf("train_accuracy=%.4f\n", accuracy);
    return loss_value < first_loss ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember-demo: %s\n", e.what());
    return 2;
  }
}
