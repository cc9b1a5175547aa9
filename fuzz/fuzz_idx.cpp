// libFuzzer target: IDX bytes, raw or gzip. Only ember::Error may escape.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ember/ember.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Declarations beyond what the fuzzer's memory limit allows are refused, not allocated.
  ember::data::set_max_decompressed_bytes(uint64_t(64) << 20);
  try {
    (void)ember::data::parse_idx(std::vector<uint8_t>(data, data + size), "fuzz");
  } catch (const ember::Error&) {
  }
  return 0;
}
