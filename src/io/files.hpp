#pragma once
// Internal: file helpers shared by the writers (safetensors, checkpoints).
#include <string>

namespace ember::io::detail {

/// Removes temporary files "<name>.tmp.<pid>.XXXXXX" beside `path` that earlier saves left behind
/// when they were killed: only names of exactly write_file_atomically's pattern, and only those
/// whose writing process no longer runs, so that a save in progress elsewhere keeps its file.
void remove_stale_temporaries(const std::string& path);

}  // namespace ember::io::detail
