#pragma once
// Training progress: a live bar redrawn in place when stdout is a terminal, plain lines (about ten
// per epoch) otherwise, so that logs and CI output stay readable.
#include <chrono>
#include <cstdint>
#include <string>

namespace ember::examples {

class EpochProgress {
 public:
  /// `live`: redraw one line in place (use stdout_is_terminal()). `quiet`: print nothing (the
  /// ranks other than 0 of a data-parallel run). `replicas`: processes training alongside this
  /// one on equal shares, counted in the samples/s shown.
  EpochProgress(int64_t epoch, int64_t epochs, int64_t batches, bool live, bool quiet = false, int64_t replicas = 1);
  /// After each batch: its sample count, mean loss and correct predictions.
  void update(int64_t samples, double loss, int64_t correct);
  /// Ends the bar (a newline when live). Returns the epoch's wall time in seconds.
  double finish();

  double mean_loss() const { return samples_ ? loss_sum_ / static_cast<double>(samples_) : 0.0; }
  double accuracy() const { return samples_ ? static_cast<double>(correct_) / static_cast<double>(samples_) : 0.0; }
  double seconds() const;

 private:
  std::string line() const;

  int64_t epoch_, epochs_, batches_;
  bool live_, quiet_;
  int64_t replicas_;
  int64_t done_ = 0, samples_ = 0, correct_ = 0;
  double loss_sum_ = 0;
  int64_t next_plain_report_ = 1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

bool stdout_is_terminal();

}  // namespace ember::examples
