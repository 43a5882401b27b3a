"""The YOLOv3 loss and its target assignment, after darknet's yolo layer.

* **Assignment.** Each ground-truth box goes to the one anchor, of all the model's
  anchors (9 for YOLOv3), whose shape best matches it (IoU of the two boxes placed at a
  common corner), at the grid cell holding the box centre on that anchor's level.
* **Box loss.** ``"mse"``: squared error on ``sigmoid(t_xy)`` vs the centre's offset in
  its cell and on ``t_wh`` vs ``log(wh / anchor)``, weighted by ``2 - w*h / (W*H)``
  (small boxes count more), as darknet does. ``"giou"`` / ``"ciou"``: ``1 - GIoU`` or
  ``1 - CIoU`` of the decoded box and the truth, with the same weight.
* **Objectness.** BCE over every cell and anchor: 1 at assigned positions, 0 elsewhere,
  except that predictions whose decoded box overlaps some truth of their image by more
  than ``ignore_thresh`` IoU get no objectness penalty.
* **Classes.** BCE per class (independent sigmoids) at the assigned positions.

The three terms are averaged (boxes and classes over positives, objectness over the
cells of each level, levels weighted 4 : 1 : 0.4 from stride 8 to 32) and the total is
multiplied by the batch size, so the gradient is per image, as in ultralytics' YOLOv3.

Boxes are decoded with :func:`zoo.ops.boxes.decode_boxes`, the formula (and ``t_wh``
cap) that :func:`zoo.ops.yolo_decode` and :func:`zoo.ops.yolo_postprocess` use, so the
loss scores the boxes prediction returns.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from ..ops.boxes import box_iou_cxcywh, cell_grid, cxcywh_to_xyxy, decode_boxes, shape_iou

BOX_LOSSES = ("mse", "giou", "ciou")
#: objectness weight per level, by stride (ultralytics' YOLOv3 balance 4 : 1 : 0.4)
LEVEL_BALANCE = {8: 4.0, 16: 1.0, 32: 0.4}


def level_view(p: Tensor, num_anchors: int) -> Tensor:
    """``[B, A*(5+C), H, W] -> [B, A, H, W, 5+C]`` (a view, then a permute)."""
    b, ch, h, w = p.shape
    return p.view(b, num_anchors, ch // num_anchors, h, w).permute(0, 1, 3, 4, 2)


def build_targets(targets: Sequence[dict[str, Tensor]], anchors: Tensor, strides: Sequence[int],
                  grid_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
    """Assign every ground-truth box to its best anchor's cell, one dict per level.

    Args:
        targets: per image ``{"boxes": [n, 4] xyxy pixels, "labels": [n]}``.
        anchors: ``[L, A, 2]`` (w, h) pixels; ``strides`` and ``grid_sizes`` (H, W) per level.

    Returns per level: ``b, a, gy, gx`` (long ``[m]``: image, anchor, cell), ``txy``
    (``[m, 2]``, the centre's offset in its cell, in [0, 1)), ``twh`` (``[m, 2]``,
    ``log(wh / anchor)``), ``box`` (``[m, 4]`` cx, cy, w, h pixels), ``labels`` (``[m]``),
    ``anchor`` (``[m, 2]``).
    """
    device = anchors.device
    levels, per_level = anchors.shape[:2]
    rows = []
    for i, t in enumerate(targets):
        boxes = t["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
        if boxes.numel():
            labels = t["labels"].to(device).reshape(-1).float()
            rows.append(torch.cat([torch.full_like(labels[:, None], i), labels[:, None], boxes], 1))
    gt = torch.cat(rows) if rows else torch.zeros(0, 6, device=device)
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


def decode_level(p: Tensor, anchors: Tensor, stride: float) -> Tensor:
    """Boxes ``[B, A, H, W, 4]`` (cx, cy, w, h pixels) of one raw map ``[B, A*(5+C), H, W]``
    (differentiable; :func:`zoo.ops.boxes.decode_boxes` over every cell)."""
    v = level_view(p, anchors.shape[0])
    grid = cell_grid(v.shape[2], v.shape[3], device=p.device, dtype=p.dtype)
    return decode_boxes(v[..., 0:4], grid, anchors.to(p.dtype)[None, :, None, None, :], stride)


class YOLOLoss(nn.Module):
    """The YOLOv3 loss (see the module docstring).

    Args:
        num_classes: C.
        box_loss: ``"mse"`` (darknet), ``"giou"`` or ``"ciou"``.
        ignore_thresh: no objectness penalty above this IoU with a truth (darknet's cfg: 0.7).
        lambda_box / lambda_obj / lambda_cls: weights of the three terms.
        level_balance: objectness weight per stride (default :data:`LEVEL_BALANCE`; 1 for
            strides it does not name).

    ``forward(preds, targets, anchors, strides) -> (total, {"box", "obj", "cls"})`` with
    ``preds`` the raw maps ``[B, A*(5+C), H, W]`` by increasing stride, ``targets`` per image
    ``{"boxes": [n, 4] xyxy pixels of the input, "labels": [n]}`` and ``anchors [L, A, 2]``.
    """

    def __init__(self, num_classes: int, box_loss: str = "giou", ignore_thresh: float = 0.7,
                 lambda_box: float = 0.05, lambda_obj: float = 1.0, lambda_cls: float = 0.5,
                 level_balance: dict[int, float] | None = None) -> None:
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss: expected one of {BOX_LOSSES}, got {box_loss!r}")
        if not 0.0 <= float(ignore_thresh) <= 1.0:
            raise ValueError(f"ignore_thresh: expected a value in [0, 1], got {ignore_thresh}")
        self.num_classes = int(num_classes)
        self.box_loss = box_loss
        self.ignore_thresh = float(ignore_thresh)
        self.lambda_box, self.lambda_obj, self.lambda_cls = float(lambda_box), float(lambda_obj), float(lambda_cls)
        self.level_balance = dict(LEVEL_BALANCE if level_balance is None else level_balance)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, box_loss={self.box_loss!r}, ignore_thresh={self.ignore_thresh}, "
                f"lambdas=({self.lambda_box}, {self.lambda_obj}, {self.lambda_cls})")

    def _ignore_mask(self, p: Tensor, anchors: Tensor, stride: float, gt_xyxy: list[Tensor], weight: Tensor) -> None:
        """Zero ``weight`` [B, A, H, W] where the decoded box overlaps a truth by more than ignore_thresh."""
        with torch.no_grad():
            xyxy = cxcywh_to_xyxy(decode_level(p.detach().float(), anchors, stride))
            for b, gt in enumerate(gt_xyxy):
                if gt.numel():
                    best = box_iou(xyxy[b].reshape(-1, 4), gt).amax(1).view(weight.shape[1:])
                    weight[b][best > self.ignore_thresh] = 0.0

    def forward(self, preds: Sequence[Tensor], targets: Sequence[dict[str, Tensor]], anchors: Tensor,
                strides: Sequence[int]) -> tuple[Tensor, dict[str, Tensor]]:
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
                self._ignore_mask(p, anchors[lvl], strides[lvl], gt_xyxy, obj_weight)
            if t["b"].numel():
                ps = v[t["b"], t["a"], t["gy"], t["gx"]]  # [m, 5+C]
                weight = 2.0 - t["box"][:, 2] * t["box"][:, 3] / (in_h * in_w)
                if self.box_loss == "mse":
                    err = (ps[:, 0:2].sigmoid() - t["txy"]).pow(2).sum(1) + (ps[:, 2:4] - t["twh"]).pow(2).sum(1)
                    lbox = lbox + (weight * err).sum()
                else:
                    grid = torch.stack([t["gx"], t["gy"]], 1).float()
                    pred_box = decode_boxes(ps[:, 0:4], grid, t["anchor"], strides[lvl])
                    lbox = lbox + (weight * (1.0 - box_iou_cxcywh(pred_box, t["box"], self.box_loss))).sum()
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
