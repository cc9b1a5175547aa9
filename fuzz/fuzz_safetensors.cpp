// libFuzzer target: safetensors bytes parsed, then loaded into a small model. Only ember::Error
// may escape the parser and the loader; anything else (a crash, a sanitizer report, another
// exception, a huge allocation) is a finding.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ember/ember.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    ember::io::SafetensorsFile file = ember::io::parse_safetensors(bytes, "fuzz");
    ember::nn::Sequential<float> net(ember::nn::Linear(2, 3), ember::nn::ReLU(), ember::nn::Linear(3, 2));
    net.load_state_dict(file.tensors, /*strict=*/false);
    (void)net(ember::ones<float>({1, 2}));
  } catch (const ember::Error&) {
  }
  return 0;
}
