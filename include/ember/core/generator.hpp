#pragma once
// Random numbers. Every random factory draws from a Generator: the explicit one it is given, or
// the process-wide default that manual_seed() seeds. The same seed gives the same numbers on every
// machine (the engine and the distributions are ember's own, not the standard library's, whose
// distributions differ between implementations).
#include <cstdint>
#include <mutex>

namespace ember {

class Generator {
 public:
  explicit Generator(uint64_t seed = 5489u) { this->seed(seed); }
  Generator(const Generator& o) : state_(o.state_), seed_(o.seed_) {}
  Generator& operator=(const Generator& o) {
    state_ = o.state_;
    seed_ = o.seed_;
    return *this;
  }

  void seed(uint64_t s);
  uint64_t initial_seed() const noexcept { return seed_; }
  /// 64 random bits (xoshiro256**).
  uint64_t next_u64() noexcept;
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Standard normal (Box-Muller; the spare value is kept for the next call).
  double normal() noexcept;
  /// Uniform integer in [0, n), unbiased. n >= 1.
  uint64_t below(uint64_t n) noexcept;

  struct State {
    uint64_t s[4];
    double spare;
    bool has_spare;
  };
  State state() const noexcept { return state_; }
  void set_state(const State& st) noexcept { state_ = st; }

  /// Serialises access when one generator is shared between threads (the default one is).
  std::mutex& mutex() noexcept { return mutex_; }

 private:
  State state_{};
  uint64_t seed_ = 0;
  std::mutex mutex_;
};

/// The process-wide generator used when a factory is given none.
Generator& default_generator();
/// Seeds the default generator (torch.manual_seed).
void manual_seed(uint64_t seed);

}  // namespace ember
