// ember-run (examples/run): a saved plan on a PNG, end to end, and its errors.
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/deploy.hpp"
#include "ember/quant.hpp"
#include "ember/nn.hpp"
#include "ember/ops/factory.hpp"
#include "png_reader.hpp"

namespace {

namespace nn = ember::nn;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("ember_run_" + std::to_string(::getpid()) + "_" + name)).string();
}

// Runs a command; returns its exit status and stdout + stderr.
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  std::array<char, 256> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

void write_gray_png(const std::string& path, int width, int height, const std::vector<uint8_t>& pixels) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_GRAY;
  ASSERT_TRUE(png_image_write_to_file(&image, path.c_str(), 0, pixels.data(), 0, nullptr)) << image.message;
}

TEST(EmberRun, PrintsTheTopClassesOfAPlan) {
  // Class j's logit is pixel j (as a fraction of 255): the brightest pixel wins.
  auto model = std::make_shared<nn::Sequential<float>>(nn::Flatten(), nn::Linear(4, 4));
  {
    ember::NoGradGuard no_grad;
    auto params = model->named_parameters();
    for (auto& [name, p] : params) {
      if (name.ends_with("weight")) p.copy_(ember::eye<float>(4) * 10.0);
      if (name.ends_with("bias")) p.fill_(0.0);
    }
  }
  model->eval();
  const std::string plan = temp_path("identity.ember"), image = temp_path("pixels.png"), labels = temp_path("labels.txt");
  ember::deploy::save(ember::deploy::compile(*model, {1, 1, 2, 2}), plan);
  write_gray_png(image, 2, 2, {10, 250, 40, 200});
  { std::FILE* f = std::fopen(labels.c_str(), "w"); std::fputs("zero\none\ntwo\nthree\n", f); std::fclose(f); }

  const std::string exe = EMBER_RUN_PATH;
  auto [status, out] = run(exe + " " + plan + " " + image + " --top 2 --labels " + labels);
  EXPECT_EQ(status, 0) << out;
  const size_t one = out.find("one"), three = out.find("three");
  EXPECT_NE(one, std::string::npos) << out;
  EXPECT_NE(three, std::string::npos) << out;
  EXPECT_LT(one, three) << out;  // 250 before 200
  EXPECT_EQ(out.find("zero"), std::string::npos) << out;  // only the top 2

  // The same model quantized to int8 (a plan of int8 steps) ranks the pixels the same way.
  const std::string int8_plan = temp_path("identity-int8.ember");
  ember::deploy::save(ember::deploy::compile(ember::quant::quantize(*model, {ember::rand<float>({16, 1, 2, 2})}), {1, 1, 2, 2}),
                      int8_plan);
  std::tie(status, out) = run(exe + " " + int8_plan + " " + image + " --top 2 --labels " + labels);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find(", int8: "), std::string::npos) << out;
  EXPECT_LT(out.find("one"), out.find("three")) << out;
  EXPECT_EQ(out.find("zero"), std::string::npos) << out;
  std::filesystem::remove(int8_plan);

  // Errors: exit status 1 and a message naming the file.
  write_gray_png(image, 3, 2, {0, 0, 0, 0, 0, 0});
  std::tie(status, out) = run(exe + " " + plan + " " + image);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("is 3x2 pixels, the model takes 2x2"), std::string::npos) << out;
  std::tie(status, out) = run(exe + " " + image + " " + image);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("not a valid ember plan file"), std::string::npos) << out;
  std::tie(status, out) = run(exe + " " + plan);
  EXPECT_EQ(status, 2) << out;
  for (const std::string& f : {plan, image, labels}) std::filesystem::remove(f);
}

// A PNG of any color type and bit depth, rows given packed as the file stores them, through
// libpng's writer with every row filter allowed.
std::vector<uint8_t> encode_png(int w, int h, int depth, int color, const std::vector<uint8_t>& rows,
                                const std::vector<png_color>& palette = {}, const std::vector<uint8_t>& trns = {}) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  std::vector<uint8_t> out;
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep d, png_size_t n) {
        auto* v = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(p));
        v->insert(v->end(), d, d + n);
      },
      nullptr);
  png_set_IHDR(png, info, static_cast<png_uint_32>(w), static_cast<png_uint_32>(h), depth, color, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
  if (!trns.empty()) png_set_tRNS(png, info, trns.data(), static_cast<int>(trns.size()), nullptr);
  png_set_filter(png, 0, PNG_ALL_FILTERS);
  png_write_info(png, info);
  const size_t row_bytes = rows.size() / static_cast<size_t>(h);
  for (int y = 0; y < h; ++y) png_write_row(png, rows.data() + static_cast<size_t>(y) * row_bytes);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

// libpng's own reading of `bytes` as 8-bit gray or RGB (the oracle).
std::vector<uint8_t> libpng_read(const std::vector<uint8_t>& bytes, int channels) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) << image.message;
  image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  std::vector<uint8_t> out(PNG_IMAGE_SIZE(image));
  const png_color black{0, 0, 0};
  EXPECT_TRUE(png_image_finish_read(&image, &black, out.data(), 0, nullptr)) << image.message;
  return out;
}

TEST(EmberRunPng, DecodesEveryOpaqueFormatAsLibpngDoes) {
  std::mt19937 rng(5);
  const int w = 37, h = 11;  // odd sizes: partial bytes at 1, 2 and 4 bits per pixel
  struct Format {
    int color, depth, channels;
  };
  for (const Format f : {Format{0, 1, 1}, Format{0, 2, 1}, Format{0, 4, 1}, Format{0, 8, 1}, Format{0, 16, 1},
                         Format{2, 8, 3}, Format{2, 16, 3}, Format{3, 1, 3}, Format{3, 2, 3}, Format{3, 4, 3},
                         Format{3, 8, 3}}) {
    SCOPED_TRACE("color type " + std::to_string(f.color) + ", depth " + std::to_string(f.depth));
    const int samples = f.color == 2 ? 3 : 1;
    const size_t row_bytes = (static_cast<size_t>(w) * samples * f.depth + 7) / 8;
    std::vector<uint8_t> rows(row_bytes * h);
    // Smooth runs with noise, so that every filter type wins somewhere.
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint8_t>((i % 7 < 4 ? i * 3 : rng()) & 0xff);
    std::vector<png_color> palette;
    if (f.color == 3) {
      for (int i = 0; i < (1 << f.depth); ++i) {
        palette.push_back({static_cast<png_byte>(rng()), static_cast<png_byte>(rng()), static_cast<png_byte>(rng())});
      }
    }
    const std::vector<uint8_t> file = encode_png(w, h, f.depth, f.color, rows, palette);
    const ember::run::Pixels got = ember::run::decode_png(file, f.channels, "test.png");
    EXPECT_EQ(got.width, w);
    EXPECT_EQ(got.height, h);
    if (f.depth != 16) {
      EXPECT_EQ(got.data, libpng_read(file, f.channels));
    } else {
      // libpng's simplified API takes 16-bit files without gamma chunks for linear light and
      // gamma-encodes them; ember-run scales the samples as they are, as it does 8-bit ones.
      std::vector<uint8_t> want;
      for (size_t i = 0; i + 1 < rows.size(); i += 2) {
        want.push_back(static_cast<uint8_t>((((uint32_t(rows[i]) << 8) | rows[i + 1]) * 255 + 32895) >> 16));
      }
      EXPECT_EQ(got.data, want);
    }
  }
}

TEST(EmberRunPng, ComposesAlphaOnBlackAndConvertsToGray) {
  // One RGBA pixel row: opaque red, half-transparent white, transparent green.
  const std::vector<uint8_t> rgba{255, 0, 0, 255, 255, 255, 255, 128, 0, 255, 0, 0};
  const std::vector<uint8_t> file = encode_png(3, 1, 8, 6, rgba);
  EXPECT_EQ(ember::run::decode_png(file, 3, "a.png").data, (std::vector<uint8_t>{255, 0, 0, 128, 128, 128, 0, 0, 0}));
  EXPECT_EQ(ember::run::decode_png(file, 1, "a.png").data, (std::vector<uint8_t>{54, 128, 0}));  // 0.2126 * 255
  // A palette with transparency (tRNS).
  const std::vector<uint8_t> file2 = encode_png(2, 1, 8, 3, {0, 1}, {{200, 100, 50}, {10, 20, 30}}, {0});
  EXPECT_EQ(ember::run::decode_png(file2, 3, "p.png").data, (std::vector<uint8_t>{0, 0, 0, 10, 20, 30}));
}

TEST(EmberRunPng, RefusesDamagedFiles) {
  std::vector<uint8_t> rows(16 * 4, 7);
  const std::vector<uint8_t> good = encode_png(16, 4, 8, 0, rows);
  using ember::run::decode_png;
  for (size_t keep : {size_t(0), size_t(8), size_t(20), good.size() - 13, good.size() - 1}) {
    EXPECT_THROW(decode_png(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep)), 1, "t.png"),
                 ember::FormatError) << keep;
  }
  for (size_t at : {size_t(3), size_t(17), size_t(30), good.size() - 20}) {
    std::vector<uint8_t> bad = good;
    bad[at] ^= 0x40;
    EXPECT_THROW(decode_png(bad, 1, "t.png"), ember::FormatError) << at;
  }
  EXPECT_THROW(decode_png(good, 2, "t.png"), ember::ValueError);
}

}  // namespace
