#pragma once
// Tensor<T>: a handle to a strided view of shared storage, with reverse-mode autograd.
//
// Copying a Tensor copies the handle (like torch::Tensor): both refer to the same data. Use
// clone() for a deep copy. Member bodies live in src/ and are instantiated for float, double,
// int64_t, int32_t and uint8_t; math members are available for float and double only.
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/core/tensor_impl.hpp"

namespace ember {

namespace autograd {
class Node;
}

template <Element T = float>
class Tensor;
class Generator;

namespace indexing {
/// LibTorch's Slice for Tensor::index: `x.index({Slice(), 0})` is x[:, 0]. Missing bounds are the
/// dim's ends (negative ones count from the end), as Python's slices.
struct Slice {
  std::optional<int64_t> start, stop;
  int64_t step = 1;
  Slice() = default;
  Slice(std::optional<int64_t> start_, std::optional<int64_t> stop_ = std::nullopt, int64_t step_ = 1)
      : start(start_), stop(stop_), step(step_) {}
};
/// Python's None in a Slice: `Slice(None, 3)`.
inline constexpr std::nullopt_t None = std::nullopt;
/// One entry of an index list: an integer (selects, removing the dim) or a Slice.
struct TensorIndex {
  TensorIndex(int64_t i) : is_slice(false), integer(i) {}  // NOLINT: `{0, Slice()}`
  TensorIndex(int i) : is_slice(false), integer(i) {}      // NOLINT
  TensorIndex(Slice s) : is_slice(true), slice(s) {}       // NOLINT
  bool is_slice;
  int64_t integer = 0;
  Slice slice;
};
}  // namespace indexing

template <class T>
struct ValuesIndices;

template <Element T>
class Tensor : public TensorBase {
 public:
  using value_type = T;
  using Hook = std::function<Tensor(const Tensor&)>;

  /// An undefined tensor (defined() == false).
  Tensor() = default;
  /// Wraps an impl; throws TypeError if its dtype is not T.
  explicit Tensor(std::shared_ptr<TensorImpl> impl);
  /// Views a type-erased handle as Tensor<T>; throws TypeError naming both dtypes on mismatch.
  static Tensor from_base(const TensorBase& base);

  // ---- Shape and elements -------------------------------------------------------------------
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  /// Pointer to the first element. Requires a contiguous tensor (throws otherwise), so that
  /// data()[i] is element i in row-major order.
  T* data() const;
  /// Pointer to the first element of any view (strides apply).
  T* data_ptr() const noexcept;
  /// The value of a one-element tensor.
  T item() const;
  /// The value as U (LibTorch's `loss.item<float>()`), converted as to<U>() converts: a value that
  /// does not fit an integer type throws.
  template <Element U>
  U item() const {
    if constexpr (std::is_same_v<U, T>) {
      return item();
    } else {
      (void)item();  // one element, or the usual error
      return this->template to<U>().item();
    }
  }
  /// The element at a full index; negative indices count from the end.
  T at(std::initializer_list<int64_t> index) const;
  T at(const std::vector<int64_t>& index) const;
  /// All elements in row-major order.
  std::vector<T> to_vector() const;
  uint64_t version() const noexcept;
  std::string str() const;  // what operator<< prints

  // ---- Autograd ------------------------------------------------------------------------------
  bool requires_grad() const noexcept;
  /// Marks a leaf as needing gradients (throws AutogradError for a non-leaf that has a grad_fn
  /// and `on == false`, and TypeError for integer tensors).
  Tensor& requires_grad_(bool on = true);
  /// The accumulated gradient (undefined until a backward reaches this leaf).
  Tensor grad() const;
  void set_grad(const Tensor& g) const;
  bool is_leaf() const noexcept;
  /// The node that produced this tensor (nullptr for leaves and constants).
  std::shared_ptr<autograd::Node> grad_fn() const noexcept;
  /// Backpropagates from this tensor. Without `gradient` the tensor must have one element.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false,
                bool create_graph = false) const;
  /// Keeps grad() for a non-leaf after backward.
  void retain_grad() const;
  /// Calls `hook(grad)` whenever a gradient for this tensor is computed; a defined return value
  /// replaces the gradient.
  void register_hook(Hook hook) const;
  /// Calls `hook(leaf)` after a backward pass has accumulated this leaf's gradient into grad()
  /// (PyTorch's register_post_accumulate_grad_hook); returns an id for
  /// remove_post_accumulate_grad_hook. Leaves that require grad only.
  uint64_t register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const;
  void remove_post_accumulate_grad_hook(uint64_t id) const;
  /// Same storage, cut off from the graph.
  Tensor detach() const;
  Tensor& detach_();

  // ---- Copies and conversion -------------------------------------------------------------------
  Tensor contiguous() const;
  Tensor clone() const;
  template <Element U>
  Tensor<U> to() const;

  // ---- Views (share storage) and movement -------------------------------------------------------
  /// A view when the strides allow it, else a copy. One dim may be -1.
  Tensor reshape(const Shape& shape) const;
  /// Like reshape, but throws ShapeError when no view is possible.
  Tensor view(const Shape& shape) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  /// Transpose of a tensor with at most 2 dims.
  Tensor t() const;
  /// Elements start, start+step, ... < end along dim (Python slice rules: negative values count
  /// from the end, out-of-range values are clamped).
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  /// Removes `dim`, taking element `index` of it.
  Tensor select(int64_t dim, int64_t index) const;
  /// x[i] (select along dim 0), and LibTorch's x.index({Slice(), 0}): a view.
  Tensor operator[](int64_t index) const { return select(0, index); }
  Tensor index(std::initializer_list<indexing::TensorIndex> indices) const;
  /// Writes `value` (broadcast) or a number into x.index(indices), in place.
  Tensor& index_put_(std::initializer_list<indexing::TensorIndex> indices, const Tensor& value);
  Tensor& index_put_(std::initializer_list<indexing::TensorIndex> indices, T value);
  /// Broadcasts size-1 dims to `shape` without copying (-1 keeps a size).
  Tensor expand(const Shape& shape) const;
  template <Element U>
  Tensor expand_as(const Tensor<U>& other) const {
    return expand(other.shape());
  }
  Tensor index_select(int64_t dim, const Tensor<int64_t>& index) const;
  Tensor gather(int64_t dim, const Tensor<int64_t>& index) const;
  std::vector<Tensor> split(int64_t split_size, int64_t dim = 0) const;
  std::vector<Tensor> chunk(int64_t chunks, int64_t dim = 0) const;

  // ---- In-place ------------------------------------------------------------------------------
  Tensor& fill_(T value);
  Tensor& zero_();
  /// Copies `src` (broadcast to this shape) into this tensor's elements.
  Tensor& copy_(const Tensor& src);

  // ---- Math (float and double) ------------------------------------------------------------------
  Tensor sum() const requires FloatingElement<T>;
  Tensor sum(int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const requires FloatingElement<T>;
  Tensor mean() const requires FloatingElement<T>;
  Tensor mean(int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const requires FloatingElement<T>;
  /// Variance with Bessel's correction by default (correction = 1), as torch.var.
  Tensor var(int64_t correction = 1) const requires FloatingElement<T>;
  Tensor var(int64_t dim, bool keepdim, int64_t correction = 1) const requires FloatingElement<T>;
  Tensor std(int64_t correction = 1) const requires FloatingElement<T>;
  Tensor std(int64_t dim, bool keepdim, int64_t correction = 1) const requires FloatingElement<T>;
  Tensor prod() const requires FloatingElement<T>;
  Tensor prod(int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  /// The largest / smallest element (NaN propagates for floats; integers: see reduction.hpp).
  Tensor max() const;
  /// Integer tensors: the exact sum in int64 (see reduction.hpp).
  Tensor<int64_t> sum() const requires(!FloatingElement<T>);
  /// Whether every / some element is nonzero (0-d uint8).
  Tensor<uint8_t> all() const;
  Tensor<uint8_t> any() const;
  /// Elementwise comparisons as 0/1 masks (ember::eq ...), every element type.
  Tensor<uint8_t> eq(const Tensor& other) const;
  Tensor<uint8_t> ne(const Tensor& other) const;
  Tensor<uint8_t> lt(const Tensor& other) const;
  Tensor<uint8_t> le(const Tensor& other) const;
  Tensor<uint8_t> gt(const Tensor& other) const;
  Tensor<uint8_t> ge(const Tensor& other) const;
  Tensor<uint8_t> eq(double other) const;
  Tensor<uint8_t> ne(double other) const;
  Tensor min() const;
  ValuesIndices<T> max(int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  /// The elements along dim in order, and their indices (ember::sort; stable).
  ValuesIndices<T> sort(int64_t dim = -1, bool descending = false) const;
  Tensor<int64_t> argsort(int64_t dim = -1, bool descending = false) const;
  /// The k largest (or smallest) elements along dim and their indices (ember::topk).
  ValuesIndices<T> topk(int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true) const
    requires FloatingElement<T>;
  ValuesIndices<T> min(int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  Tensor<int64_t> argmax() const requires FloatingElement<T>;
  Tensor<int64_t> argmax(int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  Tensor<int64_t> argmin() const requires FloatingElement<T>;
  Tensor<int64_t> argmin(int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  Tensor logsumexp(int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  Tensor norm(double p = 2.0) const requires FloatingElement<T>;
  Tensor norm(double p, int64_t dim, bool keepdim = false) const requires FloatingElement<T>;
  /// ember::flip, repeat, tril, triu and cumsum as members, LibTorch's spelling (`x.repeat({2, 1})`).
  Tensor flip(const std::vector<int64_t>& dims) const;
  Tensor repeat(const std::vector<int64_t>& repeats) const;
  Tensor tril(int64_t diagonal = 0) const;
  Tensor triu(int64_t diagonal = 0) const;
  Tensor cumsum(int64_t dim) const;
  /// x where mask is 0, value where it is 1 (mask broadcasts), as ember::masked_fill.
  Tensor masked_fill(const Tensor<uint8_t>& mask, double value) const requires FloatingElement<T>;
  /// Fills in place with uniform [a, b) / normal(mean, std) values from `gen` (the default
  /// generator when null), as LibTorch's members; like fill_, not on a leaf that requires grad
  /// while grad mode is on.
  Tensor& uniform_(double a = 0.0, double b = 1.0, Generator* gen = nullptr) requires FloatingElement<T>;
  Tensor& normal_(double mean = 0.0, double std = 1.0, Generator* gen = nullptr) requires FloatingElement<T>;

  Tensor abs() const requires FloatingElement<T>;
  Tensor neg() const requires FloatingElement<T>;
  Tensor exp() const requires FloatingElement<T>;
  Tensor log() const requires FloatingElement<T>;
  Tensor sqrt() const requires FloatingElement<T>;
  Tensor square() const requires FloatingElement<T>;
  Tensor tanh() const requires FloatingElement<T>;
  Tensor sigmoid() const requires FloatingElement<T>;
  Tensor relu() const requires FloatingElement<T>;
  Tensor pow(double exponent) const requires FloatingElement<T>;
  Tensor clamp(double min, double max) const requires FloatingElement<T>;
  Tensor softmax(int64_t dim) const requires FloatingElement<T>;
  Tensor log_softmax(int64_t dim) const requires FloatingElement<T>;
  Tensor matmul(const Tensor& other) const requires FloatingElement<T>;
  Tensor mm(const Tensor& other) const requires FloatingElement<T>;

  // In-place math, for optimizers and updates under NoGradGuard (bumps the version counter).
  Tensor& add_(const Tensor& other, double alpha = 1.0) requires FloatingElement<T>;
  Tensor& add_(double value) requires FloatingElement<T>;
  Tensor& sub_(const Tensor& other, double alpha = 1.0) requires FloatingElement<T>;
  Tensor& sub_(double value) requires FloatingElement<T>;
  Tensor& mul_(const Tensor& other) requires FloatingElement<T>;
  Tensor& mul_(double value) requires FloatingElement<T>;
  Tensor& div_(const Tensor& other) requires FloatingElement<T>;
  Tensor& div_(double value) requires FloatingElement<T>;
  Tensor& clamp_(double min, double max) requires FloatingElement<T>;
  Tensor& relu_() requires FloatingElement<T>;
  Tensor& neg_() requires FloatingElement<T>;
  /// this += value * t1 * t2
  Tensor& addcmul_(const Tensor& t1, const Tensor& t2, double value = 1.0) requires FloatingElement<T>;
  /// this += value * t1 / t2
  Tensor& addcdiv_(const Tensor& t1, const Tensor& t2, double value = 1.0) requires FloatingElement<T>;
  /// this += weight * (end - this)
  Tensor& lerp_(const Tensor& end, double weight) requires FloatingElement<T>;
};

/// Values and indices of max/min along a dim.
template <class T>
struct ValuesIndices {
  Tensor<T> values;
  Tensor<int64_t> indices;
};

template <Element T>
std::ostream& operator<<(std::ostream& os, const Tensor<T>& t);

extern template class Tensor<float>;
extern template class Tensor<double>;
extern template class Tensor<int64_t>;
extern template class Tensor<int32_t>;
extern template class Tensor<uint8_t>;
extern template class Tensor<int8_t>;

}  // namespace ember
