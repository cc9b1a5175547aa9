// ember-run: runs a saved inference plan (ember::deploy, Note [Inference plan]) on a PNG image and
// prints the top classes. Links ember::runtime and zlib only (its PNG decoder: png_reader.hpp): no
// autograd, modules or optimizers, so it fits small boards (docs/deploy.md).
//
//   ember-run MODEL.ember IMAGE.png [--top K] [--mean M[,M,M]] [--std S[,S,S]] [--labels FILE]
//                                    [--threads N]
// The plan's input must be [1, C, H, W] with C = 1 (gray) or 3 (RGB) and the image H x W pixels;
// each pixel becomes (value / 255 - mean[c]) / std[c], as the examples normalise their data.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "ember/backend/int8_kernels.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"
#include "ember/deploy/plan.hpp"
#include "png_reader.hpp"

namespace {

struct Options {
  std::string model, image, labels;
  int top = 5;
  int threads = 1;
  std::vector<double> mean{0.0}, std{1.0};
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "ember-run: %s\n"
               "usage: ember-run MODEL.ember IMAGE.png [--top K] [--mean M[,M,M]] [--std S[,S,S]] [--labels FILE]\n"
               "                 [--threads N]\n",
               why.c_str());
  std::exit(2);
}

std::vector<double> numbers(const std::string& flag, const std::string& text) {
  std::vector<double> out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || end != item.c_str() + item.size() || !std::isfinite(v)) usage(flag + ": not a number: " + item);
    out.push_back(v);
    at = comma + 1;
  }
  return out;
}

int integer(const std::string& flag, const std::string& text, int lo, int hi) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < lo || v > hi) {
    usage(flag + " expects an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + text);
  }
  return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--top") o.top = integer(a, value(), 1, 1000000);
    else if (a == "--threads") o.threads = integer(a, value(), 1, 4096);
    else if (a == "--mean") o.mean = numbers(a, value());
    else if (a == "--std") o.std = numbers(a, value());
    else if (a == "--labels") o.labels = value();
    else if (a == "--help" || a == "-h") usage("runs a saved plan on an image");
    else if (a.rfind("--", 0) == 0) usage("unknown option " + a);
    else positional.push_back(a);
  }
  if (positional.size() != 2) usage("expected MODEL.ember and IMAGE.png");
  o.model = positional[0];
  o.image = positional[1];
  for (double s : o.std) {
    if (s == 0.0) usage("--std: a standard deviation of 0");
  }
  return o;
}

// The whole file, through stdio.
std::vector<uint8_t> read_bytes(const std::string& path) {
  std::unique_ptr<std::FILE, decltype(&std::fclose)> in(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!in) throw ember::IOError("ember-run: cannot open " + path);
  std::vector<uint8_t> bytes;
  uint8_t buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, in.get())) > 0;) {
    if (bytes.size() + n > (size_t(1) << 30)) throw ember::IOError("ember-run: " + path + " is over 1 GB");
    bytes.insert(bytes.end(), buf, buf + n);
  }
  if (std::ferror(in.get())) throw ember::IOError("ember-run: cannot read " + path);
  return bytes;
}

// The image as `channels` planes of width x height floats, (pixel / 255 - mean) / std.
std::vector<float> read_image(const Options& o, int channels, int height, int width) {
  const ember::run::Pixels image = ember::run::decode_png(read_bytes(o.image), channels, o.image);
  if (image.width != width || image.height != height) {
    throw ember::ShapeError("ember-run: " + o.image + " is " + std::to_string(image.width) + "x" +
                            std::to_string(image.height) + " pixels, the model takes " + std::to_string(width) + "x" +
                            std::to_string(height));
  }
  const std::vector<uint8_t>& pixels = image.data;
  auto per_channel = [&](const std::vector<double>& v, const char* flag) {
    if (v.size() == 1) return std::vector<double>(static_cast<size_t>(channels), v[0]);
    if (v.size() != static_cast<size_t>(channels)) {
      usage(std::string(flag) + ": " + std::to_string(v.size()) + " values for " + std::to_string(channels) + " channels");
    }
    return v;
  };
  const std::vector<double> mean = per_channel(o.mean, "--mean"), std = per_channel(o.std, "--std");
  std::vector<float> x(pixels.size());
  const size_t plane = static_cast<size_t>(width) * static_cast<size_t>(height);
  for (size_t i = 0; i < plane; ++i) {
    for (size_t c = 0; c < static_cast<size_t>(channels); ++c) {
      x[c * plane + i] = static_cast<float>((pixels[i * static_cast<size_t>(channels) + c] / 255.0 - mean[c]) / std[c]);
    }
  }
  return x;
}

std::vector<std::string> read_labels(const std::string& path, size_t classes) {
  std::vector<std::string> names;
  if (!path.empty()) {
    // stdio rather than iostreams: they would double the static binary (docs/deploy.md).
    std::unique_ptr<std::FILE, decltype(&std::fclose)> in(std::fopen(path.c_str(), "r"), &std::fclose);
    if (!in) throw ember::IOError("ember-run: cannot open " + path);
    std::string line;
    for (int c; (c = std::fgetc(in.get())) != EOF;) {
      if (c != '\n') {
        line += static_cast<char>(c);
      } else {
        names.push_back(line);
        line.clear();
      }
    }
    if (!line.empty()) names.push_back(line);
  }
  for (size_t i = names.size(); i < classes; ++i) names.push_back(std::to_string(i));
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    ember::set_num_threads(o.threads);
    const ember::deploy::Plan plan = ember::deploy::load(o.model);
    const ember::Shape& in = plan.input_shape();
    if (in.size() != 4 || in[0] != 1 || (in[1] != 1 && in[1] != 3)) {
      throw ember::ShapeError("ember-run: " + o.model + " takes " + in.str() +
                              ", not one gray or RGB image [1, 1 or 3, H, W]");
    }
    const std::vector<float> x = read_image(o, static_cast<int>(in[1]), static_cast<int>(in[2]), static_cast<int>(in[3]));
    std::vector<float> logits(static_cast<size_t>(plan.output_shape().numel()));
    const size_t bytes = (plan.arena_bytes() + 63) / 64 * 64;
    std::unique_ptr<std::byte, decltype(&std::free)> arena(
        static_cast<std::byte*>(std::aligned_alloc(ember::deploy::Plan::kArenaAlignment, std::max<size_t>(bytes, 64))),
        &std::free);
    if (!arena) throw ember::Error("ember-run: cannot allocate the arena (" + std::to_string(bytes) + " bytes)");
    plan.run(x, logits, std::span<std::byte>(arena.get(), plan.arena_bytes()));

    // Softmax over the outputs, then the largest first.
    const float top = *std::max_element(logits.begin(), logits.end());
    std::vector<double> prob(logits.size());
    double total = 0;
    for (size_t i = 0; i < logits.size(); ++i) total += prob[i] = std::exp(static_cast<double>(logits[i] - top));
    std::vector<size_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min(order.size(), static_cast<size_t>(o.top));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      [&](size_t a, size_t b) { return logits[a] > logits[b]; });
    const std::vector<std::string> names = read_labels(o.labels, logits.size());
    std::printf("%s on %s (%s kernels%s%s):\n", o.model.c_str(), o.image.c_str(), ember::backend::isa_name(),
                plan.has_int8_steps() ? ", int8: " : "",
                plan.has_int8_steps() ? ember::backend::int8_isa_name(ember::backend::int8_kernels().isa) : "");
    for (size_t i = 0; i < k; ++i) {
      const size_t c = order[i];
      std::printf("  %-16s %6.2f%%  (logit %.4f)\n", names[c].c_str(), 100.0 * prob[c] / total,
                  static_cast<double>(logits[c]));
    }
  } catch (const ember::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
