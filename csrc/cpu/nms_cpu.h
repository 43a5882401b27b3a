// Greedy NMS core shared by the CPU kernels (nms, batched_nms, yolo_postprocess).
#pragma once

#include <cstdint>
#include <vector>

#include "../common.h"

namespace zoo {
namespace cpu {

// Boxes in structure-of-arrays form, already in the order NMS visits them
// (descending score, ties by lower index). `pos[i]` is box i's position in that
// order; compaction moves entries but keeps `pos`, so results are reported by it.
struct SortedBoxes {
  std::vector<float> x1, y1, x2, y2, area;
  std::vector<int32_t> pos;

  void reserve(size_t n);
  void push(float bx1, float by1, float bx2, float by2);
  int64_t size() const { return static_cast<int64_t>(pos.size()); }
};

// Greedy NMS over `boxes` (consumed: compacted in place). Sets keep[pos] = 1 for
// each kept box, leaves the others untouched. With `parallel`, the suppression of
// later boxes by each block's survivors is split across threads.
void greedy_nms(SortedBoxes& boxes, float threshold, uint8_t* keep, bool parallel);

}  // namespace cpu
}  // namespace zoo
