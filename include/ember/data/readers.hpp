#pragma once
// Readers for the classic image data sets: IDX (MNIST, Fashion-MNIST, ...; raw or gzip) and the
// CIFAR-10 / CIFAR-100 binary versions. They are strict: every size is checked against the
// header (with overflow-checked arithmetic) before anything is allocated, and a broken file
// throws FormatError naming the file, the byte offset and what was expected.
#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember::data {

/// The most bytes of data a gzip-compressed IDX file may declare (1 GiB unless changed): larger
/// declarations are refused before anything is decompressed (Note [Decompression limits] in
/// src/data/readers.cpp). Process-wide.
inline constexpr uint64_t kDefaultMaxDecompressedBytes = uint64_t(1) << 30;
uint64_t max_decompressed_bytes() noexcept;
void set_max_decompressed_bytes(uint64_t bytes) noexcept;

/// Reads an IDX file, raw or gzip-compressed (detected from its first bytes). Element types: u8
/// (Tensor<uint8_t>), i8, i16 and i32 (Tensor<int32_t>), f32 (float), f64 (double); values are
/// big-endian in the file.
TensorBase read_idx(const std::string& path);
/// The same from the bytes of a file (`source` names it in errors).
TensorBase parse_idx(const std::vector<uint8_t>& bytes, const std::string& source);

struct LabeledImages {
  Tensor<uint8_t> images;         // MNIST: [N, rows, cols]; CIFAR: [N, 3, 32, 32]
  Tensor<int64_t> labels;         // [N]; CIFAR-100: the fine labels
  Tensor<int64_t> coarse_labels;  // CIFAR-100 only
};

/// The train or test split of an MNIST-format data set in `dir`: train-images-idx3-ubyte (or
/// train-images.idx3-ubyte), optionally .gz, and the matching labels (t10k-* for test). Checks
/// image and label counts agree and labels are below num_classes.
LabeledImages load_mnist(const std::string& dir, bool train, int64_t num_classes = 10);

/// CIFAR-10 binary batches (records of 1 label byte and 3072 pixel bytes: red, green and blue
/// planes of 32x32, row-major). A pickled "python version" file, an empty file and an empty
/// list are refused.
LabeledImages read_cifar10(const std::vector<std::string>& files);
/// One CIFAR-10 binary batch from its bytes (`source` names it in errors).
LabeledImages parse_cifar10(const std::vector<uint8_t>& bytes, const std::string& source);
/// CIFAR-100 binary (records of a coarse and a fine label byte, then 3072 pixel bytes).
LabeledImages read_cifar100(const std::string& file);
/// data_batch_1.bin ... data_batch_5.bin (train) or test_batch.bin in `dir`
/// (cifar-10-batches-bin); each must hold the 10,000 images of a CIFAR-10 batch.
LabeledImages load_cifar10(const std::string& dir, bool train);

}  // namespace ember::data
