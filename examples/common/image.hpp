#pragma once
// Pictures for the examples: PNG files (through libpng's simplified API), a small RGB canvas with
// lines, rectangles and a built-in 5x7 bitmap font, and the two figures the examples write: the
// learning curves and a grid of test images with predicted and true labels.
#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember::examples {

/// 8-bit pixels, row-major, interleaved channels (1: gray, 3: RGB).
struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int w, int h, int c, uint8_t fill = 0)
      : width(w), height(h), channels(c), pixels(static_cast<size_t>(w) * h * c, fill) {}
  uint8_t* at(int x, int y) { return &pixels[(static_cast<size_t>(y) * width + x) * channels]; }
  const uint8_t* at(int x, int y) const { return &pixels[(static_cast<size_t>(y) * width + x) * channels]; }
};

/// A uint8 image tensor, [H, W] or [C, H, W] (C = 1 or 3), as interleaved pixels.
Image image_from_tensor(const Tensor<uint8_t>& image);

/// Writes a gray or RGB PNG atomically; throws ember::IOError naming the file on failure.
void write_png(const std::string& path, const Image& image);
/// Reads any PNG (palette, gray, alpha, 16-bit) converted to `channels` (1 or 3), alpha composed
/// on black. Throws ember::IOError (missing file) or ember::FormatError (not a valid PNG).
Image read_png(const std::string& path, int channels);
/// Bilinear resize (area-averaged when shrinking by more than two).
Image resize(const Image& image, int width, int height);

struct Rgb {
  uint8_t r, g, b;
};

/// An RGB drawing surface.
class Canvas {
 public:
  Canvas(int width, int height, Rgb background = {255, 255, 255});
  void fill_rect(int x, int y, int w, int h, Rgb color);
  void frame_rect(int x, int y, int w, int h, Rgb color, int thickness = 1);
  void line(double x0, double y0, double x1, double y1, Rgb color, int thickness = 1);
  /// Text in the built-in font (upper case; lower case is drawn as upper case), `scale` pixels per
  /// font dot. Returns the width drawn.
  int text(int x, int y, const std::string& s, Rgb color, int scale = 1);
  static int text_width(const std::string& s, int scale = 1);
  static int text_height(int scale = 1);
  /// Draws a gray or RGB image with its top-left corner at (x, y), each pixel `zoom` times.
  void blit(const Image& image, int x, int y, int zoom = 1);
  const Image& image() const { return image_; }

 private:
  void dot(int x, int y, Rgb color);
  Image image_;
};

struct Series {
  std::string name;
  std::vector<double> x, y;
  Rgb color;
};

/// A line chart with axes, ticks and a legend (top right, or bottom right for rising curves).
void draw_chart(Canvas& canvas, int x, int y, int w, int h, const std::string& title, const std::string& x_label,
                const std::vector<Series>& series, bool legend_at_bottom = false);

}  // namespace ember::examples
