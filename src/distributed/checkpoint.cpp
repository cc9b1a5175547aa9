#include "ember/distributed/checkpoint.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <exception>
#include <vector>

#include "ember/distributed/collectives.hpp"
#include "ember/distributed/environment.hpp"
#include "ember/core/generator.hpp"
#include "ember/ops/factory.hpp"

namespace ember::distributed {
namespace {

constexpr int64_t kReason = 400;

// A message as a fixed-size row of bytes (empty: no error), for collectives.
Tensor<uint8_t> as_row(const std::string& text) {
  Tensor<uint8_t> row = zeros<uint8_t>(Shape{kReason});
  std::memcpy(row.data_ptr(), text.data(), std::min<size_t>(text.size(), kReason - 1));
  return row;
}

std::string from_row(const Tensor<uint8_t>& row) {
  const auto* p = reinterpret_cast<const char*>(row.contiguous().data_ptr());
  return std::string(p, strnlen(p, kReason));
}

// Each rank's default generator, so that a resumed rank draws on as it would have (dropout masks,
// augmentation). Kept in the checkpoint's extra strings: "ember.distributed.ranks" and
// "ember.distributed.rng.<rank>", 6 x 16 hex digits (the state's four words, the spare normal's
// bits, the flag).
constexpr int kStateWords = 6;

std::array<int64_t, kStateWords> words(const Generator::State& s) {
  std::array<int64_t, kStateWords> w{};
  for (int i = 0; i < 4; ++i) w[static_cast<size_t>(i)] = static_cast<int64_t>(s.s[i]);
  uint64_t spare = 0;
  std::memcpy(&spare, &s.spare, sizeof spare);
  w[4] = static_cast<int64_t>(spare);
  w[5] = s.has_spare ? 1 : 0;
  return w;
}

std::string hex_of(const int64_t* w) {
  std::string out;
  char buf[17];
  for (int i = 0; i < kStateWords; ++i) {
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(w[i]));
    out += buf;
  }
  return out;
}

// The state in `text`, or nothing when it is not 96 hex digits (a checkpoint from elsewhere).
std::optional<Generator::State> state_of(const std::string& text) {
  if (text.size() != 16 * kStateWords) return std::nullopt;
  uint64_t w[kStateWords];
  for (int i = 0; i < kStateWords; ++i) {
    char* end = nullptr;
    const std::string part = text.substr(static_cast<size_t>(16 * i), 16);
    w[i] = std::strtoull(part.c_str(), &end, 16);
    if (end != part.c_str() + 16) return std::nullopt;
  }
  Generator::State s{};
  for (int i = 0; i < 4; ++i) s.s[i] = w[i];
  std::memcpy(&s.spare, &w[4], sizeof s.spare);
  s.has_spare = w[5] != 0;
  return s;
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  const std::array<int64_t, kStateWords> mine = words(default_generator().state());
  const Tensor<int64_t> states = all_gather(tensor<int64_t>(std::vector<int64_t>(mine.begin(), mine.end()), {kStateWords}));
  std::string failure;
  if (rank() == 0) {
    try {
      Checkpoint c = checkpoint;
      c.extra["ember.distributed.ranks"] = std::to_string(world_size());
      const Tensor<int64_t> all = states.contiguous();
      for (int r = 0; r < world_size(); ++r) {
        c.extra["ember.distributed.rng." + std::to_string(r)] = hex_of(all.data_ptr() + r * kStateWords);
      }
      ember::save_checkpoint(path, c);
    } catch (const std::exception& e) {
      failure = e.what();
      if (failure.empty()) failure = "unknown error";
    }
  }
  Tensor<uint8_t> reason = as_row(failure);
  broadcast(reason, 0);
  failure = from_row(reason);
  if (!failure.empty()) {
    throw IOError("distributed::save_checkpoint: rank 0 could not write " + path + ": " + failure);
  }
}

Checkpoint load_checkpoint(const std::string& path) {
  Checkpoint loaded;
  std::string failure;
  try {
    loaded = ember::load_checkpoint(path);
  } catch (const std::exception& e) {
    failure = e.what();
    if (failure.empty()) failure = "unknown error";
  }
  const Tensor<uint8_t> reasons = all_gather(as_row(failure));
  std::string message;
  for (int r = 0; r < world_size(); ++r) {
    const std::string why = from_row(reasons.select(0, r));
    if (!why.empty()) message += (message.empty() ? "rank " : "; rank ") + std::to_string(r) + ": " + why;
  }
  if (!message.empty()) throw IOError("distributed::load_checkpoint: " + path + " could not be read on every rank: " + message);
  // This rank's own generator when the run that saved had this rank; rank 0's otherwise.
  auto it = loaded.extra.find("ember.distributed.rng." + std::to_string(rank()));
  if (it != loaded.extra.end()) {
    if (const std::optional<Generator::State> s = state_of(it->second)) loaded.rng = *s;
  }
  return loaded;
}

}  // namespace ember::distributed
