// CPU kernels for Isa::Avx2; the compile flags for this file are set in CMakeLists.txt.
#define EMBER_ISA_NS isa_avx2
#define EMBER_ISA_ENUM Isa::Avx2
#include "cpu_kernels.inl"
