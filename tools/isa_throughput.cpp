// Reciprocal throughput of the AVX-512 instructions the int8 and float convolution kernels are
// made of, each in twelve independent chains (never latency bound), and of mixes of two, in
// nanoseconds per instruction: which ones share execution pipes on this CPU. Not part of the build:
//   g++ -O2 -march=native tools/isa_throughput.cpp -o /tmp/isa_throughput && /tmp/isa_throughput
#include <chrono>
#include <cstdio>

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
// Twelve instructions writing zmm4..zmm15 (or ymm), reading zmm1 and zmm2: "OP SRC, DST".
#define EMBER_ON(op, a, r) op " " a "%%" r "4\n" op " " a "%%" r "5\n" op " " a "%%" r "6\n" op " " a "%%" r "7\n" \
  op " " a "%%" r "8\n" op " " a "%%" r "9\n" op " " a "%%" r "10\n" op " " a "%%" r "11\n" op " " a "%%" r "12\n" \
  op " " a "%%" r "13\n" op " " a "%%" r "14\n" op " " a "%%" r "15\n"
// Six of each of two instructions, alternating, on zmm4..zmm15.
#define EMBER_MIX(op1, a1, op2, a2) op1 " " a1 "%%zmm4\n" op2 " " a2 "%%zmm5\n" op1 " " a1 "%%zmm6\n" \
  op2 " " a2 "%%zmm7\n" op1 " " a1 "%%zmm8\n" op2 " " a2 "%%zmm9\n" op1 " " a1 "%%zmm10\n" op2 " " a2 "%%zmm11\n" \
  op1 " " a1 "%%zmm12\n" op2 " " a2 "%%zmm13\n" op1 " " a1 "%%zmm14\n" op2 " " a2 "%%zmm15\n"

constexpr long kIterations = 20000000;
alignas(64) int g_memory[16] = {1, 2, 3, 4};

#define EMBER_TIME(name, body)                                                                               \
  {                                                                                                          \
    long n = kIterations;                                                                                    \
    const auto t0 = std::chrono::steady_clock::now();                                                        \
    __asm__ volatile("vpxord %%zmm1, %%zmm1, %%zmm1\n vpxord %%zmm2, %%zmm2, %%zmm2\n 1:\n" body             \
                     "dec %0\n jnz 1b\n"                                                                     \
                     : "+r"(n)                                                                               \
                     : "r"(g_memory)                                                                         \
                     : "zmm1", "zmm2", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8", "zmm9", "zmm10", "zmm11",     \
                       "zmm12", "zmm13", "zmm14", "zmm15", "cc", "memory");                                  \
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count(); \
    std::printf("%-36s %.3f ns\n", name, ns / (12.0 * kIterations));                                         \
  }

int main() {
  std::printf("nanoseconds per instruction, twelve independent chains\n");
  for (int round = 0; round < 2; ++round) {
    EMBER_TIME("vfmadd231ps zmm", EMBER_ON("vfmadd231ps", "%%zmm1, %%zmm2, ", "zmm"))
    EMBER_TIME("vfmadd231ps ymm", EMBER_ON("vfmadd231ps", "%%ymm1, %%ymm2, ", "ymm"))
    EMBER_TIME("vpdpbusd zmm", EMBER_ON("vpdpbusd", "%%zmm1, %%zmm2, ", "zmm"))
    EMBER_TIME("vpdpbusd zmm, m32bcst", EMBER_ON("vpdpbusd", "(%1)%{1to16%}, %%zmm2, ", "zmm"))
    EMBER_TIME("vpbroadcastd zmm, m32", EMBER_ON("vpbroadcastd", "(%1), ", "zmm"))
    EMBER_TIME("vcvtdq2ps zmm", EMBER_ON("vcvtdq2ps", "%%zmm2, ", "zmm"))
    EMBER_TIME("vmulps zmm", EMBER_ON("vmulps", "%%zmm1, %%zmm2, ", "zmm"))
    EMBER_TIME("vpackssdw zmm", EMBER_ON("vpackssdw", "%%zmm1, %%zmm2, ", "zmm"))
    EMBER_TIME("vpermd zmm", EMBER_ON("vpermd", "%%zmm1, %%zmm2, ", "zmm"))
    EMBER_TIME("vpminub zmm", EMBER_ON("vpminub", "%%zmm1, %%zmm2, ", "zmm"))
    EMBER_TIME("vpdpbusd + vcvtdq2ps zmm", EMBER_MIX("vpdpbusd", "%%zmm1, %%zmm2, ", "vcvtdq2ps", "%%zmm2, "))
    EMBER_TIME("vpdpbusd + vpackssdw zmm", EMBER_MIX("vpdpbusd", "%%zmm1, %%zmm2, ", "vpackssdw", "%%zmm1, %%zmm2, "))
    EMBER_TIME("vpdpbusd + vpminub zmm", EMBER_MIX("vpdpbusd", "%%zmm1, %%zmm2, ", "vpminub", "%%zmm1, %%zmm2, "))
    EMBER_TIME("vpdpbusd + vpbroadcastd m32", EMBER_MIX("vpdpbusd", "%%zmm1, %%zmm2, ", "vpbroadcastd", "(%1), "))
    EMBER_TIME("vcvtdq2ps + vmulps zmm", EMBER_MIX("vcvtdq2ps", "%%zmm2, ", "vmulps", "%%zmm1, %%zmm2, "))
    EMBER_TIME("vpackssdw + vpminub zmm", EMBER_MIX("vpackssdw", "%%zmm1, %%zmm2, ", "vpminub", "%%zmm1, %%zmm2, "))
    std::printf("\n");
  }
}
#else
int main() { std::printf("isa_throughput needs AVX-512 VNNI (build with -march=native on such a CPU)\n"); }
#endif
