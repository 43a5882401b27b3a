// zoo::adder2d / zoo::adder2d_backward: the argument checks and the weight gradient, shared
// by the CPU and CUDA kernels (host code only). The messages are those of zoo.ops.adder2d
// (Python) for the same case.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cmath>
#include <string>

#include "checks.h"

namespace zoo {

// The geometry of one adder2d call: input [N, Cin, H, W], weight [Cout, Cin, kh, kw], output
// [N, Cout, Ho, Wo]; K = Cin * kh * kw values per patch, L = Ho * Wo patches per sample.
struct AdderGeom {
  int64_t N, Cin, H, W, Cout, kh, kw, sh, sw, ph, pw, Ho, Wo, K, L;
};

inline std::string pair_list(at::IntArrayRef v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// x [N, Cin, H, W] fp32/fp64; weight [Cout >= 1, Cin, kh >= 1, kw >= 1] in x's dtype on x's device;
// stride (two ints >= 1), padding (two ints >= 0); the padded input at least the kernel's size.
inline AdderGeom check_adder_args(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                                  at::IntArrayRef padding) {
  checks::dim(x, "x", 4);
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                    "x: expected fp32 or fp64, got ", checks::dtype_str(x.scalar_type()));
  checks::dim(weight, "weight", 4);
  TORCH_CHECK_VALUE(weight.scalar_type() == x.scalar_type(), "weight: expected x's dtype ",
                    checks::dtype_str(x.scalar_type()), ", got ", checks::dtype_str(weight.scalar_type()));
  TORCH_CHECK_VALUE(weight.size(1) == x.size(1) && weight.size(0) >= 1 && weight.size(2) >= 1 && weight.size(3) >= 1,
                    "weight: expected shape [C_out, C_in=", x.size(1), ", kh, kw] with C_out, kh, kw >= 1, got ",
                    checks::shape_str(weight.sizes()));
  checks::same_device(x, "x", weight, "weight");
  TORCH_CHECK_VALUE(stride.size() == 2 && stride[0] >= 1 && stride[1] >= 1,
                    "stride: expected a positive int or a pair of them, got ", pair_list(stride));
  TORCH_CHECK_VALUE(padding.size() == 2 && padding[0] >= 0 && padding[1] >= 0,
                    "padding: expected a non-negative int or a pair of them, got ", pair_list(padding));
  AdderGeom g{};
  g.N = x.size(0), g.Cin = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.Cout = weight.size(0), g.kh = weight.size(2), g.kw = weight.size(3);
  g.sh = stride[0], g.sw = stride[1], g.ph = padding[0], g.pw = padding[1];
  const int64_t hp = g.H + 2 * g.ph, wp = g.W + 2 * g.pw;
  TORCH_CHECK_VALUE(hp >= g.kh && wp >= g.kw, "x: padded input ", hp, "x", wp, " is smaller than the ", g.kh, "x",
                    g.kw, " kernel (shape ", checks::shape_str(x.sizes()), ", padding (", g.ph, ", ", g.pw, "))");
  g.Ho = (hp - g.kh) / g.sh + 1;
  g.Wo = (wp - g.kw) / g.sw + 1;
  g.K = g.Cin * g.kh * g.kw;
  g.L = g.Ho * g.Wo;
  return g;
}

inline void check_adder_eta(double eta) {
  TORCH_CHECK_VALUE(std::isfinite(eta) && eta >= 0.0, "eta: expected a number >= 0 or None, got ",
                    checks::repr(eta));
}

// The backward's arguments: the forward's, and grad_y [N, Cout, Ho, Wo] on x's device.
inline AdderGeom check_adder_backward_args(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
                                           at::IntArrayRef stride, at::IntArrayRef padding) {
  const AdderGeom g = check_adder_args(x, weight, stride, padding);
  checks::floating(grad_y, "grad_y");
  const std::array<int64_t, 4> want = {g.N, g.Cout, g.Ho, g.Wo};
  TORCH_CHECK_VALUE(grad_y.sizes() == at::IntArrayRef(want), "grad_y: expected shape ", checks::shape_str(want),
                    ", got ", checks::shape_str(grad_y.sizes()));
  checks::same_device(x, "x", grad_y, "grad_y");
  return g;
}

// The paper's full-precision weight gradient dW[co, k] = sum_{n,p} (X_p[n, k] - W[co, k]) g[n, co, p]
// = (g^T X)[co, k] - W[co, k] * sum_{n,p} g[n, co, p]. g^T X is a convolution's weight gradient,
// so torch's convolution backward (oneDNN / cuDNN) computes it with no patch tensor. An empty x
// (no samples, no channels, or an empty plane that only the padding turns into patches, which
// convolution_backward refuses) has g^T X = 0.
inline at::Tensor adder_weight_grad(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
                                    const AdderGeom& g) {
  const at::Tensor sum_g = grad_y.sum({0, 2, 3}).view({-1, 1, 1, 1});
  if (x.numel() == 0) return -(weight * sum_g);
  const std::array<int64_t, 2> stride = {g.sh, g.sw}, padding = {g.ph, g.pw}, dilation = {1, 1}, out_pad = {0, 0};
  auto grads = at::convolution_backward(grad_y, x, weight, c10::nullopt, stride, padding, dilation, false, out_pad, 1,
                                        {false, true, false});
  return std::get<1>(grads) - weight * sum_g;
}

}  // namespace zoo
