// Int8 kernels for Int8Isa::Scalar.
#define EMBER_INT8_NS int8_scalar
#define EMBER_INT8_LEVEL 0
#define EMBER_INT8_ISA Int8Isa::Scalar
#include "int8_kernels.inl"
