#include "common.hpp"

#include <algorithm>
#include <cstring>

namespace ember::detail {

std::vector<int64_t> wrap_dims(const std::vector<int64_t>& dims, int64_t rank, const char* op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < rank; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, rank, op);
    if (rank == 0) continue;
    if (std::find(out.begin(), out.end(), w) != out.end()) {
      throw ValueError(cat_str(op, ": dim ", w, " appears more than once in the dims list"));
    }
    out.push_back(w);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const int64_t rank = std::max(a.size(), b.size());
  Shape out = Shape::filled(rank, 1);
  for (int64_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      throw ShapeError(cat_str(op, ": shapes ", a, " and ", b, " cannot be broadcast: dim ",
                               i - rank, " is ", da, " vs ", db));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape broadcast_strides(const TensorBase& t, const Shape& out) {
  Shape st = Shape::filled(out.size(), 0);
  const int64_t lead = out.size() - t.dim();
  for (int64_t i = 0; i < t.dim(); ++i) {
    st[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  }
  return st;
}

template <Element T>
void copy_into_contiguous(const Tensor<T>& src, T* dst) {
  Shape dst_strides = contiguous_strides(src.shape());
  const Shape& ss = src.strides();
  StridedLoop<2> loop(src.shape(), {&dst_strides, &ss});
  const T* s = src.data_ptr();
  loop.run([&](int64_t n, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& inner) {
    T* d = dst + off[0];
    const T* p = s + off[1];
    if (inner[1] == 1) {
      std::memcpy(d, p, static_cast<size_t>(n) * sizeof(T));
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = p[i * inner[1]];
    }
  });
}

template <Element T>
void copy_strided(const Tensor<T>& src, const Tensor<T>& dst) {
  if (dst.numel() == 0) return;
  // A source that overlaps the destination is copied out first.
  Tensor<T> from = src;
  if (src.impl()->storage == dst.impl()->storage) from = src.clone();
  Shape ss = broadcast_strides(from, dst.shape());
  const Shape& ds = dst.strides();
  StridedLoop<2> loop(dst.shape(), {&ds, &ss});
  T* d0 = dst.data_ptr();
  const T* s0 = from.data_ptr();
  loop.run([&](int64_t n, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& inner) {
    T* d = d0 + off[0];
    const T* p = s0 + off[1];
    if (inner[0] == 1 && inner[1] == 1) {
      std::memcpy(d, p, static_cast<size_t>(n) * sizeof(T));
    } else {
      for (int64_t i = 0; i < n; ++i) d[i * inner[0]] = p[i * inner[1]];
    }
  });
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < s.size(); ++d) {
    bool reduced = std::binary_search(dims.begin(), dims.end(), d);
    if (!reduced) {
      out.push_back(s[d]);
    } else if (keepdim) {
      out.push_back(1);
    }
  }
  return out;
}

template <FloatingElement T>
Tensor<T> unsqueeze_reduced(const Tensor<T>& g, const Shape& in_shape,
                            const std::vector<int64_t>& dims, bool keepdim) {
  if (keepdim) return g;
  return g.reshape(reduced_shape(in_shape, dims, true));
}

#define EMBER_INSTANTIATE(T)                                         \
  template void copy_into_contiguous<T>(const Tensor<T>&, T*);      \
  template void copy_strided<T>(const Tensor<T>&, const Tensor<T>&);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
EMBER_INSTANTIATE(int64_t)
EMBER_INSTANTIATE(int32_t)
EMBER_INSTANTIATE(uint8_t)
EMBER_INSTANTIATE(int8_t)
#undef EMBER_INSTANTIATE
template Tensor<float> unsqueeze_reduced(const Tensor<float>&, const Shape&,
                                         const std::vector<int64_t>&, bool);
template Tensor<double> unsqueeze_reduced(const Tensor<double>&, const Shape&,
                                          const std::vector<int64_t>&, bool);

}  // namespace ember::detail
