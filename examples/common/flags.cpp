#include "common/flags.hpp"

#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>

namespace ember::examples {

void for_each_flag(int argc, char** argv, const char* usage,
                   const std::function<void(const std::string& flag, const std::string& value)>& on_flag) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", flag));
    on_flag(flag, argv[++i]);
  }
}

int run_program(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

int64_t integer_flag(const std::string& flag, const std::string& value, int64_t min) {
  try {
    size_t used = 0;
    const long long n = std::stoll(value, &used);
    if (used == value.size() && n >= min) return static_cast<int64_t>(n);
  } catch (const std::exception&) {
  }
  throw UsageError(fmt::format("{} expects an integer >= {}, got '{}'", flag, min, value));
}

}  // namespace ember::examples
