#include "ember/nn/functional.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include "../ops/trace.hpp"
#include "../ops/common.hpp"

namespace ember::nn::functional {

using detail::cat_str;
using detail::require;

namespace {

template <FloatingElement T>
Tensor<T> reduce(const Tensor<T>& loss, Reduction r) {
  switch (r) {
    case Reduction::None: return loss;
    case Reduction::Sum: return loss.sum();
    case Reduction::Mean: return loss.mean();
  }
  return loss;
}

template <FloatingElement T>
void require_same_shape(const Tensor<T>& a, const Tensor<T>& b, const char* op) {
  if (a.shape() != b.shape()) {
    throw ShapeError(cat_str(op, ": input of shape ", a.shape(), " and target of shape ", b.shape(),
                             " differ"));
  }
}

// [N, C, d1, ...] -> [N * d1 * ..., C]: the class dim last, everything else flattened.
template <FloatingElement T>
Tensor<T> classes_last(const Tensor<T>& x) {
  if (x.dim() <= 2) return x;
  Shape perm;
  perm.push_back(0);
  for (int64_t d = 2; d < x.dim(); ++d) perm.push_back(d);
  perm.push_back(1);
  return x.permute(perm).reshape({-1, x.shape()[1]});
}

// The shape of a per-sample loss: the logits' shape without the class dim.
Shape sample_shape(const Shape& logits) {
  Shape s = logits;
  if (s.size() >= 2) s.erase(1);
  else s = Shape{};
  return s;
}

// Negative log-likelihood of rows of log-probabilities [M, C] against targets [M].
template <FloatingElement T>
Tensor<T> nll_rows(const char* op, const Tensor<T>& logp, const Tensor<int64_t>& targets,
                   const CrossEntropyOptions<T>& o, const Shape& none_shape) {
  const int64_t m = logp.shape()[0], c = logp.shape()[1];
  if (o.weight.defined() && (o.weight.dim() != 1 || o.weight.shape()[0] != c)) {
    throw ShapeError(cat_str(op, ": weight of shape ", o.weight.shape(), " for ", c, " classes"));
  }
  if (o.label_smoothing < 0.0 || o.label_smoothing > 1.0) {
    throw ValueError(cat_str(op, ": label_smoothing must be in [0, 1], got ", o.label_smoothing));
  }
  std::vector<int64_t> t = targets.contiguous().to_vector();
  std::vector<int64_t> safe(t.size());
  std::vector<uint8_t> valid(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    const bool ignored = t[i] == o.ignore_index;
    if (!ignored && (t[i] < 0 || t[i] >= c)) {
      throw IndexError(cat_str(op, ": target ", t[i], " at position ", i, " is out of range for ",
                               c, " classes (expected 0..", c - 1, " or ignore_index ",
                               o.ignore_index, ")"));
    }
    safe[i] = ignored ? 0 : t[i];
    valid[i] = ignored ? 0 : 1;
  }
  Tensor<int64_t> safe_t = tensor<int64_t>(safe, {m});
  Tensor<uint8_t> valid_t = tensor<uint8_t>(valid, {m});
  Tensor<T> zero = scalar_tensor<T>(T(0));
  Tensor<T> w = o.weight.defined() ? o.weight.index_select(0, safe_t) : ones<T>({m});
  w = where(valid_t, w, zero);
  Tensor<T> picked = logp.gather(1, safe_t.unsqueeze(1)).squeeze(1);
  Tensor<T> loss = -(picked * w);
  if (o.label_smoothing > 0.0) {
    Tensor<T> weighted = o.weight.defined() ? logp * o.weight : logp;
    Tensor<T> smooth = where(valid_t, -weighted.sum(1), zero);
    loss = loss * (1.0 - o.label_smoothing) + smooth * (o.label_smoothing / static_cast<double>(c));
  }
  switch (o.reduction) {
    case Reduction::None: return loss.reshape(none_shape);
    case Reduction::Sum: return loss.sum();
    case Reduction::Mean: return loss.sum() / w.sum();  // 0 / 0 = NaN when all are ignored, as PyTorch
  }
  return loss;
}

template <FloatingElement T>
void check_logits(const char* op, const Tensor<T>& logits) {
  require(logits, op);
  if (logits.dim() < 1) {
    throw ShapeError(cat_str(op, ": expected logits with a class dim, got shape ", logits.shape()));
  }
}

}  // namespace

namespace {

// The order of x's leading dims (the last one staying last) in which x is contiguous, when it is
// a permuted view of a dense tensor with whole rows and not contiguous as it is.
template <FloatingElement T>
std::optional<Shape> dense_leading_order(const Tensor<T>& x) {
  const int64_t d = x.dim();
  if (d < 3 || x.strides()[d - 1] != 1 || x.is_contiguous()) return std::nullopt;
  std::vector<int64_t> order(static_cast<size_t>(d - 1));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x.strides()[a] > x.strides()[b]; });
  order.push_back(d - 1);
  int64_t expected = 1;
  for (int64_t i = d - 1; i >= 0; --i) {
    const int64_t dim = order[static_cast<size_t>(i)];
    if (x.shape()[dim] != 1 && x.strides()[dim] != expected) return std::nullopt;
    expected *= x.shape()[dim];
  }
  Shape perm;
  for (int64_t dim : order) perm.push_back(dim);
  return perm;
}

// Note [Linear on permuted rows]
// Linear maps each row (the last dim) alone, so a permuted view of a dense tensor (the
// batch-first [N, L, E] view of a sequence-first [L, N, E] batch that attention takes, say) is
// mapped in its memory order and the result permuted back: no copy of the input, and the same
// values, each output row being the same sums in the same order. A bias goes into the output
// before the GEMM adds the product to it (addmm), as PyTorch's linear does, instead of a second
// pass over the output.
template <FloatingElement T>
Tensor<T> linear_rows(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias) {
  if (std::optional<Shape> order = dense_leading_order(x)) {
    Shape inverse = *order;
    for (int64_t i = 0; i < x.dim(); ++i) inverse[(*order)[i]] = i;
    return linear_rows(x.permute(*order), weight, bias).permute(inverse);
  }
  const Tensor<T> w = weight.t();
  auto product = [&](const Tensor<T>& rows) { return bias.defined() ? addmm(bias, rows, w) : mm(rows, w); };
  if (x.dim() == 1) return product(x.unsqueeze(0)).squeeze(0);
  if (x.dim() == 2) return product(x);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = weight.shape()[0];
  return product(x.reshape({-1, weight.shape()[1]})).reshape(out_shape);
}

}  // namespace

template <FloatingElement T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias) {
  detail::TracedOp traced;
  require(x, "linear");
  require(weight, "linear");
  if (weight.dim() != 2) {
    throw ShapeError(cat_str("linear: weight must be 2-D [out, in], got ", weight.shape()));
  }
  if (x.dim() == 0 || x.shape()[x.dim() - 1] != weight.shape()[1]) {
    throw ShapeError(cat_str("linear: input ", x.shape(), " has ",
                             x.dim() ? x.shape()[x.dim() - 1] : 0, " features, weight ",
                             weight.shape(), " expects ", weight.shape()[1]));
  }
  if (bias.defined() && (bias.dim() != 1 || bias.shape()[0] != weight.shape()[0])) {
    throw ShapeError(cat_str("linear: bias of shape ", bias.shape(), " for ", weight.shape()[0], " outputs"));
  }
  Tensor<T> y = linear_rows(x, weight, bias);
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->linear(x, weight, bias, y);
  }
  return y;
}

template <FloatingElement T>
Tensor<T> sparse_linear(const Tensor<T>& x, const CsrMatrix<T>& weight, const Tensor<T>& bias) {
  detail::TracedOp traced;
  require(x, "sparse_linear");
  // (sparse_mm checks the weight's arrays; rows and cols are all this needs)
  if (x.dim() == 0 || x.shape()[x.dim() - 1] != weight.cols) {
    throw ShapeError(cat_str("sparse_linear: input ", x.shape(), " has ", x.dim() ? x.shape()[x.dim() - 1] : 0,
                             " features, the sparse weight ", weight.shape(), " expects ", weight.cols));
  }
  if (bias.defined() && (bias.dim() != 1 || bias.shape()[0] != weight.rows)) {
    throw ShapeError(cat_str("sparse_linear: bias of shape ", bias.shape(), " for ", weight.rows, " outputs"));
  }
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) {
      t->unsupported("sparse_linear (nn::SparseLinear): inference plans run dense Linear layers; compile the model "
                     "before prune::sparsify, or with the dense weights");
    }
  }
  // y^T = W x^T: the kernel runs along the rows of x^T, a whole batch per nonzero.
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = weight.rows;
  const Tensor<T> x2 = x.reshape({-1, weight.cols});
  Tensor<T> y = sparse_mm(weight, x2.t()).t();
  if (bias.defined()) y = y + bias;
  return y.reshape(out_shape);
}

template <FloatingElement T>
Tensor<T> dropout(const Tensor<T>& x, double p, bool training, Generator* gen) {
  require(x, "dropout");
  if (!(p >= 0.0 && p <= 1.0)) throw ValueError(cat_str("dropout: p must be in [0, 1], got ", p));
  if (!training || p == 0.0) return x;
  if (p == 1.0) return x * 0.0;
  Tensor<T> mask = bernoulli<T>(x.shape(), 1.0 - p, gen);
  return x * (mask * (1.0 / (1.0 - p)));
}

template <FloatingElement T>
Tensor<T> nll_loss(const Tensor<T>& log_probs, const Tensor<int64_t>& targets,
                   const CrossEntropyOptions<T>& o) {
  check_logits("nll_loss", log_probs);
  require(targets, "nll_loss");
  if (o.label_smoothing != 0.0) throw ValueError("nll_loss: label_smoothing is for cross_entropy");
  Tensor<T> lp = log_probs.dim() == 1 ? log_probs.unsqueeze(0) : log_probs;
  Tensor<int64_t> tg = log_probs.dim() == 1 ? targets.reshape({1}) : targets;
  if (tg.shape() != sample_shape(lp.shape())) {
    throw ShapeError(cat_str("nll_loss: targets of shape ", targets.shape(), " for input of shape ",
                             log_probs.shape(), " (expected ", sample_shape(lp.shape()), ")"));
  }
  return nll_rows("nll_loss", classes_last(lp), tg.reshape({-1}), o,
                  log_probs.dim() == 1 ? Shape{} : sample_shape(lp.shape()));
}

template <FloatingElement T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<int64_t>& targets,
                        const CrossEntropyOptions<T>& o) {
  check_logits("cross_entropy", logits);
  require(targets, "cross_entropy");
  Tensor<T> lg = logits.dim() == 1 ? logits.unsqueeze(0) : logits;
  Tensor<int64_t> tg = logits.dim() == 1 ? targets.reshape({1}) : targets;
  if (tg.shape() != sample_shape(lg.shape())) {
    throw ShapeError(cat_str("cross_entropy: targets of shape ", targets.shape(),
                             " for logits of shape ", logits.shape(), " (expected ",
                             sample_shape(lg.shape()), ")"));
  }
  return nll_rows("cross_entropy", log_softmax(classes_last(lg), 1), tg.reshape({-1}), o,
                  logits.dim() == 1 ? Shape{} : sample_shape(lg.shape()));
}

template <FloatingElement T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<T>& probs,
                        const CrossEntropyOptions<T>& o) {
  check_logits("cross_entropy", logits);
  require(probs, "cross_entropy");
  require_same_shape(logits, probs, "cross_entropy");
  const int64_t cdim = logits.dim() == 1 ? 0 : 1;
  const int64_t c = logits.shape()[cdim];
  Tensor<T> target = probs;
  if (o.label_smoothing > 0.0) {
    target = probs * (1.0 - o.label_smoothing) + o.label_smoothing / static_cast<double>(c);
  }
  Tensor<T> term = log_softmax(logits, cdim) * target;
  if (o.weight.defined()) {
    Shape ws = Shape::filled(logits.dim(), 1);
    ws[cdim] = c;
    term = term * o.weight.reshape(ws);
  }
  Tensor<T> loss = -term.sum(cdim);
  switch (o.reduction) {
    case Reduction::None: return loss;
    case Reduction::Sum: return loss.sum();
    case Reduction::Mean: return loss.sum() / static_cast<double>(std::max<int64_t>(1, logits.numel() / c));
  }
  return loss;
}

template <FloatingElement T>
Tensor<T> mse_loss(const Tensor<T>& input, const Tensor<T>& target, Reduction r) {
  require(input, "mse_loss");
  require(target, "mse_loss");
  require_same_shape(input, target, "mse_loss");
  Tensor<T> d = input - target;
  return reduce(d * d, r);
}

template <FloatingElement T>
Tensor<T> l1_loss(const Tensor<T>& input, const Tensor<T>& target, Reduction r) {
  require(input, "l1_loss");
  require(target, "l1_loss");
  require_same_shape(input, target, "l1_loss");
  return reduce(abs(input - target), r);
}

template <FloatingElement T>
Tensor<T> smooth_l1_loss(const Tensor<T>& input, const Tensor<T>& target, Reduction r, double beta) {
  require(input, "smooth_l1_loss");
  require(target, "smooth_l1_loss");
  require_same_shape(input, target, "smooth_l1_loss");
  if (beta < 0) throw ValueError(cat_str("smooth_l1_loss: beta must be >= 0, got ", beta));
  Tensor<T> d = abs(input - target);
  if (beta == 0.0) return reduce(d, r);
  return reduce(where(lt(d, beta), d * d * (0.5 / beta), d - 0.5 * beta), r);
}

template <FloatingElement T>
Tensor<T> huber_loss(const Tensor<T>& input, const Tensor<T>& target, Reduction r, double delta) {
  require(input, "huber_loss");
  require(target, "huber_loss");
  require_same_shape(input, target, "huber_loss");
  if (delta <= 0) throw ValueError(cat_str("huber_loss: delta must be > 0, got ", delta));
  Tensor<T> d = abs(input - target);
  return reduce(where(lt(d, delta), d * d * 0.5, (d - 0.5 * delta) * delta), r);
}

template <FloatingElement T>
Tensor<T> binary_cross_entropy(const Tensor<T>& input, const Tensor<T>& target, Reduction r) {
  require(input, "binary_cross_entropy");
  require(target, "binary_cross_entropy");
  require_same_shape(input, target, "binary_cross_entropy");
  for (T v : input.to_vector()) {
    if (!(v >= T(0) && v <= T(1))) {
      throw ValueError(cat_str("binary_cross_entropy: input values must be in [0, 1], got ",
                               static_cast<double>(v)));
    }
  }
  // log clamped at -100 keeps 0 * log(0) finite, as PyTorch.
  Tensor<T> log_p = clamp(log(input), -100.0, std::numeric_limits<double>::infinity());
  Tensor<T> log_q = clamp(log(1.0 - input), -100.0, std::numeric_limits<double>::infinity());
  return reduce(-(target * log_p + (1.0 - target) * log_q), r);
}

template <FloatingElement T>
Tensor<T> binary_cross_entropy_with_logits(const Tensor<T>& x, const Tensor<T>& target, Reduction r,
                                           const Tensor<T>& pos_weight) {
  require(x, "binary_cross_entropy_with_logits");
  require(target, "binary_cross_entropy_with_logits");
  require_same_shape(x, target, "binary_cross_entropy_with_logits");
  // log(1 + exp(-|x|)) + max(-x, 0) = -log sigmoid(x), without overflow.
  Tensor<T> neg_log_sig = log1p(exp(-abs(x))) + relu(-x);
  Tensor<T> loss;
  if (pos_weight.defined()) {
    Tensor<T> coeff = (pos_weight - 1.0) * target + 1.0;
    loss = (1.0 - target) * x + coeff * neg_log_sig;
  } else {
    loss = (1.0 - target) * x + neg_log_sig;
  }
  return reduce(loss, r);
}

template <FloatingElement T>
Tensor<T> kl_div(const Tensor<T>& input, const Tensor<T>& target, Reduction r, bool log_target,
                 bool batchmean) {
  require(input, "kl_div");
  require(target, "kl_div");
  require_same_shape(input, target, "kl_div");
  Tensor<T> loss;
  if (log_target) {
    loss = exp(target) * (target - input);
  } else {
    // target * (log target - input), defined as 0 where target == 0 (xlogy).
    Tensor<T> safe = where(gt(target, 0.0), target, scalar_tensor<T>(T(1)));
    loss = where(gt(target, 0.0), target * (log(safe) - input), scalar_tensor<T>(T(0)));
  }
  if (batchmean) {
    // An empty batch gives 0 / 0 = NaN, as a mean over nothing does and as PyTorch's batchmean does.
    return loss.sum() / static_cast<double>(input.dim() ? input.shape()[0] : 1);
  }
  return reduce(loss, r);
}

template <FloatingElement T>
Tensor<T> distillation_loss(const Tensor<T>& student, const Tensor<T>& teacher, const Tensor<int64_t>& target,
                            const DistillationOptions& o) {
  require(student, "distillation_loss");
  require(teacher, "distillation_loss");
  if (student.dim() != 2 || teacher.shape() != student.shape()) {
    throw ShapeError(cat_str("distillation_loss: expected student and teacher logits of one shape [N, C], got ",
                             student.shape(), " and ", teacher.shape()));
  }
  if (!(o.temperature > 0.0) || !std::isfinite(o.temperature)) {
    throw ValueError(cat_str("distillation_loss: temperature must be positive and finite, got ", o.temperature));
  }
  if (!(o.alpha >= 0.0 && o.alpha <= 1.0)) {
    throw ValueError(cat_str("distillation_loss: alpha must be in [0, 1], got ", o.alpha));
  }
  const double inv_t = 1.0 / o.temperature;
  const Tensor<T> soft = kl_div(log_softmax(student * inv_t, 1), log_softmax(teacher * inv_t, 1), Reduction::Mean,
                                /*log_target=*/true, /*batchmean=*/true);
  const Tensor<T> hard = cross_entropy(student, target);
  return soft * (o.alpha * o.temperature * o.temperature) + hard * (1.0 - o.alpha);
}

template <FloatingElement T>
Tensor<T> dropout2d(const Tensor<T>& x, double p, bool training, Generator* gen) {
  require(x, "dropout2d");
  if (!(p >= 0.0 && p <= 1.0)) throw ValueError(cat_str("dropout2d: p must be in [0, 1], got ", p));
  if (x.dim() < 2) throw ShapeError(cat_str("dropout2d: input ", x.shape(), " needs a channel dim"));
  if (!training || p == 0.0) return x;
  if (p == 1.0) return x * 0.0;
  Shape ms = Shape::filled(x.dim(), 1);
  ms[0] = x.shape()[0];
  ms[1] = x.shape()[1];
  return x * (bernoulli<T>(ms, 1.0 - p, gen) * (1.0 / (1.0 - p)));
}

template <FloatingElement T>
Tensor<T> cosine_embedding_loss(const Tensor<T>& x1, const Tensor<T>& x2, const Tensor<T>& y, double margin,
                                Reduction r) {
  require(x1, "cosine_embedding_loss");
  require(x2, "cosine_embedding_loss");
  require(y, "cosine_embedding_loss");
  require_same_shape(x1, x2, "cosine_embedding_loss");
  if (x1.dim() != 2 || y.dim() != 1 || y.shape()[0] != x1.shape()[0]) {
    throw ShapeError(cat_str("cosine_embedding_loss: expected inputs [N, D] and targets [N], got ", x1.shape(),
                             " and ", y.shape()));
  }
  for (T v : y.to_vector()) {
    if (v != T(1) && v != T(-1)) {
      throw ValueError(cat_str("cosine_embedding_loss: targets must be 1 or -1, got ", static_cast<double>(v)));
    }
  }
  constexpr double kEps = 1e-12;  // as PyTorch
  Tensor<T> cos = (x1 * x2).sum(1) / sqrt(((x1 * x1).sum(1) + kEps) * ((x2 * x2).sum(1) + kEps));
  Tensor<T> loss = where(gt(y, 0.0), 1.0 - cos, relu(cos - margin));
  return reduce(loss, r);
}

template <FloatingElement T>
Tensor<T> cosine_similarity(const Tensor<T>& x1, const Tensor<T>& x2, int64_t dim, double eps) {
  require(x1, "cosine_similarity");
  require(x2, "cosine_similarity");
  const Shape shape = detail::broadcast_shapes(x1.shape(), x2.shape(), "cosine_similarity");
  if (shape.size() == 0) throw ShapeError("cosine_similarity: the inputs are 0-D; expected at least one dim");
  const int64_t d = detail::wrap_dim(dim, static_cast<int64_t>(shape.size()), "cosine_similarity");
  // Each side divided by its own norm first (as PyTorch since 1.12): the result stays in [-1, 1].
  auto unit = [&](const Tensor<T>& x) {
    const Tensor<T> xe = x.shape() == shape ? x : x.expand(shape);
    return xe / clamp(norm(xe, 2.0, {d}, true), eps, std::numeric_limits<double>::infinity());
  };
  return (unit(x1) * unit(x2)).sum(d);
}

template <FloatingElement T>
Tensor<T> pairwise_distance(const Tensor<T>& x1, const Tensor<T>& x2, double p, double eps, bool keepdim) {
  require(x1, "pairwise_distance");
  require(x2, "pairwise_distance");
  const Tensor<T> diff = x1 - x2 + eps;
  if (diff.dim() == 0) throw ShapeError("pairwise_distance: the inputs are 0-D; expected at least one dim");
  return norm(diff, p, {-1}, keepdim);
}

template <FloatingElement T>
Tensor<T> normalize(const Tensor<T>& x, double p, int64_t dim, double eps) {
  require(x, "normalize");
  if (x.dim() == 0) throw ShapeError("normalize: the input is 0-D; expected at least one dim");
  const int64_t d = detail::wrap_dim(dim, x.dim(), "normalize");
  return x / clamp(norm(x, p, {d}, true), eps, std::numeric_limits<double>::infinity());
}

template <FloatingElement T>
Tensor<T> triplet_margin_loss(const Tensor<T>& a, const Tensor<T>& pos, const Tensor<T>& neg, double margin,
                              double p, double eps, bool swap, Reduction r) {
  require(a, "triplet_margin_loss");
  require(pos, "triplet_margin_loss");
  require(neg, "triplet_margin_loss");
  require_same_shape(a, pos, "triplet_margin_loss");
  require_same_shape(a, neg, "triplet_margin_loss");
  auto dist = [&](const Tensor<T>& u, const Tensor<T>& v) { return pairwise_distance(u, v, p, eps); };
  Tensor<T> d_neg = dist(a, neg);
  if (swap) d_neg = minimum(d_neg, dist(pos, neg));
  return reduce(relu(dist(a, pos) - d_neg + margin), r);
}

template <FloatingElement T>
Tensor<T> margin_ranking_loss(const Tensor<T>& x1, const Tensor<T>& x2, const Tensor<T>& y, double margin,
                              Reduction r) {
  require(x1, "margin_ranking_loss");
  require(x2, "margin_ranking_loss");
  require(y, "margin_ranking_loss");
  if (x1.dim() != x2.dim() || x1.dim() != y.dim()) {
    throw ShapeError(cat_str("margin_ranking_loss: the inputs ", x1.shape(), " and ", x2.shape(), " and the target ",
                             y.shape(), " must have the same number of dims"));
  }
  return reduce(relu(-y * (x1 - x2) + margin), r);
}

template <FloatingElement T>
Tensor<T> hinge_embedding_loss(const Tensor<T>& x, const Tensor<T>& y, double margin, Reduction r) {
  require(x, "hinge_embedding_loss");
  require(y, "hinge_embedding_loss");
  const Tensor<T> margin_term = where(ne(y, 1.0), relu(margin - x), 0.0);
  const Tensor<T> self_term = where(ne(y, -1.0), x, 0.0);
  return reduce(margin_term + self_term, r);
}

template <FloatingElement T>
Tensor<T> soft_margin_loss(const Tensor<T>& x, const Tensor<T>& y, Reduction r) {
  require(x, "soft_margin_loss");
  require(y, "soft_margin_loss");
  require_same_shape(x, y, "soft_margin_loss");
  return reduce(softplus(-y * x), r);  // log(1 + exp(-y x)) without overflow
}

template <FloatingElement T>
Tensor<T> multilabel_soft_margin_loss(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& weight, Reduction r) {
  require(x, "multilabel_soft_margin_loss");
  require(y, "multilabel_soft_margin_loss");
  require_same_shape(x, y, "multilabel_soft_margin_loss");
  if (x.dim() < 1) throw ShapeError("multilabel_soft_margin_loss: the input is 0-D; expected [N, C] or [C]");
  Tensor<T> loss = -(y * logsigmoid(x) + (1.0 - y) * logsigmoid(-x));
  if (weight.defined()) loss = loss * weight;
  const int64_t classes = x.shape()[x.dim() - 1];
  return reduce(loss.sum(-1) * (1.0 / static_cast<double>(classes)), r);
}

template <FloatingElement T>
Tensor<T> multi_margin_loss(const Tensor<T>& x_in, const Tensor<int64_t>& y_in, int64_t p, double margin,
                            const Tensor<T>& weight, Reduction r) {
  require(x_in, "multi_margin_loss");
  if (!y_in.defined()) throw ValueError("multi_margin_loss: the target is undefined");
  if (p != 1 && p != 2) throw ValueError(cat_str("multi_margin_loss: p must be 1 or 2, got ", p));
  const bool single = x_in.dim() == 1;
  const Tensor<T> x = single ? x_in.unsqueeze(0) : x_in;
  const Tensor<int64_t> y = y_in.dim() == 0 ? y_in.reshape({1}) : y_in;
  if (x.dim() != 2 || y.dim() != 1 || y.shape()[0] != x.shape()[0]) {
    throw ShapeError(cat_str("multi_margin_loss: expected scores [N, C] (or [C]) and targets [N], got ", x_in.shape(),
                             " and ", y_in.shape()));
  }
  const int64_t classes = x.shape()[1];
  for (int64_t v : y.to_vector()) {
    if (v < 0 || v >= classes) {
      throw IndexError(cat_str("multi_margin_loss: target ", v, " is out of range for ", classes, " classes"));
    }
  }
  if (weight.defined() && (weight.dim() != 1 || weight.shape()[0] != classes)) {
    throw ShapeError(cat_str("multi_margin_loss: weight ", weight.shape(), " must be [", classes, "]"));
  }
  const Tensor<int64_t> column = y.unsqueeze(1);
  Tensor<T> terms = relu(margin - gather(x, 1, column) + x);
  if (p == 2) terms = terms * terms;
  if (weight.defined()) terms = terms * index_select(weight, 0, y).unsqueeze(1);
  // The target's own class is not a margin violation.
  const Tensor<uint8_t> other = ne(one_hot(y, classes), int64_t(1));
  Tensor<T> loss = where(other, terms, 0.0).sum(1) * (1.0 / static_cast<double>(classes));
  if (single && r == Reduction::None) loss = loss.squeeze(0);
  return reduce(loss, r);
}

template <FloatingElement T>
Tensor<T> poisson_nll_loss(const Tensor<T>& input, const Tensor<T>& target, bool log_input, bool full, double eps,
                           Reduction r) {
  require(input, "poisson_nll_loss");
  require(target, "poisson_nll_loss");
  Tensor<T> loss = log_input ? exp(input) - target * input : input - target * log(input + eps);
  if (full) {
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    const Tensor<T> stirling = target * log(target) - target + log(target * kTwoPi) * 0.5;
    loss = loss + where(gt(target, 1.0), stirling, 0.0);
  }
  return reduce(loss, r);
}

template <FloatingElement T>
Tensor<T> gaussian_nll_loss(const Tensor<T>& input, const Tensor<T>& target, const Tensor<T>& var_in, bool full,
                            double eps, Reduction r) {
  require(input, "gaussian_nll_loss");
  require(target, "gaussian_nll_loss");
  require(var_in, "gaussian_nll_loss");
  Tensor<T> var = var_in;
  if (var.shape() != input.shape()) {
    const Shape& in = input.shape();
    const Shape leading(std::vector<int64_t>(in.begin(), in.end() - (in.size() > 0 ? 1 : 0)));
    const Shape& vs = var.shape();
    if (in.size() > 0 && vs == leading) {
      var = var.unsqueeze(-1);
    } else if (!(in.size() > 0 && vs.size() == in.size() && vs[vs.size() - 1] == 1 &&
                 Shape(std::vector<int64_t>(vs.begin(), vs.end() - 1)) == leading)) {
      throw ShapeError(cat_str("gaussian_nll_loss: var ", vs, " must have the input's shape ", in,
                               ", lack its last dim, or have 1 there"));
    }
  }
  if (!(eps >= 0.0)) throw ValueError(cat_str("gaussian_nll_loss: eps must be >= 0, got ", eps));
  {
    NoGradGuard no_grad;
    if (lt(var, 0.0).sum().item() > 0) throw ValueError("gaussian_nll_loss: var has negative entries");
  }
  // The clamped value, with the gradient of var itself (PyTorch clamps a copy under no_grad).
  const Tensor<T> held = var.detach();
  var = var + (clamp(held, eps, std::numeric_limits<double>::infinity()) - held);
  const Tensor<T> d = input - target;
  Tensor<T> loss = (log(var) + d * d / var) * 0.5;
  if (full) loss = loss + 0.5 * std::log(6.283185307179586476925286766559);
  return reduce(loss, r);
}

#define EMBER_INSTANTIATE(T)                                                                     \
  template Tensor<T> margin_ranking_loss(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, double, Reduction); \
  template Tensor<T> hinge_embedding_loss(const Tensor<T>&, const Tensor<T>&, double, Reduction); \
  template Tensor<T> soft_margin_loss(const Tensor<T>&, const Tensor<T>&, Reduction);            \
  template Tensor<T> multilabel_soft_margin_loss(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, Reduction); \
  template Tensor<T> multi_margin_loss(const Tensor<T>&, const Tensor<int64_t>&, int64_t, double, const Tensor<T>&, \
                                       Reduction);                                               \
  template Tensor<T> poisson_nll_loss(const Tensor<T>&, const Tensor<T>&, bool, bool, double, Reduction); \
  template Tensor<T> gaussian_nll_loss(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, bool, double, Reduction); \
  template Tensor<T> dropout2d(const Tensor<T>&, double, bool, Generator*);                      \
  template Tensor<T> cosine_embedding_loss(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, \
                                           double, Reduction);                                   \
  template Tensor<T> cosine_similarity(const Tensor<T>&, const Tensor<T>&, int64_t, double);     \
  template Tensor<T> pairwise_distance(const Tensor<T>&, const Tensor<T>&, double, double, bool); \
  template Tensor<T> normalize(const Tensor<T>&, double, int64_t, double);                       \
  template Tensor<T> triplet_margin_loss(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,   \
                                         double, double, double, bool, Reduction);               \
  template Tensor<T> linear(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&);               \
  template Tensor<T> dropout(const Tensor<T>&, double, bool, Generator*);                        \
  template Tensor<T> cross_entropy(const Tensor<T>&, const Tensor<int64_t>&,                     \
                                   const CrossEntropyOptions<T>&);                               \
  template Tensor<T> cross_entropy(const Tensor<T>&, const Tensor<T>&, const CrossEntropyOptions<T>&); \
  template Tensor<T> nll_loss(const Tensor<T>&, const Tensor<int64_t>&, const CrossEntropyOptions<T>&); \
  template Tensor<T> mse_loss(const Tensor<T>&, const Tensor<T>&, Reduction);                    \
  template Tensor<T> l1_loss(const Tensor<T>&, const Tensor<T>&, Reduction);                     \
  template Tensor<T> smooth_l1_loss(const Tensor<T>&, const Tensor<T>&, Reduction, double);      \
  template Tensor<T> huber_loss(const Tensor<T>&, const Tensor<T>&, Reduction, double);          \
  template Tensor<T> binary_cross_entropy(const Tensor<T>&, const Tensor<T>&, Reduction);        \
  template Tensor<T> binary_cross_entropy_with_logits(const Tensor<T>&, const Tensor<T>&,        \
                                                      Reduction, const Tensor<T>&);              \
  template Tensor<T> kl_div(const Tensor<T>&, const Tensor<T>&, Reduction, bool, bool);                \
  template Tensor<T> sparse_linear(const Tensor<T>&, const CsrMatrix<T>&, const Tensor<T>&);                 \
  template Tensor<T> distillation_loss(const Tensor<T>&, const Tensor<T>&, const Tensor<int64_t>&,        \
                                       const DistillationOptions&);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::nn::functional
