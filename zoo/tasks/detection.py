"""Object detection (the YOLO family) as a LightningModule.

Training minimises the loss of the net's kind (:mod:`zoo.losses.yolo`): :class:`zoo.losses.YOLOLoss`
for YOLOv3 / v4 (sigmoid class scores, the net's ``scale_xy``), :class:`zoo.losses.RegionLoss` for
YOLOv2 (``cls_act == "softmax"``), :class:`zoo.losses.YOLOv1Loss` for YOLOv1 (``output_kind ==
"yolov1"``). Validation and test report COCO mAP (torchmetrics' ``MeanAveragePrecision`` through
:class:`zoo.metrics.MeanAveragePrecision`, which also synchronises uneven DDP shards):
``mAP50`` (IoU 0.5) and ``mAP`` (IoU 0.5:0.95). Prediction runs
:func:`zoo.ops.yolo_postprocess` (decode + threshold + class-aware NMS, fused; YOLOv1:
:func:`zoo.ops.yolov1_postprocess`), maps boxes
back to the original image, and :class:`zoo.callbacks.DetectionWriter` (added by
``python -m zoo predict``) draws them into PNGs and writes ``detections.json``.

Batches are ``(images [B, 3, S, S], targets, metas)`` from
:class:`zoo.data.DetectionDataModule`: ``targets`` a list of ``{"boxes" [n, 4] xyxy
pixels of the network input, "labels" [n], "iscrowd" [n]}``, ``metas`` a list of
``{"path", "orig_size" (h, w), "scale", "pad" (left, top)}``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from .. import ops
from ..callbacks import DetectionWriter
from ..data.detection import to_original
from ..losses import BOX_LOSSES, RegionLoss, YOLOLoss, YOLOv1Loss
from ..metrics import MeanAveragePrecision
from ..optim import WarmupExponentialLR, check_gamma, check_optimizer_args
from .base import Task


def _without_crowd(t: dict[str, Tensor]) -> dict[str, Tensor]:
    """A target without its ``iscrowd`` (VOC difficult) objects, which evaluation ignores."""
    crowd = t.get("iscrowd")
    if crowd is None or not bool(crowd.any()):
        return t
    keep = crowd == 0
    return {"boxes": t["boxes"][keep], "labels": t["labels"][keep]}


class Detector(Task):
    """Wraps ``zoo.create_net(arch)`` (a YOLO detection net): its YOLO loss, COCO mAP, NMS'd predictions.

    The net says which loss and post-processing apply: ``net.output_kind == "yolov1"`` ->
    :class:`zoo.losses.YOLOv1Loss` and :func:`zoo.ops.yolov1_postprocess`; otherwise (grid maps)
    ``net.cls_act == "softmax"`` -> :class:`zoo.losses.RegionLoss` (YOLOv2), else
    :class:`zoo.losses.YOLOLoss` (YOLOv3 / v4), and :func:`zoo.ops.yolo_postprocess` with the net's
    ``scale_xy`` and ``cls_act`` (a net without them: 1.0 per level, ``"sigmoid"``).

    Args:
        arch: a registered detection model name (``yolov1``, ``yolov2``, ``yolov3``, ``yolov3_se``,
            ``yolov3_tiny``, ``yolov4``, ``yolov4_tiny``).
        num_classes: number of classes (default: ``len(classes)``, else the spec's).
        classes: class names, for predictions (the CLI links them from the datamodule).
        anchors: ``[L][A][2]`` anchor (w, h) pixels, or a flat list of pairs (default: the
            spec's COCO anchors), e.g. from :func:`zoo.data.kmeans_anchors`; None for yolov1,
            which has no anchors.
        img_size: the square input side the model is trained at (sets ``example_input_array``;
            default: the spec's input size; the CLI links the datamodule's). yolov1's connected
            layer is built for it (a multiple of 64; the cfg's 448).
        box_loss, ignore_thresh, lambda_box, lambda_obj, lambda_cls: :class:`zoo.losses.YOLOLoss`'s
            arguments; :class:`zoo.losses.RegionLoss` takes ``box_loss`` and ``ignore_thresh``
            (the lambdas are its cfg scales, ``loss_kwargs``); :class:`zoo.losses.YOLOv1Loss`
            none of them (it has one box loss and no ignore threshold).
        loss_kwargs: further keyword arguments for the loss, e.g. ``{object_scale: 5}``
            (RegionLoss) or ``{lambda_noobj: 0.5}`` (YOLOv1Loss).
        conf_threshold / iou_threshold / max_det: ``predict_step``'s post-processing.
        eval_conf_threshold / eval_iou_threshold: the same for validation mAP (low conf, as
            COCO evaluation expects the whole precision-recall curve).
        optimizer (``"adamw"`` | ``"sgd"``), lr, weight_decay, momentum: the default optimizer
            (:func:`zoo.optim.make_optimizer`).
        warmup_steps, lr_gamma, lr_decay_steps: the default schedule
            (:class:`zoo.optim.WarmupExponentialLR`, stepped per optimizer step):
            linear warmup from 0, then ``lr * lr_gamma ** ((step - warmup) / lr_decay_steps)``.
            ``lr_decay_steps=None`` spreads one factor of ``lr_gamma`` over the whole run.
        net_kwargs: extra keyword arguments for the net builder (e.g. ``{zero_init_residual: true}``).
        channels_last: run the net in the channels-last (NHWC) memory format, which tensor-core
            GPUs prefer (on a 2-core CPU a YOLOv3-SE step at 224 px, batch 4, takes the same time
            either way: 0.835 s vs 0.843 s).
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
        channels_last: bool = False,
        loss_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        spec = self.check_arch(arch, "detection")
        check_optimizer_args(optimizer, lr, weight_decay, momentum)
        for name, value in (("conf_threshold", conf_threshold), ("iou_threshold", iou_threshold),
                            ("eval_conf_threshold", eval_conf_threshold),
                            ("eval_iou_threshold", eval_iou_threshold)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {value}")
        check_gamma(lr_gamma, "lr_gamma")
        if lr_decay_steps is not None and not (isinstance(lr_decay_steps, (int, float)) and lr_decay_steps > 0):
            raise ValueError(f"lr_decay_steps: expected a positive number of steps or None, got {lr_decay_steps!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected an int >= 0, got {warmup_steps!r}")
        if img_size is None:
            img_size = int(spec.input_size[1])
        if not isinstance(img_size, int) or img_size <= 0 or img_size % 32:
            raise ValueError(f"img_size: expected a positive multiple of 32, got {img_size!r}")
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss: expected one of {BOX_LOSSES}, got {box_loss!r}")
        if loss_kwargs is not None and not isinstance(loss_kwargs, dict):
            raise ValueError(f"loss_kwargs: expected a dict of keyword arguments or None, got {loss_kwargs!r}")
        num_classes, classes = self.class_names(num_classes, classes)
        self.save_hyperparameters()
        # (the net checks the anchors: zoo.models.yolov3.parse_anchors)
        if spec.family == "yolov1" and anchors is not None:
            raise ValueError(f"anchors: {arch} has no anchors; set anchors to None (null)")
        if spec.family == "yolov1" and "img_size" not in (net_kwargs or {}):
            # (YOLOv1's connected layer is built for one input size: the one trained at)
            net_kwargs = {**(net_kwargs or {}), "img_size": img_size}
        self.build_net(arch, num_classes, classes, net_kwargs, anchors=anchors)
        if self.output_kind == "yolov1" and int(self.net.img_size) != img_size:
            raise ValueError(f"img_size: {img_size}, but the {arch} net is built for {self.net.img_size}x"
                             f"{self.net.img_size} inputs (net_kwargs img_size)")
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.strides = tuple(int(s) for s in self.net.strides)
        self.criterion = self._make_loss(dict(loss_kwargs or {}))
        self.example_input_array = torch.zeros(1, 3, img_size, img_size)
        self.val_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
        self.test_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")

    @property
    def output_kind(self) -> str:
        """``"yolov1"`` (one flat vector per image) or ``"grid"`` (raw maps per stride)."""
        return getattr(self.net, "output_kind", "grid")

    @property
    def scale_xy(self) -> tuple[float, ...]:
        """The net's box-centre scale per output level (1.0 each for a net without ``scale_xy``)."""
        return tuple(float(s) for s in getattr(self.net, "scale_xy", (1.0,) * len(self.strides)))

    @property
    def cls_act(self) -> str:
        """How the net's class logits become probabilities: ``"sigmoid"`` or ``"softmax"``."""
        return getattr(self.net, "cls_act", "sigmoid")

    def _make_loss(self, extra: dict[str, Any]):
        hp = self.hparams
        if self.output_kind == "yolov1":
            loss_cls, args = YOLOv1Loss, {"num_classes": self.num_classes, "grid_size": int(self.net.grid_size),
                                          "num_boxes": int(self.net.num_boxes)}
        elif self.cls_act == "softmax":
            loss_cls, args = RegionLoss, {"num_classes": self.num_classes, "box_loss": hp.box_loss,
                                          "ignore_thresh": hp.ignore_thresh}
        else:
            loss_cls, args = YOLOLoss, {"num_classes": self.num_classes, "box_loss": hp.box_loss,
                                        "ignore_thresh": hp.ignore_thresh, "lambda_box": hp.lambda_box,
                                        "lambda_obj": hp.lambda_obj, "lambda_cls": hp.lambda_cls}
        clash = sorted(set(extra) & set(args))
        if clash:
            raise ValueError(f"loss_kwargs: {clash} are set by the Detector's own arguments; set them there")
        try:
            return loss_cls(**args, **extra)
        except TypeError as err:
            raise ValueError(f"loss_kwargs: {sorted(extra)} are not all arguments of {loss_cls.__name__}: "
                             f"{err}") from None

    def input_hw(self) -> tuple[int, int]:
        """YOLOv1's input (H, W) in pixels: the net's ``img_size`` (else the hparams')."""
        size = getattr(self.net, "img_size", None) or self.hparams.img_size
        return (size, size) if isinstance(size, int) else tuple(int(v) for v in size)

    @property
    def anchors(self) -> Tensor:
        """``[L, A, 2]`` anchor (w, h) pixels of the net, per output level."""
        return self.net.anchors

    def forward(self, x: Tensor) -> list[Tensor] | Tensor:
        """``[B, 3, H, W] -> [B, A*(5+C), H/s, W/s]`` raw maps, one per stride (YOLOv1: the flat
        ``[B, S*S*(C+5B)]`` detection-layer output)."""
        if self.hparams.get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def loss(self, preds: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]]
             ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(total, {"box", "obj", "cls"})`` of the net's loss (:attr:`criterion`) on its raw output."""
        if self.output_kind == "yolov1":
            return self.criterion(preds, targets, self.input_hw())
        return self.criterion(preds, targets, self.anchors, self.strides, scale_xy=self.scale_xy)

    def postprocess(self, preds: Sequence[Tensor] | Tensor, conf: float, iou: float, max_det: int
                    ) -> list[dict[str, Tensor]]:
        """Detections per image in network-input pixels: :func:`zoo.ops.yolo_postprocess` (fused decode
        + NMS) with the net's ``scale_xy`` and ``cls_act``, or :func:`zoo.ops.yolov1_postprocess`."""
        if self.output_kind == "yolov1":
            net = self.net
            return ops.yolov1_postprocess(preds.float(), int(net.grid_size), int(net.num_boxes), self.num_classes,
                                          self.input_hw(), conf_threshold=conf, iou_threshold=iou, max_det=max_det)
        return ops.yolo_postprocess([p.float() for p in preds], self.anchors.float(), [float(s) for s in self.strides],
                                    conf_threshold=conf, iou_threshold=iou, max_det=max_det,
                                    scale_xy=list(self.scale_xy), cls_act=self.cls_act)

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
        self.log_eval_loss(stage, loss, images.shape[0])
        # COCO evaluation counts at most 100 detections per image
        dets = self.postprocess(preds, self.hparams.eval_conf_threshold, self.hparams.eval_iou_threshold,
                                min(100, self.hparams.max_det))
        metric.update(dets, [self.metric_target(t) for t in targets])
        return loss

    @staticmethod
    def metric_target(t: dict[str, Tensor]) -> dict[str, Tensor]:
        """A batch target in the form ``MeanAveragePrecision.update`` takes (``iscrowd`` kept)."""
        out = {"boxes": t["boxes"].float().reshape(-1, 4), "labels": t["labels"].long().reshape(-1)}
        if "iscrowd" in t:
            out["iscrowd"] = t["iscrowd"].long().reshape(-1)
        return out

    def _log_map(self, stage: str, metric) -> None:
        res = metric.compute()
        # (compute() gathered every process's images: the same value on each, so averaging it
        # over the processes changes nothing, and keeps Lightning's distributed checks quiet)
        self.log(f"{stage}/mAP50", res["map_50"].float(), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/mAP", res["map"].float(), sync_dist=True)
        metric.reset()

    def validation_step(self, batch, batch_idx: int) -> Tensor | None:
        return None if batch is None else self._eval_step(batch, "val", self.val_map)

    def on_validation_epoch_end(self) -> None:
        self._log_map("val", self.val_map)

    def test_step(self, batch, batch_idx: int) -> Tensor | None:
        return None if batch is None else self._eval_step(batch, "test", self.test_map)

    def on_test_epoch_end(self) -> None:
        self._log_map("test", self.test_map)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]] | None:
        """Per image: ``{"path", "boxes" [K, 4] xyxy pixels of the ORIGINAL image, "scores", "labels",
        "names"}`` after :func:`zoo.ops.yolo_postprocess` with ``conf_threshold`` / ``iou_threshold``
        (None for a batch of None, whose images were all left out as corrupt)."""
        if batch is None:
            return None
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

    def lr_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int | None):
        """:class:`zoo.optim.WarmupExponentialLR`: ``warmup_steps`` of linear warmup, then one factor of
        ``lr_gamma`` per ``lr_decay_steps`` (default: over the rest of the run; with no known end,
        over 10x the warmup)."""
        hp = self.hparams
        total = total_steps if total_steps is not None else max(1, hp.warmup_steps) * 10
        warmup = min(hp.warmup_steps, max(0, total - 1))
        decay_steps = hp.lr_decay_steps or max(1, total - warmup)
        return WarmupExponentialLR(optimizer, warmup_steps=warmup, gamma=hp.lr_gamma, decay_steps=decay_steps)

    def prediction_writer(self) -> DetectionWriter:
        return DetectionWriter()
