#pragma once
// Shape: the sizes (or strides) of a tensor, stored inline (no heap allocation) up to kMaxDims.
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <string>
#include <vector>

namespace ember {

inline constexpr int kMaxDims = 16;

namespace detail {
[[noreturn]] void throw_too_many_dims(int64_t rank);
}

class Shape {
 public:
  Shape() noexcept : n_(0) {}
  // Only the first size() entries are meaningful; copies move just those.
  Shape(const Shape& o) noexcept : n_(o.n_) {
    for (int32_t i = 0; i < n_; ++i) d_[i] = o.d_[i];
  }
  Shape& operator=(const Shape& o) noexcept {
    n_ = o.n_;
    for (int32_t i = 0; i < n_; ++i) d_[i] = o.d_[i];
    return *this;
  }
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }  // NOLINT
  template <class It>
  Shape(It first, It last) {
    assign(first, last);
  }
  /// A shape of `rank` dims, each `value`.
  static Shape filled(int64_t rank, int64_t value) {
    Shape s;
    if (rank > kMaxDims) detail::throw_too_many_dims(rank);
    for (int64_t i = 0; i < rank; ++i) s.d_[i] = value;
    s.n_ = static_cast<int32_t>(rank);
    return s;
  }

  /// Number of dims.
  int64_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  int64_t operator[](int64_t i) const noexcept { return d_[i]; }
  int64_t& operator[](int64_t i) noexcept { return d_[i]; }
  const int64_t* begin() const noexcept { return d_; }
  const int64_t* end() const noexcept { return d_ + n_; }
  int64_t* begin() noexcept { return d_; }
  int64_t* end() noexcept { return d_ + n_; }
  const int64_t* data() const noexcept { return d_; }
  int64_t back() const noexcept { return d_[n_ - 1]; }

  void push_back(int64_t v) {
    if (n_ >= kMaxDims) detail::throw_too_many_dims(n_ + 1);
    d_[n_++] = v;
  }
  void pop_back() noexcept { --n_; }
  void insert(int64_t pos, int64_t v) {
    if (n_ >= kMaxDims) detail::throw_too_many_dims(n_ + 1);
    for (int64_t i = n_; i > pos; --i) d_[i] = d_[i - 1];
    d_[pos] = v;
    ++n_;
  }
  void erase(int64_t pos) noexcept {
    for (int64_t i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
    --n_;
  }

  /// Product of the dims (1 for rank 0); callers validate overflow with checked_numel.
  int64_t numel() const noexcept {
    int64_t p = 1;
    for (int32_t i = 0; i < n_; ++i) p *= d_[i];
    return p;
  }
  std::vector<int64_t> vec() const { return std::vector<int64_t>(begin(), end()); }
  /// "[3, 4]"
  std::string str() const;

  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    if (a.n_ != b.n_) return false;
    for (int32_t i = 0; i < a.n_; ++i)
      if (a.d_[i] != b.d_[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }

 private:
  template <class It>
  void assign(It first, It last) {
    n_ = 0;
    for (; first != last; ++first) {
      if (n_ >= kMaxDims) detail::throw_too_many_dims(n_ + 1);
      d_[n_++] = static_cast<int64_t>(*first);
    }
  }

  int64_t d_[kMaxDims];  // not zeroed: tensors are made often and most have few dims
  int32_t n_;
};

std::ostream& operator<<(std::ostream& os, const Shape& s);

/// The most elements a tensor may have, and the most bytes its storage may take.
inline constexpr int64_t kMaxElements = int64_t(1) << 62;
inline constexpr int64_t kMaxBytes = int64_t(1) << 60;

/// Element count of `shape`; throws ShapeError naming `op` for a negative dim, or when the
/// element count or a row-major stride (the product of the other dims, zeros counted as ones)
/// exceeds kMaxElements (checked before anything is allocated).
int64_t checked_numel(const Shape& shape, const char* op);
/// Byte size of a tensor of `shape` with elements of `element_size` bytes; throws ShapeError as
/// checked_numel does, and when the byte count exceeds kMaxBytes.
int64_t checked_nbytes(const Shape& shape, size_t element_size, const char* op);

/// Row-major strides of `shape`.
Shape contiguous_strides(const Shape& shape);

}  // namespace ember
