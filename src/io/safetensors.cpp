#include "ember/io/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "ember/core/error.hpp"
#include "ember/ops/factory.hpp"

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts need byte swapping here");

namespace ember::io {

namespace {

constexpr uint64_t kMaxHeader = 100'000'000;

[[noreturn]] void format_error(const std::string& source, const std::string& what) {
  throw FormatError("safetensors: " + source + ": " + what);
}

struct DTypeInfo {
  const char* name;
  size_t size;
};

// The dtypes ember reads, with their element sizes.
bool lookup_dtype(const std::string& s, DTypeInfo& out) {
  static const DTypeInfo known[] = {{"F32", 4}, {"F64", 8}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                    {"I32", 4}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}};
  for (const auto& k : known) {
    if (s == k.name) {
      out = k;
      return true;
    }
  }
  return false;
}

const char* file_dtype(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int64: return "I64";
    case DType::Int32: return "I32";
    case DType::UInt8: return "U8";
    case DType::Int8: return "I8";
  }
  return "?";
}

bool valid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += len;
  }
  return true;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FF;
      bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <class Src, Element Dst, class Convert>
TensorBase convert(const uint8_t* data, const Shape& shape, int64_t n, Convert f) {
  Tensor<Dst> t = empty<Dst>(shape);
  Dst* out = t.data_ptr();
  for (int64_t i = 0; i < n; ++i) {
    Src v;
    std::memcpy(&v, data + static_cast<size_t>(i) * sizeof(Src), sizeof(Src));
    out[i] = f(v);
  }
  return t;
}

template <Element T>
TensorBase copy_raw(const uint8_t* data, const Shape& shape, int64_t n) {
  Tensor<T> t = empty<T>(shape);
  if (n > 0) std::memcpy(t.data_ptr(), data, static_cast<size_t>(n) * sizeof(T));
  return t;
}

struct Entry {
  std::string name;
  DTypeInfo dtype;
  Shape shape;
  int64_t numel;
  uint64_t begin, end;
};

// Parses the header JSON, rejecting duplicate keys at any depth and deep nesting.
nlohmann::ordered_json parse_header(const uint8_t* p, size_t n, const std::string& source) {
  std::vector<std::set<std::string>> keys;
  auto callback = [&](int depth, nlohmann::ordered_json::parse_event_t event, nlohmann::ordered_json& parsed) {
    using E = nlohmann::ordered_json::parse_event_t;
    if (depth > 4) format_error(source, "header JSON is nested deeper than 4 levels");
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end && !keys.empty()) keys.pop_back();
    if (event == E::key) {
      const std::string k = parsed.get<std::string>();
      if (!keys.empty() && !keys.back().insert(k).second) {
        format_error(source, "header JSON repeats the key \"" + k + "\"");
      }
    }
    return true;
  };
  try {
    return nlohmann::ordered_json::parse(p, p + n, callback);
  } catch (const nlohmann::json::exception& e) {
    format_error(source, std::string("header is not valid JSON: ") + e.what());
  }
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

SafetensorsFile parse_safetensors(const std::vector<uint8_t>& bytes, const std::string& source) {
  const uint64_t size = bytes.size();
  if (size < 8) {
    format_error(source, "the file has " + std::to_string(size) +
                             " bytes, fewer than the 8-byte header length (truncated, or not a "
                             "safetensors file)");
  }
  const uint64_t n = read_u64_le(bytes.data());
  if (n > kMaxHeader) {
    format_error(source, "header length " + std::to_string(n) + " exceeds the limit of " +
                             std::to_string(kMaxHeader) + " bytes (not a safetensors file?)");
  }
  if (n > size - 8) {
    format_error(source, "header length " + std::to_string(n) + " runs past the end of the file (" +
                             std::to_string(size) + " bytes; truncated?)");
  }
  const uint8_t* header = bytes.data() + 8;
  if (n < 2 || header[0] != '{') {
    format_error(source, "the header does not start with '{' (not a safetensors file?)");
  }
  if (!valid_utf8(header, n)) format_error(source, "the header is not valid UTF-8");
  nlohmann::ordered_json j = parse_header(header, n, source);
  if (!j.is_object()) format_error(source, "the header is not a JSON object");

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::ordered_json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) format_error(source, "__metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          format_error(source, "__metadata__ value \"" + m.key() + "\" is not a string");
        }
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor \"" + name + "\": ";
    if (!v.is_object()) format_error(source, where + "the entry is not an object");
    for (auto f = v.begin(); f != v.end(); ++f) {
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets") {
        format_error(source, where + "unknown field \"" + f.key() + "\"");
      }
    }
    if (!v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets")) {
      format_error(source, where + "needs dtype, shape and data_offsets");
    }
    Entry e;
    e.name = name;
    if (!v["dtype"].is_string() || !lookup_dtype(v["dtype"].get<std::string>(), e.dtype)) {
      format_error(source, where + "unknown dtype " + v["dtype"].dump());
    }
    const nlohmann::ordered_json& shape = v["shape"];
    if (!shape.is_array()) format_error(source, where + "shape is not an array");
    if (shape.size() > static_cast<size_t>(kMaxDims)) {
      format_error(source, where + "shape has " + std::to_string(shape.size()) +
                               " dims, more than the supported " + std::to_string(kMaxDims));
    }
    for (const auto& d : shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        format_error(source, where + "shape entry " + d.dump() + " is not a non-negative integer");
      }
      e.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    }
    // Element and byte counts, and the strides even of an empty tensor, must fit (checked_nbytes).
    uint64_t nbytes = 0, numel = 0;
    try {
      const int64_t elem = static_cast<int64_t>(e.dtype.size);
      numel = static_cast<uint64_t>(checked_nbytes(e.shape, e.dtype.size, "safetensors") / elem);
      nbytes = numel * e.dtype.size;
    } catch (const ShapeError&) {
      format_error(source, where + "shape " + e.shape.str() + " x " + e.dtype.name +
                               " overflows 64-bit sizes (at most 2^62 elements, 2^60 bytes)");
    }
    e.numel = static_cast<int64_t>(numel);
    const nlohmann::ordered_json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned()) {
      format_error(source, where + "data_offsets must be two non-negative integers");
    }
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.end < e.begin) {
      format_error(source, where + "data_offsets [" + std::to_string(e.begin) + ", " +
                               std::to_string(e.end) + "] end before they begin");
    }
    if (e.end - e.begin != nbytes) {
      format_error(source, where + "shape " + e.shape.str() + " x " + e.dtype.name + " = " +
                               std::to_string(nbytes) + " bytes but data_offsets give " +
                               std::to_string(e.end - e.begin));
    }
    entries.push_back(std::move(e));
  }

  // The tensors must tile the data region exactly: sorted by offset, each begins where the last
  // ended, the first at 0 and the last at the end of the file.
  const uint64_t data_size = size - 8 - n;
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::stable_sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  for (const Entry* e : by_offset) {
    if (e->begin != expected) {
      format_error(source, "tensor \"" + e->name + "\": data_offsets begin at " +
                               std::to_string(e->begin) + " but the previous tensor ends at " +
                               std::to_string(expected) +
                               (e->begin > expected ? " (a gap)" : " (an overlap)"));
    }
    expected = e->end;
  }
  if (expected != data_size) {
    format_error(source, "the tensors cover " + std::to_string(expected) + " bytes of data but the "
                             "file holds " + std::to_string(data_size) +
                             (expected > data_size ? " (truncated?)" : " (trailing bytes)"));
  }

  const uint8_t* data = bytes.data() + 8 + n;
  for (const Entry& e : entries) {
    const uint8_t* p = data + e.begin;
    TensorBase t;
    const std::string d = e.dtype.name;
    if (d == "F32") t = copy_raw<float>(p, e.shape, e.numel);
    else if (d == "F64") t = copy_raw<double>(p, e.shape, e.numel);
    else if (d == "I64") t = copy_raw<int64_t>(p, e.shape, e.numel);
    else if (d == "I32") t = copy_raw<int32_t>(p, e.shape, e.numel);
    else if (d == "U8") t = copy_raw<uint8_t>(p, e.shape, e.numel);
    else if (d == "I8") t = copy_raw<int8_t>(p, e.shape, e.numel);
    else if (d == "F16") t = convert<uint16_t, float>(p, e.shape, e.numel, half_to_float);
    else if (d == "BF16") t = convert<uint16_t, float>(p, e.shape, e.numel, bf16_to_float);
    else {  // BOOL
      for (int64_t i = 0; i < e.numel; ++i) {
        if (p[i] > 1) {
          format_error(source, "tensor \"" + e.name + "\": BOOL element " + std::to_string(i) +
                                   " is " + std::to_string(p[i]) + ", not 0 or 1");
        }
      }
      t = copy_raw<uint8_t>(p, e.shape, e.numel);
    }
    out.tensors.push_back({e.name, t});
  }
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  return parse_safetensors(read_file(path), path);
}

std::vector<uint8_t> serialize_safetensors(const nn::StateDict& tensors,
                                           const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta["format"] = "pt";
  for (const auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  std::set<std::string> names;
  uint64_t offset = 0;
  std::vector<std::pair<const TensorBase*, uint64_t>> parts;
  for (const auto& e : tensors) {
    if (!e.tensor.defined()) throw ValueError("safetensors: tensor \"" + e.name + "\" is undefined");
    if (e.name == "__metadata__" || !names.insert(e.name).second) {
      throw ValueError("safetensors: the name \"" + e.name + "\" is reserved or repeated");
    }
    if (!valid_utf8(reinterpret_cast<const uint8_t*>(e.name.data()), e.name.size())) {
      throw ValueError("safetensors: the name \"" + e.name + "\" is not valid UTF-8");
    }
    const uint64_t nbytes = static_cast<uint64_t>(e.tensor.numel()) * dtype_size(e.tensor.dtype());
    header[e.name] = {{"dtype", file_dtype(e.tensor.dtype())},
                      {"shape", e.tensor.shape().vec()},
                      {"data_offsets", {offset, offset + nbytes}}};
    parts.emplace_back(&e.tensor, nbytes);
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  std::vector<uint8_t> out(8 + text.size() + offset);
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  uint8_t* dst = out.data() + 8 + text.size();
  for (const auto& part : parts) {
    // Plain variables, not structured bindings: clang 14 cannot capture those in a lambda.
    const TensorBase* t = part.first;
    const uint64_t nbytes = part.second;
    auto put = [&](auto typed) {
      auto c = typed.contiguous();
      if (nbytes) std::memcpy(dst, c.data_ptr(), nbytes);
    };
    switch (t->dtype()) {
      case DType::Float32: put(Tensor<float>::from_base(*t)); break;
      case DType::Float64: put(Tensor<double>::from_base(*t)); break;
      case DType::Int64: put(Tensor<int64_t>::from_base(*t)); break;
      case DType::Int32: put(Tensor<int32_t>::from_base(*t)); break;
      case DType::UInt8: put(Tensor<uint8_t>::from_base(*t)); break;
      case DType::Int8: put(Tensor<int8_t>::from_base(*t)); break;
    }
    dst += nbytes;
  }
  return out;
}

void write_safetensors(const std::string& path, const nn::StateDict& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace ember::io

namespace ember {

template <FloatingElement T>
void save(const nn::Module<T>& module, const std::string& path) {
  io::write_safetensors(path, module.state_dict());
}

template <FloatingElement T>
nn::LoadResult load(nn::Module<T>& module, const std::string& path, bool strict) {
  return load(module, io::read_file(path), path, strict);
}

template <FloatingElement T>
nn::LoadResult load(nn::Module<T>& module, const std::vector<uint8_t>& bytes, const std::string& source, bool strict) {
  io::SafetensorsFile file = io::parse_safetensors(bytes, source);
  // Floating-point tensors take the module's type, as load_state_dict's copy_ does in PyTorch.
  nn::StateDict mine = module.state_dict();
  for (auto& e : file.tensors) {
    auto it = std::find_if(mine.begin(), mine.end(), [&](const nn::NamedTensor& m) { return m.name == e.name; });
    if (it == mine.end() || it->tensor.dtype() == e.tensor.dtype()) continue;
    const DType want = it->tensor.dtype();
    if (e.tensor.dtype() == DType::Float32 && want == DType::Float64) {
      e.tensor = Tensor<float>::from_base(e.tensor).template to<double>();
    } else if (e.tensor.dtype() == DType::Float64 && want == DType::Float32) {
      e.tensor = Tensor<double>::from_base(e.tensor).template to<float>();
    }
  }
  try {
    return module.load_state_dict(file.tensors, strict);
  } catch (const ValueError& e) {
    throw ValueError(source + ": " + e.what());
  }
}

template void save<float>(const nn::Module<float>&, const std::string&);
template void save<double>(const nn::Module<double>&, const std::string&);
template nn::LoadResult load<float>(nn::Module<float>&, const std::string&, bool);
template nn::LoadResult load<double>(nn::Module<double>&, const std::string&, bool);
template nn::LoadResult load<float>(nn::Module<float>&, const std::vector<uint8_t>&, const std::string&, bool);
template nn::LoadResult load<double>(nn::Module<double>&, const std::vector<uint8_t>&, const std::string&, bool);

}  // namespace ember
