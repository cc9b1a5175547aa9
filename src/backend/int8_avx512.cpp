// Int8 kernels for Int8Isa::Avx512Vnni; the compile flags for this file are set in CMakeLists.txt.
#define EMBER_INT8_NS int8_avx512
#define EMBER_INT8_LEVEL 2
#define EMBER_INT8_ISA Int8Isa::Avx512Vnni
#include "int8_kernels.inl"
