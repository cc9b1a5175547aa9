#pragma once
// Losses as objects (torch.nn.MSELoss and friends): hold the options, call with (input, target).
#include "ember/nn/functional.hpp"

namespace ember::nn {

using functional::Reduction;

#define EMBER_SIMPLE_LOSS(Name, fn)                                                  \
  template <FloatingElement T = float>                                               \
  struct Name {                                                                      \
    Reduction reduction = Reduction::Mean;                                           \
    Tensor<T> operator()(const Tensor<T>& input, const Tensor<T>& target) const {    \
      return functional::fn(input, target, reduction);                               \
    }                                                                                \
  };
EMBER_SIMPLE_LOSS(MSELoss, mse_loss)
EMBER_SIMPLE_LOSS(L1Loss, l1_loss)
EMBER_SIMPLE_LOSS(BCELoss, binary_cross_entropy)
#undef EMBER_SIMPLE_LOSS

template <FloatingElement T = float>
struct SmoothL1Loss {
  Reduction reduction = Reduction::Mean;
  double beta = 1.0;
  Tensor<T> operator()(const Tensor<T>& input, const Tensor<T>& target) const {
    return functional::smooth_l1_loss(input, target, reduction, beta);
  }
};

template <FloatingElement T = float>
struct HuberLoss {
  Reduction reduction = Reduction::Mean;
  double delta = 1.0;
  Tensor<T> operator()(const Tensor<T>& input, const Tensor<T>& target) const {
    return functional::huber_loss(input, target, reduction, delta);
  }
};

template <FloatingElement T = float>
struct CrossEntropyLoss {
  functional::CrossEntropyOptions<T> options;
  Tensor<T> operator()(const Tensor<T>& logits, const Tensor<int64_t>& targets) const {
    return functional::cross_entropy(logits, targets, options);
  }
  Tensor<T> operator()(const Tensor<T>& logits, const Tensor<T>& probabilities) const {
    return functional::cross_entropy(logits, probabilities, options);
  }
};

template <FloatingElement T = float>
struct NLLLoss {
  functional::CrossEntropyOptions<T> options;
  Tensor<T> operator()(const Tensor<T>& log_probs, const Tensor<int64_t>& targets) const {
    return functional::nll_loss(log_probs, targets, options);
  }
};

template <FloatingElement T = float>
struct BCEWithLogitsLoss {
  Reduction reduction = Reduction::Mean;
  Tensor<T> pos_weight;
  Tensor<T> operator()(const Tensor<T>& logits, const Tensor<T>& target) const {
    return functional::binary_cross_entropy_with_logits(logits, target, reduction, pos_weight);
  }
};

template <FloatingElement T = float>
struct KLDivLoss {
  Reduction reduction = Reduction::Mean;
  bool log_target = false;
  bool batchmean = false;  // PyTorch's reduction="batchmean"
  Tensor<T> operator()(const Tensor<T>& input, const Tensor<T>& target) const {
    return functional::kl_div(input, target, reduction, log_target, batchmean);
  }
};

template <FloatingElement T = float>
struct CTCLoss {
  int64_t blank = 0;
  Reduction reduction = Reduction::Mean;
  bool zero_infinity = false;
  Tensor<T> operator()(const Tensor<T>& log_probs, const Tensor<int64_t>& targets,
                       const Tensor<int64_t>& input_lengths, const Tensor<int64_t>& target_lengths) const {
    return functional::ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity);
  }
};

template <FloatingElement T = float>
struct CosineEmbeddingLoss {
  double margin = 0.0;
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& x1, const Tensor<T>& x2, const Tensor<T>& y) const {
    return functional::cosine_embedding_loss(x1, x2, y, margin, reduction);
  }
};

template <FloatingElement T = float>
struct TripletMarginLoss {
  double margin = 1.0;
  double p = 2.0;
  double eps = 1e-6;
  bool swap = false;
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& anchor, const Tensor<T>& positive, const Tensor<T>& negative) const {
    return functional::triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap, reduction);
  }
};

template <FloatingElement T = float>
struct MarginRankingLoss {
  double margin = 0.0;
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& x1, const Tensor<T>& x2, const Tensor<T>& y) const {
    return functional::margin_ranking_loss(x1, x2, y, margin, reduction);
  }
};

template <FloatingElement T = float>
struct HingeEmbeddingLoss {
  double margin = 1.0;
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& x, const Tensor<T>& y) const {
    return functional::hinge_embedding_loss(x, y, margin, reduction);
  }
};

template <FloatingElement T = float>
struct SoftMarginLoss {
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& x, const Tensor<T>& y) const {
    return functional::soft_margin_loss(x, y, reduction);
  }
};

template <FloatingElement T = float>
struct MultiLabelSoftMarginLoss {
  Tensor<T> weight;  // per class [C] (undefined: all ones)
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& x, const Tensor<T>& y) const {
    return functional::multilabel_soft_margin_loss(x, y, weight, reduction);
  }
};

template <FloatingElement T = float>
struct MultiMarginLoss {
  int64_t p = 1;
  double margin = 1.0;
  Tensor<T> weight;  // per class [C] (undefined: all ones)
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& x, const Tensor<int64_t>& y) const {
    return functional::multi_margin_loss(x, y, p, margin, weight, reduction);
  }
};

template <FloatingElement T = float>
struct PoissonNLLLoss {
  bool log_input = true;
  bool full = false;
  double eps = 1e-8;
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& input, const Tensor<T>& target) const {
    return functional::poisson_nll_loss(input, target, log_input, full, eps, reduction);
  }
};

template <FloatingElement T = float>
struct GaussianNLLLoss {
  bool full = false;
  double eps = 1e-6;
  Reduction reduction = Reduction::Mean;
  Tensor<T> operator()(const Tensor<T>& input, const Tensor<T>& target, const Tensor<T>& var) const {
    return functional::gaussian_nll_loss(input, target, var, full, eps, reduction);
  }
};

/// torch.nn.CosineSimilarity and torch.nn.PairwiseDistance: callables over two inputs.
template <FloatingElement T = float>
struct CosineSimilarity {
  int64_t dim = 1;
  double eps = 1e-8;
  Tensor<T> operator()(const Tensor<T>& x1, const Tensor<T>& x2) const {
    return functional::cosine_similarity(x1, x2, dim, eps);
  }
};

template <FloatingElement T = float>
struct PairwiseDistance {
  double p = 2.0;
  double eps = 1e-6;
  bool keepdim = false;
  Tensor<T> operator()(const Tensor<T>& x1, const Tensor<T>& x2) const {
    return functional::pairwise_distance(x1, x2, p, eps, keepdim);
  }
};

}  // namespace ember::nn
