// Dynamically quantized LSTM and GRU (Note [Dynamic RNN]) against PyTorch's definition written in
// torch.ao's observers and quantize functions (tools/make_torch_refs.py, write_dynamic_rnn_refs),
// as stages of a quantized model, saved and loaded, and the bad input they refuse.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"
#include "torch_quant_refs.hpp"

namespace {

using namespace ember;
using ember::testing::quant_ref;
using ember::testing::expect_error;
using ember::testing::quant_refs;

// The float weights the reference quantized, by the module's parameter names.
void load_reference_weights(nn::Module<float>& m, const std::string& prefix) {
  nn::StateDict state;
  for (const auto& [name, t] : quant_refs()) {
    if (name.rfind(prefix + ".weight", 0) == 0 || name.rfind(prefix + ".bias", 0) == 0) {
      state.push_back({name.substr(prefix.size() + 1), t});
    }
  }
  m.load_state_dict(state);
}

float max_abs_diff(const Tensor<float>& a, const Tensor<float>& b) {
  return (a - b).abs().max().item();
}

TEST(DynamicRNN, LstmFollowsTorchsDefinition) {
  nn::LSTM<float> lstm(5, 6, {.num_layers = 2, .bidirectional = true});
  load_reference_weights(lstm, "dyn_lstm");
  const auto q = quant::quantize_dynamic(lstm, {.per_channel = true});
  const Tensor<float> x = quant_ref<float>("dyn_lstm.x");
  auto [y, h, c] =
      q->forward_with_state(x, quant_ref<float>("dyn_lstm.h0"), quant_ref<float>("dyn_lstm.c0"));
  ASSERT_EQ(y.shape(), Shape({7, 3, 12}));
  // Float sums in another order move a result by an ulp or so; a requantized state then almost
  // never lands on the other side of a rounding step.
  EXPECT_LT(max_abs_diff(y, quant_ref<float>("dyn_lstm.y")), 2e-5f);
  EXPECT_LT(max_abs_diff(h, quant_ref<float>("dyn_lstm.h_n")), 2e-5f);
  EXPECT_LT(max_abs_diff(c, quant_ref<float>("dyn_lstm.c_n")), 2e-5f);
  // The int8 path really ran: the float LSTM differs by more than that tolerance.
  auto [yf, hf, cf] =
      lstm.forward_with_state(x, quant_ref<float>("dyn_lstm.h0"), quant_ref<float>("dyn_lstm.c0"));
  EXPECT_GT(max_abs_diff(y, yf), 5e-4f);
  EXPECT_LT(max_abs_diff(y, yf), 0.05f);
  EXPECT_EQ(q->str(), "DynamicQuantizedLSTM(5, 6, num_layers=2, bidirectional=True)");
  EXPECT_EQ(q->projections().size(), 8u);
  EXPECT_EQ(q->projections()[3].first, "hh_l0_reverse");
}

TEST(DynamicRNN, GruFollowsTorchsDefinition) {
  nn::GRU<float> gru(5, 6, {.batch_first = true});
  load_reference_weights(gru, "dyn_gru");
  const auto q = quant::quantize_dynamic(gru, {.per_channel = false});
  const Tensor<float> x = quant_ref<float>("dyn_gru.x");
  auto [y, h, c] = q->forward_with_state(x);
  ASSERT_EQ(y.shape(), Shape({3, 7, 6}));
  EXPECT_LT(max_abs_diff(y, quant_ref<float>("dyn_gru.y")), 2e-5f);
  EXPECT_LT(max_abs_diff(h, quant_ref<float>("dyn_gru.h_n")), 2e-5f);
  EXPECT_FALSE(c.defined());
  EXPECT_GT(max_abs_diff(y, gru(x)), 5e-4f);
  // Per tensor: one scale for every row of a projection.
  const quant::QuantizedModel one({q});
  const std::string path = ::testing::TempDir() + "/ember_dynamic_gru.safetensors";
  quant::save(one, path);
  const io::SafetensorsFile file = io::read_safetensors(path);
  for (const auto& e : file.tensors) {
    if (e.name != "0.hh_l0.weight_scale") continue;
    const std::vector<float> s = Tensor<float>::from_base(e.tensor).to_vector();
    EXPECT_EQ(s.size(), 18u);
    for (float v : s) EXPECT_EQ(v, s[0]);
  }
}

TEST(DynamicRNN, StagesOfAModelSaveAndLoad) {
  Generator gen(21);
  nn::Sequential net(nn::LSTM(4, 8, {.num_layers = 2}), nn::Dropout(0.2), nn::Linear(8, 3));
  net.eval();
  const quant::QuantizedModel q = quant::quantize_dynamic(net);
  ASSERT_EQ(q.num_stages(), 2u);
  EXPECT_NE(q.str().find("(0): DynamicQuantizedLSTM(4, 8, num_layers=2)"), std::string::npos)
      << q.str();
  EXPECT_NE(q.str().find("(1): QuantizedLinear(in_features=8, out_features=3, dynamic)"),
            std::string::npos)
      << q.str();
  const Tensor<float> x = randn<float>({5, 2, 4}, &gen);
  const Tensor<float> y = q(x);
  ASSERT_EQ(y.shape(), Shape({5, 2, 3}));
  EXPECT_EQ(y.to_vector(), q.stage(1).forward(q.stage(0).forward(x)).to_vector());
  EXPECT_LT(max_abs_diff(y, net(x)), 0.05f);

  const std::string path = ::testing::TempDir() + "/ember_dynamic_lstm.safetensors";
  quant::save(q, path);
  const quant::QuantizedModel back = quant::load(path);
  EXPECT_EQ(back.str(), q.str());
  EXPECT_EQ(back(x).to_vector(), y.to_vector());
  io::SafetensorsFile file = io::read_safetensors(path);
  EXPECT_EQ(file.metadata.at("ember.quant.stage.0"),
            "lstm batch_first=0 bias=1 bidirectional=0 hidden=8 input=4 layers=2");
  bool found = false;
  for (const auto& e : file.tensors) {
    if (e.name == "0.ih_l1.weight") {
      found = true;
      EXPECT_EQ(e.tensor.dtype(), DType::Int8);
      EXPECT_EQ(e.tensor.shape(), Shape({32, 8}));
    }
  }
  EXPECT_TRUE(found);

  // A file that claims a layer it does not hold, or a projection of the wrong size, is refused.
  const std::string bad = ::testing::TempDir() + "/ember_dynamic_lstm_bad.safetensors";
  auto meta = file.metadata;
  meta["ember.quant.stage.0"] =
      "lstm batch_first=0 bias=1 bidirectional=0 hidden=8 input=4 layers=3";
  io::write_safetensors(bad, file.tensors, meta);
  expect_error<FormatError>([&] { quant::load(bad); }, "no 'ember.quant.stage.0.ih_l2' metadata");
  meta = file.metadata;
  meta["ember.quant.stage.0"] = "lstm batch_first=0 bias=1 bidirectional=0 hidden=8 input=5 layers=2";
  io::write_safetensors(bad, file.tensors, meta);
  expect_error<FormatError>([&] { quant::load(bad); },
                            "stage 0: DynamicQuantizedLSTM: projection 'ih_l0' is QuantizedLinear(in_features=4");
}

TEST(DynamicRNN, BadInputIsRefused) {
  Generator gen(22);
  nn::LSTM<float> lstm(5, 6);
  const auto q = quant::quantize_dynamic(lstm);
  expect_error<ShapeError>([&] { q->forward_with_state(randn<float>({3, 2, 4}, &gen)); },
                           "DynamicQuantizedLSTM: input [3, 2, 4] has 4 features, expected 5");
  expect_error<ShapeError>([&] { q->forward_with_state(randn<float>({3, 2, 5}, &gen), zeros<float>({2, 2, 6})); },
                           "DynamicQuantizedLSTM: initial state of shape [2, 2, 6], expected [1, 2, 6]");
  Tensor<float> nan = randn<float>({3, 2, 5}, &gen);
  nan.data()[4] = std::nanf("");
  expect_error<ValueError>([&] { q->forward_with_state(nan); },
                           "DynamicQuantizedLSTM (projection weight_ih_l0): NaN or infinity in the input");
  nn::GRU<float> gru(5, 6);
  const auto qg = quant::quantize_dynamic(gru);
  expect_error<ValueError>([&] { qg->forward_with_state(randn<float>({3, 2, 5}, &gen), {}, zeros<float>({1, 2, 6})); },
                           "DynamicQuantizedGRU: a GRU has no cell state");
  // Static quantization has no LSTM; a NaN weight is named by its state-dict entry.
  nn::Sequential net(nn::LSTM(5, 6));
  net.eval();
  expect_error<ValueError>([&] { quant::quantize(net, {randn<float>({3, 2, 5}, &gen)}); },
                           "module '0' (LSTM) is not supported");
  auto* inner = dynamic_cast<nn::LSTM<float>*>(net.child(0).get());
  ASSERT_NE(inner, nullptr);
  inner->named_parameters()[1].second.data()[0] = std::nanf("");
  expect_error<ValueError>([&] { quant::quantize_dynamic(net); },
                           "quantize: '0.weight_hh_l0': NaN in the observed values (element 0)");
  // No state to carry through a plan: deploy::compile names the stage it cannot plan.
  nn::Sequential ok(nn::GRU(5, 6));
  ok.eval();
  expect_error<ValueError>([&] { deploy::compile(quant::quantize_dynamic(ok), {3, 2, 5}); },
                           "DynamicQuantizedGRU(5, 6) computes with an op a plan cannot run");
}

}  // namespace
