// CPU kernels: nms and batched_nms.
//
// Greedy NMS visits boxes by descending score; each kept box suppresses every
// later box with IoU > threshold. The work is (kept boxes) x (boxes still alive),
// and the kernel makes that part fast three ways:
//   * structure-of-arrays boxes and a branch-free IoU loop the compiler
//     vectorises (an AVX2 clone is picked at run time where the CPU has it);
//   * blocks of 256: a block first settles its own members, then all of its
//     survivors sweep the rest together, tile by tile (cache-friendly), with the
//     rest split across threads (at::parallel_for);
//   * after each block, suppressed boxes are compacted away so later sweeps skip them.
// batched_nms runs one independent greedy NMS per category, categories spread
// over threads, and merges the survivors in the global score order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "nms_cpu.h"
#include "vec.h"

namespace zoo {
namespace cpu {

namespace {

constexpr int64_t kBlock = 256;      // boxes settled together before sweeping the rest
constexpr int64_t kTile = 2048;      // later boxes swept per pass (fits L1/L2)
constexpr int64_t kParallelWork = 1 << 16;  // IoUs below which threads are not worth it

// alive[j] = 0 for every j in [lo, hi) whose IoU with box (bx1, by1, bx2, by2) of
// area `barea` is > thr. Same float operations, in the same order, as the
// reference (and torchvision's CPU kernel): no FMA contraction (-ffp-contract=off).
ZOO_VECTOR_CLONES
void suppress_range(const float* __restrict x1, const float* __restrict y1, const float* __restrict x2,
                    const float* __restrict y2, const float* __restrict area, int32_t* __restrict alive,
                    int64_t lo, int64_t hi, float bx1, float by1, float bx2, float by2, float barea, float thr) {
  for (int64_t j = lo; j < hi; ++j) {
    const float xx1 = bx1 < x1[j] ? x1[j] : bx1;
    const float yy1 = by1 < y1[j] ? y1[j] : by1;
    const float xx2 = x2[j] < bx2 ? x2[j] : bx2;
    const float yy2 = y2[j] < by2 ? y2[j] : by2;
    const float dw = xx2 - xx1;
    const float dh = yy2 - yy1;
    const float w = dw > 0.f ? dw : 0.f;
    const float h = dh > 0.f ? dh : 0.f;
    const float inter = w * h;
    const float iou = inter / (barea + area[j] - inter);
    alive[j] = iou > thr ? 0 : alive[j];
  }
}

}  // namespace

void SortedBoxes::reserve(size_t n) {
  x1.reserve(n), y1.reserve(n), x2.reserve(n), y2.reserve(n), area.reserve(n), pos.reserve(n);
}

void SortedBoxes::push(float bx1, float by1, float bx2, float by2) {
  pos.push_back(static_cast<int32_t>(pos.size()));
  x1.push_back(bx1), y1.push_back(by1), x2.push_back(bx2), y2.push_back(by2);
  area.push_back((bx2 - bx1) * (by2 - by1));
}

void greedy_nms(SortedBoxes& b, float thr, uint8_t* keep, bool parallel) {
  int64_t n = b.size();
  std::vector<int32_t> alive(n, 1);
  std::vector<int64_t> kept;
  kept.reserve(kBlock);
  float *x1 = b.x1.data(), *y1 = b.y1.data(), *x2 = b.x2.data(), *y2 = b.y2.data(), *ar = b.area.data();
  int32_t* pos = b.pos.data();
  int32_t* al = alive.data();

  for (int64_t start = 0; start < n;) {
    const int64_t end = std::min(n, start + kBlock);
    // 1. settle the block in order
    kept.clear();
    for (int64_t i = start; i < end; ++i) {
      if (!al[i]) continue;
      kept.push_back(i);
      keep[pos[i]] = 1;
      suppress_range(x1, y1, x2, y2, ar, al, i + 1, end, x1[i], y1[i], x2[i], y2[i], ar[i], thr);
    }
    if (end == n || kept.empty()) {
      start = end;
      continue;
    }
    // 2. the block's survivors sweep the rest, one tile at a time
    auto sweep = [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; t += kTile) {
        const int64_t te = std::min(hi, t + kTile);
        for (int64_t k : kept) {
          suppress_range(x1, y1, x2, y2, ar, al, t, te, x1[k], y1[k], x2[k], y2[k], ar[k], thr);
        }
      }
    };
    const int64_t rest = n - end;
    if (parallel && rest * static_cast<int64_t>(kept.size()) >= kParallelWork) {
      at::parallel_for(end, n, kTile, sweep);
    } else {
      sweep(end, n);
    }
    // 3. drop the suppressed from the rest
    int64_t w = end;
    for (int64_t j = end; j < n; ++j) {
      if (!al[j]) continue;
      if (w != j) {
        x1[w] = x1[j], y1[w] = y1[j], x2[w] = x2[j], y2[w] = y2[j], ar[w] = ar[j], pos[w] = pos[j];
        al[w] = 1;
      }
      ++w;
    }
    n = w;
    start = end;
  }
}

namespace {

// Stable descending order of the scores (ties: lower index first).
at::Tensor score_order(const at::Tensor& scores) {
  return std::get<1>(scores.to(at::kFloat).sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
}

// The original indices of the kept sorted positions, in sorted (descending score) order.
at::Tensor kept_indices(const std::vector<uint8_t>& keep, const int64_t* ord, const at::TensorOptions& options) {
  int64_t count = 0;
  for (uint8_t k : keep) count += k;
  at::Tensor out = at::empty({count}, options.dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  for (size_t i = 0, w = 0; i < keep.size(); ++i) {
    if (keep[i]) o[w++] = ord[i];
  }
  return out;
}

// Boxes [N,4] (fp32/fp16/bf16) as fp32 rows, contiguous.
at::Tensor boxes_f32(const at::Tensor& boxes) { return boxes.to(at::kFloat).contiguous(); }

void check_inputs(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "zoo::nms: boxes must be [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "zoo::nms: scores must be [N]");
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()) && at::isFloatingType(scores.scalar_type()),
              "zoo::nms: boxes and scores must be floating point");
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_inputs(boxes, scores);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::Tensor order = score_order(scores);
  const at::Tensor bf = boxes_f32(boxes);
  const int64_t* ord = order.data_ptr<int64_t>();
  const float* bx = bf.data_ptr<float>();

  SortedBoxes sorted;
  sorted.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const float* r = bx + 4 * ord[i];
    sorted.push(r[0], r[1], r[2], r[3]);
  }
  std::vector<uint8_t> keep(n, 0);
  greedy_nms(sorted, float_threshold(iou_threshold), keep.data(), /*parallel=*/true);

  return kept_indices(keep, ord, boxes.options());
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  check_inputs(boxes, scores);
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0), "zoo::batched_nms: idxs must be [N]");
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::Tensor order = score_order(scores);
  const at::Tensor bf = boxes_f32(boxes);
  const at::Tensor cat = idxs.to(at::kLong).contiguous();
  const int64_t* ord = order.data_ptr<int64_t>();
  const float* bx = bf.data_ptr<float>();
  const int64_t* cp = cat.data_ptr<int64_t>();

  // Category of each sorted position, renumbered 0..G-1 in order of first appearance.
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = cp[ord[i]];
  std::vector<int64_t> uniq(labels);
  std::sort(uniq.begin(), uniq.end());
  uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
  const int64_t groups = static_cast<int64_t>(uniq.size());
  std::vector<int32_t> group_of(n);
  std::vector<int64_t> group_size(groups, 0);
  for (int64_t i = 0; i < n; ++i) {
    group_of[i] = static_cast<int32_t>(std::lower_bound(uniq.begin(), uniq.end(), labels[i]) - uniq.begin());
    ++group_size[group_of[i]];
  }
  // members[g]: sorted positions of group g, in sorted (score) order
  std::vector<std::vector<int64_t>> members(groups);
  for (int64_t g = 0; g < groups; ++g) members[g].reserve(group_size[g]);
  for (int64_t i = 0; i < n; ++i) members[group_of[i]].push_back(i);
  // largest groups first, handed out one by one (dynamic scheduling balances the threads)
  std::vector<int64_t> by_size(groups);
  for (int64_t g = 0; g < groups; ++g) by_size[g] = g;
  std::stable_sort(by_size.begin(), by_size.end(),
                   [&](int64_t a, int64_t b) { return group_size[a] > group_size[b]; });

  std::vector<uint8_t> keep(n, 0);  // by sorted position
  std::atomic<int64_t> next{0};
  auto worker = [&](int64_t, int64_t) {
    std::vector<uint8_t> local;
    SortedBoxes sb;
    for (int64_t t = next++; t < groups; t = next++) {
      const std::vector<int64_t>& mem = members[by_size[t]];
      const int64_t m = static_cast<int64_t>(mem.size());
      sb = SortedBoxes();
      sb.reserve(m);
      for (int64_t i : mem) {
        const float* r = bx + 4 * ord[i];
        sb.push(r[0], r[1], r[2], r[3]);
      }
      local.assign(m, 0);
      greedy_nms(sb, float_threshold(iou_threshold), local.data(), /*parallel=*/groups == 1);
      for (int64_t i = 0; i < m; ++i) {
        if (local[i]) keep[mem[i]] = 1;  // distinct positions per group: no race
      }
    }
  };
  if (groups == 1) {
    worker(0, 1);
  } else {
    at::parallel_for(0, std::min<int64_t>(groups, at::get_num_threads()), 1, worker);
  }

  return kept_indices(keep, ord, boxes.options());
}

}  // namespace
}  // namespace cpu
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CPU, m) {
  m.impl("nms", &zoo::cpu::nms_cpu);
  m.impl("batched_nms", &zoo::cpu::batched_nms_cpu);
}
