#include "ember/core/generator.hpp"

#include <cmath>

namespace ember {
namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::seed(uint64_t s) {
  seed_ = s;
  uint64_t x = s;
  for (auto& w : state_.s) w = splitmix64(x);
  state_.has_spare = false;
  state_.spare = 0.0;
}

uint64_t Generator::next_u64() noexcept {
  uint64_t* s = state_.s;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double Generator::normal() noexcept {
  if (state_.has_spare) {
    state_.has_spare = false;
    return state_.spare;
  }
  double u1 = 0.0;
  while (u1 <= 0.0) u1 = uniform();
  double u2 = uniform();
  double r = std::sqrt(-2.0 * std::log(u1));
  double theta = 2.0 * 3.14159265358979323846 * u2;
  state_.spare = r * std::sin(theta);
  state_.has_spare = true;
  return r * std::cos(theta);
}

uint64_t Generator::below(uint64_t n) noexcept {
  // Rejection keeps the result unbiased for any n.
  uint64_t limit = ~uint64_t(0) - (~uint64_t(0) % n);
  uint64_t x;
  do x = next_u64();
  while (x >= limit);
  return x % n;
}

Generator& default_generator() {
  static Generator g(5489u);
  return g;
}

void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(default_generator().mutex());
  default_generator().seed(seed);
}

}  // namespace ember
