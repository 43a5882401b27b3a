// The YOLO box decode (darknet's yolo / region layers), written once for the CPU and CUDA
// kernels. zoo/ops/boxes.py (decode_boxes, xy_scale_terms) is the same formula in torch:
//
//   cx = (sigmoid(tx) * s - o + x) * stride        w = exp(min(tw, kWhLogitMax)) * anchor_w
//   cy = (sigmoid(ty) * s - o + y) * stride        h = exp(min(th, kWhLogitMax)) * anchor_h
//
// s is darknet's scale_x_y (AlexeyAB/darknet cfg/yolov4.cfg: 1.2, 1.1, 1.05 by level) and
// o = 0.5 * (s - 1) its offset, which centres the stretched sigmoid on the cell. Both enter
// as fp32 values, made once per call by xy_scale() below: s is the argument rounded to fp32,
// and o is computed in double from that fp32 s and then rounded to fp32 (darknet computes
// -0.5 * (scale_x_y - 1) the same way: its float scale_x_y, promoted by the double 0.5). For
// s in [1, 2) both roundings are exact, so sigmoid = 0.5 decodes to the cell's centre exactly.
// s = 1 gives s = 1.f, o = 0.f and sigmoid(t) * 1 - 0 == sigmoid(t): bit for bit YOLOv3's
// (sigmoid(t) + x) * stride.
//
// All in fp32, in this order of operations. The files that include this header build with
// -ffp-contract=off (C++) and --fmad=false (nvcc), so nothing here is fused into an FMA
// and each result rounds like the torch expression (where exp and the division round alike;
// torch's `a - o` is an FMA of o times -1, exact, so it rounds once too).
//
// Class probabilities are sigmoid(logit) (YOLOv3 / v4) or the softmax over the C class
// logits of a cell (YOLOv2's region layer), computed stably as
//
//   m = max_c l_c,   sum = sum_c exp(l_c - m)  (c ascending),   p_c = exp(l_c - m) / sum
//
// with the NaN semantics of torch.softmax: a NaN logit, a +inf logit (inf - inf) or a row of
// -inf makes every probability of the row NaN. exp(l - m) <= exp(0) = 1 <= sum, so p_c <= 1:
// a score obj * p_c never exceeds obj (the post-processing's objectness pre-filter holds).
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace zoo {
namespace yolo {

// Cap on the width/height logits before exp (zoo.ops.boxes.WH_LOGIT_MAX): a diverging
// prediction gives a huge but finite box (exp(10) is about 22,026 anchors), not inf.
constexpr float kWhLogitMax = 10.f;

// 1 / (1 + exp(-x)): sigmoid(+inf) = 1, sigmoid(-inf) = 0, NaN stays NaN.
ZOO_HD float sigmoid(float x) { return 1.f / (1.f + ::expf(-x)); }

// min(t, kWhLogitMax) as torch.clamp(max=...) computes it: NaN stays NaN (fminf would not).
ZOO_HD float cap_wh_logit(float t) { return t > kWhLogitMax ? kWhLogitMax : t; }

// scale_x_y as the kernels use it: s rounded to fp32 and o = 0.5 * (s - 1) computed in
// double from that fp32 s, then rounded to fp32 (see the top of this file). Host code.
struct XyScale {
  float scale;
  float offset;
};
inline XyScale xy_scale(double scale_xy) {
  const float s = static_cast<float>(scale_xy);
  return {s, static_cast<float>(0.5 * (static_cast<double>(s) - 1.0))};
}

// Centre coordinate in pixels from its logit and the cell index along that axis.
ZOO_HD float decode_xy(float t, float cell, float stride, XyScale xy) {
  return (sigmoid(t) * xy.scale - xy.offset + cell) * stride;
}

// Width or height in pixels from its logit and the anchor's size along that axis.
ZOO_HD float decode_wh(float t, float anchor) { return ::expf(cap_wh_logit(t)) * anchor; }

// (cx, cy, w, h) -> (x1, y1, x2, y2), as zoo.ops.boxes.cxcywh_to_xyxy: half = size / 2.
ZOO_HD void cxcywh_to_xyxy(float cx, float cy, float w, float h, float* xyxy) {
  const float hw = w * 0.5f, hh = h * 0.5f;
  xyxy[0] = cx - hw;
  xyxy[1] = cy - hh;
  xyxy[2] = cx + hw;
  xyxy[3] = cy + hh;
}

// ---- class softmax, in steps (a kernel that walks channel planes calls them per plane;
// softmax_stats walks one cell's logits). Every path runs the same steps in the same order,
// so the CPU decode, the CPU post-processing and each CUDA kernel get the same bits.

// The running maximum; a NaN logit sticks (as torch's max reduction propagates it).
ZOO_HD float softmax_max(float m, float logit) { return (logit > m || logit != logit) ? logit : m; }

// exp(l - m): one term of the sum, and the numerator of p.
ZOO_HD float softmax_term(float logit, float m) { return ::expf(logit - m); }

// p = exp(l - m) / sum.
ZOO_HD float softmax_prob(float logit, float m, float sum) { return softmax_term(logit, m) / sum; }

// m and sum of the n logits at x[0], x[step], ..., x[(n - 1) * step] (m starts at -inf, the
// sum at 0, classes in ascending order).
template <typename T>
ZOO_HD void softmax_stats(const T* x, int64_t step, int64_t n, float& m, float& sum) {
  m = -INFINITY;
  for (int64_t c = 0; c < n; ++c) m = softmax_max(m, static_cast<float>(x[c * step]));
  sum = 0.f;
  for (int64_t c = 0; c < n; ++c) sum += softmax_term(static_cast<float>(x[c * step]), m);
}

}  // namespace yolo
}  // namespace zoo
