#pragma once
// Test helper: runs f, which must throw E (and nothing else) with `text` in its message.
#include <gtest/gtest.h>

#include <exception>
#include <string>

namespace ember::testing {

template <class E, class F>
void expect_error(F&& f, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing: " << text;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what() << "\nexpected: " << text;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what() << "\nexpected: " << text;
  }
}

}  // namespace ember::testing
