// CPU kernels of zoo::adder2d (AdderNet, Chen et al., CVPR 2020), forward and backward.
//
// Forward: work items are (sample, block of 64 output positions). Each item copies its
// patches into a thread-local [64, K] buffer (im2col of that block only: the working set
// is 64 * K values per thread, never the whole [N*L, K] patch matrix), then a register tile
// of 4 positions x 16 output channels accumulates |x - w| over k with the weights stored as
// [K, Cout] (16 channels contiguous: one or two vectors), the patch value broadcast. The
// loops are plain fixed-size arrays that the compiler vectorises (an AVX2 clone is picked at
// run time, ZOO_VECTOR_CLONES).
//
// Backward: dW is the convolution weight gradient minus W * sum(g) (csrc/adder.h). dX runs
// per sample (samples go to threads; each owns its slab of dx, so the col2im adds need no
// atomics): per block of 64 positions, dX_p[k] = sum_co clamp(W[co, k] - X_p[k], -1, 1) g[co, p]
// is accumulated over co in a tile of 4 positions x 16 k-values (W rows contiguous in k),
// then added onto dx where each patch value came from.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "vec.h"

#include "../adder.h"
#include "../common.h"

namespace zoo {
namespace cpu {
namespace {

constexpr int64_t kBlock = 64;  // output positions per work item (a multiple of kPos)
constexpr int64_t kPos = 4;     // positions per register tile
constexpr int64_t kLanes = 16;  // output channels (forward) or k values (backward) per tile

int64_t round_up(int64_t v, int64_t m) { return ceil_div(v, m) * m; }

// Patches of positions [p0, p0 + np) of one sample x [Cin, H, W] into rows of `ld` values
// (row i = position p0 + i, k = (ci * kh + a) * kw + b; the padding and k >= K are zeros);
// rows np .. kBlock - 1 are zeroed.
template <typename T>
void im2col_block(const T* x, const AdderGeom& g, int64_t p0, int64_t np, int64_t ld, T* col) {
  for (int64_t i = 0; i < kBlock; ++i) {
    T* row = col + i * ld;
    if (i >= np) {
      std::fill(row, row + ld, T(0));
      continue;
    }
    const int64_t p = p0 + i, oh = p / g.Wo, ow = p % g.Wo;
    const int64_t ih0 = oh * g.sh - g.ph, iw0 = ow * g.sw - g.pw;
    for (int64_t c = 0; c < g.Cin; ++c) {
      const T* xc = x + c * g.H * g.W;
      for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t ih = ih0 + a;
        T* r = row + (c * g.kh + a) * g.kw;
        if (ih < 0 || ih >= g.H) {
          std::fill(r, r + g.kw, T(0));
          continue;
        }
        for (int64_t b = 0; b < g.kw; ++b) {
          const int64_t iw = iw0 + b;
          r[b] = (iw >= 0 && iw < g.W) ? xc[ih * g.W + iw] : T(0);
        }
      }
    }
    std::fill(row + g.K, row + ld, T(0));
  }
}

// out[i, c] = -sum_k |col[i, k] - wt[k, c]| for the kBlock rows of col ([kBlock, K]) and the
// Cp (a multiple of kLanes) columns of wt ([K, Cp]).
template <typename T>
ZOO_VECTOR_CLONES void forward_block(const T* __restrict col, const T* __restrict wt, int64_t K, int64_t Cp,
                                     T* __restrict out) {
  for (int64_t p = 0; p < kBlock; p += kPos) {
    for (int64_t c = 0; c < Cp; c += kLanes) {
      T acc[kPos][kLanes] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T* w = wt + k * Cp + c;
        for (int64_t i = 0; i < kPos; ++i) {
          const T xv = col[(p + i) * K + k];
          for (int64_t j = 0; j < kLanes; ++j) acc[i][j] += std::abs(xv - w[j]);
        }
      }
      for (int64_t i = 0; i < kPos; ++i) {
        for (int64_t j = 0; j < kLanes; ++j) out[(p + i) * Cp + c + j] = -acc[i][j];
      }
    }
  }
}

// dcol[i, k] = sum_co clamp(w[co, k] - col[i, k], -1, 1) * gp[i, co] for the kBlock rows of col
// and dcol ([kBlock, Kp]), w [Cout, Kp] and gp [kBlock, Cout]; Kp is a multiple of kLanes.
template <typename T>
ZOO_VECTOR_CLONES void input_grad_block(const T* __restrict col, const T* __restrict w, const T* __restrict gp,
                                        int64_t Kp, int64_t Cout, T* __restrict dcol) {
  for (int64_t p = 0; p < kBlock; p += kPos) {
    for (int64_t k = 0; k < Kp; k += kLanes) {
      T xv[kPos][kLanes];
      T acc[kPos][kLanes] = {};
      for (int64_t i = 0; i < kPos; ++i) {
        for (int64_t j = 0; j < kLanes; ++j) xv[i][j] = col[(p + i) * Kp + k + j];
      }
      for (int64_t co = 0; co < Cout; ++co) {
        const T* wr = w + co * Kp + k;
        for (int64_t i = 0; i < kPos; ++i) {
          const T gv = gp[(p + i) * Cout + co];
          for (int64_t j = 0; j < kLanes; ++j) {
            const T d = std::min(std::max(wr[j] - xv[i][j], T(-1)), T(1));
            acc[i][j] += d * gv;
          }
        }
      }
      for (int64_t i = 0; i < kPos; ++i) {
        for (int64_t j = 0; j < kLanes; ++j) dcol[(p + i) * Kp + k + j] = acc[i][j];
      }
    }
  }
}

template <typename T>
void forward_impl(const at::Tensor& x, const at::Tensor& weight, const AdderGeom& g, at::Tensor& y) {
  const int64_t Cp = round_up(g.Cout, kLanes);
  // weights as [K, Cp], the channels past Cout zero (their outputs are dropped)
  at::Tensor wt = at::zeros({g.K, Cp}, weight.options());
  wt.narrow(1, 0, g.Cout).copy_(weight.reshape({g.Cout, g.K}).t());
  const T* wtp = wt.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  const int64_t blocks = ceil_div(g.L, kBlock);
  // grain: about 2^17 |x - w| terms per task at least
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / std::max<int64_t>(1, kBlock * g.K * Cp));
  at::parallel_for(0, g.N * blocks, grain, [&](int64_t lo, int64_t hi) {
    std::vector<T> col(kBlock * g.K), out(kBlock * Cp);
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t n = item / blocks, p0 = (item % blocks) * kBlock, np = std::min(kBlock, g.L - p0);
      im2col_block(xp + n * g.Cin * g.H * g.W, g, p0, np, g.K, col.data());
      forward_block(col.data(), wtp, g.K, Cp, out.data());
      T* yn = yp + n * g.Cout * g.L;
      for (int64_t co = 0; co < g.Cout; ++co) {
        for (int64_t i = 0; i < np; ++i) yn[co * g.L + p0 + i] = out[i * Cp + co];
      }
    }
  });
}

template <typename T>
void input_grad_impl(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight, const AdderGeom& g,
                     at::Tensor& dx) {
  const int64_t Kp = round_up(g.K, kLanes);
  at::Tensor wpad = at::zeros({g.Cout, Kp}, weight.options());
  wpad.narrow(1, 0, g.K).copy_(weight.reshape({g.Cout, g.K}));
  const T* wp = wpad.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  const T* gyp = grad_y.data_ptr<T>();
  T* dxp = dx.data_ptr<T>();
  const int64_t slab = g.Cin * g.H * g.W;
  at::parallel_for(0, g.N, 1, [&](int64_t lo, int64_t hi) {
    std::vector<T> col(kBlock * Kp), dcol(kBlock * Kp), gp(kBlock * g.Cout);
    for (int64_t n = lo; n < hi; ++n) {
      T* dxn = dxp + n * slab;
      std::fill(dxn, dxn + slab, T(0));
      const T* gn = gyp + n * g.Cout * g.L;
      for (int64_t p0 = 0; p0 < g.L; p0 += kBlock) {
        const int64_t np = std::min(kBlock, g.L - p0);
        im2col_block(xp + n * slab, g, p0, np, Kp, col.data());
        for (int64_t i = 0; i < kBlock; ++i) {
          for (int64_t co = 0; co < g.Cout; ++co) gp[i * g.Cout + co] = i < np ? gn[co * g.L + p0 + i] : T(0);
        }
        input_grad_block(col.data(), wp, gp.data(), Kp, g.Cout, dcol.data());
        // col2im: each patch value goes back where it came from (padding dropped)
        for (int64_t i = 0; i < np; ++i) {
          const int64_t p = p0 + i, ih0 = (p / g.Wo) * g.sh - g.ph, iw0 = (p % g.Wo) * g.sw - g.pw;
          const T* d = dcol.data() + i * Kp;
          for (int64_t c = 0; c < g.Cin; ++c) {
            for (int64_t a = 0; a < g.kh; ++a) {
              const int64_t ih = ih0 + a;
              if (ih < 0 || ih >= g.H) continue;
              T* row = dxn + (c * g.H + ih) * g.W;
              const T* dr = d + (c * g.kh + a) * g.kw;
              for (int64_t b = 0; b < g.kw; ++b) {
                const int64_t iw = iw0 + b;
                if (iw >= 0 && iw < g.W) row[iw] += dr[b];
              }
            }
          }
        }
      }
    }
  });
}

at::Tensor adder2d_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, at::IntArrayRef stride,
                       at::IntArrayRef padding, double eta) {
  const AdderGeom g = check_adder_args(x_in, weight_in, stride, padding);
  check_adder_eta(eta);
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  at::Tensor y = at::empty({g.N, g.Cout, g.Ho, g.Wo}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "zoo_adder2d", [&] { forward_impl<scalar_t>(x, weight, g, y); });
  return y;
}

std::tuple<at::Tensor, at::Tensor> adder2d_backward_cpu(const at::Tensor& grad_y_in, const at::Tensor& x_in,
                                                        const at::Tensor& weight_in, at::IntArrayRef stride,
                                                        at::IntArrayRef padding, std::array<bool, 2> output_mask) {
  const AdderGeom g = check_adder_backward_args(grad_y_in, x_in, weight_in, stride, padding);
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const at::Tensor grad_y = grad_y_in.to(x.scalar_type()).contiguous();
  at::Tensor dx, dw;
  if (output_mask[0]) {
    dx = at::empty_like(x);
    if (dx.numel() > 0) {
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "zoo_adder2d_backward",
                                 [&] { input_grad_impl<scalar_t>(grad_y, x, weight, g, dx); });
    }
  }
  if (output_mask[1]) dw = adder_weight_grad(grad_y, x, weight, g);
  return {dx, dw};
}

}  // namespace
}  // namespace cpu
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CPU, m) {
  m.impl("adder2d", &zoo::cpu::adder2d_cpu);
  m.impl("adder2d_backward", &zoo::cpu::adder2d_backward_cpu);
}
