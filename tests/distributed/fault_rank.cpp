// A training-like loop of all-reduces in which rank 1 fails mid-way: `exit` leaves the process
// with status 3 and `vanish` with status 0, both without finalizing MPI (as a crash or a stray
// exit() would), `throw` lets an exception leave the Environment's scope, and `stall` stops
// calling collectives (stuck for a minute) while rank 0 waits in one past the timeout. tests/distributed/check_fault.sh runs it under mpirun and checks that the
// whole job stops within 30 seconds, saying which rank failed, instead of hanging.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "ember/distributed.hpp"
#include "ember/ember.hpp"

int main(int argc, char** argv) {
  const bool throws = argc > 1 && std::strcmp(argv[1], "throw") == 0;
  const bool vanishes = argc > 1 && std::strcmp(argv[1], "vanish") == 0;
  const bool stalls = argc > 1 && std::strcmp(argv[1], "stall") == 0;
  try {
    ember::distributed::Environment env(argc, argv);
    ember::Tensor<float> grad = ember::ones<float>(ember::Shape{1000});
    for (int step = 0; step < 1000000; ++step) {
      if (step == 20 && ember::distributed::rank() == 1) {
        if (throws) throw std::runtime_error("rank 1 fails at step 20");
        if (stalls) {
          std::this_thread::sleep_for(std::chrono::seconds(60));
          return 0;
        }
        std::_Exit(vanishes ? 0 : 3);
      }
      ember::distributed::all_reduce(grad, ember::distributed::ReduceOp::Avg);
    }
  } catch (const std::exception& e) {
    std::cerr << "caught: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
