// Schemas of every zoo op: TORCH_LIBRARY(zoo, m), nothing else.
// Kernels register themselves per device in csrc/cpu/*.cpp and csrc/cuda/*.cu;
// fake (meta) kernels and input validation live in zoo/ops (Python).
//
// Semantics (the pure-torch versions in zoo/ops/reference.py are the definition):
//
// nms(boxes[N,4] xyxy, scores[N], iou_threshold) -> int64[K]
//   Greedy NMS over a stable descending sort of scores (ties: lower index first);
//   box j is suppressed by a kept box i when IoU(i, j) > iou_threshold, with IoU
//   computed in fp32 as inter / (area_i + area_j - inter) (0/0 -> NaN, not > thr).
//   Returns the kept indices in that order (== torchvision.ops.nms).
//
// batched_nms(boxes[N,4], scores[N], idxs[N] int64, iou_threshold) -> int64[K]
//   nms within each idxs value separately; all kept indices sorted by score
//   descending, ties by lower index.
//
// yolo_decode(pred[B, A*(5+C), H, W], anchors[A,2] fp32 px, stride, scale_xy=1.0,
//             cls_act="sigmoid") -> [B, A*H*W, 5+C]
//   Row a*H*W + y*W + x of image b: cx = (sigmoid(tx) * s - o + x) * stride,
//   cy = (sigmoid(ty) * s - o + y) * stride, w = exp(min(tw, 10)) * anchor_w,
//   h = exp(min(th, 10)) * anchor_h, then sigmoid(objectness), then the class
//   probabilities: sigmoid of each class logit (cls_act "sigmoid", YOLOv3 / v4) or the
//   softmax over the cell's C class logits (cls_act "softmax", YOLOv2's region layer:
//   exp(l_c - max) / sum_c exp(l_c - max), NaN for the whole row where torch.softmax gives
//   it: a NaN or +inf logit, or all -inf). s is darknet's scale_x_y rounded to fp32 and
//   o = 0.5 * (s - 1) computed in double from that fp32 s, then rounded to fp32 (finite,
//   > 0; s = 1 is YOLOv3's (sigmoid(t) + x) * stride bit for bit). Computed in fp32,
//   output dtype = pred's. The cap of 10 on the size logits (kWhLogitMax in
//   csrc/yolo_decode.h, WH_LOGIT_MAX in zoo/ops/boxes.py) is part of the contract: a
//   diverging logit gives a finite box (exp(10) * anchor), a NaN stays NaN.
//
// yolo_postprocess(preds[S], anchors[S], strides[S], conf_threshold, iou_threshold,
//                  max_det, max_nms, multi_label, scale_xy[S]?=None, cls_act="sigmoid")
//   -> (boxes[K,4] fp32 xyxy, scores[K] fp32, labels[K] int64, image_index[K] int64)
//   Per image, the same result as: decode every scale (scale s with scale_xy[s], all 1.0
//   when None, and cls_act), concatenate rows in scale order, score_c = obj * p_c;
//   multi_label=false: score = max_c score_c with the first arg-max as label, candidate
//   iff score > conf_threshold; multi_label=true: one candidate per (row, c) with
//   score_c > conf_threshold, in (row, c) order. scale_xy's length (when given) is the
//   number of scales, each value finite and > 0.
//   Candidates are stably sorted by score descending, capped at max_nms, reduced by
//   batched_nms on their labels, and capped at max_det. Output rows are grouped by
//   image (ascending), each image's rows in descending score order.
//
// squeeze_excite(x[N,C,H,W], w1[Cr,C], b1[Cr], w2[C,Cr], b2[C], gate, act="relu") -> y[N,C,H,W]
//   s = mean over H,W of x; h = w1 s + b1; z = act(h); u = w2 z + b2; g = gate(u);
//   y = x * g (per sample and channel). gate: "sigmoid" or "hard_sigmoid"
//   (relu6(u + 3) / 6). act: "relu" (max(h, 0)) or "silu" (h * sigmoid(h), EfficientNet's);
//   act is the last argument so that callers written before it still mean ReLU.
//   fp32/fp16/bf16 accumulate in fp32, fp64 in fp64; x may be
//   NCHW-contiguous or channels_last and y has x's layout and dtype. Weights may be in
//   any floating dtype; they are used in the accumulation type.
// squeeze_excite_backward(grad_y, x, w1, b1, w2, b2, gate, output_mask, act="relu")
//     -> (dx, dw1, db1, dw2, db2)
//   The gradients of squeeze_excite; dx in x's layout, each weight grad in its dtype.
//   hard_sigmoid's derivative is 1/6 on the open interval (-3, 3) and 0 elsewhere (torch's).
//   dL/dh = (w2^T dL/du) * act'(h): relu'(h) = [h > 0] (0 at h = 0, torch's), silu'(h) =
//   sigma(h) * (1 + h * (1 - sigma(h))) with sigma the logistic sigmoid.
//   output_mask[i] false: output i is not computed and comes back undefined (None): no dx
//   pass over the tensor without mask[0], no weight-gradient reductions without mask[1..4].
//   The autograd kernel (csrc/autograd.cpp) asks for what needs_input_grad says.
//
// adder2d(x[N,Cin,H,W], weight[Cout,Cin,kh,kw], stride[2], padding[2], eta) -> y[N,Cout,Ho,Wo]
//   AdderNet (Chen et al., CVPR 2020): y[n, co, p] = -sum_k |X_p[n, k] - W[co, k]| over each
//   patch X_p of a convolution's geometry (zero padding), k over Cin*kh*kw. fp32 / fp64, x and
//   weight of one dtype. eta is used only by the autograd formula (registered once, from
//   Python): it rescales the weight gradient to eta * sqrt(K) * dW / ||dW||_2 (eta = 0: off).
// adder2d_backward(grad_y, x, weight, stride, padding, output_mask) -> (dx, dw)
//   The paper's gradients, not rescaled: dw[co, k] = sum_{n,p} (X_p[n, k] - W[co, k]) g[n, co, p]
//   (full precision) and dX_p[n, k] = sum_co clamp(W[co, k] - X_p[n, k], -1, 1) g[n, co, p],
//   folded onto x like col2im. output_mask[i] false: output i is not computed (None).
#include <torch/library.h>

TORCH_LIBRARY(zoo, m) {
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
  m.def("yolo_decode(Tensor pred, Tensor anchors, float stride, float scale_xy=1.0, str cls_act='sigmoid') -> Tensor");
  m.def(
      "yolo_postprocess(Tensor[] preds, Tensor[] anchors, float[] strides, float conf_threshold, "
      "float iou_threshold, int max_det, int max_nms, bool multi_label, float[]? scale_xy=None, "
      "str cls_act='sigmoid') -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("squeeze_excite(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, str gate, str act='relu') -> Tensor");
  m.def(
      "squeeze_excite_backward(Tensor grad_y, Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, str gate, "
      "bool[5] output_mask, str act='relu') -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("adder2d(Tensor x, Tensor weight, int[2] stride, int[2] padding, float eta) -> Tensor");
  m.def(
      "adder2d_backward(Tensor grad_y, Tensor x, Tensor weight, int[2] stride, int[2] padding, "
      "bool[2] output_mask) -> (Tensor, Tensor)");
}
