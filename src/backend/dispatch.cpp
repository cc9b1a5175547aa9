// Picks the kernel table for this CPU once, at first use.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "ember/core/error.hpp"
#include "depthwise_layout.hpp"
#include "tables.hpp"

#if defined(EMBER_HAVE_NEON_SIMD)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#endif

namespace ember::backend {

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
  }
  return "unknown";
}

const char* isa_name() noexcept { return isa_name(kernels<float>().isa); }

namespace {
constexpr Isa kAllIsas[kIsaCount] = {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon};
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
#endif
#if defined(EMBER_HAVE_NEON_SIMD)
    case Isa::Neon: return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#endif
    default: return false;
  }
  return false;
}

const char* entry_name(Entry e) noexcept {
  switch (e) {
#define EMBER_ENTRY_NAME(name) \
  case Entry::name: return #name;
    EMBER_KERNEL_ENTRIES(EMBER_ENTRY_NAME)
#undef EMBER_ENTRY_NAME
    case Entry::Count: break;
  }
  return "unknown";
}

bool entry_optional(Entry e) noexcept {
  return e == Entry::conv_flat || e == Entry::conv_flat_images || e == Entry::conv_flat_weight_grad ||
         e == Entry::conv_winograd_weights || e == Entry::conv_winograd || e == Entry::conv_winograd_weight_grad;
}

int64_t conv_flat_strided_images(const ConvShape& s, int64_t m, int64_t n) {
  constexpr int64_t kTargetPixels = 256, kMaxScratch = int64_t(1) << 18;
  const int64_t hp = (s.h + 1) / 2, hw = s.ho * s.wo;
  if (s.ho != hp || n <= 1) return 1;  // side by side only when the phase planes are as large as the output
  const int64_t per_image = 4 * s.c * hp * s.wo + m * hw;
  int64_t images = (kTargetPixels + hw - 1) / hw;
  if (images > kMaxScratch / per_image) images = kMaxScratch / per_image;
  return images < 1 ? 1 : images > n ? n : images;
}
int64_t conv_flat_strided_scratch(const ConvShape& s, int64_t m, int64_t images) {
  const int64_t phases = 4 * s.c * ((s.h + 1) / 2) * ((s.w + 1) / 2);
  return images * phases + (images > 1 ? images * m * s.ho * s.wo : 0);
}

int64_t conv_winograd_tiles(const ConvShape& s, int64_t m) {
  const int64_t tw = std::max<int64_t>((s.wo + 1) / 2, 1);
  const int64_t target = std::clamp<int64_t>((int64_t(1) << 17) / std::max<int64_t>(s.c + m, 1), 64, 512);
  return std::max<int64_t>(1, target / tw) * tw;
}
int64_t conv_winograd_scratch(const ConvShape& s, int64_t m, bool weight_grad) {
  const int64_t ldv = conv_winograd_tiles(s, m) + kConvWinogradSlack;
  return (weight_grad ? conv_winograd_weights_size(m, s.c) : 0) + 16 * (s.c + m) * ldv;
}

int64_t conv_depthwise_scratch(const ConvShape& s) {
  const DepthwiseLayout<16> g(s);  // the widest vectors (AVX-512's floats) take the most
  return std::max({g.forward_scratch(), g.weight_grad_scratch(), g.input_grad_scratch()});
}

template <class T>
Kernels<T> complete_with(Kernels<T> table, const Kernels<T>& reference) noexcept {
  static_assert(static_cast<unsigned>(Entry::Count) <= 64, "Kernels::own has 64 bits");
  table.own = 0;
#define EMBER_ENTRY_FILL(name)                                       \
  if (table.name != nullptr) {                                       \
    table.own |= uint64_t(1) << static_cast<unsigned>(Entry::name);  \
  } else {                                                           \
    table.name = reference.name;                                     \
  }
  EMBER_KERNEL_ENTRIES(EMBER_ENTRY_FILL)
#undef EMBER_ENTRY_FILL
  return table;
}
template Kernels<float> complete_with(Kernels<float>, const Kernels<float>&) noexcept;
template Kernels<double> complete_with(Kernels<double>, const Kernels<double>&) noexcept;

namespace detail {
BorrowedWorkspace& borrowed_gemm_workspace() noexcept {
  thread_local BorrowedWorkspace w;
  return w;
}
}  // namespace detail

GemmWorkspace::GemmWorkspace(std::byte* buffer, size_t bytes) noexcept {
  detail::BorrowedWorkspace& w = detail::borrowed_gemm_workspace();
  previous_ = w.data;
  previous_bytes_ = w.bytes;
  w = {buffer, bytes, 0};
}
GemmWorkspace::~GemmWorkspace() { detail::borrowed_gemm_workspace() = {previous_, previous_bytes_, 0}; }

Isa best_isa() noexcept {
  if (isa_available(Isa::Avx512)) return Isa::Avx512;
  if (isa_available(Isa::Avx2)) return Isa::Avx2;
  if (isa_available(Isa::Neon)) return Isa::Neon;
  return Isa::Scalar;
}

namespace {

template <class T>
const Kernels<T>& isa_table(Isa isa) {
  if constexpr (std::is_same_v<T, float>) {
    switch (isa) {
#if defined(EMBER_HAVE_X86_SIMD)
      case Isa::Avx512: return isa_avx512::kTableF32;
      case Isa::Avx2: return isa_avx2::kTableF32;
#endif
#if defined(EMBER_HAVE_NEON_SIMD)
      case Isa::Neon: return isa_neon::kTableF32;
#endif
      default: return isa_scalar::kTableF32;
    }
  } else {
    switch (isa) {
#if defined(EMBER_HAVE_X86_SIMD)
      case Isa::Avx512: return isa_avx512::kTableF64;
      case Isa::Avx2: return isa_avx2::kTableF64;
#endif
#if defined(EMBER_HAVE_NEON_SIMD)
      case Isa::Neon: return isa_neon::kTableF64;
#endif
      default: return isa_scalar::kTableF64;
    }
  }
}

// Every ISA's table completed from the scalar one, once (Note [Kernel table by name]).
template <class T>
const Kernels<T>& table_of(Isa isa) {
  static const auto completed = [] {
    std::array<Kernels<T>, kIsaCount> t{};
    const Kernels<T>& scalar = isa_table<T>(Isa::Scalar);
    for (Isa i : kAllIsas) {
      t[static_cast<size_t>(i)] = complete_with(isa_table<T>(i), scalar);
    }
    return t;
  }();
  return completed[static_cast<size_t>(isa)];
}

// EMBER_ISA lets a user (or a test run) cap the instruction set, e.g. to compare paths.
Isa chosen_isa() {
  Isa best = best_isa();
  const char* env = std::getenv("EMBER_ISA");
  if (env == nullptr || *env == '\0') return best;
  for (Isa isa : kAllIsas) {
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
