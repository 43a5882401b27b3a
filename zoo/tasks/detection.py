"""Object detection (YOLOv3 family) as a LightningModule, and a prediction writer.

Training follows darknet's yolo layer (REFERENCE.md, "YOLOv3"):

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

Validation and test report torchmetrics' ``MeanAveragePrecision`` (COCO protocol):
``mAP50`` (IoU 0.5) and ``mAP`` (IoU 0.5:0.95). Prediction runs
:func:`zoo.ops.yolo_postprocess` (decode + threshold + class-aware NMS, fused) and maps
boxes back to the original image; :class:`DetectionWriter` draws them into PNGs and
writes ``detections.json``.

Batches are ``(images [B, 3, S, S], targets, metas)`` from
:class:`zoo.data.DetectionDataModule`: ``targets`` a list of ``{"boxes" [n, 4] xyxy
pixels of the network input, "labels" [n], "iscrowd" [n]}``, ``metas`` a list of
``{"path", "orig_size" (h, w), "scale", "pad" (left, top)}``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import Tensor
from torchvision.ops import box_iou

from .. import ops
from ..optim import WarmupExponentialLR, weight_decay_groups
from ..registry import create_net, get_spec

BOX_LOSSES = ("mse", "giou", "ciou")
# objectness weight per level, by stride (ultralytics' YOLOv3 balance 4 : 1 : 0.4)
LEVEL_BALANCE = {8: 4.0, 16: 1.0, 32: 0.4}


# ----------------------------------------------------------------------------- geometry


def box_iou_cxcywh(a: Tensor, b: Tensor, kind: str = "iou", eps: float = 1e-7) -> Tensor:
    """Element-wise IoU / GIoU / CIoU of boxes ``a [..., 4]`` and ``b [..., 4]`` as (cx, cy, w, h).

    GIoU subtracts the part of the smallest enclosing box not covered by the union
    (Rezatofighi et al. 2019); CIoU subtracts the squared centre distance over the
    enclosing box's squared diagonal and an aspect-ratio term ``alpha * v`` (Zheng et
    al. 2020), with ``alpha`` treated as a constant as the paper prescribes.
    """
    ax1, ay1 = a[..., 0] - a[..., 2] / 2, a[..., 1] - a[..., 3] / 2
    ax2, ay2 = a[..., 0] + a[..., 2] / 2, a[..., 1] + a[..., 3] / 2
    bx1, by1 = b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2
    bx2, by2 = b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2
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
    if kind == "ciou":
        diag = cw**2 + ch**2 + eps
        dist = (a[..., 0] - b[..., 0]) ** 2 + (a[..., 1] - b[..., 1]) ** 2
        angle = torch.atan(b[..., 2] / (b[..., 3] + eps)) - torch.atan(a[..., 2] / (a[..., 3] + eps))
        v = (4 / math.pi**2) * angle**2
        with torch.no_grad():
            alpha = v / (v - iou + (1 + eps))
        return iou - dist / diag - alpha * v
    raise ValueError(f"kind: expected 'iou', 'giou' or 'ciou', got {kind!r}")


def shape_iou(wh: Tensor, anchors: Tensor) -> Tensor:
    """``[M, K]`` IoU of boxes ``wh [M, 2]`` and ``anchors [K, 2]`` placed at a common corner."""
    inter = torch.min(wh[:, None, 0], anchors[None, :, 0]) * torch.min(wh[:, None, 1], anchors[None, :, 1])
    return inter / (wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter)


def _level_view(p: Tensor, num_anchors: int) -> Tensor:
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
    """Boxes ``[B, A, H, W, 4]`` (cx, cy, w, h pixels) decoded from one raw map ``[B, A*(5+C), H, W]``,
    with the formula of :func:`zoo.ops.yolo_decode` (differentiable; ``t_wh`` capped at 10)."""
    v = _level_view(p, anchors.shape[0])
    h, w = v.shape[2:4]
    gy, gx = torch.meshgrid(torch.arange(h, device=p.device), torch.arange(w, device=p.device), indexing="ij")
    grid = torch.stack([gx, gy], -1).to(p.dtype)
    xy = (v[..., 0:2].sigmoid() + grid) * stride
    wh = v[..., 2:4].clamp(max=10.0).exp() * anchors.to(p.dtype)[None, :, None, None, :]
    return torch.cat([xy, wh], -1)


def yolo_loss(
    preds: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]],
    anchors: Tensor,
    strides: Sequence[int],
    num_classes: int,
    box_loss: str = "giou",
    ignore_thresh: float = 0.7,
    lambda_box: float = 0.05,
    lambda_obj: float = 1.0,
    lambda_cls: float = 0.5,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The YOLOv3 loss (see the module docstring): ``(total, {"box", "obj", "cls"})``."""
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss: expected one of {BOX_LOSSES}, got {box_loss!r}")
    batch = preds[0].shape[0]
    in_h, in_w = preds[0].shape[2] * strides[0], preds[0].shape[3] * strides[0]
    per_level = anchors.shape[1]
    assigned = build_targets(targets, anchors, strides, [tuple(p.shape[2:4]) for p in preds])
    device = preds[0].device
    lbox, lcls, lobj = torch.zeros((), device=device), torch.zeros((), device=device), torch.zeros((), device=device)
    n_pos = sum(int(t["b"].numel()) for t in assigned)
    gt_xyxy = [t["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4) for t in targets]
    for lvl, (p, t) in enumerate(zip(preds, assigned)):
        v = _level_view(p, per_level).float()  # [B, A, H, W, 5+C]
        obj_target = torch.zeros(v.shape[:4], device=device)
        obj_weight = torch.ones(v.shape[:4], device=device)
        if ignore_thresh < 1.0:
            with torch.no_grad():
                boxes = decode_level(p.detach().float(), anchors[lvl], strides[lvl])
                xyxy = torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)
                for b in range(batch):
                    if gt_xyxy[b].numel():
                        best = box_iou(xyxy[b].reshape(-1, 4), gt_xyxy[b]).amax(1).view(obj_weight.shape[1:])
                        obj_weight[b][best > ignore_thresh] = 0.0
        if t["b"].numel():
            ps = v[t["b"], t["a"], t["gy"], t["gx"]]  # [m, 5+C]
            weight = 2.0 - t["box"][:, 2] * t["box"][:, 3] / (in_h * in_w)
            if box_loss == "mse":
                err = (ps[:, 0:2].sigmoid() - t["txy"]).pow(2).sum(1) + (ps[:, 2:4] - t["twh"]).pow(2).sum(1)
                lbox = lbox + (weight * err).sum()
            else:
                grid = torch.stack([t["gx"], t["gy"]], 1).float()
                pxy = (ps[:, 0:2].sigmoid() + grid) * strides[lvl]
                pwh = ps[:, 2:4].clamp(max=10.0).exp() * t["anchor"]
                iou = box_iou_cxcywh(torch.cat([pxy, pwh], 1), t["box"], box_loss)
                lbox = lbox + (weight * (1.0 - iou)).sum()
            obj_target[t["b"], t["a"], t["gy"], t["gx"]] = 1.0
            obj_weight[t["b"], t["a"], t["gy"], t["gx"]] = 1.0
            onehot = F.one_hot(t["labels"], num_classes).float()
            lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], onehot, reduction="none").mean(1).sum()
        bce = F.binary_cross_entropy_with_logits(v[..., 4], obj_target, reduction="none")
        lobj = lobj + LEVEL_BALANCE.get(int(strides[lvl]), 1.0) * (bce * obj_weight).mean()
    lbox = lbox / max(1, n_pos)
    lcls = lcls / max(1, n_pos)
    total = (lambda_box * lbox + lambda_obj * lobj + lambda_cls * lcls) * batch
    return total, {"box": lbox.detach(), "obj": lobj.detach(), "cls": lcls.detach()}


def _without_crowd(t: dict[str, Tensor]) -> dict[str, Tensor]:
    """A target without its ``iscrowd`` (VOC difficult) objects, which evaluation ignores."""
    crowd = t.get("iscrowd")
    if crowd is None or not bool(crowd.any()):
        return t
    keep = crowd == 0
    return {"boxes": t["boxes"][keep], "labels": t["labels"][keep]}


def to_original(boxes: Tensor, meta: dict[str, Any]) -> Tensor:
    """Map xyxy boxes from the letterboxed network input back to the original image."""
    left, top = meta.get("pad", (0.0, 0.0))
    scale = float(meta.get("scale", 1.0))
    out = (boxes - boxes.new_tensor([left, top, left, top])) / scale
    if "orig_size" in meta:
        h, w = meta["orig_size"]
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


# ----------------------------------------------------------------------------- the task


class Detector(pl.LightningModule):
    """Wraps ``zoo.create_net(arch)`` (a YOLO detection net): YOLOv3 loss, COCO mAP, NMS'd predictions.

    Args:
        arch: a registered detection model name (``yolov3``, ``yolov3_se``, ``yolov3_tiny``).
        num_classes: number of classes (default: ``len(classes)``, else the spec's).
        classes: class names, for predictions (the CLI copies them from the datamodule).
        anchors: ``[L][A][2]`` anchor (w, h) pixels, or a flat list of pairs (default: the
            spec's COCO anchors), e.g. from :func:`zoo.data.kmeans_anchors`.
        img_size: the square input side the model is trained at (sets ``example_input_array``;
            default: the spec's input size; the CLI copies the datamodule's).
        box_loss: ``"mse"`` (darknet), ``"giou"`` or ``"ciou"``.
        ignore_thresh: no objectness penalty above this IoU with a truth (darknet cfg 0.7).
        lambda_box / lambda_obj / lambda_cls: weights of the three loss terms.
        conf_threshold / iou_threshold / max_det: ``predict_step``'s post-processing.
        eval_conf_threshold / eval_iou_threshold: the same for validation mAP (low conf, as
            COCO evaluation expects the whole precision-recall curve).
        optimizer (``"adamw"`` | ``"sgd"``), lr, weight_decay, momentum: the default optimizer
            (no weight decay on biases and BatchNorm).
        warmup_steps, lr_gamma, lr_decay_steps: the default schedule
            (:class:`zoo.optim.WarmupExponentialLR`, stepped per optimizer step):
            linear warmup from 0, then ``lr * lr_gamma ** ((step - warmup) / lr_decay_steps)``.
            ``lr_decay_steps=None`` spreads one factor of ``lr_gamma`` over the whole run.
        net_kwargs: extra keyword arguments for the net builder.
    """

    def __init__(
        self,
        arch: str = "yolov3",
        num_classes: int | None = None,
        classes: list[str] | None = None,
        anchors: list | None = None,
        img_size: int | None = None,
        box_loss: str = "giou",
        ignore_thresh: float = 0.7,
        lambda_box: float = 0.05,
        lambda_obj: float = 1.0,
        lambda_cls: float = 0.5,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_det: int = 300,
        eval_conf_threshold: float = 0.001,
        eval_iou_threshold: float = 0.6,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        momentum: float = 0.937,
        warmup_steps: int = 100,
        lr_gamma: float = 0.1,
        lr_decay_steps: float | None = None,
        net_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        spec = get_spec(arch)
        if spec.task != "detection":
            raise ValueError(f"arch: {arch!r} is a {spec.task} model, not a detection model")
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss: expected one of {BOX_LOSSES}, got {box_loss!r}")
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer: expected 'adamw' or 'sgd', got {optimizer!r}")
        for name, value in (("ignore_thresh", ignore_thresh), ("conf_threshold", conf_threshold),
                            ("iou_threshold", iou_threshold), ("eval_conf_threshold", eval_conf_threshold),
                            ("eval_iou_threshold", eval_iou_threshold)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {value}")
        if img_size is None:
            img_size = int(spec.input_size[1])
        if not isinstance(img_size, int) or img_size <= 0 or img_size % 32:
            raise ValueError(f"img_size: expected a positive multiple of 32, got {img_size!r}")
        if classes is not None:
            classes = [str(c) for c in classes]
            if num_classes is not None and num_classes != len(classes):
                raise ValueError(f"num_classes: {num_classes} does not match the {len(classes)} names in classes")
            num_classes = len(classes)
        self.save_hyperparameters()
        overrides = dict(net_kwargs or {})
        if num_classes is not None:
            overrides["num_classes"] = num_classes
        if anchors is not None:  # (the net checks them: zoo.models.yolov3.parse_anchors)
            overrides["anchors"] = anchors
        self.net = create_net(arch, **overrides)
        self.num_classes = int(self.net.num_classes)
        self.classes = classes or [str(i) for i in range(self.num_classes)]
        self.strides = tuple(int(s) for s in self.net.strides)
        self.example_input_array = torch.zeros(1, 3, img_size, img_size)
        from torchmetrics.detection import MeanAveragePrecision

        self.val_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
        self.test_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")

    @property
    def anchors(self) -> Tensor:
        """``[L, A, 2]`` anchor (w, h) pixels of the net, per output level."""
        return self.net.anchors

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W] -> [B, A*(5+C), H/s, W/s]`` raw maps, one per stride."""
        return self.net(x)

    def loss(self, preds: Sequence[Tensor], targets: Sequence[dict[str, Tensor]]) -> tuple[Tensor, dict[str, Tensor]]:
        hp = self.hparams
        return yolo_loss(preds, targets, self.anchors, self.strides, self.num_classes, hp.box_loss,
                         hp.ignore_thresh, hp.lambda_box, hp.lambda_obj, hp.lambda_cls)

    def postprocess(self, preds: Sequence[Tensor], conf: float, iou: float, max_det: int) -> list[dict[str, Tensor]]:
        """Detections per image in network-input pixels (fused decode + NMS, :func:`zoo.ops.yolo_postprocess`)."""
        return ops.yolo_postprocess([p.float() for p in preds], self.anchors.float(), [float(s) for s in self.strides],
                                    conf_threshold=conf, iou_threshold=iou, max_det=max_det)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, targets = batch[0], batch[1]
        loss, parts = self.loss(self(images), targets)
        bs = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k, v in parts.items():
            self.log(f"train/{k}", v, batch_size=bs)
        return loss

    def _eval_step(self, batch, stage: str, metric) -> Tensor:
        images, targets = batch[0], batch[1]
        preds = self(images)
        loss, _ = self.loss(preds, [_without_crowd(t) for t in targets])  # (difficult objects: no loss)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=images.shape[0])
        # COCO evaluation counts at most 100 detections per image
        dets = self.postprocess(preds, self.hparams.eval_conf_threshold, self.hparams.eval_iou_threshold,
                                min(100, self.hparams.max_det))
        metric.update(dets, [self._metric_target(t) for t in targets])
        return loss

    @staticmethod
    def _metric_target(t: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {"boxes": t["boxes"].float().reshape(-1, 4), "labels": t["labels"].long().reshape(-1)}
        if "iscrowd" in t:
            out["iscrowd"] = t["iscrowd"].long().reshape(-1)
        return out

    def _log_map(self, stage: str, metric) -> None:
        res = metric.compute()
        self.log(f"{stage}/mAP50", res["map_50"].float(), prog_bar=True)
        self.log(f"{stage}/mAP", res["map"].float())
        metric.reset()

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val", self.val_map)

    def on_validation_epoch_end(self) -> None:
        self._log_map("val", self.val_map)

    def test_step(self, batch, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test", self.test_map)

    def on_test_epoch_end(self) -> None:
        self._log_map("test", self.test_map)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image: ``{"path", "boxes" [K, 4] xyxy pixels of the ORIGINAL image, "scores", "labels",
        "names"}`` after :func:`zoo.ops.yolo_postprocess` with ``conf_threshold`` / ``iou_threshold``."""
        images = batch[0]
        metas = batch[2] if len(batch) > 2 else [{} for _ in range(images.shape[0])]
        hp = self.hparams
        dets = self.postprocess(self(images), hp.conf_threshold, hp.iou_threshold, hp.max_det)
        out = []
        for d, meta in zip(dets, metas):
            labels = d["labels"].cpu()
            out.append({
                "path": meta.get("path"),
                "boxes": to_original(d["boxes"].cpu(), meta),
                "scores": d["scores"].cpu(),
                "labels": labels,
                "names": [self.classes[i] if 0 <= i < len(self.classes) else str(i) for i in labels.tolist()],
            })
        return out

    def configure_optimizers(self):
        hp = self.hparams
        groups = weight_decay_groups(self.net, hp.weight_decay)
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=True)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr, betas=(hp.momentum, 0.999))
        total = None
        if self.trainer is not None:
            try:
                total = int(self.trainer.estimated_stepping_batches)
            except Exception:  # noqa: BLE001  (no datamodule attached yet)
                total = None
        if total is None or total <= 0 or total >= 2**31:
            total = max(1, hp.warmup_steps) * 10
        warmup = min(hp.warmup_steps, max(0, total - 1))
        decay_steps = hp.lr_decay_steps or max(1, total - warmup)
        sched = WarmupExponentialLR(opt, warmup_steps=warmup, gamma=hp.lr_gamma, decay_steps=decay_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ----------------------------------------------------------------------------- prediction output


class DetectionWriter(BasePredictionWriter):
    """Writes what ``predict`` finds: one PNG per image with its boxes drawn, and ``detections.json``.

    Args:
        output_dir: where to write (default: ``<trainer.default_root_dir>/predict``).
        draw: write the PNGs (``detections.json`` is always written).
        line_width: box outline width in pixels.

    ``detections.json``: ``{"classes": [...], "images": [{"image": path, "png": path,
    "detections": [{"box": [x1, y1, x2, y2], "score": s, "label": i, "class": name}]}]}``,
    boxes in pixels of the original image.
    """

    def __init__(self, output_dir: str | None = None, draw: bool = True, line_width: int = 2) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.draw = draw
        self.line_width = line_width
        self._records: list[dict[str, Any]] = []

    def _dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.output_dir or os.path.join(trainer.default_root_dir, "predict"))

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._records = []
        self._dir(trainer).mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        out_dir = self._dir(trainer)
        for det in prediction:
            record = {"image": det["path"], "png": None, "detections": [
                {"box": [round(float(v), 2) for v in box], "score": round(float(s), 4), "label": int(lab),
                 "class": name}
                for box, s, lab, name in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(),
                                             det["names"])
            ]}
            if self.draw and det["path"]:
                png = out_dir / (Path(det["path"]).stem + ".png")
                _draw(det, png, self.line_width)
                record["png"] = str(png)
            self._records.append(record)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out_dir = self._dir(trainer)
        classes = list(getattr(pl_module, "classes", []))
        path = out_dir / "detections.json"
        with open(path, "w") as f:
            json.dump({"classes": classes, "images": self._records}, f, indent=1)
        n = sum(len(r["detections"]) for r in self._records)
        print(f"zoo predict: {n} detections in {len(self._records)} images -> {path}"
              + (f" (+ one PNG per image in {out_dir})" if self.draw else ""))


def _draw(det: dict[str, Any], png: Path, width: int) -> None:
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image
    from torchvision.utils import draw_bounding_boxes

    with Image.open(det["path"]) as im:
        img = pil_to_tensor(im.convert("RGB"))
    labels = [f"{n} {s:.2f}" for n, s in zip(det["names"], det["scores"].tolist())]
    if len(labels):
        palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                   "#fabed4", "#469990"]
        colors = [palette[int(i) % len(palette)] for i in det["labels"].tolist()]
        img = draw_bounding_boxes(img, det["boxes"].float(), labels=labels, colors=colors, width=width)
    to_pil_image(img).save(png)
