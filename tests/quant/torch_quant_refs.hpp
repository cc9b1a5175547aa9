#pragma once
// The tensors tools/make_torch_refs.py wrote to tests/data/torch_quant.safetensors, by name.
#include <map>
#include <string>

#include "ember/ember.hpp"
#include "support/reference_file.hpp"

namespace ember::testing {

inline const std::map<std::string, TensorBase>& quant_refs() {
  static const std::map<std::string, TensorBase> r = [] {
    std::map<std::string, TensorBase> out;
    for (auto& e : io::read_safetensors(data_dir() + "/torch_quant.safetensors").tensors) out.emplace(e.name, e.tensor);
    return out;
  }();
  return r;
}

template <class T>
Tensor<T> quant_ref(const std::string& name) {
  return Tensor<T>::from_base(quant_refs().at(name));
}

}  // namespace ember::testing
