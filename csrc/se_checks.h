// Argument checks of zoo::squeeze_excite and zoo::squeeze_excite_backward, shared by the CPU
// and CUDA kernels; the messages are those of zoo.ops.squeeze_excite (Python) for the same case.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "checks.h"

namespace zoo {

enum class Gate { kSigmoid, kHardSigmoid };

// The activation between the two FCs: ReLU, or SiLU (h * sigmoid(h), EfficientNet's).
enum class Act { kRelu, kSilu };

inline Gate parse_gate(c10::string_view gate) {
  if (gate == "sigmoid") return Gate::kSigmoid;
  if (gate == "hard_sigmoid") return Gate::kHardSigmoid;
  TORCH_CHECK_VALUE(false, "gate: expected one of ('sigmoid', 'hard_sigmoid'), got '", std::string(gate), "'");
}

inline Act parse_act(c10::string_view act) {
  if (act == "relu") return Act::kRelu;
  if (act == "silu") return Act::kSilu;
  TORCH_CHECK_VALUE(false, "act: expected one of ('relu', 'silu'), got '", std::string(act), "'");
}

// The parsed gate and act of one call.
struct SeMode {
  Gate gate;
  Act act;
};

// x [N, C, H, W] (fp32/fp64/fp16/bf16), w1 [Cr, C] with Cr >= 1, b1 [Cr], w2 [C, Cr], b2 [C]
// (any floating dtype), all on x's device; then the gate, then act (the order of the Python
// checks, so that the first bad argument gives the same message). Returns both, parsed.
inline SeMode check_se_args(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                            const at::Tensor& b2, c10::string_view gate, c10::string_view act) {
  checks::dim(x, "x", 4);
  checks::kernel_floating(x, "x");
  const int64_t C = x.size(1);
  checks::dim(w1, "w1", 2);
  checks::dim(b1, "b1", 1);
  checks::dim(w2, "w2", 2);
  checks::dim(b2, "b2", 1);
  checks::floating(w1, "w1");
  checks::floating(b1, "b1");
  checks::floating(w2, "w2");
  checks::floating(b2, "b2");
  const int64_t Cr = w1.size(0);
  TORCH_CHECK_VALUE(w1.size(1) == C && Cr >= 1, "w1: expected shape [Cr, C=", C, "] with Cr >= 1, got ",
                    checks::shape_str(w1.sizes()));
  TORCH_CHECK_VALUE(b1.size(0) == Cr, "b1: expected shape [Cr=", Cr, "], got ", checks::shape_str(b1.sizes()));
  TORCH_CHECK_VALUE(w2.size(0) == C && w2.size(1) == Cr, "w2: expected shape [C=", C, ", Cr=", Cr, "], got ",
                    checks::shape_str(w2.sizes()));
  TORCH_CHECK_VALUE(b2.size(0) == C, "b2: expected shape [C=", C, "], got ", checks::shape_str(b2.sizes()));
  checks::same_device(x, "x", w1, "w1");
  checks::same_device(x, "x", b1, "b1");
  checks::same_device(x, "x", w2, "w2");
  checks::same_device(x, "x", b2, "b2");
  const Gate g = parse_gate(gate);
  return SeMode{g, parse_act(act)};
}

// The backward's arguments: those of the forward, and grad_y shaped like x, on its device.
inline SeMode check_se_backward_args(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& w1,
                                     const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                                     c10::string_view gate, c10::string_view act) {
  const SeMode g = check_se_args(x, w1, b1, w2, b2, gate, act);
  checks::floating(grad_y, "grad_y");
  TORCH_CHECK_VALUE(grad_y.sizes() == x.sizes(), "grad_y: expected x's shape ", checks::shape_str(x.sizes()), ", got ",
                    checks::shape_str(grad_y.sizes()));
  checks::same_device(x, "x", grad_y, "grad_y");
  return g;
}

}  // namespace zoo
