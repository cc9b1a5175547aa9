// safetensors: round trips, PyTorch's files, ember's files for PyTorch, and every malformed-file
// class rejected with a message naming the file, the tensor and the rule.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "ember/ember.hpp"
#include "support/reference_file.hpp"

namespace ember::io {
namespace {

using ember::testing::data_dir;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("ember_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

// A file with the given header text (padded to 8) and `data` bytes of zeros.
std::vector<uint8_t> craft(const std::string& header, size_t data = 0, bool pad = true) {
  std::string h = header;
  if (pad) h.append((8 - h.size() % 8) % 8, ' ');
  std::vector<uint8_t> out(8 + h.size() + data, 0);
  const uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, h.data(), h.size());
  return out;
}

void expect_format_error(const std::vector<uint8_t>& bytes, const std::string& text) {
  try {
    parse_safetensors(bytes, "case.safetensors");
    ADD_FAILURE() << "expected FormatError containing: " << text;
  } catch (const FormatError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("case.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find(text), std::string::npos) << m << "\nexpected: " << text;
  }
}

nn::StateDict sample() {
  return {{"weight", tensor<float>({1.5f, -2.0f, 3.25f, 0.0f}, {2, 2})},
          {"steps", tensor<int64_t>({42}, {1})},
          {"mask", tensor<uint8_t>({1, 0, 1})},
          {"scale", tensor<double>({0.125}, Shape{})},
          {"ids", tensor<int32_t>({-1, 7})},
          {"nothing", zeros<float>({0, 5})}};
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  auto bytes = serialize_safetensors(sample(), {{"epoch", "3"}});
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  SafetensorsFile f = parse_safetensors(bytes, "mem");
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.metadata.at("epoch"), "3");
  ASSERT_EQ(f.tensors.size(), 6u);
  EXPECT_EQ(f.tensors[0].name, "weight");
  EXPECT_EQ(Tensor<float>::from_base(f.tensors[0].tensor).to_vector(),
            (std::vector<float>{1.5f, -2.0f, 3.25f, 0.0f}));
  EXPECT_EQ(Tensor<int64_t>::from_base(f.tensors[1].tensor).item(), 42);
  EXPECT_EQ(Tensor<uint8_t>::from_base(f.tensors[2].tensor).to_vector(), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(Tensor<double>::from_base(f.tensors[3].tensor).dim(), 0);
  EXPECT_EQ(Tensor<int32_t>::from_base(f.tensors[4].tensor).to_vector(), (std::vector<int32_t>{-1, 7}));
  EXPECT_EQ(f.tensors[5].tensor.shape(), Shape({0, 5}));
  // Non-contiguous views are written in logical order.
  auto t = arange<float>(6).reshape({2, 3}).t();
  auto g = parse_safetensors(serialize_safetensors({{"t", t}}), "mem");
  EXPECT_EQ(Tensor<float>::from_base(g.tensors[0].tensor).to_vector(), t.contiguous().to_vector());
  EXPECT_THROW(serialize_safetensors({{"a", zeros<float>({1})}, {"a", zeros<float>({1})}}), ValueError);
}

TEST(Safetensors, ModuleSaveAndLoad) {
  const std::string path = temp_path("module.safetensors");
  nn::Sequential a(nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 2));
  save(a, path);
  nn::Sequential b(nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 2));
  load(b, path);
  auto x = randn<float>({5, 4});
  EXPECT_EQ(a(x).to_vector(), b(x).to_vector());
  nn::Sequential<double> d(nn::Linear<double>(4, 3), nn::ReLU<double>(), nn::Linear<double>(3, 2));
  load(d, path);  // float32 file into a float64 model: converted, as PyTorch's copy_ does
  nn::Sequential wrong(nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 5));
  try {
    load(wrong, path);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("2.weight (expected [5, 3] float32, got [2, 3] float32)"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(load(b, temp_path("does_not_exist.safetensors")), IOError);
  std::filesystem::remove(path);
}

TEST(Safetensors, LoadsWhatPyTorchWrote) {
  nn::Sequential net(nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 2));
  load(net, data_dir() + "/torch_mlp.safetensors");
  auto io = ember::testing::load_reference("torch_mlp_io.txt").at("mlp");
  auto y = net(io[0].second.as<float>());
  auto want = io[1].second.values;
  auto got = y.to_vector();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6);

  SafetensorsFile f = read_safetensors(data_dir() + "/torch_dtypes.safetensors");
  std::map<std::string, TensorBase> m;
  for (auto& e : f.tensors) m[e.name] = e.tensor;
  EXPECT_EQ(Tensor<float>::from_base(m.at("f16")).to_vector(),
            (std::vector<float>{1.5f, -2.0f, 65504.0f, 6.0975551605224609e-05f}));
  EXPECT_EQ(Tensor<float>::from_base(m.at("bf16")).to_vector(), (std::vector<float>{1.0f, -3.5f}));
  EXPECT_EQ(Tensor<int8_t>::from_base(m.at("i8")).to_vector(), (std::vector<int8_t>{-128, 0, 127}));
  EXPECT_EQ(Tensor<uint8_t>::from_base(m.at("flag")).to_vector(), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(Tensor<double>::from_base(m.at("f64")).to_vector(), (std::vector<double>{0.25, -1e300}));
  EXPECT_EQ(Tensor<int64_t>::from_base(m.at("i64")).to_vector(), (std::vector<int64_t>{-(int64_t(1) << 62), 7}));
  EXPECT_EQ(Tensor<uint8_t>::from_base(m.at("u8")).to_vector(), (std::vector<uint8_t>{255, 0}));
  EXPECT_EQ(m.at("empty").shape(), Shape({0, 3}));
  EXPECT_EQ(Tensor<float>::from_base(m.at("scalar")).item(), 3.5f);
}

// tests/data/ember_mlp.safetensors is what ember writes for PyTorch's MLP; tools/make_torch_refs.py
// checks that PyTorch loads it with strict=True. This keeps the committed file equal to what the
// current code writes (EMBER_UPDATE_REFERENCE=1 rewrites it).
TEST(Safetensors, EmberWritesTheFileThatPyTorchChecks) {
  nn::Sequential net(nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 2));
  load(net, data_dir() + "/torch_mlp.safetensors");
  const std::string path = data_dir() + "/ember_mlp.safetensors";
  auto bytes = serialize_safetensors(net.state_dict());
  if (std::getenv("EMBER_UPDATE_REFERENCE")) write_file_atomically(path, bytes);
  EXPECT_EQ(read_file(path), bytes);
}

TEST(Safetensors, TruncationAtEveryByteIsRejected) {
  auto bytes = serialize_safetensors(sample());
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + static_cast<long>(cut));
    EXPECT_THROW(parse_safetensors(part, "cut"), FormatError) << "cut at " << cut;
  }
  auto extra = bytes;
  extra.push_back(0);
  expect_format_error(extra, "trailing bytes");
}

TEST(Safetensors, BitFlipsInTheHeaderNeverCrash) {
  auto bytes = serialize_safetensors(sample());
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  for (size_t i = 0; i < 8 + n; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto flipped = bytes;
      flipped[i] ^= static_cast<uint8_t>(1 << bit);
      try {
        parse_safetensors(flipped, "flip");  // a self-consistent file may still parse
      } catch (const FormatError&) {
      }
    }
  }
}

TEST(Safetensors, MalformedHeadersAreRejectedByRule) {
  expect_format_error({1, 2, 3}, "fewer than the 8-byte header length");
  std::vector<uint8_t> huge(16, 0);
  const uint64_t big = 200'000'000;
  std::memcpy(huge.data(), &big, 8);
  expect_format_error(huge, "exceeds the limit of 100000000 bytes");
  std::vector<uint8_t> past(16, 0);
  const uint64_t len = 100;
  std::memcpy(past.data(), &len, 8);
  expect_format_error(past, "runs past the end of the file");
  expect_format_error(craft("[1,2]"), "does not start with '{'");
  expect_format_error(craft("{\"a\xff\":1}"), "not valid UTF-8");
  expect_format_error(craft("{\"a\": "), "not valid JSON");
  expect_format_error(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                      "repeats the key \"a\"");
  expect_format_error(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                      "repeats the key \"a\"");
  expect_format_error(craft("{\"__metadata__\":{\"k\":[[[[[1]]]]]}}"), "nested deeper");
  expect_format_error(craft("{\"__metadata__\":{\"k\":1}}"), "__metadata__ value \"k\" is not a string");
  expect_format_error(craft("{\"__metadata__\":[]}"), "__metadata__ must be an object");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
                      "tensor \"t\": unknown dtype \"F8\"");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4),
                      "tensor \"t\": shape entry -1 is not a non-negative integer");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4),
                      "shape entry 1.0 is not a non-negative integer");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
                            "\"data_offsets\":[0,4]}}", 4),
                      "overflows 64-bit sizes");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4),
                      "data_offsets must be two non-negative integers");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8),
                      "end before they begin");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
                      "shape [2] x F32 = 8 bytes but data_offsets give 4");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                      "tensor \"t\": data_offsets begin at 4 but the previous tensor ends at 0 (a gap)");
  expect_format_error(craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                      "(an overlap)");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8),
                      "the tensors cover 16 bytes of data but the file holds 8 (truncated?)");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4),
                      "unknown field \"x\"");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "needs dtype, shape and data_offsets");
  expect_format_error(craft("{\"t\":3}"), "the entry is not an object");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", 4),
                      "shape is not an array");
  expect_format_error(craft("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
                            "\"data_offsets\":[0,4]}}", 4),
                      "17 dims");
  auto b = craft("{\"t\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
  b[b.size() - 1] = 2;
  expect_format_error(b, "BOOL element 1 is 2");
  // Not a safetensors file at all: a Git LFS pointer or an HTML page.
  std::string lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n";
  expect_format_error(std::vector<uint8_t>(lfs.begin(), lfs.end()), "exceeds the limit");
}

TEST(Safetensors, AtomicWriteLeavesNoTemporaryFiles) {
  const std::string dir = temp_path("atomic_dir");
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/m.safetensors";
  write_safetensors(path, sample());
  write_safetensors(path, sample());  // replaces the old file
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
  EXPECT_EQ(read_safetensors(path).tensors.size(), 6u);
  EXPECT_THROW(write_safetensors(dir + "/missing/sub/x.safetensors", sample()), IOError);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ember::io
