// Int8 kernels for Int8Isa::NeonI8mm: smmla (the int8 matrix-multiply extension, ARMv8.6-A i8mm); compiled with its flags in CMakeLists.txt.
#define EMBER_INT8_NS int8_neon_i8mm
#define EMBER_INT8_NEON 3
#define EMBER_INT8_ISA Int8Isa::NeonI8mm
#include "int8_kernels.inl"
