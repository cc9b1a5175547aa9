// deploy::save: a plan as one file (Note [Plan file] in plan_file.cpp), written atomically.
#include <cstring>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/deploy/plan.hpp"
#include "ember/io/safetensors.hpp"
#include "plan_format.hpp"

namespace ember::deploy {
namespace {

using namespace file;

// ---- Writing ---------------------------------------------------------------------------------

class Writer {
 public:
  template <class T>
  void put(T v) {
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));
  }
  void put_shape(const Shape& s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    for (int64_t d : s) put<int64_t>(d);
  }
  void pad_to(size_t alignment) { bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, 0); }
  std::vector<uint8_t> bytes;
};

// Weight arrays go to their own section; the graph records where.
struct WeightSection {
  std::vector<uint8_t> bytes;
  template <class T>
  void put(Writer& graph, std::span<const T> values) {
    bytes.resize((bytes.size() + 63) / 64 * 64, 0);
    graph.put<uint64_t>(bytes.size());
    graph.put<uint64_t>(values.size());
    const size_t at = bytes.size();
    bytes.resize(at + values.size_bytes());
    if (!values.empty()) std::memcpy(bytes.data() + at, values.data(), values.size_bytes());
  }
};

// Which operand is the step's constant (0: none), then its shape and values.
void put_constant_operand(Writer& g, WeightSection& w, const Step& s) {
  g.put<uint8_t>(s.constant_operand);
  if (s.constant_operand != 0) {
    g.put_shape(s.weight_shape);
    w.put(g, s.w);
  }
}

void put_step(Writer& g, WeightSection& w, const Step& s) {
  g.put<uint8_t>(static_cast<uint8_t>(s.kind));
  g.put<int32_t>(s.in0);
  g.put<int32_t>(s.in1);
  g.put<int32_t>(s.out);
  g.put<uint8_t>(s.folded_batch_norm ? 1 : 0);
  g.put<int64_t>(s.scratch_bytes);
  g.put<int64_t>(s.scratch_offset);
  g.put<int64_t>(static_cast<int64_t>(s.post.size()));
  for (const PostOp& op : s.post) {
    g.put<uint8_t>(static_cast<uint8_t>(op.op));
    g.put<double>(op.params.a);
    g.put<double>(op.params.b);
  }
  switch (s.kind) {
    case StepKind::Conv2d:
    case StepKind::AvgPool2d:
    case StepKind::ConvTranspose2d:
      g.put_shape(s.weight_shape);
      for (int64_t v : s.geometry.stride) g.put<int64_t>(v);
      for (int64_t v : s.geometry.padding) g.put<int64_t>(v);
      for (int64_t v : s.geometry.dilation) g.put<int64_t>(v);
      g.put<int64_t>(s.geometry.groups);
      g.put<int64_t>(s.workers);
      w.put(g, s.w);
      w.put(g, s.kind == StepKind::AvgPool2d ? s.dv : s.b);
      break;
    case StepKind::Linear:
      g.put<int64_t>(s.rows);
      g.put<int64_t>(s.in_features);
      g.put<int64_t>(s.out_features);
      w.put(g, s.w);
      w.put(g, s.b);
      break;
    case StepKind::ChannelAffine:
      g.put<int64_t>(s.planes);
      g.put<int64_t>(s.channels);
      g.put<int64_t>(s.inner);
      w.put(g, s.w);
      w.put(g, s.b);
      break;
    case StepKind::Unary:
      g.put<uint8_t>(static_cast<uint8_t>(s.unary_op));
      g.put<double>(s.unary_params.a);
      g.put<double>(s.unary_params.b);
      g.put<int64_t>(s.numel);
      break;
    case StepKind::Binary:
      g.put<uint8_t>(static_cast<uint8_t>(s.binary_op));
      g.put<int64_t>(s.numel);
      break;
    case StepKind::Concat:
      g.put<int64_t>(s.axis);
      break;
    case StepKind::Permute:
      g.put<int64_t>(s.perm.size());
      for (int64_t d : s.perm) g.put<int64_t>(d);
      break;
    case StepKind::MatMul:
      for (int64_t v : {s.rows, s.in_features, s.out_features, s.planes, s.b_batches}) g.put<int64_t>(v);
      put_constant_operand(g, w, s);
      break;
    case StepKind::BroadcastBinary:
      g.put<uint8_t>(static_cast<uint8_t>(s.binary_op));
      g.put<int64_t>(s.numel);
      put_constant_operand(g, w, s);
      break;
    case StepKind::MaxPool:
    case StepKind::MaxPoolU8:
      for (int64_t v : {s.pool.h, s.pool.w, s.pool.ho, s.pool.wo, s.pool.kh, s.pool.kw, s.pool.stride_h,
                        s.pool.stride_w, s.pool.pad_h, s.pool.pad_w, s.pool.dil_h, s.pool.dil_w})
        g.put<int64_t>(v);
      g.put<int64_t>(s.planes);
      if (s.kind == StepKind::MaxPoolU8) g.put<int64_t>(s.channels);
      break;
    case StepKind::Int8Linear:
    case StepKind::Int8Conv2d:
      g.put<uint8_t>(static_cast<uint8_t>((s.q8.relu ? 1 : 0) | (s.q8.dynamic ? 2 : 0) | (s.q8.out_quantized ? 4 : 0)));
      g.put<float>(s.q8.in_scale);
      g.put<int32_t>(s.q8.in_zero);
      g.put<float>(s.q8.out_scale);
      g.put<int32_t>(s.q8.out_zero);
      g.put<int64_t>(s.rows);
      g.put<int64_t>(s.in_features);
      g.put<int64_t>(s.out_features);
      if (s.kind == StepKind::Int8Conv2d) {
        g.put<int64_t>(s.workers);
        g.put_shape(s.weight_shape);
        for (int64_t v : s.geometry.stride) g.put<int64_t>(v);
        for (int64_t v : s.geometry.padding) g.put<int64_t>(v);
        for (int64_t v : s.geometry.dilation) g.put<int64_t>(v);
      }
      w.put(g, s.qw);
      w.put(g, s.iv);
      w.put(g, s.sv);
      w.put(g, s.b);
      break;
    case StepKind::Resample:
      g.put<int64_t>(s.planes);
      g.put<int64_t>(s.in_features);
      g.put<int64_t>(s.out_features);
      g.put<int64_t>(s.inner);
      g.put<uint8_t>(s.b.empty() ? 0 : 1);  // linear
      g.put<int64_t>(s.workers);
      w.put(g, s.iv);
      w.put(g, s.w);
      w.put(g, s.b);
      break;
    case StepKind::Dequantize:
      g.put<float>(s.q8.in_scale);
      g.put<int32_t>(s.q8.in_zero);
      break;
    case StepKind::MeanHW:
      g.put<int64_t>(s.planes);
      g.put<int64_t>(s.inner);
      break;
    case StepKind::Softmax:
      g.put<int64_t>(s.planes);
      g.put<int64_t>(s.inner);
      g.put<uint8_t>(s.log_softmax ? 1 : 0);
      break;
    case StepKind::LayerNorm:
      g.put<int64_t>(s.planes);
      g.put<int64_t>(s.inner);
      g.put<double>(s.eps);
      w.put(g, s.w);
      w.put(g, s.b);
      break;
    case StepKind::Count: break;
  }
}

}  // namespace

void save(const Plan& plan, const std::string& path) {
  const PlanData* p = plan.data();
  if (p == nullptr) throw ValueError("deploy::save: the plan is empty");
  Writer g;
  WeightSection w;
  g.put_shape(p->input_shape);
  g.put_shape(p->output_shape);
  g.put<int64_t>(static_cast<int64_t>(p->values.size()));
  for (const Value& v : p->values) {
    g.put_shape(v.shape);
    g.put<uint8_t>(static_cast<uint8_t>(v.type));
    g.put<int32_t>(v.alias_of);
    g.put<int64_t>(v.offset);
  }
  g.put<int32_t>(p->output);
  g.put<int64_t>(static_cast<int64_t>(p->steps.size()));
  for (const Step& s : p->steps) put_step(g, w, s);

  Writer f;
  for (char c : kMagic) f.put<char>(c);
  f.put<uint32_t>(kVersion);
  f.put<uint32_t>(0);
  const uint64_t graph_offset = kHeaderBytes;
  const uint64_t weights_offset = (graph_offset + g.bytes.size() + 63) / 64 * 64;
  const uint64_t file_size = weights_offset + w.bytes.size() + 4;
  f.put<uint64_t>(file_size);
  f.put<uint64_t>(p->arena_bytes);
  f.put<uint64_t>(graph_offset);
  f.put<uint64_t>(g.bytes.size());
  f.put<uint64_t>(weights_offset);
  f.put<uint64_t>(w.bytes.size());
  f.pad_to(kHeaderBytes);
  f.bytes.insert(f.bytes.end(), g.bytes.begin(), g.bytes.end());
  f.pad_to(64);
  f.bytes.insert(f.bytes.end(), w.bytes.begin(), w.bytes.end());
  f.put<uint32_t>(crc_of(f.bytes));
  io::write_file_atomically(path, f.bytes);
}

}  // namespace ember::deploy
