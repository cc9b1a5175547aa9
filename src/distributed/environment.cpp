#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "context.hpp"
#include "ember/data/dataloader.hpp"
#include "ember/distributed/environment.hpp"

namespace ember::distributed {
namespace detail {

Context& context() {
  static Context ctx;
  return ctx;
}

Context& active_context(const char* op) {
  Context& ctx = context();
  if (!ctx.active) {
    throw DistributedError(std::string(op) + ": no ember::distributed::Environment is running" +
                           (ctx.ever_started ? " (it has ended)" : " (create one at the top of main)"));
  }
  return ctx;
}

void check_mpi(int code, const char* op, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw DistributedError(std::string(op) + ": " + call + " failed: " + std::string(text, static_cast<size_t>(length)));
}

}  // namespace detail

namespace {

void start(int* argc, char*** argv) {
  detail::Context& ctx = detail::context();
  std::lock_guard lock(ctx.mutex);
  if (ctx.ever_started) {
    throw DistributedError("Environment: one per process; MPI cannot be initialised again once finalized");
  }
  int already = 0;
  MPI_Initialized(&already);
  int provided = 0;
  if (!already) {
    // Gradient buckets are all-reduced with MPI_Iallreduce, for which Open MPI's libnbc picks a
    // binomial tree (reduce, then broadcast) by default: 2.3x slower than its ring for megabytes
    // on two ranks here (docs/distributed.md). The ring is the bandwidth-optimal algorithm the
    // cost model assumes. A value the user set wins; other MPI libraries ignore the variable.
    ::setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
  }
  if (already) {
    MPI_Query_thread(&provided);
  } else {
    detail::check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "Environment",
                      "MPI_Init_thread");
  }
  ctx.ever_started = true;
  ctx.owns_mpi = !already;
  if (provided < MPI_THREAD_SERIALIZED) {
    if (ctx.owns_mpi) MPI_Finalize();
    throw DistributedError("Environment: this MPI library offers thread level " + std::to_string(provided) +
                           ", ember needs MPI_THREAD_SERIALIZED (" + std::to_string(MPI_THREAD_SERIALIZED) + ")");
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &ctx.comm);
  MPI_Comm_set_errhandler(ctx.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(ctx.comm, &ctx.rank);
  MPI_Comm_size(ctx.comm, &ctx.size);
  MPI_Comm local = MPI_COMM_NULL;
  MPI_Comm_split_type(ctx.comm, MPI_COMM_TYPE_SHARED, ctx.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &ctx.local_rank);
  MPI_Comm_size(local, &ctx.local_size);
  MPI_Comm_free(&local);
  ctx.active = true;
  data::detail::set_process_group_query([](int64_t& r, int64_t& n) {
    r = detail::context().rank;
    n = detail::context().size;
  });
}

}  // namespace

Environment::Environment() { start(nullptr, nullptr); }
Environment::Environment(int& argc, char**& argv) { start(&argc, &argv); }

Environment::~Environment() {
  detail::Context& ctx = detail::context();
  if (std::uncaught_exceptions() > 0) {
    // The other ranks may be waiting in a collective this rank will never join; only ending the
    // whole job avoids a hang.
    std::fprintf(stderr, "ember::distributed: rank %d of %d is leaving with an exception in flight; aborting the job\n",
                 ctx.rank, ctx.size);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  data::detail::set_process_group_query(nullptr);
  std::lock_guard lock(ctx.mutex);
  ctx.active = false;
  MPI_Comm_free(&ctx.comm);
  if (ctx.owns_mpi) MPI_Finalize();
}

bool is_initialized() noexcept { return detail::context().active; }
int rank() { return detail::active_context("rank").rank; }
int world_size() { return detail::active_context("world_size").size; }
int local_rank() { return detail::active_context("local_rank").local_rank; }
int local_world_size() { return detail::active_context("local_world_size").local_size; }

}  // namespace ember::distributed
