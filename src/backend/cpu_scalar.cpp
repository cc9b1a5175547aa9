// CPU kernels for Isa::Scalar; the compile flags for this file are set in CMakeLists.txt.
#define EMBER_ISA_NS isa_scalar
#define EMBER_ISA_ENUM Isa::Scalar
#include "cpu_kernels.inl"
