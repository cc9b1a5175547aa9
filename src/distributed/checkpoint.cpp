#include "ember/distributed/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <vector>

#include "ember/distributed/collectives.hpp"
#include "ember/distributed/environment.hpp"
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

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  std::string failure;
  if (rank() == 0) {
    try {
      ember::save_checkpoint(path, checkpoint);
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
  return loaded;
}

}  // namespace ember::distributed
