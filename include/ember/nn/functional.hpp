#pragma once
// nn::functional: the functional form of the layers and losses (torch.nn.functional). Losses are
// composites of differentiable primitives, so their gradients (and second derivatives) come from
// autograd.
#include <string>
#include <vector>

#include "ember/core/generator.hpp"
#include "ember/core/tensor.hpp"
#include "ember/ops/activation.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/reduction.hpp"
#include "ember/ops/sparse.hpp"

namespace ember::nn::functional {

enum class Reduction { None, Mean, Sum };

/// y = x W^T + b, with W of shape [out, in] (PyTorch's layout); b may be undefined.
template <FloatingElement T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>());

/// linear() with a sparse weight [out, in] (nn::SparseLinear): y = x W^T + b through sparse_mm,
/// differentiable in x, the weight's values and b.
template <FloatingElement T>
Tensor<T> sparse_linear(const Tensor<T>& x, const CsrMatrix<T>& weight, const Tensor<T>& bias = Tensor<T>());

/// Zeroes elements with probability p and scales the rest by 1 / (1 - p) while training.
template <FloatingElement T>
Tensor<T> dropout(const Tensor<T>& x, double p = 0.5, bool training = true, Generator* gen = nullptr);

using ember::celu;
using ember::elu;
using ember::gelu;
using ember::glu;
using ember::hardshrink;
using ember::hardsigmoid;
using ember::hardswish;
using ember::hardtanh;
using ember::leaky_relu;
using ember::log_softmax;
using ember::logsigmoid;
using ember::prelu;
using ember::relu;
using ember::relu6;
using ember::rrelu;
using ember::selu;
using ember::sigmoid;
using ember::silu;
using ember::softmax;
using ember::softmin;
using ember::softplus;
using ember::softshrink;
using ember::softsign;
using ember::tanh;
using ember::tanhshrink;
using ember::threshold;

template <FloatingElement T>
struct CrossEntropyOptions {
  Tensor<T> weight;  // per-class weights [C] (undefined: all ones)
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
  double label_smoothing = 0.0;
};

/// Cross-entropy of logits [N, C] (or [N, C, d1, ...]) against class indices [N] (or [N, d1, ...]),
/// as torch.nn.functional.cross_entropy: weight, ignore_index, label_smoothing and reduction.
/// A target outside [0, C) that is not ignore_index throws IndexError naming it and its position.
template <FloatingElement T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<int64_t>& targets,
                        const CrossEntropyOptions<T>& options = {});
/// Cross-entropy against class probabilities of the same shape as the logits.
template <FloatingElement T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<T>& target_probabilities,
                        const CrossEntropyOptions<T>& options = {});
/// Negative log-likelihood of log-probabilities [N, C] against class indices [N].
template <FloatingElement T>
Tensor<T> nll_loss(const Tensor<T>& log_probs, const Tensor<int64_t>& targets,
                   const CrossEntropyOptions<T>& options = {});

template <FloatingElement T>
Tensor<T> mse_loss(const Tensor<T>& input, const Tensor<T>& target, Reduction reduction = Reduction::Mean);
template <FloatingElement T>
Tensor<T> l1_loss(const Tensor<T>& input, const Tensor<T>& target, Reduction reduction = Reduction::Mean);
template <FloatingElement T>
Tensor<T> smooth_l1_loss(const Tensor<T>& input, const Tensor<T>& target,
                         Reduction reduction = Reduction::Mean, double beta = 1.0);
template <FloatingElement T>
Tensor<T> huber_loss(const Tensor<T>& input, const Tensor<T>& target,
                     Reduction reduction = Reduction::Mean, double delta = 1.0);
/// Binary cross-entropy of probabilities in [0, 1] (log clamped at -100, as PyTorch).
template <FloatingElement T>
Tensor<T> binary_cross_entropy(const Tensor<T>& input, const Tensor<T>& target,
                               Reduction reduction = Reduction::Mean);
/// Binary cross-entropy of logits, numerically stable; pos_weight (undefined: 1) weighs positives.
template <FloatingElement T>
Tensor<T> binary_cross_entropy_with_logits(const Tensor<T>& logits, const Tensor<T>& target,
                                           Reduction reduction = Reduction::Mean,
                                           const Tensor<T>& pos_weight = Tensor<T>());
/// KL divergence with log-probability input; reduction "batchmean" is Mean with batchmean = true.
template <FloatingElement T>
Tensor<T> kl_div(const Tensor<T>& input, const Tensor<T>& target, Reduction reduction = Reduction::Mean,
                 bool log_target = false, bool batchmean = false);

struct DistillationOptions {
  double temperature = 4.0;
  double alpha = 0.9;  // the soft targets' share
};

/// Hinton et al.'s knowledge-distillation loss: alpha * T^2 * KL(softmax(teacher / T) ||
/// softmax(student / T)) (batchmean) + (1 - alpha) * cross_entropy(student, target), for logits
/// [N, C] and class indices [N]. T^2 keeps the soft term's gradients at the hard term's scale as T
/// changes. Differentiable in both logits; run the teacher under NoGradGuard to train the student
/// alone.
template <FloatingElement T>
Tensor<T> distillation_loss(const Tensor<T>& student_logits, const Tensor<T>& teacher_logits,
                            const Tensor<int64_t>& target, const DistillationOptions& options = {});

/// Zeroes whole channels (dim 1) with probability p while training; x is [N, C, ...].
template <FloatingElement T>
Tensor<T> dropout2d(const Tensor<T>& x, double p = 0.5, bool training = true, Generator* gen = nullptr);

/// Cosine of the angle between x1 and x2 along dim (broadcasting them first), each divided by
/// its 2-norm clamped below at eps, as torch.nn.functional.cosine_similarity; dim is removed.
/// (Below eps the clamp's gradient is 0; PyTorch differentiates the norm as if unclamped.)
template <FloatingElement T>
Tensor<T> cosine_similarity(const Tensor<T>& x1, const Tensor<T>& x2, int64_t dim = 1, double eps = 1e-8);
/// The p-norm of x1 - x2 + eps over the last dim, as torch.nn.functional.pairwise_distance.
template <FloatingElement T>
Tensor<T> pairwise_distance(const Tensor<T>& x1, const Tensor<T>& x2, double p = 2.0, double eps = 1e-6,
                            bool keepdim = false);
/// x divided by its p-norm along dim, clamped below at eps (torch.nn.functional.normalize).
template <FloatingElement T>
Tensor<T> normalize(const Tensor<T>& x, double p = 2.0, int64_t dim = 1, double eps = 1e-12);

/// 1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1; rows of [N, D].
template <FloatingElement T>
Tensor<T> cosine_embedding_loss(const Tensor<T>& x1, const Tensor<T>& x2, const Tensor<T>& y,
                                double margin = 0.0, Reduction reduction = Reduction::Mean);
/// max(0, margin + d(anchor, positive) - d(anchor, negative)) with the p-norm distance d
/// (swap: also use d(positive, negative) when it is smaller).
template <FloatingElement T>
Tensor<T> triplet_margin_loss(const Tensor<T>& anchor, const Tensor<T>& positive, const Tensor<T>& negative,
                              double margin = 1.0, double p = 2.0, double eps = 1e-6, bool swap = false,
                              Reduction reduction = Reduction::Mean);

/// max(0, -y (x1 - x2) + margin): y = 1 ranks x1 above x2, y = -1 below.
template <FloatingElement T>
Tensor<T> margin_ranking_loss(const Tensor<T>& x1, const Tensor<T>& x2, const Tensor<T>& y, double margin = 0.0,
                              Reduction reduction = Reduction::Mean);
/// x where y = 1, max(0, margin - x) where y = -1 (PyTorch's: other targets take both terms).
template <FloatingElement T>
Tensor<T> hinge_embedding_loss(const Tensor<T>& x, const Tensor<T>& y, double margin = 1.0,
                               Reduction reduction = Reduction::Mean);
/// log(1 + exp(-y x)), the logistic loss of targets 1 and -1.
template <FloatingElement T>
Tensor<T> soft_margin_loss(const Tensor<T>& x, const Tensor<T>& y, Reduction reduction = Reduction::Mean);
/// Multi-label one-vs-all logistic loss of logits [N, C] against 0/1 targets [N, C], averaged over
/// the classes (weight [C] scales each class).
template <FloatingElement T>
Tensor<T> multilabel_soft_margin_loss(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& weight = Tensor<T>(),
                                      Reduction reduction = Reduction::Mean);
/// Multi-class hinge loss of scores [N, C] (or [C]) against class indices [N] (or one):
/// sum over i != y of max(0, margin - x[y] + x[i])^p / C, times weight[y]; p is 1 or 2.
template <FloatingElement T>
Tensor<T> multi_margin_loss(const Tensor<T>& x, const Tensor<int64_t>& y, int64_t p = 1, double margin = 1.0,
                            const Tensor<T>& weight = Tensor<T>(), Reduction reduction = Reduction::Mean);
/// Poisson negative log-likelihood: exp(input) - target input (log_input), or input - target
/// log(input + eps); full adds Stirling's approximation of log(target!) where target > 1.
template <FloatingElement T>
Tensor<T> poisson_nll_loss(const Tensor<T>& input, const Tensor<T>& target, bool log_input = true, bool full = false,
                           double eps = 1e-8, Reduction reduction = Reduction::Mean);
/// Gaussian negative log-likelihood 0.5 (log var + (input - target)^2 / var) (+ 0.5 log(2 pi)
/// when full). var has input's shape, or lacks its last dim, or has 1 there (one variance per
/// sample); its values are clamped below at eps without stopping their gradient, as PyTorch.
template <FloatingElement T>
Tensor<T> gaussian_nll_loss(const Tensor<T>& input, const Tensor<T>& target, const Tensor<T>& var, bool full = false,
                            double eps = 1e-6, Reduction reduction = Reduction::Mean);

/// Connectionist temporal classification loss (Graves et al. 2006), as
/// torch.nn.functional.ctc_loss: the negative log-likelihood of each target sequence summed over
/// every alignment of it to the input frames (labels repeated, separated by `blank`).
/// log_probs [T, N, C] (log_softmax over C; [T, C] unbatched), targets [N, S] padded (values past
/// a target's length ignored) or 1-D concatenated (numel = the sum of target_lengths; [S]
/// unbatched), input_lengths and target_lengths [N] with 0 <= input length <= T. Reduction Mean
/// divides each loss by its target length (at least 1), then averages; a target that no
/// alignment within its input length can produce has an infinite loss, set to 0 (with its
/// gradient) by zero_infinity. The gradient is the derivative with respect to log_probs
/// (PyTorch's adds exp(log_probs) over the input lengths, the same once through log_softmax);
/// no double backward, as in PyTorch.
template <FloatingElement T>
Tensor<T> ctc_loss(const Tensor<T>& log_probs, const Tensor<int64_t>& targets, const Tensor<int64_t>& input_lengths,
                   const Tensor<int64_t>& target_lengths, int64_t blank = 0, Reduction reduction = Reduction::Mean,
                   bool zero_infinity = false);
template <FloatingElement T>
Tensor<T> ctc_loss(const Tensor<T>& log_probs, const Tensor<int64_t>& targets,
                   const std::vector<int64_t>& input_lengths, const std::vector<int64_t>& target_lengths,
                   int64_t blank = 0, Reduction reduction = Reduction::Mean, bool zero_infinity = false);

}  // namespace ember::nn::functional
