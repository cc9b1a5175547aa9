#!/usr/bin/env python3
"""Checks ONNX files: the onnx package's checker (with strict shape inference), then the graph
evaluated by the small NumPy interpreter below against the outputs a reference computed.

    python3 tools/onnx_check.py MODEL.onnx IO.safetensors [MODEL2.onnx IO2.safetensors ...]

IO.safetensors holds "input" and "output" (float32). The interpreter follows the ONNX operator
specification (opset 13) for the ops ember's exporter writes and those torch.onnx.export writes
for the same layers, in float64; it is anchored by running PyTorch's own export of a model against
PyTorch's output (tests/data/torch_onnx_net.*). Exit status 1 on any failure.

Needs Debian's python3-onnx and python3-numpy (scripts/install-deps.sh --onnx); no PyTorch.
"""
import json
import math
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + begin:8 + n + end], dtype="<f4").reshape(info["shape"])
    return out


def attrs_of(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def conv_attrs(a):
    """group, strides, dilations and pads (top, left, bottom, right) of a Conv or ConvTranspose."""
    return a.get("group", 1), a.get("strides", [1, 1]), a.get("dilations", [1, 1]), a.get("pads", [0, 0, 0, 0])


def conv(x, w, b, a):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    group, (sh, sw), (dh, dw), (pt, pl, pb, pr) = conv_attrs(a)
    if c != cg * group:
        raise ValueError(f"Conv: {c} input channels, weight {w.shape} with group {group}")
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // group
    y = np.empty((n, o, ho, wo))
    for g in range(group):
        xg = xp[:, g * cg:(g + 1) * cg]
        cols = np.empty((n, cg, kh, kw, ho, wo))
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = xg[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
        y[:, g * og:(g + 1) * og] = np.einsum("ocij,ncijhw->nohw", w[g * og:(g + 1) * og], cols)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def conv_transpose(x, w, b, a):
    """Each input pixel spreads its kernel-weighted values over the output grid at the stride;
    the grid is then cropped by the pads (output_padding extends its end)."""
    n, c, h, wd = x.shape
    cw, mg, kh, kw = w.shape
    group, (sh, sw), (dh, dw), (pt, pl, pb, pr) = conv_attrs(a)
    oph, opw = a.get("output_padding", [0, 0])
    if c != cw or c % group:
        raise ValueError(f"ConvTranspose: {c} input channels, weight {w.shape} with group {group}")
    cg = c // group
    full = np.zeros((n, mg * group, sh * (h - 1) + dh * (kh - 1) + 1 + oph, sw * (wd - 1) + dw * (kw - 1) + 1 + opw))
    for g in range(group):
        xg, wg = x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (h - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (wd - 1) + 1, sw)
                full[:, g * mg:(g + 1) * mg, rows, cols] += np.einsum("nchw,cm->nmhw", xg, wg[:, :, i, j])
    ho = full.shape[2] - pt - pb
    wo = full.shape[3] - pl - pr
    y = full[:, :, pt:pt + ho, pl:pl + wo]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def pooled_size(size, k, s, d, p0, p1, ceil_mode):
    span = size + p0 + p1 - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p0:  # the last window starts in the end padding
        out -= 1
    return out


def max_pool(x, a):
    n, c, h, w = x.shape
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    dh, dw = a.get("dilations", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    ceil_mode = a.get("ceil_mode", 0) == 1
    ho = pooled_size(h, kh, sh, dh, pt, pb, ceil_mode)
    wo = pooled_size(w, kw, sw, dw, pl, pr, ceil_mode)
    extra_h = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb))
    extra_w = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb + extra_h), (pl, pr + extra_w)), constant_values=-np.inf)
    y = np.full((n, c, ho, wo), -np.inf)
    for i in range(kh):
        for j in range(kw):
            y = np.maximum(y, xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw])
    return y


def average_pool(x, a):
    """count_include_pad counts the padding but not what ceil_mode's windows read past it, as
    PyTorch's avg_pool2d does."""
    n, c, h, w = x.shape
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    ceil_mode = a.get("ceil_mode", 0) == 1
    ho = pooled_size(h, kh, sh, 1, pt, pb, ceil_mode)
    wo = pooled_size(w, kw, sw, 1, pl, pr, ceil_mode)
    extra_h = max(0, (ho - 1) * sh + kh - (h + pt + pb))
    extra_w = max(0, (wo - 1) * sw + kw - (w + pl + pr))
    pads = ((pt, pb + extra_h), (pl, pr + extra_w))
    xp = np.pad(x, ((0, 0), (0, 0)) + pads)
    if a.get("count_include_pad", 0):
        counted = np.pad(np.ones((h + pt + pb, w + pl + pr)), ((0, extra_h), (0, extra_w)))
    else:
        counted = np.pad(np.ones((h, w)), pads)
    sums = np.zeros((n, c, ho, wo))
    counts = np.zeros((ho, wo))
    for i in range(kh):
        for j in range(kw):
            sums += xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            counts += counted[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    return sums / counts


def reshape(x, shape):
    target = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
    return x.reshape(target)


erf = np.vectorize(math.erf)


def run_node(op, ins, a):
    x = ins[0] if ins else None
    simple = {"Neg": np.negative, "Abs": np.abs, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt,
              "Reciprocal": lambda v: 1.0 / v, "Sin": np.sin, "Cos": np.cos, "Tanh": np.tanh,
              "Sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "Relu": lambda v: np.maximum(v, 0.0),
              "Erf": erf, "Sign": np.sign, "Floor": np.floor, "Ceil": np.ceil, "Round": np.round,
              "Softplus": lambda v: np.logaddexp(0.0, v), "Identity": lambda v: v}
    if op in simple:
        return simple[op](x)
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
              "Greater": np.greater}
    if op in binary:
        return binary[op](ins[0], ins[1])
    if op in ("Max", "Min"):
        f = np.maximum if op == "Max" else np.minimum
        y = ins[0]
        for v in ins[1:]:
            y = f(y, v)
        return y
    if op == "LeakyRelu":
        return np.where(x > 0, x, x * a.get("alpha", 0.01))
    if op == "Elu":
        return np.where(x > 0, x, a.get("alpha", 1.0) * np.expm1(x))
    if op == "Where":
        return np.where(ins[0], ins[1], ins[2])
    if op == "Clip":
        lo = ins[1] if len(ins) > 1 and ins[1] is not None else -np.inf
        hi = ins[2] if len(ins) > 2 and ins[2] is not None else np.inf
        return np.minimum(np.maximum(x, lo), hi)
    if op == "Conv":
        return conv(x, ins[1], ins[2] if len(ins) > 2 else None, a)
    if op == "ConvTranspose":
        return conv_transpose(x, ins[1], ins[2] if len(ins) > 2 else None, a)
    if op == "MaxPool":
        return max_pool(x, a)
    if op == "Pad":
        if a.get("mode", b"constant") != b"constant":
            raise ValueError(f"Pad: mode {a['mode']} is not interpreted here")
        pads = [int(p) for p in ins[1]]
        value = float(ins[2]) if len(ins) > 2 and ins[2] is not None else 0.0
        rank = x.ndim
        return np.pad(x, [(pads[i], pads[i + rank]) for i in range(rank)], constant_values=value)
    if op == "AveragePool":
        return average_pool(x, a)
    if op == "Gemm":
        A = x.T if a.get("transA", 0) else x
        B = ins[1].T if a.get("transB", 0) else ins[1]
        y = a.get("alpha", 1.0) * (A @ B)
        return y + a.get("beta", 1.0) * ins[2] if len(ins) > 2 else y
    if op == "MatMul":
        return np.matmul(ins[0], ins[1])
    if op == "BatchNormalization":
        scale, bias, mean, var = (v.reshape([1, -1] + [1] * (x.ndim - 2)) for v in ins[1:5])
        return (x - mean) / np.sqrt(var + a.get("epsilon", 1e-5)) * scale + bias
    if op == "ReduceMean":
        axes = tuple(a["axes"]) if "axes" in a else None
        return np.mean(x, axis=axes, keepdims=a.get("keepdims", 1) == 1)
    if op in ("Softmax", "LogSoftmax"):
        axis = a.get("axis", -1)
        shifted = x - np.max(x, axis=axis, keepdims=True)
        log_sum = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        return shifted - log_sum if op == "LogSoftmax" else np.exp(shifted - log_sum)
    if op == "GlobalAveragePool":
        return np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)
    if op == "Reshape":
        return reshape(x, ins[1])
    if op == "Flatten":
        axis = a.get("axis", 1)
        return x.reshape(int(np.prod(x.shape[:axis])), -1)
    if op == "Transpose":
        return np.transpose(x, a.get("perm"))
    if op == "Gather":
        return np.take(x, ins[1].astype(np.int64), axis=a.get("axis", 0))
    if op == "Concat":
        return np.concatenate(ins, axis=a["axis"])
    if op == "Constant":
        return numpy_helper.to_array(a["value"]) if "value" in a else np.array(a["value_float"])
    if op == "Dropout":
        return x
    raise ValueError(f"no interpreter for ONNX op {op}")


def evaluate(model, x):
    values = {}
    for t in model.graph.initializer:
        v = numpy_helper.to_array(t)
        values[t.name] = v.astype(np.float64) if v.dtype == np.float32 else v
    values[model.graph.input[0].name] = x.astype(np.float64)
    for node in model.graph.node:
        ins = [values[name] if name else None for name in node.input]
        y = run_node(node.op_type, ins, attrs_of(node))
        values[node.output[0]] = y
    return values[model.graph.output[0].name]


def check(model_path, io_path, rtol=1e-4, atol=1e-4):
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    io = read_safetensors(io_path)
    y = evaluate(inferred, io["input"])
    want = io["output"].astype(np.float64)
    ops = sorted({n.op_type for n in model.graph.node})
    if y.shape != want.shape:
        print(f"FAIL {model_path}: output shape {y.shape}, expected {want.shape}")
        return False
    err = np.abs(y - want)
    worst = float(np.max(err / (atol + rtol * np.abs(want)))) if want.size else 0.0
    status = "ok" if worst <= 1.0 else "FAIL"
    print(f"{status} {model_path}: {len(model.graph.node)} nodes ({', '.join(ops)}), opset "
          f"{model.opset_import[0].version}, max |error| {float(err.max()):.3g} ({worst:.3f} of the tolerance)")
    return worst <= 1.0


def main(args):
    if len(args) < 2 or len(args) % 2:
        print(__doc__)
        return 2
    ok = True
    for model_path, io_path in zip(args[::2], args[1::2]):
        try:
            ok = check(model_path, io_path) and ok
        except Exception as e:  # the checker's and the interpreter's errors alike
            print(f"FAIL {model_path}: {type(e).__name__}: {e}")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
