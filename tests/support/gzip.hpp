#pragma once
// Test helpers on zlib: gzip-compresses bytes in memory (readers of .gz files), CRC-32.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ember::testing {

inline std::vector<uint8_t> gzip(const std::vector<uint8_t>& in, int level = 6) {
  z_stream zs{};
  deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(in.size())) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

/// zlib's CRC-32 of n bytes (checksummed formats: plan files).
inline uint32_t crc32_of(const uint8_t* data, size_t n) {
  return static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), data, static_cast<uInt>(n)));
}

/// Appends v big-endian (IDX headers).
inline void put_be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

}  // namespace ember::testing
