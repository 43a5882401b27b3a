// Greedy NMS core shared by the CPU kernels (nms, batched_nms, yolo_postprocess).
//
// Everything here runs on the calling thread. One NMS problem is never split across
// threads: a fork costs an OpenMP barrier, and when another process keeps a core busy (a
// dataloader worker, another job) every barrier waits for the thread that process has
// descheduled, for up to a scheduler time slice (milliseconds), which is longer than most
// NMS problems take on one core. See docs/OPS.md ("Threads") for the measurements.
#pragma once

#include <cstdint>
#include <vector>

#include "../common.h"

namespace zoo {
namespace cpu {

// Boxes in structure-of-arrays form, already in the order NMS visits them (descending
// score, ties by lower index), in the compute type T (float, or double for fp64 input).
// pos[i] is the caller's number for box i (e.g. its position in the visiting order); the
// greedy pass compacts entries in place but keeps pos, so results are reported by it.
template <typename T>
struct SortedBoxes {
  std::vector<T> x1, y1, x2, y2, area;
  std::vector<int32_t> pos;

  void reserve(size_t n) {
    x1.reserve(n), y1.reserve(n), x2.reserve(n), y2.reserve(n), area.reserve(n), pos.reserve(n);
  }
  void clear() { x1.clear(), y1.clear(), x2.clear(), y2.clear(), area.clear(), pos.clear(); }
  // area = (x2 - x1) * (y2 - y1) in T, as the reference and torchvision compute it
  void push(T bx1, T by1, T bx2, T by2, int32_t p) {
    x1.push_back(bx1), y1.push_back(by1), x2.push_back(bx2), y2.push_back(by2);
    area.push_back((bx2 - bx1) * (by2 - by1));
    pos.push_back(p);
  }
  int64_t size() const { return static_cast<int64_t>(pos.size()); }
};

// Greedy NMS over entries [begin, end) of `boxes` (consumed: that range is compacted in
// place). Box j is suppressed by an earlier kept box i when IoU(i, j) > threshold, with
// IoU = inter / (area_i + area_j - inter) in T. For T = float pass float_threshold(t) (the
// comparison is then exactly the one in double), for T = double the threshold itself.
// Sets keep[pos[i]] = 1 for each kept box and leaves the others untouched.
template <typename T>
void greedy_nms(SortedBoxes<T>& boxes, int64_t begin, int64_t end, T threshold, uint8_t* keep);

extern template void greedy_nms<float>(SortedBoxes<float>&, int64_t, int64_t, float, uint8_t*);
extern template void greedy_nms<double>(SortedBoxes<double>&, int64_t, int64_t, double, uint8_t*);

// Stable ascending sort of `keys` by an LSD radix sort on bytes (passes in which every key
// has the same byte are skipped), applied to `values` alike. Equal keys keep their order.
template <typename K>
void radix_sort_pairs(std::vector<K>& keys, std::vector<int32_t>& values);

extern template void radix_sort_pairs<uint32_t>(std::vector<uint32_t>&, std::vector<int32_t>&);
extern template void radix_sort_pairs<uint64_t>(std::vector<uint64_t>&, std::vector<int32_t>&);

// Sort keys that order scores descending: ascending keys are descending scores, with -0.0
// equal to +0.0. (NaN has no place in the order; callers reject it first.)
inline uint32_t descending_key(float v) {
  uint32_t b;
  if (v == 0.f) v = 0.f;  // -0.0 -> +0.0
  __builtin_memcpy(&b, &v, sizeof b);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // ascending as unsigned
  return ~b;
}
inline uint64_t descending_key(double v) {
  uint64_t b;
  if (v == 0.0) v = 0.0;
  __builtin_memcpy(&b, &v, sizeof b);
  b = (b >> 63) ? ~b : (b | (uint64_t(1) << 63));
  return ~b;
}

}  // namespace cpu
}  // namespace zoo
