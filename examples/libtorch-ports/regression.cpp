// LibTorch's regression example, ported: one Linear layer learns a random 4th-degree polynomial
// from random batches until the smooth-L1 loss is below 1e-3. What changed: see README.md.
#include <cstdio>
#include <string>
#include <vector>

#include <ember/ember.hpp>

namespace nn = ember::nn;
using ember::Tensor;

constexpr int64_t kPolyDegree = 4;

// [x, x^2, x^3, x^4] as the columns of a matrix.
Tensor<float> make_features(Tensor<float> x) {
  x = x.unsqueeze(1);
  std::vector<Tensor<float>> xs;
  for (int64_t i = 0; i < kPolyDegree; ++i) xs.push_back(x.pow(static_cast<double>(i + 1)));
  return ember::cat(xs, 1);
}

// The function to approximate.
Tensor<float> f(const Tensor<float>& x, const Tensor<float>& w_target, const Tensor<float>& b_target) {
  return x.matmul(w_target) + b_target.item();
}

// "y = 1.2 x^4 -0.5 x^3 ... + 0.3"
std::string poly_desc(const Tensor<float>& w, const Tensor<float>& b) {
  const std::vector<float> wv = w.contiguous().to_vector();
  std::string s = "y =";
  char term[64];
  for (int64_t i = static_cast<int64_t>(wv.size()) - 1; i >= 0; --i) {
    std::snprintf(term, sizeof term, " %g x^%lld", static_cast<double>(wv[static_cast<size_t>(i)]),
                  static_cast<long long>(i + 1));
    s += term;
  }
  std::snprintf(term, sizeof term, " + %g", static_cast<double>(b.item()));
  return s + term;
}

// A batch of random inputs and their targets.
std::pair<Tensor<float>, Tensor<float>> get_batch(const Tensor<float>& w_target, const Tensor<float>& b_target,
                                                  int64_t batch_size = 32) {
  Tensor<float> x = make_features(ember::randn<float>({batch_size}));
  return {x, f(x, w_target, b_target)};
}

int main() {
  ember::manual_seed(1);
  const Tensor<float> w_target = ember::randn<float>({kPolyDegree, 1}) * 5.0;
  const Tensor<float> b_target = ember::randn<float>({1}) * 5.0;

  nn::Linear fc(w_target.size(0), 1);
  ember::optim::SGD optim(fc.parameters(), 0.1);

  float loss = 0;
  int64_t batch_idx = 0;
  while (++batch_idx) {
    auto [batch_x, batch_y] = get_batch(w_target, b_target);
    optim.zero_grad();
    Tensor<float> output = nn::functional::smooth_l1_loss(fc(batch_x), batch_y);
    loss = output.item<float>();
    output.backward();
    optim.step();
    if (loss < 1e-3f || batch_idx > 100000) break;
  }
  std::printf("Loss: %g after %lld batches\n", static_cast<double>(loss), static_cast<long long>(batch_idx));
  std::printf("==> Learned function:\t%s\n", poly_desc(fc.weight.reshape({-1}), fc.bias).c_str());
  std::printf("==> Actual function:\t%s\n", poly_desc(w_target.reshape({-1}), b_target).c_str());
  return loss < 1e-3f ? 0 : 1;
}
