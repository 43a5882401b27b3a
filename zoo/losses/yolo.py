"""The YOLO losses and their target assignment: YOLOv3 / v4 (darknet's yolo layer), YOLOv2
(darknet's region layer) and YOLOv1 (the paper's sum-squared error, darknet's detection layer).

Every loss here takes targets per image as ``{"boxes": [n, 4] xyxy pixels of the network
input, "labels": [n]}`` and returns ``(total, {"box", "obj", "cls"})``: the scalar to
minimise and its three parts, detached, for logging.

YOLOv3 and YOLOv4: :class:`YOLOLoss`
-------------------------------------

* **Assignment.** Each ground-truth box goes to the one anchor, of all the model's
  anchors (9 for YOLOv3), whose shape best matches it (IoU of the two boxes placed at a
  common corner), at the grid cell holding the box centre on that anchor's level.
* **Decode.** ``cx = (sigmoid(tx) * s - (s - 1) / 2 + grid_x) * stride`` (y alike),
  ``w = exp(min(tw, 10)) * anchor_w``, with ``s`` the level's ``scale_xy`` (darknet's
  ``scale_x_y``; 1 for YOLOv3, where the formula is the plain ``sigmoid(tx) + grid_x``).
  ``s > 1`` lets the centre reach the cell's edges, which a sigmoid only approaches.
* **Box loss.** ``"mse"``: squared error on the scaled offset ``sigmoid(t_xy) * s - (s - 1) / 2``
  vs the centre's offset in its cell and on ``t_wh`` vs ``log(wh / anchor)``, weighted by
  ``2 - w*h / (W*H)`` (small boxes count more), as darknet does. ``"giou"`` / ``"ciou"``:
  ``1 - GIoU`` or ``1 - CIoU`` of the decoded box and the truth, with the same weight.
* **Objectness.** BCE over every cell and anchor: 1 at assigned positions, 0 elsewhere,
  except that predictions whose decoded box overlaps some truth of their image by more
  than ``ignore_thresh`` IoU get no objectness penalty.
* **Classes.** BCE per class (independent sigmoids) at the assigned positions.

The three terms are averaged (boxes and classes over positives, objectness over the
cells of each level, levels weighted 4 : 1 : 0.4 from stride 8 to 32) and the total is
multiplied by the batch size, so the gradient is per image, as in ultralytics' YOLOv3.

YOLOv4 (AlexeyAB/darknet cfg/yolov4.cfg) is this loss with the net's ``scale_xy`` (1.2,
1.1, 1.05 from stride 8 to 32) and ``box_loss="ciou"`` (the cfg's ``iou_loss=ciou``;
its ``ignore_thresh`` is 0.7, as YOLOv3's). The cfg's ``iou_normalizer=0.07`` /
``cls_normalizer=1.0`` weight darknet's summed deltas; this loss averages its terms
instead (above) and keeps ``lambda_box`` / ``lambda_obj`` / ``lambda_cls``.

YOLOv2: :class:`RegionLoss`
---------------------------

darknet's region layer (cfg/yolov2.cfg: ``thresh=.6 object_scale=5 noobject_scale=1
class_scale=1 coord_scale=1 rescore=1 softmax=1 bias_match=1``), one output level with
``A`` anchors (5 in the cfg).

* **Assignment.** Each truth goes to the anchor of best shape IoU (``bias_match``) at the
  cell holding its centre. Two truths on the same cell and anchor: the later one in the
  target list wins (darknet writes its deltas truth by truth, the last overwriting).
* **Box loss** (``coord_scale``, weighted by ``2 - w*h / (W*H)``): ``"mse"`` is darknet's
  (as :class:`YOLOLoss`'s), ``"giou"`` / ``"ciou"`` the IoU losses of the decoded box.
* **Objectness** (BCE; its gradient in the logit, ``sigmoid(t_o) - target``, is darknet's
  delta): at assigned positions ``object_scale * BCE(t_o, target)`` with target the IoU
  of the decoded box and its truth (``rescore``; detached) or 1. The constant entropy of a
  fractional target is subtracted, so the term is 0 when ``sigmoid(t_o)`` equals its target
  (the gradient is unchanged). Everywhere else ``noobject_scale * BCE(t_o, 0)``, except
  where the decoded box overlaps a truth of its image by more than ``ignore_thresh`` (0.6).
* **Classes.** ``class_scale *`` cross-entropy of the softmax over the ``C`` class logits
  (the decode's ``cls_act="softmax"``).

Terms are summed over the batch and divided by the batch size (a loss per image, as
darknet's summed deltas averaged over the batch). darknet's first-12800-images term that
pulls every box toward its anchor prior is left out.

YOLOv1: :class:`YOLOv1Loss`
---------------------------

The paper's loss (Redmon et al., "You Only Look Once", CVPR 2016) on darknet's detection
layer output (darknet's 2015 cfg/yolo.cfg: ``[detection] side=7 num=2 sqrt=1 rescore=1
coord_scale=5 noobject_scale=.5 object_scale=1 class_scale=1``): per image a flat vector
of ``S*S*(C + 5B)`` linear values, first ``S*S*C`` class probabilities (cell
``i = row*S + col``, class ``j`` at ``i*C + j``), then ``S*S*B`` confidences (``S*S*C + i*B + n``),
then ``S*S*B*4`` boxes (``S*S*(C+B) + (i*B + n)*4 + k``): x, y offsets in the cell and
``sqrt(w)``, ``sqrt(h)`` relative to the image. Sum-squared error::

    lambda_coord * sum_resp [(x - x*)^2 + (y - y*)^2 + (sqrt w - sqrt w*)^2 + (sqrt h - sqrt h*)^2]
  + lambda_obj   * sum_resp (conf - IoU)^2            (target 1 without rescore)
  + lambda_noobj * sum_not_resp conf^2
  + lambda_cls   * sum_cells_with_object sum_c (p_c - onehot_c)^2

with ``lambda_coord = 5``, ``lambda_noobj = 0.5``, ``lambda_obj = lambda_cls = 1``.

* **Cell.** A truth belongs to the cell holding its centre; one truth per cell: when
  several centres share a cell the first in the target list wins and the others are
  dropped (darknet's label grid skips a cell already filled).
* **Responsible predictor.** Of the cell's ``B`` boxes, the one whose decoded box has the
  highest IoU with the truth (ties: the lower index); when every IoU is 0, the one
  nearest the truth in (cx, cy, w, h) (squared distance), as darknet's detection layer.
  The confidence target is that IoU, detached (darknet's ``rescore=1``).

Summed over the batch, divided by the batch size.

Boxes are decoded with :func:`zoo.ops.boxes.decode_boxes` (v2, v3, v4), the formula (and
``t_wh`` cap) that :func:`zoo.ops.yolo_decode` and :func:`zoo.ops.yolo_postprocess` use, so
the loss scores the boxes prediction returns.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from ..ops.boxes import box_iou_cxcywh, cell_grid, cxcywh_to_xyxy, decode_boxes, shape_iou, xy_scale_terms

BOX_LOSSES = ("mse", "giou", "ciou")
#: objectness weight per level, by stride (ultralytics' YOLOv3 balance 4 : 1 : 0.4)
LEVEL_BALANCE = {8: 4.0, 16: 1.0, 32: 0.4}


def level_view(p: Tensor, num_anchors: int) -> Tensor:
    """``[B, A*(5+C), H, W] -> [B, A, H, W, 5+C]`` (a view, then a permute)."""
    b, ch, h, w = p.shape
    return p.view(b, num_anchors, ch // num_anchors, h, w).permute(0, 1, 3, 4, 2)


def level_scales(scale_xy, levels: int) -> list[float]:
    """``scale_xy`` as one float per level: None (all 1.0), one number for every level, or a
    sequence of ``levels`` numbers; each finite and > 0 (``ValueError`` naming ``scale_xy``)."""
    if scale_xy is None:
        return [1.0] * levels
    if isinstance(scale_xy, Tensor):
        scale_xy = scale_xy.tolist()
    values = [scale_xy] * levels if isinstance(scale_xy, (int, float)) and not isinstance(scale_xy, bool) else scale_xy
    try:
        out = [float(v) for v in values]
        ok = len(out) == levels and not any(isinstance(v, bool) for v in values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"scale_xy: expected None, a number or {levels} numbers (one per level), got {scale_xy!r}")
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"scale_xy: expected finite numbers > 0, got {scale_xy!r}")
    return out


def scaled_offset(t_xy: Tensor, scale_xy: float) -> Tensor:
    """The centre's offset in its cell, ``sigmoid(t_xy) * s - (s - 1) / 2`` (``sigmoid`` for ``s = 1``),
    with ``s`` and the offset rounded as :func:`zoo.ops.boxes.decode_boxes` rounds them."""
    xy = torch.sigmoid(t_xy)
    if scale_xy == 1.0:
        return xy
    s, offset = xy_scale_terms(scale_xy)
    return xy * s - offset


def _gt_table(targets: Sequence[dict[str, Tensor]], device) -> Tensor:
    """Every truth of the batch as a row ``[image, label, x1, y1, x2, y2]``, in target order."""
    rows = []
    for i, t in enumerate(targets):
        boxes = t["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
        if boxes.numel():
            labels = t["labels"].to(device).reshape(-1).float()
            rows.append(torch.cat([torch.full_like(labels[:, None], i), labels[:, None], boxes], 1))
    return torch.cat(rows) if rows else torch.zeros(0, 6, device=device)


def build_targets(targets: Sequence[dict[str, Tensor]], anchors: Tensor, strides: Sequence[int],
                  grid_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
    """Assign every ground-truth box to its best anchor's cell, one dict per level.

    Args:
        targets: per image ``{"boxes": [n, 4] xyxy pixels, "labels": [n]}``.
        anchors: ``[L, A, 2]`` (w, h) pixels; ``strides`` and ``grid_sizes`` (H, W) per level.

    Returns per level: ``b, a, gy, gx`` (long ``[m]``: image, anchor, cell), ``txy``
    (``[m, 2]``, the centre's offset in its cell, in [0, 1)), ``twh`` (``[m, 2]``,
    ``log(wh / anchor)``), ``box`` (``[m, 4]`` cx, cy, w, h pixels), ``labels`` (``[m]``),
    ``anchor`` (``[m, 2]``). Rows keep the order of the targets.
    """
    device = anchors.device
    levels, per_level = anchors.shape[:2]
    gt = _gt_table(targets, device)
    cxcy = (gt[:, 2:4] + gt[:, 4:6]) / 2
    wh = (gt[:, 4:6] - gt[:, 2:4]).clamp(min=1e-3)
    best = shape_iou(wh, anchors.view(-1, 2)).argmax(1) if len(gt) else torch.zeros(0, dtype=torch.long, device=device)
    out = []
    for lvl in range(levels):
        m = best // per_level == lvl
        s = float(strides[lvl])
        gh, gw = grid_sizes[lvl]
        a = best[m] % per_level
        g = cxcy[m] / s
        gx = g[:, 0].floor().long().clamp(0, gw - 1)
        gy = g[:, 1].floor().long().clamp(0, gh - 1)
        anchor = anchors[lvl][a]
        out.append({
            "b": gt[m, 0].long(), "a": a, "gy": gy, "gx": gx,
            "txy": g - torch.stack([gx, gy], 1).float(),
            "twh": torch.log(wh[m] / anchor),
            "box": torch.cat([cxcy[m], wh[m]], 1),
            "labels": gt[m, 1].long(),
            "anchor": anchor,
        })
    return out


def decode_level(p: Tensor, anchors: Tensor, stride: float, scale_xy: float = 1.0) -> Tensor:
    """Boxes ``[B, A, H, W, 4]`` (cx, cy, w, h pixels) of one raw map ``[B, A*(5+C), H, W]``
    (differentiable; :func:`zoo.ops.boxes.decode_boxes` over every cell)."""
    v = level_view(p, anchors.shape[0])
    grid = cell_grid(v.shape[2], v.shape[3], device=p.device, dtype=p.dtype)
    return decode_boxes(v[..., 0:4], grid, anchors.to(p.dtype)[None, :, None, None, :], stride, scale_xy)


def ignore_mask(p: Tensor, anchors: Tensor, stride: float, scale_xy: float, gt_xyxy: Sequence[Tensor],
                thresh: float) -> Tensor:
    """``bool [B, A, H, W]``: where the decoded box of raw map ``p`` overlaps some truth of its
    image (``gt_xyxy[b]`` ``[n, 4]``) by more than ``thresh`` IoU (computed without gradient)."""
    with torch.no_grad():
        xyxy = cxcywh_to_xyxy(decode_level(p.detach().float(), anchors, stride, scale_xy))
        mask = torch.zeros(xyxy.shape[:4], dtype=torch.bool, device=p.device)
        for b, gt in enumerate(gt_xyxy):
            if gt.numel():
                mask[b] = box_iou(xyxy[b].reshape(-1, 4), gt).amax(1).view(mask.shape[1:]) > thresh
    return mask


def _box_error(kind: str, ps: Tensor, t: dict[str, Tensor], stride: float, scale_xy: float) -> Tensor:
    """Per positive ``[m]``: darknet's coordinate squared error (``"mse"``) or ``1 - GIoU / CIoU``."""
    if kind == "mse":
        return ((scaled_offset(ps[:, 0:2], scale_xy) - t["txy"]).pow(2).sum(1)
                + (ps[:, 2:4] - t["twh"]).pow(2).sum(1))
    grid = torch.stack([t["gx"], t["gy"]], 1).float()
    pred_box = decode_boxes(ps[:, 0:4], grid, t["anchor"], stride, scale_xy)
    return 1.0 - box_iou_cxcywh(pred_box, t["box"], kind)


def _check_box_loss(box_loss: str) -> None:
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss: expected one of {BOX_LOSSES}, got {box_loss!r}")


def _check_num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    return num_classes


def _check_unit(value, name: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a value in [0, 1], got {value!r}") from None
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"{name}: expected a value in [0, 1], got {value}")
    return f


def _check_weight(value, name: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if isinstance(value, bool) or not (math.isfinite(f) and f >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return f


def _check_maps(preds, strides, anchors: Tensor, num_classes: int) -> None:
    """``ValueError`` naming ``preds`` unless it holds one ``[B, A*(5+C), H, W]`` map per stride
    and anchor group."""
    if len(preds) == 0 or len(preds) != len(strides) or anchors.ndim != 3 or anchors.shape[0] != len(preds):
        raise ValueError(f"preds: expected one raw map per stride and anchor group, got {len(preds)} maps, "
                         f"{len(strides)} strides and anchors of shape {tuple(anchors.shape)}")
    want = anchors.shape[1] * (5 + num_classes)
    for p in preds:
        if not isinstance(p, Tensor) or p.ndim != 4 or p.shape[1] != want:
            raise ValueError(f"preds: expected maps [B, A*(5+C), H, W] with {want} channels (A={anchors.shape[1]}, "
                             f"C={num_classes}), got {tuple(p.shape) if isinstance(p, Tensor) else type(p).__name__}")


class YOLOLoss(nn.Module):
    """The YOLOv3 / YOLOv4 loss (see the module docstring).

    Args:
        num_classes: C.
        box_loss: ``"mse"`` (darknet), ``"giou"`` or ``"ciou"`` (YOLOv4's).
        ignore_thresh: no objectness penalty above this IoU with a truth (darknet's cfg: 0.7).
        lambda_box / lambda_obj / lambda_cls: weights of the three terms.
        level_balance: objectness weight per stride (default :data:`LEVEL_BALANCE`; 1 for
            strides it does not name).

    ``forward(preds, targets, anchors, strides, scale_xy=None) -> (total, {"box", "obj", "cls"})``
    with ``preds`` the raw maps ``[B, A*(5+C), H, W]`` by increasing stride, ``targets`` per
    image ``{"boxes": [n, 4] xyxy pixels of the input, "labels": [n]}``, ``anchors [L, A, 2]``
    and ``scale_xy`` None (1.0 everywhere, YOLOv3), one number, or one number per level.
    """

    def __init__(self, num_classes: int, box_loss: str = "giou", ignore_thresh: float = 0.7,
                 lambda_box: float = 0.05, lambda_obj: float = 1.0, lambda_cls: float = 0.5,
                 level_balance: dict[int, float] | None = None) -> None:
        super().__init__()
        _check_box_loss(box_loss)
        self.num_classes = _check_num_classes(num_classes)
        self.box_loss = box_loss
        self.ignore_thresh = _check_unit(ignore_thresh, "ignore_thresh")
        self.lambda_box, self.lambda_obj, self.lambda_cls = (
            _check_weight(v, n) for v, n in ((lambda_box, "lambda_box"), (lambda_obj, "lambda_obj"),
                                             (lambda_cls, "lambda_cls")))
        self.level_balance = dict(LEVEL_BALANCE if level_balance is None else level_balance)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, box_loss={self.box_loss!r}, ignore_thresh={self.ignore_thresh}, "
                f"lambdas=({self.lambda_box}, {self.lambda_obj}, {self.lambda_cls})")

    def forward(self, preds: Sequence[Tensor], targets: Sequence[dict[str, Tensor]], anchors: Tensor,
                strides: Sequence[int], scale_xy: float | Sequence[float] | None = None
                ) -> tuple[Tensor, dict[str, Tensor]]:
        _check_maps(preds, strides, anchors, self.num_classes)
        scales = level_scales(scale_xy, len(preds))
        batch = preds[0].shape[0]
        in_h, in_w = preds[0].shape[2] * strides[0], preds[0].shape[3] * strides[0]
        per_level = anchors.shape[1]
        assigned = build_targets(targets, anchors, strides, [tuple(p.shape[2:4]) for p in preds])
        device = preds[0].device
        lbox, lcls, lobj = (torch.zeros((), device=device) for _ in range(3))
        n_pos = sum(int(t["b"].numel()) for t in assigned)
        gt_xyxy = [t["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4) for t in targets]
        for lvl, (p, t) in enumerate(zip(preds, assigned)):
            v = level_view(p, per_level).float()  # [B, A, H, W, 5+C]
            obj_target = torch.zeros(v.shape[:4], device=device)
            obj_weight = torch.ones(v.shape[:4], device=device)
            if self.ignore_thresh < 1.0:
                obj_weight[ignore_mask(p, anchors[lvl], strides[lvl], scales[lvl], gt_xyxy, self.ignore_thresh)] = 0.0
            if t["b"].numel():
                ps = v[t["b"], t["a"], t["gy"], t["gx"]]  # [m, 5+C]
                weight = 2.0 - t["box"][:, 2] * t["box"][:, 3] / (in_h * in_w)
                lbox = lbox + (weight * _box_error(self.box_loss, ps, t, strides[lvl], scales[lvl])).sum()
                obj_target[t["b"], t["a"], t["gy"], t["gx"]] = 1.0
                obj_weight[t["b"], t["a"], t["gy"], t["gx"]] = 1.0
                onehot = F.one_hot(t["labels"], self.num_classes).float()
                lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], onehot, reduction="none").mean(1).sum()
            bce = F.binary_cross_entropy_with_logits(v[..., 4], obj_target, reduction="none")
            lobj = lobj + self.level_balance.get(int(strides[lvl]), 1.0) * (bce * obj_weight).mean()
        lbox = lbox / max(1, n_pos)
        lcls = lcls / max(1, n_pos)
        total = (self.lambda_box * lbox + self.lambda_obj * lobj + self.lambda_cls * lcls) * batch
        return total, {"box": lbox.detach(), "obj": lobj.detach(), "cls": lcls.detach()}


def _binary_entropy(p: Tensor) -> Tensor:
    """``-p log p - (1 - p) log(1 - p)``, 0 at p = 0 and p = 1: the least BCE a target p allows."""
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))


def _last_per_key(keys: Tensor) -> Tensor:
    """Indices of the last occurrence of each distinct value of ``keys [m]`` (ascending)."""
    if keys.numel() == 0:
        return keys
    uniq, inverse = torch.unique(keys, return_inverse=True)
    pos = torch.arange(keys.numel(), device=keys.device)
    last = torch.full((uniq.numel(),), -1, dtype=torch.long, device=keys.device)
    return last.scatter_reduce(0, inverse, pos, reduce="amax").sort().values


def _first_per_key(keys: Tensor) -> Tensor:
    """Indices of the first occurrence of each distinct value of ``keys [m]`` (ascending)."""
    if keys.numel() == 0:
        return keys
    uniq, inverse = torch.unique(keys, return_inverse=True)
    pos = torch.arange(keys.numel(), device=keys.device)
    first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long, device=keys.device)
    return first.scatter_reduce(0, inverse, pos, reduce="amin").sort().values


class RegionLoss(nn.Module):
    """The YOLOv2 loss, darknet's region layer (see the module docstring).

    Args:
        num_classes: C.
        box_loss: ``"mse"`` (darknet's coordinate error), ``"giou"`` or ``"ciou"``.
        ignore_thresh: no no-object penalty above this IoU with a truth (yolov2.cfg ``thresh``: 0.6).
        coord_scale / object_scale / noobject_scale / class_scale: the cfg's weights (1, 5, 1, 1).
        rescore: the objectness target at an assigned position is the IoU of its decoded box
            and the truth (darknet's ``rescore=1``), else 1.

    ``forward(preds, targets, anchors, strides, scale_xy=None) -> (total, {"box", "obj", "cls"})``:
    ``preds`` one raw map ``[B, A*(5+C), H, W]`` (a tensor or a one-element list), ``anchors``
    ``[A, 2]`` or ``[1, A, 2]`` (w, h) input pixels, ``strides`` its stride (an int or a
    one-element sequence), ``scale_xy`` as :class:`YOLOLoss`'s (1 for YOLOv2). The parts are
    per image with their scales applied; ``total`` is their sum.
    """

    def __init__(self, num_classes: int, box_loss: str = "mse", ignore_thresh: float = 0.6,
                 coord_scale: float = 1.0, object_scale: float = 5.0, noobject_scale: float = 1.0,
                 class_scale: float = 1.0, rescore: bool = True) -> None:
        super().__init__()
        _check_box_loss(box_loss)
        self.num_classes = _check_num_classes(num_classes)
        self.box_loss = box_loss
        self.ignore_thresh = _check_unit(ignore_thresh, "ignore_thresh")
        self.coord_scale = _check_weight(coord_scale, "coord_scale")
        self.object_scale = _check_weight(object_scale, "object_scale")
        self.noobject_scale = _check_weight(noobject_scale, "noobject_scale")
        self.class_scale = _check_weight(class_scale, "class_scale")
        if not isinstance(rescore, bool):
            raise ValueError(f"rescore: expected a bool, got {rescore!r}")
        self.rescore = rescore

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, box_loss={self.box_loss!r}, ignore_thresh={self.ignore_thresh}, "
                f"scales=(coord {self.coord_scale}, object {self.object_scale}, noobject {self.noobject_scale}, "
                f"class {self.class_scale}), rescore={self.rescore}")

    def forward(self, preds: Tensor | Sequence[Tensor], targets: Sequence[dict[str, Tensor]], anchors: Tensor,
                strides: int | Sequence[int], scale_xy: float | Sequence[float] | None = None
                ) -> tuple[Tensor, dict[str, Tensor]]:
        preds = [preds] if isinstance(preds, Tensor) else list(preds)
        strides = [strides] if isinstance(strides, (int, float)) else list(strides)
        if isinstance(anchors, Tensor) and anchors.ndim == 2:
            anchors = anchors[None]
        if len(preds) != 1:
            raise ValueError(f"preds: the region layer has one output map, got {len(preds)}")
        _check_maps(preds, strides, anchors, self.num_classes)
        p, stride, s = preds[0], float(strides[0]), level_scales(scale_xy, 1)[0]
        num_a = anchors.shape[1]
        batch, _, gh, gw = p.shape
        in_h, in_w = gh * stride, gw * stride
        device = p.device
        v = level_view(p, num_a).float()  # [B, A, H, W, 5+C]
        t = build_targets(targets, anchors, [stride], [(gh, gw)])[0]
        keep = _last_per_key(((t["b"] * num_a + t["a"]) * gh + t["gy"]) * gw + t["gx"])
        t = {k: x[keep] for k, x in t.items()}
        gt_xyxy = [x["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4) for x in targets]
        noobj = torch.ones(v.shape[:4], device=device)
        if self.ignore_thresh < 1.0:
            noobj[ignore_mask(p, anchors[0], stride, s, gt_xyxy, self.ignore_thresh)] = 0.0
        zero = torch.zeros((), device=device)
        lbox, lobj, lcls = zero, zero, zero
        if t["b"].numel():
            pos = (t["b"], t["a"], t["gy"], t["gx"])
            ps = v[pos]  # [m, 5+C]
            noobj[pos] = 0.0
            weight = 2.0 - t["box"][:, 2] * t["box"][:, 3] / (in_h * in_w)
            lbox = self.coord_scale * (weight * _box_error(self.box_loss, ps, t, stride, s)).sum()
            if self.rescore:
                with torch.no_grad():
                    grid = torch.stack([t["gx"], t["gy"]], 1).float()
                    box = decode_boxes(ps[:, 0:4], grid, t["anchor"], stride, s)
                    target = box_iou_cxcywh(box, t["box"], "iou").clamp(0.0, 1.0)
            else:
                target = torch.ones_like(ps[:, 4])
            bce = F.binary_cross_entropy_with_logits(ps[:, 4], target, reduction="none") - _binary_entropy(target)
            lobj = self.object_scale * bce.sum()
            lcls = self.class_scale * F.cross_entropy(ps[:, 5:], t["labels"], reduction="sum")
        neg = F.binary_cross_entropy_with_logits(v[..., 4], torch.zeros_like(v[..., 4]), reduction="none")
        lobj = lobj + self.noobject_scale * (neg * noobj).sum()
        lbox, lobj, lcls = lbox / batch, lobj / batch, lcls / batch
        return lbox + lobj + lcls, {"box": lbox.detach(), "obj": lobj.detach(), "cls": lcls.detach()}


class YOLOv1Loss(nn.Module):
    """The YOLOv1 sum-squared error (see the module docstring).

    Args:
        num_classes: C (20 for VOC); grid_size: S (7); num_boxes: B, the boxes per cell (2).
        lambda_coord: weight of the box terms (5); lambda_noobj: of the confidence of
            predictors not responsible for a truth (0.5); lambda_obj / lambda_cls: of the
            responsible confidences and of the class probabilities (1, 1).
        rescore: the responsible confidence's target is its IoU with the truth (darknet's
            ``rescore=1``, the paper's definition), else 1.

    ``forward(out, targets, img_size) -> (total, {"box", "obj", "cls"})``: ``out`` the raw
    ``[N, S*S*(C + 5B)]`` detection-layer output, ``targets`` per image
    ``{"boxes": [n, 4] xyxy pixels of the input, "labels": [n]}``, ``img_size`` the input's
    side or ``(H, W)``. ``"obj"`` holds both confidence terms. Every part is summed over the
    batch and divided by the batch size, weights applied; ``total`` is their sum.
    """

    def __init__(self, num_classes: int = 20, grid_size: int = 7, num_boxes: int = 2, lambda_coord: float = 5.0,
                 lambda_noobj: float = 0.5, lambda_obj: float = 1.0, lambda_cls: float = 1.0,
                 rescore: bool = True) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("grid_size", grid_size), ("num_boxes", num_boxes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.num_classes, self.grid_size, self.num_boxes = num_classes, grid_size, num_boxes
        self.lambda_coord = _check_weight(lambda_coord, "lambda_coord")
        self.lambda_noobj = _check_weight(lambda_noobj, "lambda_noobj")
        self.lambda_obj = _check_weight(lambda_obj, "lambda_obj")
        self.lambda_cls = _check_weight(lambda_cls, "lambda_cls")
        if not isinstance(rescore, bool):
            raise ValueError(f"rescore: expected a bool, got {rescore!r}")
        self.rescore = rescore

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, grid_size={self.grid_size}, num_boxes={self.num_boxes}, "
                f"lambda_coord={self.lambda_coord}, lambda_noobj={self.lambda_noobj}, rescore={self.rescore}")

    @property
    def out_features(self) -> int:
        """``S*S*(C + 5B)``, the length of one image's output."""
        return self.grid_size ** 2 * (self.num_classes + 5 * self.num_boxes)

    def split(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``out [N, S*S*(C+5B)]`` -> class probabilities ``[N, S*S, C]``, confidences ``[N, S*S, B]``
        and boxes ``[N, S*S, B, 4]`` (x, y in the cell, sqrt w, sqrt h of the image), cell ``row*S + col``."""
        n, cells, c, nb = out.shape[0], self.grid_size ** 2, self.num_classes, self.num_boxes
        return (out[:, :cells * c].reshape(n, cells, c), out[:, cells * c:cells * (c + nb)].reshape(n, cells, nb),
                out[:, cells * (c + nb):].reshape(n, cells, nb, 4))

    def forward(self, out: Tensor, targets: Sequence[dict[str, Tensor]], img_size: int | Sequence[int]
                ) -> tuple[Tensor, dict[str, Tensor]]:
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[1] != self.out_features:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"out: expected [N, S*S*(C+5B)] = [N, {self.out_features}] (S={self.grid_size}, "
                             f"C={self.num_classes}, B={self.num_boxes}), got {shape}")
        img_h, img_w = (img_size, img_size) if isinstance(img_size, (int, float)) else tuple(img_size)
        if not (img_h > 0 and img_w > 0):
            raise ValueError(f"img_size: expected a positive side or (H, W), got {img_size!r}")
        if len(targets) != out.shape[0]:
            raise ValueError(f"targets: expected one per image ({out.shape[0]}), got {len(targets)}")
        batch, S, device = out.shape[0], self.grid_size, out.device
        cls, conf, box = self.split(out.float())
        gt = _gt_table(targets, device)
        if gt.numel() and int(gt[:, 1].max()) >= self.num_classes:
            raise ValueError(f"targets: label {int(gt[:, 1].max())} out of range for {self.num_classes} classes")
        # truths relative to the image, their cells; the first truth of a cell wins
        scale = gt.new_tensor([img_w, img_h])
        cxcy = (gt[:, 2:4] + gt[:, 4:6]) / 2 / scale
        wh = ((gt[:, 4:6] - gt[:, 2:4]) / scale).clamp(min=0)
        col = (cxcy[:, 0] * S).floor().long().clamp(0, S - 1)
        row = (cxcy[:, 1] * S).floor().long().clamp(0, S - 1)
        b = gt[:, 0].long()
        keep = _first_per_key(b * S * S + row * S + col)
        b, row, col, cxcy, wh, labels = b[keep], row[keep], col[keep], cxcy[keep], wh[keep], gt[keep, 1].long()
        cell = row * S + col
        truth = torch.cat([cxcy, wh], 1)  # [m, 4] cx, cy, w, h relative to the image
        zero = torch.zeros((), device=device)
        resp = torch.zeros(conf.shape, dtype=torch.bool, device=device)  # [N, S*S, B]
        lbox, lobj, lcls = zero, zero, zero
        if len(b):
            pb = box[b, cell]  # [m, B, 4]
            pc = conf[b, cell]  # [m, B]
            with torch.no_grad():
                offs = torch.stack([col, row], 1).float()[:, None, :]
                dec = torch.cat([(pb[..., 0:2] + offs) / S, pb[..., 2:4] ** 2], -1)  # [m, B, 4]
                iou = box_iou_cxcywh(dec, truth[:, None, :].expand_as(dec), "iou").clamp(0.0, 1.0)
                dist = (dec - truth[:, None, :]).pow(2).sum(-1)
                best = torch.where((iou > 0).any(1), iou.argmax(1), dist.argmin(1))  # [m]
            rows = torch.arange(len(b), device=device)
            resp[b, cell, best] = True
            target_xy = cxcy * S - torch.stack([col, row], 1).float()
            target = torch.cat([target_xy, wh.sqrt()], 1)
            lbox = self.lambda_coord * (pb[rows, best] - target).pow(2).sum()
            obj_target = iou[rows, best] if self.rescore else torch.ones_like(pc[:, 0])
            lobj = self.lambda_obj * (pc[rows, best] - obj_target).pow(2).sum()
            onehot = F.one_hot(labels, self.num_classes).float()
            lcls = self.lambda_cls * (cls[b, cell] - onehot).pow(2).sum()
        lobj = lobj + self.lambda_noobj * conf[~resp].pow(2).sum()
        lbox, lobj, lcls = lbox / batch, lobj / batch, lcls / batch
        return lbox + lobj + lcls, {"box": lbox.detach(), "obj": lobj.detach(), "cls": lcls.detach()}
