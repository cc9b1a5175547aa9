// Quantized tensors against torch.quantize_per_tensor / quantize_per_channel (tools/make_torch_refs.py
// wrote tests/data/torch_quant.safetensors): the integers bit for bit, dequantized values to the
// float rounding of PyTorch's fused form; and the bad input each function refuses.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "ember/ember.hpp"
#include "torch_quant_refs.hpp"

namespace {

using namespace ember;

template <class T>
Tensor<T> ref(const std::string& name) {
  return ember::testing::quant_ref<T>(name);
}

// PyTorch dequantizes with a fused multiply-add (q * scale - zero_point * scale): within an ulp
// or two of (q - zero_point) * scale.
void expect_close(const Tensor<float>& got, const Tensor<float>& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], w[i], 2e-7 * std::max(1.0f, std::fabs(w[i]))) << what << " element " << i;
}

template <class Q>
void check_per_tensor(const char* name, int64_t zero_point) {
  for (const char* input : {"x", "ties"}) {
    for (const char* sc : {"0.05", "0.0625", "0.3"}) {
      const std::string key = std::string(name) + "." + input + "." + sc;
      const quant::QTensor<Q> q = quant::quantize_per_tensor<Q>(ref<float>(input), std::stod(sc), zero_point);
      EXPECT_EQ(q.int_repr().to_vector(), ref<Q>(key + ".int_repr").to_vector()) << key;
      expect_close(q.dequantize(), ref<float>(key + ".dequantize"), key);
      EXPECT_EQ(q.q_scale(), std::stod(sc));
      EXPECT_EQ(q.q_zero_point(), zero_point);
      EXPECT_EQ(q.qscheme(), quant::QScheme::PerTensorAffine);
    }
  }
}

TEST(QTensor, PerTensorMatchesPyTorch) {
  check_per_tensor<int8_t>("qint8", 3);
  check_per_tensor<uint8_t>("quint8", 128);
}

template <class Q>
void check_per_channel(const char* name) {
  const Tensor<float> x = ref<float>("x");
  for (int64_t axis = 0; axis < 3; ++axis) {
    const int64_t c = x.shape()[axis];
    const Tensor<float> scales = ref<float>("channel_scales").narrow(0, 0, c).contiguous();
    const Tensor<int64_t> zps = ref<int64_t>(std::string(name) + ".channel_zero_points").narrow(0, 0, c).contiguous();
    const std::string key = std::string(name) + ".axis" + std::to_string(axis);
    const quant::QTensor<Q> q = quant::quantize_per_channel<Q>(x, scales, zps, axis);
    EXPECT_EQ(q.int_repr().to_vector(), ref<Q>(key + ".int_repr").to_vector()) << key;
    expect_close(q.dequantize(), ref<float>(key + ".dequantize"), key);
    EXPECT_EQ(q.q_per_channel_axis(), axis);
    EXPECT_EQ(q.q_per_channel_scales().to_vector(), scales.to_vector());
    EXPECT_THROW(q.q_scale(), ValueError);
  }
  // A negative axis counts from the end, as in PyTorch.
  const Tensor<float> s2 = ref<float>("channel_scales");
  const Tensor<int64_t> z2 = ref<int64_t>(std::string(name) + ".channel_zero_points");
  EXPECT_EQ(quant::quantize_per_channel<Q>(x, s2, z2, -1).int_repr().to_vector(),
            ref<Q>(std::string(name) + ".axis2.int_repr").to_vector());
}

TEST(QTensor, PerChannelMatchesPyTorch) {
  check_per_channel<int8_t>("qint8");
  check_per_channel<uint8_t>("quint8");
}

// Infinities saturate (PyTorch converts them to an integer, which is undefined; on x86 +inf
// becomes qmin there).
TEST(QTensor, InfinitiesSaturate) {
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor<float> x = tensor<float>({inf, -inf, 1e30f, -1e30f});
  EXPECT_EQ(quant::quantize_per_tensor<int8_t>(x, 0.1, 3).int_repr().to_vector(), (std::vector<int8_t>{127, -128, 127, -128}));
  EXPECT_EQ(quant::quantize_per_tensor<uint8_t>(x, 0.1, 3).int_repr().to_vector(), (std::vector<uint8_t>{255, 0, 255, 0}));
}

TEST(QTensor, NonContiguousInput) {
  const Tensor<float> x = ref<float>("x");
  const Tensor<float> t = x.transpose(0, 2);  // a view with strides
  const auto q = quant::quantize_per_tensor<int8_t>(t, 0.05, 3);
  EXPECT_EQ(q.int_repr().to_vector(), quant::quantize_per_tensor<int8_t>(t.contiguous(), 0.05, 3).int_repr().to_vector());
  EXPECT_EQ(q.str(), "QTensor<int8>([7, 5, 6], per_tensor_affine, scale 0.05, zero_point 3)");
}

TEST(QTensor, BadInputIsRefused) {
  const Tensor<float> x = ref<float>("x");
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_NE(message([&] { quant::quantize_per_tensor<int8_t>(x, 0.0, 0); }).find("quantize_per_tensor: scale must be positive"),
            std::string::npos);
  EXPECT_NE(message([&] { quant::quantize_per_tensor<int8_t>(x, 1e-50, 0); }).find("scale must be positive and finite as a float"),
            std::string::npos);
  EXPECT_NE(message([&] { quant::quantize_per_tensor<int8_t>(x, 0.1, 200); }).find("zero_point = 200 is outside int8's range [-128, 127]"),
            std::string::npos);
  EXPECT_NE(message([&] { quant::quantize_per_tensor<uint8_t>(x, 0.1, -1); }).find("outside uint8's range [0, 255]"),
            std::string::npos);
  Tensor<float> nan = x.clone();
  nan.data()[4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(message([&] { quant::quantize_per_tensor<uint8_t>(nan, 0.1, 0); }).find("the input holds NaN (element 4)"),
            std::string::npos);
  const Tensor<float> scales = ref<float>("channel_scales");
  const Tensor<int64_t> zps = ref<int64_t>("qint8.channel_zero_points");
  EXPECT_NE(message([&] { quant::quantize_per_channel<int8_t>(x, scales, zps, 0); }).find("expected scales and zero_points of shape [6]"),
            std::string::npos);
  EXPECT_NE(message([&] { quant::quantize_per_channel<int8_t>(x, scales, zps, 3); }).find("axis 3 is out of range"),
            std::string::npos);
  Tensor<float> bad_scales = scales.clone();
  bad_scales.data()[2] = -1.0f;
  EXPECT_NE(message([&] { quant::quantize_per_channel<int8_t>(x, bad_scales, zps, 2); }).find("scale[2] must be positive"),
            std::string::npos);
  const auto per_tensor = quant::quantize_per_tensor<int8_t>(x, 0.1, 0);
  EXPECT_THROW(per_tensor.q_per_channel_scales(), ValueError);
  EXPECT_THROW(quant::QTensor<int8_t>().dequantize(), ValueError);
}

}  // namespace
