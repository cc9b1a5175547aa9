#pragma once
// Internal: the constants of the plan file (Note [Plan file] in plan_file.cpp), shared by the
// reader (plan_file.cpp, in ember::runtime) and the writer (plan_save.cpp).
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "plan_data.hpp"

namespace ember::deploy::file {

inline constexpr char kMagic[8] = {'E', 'M', 'B', 'R', 'P', 'L', 'A', 'N'};
inline constexpr uint32_t kVersion = 3;
inline constexpr size_t kHeaderBytes = 64;
inline constexpr int kMaxRank = kMaxValueRank;

/// zlib's CRC-32 of `bytes`, in chunks (zlib takes 32-bit lengths).
inline uint32_t crc_of(std::span<const uint8_t> bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t done = 0; done < bytes.size();) {
    const size_t chunk = std::min<size_t>(bytes.size() - done, size_t(1) << 30);
    crc = crc32(crc, bytes.data() + done, static_cast<uInt>(chunk));
    done += chunk;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace ember::deploy::file
