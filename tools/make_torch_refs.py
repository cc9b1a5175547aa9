#!/usr/bin/python3
"""Writes PyTorch reference values for ember's op registry (tests/ops/op_registry.hpp).

For every case and for float32 and float64 it records the inputs, a random output weight w, the
output, and the gradients of sum(output * w) with respect to each input, in
tests/data/torch_ref_<dtype>.txt. The C++ test (tests/ops/test_torch_reference.cpp) reads them, so
CI never needs torch. Needs Debian's python3-torch (scripts/install-deps.sh --torch), which is
importable only from /usr/bin/python3:

    /usr/bin/python3 tools/make_torch_refs.py

File format, one record per line, space separated:
    case <name>
    in|w|out|grad <rank> <dims...> <values...>      (grad "none" when an input gets no gradient)
    end
"""
import ast
import os
import re
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

M34 = [(3, 4)]
BC = [(3, 4), (4,)]
BC3 = [(2, 1, 3), (4, 1)]
R345 = [(3, 4, 5)]


def idx(values, shape):
    return torch.tensor(values, dtype=torch.int64).reshape(shape)


def mha(x, weights):
    q = x[0].transpose(0, 1)
    kv = x[1].transpose(0, 1)
    kpm = torch.tensor([[0, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.bool)
    out, w = F.multi_head_attention_forward(q, kv, kv, 8, 2, x[2], x[3], None, None, False, 0.0, x[4], x[5],
                                            training=False, key_padding_mask=kpm, need_weights=True)
    return w if weights else out.transpose(0, 1)


def mha_causal(x):
    q = x[0].transpose(0, 1)
    mask = torch.ones(4, 4, dtype=torch.bool).triu(1)
    out, _ = F.multi_head_attention_forward(q, q, q, 6, 3, x[1], x[2], None, None, False, 0.0, x[3], x[4],
                                            training=False, attn_mask=mask, need_weights=False)
    return out.transpose(0, 1)


def split_case(x):
    p = torch.split(x[0], [2, 3], 0)
    return torch.cat([p[0] * 2.0, p[1] * 3.0], 0)


def chunk_case(x):
    p = x[0].chunk(2, 1)
    return torch.cat([p[0] * 2.0, p[1] * 3.0], 1)


def cross_entropy_case(x):
    target = torch.tensor([0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
                          dtype=x[0].dtype).reshape(4, 5)
    return -(F.log_softmax(x[0], 1) * target).sum(1).mean()


def layer_norm_case(x):
    mu = x[0].mean(-1, keepdim=True)
    v = x[0].var(-1, keepdim=True, unbiased=False)
    return (x[0] - mu) / torch.sqrt(v + 1e-5)


OP_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "include", "ember", "ops",
                        "op_table.def")


def split_args(text):
    """Splits a macro's argument list at the commas outside brackets and string literals."""
    args, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return args


def table_cases():
    """The op table's test cases (include/ember/ops/op_table.def), in its order: (name, shapes, lo,
    hi, PyTorch expression in x)."""
    with open(OP_TABLE) as f:
        text = re.sub(r"//[^\n]*", "", f.read())
    cases = []
    for m in re.finditer(r"^(EMBER_UNARY(?:_P1|_P2)?|EMBER_CASE)\(", text, re.M):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        args = split_args(text[m.end():i - 1])
        if m.group(1) == "EMBER_CASE":
            name, _, shapes, lo, hi, torch_expr = args[:6]
            shapes = [tuple(int(d) for d in s.split("x")) for s in ast.literal_eval(shapes).split()]
        else:
            name, lo, hi, torch_expr = args[0], args[4], args[5], args[6]
            shapes = M34
        expr = ast.literal_eval(torch_expr)
        cases.append((name, shapes, float(lo), float(hi), eval("lambda x: " + expr)))
    return cases


def sparse40(w):
    """The sparse weights of the sparse cases: entries above 0.4 in magnitude, the rest zero."""
    return torch.where(w.abs() > 0.4, w, torch.zeros_like(w))


# name, shapes, lo, hi, function: the op table's cases, then the others, by name as in
# tests/ops/op_registry.cpp.
CASES = table_cases() + [
    ("matmul_2d", [(3, 4), (4, 5)], -1, 1, lambda x: torch.matmul(x[0], x[1])),
    ("matmul_1d1d", [(4,), (4,)], -1, 1, lambda x: torch.matmul(x[0], x[1])),
    ("matmul_2d1d", [(3, 4), (4,)], -1, 1, lambda x: torch.matmul(x[0], x[1])),
    ("matmul_1d2d", [(4,), (4, 5)], -1, 1, lambda x: torch.matmul(x[0], x[1])),
    ("matmul_3d2d", [(2, 3, 4), (4, 5)], -1, 1, lambda x: torch.matmul(x[0], x[1])),
    ("matmul_batched", [(2, 1, 3, 4), (3, 4, 2)], -1, 1, lambda x: torch.matmul(x[0], x[1])),
    ("matmul_1d3d", [(4,), (2, 4, 3)], -1, 1, lambda x: torch.matmul(x[0], x[1])),
    ("matmul_transposed", [(4, 3), (5, 4)], -1, 1, lambda x: torch.matmul(x[0].t(), x[1].t())),
    ("mm", [(3, 4), (4, 2)], -1, 1, lambda x: torch.mm(x[0], x[1])),
    ("addmm", [(5,), (3, 4), (4, 5)], -1, 1, lambda x: torch.addmm(x[0], x[1], x[2])),
    ("addmm_scaled", [(3, 5), (3, 4), (4, 5)], -1, 1, lambda x: torch.addmm(x[0], x[1], x[2], beta=0.5, alpha=-2.0)),
    ("addmm_column_transposed", [(3, 1), (4, 3), (5, 4)], -1, 1,
     lambda x: torch.addmm(x[0], x[1].t(), x[2].t(), beta=-1.5)),
    ("bmm", [(2, 3, 4), (2, 4, 5)], -1, 1, lambda x: torch.bmm(x[0], x[1])),
    ("outer", [(3,), (4,)], -1, 1, lambda x: torch.outer(x[0], x[1])),
    ("dot", [(5,), (5,)], -1, 1, lambda x: torch.dot(x[0], x[1])),
    ("reshape", M34, -1, 1, lambda x: x[0].reshape(2, 6) * 2.0),
    ("view_infer", M34, -1, 1, lambda x: x[0].contiguous().view(-1, 2) * 2.0),
    ("flatten", [(2, 3, 4)], -1, 1, lambda x: x[0].flatten(1) * 2.0),
    ("squeeze_unsqueeze", [(3, 1, 4)], -1, 1, lambda x: x[0].squeeze(1).unsqueeze(0) * 2.0),
    ("permute", [(2, 3, 4)], -1, 1, lambda x: x[0].permute(2, 0, 1) * 2.0),
    ("transpose", [(2, 3, 4)], -1, 1, lambda x: x[0].transpose(0, 2) * 2.0),
    ("t", M34, -1, 1, lambda x: x[0].t() * 2.0),
    ("slice_step", [(3, 6)], -1, 1, lambda x: x[0][:, 1:6:2] * 2.0),
    ("slice_negative", [(5, 4)], -1, 1, lambda x: x[0][-3:5] * 2.0),
    ("narrow", [(5, 4)], -1, 1, lambda x: x[0].narrow(0, 1, 3) * 2.0),
    ("select", [(3, 4, 2)], -1, 1, lambda x: x[0].select(1, -1) * 2.0),
    ("expand", [(3, 1)], -1, 1, lambda x: x[0].expand(2, 3, 4) * 2.0),
    ("index_select", [(4, 3)], -1, 1, lambda x: x[0].index_select(0, idx([2, 0, 2, 3], (4,))) * 2.0),
    ("gather", [(3, 4)], -1, 1, lambda x: x[0].gather(1, idx([0, 3, 3, 1, 2, 0], (3, 2))) * 2.0),
    ("scatter_add", [(3, 4), (2, 4)], -1, 1,
     lambda x: torch.scatter_add(x[0], 0, idx([0, 1, 2, 0, 2, 2, 0, 1], (2, 4)), x[1])),
    ("cat", [(2, 3), (4, 3), (1, 3)], -1, 1, lambda x: torch.cat([x[0], x[1], x[2]], 0) * 2.0),
    ("stack", [(2, 3), (2, 3)], -1, 1, lambda x: torch.stack([x[0], x[1]], 1) * 2.0),
    ("split", [(5, 2)], -1, 1, split_case),
    ("chunk", [(2, 5)], -1, 1, chunk_case),
    ("pad_constant", [(2, 3)], -1, 1, lambda x: F.pad(x[0], (1, 2, 0, 1)) * 2.0),
    ("pad_reflect", [(2, 4)], -1, 1,
     lambda x: F.pad(x[0].unsqueeze(0), (2, 1), mode="reflect").squeeze(0) * 2.0),
    ("pad_replicate", [(2, 3)], -1, 1,
     lambda x: F.pad(x[0].unsqueeze(0), (2, 1, 1, 0), mode="replicate").squeeze(0) * 2.0),
    ("pad_negative", [(3, 5)], -1, 1, lambda x: F.pad(x[0], (-1, 2, 1, -1)) * 2.0),
    ("contiguous", M34, -1, 1, lambda x: x[0].t().contiguous() * 2.0),
    ("clone", M34, -1, 1, lambda x: x[0].clone() * 2.0),
    ("mlp", [(5, 4), (4, 3), (3,)], -1, 1, lambda x: torch.tanh(torch.matmul(x[0], x[1]) + x[2]).sum(1)),
    ("cross_entropy", [(4, 5)], -2, 2, cross_entropy_case),
    ("layer_norm", [(3, 6)], -2, 2, layer_norm_case),
    ("linear", [(5, 4), (3, 4), (3,)], -1, 1, lambda x: F.linear(x[0], x[1], x[2])),
    ("linear_nobias", [(2, 3, 4), (5, 4)], -1, 1, lambda x: F.linear(x[0], x[1])),
    ("linear_permuted", [(4, 2, 3), (5, 3), (5,)], -1, 1, lambda x: F.linear(x[0].transpose(0, 1), x[1], x[2])),
    ("linear_permuted_4d", [(2, 3, 4, 3), (2, 3)], -1, 1, lambda x: F.linear(x[0].permute(2, 0, 1, 3), x[1])),
    ("sparse_mm", [(4, 6), (6, 3)], -1, 1, lambda x: torch.sparse.mm(sparse40(x[0]).to_sparse(), x[1])),
    ("sparse_mm_transposed", [(4, 6), (4, 2)], -1, 1,
     lambda x: torch.sparse.mm(sparse40(x[0]).t().to_sparse(), x[1])),
    ("sparse_linear", [(2, 3, 6), (5, 6), (5,)], -1, 1, lambda x: F.linear(x[0], sparse40(x[1]), x[2])),
    ("sparse_to_dense", [(3, 5)], -1, 1, lambda x: sparse40(x[0]).to_sparse().to_dense() * 3.0),
    ("cross_entropy_indices", [(4, 5)], -2, 2, lambda x: F.cross_entropy(x[0], idx([1, 0, 4, 2], (4,)))),
    ("cross_entropy_weight_ignore_smooth", [(5, 4)], -2, 2,
     lambda x: F.cross_entropy(x[0], idx([3, -100, 0, 1, 3], (5,)),
                               weight=torch.tensor([0.5, 1, 2, 1.5], dtype=x[0].dtype),
                               ignore_index=-100, label_smoothing=0.1)),
    ("cross_entropy_3d_sum", [(2, 3, 4)], -2, 2,
     lambda x: F.cross_entropy(x[0], idx([0, 2, 1, 1, 2, 0, 0, 1], (2, 4)), reduction="sum")),
    ("cross_entropy_none", [(3, 4)], -2, 2,
     lambda x: F.cross_entropy(x[0], idx([3, 0, 1], (3,)), reduction="none")),
    ("cross_entropy_probs", [(3, 4), (3, 4)], -2, 2,
     lambda x: F.cross_entropy(x[0], torch.softmax(x[1], 1), label_smoothing=0.2)),
    ("nll_loss", [(4, 3)], -2, 2,
     lambda x: F.nll_loss(F.log_softmax(x[0], 1), idx([2, 0, 1, 2], (4,)),
                          weight=torch.tensor([1, 2, 0.5], dtype=x[0].dtype))),
    ("mse_loss", [(3, 4), (3, 4)], -1, 1, lambda x: F.mse_loss(x[0], x[1])),
    ("l1_loss_sum", [(3, 4), (3, 4)], -1, 1, lambda x: F.l1_loss(x[0], x[1], reduction="sum")),
    ("smooth_l1_loss", [(3, 4), (3, 4)], -1, 1, lambda x: F.smooth_l1_loss(x[0], x[1], beta=0.5)),
    ("huber_loss", [(3, 4), (3, 4)], -1, 1, lambda x: F.huber_loss(x[0], x[1], delta=0.7)),
    ("binary_cross_entropy", [(3, 4), (3, 4)], -2, 2,
     lambda x: F.binary_cross_entropy(torch.sigmoid(x[0]), (x[1] + 2.0) / 4.0)),
    ("bce_with_logits", [(3, 4), (3, 4)], -3, 3,
     lambda x: F.binary_cross_entropy_with_logits(
         x[0], (x[1] + 3.0) / 6.0, pos_weight=torch.tensor([0.5, 1, 2, 3], dtype=x[0].dtype))),
    ("kl_div", [(3, 4), (3, 4)], -2, 2,
     lambda x: F.kl_div(F.log_softmax(x[0], 1), torch.softmax(x[1], 1), reduction="mean")),
    ("kl_div_log_target_batchmean", [(3, 4), (3, 4)], -2, 2,
     lambda x: F.kl_div(F.log_softmax(x[0], 1), F.log_softmax(x[1], 1), reduction="batchmean",
                        log_target=True)),
    ("distillation_loss", [(3, 4), (3, 4)], -2, 2,
     lambda x: 0.7 * 2.0 ** 2 * F.kl_div(F.log_softmax(x[0] / 2.0, 1), F.softmax(x[1] / 2.0, 1),
                                        reduction="batchmean")
     + 0.3 * F.cross_entropy(x[0], torch.tensor([1, 0, 3]))),
    ("cosine_embedding_loss", [(4, 3), (4, 3)], -1, 1,
     lambda x: F.cosine_embedding_loss(x[0], x[1], torch.tensor([1, -1, -1, 1], dtype=x[0].dtype), margin=0.1)),
    ("triplet_margin_loss", [(4, 3), (4, 3), (4, 3)], -1, 1,
     lambda x: F.triplet_margin_loss(x[0], x[1], x[2], margin=0.5)),
    ("triplet_margin_loss_swap_p1", [(4, 3), (4, 3), (4, 3)], -1, 1,
     lambda x: F.triplet_margin_loss(x[0], x[1], x[2], margin=1.0, p=1.0, swap=True, reduction="sum")),
    ("margin_ranking_loss", [(6,), (6,)], -1, 1,
     lambda x: F.margin_ranking_loss(x[0], x[1], torch.tensor([1, -1, 1, 1, -1, -1], dtype=x[0].dtype), margin=0.2)),
    ("hinge_embedding_loss", [(2, 3)], -2, 2,
     lambda x: F.hinge_embedding_loss(x[0], torch.tensor([[1, -1, -1], [1, -1, 1]], dtype=x[0].dtype), margin=0.8,
                                      reduction="sum")),
    ("soft_margin_loss", [(2, 3)], -2, 2,
     lambda x: F.soft_margin_loss(x[0], torch.tensor([[1, -1, -1], [1, -1, 1]], dtype=x[0].dtype))),
    ("multilabel_soft_margin_loss", [(3, 4), (4,)], -2, 2,
     lambda x: F.multilabel_soft_margin_loss(
         x[0], torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=x[0].dtype), weight=x[1])),
    ("multi_margin_loss", [(3, 4)], -1, 1, lambda x: F.multi_margin_loss(x[0], torch.tensor([2, 0, 3]))),
    ("multi_margin_loss_p2_weight", [(3, 4)], -1, 1,
     lambda x: F.multi_margin_loss(x[0], torch.tensor([1, 3, 0]), p=2, margin=0.5,
                                   weight=torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=x[0].dtype), reduction="sum")),
    ("poisson_nll_loss", [(2, 3), (2, 3)], -1, 1, lambda x: F.poisson_nll_loss(x[0], x[1].abs() * 3.0)),
    ("poisson_nll_loss_full_linear", [(2, 3), (2, 3)], -1, 1,
     lambda x: F.poisson_nll_loss(x[0].abs() + 0.5, x[1].abs() * 3.0, log_input=False, full=True, reduction="sum")),
    ("gaussian_nll_loss", [(3, 2), (3, 2), (3,)], -1, 1,
     lambda x: F.gaussian_nll_loss(x[0], x[1], x[2].abs() + 0.1)),
    ("gaussian_nll_loss_full_same_shape", [(3, 2), (3, 2), (3, 2)], -1, 1,
     lambda x: F.gaussian_nll_loss(x[0], x[1], x[2].abs() + 0.1, full=True, reduction="none")),
    ("ctc_loss", [(6, 2, 4)], -2, 2,
     lambda x: F.ctc_loss(F.log_softmax(x[0], 2), torch.tensor([[1, 2, 2], [3, 1, 0]]), torch.tensor([6, 5]),
                          torch.tensor([3, 2]))),
    ("ctc_loss_concatenated_blank_sum", [(5, 3, 5)], -2, 2,
     lambda x: F.ctc_loss(F.log_softmax(x[0], 2), torch.tensor([1, 1, 2, 4, 0]), torch.tensor([5, 4, 3]),
                          torch.tensor([2, 1, 2]), blank=3, reduction="sum")),
    ("ctc_loss_zero_infinity_empty_target", [(4, 3, 3)], -2, 2,
     lambda x: F.ctc_loss(F.log_softmax(x[0], 2), torch.tensor([[1, 1, 1], [2, 0, 0], [0, 0, 0]]),
                          torch.tensor([4, 3, 2]), torch.tensor([3, 1, 0]), reduction="none", zero_infinity=True)),
    ("ctc_loss_unbatched", [(5, 4)], -2, 2,
     lambda x: F.ctc_loss(F.log_softmax(x[0], 1), torch.tensor([1, 2, 3]), torch.tensor(5), torch.tensor(3))),
    ("conv2d", [(2, 3, 5, 5), (4, 3, 3, 3), (4,)], -1, 1, lambda x: F.conv2d(x[0], x[1], x[2])),
    ("conv2d_stride_pad_dilation", [(1, 2, 7, 6), (3, 2, 3, 2)], -1, 1,
     lambda x: F.conv2d(x[0], x[1], stride=(2, 1), padding=(1, 2), dilation=(2, 1))),
    ("conv2d_groups", [(1, 4, 5, 5), (6, 2, 3, 3)], -1, 1,
     lambda x: F.conv2d(x[0], x[1], padding=1, groups=2)),
    ("conv2d_depthwise", [(2, 3, 6, 7), (3, 1, 3, 3), (3,)], -1, 1,
     lambda x: F.conv2d(x[0], x[1], x[2], padding=1, groups=3)),
    ("conv2d_depthwise_stride_dilation", [(1, 2, 9, 8), (4, 1, 3, 2)], -1, 1,
     lambda x: F.conv2d(x[0], x[1], stride=(2, 3), padding=(2, 1), dilation=(1, 2), groups=2)),
    ("conv2d_same_even", [(1, 2, 5, 5), (2, 2, 4, 4)], -1, 1,
     lambda x: F.conv2d(x[0], x[1], padding="same")),
    ("conv2d_pointwise", [(2, 3, 4, 4), (5, 3, 1, 1), (5,)], -1, 1, lambda x: F.conv2d(x[0], x[1], x[2])),
    ("conv1d", [(2, 3, 8), (4, 3, 3), (4,)], -1, 1,
     lambda x: F.conv1d(x[0], x[1], x[2], stride=2, padding=1)),
    ("conv_transpose2d", [(1, 3, 4, 4), (3, 2, 3, 3), (2,)], -1, 1,
     lambda x: F.conv_transpose2d(x[0], x[1], x[2], stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d_groups", [(1, 4, 3, 3), (4, 1, 2, 2)], -1, 1,
     lambda x: F.conv_transpose2d(x[0], x[1], stride=2, groups=2)),
    ("conv_transpose2d_crop", [(1, 2, 3, 3), (2, 2, 3, 3)], -1, 1,
     lambda x: F.conv_transpose2d(x[0], x[1], stride=2, output_padding=1)),
    ("max_pool2d", [(2, 2, 5, 5)], -1, 1, lambda x: F.max_pool2d(x[0], 2)),
    ("max_pool2d_pad_stride_ceil", [(1, 2, 6, 7)], -1, 1,
     lambda x: F.max_pool2d(x[0], 3, stride=2, padding=1, ceil_mode=True)),
    ("max_pool2d_dilation", [(1, 1, 7, 7)], -1, 1, lambda x: F.max_pool2d(x[0], 2, stride=1, dilation=2)),
    ("max_pool1d", [(2, 3, 9)], -1, 1, lambda x: F.max_pool1d(x[0], 3, stride=2)),
    ("avg_pool2d", [(2, 2, 6, 6)], -1, 1, lambda x: F.avg_pool2d(x[0], 2)),
    ("avg_pool2d_exclude_pad_ceil", [(1, 2, 5, 6)], -1, 1,
     lambda x: F.avg_pool2d(x[0], 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d_include_pad", [(1, 2, 5, 5)], -1, 1, lambda x: F.avg_pool2d(x[0], 3, stride=2, padding=1)),
    ("adaptive_avg_pool2d", [(2, 3, 7, 5)], -1, 1, lambda x: F.adaptive_avg_pool2d(x[0], (3, 2))),
    ("adaptive_avg_pool2d_global", [(2, 3, 4, 4)], -1, 1, lambda x: F.adaptive_avg_pool2d(x[0], 1)),
    ("adaptive_max_pool2d", [(2, 3, 5, 7)], -1, 1, lambda x: F.adaptive_max_pool2d(x[0], (3, 4))),
    ("adaptive_max_pool2d_tiles", [(2, 2, 4, 6)], -1, 1, lambda x: F.adaptive_max_pool2d(x[0], (2, 3))),
    ("adaptive_max_pool1d", [(2, 3, 7)], -1, 1, lambda x: F.adaptive_max_pool1d(x[0], 3)),
    ("flip", [(3, 4, 5)], -1, 1, lambda x: torch.flip(x[0], (0, -1))),
    ("repeat", [(2, 3)], -1, 1, lambda x: x[0].repeat(2, 1, 3)),
    ("tril", [(4, 5)], -1, 1, lambda x: torch.tril(x[0], -1)),
    ("triu_batched", [(2, 4, 5)], -1, 1, lambda x: torch.triu(x[0], 1)),
    ("cumsum", [(3, 4, 5)], -1, 1, lambda x: torch.cumsum(x[0], 1)),
    ("cumsum_last", [(2, 7)], -1, 1, lambda x: torch.cumsum(x[0], -1)),
    ("sort", [(3, 4, 5)], -1, 1, lambda x: torch.sort(x[0], 1).values),
    ("sort_descending_last", [(4, 6)], -1, 1, lambda x: torch.sort(x[0], -1, descending=True).values),
    ("hardtanh", [(3, 4)], -2, 2, lambda x: F.hardtanh(x[0], -0.5, 1.25)),
    ("relu6", [(3, 4)], -3, 9, lambda x: F.relu6(x[0])),
    ("hardsigmoid", [(3, 4)], -5, 5, lambda x: F.hardsigmoid(x[0])),
    ("hardswish", [(3, 4)], -5, 5, lambda x: F.hardswish(x[0])),
    ("selu", [(3, 4)], -2, 2, lambda x: F.selu(x[0])),
    ("celu", [(3, 4)], -2, 2, lambda x: F.celu(x[0], 0.5)),
    ("logsigmoid", [(3, 4)], -4, 4, lambda x: F.logsigmoid(x[0])),
    ("softsign", [(3, 4)], -3, 3, lambda x: F.softsign(x[0])),
    ("softshrink", [(3, 4)], -2, 2, lambda x: F.softshrink(x[0], 0.7)),
    ("hardshrink", [(3, 4)], -2, 2, lambda x: F.hardshrink(x[0], 0.7)),
    ("tanhshrink", [(3, 4)], -2, 2, lambda x: F.tanhshrink(x[0])),
    ("threshold", [(3, 4)], -2, 2, lambda x: F.threshold(x[0], 0.3, -1.5)),
    ("softmin", [(3, 4, 5)], -2, 2, lambda x: F.softmin(x[0], 1)),
    ("rrelu_eval", [(3, 4)], -2, 2, lambda x: F.rrelu(x[0], 0.1, 0.3, training=False)),
    ("prelu_per_channel", [(2, 3, 4), (3,)], -1, 1, lambda x: F.prelu(x[0], x[1])),
    ("prelu_shared", [(2, 5), (1,)], -1, 1, lambda x: F.prelu(x[0], x[1])),
    ("glu", [(3, 4, 5)], -2, 2, lambda x: F.glu(x[0], 1)),
    ("cosine_similarity", [(4, 6), (4, 6)], -1, 1, lambda x: F.cosine_similarity(x[0], x[1])),
    ("cosine_similarity_broadcast_last", [(3, 1, 5), (4, 5)], -1, 1, lambda x: F.cosine_similarity(x[0], x[1], -1)),
    ("pairwise_distance", [(4, 6), (4, 6)], -1, 1, lambda x: F.pairwise_distance(x[0], x[1])),
    ("pairwise_distance_p1_keepdim", [(3, 5), (5,)], -1, 1, lambda x: F.pairwise_distance(x[0], x[1], 1.0, 1e-6, True)),
    ("cdist", [(4, 3), (5, 3)], -1, 1, lambda x: torch.cdist(x[0], x[1])),
    ("cdist_mm", [(27, 3), (4, 3)], -1, 1, lambda x: torch.cdist(x[0], x[1])),
    ("cdist_p1_batch_broadcast", [(2, 3, 4), (5, 4)], -1, 1, lambda x: torch.cdist(x[0], x[1], 1.0)),
    ("cdist_p3", [(3, 4), (2, 4)], -1, 1, lambda x: torch.cdist(x[0], x[1], 3.0)),
    ("cdist_p0_5", [(3, 4), (2, 4)], -1, 1, lambda x: torch.cdist(x[0], x[1], 0.5)),
    ("cdist_pinf", [(2, 3, 4), (2, 2, 4)], -1, 1, lambda x: torch.cdist(x[0], x[1], float("inf"))),
    ("normalize", [(3, 4, 2)], -1, 1, lambda x: F.normalize(x[0])),
    ("normalize_p1_last", [(3, 4)], -1, 1, lambda x: F.normalize(x[0], 1.0, -1)),
    ("instance_norm_affine", [(2, 3, 4, 5), (3,), (3,)], -1, 1, lambda x: F.instance_norm(x[0], weight=x[1], bias=x[2])),
    ("instance_norm_1d", [(3, 2, 6)], -1, 1, lambda x: F.instance_norm(x[0])),
    ("pixel_shuffle", [(2, 8, 3, 2)], -1, 1, lambda x: F.pixel_shuffle(x[0], 2)),
    ("pixel_unshuffle_batched", [(2, 1, 2, 6, 3)], -1, 1, lambda x: F.pixel_unshuffle(x[0], 3)),
    ("avg_pool1d", [(2, 3, 9)], -1, 1, lambda x: F.avg_pool1d(x[0], 3, stride=2, padding=1, count_include_pad=False)),
    ("conv_transpose1d", [(2, 4, 5), (4, 3, 3), (6,)], -1, 1,
     lambda x: F.conv_transpose1d(x[0], x[1], x[2], stride=2, padding=1, output_padding=1, groups=2)),
    ("adaptive_avg_pool1d", [(2, 3, 7)], -1, 1, lambda x: F.adaptive_avg_pool1d(x[0], 3)),
    ("interpolate_nearest_scale2", [(2, 3, 4, 5)], -1, 1, lambda x: F.interpolate(x[0], scale_factor=2)),
    ("interpolate_nearest_size", [(1, 2, 5, 7)], -1, 1, lambda x: F.interpolate(x[0], size=(8, 3))),
    ("interpolate_nearest_exact", [(1, 2, 5, 7)], -1, 1,
     lambda x: F.interpolate(x[0], size=(9, 4), mode="nearest-exact")),
    ("interpolate_bilinear", [(2, 2, 4, 5)], -1, 1, lambda x: F.interpolate(x[0], size=(7, 9), mode="bilinear")),
    ("interpolate_bilinear_align_corners", [(1, 2, 4, 5)], -1, 1,
     lambda x: F.interpolate(x[0], scale_factor=1.7, mode="bilinear", align_corners=True)),
    ("interpolate_bilinear_down", [(1, 2, 7, 9)], -1, 1, lambda x: F.interpolate(x[0], size=(3, 4), mode="bilinear")),
    ("interpolate_linear_scale", [(2, 3, 6)], -1, 1, lambda x: F.interpolate(x[0], scale_factor=2.5, mode="linear")),
    ("batch_norm_train", [(4, 3, 2, 2), (3,), (3,)], -1, 1,
     lambda x: F.batch_norm(x[0], None, None, x[1], x[2], training=True)),
    ("batch_norm_eval", [(4, 3, 5), (3,), (3,)], -1, 1,
     lambda x: F.batch_norm(x[0], torch.tensor([0.1, -0.2, 0.3], dtype=x[0].dtype),
                            torch.tensor([0.5, 1.5, 2.0], dtype=x[0].dtype), x[1], x[2], training=False)),
    ("batch_norm_relu_train", [(4, 3, 2, 2), (3,), (3,)], -1, 1,
     lambda x: F.relu(F.batch_norm(x[0], None, None, x[1], x[2], training=True))),
    ("batch_norm_relu_residual", [(4, 3, 2, 2), (3,), (3,), (4, 3, 2, 2)], -1, 1,
     lambda x: F.relu(F.batch_norm(x[0], None, None, x[1], x[2], training=True) + x[3])),
    ("batch_norm_relu_eval_residual", [(4, 3, 5), (3,), (3,), (4, 3, 5)], -1, 1,
     lambda x: F.relu(F.batch_norm(x[0], torch.tensor([0.1, -0.2, 0.3], dtype=x[0].dtype),
                                   torch.tensor([0.5, 1.5, 2.0], dtype=x[0].dtype), x[1], x[2], training=False)
                      + x[3])),
    ("layer_norm_affine", [(3, 4, 5), (5,), (5,)], -2, 2, lambda x: F.layer_norm(x[0], (5,), x[1], x[2])),
    ("layer_norm_2d_plain", [(3, 4, 5)], -2, 2, lambda x: F.layer_norm(x[0], (4, 5))),
    ("group_norm", [(2, 6, 3, 2), (6,), (6,)], -2, 2, lambda x: F.group_norm(x[0], 3, x[1], x[2])),
    ("rms_norm", [(3, 6), (6,)], -2, 2,
     lambda x: x[0] * torch.rsqrt(x[0].pow(2).mean(-1, keepdim=True) + 1e-6) * x[1]),
    ("sdpa_masked", [(2, 3, 4), (2, 5, 4), (2, 5, 3)], -1, 1,
     lambda x: torch.softmax(x[0] @ x[1].transpose(-2, -1) / 2.0 + torch.tensor(
         [0, -1, 0, -2, 0, 0, 0, 0, -1, 0, 0, 0, -3, 0, 0], dtype=x[0].dtype).reshape(3, 5), -1) @ x[2]),
    ("sdpa_causal", [(2, 4, 3), (2, 4, 3), (2, 4, 3)], -1, 1,
     lambda x: torch.softmax((x[0] @ x[1].transpose(-2, -1) / 3 ** 0.5).masked_fill(
         torch.ones(4, 4, dtype=torch.bool).triu(1), float("-inf")), -1) @ x[2]),
    ("mha_out", [(2, 3, 8), (2, 4, 8), (24, 8), (24,), (8, 8), (8,)], -1, 1, lambda x: mha(x, False)),
    ("mha_weights", [(2, 3, 8), (2, 4, 8), (24, 8), (24,), (8, 8), (8,)], -1, 1, lambda x: mha(x, True)),
    ("mha_causal_self", [(2, 4, 6), (18, 6), (18,), (6, 6), (6,)], -1, 1, mha_causal),
    ("embedding", [(5, 3)], -1, 1, lambda x: F.embedding(idx([1, 4, 0, 1, 3, 3], (2, 3)), x[0])),
    ("embedding_bag_mean", [(6, 3)], -1, 1,
     lambda x: F.embedding_bag(idx([1, 4, 0, 1, 3, 3, 5], (7,)), x[0], idx([0, 2, 2, 5], (4,)))),
    ("embedding_bag_sum_weighted", [(6, 3), (2, 3)], -1, 1,
     lambda x: F.embedding_bag(idx([1, 4, 0, 3, 3, 5], (2, 3)), x[0], mode="sum", per_sample_weights=x[1])),
    ("embedding_bag_max_padding", [(6, 3)], -1, 1,
     lambda x: F.embedding_bag(idx([1, 4, 0, 2, 1, 3, 5], (7,)), x[0], idx([0, 3, 4, 4, 7], (5,)), mode="max",
                               include_last_offset=True, padding_idx=1)),
    ("embedding_padding", [(5, 3)], -1, 1,
     lambda x: F.embedding(idx([1, 4, 0, 1, 3, 3], (2, 3)), x[0], padding_idx=1)),
]


def fmt_tensor(tag, t, digits):
    t = t.detach().contiguous()
    dims = list(t.shape)
    values = " ".join(f"{v:.{digits}g}" for v in t.reshape(-1).tolist())
    return f"{tag} {len(dims)} {' '.join(str(d) for d in dims)} {values}".rstrip() + "\n"


def write(dtype, path):
    digits = 9 if dtype == torch.float32 else 17
    lines = []
    for name, shapes, lo, hi, fn in CASES:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        inputs = [torch.tensor(rng.uniform(lo, hi, size=s), dtype=dtype, requires_grad=True)
                  for s in shapes]
        out = fn(inputs)
        w = torch.tensor(rng.uniform(-1, 1, size=tuple(out.shape)), dtype=dtype)
        grads = torch.autograd.grad(out, inputs, grad_outputs=w, allow_unused=True)
        lines.append(f"case {name}\n")
        for x in inputs:
            lines.append(fmt_tensor("in", x, digits))
        lines.append(fmt_tensor("w", w, digits))
        lines.append(fmt_tensor("out", out, digits))
        for g in grads:
            lines.append("grad none\n" if g is None else fmt_tensor("grad", g, digits))
        lines.append("end\n")
    with open(path, "w") as f:
        f.writelines(lines)
    print(f"wrote {len(CASES)} cases to {path}")


# Optimizer trajectories: 10 steps of each configuration on
#   loss = mean((tanh(x @ w^T + b) - y)^2)
# with the same data and starting point on both sides. Names must match tests/optim/test_optim.cpp.
OPTIM_CASES = [
    ("sgd", lambda w, b: torch.optim.SGD([w, b], lr=0.1)),
    ("sgd_momentum", lambda w, b: torch.optim.SGD([w, b], lr=0.1, momentum=0.9)),
    ("sgd_nesterov_wd", lambda w, b: torch.optim.SGD([w, b], lr=0.05, momentum=0.9, nesterov=True,
                                                     weight_decay=0.01)),
    ("sgd_dampening", lambda w, b: torch.optim.SGD([w, b], lr=0.1, momentum=0.5, dampening=0.3)),
    ("sgd_groups", lambda w, b: torch.optim.SGD([{"params": [w], "lr": 0.1},
                                                 {"params": [b], "lr": 0.01, "momentum": 0.9}])),
    ("adam", lambda w, b: torch.optim.Adam([w, b], lr=0.01)),
    ("adam_amsgrad_wd", lambda w, b: torch.optim.Adam([w, b], lr=0.01, betas=(0.8, 0.99),
                                                      weight_decay=0.1, amsgrad=True)),
    ("adamw", lambda w, b: torch.optim.AdamW([w, b], lr=0.01, weight_decay=0.05)),
    ("rmsprop", lambda w, b: torch.optim.RMSprop([w, b], lr=0.01)),
    ("rmsprop_centered_momentum", lambda w, b: torch.optim.RMSprop(
        [w, b], lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01)),
    ("adagrad", lambda w, b: torch.optim.Adagrad([w, b], lr=0.1, lr_decay=0.01,
                                                 initial_accumulator_value=0.1)),
    ("adamax", lambda w, b: torch.optim.Adamax([w, b], lr=0.05, weight_decay=0.01)),
    ("radam", lambda w, b: torch.optim.RAdam([w, b], lr=0.05)),
    ("radam_betas_wd", lambda w, b: torch.optim.RAdam([w, b], lr=0.05, betas=(0.8, 0.9), weight_decay=0.01)),
    # NAdam's foreach form: torch 1.13's single-tensor form (its default) multiplies mu_product_next
    # by mu a second time; the foreach form follows the paper's rule.
    ("nadam", lambda w, b: torch.optim.NAdam([w, b], lr=0.05, foreach=True)),
    ("nadam_betas_wd", lambda w, b: torch.optim.NAdam([w, b], lr=0.05, betas=(0.8, 0.95), weight_decay=0.01,
                                                      momentum_decay=0.01, foreach=True)),
]

S = torch.optim.lr_scheduler
PLATEAU_METRICS = [1, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
# Learning-rate schedules, 12 steps each, on SGD with two groups (lr 0.1 and 0.01, momentum 0.9).
SCHED_CASES = [
    ("step", lambda o: S.StepLR(o, 3, 0.5)),
    ("multistep", lambda o: S.MultiStepLR(o, [2, 5, 6], 0.3)),
    ("exponential", lambda o: S.ExponentialLR(o, 0.9)),
    ("cosine", lambda o: S.CosineAnnealingLR(o, 5, 0.001)),
    ("linear", lambda o: S.LinearLR(o, 0.25, 1.0, 4)),
    ("onecycle", lambda o: S.OneCycleLR(o, 1.0, total_steps=12)),
    ("onecycle_three_phase_linear", lambda o: S.OneCycleLR(o, 1.0, total_steps=12, pct_start=0.25,
                                                           anneal_strategy="linear", three_phase=True)),
    ("sequential", lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.1, 1.0, 3), S.ExponentialLR(o, 0.9)], [3])),
    ("plateau", lambda o: S.ReduceLROnPlateau(o, patience=2, factor=0.5, cooldown=1)),
    ("lambda", lambda o: S.LambdaLR(o, lambda e: 0.95 ** e * (e + 1) / (e + 2))),
    ("lambda_per_group", lambda o: S.LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: 0.5 ** (e // 3)])),
    ("constant", lambda o: S.ConstantLR(o, factor=0.5, total_iters=4)),
    ("polynomial", lambda o: S.PolynomialLR(o, total_iters=6, power=2.0)),
    ("warm_restarts", lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001)),
    ("warm_restarts_fixed", lambda o: S.CosineAnnealingWarmRestarts(o, T_0=4)),
    ("cyclic_triangular2", lambda o: S.CyclicLR(o, 0.01, 0.1, step_size_up=2, step_size_down=3,
                                                mode="triangular2")),
    ("cyclic_exp_range", lambda o: S.CyclicLR(o, 0.01, 0.1, step_size_up=3, mode="exp_range", gamma=0.9,
                                              cycle_momentum=False)),
    ("multiplicative", lambda o: S.MultiplicativeLR(o, lambda e: 0.9 if e % 2 else 1.05)),
    ("multiplicative_per_group", lambda o: S.MultiplicativeLR(o, [lambda e: 0.95, lambda e: 1 / (1 + 0.1 * e)])),
    ("chained", lambda o: S.ChainedScheduler([S.ConstantLR(o, factor=0.1, total_iters=2), S.ExponentialLR(o, 0.9)])),
    ("chained_three", lambda o: S.ChainedScheduler([S.LinearLR(o, 0.2, 1.0, 4), S.MultiStepLR(o, [3, 7], 0.5),
                                                    S.MultiplicativeLR(o, lambda e: 0.97)])),
    ("sequential_multiplicative", lambda o: S.SequentialLR(
        o, [S.ExponentialLR(o, 0.8), S.MultiplicativeLR(o, lambda e: 0.9 if e % 3 else 1.2)], [4])),
]


def write_sched(path, steps=11):
    import warnings
    warnings.simplefilter("ignore")
    lines = []
    for name, make in SCHED_CASES:
        w = torch.zeros(2, requires_grad=True)
        b = torch.zeros(2, requires_grad=True)
        opt = torch.optim.SGD([{"params": [w], "lr": 0.1, "momentum": 0.9},
                               {"params": [b], "lr": 0.01, "momentum": 0.9}])
        sched = make(opt)
        lines.append(f"case {name}\n")
        for k in range(steps + 1):
            lrs = torch.tensor([g["lr"] for g in opt.param_groups], dtype=torch.float64)
            ms = torch.tensor([g["momentum"] for g in opt.param_groups], dtype=torch.float64)
            lines.append(fmt_tensor("lr", lrs, 17))
            lines.append(fmt_tensor("m", ms, 17))
            opt.step()
            if name == "plateau":
                sched.step(PLATEAU_METRICS[k])
            elif k < steps:
                sched.step()
        lines.append("end\n")
    with open(path, "w") as f:
        f.writelines(lines)
    print(f"wrote {len(SCHED_CASES)} schedules to {path}")


def regression_problem(dtype):
    """The optimizer references' data (x, y) and starting point (w, b)."""
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.uniform(-1, 1, size=(5, 4)), dtype=dtype)
    y = torch.tensor(rng.uniform(-0.5, 0.5, size=(5, 3)), dtype=dtype)
    w0 = torch.tensor(rng.uniform(-1, 1, size=(3, 4)), dtype=dtype)
    b0 = torch.tensor(rng.uniform(-1, 1, size=(3,)), dtype=dtype)
    return x, y, w0, b0


def write_optim(dtype, path, steps=10):
    digits = 9 if dtype == torch.float32 else 17
    x, y, w0, b0 = regression_problem(dtype)
    lines = []
    for name, make in OPTIM_CASES:
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        opt = make(w, b)
        lines.append(f"case {name}\n")
        for tag, t in (("x", x), ("y", y), ("w", w), ("b", b)):
            lines.append(fmt_tensor(tag, t, digits))
        for _ in range(steps):
            opt.zero_grad()
            loss = ((torch.tanh(x @ w.t() + b) - y) ** 2).mean()
            loss.backward()
            opt.step()
            lines.append(fmt_tensor("w", w, digits))
            lines.append(fmt_tensor("b", b, digits))
        lines.append("end\n")
    with open(path, "w") as f:
        f.writelines(lines)
    print(f"wrote {len(OPTIM_CASES)} optimizer trajectories to {path}")


# L-BFGS trajectories (float64): steps of torch.optim.LBFGS with a closure, on the regression of
# write_optim ("tanh") or on Rosenbrock's function of w plus b^2 ("rosenbrock", from (-1.5, 2)).
# Each step records the loss it returns, w, b and the state's func_evals and n_iter. Names must match
# tests/optim/test_lbfgs.cpp.
LBFGS_CASES = [
    ("fixed_step", "tanh", 3, {"lr": 0.2}),
    ("strong_wolfe", "tanh", 3, {"line_search_fn": "strong_wolfe"}),
    ("short_history", "tanh", 4, {"lr": 0.1, "max_iter": 6, "history_size": 2}),
    ("wolfe_max_eval", "tanh", 3, {"lr": 0.7, "max_iter": 10, "max_eval": 8, "history_size": 3,
                                   "line_search_fn": "strong_wolfe"}),
    ("rosenbrock_wolfe", "rosenbrock", 4, {"line_search_fn": "strong_wolfe", "max_iter": 15}),
    # Steps of 20 overshoot: the zoom's cubic minima fall near the bracket's ends (and move inside).
    ("wolfe_long_step", "tanh", 4, {"lr": 20, "max_iter": 15, "line_search_fn": "strong_wolfe"}),
    ("rosenbrock_long_step", "rosenbrock", 4, {"lr": 20, "max_iter": 15, "line_search_fn": "strong_wolfe"}),
    ("rosenbrock", "rosenbrock", 3, {"lr": 0.01, "max_iter": 10, "tolerance_change": 1e-6}),
]


def write_lbfgs(path):
    dtype = torch.float64
    x, y, tanh_w, tanh_b = regression_problem(dtype)
    lines = []
    for name, problem, steps, kwargs in LBFGS_CASES:
        if problem == "tanh":
            w, b = tanh_w.clone().requires_grad_(True), tanh_b.clone().requires_grad_(True)
        else:
            w = torch.tensor([-1.5, 2.0], dtype=dtype, requires_grad=True)
            b = torch.tensor([0.5], dtype=dtype, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], **kwargs)

        def closure():
            opt.zero_grad()
            if problem == "tanh":
                loss = ((torch.tanh(x @ w.t() + b) - y) ** 2).mean()
            else:
                loss = (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2 + (b ** 2).sum()
            loss.backward()
            return loss

        lines.append(f"case {name}\n")
        for tag, t in (("x", x), ("y", y), ("w", w), ("b", b)):
            lines.append(fmt_tensor(tag, t, 17))
        for _ in range(steps):
            loss = opt.step(closure)
            state = opt.state[w]
            lines.append(fmt_tensor("loss", loss.reshape(1), 17))
            lines.append(fmt_tensor("w", w, 17))
            lines.append(fmt_tensor("b", b, 17))
            lines.append(fmt_tensor("evals", torch.tensor([state["func_evals"], state["n_iter"]],
                                                          dtype=dtype), 17))
        lines.append("end\n")
    with open(path, "w") as f:
        f.writelines(lines)
    print(f"wrote {len(LBFGS_CASES)} L-BFGS trajectories to {path}")


# ---- safetensors -------------------------------------------------------------------------------
# Debian has no python3-safetensors, so these follow the format's specification directly, laid out
# as safetensors.torch.save_file lays files out (metadata {"format": "pt"}, header padded with
# spaces to 8 bytes, tensors in name order).
ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
             torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int8: "I8",
             torch.uint8: "U8", torch.bool: "BOOL"}


def st_write(path, tensors, metadata=None):
    import json
    import struct
    header = {"__metadata__": dict(metadata or {"format": "pt"})}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def st_read(path):
    import json
    import struct
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    inverse = {v: k for k, v in ST_DTYPES.items()}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dtype = inverse[info["dtype"]]
        t = torch.frombuffer(bytearray(body[b:e]), dtype=dtype) if e > b else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out, header.get("__metadata__", {})


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def write_safetensors_refs(root):
    net = mlp()
    st_write(os.path.join(root, "torch_mlp.safetensors"), net.state_dict())
    x = torch.tensor(np.random.default_rng(3).uniform(-1, 1, size=(3, 4)), dtype=torch.float32)
    with open(os.path.join(root, "torch_mlp_io.txt"), "w") as f:
        f.write("case mlp\n" + fmt_tensor("x", x, 9) + fmt_tensor("y", net(x), 9) + "end\n")
    st_write(os.path.join(root, "torch_dtypes.safetensors"), {
        "f16": torch.tensor([1.5, -2.0, 65504.0, 6.1e-05], dtype=torch.float16),
        "bf16": torch.tensor([1.0, -3.5], dtype=torch.bfloat16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "flag": torch.tensor([True, False, True]),
        "f64": torch.tensor([[0.25, -1e300]], dtype=torch.float64),
        "i64": torch.tensor([-(2 ** 62), 7], dtype=torch.int64),
        "i32": torch.tensor([-5], dtype=torch.int32),
        "u8": torch.tensor([255, 0], dtype=torch.uint8),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(3.5),
    })
    print("wrote torch_mlp.safetensors, torch_mlp_io.txt, torch_dtypes.safetensors")


def contract_net():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.GELU(), nn.Flatten(),
                         nn.Linear(72, 16), nn.LayerNorm(16), nn.Dropout(0.1), nn.Linear(16, 10))


def write_eval_refs(root, stem, case, net, warmup_shape, warmups, x_shape, x_seed):
    """Runs `net` in training mode on `warmups` random batches (moving batch-norm statistics off
    their defaults), then saves its state dict and its eval-mode output for a fixed input."""
    net.train()
    for _ in range(warmups):
        net(torch.randn(*warmup_shape))
    net.eval()
    st_write(os.path.join(root, f"{stem}.safetensors"), net.state_dict())
    x = torch.tensor(np.random.default_rng(x_seed).uniform(-1, 1, size=x_shape), dtype=torch.float32)
    with torch.no_grad():
        y = net(x)
    with open(os.path.join(root, f"{stem}_io.txt"), "w") as f:
        f.write(f"case {case}\n" + fmt_tensor("x", x, 9) + fmt_tensor("y", y, 9) + "end\n")
    print(f"wrote {stem}.safetensors and its output")


def write_contract_refs(root):
    """The network of the nn API contract, with trained-looking batch-norm statistics."""
    torch.manual_seed(1)
    write_eval_refs(root, "torch_contract_net", "contract", contract_net(), (8, 1, 12, 12), 3, (2, 1, 12, 12), 5)


def write_encoder_refs(root):
    """TransformerEncoderLayer (d_model 8, 2 heads, ff 16, batch_first), post-norm and pre-norm."""
    x = torch.tensor(np.random.default_rng(9).uniform(-1, 1, size=(2, 5, 8)), dtype=torch.float32)
    kpm = torch.tensor([[0, 0, 0, 0, 1], [0, 0, 1, 1, 1]], dtype=torch.bool)
    lines = []
    for norm_first in (False, True):
        torch.manual_seed(2)
        layer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True,
                                                 norm_first=norm_first, activation="gelu")
        layer.eval()
        name = "pre" if norm_first else "post"
        st_write(os.path.join(root, f"torch_encoder_{name}.safetensors"), layer.state_dict())
        with torch.no_grad():
            y = layer(x, src_key_padding_mask=kpm)
        # PyTorch's fast path returns zeros at padded positions; compare the others only.
        y = y.masked_fill(kpm.unsqueeze(-1), 0.0)
        lines.append(f"case {name}\n" + fmt_tensor("x", x, 9) + fmt_tensor("y", y, 9) + "end\n")
    with open(os.path.join(root, "torch_encoder_io.txt"), "w") as f:
        f.writelines(lines)
    print("wrote TransformerEncoderLayer references")


def write_transformer_refs(root):
    """nn.Transformer (d_model 8, 2 heads, 2 + 2 layers, ff 16, gelu, batch_first), post-norm and
    pre-norm, with a causal target mask and key padding masks: the output and the gradients of
    sum(y * w) for src, tgt and two weights. Training mode with dropout 0 (PyTorch's eval fast
    path would zero the padded positions)."""
    rng = np.random.default_rng(21)
    src = torch.tensor(rng.uniform(-1, 1, size=(2, 5, 8)), dtype=torch.float32)
    tgt = torch.tensor(rng.uniform(-1, 1, size=(2, 4, 8)), dtype=torch.float32)
    w = torch.tensor(rng.uniform(-1, 1, size=(2, 4, 8)), dtype=torch.float32)
    src_kpm = torch.tensor([[0, 0, 0, 0, 1], [0, 0, 1, 1, 1]], dtype=torch.bool)
    tgt_kpm = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    causal = torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1)
    lines = []
    for norm_first in (False, True):
        torch.manual_seed(22)
        model = torch.nn.Transformer(8, 2, 2, 2, dim_feedforward=16, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=norm_first)
        name = "pre" if norm_first else "post"
        st_write(os.path.join(root, f"torch_transformer_{name}.safetensors"), model.state_dict())
        s, t = src.clone().requires_grad_(), tgt.clone().requires_grad_()
        y = model(s, t, tgt_mask=causal, src_key_padding_mask=src_kpm, tgt_key_padding_mask=tgt_kpm,
                  memory_key_padding_mask=src_kpm)
        (y * w).sum().backward()
        params = dict(model.named_parameters())
        lines.append(f"case {name}\n" + fmt_tensor("src", src, 9) + fmt_tensor("tgt", tgt, 9) + fmt_tensor("w", w, 9)
                     + fmt_tensor("y", y, 9) + fmt_tensor("src_grad", s.grad, 9) + fmt_tensor("tgt_grad", t.grad, 9)
                     + fmt_tensor("enc_linear1_grad", params["encoder.layers.0.linear1.weight"].grad, 9)
                     + fmt_tensor("dec_cross_in_proj_grad", params["decoder.layers.1.multihead_attn.in_proj_weight"].grad, 9)
                     + "end\n")
    with open(os.path.join(root, "torch_transformer_io.txt"), "w") as f:
        f.writelines(lines)
    print("wrote Transformer references")


class BasicBlock(torch.nn.Module):
    """torchvision's BasicBlock (the same names), without the torchvision dependency."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))


def write_block_refs(root):
    torch.manual_seed(4)
    write_eval_refs(root, "torch_basic_block", "block", BasicBlock(3, 6, 2), (4, 3, 8, 8), 2, (2, 3, 8, 8), 11)


def write_rnn_refs(root):
    """LSTM (2 layers, bidirectional, batch_first) and GRU: outputs, final states, input grads."""
    x0 = torch.tensor(np.random.default_rng(13).uniform(-1, 1, size=(2, 5, 3)), dtype=torch.float32)
    lines = []
    for name in ("lstm", "gru"):
        torch.manual_seed(6)
        if name == "lstm":
            net = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
        else:
            net = torch.nn.GRU(3, 4, batch_first=True)
        st_write(os.path.join(root, f"torch_{name}.safetensors"), net.state_dict())
        x = x0.clone().requires_grad_(True)
        y, state = net(x)
        h = state[0] if name == "lstm" else state
        (y.sum() + h.sum() * 2).backward()
        lines.append(f"case {name}\n" + fmt_tensor("x", x0, 9) + fmt_tensor("y", y, 9) + fmt_tensor("h", h, 9) +
                     fmt_tensor("gx", x.grad, 9) + "end\n")
    with open(os.path.join(root, "torch_rnn_io.txt"), "w") as f:
        f.writelines(lines)
    print("wrote LSTM and GRU references")


def write_rnn_cell_refs(root):
    """RNN (batch_first; relu: 2 layers, bidirectional; tanh: one layer, h_0 given) and the cells
    RNNCell, LSTMCell, GRUCell (states given): outputs, final states, input and state grads."""
    rng = np.random.default_rng(17)
    seq = torch.tensor(rng.uniform(-1, 1, size=(2, 5, 3)), dtype=torch.float32)
    x1 = torch.tensor(rng.uniform(-1, 1, size=(2, 3)), dtype=torch.float32)
    h1 = torch.tensor(rng.uniform(-1, 1, size=(2, 4)), dtype=torch.float32)
    c1 = torch.tensor(rng.uniform(-1, 1, size=(2, 4)), dtype=torch.float32)
    lines = []
    for name in ("rnn_relu", "rnn_tanh"):
        torch.manual_seed(18)
        if name == "rnn_relu":
            net = torch.nn.RNN(3, 4, num_layers=2, nonlinearity="relu", batch_first=True, bidirectional=True)
            h0 = None
        else:
            net = torch.nn.RNN(3, 4, batch_first=True)
            h0 = h1.unsqueeze(0).clone().requires_grad_(True)
        st_write(os.path.join(root, f"torch_{name}.safetensors"), net.state_dict())
        x = seq.clone().requires_grad_(True)
        y, h = net(x, h0)
        (y.sum() + h.sum() * 2).backward()
        lines.append(f"case {name}\n" + fmt_tensor("x", seq, 9) + fmt_tensor("y", y, 9) + fmt_tensor("h", h, 9) +
                     fmt_tensor("gx", x.grad, 9) + (fmt_tensor("gh0", h0.grad, 9) if h0 is not None else "") +
                     "end\n")
    for name in ("rnncell", "lstmcell", "grucell"):
        torch.manual_seed(19)
        cls = {"rnncell": torch.nn.RNNCell, "lstmcell": torch.nn.LSTMCell, "grucell": torch.nn.GRUCell}[name]
        cell = cls(3, 4)
        st_write(os.path.join(root, f"torch_{name}.safetensors"), cell.state_dict())
        x, h = x1.clone().requires_grad_(True), h1.clone().requires_grad_(True)
        if name == "lstmcell":
            c = c1.clone().requires_grad_(True)
            h_next, c_next = cell(x, (h, c))
            (h_next.sum() + c_next.sum() * 2).backward()
            extra = fmt_tensor("c_next", c_next, 9) + fmt_tensor("gc", c.grad, 9)
        else:
            h_next = cell(x, h)
            h_next.sum().backward()
            extra = ""
        lines.append(f"case {name}\n" + fmt_tensor("x", x1, 9) + fmt_tensor("h", h1, 9) + fmt_tensor("c", c1, 9) +
                     fmt_tensor("h_next", h_next, 9) + fmt_tensor("gx", x.grad, 9) + fmt_tensor("gh", h.grad, 9) +
                     extra + "end\n")
    with open(os.path.join(root, "torch_rnn_cells_io.txt"), "w") as f:
        f.writelines(lines)
    print("wrote RNN and cell references")


def explain_net():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(96, 5)).double()


def write_explain_refs(root):
    """Attribution and attacks by their definitions (Captum's integration points and weights, its
    occlusion windows and averaging, Grad-CAM, FGSM, PGD) on a small CNN, in float64."""
    import itertools
    F = torch.nn.functional
    torch.manual_seed(3)
    net = explain_net()
    x = torch.tensor(np.random.default_rng(11).uniform(0, 1, size=(3, 1, 8, 8)), dtype=torch.float64)
    target = torch.tensor([0, 2, 4])
    labels = torch.tensor([1, 3, 0])
    out = {f"model.{k}": v for k, v in net.state_dict().items()}
    out.update(x=x, target=target, labels=labels)

    def picked(logits, t):
        return logits.gather(1, t[:, None])[:, 0]

    def input_grad(inp, t):
        inp = inp.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(picked(net(inp), t).sum(), inp)
        return g

    out["saliency_abs"] = input_grad(x, target).abs()
    out["saliency_signed"] = input_grad(x, target)

    def rule(method, n):
        if method == "gauss_legendre":
            nodes, weights = np.polynomial.legendre.leggauss(n)
            return list(0.5 * (nodes + 1)), list(0.5 * weights)
        w = [1 / n] * n
        if method == "trapezoid":
            w[0] /= 2
            w[-1] /= 2
            return list(np.linspace(0, 1, n)), w
        start, stop = {"left": (0, 1 - 1 / n), "right": (1 / n, 1), "middle": (1 / (2 * n), 1 - 1 / (2 * n))}[method]
        return list(np.linspace(start, stop, n)), w

    def integrated(baseline, method, n):
        alphas, weights = rule(method, n)
        scaled = torch.cat([baseline + a * (x - baseline) for a in alphas]).requires_grad_(True)
        (g,) = torch.autograd.grad(picked(net(scaled), target.repeat(n)).sum(), scaled)
        total = (g.reshape((n,) + x.shape) * torch.tensor(weights, dtype=x.dtype).reshape(n, 1, 1, 1, 1)).sum(0)
        attr = (x - baseline) * total
        with torch.no_grad():
            gain = picked(net(x), target) - picked(net(baseline), target)
        return attr, attr.reshape(len(x), -1).sum(1) - gain

    zero = torch.zeros_like(x)
    for method in ("left", "right", "middle", "trapezoid", "gauss_legendre"):
        out[f"ig_{method}_7"], out[f"ig_{method}_7_delta"] = integrated(zero, method, 7)
        points, weights = rule(method, 7)
        out[f"points_{method}_7"] = torch.tensor(points, dtype=torch.float64)
        out[f"weights_{method}_7"] = torch.tensor(weights, dtype=torch.float64)
    out["ig_gauss_legendre_50"], out["ig_gauss_legendre_50_delta"] = integrated(zero, "gauss_legendre", 50)
    points, weights = rule("gauss_legendre", 50)
    out["points_gauss_legendre_50"] = torch.tensor(points, dtype=torch.float64)
    out["weights_gauss_legendre_50"] = torch.tensor(weights, dtype=torch.float64)
    half = torch.full((1, 8, 8), 0.5, dtype=torch.float64)
    out["ig_middle_6_half"], out["ig_middle_6_half_delta"] = integrated(half.expand_as(x), "middle", 6)

    acts = {}
    hook = net[3].register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    (g,) = torch.autograd.grad(picked(net(x), target).sum(), acts["a"])
    hook.remove()
    cam = ((g.mean(dim=(2, 3), keepdim=True) * acts["a"]).sum(1, keepdim=True)).detach()
    out["gradcam_raw"] = cam[:, 0]
    out["gradcam"] = F.interpolate(F.relu(cam), size=(8, 8), mode="bilinear", align_corners=False)[:, 0]

    def occlusion(window, stride, baseline):
        shape = x.shape[1:]
        counts = [int(np.ceil((s - w) / st)) + 1 for s, w, st in zip(shape, window, stride)]
        total, cover = torch.zeros_like(x), torch.zeros(shape, dtype=x.dtype)
        with torch.no_grad():
            ref = picked(net(x), target)
            for idx in itertools.product(*[range(c) for c in counts]):
                mask = torch.zeros(shape, dtype=x.dtype)
                mask[tuple(slice(i * st, i * st + w) for i, w, st in zip(idx, window, stride))] = 1
                drop = ref - picked(net(x * (1 - mask) + baseline * mask), target)
                total += drop.reshape(len(x), 1, 1, 1) * mask
                cover += mask
        return total / cover

    out["occlusion_3_2"] = occlusion((1, 3, 3), (1, 2, 2), 0.0)
    out["occlusion_4_4_half"] = occlusion((1, 4, 4), (1, 4, 4), 0.5)

    def loss_grad(inp, y):
        inp = inp.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(net(inp), y), inp)
        return g

    out["fgsm_0.1"] = (x + 0.1 * loss_grad(x, labels).sign()).clamp(0, 1)
    out["fgsm_targeted_0.1"] = (x - 0.1 * loss_grad(x, target).sign()).clamp(0, 1)
    adv = x.clone()
    for _ in range(4):
        adv = torch.min(torch.max(adv + 0.03 * loss_grad(adv, labels).sign(), x - 0.1), x + 0.1).clamp(0, 1)
    out["pgd_0.1_0.03_4"] = adv
    st_write(os.path.join(root, "torch_explain.safetensors"), {k: v.detach().contiguous() for k, v in out.items()})
    print("wrote torch_explain.safetensors")


def write_dynamic_rnn_refs(out):
    """Dynamically quantized LSTM and GRU (torch.ao.nn.quantized.dynamic, fbgemm's x86 definition:
    reduce_range=True) written out in torch's own observers and quantize functions: int8 weights
    from MinMaxObserver / PerChannelMinMaxObserver (qint8, symmetric); every projection quantizes
    its input with MinMaxObserver(quint8, reduce_range=True) over that input (the whole sequence
    for the input projection, h at each step for the recurrent one), sums the integers exactly and
    scales the sums by input scale * weight scale in float32 before adding the bias."""
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    def quantize_weight(w, per_channel):
        if per_channel:
            obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
            obs(w)
            sc, zp = obs.calculate_qparams()
            q = torch.quantize_per_channel(w, sc.double(), zp, 0, torch.qint8)
            return q.int_repr().long(), sc.float()
        obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
        obs(w)
        sc, zp = obs.calculate_qparams()
        q = torch.quantize_per_tensor(w, float(sc), int(zp), torch.qint8)
        return q.int_repr().long(), sc.float().expand(w.shape[0])

    def dynamic_linear(x, wq, ws, b):
        obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=True)
        obs(x)
        sc, zp = obs.calculate_qparams()
        xq = torch.quantize_per_tensor(x, float(sc), int(zp), torch.quint8).int_repr().long() - int(zp)
        acc = xq.reshape(-1, x.shape[-1]) @ wq.t()
        y = acc.float() * (sc.float() * ws) + b
        return y.reshape(*x.shape[:-1], wq.shape[0])

    def run(module, x, h0, c0, per_channel):
        lstm = isinstance(module, torch.nn.LSTM)
        hs, dirs = module.hidden_size, 2 if module.bidirectional else 1
        p = {k: v.detach() for k, v in module.named_parameters()}
        q = {k: quantize_weight(v, per_channel) for k, v in p.items() if k.startswith("weight")}
        seq = x.transpose(0, 1) if module.batch_first else x
        n = seq.shape[1]
        h_n, c_n = [], []
        for layer in range(module.num_layers):
            outs = []
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                xw = dynamic_linear(seq, *q["weight_ih" + sfx], p["bias_ih" + sfx])
                k = layer * dirs + d
                h = h0[k] if h0 is not None else torch.zeros(n, hs)
                c = c0[k] if c0 is not None else torch.zeros(n, hs)
                ys = [None] * seq.shape[0]
                for t in (range(seq.shape[0] - 1, -1, -1) if d else range(seq.shape[0])):
                    hw = dynamic_linear(h, *q["weight_hh" + sfx], p["bias_hh" + sfx])
                    if lstm:
                        i, f, g, o = (xw[t] + hw).split(hs, 1)
                        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                        h = torch.sigmoid(o) * torch.tanh(c)
                    else:
                        xr, xz, xn = xw[t].split(hs, 1)
                        hr, hz, hn = hw.split(hs, 1)
                        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                        h = (1 - z) * torch.tanh(xn + r * hn) + z * h
                    ys[t] = h
                outs.append(torch.stack(ys))
                h_n.append(h)
                c_n.append(c)
            seq = outs[0] if dirs == 1 else torch.cat(outs, 2)
        y = seq.transpose(0, 1) if module.batch_first else seq
        return y, torch.stack(h_n), torch.stack(c_n)

    torch.manual_seed(11)
    cases = (("dyn_lstm", torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True), (7, 3, 5), True, True),
             ("dyn_gru", torch.nn.GRU(5, 6, batch_first=True), (3, 7, 5), False, False))
    for name, module, x_shape, per_channel, with_state in cases:
        x = torch.randn(*x_shape) * 2
        dirs = 2 if module.bidirectional else 1
        n = x_shape[1] if not module.batch_first else x_shape[0]
        h0 = torch.randn(module.num_layers * dirs, n, module.hidden_size) * 0.5 if with_state else None
        c0 = torch.randn(module.num_layers * dirs, n, module.hidden_size) * 0.5 if with_state else None
        with torch.no_grad():
            y, h_n, c_n = run(module, x, h0, c0, per_channel)
        for k, v in module.named_parameters():
            out[f"{name}.{k}"] = v.detach()
        out[f"{name}.x"], out[f"{name}.y"], out[f"{name}.h_n"] = x, y, h_n
        if with_state:
            out[f"{name}.h0"], out[f"{name}.c0"], out[f"{name}.c_n"] = h0, c0, c_n
        # The same recurrence in float, to show what the quantization changes.
        with torch.no_grad():
            yf = module(x, (h0, c0) if with_state else None)[0] if isinstance(module, torch.nn.LSTM) else module(x)[0]
        print(f"{name}: max |int8 - float| = {(y - yf).abs().max().item():.4f}")


def write_quant_refs(root):
    """torch.quantize_per_tensor / quantize_per_channel (qint8 and quint8) and dequantize on inputs
    that reach both ends of the range and sit exactly on rounding ties."""
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(0, 2, size=(6, 5, 7)), dtype=torch.float32)
    scale = 0.0625  # a power of two: x = k/32 gives exact ties at half steps
    ties = torch.arange(-300, 301, dtype=torch.float32) / 32.0
    # +-inf left out: PyTorch casts inf to an integer (undefined behaviour; x86 gives qmin for +inf),
    # ember clamps it to the range's end (tests/quant/test_qtensor.cpp).
    ties = torch.cat([ties, torch.tensor([1e9, -1e9, 0.1, -0.1, 3.1416])])
    out = {"x": x, "ties": ties}
    for dtype, name in ((torch.qint8, "qint8"), (torch.quint8, "quint8")):
        zp = 3 if dtype == torch.qint8 else 128
        for label, inp in (("x", x), ("ties", ties)):
            for sc in (0.05, scale, 0.3):
                q = torch.quantize_per_tensor(inp, sc, zp, dtype)
                out[f"{name}.{label}.{sc}.int_repr"] = q.int_repr()
                out[f"{name}.{label}.{sc}.dequantize"] = q.dequantize()
        scales = torch.tensor([0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 0.07], dtype=torch.float32)
        zps = torch.tensor([0, 1, -3, 5, 7, -1, 2] if dtype == torch.qint8 else [0, 128, 3, 250, 17, 64, 255])
        for axis in (0, 1, 2):
            c = x.shape[axis]
            q = torch.quantize_per_channel(x, scales[:c].double(), zps[:c], axis, dtype)
            out[f"{name}.axis{axis}.int_repr"] = q.int_repr()
            out[f"{name}.axis{axis}.dequantize"] = q.dequantize()
        out[f"{name}.channel_zero_points"] = zps
    out["channel_scales"] = torch.tensor([0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 0.07], dtype=torch.float32)

    # Observers (torch.ao.quantization): ember's activation spec (quint8, affine, reduce_range) and
    # weight specs (qint8 symmetric, per tensor and per channel).
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver
    acts = torch.relu(x) * 1.7 + 0.05
    obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=True)
    obs(acts)
    obs(x)  # a second batch widens the range below zero
    sc, zp = obs.calculate_qparams()
    out["minmax.scale"], out["minmax.zero_point"] = sc, zp
    w = x.reshape(6, 35)
    obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    obs(w)
    sc, zp = obs.calculate_qparams()
    out["weight.scale"], out["weight.zero_point"] = sc, zp
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(w)
    sc, zp = obs.calculate_qparams()
    out["weight_per_channel.scale"], out["weight_per_channel.zero_point"] = sc.float(), zp
    # HistogramObserver's search on a known histogram: values at the bin centres of a distribution
    # with outliers (so any binning rule agrees), the range's ends included.
    lo, hi, bins = -0.5, 11.5, 2048
    width = (hi - lo) / bins
    rng = np.random.default_rng(8)
    raw = np.concatenate([np.abs(rng.normal(1.0, 0.5, size=20000)), rng.uniform(5, 11.4, size=30)])
    counts = np.bincount(((raw - lo) / width).astype(np.int64), minlength=bins)
    values = np.concatenate([np.repeat(lo + (np.arange(bins) + 0.5) * width, counts), [lo, hi]])
    hist_counts = np.bincount(np.minimum(((values - lo) / width).astype(np.int64), bins - 1), minlength=bins)
    obs = HistogramObserver(bins=bins, dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=True)
    obs.histogram = torch.tensor(hist_counts, dtype=torch.float32)
    obs.min_val = torch.tensor(lo)
    obs.max_val = torch.tensor(hi)
    new_min, new_max = obs._non_linear_param_search()
    out["histogram.values"] = torch.tensor(values, dtype=torch.float32)
    out["histogram.range"] = torch.tensor([float(new_min), float(new_max)], dtype=torch.float32)
    sc, zp = obs._calculate_qparams(new_min, new_max)
    out["histogram.scale"], out["histogram.zero_point"] = sc, zp
    write_dynamic_rnn_refs(out)
    st_write(os.path.join(root, "torch_quant.safetensors"), {k: v.contiguous() for k, v in out.items()})
    print("wrote torch_quant.safetensors")


def check_ember_file(root):
    """Loads the file ember wrote (tests/data/ember_mlp.safetensors) into PyTorch, strictly."""
    path = os.path.join(root, "ember_mlp.safetensors")
    if not os.path.exists(path):
        print(f"skip: {path} not written yet (run test_io once)")
        return
    tensors, meta = st_read(path)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    net.load_state_dict(tensors, strict=True)
    assert meta.get("format") == "pt", meta
    ref = mlp()
    x = torch.randn(5, 4)
    assert torch.equal(net(x), ref(x)), "ember's file does not reproduce the PyTorch model"
    print(f"PyTorch loaded {path} with strict=True and reproduces the model exactly")


def write_prune_refs(root):
    """torch.nn.utils.prune's masks on fixed weights: l1 unstructured (a fraction, then again, as
    PyTorch's PruningContainer combines them), ln structured after it (a count), L1 and L-inf
    structured on a convolution, global unstructured over two layers, a count; and the state-dict
    keys of a pruned layer and of one pruned then made permanent."""
    import torch.nn.utils.prune as prune
    rng = np.random.default_rng(13)

    def linear(i, o):
        m = torch.nn.Linear(i, o)
        with torch.no_grad():
            m.weight.copy_(torch.tensor(rng.normal(0, 1, size=(o, i)), dtype=torch.float32))
        return m

    out = {}
    lin = linear(5, 6)
    out["lin.weight"] = lin.weight.detach().clone()
    prune.l1_unstructured(lin, "weight", 0.3)
    out["l1.mask"] = lin.weight_mask.clone()
    prune.l1_unstructured(lin, "weight", 0.5)
    out["l1_twice.mask"] = lin.weight_mask.clone()
    prune.ln_structured(lin, "weight", 1, n=2, dim=0)
    out["l1_ln.mask"] = lin.weight_mask.clone()
    keys = ",".join(lin.state_dict().keys())
    prune.remove(lin, "weight")
    removed_keys = ",".join(lin.state_dict().keys())

    conv = torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(rng.normal(0, 1, size=(4, 3, 3, 3)), dtype=torch.float32))
    out["conv.weight"] = conv.weight.detach().clone()
    prune.ln_structured(conv, "weight", 0.5, n=1, dim=0)
    out["ln1_dim0.mask"] = conv.weight_mask.clone()
    prune.ln_structured(conv, "weight", 1, n=float("inf"), dim=1)
    out["ln_inf_dim1.mask"] = conv.weight_mask.clone()

    a, b = linear(4, 3), linear(3, 2)
    out["a.weight"], out["b.weight"] = a.weight.detach().clone(), b.weight.detach().clone()
    prune.l1_unstructured(a, "weight", 2)
    prune.global_unstructured([(a, "weight"), (b, "weight")], pruning_method=prune.L1Unstructured, amount=0.4)
    out["global.a_mask"], out["global.b_mask"] = a.weight_mask.clone(), b.weight_mask.clone()

    st_write(os.path.join(root, "torch_prune.safetensors"), out,
             {"format": "pt", "pruned_keys": keys, "removed_keys": removed_keys})
    print("wrote torch_prune.safetensors")


def onnx_net():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Conv2d(8, 8, 3, stride=2, padding=(1, 0), groups=2, bias=False), nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 16, 1), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 12), nn.ELU(1.3), nn.Linear(12, 12), nn.Softplus(beta=2.0), nn.Linear(12, 5), nn.Tanh())


def write_onnx_case(root, stem, net, x, torch_export=True, **export_args):
    """net's state dict, its eval-mode output for x and (torch_export) PyTorch's own ONNX export of
    it (opset 13)."""
    net.eval()
    st_write(os.path.join(root, f"torch_onnx_{stem}.safetensors"), net.state_dict())
    with torch.no_grad():
        y = net(x)
    st_write(os.path.join(root, f"torch_onnx_{stem}_io.safetensors"), {"input": x, "output": y})
    print(f"wrote torch_onnx_{stem}.safetensors and torch_onnx_{stem}_io.safetensors")
    if torch_export:
        torch.onnx.export(net, x, os.path.join(root, f"torch_onnx_{stem}.onnx"), opset_version=13,
                          input_names=["input"], output_names=["output"], **export_args)
        print(f"wrote torch_onnx_{stem}.onnx")


def write_onnx_refs(root):
    """Networks of the layers ember exports to ONNX, with PyTorch's exports of them, which anchor
    the interpreter of tools/onnx_check.py to PyTorch's reading of the operators."""
    nn = torch.nn
    # A CNN with trained-looking batch-norm statistics, exported with a symbolic batch.
    torch.manual_seed(3)
    net = onnx_net()
    net.train()
    for _ in range(3):
        net(torch.randn(8, 3, 12, 12))
    x = torch.tensor(np.random.default_rng(13).uniform(-1, 1, size=(2, 3, 12, 12)), dtype=torch.float32)
    write_onnx_case(root, "net", net, x, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})

    # Layer norm over two dims and over one, log_softmax: an MLP head.
    torch.manual_seed(5)
    head = nn.Sequential(nn.LayerNorm((4, 3)), nn.Flatten(), nn.Linear(24, 16), nn.GELU(approximate="tanh"),
                         nn.LayerNorm(16, eps=1e-3), nn.Linear(16, 6), nn.LogSoftmax(1))
    with torch.no_grad():
        for m in (head[0], head[4]):
            m.weight.copy_(torch.rand(m.weight.shape) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape) * 0.2)
    x = torch.tensor(np.random.default_rng(17).uniform(-2, 2, size=(3, 2, 4, 3)), dtype=torch.float32)
    write_onnx_case(root, "head", head, x)

    # LeNet-5 as LeCun drew it (tanh, average pooling), its second pooling padded, ceil_mode,
    # padding left out of the count.
    torch.manual_seed(6)
    lenet = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
                          nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                          nn.Flatten(), nn.Linear(16 * 6 * 6, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
                          nn.Linear(84, 10))
    x = torch.tensor(np.random.default_rng(19).uniform(-1, 1, size=(2, 1, 28, 28)), dtype=torch.float32)
    write_onnx_case(root, "lenet", lenet, x)

    # A DCGAN-style generator: transposed convolutions from a 1x1 code (no bias, then output_padding,
    # then groups with dilation, then a stride-1 "same" one), batch norm with running statistics.
    torch.manual_seed(8)
    gen = nn.Sequential(nn.ConvTranspose2d(6, 8, 4, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(4),
                        nn.LeakyReLU(0.2), nn.ConvTranspose2d(4, 4, 3, stride=2, groups=2, dilation=2), nn.ReLU(),
                        nn.ConvTranspose2d(4, 2, 3, padding=1), nn.Tanh())
    gen.train()
    for _ in range(3):
        gen(torch.randn(8, 6, 1, 1))
    x = torch.tensor(np.random.default_rng(23).uniform(-1, 1, size=(2, 6, 1, 1)), dtype=torch.float32)
    write_onnx_case(root, "gen", gen, x, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})

    # Upsampling: nearest by 2, bilinear to a size that is no multiple, bilinear with align_corners
    # by 1.5. ember exports the plan's index tables (Gather), not Resize: no PyTorch export to anchor.
    torch.manual_seed(9)
    up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                       nn.Upsample(size=(13, 9), mode="bilinear", align_corners=False), nn.Conv2d(4, 2, 3),
                       nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True))
    x = torch.tensor(np.random.default_rng(29).uniform(-1, 1, size=(2, 3, 5, 4)), dtype=torch.float32)
    write_onnx_case(root, "upsample", up, x, torch_export=False)

def distribution_cases(dtype):
    """torch.distributions' values at fixed parameters: each case's inputs, then its outputs."""
    D = torch.distributions
    t = lambda v: torch.tensor(v, dtype=dtype)
    cases = []
    loc, scale = t([[0.3, -1.2, 2.0], [0.0, 0.7, -0.4]]), t([0.5, 1.7, 0.9])
    value = t([[0.1, 0.4, 1.5], [-2.0, 0.9, 3.1]])
    n = D.Normal(loc, scale)
    loc2, scale2 = t([0.2, -0.5, 1.0]), t([[1.1, 0.6, 2.0], [0.4, 1.3, 0.8]])
    quantile = t([[0.1, 0.4, 0.95], [0.02, 0.5, 0.999]])
    cases.append(("normal", [("loc", loc), ("scale", scale), ("value", value), ("loc2", loc2),
                             ("scale2", scale2), ("quantile", quantile)],
                  [("log_prob", n.log_prob(value)), ("cdf", n.cdf(value)), ("icdf", n.icdf(quantile)),
                   ("entropy", n.entropy()),
                   ("mean", n.mean), ("variance", n.variance),
                   ("kl", D.kl_divergence(n, D.Normal(loc2, scale2)))]))
    low, high = t([-1.0, 0.5, 2.0]), t([1.5, 0.75, 6.0])
    value = t([[0.2, 0.6, 5.9], [-1.0, 0.7, 2.0]])
    u = D.Uniform(low, high)
    low2, high2 = t([-2.0, 0.0, 2.5]), t([2.0, 1.0, 7.0])
    cases.append(("uniform", [("low", low), ("high", high), ("value", value), ("low2", low2), ("high2", high2),
                              ("quantile", quantile)],
                  [("log_prob", u.log_prob(value)), ("cdf", u.cdf(value)), ("icdf", u.icdf(quantile)),
                   ("entropy", u.entropy()),
                   ("mean", u.mean), ("variance", u.variance), ("stddev", u.stddev),
                   ("kl", D.kl_divergence(u, D.Uniform(low2, high2)))]))
    rate, rate2 = t([0.5, 2.0, 1.3]), t([[1.5, 0.2, 1.3], [0.7, 4.0, 0.1]])
    value = t([[0.1, 2.0, 0.0], [3.5, 0.4, 1.2]])
    e = D.Exponential(rate)
    cases.append(("exponential", [("rate", rate), ("value", value), ("rate2", rate2), ("quantile", quantile)],
                  [("log_prob", e.log_prob(value)), ("cdf", e.cdf(value)), ("icdf", e.icdf(quantile)),
                   ("entropy", e.entropy()), ("mean", e.mean), ("variance", e.variance), ("stddev", e.stddev),
                   ("kl", D.kl_divergence(e, D.Exponential(rate2)))]))
    loc, scale = t([[0.3, -1.2, 2.0], [0.0, 0.7, -0.4]]), t([0.5, 1.7, 0.9])
    value = t([[0.1, 0.4, 1.5], [-2.0, 0.7, 3.1]])
    lp = D.Laplace(loc, scale)
    loc2, scale2 = t([0.2, -0.5, 1.0]), t([[1.1, 0.6, 2.0], [0.4, 1.3, 0.8]])
    cases.append(("laplace", [("loc", loc), ("scale", scale), ("value", value), ("loc2", loc2),
                              ("scale2", scale2), ("quantile", quantile)],
                  [("log_prob", lp.log_prob(value)), ("cdf", lp.cdf(value)), ("icdf", lp.icdf(quantile)),
                   ("entropy", lp.entropy()), ("mean", lp.mean), ("variance", lp.variance), ("stddev", lp.stddev),
                   ("kl", D.kl_divergence(lp, D.Laplace(loc2, scale2)))]))
    probs, probs2 = t([0.1, 0.5, 0.97, 0.0, 1.0]), t([0.3, 0.0, 0.9, 0.2, 1.0])
    value = t([[1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0, 1.0]])
    b = D.Bernoulli(probs=probs)
    cases.append(("bernoulli_probs", [("probs", probs), ("value", value), ("probs2", probs2)],
                  [("log_prob", b.log_prob(value)), ("entropy", b.entropy()), ("logits", b.logits),
                   ("mean", b.mean), ("variance", b.variance),
                   ("kl", D.kl_divergence(b, D.Bernoulli(probs=probs2)))]))
    logits, logits2 = t([[-3.0, 0.4], [2.5, 25.0]]), t([1.0, -0.7])
    value = t([[0.0, 1.0], [1.0, 1.0]])
    b = D.Bernoulli(logits=logits)
    cases.append(("bernoulli_logits", [("logits", logits), ("value", value), ("logits2", logits2)],
                  [("log_prob", b.log_prob(value)), ("entropy", b.entropy()), ("probs", b.probs),
                   ("kl", D.kl_divergence(b, D.Bernoulli(logits=logits2)))]))
    probs = t([[1.0, 2.0, 0.0, 5.0], [0.25, 0.25, 0.25, 0.25]])
    probs2 = t([[0.4, 0.1, 0.2, 0.3], [0.5, 0.0, 0.3, 0.2]])
    value = t([3, 0]).long()
    c = D.Categorical(probs=probs)
    cases.append(("categorical_probs", [("probs", probs), ("value", value.to(dtype)), ("probs2", probs2)],
                  [("log_prob", c.log_prob(value)), ("entropy", c.entropy()), ("probs_n", c.probs),
                   ("logits", c.logits), ("kl", D.kl_divergence(c, D.Categorical(probs=probs2)))]))
    logits = t([[0.5, -1.0, 2.0, 0.0, 1.5], [3.0, 3.0, -2.0, 0.1, -0.4], [0.0, 0.0, 0.0, 0.0, 0.0]])
    logits2 = t([1.0, 0.0, -1.0, 2.0, 0.5])
    value = t([[4, 1, 2], [0, 0, 3]]).long()
    c = D.Categorical(logits=logits)
    cases.append(("categorical_logits", [("logits", logits), ("value", value.to(dtype)), ("logits2", logits2)],
                  [("log_prob", c.log_prob(value)), ("entropy", c.entropy()), ("probs", c.probs),
                   ("logits_n", c.logits), ("kl", D.kl_divergence(c, D.Categorical(logits=logits2)))]))
    return cases


def write_distributions(dtype, path):
    digits = 9 if dtype == torch.float32 else 17
    lines = []
    for name, inputs, outputs in distribution_cases(dtype):
        lines.append(f"case {name}\n")
        for tag, v in inputs + outputs:
            lines.append(fmt_tensor(tag, v, digits))
        lines.append("end\n")
    with open(path, "w") as f:
        f.writelines(lines)
    print(f"wrote {len(lines)} lines of distributions to {path}")


def main():
    torch.set_num_threads(1)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
    os.makedirs(root, exist_ok=True)
    write(torch.float32, os.path.join(root, "torch_ref_float32.txt"))
    write(torch.float64, os.path.join(root, "torch_ref_float64.txt"))
    write_optim(torch.float32, os.path.join(root, "torch_optim_float32.txt"))
    write_optim(torch.float64, os.path.join(root, "torch_optim_float64.txt"))
    write_sched(os.path.join(root, "torch_sched.txt"))
    write_lbfgs(os.path.join(root, "torch_lbfgs_float64.txt"))
    write_distributions(torch.float32, os.path.join(root, "torch_distributions_float32.txt"))
    write_distributions(torch.float64, os.path.join(root, "torch_distributions_float64.txt"))
    write_safetensors_refs(root)
    write_contract_refs(root)
    write_encoder_refs(root)
    write_transformer_refs(root)
    write_block_refs(root)
    write_rnn_refs(root)
    write_rnn_cell_refs(root)
    write_explain_refs(root)
    write_quant_refs(root)
    write_prune_refs(root)
    write_onnx_refs(root)
    check_ember_file(root)
    print(f"torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
