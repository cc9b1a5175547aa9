// Connectionist temporal classification loss (nn::functional::ctc_loss).
//
// Note [CTC forward-backward]
// A target l of length L is extended with blanks, l' = (blank, l1, blank, l2, ..., lL, blank) of
// length S = 2L + 1. In log space, alpha[t][s] is the probability of the frames 0..t emitting a
// prefix of l' that ends at s, and beta[t][s] that of frames t..T-1 emitting the suffix from s;
// both include frame t's own log-probability, as PyTorch's kernel keeps them. A step from t - 1
// stays on s, comes from s - 1, or skips the blank from s - 2 when l'(s) is a label unlike
// l'(s - 2). The loss is -log(alpha[T-1][S-1] + alpha[T-1][S-2]). The alignments through (t, s)
// weigh exp(alpha + beta - lp[t][l'(s)]), so the derivative of the loss with respect to
// lp[t][c] is -exp(lcab[t][c] - lp[t][c] + loss), lcab[t][c] being the log-sum over the s with
// l'(s) = c of alpha + beta. PyTorch returns that plus exp(lp[t][c]) (for t below the input
// length): the derivative of the loss taken through a log_softmax, whose backward removes the
// term again since the rows of exp(lp) sum to 1. ember returns the derivative itself, which a
// finite-difference check confirms for any input, and equals PyTorch's through log_softmax.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "ember/autograd/record.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/nn/functional.hpp"
#include "../core/internal.hpp"
#include "../ops/common.hpp"

namespace ember::nn::functional {

using detail::cat_str;

namespace {

constexpr const char* kOp = "ctc_loss";

// The targets of each sample, checked: where sample n's labels start in `labels`, and its length.
struct CtcTargets {
  std::vector<int64_t> labels;  // every target's labels, concatenated
  std::vector<int64_t> offset, length, input_length;
  int64_t max_length = 0;
};

CtcTargets check_targets(const Shape& lp, const Tensor<int64_t>& targets, const Tensor<int64_t>& input_lengths,
                         const Tensor<int64_t>& target_lengths, int64_t blank, bool unbatched) {
  const int64_t frames = lp[0], n = lp[1], classes = lp[2];
  if (!targets.defined() || !input_lengths.defined() || !target_lengths.defined()) {
    throw ValueError(cat_str(kOp, ": the targets or a lengths tensor is undefined"));
  }
  if (blank < 0 || blank >= classes) {
    throw IndexError(cat_str(kOp, ": blank ", blank, " is out of range for ", classes, " classes"));
  }
  if (input_lengths.numel() != n || target_lengths.numel() != n || input_lengths.dim() > 1 ||
      target_lengths.dim() > 1) {
    throw ShapeError(cat_str(kOp, ": input_lengths ", input_lengths.shape(), " and target_lengths ",
                             target_lengths.shape(), " must each hold one length per sample (", n, ")"));
  }
  CtcTargets t;
  t.input_length = input_lengths.to_vector();
  t.length = target_lengths.to_vector();
  for (int64_t i = 0; i < n; ++i) {
    if (t.input_length[i] < 0 || t.input_length[i] > frames) {
      throw ValueError(cat_str(kOp, ": input_lengths[", i, "] = ", t.input_length[i], " is outside [0, ", frames,
                               "] (log_probs ", lp, ")"));
    }
    if (t.length[i] < 0) throw ValueError(cat_str(kOp, ": target_lengths[", i, "] = ", t.length[i], " is negative"));
    t.max_length = std::max(t.max_length, t.length[i]);
  }
  const std::vector<int64_t> values = targets.to_vector();
  const bool padded = targets.dim() == 2 || (unbatched && targets.dim() == 1);
  const int64_t width = padded ? targets.shape()[targets.dim() - 1] : 0;
  if (padded) {
    if (targets.dim() == 2 && targets.shape()[0] != n) {
      throw ShapeError(cat_str(kOp, ": targets ", targets.shape(), " must have one row per sample (", n, ")"));
    }
    if (t.max_length > width) {
      throw ShapeError(cat_str(kOp, ": targets ", targets.shape(), " are shorter than target length ", t.max_length));
    }
  } else {
    if (targets.dim() != 1) {
      throw ShapeError(cat_str(kOp, ": targets must be [N, S] (padded) or 1-D (concatenated), got ", targets.shape()));
    }
    int64_t total = 0;
    for (int64_t len : t.length) total += len;
    if (total != targets.numel()) {
      throw ShapeError(cat_str(kOp, ": concatenated targets ", targets.shape(),
                               " must hold the sum of target_lengths (", total, ")"));
    }
  }
  t.offset.resize(static_cast<size_t>(n));
  for (int64_t i = 0, at = 0; i < n; ++i) {
    const int64_t start = padded ? i * width : at;
    t.offset[i] = static_cast<int64_t>(t.labels.size());
    for (int64_t j = 0; j < t.length[i]; ++j) {
      const int64_t label = values[static_cast<size_t>(start + j)];
      if (label < 0 || label >= classes || label == blank) {
        throw IndexError(cat_str(kOp, ": target ", label, " of sample ", i, " (position ", j,
                                 ") must be a class in [0, ", classes, ") other than the blank ", blank));
      }
      t.labels.push_back(label);
    }
    at += t.length[i];
  }
  return t;
}

// The recursions run in double for float inputs too: a loss of several hundred nats in float
// would carry errors of 1e-4 into exp(lcab - lp + loss), the gradient, on long sequences.
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b)) and of three, in double with the correction to the largest term
// computed in M, the input's type: a float input's loss carries float's resolution anyway, and
// float's exp and log take half the time (the corrections, at most log 3, are accurate to 1e-7).
// log(1 + x) rather than log1p (twice the time in glibc): its rounding is below that of the
// sum with a.
template <class M>
double log_add(double a, double b) {
  if (a < b) std::swap(a, b);
  return b == kNegInf ? a : a + static_cast<double>(std::log(M(1) + std::exp(static_cast<M>(b - a))));
}

template <class M>
double log_add(double a, double b, double c) {
  if (a < b) std::swap(a, b);
  if (a < c) std::swap(a, c);
  if (a == kNegInf) return a;
  return a + static_cast<double>(std::log(M(1) + std::exp(static_cast<M>(b - a)) + std::exp(static_cast<M>(c - a))));
}

// One sample's extended labels and its view of log_probs.
template <class T>
struct Sample {
  const T* lp;  // lp[t * stride + c]
  int64_t stride, frames, states;
  const int64_t* labels;
  int64_t blank;
  int64_t label(int64_t s) const { return s % 2 == 0 ? blank : labels[s / 2]; }
  // Whether state s may be entered from s - 2 (a label unlike the one before the blank).
  bool skips(int64_t s) const { return s % 2 == 1 && s >= 2 && labels[s / 2] != labels[s / 2 - 1]; }
  double at(int64_t t, int64_t s) const { return lp[t * stride + label(s)]; }
  // The states of frame t on some complete alignment: reached from the start within t + 1
  // frames and reaching the end within the frames left; the others stay -inf.
  std::pair<int64_t, int64_t> live(int64_t t) const {
    return {std::max<int64_t>(0, states - 2 * (frames - t)), std::min<int64_t>(states, 2 * (t + 1))};
  }
};

// alpha [frames][states]; returns the loss.
template <class T>
double forward_sample(const Sample<T>& x, double* alpha) {
  const int64_t S = x.states;
  if (x.frames == 0) return S == 1 ? 0.0 : std::numeric_limits<double>::infinity();
  std::fill(alpha, alpha + x.frames * S, kNegInf);
  const auto [lo0, hi0] = x.live(0);
  for (int64_t s = lo0; s < hi0; ++s) alpha[s] = x.at(0, s);
  for (int64_t t = 1; t < x.frames; ++t) {
    const double* prev = alpha + (t - 1) * S;
    double* cur = alpha + t * S;
    const auto [lo, hi] = x.live(t);
    for (int64_t s = lo; s < hi; ++s) {
      const double step = s >= 1 ? prev[s - 1] : kNegInf;
      cur[s] = (x.skips(s) ? log_add<T>(prev[s], step, prev[s - 2]) : log_add<T>(prev[s], step)) + x.at(t, s);
    }
  }
  const double* last = alpha + (x.frames - 1) * S;
  return -log_add<T>(last[S - 1], S > 1 ? last[S - 2] : kNegInf);
}

// Adds scale * d loss / d lp into grad (rows of `stride`, the sample's view like x.lp).
template <class T>
void backward_sample(const Sample<T>& x, const double* alpha, double loss, T scale, int64_t classes, double* beta,
                     T* grad) {
  const int64_t S = x.states;
  if (x.frames == 0 || scale == T(0)) return;
  if (std::isinf(loss)) {  // no alignment: the derivative is undefined, as PyTorch's NaN
    for (int64_t t = 0; t < x.frames; ++t)
      std::fill(grad + t * x.stride, grad + t * x.stride + classes, std::numeric_limits<T>::quiet_NaN());
    return;
  }
  std::fill(beta, beta + x.frames * S, kNegInf);
  double* end = beta + (x.frames - 1) * S;
  end[S - 1] = x.at(x.frames - 1, S - 1);
  if (S > 1) end[S - 2] = x.at(x.frames - 1, S - 2);
  for (int64_t t = x.frames - 2; t >= 0; --t) {
    const double* next = beta + (t + 1) * S;
    double* cur = beta + t * S;
    const auto [lo, hi] = x.live(t);
    for (int64_t s = lo; s < hi; ++s) {
      const double step = s + 1 < S ? next[s + 1] : kNegInf;
      cur[s] = (s + 2 < S && x.skips(s + 2) ? log_add<T>(next[s], step, next[s + 2]) : log_add<T>(next[s], step)) +
               x.at(t, s);
    }
  }
  // The share of the alignments through (t, s), exp(alpha + beta - lp + loss), is at most 1.
  const double weight = static_cast<double>(scale);
  for (int64_t t = 0; t < x.frames; ++t) {
    T* g = grad + t * x.stride;
    const auto [lo, hi] = x.live(t);
    for (int64_t s = lo; s < hi; ++s) {
      const double through = alpha[t * S + s] + beta[t * S + s];
      if (through == kNegInf) continue;
      g[x.label(s)] -= static_cast<T>(weight * std::exp(static_cast<T>(through - x.at(t, s) + loss)));
    }
  }
}

// The per-sample losses [N] of log_probs [T, N, C], differentiable in log_probs.
template <FloatingElement T>
Tensor<T> ctc_losses(const Tensor<T>& log_probs, const CtcTargets& targets, int64_t blank, bool zero_infinity) {
  const int64_t frames = log_probs.shape()[0], n = log_probs.shape()[1], classes = log_probs.shape()[2];
  const int64_t max_states = 2 * targets.max_length + 1;
  const Tensor<T> lpc = log_probs.detach().contiguous();
  auto alpha = std::make_shared<std::vector<double>>(static_cast<size_t>(n * frames * max_states));
  auto nll = std::make_shared<std::vector<double>>(static_cast<size_t>(n));  // before zero_infinity
  Tensor<T> losses = detail::new_tensor<T>({n}, kOp);
  T* out = losses.data_ptr();
  // The backward keeps the targets (through `sample`) after the caller's are gone.
  auto sample = [owned = std::make_shared<const CtcTargets>(targets), blank, n, classes](const T* lp, int64_t i) {
    return Sample<T>{lp + i * classes, n * classes, owned->input_length[i], 2 * owned->length[i] + 1,
                     owned->labels.data() + owned->offset[i], blank};
  };
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(frames * max_states, 1));  // samples
  detail::parallel_for(0, n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const double loss = forward_sample(sample(lpc.data_ptr(), i), alpha->data() + i * frames * max_states);
      (*nll)[static_cast<size_t>(i)] = loss;
      out[i] = zero_infinity && std::isinf(loss) ? T(0) : static_cast<T>(loss);
    }
  });
  if (autograd::needs_grad(log_probs)) {
    autograd::record(losses, kOp, {&log_probs},
                     [saved = autograd::SavedTensor<T>(log_probs), alpha, nll, zero_infinity, sample,
                      frames, n, classes, max_states, grain](const Tensor<T>& g) {
      const Tensor<T>& original = saved.get(kOp);
      const Tensor<T> lp = original.detach().contiguous();
      const Tensor<T> gc = g.detach().contiguous();
      Tensor<T> grad = zeros<T>({frames, n, classes});
      const T* pg = gc.data_ptr();
      T* pgrad = grad.data_ptr();
      detail::parallel_for(0, n, grain, [&](int64_t b, int64_t e) {
        std::vector<double> beta(static_cast<size_t>(frames * max_states));
        for (int64_t i = b; i < e; ++i) {
          const Sample<T> x = sample(lp.data_ptr(), i);
          const double loss = (*nll)[static_cast<size_t>(i)];
          if (zero_infinity && std::isinf(loss)) continue;
          backward_sample(x, alpha->data() + i * frames * max_states, loss, pg[i], classes, beta.data(),
                          pgrad + i * classes);
        }
      });
      if (autograd::grad_mode_enabled()) {
        // create_graph: the gradient is exact but not itself differentiable (PyTorch has no
        // double backward for ctc_loss either); a second backward through it says so.
        autograd::record(grad, "ctc_loss_backward", {&g, &original}, [](const Tensor<T>&) -> std::vector<Tensor<T>> {
          throw AutogradError(
              "ctc_loss: the gradient of its gradient (double backward) is not supported, as in PyTorch");
        });
      }
      return std::vector<Tensor<T>>{grad};
    });
  }
  return losses;
}

}  // namespace

template <FloatingElement T>
Tensor<T> ctc_loss(const Tensor<T>& log_probs, const Tensor<int64_t>& targets, const Tensor<int64_t>& input_lengths,
                   const Tensor<int64_t>& target_lengths, int64_t blank, Reduction reduction, bool zero_infinity) {
  detail::require(log_probs, kOp);
  if (log_probs.dim() != 3 && log_probs.dim() != 2) {
    throw ShapeError(cat_str(kOp, ": log_probs must be [T, N, C] (or [T, C] unbatched), got ", log_probs.shape()));
  }
  const bool unbatched = log_probs.dim() == 2;
  const Tensor<T> lp = unbatched ? log_probs.unsqueeze(1) : log_probs;
  if (lp.shape()[2] == 0) throw ShapeError(cat_str(kOp, ": log_probs ", log_probs.shape(), " has no classes"));
  const CtcTargets t = check_targets(lp.shape(), targets, input_lengths, target_lengths, blank, unbatched);
  Tensor<T> losses = ctc_losses(lp, t, blank, zero_infinity);
  switch (reduction) {
    case Reduction::None: return unbatched ? losses.squeeze(0) : losses;
    case Reduction::Sum: return losses.sum();
    case Reduction::Mean: {
      std::vector<T> divisors;
      for (int64_t len : t.length) divisors.push_back(static_cast<T>(std::max<int64_t>(len, 1)));
      return (losses / tensor<T>(divisors, {static_cast<int64_t>(divisors.size())})).mean();
    }
  }
  return losses;
}

template <FloatingElement T>
Tensor<T> ctc_loss(const Tensor<T>& log_probs, const Tensor<int64_t>& targets,
                   const std::vector<int64_t>& input_lengths, const std::vector<int64_t>& target_lengths, int64_t blank,
                   Reduction reduction, bool zero_infinity) {
  return ctc_loss(log_probs, targets, tensor<int64_t>(input_lengths, {static_cast<int64_t>(input_lengths.size())}),
                  tensor<int64_t>(target_lengths, {static_cast<int64_t>(target_lengths.size())}), blank, reduction,
                  zero_infinity);
}

#define EMBER_INSTANTIATE(T)                                                                                    \
  template Tensor<T> ctc_loss(const Tensor<T>&, const Tensor<int64_t>&, const Tensor<int64_t>&,                \
                              const Tensor<int64_t>&, int64_t, Reduction, bool);                               \
  template Tensor<T> ctc_loss(const Tensor<T>&, const Tensor<int64_t>&, const std::vector<int64_t>&,           \
                              const std::vector<int64_t>&, int64_t, Reduction, bool);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::nn::functional
