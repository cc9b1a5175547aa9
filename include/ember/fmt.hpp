#pragma once
// fmt support: fmt::format("{}", tensor) and fmt::format("{}", shape). Kept out of the core
// headers so that ember itself does not depend on fmt; include it where you use fmt.
#include <fmt/format.h>

#include <string_view>

#include "ember/core/tensor.hpp"

template <ember::Element T>
struct fmt::formatter<ember::Tensor<T>> : fmt::formatter<std::string_view> {
  template <class Context>
  auto format(const ember::Tensor<T>& t, Context& ctx) const {
    const std::string s = t.str();
    return fmt::formatter<std::string_view>::format(std::string_view(s), ctx);
  }
};

template <>
struct fmt::formatter<ember::Shape> : fmt::formatter<std::string_view> {
  template <class Context>
  auto format(const ember::Shape& s, Context& ctx) const {
    const std::string str = s.str();
    return fmt::formatter<std::string_view>::format(std::string_view(str), ctx);
  }
};
