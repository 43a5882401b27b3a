// The squeeze_excite weight gradients, shared by the CPU and CUDA backward kernels: both
// keep per-sample rows and finish with the same four small reductions on their device.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <tuple>

namespace zoo {

// In the accumulation type: DU [N, C] = dL/du (u = W2 z + b2), Z [N, Cr] = act(h),
// DH [N, Cr] = dL/dh (h = W1 s + b1), S [N, C] = pooled means.
// Returns (dw1 [Cr, C], db1 [Cr], dw2 [C, Cr], db2 [C]), each in its weight's dtype; those whose
// output_mask entry (1..4, as squeeze_excite_backward numbers its outputs) is false are undefined.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> se_weight_grads(
    const at::Tensor& DU, const at::Tensor& Z, const at::Tensor& DH, const at::Tensor& S, const at::Tensor& w1,
    const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, const std::array<bool, 5>& output_mask) {
  return {output_mask[1] ? DH.t().mm(S).to(w1.scalar_type()) : at::Tensor(),
          output_mask[2] ? DH.sum(0).to(b1.scalar_type()) : at::Tensor(),
          output_mask[3] ? DU.t().mm(Z).to(w2.scalar_type()) : at::Tensor(),
          output_mask[4] ? DU.sum(0).to(b2.scalar_type()) : at::Tensor()};
}

// Whether any weight gradient is asked for.
inline bool se_any_weight_grad(const std::array<bool, 5>& output_mask) {
  return output_mask[1] || output_mask[2] || output_mask[3] || output_mask[4];
}

}  // namespace zoo
