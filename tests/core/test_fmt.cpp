#include <gtest/gtest.h>

#include "ember/ember.hpp"
#include "ember/fmt.hpp"

namespace ember {
namespace {
TEST(Fmt, FormatsTensorsAndShapes) {
  auto t = tensor<float>({1, 2}, {2});
  EXPECT_EQ(fmt::format("{}", t), t.str());
  EXPECT_EQ(fmt::format("{}", Shape({2, 3})), "[2, 3]");
}
}  // namespace
}  // namespace ember
