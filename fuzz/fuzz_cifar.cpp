// libFuzzer target: a CIFAR-10 binary batch. Only ember::Error may escape.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ember/ember.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)ember::data::parse_cifar10(std::vector<uint8_t>(data, data + size), "fuzz");
  } catch (const ember::Error&) {
  }
  return 0;
}
