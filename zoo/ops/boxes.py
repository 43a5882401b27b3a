"""Box geometry in plain torch, written once: the YOLO box decodes, shape IoU and the IoU family.

Used by :mod:`zoo.ops.reference` (the decode the kernels reproduce), by the YOLO losses
(:mod:`zoo.losses`) and by the anchor tools in :mod:`zoo.data`. Everything here is
differentiable and works on any leading shape.

**YOLO decode** (darknet's yolo layer; YOLOv2's region layer is the same with ``s = 1``).
For a cell at ``grid`` = (x, y) with raw outputs ``t = (tx, ty, tw, th)``, an anchor (w, h)
in input pixels and the level's stride::

    cx, cy = (sigmoid(tx, ty) * s - 0.5 * (s - 1) + grid) * stride
    w, h   = exp(min(tw, th; WH_LOGIT_MAX)) * anchor

``s`` is darknet's ``scale_x_y`` (AlexeyAB/darknet cfg/yolov4.cfg: 1.2, 1.1 and 1.05 for the
strides 8, 16 and 32): it stretches the sigmoid's range (0, 1) to ``(-(s-1)/2, (s+1)/2)``
around the cell's centre, so that a centre on a cell's border is reachable with a finite
logit. ``s = 1`` is YOLOv3's ``(sigmoid(t) + grid) * stride``, bit for bit. The kernels use
``s`` rounded to fp32 and the offset ``0.5 * (s - 1)`` computed in double from that fp32 value
and then rounded to fp32 (:func:`xy_scale_terms`; ``csrc/yolo_decode.h``), so in fp32 this
formula and the kernels round alike.

``WH_LOGIT_MAX`` caps the size logits so that a diverging prediction gives a huge but
finite box (``exp(10)`` is about 22,026 anchors) instead of ``inf``. Training and
inference use the same cap, so the loss sees the boxes that prediction would return;
the C++/CUDA kernels apply it too (``kWhLogitMax`` in ``csrc/yolo_decode.h``).

**YOLOv1 decode** (darknet's detection layer, cfg/yolo.cfg of 2015): :func:`decode_yolov1`.
"""
from __future__ import annotations

import math
import struct

import torch
from torch import Tensor

#: Upper bound applied to the width/height logits before ``exp`` (training and inference alike).
WH_LOGIT_MAX = 10.0


def _fp32(v: float) -> float:
    """``v`` rounded to the nearest fp32 value (as C's ``(float)v``; beyond fp32's range: +-inf)."""
    try:
        return struct.unpack("f", struct.pack("f", v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


def xy_scale_terms(scale_xy: float) -> tuple[float, float]:
    """``(s, offset)`` of the centre decode ``sigmoid(t) * s - offset``, as the kernels use them:
    ``s`` is ``scale_xy`` rounded to fp32, ``offset = 0.5 * (s - 1)`` computed in double from that
    fp32 ``s`` and then rounded to fp32 (exact for ``s`` in [1, 2): then ``sigmoid = 0.5``
    decodes to the cell's centre exactly). ``scale_xy = 1`` gives ``(1.0, 0.0)``."""
    s = _fp32(float(scale_xy))
    return s, _fp32(0.5 * (s - 1.0))


def decode_boxes(t: Tensor, grid: Tensor, anchors: Tensor, stride: float, scale_xy: float = 1.0) -> Tensor:
    """Raw box outputs ``t [..., 4]`` (tx, ty, tw, th) -> boxes ``[..., 4]`` (cx, cy, w, h) in pixels.

    ``grid [..., 2]`` holds each cell's (x, y) index and ``anchors [..., 2]`` its anchor (w, h)
    in pixels; both broadcast against ``t``. ``stride`` is input pixels per cell and
    ``scale_xy`` darknet's ``scale_x_y`` ``s``: ``cx = (sigmoid(tx) * s - 0.5 * (s - 1) + x) * stride``
    (``s = 1``, the default: ``(sigmoid(tx) + x) * stride``, YOLOv3's).
    """
    xy = torch.sigmoid(t[..., 0:2])
    if scale_xy != 1.0:  # (s = 1: the same values without two passes)
        s, offset = xy_scale_terms(scale_xy)
        xy = xy * s - offset
    xy = (xy + grid) * stride
    wh = torch.exp(t[..., 2:4].clamp(max=WH_LOGIT_MAX)) * anchors
    return torch.cat([xy, wh], -1)


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return v


def _positive_number(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {v!r}") from None
    if isinstance(v, bool) or not (math.isfinite(f) and f > 0):
        raise ValueError(f"{name}: expected a positive number, got {v!r}")
    return f


def check_yolov1_args(out, grid_size, num_boxes, num_classes, img_h, img_w,
                      img_names: tuple[str, str] = ("img_h", "img_w")) -> tuple[int, int, int, float, float]:
    """The checks of :func:`decode_yolov1` (``ValueError`` naming the argument, ``img_names``
    for the image size); returns ``(S, num_boxes, C, img_h, img_w)``."""
    s = _positive_int(grid_size, "grid_size")
    nb = _positive_int(num_boxes, "num_boxes")
    c = _positive_int(num_classes, "num_classes")
    h, w = _positive_number(img_h, img_names[0]), _positive_number(img_w, img_names[1])
    if not isinstance(out, Tensor):
        raise ValueError(f"out: expected a torch.Tensor, got {type(out).__name__}")
    per_image = s * s * (c + 5 * nb)
    if out.ndim != 2 or out.shape[1] != per_image:
        raise ValueError(f"out: expected shape [B, S*S*(C+5*num_boxes)] = [B, {per_image}] for S={s}, C={c}, "
                         f"num_boxes={nb}, got {tuple(out.shape)}")
    if not out.is_floating_point():
        raise ValueError(f"out: expected a floating-point tensor, got {out.dtype}")
    return s, nb, c, h, w


def decode_yolov1(out: Tensor, grid_size: int, num_boxes: int, num_classes: int, img_h: float,
                  img_w: float) -> Tensor:
    """YOLOv1's raw output (darknet's detection layer) -> rows ``[B, S*S*num_boxes, 5+C]``.

    ``out [B, S*S*(C + 5*nb)]`` is darknet's layout for ``S = grid_size``, ``nb = num_boxes``
    (cfg/yolo.cfg: ``[detection] side=7 num=2 classes=20 sqrt=1``; 1470 values per image):
    first ``S*S*C`` class probabilities (cell ``i = row*S + col``, class ``j`` at ``i*C + j``),
    then ``S*S*nb`` confidences (``S*S*C + i*nb + n``), then ``S*S*nb*4`` box values
    (``S*S*(C+nb) + (i*nb + n)*4 + k``): x, y (the centre's offset in the cell, 0..1),
    sqrt(w), sqrt(h) (relative to the image). Row ``i*nb + n`` of an image holds box n of
    cell i::

        cx = (x + col) / S * img_w          w = sqrt_w ** 2 * img_w
        cy = (y + row) / S * img_h          h = sqrt_h ** 2 * img_h

    then its confidence and its cell's C class probabilities, all as the network gives them
    (the final layer is linear: nothing is squashed). Differentiable; ``out``'s dtype.
    """
    s, nb, c, img_h, img_w = check_yolov1_args(out, grid_size, num_boxes, num_classes, img_h, img_w)
    bsz, cells = out.shape[0], s * s
    probs = out[:, :cells * c].reshape(bsz, cells, 1, c).expand(bsz, cells, nb, c)
    conf = out[:, cells * c:cells * (c + nb)].reshape(bsz, cells, nb, 1)
    box = out[:, cells * (c + nb):].reshape(bsz, cells, nb, 4)
    idx = torch.arange(cells, device=out.device)
    col = (idx % s).to(out.dtype).view(1, cells, 1)
    row = torch.div(idx, s, rounding_mode="floor").to(out.dtype).view(1, cells, 1)
    cx = (box[..., 0] + col) / s * img_w
    cy = (box[..., 1] + row) / s * img_h
    w = box[..., 2] ** 2 * img_w
    h = box[..., 3] ** 2 * img_h
    xywh = torch.stack([cx, cy, w, h], -1)
    return torch.cat([xywh, conf, probs], -1).reshape(bsz, cells * nb, 5 + c)


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
