#pragma once
// ember::distributed: data-parallel training over MPI (the ember::distributed CMake target, built
// with EMBER_WITH_MPI): Environment, collectives on tensors, DistributedDataParallel,
// SyncBatchNorm and checkpoints (docs/distributed.md). data::DistributedSampler (in
// ember/data/dataloader.hpp) takes its rank and world size from the running Environment.
#include "ember/distributed/checkpoint.hpp"     // IWYU pragma: export
#include "ember/distributed/collectives.hpp"    // IWYU pragma: export
#include "ember/distributed/ddp.hpp"            // IWYU pragma: export
#include "ember/distributed/environment.hpp"    // IWYU pragma: export
#include "ember/distributed/sync_batch_norm.hpp"  // IWYU pragma: export
