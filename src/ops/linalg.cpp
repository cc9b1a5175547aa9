// Matrix products on the backend's GEMM.
#include "common.hpp"
#include "trace.hpp"

namespace ember {

using detail::require;

using autograd::needs_grad;
using autograd::record;
using autograd::record_bilinear;
using autograd::record_with_result;
using autograd::SavedTensor;
using detail::cat_str;
using detail::new_tensor;

namespace {

// How to hand a 2-D view to GEMM without copying: row-major (trans = false) or as the transpose
// of a row-major matrix (trans = true). Other layouts are copied first.
template <FloatingElement T>
struct GemmOperand {
  const T* ptr;  // nullptr: the layout needs a copy
  int64_t ld;
  bool trans;
};

// A dim of size 1 is never stepped along, so its stride is taken as whatever suits: a tensor
// that is_contiguous() (which ignores such strides, and contiguous() then returns as it is) is
// always row-major here.
template <FloatingElement T>
GemmOperand<T> gemm_operand(int64_t stride_rows, int64_t stride_cols, int64_t rows, int64_t cols,
                            const T* base) {
  const bool one_row = rows <= 1, one_col = cols <= 1;
  if ((stride_cols == 1 || one_col) && (stride_rows >= std::max<int64_t>(cols, 1) || one_row)) {
    return {base, one_row ? std::max<int64_t>(cols, 1) : stride_rows, false};
  }
  if ((stride_rows == 1 || one_row) && (stride_cols >= std::max<int64_t>(rows, 1) || one_col)) {
    return {base, one_col ? std::max<int64_t>(rows, 1) : stride_cols, true};
  }
  return {nullptr, 0, false};
}

// out[b] = alpha * A[b] x B[b] + beta * out[b] for 3-D (batch, rows, cols) views; batch strides
// may be 0 (broadcast); out is contiguous [batch, n, m] (with beta = 0 it is not read).
template <FloatingElement T>
void bmm_into(const Tensor<T>& a, const Tensor<T>& b, T alpha, T beta, T* po) {
  const int64_t batch = a.shape()[0], n = a.shape()[1], k = a.shape()[2], m = b.shape()[2];
  if (batch * n * m == 0) return;
  Tensor<T> ac = a, bc = b;
  auto oa = gemm_operand(a.strides()[1], a.strides()[2], n, k, a.data_ptr());
  if (oa.ptr == nullptr) {
    ac = a.contiguous();
    oa = gemm_operand(ac.strides()[1], ac.strides()[2], n, k, ac.data_ptr());
  }
  auto ob = gemm_operand(b.strides()[1], b.strides()[2], k, m, b.data_ptr());
  if (ob.ptr == nullptr) {
    bc = b.contiguous();
    ob = gemm_operand(bc.strides()[1], bc.strides()[2], k, m, bc.data_ptr());
  }
  const int64_t sa = ac.strides()[0], sb = bc.strides()[0];
  const auto& kern = backend::kernels<T>();
  auto one = [&](int64_t i) {
    kern.gemm(oa.trans, ob.trans, n, m, k, alpha, oa.ptr + i * sa, oa.ld, ob.ptr + i * sb, ob.ld, beta,
              po + i * n * m, m);
  };
  if (batch == 1 || n * m * k >= (int64_t(1) << 18)) {
    for (int64_t i = 0; i < batch; ++i) one(i);  // GEMM threads itself
  } else {
    detail::parallel_for(0, batch, std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(n * m * k, 1)),
                         [&](int64_t s, int64_t e) {
                           for (int64_t i = s; i < e; ++i) one(i);
                         });
  }
}

// C[b] = A[b] x B[b] for 3-D (batch, rows, cols) views.
template <FloatingElement T>
Tensor<T> bmm_raw(const Tensor<T>& a, const Tensor<T>& b) {
  Tensor<T> out = new_tensor<T>({a.shape()[0], a.shape()[1], b.shape()[2]}, "matmul");
  bmm_into(a, b, T(1), T(0), out.data_ptr());
  return out;
}

// mm's gradients. A gradient laid out like its input needs no copy when it is accumulated: for
// an input that is a transposed view (a weight used as weight.t(), say), compute the transposed
// product and transpose the result back, as PyTorch's mm backward does.
template <FloatingElement T>
bool is_transposed_matrix(const Tensor<T>& t) {
  return t.shape()[0] > 1 && t.shape()[1] > 1 && t.strides()[0] == 1 && t.strides()[1] == t.shape()[0];
}
template <FloatingElement T>
Tensor<T> mm_grad_a(const Tensor<T>& g, const Tensor<T>& b, bool a_transposed) {
  return a_transposed ? mm(b, g.t()).t() : mm(g, b.t());
}
template <FloatingElement T>
Tensor<T> mm_grad_b(const Tensor<T>& g, const Tensor<T>& a, bool b_transposed) {
  return b_transposed ? mm(g.t(), a).t() : mm(a.t(), g);
}

[[noreturn]] void inner_mismatch(const char* op, const Shape& a, const Shape& b, int64_t ka,
                                 int64_t kb) {
  throw ShapeError(cat_str(op, ": ", a, " x ", b, ": inner dims ", ka, " != ", kb));
}

}  // namespace

template <FloatingElement T>
Tensor<T> mm(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "mm");
  require(b, "mm");
  if (a.dim() != 2 || b.dim() != 2) {
    throw ShapeError(cat_str("mm: expected two 2-D tensors, got ", a.shape(), " and ", b.shape()));
  }
  if (a.shape()[1] != b.shape()[0]) inner_mismatch("mm", a.shape(), b.shape(), a.shape()[1], b.shape()[0]);
  Tensor<T> out = detail::adopt_as(bmm_raw(a.detach().unsqueeze(0), b.detach().unsqueeze(0)),
                                   {a.shape()[0], b.shape()[1]});
  if (needs_grad(a, b)) {
    record_bilinear(
        out, "mm", a, b,
        [ta = is_transposed_matrix(a)](const Tensor<T>& g, const Tensor<T>& b) { return mm_grad_a(g, b, ta); },
        [tb = is_transposed_matrix(b)](const Tensor<T>& g, const Tensor<T>& a) { return mm_grad_b(g, a, tb); });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> addmm(const Tensor<T>& input, const Tensor<T>& mat1, const Tensor<T>& mat2, double beta, double alpha) {
  require(input, "addmm");
  require(mat1, "addmm");
  require(mat2, "addmm");
  if (mat1.dim() != 2 || mat2.dim() != 2) {
    throw ShapeError(cat_str("addmm: expected 2-D mat1 and mat2, got ", mat1.shape(), " and ", mat2.shape()));
  }
  if (mat1.shape()[1] != mat2.shape()[0]) {
    inner_mismatch("addmm", mat1.shape(), mat2.shape(), mat1.shape()[1], mat2.shape()[0]);
  }
  const Shape out_shape{mat1.shape()[0], mat2.shape()[1]};
  if (input.dim() > 2 || detail::broadcast_shapes(input.shape(), out_shape, "addmm") != out_shape) {
    throw ShapeError(cat_str("addmm: input of shape ", input.shape(), " does not broadcast to the product's ",
                             out_shape, " (", mat1.shape(), " x ", mat2.shape(), ")"));
  }
  // The input goes into the output first and the GEMM adds the product to it (beta = 0: not
  // read, so NaN or infinity there do not show, as PyTorch).
  Tensor<T> out = new_tensor<T>(out_shape, "addmm");
  if (beta != 0.0 && out.numel() > 0) detail::copy_into_contiguous(input.detach().expand(out_shape), out.data_ptr());
  bmm_into(mat1.detach().unsqueeze(0), mat2.detach().unsqueeze(0), T(alpha), beta == 0.0 ? T(0) : T(beta),
           out.data_ptr());
  if (needs_grad(input, mat1, mat2)) {
    const bool need1 = autograd::requires_grad_of(mat1), need2 = autograd::requires_grad_of(mat2);
    record(out, "addmm", {&input, &mat1, &mat2},
           [need_input = autograd::requires_grad_of(input), need1, need2, in_shape = input.shape(), beta, alpha,
            s1 = need2 ? SavedTensor<T>(mat1) : SavedTensor<T>(), s2 = need1 ? SavedTensor<T>(mat2) : SavedTensor<T>(),
            t1 = is_transposed_matrix(mat1), t2 = is_transposed_matrix(mat2)](const Tensor<T>& g) {
             std::vector<Tensor<T>> grads(3);
             if (need_input) grads[0] = beta == 1.0 ? sum_to(g, in_shape) : sum_to(g, in_shape) * beta;
             const Tensor<T> ga = alpha == 1.0 ? g : g * alpha;
             if (need1) grads[1] = mm_grad_a(ga, s2.get("addmm"), t1);
             if (need2) grads[2] = mm_grad_b(ga, s1.get("addmm"), t2);
             return grads;
           });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> bmm(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "bmm");
  require(b, "bmm");
  if (a.dim() != 3 || b.dim() != 3) {
    throw ShapeError(cat_str("bmm: expected two 3-D tensors, got ", a.shape(), " and ", b.shape()));
  }
  if (a.shape()[0] != b.shape()[0]) {
    throw ShapeError(cat_str("bmm: ", a.shape(), " x ", b.shape(), ": batch sizes ", a.shape()[0],
                             " != ", b.shape()[0]));
  }
  if (a.shape()[2] != b.shape()[1]) inner_mismatch("bmm", a.shape(), b.shape(), a.shape()[2], b.shape()[1]);
  Tensor<T> out = bmm_raw(a.detach(), b.detach());
  if (needs_grad(a, b)) {
    record_bilinear(
        out, "bmm", a, b, [](const Tensor<T>& g, const Tensor<T>& b) { return bmm(g, b.transpose(1, 2)); },
        [](const Tensor<T>& g, const Tensor<T>& a) { return bmm(a.transpose(1, 2), g); });
  }
  return out;
}

template <FloatingElement T>
Tensor<T> dot(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "dot");
  require(b, "dot");
  if (a.dim() != 1 || b.dim() != 1) {
    throw ShapeError(cat_str("dot: expected two 1-D tensors, got ", a.shape(), " and ", b.shape()));
  }
  if (a.numel() != b.numel()) inner_mismatch("dot", a.shape(), b.shape(), a.numel(), b.numel());
  return mm(a.unsqueeze(0), b.unsqueeze(1)).reshape(Shape{});
}

template <FloatingElement T>
Tensor<T> outer(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "outer");
  require(b, "outer");
  if (a.dim() != 1 || b.dim() != 1) {
    throw ShapeError(cat_str("outer: expected two 1-D tensors, got ", a.shape(), " and ", b.shape()));
  }
  return a.unsqueeze(1) * b.unsqueeze(0);
}

namespace {
template <FloatingElement T>
Tensor<T> matmul_untraced(const Tensor<T>& a, const Tensor<T>& b);
}  // namespace

template <FloatingElement T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b) {
  detail::TracedOp traced;
  Tensor<T> y = matmul_untraced(a, b);
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->matmul(a, b, y);
  }
  return y;
}

namespace {
template <FloatingElement T>
Tensor<T> matmul_untraced(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "matmul");
  require(b, "matmul");
  if (a.dim() == 0 || b.dim() == 0) {
    throw ShapeError(cat_str("matmul: both arguments need at least 1 dim, got ", a.shape(), " and ",
                             b.shape()));
  }
  const int64_t ka = a.shape()[a.dim() - 1];
  const int64_t kb = b.dim() == 1 ? b.shape()[0] : b.shape()[b.dim() - 2];
  if (ka != kb) inner_mismatch("matmul", a.shape(), b.shape(), ka, kb);
  if (a.dim() == 1 && b.dim() == 1) return dot(a, b);
  if (a.dim() == 2 && b.dim() == 2) return mm(a, b);
  if (a.dim() == 1 && b.dim() == 2) return mm(a.unsqueeze(0), b).squeeze(0);
  if (a.dim() == 2 && b.dim() == 1) return mm(a, b.unsqueeze(1)).squeeze(1);
  if (b.dim() <= 2) {
    // [..., n, k] x [k, m]: fold the batch into the rows of one GEMM.
    Shape out_shape = a.shape();
    Tensor<T> b2 = b.dim() == 1 ? b.unsqueeze(1) : b;
    Tensor<T> r = mm(a.reshape({-1, ka}), b2);
    if (b.dim() == 1) {
      out_shape.pop_back();
    } else {
      out_shape[out_shape.size() - 1] = b.shape()[1];
    }
    return r.reshape(out_shape);
  }
  // General case: broadcast the batch dims and run a batched GEMM.
  Tensor<T> a2 = a.dim() == 1 ? a.unsqueeze(0) : a;
  Tensor<T> b2 = b;  // b.dim() >= 3 here
  Shape batch_a(a2.shape().begin(), a2.shape().end() - 2);
  Shape batch_b(b2.shape().begin(), b2.shape().end() - 2);
  Shape batch = detail::broadcast_shapes(batch_a, batch_b, "matmul");
  const int64_t n = a2.shape()[a2.dim() - 2], m = b2.shape()[b2.dim() - 1];
  Shape ea = batch, eb = batch;
  ea.push_back(n);
  ea.push_back(ka);
  eb.push_back(ka);
  eb.push_back(m);
  const int64_t nb = batch.numel();
  Tensor<T> r = bmm(a2.expand(ea).reshape({nb, n, ka}), b2.expand(eb).reshape({nb, ka, m}));
  Shape out_shape = batch;
  if (a.dim() > 1) out_shape.push_back(n);
  out_shape.push_back(m);
  return r.reshape(out_shape);
}
}  // namespace

namespace {

// cdist's Euclidean distances through one product, as PyTorch's _euclidean_dist: [-2 a, |a|^2, 1]
// times [b, 1, |b|^2], so the product sums the three terms in one dot product (the same rounding
// as PyTorch), then clamped at 0 (rounding leaves small negatives for near rows) and rooted. Its
// gradient, PyTorch's _euclidean_dist_backward, gives 0 where a distance is 0.
template <FloatingElement T>
Tensor<T> euclidean_dist_mm(const Tensor<T>& x1, const Tensor<T>& x2) {
  Tensor<T> out;
  {
    NoGradGuard no_grad;
    Tensor<T> n1 = sum(x1 * x1, {-1}, true), n2 = sum(x2 * x2, {-1}, true);
    Tensor<T> a = cat({x1 * -2.0, n1, ones_like(n1)}, -1), b = cat({x2, ones_like(n2), n2}, -1);
    out = sqrt(clamp(matmul(a, b.transpose(-1, -2)), 0.0, std::numeric_limits<double>::infinity()));
  }
  if (needs_grad(x1, x2)) {
    record_with_result(out, "cdist", {&x1, &x2}, [s1 = SavedTensor<T>(x1), s2 = SavedTensor<T>(x2)](
                                                     const Tensor<T>& g, const Tensor<T>& dist) {
      const Tensor<T>& a = s1.get("cdist");
      const Tensor<T>& b = s2.get("cdist");
      Tensor<T> ratio = where(ne(dist, 0.0), g / dist, 0.0);
      return std::vector<Tensor<T>>{a * sum(ratio, {-1}, true) - matmul(ratio, b),
                                    b * sum(ratio, {-2}, false).unsqueeze(-1) - matmul(ratio.transpose(-1, -2), a)};
    });
  }
  return out;
}

// The p-norms over the last dim of diff (the differences of the rows, [..., P, R, M]).
template <FloatingElement T>
Tensor<T> norms_of_differences(const Tensor<T>& diff, double p) {
  if (p == 0) return sum(ne(diff, 0.0).template to<T>(), {-1});
  if (p == 1) return sum(abs(diff), {-1});
  if (p == 2) return sqrt(sum(diff * diff, {-1}));
  if (std::isinf(p)) return amax(abs(diff), {-1});
  return pow(sum(pow(abs(diff), p), {-1}), 1.0 / p);
}

// PyTorch's _cdist_backward: the gradient along diff of the distances dist [..., P, R] for g.
template <FloatingElement T>
Tensor<T> distance_gradient(const Tensor<T>& g, const Tensor<T>& diff, const Tensor<T>& dist, double p) {
  if (p == 0) return zeros_like(diff);
  const Tensor<T> ge = g.unsqueeze(-1), de = dist.unsqueeze(-1);
  if (p == 1) return ge * sign(diff);
  if (std::isinf(p)) return where(eq(abs(diff), de), ge * sign(diff), 0.0);
  const Tensor<uint8_t> nonzero = ne(de, 0.0);
  const Tensor<T> safe = where(nonzero, de, 1.0);
  Tensor<T> grad;
  if (p == 2) {
    grad = ge * diff / safe;
  } else if (p < 2) {
    grad = ge * sign(diff) * pow(abs(diff), p - 1) / pow(safe, p - 1);
    // |diff|^(p - 1) is infinite at 0 for p < 1, where PyTorch takes the gradient as 0.
    if (p < 1) grad = where(ne(diff, 0.0), grad, 0.0);
  } else {
    grad = ge * diff * pow(abs(diff), p - 2) / pow(safe, p - 1);
  }
  return where(nonzero, grad, 0.0);
}

// cdist from the differences of the rows, for x1 [..., P, M] and x2 [..., R, M] with the same
// batch dims, in pieces of rows of x1 so that the differences [..., rows, R, M] stay near 2^22
// values (PyTorch's kernel takes each pair's norm without them).
template <FloatingElement T>
Tensor<T> cdist_from_differences(const Tensor<T>& x1, const Tensor<T>& x2, double p) {
  const int64_t rows = x1.shape()[x1.dim() - 2];
  const int64_t per_row = x1.numel() / std::max<int64_t>(rows, 1) * x2.shape()[x2.dim() - 2];
  const int64_t piece = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(per_row, 1));
  std::vector<Tensor<T>> pieces;
  for (int64_t r0 = 0; r0 < rows; r0 += piece) {
    Tensor<T> a = rows <= piece ? x1 : x1.narrow(-2, r0, std::min(piece, rows - r0));
    Tensor<T> out;
    {
      NoGradGuard no_grad;
      out = norms_of_differences(a.unsqueeze(-2) - x2.unsqueeze(-3), p);
    }
    if (needs_grad(a, x2)) {
      record_with_result(out, "cdist", {&a, &x2}, [s1 = SavedTensor<T>(a), s2 = SavedTensor<T>(x2), p](
                                                      const Tensor<T>& g, const Tensor<T>& dist) {
        const Tensor<T>& a = s1.get("cdist");
        const Tensor<T>& b = s2.get("cdist");
        Tensor<T> grad = distance_gradient(g, a.unsqueeze(-2) - b.unsqueeze(-3), dist, p);
        return std::vector<Tensor<T>>{sum(grad, {-2}), -sum(grad, {-3})};
      });
    }
    pieces.push_back(out);
  }
  return pieces.size() == 1 ? pieces[0] : cat(pieces, -2);
}

}  // namespace

template <FloatingElement T>
Tensor<T> cdist(const Tensor<T>& x1, const Tensor<T>& x2, double p, CdistMode mode) {
  require(x1, "cdist");
  require(x2, "cdist");
  if (x1.dim() < 2 || x2.dim() < 2) {
    throw ShapeError(cat_str("cdist: the inputs must be at least 2-D [..., P, M] and [..., R, M], got ", x1.shape(),
                             " and ", x2.shape()));
  }
  const int64_t m = x1.shape()[x1.dim() - 1];
  if (x2.shape()[x2.dim() - 1] != m) {
    throw ShapeError(cat_str("cdist: x1 ", x1.shape(), " and x2 ", x2.shape(),
                             " must have the same number of columns (last dim)"));
  }
  if (!(p >= 0)) throw ValueError(cat_str("cdist: p must be >= 0, got ", p));
  const int64_t rows1 = x1.shape()[x1.dim() - 2], rows2 = x2.shape()[x2.dim() - 2];
  Shape batch = detail::broadcast_shapes(Shape(x1.shape().begin(), x1.shape().end() - 2),
                                         Shape(x2.shape().begin(), x2.shape().end() - 2), "cdist");
  Shape s1 = batch, s2 = batch, out_shape = batch;
  s1.push_back(rows1);
  s1.push_back(m);
  s2.push_back(rows2);
  s2.push_back(m);
  out_shape.push_back(rows1);
  out_shape.push_back(rows2);
  if (out_shape.numel() == 0 || m == 0) return zeros<T>(out_shape) + (x1.sum() + x2.sum()) * 0.0;
  const Tensor<T> a = x1.shape() == s1 ? x1 : x1.expand(s1);
  const Tensor<T> b = x2.shape() == s2 ? x2 : x2.expand(s2);
  const bool mm = p == 2 && (mode == CdistMode::AlwaysMm ||
                             (mode == CdistMode::MmIfNecessary && (rows1 > 25 || rows2 > 25)));
  return mm ? euclidean_dist_mm(a, b) : cdist_from_differences(a, b, p);
}

template <Element T>
Tensor<T> Tensor<T>::matmul(const Tensor<T>& other) const requires FloatingElement<T> {
  return ember::matmul(*this, other);
}
template <Element T>
Tensor<T> Tensor<T>::mm(const Tensor<T>& other) const requires FloatingElement<T> {
  return ember::mm(*this, other);
}

#define EMBER_INSTANTIATE(T)                                        \
  template Tensor<T> matmul(const Tensor<T>&, const Tensor<T>&);    \
  template Tensor<T> mm(const Tensor<T>&, const Tensor<T>&);        \
  template Tensor<T> addmm(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, double, double); \
  template Tensor<T> bmm(const Tensor<T>&, const Tensor<T>&);       \
  template Tensor<T> dot(const Tensor<T>&, const Tensor<T>&);       \
  template Tensor<T> outer(const Tensor<T>&, const Tensor<T>&);     \
  template Tensor<T> cdist(const Tensor<T>&, const Tensor<T>&, double, CdistMode); \
  template Tensor<T> Tensor<T>::matmul(const Tensor<T>&) const;     \
  template Tensor<T> Tensor<T>::mm(const Tensor<T>&) const;
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember
