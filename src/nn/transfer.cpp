#include "ember/nn/transfer.hpp"

#include <optional>

#include "ember/nn/normalization.hpp"

namespace ember::nn {

template <FloatingElement T>
void freeze(Module<T>& module, FreezeOptions options) {
  for (auto& p : module.parameters()) p.requires_grad_(false);
  if (!options.batch_norm_eval) return;
  for (auto& [path, m] : module.named_modules())
    if (dynamic_cast<BatchNorm<T>*>(m) != nullptr) m->keep_eval(true);
}

template <FloatingElement T>
void unfreeze(Module<T>& module) {
  for (auto& p : module.parameters()) p.requires_grad_(true);
  for (auto& [path, m] : module.named_modules()) {
    if (!m->keeps_eval()) continue;
    m->keep_eval(false);
    m->train(module.is_training());
  }
}

namespace {
// Thrown by the hook at the requested layer to skip the rest of the forward pass; not an
// ember::Error, so modules on the way out do not catch it.
struct FeaturesReached {};
}  // namespace

template <FloatingElement T>
Tensor<T> features(Module<T>& model, const Tensor<T>& x, const std::string& layer) {
  Module<T>& target = [&]() -> Module<T>& {
    try {
      return model.submodule(layer);
    } catch (const IndexError& e) {
      throw IndexError("features: no layer \"" + layer + "\" in the model: " + e.what());
    }
  }();
  std::optional<Tensor<T>> out;
  const int64_t id = target.register_forward_hook([&out](Module<T>&, const Tensor<T>&, const Tensor<T>& y) -> Tensor<T> {
    out = y;
    throw FeaturesReached{};
  });
  struct RemoveHook {
    Module<T>& m;
    int64_t id;
    ~RemoveHook() { m.remove_hook(id); }
  } remove{target, id};
  try {
    Tensor<T> y = model(x);
    if (&target == &model) return y;
  } catch (const FeaturesReached&) {
    return *out;
  }
  throw ValueError("features: the layer \"" + layer + "\" (" + target.type_name() +
                   ") is registered in the model but its forward never called it");
}

template void freeze<float>(Module<float>&, FreezeOptions);
template void freeze<double>(Module<double>&, FreezeOptions);
template void unfreeze<float>(Module<float>&);
template void unfreeze<double>(Module<double>&);
template Tensor<float> features<float>(Module<float>&, const Tensor<float>&, const std::string&);
template Tensor<double> features<double>(Module<double>&, const Tensor<double>&, const std::string&);

}  // namespace ember::nn
