// Observers and torch.ao.quantization's parameter rules (ember/quant/observer.hpp).
#include "ember/quant/observer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../core/internal.hpp"
#include "ember/core/error.hpp"

namespace ember::quant {
namespace {

using detail::cat_str;

// The values of x (contiguous float), refused when empty or NaN.
const float* checked_values(const Tensor<float>& x, const char* what, Tensor<float>& keep) {
  if (!x.defined() || x.numel() == 0) throw ValueError(cat_str(what, ": nothing to observe (an empty batch)"));
  keep = x.contiguous();
  const float* p = keep.data();
  for (int64_t i = 0; i < keep.numel(); ++i) {
    if (std::isnan(p[i])) throw ValueError(cat_str(what, ": NaN in the observed values (element ", i, ")"));
    if (std::isinf(p[i])) throw ValueError(cat_str(what, ": an infinity in the observed values (element ", i, ")"));
  }
  return p;
}

}  // namespace

void MinMaxObserver::observe(const Tensor<float>& x, const char* what) {
  Tensor<float> keep;
  const float* p = checked_values(x, what, keep);
  const auto [lo, hi] = std::minmax_element(p, p + keep.numel());
  min_ = seen_ ? std::min(min_, *lo) : *lo;
  max_ = seen_ ? std::max(max_, *hi) : *hi;
  seen_ = true;
}

QParams MinMaxObserver::qparams() const {
  if (!seen_) throw ValueError("MinMaxObserver: no values observed (no calibration data?)");
  return calculate_qparams(min_, max_, spec_);
}

void PerChannelMinMaxObserver::observe(const Tensor<float>& x, const char* what) {
  Tensor<float> keep;
  const float* p = checked_values(x, what, keep);
  const int64_t dim = keep.dim();
  const int64_t axis = axis_ < 0 ? axis_ + dim : axis_;
  if (axis < 0 || axis >= dim) throw IndexError(cat_str(what, ": channel axis ", axis_, " is out of range for ", keep.shape()));
  const Shape& s = keep.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= s[d];
  for (int64_t d = axis + 1; d < dim; ++d) inner *= s[d];
  const int64_t c = s[axis];
  if (!min_.empty() && static_cast<int64_t>(min_.size()) != c) {
    throw ShapeError(cat_str(what, ": observed ", min_.size(), " channels before, now ", c));
  }
  const bool first = min_.empty();
  if (first) {
    min_.assign(static_cast<size_t>(c), std::numeric_limits<float>::infinity());
    max_.assign(static_cast<size_t>(c), -std::numeric_limits<float>::infinity());
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* run = p + (o * c + ch) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        min_[static_cast<size_t>(ch)] = std::min(min_[static_cast<size_t>(ch)], run[i]);
        max_[static_cast<size_t>(ch)] = std::max(max_[static_cast<size_t>(ch)], run[i]);
      }
    }
  }
}

std::vector<QParams> PerChannelMinMaxObserver::qparams() const {
  if (min_.empty()) throw ValueError("PerChannelMinMaxObserver: no values observed");
  std::vector<QParams> out;
  for (size_t i = 0; i < min_.size(); ++i) out.push_back(calculate_qparams(min_[i], max_[i], spec_));
  return out;
}

void HistogramObserver::observe(const Tensor<float>& x, const char* what) {
  Tensor<float> keep;
  const float* p = checked_values(x, what, keep);
  const int64_t n = keep.numel();
  const auto [lo_it, hi_it] = std::minmax_element(p, p + n);
  const float lo = histogram_.empty() ? *lo_it : std::min(min_, *lo_it);
  const float hi = histogram_.empty() ? *hi_it : std::max(max_, *hi_it);
  std::vector<double> h(static_cast<size_t>(bins_), 0.0);
  const double width = (static_cast<double>(hi) - lo) / static_cast<double>(bins_);
  auto bin_of = [&](double v) {
    if (width <= 0) return int64_t(0);
    return std::clamp(static_cast<int64_t>((v - lo) / width), int64_t(0), bins_ - 1);
  };
  if (!histogram_.empty()) {
    // The old bins' counts, spread uniformly over each old bin, land in the new bins they overlap.
    const double old_width = (static_cast<double>(max_) - min_) / static_cast<double>(bins_);
    for (int64_t b = 0; b < bins_; ++b) {
      const double count = histogram_[static_cast<size_t>(b)];
      if (count == 0) continue;
      if (old_width <= 0 || width <= 0) {
        h[static_cast<size_t>(bin_of(min_))] += count;
        continue;
      }
      const double begin = min_ + old_width * static_cast<double>(b), end = begin + old_width;
      for (int64_t nb = bin_of(begin); nb <= bin_of(end) && nb < bins_; ++nb) {
        const double nb_begin = lo + width * static_cast<double>(nb), nb_end = nb_begin + width;
        const double overlap = std::min(end, nb_end) - std::max(begin, nb_begin);
        if (overlap > 0) h[static_cast<size_t>(nb)] += count * overlap / old_width;
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) h[static_cast<size_t>(bin_of(p[i]))] += 1.0;
  histogram_ = std::move(h);
  min_ = lo;
  max_ = hi;
}

std::pair<float, float> HistogramObserver::chosen_range() const {
  if (histogram_.empty()) throw ValueError("HistogramObserver: no values observed (no calibration data?)");
  const int64_t bins = bins_;
  const double bin_width = (static_cast<double>(max_) - min_) / static_cast<double>(bins);
  if (bin_width <= 0) return {min_, max_};
  // 2^8 levels whatever the range's reduction, as torch counts them (2 ** iinfo(dtype).bits).
  const double dst_nbins = 256;
  // torch's _compute_quantization_error: the L2 error of quantizing the histogram's mass, spread
  // uniformly within each bin, into dst_nbins levels between bins start and end.
  auto error = [&](int64_t start, int64_t end) {
    const double dst_width = bin_width * static_cast<double>(end - start + 1) / dst_nbins;
    if (dst_width == 0.0) return 0.0;
    auto norm = [](double b, double e, double density) { return density * (e * e * e - b * b * b) / 3.0; };
    double total = 0;
    for (int64_t s = 0; s < bins; ++s) {
      const double density = histogram_[static_cast<size_t>(s)] / bin_width;
      if (density == 0) continue;
      const double begin = static_cast<double>(s - start) * bin_width, end_ = begin + bin_width;
      const double first = std::clamp(std::floor(begin / dst_width), 0.0, dst_nbins - 1);
      const double last = std::clamp(std::floor(end_ / dst_width), 0.0, dst_nbins - 1);
      total += norm(begin - (first + 0.5) * dst_width, dst_width / 2, density);
      total += (last - first - 1) * norm(-dst_width / 2, dst_width / 2, density);
      total += norm(-dst_width / 2, end_ - (last * dst_width + dst_width / 2), density);
    }
    return total;
  };
  // torch's _non_linear_param_search: shrink [alpha, beta] quantile bounds from whichever side
  // frees more bins, while the error keeps falling.
  std::vector<double> csum(histogram_.size());
  double run = 0;
  for (size_t i = 0; i < histogram_.size(); ++i) csum[i] = run += histogram_[i];
  const double total = run;
  const double step = 1e-5;
  double alpha = 0.0, beta = 1.0, norm_min = std::numeric_limits<double>::infinity();
  int64_t start = 0, end = bins - 1;
  while (alpha < beta) {
    const double next_alpha = alpha + step, next_beta = beta - step;
    int64_t l = start, r = end;
    while (l < end && csum[static_cast<size_t>(l)] < next_alpha * total) ++l;
    while (r > start && csum[static_cast<size_t>(r)] > next_beta * total) --r;
    int64_t next_start = start, next_end = end;
    if (l - start > end - r) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start && next_end == end) continue;
    const double norm = error(next_start, next_end);
    if (norm > norm_min) break;
    norm_min = norm;
    start = next_start;
    end = next_end;
  }
  return {static_cast<float>(min_ + bin_width * static_cast<double>(start)),
          static_cast<float>(min_ + bin_width * static_cast<double>(end + 1))};
}

QParams HistogramObserver::qparams() const {
  const auto [lo, hi] = chosen_range();
  return calculate_qparams(lo, hi, spec_);
}

}  // namespace ember::quant
