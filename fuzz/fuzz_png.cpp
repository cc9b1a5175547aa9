// libFuzzer target: ember-run's PNG decoder (examples/run/png_reader.hpp), on the bytes as they
// come and with every chunk's CRC made right (else mutations stop at the first CRC). Only
// ember::Error may escape; a crash, a sanitizer report, another exception or a huge allocation is
// a finding.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../examples/run/png_reader.hpp"
#include "ember/core/error.hpp"

namespace {

void decode(std::span<const uint8_t> bytes) {
  for (int channels : {1, 3}) {
    try {
      (void)ember::run::decode_png(bytes, channels, "fuzz");
    } catch (const ember::Error&) {
    }
  }
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  decode({data, size});
  std::vector<uint8_t> fixed(data, data + size);
  for (size_t at = 8; at + 12 <= fixed.size();) {
    const uint32_t length = be32(fixed.data() + at);
    if (length > fixed.size() - at - 12) break;
    const auto crc = static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), fixed.data() + at + 4, length + 4));
    uint8_t* c = fixed.data() + at + 8 + length;
    c[0] = static_cast<uint8_t>(crc >> 24);
    c[1] = static_cast<uint8_t>(crc >> 16);
    c[2] = static_cast<uint8_t>(crc >> 8);
    c[3] = static_cast<uint8_t>(crc);
    at += 12 + length;
  }
  decode(fixed);
  return 0;
}
