// Int8 kernels for Int8Isa::NeonDot: sdot (the dot-product extension, ARMv8.2-A+dotprod); compiled with its flags in CMakeLists.txt.
#define EMBER_INT8_NS int8_neon_dot
#define EMBER_INT8_NEON 2
#define EMBER_INT8_ISA Int8Isa::NeonDot
#include "int8_kernels.inl"
