// The squeeze_excite weight gradients, shared by the CPU and CUDA backward kernels: both
// keep per-sample rows and finish with the same four small reductions on their device.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace zoo {

// In the accumulation type: DU [N, C] = dL/du (u = W2 z + b2), Z [N, Cr] = relu(h),
// DH [N, Cr] = dL/dh (h = W1 s + b1), S [N, C] = pooled means.
// Returns (dw1 [Cr, C], db1 [Cr], dw2 [C, Cr], db2 [C]), each in its weight's dtype.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> se_weight_grads(
    const at::Tensor& DU, const at::Tensor& Z, const at::Tensor& DH, const at::Tensor& S, const at::Tensor& w1,
    const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2) {
  return {DH.t().mm(S).to(w1.scalar_type()), DH.sum(0).to(b1.scalar_type()), DU.t().mm(Z).to(w2.scalar_type()),
          DU.sum(0).to(b2.scalar_type())};
}

}  // namespace zoo
