// libFuzzer target: plan file bytes (ember::deploy::parse, Note [Plan file]), as they come and
// with their CRC-32 made right (else nearly every mutation stops at the checksum and the checks
// behind it go untested); a plan that parses is run once on zeros. Only ember::Error may escape;
// a crash, a sanitizer report, another exception or a huge allocation is a finding.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "ember/ember.hpp"

namespace {

void parse_and_run(std::span<const uint8_t> bytes) {
  try {
    const ember::deploy::Plan plan = ember::deploy::parse(bytes, "fuzz");
    // A valid file may still ask for more than a fuzzing run should spend.
    if (plan.input_shape().numel() > (1 << 16) || plan.output_shape().numel() > (1 << 16) ||
        plan.arena_bytes() > (size_t(16) << 20)) {
      return;
    }
    const auto x = ember::zeros<float>(plan.input_shape());
    const auto y = ember::zeros<float>(plan.output_shape());
    std::vector<std::byte> storage(plan.arena_bytes() + 64);
    std::byte* base = storage.data();
    base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
    plan.run(x, y, std::span<std::byte>(base, plan.arena_bytes()));
  } catch (const ember::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parse_and_run({data, size});
  if (size >= 4) {
    std::vector<uint8_t> fixed(data, data + size);
    const auto crc = static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), fixed.data(), static_cast<uInt>(size - 4)));
    std::memcpy(fixed.data() + size - 4, &crc, 4);
    parse_and_run(fixed);
  }
  return 0;
}
