#include "ember/autograd/node.hpp"

#include <string>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/autograd/record.hpp"
#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"
#include "ember/ops/elementwise.hpp"
#include "engine.hpp"

namespace ember::autograd {
namespace {

thread_local uint64_t t_next_sequence_nr = 0;

// Nodes whose last reference is being dropped; see release_node.
struct ReleaseQueue {
  std::vector<std::shared_ptr<Node>> pending;
  bool draining = false;
};
thread_local ReleaseQueue t_release;

}  // namespace

Node::Node() : sequence_nr_(t_next_sequence_nr++) {}

Node::~Node() {
  for (auto& e : next_)
    if (e) release_node(std::move(e));
}

AutogradMeta::~AutogradMeta() {
  if (grad_fn) release_node(std::move(grad_fn));
}

void release_node(std::shared_ptr<Node>&& node) noexcept {
  // A node someone else still holds is not destroyed here: drop the reference directly.
  if (node.use_count() > 1) {
    node.reset();
    return;
  }
  // Only the outermost call destroys nodes; nested destructions (a node's edges, the grad_fn of a
  // tensor it saved) just queue their references, so the stack depth stays constant.
  ReleaseQueue& q = t_release;
  try {
    q.pending.push_back(std::move(node));
  } catch (...) {
    node.reset();  // out of memory for the queue: fall back to recursive release
    return;
  }
  if (q.draining) return;
  q.draining = true;
  while (!q.pending.empty()) {
    std::shared_ptr<Node> n = std::move(q.pending.back());
    q.pending.pop_back();
    n.reset();
  }
  q.draining = false;
}

AutogradMeta& autograd_meta(TensorImpl& impl) {
  if (!impl.autograd) impl.autograd = std::make_unique<AutogradMeta>();
  return *impl.autograd;
}

std::shared_ptr<Node> gradient_edge(const TensorBase& t) {
  if (!requires_grad_of(t)) return nullptr;
  AutogradMeta& meta = *t.impl()->autograd;
  if (meta.grad_fn) return meta.grad_fn;
  if (!meta.grad_accumulator) meta.grad_accumulator = std::make_shared<AccumulateGrad>(t.impl_ptr());
  return meta.grad_accumulator;
}

namespace {
template <FloatingElement T>
void accumulate_typed(TensorImpl& leaf, const TensorBase& incoming_base) {
  AutogradMeta& meta = *leaf.autograd;
  Tensor<T> incoming = Tensor<T>::from_base(incoming_base);
  for (auto& hook : meta.hooks) {
    TensorBase r = hook(incoming);
    if (r.defined()) incoming = Tensor<T>::from_base(r);
  }
  if (incoming.shape() != leaf.shape) {
    throw AutogradError("AccumulateGrad: gradient of shape " + incoming.shape().str() +
                        " for a leaf of shape " + leaf.shape.str());
  }
  const bool create_graph = grad_mode_enabled();
  if (!meta.grad.defined()) {
    if (create_graph) {
      meta.grad = incoming;
    } else {
      // Keep the incoming buffer when nothing else refers to it (the engine's handle and this
      // one are the only two, and no other tensor shares its storage) and it is exactly the
      // whole buffer; copy otherwise, so that later in-place accumulation cannot write into
      // someone else's tensor. A view whose base is gone counts: mm's gradient for a weight
      // used as weight.t() arrives as the transpose of a transposed product.
      const TensorImpl& in = *incoming.impl();
      if (!owns_whole_buffer(incoming, 2, sizeof(T))) {
        meta.grad = incoming.detach().clone();
      } else if (in.autograd || in.is_view) {
        Tensor<T> own = incoming.detach();
        own.impl()->is_view = false;
        meta.grad = own;
      } else {
        meta.grad = incoming;
      }
    }
    return;
  }
  Tensor<T> current = Tensor<T>::from_base(meta.grad);
  if (create_graph || requires_grad_of(current)) {
    meta.grad = current + incoming;
  } else {
    current.add_(incoming.detach());
  }
}
}  // namespace

std::vector<TensorBase> AccumulateGrad::apply(const TensorBase& grad_output) {
  std::shared_ptr<TensorImpl> leaf = leaf_.lock();
  if (!leaf) return {};
  if (leaf->dtype == DType::Float32) {
    accumulate_typed<float>(*leaf, grad_output);
  } else {
    accumulate_typed<double>(*leaf, grad_output);
  }
  if (!leaf->autograd->post_accumulate_hooks.empty()) {
    const TensorBase handle(leaf);
    // A copy: a hook may remove itself.
    const auto hooks = leaf->autograd->post_accumulate_hooks;
    for (const auto& [id, hook] : hooks) hook(handle);
  }
  return {};
}

namespace detail {

// Note [Stale views]
// A view's grad_fn leads to the history its base had when the view was taken. When the base later
// gets a new history in place (h.mul_(3) recorded for autograd, or h detached), the view's values
// change with the storage but its gradient would still skip the in-place op: silently wrong
// gradients. PyTorch regenerates the view's grad_fn from its base; ember's views do not keep their
// base, so the storage counts history changes, each view notes the count when recorded, and a view
// recorded before the last change is refused as the input of an op or as a root of backward.
void check_view_current(const TensorBase& t, const char* op) {
  if (!t.defined() || !t.impl()->is_view || !t.impl()->autograd || !t.impl()->storage) return;
  const uint64_t noted = t.impl()->autograd->view_history;
  if (noted != 0 && noted != t.impl()->storage->history() + 1) {
    throw AutogradError(std::string(op) + ": the tensor of shape " + t.shape().str() +
                        " is a view taken before the tensor it views was changed in place by an op "
                        "recorded for autograd (or detached), so its gradient would skip that change; "
                        "take the view again after the in-place operation");
  }
}

void note_view_history(const TensorBase& t) {
  TensorImpl& impl = *t.impl();
  if (impl.is_view && impl.storage) autograd_meta(impl).view_history = impl.storage->history() + 1;
}

namespace {
template <class Inputs>
void connect_impl(TensorBase& out, const std::shared_ptr<Node>& node, const Inputs& inputs,
                  const char* name) {
  for (const TensorBase* in : inputs) {
    if (in != nullptr) check_view_current(*in, name);
  }
  auto& edges = node->mutable_next_edges();
  std::string context;
  const bool anomaly = anomaly_mode_enabled();
  if (anomaly) context = std::string(name) + "(";
  bool first = true;
  for (const TensorBase* in : inputs) {
    edges.push_back(gradient_edge(*in));
    if (anomaly) {
      context += (first ? "" : ", ") + (in->defined() ? in->shape().str() : std::string("-"));
      first = false;
    }
  }
  if (anomaly) node->set_forward_context(context + ")");
  AutogradMeta& meta = autograd_meta(*out.impl());
  meta.requires_grad = true;
  meta.grad_fn = node;
  note_view_history(out);
}
}  // namespace

void connect(TensorBase& out, const std::shared_ptr<Node>& node,
             std::initializer_list<const TensorBase*> inputs, const char* name) {
  connect_impl(out, node, inputs, name);
}
void connect(TensorBase& out, const std::shared_ptr<Node>& node,
             const std::vector<const TensorBase*>& inputs, const char* name) {
  connect_impl(out, node, inputs, name);
}

void throw_released(const std::string& name) {
  throw AutogradError("backward: trying to backward through the graph a second time (the saved "
                      "tensors of " + name + " were freed after the first backward); pass "
                      "retain_graph = true to the first backward to keep them");
}

TensorBase output_alias(const TensorBase& detached_output, Node* node) {
  auto impl = std::make_shared<TensorImpl>();
  const TensorImpl& src = *detached_output.impl();
  impl->storage = src.storage;
  impl->shape = src.shape;
  impl->strides = src.strides;
  impl->offset = src.offset;
  impl->numel = src.numel;
  impl->dtype = src.dtype;
  impl->is_view = true;
  AutogradMeta& meta = autograd_meta(*impl);
  meta.requires_grad = true;
  meta.grad_fn = node->shared_from_this();
  TensorBase alias(std::move(impl));
  note_view_history(alias);
  return alias;
}

}  // namespace detail

template <FloatingElement T>
void SavedTensor<T>::throw_modified(const char* op) const {
  throw AutogradError(std::string(op) + ": one of the tensors needed for gradient computation (" +
                      tensor_.shape().str() + ") has been modified by an in-place operation: "
                      "its version is " + std::to_string(tensor_.version()) +
                      ", expected " + std::to_string(version_));
}
template class SavedTensor<float>;
template class SavedTensor<double>;

}  // namespace ember::autograd
