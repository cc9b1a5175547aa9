#pragma once
// ember's exceptions. Every check is on in every build type and throws one of these; messages
// name the op, the shapes and what was expected, e.g.
//   matmul: [3, 4] x [5, 6]: inner dims 4 != 5
#include <stdexcept>
#include <string>

namespace ember {

/// Base of every exception ember throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message)
      : std::runtime_error(message), message_(message), full_(message) {}
  /// "features.0: conv2d: ..." when thrown inside modules, else the message itself.
  const char* what() const noexcept override { return full_.c_str(); }
  /// The message without the module path.
  const std::string& message() const noexcept { return message_; }
  /// The dotted path of the module the error came from ("features.0"); empty outside modules.
  const std::string& module_path() const noexcept { return path_; }
  /// Puts an enclosing module's name in front of the path, as the error leaves that module.
  void prepend_module(const std::string& name) {
    path_ = path_.empty() ? name : name + "." + path_;
    full_ = path_ + ": " + message_;
  }

 private:
  std::string message_;
  std::string path_;
  std::string full_;
};

/// Shapes that do not fit the op (broadcasting, matmul, reshape, cat, ...).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A dimension or element index out of range.
class IndexError : public Error {
 public:
  using Error::Error;
};

/// An argument value that the op does not accept (negative size, bad thread count, ...).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// The element type does not fit the op (e.g. a gradient for an integer tensor).
class TypeError : public Error {
 public:
  using Error::Error;
};

/// Misuse of autograd: backward through a freed graph, an in-place change of a saved tensor, a
/// NaN under anomaly detection.
class AutogradError : public Error {
 public:
  using Error::Error;
};

/// A wait ran past its time limit (a DataLoader batch that did not come).
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// A file could not be opened, read or written.
class IOError : public Error {
 public:
  using Error::Error;
};

/// A file was read but its contents break its format.
class FormatError : public Error {
 public:
  using Error::Error;
};

}  // namespace ember
