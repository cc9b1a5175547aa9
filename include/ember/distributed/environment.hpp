#pragma once
// The process group of a data-parallel run: every process started by mpirun is one rank.
//
//   int main(int argc, char** argv) {
//     ember::distributed::Environment env(argc, argv);   // MPI_Init_thread ... MPI_Finalize
//     if (ember::distributed::rank() == 0) std::cout << ember::distributed::world_size() << " ranks\n";
//   }
//
// Note [Distributed processes]
// ember talks to the other ranks through MPI (Open MPI from Debian), on a communicator of its own
// (a duplicate of MPI_COMM_WORLD), so a program's own MPI calls never match ember's. As in
// Horovod, one communication thread per process makes every MPI call after initialisation
// (MPI_THREAD_SERIALIZED): a collective is queued for it and runs with MPI's blocking, tuned
// algorithms while the calling thread goes on (the async forms) or sleeps until it is done.
// Collectives run in the order they were queued, so each rank must queue the same collectives in
// the same order, as with MPI itself; they may be called from any thread. A collective first
// compares what each rank passed (operation, dtype, shape, root and anything only that rank can
// check, such as the output's shape) in one small all-reduce, so tensors of different shapes or
// a root out of range raise DistributedError on every rank instead of hanging or writing past a
// buffer; the async forms raise it from wait(). A rank that leaves the Environment's
// scope with an exception in flight aborts the whole job (MPI_Abort) after printing which rank
// and why: the others may be waiting in a collective that rank will never join, and mpirun then
// stops them all. A collective still unfinished after the timeout (30 minutes, PyTorch's default;
// EMBER_DISTRIBUTED_TIMEOUT=seconds or set_timeout) means a rank has stopped or skipped it: the
// waiting rank prints which collective it waited for and aborts the job the same way, since the
// communication thread cannot be pulled out of MPI.
#include <chrono>
#include <string>

#include "ember/core/error.hpp"

namespace ember::distributed {

/// A collective called wrongly (before the Environment, after it, with tensors that differ
/// across ranks, a root out of range) or an error reported by MPI.
class DistributedError : public Error {
 public:
  explicit DistributedError(const std::string& message) : Error(message) {}
};

/// Initialises MPI for this process and finalizes it at scope exit. One per process: MPI cannot be
/// initialised again after it has been finalized.
class Environment {
 public:
  Environment();
  Environment(int& argc, char**& argv);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
};

/// True between an Environment's construction and its destruction.
bool is_initialized() noexcept;
/// This process's rank, 0 .. world_size() - 1 (DistributedError outside an Environment).
int rank();
/// The number of ranks.
int world_size();
/// This process's rank among the ranks on its machine (to pick a device or a core set).
int local_rank();
/// The number of ranks on this machine.
int local_world_size();

/// How long a rank waits for a collective before it aborts the job (Note [Distributed
/// processes]); ValueError unless positive.
void set_timeout(std::chrono::duration<double> timeout);
std::chrono::duration<double> timeout() noexcept;

}  // namespace ember::distributed
