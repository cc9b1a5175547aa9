#pragma once
// The MPI state behind ember::distributed (Note [Distributed processes]), shared by its sources.
#include <mpi.h>

#include <mutex>
#include <string>

#include "ember/distributed/environment.hpp"

namespace ember::distributed::detail {

struct Context {
  // Every MPI call is made holding this lock (MPI_THREAD_SERIALIZED).
  std::mutex mutex;
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  bool active = false;
  bool ever_started = false;  // MPI cannot be initialised twice in a process
  bool owns_mpi = false;      // false when the program had initialised MPI itself
};

Context& context();

/// The context of the running Environment; DistributedError naming `op` outside one.
Context& active_context(const char* op);

/// Throws DistributedError naming `op` and MPI's description of `code` unless it is MPI_SUCCESS.
void check_mpi(int code, const char* op, const char* call);

}  // namespace ember::distributed::detail

#include <functional>
#include <memory>

#include "ember/distributed/collectives.hpp"

namespace ember::distributed::detail {

struct WorkState {
  const char* op = "";
  MPI_Request request = MPI_REQUEST_NULL;
  std::function<void()> finish;  // once the request has completed: write back, divide for Avg
  bool done = false;
};

/// Starts an all-reduce of `t` (any layout). With `agree`, the ranks first compare dtype and
/// shape (a DistributedError on every rank when they differ); without, the caller knows they
/// agree (DistributedDataParallel's buckets).
template <Element T>
Work start_all_reduce(const Tensor<T>& t, ReduceOp op, const char* name, bool agree);

}  // namespace ember::distributed::detail
