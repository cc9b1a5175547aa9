#pragma once
// Reader for the reference files that tools/make_torch_refs.py writes under tests/data:
//   case <name>
//   <tag> <rank> <dims...> <values...>     (or "<tag> none")
//   end
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ember/ember.hpp"

namespace ember::testing {

struct RefTensor {
  Shape shape;
  std::vector<double> values;
  bool none = false;

  template <FloatingElement T>
  Tensor<T> as(bool requires_grad = false) const {
    return tensor<T>(std::vector<T>(values.begin(), values.end()), shape, requires_grad);
  }
};

/// Each case's (tag, tensor) lines in file order.
using RefCases = std::map<std::string, std::vector<std::pair<std::string, RefTensor>>>;

inline RefTensor parse_ref_tensor(std::istringstream& in) {
  RefTensor t;
  std::string first;
  in >> first;
  if (first == "none") {
    t.none = true;
    return t;
  }
  const int64_t rank = std::stoll(first);
  int64_t numel = 1;
  for (int64_t i = 0; i < rank; ++i) {
    int64_t d;
    in >> d;
    t.shape.push_back(d);
    numel *= d;
  }
  t.values.resize(static_cast<size_t>(numel));
  for (auto& v : t.values) {
    std::string s;
    in >> s;
    v = std::strtod(s.c_str(), nullptr);  // reads nan and inf too
  }
  return t;
}

/// The folder of the reference data (EMBER_TEST_DATA, set by ctest; tests/data otherwise).
inline std::string data_dir() {
  const char* dir = std::getenv("EMBER_TEST_DATA");
  return dir ? dir : "tests/data";
}

/// Reads tests/data/<file>.
inline RefCases load_reference(const std::string& file) {
  const std::string path = data_dir() + "/" + file;
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  RefCases cases;
  std::string line, current;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string tag;
    in >> tag;
    if (tag == "case") {
      in >> current;
      cases[current];
    } else if (!tag.empty() && tag != "end") {
      cases[current].emplace_back(tag, parse_ref_tensor(in));
    }
  }
  return cases;
}

}  // namespace ember::testing
