"""Pure-torch implementations of the zoo ops: the fallback and the test oracle.

They take already-validated input (see :mod:`zoo.ops`) and define the semantics
the C++/CUDA kernels must reproduce; csrc/ops.cpp states the same contract.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .boxes import cell_grid, cxcywh_to_xyxy, decode_boxes


def float_threshold(threshold: float) -> float:
    """The largest fp32 value <= ``threshold``: for any fp32 IoU ``v``, ``v > float_threshold(t)``
    is exactly ``v > t`` compared in double precision (as torchvision's CPU kernel does)."""
    f = torch.tensor(threshold, dtype=torch.float32)
    if f.item() > threshold:
        f = torch.nextafter(f, torch.tensor(float("-inf")))
    return f.item()


def compute_dtype(t: Tensor) -> torch.dtype:
    """What NMS computes in: fp64 for fp64 input (as torchvision), fp32 for everything else."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _iou_between(a: Tensor, b: Tensor) -> Tensor:
    """IoU ``[M, N]`` of xyxy boxes ``a [M, 4]`` and ``b [N, 4]`` (one dtype), in the kernels' order
    of operations: ``inter / (area_a + area_b - inter)`` (0/0 gives NaN, which suppresses nothing)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    h = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    inter = w * h
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def box_iou_matrix(boxes: Tensor) -> Tensor:
    """Pairwise IoU ``[N, N]`` of xyxy ``boxes``, computed as NMS computes it (fp64 for fp64, else fp32)."""
    b = boxes.to(compute_dtype(boxes))
    return _iou_between(b, b)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS. ``boxes [N, 4]`` xyxy, ``scores [N]`` -> kept indices ``int64 [K]`` by descending
    score (stable: equal scores keep the lower index first); suppress when IoU > ``iou_threshold``.
    fp64 boxes are compared in fp64, others in fp32 (as exactly as in double, via float_threshold);
    fp64 scores are ordered in fp64, others in fp32."""
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.to(compute_dtype(scores)), descending=True, stable=True).indices
    dtype = compute_dtype(boxes)
    b = boxes.to(dtype)[order]
    if dtype == torch.float32:
        iou_threshold = float_threshold(iou_threshold)
    keep = torch.empty(n, dtype=torch.bool, device=boxes.device)
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    # Work in blocks so the IoU matrix stays small: a block first suppresses its own
    # members greedily, then its survivors suppress every later box at once.
    block = 512
    for start in range(0, n, block):
        stop = min(n, start + block)
        blk = b[start:stop]
        iou_in = torch.triu(_iou_between(blk, blk) > iou_threshold, diagonal=1)
        sup = suppressed[start:stop].clone()
        for i in range(stop - start):
            if not sup[i]:
                sup |= iou_in[i]
        keep[start:stop] = ~sup
        if stop < n and bool((~sup).any()):
            kept, rest = blk[~sup], b[stop:]
            iou = _iou_between(kept, rest)
            suppressed[stop:] |= (iou > iou_threshold).any(0)
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category of ``idxs`` separately; kept indices sorted by descending
    score, equal scores by lower index."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    keep_mask = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    for c in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == c).squeeze(1)
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.nonzero(keep_mask).squeeze(1)
    return kept[torch.sort(scores[kept].to(compute_dtype(scores)), descending=True, stable=True).indices]


def yolo_decode(pred: Tensor, anchors: Tensor, stride: float) -> Tensor:
    """``pred [B, A*(5+C), H, W]`` raw logits -> ``[B, A*H*W, 5+C]``: cx, cy, w, h in pixels
    (:func:`zoo.ops.boxes.decode_boxes`: ``(sigmoid(t_xy) + grid) * stride``,
    ``exp(min(t_wh, WH_LOGIT_MAX)) * anchor``), then sigmoid objectness and class
    probabilities. Computed in fp32, returned in ``pred.dtype``."""
    bsz, ch, h, w = pred.shape
    a = anchors.shape[0]
    p = pred.float().reshape(bsz, a, ch // a, h, w).permute(0, 1, 3, 4, 2)  # [B, A, H, W, 5+C]
    grid = cell_grid(h, w, device=pred.device, dtype=torch.float32)  # [H, W, 2]
    xywh = decode_boxes(p[..., :4], grid, anchors.float().view(1, a, 1, 1, 2), stride)
    out = torch.cat([xywh, torch.sigmoid(p[..., 4:])], dim=-1)
    return out.reshape(bsz, a * h * w, ch // a).to(pred.dtype)


def yolo_candidates(
    decoded: Tensor, conf_threshold: float, multi_label: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's decoded rows ``[N, 5+C]`` -> candidate ``(boxes xyxy, scores, labels)`` in
    row order (and class order within a row when ``multi_label``)."""
    d = decoded.float()
    scores = d[:, 4:5] * d[:, 5:]
    xyxy = cxcywh_to_xyxy(d[:, :4])
    if multi_label:
        rows, labels = torch.nonzero(scores > conf_threshold, as_tuple=True)
        return xyxy[rows], scores[rows, labels], labels
    best, labels = scores.max(dim=1)
    rows = torch.nonzero(best > conf_threshold).squeeze(1)
    return xyxy[rows], best[rows], labels[rows]


def yolo_postprocess(
    preds: Sequence[Tensor],
    anchors: Sequence[Tensor],
    strides: Sequence[float],
    conf_threshold: float,
    iou_threshold: float,
    max_det: int,
    max_nms: int,
    multi_label: bool,
    nms_fn=batched_nms,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The unfused pipeline: decode -> score = obj * cls -> threshold -> cap at ``max_nms`` ->
    class-aware NMS (``nms_fn``, e.g. torchvision.ops.batched_nms) -> cap at ``max_det``.

    Returns ``(boxes [K, 4], scores [K], labels [K], image_index [K])`` grouped by image.
    """
    decoded = torch.cat([yolo_decode(p.float(), a, s) for p, a, s in zip(preds, anchors, strides)], dim=1)
    out_b, out_s, out_l, out_i = [], [], [], []
    for b in range(decoded.shape[0]):
        boxes, scores, labels = yolo_candidates(decoded[b], conf_threshold, multi_label)
        order = torch.sort(scores, descending=True, stable=True).indices[:max_nms]
        boxes, scores, labels = boxes[order], scores[order], labels[order]
        keep = nms_fn(boxes, scores, labels, iou_threshold)[:max_det]
        out_b.append(boxes[keep])
        out_s.append(scores[keep])
        out_l.append(labels[keep])
        out_i.append(torch.full((keep.numel(),), b, dtype=torch.int64, device=decoded.device))
    return torch.cat(out_b), torch.cat(out_s), torch.cat(out_l).long(), torch.cat(out_i)


SE_GATES = ("sigmoid", "hard_sigmoid")
SE_ACTS = ("relu", "silu")


def _gate(u: Tensor, gate: str) -> Tensor:
    return torch.sigmoid(u) if gate == "sigmoid" else torch.nn.functional.hardsigmoid(u)


def squeeze_excite(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, gate: str = "sigmoid", act: str = "relu"
) -> Tensor:
    """Squeeze-and-Excitation in eager torch: ``x * gate(w2 @ act(w1 @ mean_hw(x) + b1) + b2)``,
    ``act`` ReLU or SiLU (``h * sigmoid(h)``, EfficientNet's).

    ``x [N, C, H, W]``, ``w1 [Cr, C]``, ``b1 [Cr]``, ``w2 [C, Cr]``, ``b2 [C]``. The FCs run in fp32
    for fp16/bf16 input (as the kernels accumulate). Its gradients are torch autograd's: the
    fallback differentiates it, and the tests take autograd through it as the oracle of the
    fused backward kernels."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    s = x.to(acc).mean((2, 3))
    h = torch.nn.functional.linear(s, w1.to(acc), b1.to(acc))
    z = torch.relu(h) if act == "relu" else torch.nn.functional.silu(h)
    g = _gate(torch.nn.functional.linear(z, w2.to(acc), b2.to(acc)), gate)
    return (x.to(acc) * g[:, :, None, None]).to(x.dtype)
