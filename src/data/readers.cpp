#include "ember/data/readers.hpp"

#include <zlib.h>

#include <atomic>
#include <cstring>
#include <filesystem>

#include "../ops/common.hpp"
#include "ember/io/safetensors.hpp"

namespace ember::data {

using detail::cat_str;

namespace {

[[noreturn]] void bad(const std::string& file, uint64_t offset, const std::string& what) {
  throw FormatError(cat_str(file, ": at byte ", offset, ": ", what));
}

std::atomic<uint64_t> g_max_decompressed{kDefaultMaxDecompressedBytes};

// Bytes per element of an IDX type code; 0 for an unknown code.
size_t idx_element_size(uint8_t type) {
  switch (type) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
  }
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// The shape of an IDX header (`ndim` big-endian dims at b + 4) and the byte count of its data,
// overflow-checked (element and byte counts, and the strides even of an empty tensor, must fit).
std::pair<Shape, uint64_t> idx_shape_and_bytes(const uint8_t* b, uint8_t ndim, size_t elem, const std::string& file) {
  Shape shape;
  for (int d = 0; d < ndim; ++d) shape.push_back(be32(b + 4 + 4 * d));
  try {
    return {shape, static_cast<uint64_t>(checked_nbytes(shape, elem, "idx"))};
  } catch (const ShapeError&) {
    bad(file, 4, cat_str("dims ", shape, " overflow 64-bit sizes (at most 2^62 elements, 2^60 bytes)"));
  }
}

// Note [Decompression limits]
// A gzip stream is inflated in two steps: first only as many bytes as an IDX header can take (4,
// then 4 per dim), from which the size of the data follows; that size is checked against the
// file's own declaration and against max_decompressed_bytes() *before* the payload is inflated,
// into a buffer of exactly that size. More data than declared, a second gzip member or trailing
// bytes after the stream are errors. So a small hostile file cannot make ember allocate more than
// its header declares and the limit allows, and peak memory is the compressed file plus the
// declared data.
class Inflater {
 public:
  Inflater(const std::vector<uint8_t>& in, const std::string& file) : in_(in), file_(file) {
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) throw IOError(file + ": cannot start gzip decompression");
    zs_.next_in = const_cast<Bytef*>(in.data());
    zs_.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), UINT32_MAX));
    fed_ = zs_.avail_in;
  }
  ~Inflater() { inflateEnd(&zs_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Inflates up to n bytes into out; returns how many came (fewer only at the end of the stream).
  size_t read(uint8_t* out, size_t n) {
    size_t got = 0;
    while (got < n && !ended_) {
      zs_.next_out = out + got;
      zs_.avail_out = static_cast<uInt>(std::min<size_t>(n - got, UINT32_MAX));
      const uInt before = zs_.avail_out;
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      got += before - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        ended_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        bad(file_, zs_.total_in, std::string("corrupt gzip data (") + (zs_.msg ? zs_.msg : "inflate failed") + ")");
      } else if (zs_.avail_in == 0) {
        if (fed_ < in_.size()) {  // inputs over 4 GiB arrive in pieces
          const size_t more = std::min<size_t>(in_.size() - fed_, UINT32_MAX);
          zs_.next_in = const_cast<Bytef*>(in_.data() + fed_);
          zs_.avail_in = static_cast<uInt>(more);
          fed_ += more;
        } else if (zs_.avail_out != 0) {
          bad(file_, in_.size(), "the gzip stream ends early (truncated)");
        }
      }
    }
    return got;
  }

  // After the declared data: the stream must end there, and the file with it.
  void expect_end(uint64_t declared) {
    uint8_t probe;
    if (read(&probe, 1) != 0) {
      bad(file_, zs_.total_in, cat_str("the gzip stream holds more than the ", declared, " bytes its IDX header declares"));
    }
    const uint64_t left = zs_.avail_in + (in_.size() - fed_);
    if (left != 0) {
      bad(file_, in_.size() - left, cat_str(left, " bytes follow the gzip stream (trailing data or a second gzip member)"));
    }
  }

 private:
  const std::vector<uint8_t>& in_;
  const std::string& file_;
  z_stream zs_{};
  size_t fed_ = 0;
  bool ended_ = false;
};

// An IDX file inside gzip: the header first, then exactly the data it declares (Note
// [Decompression limits]).
std::vector<uint8_t> gunzip_idx(const std::vector<uint8_t>& in, const std::string& file) {
  Inflater z(in, file);
  std::vector<uint8_t> out(4);
  if (z.read(out.data(), 4) < 4) bad(file, 0, "the decompressed file ends inside the 4-byte magic number");
  const uint8_t ndim = out[3];
  if (out[0] != 0 || out[1] != 0 || ndim == 0 || ndim > kMaxDims) return out;  // read_idx says what is wrong
  const size_t header = 4 + 4 * size_t(ndim);
  out.resize(header);
  if (z.read(out.data() + 4, header - 4) < header - 4) {
    bad(file, 4, cat_str("the decompressed file ends inside the header of ", header, " bytes"));
  }
  const size_t elem = idx_element_size(out[2]);
  if (elem == 0) return out;  // read_idx names the type code
  const auto [shape, bytes] = idx_shape_and_bytes(out.data(), ndim, elem, file);
  const uint64_t limit = max_decompressed_bytes();
  if (bytes > limit) {
    bad(file, 4, cat_str("dims ", shape, " declare ", bytes, " bytes of data, more than the ", limit,
                         " bytes ember decompresses (data::set_max_decompressed_bytes raises the limit)"));
  }
  out.resize(header + static_cast<size_t>(bytes));
  const size_t got = z.read(out.data() + header, static_cast<size_t>(bytes));
  if (got < bytes) {
    bad(file, header + got, cat_str("dims ", shape, " need ", bytes, " bytes of data but the gzip stream holds ", got,
                                    " (truncated)"));
  }
  z.expect_end(bytes);
  return out;
}

bool is_gzip(const std::vector<uint8_t>& b) { return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

template <class Raw, Element Out>
TensorBase decode_be(const uint8_t* p, const Shape& shape, int64_t n) {
  Tensor<Out> t = empty<Out>(shape);
  Out* o = t.data_ptr();
  for (int64_t i = 0; i < n; ++i) {
    uint8_t bytes[sizeof(Raw)];
    for (size_t k = 0; k < sizeof(Raw); ++k) bytes[k] = p[static_cast<size_t>(i) * sizeof(Raw) + sizeof(Raw) - 1 - k];
    Raw v;
    std::memcpy(&v, bytes, sizeof(Raw));
    o[i] = static_cast<Out>(v);
  }
  return t;
}

std::string find_file(const std::string& dir, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    for (const char* ext : {"", ".gz"}) {
      const std::string p = dir + "/" + n + ext;
      if (std::filesystem::exists(p)) return p;
    }
  }
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n + "[.gz]";
  throw IOError("mnist: none of " + list + " in " + dir);
}

}  // namespace

uint64_t max_decompressed_bytes() noexcept { return g_max_decompressed.load(std::memory_order_relaxed); }

void set_max_decompressed_bytes(uint64_t bytes) noexcept { g_max_decompressed.store(bytes, std::memory_order_relaxed); }

TensorBase read_idx(const std::string& path) { return parse_idx(io::read_file(path), path); }

TensorBase parse_idx(const std::vector<uint8_t>& file, const std::string& path) {
  const bool gz = is_gzip(file);
  const std::vector<uint8_t> inflated = gz ? gunzip_idx(file, path) : std::vector<uint8_t>();
  const std::vector<uint8_t>& b = gz ? inflated : file;
  if (b.size() >= 1 && b[0] == 0x80) bad(path, 0, "this looks like a Python pickle, not an IDX file");
  if (b.size() < 4) bad(path, b.size(), "the file ends inside the 4-byte magic number (truncated or empty)");
  if (b[0] != 0 || b[1] != 0) {
    char magic[16];
    std::snprintf(magic, sizeof magic, "0x%02x%02x%02x%02x", b[0], b[1], b.size() > 2 ? b[2] : 0, b.size() > 3 ? b[3] : 0);
    bad(path, 0, std::string("magic ") + magic + " does not start with two zero bytes (not an IDX file)");
  }
  const uint8_t type = b[2], ndim = b[3];
  const size_t elem = idx_element_size(type);
  if (elem == 0) {
    char t[8];
    std::snprintf(t, sizeof t, "0x%02x", type);
    bad(path, 2, std::string("unknown type code ") + t + " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
  }
  if (ndim == 0 || ndim > kMaxDims) {
    bad(path, 3, cat_str("number of dims ", int(ndim), " is not in 1..", kMaxDims));
  }
  const uint64_t header = 4 + 4 * uint64_t(ndim);
  if (b.size() < header) {
    bad(path, b.size(), cat_str("the file ends inside the header of ", header, " bytes (truncated)"));
  }
  const auto [shape, bytes] = idx_shape_and_bytes(b.data(), ndim, elem, path);
  const uint64_t count = bytes / elem;
  if (b.size() - header != bytes) {
    bad(path, header, cat_str("dims ", shape, " need ", bytes, " bytes of data but the file holds ",
                               b.size() - header, b.size() - header < bytes ? " (truncated)" : " (trailing bytes)"));
  }
  const uint8_t* p = b.data() + header;
  const int64_t n = static_cast<int64_t>(count);
  switch (type) {
    case 0x08: {
      Tensor<uint8_t> t = empty<uint8_t>(shape);
      if (n) std::memcpy(t.data_ptr(), p, static_cast<size_t>(n));
      return t;
    }
    case 0x09: return decode_be<int8_t, int32_t>(p, shape, n);
    case 0x0B: return decode_be<int16_t, int32_t>(p, shape, n);
    case 0x0C: return decode_be<int32_t, int32_t>(p, shape, n);
    case 0x0D: return decode_be<float, float>(p, shape, n);
    default: return decode_be<double, double>(p, shape, n);
  }
}

LabeledImages load_mnist(const std::string& dir, bool train, int64_t num_classes) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string img_path = find_file(dir, {prefix + "-images-idx3-ubyte", prefix + "-images.idx3-ubyte"});
  const std::string lbl_path = find_file(dir, {prefix + "-labels-idx1-ubyte", prefix + "-labels.idx1-ubyte"});
  TensorBase images = read_idx(img_path), labels = read_idx(lbl_path);
  if (images.dtype() != DType::UInt8 || images.dim() != 3) {
    bad(img_path, 2, "expected unsigned bytes in 3 dims [N, rows, cols] (magic 0x00000803)");
  }
  if (labels.dtype() != DType::UInt8 || labels.dim() != 1) {
    bad(lbl_path, 2, "expected unsigned bytes in 1 dim [N] (magic 0x00000801)");
  }
  if (images.shape()[0] != labels.shape()[0]) {
    bad(lbl_path, 4, cat_str(labels.shape()[0], " labels for ", images.shape()[0], " images in ", img_path));
  }
  const auto raw = Tensor<uint8_t>::from_base(labels).to_vector();
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] >= num_classes) {
      bad(lbl_path, 8 + i, cat_str("label ", int(raw[i]), " of image ", i, " is not below ", num_classes));
    }
  }
  return {Tensor<uint8_t>::from_base(images), Tensor<uint8_t>::from_base(labels).to<int64_t>(), Tensor<int64_t>()};
}

namespace {
constexpr int64_t kPixels = 3 * 32 * 32;

// Reads fixed-size records: `label_bytes` labels then 3072 pixels each.
LabeledImages decode_cifar(const char* who, const std::vector<std::string>& files,
                           const std::vector<const std::vector<uint8_t>*>& contents, int64_t label_bytes,
                           int64_t classes, int64_t coarse_classes, int64_t records_per_file) {
  const int64_t record = label_bytes + kPixels;
  if (files.empty()) throw ValueError(cat_str(who, ": no files given"));
  int64_t total = 0;
  for (size_t fi = 0; fi < files.size(); ++fi) {
    const std::string& f = files[fi];
    const std::vector<uint8_t>& b = *contents[fi];
    if (b.empty()) bad(f, 0, cat_str("the file is empty (", who, " expects records of ", record, " bytes)"));
    if (!b.empty() && b[0] == 0x80) {
      bad(f, 0, "pickle format is not supported (unsafe to load); use the binary version, e.g. "
                "data_batch_1.bin from cifar-10-binary.tar.gz");
    }
    if (b.size() % static_cast<size_t>(record) != 0) {
      bad(f, b.size() - b.size() % static_cast<size_t>(record),
          cat_str("the size ", b.size(), " is not a multiple of the ", record, "-byte record (", b.size() % record,
                  " bytes left over)"));
    }
    if (records_per_file > 0 && static_cast<int64_t>(b.size()) / record != records_per_file) {
      bad(f, b.size(), cat_str("holds ", b.size() / static_cast<size_t>(record), " records; a ", who,
                               " batch file holds ", records_per_file, " (", records_per_file * record, " bytes)"));
    }
    total += static_cast<int64_t>(b.size()) / record;
  }
  LabeledImages out{empty<uint8_t>({total, 3, 32, 32}), empty<int64_t>({total}),
                    label_bytes == 2 ? empty<int64_t>({total}) : Tensor<int64_t>()};
  uint8_t* img = out.images.data_ptr();
  int64_t* lbl = out.labels.data_ptr();
  int64_t k = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const auto& b = *contents[f];
    for (size_t r = 0; r * static_cast<size_t>(record) < b.size(); ++r, ++k) {
      const uint8_t* rec = b.data() + r * static_cast<size_t>(record);
      const uint8_t fine = rec[label_bytes - 1];
      if (fine >= classes) {
        bad(files[f], r * static_cast<size_t>(record) + static_cast<size_t>(label_bytes - 1),
            cat_str("label ", int(fine), " of record ", r, " is not below ", classes));
      }
      if (label_bytes == 2) {
        if (rec[0] >= coarse_classes) {
          bad(files[f], r * static_cast<size_t>(record), cat_str("coarse label ", int(rec[0]), " of record ", r,
                                                                 " is not below ", coarse_classes));
        }
        out.coarse_labels.data_ptr()[k] = rec[0];
      }
      lbl[k] = fine;
      std::memcpy(img + k * kPixels, rec + label_bytes, kPixels);
    }
  }
  return out;
}
LabeledImages read_cifar(const char* who, const std::vector<std::string>& files, int64_t label_bytes,
                         int64_t classes, int64_t coarse_classes, int64_t records_per_file) {
  std::vector<std::vector<uint8_t>> contents;
  std::vector<const std::vector<uint8_t>*> views;
  contents.reserve(files.size());
  for (const auto& f : files) {
    contents.push_back(io::read_file(f));
    views.push_back(&contents.back());
  }
  return decode_cifar(who, files, views, label_bytes, classes, coarse_classes, records_per_file);
}
}  // namespace

LabeledImages read_cifar10(const std::vector<std::string>& files) {
  return read_cifar("read_cifar10", files, 1, 10, 0, 0);
}

LabeledImages parse_cifar10(const std::vector<uint8_t>& bytes, const std::string& source) {
  return decode_cifar("parse_cifar10", {source}, {&bytes}, 1, 10, 0, 0);
}

LabeledImages read_cifar100(const std::string& file) { return read_cifar("read_cifar100", {file}, 2, 100, 20, 0); }

LabeledImages load_cifar10(const std::string& dir, bool train) {
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
  } else {
    files.push_back(dir + "/test_batch.bin");
  }
  for (const auto& f : files) {
    if (!std::filesystem::exists(f)) {
      const std::string pickled = f.substr(0, f.size() - 4);
      if (std::filesystem::exists(pickled)) {
        throw IOError(f + " is missing but " + pickled + " exists: that is the pickled \"python version\", "
                      "which ember does not load; get the binary version (cifar-10-binary.tar.gz)");
      }
      throw IOError("cifar10: " + f + " is missing (scripts/get-data.sh cifar10 says where to get it)");
    }
  }
  return read_cifar("load_cifar10", files, 1, 10, 0, 10000);  // every batch file holds 10,000 images
}

}  // namespace ember::data
