// IDX and CIFAR readers on small generated files, raw and gzip, and every malformed-file class.
#include <gtest/gtest.h>
#include <cstring>
#include <filesystem>

#include "ember/data/readers.hpp"
#include "ember/ember.hpp"
#include "support/gzip.hpp"

namespace ember::data {
namespace {

using ember::testing::gzip;
using ember::testing::put_be32;

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("ember_readers_" + std::to_string(::getpid()) + "_" + name);
  fs::create_directories(d);
  return d.string();
}

std::vector<uint8_t> idx(uint8_t type, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b{0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void write(const std::string& path, const std::vector<uint8_t>& bytes) { io::write_file_atomically(path, bytes); }

void expect_format_error(const std::string& path, const std::string& text) {
  try {
    read_idx(path);
    ADD_FAILURE() << "expected FormatError: " << text;
  } catch (const FormatError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find(text), std::string::npos) << m << "\nexpected: " << text;
  }
}

// A tiny MNIST-format split: 3 images of 2x2 and their labels.
void write_mnist(const std::string& dir, const std::string& images_name, const std::string& labels_name,
                 bool gz, std::vector<uint8_t> labels = {7, 0, 9}) {
  auto img = idx(0x08, {3, 2, 2}, {0, 1, 2, 3, 10, 11, 12, 13, 250, 251, 252, 253});
  auto lbl = idx(0x08, {static_cast<uint32_t>(labels.size())}, labels);
  write(dir + "/" + images_name + (gz ? ".gz" : ""), gz ? gzip(img) : img);
  write(dir + "/" + labels_name + (gz ? ".gz" : ""), gz ? gzip(lbl) : lbl);
}

TEST(Idx, ReadsEveryTypeCode) {
  const std::string dir = temp_dir("types");
  write(dir + "/u8", idx(0x08, {2, 2}, {1, 2, 254, 255}));
  write(dir + "/i8", idx(0x09, {3}, {0x80, 0xff, 0x05}));
  write(dir + "/i16", idx(0x0B, {2}, {0xff, 0xfe, 0x01, 0x00}));
  write(dir + "/i32", idx(0x0C, {1}, {0x80, 0, 0, 0}));
  write(dir + "/f32", idx(0x0D, {1}, {0x3f, 0xc0, 0, 0}));
  write(dir + "/f64", idx(0x0E, {1}, {0xc0, 0x04, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(Tensor<uint8_t>::from_base(read_idx(dir + "/u8")).to_vector(), (std::vector<uint8_t>{1, 2, 254, 255}));
  EXPECT_EQ(Tensor<int32_t>::from_base(read_idx(dir + "/i8")).to_vector(), (std::vector<int32_t>{-128, -1, 5}));
  EXPECT_EQ(Tensor<int32_t>::from_base(read_idx(dir + "/i16")).to_vector(), (std::vector<int32_t>{-2, 256}));
  EXPECT_EQ(Tensor<int32_t>::from_base(read_idx(dir + "/i32")).item(), INT32_MIN);
  EXPECT_EQ(Tensor<float>::from_base(read_idx(dir + "/f32")).item(), 1.5f);
  EXPECT_EQ(Tensor<double>::from_base(read_idx(dir + "/f64")).item(), -2.5);
  write(dir + "/u8.gz", gzip(idx(0x08, {2, 2}, {1, 2, 254, 255})));
  EXPECT_EQ(read_idx(dir + "/u8.gz").shape(), Shape({2, 2}));
  fs::remove_all(dir);
}

TEST(Idx, LoadsMnistSplitsInBothSpellingsRawAndGzip) {
  const std::string dir = temp_dir("mnist");
  write_mnist(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", false);
  write_mnist(dir, "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte", true);
  LabeledImages train = load_mnist(dir, true);
  EXPECT_EQ(train.images.shape(), Shape({3, 2, 2}));
  EXPECT_EQ(train.labels.to_vector(), (std::vector<int64_t>{7, 0, 9}));
  LabeledImages test = load_mnist(dir, false);
  EXPECT_EQ(test.images.at({2, 1, 1}), 253);
  const std::string other = temp_dir("mnist_bad");
  write_mnist(other, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", false, {1, 10, 2});
  try {
    load_mnist(other, true);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("label 10 of image 1 is not below 10"), std::string::npos) << e.what();
  }
  write_mnist(other, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", false, {1, 2});
  EXPECT_THROW(load_mnist(other, true), FormatError);  // 2 labels for 3 images
  EXPECT_THROW(load_mnist(temp_dir("empty"), true), IOError);
  fs::remove_all(dir);
  fs::remove_all(other);
}

TEST(Idx, MalformedFilesAreRejected) {
  const std::string dir = temp_dir("bad");
  const auto good = idx(0x08, {3, 2, 2}, std::vector<uint8_t>(12, 7));
  for (size_t cut = 0; cut < good.size(); ++cut) {
    write(dir + "/cut", std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(cut)));
    EXPECT_THROW(read_idx(dir + "/cut"), FormatError) << "cut at " << cut;
  }
  auto p = dir + "/f";
  write(p, {1, 0, 8, 1, 0, 0, 0, 0});
  expect_format_error(p, "does not start with two zero bytes");
  write(p, idx(0x07, {1}, {0}));
  expect_format_error(p, "unknown type code 0x07");
  write(p, {0, 0, 8, 0});
  expect_format_error(p, "number of dims 0");
  write(p, idx(0x08, {60000, 28, 28}, {1, 2, 3}));  // a header that lies: no 47 MB allocation
  expect_format_error(p, "need 47040000 bytes of data but the file holds 3 (truncated)");
  auto extra = good;
  extra.push_back(0);
  write(p, extra);
  expect_format_error(p, "(trailing bytes)");
  write(p, idx(0x0E, {0xffffffff, 0xffffffff, 0xffffffff}, {}));
  expect_format_error(p, "overflow");
  write(p, {0x80, 0x04, 0x95});
  expect_format_error(p, "Python pickle");
  auto gz = gzip(good);
  write(p, std::vector<uint8_t>(gz.begin(), gz.end() - 6));
  EXPECT_THROW(read_idx(p), FormatError);
  gz[gz.size() / 2] ^= 0xff;
  write(p, gz);
  EXPECT_THROW(read_idx(p), FormatError);
  fs::remove_all(dir);
}

std::vector<uint8_t> cifar_records(const std::vector<std::vector<uint8_t>>& labels) {
  std::vector<uint8_t> b;
  for (size_t r = 0; r < labels.size(); ++r) {
    b.insert(b.end(), labels[r].begin(), labels[r].end());
    for (int i = 0; i < 3072; ++i) b.push_back(static_cast<uint8_t>((r * 7 + static_cast<size_t>(i)) & 0xff));
  }
  return b;
}

TEST(Cifar, ReadsBinaryBatchesAndRejectsBrokenOnes) {
  const std::string dir = temp_dir("cifar");
  write(dir + "/data_batch_1.bin", cifar_records({{3}, {9}}));
  write(dir + "/data_batch_2.bin", cifar_records({{0}}));
  LabeledImages a = read_cifar10({dir + "/data_batch_1.bin", dir + "/data_batch_2.bin"});
  EXPECT_EQ(a.images.shape(), Shape({3, 3, 32, 32}));
  EXPECT_EQ(a.labels.to_vector(), (std::vector<int64_t>{3, 9, 0}));
  EXPECT_EQ(a.images.at({1, 0, 0, 1}), 8);   // record 1, red plane, pixel 1: (1 * 7 + 1)
  EXPECT_EQ(a.images.at({0, 1, 0, 0}), 0);   // green plane starts at byte 1024: (0 + 1024) & 0xff
  write(dir + "/c100.bin", cifar_records({{19, 99}, {0, 5}}));
  LabeledImages c = read_cifar100(dir + "/c100.bin");
  EXPECT_EQ(c.labels.to_vector(), (std::vector<int64_t>{99, 5}));
  EXPECT_EQ(c.coarse_labels.to_vector(), (std::vector<int64_t>{19, 0}));
  auto short_batch = cifar_records({{1}});
  short_batch.pop_back();
  write(dir + "/short.bin", short_batch);
  try {
    read_cifar10({dir + "/short.bin"});
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of the 3073-byte record (3072 bytes left over)"),
              std::string::npos) << e.what();
  }
  write(dir + "/label.bin", cifar_records({{1}, {10}}));
  try {
    read_cifar10({dir + "/label.bin"});
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("at byte 3073: label 10 of record 1 is not below 10"), std::string::npos)
        << e.what();
  }
  write(dir + "/data_batch_1", {0x80, 0x02, 0x7d});  // the pickled "python version"
  try {
    read_cifar10({dir + "/data_batch_1"});
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("pickle format is not supported"), std::string::npos) << e.what();
  }
  const std::string only_pickle = temp_dir("pickle_only");
  write(only_pickle + "/test_batch", {0x80, 0x02});
  try {
    load_cifar10(only_pickle, false);
    FAIL();
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find("pickled \"python version\""), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
  fs::remove_all(only_pickle);
}

}  // namespace
}  // namespace ember::data

namespace ember::data {
namespace {
// The real Fashion-MNIST files, when Debian's dataset-fashion-mnist is installed
// (scripts/get-data.sh fashion-mnist).
TEST(Idx, ReadsTheRealFashionMnistWhenInstalled) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  LabeledImages train = load_mnist(dir, true), test = load_mnist(dir, false);
  EXPECT_EQ(train.images.shape(), Shape({60000, 28, 28}));
  EXPECT_EQ(test.images.shape(), Shape({10000, 28, 28}));
  // Fashion-MNIST is balanced: 6,000 training images per class.
  std::vector<int64_t> counts(10, 0);
  for (int64_t l : train.labels.to_vector()) ++counts[static_cast<size_t>(l)];
  for (int64_t c : counts) EXPECT_EQ(c, 6000);
}
}  // namespace
}  // namespace ember::data
