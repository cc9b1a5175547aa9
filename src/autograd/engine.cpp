// The backward pass: an iterative walk over the graph in dependency order.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ember/autograd/autograd.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/autograd/node.hpp"
#include "ember/autograd/record.hpp"
#include "ember/core/error.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "../core/internal.hpp"
#include "engine.hpp"

namespace ember::autograd {
namespace {

// Note [Gradients summed in place]
// Where several uses of a tensor send it gradients (a residual block's input: its first
// convolution and its shortcut), the sum goes into the buffer already held when nothing else can
// see it: the engine's handle is its only one, no other tensor shares its storage, it is the
// whole buffer, and no graph is being built (create_graph keeps every sum a recorded op). A new
// buffer per sum cost the ResNet's training step its allocation and first writes (2% of it);
// AccumulateGrad keeps a leaf's gradient by the same rule.
template <class T>
TensorBase add_typed(TensorBase& held, const TensorBase& incoming) {
  if (!grad_mode_enabled() && held.impl()->autograd == nullptr && incoming.shape() == held.shape() &&
      owns_whole_buffer(held, 1, sizeof(T))) {
    Tensor<T>::from_base(held).add_(Tensor<T>::from_base(incoming));
    return std::move(held);
  }
  return Tensor<T>::from_base(held) + Tensor<T>::from_base(incoming);
}

// held + incoming; held (the engine's own handle) may be summed into and is left empty.
TensorBase add_grads(TensorBase& held, const TensorBase& incoming) {
  if (!held.defined()) return incoming;
  if (!incoming.defined()) return std::move(held);
  return held.dtype() == DType::Float32 ? add_typed<float>(held, incoming) : add_typed<double>(held, incoming);
}

bool has_nan(const TensorBase& t) {
  if (!t.defined()) return false;
  auto scan = [](auto tensor) {
    for (auto v : tensor.to_vector())
      if (std::isnan(v)) return true;
    return false;
  };
  if (t.dtype() == DType::Float32) return scan(Tensor<float>::from_base(t));
  return scan(Tensor<double>::from_base(t));
}

TensorBase ones_for(const TensorBase& root) {
  if (root.dtype() == DType::Float32) return ones<float>(root.shape());
  return ones<double>(root.shape());
}

struct NodeState {
  int dependencies = 0;  // edges into the node not yet run; -1 once it is queued
  int pending = 0;       // the same count, consumed while ordering the graph for mark_needed
  int first_capture = -1;  // with explicit inputs: the first input whose gradient is this node's
  bool needed = false;
  TensorBase grad;
};

// Per-backward state of every reachable node, in an open-addressing table keyed by node address
// (one allocation per backward instead of one per node).
class NodeTable {
 public:
  NodeTable() : keys_(16, nullptr), vals_(16) {}

  // References stay valid until the next insertion of a new key.
  std::pair<NodeState*, bool> try_emplace(Node* n) {
    size_t i = slot(n);
    if (keys_[i] == n) return {&vals_[i], false};
    if ((count_ + 1) * 2 > keys_.size()) {
      grow();
      i = slot(n);
    }
    keys_[i] = n;
    ++count_;
    return {&vals_[i], true};
  }
  NodeState& operator[](Node* n) { return *try_emplace(n).first; }
  /// The node's state, or null when the node is not in the table.
  NodeState* find(Node* n) {
    const size_t i = slot(n);
    return keys_[i] == n ? &vals_[i] : nullptr;
  }
  /// Empties the table, keeping its capacity when it is small (Note [Backward scratch]).
  void clear() {
    if (keys_.size() > kKeptCapacity) {
      keys_.assign(16, nullptr);
      vals_ = std::vector<NodeState>(16);
    } else {
      for (size_t i = 0; i < keys_.size(); ++i) {
        if (!keys_[i]) continue;
        keys_[i] = nullptr;
        vals_[i] = NodeState();
      }
    }
    count_ = 0;
  }
  template <class F>
  void for_each(F&& f) {
    for (size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i]) f(keys_[i], vals_[i]);
  }

 private:
  size_t slot(Node* n) const {
    const size_t mask = keys_.size() - 1;
    size_t h = reinterpret_cast<uintptr_t>(n);
    h = (h ^ (h >> 21)) * 0x9E3779B97F4A7C15ull;
    size_t i = (h >> 32) & mask;
    while (keys_[i] != nullptr && keys_[i] != n) i = (i + 1) & mask;
    return i;
  }
  void grow() {
    std::vector<Node*> old_keys(keys_.size() * 2, nullptr);
    std::vector<NodeState> old_vals(keys_.size() * 2);
    old_keys.swap(keys_);
    old_vals.swap(vals_);
    for (size_t i = 0; i < old_keys.size(); ++i) {
      if (!old_keys[i]) continue;
      size_t j = slot(old_keys[i]);
      keys_[j] = old_keys[i];
      vals_[j] = std::move(old_vals[i]);
    }
  }

  static constexpr size_t kKeptCapacity = 4096;
  std::vector<Node*> keys_;
  std::vector<NodeState> vals_;
  size_t count_ = 0;
};

// Note [Backward scratch]
// A backward pass of a small graph is a few hundred nanoseconds of work, and its bookkeeping
// (node table, DFS stack, ready queue) used to be five allocations, a fifth of the time of
// `(a * b + a).sum().backward()` on one-element tensors. Each thread keeps finished passes'
// containers, emptied, for the next pass; a nested pass (a hook or a custom function calling
// backward) takes another set. Containers that grew large are shrunk when returned, so one huge
// graph does not pin its memory.
struct BackwardScratch {
  NodeTable state;
  std::vector<Node*> stack;
  std::vector<Node*> ready;
  std::vector<Node*> topo;
  std::vector<int> next_capture;  // inputs sharing a node, as lists threaded from first_capture
  std::vector<std::shared_ptr<Node>> root_nodes;

  void clear() {
    state.clear();
    for (auto* v : {&stack, &ready, &topo}) {
      v->clear();
      if (v->capacity() > 4096) v->shrink_to_fit();
    }
    next_capture.clear();
    root_nodes.clear();
  }
};

class ScratchLease {
 public:
  ScratchLease() {
    auto& pool = free_list();
    if (pool.empty()) {
      scratch_ = std::make_unique<BackwardScratch>();
    } else {
      scratch_ = std::move(pool.back());
      pool.pop_back();
    }
  }
  ~ScratchLease() {
    scratch_->clear();
    auto& pool = free_list();
    if (pool.size() < 4) pool.push_back(std::move(scratch_));
  }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  BackwardScratch& operator*() { return *scratch_; }

 private:
  static std::vector<std::unique_ptr<BackwardScratch>>& free_list() {
    static thread_local std::vector<std::unique_ptr<BackwardScratch>> pool;
    return pool;
  }
  std::unique_ptr<BackwardScratch> scratch_;
};

struct ByRecency {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr() < b->sequence_nr(); }
};

}  // namespace

namespace {

// The roots' nodes, after checking each root and its gradient.
void validate_roots(std::span<const TensorBase> roots, std::span<const TensorBase> root_grads,
                    std::vector<std::shared_ptr<Node>>& root_nodes) {
  for (size_t i = 0; i < roots.size(); ++i) {
    const TensorBase& r = roots[i];
    if (!r.defined()) throw AutogradError("backward: output " + std::to_string(i) + " is undefined");
    if (r.dtype() != DType::Float32 && r.dtype() != DType::Float64) {
      throw TypeError(std::string("backward: output ") + std::to_string(i) + " has dtype " +
                      dtype_name(r.dtype()) + "; only float32 and float64 tensors have gradients");
    }
    detail::check_view_current(r, "backward");
    std::shared_ptr<Node> n = gradient_edge(r);
    if (!n) {
      throw AutogradError("backward: output " + std::to_string(i) +
                          " does not require grad and has no grad_fn");
    }
    if (root_grads[i].defined()) {
      if (root_grads[i].shape() != r.shape() || root_grads[i].dtype() != r.dtype()) {
        throw ShapeError("backward: gradient of shape " + root_grads[i].shape().str() + " (" +
                         dtype_name(root_grads[i].dtype()) + ") for an output of shape " +
                         r.shape().str() + " (" + dtype_name(r.dtype()) + ")");
      }
    } else if (r.numel() != 1) {
      throw ShapeError("backward: a gradient can be implied only for outputs with one element; "
                       "output " + std::to_string(i) + " has shape " + r.shape().str() +
                       ": pass the gradient explicitly");
    }
    root_nodes.push_back(std::move(n));
  }
}

// Counts, for every node reachable from the roots, how many edges lead into it (iterative DFS).
void count_dependencies(BackwardScratch& scratch) {
  NodeTable& state = scratch.state;
  std::vector<Node*>& stack = scratch.stack;
  for (auto& n : scratch.root_nodes) {
    if (state.try_emplace(n.get()).second) stack.push_back(n.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next_edges()) {
      if (!e) continue;
      auto [st, inserted] = state.try_emplace(e.get());
      ++st->dependencies;
      if (inserted) stack.push_back(e.get());
    }
  }
}

// Marks the nodes to run. Without explicit inputs, all of them; with (autograd::grad), those from
// which an input's node is reachable, found in reverse topological order (children before
// parents), and each input's node records which inputs take its gradient.
void mark_needed(BackwardScratch& scratch, const std::vector<TensorBase>* inputs) {
  NodeTable& state = scratch.state;
  if (inputs == nullptr) {
    state.for_each([](Node*, NodeState& s) { s.needed = true; });
    return;
  }
  scratch.next_capture.assign(inputs->size(), -1);
  for (size_t i = 0; i < inputs->size(); ++i) {
    std::shared_ptr<Node> n = gradient_edge((*inputs)[i]);
    if (!n) throw AutogradError("grad: input " + std::to_string(i) + " does not require grad");
    // Nodes not reachable from the roots get no gradient; they need no entry.
    NodeState* s = state.find(n.get());
    if (s == nullptr) continue;
    scratch.next_capture[i] = s->first_capture;
    s->first_capture = static_cast<int>(i);
  }
  state.for_each([](Node*, NodeState& s) { s.pending = s.dependencies; });
  std::vector<Node*>& ready = scratch.stack;
  std::vector<Node*>& topo = scratch.topo;
  for (auto& n : scratch.root_nodes) {
    NodeState& s = state[n.get()];
    if (s.pending == 0) {
      s.pending = -1;  // queued once, however often it is a root
      ready.push_back(n.get());
    }
  }
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    topo.push_back(n);
    for (const auto& e : n->next_edges())
      if (e && --state[e.get()].pending == 0) ready.push_back(e.get());
  }
  for (auto it = topo.rbegin(); it != topo.rend(); ++it) {
    NodeState& s = state[*it];
    if (s.first_capture >= 0) s.needed = true;
    for (const auto& e : (*it)->next_edges())
      if (e && state[e.get()].needed) s.needed = true;
  }
}

// Runs the needed nodes, newest ready node first, summing the gradients that reach each node;
// with explicit inputs, hands their gradients to `captured` instead of accumulating into leaves.
void execute(BackwardScratch& scratch, std::span<const TensorBase> roots,
             std::span<const TensorBase> root_grads, bool keep_graph, bool create_graph,
             const std::vector<TensorBase>* inputs, std::vector<TensorBase>* captured) {
  NodeTable& state = scratch.state;
  std::vector<std::shared_ptr<Node>>& root_nodes = scratch.root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    NodeState& s = state[root_nodes[i].get()];
    TensorBase g = root_grads[i].defined() ? root_grads[i] : ones_for(roots[i]);
    s.grad = add_grads(s.grad, g);
  }

  AutoGradMode mode(create_graph);
  const bool anomaly = anomaly_mode_enabled();
  // A max-heap on the sequence number: the most recently recorded ready node runs first.
  std::vector<Node*>& ready = scratch.ready;
  auto push_ready = [&](Node* n) {
    ready.push_back(n);
    std::push_heap(ready.begin(), ready.end(), ByRecency());
  };
  for (auto& n : root_nodes) {
    NodeState& s = state[n.get()];
    if (s.dependencies == 0) {
      s.dependencies = -1;  // queued
      push_ready(n.get());
    }
  }

  while (!ready.empty()) {
    std::pop_heap(ready.begin(), ready.end(), ByRecency());
    Node* node = ready.back();
    ready.pop_back();
    NodeState& s = state[node];
    TensorBase grad = std::move(s.grad);
    std::vector<TensorBase> outputs;
    if (s.needed && grad.defined()) {
      for (const auto& hook : node->pre_hooks()) {
        TensorBase r = hook(grad);
        if (r.defined()) grad = r;
      }
      for (int i = s.first_capture; i >= 0; i = scratch.next_capture[static_cast<size_t>(i)]) {
        (*captured)[static_cast<size_t>(i)] = grad;
      }
      if (!(inputs != nullptr && node->is_accumulator())) {
        outputs = node->apply(grad);
        if (anomaly) {
          for (size_t i = 0; i < outputs.size(); ++i) {
            if (has_nan(outputs[i])) {
              throw AutogradError("anomaly: backward of " + node->name() + " returned NaN in "
                                  "its gradient for input " + std::to_string(i) +
                                  "; forward op: " + node->forward_context());
            }
          }
        }
        if (!keep_graph) node->release_saved();
      }
    }
    const auto& edges = node->next_edges();
    for (size_t i = 0; i < edges.size(); ++i) {
      Node* next = edges[i].get();
      if (!next) continue;
      NodeState& ns = state[next];
      if (i < outputs.size() && outputs[i].defined()) ns.grad = add_grads(ns.grad, outputs[i]);
      if (--ns.dependencies == 0) push_ready(next);
    }
  }
}

// The callbacks queued by the backward passes running on this thread, innermost last (a hook may
// start a backward of its own).
std::vector<std::vector<std::function<void()>>>& callback_stack() {
  static thread_local std::vector<std::vector<std::function<void()>>> stack;
  return stack;
}

class CallbackScope {
 public:
  CallbackScope() { callback_stack().emplace_back(); }
  ~CallbackScope() { callback_stack().pop_back(); }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
  void run() {
    // By index: a callback may queue another one, which then runs too.
    for (size_t i = 0; i < callback_stack().back().size(); ++i) {
      std::function<void()> callback = std::move(callback_stack().back()[i]);
      callback();
    }
  }
};

}  // namespace

void queue_callback(std::function<void()> callback) {
  if (callback_stack().empty()) {
    throw AutogradError("queue_callback: no backward pass is running on this thread (call it from a hook)");
  }
  callback_stack().back().push_back(std::move(callback));
}

void run_backward(std::span<const TensorBase> roots, std::span<const TensorBase> root_grads,
                  bool keep_graph, bool create_graph, const std::vector<TensorBase>* inputs,
                  std::vector<TensorBase>* captured) {
  CallbackScope callbacks;
  {
    ScratchLease lease;
    BackwardScratch& scratch = *lease;
    validate_roots(roots, root_grads, scratch.root_nodes);
    count_dependencies(scratch);
    if (inputs != nullptr) captured->assign(inputs->size(), TensorBase());
    mark_needed(scratch, inputs);
    execute(scratch, roots, root_grads, keep_graph, create_graph, inputs, captured);
  }
  callbacks.run();
}

namespace {
template <FloatingElement T>
std::vector<Tensor<T>> grad_impl(const std::vector<Tensor<T>>& outputs,
                                 const std::vector<Tensor<T>>& inputs,
                                 const std::vector<Tensor<T>>& grad_outputs, bool create_graph,
                                 bool retain_graph, bool allow_unused) {
  if (!grad_outputs.empty() && grad_outputs.size() != outputs.size()) {
    throw ValueError("grad: " + std::to_string(grad_outputs.size()) + " grad_outputs for " +
                     std::to_string(outputs.size()) + " outputs");
  }
  std::vector<TensorBase> roots(outputs.begin(), outputs.end());
  std::vector<TensorBase> root_grads(outputs.size());
  for (size_t i = 0; i < grad_outputs.size(); ++i) root_grads[i] = grad_outputs[i];
  std::vector<TensorBase> in(inputs.begin(), inputs.end());
  std::vector<TensorBase> captured;
  run_backward(roots, root_grads, retain_graph || create_graph, create_graph, &in, &captured);
  std::vector<Tensor<T>> result;
  result.reserve(captured.size());
  for (size_t i = 0; i < captured.size(); ++i) {
    if (!captured[i].defined()) {
      if (!allow_unused) {
        throw AutogradError("grad: input " + std::to_string(i) + " (shape " +
                            inputs[i].shape().str() + ") was not used to compute the outputs; "
                            "pass allow_unused = true to get an undefined gradient for it");
      }
      result.emplace_back();
      continue;
    }
    Tensor<T> g = Tensor<T>::from_base(captured[i]);
    result.push_back(create_graph ? g : g.detach());
  }
  return result;
}
}  // namespace

std::vector<Tensor<float>> grad(const std::vector<Tensor<float>>& outputs,
                                const std::vector<Tensor<float>>& inputs, bool create_graph,
                                bool allow_unused) {
  return grad_impl<float>(outputs, inputs, {}, create_graph, create_graph, allow_unused);
}
std::vector<Tensor<double>> grad(const std::vector<Tensor<double>>& outputs,
                                 const std::vector<Tensor<double>>& inputs, bool create_graph,
                                 bool allow_unused) {
  return grad_impl<double>(outputs, inputs, {}, create_graph, create_graph, allow_unused);
}
std::vector<Tensor<float>> grad(const std::vector<Tensor<float>>& outputs,
                                const std::vector<Tensor<float>>& inputs,
                                const std::vector<Tensor<float>>& grad_outputs, bool create_graph,
                                bool retain_graph, bool allow_unused) {
  return grad_impl<float>(outputs, inputs, grad_outputs, create_graph, retain_graph, allow_unused);
}
std::vector<Tensor<double>> grad(const std::vector<Tensor<double>>& outputs,
                                 const std::vector<Tensor<double>>& inputs,
                                 const std::vector<Tensor<double>>& grad_outputs,
                                 bool create_graph, bool retain_graph, bool allow_unused) {
  return grad_impl<double>(outputs, inputs, grad_outputs, create_graph, retain_graph, allow_unused);
}

}  // namespace ember::autograd

namespace ember {

template <Element T>
void Tensor<T>::backward(const Tensor<T>& gradient, bool retain_graph, bool create_graph) const {
  detail::require_defined(*this, "backward");
  if constexpr (!FloatingElement<T>) {
    throw TypeError(std::string("backward: a ") + dtype_name(dtype_of<T>) + " tensor has no gradient");
  } else {
    const TensorBase root[1] = {*this}, root_grad[1] = {gradient};
    autograd::run_backward(root, root_grad, retain_graph || create_graph, create_graph, nullptr, nullptr);
  }
}

template <Element T>
void Tensor<T>::retain_grad() const {
  detail::require_defined(*this, "retain_grad");
  if (!requires_grad()) {
    throw AutogradError("retain_grad: the tensor does not require grad");
  }
  if constexpr (!FloatingElement<T>) return;
  if (is_leaf()) return;  // leaves keep their grad anyway
  auto& meta = *impl_->autograd;
  if (meta.retains_grad) return;
  meta.retains_grad = true;
  std::weak_ptr<TensorImpl> weak = impl_;
  grad_fn()->add_pre_hook([weak](const TensorBase& g) -> TensorBase {
    if (auto impl = weak.lock()) {
      auto& m = *impl->autograd;
      if constexpr (FloatingElement<T>) {
        if (!m.grad.defined()) {
          m.grad = Tensor<T>::from_base(g).detach().clone();
        } else {
          m.grad = Tensor<T>::from_base(m.grad) + Tensor<T>::from_base(g).detach();
        }
      }
    }
    return TensorBase();
  });
}

template void Tensor<float>::backward(const Tensor<float>&, bool, bool) const;
template void Tensor<float>::retain_grad() const;
template void Tensor<double>::backward(const Tensor<double>&, bool, bool) const;
template void Tensor<double>::retain_grad() const;
template void Tensor<int64_t>::backward(const Tensor<int64_t>&, bool, bool) const;
template void Tensor<int64_t>::retain_grad() const;
template void Tensor<int32_t>::backward(const Tensor<int32_t>&, bool, bool) const;
template void Tensor<int32_t>::retain_grad() const;
template void Tensor<uint8_t>::backward(const Tensor<uint8_t>&, bool, bool) const;
template void Tensor<uint8_t>::retain_grad() const;
template void Tensor<int8_t>::backward(const Tensor<int8_t>&, bool, bool) const;
template void Tensor<int8_t>::retain_grad() const;

}  // namespace ember
