#pragma once
// Command-line flags of the form `--name value` for the example programs.
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace ember::examples {

/// A bad flag or value; the programs print it with "(see --help)" and exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Calls on_flag(flag, value) for each `--flag value` pair in order; `--help` / `-h` prints
/// `usage` and exits 0; a flag without a value throws UsageError.
void for_each_flag(int argc, char** argv, const char* usage,
                   const std::function<void(const std::string& flag, const std::string& value)>& on_flag);

/// Runs a program's body: its return value is the exit code; a UsageError prints
/// "PROGRAM: message (see --help)" and gives 2, any other exception "PROGRAM: error: message" and 1.
int run_program(const char* program, const std::function<int()>& body);

/// The value of an integer flag, at least `min`; throws UsageError naming the flag otherwise.
int64_t integer_flag(const std::string& flag, const std::string& value, int64_t min);

}  // namespace ember::examples
