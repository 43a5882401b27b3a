// CPU kernels: nms and batched_nms.
//
// Greedy NMS visits boxes by descending score; each kept box suppresses every later box
// with IoU > threshold. The kernel:
//   * orders the scores with a stable LSD radix sort on their bits (a few passes over the
//     array instead of a comparison sort: the sort was most of the time when few boxes
//     survive);
//   * copies the boxes into structure-of-arrays form in that order, checking their values
//     on the way (NaN / inf / inverted boxes raise ValueError; no separate pass);
//   * runs the greedy pass in blocks of 256: a block first settles its own members, then
//     its survivors sweep the later boxes tile by tile (cache-friendly), with a branch-free
//     IoU loop the compiler vectorises (an AVX2 clone is picked at run time), and after
//     each block the suppressed boxes are compacted away so later sweeps skip them.
// fp64 boxes are computed in fp64 (as torchvision does), everything else in fp32.
// batched_nms sorts the visiting order by category (radix sort again, stable) and runs one
// greedy pass per category over contiguous ranges; the kept boxes are reported in the
// global visiting order. Everything runs on the calling thread (see nms_cpu.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "../checks.h"
#include "nms_cpu.h"
#include "vec.h"

namespace zoo {
namespace cpu {

namespace {

constexpr int64_t kBlock = 256;  // boxes settled together before sweeping the rest
constexpr int64_t kTile = 2048;  // later boxes swept per pass (fits L1/L2)

// Liveness flags as wide as T, so the select in the IoU loop vectorises without conversions.
template <typename T>
using Flag = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;

// alive[j] = 0 for every j in [lo, hi) whose IoU with box (bx1, by1, bx2, by2) of area
// `barea` is > thr. The operations, in this order, are those of the reference (and of
// torchvision's CPU kernel); no FMA contraction (-ffp-contract=off).
template <typename T>
ZOO_VECTOR_CLONES void suppress_range(const T* __restrict x1, const T* __restrict y1, const T* __restrict x2,
                                      const T* __restrict y2, const T* __restrict area, Flag<T>* __restrict alive,
                                      int64_t lo, int64_t hi, T bx1, T by1, T bx2, T by2, T barea, T thr) {
  for (int64_t j = lo; j < hi; ++j) {
    const T xx1 = bx1 < x1[j] ? x1[j] : bx1;
    const T yy1 = by1 < y1[j] ? y1[j] : by1;
    const T xx2 = x2[j] < bx2 ? x2[j] : bx2;
    const T yy2 = y2[j] < by2 ? y2[j] : by2;
    const T dw = xx2 - xx1;
    const T dh = yy2 - yy1;
    const T w = dw > T(0) ? dw : T(0);
    const T h = dh > T(0) ? dh : T(0);
    const T inter = w * h;
    const T iou = inter / (barea + area[j] - inter);
    alive[j] = iou > thr ? 0 : alive[j];
  }
}

}  // namespace

template <typename T>
void greedy_nms(SortedBoxes<T>& b, int64_t begin, int64_t end, T thr, uint8_t* keep) {
  int64_t n = end - begin;
  if (n <= 0) return;
  std::vector<Flag<T>> alive(n, 1);
  std::vector<int64_t> kept;
  kept.reserve(kBlock);
  T *x1 = b.x1.data() + begin, *y1 = b.y1.data() + begin, *x2 = b.x2.data() + begin, *y2 = b.y2.data() + begin;
  T* ar = b.area.data() + begin;
  int32_t* pos = b.pos.data() + begin;
  Flag<T>* al = alive.data();

  for (int64_t start = 0; start < n;) {
    const int64_t stop = std::min(n, start + kBlock);
    // 1. settle the block in order
    kept.clear();
    for (int64_t i = start; i < stop; ++i) {
      if (!al[i]) continue;
      kept.push_back(i);
      keep[pos[i]] = 1;
      suppress_range<T>(x1, y1, x2, y2, ar, al, i + 1, stop, x1[i], y1[i], x2[i], y2[i], ar[i], thr);
    }
    if (stop == n || kept.empty()) {
      start = stop;
      continue;
    }
    // 2. the block's survivors sweep the rest, one tile at a time
    for (int64_t t = stop; t < n; t += kTile) {
      const int64_t te = std::min(n, t + kTile);
      for (int64_t k : kept) {
        suppress_range<T>(x1, y1, x2, y2, ar, al, t, te, x1[k], y1[k], x2[k], y2[k], ar[k], thr);
      }
    }
    // 3. drop the suppressed from the rest
    int64_t w = stop;
    for (int64_t j = stop; j < n; ++j) {
      if (!al[j]) continue;
      if (w != j) {
        x1[w] = x1[j], y1[w] = y1[j], x2[w] = x2[j], y2[w] = y2[j], ar[w] = ar[j], pos[w] = pos[j];
        al[w] = 1;
      }
      ++w;
    }
    n = w;
    start = stop;
  }
}

template void greedy_nms<float>(SortedBoxes<float>&, int64_t, int64_t, float, uint8_t*);
template void greedy_nms<double>(SortedBoxes<double>&, int64_t, int64_t, double, uint8_t*);

template <typename K>
void radix_sort_pairs(std::vector<K>& keys, std::vector<int32_t>& values) {
  constexpr int kPasses = sizeof(K);
  const size_t n = keys.size();
  if (n < 2) return;
  std::array<std::array<uint32_t, 256>, kPasses> hist{};
  for (const K k : keys) {
    for (int p = 0; p < kPasses; ++p) ++hist[p][(k >> (8 * p)) & 0xff];
  }
  std::vector<K> keys2(n);
  std::vector<int32_t> values2(n);
  for (int p = 0; p < kPasses; ++p) {
    std::array<uint32_t, 256>& h = hist[p];
    if (h[(keys[0] >> (8 * p)) & 0xff] == n) continue;  // one digit for all: nothing moves
    uint32_t sum = 0;
    for (uint32_t& c : h) {
      const uint32_t count = c;
      c = sum;
      sum += count;
    }
    for (size_t i = 0; i < n; ++i) {
      const K k = keys[i];
      const uint32_t at = h[(k >> (8 * p)) & 0xff]++;
      keys2[at] = k;
      values2[at] = values[i];
    }
    keys.swap(keys2);
    values.swap(values2);
  }
}

template void radix_sort_pairs<uint32_t>(std::vector<uint32_t>&, std::vector<int32_t>&);
template void radix_sort_pairs<uint64_t>(std::vector<uint64_t>&, std::vector<int32_t>&);

namespace {

// Original indices in visiting order: stable descending order of the scores (ties: lower
// index first), compared in fp64 for fp64 scores and in fp32 otherwise (exact for fp16 /
// bf16). Notes a NaN or infinite score in `flags`.
std::vector<int32_t> visiting_order(const at::Tensor& scores_in, checks::NmsValueFlags& flags) {
  const at::Tensor scores = scores_in.contiguous();
  const int64_t n = scores.numel();
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  bool finite = true;
  if (scores.scalar_type() == at::kDouble) {
    const double* s = scores.data_ptr<double>();
    std::vector<uint64_t> keys(n);
    for (int64_t i = 0; i < n; ++i) {
      finite &= std::isfinite(s[i]);
      keys[i] = descending_key(s[i]);
    }
    radix_sort_pairs(keys, order);
  } else {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "zoo_nms_order", [&] {
      const scalar_t* s = scores.data_ptr<scalar_t>();
      std::vector<uint32_t> keys(n);
      for (int64_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(s[i]);
        finite &= std::isfinite(v);
        keys[i] = descending_key(v);
      }
      radix_sort_pairs(keys, order);
    });
  }
  flags.bad_scores = !finite;
  return order;
}

// The original indices of the kept visiting positions, in visiting order.
at::Tensor kept_indices(const std::vector<uint8_t>& keep, const std::vector<int32_t>& order,
                        const at::TensorOptions& options) {
  int64_t count = 0;
  for (uint8_t k : keep) count += k;
  at::Tensor out = at::empty({count}, options.dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  for (size_t i = 0, w = 0; i < keep.size(); ++i) {
    if (keep[i]) o[w++] = order[i];
  }
  return out;
}

// Appends box `index` of the [N, 4] rows `bx` to `sb` (as T, numbered `pos`), noting
// non-finite and inverted boxes in `flags`.
template <typename T, typename In>
inline void push_checked(SortedBoxes<T>& sb, const In* bx, int64_t index, int32_t pos, checks::NmsValueFlags& flags) {
  const In* r = bx + 4 * index;
  const T x1 = static_cast<T>(r[0]), y1 = static_cast<T>(r[1]), x2 = static_cast<T>(r[2]), y2 = static_cast<T>(r[3]);
  flags.bad_boxes |= !(std::isfinite(x1) && std::isfinite(y1) && std::isfinite(x2) && std::isfinite(y2));
  flags.inverted |= x2 < x1 || y2 < y1;
  sb.push(x1, y1, x2, y2, pos);
}

// Runs fn.template operator()<T, In>() with T the compute type of the boxes (double for
// fp64, else float) and In their storage type.
template <typename Fn>
void dispatch_boxes(const at::Tensor& boxes, Fn&& fn) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, boxes.scalar_type(), "zoo_nms", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    fn.template operator()<T, scalar_t>();
  });
}

template <typename T>
T compute_threshold(double iou_threshold) {
  if constexpr (std::is_same_v<T, float>) {
    return float_threshold(iou_threshold);
  } else {
    return iou_threshold;
  }
}

at::Tensor nms_cpu(const at::Tensor& boxes_in, const at::Tensor& scores, double iou_threshold) {
  const int64_t n = checks::nms_boxes_scores(boxes_in, scores, /*allow_flat_empty=*/false);
  checks::unit_interval(iou_threshold, "iou_threshold");
  if (n == 0) return at::empty({0}, boxes_in.options().dtype(at::kLong));
  checks::NmsValueFlags flags;
  const std::vector<int32_t> order = visiting_order(scores, flags);
  const at::Tensor boxes = boxes_in.contiguous();
  std::vector<uint8_t> keep(n, 0);
  dispatch_boxes(boxes, [&]<typename T, typename In>() {
    const In* bx = boxes.data_ptr<In>();
    SortedBoxes<T> sb;
    sb.reserve(n);
    for (int64_t i = 0; i < n; ++i) push_checked<T, In>(sb, bx, order[i], static_cast<int32_t>(i), flags);
    flags.raise_if_any();
    greedy_nms<T>(sb, 0, n, compute_threshold<T>(iou_threshold), keep.data());
  });
  return kept_indices(keep, order, boxes_in.options());
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes_in, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  const int64_t n = checks::nms_boxes_scores(boxes_in, scores, /*allow_flat_empty=*/true);
  checks::nms_idxs(boxes_in, idxs, n);
  checks::unit_interval(iou_threshold, "iou_threshold");
  if (n == 0) return at::empty({0}, boxes_in.options().dtype(at::kLong));
  checks::NmsValueFlags flags;
  const std::vector<int32_t> order = visiting_order(scores, flags);
  const at::Tensor boxes = boxes_in.contiguous();
  const at::Tensor cats = idxs.to(at::kLong).contiguous();
  const int64_t* cp = cats.data_ptr<int64_t>();

  // Visiting positions grouped by category (a stable sort keeps each group in visiting order).
  std::vector<uint64_t> key(n);
  std::vector<int32_t> by_cat(n);
  for (int64_t i = 0; i < n; ++i) {
    key[i] = static_cast<uint64_t>(cp[order[i]]) ^ (uint64_t(1) << 63);  // signed -> unsigned order
    by_cat[i] = static_cast<int32_t>(i);
  }
  radix_sort_pairs(key, by_cat);

  std::vector<uint8_t> keep(n, 0);  // by visiting position
  dispatch_boxes(boxes, [&]<typename T, typename In>() {
    const In* bx = boxes.data_ptr<In>();
    SortedBoxes<T> sb;
    sb.reserve(n);
    for (int64_t j = 0; j < n; ++j) push_checked<T, In>(sb, bx, order[by_cat[j]], by_cat[j], flags);
    flags.raise_if_any();
    const T thr = compute_threshold<T>(iou_threshold);
    for (int64_t begin = 0, end = 0; begin < n; begin = end) {
      while (end < n && key[end] == key[begin]) ++end;
      greedy_nms<T>(sb, begin, end, thr, keep.data());
    }
  });
  return kept_indices(keep, order, boxes_in.options());
}

}  // namespace
}  // namespace cpu
}  // namespace zoo

TORCH_LIBRARY_IMPL(zoo, CPU, m) {
  m.impl("nms", &zoo::cpu::nms_cpu);
  m.impl("batched_nms", &zoo::cpu::batched_nms_cpu);
}
