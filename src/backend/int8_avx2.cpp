// Int8 kernels for Int8Isa::Avx2; the compile flags for this file are set in CMakeLists.txt.
#define EMBER_INT8_NS int8_avx2
#define EMBER_INT8_LEVEL 1
#define EMBER_INT8_ISA Int8Isa::Avx2
#include "int8_kernels.inl"
