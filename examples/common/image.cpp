#include "image.hpp"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>

#include "ember/core/error.hpp"
#include "ember/io/safetensors.hpp"

namespace ember::examples {

void write_png(const std::string& path, const Image& image) {
  if (image.channels != 1 && image.channels != 3)
    throw ValueError(fmt::format("write_png: {}: expected 1 or 3 channels, got {}", path, image.channels));
  png_image info{};
  info.version = PNG_IMAGE_VERSION;
  info.width = static_cast<png_uint_32>(image.width);
  info.height = static_cast<png_uint_32>(image.height);
  info.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&info, nullptr, &size, 0, image.pixels.data(), 0, nullptr))
    throw IOError(fmt::format("write_png: {}: {}", path, info.message));
  std::vector<uint8_t> bytes(size);
  if (!png_image_write_to_memory(&info, bytes.data(), &size, 0, image.pixels.data(), 0, nullptr))
    throw IOError(fmt::format("write_png: {}: {}", path, info.message));
  bytes.resize(size);
  io::write_file_atomically(path, bytes);
}

Image read_png(const std::string& path, int channels) {
  if (channels != 1 && channels != 3)
    throw ValueError(fmt::format("read_png: {}: expected 1 or 3 channels, got {}", path, channels));
  const std::vector<uint8_t> bytes = io::read_file(path);
  png_image info{};
  info.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&info, bytes.data(), bytes.size()))
    throw FormatError(fmt::format("read_png: {}: not a readable PNG file ({})", path, info.message));
  // Limits the allocation a hostile header could ask for (a 16k x 16k RGB picture at most).
  if (info.width == 0 || info.height == 0 || info.width > 16384 || info.height > 16384) {
    png_image_free(&info);
    throw FormatError(fmt::format("read_png: {}: image size {}x{} outside 1..16384", path, info.width, info.height));
  }
  info.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  Image out(static_cast<int>(info.width), static_cast<int>(info.height), channels);
  const png_color black{0, 0, 0};
  if (!png_image_finish_read(&info, &black, out.pixels.data(), 0, nullptr))
    throw FormatError(fmt::format("read_png: {}: {}", path, info.message));
  return out;
}

Image image_from_tensor(const Tensor<uint8_t>& image) {
  if (image.dim() != 2 && image.dim() != 3)
    throw ShapeError(fmt::format("image_from_tensor: expected [H, W] or [C, H, W], got {}", image.shape().str()));
  const Tensor<uint8_t> chw = (image.dim() == 2 ? image.unsqueeze(0) : image).contiguous();
  const int c = static_cast<int>(chw.shape()[0]), h = static_cast<int>(chw.shape()[1]),
            w = static_cast<int>(chw.shape()[2]);
  Image img(w, h, c);
  const uint8_t* p = chw.data();
  for (int ch = 0; ch < c; ++ch)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) img.at(x, y)[ch] = p[(ch * h + y) * w + x];
  return img;
}

Image resize(const Image& image, int width, int height) {
  if (width <= 0 || height <= 0) throw ValueError(fmt::format("resize: bad size {}x{}", width, height));
  Image out(width, height, image.channels);
  const double sx = static_cast<double>(image.width) / width, sy = static_cast<double>(image.height) / height;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < image.channels; ++c) {
        double value;
        if (sx > 2 || sy > 2) {  // average the source box this pixel covers
          const int x0 = static_cast<int>(x * sx), x1 = std::max(x0 + 1, static_cast<int>((x + 1) * sx));
          const int y0 = static_cast<int>(y * sy), y1 = std::max(y0 + 1, static_cast<int>((y + 1) * sy));
          double sum = 0;
          for (int yy = y0; yy < std::min(y1, image.height); ++yy)
            for (int xx = x0; xx < std::min(x1, image.width); ++xx) sum += image.at(xx, yy)[c];
          value = sum / ((std::min(y1, image.height) - y0) * (std::min(x1, image.width) - x0));
        } else {
          const double fx = std::clamp((x + 0.5) * sx - 0.5, 0.0, image.width - 1.0);
          const double fy = std::clamp((y + 0.5) * sy - 0.5, 0.0, image.height - 1.0);
          const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
          const int x1 = std::min(x0 + 1, image.width - 1), y1 = std::min(y0 + 1, image.height - 1);
          const double ax = fx - x0, ay = fy - y0;
          value = (1 - ay) * ((1 - ax) * image.at(x0, y0)[c] + ax * image.at(x1, y0)[c]) +
                  ay * ((1 - ax) * image.at(x0, y1)[c] + ax * image.at(x1, y1)[c]);
        }
        out.at(x, y)[c] = static_cast<uint8_t>(std::clamp(std::lround(value), 0L, 255L));
      }
    }
  }
  return out;
}

// ---- Canvas and font -----------------------------------------------------------------------------

namespace {

constexpr int kGlyphW = 5, kGlyphH = 7;

struct Glyph {
  char c;
  const char* rows[kGlyphH];
};

// A classic 5x7 dot-matrix font: digits, capitals and the punctuation the figures use.
constexpr Glyph kFont[] = {
    {'0', {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "}},
    {'1', {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "}},
    {'2', {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"}},
    {'3', {"#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "}},
    {'4', {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "}},
    {'5', {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "}},
    {'6', {"  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "}},
    {'7', {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "}},
    {'8', {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "}},
    {'9', {" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "}},
    {'A', {" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"}},
    {'B', {"#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "}},
    {'C', {" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "}},
    {'D', {"###  ", "#  # ", "#   #", "#   #", "#   #", "#  # ", "###  "}},
    {'E', {"#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"}},
    {'F', {"#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "}},
    {'G', {" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"}},
    {'H', {"#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"}},
    {'I', {" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "}},
    {'J', {"  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "}},
    {'K', {"#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"}},
    {'L', {"#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"}},
    {'M', {"#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"}},
    {'N', {"#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"}},
    {'O', {" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "}},
    {'P', {"#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "}},
    {'Q', {" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"}},
    {'R', {"#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"}},
    {'S', {" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "}},
    {'T', {"#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "}},
    {'U', {"#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "}},
    {'V', {"#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "}},
    {'W', {"#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "}},
    {'X', {"#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"}},
    {'Y', {"#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "}},
    {'Z', {"#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"}},
    {'.', {"     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "}},
    {',', {"     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "}},
    {':', {"     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "}},
    {'%', {"##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"}},
    {'-', {"     ", "     ", "     ", "#####", "     ", "     ", "     "}},
    {'+', {"     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "}},
    {'=', {"     ", "     ", "#####", "     ", "#####", "     ", "     "}},
    {'/', {"     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     "}},
    {'(', {"   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "}},
    {')', {" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "}},
    {'[', {" ### ", " #   ", " #   ", " #   ", " #   ", " #   ", " ### "}},
    {']', {" ### ", "   # ", "   # ", "   # ", "   # ", "   # ", " ### "}},
    {'_', {"     ", "     ", "     ", "     ", "     ", "     ", "#####"}},
    {'?', {" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "}},
    {'!', {"  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "     ", "  #  "}},
    {'#', {" # # ", " # # ", "#####", " # # ", "#####", " # # ", " # # "}},
    {'\'', {"  #  ", "  #  ", " #   ", "     ", "     ", "     ", "     "}},
};

const Glyph* find_glyph(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  for (const Glyph& g : kFont)
    if (g.c == c) return &g;
  return nullptr;  // space and anything unknown: blank
}

std::string format_tick(double v, double step) {
  const int decimals = step >= 1 ? 0 : std::min(4, static_cast<int>(std::ceil(-std::log10(step))));
  return fmt::format("{:.{}f}", v, decimals);
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `count` ticks over `range`.
double nice_step(double range, int count) {
  const double raw = range / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * power >= raw) return m * power;
  return 10 * power;
}

}  // namespace

Canvas::Canvas(int width, int height, Rgb background) : image_(width, height, 3) {
  fill_rect(0, 0, width, height, background);
}

void Canvas::dot(int x, int y, Rgb color) {
  if (x < 0 || y < 0 || x >= image_.width || y >= image_.height) return;
  uint8_t* p = image_.at(x, y);
  p[0] = color.r;
  p[1] = color.g;
  p[2] = color.b;
}

void Canvas::fill_rect(int x, int y, int w, int h, Rgb color) {
  for (int yy = y; yy < y + h; ++yy)
    for (int xx = x; xx < x + w; ++xx) dot(xx, yy, color);
}

void Canvas::frame_rect(int x, int y, int w, int h, Rgb color, int thickness) {
  fill_rect(x, y, w, thickness, color);
  fill_rect(x, y + h - thickness, w, thickness, color);
  fill_rect(x, y, thickness, h, color);
  fill_rect(x + w - thickness, y, thickness, h, color);
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb color, int thickness) {
  const double length = std::max(std::abs(x1 - x0), std::abs(y1 - y0));
  const int steps = std::max(1, static_cast<int>(std::ceil(length * 2)));
  const int half = thickness / 2;
  for (int i = 0; i <= steps; ++i) {
    const double t = static_cast<double>(i) / steps;
    const int x = static_cast<int>(std::lround(x0 + t * (x1 - x0)));
    const int y = static_cast<int>(std::lround(y0 + t * (y1 - y0)));
    fill_rect(x - half, y - half, thickness, thickness, color);
  }
}

int Canvas::text_width(const std::string& s, int scale) {
  return static_cast<int>(s.size()) * (kGlyphW + 1) * scale;
}
int Canvas::text_height(int scale) { return kGlyphH * scale; }

int Canvas::text(int x, int y, const std::string& s, Rgb color, int scale) {
  int cx = x;
  for (char c : s) {
    if (const Glyph* g = find_glyph(c)) {
      for (int row = 0; row < kGlyphH; ++row)
        for (int col = 0; col < kGlyphW; ++col)
          if (g->rows[row][col] == '#') fill_rect(cx + col * scale, y + row * scale, scale, scale, color);
    }
    cx += (kGlyphW + 1) * scale;
  }
  return cx - x;
}

void Canvas::blit(const Image& image, int x, int y, int zoom) {
  for (int yy = 0; yy < image.height; ++yy) {
    for (int xx = 0; xx < image.width; ++xx) {
      const uint8_t* p = image.at(xx, yy);
      const Rgb c = image.channels == 1 ? Rgb{p[0], p[0], p[0]} : Rgb{p[0], p[1], p[2]};
      fill_rect(x + xx * zoom, y + yy * zoom, zoom, zoom, c);
    }
  }
}

void draw_chart(Canvas& canvas, int x, int y, int w, int h, const std::string& title, const std::string& x_label,
                const std::vector<Series>& series, bool legend_at_bottom) {
  const Rgb ink{40, 40, 40}, grid{225, 225, 225};
  double x_min = 1e300, x_max = -1e300, y_min = 1e300, y_max = -1e300;
  for (const Series& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x_min = std::min(x_min, s.x[i]);
      x_max = std::max(x_max, s.x[i]);
      y_min = std::min(y_min, s.y[i]);
      y_max = std::max(y_max, s.y[i]);
    }
  }
  if (x_min > x_max) x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  if (x_max - x_min < 1e-12) x_max = x_min + 1;
  if (y_max - y_min < 1e-12) y_max = y_min + 1e-3, y_min -= 1e-3;
  const double y_pad = 0.05 * (y_max - y_min);
  y_min -= y_pad;
  y_max += y_pad;

  canvas.text(x + (w - Canvas::text_width(title, 2)) / 2, y, title, ink, 2);
  const int left = x + 60, top = y + 26, right = x + w - 10, bottom = y + h - 34;
  auto px = [&](double v) { return left + (v - x_min) / (x_max - x_min) * (right - left); };
  auto py = [&](double v) { return bottom - (v - y_min) / (y_max - y_min) * (bottom - top); };

  const double ys = nice_step(y_max - y_min, 5);
  for (double v = std::ceil(y_min / ys) * ys; v <= y_max; v += ys) {
    const int yy = static_cast<int>(std::lround(py(v)));
    canvas.fill_rect(left, yy, right - left, 1, grid);
    const std::string label = format_tick(v, ys);
    canvas.text(left - 6 - Canvas::text_width(label), yy - 3, label, ink);
  }
  const double xs = nice_step(x_max - x_min, 6);
  for (double v = std::ceil(x_min / xs) * xs; v <= x_max + 1e-9; v += xs) {
    const int xx = static_cast<int>(std::lround(px(v)));
    canvas.fill_rect(xx, top, 1, bottom - top, grid);
    const std::string label = format_tick(v, xs);
    canvas.text(xx - Canvas::text_width(label) / 2, bottom + 6, label, ink);
  }
  canvas.frame_rect(left, top, right - left + 1, bottom - top + 1, ink);
  canvas.text(left + (right - left - Canvas::text_width(x_label)) / 2, bottom + 20, x_label, ink);

  int legend_y = legend_at_bottom ? bottom - 6 - 12 * static_cast<int>(series.size()) : top + 6;
  for (const Series& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      if (s.x.size() == 1 || i + 1 == s.x.size() || !std::isfinite(s.y[i + 1]))
        canvas.fill_rect(static_cast<int>(px(s.x[i])) - 2, static_cast<int>(py(s.y[i])) - 2, 5, 5, s.color);
      if (i + 1 < s.x.size() && std::isfinite(s.y[i + 1]))
        canvas.line(px(s.x[i]), py(s.y[i]), px(s.x[i + 1]), py(s.y[i + 1]), s.color, 2);
    }
    const int lx = right - 12 - Canvas::text_width(s.name) - 20;
    canvas.fill_rect(lx, legend_y + 2, 14, 3, s.color);
    canvas.text(lx + 20, legend_y, s.name, ink);
    legend_y += 12;
  }
}

}  // namespace ember::examples
