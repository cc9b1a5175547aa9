#pragma once
// Internal (ops layer): how deploy::compile sees one forward of a model (Note [Inference plan] in
// ember/deploy/plan.hpp). The ops a plan can run report themselves to the thread's OpTracer, if
// one is installed, with their operands, attributes and result; each reports only when it is the
// outermost traced op (a linear's matmul and bias add are the linear), so composites are seen as
// the op the user called.
#include <vector>

#include "ember/backend/kernels.hpp"
#include "ember/core/tensor.hpp"
#include "ember/ops/conv.hpp"

namespace ember::detail {

/// One resampled axis of interpolate, as the op computed it: output position o reads input index
/// i0[o] (nearest), or i0[o] * near[o] + i1[o] * far[o] (the linear modes).
struct ResampleAxis {
  int64_t dim = 0;
  std::vector<int64_t> i0, i1;
  std::vector<float> near, far;
};

class OpTracer {
 public:
  virtual ~OpTracer() = default;
  virtual void conv2d(const Tensor<float>& x, const Tensor<float>& weight, const Tensor<float>& bias,
                      const Conv2dGeometry& geometry, const Tensor<float>& y) = 0;
  /// y = conv2d_input_grad(x, weight) with `geometry`: conv_transpose2d's forward (x the gradient
  /// of a convolution's output, y its input's, whose shape says the input size).
  virtual void conv2d_input_grad(const Tensor<float>& x, const Tensor<float>& weight, const Conv2dGeometry& geometry,
                                 const Tensor<float>& y) = 0;
  virtual void linear(const Tensor<float>& x, const Tensor<float>& weight, const Tensor<float>& bias,
                      const Tensor<float>& y) = 0;
  /// y = x * scale[c] + shift[c] per channel (batch norm in eval mode).
  virtual void channel_affine(const Tensor<float>& x, const std::vector<float>& scale, const std::vector<float>& shift,
                              const Tensor<float>& y) = 0;
  virtual void unary(const Tensor<float>& x, backend::Unary op, backend::KernelParams params,
                     const Tensor<float>& y) = 0;
  virtual void binary(const Tensor<float>& a, const Tensor<float>& b, backend::Binary op, const char* name,
                      const Tensor<float>& y) = 0;
  virtual void max_pool2d(const Tensor<float>& x, const backend::PoolShape& shape, bool two_by_two,
                          const Tensor<float>& y) = 0;
  /// avg_pool2d of x [N, C, H, W]: the window sums (a depthwise convolution of ones with geometry
  /// g and kernel kh x kw), each output plane divided by divisors [ho * wo].
  virtual void avg_pool2d(const Tensor<float>& x, const Conv2dGeometry& g, int64_t kh, int64_t kw,
                          const std::vector<float>& divisors, const Tensor<float>& y) = 0;
  /// interpolate(x) = y, one resampled axis after the other (none: y is a copy of x).
  virtual void interpolate(const Tensor<float>& x, const std::vector<ResampleAxis>& axes, const Tensor<float>& y) = 0;
  /// The mean over the last two dims (adaptive average pooling to 1 x 1).
  virtual void mean_hw(const Tensor<float>& x, const Tensor<float>& y) = 0;
  /// softmax (or log_softmax) of x over contiguous rows of n values (its last dim, or one followed
  /// only by dims of size 1).
  virtual void softmax(const Tensor<float>& x, int64_t n, bool log, const Tensor<float>& y) = 0;
  /// layer_norm over x's last values, d per row; weight and bias empty or d long.
  virtual void layer_norm(const Tensor<float>& x, int64_t d, const std::vector<float>& weight,
                          const std::vector<float>& bias, double eps, const Tensor<float>& y) = 0;
  /// cat(tensors, dim) = y, dim wrapped.
  virtual void cat(const std::vector<Tensor<float>>& tensors, int64_t dim, const Tensor<float>& y) = 0;
  /// y = x.permute(perm): a view in eager mode, a copy in a plan.
  virtual void permute(const Tensor<float>& x, const Shape& perm, const Tensor<float>& y) = 0;
  /// y = matmul(a, b).
  virtual void matmul(const Tensor<float>& a, const Tensor<float>& b, const Tensor<float>& y) = 0;
  /// y is a view of x with another shape (reshape, flatten, view of a contiguous tensor).
  virtual void view(const Tensor<float>& x, const Tensor<float>& y) = 0;
  /// An op the plan cannot run in the form it was called: throws, naming it and why.
  [[noreturn]] virtual void unsupported(const std::string& what) = 0;
};

/// Installs `tracer` for this thread for the guard's lifetime.
class OpTracerScope {
 public:
  explicit OpTracerScope(OpTracer* tracer) noexcept;
  ~OpTracerScope();
  OpTracerScope(const OpTracerScope&) = delete;
  OpTracerScope& operator=(const OpTracerScope&) = delete;

 private:
  OpTracer* previous_;
};

/// Whether a tracer is installed on this thread.
bool tracing() noexcept;

/// Marks the extent of a traceable op; construct it before the op calls any other op.
class TracedOp {
 public:
  TracedOp() noexcept;
  ~TracedOp();
  TracedOp(const TracedOp&) = delete;
  TracedOp& operator=(const TracedOp&) = delete;
  /// The tracer, when one is installed and this is the outermost traced op; else null.
  OpTracer* tracer() const noexcept { return outermost_; }

 private:
  OpTracer* outermost_ = nullptr;
  bool counted_ = false;
};

}  // namespace ember::detail
