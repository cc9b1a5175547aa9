#pragma once
// The CTC loss benchmark's inputs, one definition for bench_layers.cpp and its LibTorch twin:
// log-probabilities [150 frames, 32 sequences, 40 classes] from ember's generator, targets of 21
// to 30 labels, input lengths 119 to 150.
#include <cstdint>
#include <vector>

#include "ember/ember.hpp"

namespace ember_bench {

struct CtcCase {
  static constexpr int64_t kFrames = 150, kBatch = 32, kClasses = 40, kLabels = 30;
  ember::Tensor<float> log_probs;                         // [kFrames, kBatch, kClasses]
  std::vector<int64_t> targets, input_lengths, target_lengths;  // [kBatch, kLabels], [kBatch], [kBatch]
};

inline CtcCase ctc_case() {
  CtcCase c;
  ember::manual_seed(0);
  c.log_probs = ember::log_softmax(ember::randn<float>({CtcCase::kFrames, CtcCase::kBatch, CtcCase::kClasses}), 2);
  for (int64_t i = 0; i < CtcCase::kBatch * CtcCase::kLabels; ++i) {
    c.targets.push_back(1 + (i * 7) % (CtcCase::kClasses - 1));
  }
  for (int64_t i = 0; i < CtcCase::kBatch; ++i) {
    c.input_lengths.push_back(CtcCase::kFrames - i);
    c.target_lengths.push_back(CtcCase::kLabels - i % 10);
  }
  return c;
}

}  // namespace ember_bench
