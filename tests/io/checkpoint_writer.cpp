// Helper for the kill test: saves checkpoints of a model whose every weight equals the step
// number, as fast as it can, until it is killed. After the first save it writes one byte to
// stdout, so the test knows a complete checkpoint exists before it starts killing.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "ember/ember.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PATH\n", argv[0]);
    return 2;
  }
  namespace nn = ember::nn;
  ::signal(SIGPIPE, SIG_IGN);  // the test closes its end of the pipe once it has the first report
  ember::set_num_threads(1);
  nn::Sequential net(nn::Linear(64, 256), nn::ReLU(), nn::Linear(256, 64));
  ember::optim::SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  for (int64_t step = 1;; ++step) {
    {
      ember::NoGradGuard no_grad;
      for (auto& p : net.parameters()) p.fill_(static_cast<float>(step));
    }
    ember::save_checkpoint(argv[1], ember::make_checkpoint(net, sgd, nullptr, step));
    if (step == 1 && (::write(STDOUT_FILENO, "s", 1) != 1 || ::close(STDOUT_FILENO) != 0)) return 3;
  }
}
