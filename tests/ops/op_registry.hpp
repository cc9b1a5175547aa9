#pragma once
// The op registry: every differentiable op with sample input shapes, an input range, and the
// expression under test, written once for float and double. gradcheck tests (double) and the
// PyTorch reference tests (float and double) iterate over it. The elementwise and reduction cases
// come from the op table (include/ember/ops/op_table.def), which tools/make_torch_refs.py reads
// too; the others are written in op_registry.cpp and, by name, in tools/make_torch_refs.py.
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "ember/ember.hpp"
#include "ember/nn.hpp"

namespace ember::testing {

/// How close a float32 result must be to PyTorch's: Elementwise ops round once per element
/// (rtol 1.3e-6, atol 1e-5); Accumulated ones (reductions, products, composites) round many terms
/// (1e-4). Float64 is held to 1e-10 / 1e-12 either way.
enum class Tolerance { Elementwise, Accumulated };

struct OpCase {
  std::string name;
  Tolerance tolerance = Tolerance::Accumulated;
  std::vector<Shape> shapes;
  double lo = -1.0, hi = 1.0;  // inputs are uniform in [lo, hi)
  bool gradgrad = true;        // double backward is checked too
  // False where the op's gradient deliberately differs from the derivative (embedding rows at
  // padding_idx get none, as in PyTorch): it is then checked against PyTorch only.
  bool true_derivative = true;
  // Relative tolerance against PyTorch in float64; looser only where PyTorch's double kernel
  // rounds a constant to float (its hardsigmoid backward multiplies by the float 1 / 6).
  double float64_rtol = 1e-10;
  std::function<Tensor<double>(const std::vector<Tensor<double>>&)> f64;
  std::function<Tensor<float>(const std::vector<Tensor<float>>&)> f32;
};

inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

template <class F>
OpCase make_case(std::string name, Tolerance tolerance, std::vector<Shape> shapes, double lo,
                 double hi, bool gradgrad, F f) {
  OpCase c;
  c.name = std::move(name);
  c.tolerance = tolerance;
  c.shapes = std::move(shapes);
  c.lo = lo;
  c.hi = hi;
  c.gradgrad = gradgrad;
  c.f64 = [f](const std::vector<Tensor<double>>& x) { return f(x); };
  c.f32 = [f](const std::vector<Tensor<float>>& x) { return f(x); };
  return c;
}

using S = std::vector<Shape>;

/// Input shapes written as in the op table: dims joined by 'x', inputs by spaces ("3x4 4").
std::vector<Shape> parse_shapes(const std::string& text);

// Multi-head attention with 2 heads and a key padding mask: the output or the averaged weights.
template <class X>
auto mha_case(const X& x, bool weights) {
  nn::functional::MultiheadAttentionArgs a;
  a.num_heads = 2;
  a.key_padding_mask = tensor<uint8_t>({0, 0, 0, 1, 0, 1, 0, 0}, {2, 4});
  auto r = nn::functional::multi_head_attention(x[0], x[1], x[1], x[2], x[3], x[4], x[5], a);
  return weights ? r.second : r.first;
}

/// Every case, built on each call.
std::vector<OpCase> op_registry();

}  // namespace ember::testing
