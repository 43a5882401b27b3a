// Small numeric pieces shared by the CPU (.cpp) and CUDA (.cu) kernels: a host/device
// function marker, integer helpers, CUDA launch limits and the fp32 view of an IoU threshold.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

// Functions usable from both host and device code: __host__ __device__ under nvcc, plain
// inline functions for the C++ compiler.
#if defined(__CUDACC__)
#define ZOO_HD __host__ __device__ __forceinline__
#else
#define ZOO_HD inline
#endif

namespace zoo {

constexpr int64_t kMaxGridY = 65535;  // CUDA's limit on gridDim.y and gridDim.z

ZOO_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The largest float t with (double)t <= threshold, so that for any float IoU v, `v > t` is
// exactly `v > threshold` evaluated in double (as torchvision's CPU kernel compares an fp32
// IoU with its double threshold). Only fp32 IoUs need it: fp64 IoUs are compared directly.
inline float float_threshold(double threshold) {
  float t = static_cast<float>(threshold);
  if (static_cast<double>(t) > threshold) t = std::nextafter(t, -std::numeric_limits<float>::infinity());
  return t;
}

}  // namespace zoo
