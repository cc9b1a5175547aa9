// Picks the kernel table for this CPU once, at first use.
#include <cstdlib>
#include <cstring>
#include <string>

#include "ember/core/error.hpp"
#include "tables.hpp"

namespace ember::backend {

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

bool isa_available(Isa isa) noexcept {
  switch (isa) {
    case Isa::Scalar: return true;
#if defined(EMBER_HAVE_X86_SIMD)
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
#else
    default: return false;
#endif
  }
  return false;
}

Isa best_isa() noexcept {
  if (isa_available(Isa::Avx512)) return Isa::Avx512;
  if (isa_available(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

namespace {

template <class T>
const Kernels<T>& table_of(Isa isa) {
  if constexpr (std::is_same_v<T, float>) {
    switch (isa) {
#if defined(EMBER_HAVE_X86_SIMD)
      case Isa::Avx512: return isa_avx512::kTableF32;
      case Isa::Avx2: return isa_avx2::kTableF32;
#endif
      default: return isa_scalar::kTableF32;
    }
  } else {
    switch (isa) {
#if defined(EMBER_HAVE_X86_SIMD)
      case Isa::Avx512: return isa_avx512::kTableF64;
      case Isa::Avx2: return isa_avx2::kTableF64;
#endif
      default: return isa_scalar::kTableF64;
    }
  }
}

// EMBER_ISA lets a user (or a test run) cap the instruction set, e.g. to compare paths.
Isa chosen_isa() {
  Isa best = best_isa();
  const char* env = std::getenv("EMBER_ISA");
  if (env == nullptr || *env == '\0') return best;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (std::strcmp(env, isa_name(isa)) == 0) return isa_available(isa) ? isa : best;
  }
  return best;
}

}  // namespace

template <class T>
const Kernels<T>& kernels_for(Isa isa) {
  if (!isa_available(isa)) {
    throw ValueError(std::string("backend: instruction set ") + isa_name(isa) +
                     " is not available on this CPU or in this build");
  }
  return table_of<T>(isa);
}

template <class T>
const Kernels<T>& kernels() {
  static const Kernels<T>& chosen = table_of<T>(chosen_isa());
  return chosen;
}

template const Kernels<float>& kernels_for<float>(Isa);
template const Kernels<double>& kernels_for<double>(Isa);
template const Kernels<float>& kernels<float>();
template const Kernels<double>& kernels<double>();

}  // namespace ember::backend
