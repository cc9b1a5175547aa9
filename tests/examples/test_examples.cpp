// The bundled examples end to end, on small generated data sets in both formats: they train (the
// loss falls), print test_accuracy=, write the model, metrics and pictures, and the saved model,
// loaded by --predict from a PNG, gives the same labels as the trained program did.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <fcntl.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "common/image.hpp"
#include "ember/ember.hpp"

extern char** environ;

namespace ember {
namespace {

namespace fs = std::filesystem;

struct ProcessResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

ProcessResult run(const std::vector<std::string>& args) {
  const fs::path log = fs::temp_directory_path() / ("ember_example_" + std::to_string(::getpid()) + ".log");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  ProcessResult r;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    r.output = "posix_spawn failed for " + args[0];
    return r;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  fs::remove(log);
  return r;
}

std::string value_of(const std::string& output, const std::string& key) {
  const size_t at = output.find("\n" + key + "=");
  if (at == std::string::npos) return "";
  const size_t start = at + key.size() + 2;
  return output.substr(start, output.find('\n', start) - start);
}

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                static_cast<std::streamsize>(bytes.size()));
  }
}

std::vector<uint8_t> idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> h = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int shift : {24, 16, 8, 0}) h.push_back(static_cast<uint8_t>(d >> shift));
  return h;
}

// Class k is a bright bar across rows 2k+3 .. 2k+5 on a noisy background: learnable in a few
// batches, yet not trivially (the noise and a random horizontal extent vary).
std::vector<uint8_t> digit_like(int label, std::mt19937& rng) {
  std::uniform_int_distribution<int> noise(0, 60), start(0, 8), length(12, 20);
  std::vector<uint8_t> img(28 * 28);
  for (auto& v : img) v = static_cast<uint8_t>(noise(rng));
  const int x0 = start(rng), len = length(rng);
  for (int y = 2 * label + 3; y < 2 * label + 6; ++y)
    for (int x = x0; x < x0 + len; ++x) img[static_cast<size_t>(y * 28 + x)] = 255;
  return img;
}

void make_mnist_like(const std::string& dir, int train, int test) {
  fs::create_directories(dir);
  std::mt19937 rng(3);
  for (auto [prefix, n, gzip] : {std::tuple{"train", train, true}, std::tuple{"t10k", test, false}}) {
    std::vector<uint8_t> images = idx_header(0x08, {static_cast<uint32_t>(n), 28, 28});
    std::vector<uint8_t> labels = idx_header(0x08, {static_cast<uint32_t>(n)});
    for (int i = 0; i < n; ++i) {
      const int label = i % 10;
      const auto img = digit_like(label, rng);
      images.insert(images.end(), img.begin(), img.end());
      labels.push_back(static_cast<uint8_t>(label));
    }
    const std::string ext = gzip ? ".gz" : "";
    write_bytes(dir + "/" + prefix + "-images-idx3-ubyte" + ext, images, gzip);
    write_bytes(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, labels, gzip);
  }
}

// Class k: a colour (its bits pick the red, green and blue planes) and a square whose position
// depends on k, over noise.
// Batch files hold the 10,000 images load_cifar10 requires; the noise comes from a fixed buffer
// (at an offset per image), so writing 60,000 images stays quick.
void make_cifar_like(const std::string& dir) {
  constexpr int per_batch = 10000;
  fs::create_directories(dir);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> noise_value(0, 50);
  std::vector<uint8_t> noise_buffer(1 << 16);
  for (auto& v : noise_buffer) v = static_cast<uint8_t>(noise_value(rng));
  size_t at = 0;
  auto noise = [&](std::mt19937&) {
    at = (at + 1) & (noise_buffer.size() - 1);
    return noise_buffer[at];
  };
  auto batch = [&](const std::string& name) {
    std::vector<uint8_t> bytes;
    bytes.reserve(static_cast<size_t>(per_batch) * 3073);
    for (int i = 0; i < per_batch; ++i) {
      at = (static_cast<size_t>(rng()) & (noise_buffer.size() - 1));
      const int label = i % 10;
      bytes.push_back(static_cast<uint8_t>(label));
      const int sx = (label % 5) * 5 + 2, sy = (label / 5) * 14 + 4;
      for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 32; ++y)
          for (int x = 0; x < 32; ++x) {
            const bool in_square = x >= sx && x < sx + 9 && y >= sy && y < sy + 9;
            bytes.push_back(static_cast<uint8_t>(in_square ? ((label + c) % 3 == 0 ? 250 : 120) : noise(rng)));
          }
    }
    write_bytes(dir + "/" + name, bytes, false);
  };
  for (int b = 1; b <= 5; ++b) batch("data_batch_" + std::to_string(b) + ".bin");
  batch("test_batch.bin");
}

bool is_png(const std::string& path, int width_at_least) {
  try {
    const examples::Image img = examples::read_png(path, 3);
    return img.width >= width_at_least && img.height > 0;
  } catch (const Error&) {
    return false;
  }
}

// Trains, checks the outputs, then classifies test images saved as PNG with --predict and compares
// with the labels the training program predicted for them.
void train_and_predict(const std::string& program, const std::string& data, const data::LabeledImages& test,
                       const std::vector<std::string>& flags, double min_accuracy) {
  const std::string out = data + "-out";
  std::vector<std::string> args = {program, "--data", data, "--out", out, "--threads", "1", "--epochs", "2"};
  args.insert(args.end(), flags.begin(), flags.end());
  const ProcessResult r = run(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string accuracy = value_of(r.output, "test_accuracy");
  ASSERT_FALSE(accuracy.empty()) << r.output;
  EXPECT_GE(std::stod(accuracy), min_accuracy) << r.output;
  EXPECT_NE(r.output.find("epoch 2/2"), std::string::npos) << r.output;

  const auto metrics = read_csv(out + "/metrics.csv");
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_EQ(metrics[0][0], "epoch");
  EXPECT_EQ(metrics[0][1], "train_loss");
  EXPECT_LT(std::stod(metrics[2][1]), std::stod(metrics[1][1])) << "the training loss did not fall";
  EXPECT_NEAR(std::stod(metrics[2][4]), std::stod(accuracy), 1e-4);
  EXPECT_TRUE(is_png(out + "/curves.png", 500));
  EXPECT_TRUE(is_png(out + "/predictions.png", 300));
  const io::SafetensorsFile model = io::read_safetensors(out + "/model.safetensors");
  EXPECT_EQ(model.metadata.at("format"), "pt");
  EXPECT_GT(model.tensors.size(), 2u);
  EXPECT_GT(std::filesystem::file_size(out + "/model.onnx"), 1000u);  // deploy::export_onnx's

  const auto predictions = read_csv(out + "/test_predictions.csv");
  ASSERT_EQ(static_cast<int64_t>(predictions.size()), test.labels.numel() + 1);
  for (int64_t i = 0; i < 6; ++i) {
    const std::string png = out + "/sample" + std::to_string(i) + ".png";
    examples::write_png(png, examples::image_from_tensor(test.images.select(0, i)));
    const ProcessResult p = run({program, "--predict", png, "--weights", out + "/model.safetensors"});
    ASSERT_EQ(p.exit_code, 0) << p.output;
    EXPECT_EQ(value_of("\n" + p.output, "prediction"), predictions[static_cast<size_t>(i + 1)][2])
        << "image " << i << ": " << p.output;
  }
}

class Examples : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("ember_examples_" + std::to_string(::getpid()))).string();
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(Examples, MnistCnnTrainsSavesAndPredicts) {
  make_mnist_like(dir_ + "/mnist", 640, 200);
  train_and_predict(EMBER_MNIST, dir_ + "/mnist", data::load_mnist(dir_ + "/mnist", false),
                    {"--model", "cnn", "--batch-size", "32"}, 0.5);
}

TEST_F(Examples, MnistMlpTrainsSavesAndPredicts) {
  make_mnist_like(dir_ + "/mnist", 640, 200);
  train_and_predict(EMBER_MNIST, dir_ + "/mnist", data::load_mnist(dir_ + "/mnist", false),
                    {"--model", "mlp", "--batch-size", "32", "--workers", "0"}, 0.5);
}

TEST_F(Examples, Cifar10ResnetTrainsSavesAndPredicts) {
  make_cifar_like(dir_ + "/cifar");
  data::LabeledImages test = data::load_cifar10(dir_ + "/cifar", false);
  test.images = test.images.narrow(0, 0, 100);
  test.labels = test.labels.narrow(0, 0, 100);
  train_and_predict(EMBER_CIFAR10, dir_ + "/cifar", test,
                    {"--model", "resnet-small", "--batch-size", "25", "--lr", "0.05", "--limit-train", "500",
                     "--limit-test", "100"},
                    0.3);
}

// ember-explain: trains a classifier when none is given, writes its four pictures and prints its
// figures; FGSM at a visible eps lowers the accuracy; a model file of another program is refused.
TEST_F(Examples, ExplainWritesPicturesAndFigures) {
  make_mnist_like(dir_ + "/mnist", 640, 200);
  const ProcessResult r = run({EMBER_EXPLAIN, "--data", dir_ + "/mnist", "--out", dir_ + "/explain", "--epochs", "2",
                               "--images", "3", "--mc-samples", "4", "--uncertainty-images", "64", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* png : {"explanations.png", "fgsm.png", "fgsm_accuracy.png", "uncertainty.png"})
    EXPECT_TRUE(is_png(dir_ + "/explain/" + png, 200)) << png;
  const double clean = std::stod(value_of(r.output, "test_accuracy"));
  EXPECT_GT(clean, 0.5) << r.output;
  EXPECT_EQ(std::stod(value_of(r.output, "fgsm_accuracy_eps_0")), clean);
  EXPECT_LT(std::stod(value_of(r.output, "fgsm_accuracy_eps_0.3")), clean) << r.output;
  const double completeness = std::stod(value_of(r.output, "ig_completeness_max"));
  EXPECT_GE(completeness, 0.0);
  EXPECT_LT(completeness, 0.05) << r.output;
  EXPECT_FALSE(value_of(r.output, "mean_entropy_rotated").empty()) << r.output;
  // The classifier it trained is reused; a file that is not an ember-mnist model is refused.
  const ProcessResult again = run({EMBER_EXPLAIN, "--data", dir_ + "/mnist", "--out", dir_ + "/explain", "--images",
                                   "2", "--mc-samples", "2", "--uncertainty-images", "32", "--threads", "1"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output.find("training ember-mnist"), std::string::npos) << again.output;
  save(nn::Linear(2, 2), dir_ + "/other.safetensors");
  const ProcessResult bad = run({EMBER_EXPLAIN, "--data", dir_ + "/mnist", "--model", dir_ + "/other.safetensors"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("other.safetensors: no 'ember.program' metadata"), std::string::npos) << bad.output;
}

// --quantize quantizes the trained CNN to int8, reports its accuracy (close to the float model's)
// and writes a file about a quarter of the float one's size that quant::load runs.
TEST_F(Examples, MnistQuantize) {
  make_mnist_like(dir_ + "/mnist", 640, 200);
  const ProcessResult r = run({EMBER_MNIST, "--data", dir_ + "/mnist", "--model", "cnn", "--epochs", "2", "--batch-size",
                               "32", "--threads", "1", "--workers", "0", "--out", dir_ + "/q", "--quantize"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double float_accuracy = std::stod(value_of(r.output, "test_accuracy"));
  const double int8_accuracy = std::stod(value_of(r.output, "int8_test_accuracy"));
  EXPECT_NEAR(int8_accuracy, float_accuracy, 0.03) << r.output;
  EXPECT_EQ(value_of(r.output, "int8_calibration_images"), "640");
  const double ratio = std::stod(value_of(r.output, "model_bytes")) / std::stod(value_of(r.output, "int8_model_bytes"));
  EXPECT_GT(ratio, 3.0) << r.output;
  const quant::QuantizedModel q = quant::load(dir_ + "/q/model-int8.safetensors");
  EXPECT_EQ(q(zeros<float>({2, 1, 28, 28})).shape(), Shape({2, 10}));

  // --keep-float leaves the first convolution in float.
  const ProcessResult k = run({EMBER_MNIST, "--data", dir_ + "/mnist", "--model", "cnn", "--epochs", "1", "--batch-size",
                               "32", "--threads", "1", "--workers", "0", "--out", dir_ + "/k", "--quantize",
                               "--keep-float", "0"});
  ASSERT_EQ(k.exit_code, 0) << k.output;
  EXPECT_NEAR(std::stod(value_of(k.output, "int8_test_accuracy")), std::stod(value_of(k.output, "test_accuracy")), 0.03);
  const quant::QuantizedModel kept = quant::load(dir_ + "/k/model-int8.safetensors");
  EXPECT_NE(kept.stage(0).str().find("float)"), std::string::npos) << kept.str();
  const ProcessResult bad = run({EMBER_MNIST, "--data", dir_ + "/mnist", "--model", "cnn", "--epochs", "1", "--threads",
                                 "1", "--workers", "0", "--out", dir_ + "/b", "--quantize", "--keep-float", "1"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("keep_float names '1', which is not a Linear or Conv2d"), std::string::npos) << bad.output;
}

#ifdef EMBER_MPIEXEC
// mpirun -np 2 ember-mnist --distributed: one progress report (rank 0), the test evaluated once,
// the outputs written once, and an accuracy like the single process's. (Dropout draws its masks
// on each rank, so the two runs agree only statistically; tests/distributed/test_ddp.cpp checks
// the exact equivalence without dropout.)
TEST_F(Examples, MnistDistributedTrainsLikeOneProcess) {
  make_mnist_like(dir_ + "/mnist", 640, 200);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  // Under AddressSanitizer, as the distributed tests run (tests/CMakeLists.txt): Open MPI's
  // allocations kept to exit suppressed, its components kept loaded so that their frames have names.
  ::setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
  ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  ::setenv("LSAN_OPTIONS", "suppressions=" EMBER_LSAN_SUPPRESSIONS ":fast_unwind_on_malloc=0", 1);
  const std::vector<std::string> flags = {"--data", dir_ + "/mnist", "--model", "cnn", "--epochs", "2", "--batch-size",
                                          "32", "--threads", "1", "--workers", "0"};
  std::vector<std::string> single = {EMBER_MNIST, "--out", dir_ + "/single"};
  single.insert(single.end(), flags.begin(), flags.end());
  std::vector<std::string> ranks = {EMBER_MPIEXEC, "-np", "2", "--oversubscribe", "--bind-to", "none", EMBER_MNIST,
                                    "--distributed", "--out", dir_ + "/ranks"};
  ranks.insert(ranks.end(), flags.begin(), flags.end());
  const ProcessResult a = run(single);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const ProcessResult b = run(ranks);
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_NE(b.output.find("data-parallel over 2 ranks, batch 16 per rank"), std::string::npos) << b.output;
  size_t reports = 0;
  for (size_t at = b.output.find("epoch 2/2:"); at != std::string::npos; at = b.output.find("epoch 2/2:", at + 1))
    ++reports;
  EXPECT_EQ(reports, 1u) << b.output;
  EXPECT_EQ(read_csv(dir_ + "/ranks/metrics.csv").size(), 3u);
  const double single_accuracy = std::stod(value_of(a.output, "test_accuracy"));
  const double ranks_accuracy = std::stod(value_of(b.output, "test_accuracy"));
  EXPECT_GE(ranks_accuracy, 0.5) << b.output;
  EXPECT_NEAR(ranks_accuracy, single_accuracy, 0.15) << a.output << b.output;
  // The weights rank 0 saved load into the single-process model.
  const io::SafetensorsFile saved = io::read_safetensors(dir_ + "/ranks/model.safetensors");
  EXPECT_EQ(saved.tensors.size(), io::read_safetensors(dir_ + "/single/model.safetensors").tensors.size());

  // A batch that does not split over the ranks stops the job with the reason, not a hang.
  std::vector<std::string> bad = {EMBER_MPIEXEC, "-np", "2", "--oversubscribe", EMBER_MNIST, "--distributed",
                                  "--data", dir_ + "/mnist", "--batch-size", "33", "--out", dir_ + "/bad"};
  const ProcessResult c = run(bad);
  EXPECT_NE(c.exit_code, 0) << c.output;
  EXPECT_NE(c.output.find("--batch-size 33 does not split evenly over 2 ranks"), std::string::npos) << c.output;
}
#endif

// --adversarial-training trains on clean and FGSM batches; every run reports its accuracy on FGSM
// examples of the test set, and the adversarially trained model keeps more of it.
TEST_F(Examples, MnistAdversarialTrainingRaisesFgsmAccuracy) {
  make_mnist_like(dir_ + "/mnist", 640, 200);
  auto train = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {EMBER_MNIST, "--data", dir_ + "/mnist", "--model", "mlp", "--epochs", "3",
                                     "--batch-size", "32", "--threads", "1", "--workers", "0", "--out",
                                     dir_ + "/adv"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const ProcessResult plain = train({});
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  const ProcessResult hardened = train({"--adversarial-training", "0.3"});
  ASSERT_EQ(hardened.exit_code, 0) << hardened.output;
  const double plain_fgsm = std::stod(value_of(plain.output, "fgsm_accuracy_eps_0.1"));
  const double hardened_fgsm = std::stod(value_of(hardened.output, "fgsm_accuracy_eps_0.1"));
  EXPECT_GE(plain_fgsm, 0.0);
  EXPECT_GT(hardened_fgsm, plain_fgsm) << plain.output << hardened.output;
  EXPECT_GT(std::stod(value_of(hardened.output, "test_accuracy")), 0.5) << hardened.output;
  const ProcessResult bad = train({"--adversarial-training", "-1"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("--adversarial-training: expected a non-negative number, got '-1'"), std::string::npos)
      << bad.output;
  const ProcessResult heavy = train({"--adversarial-training", "0.1", "--adversarial-weight", "1.5"});
  EXPECT_EQ(heavy.exit_code, 2);
  EXPECT_NE(heavy.output.find("--adversarial-weight: expected a number in [0, 1], got 1.5"), std::string::npos)
      << heavy.output;
}

// LibTorch's C++ examples as ported in examples/libtorch-ports.
TEST_F(Examples, PortOfLibTorchsAutogradExampleRuns) {
  const ProcessResult r = run({EMBER_PORT_AUTOGRAD});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Using custom autograd function in C++"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tensor([5.5000, 5.5000]"), std::string::npos) << r.output;  // MulConstant's gradient
  EXPECT_NE(r.output.find("[4.5000, 4.5000]"), std::string::npos) << r.output;         // d mean(3 (x+2)^2) / dx
}

TEST_F(Examples, PortOfLibTorchsRegressionExampleConverges) {
  const ProcessResult r = run({EMBER_PORT_REGRESSION});
  ASSERT_EQ(r.exit_code, 0) << r.output;  // it exits 1 unless the loss fell below 1e-3
  EXPECT_NE(r.output.find("==> Learned function:"), std::string::npos) << r.output;
}

TEST_F(Examples, PortOfLibTorchsMnistExampleTrains) {
  make_mnist_like(dir_ + "/mnist", 640, 200);
  const ProcessResult r = run({EMBER_PORT_MNIST, dir_ + "/mnist", "5"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // One test report per epoch; the loss falls and the accuracy rises well above chance (0.1).
  std::vector<double> losses, accuracies;
  for (size_t at = r.output.find("Average loss: "); at != std::string::npos;
       at = r.output.find("Average loss: ", at + 1)) {
    losses.push_back(std::stod(r.output.substr(at + 14)));
    accuracies.push_back(std::stod(r.output.substr(r.output.find("Accuracy: ", at) + 10)));
  }
  ASSERT_EQ(losses.size(), 5u) << r.output;
  EXPECT_LT(losses.back(), losses.front()) << r.output;
  EXPECT_GT(accuracies.back(), 0.4) << r.output;
}

TEST_F(Examples, PortOfLibTorchsDcganExampleRunsAFewBatches) {
  make_mnist_like(dir_ + "/mnist", 256, 10);
  const std::string out = dir_ + "/dcgan";
  fs::create_directories(out);
  const ProcessResult r = run({EMBER_PORT_DCGAN, dir_ + "/mnist", "1", "3", out});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[ 1/ 1][  3/  3] D_loss: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Training complete!"), std::string::npos) << r.output;
  const io::SafetensorsFile samples = io::read_safetensors(out + "/dcgan-sample-1.safetensors");
  EXPECT_EQ(samples.tensors.at(0).tensor.shape(), Shape({10, 1, 28, 28}));
  EXPECT_NO_THROW(load_checkpoint(out + "/generator-optimizer-checkpoint.ckpt"));
  EXPECT_GT(io::read_safetensors(out + "/generator-checkpoint.safetensors").tensors.size(), 10u);
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ember-gan: trains, reports the quality metrics after each epoch, writes the sample grids and
// the generator; a run resumed from its checkpoint ends with the same bytes as an unbroken one;
// --samples generates from the saved generator; a file of another architecture is refused.
TEST_F(Examples, GanTrainsResumesBitExactlyAndGenerates) {
  make_mnist_like(dir_ + "/mnist", 320, 200);
  const ProcessResult c = run({EMBER_MNIST, "--data", dir_ + "/mnist", "--out", dir_ + "/clf", "--epochs", "1",
                               "--threads", "1"});
  ASSERT_EQ(c.exit_code, 0) << c.output;
  const std::vector<std::string> common = {"--data", dir_ + "/mnist", "--classifier", dir_ + "/clf/model.safetensors",
                                           "--batches", "3", "--batch-size", "16", "--metric-samples", "50",
                                           "--fid-samples", "60", "--threads", "1", "--workers", "1"};
  auto gan = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {EMBER_GAN};
    args.insert(args.end(), common.begin(), common.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const ProcessResult whole = gan({"--epochs", "2", "--out", dir_ + "/whole"});
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  for (const char* key : {"classifier_confidence", "class_entropy", "feature_fid", "feature_fid_real"}) {
    const std::string v = value_of(whole.output, key);
    ASSERT_FALSE(v.empty()) << key << "\n" << whole.output;
    EXPECT_TRUE(std::isfinite(std::stod(v))) << key << "=" << v;
    EXPECT_GE(std::stod(v), 0.0) << key << "=" << v;
  }
  EXPECT_NE(whole.output.find("epoch 2/2: D loss"), std::string::npos) << whole.output;
  EXPECT_TRUE(is_png(dir_ + "/whole/samples_epoch_1.png", 8 * 56));
  EXPECT_TRUE(is_png(dir_ + "/whole/samples_epoch_2.png", 8 * 56));
  EXPECT_EQ(read_csv(dir_ + "/whole/metrics.csv").size(), 3u);

  const ProcessResult first = gan({"--epochs", "1", "--out", dir_ + "/split"});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const ProcessResult resumed =
      gan({"--epochs", "2", "--out", dir_ + "/split", "--resume", dir_ + "/split/checkpoint.safetensors"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  EXPECT_EQ(file_bytes(dir_ + "/whole/generator.safetensors"), file_bytes(dir_ + "/split/generator.safetensors"));
  EXPECT_EQ(file_bytes(dir_ + "/whole/checkpoint.safetensors"), file_bytes(dir_ + "/split/checkpoint.safetensors"));
  const std::vector<uint8_t> onnx = file_bytes(dir_ + "/whole/generator.onnx");
  EXPECT_NE(std::string(onnx.begin(), onnx.end()).find("ConvTranspose"), std::string::npos);
  EXPECT_EQ(onnx, file_bytes(dir_ + "/split/generator.onnx"));
  auto without_seconds = [](std::vector<std::vector<std::string>> rows) {  // the last column is wall time
    for (auto& row : rows) row.pop_back();
    return rows;
  };
  EXPECT_EQ(without_seconds(read_csv(dir_ + "/whole/metrics.csv")), without_seconds(read_csv(dir_ + "/split/metrics.csv")));

  ProcessResult r = run({EMBER_GAN, "--samples", "12", "--model", dir_ + "/whole/generator.safetensors", "--out",
                         dir_ + "/gen"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(is_png(dir_ + "/gen/generated.png", 8 * 56));
  r = run({EMBER_GAN, "--samples", "4", "--model", dir_ + "/whole/discriminator.safetensors", "--out", dir_ + "/gen"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("discriminator.safetensors: load_state_dict: the state dict does not fit Generator"),
            std::string::npos)
      << r.output;
  r = run({EMBER_GAN, "--resume", dir_ + "/whole/generator.safetensors", "--data", dir_ + "/mnist", "--out",
           dir_ + "/x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("generator.safetensors"), std::string::npos) << r.output;
  r = run({EMBER_GAN, "--samples", "4"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--samples needs --model"), std::string::npos) << r.output;
}

// ember-transfer: pretrains, learns the other classes from k shots four ways and writes the
// table; a saved backbone is reused; k larger than a class is refused with the class named.
TEST_F(Examples, TransferComparesFourMethodsAndReusesTheBackbone) {
  make_mnist_like(dir_ + "/mnist", 400, 200);
  const std::vector<std::string> quick = {"--draws", "2", "--min-steps", "5", "--tune-epochs", "1", "--threads", "1"};
  auto transfer = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {EMBER_TRANSFER, "--data", dir_ + "/mnist"};
    args.insert(args.end(), quick.begin(), quick.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  ProcessResult r = transfer({"--epochs", "2", "--shots", "1,5,all", "--out", dir_ + "/tr"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(std::stod(value_of(r.output, "backbone_accuracy")), 0.5) << r.output;
  const auto rows = read_csv(dir_ + "/tr/transfer.csv");
  ASSERT_EQ(rows.size(), 1u + 4u * 3u) << r.output;
  EXPECT_EQ(rows[0], (std::vector<std::string>{"method", "k", "mean_accuracy", "std_accuracy", "draws"}));
  std::set<std::string> methods;
  for (size_t i = 1; i < rows.size(); ++i) {
    methods.insert(rows[i][0]);
    const double acc = std::stod(rows[i][2]);
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
    EXPECT_EQ(rows[i][4], rows[i][1] == "all" ? "1" : "2");
  }
  EXPECT_EQ(methods, (std::set<std::string>{"scratch", "linear_probe", "fine_tune", "prototypes"}));
  // With every example, the pretrained features make the nearest class mean well above chance.
  for (size_t i = 1; i < rows.size(); ++i)
    if (rows[i][0] == "prototypes" && rows[i][1] == "all") {
      EXPECT_GT(std::stod(rows[i][2]), 0.5) << r.output;
    }
  EXPECT_TRUE(is_png(dir_ + "/tr/transfer.png", 400));

  // The saved backbone, transferred to every class of another data set (--target-data).
  r = transfer({"--backbone", dir_ + "/tr/backbone.safetensors", "--target-data", dir_ + "/mnist", "--shots", "1",
                "--out", dir_ + "/tr2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("new task: all classes of mnist"), std::string::npos) << r.output;
  EXPECT_EQ(read_csv(dir_ + "/tr2/transfer.csv").size(), 5u);

  r = transfer({"--backbone", dir_ + "/tr/backbone.safetensors", "--shots", "1,500", "--out", dir_ + "/tr3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--shots 500: the smallest class of the new task"), std::string::npos) << r.output;
  r = transfer({"--backbone", dir_ + "/clf.safetensors", "--out", dir_ + "/tr3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("clf.safetensors"), std::string::npos) << r.output;
  r = transfer({"--shots", "1,none"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--shots expects positive integers or 'all'"), std::string::npos) << r.output;
}

// ember-compress end to end on generated data: every stage measured, the CSV and the chart, the
// student, pruned, shrunk and int8 models as small as they should be, and a teacher saved by
// ember-mnist reused as it is.
TEST_F(Examples, CompressTakesTheTeacherThroughEveryStage) {
  make_mnist_like(dir_ + "/mnist", 400, 200);
  ProcessResult r = run({EMBER_COMPRESS, "--data", dir_ + "/mnist", "--epochs", "1", "--threads", "1", "--out",
                         dir_ + "/cmp"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto rows = read_csv(dir_ + "/cmp/compress.csv");
  ASSERT_EQ(rows.size(), 7u) << r.output;
  EXPECT_EQ(rows[0], (std::vector<std::string>{"stage", "parameters", "nonzero_parameters", "size_bytes", "accuracy",
                                               "latency_ms_b1", "latency_ms_b64"}));
  const std::vector<std::string> stages = {"teacher", "student_labels", "student_kd", "pruned_90", "channels_50", "int8"};
  std::map<std::string, std::vector<double>> v;
  for (size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][0], stages[i - 1]);
    for (size_t c = 1; c < rows[i].size(); ++c) v[rows[i][0]].push_back(std::stod(rows[i][c]));
    EXPECT_NE(r.output.find("\nstage=" + stages[i - 1] + " accuracy="), std::string::npos) << r.output;
    EXPECT_GE(v[rows[i][0]][3], 0.0);
    EXPECT_LE(v[rows[i][0]][3], 1.0);
    EXPECT_GT(v[rows[i][0]][4], 0.0);  // a latency was measured
  }
  const double teacher_params = v["teacher"][0];
  EXPECT_EQ(teacher_params, 421738);
  EXPECT_LE(v["student_kd"][0], teacher_params / 4);
  EXPECT_EQ(v["student_kd"][0], v["student_labels"][0]);
  EXPECT_LT(v["pruned_90"][1], 0.11 * teacher_params);  // biases and batch norm are not pruned
  EXPECT_GT(v["pruned_90"][1], 0.09 * teacher_params);
  EXPECT_LT(v["channels_50"][0], teacher_params / 3);
  EXPECT_LT(v["int8"][2] * 3.8, v["teacher"][2]);  // the file
  EXPECT_LT(v["pruned_90"][2] * 5, v["teacher"][2]);  // its zeros are not stored
  EXPECT_NE(r.output.find("10: SparseLinear with "), std::string::npos) << r.output;  // fc1 runs sparse
  EXPECT_TRUE(is_png(dir_ + "/cmp/compress.png", 400));

  // ember-mnist's saved CNN as the teacher: the same test accuracy as ember-mnist reported.
  ProcessResult mnist = run({EMBER_MNIST, "--data", dir_ + "/mnist", "--model", "cnn", "--epochs", "1", "--threads", "1",
                             "--out", dir_ + "/cnn"});
  ASSERT_EQ(mnist.exit_code, 0) << mnist.output;
  r = run({EMBER_COMPRESS, "--data", dir_ + "/mnist", "--teacher", dir_ + "/cnn/model.safetensors", "--epochs", "1",
           "--threads", "1", "--out", dir_ + "/cmp2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(value_of(r.output, "stage").rfind("teacher accuracy=" + value_of(mnist.output, "test_accuracy"), 0), 0u)
      << r.output << mnist.output;
  r = run({EMBER_COMPRESS, "--alpha", "2"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--alpha: '2' is not a number in range"), std::string::npos) << r.output;
}

TEST_F(Examples, BadFlagsAndMissingDataAreReported) {
  ProcessResult r = run({EMBER_MNIST, "--epochs", "zero"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--epochs: expected an integer >= 1, got 'zero'"), std::string::npos) << r.output;
  r = run({EMBER_MNIST, "--frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown flag '--frobnicate'"), std::string::npos) << r.output;
  r = run({EMBER_MNIST, "--model", "transformer", "--data", dir_});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown model 'transformer'"), std::string::npos) << r.output;
  r = run({EMBER_MNIST, "--data", dir_ + "/nowhere"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(dir_ + "/nowhere"), std::string::npos) << r.output;
  r = run({EMBER_CIFAR10, "--predict", dir_ + "/none.png", "--weights", dir_ + "/none.safetensors"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("none.safetensors"), std::string::npos) << r.output;
  r = run({EMBER_MNIST, "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--predict IMAGE.png"), std::string::npos);
}

TEST(ExampleImages, PngRoundTripsAndBrokenFilesAreRejected) {
  const std::string path = (fs::temp_directory_path() / ("ember_png_" + std::to_string(::getpid()) + ".png")).string();
  examples::Image img(7, 5, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37);
  examples::write_png(path, img);
  const examples::Image back = examples::read_png(path, 3);
  EXPECT_EQ(back.width, 7);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.pixels, img.pixels);
  auto bytes = io::read_file(path);
  bytes.resize(bytes.size() / 2);
  io::write_file_atomically(path, bytes);
  EXPECT_THROW(examples::read_png(path, 1), FormatError);
  io::write_file_atomically(path, {'n', 'o', 't', ' ', 'p', 'n', 'g'});
  EXPECT_THROW(examples::read_png(path, 1), FormatError);
  fs::remove(path);
  EXPECT_THROW(examples::read_png(path, 1), IOError);
}

}  // namespace
}  // namespace ember
