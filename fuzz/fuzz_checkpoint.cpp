// libFuzzer target: checkpoint bytes parsed, restored into a fixed model with each optimizer and a
// scheduler, then one training step. Only ember::Error may escape.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ember/ember.hpp"
#include "fuzz_model.hpp"

namespace {

template <class Optimizer>
void restore_and_step(const ember::Checkpoint& c, Optimizer& (*make)(ember::nn::Module<float>&)) {
  ember::fuzz::Model m;
  Optimizer& opt = make(m.net);
  ember::optim::StepLR sched(opt, 2, 0.5);
  try {
    ember::restore_checkpoint(c, m.net, opt, &sched);
  } catch (const ember::Error&) {
    return;
  }
  m.step(opt);
  sched.step();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  ember::Checkpoint c;
  try {
    c = ember::parse_checkpoint(bytes, "fuzz");
  } catch (const ember::Error&) {
    return 0;
  }
  using namespace ember::fuzz;
  restore_and_step<ember::optim::SGD<float>>(c, &make_sgd);
  restore_and_step<ember::optim::Adam<float>>(c, &make_adam);
  restore_and_step<ember::optim::Adam<float>>(c, &make_adamw);
  restore_and_step<ember::optim::RMSprop<float>>(c, &make_rmsprop);
  restore_and_step<ember::optim::Adagrad<float>>(c, &make_adagrad);
  return 0;
}
