// Checkpoints: bit-identical resume, corruption detected by checksum, and saves killed at random
// moments never leave a broken checkpoint behind.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <thread>

#include "ember/ember.hpp"

extern char** environ;

namespace ember {
namespace {

namespace nn = ember::nn;

std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("ember_ckpt_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::create_directories(dir);
  return dir.string();
}

struct TrainingRun {
  nn::Sequential<float> net{nn::Linear(6, 16), nn::ReLU(), nn::Dropout(0.2), nn::Linear(16, 3)};
  optim::SGD<float> sgd{net.parameters(), {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3}};
  optim::StepLR sched{sgd, 3, 0.5};

  // One step on a batch drawn from the default generator (so the RNG state matters).
  void step() {
    auto x = randn<float>({8, 6});
    auto y = randint<int64_t>(0, 3, {8});
    sgd.zero_grad();
    nn::functional::cross_entropy(net(x), y).backward();
    sgd.step();
    sched.step();
  }
};

std::vector<std::vector<float>> weights(const nn::Module<float>& m) {
  std::vector<std::vector<float>> out;
  for (auto& p : m.parameters()) out.push_back(p.to_vector());
  return out;
}

TEST(Checkpoint, ResumeIsBitIdentical) {
  const std::string path = temp_dir("resume") + "/ckpt.safetensors";
  manual_seed(11);
  TrainingRun a;
  for (int i = 0; i < 5; ++i) a.step();
  save_checkpoint(path, make_checkpoint(a.net, a.sgd, &a.sched, 5));
  for (int i = 5; i < 12; ++i) a.step();

  manual_seed(999);  // a different state, overwritten by the checkpoint
  TrainingRun b;
  const int64_t step = restore_checkpoint(load_checkpoint(path), b.net, b.sgd, &b.sched);
  EXPECT_EQ(step, 5);
  for (int i = 5; i < 12; ++i) b.step();
  EXPECT_EQ(weights(a.net), weights(b.net));
  EXPECT_EQ(a.sgd.lr(0), b.sgd.lr(0));
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

TEST(Checkpoint, CorruptionIsDetected) {
  const std::string dir = temp_dir("corrupt");
  const std::string path = dir + "/ckpt.safetensors";
  TrainingRun r;
  r.step();
  Checkpoint c = make_checkpoint(r.net, r.sgd, &r.sched, 1);
  c.extra["note"] = "hello";
  save_checkpoint(path, c);
  EXPECT_EQ(load_checkpoint(path).extra.at("note"), "hello");
  auto bytes = io::read_file(path);
  auto flipped = bytes;
  flipped[flipped.size() - 5] ^= 0x10;  // a weight byte
  io::write_file_atomically(path, flipped);
  try {
    load_checkpoint(path);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
  }
  std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2));
  io::write_file_atomically(path, cut);
  EXPECT_THROW(load_checkpoint(path), FormatError);
  io::write_safetensors(path, r.net.state_dict());  // a model file, not a checkpoint
  EXPECT_THROW(load_checkpoint(path), FormatError);
  EXPECT_THROW(load_checkpoint(dir + "/missing.safetensors"), IOError);
  // A checkpoint of another architecture does not load into this one.
  io::write_file_atomically(path, bytes);
  TrainingRun other;
  nn::Sequential<float> wrong(nn::Linear(6, 8), nn::ReLU(), nn::Linear(8, 3));
  EXPECT_THROW(restore_checkpoint(load_checkpoint(path), wrong, other.sgd, &other.sched), ValueError);
  std::filesystem::remove_all(dir);
}

// Starts the writer with its stdout on a pipe and waits until it reports its first finished save,
// so each kill lands while later saves are in flight, however slowly the process starts.
pid_t spawn_writer_after_first_save(const std::string& path) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  pid_t pid = -1;
  char* args[] = {const_cast<char*>(EMBER_CHECKPOINT_WRITER), const_cast<char*>(path.c_str()), nullptr};
  const int rc = posix_spawn(&pid, EMBER_CHECKPOINT_WRITER, &actions, nullptr, args, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw std::runtime_error("posix_spawn of the checkpoint writer failed");
  }
  pollfd pfd{fds[0], POLLIN, 0};
  char byte = 0;
  const bool saved = ::poll(&pfd, 1, 120000) == 1 && ::read(fds[0], &byte, 1) == 1;
  ::close(fds[0]);  // the writer's later reports get EPIPE/SIGPIPE; it is about to be killed anyway
  if (!saved) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw std::runtime_error("the checkpoint writer did not finish its first save");
  }
  return pid;
}

TEST(Checkpoint, KilledSavesLeaveALoadableCheckpoint) {
  const std::string dir = temp_dir("kill");
  const std::string path = dir + "/ckpt.safetensors";
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> delay_us(0, 20000);
  int64_t newest_step = 0;
  for (int round = 0; round < 100; ++round) {
    const pid_t pid = spawn_writer_after_first_save(path);
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    Checkpoint c = load_checkpoint(path);  // never a partial file
    ASSERT_GE(c.step, 1);
    nn::Sequential net(nn::Linear(64, 256), nn::ReLU(), nn::Linear(256, 64));
    net.load_state_dict(c.model);
    for (auto& p : net.parameters())
      for (float v : p.to_vector()) ASSERT_EQ(v, static_cast<float>(c.step));
    newest_step = std::max(newest_step, c.step);
  }
  EXPECT_GT(newest_step, 1) << "no kill landed after a second save began";
  // The temporaries of killed saves are cleaned up by the next save.
  nn::Sequential net(nn::Linear(64, 256), nn::ReLU(), nn::Linear(256, 64));
  optim::SGD sgd(net.parameters(), {.lr = 0.1});
  save_checkpoint(path, make_checkpoint(net, sgd, nullptr, 0));
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ember
