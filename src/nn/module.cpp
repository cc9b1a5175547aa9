#include "ember/nn/module.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <ostream>
#include <set>

#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"
#include "ember/ops/factory.hpp"

namespace ember::nn {

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  return name.empty() ? prefix : prefix + "." + name;
}

bool valid_name(const std::string& name) {
  return !name.empty() && name.find('.') == std::string::npos;
}

// Copies `src` into `dst` (same shape; any float/int dtype pair of equal type) without autograd.
void copy_entry(TensorBase& dst, const TensorBase& src) {
  NoGradGuard no_grad;
  switch (dst.dtype()) {
    case DType::Float32: Tensor<float>::from_base(dst).copy_(Tensor<float>::from_base(src)); break;
    case DType::Float64: Tensor<double>::from_base(dst).copy_(Tensor<double>::from_base(src)); break;
    case DType::Int64: Tensor<int64_t>::from_base(dst).copy_(Tensor<int64_t>::from_base(src)); break;
    case DType::Int32: Tensor<int32_t>::from_base(dst).copy_(Tensor<int32_t>::from_base(src)); break;
    case DType::UInt8: Tensor<uint8_t>::from_base(dst).copy_(Tensor<uint8_t>::from_base(src)); break;
    case DType::Int8: Tensor<int8_t>::from_base(dst).copy_(Tensor<int8_t>::from_base(src)); break;
  }
}

std::string shape_of(const TensorBase& t) { return t.defined() ? t.shape().str() : "undefined"; }
}  // namespace

template <FloatingElement T>
Tensor<T> Module<T>::operator()(const Tensor<T>& input) {
  if (moved_from_.value) {
    throw ValueError(type_name() + ": this module was moved from (into register_module, a container or another "
                     "module) and is an empty shell; call the module it was moved into, e.g. the holder "
                     "register_module returned");
  }
  try {
    Tensor<T> x = input;
    for (auto& [id, hook] : pre_hooks_) {
      Tensor<T> r = hook(*this, x);
      if (r.defined()) x = r;
    }
    Tensor<T> y = forward(x);
    for (auto& [id, hook] : post_hooks_) {
      Tensor<T> r = hook(*this, x, y);
      if (r.defined()) y = r;
    }
    return y;
  } catch (Error& e) {
    if (!registered_name_.empty()) e.prepend_module(registered_name_);
    throw;
  }
}

template <FloatingElement T>
Tensor<T> Module<T>::call_child(const std::string& /*name*/, Module& child, const Tensor<T>& input) {
  return child(input);
}

template <FloatingElement T>
void Module<T>::check_new_name(const std::string& name, const char* what) const {
  if (!valid_name(name)) {
    throw ValueError(std::string(type_name()) + ": " + what + " name \"" + name +
                     "\" must be non-empty and contain no '.'");
  }
  auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& e) {
      if constexpr (std::is_same_v<std::decay_t<decltype(e)>, NamedTensor>) {
        return e.name == name;
      } else {
        return e.first == name;
      }
    });
  };
  if (taken(params_) || taken(buffers_) || taken(children_)) {
    throw ValueError(std::string(type_name()) + ": the name \"" + name + "\" is already registered");
  }
}

template <FloatingElement T>
Tensor<T> Module<T>::register_parameter(const std::string& name, Tensor<T> tensor, bool requires_grad) {
  check_new_name(name, "parameter");
  if (!tensor.defined()) {
    throw ValueError(type_name() + ": parameter \"" + name + "\" is undefined");
  }
  if (!tensor.is_leaf()) tensor = tensor.detach();
  tensor.requires_grad_(requires_grad);
  params_.emplace_back(name, tensor);
  return tensor;
}

template <FloatingElement T>
Tensor<T> Module<T>::remove_parameter(const std::string& name) {
  for (auto it = params_.begin(); it != params_.end(); ++it) {
    if (it->first != name) continue;
    Tensor<T> t = it->second;
    params_.erase(it);
    return t;
  }
  std::string names;
  for (const auto& [n, p] : params_) names += (names.empty() ? "" : ", ") + n;
  throw IndexError(type_name() + ": no parameter \"" + name + "\" (its parameters: " +
                   (names.empty() ? std::string("none") : names) + ")");
}

template <FloatingElement T>
void Module<T>::remove_buffer(const std::string& name) {
  for (auto it = buffers_.begin(); it != buffers_.end(); ++it) {
    if (it->name != name) continue;
    buffers_.erase(it);
    return;
  }
  throw IndexError(type_name() + ": no buffer \"" + name + "\"");
}

template <FloatingElement T>
void Module<T>::add_buffer(const std::string& name, const TensorBase& tensor) {
  check_new_name(name, "buffer");
  buffers_.push_back({name, tensor});
}

template <FloatingElement T>
void Module<T>::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name, "module");
  if (!child) throw ValueError(type_name() + ": module \"" + name + "\" is null");
  if (child->registered_name_.empty()) child->registered_name_ = name;
  children_.emplace_back(name, std::move(child));
}

template <FloatingElement T>
std::shared_ptr<Module<T>>& Module<T>::child_slot(const std::string& dotted) {
  const auto dot = dotted.find('.');
  const std::string head = dotted.substr(0, dot);
  for (auto& [cname, child] : children_) {
    if (cname != head) continue;
    return dot == std::string::npos ? child : child->child_slot(dotted.substr(dot + 1));
  }
  std::string names;
  for (const auto& [cname, child] : children_) names += (names.empty() ? "" : ", ") + cname;
  throw IndexError(type_name() + ": no child module named \"" + head + "\" (children: " +
                   (names.empty() ? "none" : names) + ")");
}

template <FloatingElement T>
Module<T>& Module<T>::submodule(const std::string& dotted) {
  if (dotted.empty()) return *this;
  return *child_slot(dotted);
}

template <FloatingElement T>
std::vector<std::pair<std::string, Tensor<T>>> Module<T>::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor<T>>> out(params_.begin(), params_.end());
  if (recurse) {
    for (const auto& [cname, child] : children_)
      for (auto& [pname, p] : child->named_parameters(true)) out.emplace_back(join(cname, pname), p);
  }
  return out;
}

template <FloatingElement T>
std::vector<Tensor<T>> Module<T>::parameters(bool recurse) const {
  std::vector<Tensor<T>> out;
  for (auto& [name, p] : named_parameters(recurse)) out.push_back(p);
  return out;
}

template <FloatingElement T>
std::vector<NamedTensor> Module<T>::named_buffers(bool recurse) const {
  std::vector<NamedTensor> out(buffers_.begin(), buffers_.end());
  if (recurse) {
    for (const auto& [cname, child] : children_)
      for (auto& b : child->named_buffers(true)) out.push_back({join(cname, b.name), b.tensor});
  }
  return out;
}

template <FloatingElement T>
std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>> Module<T>::named_children() const {
  return children_;
}

template <FloatingElement T>
std::vector<std::shared_ptr<Module<T>>> Module<T>::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (auto& [name, c] : children_) out.push_back(c);
  return out;
}

template <FloatingElement T>
std::vector<std::pair<std::string, Module<T>*>> Module<T>::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [cname, child] : children_)
    for (auto& [path, m] : child->named_modules()) out.emplace_back(join(cname, path), m);
  return out;
}

template <FloatingElement T>
TensorBase& Module<T>::entry(const std::string& dotted) {
  const auto dot = dotted.find('.');
  if (dot != std::string::npos) {
    const std::string head = dotted.substr(0, dot);
    for (auto& [cname, child] : children_)
      if (cname == head) return child->entry(dotted.substr(dot + 1));
  } else {
    for (auto& [name, p] : params_)
      if (name == dotted) return p;
    for (auto& b : buffers_)
      if (b.name == dotted) return b.tensor;
  }
  throw IndexError(type_name() + ": no parameter or buffer named \"" + dotted + "\"");
}

template <FloatingElement T>
void Module<T>::train(bool on) {
  training_ = on && !keep_eval_;
  for (auto& [name, child] : children_) child->train(on);
}

template <FloatingElement T>
void Module<T>::zero_grad(bool set_to_none) {
  for (auto& p : parameters()) {
    if (set_to_none) {
      p.set_grad(Tensor<T>());
    } else if (p.grad().defined()) {
      NoGradGuard no_grad;
      p.grad().zero_();
    }
  }
}

template <FloatingElement T>
void Module<T>::collect_state(const std::string& prefix, StateDict& out) const {
  for (const auto& [name, p] : params_) out.push_back({join(prefix, name), p});
  for (const auto& b : buffers_) out.push_back({join(prefix, b.name), b.tensor});
  for (const auto& [cname, child] : children_) child->collect_state(join(prefix, cname), out);
}

template <FloatingElement T>
StateDict Module<T>::state_dict() const {
  StateDict out;
  collect_state("", out);
  return out;
}

template <FloatingElement T>
LoadResult Module<T>::load_state_dict(const StateDict& state, bool strict) {
  StateDict mine = state_dict();
  std::map<std::string, const TensorBase*> given;
  std::vector<std::string> duplicates;
  for (const auto& e : state) {
    if (!given.emplace(e.name, &e.tensor).second) duplicates.push_back(e.name);
  }
  std::vector<std::string> missing, mismatched;
  std::set<std::string> used;
  for (auto& e : mine) {
    auto it = given.find(e.name);
    if (it == given.end()) {
      missing.push_back(e.name);
      continue;
    }
    used.insert(e.name);
    const TensorBase& src = *it->second;
    if (!src.defined() || src.shape() != e.tensor.shape() || src.dtype() != e.tensor.dtype()) {
      mismatched.push_back(e.name + " (expected " + e.tensor.shape().str() + " " +
                           dtype_name(e.tensor.dtype()) + ", got " + shape_of(src) +
                           (src.defined() ? std::string(" ") + dtype_name(src.dtype()) : "") + ")");
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& e : state)
    if (!used.count(e.name)) unexpected.push_back(e.name);
  const bool fail = !mismatched.empty() || !duplicates.empty() ||
                    (strict && (!missing.empty() || !unexpected.empty()));
  if (fail) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
      return s;
    };
    std::string msg = "load_state_dict: the state dict does not fit " + type_name() + ":";
    if (!missing.empty() && strict) msg += " missing keys: " + list(missing) + ";";
    if (!unexpected.empty() && strict) msg += " unexpected keys: " + list(unexpected) + ";";
    if (!mismatched.empty()) msg += " mismatched: " + list(mismatched) + ";";
    if (!duplicates.empty()) msg += " duplicate keys: " + list(duplicates) + ";";
    msg.pop_back();
    throw ValueError(msg);
  }
  for (auto& e : mine) {
    auto it = given.find(e.name);
    if (it != given.end()) copy_entry(e.tensor, *it->second);
  }
  return {std::move(missing), std::move(unexpected)};
}

template <FloatingElement T>
int64_t Module<T>::register_forward_pre_hook(ForwardPreHook hook) {
  pre_hooks_.emplace_back(next_hook_id_, std::move(hook));
  return next_hook_id_++;
}

template <FloatingElement T>
int64_t Module<T>::register_forward_pre_hook(ForwardPreHook hook, std::string key) {
  const int64_t id = register_forward_pre_hook(std::move(hook));
  hook_keys_.emplace_back(id, std::move(key));
  return id;
}

template <FloatingElement T>
int64_t Module<T>::forward_pre_hook_id(const std::string& key) const {
  for (const auto& [id, k] : hook_keys_) {
    if (k == key) return id;
  }
  return -1;
}

template <FloatingElement T>
const typename Module<T>::ForwardPreHook* Module<T>::forward_pre_hook(int64_t id) const {
  for (const auto& [i, hook] : pre_hooks_) {
    if (i == id) return &hook;
  }
  return nullptr;
}

template <FloatingElement T>
int64_t Module<T>::register_forward_hook(ForwardHook hook) {
  post_hooks_.emplace_back(next_hook_id_, std::move(hook));
  return next_hook_id_++;
}

template <FloatingElement T>
void Module<T>::remove_hook(int64_t id) {
  auto drop = [id](auto& list) {
    list.erase(std::remove_if(list.begin(), list.end(), [id](const auto& h) { return h.first == id; }),
               list.end());
  };
  drop(pre_hooks_);
  drop(post_hooks_);
  drop(hook_keys_);
}

template <FloatingElement T>
std::string Module<T>::summary(const Shape& input_shape) {
  struct Row {
    std::string path, type, shape;
    int64_t params;
  };
  std::vector<Row> rows;
  std::vector<std::pair<Module*, int64_t>> installed;
  for (auto& [path, m] : named_modules()) {
    int64_t count = 0;
    for (auto& p : m->parameters(false)) count += p.numel();
    rows.push_back({path.empty() ? "(root)" : path, m->type_name(), "-", count});
    const size_t row = rows.size() - 1;
    int64_t id = m->register_forward_hook([&rows, row](Module&, const Tensor<T>&, const Tensor<T>& y) {
      rows[row].shape = y.shape().str();
      return Tensor<T>();
    });
    installed.emplace_back(m, id);
  }
  const bool was_training = training_;
  try {
    NoGradGuard no_grad;
    eval();
    (*this)(zeros<T>(input_shape));
  } catch (...) {
    for (auto& [m, id] : installed) m->remove_hook(id);
    train(was_training);
    throw;
  }
  for (auto& [m, id] : installed) m->remove_hook(id);
  train(was_training);
  size_t w0 = 6, w1 = 4, w2 = 12;
  int64_t total = 0, trainable = 0;
  for (auto& r : rows) {
    w0 = std::max(w0, r.path.size());
    w1 = std::max(w1, r.type.size());
    w2 = std::max(w2, r.shape.size());
  }
  for (auto& p : parameters()) {
    total += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  auto pad = [](const std::string& s, size_t w) { return s + std::string(w - s.size(), ' '); };
  std::string out = pad("module", w0) + "  " + pad("type", w1) + "  " + pad("output shape", w2) +
                    "  params\n";
  for (auto& r : rows) {
    out += pad(r.path, w0) + "  " + pad(r.type, w1) + "  " + pad(r.shape, w2) + "  " +
           std::to_string(r.params) + "\n";
  }
  out += "input " + input_shape.str() + "; parameters: " + std::to_string(total) + " (" +
         std::to_string(trainable) + " trainable)\n";
  return out;
}

template <FloatingElement T>
void Module<T>::str_into(std::string& out, int indent) const {
  out += type_name() + "(" + extra_repr();
  if (!children_.empty()) {
    out += "\n";
    for (const auto& [name, child] : children_) {
      out += std::string(static_cast<size_t>(indent + 2), ' ') + "(" + name + "): ";
      child->str_into(out, indent + 2);
      out += "\n";
    }
    out += std::string(static_cast<size_t>(indent), ' ');
  }
  out += ")";
}

template <FloatingElement T>
std::string Module<T>::str() const {
  std::string out;
  str_into(out, 0);
  return out;
}

template <FloatingElement T>
std::ostream& operator<<(std::ostream& os, const Module<T>& m) {
  return os << m.str();
}

template class Module<float>;
template class Module<double>;
template std::ostream& operator<< <float>(std::ostream&, const Module<float>&);
template std::ostream& operator<< <double>(std::ostream&, const Module<double>&);

}  // namespace ember::nn
