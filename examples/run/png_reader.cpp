// The PNG decoder of ember-run (png_reader.hpp), after the PNG specification (ISO/IEC 15948):
// chunks with CRCs, IHDR, PLTE, tRNS, IDAT (one zlib stream), IEND; the five row filters.
#include "png_reader.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ember/core/error.hpp"

namespace ember::run {
namespace {

constexpr uint8_t kSignature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
constexpr uint32_t kMaxSide = 16384;

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

[[noreturn]] void fail(const std::string& name, const std::string& why) {
  throw FormatError("ember-run: " + name + ": not a readable PNG file (" + why + ")");
}

int paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

// 16-bit to 8-bit, rounded (libpng's scaling).
uint8_t to8(uint32_t v16) { return static_cast<uint8_t>((v16 * 255 + 32895) >> 16); }

}  // namespace

Pixels decode_png(std::span<const uint8_t> bytes, int channels, const std::string& name) {
  if (channels != 1 && channels != 3) throw ValueError("ember-run: decode_png: 1 or 3 channels, got " + std::to_string(channels));
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kSignature, 8) != 0) fail(name, "no PNG signature");
  uint32_t width = 0, height = 0;
  int depth = 0, color = -1;
  std::vector<uint8_t> palette, palette_alpha, idat;
  bool ended = false;
  for (size_t at = 8; !ended;) {
    if (bytes.size() - at < 12) fail(name, "truncated chunk");
    const uint32_t length = be32(bytes.data() + at);
    if (length > bytes.size() - at - 12) fail(name, "truncated chunk");
    const uint8_t* type = bytes.data() + at + 4;
    const uint8_t* data = type + 4;
    const uLong crc = crc32(crc32(0L, Z_NULL, 0), type, 4 + length);
    if (static_cast<uint32_t>(crc) != be32(data + length)) fail(name, "chunk CRC mismatch");
    const std::string kind(reinterpret_cast<const char*>(type), 4);
    if (at == 8 && kind != "IHDR") fail(name, "IHDR is not the first chunk");
    if (kind == "IHDR") {
      if (length != 13 || width != 0) fail(name, "bad IHDR");
      width = be32(data);
      height = be32(data + 4);
      depth = data[8];
      color = data[9];
      if (width == 0 || height == 0 || width > kMaxSide || height > kMaxSide) {
        fail(name, "image size " + std::to_string(width) + "x" + std::to_string(height) + " outside 1..16384");
      }
      const bool ok = (color == 0 && (depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16)) ||
                      (color == 3 && (depth == 1 || depth == 2 || depth == 4 || depth == 8)) ||
                      ((color == 2 || color == 4 || color == 6) && (depth == 8 || depth == 16));
      if (!ok) fail(name, "color type " + std::to_string(color) + " with bit depth " + std::to_string(depth));
      if (data[10] != 0 || data[11] != 0) fail(name, "unknown compression or filter method");
      if (data[12] != 0) fail(name, "interlaced images are not supported");
    } else if (kind == "PLTE") {
      if (length % 3 != 0 || length == 0 || length > 768) fail(name, "bad PLTE");
      palette.assign(data, data + length);
    } else if (kind == "tRNS") {
      if (color == 3) palette_alpha.assign(data, data + std::min<uint32_t>(length, 256));
    } else if (kind == "IDAT") {
      idat.insert(idat.end(), data, data + length);
    } else if (kind == "IEND") {
      ended = true;
    } else if ((type[0] & 0x20) == 0) {
      fail(name, "unknown critical chunk " + kind);
    }
    at += 12 + length;
  }
  if (color == 3 && palette.empty()) fail(name, "a palette image without PLTE");

  const int samples = color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1;
  const size_t bits = static_cast<size_t>(samples) * static_cast<size_t>(depth);
  const size_t row_bytes = (static_cast<size_t>(width) * bits + 7) / 8;
  const size_t bpp = std::max<size_t>(1, bits / 8);  // the filters' byte distance
  if (static_cast<size_t>(height) * (row_bytes + 1) > (size_t(1) << 28)) fail(name, "image data over 256 MB");
  std::vector<uint8_t> raw(static_cast<size_t>(height) * (row_bytes + 1));
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) fail(name, "zlib");
  zs.next_in = idat.data();
  zs.avail_in = static_cast<uInt>(idat.size());
  zs.next_out = raw.data();
  zs.avail_out = static_cast<uInt>(raw.size());
  const int z = inflate(&zs, Z_FINISH);
  const size_t produced = raw.size() - zs.avail_out;
  inflateEnd(&zs);
  if (z != Z_STREAM_END || produced != raw.size()) fail(name, "image data of the wrong size or corrupted");

  // Unfilter in place: row y's bytes follow its filter byte.
  for (size_t y = 0; y < height; ++y) {
    uint8_t* row = raw.data() + y * (row_bytes + 1) + 1;
    const uint8_t* up = y > 0 ? row - (row_bytes + 1) : nullptr;
    const int filter = row[-1];
    for (size_t i = 0; i < row_bytes; ++i) {
      const int a = i >= bpp ? row[i - bpp] : 0, b = up ? up[i] : 0, c = up && i >= bpp ? up[i - bpp] : 0;
      switch (filter) {
        case 0: break;
        case 1: row[i] = static_cast<uint8_t>(row[i] + a); break;
        case 2: row[i] = static_cast<uint8_t>(row[i] + b); break;
        case 3: row[i] = static_cast<uint8_t>(row[i] + (a + b) / 2); break;
        case 4: row[i] = static_cast<uint8_t>(row[i] + paeth(a, b, c)); break;
        default: fail(name, "unknown row filter " + std::to_string(filter));
      }
    }
  }

  Pixels out;
  out.width = static_cast<int>(width);
  out.height = static_cast<int>(height);
  out.channels = channels;
  out.data.resize(static_cast<size_t>(width) * height * static_cast<size_t>(channels));
  for (size_t y = 0; y < height; ++y) {
    const uint8_t* row = raw.data() + y * (row_bytes + 1) + 1;
    for (size_t x = 0; x < width; ++x) {
      // The pixel as 8-bit RGBA.
      uint8_t rgba[4] = {0, 0, 0, 255};
      auto sample = [&](size_t s) -> uint8_t {  // sample s of pixel x, 8 or 16 bits
        if (depth == 16) return to8((uint32_t(row[(x * samples + s) * 2]) << 8) | row[(x * samples + s) * 2 + 1]);
        return row[x * samples + s];
      };
      if (depth < 8) {  // gray or palette, 1, 2 or 4 bits, packed from the high bits
        const size_t bit = x * static_cast<size_t>(depth);
        const int v = (row[bit / 8] >> (8 - depth - static_cast<int>(bit % 8))) & ((1 << depth) - 1);
        if (color == 3) {
          if (static_cast<size_t>(v) * 3 + 2 >= palette.size()) fail(name, "a palette index past PLTE");
          std::memcpy(rgba, &palette[static_cast<size_t>(v) * 3], 3);
          if (static_cast<size_t>(v) < palette_alpha.size()) rgba[3] = palette_alpha[static_cast<size_t>(v)];
        } else {
          rgba[0] = rgba[1] = rgba[2] = static_cast<uint8_t>(v * 255 / ((1 << depth) - 1));
        }
      } else if (color == 3) {
        const size_t v = row[x];
        if (v * 3 + 2 >= palette.size()) fail(name, "a palette index past PLTE");
        std::memcpy(rgba, &palette[v * 3], 3);
        if (v < palette_alpha.size()) rgba[3] = palette_alpha[v];
      } else if (color == 0 || color == 4) {
        rgba[0] = rgba[1] = rgba[2] = sample(0);
        if (color == 4) rgba[3] = sample(1);
      } else {
        for (size_t s = 0; s < 3; ++s) rgba[s] = sample(s);
        if (color == 6) rgba[3] = sample(3);
      }
      for (int s = 0; s < 3; ++s) rgba[s] = static_cast<uint8_t>((rgba[s] * rgba[3] + 127) / 255);  // on black
      uint8_t* dst = out.data.data() + (y * width + x) * static_cast<size_t>(channels);
      if (channels == 3) {
        std::memcpy(dst, rgba, 3);
      } else if (color == 0 || color == 4 || (rgba[0] == rgba[1] && rgba[1] == rgba[2])) {
        dst[0] = rgba[0];
      } else {
        dst[0] = static_cast<uint8_t>(std::lround(0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]));
      }
    }
  }
  return out;
}

}  // namespace ember::run
