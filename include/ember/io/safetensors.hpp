#pragma once
// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length N, N bytes of UTF-8 JSON describing each tensor (dtype, shape, data_offsets) plus an
// optional string-to-string "__metadata__", then the raw little-endian data.
//
// Reading is strict: every rule of the format is checked before any tensor is made (header length
// at most 100,000,000 and inside the file, JSON that is an object with unique keys, known dtypes,
// non-negative shapes whose byte size does not overflow, offsets that start at 0 and tile the data
// exactly, without gaps or overlaps, to the end of the file). A broken file throws FormatError
// naming the file, the tensor and the rule; an unreadable one throws IOError. Files are read into
// memory owned by ember (no mmap), so a file changed while it is read cannot crash the program.
//
// Writing pads the header with spaces to a multiple of 8 bytes, stores {"format": "pt"} in the
// metadata as PyTorch's safetensors.torch.save_file does, and replaces the target atomically (a
// temporary file in the same folder, fsync, rename, fsync of the folder).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ember/nn/module.hpp"

namespace ember::io {

struct SafetensorsFile {
  /// In file order. F32, F64, I64, I32, U8 and I8 become tensors of that type; F16 and BF16 are
  /// widened to float32 and BOOL read as uint8 (0 or 1).
  nn::StateDict tensors;
  std::map<std::string, std::string> metadata;
};

/// Parses the bytes of a safetensors file; `source` names it in error messages.
SafetensorsFile parse_safetensors(const std::vector<uint8_t>& bytes, const std::string& source);
SafetensorsFile read_safetensors(const std::string& path);

/// The bytes of a safetensors file holding `tensors` (float32, float64, int64, int32, uint8).
std::vector<uint8_t> serialize_safetensors(const nn::StateDict& tensors,
                                           const std::map<std::string, std::string>& metadata = {});
void write_safetensors(const std::string& path, const nn::StateDict& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one.
void write_file_atomically(const std::string& path, const std::vector<uint8_t>& bytes);
/// Reads a whole file (IOError naming it on failure).
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace ember::io

namespace ember {

/// Saves a module's state dict (PyTorch's names and layouts) as safetensors.
template <FloatingElement T>
void save(const nn::Module<T>& module, const std::string& path);

/// Loads a safetensors file into a module (floating-point tensors are converted to the module's
/// type, as PyTorch's load_state_dict does). With strict, all missing, unexpected and mis-shaped
/// names are listed in one error; without, mis-shaped names still throw and the missing and
/// unexpected keys are returned.
template <FloatingElement T>
nn::LoadResult load(nn::Module<T>& module, const std::string& path, bool strict = true);
/// The same from a safetensors file's bytes (`source` names it in errors).
template <FloatingElement T>
nn::LoadResult load(nn::Module<T>& module, const std::vector<uint8_t>& bytes, const std::string& source, bool strict = true);
/// The same through a shared_ptr or holder, as LibTorch's torch::save(model, path).
template <class M>
void save(const std::shared_ptr<M>& module, const std::string& path) {
  save(*module, path);
}
template <class M>
nn::LoadResult load(const std::shared_ptr<M>& module, const std::string& path, bool strict = true) {
  return load(*module, path, strict);
}
template <class M>
void save(const nn::ModuleHolder<M>& module, const std::string& path) {
  save(*module, path);
}
template <class M>
nn::LoadResult load(const nn::ModuleHolder<M>& module, const std::string& path, bool strict = true) {
  return load(*module, path, strict);
}

}  // namespace ember
