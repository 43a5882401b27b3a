// Greedy-NMS machinery shared by the CUDA kernels (nms, batched_nms, yolo_postprocess).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace zoo {
namespace cuda {

// Independent NMS problems laid out one after another in arrays that are already in
// the order NMS visits them (descending score). Segment s covers sorted positions
// [begin_s, begin_s + size_s) with begin_s = ends[s - 1] (0 for s = 0) and
// size_s = min(ends[s] - begin_s, cap). With ends == nullptr there is one segment,
// [0, min(n, cap)). `ends` is device memory, so segment sizes never need a host copy.
struct NmsSegments {
  const int64_t* ends = nullptr;
  int64_t n = 0;
  int64_t cap = INT64_MAX;
};

// Raises ValueError (naming `name`) unless the suppression mask of one NMS problem of n
// boxes fits: n * ceil(n / 64) 64-bit words, at most 65535 words per row (the mask kernel's
// grid), in the memory the device has available (free, plus what torch's caching allocator
// holds reserved but unallocated). Call it before sorting or allocating anything.
void check_mask_fits(int64_t n, const char* name, c10::Device device);

// Greedy NMS of every segment, asynchronous on the current stream.
//   boxes:  [M, 4] xyxy, contiguous, in visiting order: fp32, or fp64 (computed in fp64).
//   cats:   undefined, or int64 [M] categories: boxes of different categories never
//           suppress each other (per-category NMS over the same order).
//   num_segments, max_size: number of segments and the largest size_s (host values,
//           they size the launch and the scratch buffers).
//   iou_threshold: box j is suppressed by an earlier kept box i when
//           IoU(i, j) > iou_threshold (compared as in double), with
//           IoU = inter / (area_i + area_j - inter) in the boxes' dtype.
//   limit:  a segment stops after this many kept boxes.
//   out_pos:   int64 [M]; for each segment, the sorted positions of its kept boxes are
//              written in visiting order to out_pos[begin_s], out_pos[begin_s + 1], ...
//   out_count: int64 [num_segments]; the number of kept boxes of each segment.
// No host synchronisation happens here.
void nms_segments(const at::Tensor& boxes, const at::Tensor& cats, const NmsSegments& segments,
                  int64_t num_segments, int64_t max_size, double iou_threshold, int64_t limit,
                  at::Tensor& out_pos, at::Tensor& out_count);

}  // namespace cuda
}  // namespace zoo
