// The YOLO box decode (darknet's yolo layer), written once for the CPU and CUDA kernels.
// zoo/ops/boxes.py (decode_boxes) is the same formula in torch:
//
//   cx = (sigmoid(tx) + x) * stride          w = exp(min(tw, kWhLogitMax)) * anchor_w
//   cy = (sigmoid(ty) + y) * stride          h = exp(min(th, kWhLogitMax)) * anchor_h
//
// All in fp32, in this order of operations. The files that include this header build with
// -ffp-contract=off (C++) and --fmad=false (nvcc), so nothing here is fused into an FMA
// and each result rounds like the torch expression (where exp and the division round alike).
#pragma once

#include <cmath>

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

// Centre coordinate in pixels from its logit and the cell index along that axis.
ZOO_HD float decode_xy(float t, float cell, float stride) { return (sigmoid(t) + cell) * stride; }

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

}  // namespace yolo
}  // namespace zoo
