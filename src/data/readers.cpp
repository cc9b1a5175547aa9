#include "ember/data/readers.hpp"

#include <zlib.h>

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

// Decompressed data larger than this is refused (no data set of this kind comes near it): a
// corrupt or hostile gzip stream cannot make us allocate without bound.
constexpr uint64_t kMaxInflated = uint64_t(4) << 30;

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& file) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw IOError(file + ": cannot start gzip decompression");
  std::vector<uint8_t> out;
  std::vector<uint8_t> chunk(1 << 20);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), UINT32_MAX));
  size_t fed = zs.avail_in;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = chunk.data();
    zs.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      const uint64_t at = zs.total_in;
      inflateEnd(&zs);
      bad(file, at, std::string("corrupt gzip data (") + (zs.msg ? zs.msg : "inflate failed") + ")");
    }
    out.insert(out.end(), chunk.data(), chunk.data() + (chunk.size() - zs.avail_out));
    if (out.size() > kMaxInflated) {
      inflateEnd(&zs);
      bad(file, zs.total_in, "decompresses to more than 4 GiB");
    }
    if (rc == Z_OK && zs.avail_in == 0) {
      if (fed < in.size()) {  // inputs over 4 GiB arrive in pieces
        const size_t more = std::min<size_t>(in.size() - fed, UINT32_MAX);
        zs.next_in = const_cast<Bytef*>(in.data() + fed);
        zs.avail_in = static_cast<uInt>(more);
        fed += more;
      } else if (zs.avail_out != 0) {
        inflateEnd(&zs);
        bad(file, in.size(), "the gzip stream ends early (truncated)");
      }
    }
  }
  inflateEnd(&zs);
  return out;
}

bool is_gzip(const std::vector<uint8_t>& b) { return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

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

TensorBase read_idx(const std::string& path) {
  std::vector<uint8_t> b = io::read_file(path);
  if (is_gzip(b)) b = gunzip(b, path);
  if (b.size() >= 1 && b[0] == 0x80) bad(path, 0, "this looks like a Python pickle, not an IDX file");
  if (b.size() < 4) bad(path, b.size(), "the file ends inside the 4-byte magic number (truncated or empty)");
  if (b[0] != 0 || b[1] != 0) {
    char magic[16];
    std::snprintf(magic, sizeof magic, "0x%02x%02x%02x%02x", b[0], b[1], b.size() > 2 ? b[2] : 0, b.size() > 3 ? b[3] : 0);
    bad(path, 0, std::string("magic ") + magic + " does not start with two zero bytes (not an IDX file)");
  }
  const uint8_t type = b[2], ndim = b[3];
  size_t elem;
  switch (type) {
    case 0x08: case 0x09: elem = 1; break;
    case 0x0B: elem = 2; break;
    case 0x0C: case 0x0D: elem = 4; break;
    case 0x0E: elem = 8; break;
    default: {
      char t[8];
      std::snprintf(t, sizeof t, "0x%02x", type);
      bad(path, 2, std::string("unknown type code ") + t + " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
    }
  }
  if (ndim == 0 || ndim > kMaxDims) {
    bad(path, 3, cat_str("number of dims ", int(ndim), " is not in 1..", kMaxDims));
  }
  const uint64_t header = 4 + 4 * uint64_t(ndim);
  if (b.size() < header) {
    bad(path, b.size(), cat_str("the file ends inside the header of ", header, " bytes (truncated)"));
  }
  Shape shape;
  uint64_t count = 1;
  bool overflow = false;
  for (int d = 0; d < ndim; ++d) {
    const uint32_t dim = be32(b.data() + 4 + 4 * d);
    shape.push_back(dim);
    overflow = overflow || __builtin_mul_overflow(count, uint64_t(dim), &count);
  }
  uint64_t bytes = 0;
  if (overflow || __builtin_mul_overflow(count, uint64_t(elem), &bytes)) {
    bad(path, 4, cat_str("dims ", shape, " overflow 64-bit sizes"));
  }
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
LabeledImages read_cifar(const std::vector<std::string>& files, int64_t label_bytes, int64_t classes,
                         int64_t coarse_classes) {
  const int64_t record = label_bytes + kPixels;
  std::vector<std::vector<uint8_t>> contents;
  int64_t total = 0;
  for (const auto& f : files) {
    std::vector<uint8_t> b = io::read_file(f);
    if (!b.empty() && b[0] == 0x80) {
      bad(f, 0, "pickle format is not supported (unsafe to load); use the binary version, e.g. "
                "data_batch_1.bin from cifar-10-binary.tar.gz");
    }
    if (b.size() % static_cast<size_t>(record) != 0) {
      bad(f, b.size() - b.size() % static_cast<size_t>(record),
          cat_str("the size ", b.size(), " is not a multiple of the ", record, "-byte record (", b.size() % record,
                  " bytes left over)"));
    }
    total += static_cast<int64_t>(b.size()) / record;
    contents.push_back(std::move(b));
  }
  LabeledImages out{empty<uint8_t>({total, 3, 32, 32}), empty<int64_t>({total}),
                    label_bytes == 2 ? empty<int64_t>({total}) : Tensor<int64_t>()};
  uint8_t* img = out.images.data_ptr();
  int64_t* lbl = out.labels.data_ptr();
  int64_t k = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const auto& b = contents[f];
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
}  // namespace

LabeledImages read_cifar10(const std::vector<std::string>& files) { return read_cifar(files, 1, 10, 0); }

LabeledImages read_cifar100(const std::string& file) { return read_cifar({file}, 2, 100, 20); }

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
  return read_cifar10(files);
}

}  // namespace ember::data
