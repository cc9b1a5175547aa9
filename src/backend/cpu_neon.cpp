// CPU kernels for Isa::Neon (aarch64 Advanced SIMD, part of every ARMv8-A CPU): the packet
// kernels on 128-bit q registers and the GEMM with fmla by element.
#define EMBER_NEON_PACKETS 1
#define EMBER_ISA_NS isa_neon
#define EMBER_ISA_ENUM Isa::Neon
#include "cpu_kernels.inl"
