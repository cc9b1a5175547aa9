// Weight packing and the choice of int8 kernel table (ember/backend/int8_kernels.hpp).
#include <cstring>
#include <string>

#include "ember/backend/int8_kernels.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/core/error.hpp"

#if defined(EMBER_HAVE_NEON_SIMD)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#endif

namespace ember::backend {
namespace int8_scalar {
extern const Int8Kernels kInt8Table;
}
#if defined(EMBER_HAVE_X86_SIMD)
namespace int8_avx2 {
extern const Int8Kernels kInt8Table;
}
namespace int8_avx512 {
extern const Int8Kernels kInt8Table;
}
#endif
#if defined(EMBER_HAVE_NEON_SIMD)
namespace int8_neon {
extern const Int8Kernels kInt8Table;
}
namespace int8_neon_dot {
extern const Int8Kernels kInt8Table;
}
namespace int8_neon_i8mm {
extern const Int8Kernels kInt8Table;
}
#endif

const char* int8_isa_name(Int8Isa isa) noexcept {
  switch (isa) {
    case Int8Isa::Scalar: return "scalar";
    case Int8Isa::Avx2: return "avx2";
    case Int8Isa::Avx512Vnni: return "avx512_vnni";
    case Int8Isa::Neon: return "neon";
    case Int8Isa::NeonDot: return "neon_dotprod";
    case Int8Isa::NeonI8mm: return "neon_i8mm";
  }
  return "unknown";
}

void pack_int8_weights(int64_t n, int64_t k, const int8_t* w, int64_t ldw, int8_t* packed) noexcept {
  const int64_t kp = int8_padded_k(k);
  std::memset(packed, 0, static_cast<size_t>(int8_packed_size(n, k)));
  for (int64_t j = 0; j < n; ++j) {
    int8_t* panel = packed + (j / kInt8Panel) * kInt8Panel * kp + (j % kInt8Panel) * 4;
    for (int64_t t = 0; t < k; ++t) panel[(t / 4) * (4 * kInt8Panel) + t % 4] = w[j * ldw + t];
  }
}

bool int8_isa_available(Int8Isa isa) noexcept {
  switch (isa) {
    case Int8Isa::Scalar: return true;
#if defined(EMBER_HAVE_X86_SIMD)
    case Int8Isa::Avx2: return isa_available(Isa::Avx2);
    case Int8Isa::Avx512Vnni:
      return isa_available(Isa::Avx512) && __builtin_cpu_supports("avx512vnni");
#endif
#if defined(EMBER_HAVE_NEON_SIMD)
    case Int8Isa::Neon: return isa_available(Isa::Neon);
    case Int8Isa::NeonDot: return isa_available(Isa::Neon) && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
    case Int8Isa::NeonI8mm: return isa_available(Isa::Neon) && (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
#endif
    default: return false;
  }
  return false;
}

Int8Isa best_int8_isa() noexcept {
  if (int8_isa_available(Int8Isa::Avx512Vnni)) return Int8Isa::Avx512Vnni;
  if (int8_isa_available(Int8Isa::Avx2)) return Int8Isa::Avx2;
  if (int8_isa_available(Int8Isa::NeonI8mm)) return Int8Isa::NeonI8mm;
  if (int8_isa_available(Int8Isa::NeonDot)) return Int8Isa::NeonDot;
  if (int8_isa_available(Int8Isa::Neon)) return Int8Isa::Neon;
  return Int8Isa::Scalar;
}

const Int8Kernels& int8_kernels_for(Int8Isa isa) {
  if (!int8_isa_available(isa)) {
    throw ValueError(std::string("backend: int8 kernels for ") + int8_isa_name(isa) +
                     " are not available on this CPU or in this build");
  }
  switch (isa) {
#if defined(EMBER_HAVE_X86_SIMD)
    case Int8Isa::Avx512Vnni: return int8_avx512::kInt8Table;
    case Int8Isa::Avx2: return int8_avx2::kInt8Table;
#endif
#if defined(EMBER_HAVE_NEON_SIMD)
    case Int8Isa::Neon: return int8_neon::kInt8Table;
    case Int8Isa::NeonDot: return int8_neon_dot::kInt8Table;
    case Int8Isa::NeonI8mm: return int8_neon_i8mm::kInt8Table;
#endif
    default: return int8_scalar::kInt8Table;
  }
}

const Int8Kernels& int8_kernels() {
  // The float tables' choice (EMBER_ISA included) caps the int8 one.
  static const Int8Kernels& chosen = [] () -> const Int8Kernels& {
    switch (kernels<float>().isa) {
      case Isa::Scalar: return int8_kernels_for(Int8Isa::Scalar);
      case Isa::Avx2: return int8_kernels_for(Int8Isa::Avx2);
      case Isa::Avx512: return int8_kernels_for(best_int8_isa());
      case Isa::Neon: return int8_kernels_for(best_int8_isa());
    }
    return int8_kernels_for(Int8Isa::Scalar);
  }();
  return chosen;
}

}  // namespace ember::backend
