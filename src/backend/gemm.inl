// Portable GEMM body, included by cpu_kernels.inl inside each ISA's namespace. A straightforward
// i-k-j loop over row blocks that the compiler vectorises along rows of B and C.
namespace ember::backend::EMBER_ISA_NS {
namespace {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  auto a_at = [&](int64_t i, int64_t p) { return trans_a ? a[p * lda + i] : a[i * lda + p]; };
  auto rows = [&](int64_t r0, int64_t r1) {
    std::vector<T> brow;
    if (trans_b) brow.resize(static_cast<size_t>(n));
    for (int64_t i = r0; i < r1; ++i) {
      T* ci = c + i * ldc;
      if (beta == T(0)) {
        std::fill(ci, ci + n, T(0));
      } else if (beta != T(1)) {
        for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
      }
      for (int64_t p = 0; p < k; ++p) {
        const T av = alpha * a_at(i, p);
        const T* bp;
        if (trans_b) {
          for (int64_t j = 0; j < n; ++j) brow[static_cast<size_t>(j)] = b[j * ldb + p];
          bp = brow.data();
        } else {
          bp = b + p * ldb;
        }
        for (int64_t j = 0; j < n; ++j) ci[j] += av * bp[j];
      }
    }
  };
  const int64_t work_per_row = std::max<int64_t>(1, n * k);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / work_per_row);
  ember::detail::parallel_for(0, m, grain, rows);
}

}  // namespace
}  // namespace ember::backend::EMBER_ISA_NS
