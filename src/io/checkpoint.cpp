#include "ember/io/checkpoint.hpp"

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <string_view>
#include <nlohmann/json.hpp>

#include "ember/core/error.hpp"
#include "ember/io/safetensors.hpp"
#include "files.hpp"

namespace ember {

namespace {

constexpr const char* kFormatKey = "ember.checkpoint";
constexpr const char* kFormatVersion = "2";
constexpr const char* kCrcKey = "ember.crc32";
constexpr const char* kCrcPlaceholder = "00000000";

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw FormatError("checkpoint " + path + ": " + what);
}

std::string to_hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t from_hex(const std::string& s, const std::string& path, const char* what) {
  if (s.size() != 16 || s.find_first_not_of("0123456789abcdef") != std::string::npos) {
    bad(path, std::string("malformed ") + what);
  }
  return std::stoull(s, nullptr, 16);
}

// Note [Checkpoint checksum]
// The CRC-32 covers the whole file, header and data: it is computed over the file as written with
// "00000000" in place of the checksum's own eight hex digits, which are then put in its place.
// The reader finds the one `"ember.crc32":"` in the JSON header (a quote inside a JSON string is
// escaped, so the key cannot appear inside another value) and recomputes it the same way.
// Returns the offset of the digits in `bytes`, or npos.
size_t crc_digits_at(const std::vector<uint8_t>& bytes) {
  if (bytes.size() < 8) return std::string::npos;
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8) return std::string::npos;
  const std::string_view header(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<size_t>(n));
  const std::string key = std::string("\"") + kCrcKey + "\":\"";
  const size_t at = header.find(key);
  if (at == std::string_view::npos || header.find(key, at + 1) != std::string_view::npos) return std::string::npos;
  const size_t digits = at + key.size();
  if (digits + 9 > header.size() || header[digits + 8] != '"') return std::string::npos;
  return 8 + digits;
}

// The checksum of `bytes` with the eight digits at `digits` read as the placeholder.
uint32_t whole_file_crc(const std::vector<uint8_t>& bytes, size_t digits) {
  uLong crc = crc32(0L, Z_NULL, 0);
  auto add = [&](const uint8_t* p, size_t n) {
    while (n > 0) {  // zlib takes 32-bit lengths
      const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
      crc = crc32(crc, p, chunk);
      p += chunk;
      n -= chunk;
    }
  };
  add(bytes.data(), digits);
  add(reinterpret_cast<const uint8_t*>(kCrcPlaceholder), 8);
  add(bytes.data() + digits + 8, bytes.size() - digits - 8);
  return static_cast<uint32_t>(crc);
}

std::string rng_string(const Generator::State& s) {
  uint64_t spare;
  std::memcpy(&spare, &s.spare, 8);
  return to_hex(s.s[0]) + to_hex(s.s[1]) + to_hex(s.s[2]) + to_hex(s.s[3]) + to_hex(spare) +
         (s.has_spare ? "1" : "0");
}

Generator::State parse_rng(const std::string& v, const std::string& path) {
  if (v.size() != 81) bad(path, "malformed ember.rng");
  Generator::State s{};
  for (int i = 0; i < 4; ++i) s.s[i] = from_hex(v.substr(static_cast<size_t>(16 * i), 16), path, "ember.rng");
  const uint64_t spare = from_hex(v.substr(64, 16), path, "ember.rng");
  std::memcpy(&s.spare, &spare, 8);
  s.has_spare = v[80] == '1';
  return s;
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& c) {
  nn::StateDict tensors;
  for (const auto& e : c.model) tensors.push_back({"model." + e.name, e.tensor});
  nlohmann::json steps = nlohmann::json::array();
  for (size_t i = 0; i < c.optimizer.params.size(); ++i) {
    steps.push_back(c.optimizer.params[i].step);
    for (const auto& [name, t] : c.optimizer.params[i].tensors) {
      tensors.push_back({"optimizer." + std::to_string(i) + "." + name, t});
    }
  }
  std::map<std::string, std::string> meta = {
      {kFormatKey, kFormatVersion},
      {"ember.step", std::to_string(c.step)},
      {"ember.rng", rng_string(c.rng)},
      {"ember.optimizer.groups", nlohmann::json(c.optimizer.groups).dump()},
      {"ember.optimizer.kind", c.optimizer.kind},
      {"ember.optimizer.params", std::to_string(c.optimizer.params.size())},
      {"ember.optimizer.steps", steps.dump()},
      {"ember.scheduler", nlohmann::json(c.scheduler).dump()}};
  for (const auto& [k, v] : c.extra) meta["extra." + k] = v;
  meta[kCrcKey] = kCrcPlaceholder;
  std::vector<uint8_t> bytes = io::serialize_safetensors(tensors, meta);
  const size_t digits = crc_digits_at(bytes);
  if (digits == std::string::npos) throw ValueError("save_checkpoint: " + path + ": cannot place the checksum");
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", whole_file_crc(bytes, digits));
  std::memcpy(bytes.data() + digits, crc, 8);
  io::detail::remove_stale_temporaries(path);
  io::write_file_atomically(path, bytes);
}

Checkpoint load_checkpoint(const std::string& path) { return parse_checkpoint(io::read_file(path), path); }

Checkpoint parse_checkpoint(const std::vector<uint8_t>& bytes, const std::string& path) {
  io::SafetensorsFile file;
  try {
    file = io::parse_safetensors(bytes, path);
  } catch (const FormatError& e) {
    bad(path, std::string("not a readable checkpoint (") + e.what() + ")");
  }
  auto get = [&](const char* key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) bad(path, std::string("missing ") + key + " (not an ember checkpoint?)");
    return it->second;
  };
  if (get(kFormatKey) != kFormatVersion) {
    bad(path, "format version " + get(kFormatKey) + ", this ember reads version " + kFormatVersion);
  }
  const size_t digits = crc_digits_at(bytes);
  if (digits == std::string::npos) bad(path, std::string("no single ") + kCrcKey + " of eight hex digits in the header");
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", whole_file_crc(bytes, digits));
  if (get(kCrcKey) != crc) {
    bad(path, "checksum mismatch (stored " + get(kCrcKey) + ", computed " + crc + "): the file is corrupt or was edited");
  }
  Checkpoint c;
  try {
    c.step = std::stoll(get("ember.step"));
    c.rng = parse_rng(get("ember.rng"), path);
    const auto groups = nlohmann::json::parse(get("ember.optimizer.groups"));
    const auto steps = nlohmann::json::parse(get("ember.optimizer.steps"));
    const auto sched = nlohmann::json::parse(get("ember.scheduler"));
    c.optimizer.groups = groups.get<std::vector<std::map<std::string, double>>>();
    c.optimizer.kind = get("ember.optimizer.kind");
    c.scheduler = sched.get<std::map<std::string, double>>();
    const size_t nparams = std::stoull(get("ember.optimizer.params"));
    if (steps.size() != nparams) bad(path, "optimizer step counts do not match the parameter count");
    c.optimizer.params.resize(nparams);
    for (size_t i = 0; i < nparams; ++i) c.optimizer.params[i].step = steps[i].get<int64_t>();
  } catch (const FormatError&) {
    throw;
  } catch (const std::exception& e) {
    bad(path, std::string("malformed metadata: ") + e.what());
  }
  for (auto& e : file.tensors) {
    if (e.name.rfind("model.", 0) == 0) {
      c.model.push_back({e.name.substr(6), e.tensor});
    } else if (e.name.rfind("optimizer.", 0) == 0) {
      const std::string rest = e.name.substr(10);
      const auto dot = rest.find('.');
      size_t idx = 0;
      try {
        idx = std::stoull(rest.substr(0, dot));
      } catch (const std::exception&) {
        bad(path, "malformed optimizer tensor name \"" + e.name + "\"");
      }
      if (dot == std::string::npos || idx >= c.optimizer.params.size()) {
        bad(path, "optimizer tensor \"" + e.name + "\" names no parameter");
      }
      c.optimizer.params[idx].tensors[rest.substr(dot + 1)] = e.tensor;
    } else {
      bad(path, "unexpected tensor \"" + e.name + "\"");
    }
  }
  for (const auto& [k, v] : file.metadata) {
    if (k.rfind("extra.", 0) == 0) c.extra[k.substr(6)] = v;
  }
  return c;
}

}  // namespace ember
