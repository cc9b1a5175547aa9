// libFuzzer target: safetensors bytes parsed, then loaded into a small model by ember::load and
// by prune::load_sparse. Only ember::Error
// may escape the parser and the loader; anything else (a crash, a sanitizer report, another
// exception, a huge allocation) is a finding.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ember/ember.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    (void)ember::io::parse_safetensors(bytes, "fuzz");
    // ember::load as a user calls it: strict, then lenient, with float/double conversion.
    for (bool strict : {true, false}) {
      ember::nn::Sequential<double> net(ember::nn::Linear<double>(2, 3), ember::nn::ReLU<double>(),
                                        ember::nn::Linear<double>(3, 2));
      try {
        ember::load(net, bytes, "fuzz", strict);
      } catch (const ember::Error&) {
        continue;
      }
      (void)net(ember::ones<double>({1, 2}));
    }
    // The sparse format of pruned models (Note [Sparse files]) on the same bytes.
    for (bool strict : {true, false}) {
      ember::nn::Sequential<float> net(ember::nn::Linear(2, 3), ember::nn::ReLU(), ember::nn::Linear(3, 2));
      try {
        ember::prune::load_sparse(net, bytes, "fuzz", strict);
      } catch (const ember::Error&) {
        continue;
      }
      (void)net(ember::ones<float>({1, 2}));
    }
  } catch (const ember::Error&) {
  }
  return 0;
}
