// One test per item of the bad-input and fault checklist that ember's reliability promises follow
// (docs/reliability.md lists them with the other tests behind each promise): the test's name is
// the item's id. Each asserts the exception type and what its message names.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "ember/ember.hpp"
#include "support/expect_error.hpp"
#include "support/gzip.hpp"

namespace ember {
namespace {

namespace fs = std::filesystem;
namespace F = nn::functional;
using ember::testing::expect_error;
using ember::testing::gzip;
using ember::testing::put_be32;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("ember_checklist_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::vector<uint8_t> idx(uint8_t type, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b{0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

std::vector<uint8_t> safetensors_with_header(const std::string& header, size_t data = 0) {
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  std::vector<uint8_t> out(8 + h.size() + data, 0);
  const uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, h.data(), h.size());
  return out;
}

// ---- Tensor ops and shapes ------------------------------------------------------------------------

TEST(Checklist, T1_ElementAndByteCountsOverflowBeforeAllocating) {
  expect_error<ShapeError>([] { zeros<float>({kInt64Max, 2}); }, "more elements than int64 can count");
  expect_error<ShapeError>([] { zeros<float>({int64_t(1) << 32, int64_t(1) << 32}); }, "more elements than int64");
  expect_error<ShapeError>([] { zeros<double>({int64_t(1) << 59, 2}); }, "2^60 bytes");
  expect_error<ShapeError>([] { randn<float>({int64_t(1) << 60, 4}); }, "2^60 bytes");
}

TEST(Checklist, T2_NegativeDimsThrowZeroDimsGiveEmptyResults) {
  expect_error<ShapeError>([] { zeros<float>({2, -1}); }, "negative size -1 at dim 1");
  expect_error<ShapeError>([] { ones<float>({3}).reshape({-2, 3}); }, "reshape");
  Tensor<float> e = zeros<float>({0, 3});
  EXPECT_EQ((e * 2.0 + 1.0).shape(), Shape({0, 3}));
  EXPECT_EQ(e.sum().item(), 0.0f);  // sum has an identity
  EXPECT_EQ(e.sum(0).to_vector(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(matmul(e, ones<float>({3, 4})).shape(), Shape({0, 4}));
  expect_error<ValueError>([&] { argmax(e, 0); }, "cannot reduce over dim 0 of size 0");  // no identity
}

TEST(Checklist, T2_EmptyBatchesPassThroughLayersAsInPyTorch) {
  // Group norm's group size comes from the shape, not from -1, which an empty batch leaves undetermined.
  nn::GroupNorm<double> gn(2, 4);
  auto x = zeros<double>({0, 4, 2, 2}).requires_grad_(true);
  auto y = gn(x);
  EXPECT_EQ(y.shape(), Shape({0, 4, 2, 2}));
  y.sum().backward();
  EXPECT_EQ(x.grad().shape(), Shape({0, 4, 2, 2}));
  EXPECT_EQ(gn.weight.grad().to_vector(), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_EQ(gn(zeros<double>({3, 4, 0, 2})).shape(), Shape({3, 4, 0, 2}));
  expect_error<ShapeError>([] { F::group_norm(ones<float>({2, 4, 3}), 2, ones<float>({3})); },
                           "group_norm: weight [3] must be [4], one value per channel of the input [2, 4, 3]");
  expect_error<ShapeError>([] { F::group_norm(ones<float>({2, 4, 3}), 2, Tensor<float>(), ones<float>({2, 2})); },
                           "group_norm: bias [2, 2] must be [4]");
  // Recurrent layers: an empty batch gives an empty output, an empty sequence is refused (as PyTorch does).
  nn::LSTM<float> lstm(3, 4);
  nn::GRU<float> gru(3, 4, {.batch_first = true});
  EXPECT_EQ(lstm(zeros<float>({5, 0, 3})).shape(), Shape({5, 0, 4}));
  EXPECT_EQ(gru(zeros<float>({0, 5, 3})).shape(), Shape({0, 5, 4}));
  expect_error<ValueError>([&] { lstm(zeros<float>({0, 2, 3})); }, "LSTM: input [0, 2, 3] has a sequence length of 0");
  expect_error<ValueError>([&] { gru(zeros<float>({2, 0, 3})); }, "GRU: input [2, 0, 3] has a sequence length of 0");
  // Means over an empty batch are NaN, batchmean's too.
  EXPECT_TRUE(std::isnan(F::kl_div(zeros<float>({0, 5}), zeros<float>({0, 5}), F::Reduction::Mean, false, true).item()));
  EXPECT_TRUE(std::isnan(F::mse_loss(zeros<float>({0, 5}), zeros<float>({0, 5})).item()));
}

TEST(Checklist, T3_ConvAndPoolHyperParametersAreChecked) {
  const Tensor<float> x = ones<float>({1, 4, 6, 6}), w = ones<float>({2, 4, 3, 3});
  Conv2dGeometry g;
  g.stride = {0, 1};
  expect_error<ValueError>([&] { conv2d(x, w, Tensor<float>(), g); }, "stride and dilation must be >= 1");
  g = {};
  g.groups = 0;
  expect_error<ValueError>([&] { conv2d(x, w, Tensor<float>(), g); }, "groups");
  g.groups = 3;
  expect_error<ShapeError>([&] { conv2d(x, ones<float>({3, 1, 3, 3}), Tensor<float>(), g); }, "divisible by groups 3");
  g = {};
  g.padding = {-1, 0, 0, 0};
  expect_error<ValueError>([&] { conv2d(x, w, Tensor<float>(), g); }, "padding must be >= 0");
  expect_error<ShapeError>([&] { conv2d(x, ones<float>({2, 4, 7, 7}), Tensor<float>(), {}); }, "smaller than the kernel");
  expect_error<ShapeError>([&] { conv2d(x, ones<float>({2, 4, 0, 3}), Tensor<float>(), {}); }, "empty kernel");
  expect_error<ValueError>([&] { F::max_pool2d(x, 0); }, "kernel size, stride and dilation must be positive");
  expect_error<ValueError>([&] { F::max_pool2d(x, 2, {.padding = 2}); }, "at most half the kernel");
  expect_error<ValueError>([] { nn::Conv2d(4, 6, 3, {.groups = 4}); }, "Conv2d");
}

TEST(Checklist, T4_RankMismatchesAreShapeErrors) {
  const Tensor<float> x = ones<float>({2, 6});
  expect_error<ShapeError>([&] { x.reshape({5, 2}); }, "reshape");
  expect_error<ShapeError>([&] { conv2d(ones<float>({1, 2, 5, 5}), ones<float>({2, 2, 3}), Tensor<float>(), {}); },
                           "must be 4-D");
  expect_error<ShapeError>([&] { F::conv1d(ones<float>({5}), ones<float>({2, 2, 3})); },
                           "conv1d: input must be 2-D [C, L] or 3-D [N, C, L], got [5]");
  // An unbatched [C, L] input is a batch of one, but its channels are still checked.
  expect_error<ShapeError>([&] { F::conv1d(ones<float>({3, 5}), ones<float>({2, 2, 3})); }, "channels");
  expect_error<ValueError>([&] { x.item(); }, "item: expected a tensor with one element, got shape [2, 6]");
}

TEST(Checklist, T5_BroadcastAndMatmulMismatchesNameBothShapes) {
  expect_error<ShapeError>([] { matmul(ones<float>({64, 784}), ones<float>({100, 10})); },
                           "[64, 784] x [100, 10]: inner dims 784 != 100");
  expect_error<ShapeError>([] { ones<float>({2, 3}) + ones<float>({4}); }, "[2, 3]");
  nn::MultiheadAttention<float> mha(8, 2);
  expect_error<ShapeError>([&] { mha(ones<float>({3, 2, 6})); },
                           "MultiheadAttention(embed_dim=8, num_heads=2): query [3, 2, 6] has embedding dim 6, expected 8");
  expect_error<ShapeError>([] { F::multi_head_attention(ones<float>({2, 3, 6}), ones<float>({2, 3, 6}), ones<float>({2, 3, 6}),
                                                        ones<float>({24, 8}), Tensor<float>(), ones<float>({6, 6}),
                                                        Tensor<float>(), {.num_heads = 2}); },
                           "in_proj_weight [24, 8] does not fit the query [2, 3, 6] of embedding dim 6 (expected [18, 6])");
}

TEST(Checklist, T6_OutOfRangeAndNegativeIndicesNameThePosition) {
  const Tensor<float> x = ones<float>({2, 3});
  expect_error<IndexError>([&] { x.index_select(1, tensor<int64_t>({0, 3})); }, "index 3 at position 1");
  expect_error<IndexError>([&] { x.index_select(1, tensor<int64_t>({-1})); }, "index -1 at position 0");
  expect_error<IndexError>([] { F::embedding(tensor<int64_t>({5}), ones<float>({5, 2})); }, "index 5 at position 0");
  const Tensor<float> logits = zeros<float>({3, 10});
  expect_error<IndexError>([&] { F::cross_entropy(logits, tensor<int64_t>({1, 10, 2}, {3})); }, "10");
  EXPECT_THROW(F::cross_entropy(logits, tensor<int64_t>({1, -1, 2}, {3})), IndexError);
}

TEST(Checklist, T7_ElementTypesAreNeverReinterpreted) {
  const TensorBase ints = arange<int64_t>(0, 4);
  expect_error<TypeError>([&] { Tensor<float>::from_base(ints); }, "a int64 tensor cannot be viewed as float32");
  nn::Linear<float> net(2, 2);
  expect_error<ValueError>([&] { net.load_state_dict({{"weight", zeros<double>({2, 2})}, {"bias", zeros<float>({2})}}); },
                           "float64");
}

TEST(Checklist, T8_ViewsGiveTheContiguousResultAndOverlappingWritesThrow) {
  manual_seed(2);
  const Tensor<double> base = randn<double>({5, 6});
  const Tensor<double> view = base.t().narrow(0, 1, 4).slice(1, 1, 5, 2);  // transposed, offset, strided
  const Tensor<double> copy = view.contiguous();
  EXPECT_EQ(exp(view).to_vector(), exp(copy).to_vector());
  EXPECT_EQ((view * view).sum(1).to_vector(), (copy * copy).sum(1).to_vector());
  Tensor<double> a = view.detach().requires_grad_(true), b = copy.detach().requires_grad_(true);
  tanh(a).sum().backward();
  tanh(b).sum().backward();
  EXPECT_EQ(a.grad().to_vector(), b.grad().to_vector());
  Tensor<double> row = zeros<double>({3});
  expect_error<ValueError>([&] { row.expand({2, 3}).add_(ones<double>({2, 3})); }, "refers to a single memory location");
}

// Views whose dims of size 1 carry any stride (a head of size 1 split off and transposed, as
// multi-head attention does) are contiguous to is_contiguous(), so contiguous() hands them back
// as they are: the products must still take them (once they passed a null operand to the GEMM).
TEST(Checklist, T8_ProductsTakeViewsWhoseUnitDimsHaveAnyStride) {
  manual_seed(4);
  const Tensor<double> k = randn<double>({3, 1, 3}), q = randn<double>({3, 5, 3});
  const Tensor<double> kt = k.reshape({3, 1, 3, 1}).permute({0, 2, 1, 3}).transpose(-2, -1);  // [3, 3, 1, 1]
  const Tensor<double> qh = q.reshape({3, 5, 3, 1}).permute({0, 2, 1, 3});                   // [3, 3, 5, 1]
  ASSERT_TRUE(kt.is_contiguous());
  ASSERT_EQ(kt.strides(), (Shape{3, 1, 1, 3}));
  EXPECT_EQ(matmul(qh, kt).to_vector(), matmul(qh.contiguous(), kt.clone()).to_vector());
  EXPECT_EQ(matmul(kt, qh.transpose(-2, -1)).to_vector(),
            matmul(kt.clone(), qh.transpose(-2, -1).contiguous()).to_vector());
  const Tensor<double> row = randn<double>({4, 6}).narrow(0, 2, 1);  // [1, 6]
  const Tensor<double> col = randn<double>({6, 1}).expand({6, 1});
  EXPECT_EQ(mm(row, col).to_vector(), mm(row.clone(), col.clone()).to_vector());
  const Tensor<double> strided_row = randn<double>({1, 12}).slice(1, 0, 12, 2);  // [1, 6], column stride 2
  EXPECT_EQ(mm(strided_row, col).to_vector(), mm(strided_row.contiguous(), col.clone()).to_vector());
  // Multi-head attention with one element per head and one key.
  const Tensor<double> ipw = randn<double>({9, 3}), ipb = randn<double>({9}), opw = randn<double>({3, 3}),
                       opb = randn<double>({3});
  nn::functional::MultiheadAttentionArgs args;
  args.num_heads = 3;
  const auto [out, weights] = nn::functional::multi_head_attention(q, k, k, ipw, ipb, opw, opb, args);
  EXPECT_EQ(out.shape(), (Shape{3, 5, 3}));
  for (double w : weights.to_vector()) EXPECT_EQ(w, 1.0);  // one key: all the weight on it
}

TEST(Checklist, T9_EdgeLengthsAndMisalignedViewsMatchTheDefinition) {
  for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 1023, 1025}) {
    const Tensor<float> buf = arange<float>(0, static_cast<double>(n + 1)) * 0.37 - 3.0;
    const Tensor<float> x = buf.narrow(0, 1, n);  // one element past a 64-byte boundary
    const std::vector<float> xv = x.to_vector();
    const std::vector<float> r = relu(x).to_vector(), s = (x + x).to_vector(), m = (x * x).to_vector();
    for (size_t i = 0; i < xv.size(); ++i) {
      ASSERT_EQ(r[i], xv[i] > 0 ? xv[i] : 0.0f) << n;
      ASSERT_EQ(s[i], xv[i] + xv[i]) << n;
      ASSERT_EQ(m[i], xv[i] * xv[i]) << n;
    }
  }
}

TEST(Checklist, T10_SpecialValuesHaveDefinedResults) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor<float> x = tensor<float>({nan, -kInf, kInf, -0.0f, 1e-40f});
  const auto r = relu(x).to_vector();
  EXPECT_TRUE(std::isnan(r[0]));
  EXPECT_EQ(r[1], 0.0f);
  EXPECT_EQ(r[2], kInf);
  EXPECT_TRUE(std::isnan(x.max().item()));  // NaN propagates, as torch.max
  EXPECT_EQ(argmax(x, 0).item(), 0);        // and wins argmax
  const auto sm = softmax(tensor<float>({-kInf, -kInf}), 0).to_vector();
  EXPECT_TRUE(std::isnan(sm[0]) && std::isnan(sm[1]));  // as PyTorch: 0 / 0
  const auto ls = log_softmax(tensor<float>({0.0f, -kInf}), 0).to_vector();
  EXPECT_EQ(ls[0], 0.0f);
  EXPECT_EQ(ls[1], -kInf);
  // A correction beyond the count divides by 0 (PyTorch clamps the divisor), never by a negative count.
  const auto v = var(tensor<float>({1, 1, 2, 4}, {2, 2}), {1}, false, 3).to_vector();
  EXPECT_TRUE(std::isnan(v[0]));  // 0 / 0
  EXPECT_EQ(v[1], kInf);          // 2 / 0
  expect_error<ValueError>([&] { x.narrow(0, 0, 1).to<int64_t>(); }, "does not fit int64");
  expect_error<ValueError>([] { tensor<float>({3e19f}).to<int64_t>(); }, "does not fit int64");
}

TEST(Checklist, T11_ResourceRequestsAreBounded) {
  expect_error<ValueError>([] { zeros<float>({int64_t(1000000), int64_t(1000000)}); }, "exceeds the limit");
  const int64_t limit = max_allocation_bytes();
  set_max_allocation_bytes(1 << 20);
  expect_error<ValueError>([] { empty<float>({1 << 19}); }, "2097152 bytes exceeds the limit of 1048576");
  set_max_allocation_bytes(limit);
  EXPECT_THROW(set_max_allocation_bytes(0), ValueError);
  expect_error<ValueError>([] { set_num_threads(0); }, "set_num_threads");
  expect_error<ValueError>([] { set_num_threads(1000000); }, "[1, 4096]");
  auto ds = std::make_shared<data::TensorDataset<float, int64_t>>(zeros<float>({4, 2}), zeros<int64_t>({4}));
  expect_error<ValueError>([&] { data::DataLoader<float, int64_t>(ds, {.batch_size = 0}); }, "batch_size");
  expect_error<ValueError>([&] { data::DataLoader<float, int64_t>(ds, {.num_workers = 1000000}); }, "num_workers");
}

// ---- Autograd ---------------------------------------------------------------------------------------

TEST(Checklist, A1_BackwardNeedsAMatchingGradient) {
  Tensor<double> x = ones<double>({3}).requires_grad_(true);
  EXPECT_THROW((x * 2.0).backward(), Error);  // non-scalar without a gradient
  EXPECT_THROW((x * 2.0).backward(ones<double>({4})), Error);
  Tensor<int64_t> ints = zeros<int64_t>({2});
  EXPECT_THROW(ints.requires_grad_(true), Error);
}

TEST(Checklist, A2_FreedGraphsAndChangedSavedTensorsAreAutogradErrors) {
  Tensor<double> x = ones<double>({3}).requires_grad_(true);
  Tensor<double> y = (x * x).sum();
  y.backward();
  EXPECT_THROW(y.backward(), AutogradError);
  Tensor<double> h = x * 3.0;
  Tensor<double> z = (h * h).sum();
  {
    NoGradGuard no_grad;
    h.add_(1.0);
  }
  EXPECT_THROW(z.backward(), AutogradError);
}

TEST(Checklist, A3_UnusedOutputsCountAsZeros) {
  Tensor<double> x = arange<double>(0, 6).requires_grad_(true);
  auto parts = x.split(3, 0);
  parts[0].sum().backward();  // parts[1] is unused
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 1, 1, 0, 0, 0}));
  Tensor<double> w = ones<double>({2}).requires_grad_(true);
  std::vector<Tensor<double>> g = autograd::grad({(w * 2.0).sum()}, {w, x}, {}, false, false, /*allow_unused=*/true);
  EXPECT_FALSE(g[1].defined());
}

TEST(Checklist, A4_AnomalyModeNamesTheOpThatMadeNaN) {
  auto x = tensor<double>({0.0, 1.0}, {2}, true);
  autograd::DetectAnomalyGuard anomaly;
  expect_error<AutogradError>([&] { (sqrt(x) * 0.0).sum().backward(); }, "backward of sqrt returned NaN");
}

TEST(Checklist, A5_DeepGraphsNeedNoDeepStack) {
  // Autograd.DeepChainDoesNotOverflowTheStack runs 10^6 ops; here 10^5, on a 64 KiB stack would
  // fail a recursive walk long before.
  Tensor<double> x = ones<double>({1}).requires_grad_(true);
  Tensor<double> y = x;
  for (int i = 0; i < 100000; ++i) y = y * 1.0;
  y.sum().backward();
  EXPECT_EQ(x.grad().item(), 1.0);
}

// ---- File loaders -----------------------------------------------------------------------------------

TEST(Checklist, L1_MissingEmptyAndNonRegularFilesNameThePath) {
  const std::string dir = temp_dir("l1");
  expect_error<IOError>([&] { data::read_idx(dir + "/missing"); }, dir + "/missing");
  expect_error<IOError>([&] { io::read_safetensors(dir); }, "a directory");
  expect_error<IOError>([&] { load_checkpoint("/dev/null"); }, "character device");
  io::write_file_atomically(dir + "/empty", {});
  expect_error<FormatError>([&] { data::read_idx(dir + "/empty"); }, "truncated or empty");
  expect_error<FormatError>([&] { io::read_safetensors(dir + "/empty"); }, "8-byte header length");
  expect_error<FormatError>([&] { load_checkpoint(dir + "/empty"); }, dir + "/empty");
  if (::geteuid() != 0) {  // root reads anything
    io::write_file_atomically(dir + "/locked", {1, 2, 3});
    ::chmod((dir + "/locked").c_str(), 0);
    expect_error<IOError>([&] { data::read_idx(dir + "/locked"); }, "Permission denied");
  }
  fs::remove_all(dir);
}

// Every proper prefix of a valid file, and the file with a byte appended, is a FormatError
// (except prefixes that are themselves valid files: `valid_prefix`).
template <class Read>
void expect_every_truncation_refused(const std::vector<uint8_t>& good, Read read, size_t valid_prefix = 0) {
  EXPECT_NO_THROW(read(good));
  for (size_t n = 0; n < good.size(); ++n) {
    if (valid_prefix != 0 && n == valid_prefix) continue;
    const std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    EXPECT_THROW(read(cut), FormatError) << "truncated to " << n << " of " << good.size() << " bytes";
  }
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_THROW(read(longer), FormatError) << "one trailing byte";
}

TEST(Checklist, L2_TruncationAtEveryByteAndTrailingBytesAreRefused) {
  const auto raw = idx(0x0D, {2, 3}, std::vector<uint8_t>(24, 0x3f));
  expect_every_truncation_refused(raw, [](const std::vector<uint8_t>& b) { return data::parse_idx(b, "raw"); });
  expect_every_truncation_refused(gzip(raw), [](const std::vector<uint8_t>& b) { return data::parse_idx(b, "gz"); });
  // A CIFAR batch has no header: one whole record is a valid (shorter) file; load_cifar10's
  // count of 10,000 records per batch catches that (Hardening.CifarRefusesEmptyInputAndShortBatches).
  std::vector<uint8_t> cifar(2 * 3073, 1);
  expect_every_truncation_refused(
      cifar, [](const std::vector<uint8_t>& b) { return data::parse_cifar10(b, "cifar"); }, 3073);
  nn::Linear<float> net(2, 1);
  optim::SGD<float> sgd(net.parameters(), {.lr = 0.1});
  const std::string dir = temp_dir("l2");
  save_checkpoint(dir + "/c.ckpt", make_checkpoint(net, sgd, nullptr, 1));
  expect_every_truncation_refused(io::read_file(dir + "/c.ckpt"),
                                  [](const std::vector<uint8_t>& b) { return parse_checkpoint(b, "ckpt"); });
  fs::remove_all(dir);
}

TEST(Checklist, L3_LoadedDataIsOwnedNotMapped) {
  const std::string dir = temp_dir("l3");
  nn::Linear<float> net(3, 2);
  save(net, dir + "/m.safetensors");
  io::SafetensorsFile f = io::read_safetensors(dir + "/m.safetensors");
  fs::resize_file(dir + "/m.safetensors", 10);  // truncated after reading: no SIGBUS, data intact
  ASSERT_EQ(f.tensors.size(), 2u);
  const auto& bias = f.tensors[0].name == "bias" ? f.tensors[0] : f.tensors[1];
  EXPECT_EQ(Tensor<float>::from_base(bias.tensor).to_vector(), net.bias.to_vector());
  EXPECT_THROW(io::read_safetensors(dir + "/m.safetensors"), FormatError);
  fs::remove_all(dir);
}

TEST(Checklist, L4_WrongFileTypesAreNamed) {
  const std::string lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 12345\n";
  const std::vector<uint8_t> pointer(lfs.begin(), lfs.end());
  EXPECT_THROW(io::parse_safetensors(pointer, "lfs"), FormatError);
  const std::string html = "<!DOCTYPE html><html><body>Not Found</body></html>";
  expect_error<FormatError>([&] { data::parse_idx(std::vector<uint8_t>(html.begin(), html.end()), "page"); },
                            "not an IDX file");
  expect_error<FormatError>([&] { data::parse_idx({0x80, 0x02, 0x7d}, "pickle"); }, "Python pickle");
  EXPECT_THROW(io::parse_safetensors(gzip(idx(0x08, {2}, {1, 2})), "gz"), FormatError);
}

TEST(Checklist, I1_IdxMagicTypeAndDimsAreChecked) {
  expect_error<FormatError>([] { data::parse_idx({1, 0, 8, 1, 0, 0, 0, 0}, "m"); }, "magic 0x01000801");
  expect_error<FormatError>([] { data::parse_idx({0, 0, 0x0A, 1, 0, 0, 0, 0}, "m"); }, "unknown type code 0x0a");
  expect_error<FormatError>([] { data::parse_idx({0, 0, 8, 0}, "m"); }, "number of dims 0");
  const std::string dir = temp_dir("i1");
  io::write_file_atomically(dir + "/train-images-idx3-ubyte", idx(0x08, {2, 2, 2}, std::vector<uint8_t>(8, 0)));
  io::write_file_atomically(dir + "/train-labels-idx1-ubyte", idx(0x08, {2, 1}, {0, 1}));
  expect_error<FormatError>([&] { data::load_mnist(dir, true); }, "magic 0x00000801");
  fs::remove_all(dir);
}

TEST(Checklist, I2_IdxSizesMatchTheHeaderExactly) {
  expect_error<FormatError>([] { data::parse_idx(idx(0x08, {60000, 28, 28}, std::vector<uint8_t>(100, 0)), "m"); },
                            "need 47040000 bytes of data but the file holds 100 (truncated)");
  const std::string dir = temp_dir("i2");
  io::write_file_atomically(dir + "/train-images-idx3-ubyte", idx(0x08, {3, 1, 1}, {0, 0, 0}));
  io::write_file_atomically(dir + "/train-labels-idx1-ubyte", idx(0x08, {2}, {0, 1}));
  expect_error<FormatError>([&] { data::load_mnist(dir, true); }, "2 labels for 3 images");
  io::write_file_atomically(dir + "/train-labels-idx1-ubyte", idx(0x08, {3}, {0, 12, 1}));
  expect_error<FormatError>([&] { data::load_mnist(dir, true); }, "label 12 of image 1 is not below 10");
  fs::remove_all(dir);
}

TEST(Checklist, C1_CifarRecordsAndLabelsAreChecked) {
  expect_error<FormatError>([] { data::parse_cifar10(std::vector<uint8_t>(3073 + 5, 0), "c"); },
                            "is not a multiple of the 3073-byte record (5 bytes left over)");
  std::vector<uint8_t> two(2 * 3073, 0);
  two[3073] = 10;
  expect_error<FormatError>([&] { data::parse_cifar10(two, "c"); }, "label 10 of record 1 is not below 10");
}

TEST(Checklist, C2_PickledCifarIsRefused) {
  std::vector<uint8_t> pickle(3073, 0);
  pickle[0] = 0x80;
  expect_error<FormatError>([&] { data::parse_cifar10(pickle, "data_batch_1"); }, "pickle format is not supported");
}

// ---- safetensors ------------------------------------------------------------------------------------

TEST(Checklist, S1_HeaderLengthIsChecked) {
  expect_error<FormatError>([] { io::parse_safetensors({1, 2, 3}, "s"); }, "8-byte header length");
  std::vector<uint8_t> huge(16, 0);
  const uint64_t big = 200'000'000;
  std::memcpy(huge.data(), &big, 8);
  expect_error<FormatError>([&] { io::parse_safetensors(huge, "s"); }, "exceeds the limit of 100000000 bytes");
  std::vector<uint8_t> wrap(16, 0);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  std::memcpy(wrap.data(), &max, 8);
  EXPECT_THROW(io::parse_safetensors(wrap, "s"), FormatError);
}

TEST(Checklist, S2_HeaderGrammarIsStrict) {
  expect_error<FormatError>([] { io::parse_safetensors(safetensors_with_header("[1]"), "s"); }, "does not start with '{'");
  expect_error<FormatError>([] { io::parse_safetensors(safetensors_with_header("{\"a\": "), "s"); }, "not valid JSON");
  expect_error<FormatError>(
      [] {
        io::parse_safetensors(safetensors_with_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                                      "\"\\u0061\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                                                      2),
                              "s");
      },
      "repeats the key \"a\"");
  expect_error<FormatError>([] { io::parse_safetensors(safetensors_with_header("{\"__metadata__\":{\"k\":1}}"), "s"); },
                            "is not a string");
}

TEST(Checklist, S3_DtypesShapesAndRanksAreChecked) {
  expect_error<FormatError>(
      [] { io::parse_safetensors(safetensors_with_header("{\"t\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1), "s"); },
      "unknown dtype \"Q4\"");
  expect_error<FormatError>(
      [] { io::parse_safetensors(safetensors_with_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1), "s"); },
      "shape entry -1");
  const std::string dir = temp_dir("s3");
  io::write_safetensors(dir + "/m.safetensors", {{"weight", zeros<int64_t>({2, 2})}, {"bias", zeros<float>({2})}});
  nn::Linear<float> net(2, 2);
  expect_error<ValueError>([&] { load(net, dir + "/m.safetensors"); }, "weight (expected [2, 2] float32, got [2, 2] int64)");
  fs::remove_all(dir);
}

TEST(Checklist, S4_SizesAreOverflowCheckedAndMatchTheOffsets) {
  expect_error<FormatError>(
      [] {
        io::parse_safetensors(
            safetensors_with_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4),
            "s");
      },
      "overflows 64-bit sizes");
  expect_error<FormatError>(
      [] { io::parse_safetensors(safetensors_with_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4), "s"); },
      "8 bytes but data_offsets give 4");
}

TEST(Checklist, S5_OffsetsTileTheDataRegionExactly) {
  auto two = [](uint64_t b0, uint64_t e0, uint64_t b1, uint64_t e1, size_t data) {
    return safetensors_with_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(e0 - b0) +
                                       "],\"data_offsets\":[" + std::to_string(b0) + "," + std::to_string(e0) +
                                       "]},\"b\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(e1 - b1) +
                                       "],\"data_offsets\":[" + std::to_string(b1) + "," + std::to_string(e1) + "]}}",
                                   data);
  };
  EXPECT_NO_THROW(io::parse_safetensors(two(0, 2, 2, 4, 4), "s"));
  EXPECT_THROW(io::parse_safetensors(two(0, 2, 3, 5, 5), "s"), FormatError);  // a gap
  EXPECT_THROW(io::parse_safetensors(two(0, 3, 2, 4, 4), "s"), FormatError);  // an overlap
  EXPECT_THROW(io::parse_safetensors(two(1, 3, 3, 5, 5), "s"), FormatError);  // not starting at 0
  EXPECT_THROW(io::parse_safetensors(two(0, 2, 2, 4, 6), "s"), FormatError);  // short of the end
}

TEST(Checklist, S6_StrictLoadsListEveryOffendingName) {
  nn::Sequential<float> net(nn::Linear(2, 3), nn::Linear(3, 1));
  nn::StateDict sd = net.state_dict();
  sd.erase(sd.begin());                          // 0.weight missing
  sd[0].tensor = zeros<float>({4});              // 0.bias mis-shaped
  sd.push_back({"extra", zeros<float>({1})});    // unexpected
  try {
    net.load_state_dict(sd, true);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    const std::string m = e.what();
    for (const char* name : {"0.weight", "0.bias", "extra"}) EXPECT_NE(m.find(name), std::string::npos) << m;
  }
}

// ---- Checkpoints --------------------------------------------------------------------------------------

TEST(Checklist, K1_FailedSavesLeaveNothingBehind) {
  // Checkpoint.KilledSavesLeaveALoadableCheckpoint kills 100 saves at random moments.
  const std::string dir = temp_dir("k1");
  nn::Linear<float> net(2, 2);
  optim::SGD<float> sgd(net.parameters(), {.lr = 0.1});
  save_checkpoint(dir + "/c.ckpt", make_checkpoint(net, sgd, nullptr, 1));
  EXPECT_THROW(save_checkpoint(dir + "/no/such/folder/c.ckpt", make_checkpoint(net, sgd, nullptr, 2)), IOError);
  fs::create_directory(dir + "/c2.ckpt");  // the rename cannot replace a folder
  EXPECT_THROW(save_checkpoint(dir + "/c2.ckpt", make_checkpoint(net, sgd, nullptr, 2)), IOError);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1);  // no temporary left, the first checkpoint intact
  EXPECT_EQ(load_checkpoint(dir + "/c.ckpt").step, 1);
  fs::remove_all(dir);
}

TEST(Checklist, K2_CorruptOrForeignCheckpointsAreRefused) {
  const std::string dir = temp_dir("k2");
  nn::Linear<float> net(2, 2);
  optim::Adam<float> adam(net.parameters(), {.lr = 0.1});
  save_checkpoint(dir + "/c.ckpt", make_checkpoint(net, adam, nullptr, 1));
  std::vector<uint8_t> bytes = io::read_file(dir + "/c.ckpt");
  bytes[bytes.size() / 2] ^= 1;
  expect_error<FormatError>([&] { parse_checkpoint(bytes, "flipped"); }, "flipped");
  std::string text(bytes.begin(), bytes.end());
  bytes = io::read_file(dir + "/c.ckpt");
  text.assign(bytes.begin(), bytes.end());
  text.replace(text.find("\"ember.checkpoint\":\"2\""), 22, "\"ember.checkpoint\":\"9\"");
  expect_error<FormatError>([&] { parse_checkpoint(std::vector<uint8_t>(text.begin(), text.end()), "v9"); },
                            "format version 9");
  nn::Linear<float> other(3, 2);
  optim::Adam<float> other_adam(other.parameters(), {.lr = 0.1});
  EXPECT_THROW(restore_checkpoint(load_checkpoint(dir + "/c.ckpt"), other, other_adam, nullptr), ValueError);
  fs::remove_all(dir);
}

TEST(Checklist, K3_ResumingContinuesBitForBit) {
  const std::string dir = temp_dir("k3");
  auto run = [&](int steps, bool resume_midway) {
    manual_seed(4);
    nn::Sequential<float> net(nn::Linear(3, 8), nn::Tanh(), nn::Linear(8, 1));
    optim::Adam<float> adam(net.parameters(), {.lr = 0.01});
    optim::StepLR sched(adam, 2, 0.5);
    for (int s = 0; s < steps; ++s) {
      if (resume_midway && s == steps / 2) {
        save_checkpoint(dir + "/c.ckpt", make_checkpoint(net, adam, &sched, s));
        manual_seed(99);  // disturb everything the checkpoint restores
        for (auto& p : net.parameters()) {
          NoGradGuard no_grad;
          p.fill_(0.5f);
        }
        restore_checkpoint(load_checkpoint(dir + "/c.ckpt"), net, adam, &sched);
      }
      adam.zero_grad();
      net(randn<float>({4, 3})).square().mean().backward();
      adam.step();
      sched.step();
    }
    return net.parameters()[0].to_vector();
  };
  EXPECT_EQ(run(6, false), run(6, true));
  fs::remove_all(dir);
}

// ---- Data-loader threads ------------------------------------------------------------------------------

class Faulty : public data::Dataset<float, int64_t> {
 public:
  int64_t size() const override { return 12; }
  data::Example<float, int64_t> get(int64_t i, Generator&) const override {
    if (i == 7) throw FormatError("bad sample");
    return {full<float>({1}, static_cast<float>(i)), scalar_tensor<int64_t>(i)};
  }
};

TEST(Checklist, D1_WorkerErrorsReachTheConsumerAndWorkersAreJoined) {
  auto ds = std::make_shared<Faulty>();
  for (int workers : {0, 3}) {
    data::DataLoader<float, int64_t> loader(ds, {.batch_size = 4, .num_workers = workers});
    loader.start_epoch(0);
    EXPECT_TRUE(loader.next().has_value());
    expect_error<FormatError>([&] { loader.next(); }, "dataset sample 7: bad sample");
    loader.start_epoch(1);  // restart mid-epoch, then destroy mid-epoch
    EXPECT_TRUE(loader.next().has_value());
  }
}

TEST(Checklist, D2_BatchesDependOnSeedAndEpochOnly) {
  auto ds = std::make_shared<data::TensorDataset<float, int64_t>>(zeros<float>({20, 1}), arange<int64_t>(0, 20));
  auto order = [&](int workers) {
    data::DataLoader<float, int64_t> loader(ds, {.batch_size = 3, .shuffle = true, .seed = 5, .num_workers = workers});
    loader.start_epoch(2);
    std::vector<int64_t> out;
    while (auto b = loader.next())
      for (int64_t v : b->target.to_vector()) out.push_back(v);
    return out;
  };
  const auto serial = order(0);
  EXPECT_EQ(serial.size(), 20u);
  EXPECT_EQ(order(3), serial);
  EXPECT_NE(serial, arange<int64_t>(0, 20).to_vector());
}

}  // namespace
}  // namespace ember
