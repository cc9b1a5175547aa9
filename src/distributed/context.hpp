#pragma once
// The MPI state behind ember::distributed (Note [Distributed processes]), shared by its sources.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "ember/distributed/collectives.hpp"
#include "ember/distributed/environment.hpp"

namespace ember::distributed::detail {

/// One collective: `run` makes its MPI calls on the communication thread; `finish` writes the
/// result back on the thread that waits for it.
struct WorkState {
  const char* op = "";
  std::function<void()> run;
  std::function<void()> finish;
  std::mutex mutex;
  std::condition_variable finished;
  std::atomic<bool> done{false};
  std::exception_ptr error;
  bool reported = false;  // finish ran or the error was thrown, once
  // When the communication thread started and ended `run` (read once `done`).
  std::chrono::steady_clock::time_point started, ended;
};

struct Context {
  std::mutex mutex;  // the queue and the flags below
  std::condition_variable queued;
  std::deque<std::shared_ptr<WorkState>> queue;
  std::thread communicator;
  bool stopping = false;
  MPI_Comm comm = MPI_COMM_NULL;  // used by the communication thread only, once started
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  std::atomic<bool> active{false};  // read without the lock by active_context
  bool ever_started = false;  // MPI cannot be initialised twice in a process
  bool owns_mpi = false;      // false when the program had initialised MPI itself
  std::atomic<double> timeout_seconds{1800.0};
};

Context& context();

/// The context of the running Environment; DistributedError naming `op` outside one.
Context& active_context(const char* op);

/// Throws DistributedError naming `op` and MPI's description of `code` unless it is MPI_SUCCESS.
void check_mpi(int code, const char* op, const char* call);

/// Prints why on stderr, naming this rank, and ends the whole job (MPI_Abort).
[[noreturn]] void abort_job(const std::string& why);

/// Queues `state` for the communication thread, behind every collective queued before it.
Work submit(std::shared_ptr<WorkState> state);

/// Starts an all-reduce of `t` (any layout). With `agree`, the ranks first compare dtype and
/// shape (a DistributedError on every rank when they differ); without, the caller knows they
/// agree (DistributedDataParallel's buckets).
template <Element T>
Work start_all_reduce(const Tensor<T>& t, ReduceOp op, const char* name, bool agree);

}  // namespace ember::distributed::detail
