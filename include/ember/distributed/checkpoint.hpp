#pragma once
// Checkpoints in a data-parallel run. The ranks hold the same weights and optimizer state (their
// gradients are averaged), so one file describes the run: rank 0 writes it, every rank can read
// it, and since nothing in it depends on the number of ranks, a run can resume on another number
// of ranks (keep the whole batch the same and it continues as it would have).
//
//   if (step % 1000 == 0)
//     distributed::save_checkpoint("ckpt.safetensors", make_checkpoint(model, opt, &sched, step));
//   ...
//   int64_t step = restore_checkpoint(distributed::load_checkpoint("ckpt.safetensors"), model, opt, &sched);
#include <string>

#include "ember/io/checkpoint.hpp"

namespace ember::distributed {

/// Rank 0 writes `checkpoint` to `path` (atomically, as ember::save_checkpoint); every rank calls
/// it and returns once the file is complete, or throws IOError with rank 0's reason when it could
/// not be written, so that no rank goes on believing it was.
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
/// Every rank reads and verifies `path`; when any rank cannot, every rank throws IOError naming
/// the ranks and their reasons (a file missing on one machine stops the whole run cleanly). The
/// checkpoint holds every rank's default generator: `rng` is this rank's own (so dropout and
/// augmentation go on as they would have), or rank 0's for a rank the saving run did not have.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace ember::distributed
