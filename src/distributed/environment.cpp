#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <thread>

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

void abort_job(const std::string& why) {
  const Context& ctx = context();
  std::fprintf(stderr, "ember::distributed: rank %d of %d %s; aborting the job\n", ctx.rank, ctx.size, why.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return
}

void check_mpi(int code, const char* op, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw DistributedError(std::string(op) + ": " + call + " failed: " + std::string(text, static_cast<size_t>(length)));
}

Work submit(std::shared_ptr<WorkState> state) {
  Context& ctx = context();
  {
    std::lock_guard lock(ctx.mutex);
    if (!ctx.active) {
      throw DistributedError(std::string(state->op) + ": no ember::distributed::Environment is running" +
                             (ctx.ever_started ? " (it has ended)" : " (create one at the top of main)"));
    }
    ctx.queue.push_back(state);
  }
  ctx.queued.notify_one();
  return Work(std::move(state));
}

namespace {

// The communication thread: runs the queued collectives one after another, in the order they were
// queued, which is every rank's program order.
void communicate(Context& ctx) {
  for (;;) {
    std::shared_ptr<WorkState> work;
    {
      std::unique_lock lock(ctx.mutex);
      ctx.queued.wait(lock, [&] { return ctx.stopping || !ctx.queue.empty(); });
      if (ctx.queue.empty()) return;  // stopping, and nothing left
      work = std::move(ctx.queue.front());
      ctx.queue.pop_front();
    }
    work->started = std::chrono::steady_clock::now();
    try {
      work->run();
    } catch (...) {
      work->error = std::current_exception();
    }
    work->ended = std::chrono::steady_clock::now();
    // The waiting side keeps the last reference, so what the collective holds (its buffers, an
    // exception the waiter may be reading) is released on that thread. Our reference is dropped
    // while we hold the lock: the waiter cannot return (it needs the lock) and keeps the state,
    // mutex included, alive until we let go.
    WorkState* state = work.get();
    std::unique_lock lock(state->mutex);
    state->done.store(true, std::memory_order_release);
    state->finished.notify_all();
    work.reset();
    lock.unlock();
  }
}

}  // namespace
}  // namespace detail

namespace {

void start(int* argc, char*** argv) {
  detail::Context& ctx = detail::context();
  std::unique_lock lock(ctx.mutex);
  if (ctx.ever_started) {
    throw DistributedError("Environment: one per process; MPI cannot be initialised again once finalized");
  }
  int already = 0;
  MPI_Initialized(&already);
  int provided = 0;
  if (!already) {
    // The communication thread waits inside blocking collectives while the training thread
    // computes, often on the same core: Open MPI's waiting loop should then yield the core rather
    // than spin on it. A value the user set wins; other MPI libraries ignore the variable.
    ::setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
  }
  if (already) {
    MPI_Query_thread(&provided);
  } else {
    detail::check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "Environment",
                      "MPI_Init_thread");
  }
  ctx.ever_started = true;
  ctx.owns_mpi = !already;
  if (const char* text = std::getenv("EMBER_DISTRIBUTED_TIMEOUT"); text != nullptr) {
    char* end = nullptr;
    const double seconds = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(seconds > 0) || !std::isfinite(seconds)) {
      if (ctx.owns_mpi) MPI_Finalize();
      throw DistributedError(std::string("Environment: EMBER_DISTRIBUTED_TIMEOUT='") + text +
                             "' is not a positive number of seconds");
    }
    ctx.timeout_seconds.store(seconds);
  }
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
  ctx.stopping = false;
  lock.unlock();
  ctx.communicator = std::thread(detail::communicate, std::ref(ctx));
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
    detail::abort_job("is leaving with an exception in flight");
  }
  data::detail::set_process_group_query(nullptr);
  {
    std::lock_guard lock(ctx.mutex);
    ctx.active = false;
    ctx.stopping = true;
  }
  ctx.queued.notify_one();
  ctx.communicator.join();  // after the collectives already queued
  MPI_Comm_free(&ctx.comm);
  if (ctx.owns_mpi) MPI_Finalize();
}

bool is_initialized() noexcept { return detail::context().active; }

void set_timeout(std::chrono::duration<double> t) {
  if (!(t.count() > 0) || !std::isfinite(t.count())) {
    throw ValueError("distributed::set_timeout: the timeout must be positive, got " + std::to_string(t.count()) + " s");
  }
  detail::context().timeout_seconds.store(t.count());
}

std::chrono::duration<double> timeout() noexcept {
  return std::chrono::duration<double>(detail::context().timeout_seconds.load());
}
int rank() { return detail::active_context("rank").rank; }
int world_size() { return detail::active_context("world_size").size; }
int local_rank() { return detail::active_context("local_rank").local_rank; }
int local_world_size() { return detail::active_context("local_world_size").local_size; }

}  // namespace ember::distributed
