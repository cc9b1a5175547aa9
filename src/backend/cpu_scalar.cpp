// CPU kernels for Isa::Scalar; the compile flags for this file are set in CMakeLists.txt.
#define EMBER_ISA_NS isa_scalar
#define EMBER_ISA_ENUM Isa::Scalar
#include "cpu_kernels.inl"

#include <initializer_list>

namespace ember::backend::scalar {

// Note [erfinv]
// The inverse error function: a start from Giles' single-precision approximation ("Approximating
// the erfinv function", GPU Computing Gems, 2011), then Newton steps in double on erf(x) = |y|,
// or for |y| >= 0.5 on log erfc(x) = log(1 - |y|), where 1 - |y| is exact, erfc keeps its relative
// precision while erf(x) - y would cancel, and the logarithm (nearly -x^2) converges from the
// start where Giles' formula, fitted for float, is far off (1 - |y| below 1e-8). Two or three
// steps reach double's precision; float inputs get the double result rounded.
double erfinv(double y) {
  if (!(y >= -1.0 && y <= 1.0)) return std::numeric_limits<double>::quiet_NaN();
  const double a = std::abs(y);
  if (a == 1.0) return std::copysign(std::numeric_limits<double>::infinity(), y);
  if (a == 0.0) return y;
  double w = -std::log((1.0 - a) * (1.0 + a)), p;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    for (double c : {3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
                     -0.00417768164, 0.246640727, 1.50140941}) {
      p = c + p * w;
    }
  } else {
    w = std::sqrt(w) - 3.0;
    p = -0.000200214257;
    for (double c : {0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
                     0.00943887047, 1.00167406, 2.83297682}) {
      p = c + p * w;
    }
  }
  double x = p * a;
  constexpr double kTwoOverSqrtPi = 1.12837916709551257390;
  const double log_tail = std::log(1.0 - a);
  for (int step = 0; step < 8; ++step) {
    const double slope = kTwoOverSqrtPi * std::exp(-x * x);
    double dx;
    if (a < 0.5) {
      dx = (std::erf(x) - a) / slope;
    } else {
      const double tail = std::erfc(x);
      dx = (log_tail - std::log(tail)) * tail / slope;
    }
    x -= dx;
    if (std::abs(dx) <= 1e-17 * x) break;
  }
  return std::copysign(x, y);
}

}  // namespace ember::backend::scalar
