#pragma once
// ember::prune: pruning by masks (torch.nn.utils.prune) and structured pruning that shrinks a
// network (channels and units removed, a smaller dense model).
#include "ember/prune/masks.hpp"
#include "ember/prune/shrink.hpp"
#include "ember/prune/sparse.hpp"
