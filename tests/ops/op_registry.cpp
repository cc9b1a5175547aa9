// The op registry's cases (see op_registry.hpp), one function per family so that the compiler
// handles them in pieces.
#include "ops/op_registry.hpp"

#include <limits>
#include <sstream>

namespace ember::testing {

// In an expression, x[i] is input i and T its element type.
#define EMBER_CASE_OF(name, tolerance, shapes, lo, hi, gg, ...)                    \
  make_case(name, tolerance, shapes, lo, hi, gg, [](const auto& x) {               \
    using T = typename std::decay_t<decltype(x[0])>::value_type;                   \
    (void)sizeof(T);                                                               \
    return __VA_ARGS__;                                                            \
  })
// The cases written here are of ops outside the op table: they accumulate (Tolerance).
#define EMBER_OP(name, shapes, lo, hi, gg, ...) \
  EMBER_CASE_OF(name, Tolerance::Accumulated, shapes, lo, hi, gg, __VA_ARGS__)

namespace {

namespace F = nn::functional;
using R = F::Reduction;
const S m34{{3, 4}};

// The op table's cases, in its order: elementwise ops and reductions.
void add_table_cases(std::vector<OpCase>& c) {
#define EMBER_UNARY(name, Kernel, Accuracy, Saves, lo, hi, torch, ...) \
  c.push_back(EMBER_CASE_OF(#name, Tolerance::Elementwise, m34, lo, hi, true, name(x[0])));
#define EMBER_UNARY_P1(name, Kernel, Accuracy, Saves, lo, hi, torch, a, a_default, a_test, ...) \
  c.push_back(EMBER_CASE_OF(#name, Tolerance::Elementwise, m34, lo, hi, true, name(x[0], a_test)));
#define EMBER_UNARY_P2(name, Kernel, Accuracy, Saves, lo, hi, torch, a, a_default, a_test, b, \
                       b_default, b_test, ...)                                                \
  c.push_back(EMBER_CASE_OF(#name, Tolerance::Elementwise, m34, lo, hi, true,                 \
                            name(x[0], a_test, b_test)));
#define EMBER_CASE(name, tolerance, shapes, lo, hi, torch, ...) \
  c.push_back(EMBER_CASE_OF(#name, Tolerance::tolerance, parse_shapes(shapes), lo, hi, true, __VA_ARGS__));
#include "ember/ops/op_table.def"
}

void add_cases_3(std::vector<OpCase>& c) {
  // ---- matrix products
  c.push_back(EMBER_OP("matmul_2d", (S{{3, 4}, {4, 5}}), -1, 1, true, matmul(x[0], x[1])));
  c.push_back(EMBER_OP("matmul_1d1d", (S{{4}, {4}}), -1, 1, true, matmul(x[0], x[1])));
  c.push_back(EMBER_OP("matmul_2d1d", (S{{3, 4}, {4}}), -1, 1, true, matmul(x[0], x[1])));
  c.push_back(EMBER_OP("matmul_1d2d", (S{{4}, {4, 5}}), -1, 1, true, matmul(x[0], x[1])));
  c.push_back(EMBER_OP("matmul_3d2d", (S{{2, 3, 4}, {4, 5}}), -1, 1, true, matmul(x[0], x[1])));
  c.push_back(EMBER_OP("matmul_batched", (S{{2, 1, 3, 4}, {3, 4, 2}}), -1, 1, true,
                       matmul(x[0], x[1])));
  c.push_back(EMBER_OP("matmul_1d3d", (S{{4}, {2, 4, 3}}), -1, 1, true, matmul(x[0], x[1])));
  c.push_back(EMBER_OP("matmul_transposed", (S{{4, 3}, {5, 4}}), -1, 1, true,
                       matmul(x[0].t(), x[1].t())));
  c.push_back(EMBER_OP("mm", (S{{3, 4}, {4, 2}}), -1, 1, true, mm(x[0], x[1])));
  c.push_back(EMBER_OP("addmm", (S{{5}, {3, 4}, {4, 5}}), -1, 1, true, addmm(x[0], x[1], x[2])));
  c.push_back(EMBER_OP("addmm_scaled", (S{{3, 5}, {3, 4}, {4, 5}}), -1, 1, true,
                       addmm(x[0], x[1], x[2], 0.5, -2.0)));
  c.push_back(EMBER_OP("addmm_column_transposed", (S{{3, 1}, {4, 3}, {5, 4}}), -1, 1, true,
                       addmm(x[0], x[1].t(), x[2].t(), -1.5)));
  c.push_back(EMBER_OP("bmm", (S{{2, 3, 4}, {2, 4, 5}}), -1, 1, true, bmm(x[0], x[1])));
  c.push_back(EMBER_OP("outer", (S{{3}, {4}}), -1, 1, true, outer(x[0], x[1])));
  c.push_back(EMBER_OP("dot", (S{{5}, {5}}), -1, 1, true, dot(x[0], x[1])));
}

void add_cases_4(std::vector<OpCase>& c) {
  // ---- views and movement
  c.push_back(EMBER_OP("reshape", m34, -1, 1, true, x[0].reshape({2, 6}) * 2.0));
  c.push_back(EMBER_OP("view_infer", m34, -1, 1, true, x[0].contiguous().view({-1, 2}) * 2.0));
  c.push_back(EMBER_OP("flatten", (S{{2, 3, 4}}), -1, 1, true, x[0].flatten(1) * 2.0));
  c.push_back(EMBER_OP("squeeze_unsqueeze", (S{{3, 1, 4}}), -1, 1, true,
                       x[0].squeeze(1).unsqueeze(0) * 2.0));
  c.push_back(EMBER_OP("permute", (S{{2, 3, 4}}), -1, 1, true, x[0].permute({2, 0, 1}) * 2.0));
  c.push_back(EMBER_OP("transpose", (S{{2, 3, 4}}), -1, 1, true, x[0].transpose(0, 2) * 2.0));
  c.push_back(EMBER_OP("t", m34, -1, 1, true, x[0].t() * 2.0));
  c.push_back(EMBER_OP("slice_step", (S{{3, 6}}), -1, 1, true, x[0].slice(1, 1, 6, 2) * 2.0));
  c.push_back(EMBER_OP("slice_negative", (S{{5, 4}}), -1, 1, true, x[0].slice(0, -3, 5) * 2.0));
  c.push_back(EMBER_OP("narrow", (S{{5, 4}}), -1, 1, true, x[0].narrow(0, 1, 3) * 2.0));
  c.push_back(EMBER_OP("select", (S{{3, 4, 2}}), -1, 1, true, x[0].select(1, -1) * 2.0));
  c.push_back(EMBER_OP("expand", (S{{3, 1}}), -1, 1, true, x[0].expand({2, 3, 4}) * 2.0));
  c.push_back(EMBER_OP("index_select", (S{{4, 3}}), -1, 1, true,
                       x[0].index_select(0, tensor<int64_t>({2, 0, 2, 3}, {4})) * 2.0));
  c.push_back(EMBER_OP("gather", (S{{3, 4}}), -1, 1, true,
                       x[0].gather(1, tensor<int64_t>({0, 3, 3, 1, 2, 0}, {3, 2})) * 2.0));
  c.push_back(EMBER_OP("scatter_add", (S{{3, 4}, {2, 4}}), -1, 1, true,
                       scatter_add(x[0], 0, tensor<int64_t>({0, 1, 2, 0, 2, 2, 0, 1}, {2, 4}),
                                   x[1])));
  c.push_back(EMBER_OP("cat", (S{{2, 3}, {4, 3}, {1, 3}}), -1, 1, true,
                       cat(std::vector<std::decay_t<decltype(x[0])>>{x[0], x[1], x[2]}, 0) * 2.0));
  c.push_back(EMBER_OP("stack", (S{{2, 3}, {2, 3}}), -1, 1, true,
                       stack(std::vector<std::decay_t<decltype(x[0])>>{x[0], x[1]}, 1) * 2.0));
  c.push_back(EMBER_OP("split", (S{{5, 2}}), -1, 1, true, [&] {
    auto p = split(x[0], {2, 3}, 0);
    return cat(std::vector<std::decay_t<decltype(x[0])>>{p[0] * 2.0, p[1] * 3.0}, 0);
  }()));
  c.push_back(EMBER_OP("chunk", (S{{2, 5}}), -1, 1, true, [&] {
    auto p = x[0].chunk(2, 1);
    return cat(std::vector<std::decay_t<decltype(x[0])>>{p[0] * 2.0, p[1] * 3.0}, 1);
  }()));
  c.push_back(EMBER_OP("pad_constant", (S{{2, 3}}), -1, 1, true, pad(x[0], {1, 2, 0, 1}) * 2.0));
  c.push_back(EMBER_OP("pad_reflect", (S{{2, 4}}), -1, 1, true,
                       pad(x[0], {2, 1}, PadMode::Reflect) * 2.0));
  c.push_back(EMBER_OP("pad_replicate", (S{{2, 3}}), -1, 1, true,
                       pad(x[0], {2, 1, 1, 0}, PadMode::Replicate) * 2.0));
  c.push_back(EMBER_OP("pad_negative", (S{{3, 5}}), -1, 1, true, pad(x[0], {-1, 2, 1, -1}) * 2.0));
  c.push_back(EMBER_OP("contiguous", m34, -1, 1, true, x[0].t().contiguous() * 2.0));
  c.push_back(EMBER_OP("clone", m34, -1, 1, true, x[0].clone() * 2.0));
}

void add_cases_5(std::vector<OpCase>& c) {
  // ---- composites
  c.push_back(EMBER_OP("mlp", (S{{5, 4}, {4, 3}, {3}}), -1, 1, true,
                       tanh(matmul(x[0], x[1]) + x[2]).sum(1)));
  c.push_back(EMBER_OP("cross_entropy", (S{{4, 5}}), -2, 2, true, [&] {
    auto target = tensor<T>({0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0}, {4, 5});
    return -(log_softmax(x[0], 1) * target).sum(1).mean();
  }()));
  c.push_back(EMBER_OP("layer_norm", (S{{3, 6}}), -2, 2, true, [&] {
    auto mu = x[0].mean(-1, true);
    auto v = var(x[0], {-1}, true, 0);
    return (x[0] - mu) / sqrt(v + 1e-5);
  }()));
}

void add_cases_6(std::vector<OpCase>& c) {
  // ---- nn::functional layers and losses
  namespace F = nn::functional;
  using R = F::Reduction;
  c.push_back(EMBER_OP("linear", (S{{5, 4}, {3, 4}, {3}}), -1, 1, true, F::linear(x[0], x[1], x[2])));
  c.push_back(EMBER_OP("linear_nobias", (S{{2, 3, 4}, {5, 4}}), -1, 1, true, F::linear(x[0], x[1])));
  // Sequence-first input seen batch-first (Note [Linear on permuted rows]).
  c.push_back(EMBER_OP("linear_permuted", (S{{4, 2, 3}, {5, 3}, {5}}), -1, 1, true,
                       F::linear(x[0].transpose(0, 1), x[1], x[2])));
  c.push_back(EMBER_OP("linear_permuted_4d", (S{{2, 3, 4, 3}, {2, 3}}), -1, 1, true,
                       F::linear(x[0].permute({2, 0, 1, 3}), x[1])));
  // Sparse weights: the entries of x[0] (x[1] for the linear) above 0.4 in magnitude, the rest zero.
  c.push_back(EMBER_OP("sparse_mm", (S{{4, 6}, {6, 3}}), -1, 1, true,
                       sparse_mm(to_csr(where(gt(abs(x[0]), 0.4), x[0], 0.0)), x[1])));
  c.push_back(EMBER_OP("sparse_mm_transposed", (S{{4, 6}, {4, 2}}), -1, 1, true,
                       sparse_mm(to_csr(where(gt(abs(x[0]), 0.4), x[0], 0.0)).t(), x[1])));
  c.push_back(EMBER_OP("sparse_linear", (S{{2, 3, 6}, {5, 6}, {5}}), -1, 1, true,
                       F::sparse_linear(x[0], to_csr(where(gt(abs(x[1]), 0.4), x[1], 0.0)), x[2])));
  c.push_back(EMBER_OP("sparse_to_dense", (S{{3, 5}}), -1, 1, true,
                       to_csr(where(gt(abs(x[0]), 0.4), x[0], 0.0)).to_dense() * 3.0));
  c.push_back(EMBER_OP("cross_entropy_indices", (S{{4, 5}}), -2, 2, true,
                       F::cross_entropy(x[0], tensor<int64_t>({1, 0, 4, 2}, {4}))));
  c.push_back(EMBER_OP("cross_entropy_weight_ignore_smooth", (S{{5, 4}}), -2, 2, true,
                       F::cross_entropy(x[0], tensor<int64_t>({3, -100, 0, 1, 3}, {5}),
                                        {.weight = tensor<T>({0.5, 1, 2, 1.5}, {4}),
                                         .ignore_index = -100,
                                         .label_smoothing = 0.1})));
  c.push_back(EMBER_OP("cross_entropy_3d_sum", (S{{2, 3, 4}}), -2, 2, true,
                       F::cross_entropy(x[0], tensor<int64_t>({0, 2, 1, 1, 2, 0, 0, 1}, {2, 4}),
                                        {.reduction = R::Sum})));
  c.push_back(EMBER_OP("cross_entropy_none", (S{{3, 4}}), -2, 2, true,
                       F::cross_entropy(x[0], tensor<int64_t>({3, 0, 1}, {3}), {.reduction = R::None})));
  c.push_back(EMBER_OP("cross_entropy_probs", (S{{3, 4}, {3, 4}}), -2, 2, true,
                       F::cross_entropy(x[0], softmax(x[1], 1), {.label_smoothing = 0.2})));
  c.push_back(EMBER_OP("nll_loss", (S{{4, 3}}), -2, 2, true,
                       F::nll_loss(log_softmax(x[0], 1), tensor<int64_t>({2, 0, 1, 2}, {4}),
                                   {.weight = tensor<T>({1, 2, 0.5}, {3})})));
  c.push_back(EMBER_OP("mse_loss", (S{{3, 4}, {3, 4}}), -1, 1, true, F::mse_loss(x[0], x[1])));
  c.push_back(EMBER_OP("l1_loss_sum", (S{{3, 4}, {3, 4}}), -1, 1, true,
                       F::l1_loss(x[0], x[1], R::Sum)));
  c.push_back(EMBER_OP("smooth_l1_loss", (S{{3, 4}, {3, 4}}), -1, 1, true,
                       F::smooth_l1_loss(x[0], x[1], R::Mean, 0.5)));
  c.push_back(EMBER_OP("huber_loss", (S{{3, 4}, {3, 4}}), -1, 1, true,
                       F::huber_loss(x[0], x[1], R::Mean, 0.7)));
  c.push_back(EMBER_OP("binary_cross_entropy", (S{{3, 4}, {3, 4}}), -2, 2, true,
                       F::binary_cross_entropy(sigmoid(x[0]), (x[1] + 2.0) / 4.0)));
  c.push_back(EMBER_OP("bce_with_logits", (S{{3, 4}, {3, 4}}), -3, 3, true,
                       F::binary_cross_entropy_with_logits(x[0], (x[1] + 3.0) / 6.0, R::Mean,
                                                           tensor<T>({0.5, 1, 2, 3}, {4}))));
  c.push_back(EMBER_OP("kl_div", (S{{3, 4}, {3, 4}}), -2, 2, true,
                       F::kl_div(log_softmax(x[0], 1), softmax(x[1], 1))));
  c.push_back(EMBER_OP("kl_div_log_target_batchmean", (S{{3, 4}, {3, 4}}), -2, 2, true,
                       F::kl_div(log_softmax(x[0], 1), log_softmax(x[1], 1), R::Mean, true, true)));
  c.push_back(EMBER_OP("distillation_loss", (S{{3, 4}, {3, 4}}), -2, 2, true,
                       F::distillation_loss(x[0], x[1], tensor<int64_t>({1, 0, 3}, {3}),
                                            {.temperature = 2.0, .alpha = 0.7})));
  c.push_back(EMBER_OP("cosine_embedding_loss", (S{{4, 3}, {4, 3}}), -1, 1, true,
                       F::cosine_embedding_loss(x[0], x[1], tensor<T>({1, -1, -1, 1}, {4}), 0.1)));
  c.push_back(EMBER_OP("triplet_margin_loss", (S{{4, 3}, {4, 3}, {4, 3}}), -1, 1, true,
                       F::triplet_margin_loss(x[0], x[1], x[2], 0.5)));
  c.push_back(EMBER_OP("triplet_margin_loss_swap_p1", (S{{4, 3}, {4, 3}, {4, 3}}), -1, 1, true,
                       F::triplet_margin_loss(x[0], x[1], x[2], 1.0, 1.0, 1e-6, true, R::Sum)));
  c.push_back(EMBER_OP("margin_ranking_loss", (S{{6}, {6}}), -1, 1, true,
                       F::margin_ranking_loss(x[0], x[1], tensor<T>({1, -1, 1, 1, -1, -1}, {6}), 0.2)));
  c.push_back(EMBER_OP("hinge_embedding_loss", (S{{2, 3}}), -2, 2, true,
                       F::hinge_embedding_loss(x[0], tensor<T>({1, -1, -1, 1, -1, 1}, {2, 3}), 0.8, R::Sum)));
  c.push_back(EMBER_OP("soft_margin_loss", (S{{2, 3}}), -2, 2, true,
                       F::soft_margin_loss(x[0], tensor<T>({1, -1, -1, 1, -1, 1}, {2, 3}))));
  c.push_back(EMBER_OP("multilabel_soft_margin_loss", (S{{3, 4}, {4}}), -2, 2, true,
                       F::multilabel_soft_margin_loss(x[0], tensor<T>({1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0}, {3, 4}),
                                                      x[1])));
  c.push_back(EMBER_OP("multi_margin_loss", (S{{3, 4}}), -1, 1, true,
                       F::multi_margin_loss(x[0], tensor<int64_t>({2, 0, 3}, {3}))));
  c.push_back(EMBER_OP("multi_margin_loss_p2_weight", (S{{3, 4}}), -1, 1, true,
                       F::multi_margin_loss(x[0], tensor<int64_t>({1, 3, 0}, {3}), 2, 0.5,
                                            tensor<T>({0.5, 1.0, 2.0, 1.5}, {4}), R::Sum)));
  c.push_back(EMBER_OP("poisson_nll_loss", (S{{2, 3}, {2, 3}}), -1, 1, true,
                       F::poisson_nll_loss(x[0], abs(x[1]) * 3.0)));
  c.push_back(EMBER_OP("poisson_nll_loss_full_linear", (S{{2, 3}, {2, 3}}), -1, 1, true,
                       F::poisson_nll_loss(abs(x[0]) + 0.5, abs(x[1]) * 3.0, false, true, 1e-8, R::Sum)));
  c.push_back(EMBER_OP("gaussian_nll_loss", (S{{3, 2}, {3, 2}, {3}}), -1, 1, true,
                       F::gaussian_nll_loss(x[0], x[1], abs(x[2]) + 0.1)));
  c.push_back(EMBER_OP("gaussian_nll_loss_full_same_shape", (S{{3, 2}, {3, 2}, {3, 2}}), -1, 1, true,
                       F::gaussian_nll_loss(x[0], x[1], abs(x[2]) + 0.1, true, 1e-6, R::None)));
  // ctc_loss: no double backward (as in PyTorch). Through log_softmax, as PyTorch's gradient is
  // that of log_softmax's input (Note [CTC forward-backward] in src/nn/ctc.cpp).
  c.push_back(EMBER_OP("ctc_loss", (S{{6, 2, 4}}), -2, 2, false,
                       F::ctc_loss(log_softmax(x[0], 2), tensor<int64_t>({1, 2, 2, 3, 1, 0}, {2, 3}),
                                   std::vector<int64_t>{6, 5}, std::vector<int64_t>{3, 2})));
  c.push_back(EMBER_OP("ctc_loss_concatenated_blank_sum", (S{{5, 3, 5}}), -2, 2, false,
                       F::ctc_loss(log_softmax(x[0], 2), tensor<int64_t>({1, 1, 2, 4, 0}, {5}),
                                   std::vector<int64_t>{5, 4, 3}, std::vector<int64_t>{2, 1, 2}, 3, R::Sum)));
  c.push_back(EMBER_OP("ctc_loss_zero_infinity_empty_target", (S{{4, 3, 3}}), -2, 2, false,
                       F::ctc_loss(log_softmax(x[0], 2), tensor<int64_t>({1, 1, 1, 2, 0, 0, 0, 0, 0}, {3, 3}),
                                   std::vector<int64_t>{4, 3, 2}, std::vector<int64_t>{3, 1, 0}, 0, R::None, true)));
  c.push_back(EMBER_OP("ctc_loss_unbatched", (S{{5, 4}}), -2, 2, false,
                       F::ctc_loss(log_softmax(x[0], 1), tensor<int64_t>({1, 2, 3}, {3}), scalar_tensor<int64_t>(5),
                                   scalar_tensor<int64_t>(3))));
}

void add_cases_7(std::vector<OpCase>& c) {
  // ---- convolutions
  c.push_back(EMBER_OP("conv2d", (S{{2, 3, 5, 5}, {4, 3, 3, 3}, {4}}), -1, 1, true,
                       F::conv2d(x[0], x[1], x[2])));
  c.push_back(EMBER_OP("conv2d_stride_pad_dilation", (S{{1, 2, 7, 6}, {3, 2, 3, 2}}), -1, 1, true,
                       F::conv2d(x[0], x[1], {}, {.stride = {2, 1}, .padding = {1, 2}, .dilation = {2, 1}})));
  c.push_back(EMBER_OP("conv2d_groups", (S{{1, 4, 5, 5}, {6, 2, 3, 3}}), -1, 1, true,
                       F::conv2d(x[0], x[1], {}, {.padding = 1, .groups = 2})));
  c.push_back(EMBER_OP("conv2d_depthwise", (S{{2, 3, 6, 7}, {3, 1, 3, 3}, {3}}), -1, 1, true,
                       F::conv2d(x[0], x[1], x[2], {.padding = 1, .groups = 3})));
  c.push_back(EMBER_OP("conv2d_depthwise_stride_dilation", (S{{1, 2, 9, 8}, {4, 1, 3, 2}}), -1, 1, true,
                       F::conv2d(x[0], x[1], {},
                                 {.stride = {2, 3}, .padding = {2, 1}, .dilation = {1, 2}, .groups = 2})));
  c.push_back(EMBER_OP("conv2d_same_even", (S{{1, 2, 5, 5}, {2, 2, 4, 4}}), -1, 1, true,
                       F::conv2d(x[0], x[1], {}, {.padding = "same"})));
  c.push_back(EMBER_OP("conv2d_pointwise", (S{{2, 3, 4, 4}, {5, 3, 1, 1}, {5}}), -1, 1, true,
                       F::conv2d(x[0], x[1], x[2])));
  c.push_back(EMBER_OP("conv1d", (S{{2, 3, 8}, {4, 3, 3}, {4}}), -1, 1, true,
                       F::conv1d(x[0], x[1], x[2], {.stride = 2, .padding = 1})));
  c.push_back(EMBER_OP("conv_transpose2d", (S{{1, 3, 4, 4}, {3, 2, 3, 3}, {2}}), -1, 1, true,
                       F::conv_transpose2d(x[0], x[1], x[2], {.stride = 2, .padding = 1, .output_padding = 1})));
  c.push_back(EMBER_OP("conv_transpose2d_groups", (S{{1, 4, 3, 3}, {4, 1, 2, 2}}), -1, 1, true,
                       F::conv_transpose2d(x[0], x[1], {}, {.stride = 2, .groups = 2})));
  c.push_back(EMBER_OP("conv_transpose2d_crop", (S{{1, 2, 3, 3}, {2, 2, 3, 3}}), -1, 1, true,
                       F::conv_transpose2d(x[0], x[1], {}, {.stride = 2, .output_padding = 1})));
}

void add_cases_8(std::vector<OpCase>& c) {
  // ---- pooling and normalisation
  c.push_back(EMBER_OP("max_pool2d", (S{{2, 2, 5, 5}}), -1, 1, true, F::max_pool2d(x[0], 2)));
  c.push_back(EMBER_OP("max_pool2d_pad_stride_ceil", (S{{1, 2, 6, 7}}), -1, 1, true,
                       F::max_pool2d(x[0], 3, {.stride = 2, .padding = 1, .ceil_mode = true})));
  c.push_back(EMBER_OP("max_pool2d_dilation", (S{{1, 1, 7, 7}}), -1, 1, true,
                       F::max_pool2d(x[0], 2, {.stride = 1, .dilation = 2})));
  c.push_back(EMBER_OP("max_pool1d", (S{{2, 3, 9}}), -1, 1, true, F::max_pool1d(x[0], 3, {.stride = 2})));
  c.push_back(EMBER_OP("avg_pool2d", (S{{2, 2, 6, 6}}), -1, 1, true, F::avg_pool2d(x[0], 2)));
  c.push_back(EMBER_OP("avg_pool2d_exclude_pad_ceil", (S{{1, 2, 5, 6}}), -1, 1, true,
                       F::avg_pool2d(x[0], 3, {.stride = 2, .padding = 1, .ceil_mode = true,
                                               .count_include_pad = false})));
  c.push_back(EMBER_OP("avg_pool2d_include_pad", (S{{1, 2, 5, 5}}), -1, 1, true,
                       F::avg_pool2d(x[0], 3, {.stride = 2, .padding = 1})));
  c.push_back(EMBER_OP("adaptive_avg_pool2d", (S{{2, 3, 7, 5}}), -1, 1, true,
                       F::adaptive_avg_pool2d(x[0], {3, 2})));
  c.push_back(EMBER_OP("adaptive_avg_pool2d_global", (S{{2, 3, 4, 4}}), -1, 1, true,
                       F::adaptive_avg_pool2d(x[0], 1)));
  // Overlapping bins (5 -> 3 rows, 7 -> 4 columns); bins that tile the plane (max_pool2d's path).
  c.push_back(EMBER_OP("adaptive_max_pool2d", (S{{2, 3, 5, 7}}), -1, 1, true, F::adaptive_max_pool2d(x[0], {3, 4})));
  c.push_back(EMBER_OP("adaptive_max_pool2d_tiles", (S{{2, 2, 4, 6}}), -1, 1, true,
                       F::adaptive_max_pool2d(x[0], {2, 3})));
  c.push_back(EMBER_OP("adaptive_max_pool1d", (S{{2, 3, 7}}), -1, 1, true, F::adaptive_max_pool1d(x[0], 3)));
  c.push_back(EMBER_OP("flip", (S{{3, 4, 5}}), -1, 1, true, flip(x[0], {0, -1})));
  c.push_back(EMBER_OP("repeat", (S{{2, 3}}), -1, 1, true, repeat(x[0], {2, 1, 3})));
  c.push_back(EMBER_OP("tril", (S{{4, 5}}), -1, 1, true, tril(x[0], -1)));
  c.push_back(EMBER_OP("triu_batched", (S{{2, 4, 5}}), -1, 1, true, triu(x[0], 1)));
  c.push_back(EMBER_OP("cumsum", (S{{3, 4, 5}}), -1, 1, true, cumsum(x[0], 1)));
  c.push_back(EMBER_OP("cumsum_last", (S{{2, 7}}), -1, 1, true, cumsum(x[0], -1)));
  c.push_back(EMBER_OP("sort", (S{{3, 4, 5}}), -1, 1, true, sort(x[0], 1).values));
  c.push_back(EMBER_OP("sort_descending_last", (S{{4, 6}}), -1, 1, true, sort(x[0], -1, true).values));
  c.push_back(EMBER_OP("hardtanh", m34, -2, 2, true, hardtanh(x[0], -0.5, 1.25)));
  c.push_back(EMBER_OP("relu6", m34, -3, 9, true, relu6(x[0])));
  c.push_back(EMBER_OP("hardsigmoid", m34, -5, 5, true, hardsigmoid(x[0])));
  c.back().float64_rtol = 1e-7;  // PyTorch's double gradient is 1 + 3e-8 times the exact one
  c.push_back(EMBER_OP("hardswish", m34, -5, 5, true, hardswish(x[0])));
  c.push_back(EMBER_OP("selu", m34, -2, 2, true, selu(x[0])));
  c.push_back(EMBER_OP("celu", m34, -2, 2, true, celu(x[0], 0.5)));
  c.push_back(EMBER_OP("logsigmoid", m34, -4, 4, true, logsigmoid(x[0])));
  c.push_back(EMBER_OP("softsign", m34, -3, 3, true, softsign(x[0])));
  c.push_back(EMBER_OP("softshrink", m34, -2, 2, true, softshrink(x[0], 0.7)));
  c.push_back(EMBER_OP("hardshrink", m34, -2, 2, true, hardshrink(x[0], 0.7)));
  c.push_back(EMBER_OP("tanhshrink", m34, -2, 2, true, tanhshrink(x[0])));
  c.push_back(EMBER_OP("threshold", m34, -2, 2, true, threshold(x[0], 0.3, -1.5)));
  c.push_back(EMBER_OP("softmin", (S{{3, 4, 5}}), -2, 2, true, softmin(x[0], 1)));
  c.push_back(EMBER_OP("rrelu_eval", m34, -2, 2, true, rrelu(x[0], 0.1, 0.3)));
  c.push_back(EMBER_OP("prelu_per_channel", (S{{2, 3, 4}, {3}}), -1, 1, true, prelu(x[0], x[1])));
  c.push_back(EMBER_OP("prelu_shared", (S{{2, 5}, {1}}), -1, 1, true, prelu(x[0], x[1])));
  c.push_back(EMBER_OP("glu", (S{{3, 4, 5}}), -2, 2, true, glu(x[0], 1)));
  c.push_back(EMBER_OP("cosine_similarity", (S{{4, 6}, {4, 6}}), -1, 1, true, F::cosine_similarity(x[0], x[1])));
  c.push_back(EMBER_OP("cosine_similarity_broadcast_last", (S{{3, 1, 5}, {4, 5}}), -1, 1, true,
                       F::cosine_similarity(x[0], x[1], -1)));
  c.push_back(EMBER_OP("pairwise_distance", (S{{4, 6}, {4, 6}}), -1, 1, true, F::pairwise_distance(x[0], x[1])));
  c.push_back(EMBER_OP("pairwise_distance_p1_keepdim", (S{{3, 5}, {5}}), -1, 1, true,
                       F::pairwise_distance(x[0], x[1], 1.0, 1e-6, true)));
  // cdist: from the differences (at most 25 rows a side), through one product (27 rows), batched.
  c.push_back(EMBER_OP("cdist", (S{{4, 3}, {5, 3}}), -1, 1, true, cdist(x[0], x[1])));
  c.push_back(EMBER_OP("cdist_mm", (S{{27, 3}, {4, 3}}), -1, 1, true, cdist(x[0], x[1])));
  c.push_back(EMBER_OP("cdist_p1_batch_broadcast", (S{{2, 3, 4}, {5, 4}}), -1, 1, true, cdist(x[0], x[1], 1.0)));
  c.push_back(EMBER_OP("cdist_p3", (S{{3, 4}, {2, 4}}), -1, 1, true, cdist(x[0], x[1], 3.0)));
  c.push_back(EMBER_OP("cdist_p0_5", (S{{3, 4}, {2, 4}}), -1, 1, true, cdist(x[0], x[1], 0.5)));
  c.push_back(EMBER_OP("cdist_pinf", (S{{2, 3, 4}, {2, 2, 4}}), -1, 1, true,
                       cdist(x[0], x[1], std::numeric_limits<double>::infinity())));
  c.push_back(EMBER_OP("normalize", (S{{3, 4, 2}}), -1, 1, true, F::normalize(x[0])));
  c.push_back(EMBER_OP("normalize_p1_last", (S{{3, 4}}), -1, 1, true, F::normalize(x[0], 1.0, -1)));
  c.push_back(EMBER_OP("instance_norm_affine", (S{{2, 3, 4, 5}, {3}, {3}}), -1, 1, true,
                       instance_norm(x[0], {}, {}, x[1], x[2])));
  c.push_back(EMBER_OP("instance_norm_1d", (S{{3, 2, 6}}), -1, 1, true, instance_norm(x[0])));
  c.push_back(EMBER_OP("pixel_shuffle", (S{{2, 8, 3, 2}}), -1, 1, true, pixel_shuffle(x[0], 2)));
  c.push_back(EMBER_OP("pixel_unshuffle_batched", (S{{2, 1, 2, 6, 3}}), -1, 1, true, pixel_unshuffle(x[0], 3)));
  c.push_back(EMBER_OP("avg_pool1d", (S{{2, 3, 9}}), -1, 1, true,
                       F::avg_pool1d(x[0], 3, {.stride = 2, .padding = 1, .count_include_pad = false})));
  c.push_back(EMBER_OP("conv_transpose1d", (S{{2, 4, 5}, {4, 3, 3}, {6}}), -1, 1, true,
                       F::conv_transpose1d(x[0], x[1], x[2],
                                           {.stride = 2, .padding = 1, .output_padding = 1, .groups = 2})));
  c.push_back(EMBER_OP("adaptive_avg_pool1d", (S{{2, 3, 7}}), -1, 1, true, F::adaptive_avg_pool1d(x[0], 3)));
  c.push_back(EMBER_OP("interpolate_nearest_scale2", (S{{2, 3, 4, 5}}), -1, 1, true,
                       F::interpolate(x[0], {.scale_factor = {2}})));
  c.push_back(EMBER_OP("interpolate_nearest_size", (S{{1, 2, 5, 7}}), -1, 1, true,
                       F::interpolate(x[0], {.size = {8, 3}})));
  c.push_back(EMBER_OP("interpolate_nearest_exact", (S{{1, 2, 5, 7}}), -1, 1, true,
                       F::interpolate(x[0], {.size = {9, 4}, .mode = "nearest-exact"})));
  c.push_back(EMBER_OP("interpolate_bilinear", (S{{2, 2, 4, 5}}), -1, 1, true,
                       F::interpolate(x[0], {.size = {7, 9}, .mode = "bilinear"})));
  c.push_back(EMBER_OP("interpolate_bilinear_align_corners", (S{{1, 2, 4, 5}}), -1, 1, true,
                       F::interpolate(x[0], {.scale_factor = {1.7}, .mode = "bilinear", .align_corners = true})));
  c.push_back(EMBER_OP("interpolate_bilinear_down", (S{{1, 2, 7, 9}}), -1, 1, true,
                       F::interpolate(x[0], {.size = {3, 4}, .mode = "bilinear"})));
  c.push_back(EMBER_OP("interpolate_linear_scale", (S{{2, 3, 6}}), -1, 1, true,
                       F::interpolate(x[0], {.scale_factor = {2.5}, .mode = "linear"})));
  c.push_back(EMBER_OP("batch_norm_train", (S{{4, 3, 2, 2}, {3}, {3}}), -1, 1, true,
                       F::batch_norm(x[0], Tensor<T>(), Tensor<T>(), x[1], x[2], true)));
  c.push_back(EMBER_OP("batch_norm_eval", (S{{4, 3, 5}, {3}, {3}}), -1, 1, true,
                       F::batch_norm(x[0], tensor<T>({0.1, -0.2, 0.3}, {3}), tensor<T>({0.5, 1.5, 2.0}, {3}),
                                     x[1], x[2], false)));
  // batch_norm_relu: the fused node against relu(batch_norm(x) (+ residual)); without a residual
  // its backward finds the mask from x (Note [Batch norm with ReLU]).
  c.push_back(EMBER_OP("batch_norm_relu_train", (S{{4, 3, 2, 2}, {3}, {3}}), -1, 1, true,
                       F::batch_norm_relu(x[0], Tensor<T>(), Tensor<T>(), x[1], x[2], true)));
  c.push_back(EMBER_OP("batch_norm_relu_residual", (S{{4, 3, 2, 2}, {3}, {3}, {4, 3, 2, 2}}), -1, 1, true,
                       F::batch_norm_relu(x[0], Tensor<T>(), Tensor<T>(), x[1], x[2], true, 0.1, 1e-5, x[3])));
  c.push_back(EMBER_OP("batch_norm_relu_eval_residual", (S{{4, 3, 5}, {3}, {3}, {4, 3, 5}}), -1, 1, true,
                       F::batch_norm_relu(x[0], tensor<T>({0.1, -0.2, 0.3}, {3}), tensor<T>({0.5, 1.5, 2.0}, {3}),
                                          x[1], x[2], false, 0.1, 1e-5, x[3])));
  c.push_back(EMBER_OP("layer_norm_affine", (S{{3, 4, 5}, {5}, {5}}), -2, 2, true,
                       F::layer_norm(x[0], {5}, x[1], x[2])));
  c.push_back(EMBER_OP("layer_norm_2d_plain", (S{{3, 4, 5}}), -2, 2, true, F::layer_norm(x[0], {4, 5})));
  c.push_back(EMBER_OP("group_norm", (S{{2, 6, 3, 2}, {6}, {6}}), -2, 2, true,
                       F::group_norm(x[0], 3, x[1], x[2])));
  c.push_back(EMBER_OP("rms_norm", (S{{3, 6}, {6}}), -2, 2, true, F::rms_norm(x[0], {6}, x[1])));
  c.push_back(EMBER_OP("embedding", (S{{5, 3}}), -1, 1, true,
                       F::embedding(tensor<int64_t>({1, 4, 0, 1, 3, 3}, {2, 3}), x[0])));
  c.push_back(EMBER_OP("embedding_padding", (S{{5, 3}}), -1, 1, true,
                       F::embedding(tensor<int64_t>({1, 4, 0, 1, 3, 3}, {2, 3}), x[0], 1)));
  c.back().true_derivative = false;  // the padding row gets no gradient, by design
  // embedding_bag: bags by offsets (the second one empty), by rows with per-sample weights, and
  // maxima with a padding index and the CSR layout of offsets.
  c.push_back(EMBER_OP("embedding_bag_mean", (S{{6, 3}}), -1, 1, true,
                       F::embedding_bag(tensor<int64_t>({1, 4, 0, 1, 3, 3, 5}, {7}), x[0],
                                        tensor<int64_t>({0, 2, 2, 5}, {4}))));
  c.push_back(EMBER_OP("embedding_bag_sum_weighted", (S{{6, 3}, {2, 3}}), -1, 1, true,
                       F::embedding_bag(tensor<int64_t>({1, 4, 0, 3, 3, 5}, {2, 3}), x[0], Tensor<int64_t>(),
                                        {.mode = EmbeddingBagMode::Sum}, x[1])));
  c.push_back(EMBER_OP("embedding_bag_max_padding", (S{{6, 3}}), -1, 1, true,
                       F::embedding_bag(tensor<int64_t>({1, 4, 0, 2, 1, 3, 5}, {7}), x[0],
                                        tensor<int64_t>({0, 3, 4, 4, 7}, {5}),
                                        {.mode = EmbeddingBagMode::Max, .include_last_offset = true, .padding_idx = 1})));
}

void add_cases_9(std::vector<OpCase>& c) {
  // ---- attention
  c.push_back(EMBER_OP("sdpa_masked", (S{{2, 3, 4}, {2, 5, 4}, {2, 5, 3}}), -1, 1, true,
                       F::scaled_dot_product_attention(x[0], x[1], x[2],
                                                       tensor<T>({0, -1, 0, -2, 0, 0, 0, 0, -1, 0, 0, 0, -3, 0, 0},
                                                                 {3, 5}))));
  c.push_back(EMBER_OP("sdpa_causal", (S{{2, 4, 3}, {2, 4, 3}, {2, 4, 3}}), -1, 1, true,
                       F::scaled_dot_product_attention(x[0], x[1], x[2], Tensor<T>(), 0.0, true)));
  const S mha_shapes{{2, 3, 8}, {2, 4, 8}, {24, 8}, {24}, {8, 8}, {8}};
  c.push_back(EMBER_OP("mha_out", mha_shapes, -1, 1, true, mha_case(x, false)));
  c.push_back(EMBER_OP("mha_weights", mha_shapes, -1, 1, true, mha_case(x, true)));
  c.push_back(EMBER_OP("mha_causal_self", (S{{2, 4, 6}, {18, 6}, {18}, {6, 6}, {6}}), -1, 1, true, [&] {
    F::MultiheadAttentionArgs a;
    a.num_heads = 3;
    a.is_causal = true;
    return F::multi_head_attention(x[0], x[0], x[0], x[1], x[2], x[3], x[4], a).first;
  }()));
}

}  // namespace

std::vector<Shape> parse_shapes(const std::string& text) {
  std::vector<Shape> shapes;
  std::istringstream inputs(text);
  std::string input;
  while (inputs >> input) {
    std::vector<int64_t> dims;
    std::istringstream parts(input);
    std::string dim;
    while (std::getline(parts, dim, 'x')) dims.push_back(std::stoll(dim));
    shapes.emplace_back(dims);
  }
  return shapes;
}

std::vector<OpCase> op_registry() {
  std::vector<OpCase> c;
  add_table_cases(c);
  add_cases_3(c);
  add_cases_4(c);
  add_cases_5(c);
  add_cases_6(c);
  add_cases_7(c);
  add_cases_8(c);
  add_cases_9(c);
  return c;
}

#undef EMBER_OP
#undef EMBER_CASE_OF

}  // namespace ember::testing
