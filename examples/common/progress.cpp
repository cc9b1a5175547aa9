#include "progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <fmt/format.h>

namespace ember::examples {

bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

EpochProgress::EpochProgress(int64_t epoch, int64_t epochs, int64_t batches, bool live, bool quiet, int64_t replicas)
    : epoch_(epoch),
      epochs_(epochs),
      batches_(batches),
      live_(live && !quiet),
      quiet_(quiet),
      replicas_(replicas),
      start_(std::chrono::steady_clock::now()) {
  last_draw_ = start_;
}

double EpochProgress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string EpochProgress::line() const {
  const double secs = seconds();
  const double rate = secs > 0 ? static_cast<double>(samples_ * replicas_) / secs : 0.0;
  const double eta = done_ > 0 ? secs / static_cast<double>(done_) * static_cast<double>(batches_ - done_) : 0.0;
  const auto eta_s = static_cast<int64_t>(eta + 0.5);
  std::string bar;
  if (live_) {
    constexpr int kWidth = 28;
    const int filled = batches_ > 0 ? static_cast<int>(kWidth * done_ / batches_) : kWidth;
    bar = "[" + std::string(static_cast<size_t>(filled), '=') + (filled < kWidth ? ">" : "") +
          std::string(static_cast<size_t>(std::max(0, kWidth - filled - 1)), ' ') + "] ";
  }
  return fmt::format("epoch {}/{} {}{}/{} loss {:.4f} acc {:.2f}% {:.0f} samples/s ETA {}:{:02d}", epoch_ + 1,
                     epochs_, bar, done_, batches_, mean_loss(), 100 * accuracy(), rate, eta_s / 60, eta_s % 60);
}

void EpochProgress::update(int64_t samples, double loss, int64_t correct) {
  ++done_;
  samples_ += samples;
  loss_sum_ += loss * static_cast<double>(samples);
  correct_ += correct;
  if (quiet_) return;
  if (live_) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ > std::chrono::milliseconds(100) || done_ == batches_) {
      last_draw_ = now;
      std::printf("\r%s\033[K", line().c_str());
      std::fflush(stdout);
    }
  } else if (done_ * 10 >= next_plain_report_ * batches_ || done_ == batches_) {
    while (done_ * 10 >= next_plain_report_ * batches_) ++next_plain_report_;
    std::printf("%s\n", line().c_str());
    std::fflush(stdout);
  }
}

double EpochProgress::finish() {
  if (live_) {
    std::printf("\r%s\033[K\n", line().c_str());
    std::fflush(stdout);
  }
  return seconds();
}

}  // namespace ember::examples
