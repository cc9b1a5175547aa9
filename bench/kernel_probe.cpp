// Runs one backend kernel a given number of times, for counting executed instructions where the
// CPU cannot be timed (tools/qemu_icount.py runs it under qemu-user on aarch64):
//   ember-kernel-probe gemm N REPS        N x N x N fp32 GEMM (2 N^3 flop per rep)
//   ember-kernel-probe int8 N REPS        N x N x N u8 x s8 GEMM (2 N^3 ops per rep)
//   ember-kernel-probe OP N REPS          unary OP (exp, tanh, gelu, sigmoid, relu) on N floats
// The table in use is the best for the CPU unless EMBER_ISA caps it; it is printed first. One thread.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ember/backend/int8_kernels.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/backend/parallel.hpp"

namespace {

int usage() {
  std::fprintf(stderr, "usage: ember-kernel-probe gemm|int8|exp|tanh|gelu|sigmoid|relu N REPS\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ember::backend;
  if (argc != 4) return usage();
  const std::string what = argv[1];
  const int64_t n = std::atoll(argv[2]);
  const int reps = std::atoi(argv[3]);
  if (n <= 0 || reps < 0) return usage();
  ember::set_num_threads(1);  // one instruction stream to count
  const Kernels<float>& k = kernels<float>();
  std::printf("isa %s int8 %s\n", isa_name(), int8_isa_name(int8_kernels().isa));
  const auto size = static_cast<size_t>(n);
  float checksum = 0;
  if (what == "gemm") {
    std::vector<float> a(size * size, 0.5f), b(size * size, 0.25f), c(size * size);
    for (int r = 0; r < reps; ++r) k.gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    checksum = c[size * size - 1];
  } else if (what == "int8") {
    std::vector<uint8_t> a(size * size, 3);
    std::vector<int8_t> w(size * size, -2), packed(static_cast<size_t>(int8_packed_size(n, n)));
    pack_int8_weights(n, n, w.data(), n, packed.data());
    std::vector<int32_t> c(size * size);
    for (int r = 0; r < reps; ++r) int8_kernels().gemm_u8s8(n, n, n, a.data(), n, packed.data(), c.data(), n);
    checksum = static_cast<float>(c[size * size - 1]);
  } else {
    Unary op;
    if (what == "exp") op = Unary::Exp;
    else if (what == "tanh") op = Unary::Tanh;
    else if (what == "gelu") op = Unary::Gelu;
    else if (what == "sigmoid") op = Unary::Sigmoid;
    else if (what == "relu") op = Unary::Relu;
    else return usage();
    std::vector<float> x(size), y(size);
    for (size_t i = 0; i < size; ++i) x[i] = -4.0f + 8.0f * static_cast<float>(i) / static_cast<float>(size);
    for (int r = 0; r < reps; ++r) k.unary(op, {}, n, x.data(), 1, y.data());
    checksum = y[size / 2];
  }
  std::printf("checksum %g\n", static_cast<double>(checksum));
  return 0;
}
