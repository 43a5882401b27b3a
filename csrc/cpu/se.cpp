// CPU kernels: fused Squeeze-and-Excitation, forward and backward.
//
//   s = mean_hw(x)   h = W1 s + b1   z = act(h)   u = W2 z + b2   g = gate(u)   y = x * g
//
// act is ReLU or SiLU (h * sigmoid(h)); both act on the Cr squeezed values only, so SiLU's
// extra sigmoid (the same inline exp as the gate's) costs next to nothing per sample.
//
// Eager torch reads x twice (the mean, then the product). Here one sample's C x H x W
// slab is handled at a time: the pool pass brings it into cache, the two small FCs
// run on the pooled vector, and the scale pass re-reads the slab from cache, so DRAM
// sees one read and one write of x. The backward pass is fused the same way: pass 1
// reads dy and x once and accumulates sum(x) and sum(dy * x) per channel, the FCs are
// recomputed and differentiated on those vectors, and pass 2 writes
// dx = dy * g + ds / HW from dy that is still in cache. Weight gradients are summed
// over samples with one small matrix product each at the end.
//
// Samples are spread over threads; a batch smaller than the thread count is split
// over channels instead. Contiguous NCHW and channels_last (NHWC) are both handled
// in place; fp32 / fp16 / bf16 accumulate in fp32 and fp64 in fp64.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <array>
#include <string>
#include <vector>

#include "vec.h"

#include "../se_checks.h"
#include "../se_grads.h"

#if ZOO_HAVE_AVX512_PATHS
#include <immintrin.h>
#endif

namespace zoo {
namespace cpu {
namespace {

// ---------------------------------------------------------------- fp32 inner loops

// Sums keep kLanes independent partial sums (4 AVX2 registers), so the adds are not
// serialised on their latency, then fold them pairwise (vector adds, not a scalar chain).
constexpr int kLanes = 32;
constexpr int kLanes8 = 8;

template <int L>
inline float fold(float* acc) {
  for (int w = L / 2; w >= 1; w /= 2) {
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  }
  return acc[0];
}

// Sums of x[i..] (and, with kDot, of dy * x) over whole groups of L values from i, in L
// partial sums folded pairwise; i ends after the last whole group.
template <int L, bool kDot>
inline void lane_sums(const float* __restrict x, const float* __restrict dy, int64_t n, int64_t& i, float& a,
                      float& d) {
  float ax[L] = {0.f}, ad[L] = {0.f};
  for (; i + L <= n; i += L) {
    for (int k = 0; k < L; ++k) {
      ax[k] += x[i + k];
      if constexpr (kDot) ad[k] += dy[i + k] * x[i + k];
    }
  }
  a = fold<L>(ax);
  if constexpr (kDot) d = fold<L>(ad);
}

// Long rows use 32 partial sums (hides the add latency), short ones 8 (a cheap fold).
template <bool kDot>
inline void row_sums(const float* __restrict x, const float* __restrict dy, int64_t n, float* sx, float* sdx) {
  int64_t i = 0;
  float a, d = 0.f;
  if (n >= 4 * kLanes) {
    lane_sums<kLanes, kDot>(x, dy, n, i, a, d);
  } else {
    lane_sums<kLanes8, kDot>(x, dy, n, i, a, d);
  }
  for (; i < n; ++i) {
    a += x[i];
    if constexpr (kDot) d += dy[i] * x[i];
  }
  *sx = a;
  if constexpr (kDot) *sdx = d;
}

inline float row_sum(const float* __restrict x, int64_t n) {
  float s;
  row_sums<false>(x, nullptr, n, &s, nullptr);
  return s;
}

inline void row_sum_dot(const float* __restrict x, const float* __restrict dy, int64_t n, float* sx, float* sdx) {
  row_sums<true>(x, dy, n, sx, sdx);
}

// Sums of four rows at once, 8 lanes each: four independent add chains hide the add
// latency on short rows, and each fold is only 3 levels.
inline void row_sums4(const float* __restrict x, int64_t len, float* __restrict out) {
  float a0[kLanes8] = {0.f}, a1[kLanes8] = {0.f}, a2[kLanes8] = {0.f}, a3[kLanes8] = {0.f};
  const float *x0 = x, *x1 = x + len, *x2 = x + 2 * len, *x3 = x + 3 * len;
  int64_t i = 0;
  for (; i + kLanes8 <= len; i += kLanes8) {
    for (int k = 0; k < kLanes8; ++k) {
      a0[k] += x0[i + k];
      a1[k] += x1[i + k];
      a2[k] += x2[i + k];
      a3[k] += x3[i + k];
    }
  }
  float s0 = fold<kLanes8>(a0), s1 = fold<kLanes8>(a1), s2 = fold<kLanes8>(a2), s3 = fold<kLanes8>(a3);
  for (; i < len; ++i) s0 += x0[i], s1 += x1[i], s2 += x2[i], s3 += x3[i];
  out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

// NCHW: sums of `rows` consecutive planes of `len` values (one call per sample slab).
ZOO_VECTOR_CLONES
void plane_sums_f32(const float* __restrict x, int64_t rows, int64_t len, float* __restrict out) {
  int64_t r = 0;
  if (len < 4 * kLanes) {
    for (; r + 4 <= rows; r += 4) row_sums4(x + r * len, len, out + r);
  }
  for (; r < rows; ++r) out[r] = row_sum(x + r * len, len);
}

ZOO_VECTOR_CLONES
void plane_sums_dots_f32(const float* __restrict x, const float* __restrict dy, int64_t rows, int64_t len,
                         float* __restrict sx, float* __restrict sdx) {
  for (int64_t r = 0; r < rows; ++r) row_sum_dot(x + r * len, dy + r * len, len, sx + r, sdx + r);
}

#if ZOO_HAVE_AVX512_PATHS
// NCHW: out[r, :] = in[r, :] * g[r] (+ b[r]) for `rows` consecutive rows of len >= 16
// values, walked as one flat run of 16-float vectors aligned on `out`: every store covers
// one whole 64-byte line (no line-split stores on rows whose length is not a multiple of
// 16), and a vector that straddles two rows blends the two rows' gates. With `stream`,
// the stores are non-temporal: the line is written without first being read into cache
// (no read-for-ownership), which halves the write's memory traffic when the output cannot
// stay in cache anyway. Same arithmetic (a multiply, then an add) as the generic loop.
//
// pf0 / pf1 (may be null): the same range of the next sample's slab in the tensors the next
// pool pass reads. One line of each is prefetched into L2 per line written, so the next
// pool pass reads from L2 while this pass is limited by its writes (the lines it evicts are
// the ones this pass is done with).
ZOO_AVX512
void plane_scale_f32_avx512(const float* __restrict in, const float* __restrict g, const float* __restrict b,
                            int64_t rows, int64_t len, float* __restrict out, bool stream, const float* pf0,
                            const float* pf1) {
  const int64_t total = rows * len;
  int64_t i = 0, r = 0, rem = len;  // rem: the values of row r from i on
  const int64_t head = std::min<int64_t>(total, ((64 - (reinterpret_cast<uintptr_t>(out) & 63)) & 63) / 4);
  for (; i < head; ++i) {
    out[i] = b ? in[i] * g[r] + b[r] : in[i] * g[r];
    if (--rem == 0) ++r, rem = len;
  }
  for (; i + 16 <= total; i += 16) {
    __m512 gv = _mm512_set1_ps(g[r]), bv = _mm512_setzero_ps();
    if (b) bv = _mm512_set1_ps(b[r]);
    if (rem < 16) {  // lanes rem.. belong to row r + 1
      const __mmask16 next = static_cast<__mmask16>(0xFFFFu << rem);
      gv = _mm512_mask_blend_ps(next, gv, _mm512_set1_ps(g[r + 1]));
      if (b) bv = _mm512_mask_blend_ps(next, bv, _mm512_set1_ps(b[r + 1]));
    }
    if (pf0) _mm_prefetch(reinterpret_cast<const char*>(pf0 + i), _MM_HINT_T1);
    if (pf1) _mm_prefetch(reinterpret_cast<const char*>(pf1 + i), _MM_HINT_T1);
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(in + i), gv);
    if (b) v = _mm512_add_ps(v, bv);
    if (stream) {
      _mm512_stream_ps(out + i, v);
    } else {
      _mm512_store_ps(out + i, v);
    }
    rem -= 16;
    if (rem <= 0) ++r, rem += len;
  }
  for (; i < total; ++i) {
    out[i] = b ? in[i] * g[r] + b[r] : in[i] * g[r];
    if (--rem == 0) ++r, rem = len;
  }
  if (stream) _mm_sfence();  // order the streamed lines before the op returns
}

// Horizontal sum of one 16-lane vector (pairwise halves: 3 shuffles and 4 adds).
ZOO_AVX512
inline float hsum512(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

ZOO_AVX512
inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// Per-row sums (and sums of dy * x when dy is given) of `rows` rows of `len` values: four
// independent accumulators per row keep the loads flowing at cache bandwidth; the last
// partial vector is a masked load.
ZOO_AVX512
void plane_sums_f32_avx512(const float* __restrict x, const float* __restrict dy, int64_t rows, int64_t len,
                           float* __restrict sx, float* __restrict sdx) {
  const int64_t full = len / 16 * 16;
  const __mmask16 mt = tail_mask(len - full);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * len;
    const float* dr = dy ? dy + r * len : nullptr;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m512 d0 = a0, d1 = a0, d2 = a0, d3 = a0;
    int64_t i = 0;
    for (; i + 64 <= full; i += 64) {
      const __m512 v0 = _mm512_loadu_ps(xr + i), v1 = _mm512_loadu_ps(xr + i + 16);
      const __m512 v2 = _mm512_loadu_ps(xr + i + 32), v3 = _mm512_loadu_ps(xr + i + 48);
      a0 = _mm512_add_ps(a0, v0), a1 = _mm512_add_ps(a1, v1), a2 = _mm512_add_ps(a2, v2), a3 = _mm512_add_ps(a3, v3);
      if (dr) {
        d0 = _mm512_fmadd_ps(_mm512_loadu_ps(dr + i), v0, d0);
        d1 = _mm512_fmadd_ps(_mm512_loadu_ps(dr + i + 16), v1, d1);
        d2 = _mm512_fmadd_ps(_mm512_loadu_ps(dr + i + 32), v2, d2);
        d3 = _mm512_fmadd_ps(_mm512_loadu_ps(dr + i + 48), v3, d3);
      }
    }
    for (; i < full; i += 16) {
      const __m512 v = _mm512_loadu_ps(xr + i);
      a0 = _mm512_add_ps(a0, v);
      if (dr) d0 = _mm512_fmadd_ps(_mm512_loadu_ps(dr + i), v, d0);
    }
    if (mt) {
      const __m512 v = _mm512_maskz_loadu_ps(mt, xr + i);
      a1 = _mm512_add_ps(a1, v);
      if (dr) d1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mt, dr + i), v, d1);
    }
    sx[r] = hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    if (dr) sdx[r] = hsum512(_mm512_add_ps(_mm512_add_ps(d0, d1), _mm512_add_ps(d2, d3)));
  }
}

// The small FCs' dot products and axpys (rows of C contiguous weights), with FMA.
ZOO_AVX512
float dot_f32_avx512(const float* __restrict a, const float* __restrict b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return hsum512(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

ZOO_AVX512
void axpy_f32_avx512(float a, const float* __restrict x, float* __restrict y, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}
#endif

// NCHW: out[r, :] = in[r, :] * g[r] (+ b[r]).
ZOO_VECTOR_CLONES
void plane_scale_f32(const float* __restrict in, const float* __restrict g, const float* __restrict b, int64_t rows,
                     int64_t len, float* __restrict out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = in + r * len;
    float* dst = out + r * len;
    const float gr = g[r];
    if (b) {
      const float br = b[r];
      for (int64_t i = 0; i < len; ++i) dst[i] = src[i] * gr + br;
    } else {
      for (int64_t i = 0; i < len; ++i) dst[i] = src[i] * gr;
    }
  }
}

ZOO_VECTOR_CLONES
float dot_f32(const float* __restrict a, const float* __restrict b, int64_t n) {
  int64_t i = 0;
  float s;
  if (n >= 4 * kLanes) {
    float acc[kLanes] = {0.f};
    for (; i + kLanes <= n; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) acc[k] += a[i + k] * b[i + k];
    }
    s = fold<kLanes>(acc);
  } else {
    float acc[kLanes8] = {0.f};
    for (; i + kLanes8 <= n; i += kLanes8) {
      for (int k = 0; k < kLanes8; ++k) acc[k] += a[i + k] * b[i + k];
    }
    s = fold<kLanes8>(acc);
  }
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += a * x
ZOO_VECTOR_CLONES
void axpy_f32(float a, const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// channels_last rows: one pixel's C values
ZOO_VECTOR_CLONES
void add_row_f32(const float* __restrict x, float* __restrict acc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

ZOO_VECTOR_CLONES
void add_rows_f32(const float* __restrict x, const float* __restrict dy, float* __restrict ax,
                  float* __restrict adx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    ax[i] += x[i];
    adx[i] += dy[i] * x[i];
  }
}

ZOO_VECTOR_CLONES
void mul_row_f32(const float* __restrict x, const float* __restrict g, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * g[i];
}

ZOO_VECTOR_CLONES
void mul_add_row_f32(const float* __restrict dy, const float* __restrict g, const float* __restrict b,
                     float* __restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * g[i] + b[i];
}

// g[i] = gate(u[i]) for fp32. sigmoid needs exp, and a libm call per channel would
// cost more than the FCs, so exp is evaluated inline (branch-free, vectorised): with
// k = round(x / ln 2) and r = x - k ln 2 (ln 2 split in two for exactness), exp(x) =
// 2^k * exp(r), exp(r) from Cephes' expf minimax polynomial (about 1 ulp).
ZOO_VECTOR_CLONES
void sigmoid_f32(const float* __restrict u, float* __restrict g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float x = -u[i];
    x = x < -87.f ? -87.f : x;  // (two selects: a nested one is not if-converted)
    x = x > 88.f ? 88.f : x;
    const float k = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round to nearest
    const float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
    const float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * z + r + 1.f;
    const int32_t scale = (static_cast<int32_t>(k) + 127) << 23;  // 2^k
    float two_k;
    std::memcpy(&two_k, &scale, sizeof(two_k));
    // Below u = -88 the clamp above would give 1 / (1 + e^88) = 6e-39 for every u, down to
    // -inf; the true value is below that (a subnormal), and sigmoid(-inf) is 0: give 0, as
    // torch's sigmoid does there (then inf * gate is NaN in both, not inf here).
    g[i] = u[i] < -88.f ? 0.f : 1.f / (1.f + e * two_k);
  }
}

ZOO_VECTOR_CLONES
void hard_sigmoid_f32(const float* __restrict u, float* __restrict g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float t = u[i] + 3.f;
    t = t < 0.f ? 0.f : t;
    t = t > 6.f ? 6.f : t;
    g[i] = t / 6.f;
  }
}

// ---------------------------------------------------------------- any-dtype loops

template <typename T, typename A>
void plane_sums_any(const T* x, const T* dy, int64_t rows, int64_t len, A* sx, A* sdx) {
  if constexpr (std::is_same_v<T, float>) {
#if ZOO_HAVE_AVX512_PATHS
    if (cpu_has_avx512()) {
      plane_sums_f32_avx512(x, dy, rows, len, sx, sdx);
      return;
    }
#endif
    if (dy) {
      plane_sums_dots_f32(x, dy, rows, len, sx, sdx);
    } else {
      plane_sums_f32(x, rows, len, sx);
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * len;
      A a = 0, d = 0;
      for (int64_t i = 0; i < len; ++i) {
        const A xv = static_cast<A>(xr[i]);
        a += xv;
        if (dy) d += static_cast<A>(dy[r * len + i]) * xv;
      }
      sx[r] = a;
      if (dy) sdx[r] = d;
    }
  }
}

template <typename T, typename A>
void plane_scale_any(const T* in, const A* g, const A* b, int64_t rows, int64_t len, T* out, bool stream,
                     const T* pf0, const T* pf1) {
  if constexpr (std::is_same_v<T, float>) {
#if ZOO_HAVE_AVX512_PATHS
    if (len >= 16 && reinterpret_cast<uintptr_t>(out) % sizeof(float) == 0 && cpu_has_avx512()) {
      plane_scale_f32_avx512(in, g, b, rows, len, out, stream, pf0, pf1);
      return;
    }
#endif
    plane_scale_f32(in, g, b, rows, len, out);
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      const A br = b ? b[r] : A(0);
      for (int64_t i = 0; i < len; ++i) {
        out[r * len + i] = static_cast<T>(static_cast<A>(in[r * len + i]) * g[r] + br);
      }
    }
  }
}

template <typename T, typename A>
void add_row_any(const T* x, A* acc, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    add_row_f32(x, acc, n);
  } else {
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<A>(x[i]);
  }
}

template <typename T, typename A>
void add_rows_any(const T* x, const T* dy, A* ax, A* adx, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    add_rows_f32(x, dy, ax, adx, n);
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const A xv = static_cast<A>(x[i]);
      ax[i] += xv;
      adx[i] += static_cast<A>(dy[i]) * xv;
    }
  }
}

template <typename T, typename A>
void mul_row_any(const T* x, const A* g, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    mul_row_f32(x, g, y, n);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(static_cast<A>(x[i]) * g[i]);
  }
}

template <typename T, typename A>
void mul_add_row_any(const T* dy, const A* g, const A* b, T* dx, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    mul_add_row_f32(dy, g, b, dx, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dx[i] = static_cast<T>(static_cast<A>(dy[i]) * g[i] + b[i]);
  }
}

template <typename A>
A dot_any(const A* a, const A* b, int64_t n) {
  if constexpr (std::is_same_v<A, float>) {
#if ZOO_HAVE_AVX512_PATHS
    if (cpu_has_avx512()) return dot_f32_avx512(a, b, n);
#endif
    return dot_f32(a, b, n);
  } else {
    A s = 0;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
  }
}

template <typename A>
void axpy_any(A a, const A* x, A* y, int64_t n) {
  if constexpr (std::is_same_v<A, float>) {
#if ZOO_HAVE_AVX512_PATHS
    if (cpu_has_avx512()) return axpy_f32_avx512(a, x, y, n);
#endif
    axpy_f32(a, x, y, n);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  }
}

// ---------------------------------------------------------------- the small FCs

// Weights in the accumulation type: W1 [Cr, C], b1 [Cr], W2 [C, Cr], b2 [C], and, for
// batches of several samples, W2t = W2^T [Cr, C]. Every FC product below is a dot product
// or an axpy over contiguous rows. With W2t, both FCs run over rows of C values (long,
// vectorised, no horizontal sums); without it, the excite FC is C dot products of Cr
// values each, which costs more per sample but saves transposing W2 (C x Cr copies) when
// the batch is small next to Cr.
//
// The FC loops skip the rows of a zero factor (ReLU zeroes about half of z): that is exact
// only while the weights are finite (0 * inf and 0 * NaN are NaN, as torch computes them), so
// skip_zero_w1 / skip_zero_w2 say whether W1 / W2 hold only finite values (one pass over the
// C x Cr weights per call).
template <typename A>
struct Weights {
  at::Tensor w1, b1, w2, b2, w2t;  // converted / transposed copies, made only when needed
  const A *W1, *B1, *W2, *B2, *W2t;
  int64_t C, Cr;
  Gate gate;
  Act act;
  bool skip_zero_w1, skip_zero_w2;
};

template <typename A>
bool all_finite(const A* p, int64_t n) {
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= std::isfinite(p[i]);
  return ok;
}

template <typename A>
A gate_fn(Gate gate, A u) {
  if (gate == Gate::kSigmoid) return A(1) / (A(1) + std::exp(-u));
  return std::min(std::max(u + A(3), A(0)), A(6)) / A(6);
}

template <typename A>
void gate_all(Gate gate, const A* u, A* g, int64_t n) {
  if constexpr (std::is_same_v<A, float>) {
    if (gate == Gate::kSigmoid) {
      sigmoid_f32(u, g, n);
    } else {
      hard_sigmoid_f32(u, g, n);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) g[i] = gate_fn(gate, u[i]);
  }
}

// d * (d gate / d u), from u and g = gate(u), as torch's backward computes it: hard_sigmoid's
// selects d / 6 on the open interval (-3, 3) and 0 elsewhere (0 even for a NaN or inf d, where
// a product with the slope 0 would be NaN).
template <typename A>
A gate_backward(Gate gate, A u, A g, A d) {
  if (gate == Gate::kSigmoid) return d * (g * (A(1) - g));
  return (u > A(-3) && u < A(3)) ? d * (A(1) / A(6)) : A(0);
}

// From the pooled mean s [C]: h [Cr] (before act), z [Cr], u [C], g [C]; with SiLU and sig
// given, also sig [Cr] = sigmoid(h) (the backward's act'(h) needs it).
template <typename A>
void fc_forward(const Weights<A>& w, const A* s, A* h, A* z, A* u, A* g, A* sig = nullptr) {
  const bool relu = w.act == Act::kRelu;
  for (int64_t r = 0; r < w.Cr; ++r) {
    h[r] = w.B1[r] + dot_any<A>(w.W1 + r * w.C, s, w.C);  // h = W1 s + b1
    if (relu) z[r] = h[r] < A(0) ? A(0) : h[r];  // torch's ReLU: NaN stays NaN (h > 0 ? h : 0 would hide it)
  }
  if (!relu) {  // z = h * sigmoid(h), the sigmoid into sig (or into z, then scaled in place)
    A* sg = sig ? sig : z;
    gate_all(Gate::kSigmoid, h, sg, w.Cr);
    for (int64_t r = 0; r < w.Cr; ++r) z[r] = h[r] * sg[r];
  }
  if (w.W2t) {  // u = W2 z + b2
    std::copy(w.B2, w.B2 + w.C, u);
    for (int64_t r = 0; r < w.Cr; ++r) {
      if (z[r] != A(0) || !w.skip_zero_w2) axpy_any<A>(z[r], w.W2t + r * w.C, u, w.C);
    }
  } else {
    for (int64_t c = 0; c < w.C; ++c) u[c] = w.B2[c] + dot_any<A>(w.W2 + c * w.Cr, z, w.Cr);
  }
  gate_all(w.gate, u, g, w.C);
}

// Backward through the FCs of one sample. In: dg [C] = sum_hw dy * x, plus the forward
// values (sig = sigmoid(h), read with SiLU only). Out: du [C], dh [Cr] (for the weight
// gradients) and, unless ds is null (no dx wanted), ds [C] = dL/ds.
template <typename A>
void fc_backward(const Weights<A>& w, const A* dg, const A* h, const A* sig, const A* u, const A* g, A* du, A* dh,
                 A* ds) {
  for (int64_t c = 0; c < w.C; ++c) du[c] = gate_backward(w.gate, u[c], g[c], dg[c]);
  if (w.W2t) {  // dz = W2^T du
    for (int64_t r = 0; r < w.Cr; ++r) dh[r] = dot_any<A>(w.W2t + r * w.C, du, w.C);
  } else {
    std::fill(dh, dh + w.Cr, A(0));
    for (int64_t c = 0; c < w.C; ++c) {
      if (du[c] != A(0) || !w.skip_zero_w2) axpy_any<A>(du[c], w.W2 + c * w.Cr, dh, w.Cr);
    }
  }
  if (ds) std::fill(ds, ds + w.C, A(0));
  const bool relu = w.act == Act::kRelu;
  for (int64_t r = 0; r < w.Cr; ++r) {
    if (relu) {
      if (h[r] <= A(0)) dh[r] = A(0);  // through the ReLU
    } else {
      dh[r] *= sig[r] * (A(1) + h[r] * (A(1) - sig[r]));  // silu'(h) = s (1 + h (1 - s)), s = sigmoid(h)
    }
    if (ds && (dh[r] != A(0) || !w.skip_zero_w1)) axpy_any<A>(dh[r], w.W1 + r * w.C, ds, w.C);  // ds = W1^T dh
  }
}

// ---------------------------------------------------------------- slab passes

// Sums over H*W of channels [c0, c1) of sample n (x) -> sx[c] (and of dy * x -> sdx[c]).
template <typename T, typename A>
void pool_pass(const T* x, const T* dy, bool cl, int64_t n, int64_t C, int64_t HW, int64_t c0, int64_t c1, A* sx,
               A* sdx) {
  if (!cl) {
    const int64_t off = (n * C + c0) * HW;
    plane_sums_any<T, A>(x + off, dy ? dy + off : nullptr, c1 - c0, HW, sx + c0, sdx ? sdx + c0 : nullptr);
    return;
  }
  std::fill(sx + c0, sx + c1, A(0));
  if (dy) std::fill(sdx + c0, sdx + c1, A(0));
  for (int64_t p = 0; p < HW; ++p) {
    const int64_t off = (n * HW + p) * C + c0;
    if (dy) {
      add_rows_any<T, A>(x + off, dy + off, sx + c0, sdx + c0, c1 - c0);
    } else {
      add_row_any<T, A>(x + off, sx + c0, c1 - c0);
    }
  }
}

// out = in * g[c] (+ b[c]) over channels [c0, c1) of sample n. When `next`, this thread
// pools sample n + 1 next, from p0 (and p1): the same channels of it are prefetched.
template <typename T, typename A>
void scale_pass(const T* in, T* out, bool cl, int64_t n, int64_t C, int64_t HW, int64_t c0, int64_t c1, const A* g,
                const A* b, bool stream, bool next, const T* p0, const T* p1) {
  if (!cl) {
    const int64_t off = (n * C + c0) * HW, next_off = off + C * HW;
    plane_scale_any<T, A>(in + off, g + c0, b ? b + c0 : nullptr, c1 - c0, HW, out + off, stream,
                          next && p0 ? p0 + next_off : nullptr, next && p1 ? p1 + next_off : nullptr);
    return;
  }
  for (int64_t p = 0; p < HW; ++p) {
    const int64_t off = (n * HW + p) * C + c0;
    if (b) {
      mul_add_row_any<T, A>(in + off, g + c0, b + c0, out + off, c1 - c0);
    } else {
      mul_row_any<T, A>(in + off, g + c0, out + off, c1 - c0);
    }
  }
}

// Runs pool(n, c0, c1) -> the pool pass, then mid(n) -> the FCs, then scale(n, c0, c1, next)
// -> the scale pass, for every sample: samples over threads, or channels over threads when
// the batch is small. `next` says the same thread pools sample n + 1 (channels c0..c1) next.
template <typename Pool, typename Mid, typename Scale>
void for_each_sample(int64_t N, int64_t C, int64_t HW, Pool pool, Mid mid, Scale scale) {
  const int64_t threads = at::get_num_threads();
  if (N >= threads || at::in_parallel_region()) {
    at::parallel_for(0, N, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t n = lo; n < hi; ++n) {
        pool(n, 0, C);
        mid(n);
        scale(n, 0, C, n + 1 < hi);
      }
    });
    return;
  }
  // Fewer samples than threads: split each slab's channels over the threads, inside a
  // single parallel region (one team start instead of two per sample); one thread runs
  // the FCs between the passes while the others wait at the barrier.
  const int64_t team = std::min<int64_t>(threads, std::max<int64_t>(1, C * HW / 4096));
#ifdef _OPENMP
  if (team > 1) {
#pragma omp parallel num_threads(team)
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
      for (int64_t n = 0; n < N; ++n) {
        pool(n, c0, c1);
#pragma omp barrier
#pragma omp single
        mid(n);  // (implicit barrier: every thread sees the gates before scaling)
        scale(n, c0, c1, n + 1 < N);
      }
    }
    return;
  }
#endif
  for (int64_t n = 0; n < N; ++n) {
    pool(n, 0, C);
    mid(n);
    scale(n, 0, C, n + 1 < N);
  }
}

// ---------------------------------------------------------------- checks and setup

bool channels_last(const at::Tensor& x) {
  return !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// A weight as a contiguous A array: the tensor itself when it already is one (no copy;
// the common case costs no dispatcher call), else a converted copy kept in `keep`.
template <typename A>
const A* as_array(const at::Tensor& t, at::Tensor& keep) {
  if (t.scalar_type() == c10::CppTypeToScalarType<A>::value && t.is_contiguous()) return t.template data_ptr<A>();
  keep = t.to(c10::CppTypeToScalarType<A>::value).contiguous();
  return keep.template data_ptr<A>();
}

template <typename A>
Weights<A> make_weights(const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                        SeMode mode, int64_t batch) {
  Weights<A> w;
  w.C = w1.size(1), w.Cr = w1.size(0), w.gate = mode.gate, w.act = mode.act;
  w.W1 = as_array<A>(w1, w.w1), w.B1 = as_array<A>(b1, w.b1);
  w.W2 = as_array<A>(w2, w.w2), w.B2 = as_array<A>(b2, w.b2);
  w.skip_zero_w1 = all_finite(w.W1, w.C * w.Cr);
  w.skip_zero_w2 = all_finite(w.W2, w.C * w.Cr);
  w.W2t = nullptr;
  // Transposing costs about C * Cr copies once; the dot-product form costs about C horizontal
  // sums per sample more. Measured on the 2-core CPU: (32,512,14,14) runs faster transposed,
  // (8,1024,7,7) and (4,1024,7,7) faster without.
  if (batch * 4 > w.Cr) {
    w.w2t = w2.to(c10::CppTypeToScalarType<A>::value).t().contiguous();
    w.W2t = w.w2t.template data_ptr<A>();
  }
  return w;
}

// Whether the scale pass should write its output with non-temporal stores: when the
// tensors the op touches (`bytes`) exceed the last-level cache, the output cannot stay
// cached for the next layer anyway (its first lines are evicted before the op ends), so a
// normal store only adds a read of each output line. ZOO_SE_STREAM=0/1 overrides.
bool stream_output(int64_t bytes) {
  static const int forced = [] {
    const char* v = std::getenv("ZOO_SE_STREAM");
    return v && *v ? (v[0] == '1' ? 1 : 0) : -1;
  }();
  if (forced >= 0) return forced == 1;
  const int64_t llc = last_level_cache_bytes();
  return llc > 0 && bytes > llc;
}

// x as-is when contiguous in NCHW or channels_last, else an NCHW copy.
at::Tensor dense(const at::Tensor& x) {
  if (x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  return x.contiguous();
}

at::Tensor se_forward_cpu(const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                          const at::Tensor& b2, c10::string_view gate_name, c10::string_view act_name) {
  const SeMode mode = check_se_args(x_in, w1, b1, w2, b2, gate_name, act_name);
  const at::Tensor x = dense(x_in);
  const bool cl = channels_last(x);
  at::Tensor y = at::empty_like(x, cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  if (x.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "zoo_squeeze_excite", [&] {
    using A = at::opmath_type<scalar_t>;
    const Weights<A> w = make_weights<A>(w1, b1, w2, b2, mode, x.size(0));
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    const bool stream = stream_output(x.nbytes() + y.nbytes());
    const int64_t Cr = w.Cr;
    // per-sample scratch: s [C], h [Cr], z [Cr], u [C], g [C]
    std::vector<A> scratch(N * (3 * C + 2 * Cr));
    auto buf = [&](int64_t n) { return scratch.data() + n * (3 * C + 2 * Cr); };
    const A inv_hw = A(1) / static_cast<A>(HW);
    for_each_sample(
        N, C, HW,
        [&](int64_t n, int64_t c0, int64_t c1) {
          pool_pass<scalar_t, A>(xp, nullptr, cl, n, C, HW, c0, c1, buf(n), nullptr);
        },
        [&](int64_t n) {
          A* s = buf(n);
          for (int64_t c = 0; c < C; ++c) s[c] *= inv_hw;
          fc_forward(w, s, s + C, s + C + Cr, s + C + 2 * Cr, s + 2 * C + 2 * Cr);
        },
        [&](int64_t n, int64_t c0, int64_t c1, bool next) {
          scale_pass<scalar_t, A>(xp, yp, cl, n, C, HW, c0, c1, buf(n) + 2 * C + 2 * Cr, nullptr, stream, next, xp,
                                  nullptr);
        });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> se_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, c10::string_view gate_name, std::array<bool, 5> output_mask,
    c10::string_view act_name) {
  const SeMode mode = check_se_backward_args(grad_in, x_in, w1, b1, w2, b2, gate_name, act_name);
  const bool need_dx = output_mask[0];
  if (!need_dx && !se_any_weight_grad(output_mask)) return {};
  at::Tensor x = dense(x_in);
  const bool cl = channels_last(x);
  const auto fmt = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor dy = grad_in.to(x.scalar_type()).contiguous(fmt);
  at::Tensor dx = need_dx ? at::empty_like(x, fmt) : at::Tensor();
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), Cr = w1.size(0);
  at::Tensor dw1, db1, dw2, db2;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "zoo_squeeze_excite_backward", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto adt = c10::CppTypeToScalarType<A>::value;
    const Weights<A> w = make_weights<A>(w1, b1, w2, b2, mode, x.size(0));
    // per-sample rows kept for the weight gradients: s [N,C], z [N,Cr], du [N,C], dh [N,Cr]
    at::Tensor S = at::zeros({N, C}, x.options().dtype(adt)), Z = at::zeros({N, Cr}, S.options());
    at::Tensor DU = at::zeros({N, C}, S.options()), DH = at::zeros({N, Cr}, S.options());
    if (x.numel() > 0) {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* dyp = dy.data_ptr<scalar_t>();
      scalar_t* dxp = need_dx ? dx.data_ptr<scalar_t>() : nullptr;
      const bool stream = stream_output(x.nbytes() + dy.nbytes() + (need_dx ? dx.nbytes() : 0));
      A *Sp = S.data_ptr<A>(), *Zp = Z.data_ptr<A>(), *DUp = DU.data_ptr<A>(), *DHp = DH.data_ptr<A>();
      // per-sample scratch: sdx [C], h [Cr], u [C], g [C], ds/HW [C], and with SiLU sigmoid(h) [Cr]
      const int64_t row = 4 * C + (mode.act == Act::kSilu ? 2 : 1) * Cr;
      std::vector<A> scratch(N * row);
      auto buf = [&](int64_t n) { return scratch.data() + n * row; };
      const A inv_hw = A(1) / static_cast<A>(HW);
      for_each_sample(
          N, C, HW,
          [&](int64_t n, int64_t c0, int64_t c1) {
            pool_pass<scalar_t, A>(xp, dyp, cl, n, C, HW, c0, c1, Sp + n * C, buf(n));
          },
          [&](int64_t n) {
            A* s = Sp + n * C;
            A *sdx = buf(n), *h = sdx + C, *u = h + Cr, *g = u + C, *ds = g + C;
            A* sig = w.act == Act::kSilu ? ds + C : nullptr;
            for (int64_t c = 0; c < C; ++c) s[c] *= inv_hw;
            fc_forward(w, s, h, Zp + n * Cr, u, g, sig);
            fc_backward(w, sdx, h, sig, u, g, DUp + n * C, DHp + n * Cr, need_dx ? ds : nullptr);
            if (need_dx) {
              for (int64_t c = 0; c < C; ++c) ds[c] *= inv_hw;  // each pixel's share of d mean
            }
          },
          [&](int64_t n, int64_t c0, int64_t c1, bool next) {
            if (!need_dx) return;  // no dx pass over the tensor
            const A* g = buf(n) + 2 * C + Cr;
            scale_pass<scalar_t, A>(dyp, dxp, cl, n, C, HW, c0, c1, g, g + C, stream, next, xp, dyp);
          });
    }
    std::tie(dw1, db1, dw2, db2) = se_weight_grads(DU, Z, DH, S, w1, b1, w2, b2, output_mask);
  });
  return {dx, dw1, db1, dw2, db2};
}

}  // namespace
}  // namespace cpu
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CPU, m) {
  m.impl("squeeze_excite", &zoo::cpu::se_forward_cpu);
  m.impl("squeeze_excite_backward", &zoo::cpu::se_backward_cpu);
}
