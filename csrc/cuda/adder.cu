// CUDA kernels of zoo::adder2d (AdderNet, Chen et al., CVPR 2020), forward and backward.
//
// Forward: one thread per output value y[n, co, oh, ow] = -sum |x_pad - w[co]| over its patch
// (consecutive threads take consecutive ow of one (n, co), so the weight reads of a warp are
// one broadcast address and the x reads are near-coalesced).
// Backward: dx by gathering, one thread per input value x[n, ci, ih, iw]: every (kh, kw, co)
// whose patch read it adds clamp(w - x, -1, 1) * g; no atomics, no patch tensor. dW is the
// convolution weight gradient (cuDNN) minus W * sum(g) (csrc/adder.h). Everything runs on
// the current stream of x's device.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>

#include "../adder.h"
#include "../common.h"

namespace zoo {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride loops beyond this

unsigned blocks_for(int64_t total) { return static_cast<unsigned>(std::min(ceil_div(total, kThreads), kMaxBlocks)); }

template <typename T>
__global__ void adder_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                     const AdderGeom g, int64_t total) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ow = idx % g.Wo;
    int64_t t = idx / g.Wo;
    const int64_t oh = t % g.Ho;
    t /= g.Ho;
    const int64_t co = t % g.Cout, n = t / g.Cout;
    const T* xn = x + n * g.Cin * g.H * g.W;
    const T* wc = w + co * g.K;
    const int64_t ih0 = oh * g.sh - g.ph, iw0 = ow * g.sw - g.pw;
    T acc = T(0);
    for (int64_t c = 0; c < g.Cin; ++c) {
      for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t ih = ih0 + a;
        const bool row_in = ih >= 0 && ih < g.H;
        for (int64_t b = 0; b < g.kw; ++b) {
          const int64_t iw = iw0 + b;
          const T xv = (row_in && iw >= 0 && iw < g.W) ? xn[(c * g.H + ih) * g.W + iw] : T(0);
          const T d = xv - wc[(c * g.kh + a) * g.kw + b];
          acc += d < T(0) ? -d : d;
        }
      }
    }
    y[idx] = -acc;
  }
}

template <typename T>
__global__ void adder_input_grad_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                                        T* __restrict__ dx, const AdderGeom g, int64_t total) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t iw = idx % g.W;
    int64_t t = idx / g.W;
    const int64_t ih = t % g.H;
    t /= g.H;
    const int64_t c = t % g.Cin, n = t / g.Cin;
    const T xv = x[idx];
    const T* gn = gy + n * g.Cout * g.L;
    T acc = T(0);
    for (int64_t a = 0; a < g.kh; ++a) {
      const int64_t hnum = ih + g.ph - a;
      if (hnum < 0 || hnum % g.sh != 0 || hnum / g.sh >= g.Ho) continue;
      const int64_t oh = hnum / g.sh;
      for (int64_t b = 0; b < g.kw; ++b) {
        const int64_t wnum = iw + g.pw - b;
        if (wnum < 0 || wnum % g.sw != 0 || wnum / g.sw >= g.Wo) continue;
        const int64_t p = oh * g.Wo + wnum / g.sw, k = (c * g.kh + a) * g.kw + b;
        for (int64_t co = 0; co < g.Cout; ++co) {
          T d = w[co * g.K + k] - xv;
          d = d < T(-1) ? T(-1) : (d > T(1) ? T(1) : d);
          acc += d * gn[co * g.L + p];
        }
      }
    }
    dx[idx] = acc;
  }
}

at::Tensor adder2d_cuda(const at::Tensor& x_in, const at::Tensor& weight_in, at::IntArrayRef stride,
                        at::IntArrayRef padding, double eta) {
  const AdderGeom g = check_adder_args(x_in, weight_in, stride, padding);
  check_adder_eta(eta);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  at::Tensor y = at::empty({g.N, g.Cout, g.Ho, g.Wo}, x.options());
  const int64_t total = y.numel();
  if (total == 0) return y;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "zoo_adder2d_cuda", [&] {
    adder_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), g, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> adder2d_backward_cuda(const at::Tensor& grad_y_in, const at::Tensor& x_in,
                                                         const at::Tensor& weight_in, at::IntArrayRef stride,
                                                         at::IntArrayRef padding, std::array<bool, 2> output_mask) {
  const AdderGeom g = check_adder_backward_args(grad_y_in, x_in, weight_in, stride, padding);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const at::Tensor grad_y = grad_y_in.to(x.scalar_type()).contiguous();
  at::Tensor dx, dw;
  if (output_mask[0]) {
    dx = at::empty_like(x);
    const int64_t total = dx.numel();
    if (total > 0) {
      cudaStream_t stream = at::cuda::getCurrentCUDAStream();
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "zoo_adder2d_backward_cuda", [&] {
        adder_input_grad_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
            grad_y.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
            dx.data_ptr<scalar_t>(), g, total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
  }
  if (output_mask[1]) dw = adder_weight_grad(grad_y, x, weight, g);
  return {dx, dw};
}

}  // namespace
}  // namespace cuda
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CUDA, m) {
  m.impl("adder2d", &zoo::cuda::adder2d_cuda);
  m.impl("adder2d_backward", &zoo::cuda::adder2d_backward_cuda);
}
