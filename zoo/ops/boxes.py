"""Box geometry in plain torch, written once: the YOLO box decode, shape IoU and the IoU family.

Used by :mod:`zoo.ops.reference` (the decode the kernels reproduce), by the YOLO loss
(:mod:`zoo.losses.yolo`) and by the anchor tools in :mod:`zoo.data`. Everything here is
differentiable and works on any leading shape.

**YOLO decode** (darknet's yolo layer). For a cell at ``grid`` = (x, y) with raw outputs
``t = (tx, ty, tw, th)``, an anchor (w, h) in input pixels and the level's stride::

    cx, cy = (sigmoid(tx, ty) + grid) * stride
    w, h   = exp(min(tw, th; WH_LOGIT_MAX)) * anchor

``WH_LOGIT_MAX`` caps the size logits so that a diverging prediction gives a huge but
finite box (``exp(10)`` is about 22,026 anchors) instead of ``inf``. Training and
inference use the same cap, so the loss sees the boxes that prediction would return;
the C++/CUDA kernels apply it too (``kWhLogitMax`` in ``csrc/yolo_decode.h``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

#: Upper bound applied to the width/height logits before ``exp`` (training and inference alike).
WH_LOGIT_MAX = 10.0


def decode_boxes(t: Tensor, grid: Tensor, anchors: Tensor, stride: float) -> Tensor:
    """Raw box outputs ``t [..., 4]`` (tx, ty, tw, th) -> boxes ``[..., 4]`` (cx, cy, w, h) in pixels.

    ``grid [..., 2]`` holds each cell's (x, y) index and ``anchors [..., 2]`` its anchor (w, h)
    in pixels; both broadcast against ``t``. ``stride`` is input pixels per cell.
    """
    xy = (torch.sigmoid(t[..., 0:2]) + grid) * stride
    wh = torch.exp(t[..., 2:4].clamp(max=WH_LOGIT_MAX)) * anchors
    return torch.cat([xy, wh], -1)


def cell_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """``[height, width, 2]`` cell indices (x, y), the ``grid`` of :func:`decode_boxes` for a whole map."""
    gy, gx = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([gx, gy], -1)


def shape_iou(wh: Tensor, anchors: Tensor) -> Tensor:
    """``[M, K]`` IoU of boxes ``wh [M, 2]`` and ``anchors [K, 2]`` (w, h) placed at a common corner."""
    inter = torch.minimum(wh[:, None, 0], anchors[None, :, 0]) * torch.minimum(wh[:, None, 1], anchors[None, :, 1])
    return inter / (wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    half = boxes[..., 2:4] / 2
    return torch.cat([boxes[..., 0:2] - half, boxes[..., 0:2] + half], -1)


def box_iou_cxcywh(a: Tensor, b: Tensor, kind: str = "iou", eps: float = 1e-7) -> Tensor:
    """Element-wise IoU / GIoU / CIoU of boxes ``a [..., 4]`` and ``b [..., 4]`` as (cx, cy, w, h).

    GIoU subtracts the part of the smallest enclosing box not covered by the union
    (Rezatofighi et al. 2019); CIoU subtracts the squared centre distance over the
    enclosing box's squared diagonal and an aspect-ratio term ``alpha * v`` (Zheng et
    al. 2020), with ``alpha`` treated as a constant as the paper prescribes.
    """
    if kind not in ("iou", "giou", "ciou"):
        raise ValueError(f"kind: expected 'iou', 'giou' or 'ciou', got {kind!r}")
    ax1, ay1, ax2, ay2 = cxcywh_to_xyxy(a).unbind(-1)
    bx1, by1, bx2, by2 = cxcywh_to_xyxy(b).unbind(-1)
    inter = (torch.min(ax2, bx2) - torch.max(ax1, bx1)).clamp(min=0) * (
        torch.min(ay2, by2) - torch.max(ay1, by1)).clamp(min=0)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    iou = inter / (union + eps)
    if kind == "iou":
        return iou
    cw = torch.max(ax2, bx2) - torch.min(ax1, bx1)
    ch = torch.max(ay2, by2) - torch.min(ay1, by1)
    if kind == "giou":
        hull = cw * ch
        return iou - (hull - union) / (hull + eps)
    diag = cw**2 + ch**2 + eps
    dist = (a[..., 0] - b[..., 0]) ** 2 + (a[..., 1] - b[..., 1]) ** 2
    angle = torch.atan(b[..., 2] / (b[..., 3] + eps)) - torch.atan(a[..., 2] / (a[..., 3] + eps))
    v = (4 / math.pi**2) * angle**2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - dist / diag - alpha * v
