#pragma once
// The autograd graph.
//
// Note [Autograd graph]
// Each differentiable op that runs with grad mode on and an input that requires grad creates one
// Node, owned by its output tensor (grad_fn). A node has exactly one output and one edge per
// input; an edge points to the input's grad_fn, to the AccumulateGrad node of a leaf, or is null
// for inputs that need no gradient. Nodes own their edges, so a graph lives exactly as long as
// the tensors computed from it. Backward (engine.cpp) and destruction (release_node) are both
// iterative, so graph depth is bounded only by memory.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/tensor_impl.hpp"

namespace ember::autograd {

class Node;

/// Per-tensor autograd state (allocated only for tensors that take part in autograd).
struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;
  TensorBase grad;
  std::shared_ptr<Node> grad_fn;
  // Views: 1 + their storage's history() when grad_fn was recorded; 0 where not known.
  uint64_t view_history = 0;
  // Leaves only. Held strongly: the accumulator refers back to its leaf weakly, so this is no
  // cycle, and recording an op on a leaf then needs no weak_ptr lock.
  std::shared_ptr<Node> grad_accumulator;
  std::vector<std::function<TensorBase(const TensorBase&)>> hooks;  // leaves only
  // Leaves only: called with the leaf after its gradient was accumulated, keyed by the id that
  // removes them.
  std::vector<std::pair<uint64_t, std::function<void(const TensorBase&)>>> post_accumulate_hooks;
  ~AutogradMeta();
};

/// A node's edges: inline for up to three inputs (nearly every op), so recording an op does not
/// allocate for them.
class EdgeList {
 public:
  using Edge = std::shared_ptr<Node>;
  EdgeList() = default;
  EdgeList(const EdgeList&) = delete;
  EdgeList& operator=(const EdgeList&) = delete;

  void push_back(Edge e) {
    if (size_ < kInline) {
      inline_[size_++] = std::move(e);
      return;
    }
    if (size_ == kInline) {
      for (auto& x : inline_) heap_.push_back(std::move(x));
    }
    heap_.push_back(std::move(e));
    ++size_;
  }
  size_t size() const noexcept { return size_; }
  Edge* begin() noexcept { return size_ > kInline ? heap_.data() : inline_; }
  Edge* end() noexcept { return begin() + size_; }
  const Edge* begin() const noexcept { return size_ > kInline ? heap_.data() : inline_; }
  const Edge* end() const noexcept { return begin() + size_; }
  const Edge& operator[](size_t i) const noexcept { return begin()[i]; }
  Edge& operator[](size_t i) noexcept { return begin()[i]; }

 private:
  static constexpr size_t kInline = 3;
  Edge inline_[kInline];
  std::vector<Edge> heap_;
  size_t size_ = 0;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  using PreHook = std::function<TensorBase(const TensorBase&)>;

  Node();
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// Gradients with respect to each input (an undefined tensor where an input gets none), given
  /// the gradient of the output.
  virtual std::vector<TensorBase> apply(const TensorBase& grad_output) = 0;
  /// The forward op's name, e.g. "mul".
  virtual std::string name() const = 0;
  /// Drops saved tensors after a backward without retain_graph.
  virtual void release_saved() noexcept {}
  /// True for the node that accumulates into a leaf's grad().
  virtual bool is_accumulator() const noexcept { return false; }

  const EdgeList& next_edges() const noexcept { return next_; }
  EdgeList& mutable_next_edges() noexcept { return next_; }
  uint64_t sequence_nr() const noexcept { return sequence_nr_; }
  void add_pre_hook(PreHook hook) { pre_hooks_.push_back(std::move(hook)); }
  const std::vector<PreHook>& pre_hooks() const noexcept { return pre_hooks_; }
  /// What the forward op saw (set under anomaly mode), used in anomaly errors.
  const std::string& forward_context() const noexcept { return forward_context_; }
  void set_forward_context(std::string s) { forward_context_ = std::move(s); }

 private:
  EdgeList next_;
  std::vector<PreHook> pre_hooks_;
  std::string forward_context_;
  uint64_t sequence_nr_;
};

/// Accumulates incoming gradients into a leaf's grad(). It refers to the leaf weakly: a leaf's
/// grad can hold a graph that leads back here (backward with create_graph), and a strong
/// reference would make that a cycle that is never freed. A leaf nobody holds any more needs no
/// gradient.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : leaf_(leaf) {}
  std::vector<TensorBase> apply(const TensorBase& grad_output) override;
  std::string name() const override { return "AccumulateGrad"; }
  bool is_accumulator() const noexcept override { return true; }

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

/// Releases a node reference without recursion: the last reference to a long chain of nodes is
/// dropped iteratively, so destroying a 10^6-op graph does not overflow the stack.
void release_node(std::shared_ptr<Node>&& node) noexcept;

/// The node a gradient for `t` flows into: its grad_fn, or its leaf accumulator (created on
/// demand), or nullptr when `t` does not require grad.
std::shared_ptr<Node> gradient_edge(const TensorBase& t);

/// Autograd state of a tensor, created on demand.
AutogradMeta& autograd_meta(TensorImpl& impl);

}  // namespace ember::autograd
