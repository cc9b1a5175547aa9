// Printing shapes to streams: apart from shape.cpp, which ember::runtime holds, because any use of
// iostreams brings the locale machinery into a static program (docs/deploy.md).
#include <ostream>

#include "ember/core/shape.hpp"

namespace ember {

std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

}  // namespace ember
