// Int8 kernels for Int8Isa::Neon: widening multiplies (every ARMv8-A CPU).
#define EMBER_INT8_NS int8_neon
#define EMBER_INT8_NEON 1
#define EMBER_INT8_ISA Int8Isa::Neon
#include "int8_kernels.inl"
