// Reading whole files and writing them atomically (Note [Atomic writes]).
#include "files.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/core/shape.hpp"
#include "ember/io/safetensors.hpp"

namespace ember::io {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

const char* file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// The process's umask, read without changing it (umask(2) would race with other threads
// creating files); /proc/self/status has it since Linux 4.7.
mode_t current_umask() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Umask:", 0) == 0) {
      try {
        return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
      } catch (const std::exception&) {
        break;
      }
    }
  }
  return 022;
}

}  // namespace

std::vector<uint8_t> read_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) throw IOError("cannot open " + path + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw IOError("cannot stat " + path + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) {
    throw IOError("cannot read " + path + ": it is " + file_kind(st.st_mode) + ", not a regular file");
  }
  if (st.st_size < 0 || st.st_size > kMaxBytes) {
    throw IOError("cannot read " + path + ": its size " + std::to_string(st.st_size) + " bytes is out of range");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  std::vector<uint8_t> bytes(size);
  size_t done = 0;
  while (done < size) {
    const ssize_t r = ::read(fd.get(), bytes.data() + done, size - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw IOError("cannot read " + path + ": " + errno_text(errno));
    if (r == 0) {
      throw IOError("cannot read " + path + ": it shrank while being read (" + std::to_string(size) +
                    " bytes expected, " + std::to_string(done) + " read)");
    }
    done += static_cast<size_t>(r);
  }
  uint8_t extra;
  ssize_t r;
  do {
    r = ::read(fd.get(), &extra, 1);
  } while (r < 0 && errno == EINTR);
  if (r > 0) throw IOError("cannot read " + path + ": it grew while being read (beyond " + std::to_string(size) + " bytes)");
  return bytes;
}

// Note [Atomic writes]
// A save writes a temporary file "<path>.tmp.<pid>.XXXXXX" (unique per writer: mkstemp) in the
// target's folder, syncs it, renames it over the target and syncs the folder, so a crash leaves
// either the old file or the new one under the final name, never a mixture. The new file gets the
// mode of the file it replaces, or 0666 less the umask for a new one (as open(2) would give), so a
// private checkpoint stays private. A failed save removes its own temporary file; temporaries of
// killed saves are removed by remove_stale_temporaries only when their process is gone.
void write_file_atomically(const std::string& path, const std::vector<uint8_t>& bytes) {
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  mode_t mode = 0666 & ~current_umask();
  struct stat old {};
  if (::stat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode)) mode = old.st_mode & 07777;
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + ".XXXXXX";
  std::vector<char> tmpl(tmp.begin(), tmp.end());
  tmpl.push_back('\0');
  Fd fd(::mkstemp(tmpl.data()));
  if (fd.get() < 0) throw IOError("cannot create a temporary file beside " + path + ": " + errno_text(errno));
  tmp = tmpl.data();
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::close(fd.release());
    ::unlink(tmp.c_str());
    throw IOError(what + " " + path + ": " + errno_text(err));
  };
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("cannot write");
    }
    done += static_cast<size_t>(w);
  }
  if (::fchmod(fd.get(), mode) != 0 || ::fsync(fd.get()) != 0) fail("cannot flush");
  if (::close(fd.release()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw IOError("cannot close " + path + ": " + errno_text(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw IOError("cannot rename into " + path + ": " + errno_text(err));
  }
  // The rename is durable only once the folder is synced.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

namespace detail {

void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() + 8 || name.compare(0, prefix.size(), prefix) != 0) continue;
    // "<pid>.XXXXXX" after the prefix
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string::npos || dot == 0 || dot > 9 || rest.size() != dot + 7 ||
        rest.find_first_not_of("0123456789") != dot) {
      continue;
    }
    const pid_t pid = static_cast<pid_t>(std::stol(rest.substr(0, dot)));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or unknown
    if (entry.is_regular_file(ec)) fs::remove(entry.path(), ec);
  }
}

}  // namespace detail
}  // namespace ember::io
