#pragma once
// Internal: the kernel tables each ISA's translation unit defines.
#include "ember/backend/kernels.hpp"

namespace ember::backend {
#define EMBER_DECLARE_ISA_TABLES(ns)        \
  namespace ns {                            \
  extern const Kernels<float> kTableF32;    \
  extern const Kernels<double> kTableF64;   \
  }
EMBER_DECLARE_ISA_TABLES(isa_scalar)
#if defined(EMBER_HAVE_X86_SIMD)
EMBER_DECLARE_ISA_TABLES(isa_avx2)
EMBER_DECLARE_ISA_TABLES(isa_avx512)
#endif
#if defined(EMBER_HAVE_NEON_SIMD)
EMBER_DECLARE_ISA_TABLES(isa_neon)
#endif
#undef EMBER_DECLARE_ISA_TABLES
}  // namespace ember::backend
