#include "ember/io/checkpoint.hpp"

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "ember/core/error.hpp"
#include "ember/io/safetensors.hpp"

namespace ember {

namespace {

constexpr const char* kFormatKey = "ember.checkpoint";
constexpr const char* kFormatVersion = "1";

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

uint32_t crc_of(const uint8_t* p, size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {  // zlib takes 32-bit lengths
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

// The data section of a serialized safetensors file.
std::pair<const uint8_t*, size_t> data_section(const std::vector<uint8_t>& bytes) {
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  return {bytes.data() + 8 + n, bytes.size() - 8 - n};
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

// Removes "<name>.tmp.XXXXXX" files that earlier, killed saves of `path` left behind (only files
// of exactly that pattern, which is write_file_atomically's).
void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() == prefix.size() + 6 && name.compare(0, prefix.size(), prefix) == 0 &&
        entry.is_regular_file(ec)) {
      fs::remove(entry.path(), ec);
    }
  }
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
      {"ember.optimizer.params", std::to_string(c.optimizer.params.size())},
      {"ember.optimizer.steps", steps.dump()},
      {"ember.scheduler", nlohmann::json(c.scheduler).dump()}};
  for (const auto& [k, v] : c.extra) meta["extra." + k] = v;
  std::vector<uint8_t> bytes = io::serialize_safetensors(tensors, meta);
  auto [data, size] = data_section(bytes);
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", crc_of(data, size));
  meta["ember.crc32"] = crc;
  bytes = io::serialize_safetensors(tensors, meta);  // the data bytes are unchanged
  remove_stale_temporaries(path);
  io::write_file_atomically(path, bytes);
}

Checkpoint load_checkpoint(const std::string& path) {
  const std::vector<uint8_t> bytes = io::read_file(path);
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
  auto [data, size] = data_section(bytes);
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", crc_of(data, size));
  if (get("ember.crc32") != crc) {
    bad(path, "checksum mismatch (stored " + get("ember.crc32") + ", computed " + crc + "): the file is corrupt");
  }
  Checkpoint c;
  try {
    c.step = std::stoll(get("ember.step"));
    c.rng = parse_rng(get("ember.rng"), path);
    const auto groups = nlohmann::json::parse(get("ember.optimizer.groups"));
    const auto steps = nlohmann::json::parse(get("ember.optimizer.steps"));
    const auto sched = nlohmann::json::parse(get("ember.scheduler"));
    c.optimizer.groups = groups.get<std::vector<std::map<std::string, double>>>();
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
