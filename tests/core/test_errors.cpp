// Every error path: the exception type and a message that names the op, the shapes and the cause.
#include <gtest/gtest.h>

#include "ember/ember.hpp"

namespace ember {
namespace {

// Runs `stmt`, expecting an exception of type E whose message contains `text`.
#define EXPECT_ERROR(stmt, E, text)                                                          \
  do {                                                                                       \
    try {                                                                                    \
      stmt;                                                                                  \
      ADD_FAILURE() << "expected " #E " from: " #stmt;                                       \
    } catch (const E& e) {                                                                   \
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos)                         \
          << "message: " << e.what() << "\nexpected to contain: " << (text);                 \
      const Error* base = &e;                                                                \
      EXPECT_NE(base, nullptr);                                                              \
    } catch (const std::exception& e) {                                                      \
      ADD_FAILURE() << "expected " #E ", got another exception: " << e.what();               \
    }                                                                                        \
  } while (0)

TEST(Errors, ShapesAndDims) {
  EXPECT_ERROR(matmul(zeros<float>({3, 4}), zeros<float>({5, 6})), ShapeError,
               "matmul: [3, 4] x [5, 6]: inner dims 4 != 5");
  EXPECT_ERROR(matmul(zeros<float>({64, 784}), zeros<float>({100, 10})), ShapeError,
               "matmul: [64, 784] x [100, 10]: inner dims 784 != 100");
  EXPECT_ERROR(matmul(zeros<float>({}), zeros<float>({3})), ShapeError, "at least 1 dim");
  EXPECT_ERROR(mm(zeros<float>({3}), zeros<float>({3, 2})), ShapeError, "mm: expected two 2-D");
  EXPECT_ERROR(addmm(zeros<float>({5}), zeros<float>({3, 4}), zeros<float>({3, 5})), ShapeError,
               "addmm: [3, 4] x [3, 5]: inner dims 4 != 3");
  EXPECT_ERROR(addmm(zeros<float>({5}), zeros<float>({3, 4}), zeros<float>({4})), ShapeError,
               "addmm: expected 2-D mat1 and mat2, got [3, 4] and [4]");
  EXPECT_ERROR(addmm(zeros<float>({6, 5}), zeros<float>({3, 4}), zeros<float>({4, 5})), ShapeError,
               "addmm: shapes [6, 5] and [3, 5] cannot be broadcast");
  EXPECT_ERROR(addmm(zeros<float>({3, 5}), zeros<float>({1, 4}), zeros<float>({4, 5})), ShapeError,
               "addmm: input of shape [3, 5] does not broadcast to the product's [1, 5] ([1, 4] x [4, 5])");
  EXPECT_ERROR(addmm(zeros<float>({2, 1, 5}), zeros<float>({1, 4}), zeros<float>({4, 5})), ShapeError,
               "addmm: input of shape [2, 1, 5] does not broadcast");
  EXPECT_ERROR(bmm(zeros<float>({2, 3, 4}), zeros<float>({3, 4, 5})), ShapeError,
               "batch sizes 2 != 3");
  EXPECT_ERROR(zeros<float>({2, 3}) + zeros<float>({4}), ShapeError,
               "add: shapes [2, 3] and [4] cannot be broadcast: dim -1 is 3 vs 4");
  EXPECT_ERROR(zeros<float>({2, 3}) * zeros<float>({2, 1, 2}), ShapeError, "mul: shapes");
  EXPECT_ERROR(zeros<float>({-1, 3}), ShapeError, "negative size -1 at dim 0");
  EXPECT_ERROR(zeros<float>({int64_t(1) << 40, int64_t(1) << 40}), ShapeError,
               "more elements than int64");
  EXPECT_ERROR(zeros<float>({2, 3}).sum(5), IndexError,
               "sum: dim 5 is out of range for a tensor with 2 dims (expected -2..1)");
  EXPECT_ERROR(zeros<float>({2, 3}).reshape({5}), ShapeError,
               "reshape: shape [5] is invalid for input of shape [2, 3] (6 elements)");
  EXPECT_ERROR(zeros<float>({2, 3}).reshape({-1, -1}), ShapeError, "only one dim can be -1");
  EXPECT_ERROR(zeros<float>({2, 3}).permute({0, 0}), ShapeError, "permute: dim 0 repeats");
  EXPECT_ERROR(zeros<float>({2, 3}).expand({4, 3, 3}), ShapeError,
               "cannot be expanded to [4, 3, 3]: dim 1 has size 2");
  EXPECT_ERROR(softmax(zeros<float>({2, 3}), 2), IndexError, "softmax: dim 2 is out of range");
  EXPECT_ERROR(zeros<float>(Shape::filled(17, 1)), ShapeError, "exceed the maximum of 16");
  EXPECT_ERROR(cat(std::vector<Tensor<float>>{zeros<float>({2, 3}), zeros<float>({2, 4})}, 0),
               ShapeError, "cat: tensor 1 has shape [2, 4] but tensor 0 has shape [2, 3]: dim 1");
  EXPECT_ERROR(stack(std::vector<Tensor<float>>{zeros<float>({2}), zeros<float>({3})}), ShapeError,
               "stack: tensor 1 has shape [3]");
  EXPECT_ERROR(zeros<float>({4}).t().transpose(0, 3), IndexError, "transpose: dim 3");
  EXPECT_ERROR(zeros<float>({2, 3, 4}).t(), ShapeError, "t: expected a tensor with at most 2 dims");
  EXPECT_ERROR(tensor<float>({1, 2, 3}, {2, 2}), ShapeError, "tensor: 3 values for shape [2, 2]");
  EXPECT_ERROR(zeros<float>({2, 2}).copy_(zeros<float>({3})), ShapeError, "copy_: shapes [3] and [2, 2] cannot be broadcast");
  EXPECT_ERROR(split(zeros<float>({5}), {2, 2}), ShapeError, "split: sizes add up to 4");
}

TEST(Errors, IndicesAndValues) {
  auto t = zeros<float>({2, 3});
  EXPECT_ERROR(t.item(), ValueError, "item: expected a tensor with one element, got shape [2, 3]");
  EXPECT_ERROR(t.at({2, 0}), IndexError, "at: index 2 is out of range for dim 0 of size 2");
  EXPECT_ERROR(t.at({0}), IndexError, "at: 1 indices for a tensor of shape [2, 3]");
  EXPECT_ERROR(t.select(1, 3), IndexError, "select: index 3 is out of range for dim 1 of size 3");
  EXPECT_ERROR(t.narrow(1, 2, 2), IndexError, "narrow: start 2 and length 2");
  EXPECT_ERROR(t.index_select(1, tensor<int64_t>({0, 5})), IndexError,
               "index_select: index 5 at position 1 is out of range for dim 1 of size 3");
  EXPECT_ERROR(t.gather(1, tensor<int64_t>({0, 3}, {2, 1})), IndexError,
               "gather: index 3 is out of range for dim 1 of size 3");
  EXPECT_ERROR(t.gather(1, tensor<int64_t>({0}, {1})), ShapeError, "must have as many dims");
  EXPECT_ERROR(scatter_add(t, 0, tensor<int64_t>({2}, {1, 1}), ones<float>({1, 1})), IndexError,
               "scatter_add: index 2 is out of range for dim 0 of size 2");
  EXPECT_ERROR(set_num_threads(0), ValueError, "set_num_threads: expected a thread count");
  EXPECT_ERROR(randint<int64_t>(5, 5, {2}), ValueError, "randint: expected low < high");
  EXPECT_ERROR(arange<float>(0, 1, 0), ValueError, "arange");
  EXPECT_ERROR(clamp(t, 1.0, -1.0), ValueError, "clamp: min 1");
  EXPECT_ERROR(gelu(t, "fast"), ValueError, "gelu: approximate must be");
  EXPECT_ERROR(pad(t, {3, 3}, PadMode::Reflect), ValueError, "reflect padding");
  EXPECT_ERROR(pad(t, {1}), ValueError, "pad: expected an even number");
  EXPECT_ERROR(t.slice(0, 0, 2, 0), ValueError, "slice: step must be positive");
  EXPECT_ERROR(bernoulli<float>(tensor<float>({0.5f, 1.5f})), ValueError,
               "probability 1.5 at element 1");
  EXPECT_ERROR(Tensor<float>::from_base(zeros<double>({2})), TypeError,
               "a float64 tensor cannot be viewed as float32");
  EXPECT_ERROR(zeros<float>({0}).max(), ValueError, "amax: cannot reduce an empty tensor");
  EXPECT_ERROR(Tensor<float>().sum(), ValueError, "undefined");
}

// Every op of the op table (include/ember/ops/op_table.def) names itself when given an undefined
// tensor, and its parameterised forms compile with their defaults.
TEST(Errors, OpTableOpsNameThemselves) {
  const Tensor<float> undefined;
  const Tensor<double> x = ones<double>({2});
#define EMBER_UNARY(name, ...)                                                     \
  EXPECT_ERROR(name(undefined), ValueError, #name ": an input tensor is undefined"); \
  EXPECT_EQ(name(x).shape(), x.shape());
#define EMBER_UNARY_P1 EMBER_UNARY
#define EMBER_UNARY_P2 EMBER_UNARY
#define EMBER_COMPARE(name, Kernel)                                                  \
  EXPECT_ERROR(name(undefined, 0.0), ValueError, #name ": an input tensor is undefined"); \
  EXPECT_ERROR(name(x, Tensor<double>()), ValueError, #name ": an input tensor is undefined");
#define EMBER_REDUCTION(name)                                                      \
  EXPECT_ERROR(name(undefined), ValueError, #name ": an input tensor is undefined"); \
  EXPECT_EQ(name(x, {0}, true).shape(), Shape({1}));
#include "ember/ops/op_table.def"
}

TEST(Errors, Autograd) {
  auto x = randn<double>({3}, true);
  EXPECT_ERROR((x * 2.0).backward(), ShapeError,
               "backward: a gradient can be implied only for outputs with one element");
  EXPECT_ERROR(zeros<double>({1}).backward(), AutogradError, "does not require grad");
  EXPECT_ERROR(zeros<int64_t>({1}).requires_grad_(), TypeError, "only float32 and float64");
  EXPECT_ERROR(x.add_(1.0), AutogradError, "add_: a leaf tensor that requires grad");
  EXPECT_ERROR((x * 2.0).backward(ones<double>({4})), ShapeError,
               "backward: gradient of shape [4] (float64) for an output of shape [3]");
  auto y = (x * x).sum();
  y.backward();
  EXPECT_ERROR(y.backward(), AutogradError, "backward through the graph a second time");
  auto z = randn<double>({3}, true);
  EXPECT_ERROR(autograd::grad({(x * 2.0).sum()}, {z}), AutogradError,
               "grad: input 0 (shape [3]) was not used");
  EXPECT_ERROR(autograd::grad({(x * 2.0).sum()}, {zeros<double>({2})}), AutogradError,
               "grad: input 0 does not require grad");
}

}  // namespace
}  // namespace ember
