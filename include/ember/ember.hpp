#pragma once
// ember: a C++20 tensor library with reverse-mode autograd.
//
//   #include <ember/ember.hpp>
//   ember::manual_seed(42);
//   auto w = ember::randn<float>({784, 10}, /*requires_grad=*/true);
//   auto x = ember::randn<float>({64, 784});
//   auto loss = ember::log_softmax(ember::matmul(x, w), 1).mean() * -1.0;
//   loss.backward();             // w.grad() now holds d loss / d w
//
// The pieces, each in its own folder under ember/:
//   core/      Tensor<T>, Shape, Storage (caching allocator), Generator, errors
//   autograd/  the graph (Node), grad mode, the backward engine, custom functions
//   ops/       factories, elementwise ops with broadcasting, reductions, matmul, indexing
//   backend/   the kernel interface (scalar, AVX2, AVX-512) and the thread pool
//
// Conventions shared by every op:
//   - Shapes and dims follow PyTorch: negative dims count from the end; NumPy broadcasting.
//   - Every check is on in every build type and throws a subclass of ember::Error whose message
//     names the op and the shapes involved.
//   - A Tensor is a handle: copies share data; clone() copies the data.
//   - Ops record themselves for autograd when grad mode is on (see NoGradGuard) and an input
//     requires grad; backward formulas are ordinary tensor code, so gradients are differentiable.
#include "ember/autograd/autograd.hpp"
#include "ember/autograd/function.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"
#include "ember/core/generator.hpp"
#include "ember/core/storage.hpp"
#include "ember/core/tensor.hpp"
#include "ember/ops/activation.hpp"
#include "ember/ops/conv.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/normalization.hpp"
#include "ember/ops/pooling.hpp"
#include "ember/ops/reduction.hpp"
#include "ember/ops/shape_ops.hpp"
#include "ember/ops/sparse.hpp"
#include "ember/ops/upsampling.hpp"
#include "ember/nn.hpp"
#include "ember/optim.hpp"
#include "ember/data/dataloader.hpp"
#include "ember/data/readers.hpp"
#include "ember/io/checkpoint.hpp"
#include "ember/io/safetensors.hpp"
#include "ember/distributions.hpp"
#include "ember/explain.hpp"
#include "ember/prune.hpp"
#include "ember/quant.hpp"
#include "ember/deploy.hpp"
