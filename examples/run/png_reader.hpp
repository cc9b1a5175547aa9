#pragma once
// A small PNG decoder for ember-run, on zlib's inflate: every color type and bit depth of the PNG
// specification, non-interlaced, to 8-bit gray or RGB.
//
// Why not libpng, as the other examples use: statically linked, libpng's read path brings its
// writer and glibc's time-zone code along (about 190 KB of the aarch64 binary), which put the
// static ember-run over its 1 MB budget (docs/deploy.md). Decoding is the small, fully specified
// part; the test checks it against libpng on every format (tests/deploy/test_ember_run.cpp) and
// it is fuzzed (fuzz/fuzz_png.cpp).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ember::run {

/// 8-bit pixels, row-major, channels interleaved.
struct Pixels {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> data;
};

/// Decodes PNG bytes to `channels` (1: gray, 3: RGB). Alpha is composed on black; 16-bit samples
/// are scaled to 8 bits as they are (no gamma conversion: libpng's simplified API would take a
/// 16-bit file for linear light); RGB becomes gray as 0.2126 R + 0.7152 G + 0.0722 B (Rec. 709). Throws
/// ember::FormatError naming `name` for anything that is not a valid, supported PNG (interlaced
/// images are refused), including images over 16384 pixels a side.
Pixels decode_png(std::span<const uint8_t> bytes, int channels, const std::string& name);

}  // namespace ember::run
