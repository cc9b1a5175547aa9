// One test per defect found by fuzzing and fault probes (each would have caught it): a typed
// ember::Error with a clear message, no crash, no undefined behaviour (the suite also runs under
// ASan + UBSan), no hang, nothing half-done.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"
#include "support/gzip.hpp"

namespace ember {
namespace {

using ember::testing::expect_error;
using ember::testing::gzip;
using ember::testing::put_be32;

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("ember_hardening_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::vector<uint8_t> idx_file(uint8_t type, const std::vector<uint32_t>& dims, size_t data_bytes) {
  std::vector<uint8_t> b{0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_be32(b, d);
  b.resize(b.size() + data_bytes, 7);
  return b;
}

// 1. numel * sizeof(T) is checked, not only numel.
TEST(Hardening, ByteSizeOverflowThrowsBeforeAllocating) {
  expect_error<ShapeError>([] { zeros<float>({int64_t(1) << 31, int64_t(1) << 31}); }, "2^60 bytes");
  expect_error<ShapeError>([] { zeros<double>({(int64_t(1) << 61) + 1}); }, "2^60 bytes");
  expect_error<ShapeError>([] { empty<int64_t>({int64_t(1) << 55, 64}); }, "2^60 bytes");
  // A module constructor reaches the same check: an ember::Error, not std::length_error.
  EXPECT_THROW(nn::Embedding<float>(int64_t(1) << 62, 1), Error);
  EXPECT_THROW(nn::Linear<float>(int64_t(1) << 40, int64_t(1) << 40), Error);
  EXPECT_EQ(zeros<float>({0, int64_t(1) << 40}).numel(), 0);  // empty is fine
}

// 2. An empty shape must still have strides that fit in int64.
TEST(Hardening, ZeroSizeShapesWithOverflowingStridesAreRefused) {
  expect_error<ShapeError>([] { empty<float>({0, int64_t(1) << 62, int64_t(1) << 62}); }, "strides");
  const std::string dir = temp_dir("strides");
  io::write_file_atomically(dir + "/x.idx", idx_file(0x08, {0, 1u << 31, 1u << 31, 1u << 31}, 0));
  expect_error<FormatError>([&] { data::read_idx(dir + "/x.idx"); }, "overflow 64-bit sizes");
  // A safetensors header declaring [0, 2^62, 2^62].
  std::string header = R"({"t":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<uint8_t> st(8 + header.size());
  const uint64_t n = header.size();
  std::memcpy(st.data(), &n, 8);
  std::memcpy(st.data() + 8, header.data(), header.size());
  expect_error<FormatError>([&] { io::parse_safetensors(st, "hdr"); }, "overflows 64-bit sizes");
  fs::remove_all(dir);
}

// 3. Optimizer state of another kind, or with entries renamed or missing, is refused whole.
TEST(Hardening, OptimizerStateOfTheWrongKindIsRefusedBeforeAnythingChanges) {
  manual_seed(1);
  nn::Linear<float> net(3, 2);
  auto step = [&](optim::OptimizerBase& opt) {
    opt.zero_grad();
    net(ones<float>({4, 3})).sum().backward();
    opt.step();
  };
  optim::SGD<float> sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  step(sgd);
  optim::Adam<float> adam(net.parameters(), {.lr = 0.01});
  step(adam);
  const optim::OptimizerState adam_state = adam.state_dict();
  EXPECT_EQ(adam_state.kind, "Adam");
  expect_error<ValueError>([&] { adam.load_state_dict(sgd.state_dict()); }, "the state was saved by SGD, not by Adam");
  optim::OptimizerState unnamed = sgd.state_dict();
  unnamed.kind.clear();  // a state made by hand: the names still give it away
  expect_error<ValueError>([&] { adam.load_state_dict(unnamed); }, "does not have");
  optim::OptimizerState renamed = adam_state;
  auto t = renamed.params[0].tensors.extract("exp_avg");
  t.key() = "exp_avgX";
  renamed.params[0].tensors.insert(std::move(t));
  expect_error<ValueError>([&] { adam.load_state_dict(renamed); }, "\"exp_avgX\", which Adam does not keep");
  optim::OptimizerState missing = adam_state;
  missing.params[1].tensors.erase("exp_avg_sq");
  expect_error<ValueError>([&] { adam.load_state_dict(missing); }, "has state but no \"exp_avg_sq\"");
  optim::OptimizerState wrong_dtype = adam_state;
  wrong_dtype.params[0].tensors["exp_avg"] = zeros<double>(net.weight.shape());
  expect_error<ValueError>([&] { adam.load_state_dict(wrong_dtype); }, "float64");
  // Nothing changed: the state is the one before, and the next step runs.
  const auto after = adam.state_dict();
  EXPECT_EQ(Tensor<float>::from_base(after.params[0].tensors.at("exp_avg")).to_vector(),
            Tensor<float>::from_base(adam_state.params[0].tensors.at("exp_avg")).to_vector());
  step(adam);
  // Through a checkpoint: an SGD checkpoint does not restore into Adam, and the model keeps its
  // weights.
  const std::string dir = temp_dir("optim");
  save_checkpoint(dir + "/sgd.ckpt", make_checkpoint(net, sgd, nullptr, 1));
  const std::vector<float> before = net.weight.to_vector();
  {
    NoGradGuard no_grad;
    net.weight.fill_(5.0f);
  }
  const std::vector<float> fives = net.weight.to_vector();
  EXPECT_THROW(restore_checkpoint(load_checkpoint(dir + "/sgd.ckpt"), net, adam, nullptr), ValueError);
  EXPECT_EQ(net.weight.to_vector(), fives);
  restore_checkpoint(load_checkpoint(dir + "/sgd.ckpt"), net, sgd, nullptr);
  EXPECT_EQ(net.weight.to_vector(), before);
  fs::remove_all(dir);
}

// 4. The checksum covers the header too: an edited step, learning rate or name is caught.
TEST(Hardening, CheckpointHeaderEditsAreCaughtByTheChecksum) {
  const std::string dir = temp_dir("crc");
  nn::Linear<float> net(2, 2);
  optim::SGD<float> sgd(net.parameters(), {.lr = 0.125});
  save_checkpoint(dir + "/c.ckpt", make_checkpoint(net, sgd, nullptr, 12345));
  EXPECT_EQ(load_checkpoint(dir + "/c.ckpt").step, 12345);
  const std::vector<uint8_t> good = io::read_file(dir + "/c.ckpt");
  auto edit = [&](const std::string& from, const std::string& to) {
    ASSERT_EQ(from.size(), to.size());
    std::string text(good.begin(), good.end());
    const auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    io::write_file_atomically(dir + "/c.ckpt", std::vector<uint8_t>(text.begin(), text.end()));
    expect_error<FormatError>([&] { load_checkpoint(dir + "/c.ckpt"); }, "checksum mismatch");
  };
  edit("\"12345\"", "\"54321\"");  // the step
  edit("0.125", "0.625");          // the learning rate
  edit("model.weight", "model.wEight");
  fs::remove_all(dir);
}

// 5. Scheduler counters are whole numbers in range before they are converted.
TEST(Hardening, SchedulerStateIsValidatedBeforeConversion) {
  nn::Linear<float> net(2, 2);
  optim::SGD<float> sgd(net.parameters(), {.lr = 0.1});
  optim::StepLR sched(sgd, 3, 0.5);
  auto state = sched.state_dict();
  for (double bad : {1e300, 2.5, -7.0, std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::infinity()}) {
    auto s = state;
    s["last_epoch"] = bad;
    expect_error<ValueError>([&] { sched.load_state_dict(s); }, "last_epoch");
  }
  auto s = state;
  s["base_lr.0"] = std::numeric_limits<double>::infinity();
  expect_error<ValueError>([&] { sched.load_state_dict(s); }, "base_lr.0");
  EXPECT_EQ(sched.state_dict(), state);  // unchanged
  EXPECT_EQ(sgd.lr(0), 0.1);
}

// 6. Only regular files are read: a directory or a FIFO is named as such (and a FIFO never blocks).
TEST(Hardening, DirectoriesAndFifosAreRefused) {
  const std::string dir = temp_dir("kinds");
  expect_error<IOError>([&] { io::read_file(dir); }, "a directory, not a regular file");
  expect_error<IOError>([&] { data::read_idx(dir); }, "a directory");
  expect_error<IOError>([&] { load_checkpoint(dir); }, "a directory");
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_error<IOError>([&] { io::read_file(fifo); }, "a FIFO (named pipe), not a regular file");
  expect_error<IOError>([&] { io::read_safetensors(fifo); }, "FIFO");
  expect_error<IOError>([&] { io::read_file("/dev/null"); }, "a character device");
  fs::remove_all(dir);
}

// 7. CIFAR input that holds no images is an error, and a CIFAR-10 batch holds 10,000.
TEST(Hardening, CifarRefusesEmptyInputAndShortBatches) {
  const std::string dir = temp_dir("cifar");
  io::write_file_atomically(dir + "/empty.bin", {});
  expect_error<FormatError>([&] { data::read_cifar10({dir + "/empty.bin"}); }, "the file is empty");
  expect_error<IOError>([&] { data::read_cifar10({"/dev/null"}); }, "character device");
  expect_error<ValueError>([&] { data::read_cifar10({}); }, "no files given");
  std::vector<uint8_t> two(2 * 3073, 0);
  io::write_file_atomically(dir + "/two.bin", two);
  EXPECT_EQ(data::read_cifar10({dir + "/two.bin"}).labels.numel(), 2);  // any count when read directly
  io::write_file_atomically(dir + "/test_batch.bin", two);
  expect_error<FormatError>([&] { data::load_cifar10(dir, false); }, "holds 2 records; a load_cifar10 batch file holds 10000");
  fs::remove_all(dir);
}

// 8. Bytes after the gzip stream (garbage or a second member) are an error, not ignored.
TEST(Hardening, GzipTrailingDataIsRefused) {
  const std::string dir = temp_dir("gztrail");
  const auto gz = gzip(idx_file(0x08, {4}, 4));
  io::write_file_atomically(dir + "/ok.gz", gz);
  EXPECT_EQ(data::read_idx(dir + "/ok.gz").numel(), 4);
  auto garbage = gz;
  garbage.insert(garbage.end(), {1, 2, 3});
  io::write_file_atomically(dir + "/garbage.gz", garbage);
  expect_error<FormatError>([&] { data::read_idx(dir + "/garbage.gz"); }, "3 bytes follow the gzip stream");
  auto two = gz;
  two.insert(two.end(), gz.begin(), gz.end());
  io::write_file_atomically(dir + "/two.gz", two);
  expect_error<FormatError>([&] { data::read_idx(dir + "/two.gz"); }, "second gzip member");
  // More data inside the stream than the header declares.
  auto longer = idx_file(0x08, {4}, 4);
  longer.push_back(9);
  io::write_file_atomically(dir + "/longer.gz", gzip(longer));
  expect_error<FormatError>([&] { data::read_idx(dir + "/longer.gz"); }, "holds more than the 4 bytes its IDX header declares");
  fs::remove_all(dir);
}

// 9. The decompressed size is bounded by the header's declaration and by a limit, checked before
// the payload is inflated.
TEST(Hardening, DecompressionIsBoundedByTheHeaderAndTheLimit) {
  const std::string dir = temp_dir("bomb");
  // A header declaring 4 GiB of data, followed by a few bytes: refused before inflating anything.
  io::write_file_atomically(dir + "/big.gz", gzip(idx_file(0x08, {1u << 16, 1u << 16}, 16)));
  expect_error<FormatError>([&] { data::read_idx(dir + "/big.gz"); }, "bytes ember decompresses");
  // A real bomb: 64 MiB of zeros in ~64 KiB, under a lowered limit.
  const uint64_t limit = data::max_decompressed_bytes();
  EXPECT_EQ(limit, data::kDefaultMaxDecompressedBytes);
  io::write_file_atomically(dir + "/zeros.gz", gzip(idx_file(0x08, {1u << 26}, size_t(1) << 26)));
  data::set_max_decompressed_bytes(1 << 20);
  expect_error<FormatError>([&] { data::read_idx(dir + "/zeros.gz"); }, "more than the 1048576 bytes");
  data::set_max_decompressed_bytes(limit);
  EXPECT_EQ(data::read_idx(dir + "/zeros.gz").numel(), int64_t(1) << 26);
  // A header that declares more than the stream holds.
  io::write_file_atomically(dir + "/short.gz", gzip(idx_file(0x08, {100}, 10)));
  expect_error<FormatError>([&] { data::read_idx(dir + "/short.gz"); }, "the gzip stream holds 10 (truncated)");
  fs::remove_all(dir);
}

// A data set with a size and samples of our choosing.
class Numbers : public data::Dataset<float, int64_t> {
 public:
  explicit Numbers(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  data::Example<float, int64_t> get(int64_t i, Generator&) const override {
    return {full<float>({1}, static_cast<float>(i)), scalar_tensor<int64_t>(i)};
  }

 private:
  int64_t n_;
};

// 10. Arithmetic that overflowed or offset a null pointer on these inputs (UBSan checks it).
TEST(Hardening, HugeSizesAndEmptyTensorsNeedNoUndefinedArithmetic) {
  data::DataLoader<float, int64_t> loader(std::make_shared<Numbers>(5),
                                          {.batch_size = std::numeric_limits<int64_t>::max()});
  EXPECT_EQ(loader.batches_per_epoch(), 1);
  loader.start_epoch(0);
  auto batch = loader.next();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->target.numel(), 5);
  EXPECT_FALSE(loader.next().has_value());
  Tensor<float> x = arange<float>(0, 6).reshape({2, 3});
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_THROW(x.narrow(1, big, 1), IndexError);
  EXPECT_THROW(x.narrow(1, 1, big), IndexError);
  EXPECT_EQ(x.slice(1, 0, 3, big).shape(), Shape({2, 1}));
  EXPECT_EQ(x.slice(1, 1, big, big).to_vector(), (std::vector<float>{1, 4}));
  // Reductions and views of empty tensors, whose storage has no memory to point into.
  Tensor<float> e = zeros<float>({3, 0});
  EXPECT_EQ(e.sum(1).to_vector(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(e.t().sum(0).to_vector(), (std::vector<float>{0, 0, 0}));
  EXPECT_TRUE(std::isnan(e.mean(1).to_vector()[0]));
  Tensor<float> v = zeros<float>({0, 4}).narrow(1, 2, 2);
  EXPECT_EQ(v.sum().item(), 0.0f);
  EXPECT_EQ(v.contiguous().numel(), 0);
  EXPECT_EQ((v + 1.0).numel(), 0);
}

// 11. Silent semantics PyTorch refuses: negative indices, writes through an expanded tensor, an
// empty convolution kernel.
TEST(Hardening, NegativeIndicesOverlappingWritesAndEmptyKernelsAreRefused) {
  Tensor<float> x = arange<float>(0, 6).reshape({2, 3});
  expect_error<IndexError>([&] { x.index_select(1, tensor<int64_t>({0, -1})); },
                           "index_select: index -1 at position 1 is out of range for dim 1 of size 3");
  expect_error<IndexError>([&] { x.gather(1, tensor<int64_t>({-1, 0}, {2, 1})); },
                           "gather: index -1 is out of range");
  expect_error<IndexError>([&] { scatter_add(x, 1, tensor<int64_t>({-1, 0}, {2, 1}), ones<float>({2, 1})); },
                           "scatter_add: index -1");
  nn::Embedding<float> emb(4, 2);
  expect_error<IndexError>([&] { emb.forward_indices(tensor<int64_t>({1, -1})); },
                           "embedding: index -1 at position 1 is out of range for 4 embeddings");
  Tensor<float> row = zeros<float>({3});
  Tensor<float> wide = row.expand({4, 3});
  expect_error<ValueError>([&] { wide.add_(ones<float>({4, 3})); }, "add_: more than one element");
  expect_error<ValueError>([&] { wide.fill_(1.0f); }, "fill_: more than one element");
  expect_error<ValueError>([&] { wide.copy_(ones<float>({4, 3})); }, "copy_: more than one element");
  expect_error<ValueError>([&] { wide.mul_(2.0); }, "mul_: more than one element");
  EXPECT_EQ(row.to_vector(), (std::vector<float>{0, 0, 0}));
  row.expand({1, 3}).add_(ones<float>({1, 3}));  // a size-1 dim of stride 0 writes each element once
  EXPECT_EQ(row.to_vector(), (std::vector<float>{1, 1, 1}));
  expect_error<ShapeError>([] { conv2d(ones<float>({1, 3, 5, 5}), ones<float>({4, 3, 0, 3}), Tensor<float>(), {}); },
                           "empty kernel");
}

// A data set whose sample 1 blocks until released.
class Stuck : public data::Dataset<float, int64_t> {
 public:
  int64_t size() const override { return 4; }
  data::Example<float, int64_t> get(int64_t i, Generator&) const override {
    if (i == 1) {
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      finished = true;
    }
    return {full<float>({1}, static_cast<float>(i)), scalar_tensor<int64_t>(i)};
  }
  mutable std::atomic<bool> release{false}, finished{false};
};

// 12. Worker threads: an absurd count is a ValueError, a stuck sample a TimeoutError, and the
// loader can still be destroyed.
TEST(Hardening, DataLoaderWorkersAreBoundedAndCanTimeOut) {
  auto ds = std::make_shared<Numbers>(8);
  expect_error<ValueError>([&] { data::DataLoader<float, int64_t>(ds, {.num_workers = 1000000}); }, "num_workers");
  expect_error<ValueError>([&] { data::DataLoader<float, int64_t>(ds, {.timeout = -1}); }, "timeout");
  auto stuck = std::make_shared<Stuck>();
  {
    data::DataLoader<float, int64_t> loader(stuck, {.batch_size = 1, .num_workers = 1, .timeout = 0.2});
    loader.start_epoch(0);
    EXPECT_EQ(loader.next()->target.item(), 0);
    expect_error<TimeoutError>([&] { loader.next(); }, "batch 1 of epoch 0 was not ready after");
  }  // the stuck worker is left behind: it holds the epoch's state and the dataset, not the loader
  stuck->release = true;
  while (!stuck->finished.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Without a timeout the loader waits as before.
  data::DataLoader<float, int64_t> patient(ds, {.batch_size = 4, .num_workers = 2});
  patient.start_epoch(0);
  EXPECT_EQ(patient.next()->target.numel(), 4);
}

// 13. A save keeps the mode of the file it replaces, and a new file follows the umask.
TEST(Hardening, SavesRespectTheUmaskAndTheReplacedFilesMode) {
  const std::string dir = temp_dir("modes");
  nn::Linear<float> net(2, 2);
  const mode_t old_mask = ::umask(077);
  save(net, dir + "/private.safetensors");
  ::umask(old_mask);
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/private.safetensors").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::chmod((dir + "/private.safetensors").c_str(), 0640), 0);
  save(net, dir + "/private.safetensors");
  ASSERT_EQ(::stat((dir + "/private.safetensors").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  fs::remove_all(dir);
}

// 14. Concurrent saves to one path each use their own temporary file, and cleanup removes only
// those of writers that are gone.
TEST(Hardening, ConcurrentSavesToOnePathAllSucceed) {
  const std::string dir = temp_dir("concurrent");
  const std::string path = dir + "/c.ckpt";
  nn::Linear<float> net(16, 16);
  optim::SGD<float> sgd(net.parameters(), {.lr = 0.1});
  const Checkpoint c = make_checkpoint(net, sgd, nullptr, 3);
  // Another live process's temporary (pid 1 always runs) and a dead one's.
  const std::string live = path + ".tmp.1.abcdef";
  io::write_file_atomically(live, {1});
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const std::string dead = path + ".tmp." + std::to_string(child) + ".abcdef";
  io::write_file_atomically(dead, {1});
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        try {
          save_checkpoint(path, c);
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(load_checkpoint(path).step, 3);
  EXPECT_TRUE(fs::exists(live));
  EXPECT_FALSE(fs::exists(dead));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ember
