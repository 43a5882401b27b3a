// CUDA kernels: fused Squeeze-and-Excitation, forward and backward.
//
//   s = mean_hw(x)   h = W1 s + b1   z = act(h)   u = W2 z + b2   g = gate(u)   y = x * g
//
// act: ReLU or SiLU (h * sigmoid(h)), applied to the Cr squeezed values inside the FC code.
//
// x is used as-is when it is NCHW-contiguous or channels_last (NHWC), else as an NCHW copy;
// y (and dx) take that layout. fp32 / fp16 / bf16 accumulate in fp32, fp64 in fp64; the
// weights are converted to the accumulation type (W2 also transposed to W2T [Cr, C], so that
// every mat-vec below reads its weights along C, coalesced).
//
// Forward, small slabs (C*H*W <= kFusedMaxElems and the scratch fits in shared memory):
//   se_fused_forward_kernel: one block per sample does pool -> FCs -> gate -> scale; the
//   second read of the slab comes from L1/L2.
// Forward, otherwise (three launches):
//   1. pool: partial sums of x per (split, n, c) into P [S, N, C]:
//        NCHW, H*W < kBlockPlaneMin: se_pool_planes_kernel, a group of G lanes (G <= 32) per
//          plane, several planes per block;
//        NCHW, larger planes: se_pool_block_kernel, one block per (plane, split of H*W),
//          16-byte vector loads, warp shuffles + shared memory;
//        NHWC: se_pool_cl_kernel, a (TX channels x TY pixels) block per (n, channel tile,
//          split of H*W); threads along C read coalesced rows.
//      S > 1 only when there are too few (n, c) work items to fill the device.
//   2. se_fc_forward_kernel: one block per sample: s = sum_k P[k, n] / HW -> z -> u -> g,
//      s and z in shared memory (in a global scratch row when C is too large), gate G [N, C].
//   3. se_scale_kernel: y = x * G[n, c] over the flat tensor with 16-byte loads and stores.
// Backward (dx = dy * g + ds / HW and the weight gradients):
//   1. pool of x and dy * x (the same pool kernels, reading dy and x once);
//   2. se_fc_backward_kernel: per sample, recompute s, h, z, u, g, then du = dg * gate'(u),
//      dh = (W2^T du) * act'(h), ds = W1^T dh; writes the rows S, Z, DU, DH and G, ds / HW;
//   3. se_scale_kernel with the bias ds / HW (skipped when output_mask says no dx);
//   then dW2 = DU^T Z, db2 = sum_n DU, dW1 = DH^T S, db1 = sum_n DH with ATen on the device
//   (each only when output_mask asks for it).
// Everything runs on the current stream; there is no host synchronisation.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>

#include "../common.h"
#include "../se_checks.h"
#include "../se_grads.h"

namespace zoo {
namespace cuda {

namespace {

using at::cuda::detail::IntDivider;

constexpr int kThreads = 256;                 // threads of every kernel here (8 warps)
constexpr int kWarps = kThreads / 32;
constexpr int64_t kFusedMaxElems = 16384;     // single-kernel forward up to this C*H*W
constexpr int64_t kMaxSmem = 48 * 1024;       // dynamic shared memory used without opt-in
constexpr int64_t kBlockPlaneMin = 1024;      // NCHW planes this large get whole blocks
constexpr int64_t kMinBlockChunk = 2048;      // elements per block when a plane is split
constexpr int64_t kMaxSplits = 256;           // splits of H*W (gridDim.y), << 65535
constexpr int64_t kMaxGridX = int64_t(1) << 30;  // grid-stride loops beyond this

int next_pow2(int64_t v) {
  int p = 1;
  while (p < v && p < (1 << 30)) p <<= 1;
  return p;
}

// ---------------------------------------------------------------- device helpers

__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return exp(v); }

template <typename A>
__device__ __forceinline__ A gate_fn(bool hard, A u) {
  if (!hard) return A(1) / (A(1) + exp_acc(-u));
  A t = u + A(3);  // relu6(u + 3) / 6; NaN stays NaN
  t = t < A(0) ? A(0) : t;
  t = t > A(6) ? A(6) : t;
  return t / A(6);
}

// The activation between the FCs, and its derivative from h: ReLU's is [h > 0] (0 at 0,
// torch's), SiLU's sigmoid(h) * (1 + h * (1 - sigmoid(h))). ReLU keeps NaN (as torch's does),
// and its backward passes the gradient where h is NaN (torch's: zero only where h <= 0).
template <typename A>
__device__ __forceinline__ A act_fn(bool silu, A h) {
  if (silu) return h / (A(1) + exp_acc(-h));
  return h < A(0) ? A(0) : h;
}

template <typename A>
__device__ __forceinline__ A act_grad(bool silu, A h) {
  if (!silu) return h <= A(0) ? A(0) : A(1);
  const A sg = A(1) / (A(1) + exp_acc(-h));
  return sg * (A(1) + h * (A(1) - sg));
}

// d * (d gate / d u) from u and g = gate(u), as torch computes it: hard_sigmoid selects d / 6 on
// the open interval (-3, 3) and 0 elsewhere (0 even for a NaN or inf d).
template <typename A>
__device__ __forceinline__ A gate_backward(bool hard, A u, A g, A d) {
  if (!hard) return d * (g * (A(1) - g));
  return (u > A(-3) && u < A(3)) ? d * (A(1) / A(6)) : A(0);
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Sum over the block; the result is valid in thread 0. `red` holds kWarps values.
// Ends with a barrier, so `red` may be reused right away.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  A total = A(0);
  if (warp == 0) {
    total = lane < kWarps ? red[lane] : A(0);
    total = warp_sum(total);
  }
  __syncthreads();
  return total;
}

// 16-byte vectors: float4 for fp32, double2 for fp64, uint4 (8 halves / bfloat16s) otherwise.
template <typename T>
struct Vec16 {
  using type = uint4;
};
template <>
struct Vec16<float> {
  using type = float4;
};
template <>
struct Vec16<double> {
  using type = double2;
};

template <typename T>
constexpr int kVec = 16 / sizeof(T);

template <typename T>
__device__ __forceinline__ void load16(const T* p, T (&v)[kVec<T>]) {
  using V = typename Vec16<T>::type;
  const V raw = *reinterpret_cast<const V*>(p);
  memcpy(v, &raw, 16);
}

template <typename T>
__device__ __forceinline__ void store16(T* p, const T (&v)[kVec<T>]) {
  using V = typename Vec16<T>::type;
  V raw;
  memcpy(&raw, v, 16);
  *reinterpret_cast<V*>(p) = raw;
}

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// The small FCs: weights in the accumulation type. W1 [Cr, C], W2T = W2^T [Cr, C].
template <typename A>
struct Fc {
  const A* W1;
  const A* B1;
  const A* W2T;
  const A* B2;
  int64_t C, Cr;
  bool hard;  // gate: hard_sigmoid (else sigmoid)
  bool silu;  // act: SiLU (else ReLU)
};

// Block-wide M v for a row-major M [rows, C]: a warp per row, lanes along C (coalesced);
// lane 0 of the row's warp calls out(r, (M v)[r]).
template <typename A, typename Out>
__device__ __forceinline__ void rows_dot(const A* M, const A* v, int64_t rows, int64_t C, Out out) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t r = warp; r < rows; r += kWarps) {
    const A* row = M + r * C;
    A acc = A(0);
    for (int64_t c = lane; c < C; c += 32) acc += row[c] * v[c];
    acc = warp_sum(acc);
    if (lane == 0) out(r, acc);
  }
}

// Block-wide M^T v for a row-major M [rows, C]: a thread per column c (neighbouring threads
// read neighbouring columns, coalesced); the thread calls out(c, (M^T v)[c]).
template <typename A, typename Out>
__device__ __forceinline__ void cols_dot(const A* M, const A* v, int64_t rows, int64_t C, Out out) {
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    A acc = A(0);
    for (int64_t r = 0; r < rows; ++r) acc += M[r * C + c] * v[r];
    out(c, acc);
  }
}

// Block-wide: from s [C] to z [Cr] and g [C]: h = W1 s + b1, z = act(h), u = W2 z + b2
// (= W2T^T z), g = gate(u). g may alias s (s is only read before the barrier).
template <typename A>
__device__ void fc_forward(const Fc<A>& w, const A* s, A* z, A* g) {
  rows_dot(w.W1, s, w.Cr, w.C, [&](int64_t r, A acc) { z[r] = act_fn(w.silu, acc + w.B1[r]); });
  __syncthreads();
  cols_dot(w.W2T, z, w.Cr, w.C, [&](int64_t c, A acc) { g[c] = gate_fn(w.hard, acc + w.B2[c]); });
}

// ---------------------------------------------------------------- single-kernel forward

// Block-wide mean over H*W of one sample's slab (C*HW is small here, int indices are safe).
// NCHW: a group of G lanes (a power of 2 <= 32) per channel plane. NHWC: threads along C,
// and when C < kThreads, R = kThreads / C rows of threads each take every R-th pixel
// (partials combined through `red`, kThreads values).
template <typename T, typename A>
__device__ void pool_slab(const T* xs, int C, int HW, bool cl, int G, A* s, A* red) {
  const int t = threadIdx.x;
  const A count = static_cast<A>(HW);
  if (!cl) {
    const int groups = kThreads / G, group = t / G, lg = t & (G - 1);
    for (int c0 = 0; c0 < C; c0 += groups) {  // uniform over the block: every lane shuffles
      const int c = c0 + group;
      A a = A(0);
      if (c < C) {
        const T* plane = xs + c * HW;
        for (int p = lg; p < HW; p += G) a += static_cast<A>(plane[p]);
      }
      for (int off = G >> 1; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
      if (lg == 0 && c < C) s[c] = a / count;
    }
    return;
  }
  const int cw = C < kThreads ? C : kThreads;  // threads per pixel row
  const int R = kThreads / cw;                 // rows of threads (R > 1 only when 2C <= kThreads)
  const int r = t / cw, col = t % cw;
  if (r < R) {
    for (int c = col; c < C; c += cw) {
      A a = A(0);
      for (int p = r; p < HW; p += R) a += static_cast<A>(xs[p * C + c]);
      if (R == 1) {
        s[c] = a / count;
      } else {
        red[r * C + c] = a;  // r * C + c < R * C <= kThreads
      }
    }
  }
  if (R > 1) {
    __syncthreads();
    for (int c = t; c < C; c += kThreads) {
      A a = A(0);
      for (int j = 0; j < R; ++j) a += red[j * C + c];
      s[c] = a / count;
    }
  }
}

// ys = xs * g[c] over one sample's slab; 16-byte vectors when both slab pointers allow.
template <typename T, typename A>
__device__ void scale_slab(const T* xs, T* ys, int C, int HW, bool cl, const A* g) {
  constexpr int V = kVec<T>;
  const int slab = C * HW;
  int start = 0;
  if (aligned16(xs) && aligned16(ys)) {
    const int nvec = slab / V;
    for (int v = threadIdx.x; v < nvec; v += kThreads) {
      const int i = v * V;
      T e[V], o[V];
      load16(xs + i, e);
      if (cl) {
        int c = i % C;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          o[k] = static_cast<T>(static_cast<A>(e[k]) * g[c]);
          if (++c == C) c = 0;
        }
      } else {
        int c = i / HW, p = i - c * HW;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          o[k] = static_cast<T>(static_cast<A>(e[k]) * g[c]);
          if (++p == HW) p = 0, ++c;
        }
      }
      store16(ys + i, o);
    }
    start = nvec * V;
  }
  for (int i = start + threadIdx.x; i < slab; i += kThreads) {
    const int c = cl ? i % C : i / HW;
    ys[i] = static_cast<T>(static_cast<A>(xs[i]) * g[c]);
  }
}

// One block per sample (grid-stride). Shared memory: s [C] (then g), z [Cr], red [kThreads].
template <typename T, typename A>
__global__ void __launch_bounds__(kThreads)
    se_fused_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t N, int C, int HW, bool cl,
                            int G, Fc<A> w) {
  extern __shared__ __align__(16) unsigned char se_smem[];
  A* s = reinterpret_cast<A*>(se_smem);
  A* z = s + C;
  A* red = z + w.Cr;
  const int64_t slab = static_cast<int64_t>(C) * HW;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* xs = x + n * slab;
    T* ys = y + n * slab;
    pool_slab<T, A>(xs, C, HW, cl, G, s, red);
    __syncthreads();
    fc_forward<A>(w, s, z, s);  // g overwrites s
    __syncthreads();
    scale_slab<T, A>(xs, ys, C, HW, cl, s);
    __syncthreads();  // s and red are reused by the next sample
  }
}

// ---------------------------------------------------------------- pool kernels (multi-kernel path)

// NCHW, small planes: a group of G lanes per plane, kThreads / G planes per block.
// P[plane] = sum of x over the plane (and Pd[plane] = sum of dy * x).
template <typename T, typename A, bool kDot>
__global__ void __launch_bounds__(kThreads)
    se_pool_planes_kernel(const T* __restrict__ x, const T* __restrict__ dy, int64_t planes, int64_t HW, int G,
                          A* __restrict__ P, A* __restrict__ Pd) {
  const int groups = kThreads / G, group = threadIdx.x / G, lg = threadIdx.x & (G - 1);
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * groups; base < planes;
       base += static_cast<int64_t>(gridDim.x) * groups) {  // uniform over the block
    const int64_t plane = base + group;
    A a = A(0), d = A(0);
    if (plane < planes) {
      const int64_t off = plane * HW;
      for (int64_t p = lg; p < HW; p += G) {
        const A xv = static_cast<A>(x[off + p]);
        a += xv;
        if (kDot) d += static_cast<A>(dy[off + p]) * xv;
      }
    }
    for (int o = G >> 1; o > 0; o >>= 1) {
      a += __shfl_xor_sync(0xffffffffu, a, o);
      if (kDot) d += __shfl_xor_sync(0xffffffffu, d, o);
    }
    if (lg == 0 && plane < planes) {
      P[plane] = a;
      if (kDot) Pd[plane] = d;
    }
  }
}

// Sums x[0, len) (and dy * x) over the threads of a block: scalar up to the first 16-byte
// boundary, 16-byte vectors, then a scalar tail. Per-thread partial sums.
template <typename T, typename A, bool kDot>
__device__ __forceinline__ void sum_range(const T* x, const T* dy, int64_t len, A& a, A& d) {
  constexpr int V = kVec<T>;
  const uintptr_t ax = reinterpret_cast<uintptr_t>(x);
  int64_t head = 0, nvec = 0;
  // vectors need x and dy equally misaligned (they then reach a 16-byte boundary together)
  if (!kDot || ((ax - reinterpret_cast<uintptr_t>(dy)) & 15) == 0) {
    head = static_cast<int64_t>(((16 - (ax & 15)) & 15) / sizeof(T));
    head = head < len ? head : len;
    nvec = (len - head) / V;
  }
  const T* xv = x + head;
  const T* dv = kDot ? dy + head : nullptr;
  for (int64_t v = threadIdx.x; v < nvec; v += kThreads) {
    T e[V];
    load16(xv + v * V, e);
    if (kDot) {
      T f[V];
      load16(dv + v * V, f);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A xk = static_cast<A>(e[k]);
        a += xk;
        d += static_cast<A>(f[k]) * xk;
      }
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) a += static_cast<A>(e[k]);
    }
  }
  // scalar elements: [0, head) and [head + nvec * V, len)
  const int64_t body_end = head + nvec * V;
  const int64_t scalars = head + (len - body_end);
  for (int64_t j = threadIdx.x; j < scalars; j += kThreads) {
    const int64_t i = j < head ? j : body_end + (j - head);
    const A xk = static_cast<A>(x[i]);
    a += xk;
    if (kDot) d += static_cast<A>(dy[i]) * xk;
  }
}

// NCHW, large planes: block (plane, k) sums chunk k (chunk elements) of the plane.
// P [S, N*C]: P[k * planes + plane].
template <typename T, typename A, bool kDot>
__global__ void __launch_bounds__(kThreads)
    se_pool_block_kernel(const T* __restrict__ x, const T* __restrict__ dy, int64_t planes, int64_t HW,
                         int64_t chunk, A* __restrict__ P, A* __restrict__ Pd) {
  __shared__ A red[kWarps];
  const int64_t k = blockIdx.y;
  const int64_t begin = k * chunk;
  const int64_t rest = HW - begin;
  const int64_t len = rest < 0 ? 0 : (rest < chunk ? rest : chunk);
  for (int64_t plane = blockIdx.x; plane < planes; plane += gridDim.x) {
    const int64_t off = plane * HW + begin;
    A a = A(0), d = A(0);
    sum_range<T, A, kDot>(x + off, kDot ? dy + off : nullptr, len, a, d);
    a = block_sum(a, red);
    if (kDot) d = block_sum(d, red);
    if (threadIdx.x == 0) {
      P[k * planes + plane] = a;
      if (kDot) Pd[k * planes + plane] = d;
    }
  }
}

// NHWC: block (TX, TY) = (channels, pixel rows); block (n * ctiles + tile, k) sums pixels
// [k * chunk, (k + 1) * chunk) of channels [tile * TX, tile * TX + TX) of sample n.
// P [S, N, C]: P[(k * N + n) * C + c].
template <typename T, typename A, bool kDot>
__global__ void __launch_bounds__(kThreads)
    se_pool_cl_kernel(const T* __restrict__ x, const T* __restrict__ dy, int64_t N, int64_t C, int64_t HW,
                      int64_t ctiles, int64_t chunk, A* __restrict__ P, A* __restrict__ Pd) {
  __shared__ A red_a[kThreads];
  __shared__ A red_d[kDot ? kThreads : 1];
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  const int64_t k = blockIdx.y;
  const int64_t p0 = k * chunk;
  const int64_t p1 = p0 + chunk < HW ? p0 + chunk : HW;
  for (int64_t b = blockIdx.x; b < N * ctiles; b += gridDim.x) {
    const int64_t n = b / ctiles;
    const int64_t c = (b - n * ctiles) * TX + tx;
    A a = A(0), d = A(0);
    if (c < C) {
      for (int64_t p = p0 + ty; p < p1; p += TY) {
        const int64_t off = (n * HW + p) * C + c;
        const A xv = static_cast<A>(x[off]);
        a += xv;
        if (kDot) d += static_cast<A>(dy[off]) * xv;
      }
    }
    red_a[ty * TX + tx] = a;
    if (kDot) red_d[ty * TX + tx] = d;
    __syncthreads();
    if (ty == 0 && c < C) {
      for (int j = 1; j < TY; ++j) {
        a += red_a[j * TX + tx];
        if (kDot) d += red_d[j * TX + tx];
      }
      const int64_t o = (k * N + n) * C + c;
      P[o] = a;
      if (kDot) Pd[o] = d;
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------- FC kernels (multi-kernel path)

// sum over the S splits of P [S, N, C] at (n, c)
template <typename A>
__device__ __forceinline__ A split_sum(const A* P, int64_t S, int64_t NC, int64_t nc) {
  A a = A(0);
  for (int64_t k = 0; k < S; ++k) a += P[k * NC + nc];
  return a;
}

// One block per sample (grid-stride): s -> z -> g into G [N, C]. s [C] and z [Cr] live in
// shared memory, or (use_smem false: C too large) in the block's row of ws [grid, C + Cr].
template <typename A>
__global__ void __launch_bounds__(kThreads)
    se_fc_forward_kernel(const A* __restrict__ P, int64_t S, int64_t N, int64_t HW, Fc<A> w, bool use_smem,
                         A* ws, A* __restrict__ G) {
  extern __shared__ __align__(16) unsigned char se_smem[];
  const int64_t C = w.C;
  A* s = use_smem ? reinterpret_cast<A*>(se_smem) : ws + static_cast<int64_t>(blockIdx.x) * (C + w.Cr);
  A* z = s + C;
  const A count = static_cast<A>(HW);
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    for (int64_t c = threadIdx.x; c < C; c += kThreads) s[c] = split_sum(P, S, N * C, n * C + c) / count;
    __syncthreads();
    fc_forward<A>(w, s, z, G + n * C);
    __syncthreads();
  }
}

// Output rows of the backward FC kernel, all [N, *] in the accumulation type.
template <typename A>
struct BackRows {
  A* S;     // [N, C]  s
  A* Z;     // [N, Cr] z
  A* DU;    // [N, C]  du
  A* DH;    // [N, Cr] dh
  A* G;     // [N, C]  g
  A* Bias;  // [N, C]  ds / HW
};

// One block per sample (grid-stride). From P (sum x) and Pd (sum dy * x) [S, N, C]:
// recompute s, h, z, u, g and differentiate: du = dg * gate'(u), dh = (W2^T du) * act'(h),
// ds = W1^T dh. Scratch s|du [C], z [Cr], h|dh [Cr] in shared memory, or (use_smem false) the
// output rows themselves (made visible to the block by its barriers).
template <typename A>
__global__ void __launch_bounds__(kThreads)
    se_fc_backward_kernel(const A* __restrict__ P, const A* __restrict__ Pd, int64_t S, int64_t N, int64_t HW,
                          Fc<A> w, bool use_smem, BackRows<A> out) {
  extern __shared__ __align__(16) unsigned char se_smem[];
  const int64_t C = w.C, Cr = w.Cr;
  const A count = static_cast<A>(HW);
  A* sm = reinterpret_cast<A*>(se_smem);
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    A* s_row = out.S + n * C;
    A* z_row = out.Z + n * Cr;
    A* du_row = out.DU + n * C;
    A* dh_row = out.DH + n * Cr;
    A* s = use_smem ? sm : s_row;
    A* du = use_smem ? sm : du_row;  // du replaces s (s is not needed after h)
    A* z = use_smem ? sm + C : z_row;
    A* dh = use_smem ? sm + C + Cr : dh_row;

    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const A v = split_sum(P, S, N * C, n * C + c) / count;
      s[c] = v;
      s_row[c] = v;
    }
    __syncthreads();
    // h = W1 s + b1, z = act(h); SiLU keeps h in dh's place for act'(h) (the same lane of the
    // same warp writes dh[r] below)
    rows_dot(w.W1, s, Cr, C, [&](int64_t r, A acc) {
      const A h = acc + w.B1[r];
      const A zr = act_fn(w.silu, h);
      z[r] = zr;
      z_row[r] = zr;
      if (w.silu) dh[r] = h;
    });
    __syncthreads();
    // u = W2 z + b2, g = gate(u), du = dg * gate'(u)
    cols_dot(w.W2T, z, Cr, C, [&](int64_t c, A acc) {
      const A u = acc + w.B2[c];
      const A g = gate_fn(w.hard, u);
      const A v = gate_backward(w.hard, u, g, split_sum(Pd, S, N * C, n * C + c));
      out.G[n * C + c] = g;
      du[c] = v;
      du_row[c] = v;
    });
    __syncthreads();
    // dh = (W2^T du) * act'(h); ReLU: zero where h <= 0, which is z <= 0 (NaN passes)
    rows_dot(w.W2T, du, Cr, C, [&](int64_t r, A acc) {
      const A v = w.silu ? acc * act_grad(true, dh[r]) : (z[r] <= A(0) ? A(0) : acc);
      dh[r] = v;
      dh_row[r] = v;
    });
    __syncthreads();
    // ds = W1^T dh; each pixel gets ds / HW
    cols_dot(w.W1, dh, Cr, C, [&](int64_t c, A acc) { out.Bias[n * C + c] = acc / count; });
    __syncthreads();  // the scratch is reused by the next sample
  }
}

// ---------------------------------------------------------------- scale kernel (multi-kernel path)

// Flat element index i of the dense tensor -> gate index n*C + c, and stepping to i + 1
// without dividing. I: uint32 when the tensor has < 2^31 elements (fast division), else uint64.
template <typename I>
struct GateMap {
  IntDivider<I> hw;  // by H*W
  IntDivider<I> c;   // by C
  I C, HW;
};

template <typename I, bool kCL>
struct GateWalk;

template <typename I>
struct GateWalk<I, false> {  // NCHW: i = (n*C + c) * HW + p
  I gi, p;
  __device__ __forceinline__ GateWalk(const GateMap<I>& m, I i) {
    const auto q = m.hw.divmod(i);
    gi = q.div;
    p = q.mod;
  }
  __device__ __forceinline__ void next(const GateMap<I>& m) {
    if (++p == m.HW) p = 0, ++gi;
  }
};

template <typename I>
struct GateWalk<I, true> {  // NHWC: i = (n*HW + p) * C + c
  I gi, c, p;
  __device__ __forceinline__ GateWalk(const GateMap<I>& m, I i) {
    const auto q = m.c.divmod(i);  // q.div = n*HW + p
    const auto r = m.hw.divmod(q.div);
    c = q.mod;
    p = r.mod;
    gi = r.div * m.C + c;
  }
  __device__ __forceinline__ void next(const GateMap<I>& m) {
    ++gi;
    if (++c == m.C) {  // next pixel: same sample (gi back to n*C) or the next one
      c = 0;
      if (++p == m.HW) {
        p = 0;
      } else {
        gi -= m.C;
      }
    }
  }
};

// out = in * g[n, c] (+ bias[n, c]) over the flat dense tensor (grid-stride); 16-byte vectors
// when both pointers are 16-byte aligned, then a scalar tail.
template <typename T, typename A, typename I, bool kCL>
__global__ void __launch_bounds__(kThreads)
    se_scale_kernel(const T* __restrict__ in, T* __restrict__ out, const A* __restrict__ g,
                    const A* __restrict__ bias, I numel, GateMap<I> map, bool vec) {
  constexpr int V = kVec<T>;
  const I tid = static_cast<I>(blockIdx.x) * kThreads + threadIdx.x;
  const I step = static_cast<I>(gridDim.x) * kThreads;
  I start = 0;
  if (vec) {
    const I nvec = numel / V;
    for (I v = tid; v < nvec; v += step) {
      const I i = v * V;
      T e[V], o[V];
      load16(in + i, e);
      GateWalk<I, kCL> walk(map, i);
      if (!kCL && walk.p + V <= map.HW) {  // the whole vector lies in one plane
        const A gv = g[walk.gi];
        const A bv = bias != nullptr ? bias[walk.gi] : A(0);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          A val = static_cast<A>(e[k]) * gv;
          if (bias != nullptr) val += bv;
          o[k] = static_cast<T>(val);
        }
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) {
          A val = static_cast<A>(e[k]) * g[walk.gi];
          if (bias != nullptr) val += bias[walk.gi];
          o[k] = static_cast<T>(val);
          walk.next(map);
        }
      }
      store16(out + i, o);
    }
    start = nvec * V;
  }
  for (I i = start + tid; i < numel; i += step) {
    const GateWalk<I, kCL> walk(map, i);
    A val = static_cast<A>(in[i]) * g[walk.gi];
    if (bias != nullptr) val += bias[walk.gi];
    out[i] = static_cast<T>(val);
  }
}

// ---------------------------------------------------------------- host side

bool channels_last(const at::Tensor& x) {
  return !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// x as-is when NCHW-contiguous or channels_last, else an NCHW copy.
at::Tensor dense(const at::Tensor& x) {
  if (x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  return x.contiguous();
}

// Weights in the accumulation type A, contiguous, W2 transposed. Holds the tensors alive.
template <typename A>
struct FcTensors {
  at::Tensor w1, b1, w2t, b2;
  Fc<A> fc(const SeMode& mode) const {
    return Fc<A>{w1.data_ptr<A>(), b1.data_ptr<A>(), w2t.data_ptr<A>(), b2.data_ptr<A>(), w1.size(1),
                 w1.size(0), mode.gate == Gate::kHardSigmoid, mode.act == Act::kSilu};
  }
};

template <typename A>
FcTensors<A> fc_tensors(const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2) {
  const auto acc = c10::CppTypeToScalarType<A>::value;
  return FcTensors<A>{w1.to(acc).contiguous(), b1.to(acc).contiguous(), w2.to(acc).t().contiguous(),
                      b2.to(acc).contiguous()};
}

int sm_count() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

// Lanes per plane for the small-plane NCHW pools: about 4 elements per lane, at most a warp.
int plane_group(int64_t HW) { return std::min(32, next_pow2(ceil_div(HW, 4))); }

// How the pool is split: S partial sums per (n, c), written to P [S, N, C].
struct PoolPlan {
  bool cl = false;
  bool block_planes = false;  // NCHW: one block per (plane, split)
  int G = 1;                  // NCHW small planes: lanes per plane
  int TX = 32, TY = 8;        // NHWC block shape
  int64_t ctiles = 1;         // NHWC channel tiles
  int64_t S = 1, chunk = 0;   // splits of H*W and their length (elements or pixels)
};

PoolPlan plan_pool(int64_t N, int64_t C, int64_t HW, bool cl) {
  PoolPlan plan;
  plan.cl = cl;
  const int64_t target = 4 * static_cast<int64_t>(sm_count());  // blocks that fill the device
  if (!cl) {
    const int64_t planes = N * C;
    if (HW < kBlockPlaneMin) {
      plan.G = plane_group(HW);
      plan.chunk = HW;
      return plan;
    }
    plan.block_planes = true;
    const int64_t max_split = std::max<int64_t>(1, HW / kMinBlockChunk);
    const int64_t want = std::min(ceil_div(target, planes), std::min(max_split, kMaxSplits));
    plan.chunk = ceil_div(ceil_div(HW, std::max<int64_t>(want, 1)), 8) * 8;
    plan.S = ceil_div(HW, plan.chunk);
    return plan;
  }
  plan.TX = std::min(32, next_pow2(C));
  plan.TY = kThreads / plan.TX;
  plan.ctiles = ceil_div(C, plan.TX);
  const int64_t base = N * plan.ctiles;
  const int64_t max_split = std::max<int64_t>(1, HW / (8 * plan.TY));  // >= 8 pixels per thread
  const int64_t want = std::min(ceil_div(target, base), std::min(max_split, kMaxSplits));
  plan.chunk = ceil_div(HW, std::max<int64_t>(want, 1));
  plan.S = ceil_div(HW, plan.chunk);
  return plan;
}

// Launches the pool: P[k, n, c] = sum over split k of x (and Pd of dy * x).
template <typename T, typename A, bool kDot>
void launch_pool(const PoolPlan& plan, const T* x, const T* dy, int64_t N, int64_t C, int64_t HW, A* P, A* Pd,
                 cudaStream_t stream) {
  if (plan.cl) {
    const int64_t blocks = std::min(N * plan.ctiles, kMaxGridX);
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(plan.S));
    const dim3 block(plan.TX, plan.TY);
    se_pool_cl_kernel<T, A, kDot><<<grid, block, 0, stream>>>(x, dy, N, C, HW, plan.ctiles, plan.chunk, P, Pd);
  } else if (plan.block_planes) {
    const dim3 grid(static_cast<unsigned>(std::min(N * C, kMaxGridX)), static_cast<unsigned>(plan.S));
    se_pool_block_kernel<T, A, kDot><<<grid, kThreads, 0, stream>>>(x, dy, N * C, HW, plan.chunk, P, Pd);
  } else {
    const int64_t per_block = kThreads / plan.G;
    const int64_t blocks = std::min(ceil_div(N * C, per_block), kMaxGridX);
    se_pool_planes_kernel<T, A, kDot>
        <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(x, dy, N * C, HW, plan.G, P, Pd);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// out = in * G[n, c] (+ Bias[n, c]) over the dense tensor.
template <typename T, typename A>
void launch_scale(const T* in, T* out, const A* g, const A* bias, int64_t numel, int64_t C, int64_t HW, bool cl,
                  cudaStream_t stream) {
  const bool vec = (reinterpret_cast<uintptr_t>(in) & 15) == 0 && (reinterpret_cast<uintptr_t>(out) & 15) == 0;
  const int64_t work = vec ? ceil_div(numel, kVec<T>) : numel;
  const unsigned blocks =
      static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(work, kThreads), 16 * int64_t(sm_count()))));
  auto go = [&](auto zero) {
    using I = decltype(zero);
    GateMap<I> map;
    map.hw = IntDivider<I>(static_cast<I>(HW));
    map.c = IntDivider<I>(static_cast<I>(C));
    map.C = static_cast<I>(C);
    map.HW = static_cast<I>(HW);
    if (cl) {
      se_scale_kernel<T, A, I, true><<<blocks, kThreads, 0, stream>>>(in, out, g, bias, static_cast<I>(numel),
                                                                       map, vec);
    } else {
      se_scale_kernel<T, A, I, false><<<blocks, kThreads, 0, stream>>>(in, out, g, bias, static_cast<I>(numel),
                                                                        map, vec);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  // 32-bit indices (and IntDivider's multiply-shift division) when every index fits
  if (numel <= INT32_MAX) {
    go(static_cast<unsigned int>(0));
  } else {
    go(static_cast<uint64_t>(0));
  }
}

at::Tensor se_forward_cuda(const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                           const at::Tensor& b2, c10::string_view gate_name, c10::string_view act_name) {
  const SeMode mode = check_se_args(x_in, w1, b1, w2, b2, gate_name, act_name);
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = dense(x_in);
  const bool cl = channels_last(x);
  at::Tensor y = at::empty_like(x, cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return y;
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), Cr = w1.size(0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "zoo_squeeze_excite_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto acc = c10::CppTypeToScalarType<A>::value;
    const FcTensors<A> wt = fc_tensors<A>(w1, b1, w2, b2);
    const Fc<A> fc = wt.fc(mode);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();

    // single kernel: s [C], z [Cr], red [kThreads] in shared memory
    const int64_t fused_smem = (C + Cr + kThreads) * static_cast<int64_t>(sizeof(A));
    if (C * HW <= kFusedMaxElems && fused_smem <= kMaxSmem) {
      const unsigned blocks = static_cast<unsigned>(std::min(N, kMaxGridX));
      se_fused_forward_kernel<scalar_t, A><<<blocks, kThreads, fused_smem, stream>>>(
          xp, yp, N, static_cast<int>(C), static_cast<int>(HW), cl, plane_group(HW), fc);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }

    const PoolPlan plan = plan_pool(N, C, HW, cl);
    const at::Tensor P = at::empty({plan.S, N, C}, x.options().dtype(acc));
    launch_pool<scalar_t, A, false>(plan, xp, nullptr, N, C, HW, P.data_ptr<A>(), nullptr, stream);

    const at::Tensor G = at::empty({N, C}, P.options());
    const int64_t smem = (C + Cr) * static_cast<int64_t>(sizeof(A));
    const bool use_smem = smem <= kMaxSmem;
    const int64_t blocks = std::min(N, kMaxGridX);
    at::Tensor ws;  // per-block scratch rows when s and z do not fit in shared memory
    if (!use_smem) ws = at::empty({blocks, C + Cr}, P.options());
    se_fc_forward_kernel<A><<<static_cast<unsigned>(blocks), kThreads, use_smem ? smem : 0, stream>>>(
        P.data_ptr<A>(), plan.S, N, HW, fc, use_smem, use_smem ? nullptr : ws.data_ptr<A>(), G.data_ptr<A>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();

    launch_scale<scalar_t, A>(xp, yp, G.data_ptr<A>(), nullptr, x.numel(), C, HW, cl, stream);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> se_backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, c10::string_view gate_name, std::array<bool, 5> output_mask,
    c10::string_view act_name) {
  const SeMode mode = check_se_backward_args(grad_in, x_in, w1, b1, w2, b2, gate_name, act_name);
  const bool need_dx = output_mask[0];
  if (!need_dx && !se_any_weight_grad(output_mask)) return {};
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = dense(x_in);
  const bool cl = channels_last(x);
  const auto fmt = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor dx = need_dx ? at::empty_like(x, fmt) : at::Tensor();
  if (x.numel() == 0) {
    auto zeros_if = [&](int i, const at::Tensor& w) { return output_mask[i] ? at::zeros_like(w) : at::Tensor(); };
    return {dx, zeros_if(1, w1), zeros_if(2, b1), zeros_if(3, w2), zeros_if(4, b2)};
  }
  const at::Tensor dy = grad_in.to(x.scalar_type()).contiguous(fmt);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), Cr = w1.size(0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor dw1, db1, dw2, db2;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "zoo_squeeze_excite_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto acc = c10::CppTypeToScalarType<A>::value;
    const FcTensors<A> wt = fc_tensors<A>(w1, b1, w2, b2);
    const Fc<A> fc = wt.fc(mode);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* dyp = dy.data_ptr<scalar_t>();
    const auto opts = x.options().dtype(acc);

    // pass 1: sum_hw x and sum_hw dy * x
    const PoolPlan plan = plan_pool(N, C, HW, cl);
    const at::Tensor P = at::empty({plan.S, N, C}, opts);
    const at::Tensor Pd = at::empty({plan.S, N, C}, opts);
    launch_pool<scalar_t, A, true>(plan, xp, dyp, N, C, HW, P.data_ptr<A>(), Pd.data_ptr<A>(), stream);

    // per-sample FCs and their derivatives
    const at::Tensor S = at::empty({N, C}, opts), Z = at::empty({N, Cr}, opts);
    const at::Tensor DU = at::empty({N, C}, opts), DH = at::empty({N, Cr}, opts);
    const at::Tensor G = at::empty({N, C}, opts), Bias = at::empty({N, C}, opts);
    const BackRows<A> rows{S.data_ptr<A>(), Z.data_ptr<A>(), DU.data_ptr<A>(),
                           DH.data_ptr<A>(), G.data_ptr<A>(), Bias.data_ptr<A>()};
    const int64_t smem = (C + 2 * Cr) * static_cast<int64_t>(sizeof(A));
    const bool use_smem = smem <= kMaxSmem;
    const unsigned blocks = static_cast<unsigned>(std::min(N, kMaxGridX));
    se_fc_backward_kernel<A><<<blocks, kThreads, use_smem ? smem : 0, stream>>>(
        P.data_ptr<A>(), Pd.data_ptr<A>(), plan.S, N, HW, fc, use_smem, rows);
    C10_CUDA_KERNEL_LAUNCH_CHECK();

    // pass 2: dx = dy * g + ds / HW, only when dx is wanted
    if (need_dx) {
      launch_scale<scalar_t, A>(dyp, dx.data_ptr<scalar_t>(), G.data_ptr<A>(), Bias.data_ptr<A>(), x.numel(), C,
                                HW, cl, stream);
    }

    // weight gradients (those wanted), summed over samples on the device
    std::tie(dw1, db1, dw2, db2) = se_weight_grads(DU, Z, DH, S, w1, b1, w2, b2, output_mask);
  });
  return {dx, dw1, db1, dw2, db2};
}

}  // namespace
}  // namespace cuda
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CUDA, m) {
  m.impl("squeeze_excite", &zoo::cuda::se_forward_cuda);
  m.impl("squeeze_excite_backward", &zoo::cuda::se_backward_cuda);
}
