// CPU kernels for Isa::Avx512; the compile flags for this file are set in CMakeLists.txt.
#define EMBER_ISA_NS isa_avx512
#define EMBER_ISA_ENUM Isa::Avx512
#include "cpu_kernels.inl"
