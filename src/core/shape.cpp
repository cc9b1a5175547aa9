#include "ember/core/shape.hpp"

#include <algorithm>

#include "ember/core/dtype.hpp"
#include "ember/core/error.hpp"

namespace ember {

namespace detail {
void throw_too_many_dims(int64_t rank) {
  throw ShapeError("shape: " + std::to_string(rank) + " dims exceed the maximum of " +
                   std::to_string(kMaxDims));
}
}  // namespace detail

std::string Shape::str() const {
  std::string s = "[";
  for (int64_t i = 0; i < size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(d_[i]);
  }
  return s + "]";
}

int64_t checked_numel(const Shape& shape, const char* op) {
  int64_t span = 1;  // the product with zeros counted as ones (the outer stride)
  bool overflow = false, zero = false;
  for (int64_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      throw ShapeError(std::string(op) + ": shape " + shape.str() + " has a negative size " +
                       std::to_string(shape[i]) + " at dim " + std::to_string(i));
    }
    zero = zero || shape[i] == 0;
    if (__builtin_mul_overflow(span, std::max<int64_t>(shape[i], 1), &span)) overflow = true;
  }
  // Even an empty tensor gets row-major strides, which are products of the other dims: they must
  // fit in int64 too (a shape [0, 2^62, 2^62] has no elements but no valid strides either).
  if (overflow || span > kMaxElements) {
    throw ShapeError(std::string(op) + ": shape " + shape.str() +
                     (zero ? " has strides larger than int64 can count" : " has more elements than int64 can count") +
                     " (at most 2^62)");
  }
  return zero ? 0 : span;
}

int64_t checked_nbytes(const Shape& shape, size_t element_size, const char* op) {
  const int64_t n = checked_numel(shape, op);
  int64_t bytes = 0;
  if (__builtin_mul_overflow(n, static_cast<int64_t>(element_size), &bytes) || bytes > kMaxBytes) {
    throw ShapeError(std::string(op) + ": shape " + shape.str() + " needs " + std::to_string(n) + " elements of " +
                     std::to_string(element_size) + " bytes, more than the 2^60 bytes a tensor may hold");
  }
  return bytes;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st = Shape::filled(shape.size(), 1);
  int64_t acc = 1;
  for (int64_t i = shape.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

const char* dtype_name(DType t) noexcept {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::Int32: return "int32";
    case DType::UInt8: return "uint8";
    case DType::Int8: return "int8";
  }
  return "unknown";
}

size_t dtype_size(DType t) noexcept {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::Int32: return 4;
    case DType::UInt8: return 1;
    case DType::Int8: return 1;
  }
  return 0;
}

}  // namespace ember
