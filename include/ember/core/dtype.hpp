#pragma once
// Element types. Tensor<T> exists for float and double (differentiable) and for int64_t, int32_t,
// uint8_t (labels, indices, masks and raw images; comparisons give uint8_t) and int8_t (quantized
// weights: ember::quant).
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace ember {

enum class DType : uint8_t { Float32, Float64, Int64, Int32, UInt8, Int8 };

template <class T>
struct dtype_traits;
template <> struct dtype_traits<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_traits<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_traits<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_traits<int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_traits<uint8_t> { static constexpr DType value = DType::UInt8; };
template <> struct dtype_traits<int8_t> { static constexpr DType value = DType::Int8; };

template <class T>
inline constexpr DType dtype_of = dtype_traits<T>::value;

/// float and double: the element types autograd and the math ops work with.
template <class T>
concept FloatingElement = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class T>
concept Element = FloatingElement<T> || std::is_same_v<T, int64_t> ||
                  std::is_same_v<T, int32_t> || std::is_same_v<T, uint8_t> ||
                  std::is_same_v<T, int8_t>;

const char* dtype_name(DType t) noexcept;  // "float32", ...
size_t dtype_size(DType t) noexcept;

}  // namespace ember
