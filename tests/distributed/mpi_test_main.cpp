// main() of the tests that mpirun starts: the Environment spans every test.
#include <gtest/gtest.h>

#include "ember/distributed/environment.hpp"

int main(int argc, char** argv) {
  ember::distributed::Environment env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
