// ember::explain and ember::adversarial against PyTorch computations of the same definitions
// (tools/make_torch_refs.py: write_explain_refs), plus the promises every method makes: the model
// and the caller's input are left as they were, and bad arguments are named.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "ember/ember.hpp"
#include "support/reference_file.hpp"

namespace ember::explain {
namespace {

namespace nn = ember::nn;

template <FloatingElement T>
nn::Sequential<T> make_net() {
  return nn::Sequential<T>(nn::Conv2d<T>(1, 4, 3, {.padding = 1}), nn::ReLU<T>(), nn::MaxPool2d<T>(2),
                           nn::Conv2d<T>(4, 6, 3, {.padding = 1}), nn::ReLU<T>(), nn::Flatten<T>(),
                           nn::Linear<T>(96, 5));
}

struct Refs {
  std::map<std::string, TensorBase> tensors;
  Tensor<double> operator[](const std::string& name) const { return Tensor<double>::from_base(tensors.at(name)); }
  Tensor<int64_t> labels(const std::string& name) const { return Tensor<int64_t>::from_base(tensors.at(name)); }
};

const Refs& refs() {
  static const Refs r = [] {
    Refs out;
    for (auto& e : io::read_safetensors(ember::testing::data_dir() + "/torch_explain.safetensors").tensors)
      out.tensors.emplace(e.name, e.tensor);
    return out;
  }();
  return r;
}

template <FloatingElement T>
nn::Sequential<T> loaded_net() {
  nn::Sequential<T> net = make_net<T>();
  nn::StateDict state;
  for (const auto& [name, t] : refs().tensors)
    if (name.rfind("model.", 0) == 0) state.push_back({name.substr(6), Tensor<double>::from_base(t).template to<T>()});
  net.load_state_dict(state);
  net.eval();
  return net;
}

template <FloatingElement T>
void expect_near(const Tensor<T>& got, const Tensor<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<T> g = got.contiguous().to_vector();
  const std::vector<double> w = want.contiguous().to_vector();
  double scale = 0;
  for (double v : w) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(static_cast<double>(g[i]), w[i], tol * std::max(scale, 1e-12)) << what << " at " << i;
}

// Captum's integration rules by the names tools/make_torch_refs.py gives them.
const std::pair<const char*, Method> kRules[] = {{"left", Method::RiemannLeft},
                                                 {"right", Method::RiemannRight},
                                                 {"middle", Method::RiemannMiddle},
                                                 {"trapezoid", Method::RiemannTrapezoid},
                                                 {"gauss_legendre", Method::GaussLegendre}};

template <class T>
class ExplainTyped : public ::testing::Test {};
using Types = ::testing::Types<double, float>;
TYPED_TEST_SUITE(ExplainTyped, Types);

template <class T>
double tolerance() {
  return std::is_same_v<T, double> ? 1e-9 : 2e-4;
}

TYPED_TEST(ExplainTyped, SaliencyMatchesTorch) {
  using T = TypeParam;
  auto net = loaded_net<T>();
  const Tensor<T> x = refs()["x"].to<T>();
  const Tensor<int64_t> target = refs().labels("target");
  expect_near(saliency(net, x, target), refs()["saliency_abs"], tolerance<T>(), "abs");
  expect_near(saliency(net, x, target, {.abs = false}), refs()["saliency_signed"], tolerance<T>(), "signed");
}

TYPED_TEST(ExplainTyped, IntegratedGradientsMatchTorchForEveryRule) {
  using T = TypeParam;
  auto net = loaded_net<T>();
  const Tensor<T> x = refs()["x"].to<T>();
  const Tensor<int64_t> target = refs().labels("target");
  for (const auto& [name, method] : kRules) {
    const std::string key = std::string("ig_") + name + "_7";
    const Attribution<T> a = integrated_gradients(net, x, target, {.steps = 7, .method = method});
    expect_near(a.attributions, refs()[key], tolerance<T>(), key);
    expect_near(a.delta, refs()[key + "_delta"], std::is_same_v<T, double> ? 1e-8 : 1e-3, key + " delta");
    // A memory bound changes how the steps are batched, not the result.
    const Attribution<T> b =
        integrated_gradients(net, x, target, {.steps = 7, .method = method, .internal_batch_size = 7});
    expect_near(b.attributions, refs()[key], tolerance<T>(), key + " in batches of 7");
  }
  const IntegratedGradientsOptions<T> half{.baseline = full<T>({1, 8, 8}, static_cast<T>(0.5)), .steps = 6,
                                           .method = Method::RiemannMiddle};
  expect_near(integrated_gradients(net, x, target, half).attributions, refs()["ig_middle_6_half"], tolerance<T>(),
              "per-sample baseline");
}

TEST(Explain, IntegrationPointsAndWeightsAreCaptums) {
  for (const auto& [name, method] : kRules) {
    const std::string key = std::string(name) + "_7";
    expect_near(tensor<double>(integration_points(method, 7), {7}), refs()["points_" + key], 1e-14, key);
    expect_near(tensor<double>(integration_weights(method, 7), {7}), refs()["weights_" + key], 1e-14, key);
  }
  expect_near(tensor<double>(integration_points(Method::GaussLegendre, 50), {50}), refs()["points_gauss_legendre_50"],
              1e-13, "gauss-legendre 50 points");
  expect_near(tensor<double>(integration_weights(Method::GaussLegendre, 50), {50}),
              refs()["weights_gauss_legendre_50"], 1e-13, "gauss-legendre 50 weights");
}

// Completeness (attributions sum to F(x) - F(baseline)) improves with the steps: 50
// Gauss-Legendre steps leave a delta far below 7 left-Riemann steps', and the same as PyTorch's.
TEST(Explain, IntegratedGradientsConvergeToCompleteness) {
  auto net = loaded_net<double>();
  const Tensor<double> x = refs()["x"];
  const Tensor<int64_t> target = refs().labels("target");
  const Attribution<double> fine = integrated_gradients(net, x, target);  // 50 Gauss-Legendre steps
  expect_near(fine.attributions, refs()["ig_gauss_legendre_50"], 1e-9, "ig 50");
  expect_near(fine.delta, refs()["ig_gauss_legendre_50_delta"], 1e-8, "ig 50 delta");
  const Attribution<double> coarse = integrated_gradients(net, x, target, {.steps = 7, .method = Method::RiemannLeft});
  const std::vector<double> f = fine.delta.to_vector(), c = coarse.delta.to_vector();
  for (size_t i = 0; i < f.size(); ++i) EXPECT_LT(std::abs(f[i]), std::abs(c[i]) / 5) << i;
}

TYPED_TEST(ExplainTyped, GradCamMatchesTorch) {
  using T = TypeParam;
  auto net = loaded_net<T>();
  const Tensor<T> x = refs()["x"].to<T>();
  const Tensor<int64_t> target = refs().labels("target");
  expect_near(grad_cam(net, *net.child(3), x, target), refs()["gradcam"], tolerance<T>(), "relu, upsampled");
  expect_near(grad_cam(net, *net.child(3), x, target, {.relu = false, .upsample = false}), refs()["gradcam_raw"],
              tolerance<T>(), "raw");
}

TYPED_TEST(ExplainTyped, OcclusionMatchesTorchIncludingCutWindows) {
  using T = TypeParam;
  auto net = loaded_net<T>();
  const Tensor<T> x = refs()["x"].to<T>();
  const Tensor<int64_t> target = refs().labels("target");
  expect_near(occlusion(net, x, target, {.window = {1, 3, 3}, .stride = {1, 2, 2}}), refs()["occlusion_3_2"],
              tolerance<T>(), "3x3 stride 2");
  expect_near(occlusion(net, x, target, {.window = {1, 4, 4}, .stride = {1, 4, 4}, .baseline = 0.5, .windows_per_pass = 1}),
              refs()["occlusion_4_4_half"], tolerance<T>(), "4x4 stride 4, baseline 0.5");
}

TYPED_TEST(ExplainTyped, AttacksMatchTorch) {
  using T = TypeParam;
  auto net = loaded_net<T>();
  const Tensor<T> x = refs()["x"].to<T>();
  const Tensor<int64_t> labels = refs().labels("labels"), target = refs().labels("target");
  expect_near(adversarial::fgsm(net, x, labels, 0.1), refs()["fgsm_0.1"], tolerance<T>(), "fgsm");
  expect_near(adversarial::fgsm(net, x, target, 0.1, {.targeted = true}), refs()["fgsm_targeted_0.1"], tolerance<T>(),
              "targeted fgsm");
  expect_near(adversarial::pgd(net, x, labels, {.eps = 0.1, .alpha = 0.03, .steps = 4, .random_start = false}),
              refs()["pgd_0.1_0.03_4"], tolerance<T>(), "pgd");
}

TEST(Adversarial, PgdWithARandomStartStaysInTheBallAndTheRange) {
  auto net = loaded_net<float>();
  const Tensor<float> x = refs()["x"].to<float>();
  Generator gen(4);
  const Tensor<float> adv =
      adversarial::pgd(net, x, refs().labels("labels"), {.eps = 0.05, .alpha = 0.02, .steps = 3, .generator = &gen});
  const std::vector<float> a = adv.to_vector(), o = x.to_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_LE(std::abs(a[i] - o[i]), 0.05f + 1e-6f);
    EXPECT_GE(a[i], 0.0f);
    EXPECT_LE(a[i], 1.0f);
  }
  // Any loss can replace cross-entropy: ascending the negated loss is the targeted direction.
  const Tensor<float> away = adversarial::fgsm(net, x, refs().labels("labels"), 0.1,
                                               {.loss = [](const Tensor<float>& logits, const Tensor<int64_t>& y) {
                                                 return -nn::functional::cross_entropy(logits, y);
                                               }});
  const Tensor<float> toward = adversarial::fgsm(net, x, refs().labels("labels"), 0.1, {.targeted = true});
  EXPECT_TRUE(equal(away, toward));
}

TEST(Uncertainty, McDropoutAveragesStochasticPassesAndRestoresModes) {
  nn::Sequential net(nn::Flatten<float>(), nn::Linear(64, 32), nn::BatchNorm1d(32), nn::ReLU(), nn::Dropout(0.5),
                     nn::Linear(32, 4));
  net.train();
  manual_seed(2);
  const Tensor<float> x = rand<float>({6, 1, 8, 8});
  const Uncertainty<float> u = mc_dropout(net, x, {.samples = 30});
  EXPECT_EQ(u.mean_probs.shape(), (Shape{6, 4}));
  EXPECT_EQ(u.entropy.shape(), (Shape{6}));
  const std::vector<float> sums = u.mean_probs.sum(1).to_vector(), h = u.entropy.to_vector(),
                           mi = u.mutual_information.to_vector();
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(sums[i], 1.0f, 1e-5f);
    EXPECT_GT(mi[i], 0.0f);  // dropout makes the passes disagree
    EXPECT_LE(mi[i], h[i] + 1e-6f);
    EXPECT_LE(h[i], std::log(4.0f) + 1e-5f);
  }
  for (auto& [path, m] : net.named_modules()) EXPECT_TRUE(m->is_training()) << path;
  // Without dropout randomness (p = 0) every pass agrees: no epistemic uncertainty, and batch norm
  // ran in eval mode (its running statistics did not move).
  nn::Sequential calm(nn::Linear(3, 4), nn::BatchNorm1d(4), nn::Dropout(0.0), nn::Linear(4, 3));
  calm.eval();
  auto& bn = dynamic_cast<nn::BatchNorm1d<float>&>(*calm.child(1));
  const Tensor<float> mean = bn.running_mean.clone();
  const Uncertainty<float> c = mc_dropout(calm, rand<float>({5, 3}), {.samples = 4});
  for (float v : c.mutual_information.to_vector()) EXPECT_NEAR(v, 0.0f, 1e-6f);
  EXPECT_TRUE(equal(bn.running_mean, mean));
  for (auto& [path, m] : calm.named_modules()) EXPECT_FALSE(m->is_training()) << path;
  EXPECT_THROW(mc_dropout(calm, rand<float>({5, 3}), {.samples = 0}), ValueError);
  nn::Sequential plain(nn::Linear(3, 2));
  EXPECT_THROW(mc_dropout(plain, rand<float>({5, 3})), ValueError);
}

// After every method, and after every failure: the same parameter gradients, mode and hooks (a
// forward still reaches the first layer's weight), and the caller's input untouched.
TEST(Explain, TheModelAndTheInputAreLeftAsTheyWere) {
  auto net = loaded_net<float>();
  net.train();
  Tensor<float> w0 = net.parameters()[0];
  w0.set_grad(full_like(w0, 0.25f));
  Tensor<float> x = refs()["x"].to<float>();
  x.requires_grad_(true);
  x.set_grad(ones_like(x));
  const Tensor<float> x_before = x.detach().clone();
  const Tensor<int64_t> target = refs().labels("target");
  auto check = [&](const std::string& what) {
    EXPECT_TRUE(equal(w0.grad(), full_like(w0, 0.25f))) << what;
    for (auto& [path, m] : net.named_modules()) EXPECT_TRUE(m->is_training()) << what << " " << path;
    EXPECT_TRUE(equal(x.detach(), x_before)) << what;
    EXPECT_TRUE(x.requires_grad()) << what;
    EXPECT_TRUE(equal(x.grad(), ones_like(x))) << what;
    const Tensor<float> y = net(x_before).sum();
    EXPECT_TRUE(autograd::grad({y}, {w0}, false, true)[0].defined()) << what << ": a hook was left";
  };
  saliency(net, x, target);
  check("saliency");
  integrated_gradients(net, x, target, {.steps = 4});
  check("integrated_gradients");
  grad_cam(net, *net.child(3), x, target);
  check("grad_cam");
  occlusion(net, x, target, {.window = {1, 4, 4}, .stride = {1, 4, 4}});
  check("occlusion");
  adversarial::fgsm(net, x, target, 0.1);
  check("fgsm");
  adversarial::pgd(net, x, target, {.steps = 2});
  check("pgd");

  // Failures, each naming the method and the argument.
  auto expect_error = [&](const std::function<void()>& f, const std::string& message) {
    try {
      f();
      ADD_FAILURE() << "expected an error: " << message;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
    check(message);
  };
  const Tensor<int64_t> bad_target = tensor<int64_t>({0, 7, 1}, {3});
  expect_error([&] { saliency(net, x, bad_target); }, "saliency: target[1] = 7 is out of range for 5 classes");
  expect_error([&] { integrated_gradients(net, x, bad_target); }, "integrated_gradients: target[1] = 7");
  expect_error([&] { grad_cam(net, *net.child(3), x, bad_target); }, "grad_cam: target[1] = 7");
  expect_error([&] { occlusion(net, x, bad_target); }, "occlusion: target[1] = 7");
  expect_error([&] { saliency(net, x, tensor<int64_t>({0, 1}, {2})); }, "saliency: target must hold one class index per sample, shape [3], got [2]");
  nn::Linear<float> stranger(3, 3);
  expect_error([&] { grad_cam(net, stranger, x, target); }, "grad_cam: the layer (Linear) is not part of the model");
  expect_error([&] { integrated_gradients(net, x, target, {.steps = 0}); }, "integrated_gradients: steps must be >= 1, got 0");
  expect_error([&] { adversarial::fgsm(net, x, target, -0.1); }, "fgsm: eps must be >= 0, got -0.1");
  expect_error([&] { adversarial::pgd(net, x, target, {.steps = 0}); }, "pgd: steps must be >= 1");
  Tensor<float> nan_x = x_before.clone();
  nan_x.view({-1}).index_put_({5}, std::nanf(""));
  expect_error([&] { saliency(net, nan_x, target); }, "saliency: x has a non-finite value (nan) at flat index 5");
  expect_error([&] { occlusion(net, x, target, {.window = {1, 9, 3}, .stride = {1, 1, 1}}); },
               "occlusion: window 9 and stride 1 in dimension 2");
  // A batch the model rejects: its own error, through unchanged.
  expect_error([&] { saliency(net, rand<float>({3, 1, 5, 5}), target); }, "6: Linear(in_features=96");
  expect_error([&] { integrated_gradients(net, x, target, {.baseline = zeros<float>({2, 8})}); },
               "integrated_gradients: baseline must have x's shape [3, 1, 8, 8] or one sample's, got [2, 8]");
}

}  // namespace
}  // namespace ember::explain
