#pragma once
// Crash-safe training checkpoints: model, optimizer, scheduler, step and RNG state in one
// safetensors file, written atomically (a crash during a save leaves the previous checkpoint
// intact) and checked by a CRC-32 of its data before anything in it is used. Resuming from a
// checkpoint continues training bit for bit as if it had never stopped (same thread count).
//
//   ember::save_checkpoint("ckpt.safetensors", ember::make_checkpoint(net, sgd, &sched, step));
//   ...
//   int64_t step = ember::restore_checkpoint(ember::load_checkpoint("ckpt.safetensors"),
//                                            net, sgd, &sched);
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ember/core/generator.hpp"
#include "ember/nn/module.hpp"
#include "ember/optim/lr_scheduler.hpp"
#include "ember/optim/optimizer.hpp"

namespace ember {

struct Checkpoint {
  nn::StateDict model;
  optim::OptimizerState optimizer;
  std::map<std::string, double> scheduler;
  int64_t step = 0;
  Generator::State rng{};  // the default generator's state
  std::map<std::string, std::string> extra;
};

/// Writes `checkpoint` to `path` atomically; stale temporary files of earlier, killed saves of
/// the same path are removed first.
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
/// Reads and verifies a checkpoint (FormatError naming the file and the problem when its checksum,
/// format or contents do not check out; IOError when it cannot be read).
Checkpoint load_checkpoint(const std::string& path);
/// The same from the bytes of a checkpoint file (`source` names it in errors).
Checkpoint parse_checkpoint(const std::vector<uint8_t>& bytes, const std::string& source);

/// An optimizer's state on its own, as `torch::save(optimizer, path)` (a checkpoint file that
/// holds only the optimizer's state: atomic, checksummed, validated on load).
inline void save(const optim::OptimizerBase& optimizer, const std::string& path) {
  Checkpoint c;
  c.optimizer = optimizer.state_dict();
  save_checkpoint(path, c);
}
inline void load(optim::OptimizerBase& optimizer, const std::string& path) {
  optimizer.load_state_dict(load_checkpoint(path).optimizer);
}

/// Gathers the state of a training run (the default generator's state included).
template <FloatingElement T, class Optimizer>
Checkpoint make_checkpoint(const nn::Module<T>& model, const Optimizer& optimizer,
                           const optim::LRScheduler* scheduler, int64_t step) {
  Checkpoint c;
  c.model = model.state_dict();
  c.optimizer = optimizer.state_dict();
  if (scheduler) c.scheduler = scheduler->state_dict();
  c.step = step;
  c.rng = default_generator().state();
  return c;
}

/// Puts the state back into live objects built the same way; returns the step. All or nothing:
/// when any part does not fit (another model, another optimizer, a malformed scheduler state),
/// it throws and the model, optimizer and scheduler keep the state they had.
template <FloatingElement T, class Optimizer>
int64_t restore_checkpoint(const Checkpoint& c, nn::Module<T>& model, Optimizer& optimizer,
                           optim::LRScheduler* scheduler) {
  // Each load validates before it changes anything; the ones done before a failing one are
  // rolled back (the model's goes last: it needs no copy).
  const optim::OptimizerState optimizer_before = optimizer.state_dict();
  const std::map<std::string, double> scheduler_before =
      scheduler ? scheduler->state_dict() : std::map<std::string, double>{};
  optimizer.load_state_dict(c.optimizer);
  try {
    if (scheduler) scheduler->load_state_dict(c.scheduler);
    try {
      model.load_state_dict(c.model, /*strict=*/true);
    } catch (...) {
      if (scheduler) scheduler->load_state_dict(scheduler_before);
      throw;
    }
  } catch (...) {
    optimizer.load_state_dict(optimizer_before);
    throw;
  }
  default_generator().set_state(c.rng);
  return c.step;
}

}  // namespace ember
