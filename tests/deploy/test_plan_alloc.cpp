// Plan::run makes no heap allocation and takes no lock on one thread: counted by interposing
// glibc's allocation functions and pthread_mutex_lock in this test program (its own executable,
// so no other test runs with them). Sanitizers interpose the same functions: skipped there.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "ember/backend/parallel.hpp"
#include "ember/deploy.hpp"
#include "ember/nn.hpp"
#include "ember/ops/factory.hpp"
#include "ember/quant.hpp"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define EMBER_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EMBER_TEST_SANITIZED 1
#endif

#if !defined(EMBER_TEST_SANITIZED) && defined(__GLIBC__)
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0}, g_locks{0};
void count(std::atomic<long>& c) {
  if (g_counting.load(std::memory_order_relaxed)) c.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);

void* malloc(size_t n) {
  count(g_allocations);
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t s) {
  count(g_allocations);
  return __libc_calloc(n, s);
}
void* realloc(void* p, size_t n) {
  count(g_allocations);
  return __libc_realloc(p, n);
}
void* aligned_alloc(size_t a, size_t n) {
  count(g_allocations);
  return __libc_memalign(a, n);
}
void* memalign(size_t a, size_t n) {
  count(g_allocations);
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, size_t a, size_t n) {
  count(g_allocations);
  void* p = __libc_memalign(a, n);
  if (p == nullptr) return 12;  // ENOMEM
  *out = p;
  return 0;
}
int pthread_mutex_lock(pthread_mutex_t* m) {
  using Lock = int (*)(pthread_mutex_t*);
  static Lock real = reinterpret_cast<Lock>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
  count(g_locks);
  return real(m);
}
}
#define EMBER_TEST_COUNTS 1
#endif

namespace {

namespace nn = ember::nn;

#if defined(EMBER_TEST_COUNTS)
// The allocations and locks of two runs of `plan` on a thread that never ran a product before.
std::pair<long, long> count_runs(const ember::deploy::Plan& plan, const ember::Tensor<float>& x) {
  const ember::Tensor<float> y = ember::zeros<float>(plan.output_shape());
  std::vector<std::byte> storage(plan.arena_bytes() + 64);
  auto* base = storage.data();
  const std::span<std::byte> arena(base + (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64, plan.arena_bytes());
  std::thread fresh([&] {
    g_allocations = 0;
    g_locks = 0;
    g_counting = true;
    plan.run(x, y, arena);
    plan.run(x, y, arena);
    g_counting = false;
  });
  fresh.join();
  return {g_allocations.load(), g_locks.load()};
}
#endif

TEST(PlanRun, AllocatesNothingAndLocksNothingOnOneThread) {
#if !defined(EMBER_TEST_COUNTS)
  GTEST_SKIP() << "allocation counting needs glibc and no sanitizer";
#else
  ember::set_num_threads(1);
  // With a depthwise convolution (its kernels' scratch in the plan's arena too).
  auto model = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(), nn::MaxPool2d(2),
      nn::Conv2d(8, 8, 3, {.stride = 2, .padding = 1, .groups = 8}), nn::BasicBlock(8, 16, 2),
      nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(16, 10));
  model->eval();
  const ember::deploy::Plan plan = ember::deploy::compile(*model, {2, 1, 28, 28});
  const ember::Tensor<float> x = ember::randn<float>({2, 1, 28, 28});
  // On a thread that never ran a product before (compile ran the model on this one): its first
  // runs take nothing from the heap, the GEMM packing into the plan's arena.
  EXPECT_EQ(count_runs(plan, x), (std::pair<long, long>{0, 0}));
  // Compiled with two threads, a batch's samples split between two workers, each packing into
  // its own part of the scratch: run on one thread, still nothing.
  ember::set_num_threads(2);
  const ember::deploy::Plan split = ember::deploy::compile(*model, {2, 1, 28, 28});
  ember::set_num_threads(1);
  EXPECT_EQ(count_runs(split, x), (std::pair<long, long>{0, 0}));
  // The counters count: the convenience call allocates its output and arena.
  g_counting = true;
  (void)plan(x);
  g_counting = false;
  EXPECT_GT(g_allocations.load(), 0);
#endif
}

TEST(PlanRun, Int8PlansAllocateNothingEither) {
#if !defined(EMBER_TEST_COUNTS)
  GTEST_SKIP() << "allocation counting needs glibc and no sanitizer";
#else
  ember::set_num_threads(1);
  auto model = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 8, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2), nn::Conv2d(8, 16, 3, {.padding = 1}),
      nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(), nn::Linear(16 * 7 * 7, 32), nn::ReLU(), nn::Linear(32, 10));
  model->eval();
  const ember::Tensor<float> x = ember::randn<float>({2, 1, 28, 28});
  const ember::deploy::Plan static_plan = ember::deploy::compile(ember::quant::quantize(*model, {x}), {2, 1, 28, 28});
  EXPECT_EQ(count_runs(static_plan, x), (std::pair<long, long>{0, 0}));
  auto mlp = std::make_shared<nn::Sequential<float>>(nn::Flatten(), nn::Linear(784, 64), nn::ReLU(), nn::Linear(64, 10));
  mlp->eval();
  const ember::deploy::Plan dynamic_plan = ember::deploy::compile(ember::quant::quantize_dynamic(*mlp), {2, 1, 28, 28});
  EXPECT_EQ(count_runs(dynamic_plan, x), (std::pair<long, long>{0, 0}));
#endif
}

}  // namespace
