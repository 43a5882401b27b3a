"""Custom ops: the only entry points the rest of the zoo calls.

Each function validates its input (raising ``ValueError`` that names the argument),
then runs the ``zoo._C`` kernel for the tensors' device, or the pure-torch version
in :mod:`zoo.ops.reference` when the extension is not built, has no kernel for that
device, or ``ZOO_OPS=torch`` is set. :func:`backend` says which one runs.

* :func:`nms`, :func:`batched_nms`: equal to ``torchvision.ops.nms`` / ``batched_nms``
  (stable descending sort; suppress when IoU > threshold; per-category for batched).
* :func:`yolo_decode`: darknet box decode of one YOLO output map (YOLOv2 / v3 / v4: darknet's
  ``scale_x_y``, sigmoid or softmax class probabilities).
* :func:`yolo_postprocess`: decode + score + threshold + cap + class-aware NMS, fused.
* :func:`yolov1_postprocess`: YOLOv1's detections (:func:`zoo.ops.boxes.decode_yolov1`, score,
  threshold, :func:`batched_nms`), in torch.
* :func:`squeeze_excite`: the Squeeze-and-Excitation block, forward and backward fused.
* :func:`adder2d`: AdderNet's layer (negative L1 distance of each patch to each filter), with
  the paper's backward (HardTanh-clipped input gradient, rescaled full-precision weight gradient).
* :func:`se_macs`, :func:`adder_macs`, :func:`yolo_decode_macs`: the multiply-accumulates of
  those ops, written once: ``torch.utils.flop_counter`` counts ``torch.ops.zoo.squeeze_excite``
  and ``torch.ops.zoo.adder2d`` with them (2 FLOPs per MAC; registered when the extension is
  loaded, so :func:`zoo.registry.count_macs` counts the fused ops), and so does :func:`zoo.flow`.

On the ``meta`` device, squeeze_excite and adder2d call the extension's op (its fake kernel
gives the output's shape; nothing is computed either way) unless ``ZOO_OPS=torch``, so that
whatever counts ops on meta tensors sees one zoo op, as on a CPU or a GPU.

The kernels read fp32 / fp64 / fp16 / bf16 input as it is (other floating dtypes are
converted to fp32). NMS computes fp64 boxes in fp64 and everything else in fp32; the
YOLO ops compute in fp32; squeeze_excite accumulates fp64 in fp64, the others in fp32.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torch.fx.experimental.symbolic_shapes import guard_or_false

from . import _ext, boxes as _boxes, reference
from ._ext import backend

__all__ = ["adder2d", "adder_macs", "backend", "batched_nms", "nms", "se_macs", "squeeze_excite", "yolo_decode",
           "yolo_decode_macs", "yolo_postprocess", "yolov1_postprocess", "reference"]

# The dtypes the kernels read as they are; other floating dtypes are converted to fp32.
_KERNEL_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# The CPU NMS kernel numbers boxes with int32.
_MAX_BOXES = 2**31 - 1


# ----------------------------------------------------------------------------- checks
#
# The C++ entry points (csrc/checks.h, csrc/se_checks.h) make the same checks with the same
# messages, in the same order. Checks that need a pass over the data (NaN / inf / inverted
# boxes, anchor values) come after every other check (so that an input with two faults gets
# the same message from either path) and run here only for the pure-torch fallback: the
# kernels make them while they read the data anyway. Tensors on "meta" have no data: the ops
# whose output size depends on the values (NMS, yolo_postprocess) refuse them.


def _definitely(cond) -> bool:
    """``cond`` for plain sizes; for the symbolic sizes of a traced call (torch.compile), True
    only where it holds for every value (the kernel checks the actual sizes when it runs)."""
    return guard_or_false(cond)


def _tensor(x, name: str, ndim: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(x.shape)}")
    return x


def _check_floating(x: Tensor, name: str) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")


def _floating(x: Tensor, name: str) -> Tensor:
    """``x`` if the kernels read its dtype (fp32, fp64, fp16, bf16), else an fp32 copy."""
    _check_floating(x, name)
    return x if x.dtype in _KERNEL_FLOATS else x.float()


def _on_meta_with_ext(x: Tensor) -> bool:
    """True when ``x`` is a meta tensor and the extension is loaded (and not ``ZOO_OPS=torch``):
    the op then runs its fake kernel, so op counters on meta tensors see the zoo op itself."""
    return x.is_meta and not _ext.forced_fallback() and _ext.available()


def _same_device(ref: Tensor, ref_name: str, **others: Tensor) -> None:
    for name, t in others.items():
        if t.device != ref.device:
            raise ValueError(f"{name}: on {t.device}, but {ref_name} is on {ref.device}; put them on one device")


def _unit_interval(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number in [0, 1], got {v!r}") from None
    if not 0.0 <= f <= 1.0:  # also rejects NaN
        raise ValueError(f"{name}: expected a value in [0, 1], got {v!r}")
    return f


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return v


def _check_boxes_scores(boxes, scores, allow_flat_empty: bool = False) -> tuple[Tensor, Tensor]:
    """boxes ``[N, 4]`` and scores ``[N]``, everything but their values (:func:`_check_box_values`).
    Nothing reads the data before the size check, so a huge expanded input fails without a
    copy. With ``allow_flat_empty`` (batched_nms), boxes of shape ``(0,)`` mean no boxes, as
    in torchvision.ops.batched_nms."""
    boxes = _tensor(boxes, "boxes")
    flat_empty = allow_flat_empty and boxes.ndim == 1 and boxes.numel() == 0
    if not flat_empty:
        _tensor(boxes, "boxes", 2)
    _check_floating(boxes, "boxes")
    if not flat_empty and boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected shape [N, 4] (x1, y1, x2, y2), got {tuple(boxes.shape)}")
    n = 0 if flat_empty else boxes.shape[0]
    scores = _tensor(scores, "scores", 1)
    _check_floating(scores, "scores")
    if _definitely(scores.shape[0] != n):
        raise ValueError(f"scores: has {scores.shape[0]} entries but boxes has {n} rows")
    _same_device(boxes, "boxes", scores=scores)
    if _definitely(n > _MAX_BOXES):
        raise ValueError(f"boxes: {n} boxes; NMS takes at most {_MAX_BOXES} (2**31 - 1)")
    boxes = _floating(boxes.reshape(0, 4) if flat_empty else boxes, "boxes")
    scores = _floating(scores, "scores")
    return boxes, scores


def _check_box_values(boxes: Tensor, scores: Tensor) -> None:
    """The value checks of NMS (the fallback's; the kernels make them as they read the data),
    after every other check of the call."""
    if boxes.shape[0] == 0:
        return
    if boxes.is_meta:
        raise ValueError("boxes: on meta, which holds no values; NMS needs them (the number of kept boxes "
                         "depends on them)")
    # one reduction (one device sync) for every value check
    bad_boxes = ~torch.isfinite(boxes).all()
    bad_scores = ~torch.isfinite(scores).all()
    inverted = ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()
    flags = torch.stack([bad_boxes, bad_scores, inverted]).tolist()
    if flags[0]:
        raise ValueError("boxes: contains NaN or infinite coordinates")
    if flags[1]:
        raise ValueError("scores: contains NaN or infinite values")
    if flags[2]:
        raise ValueError("boxes: expected x1 <= x2 and y1 <= y2 (xyxy format); some boxes are inverted")


def _check_idxs(idxs, n: int, boxes: Tensor) -> Tensor:
    idxs = _tensor(idxs, "idxs", 1)
    # an empty idxs may be floating: torch.tensor([]) is
    if idxs.is_complex() or idxs.dtype == torch.bool or (idxs.is_floating_point() and idxs.numel()):
        raise ValueError(f"idxs: expected an integer tensor, got {idxs.dtype}")
    if _definitely(idxs.shape[0] != n):
        raise ValueError(f"idxs: has {idxs.shape[0]} entries but boxes has {n} rows")
    _same_device(boxes, "boxes", idxs=idxs)
    return idxs


# ----------------------------------------------------------------------------- NMS


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression.

    Args:
        boxes: ``[N, 4]`` xyxy, floating (fp64 is computed in fp64, other dtypes in fp32).
        scores: ``[N]``.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box is
            greater than this (in [0, 1]).

    Returns:
        ``int64 [K]`` indices of the kept boxes, by descending score (equal scores:
        lower index first) -- the same as ``torchvision.ops.nms``.
    """
    boxes, scores = _check_boxes_scores(boxes, scores)
    thr = _unit_interval(iou_threshold, "iou_threshold")
    if _ext.has_kernel("nms", boxes.device):
        return torch.ops.zoo.nms(boxes, scores, thr)
    _check_box_values(boxes, scores)
    return reference.nms(boxes, scores, thr)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category: boxes with different ``idxs`` never suppress each other.

    Args:
        boxes: ``[N, 4]`` xyxy (or an empty ``(0,)`` tensor, as torchvision takes it);
            scores: ``[N]``; idxs: ``[N]`` integer category of each box.

    Returns:
        ``int64 [K]`` kept indices by descending score (equal scores: lower index first).
    """
    boxes, scores = _check_boxes_scores(boxes, scores, allow_flat_empty=True)
    idxs = _check_idxs(idxs, boxes.shape[0], boxes)
    thr = _unit_interval(iou_threshold, "iou_threshold")
    if _ext.has_kernel("batched_nms", boxes.device):
        return torch.ops.zoo.batched_nms(boxes, scores, idxs, thr)
    _check_box_values(boxes, scores)
    return reference.batched_nms(boxes, scores, idxs, thr)


# ----------------------------------------------------------------------------- YOLO


def _check_anchors(anchors, name: str, pred_name: str, pred: Tensor) -> Tensor:
    """anchors ``[A, 2]``, floating, on pred's device (not their values: :func:`_check_anchor_values`)."""
    _check_floating(anchors, name)
    if anchors.shape[1] != 2 or anchors.shape[0] < 1:
        raise ValueError(f"{name}: expected shape [A, 2] (w, h in pixels), got {tuple(anchors.shape)}")
    _same_device(pred, pred_name, **{name: anchors})
    return anchors.float()


def _check_anchor_values(anchors: Tensor, name: str) -> None:
    """The fallback's check of the (fp32) anchor values, after every other check of the call."""
    if not anchors.is_meta and not bool((torch.isfinite(anchors) & (anchors > 0)).all()):
        raise ValueError(f"{name}: anchor sizes must be finite and > 0")


def _check_stride(stride, name: str) -> float:
    try:
        s = float(stride)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {stride!r}") from None
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"{name}: expected a positive number, got {stride!r}")
    return s


def _check_pred(pred, name: str, num_anchors: int) -> tuple[Tensor, int]:
    pred = _tensor(pred, name, 4)
    _check_floating(pred, name)
    ch = pred.shape[1]
    if ch % num_anchors or ch // num_anchors < 6:
        raise ValueError(
            f"{name}: channel count {ch} is not A*(5+C) for A={num_anchors} anchors and C>=1 classes "
            f"(shape {tuple(pred.shape)})"
        )
    return _floating(pred, name), ch // num_anchors - 5


def _check_cls_act(cls_act) -> str:
    if not isinstance(cls_act, str) or cls_act not in reference.YOLO_CLS_ACTS:
        raise ValueError(f"cls_act: expected one of {reference.YOLO_CLS_ACTS}, got {cls_act!r}")
    return cls_act


def _check_decode(pred, anchors, stride, scale_xy, cls_act) -> tuple[Tensor, Tensor, float, float, str]:
    """yolo_decode's arguments (not the anchor values: :func:`_check_anchor_values`)."""
    anchors_t = _tensor(anchors, "anchors", 2)
    pred, _ = _check_pred(pred, "pred", max(1, anchors_t.shape[0]))
    anchors = _check_anchors(anchors_t, "anchors", "pred", pred)
    s = _check_stride(stride, "stride")
    sxy = _check_stride(scale_xy, "scale_xy")  # finite and > 0, as a stride
    return pred, anchors, s, sxy, _check_cls_act(cls_act)


def yolo_decode(pred: Tensor, anchors: Tensor, stride: float, scale_xy: float = 1.0,
                cls_act: str = "sigmoid") -> Tensor:
    """Decode one YOLO output map (darknet's yolo / region layer).

    Args:
        pred: ``[B, A*(5+C), H, W]`` raw logits; channel ``a*(5+C) + k`` holds tx, ty, tw,
            th, objectness, then the C class logits of anchor ``a``.
        anchors: ``[A, 2]`` anchor (w, h) in input pixels.
        stride: input pixels per cell.
        scale_xy: darknet's ``scale_x_y`` ``s`` (finite, > 0; AlexeyAB/darknet cfg/yolov4.cfg
            uses 1.2, 1.1, 1.05 for the strides 8, 16, 32): ``cx = (sigmoid(tx) * s - 0.5 * (s - 1)
            + x) * stride``. 1.0 (the default) is YOLOv3's ``(sigmoid(tx) + x) * stride``, bit
            for bit.
        cls_act: ``"sigmoid"`` (YOLOv3 / v4: each class probability is ``sigmoid(logit)``) or
            ``"softmax"`` (YOLOv2's region layer: the softmax over the C class logits,
            computed with the maximum subtracted). Objectness is a sigmoid either way.

    Returns:
        ``[B, A*H*W, 5+C]`` (row ``a*H*W + y*W + x``): cx, cy, w (``exp(min(tw, 10)) *
        anchor_w``), h in pixels, then objectness and class probabilities, computed in fp32
        and returned in ``pred``'s dtype.
    """
    pred, anchors, s, sxy, cls_act = _check_decode(pred, anchors, stride, scale_xy, cls_act)
    if _ext.has_kernel("yolo_decode", pred.device) or _on_meta_with_ext(pred):
        return torch.ops.zoo.yolo_decode(pred, anchors, s, sxy, cls_act)
    _check_anchor_values(anchors, "anchors")
    return reference.yolo_decode(pred, anchors, s, sxy, cls_act)


def _check_scales(preds, anchors, strides, scale_xy=None) -> None:
    """One anchor set, one stride and (unless None) one scale_xy per scale of the non-empty ``preds``."""
    if len(preds) == 0:
        raise ValueError("preds: expected a non-empty list of [B, A*(5+C), H, W] tensors, one per scale")
    if len(anchors) != len(preds):
        raise ValueError(f"anchors: got {len(anchors)} anchor sets for {len(preds)} scales in preds")
    if len(strides) != len(preds):
        raise ValueError(f"strides: got {len(strides)} strides for {len(preds)} scales in preds")
    if scale_xy is not None and len(scale_xy) != len(preds):
        raise ValueError(f"scale_xy: got {len(scale_xy)} values for {len(preds)} scales in preds")


def _scale_xy_list(scale_xy, n: int) -> tuple[list | None, bool]:
    """The API's scale_xy (None, one number, or a sequence / 1-D tensor of one per scale) ->
    ``(list or None, one_number)``: one number is repeated for every scale (and its errors then
    name ``scale_xy``, not ``scale_xy[i]``)."""
    if scale_xy is None:
        return None, False
    ndim = getattr(scale_xy, "ndim", None)  # a tensor or a numpy array
    if ndim is not None and ndim > 1:
        raise ValueError(f"scale_xy: expected None, a number or one number per scale, got an array of shape "
                         f"{tuple(scale_xy.shape)}")
    if ndim == 1 or (isinstance(scale_xy, Sequence) and not isinstance(scale_xy, (str, bytes))):
        return list(scale_xy), False
    return [scale_xy] * n, True


def _check_postprocess(preds, anchors, strides, conf_threshold, iou_threshold, max_det, max_nms, multi_label,
                       scale_xy=None, cls_act="sigmoid", one_scale_xy=False):
    """yolo_postprocess's arguments (lists of equal length; scale_xy None or one per scale) ->
    the op's argument tuple (anchor values not checked: :func:`_check_anchor_values`).
    ``one_scale_xy``: the caller gave one number for every scale (errors name ``scale_xy``)."""
    checked_preds, checked_anchors, checked_strides = [], [], []
    checked_sxy = None if scale_xy is None else []
    num_classes = batch = None
    for i, (p, a, s) in enumerate(zip(preds, anchors, strides)):
        a_t = _tensor(a, f"anchors[{i}]", 2)
        p, c = _check_pred(p, f"preds[{i}]", max(1, a_t.shape[0]))
        if num_classes is None:
            num_classes, batch = c, p.shape[0]
        elif c != num_classes or p.shape[0] != batch:
            raise ValueError(
                f"preds[{i}]: batch {p.shape[0]} and {c} classes differ from preds[0]'s {batch} and {num_classes}"
            )
        _same_device(checked_preds[0] if checked_preds else p, "preds[0]", **{f"preds[{i}]": p})
        checked_anchors.append(_check_anchors(a_t, f"anchors[{i}]", f"preds[{i}]", p))
        checked_preds.append(p)
        checked_strides.append(_check_stride(s, f"strides[{i}]"))
        if scale_xy is not None:
            checked_sxy.append(_check_stride(scale_xy[i], "scale_xy" if one_scale_xy else f"scale_xy[{i}]"))
    return (checked_preds, checked_anchors, checked_strides, _unit_interval(conf_threshold, "conf_threshold"),
            _unit_interval(iou_threshold, "iou_threshold"), _positive_int(max_det, "max_det"),
            _positive_int(max_nms, "max_nms"), bool(multi_label), checked_sxy, _check_cls_act(cls_act))


def yolo_postprocess(
    preds: Sequence[Tensor],
    anchors: Sequence[Tensor] | Tensor,
    strides: Sequence[float],
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_det: int = 300,
    multi_label: bool = False,
    max_nms: int = 30000,
    scale_xy: float | Sequence[float] | None = None,
    cls_act: str = "sigmoid",
) -> list[dict[str, Tensor]]:
    """Detections from raw YOLO maps: decode, score, threshold, cap, class-aware NMS -- fused.

    Args:
        preds: per scale ``[B, A_s*(5+C), H_s, W_s]`` raw logits (same B and C).
        anchors: per scale ``[A_s, 2]`` anchors in pixels (or one ``[S, A, 2]`` tensor).
        strides: per scale stride in pixels.
        conf_threshold: keep a candidate when ``obj * p > conf_threshold`` (``p`` the class
            probability).
        iou_threshold: class-aware NMS threshold.
        max_det: at most this many detections per image (after NMS).
        multi_label: one candidate per (box, class) above the threshold, instead of
            one per box with its best class.
        max_nms: at most this many highest-scoring candidates per image enter NMS.
        scale_xy: darknet's ``scale_x_y`` per scale (see :func:`yolo_decode`): None (1.0 for
            every scale: YOLOv2 / v3), one number for every scale, or a sequence with one
            number per scale (YOLOv4: ``(1.2, 1.1, 1.05)`` for the strides 8, 16, 32).
        cls_act: ``"sigmoid"`` or ``"softmax"`` class probabilities (see :func:`yolo_decode`).

    Returns:
        One dict per image: ``boxes [K, 4]`` xyxy pixels (fp32), ``scores [K]``
        (fp32), ``labels [K]`` (int64), by descending score. The same as decoding
        with :func:`yolo_decode` and running ``torchvision.ops.batched_nms``.
    """
    if isinstance(preds, Tensor) or not isinstance(preds, (list, tuple)):
        raise ValueError("preds: expected a non-empty list of [B, A*(5+C), H, W] tensors, one per scale")
    if isinstance(anchors, Tensor):
        anchors = list(anchors.unbind(0)) if anchors.ndim == 3 else [anchors]
    anchors = list(anchors)
    strides = list(strides)
    sxy, one_sxy = _scale_xy_list(scale_xy, len(preds))
    _check_scales(preds, anchors, strides, sxy)
    args = _check_postprocess(preds, anchors, strides, conf_threshold, iou_threshold, max_det, max_nms, multi_label,
                              sxy, cls_act, one_sxy)
    if args[0][0].is_meta:
        raise ValueError("preds[0]: on meta, which holds no values; yolo_postprocess needs them (the number of "
                         "detections depends on them)")
    if _ext.has_kernel("yolo_postprocess", args[0][0].device):
        boxes, scores, labels, image = torch.ops.zoo.yolo_postprocess(*args)
    else:
        for i, a in enumerate(args[1]):
            _check_anchor_values(a, f"anchors[{i}]")
        boxes, scores, labels, image = reference.yolo_postprocess(*args)
    counts = torch.bincount(image, minlength=args[0][0].shape[0]).tolist()
    return [
        {"boxes": b, "scores": s, "labels": lab}
        for b, s, lab in zip(boxes.split(counts), scores.split(counts), labels.split(counts))
    ]


def yolov1_postprocess(
    out: Tensor,
    grid_size: int = 7,
    num_boxes: int = 2,
    num_classes: int = 20,
    img_size: int | Sequence[int] = 448,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_det: int = 300,
) -> list[dict[str, Tensor]]:
    """YOLOv1's detections from its raw output (darknet's detection layer), in torch.

    Each box of each cell (:func:`zoo.ops.boxes.decode_yolov1`) takes its best class:
    ``score = max_c confidence * p_c`` (label: the first arg-max; darknet's per-class scores
    ``confidence * p_c``, as :func:`yolo_postprocess` scores ``obj * p_c``). Boxes with
    ``score > conf_threshold`` and a finite box (a NaN or inf in ``out`` drops that box) go
    through class-aware NMS (:func:`batched_nms`, suppress when IoU > ``iou_threshold``), and
    the ``max_det`` best are kept. Confidences and class probabilities are taken as the linear
    final layer gives them, as darknet does.

    Args:
        out: ``[B, S*S*(C + 5*num_boxes)]`` raw output (darknet's layout; 1470 values for
            ``S=7, num_boxes=2, C=20``, cfg/yolo.cfg), floating; computed in fp32.
        grid_size: ``S``. num_boxes: boxes per cell. num_classes: ``C``.
        img_size: the network input's size in pixels, ``int`` (square) or ``(h, w)``.
        conf_threshold: in [0, 1]. iou_threshold: in [0, 1]. max_det: a positive int.

    Returns:
        One dict per image: ``boxes [K, 4]`` xyxy input pixels (fp32), ``scores [K]`` (fp32),
        ``labels [K]`` (int64), by descending score.
    """
    if isinstance(img_size, (list, tuple)):
        if len(img_size) != 2:
            raise ValueError(f"img_size: expected an int or (h, w), got {img_size!r}")
        img_h, img_w = img_size
    else:
        img_h = img_w = img_size
    _, _, _, img_h, img_w = _boxes.check_yolov1_args(out, grid_size, num_boxes, num_classes, img_h, img_w,
                                                      ("img_size", "img_size"))
    conf = _unit_interval(conf_threshold, "conf_threshold")
    iou = _unit_interval(iou_threshold, "iou_threshold")
    max_det = _positive_int(max_det, "max_det")
    if out.is_meta:
        raise ValueError("out: on meta, which holds no values; yolov1_postprocess needs them (the number of "
                         "detections depends on them)")
    rows = _boxes.decode_yolov1(out.detach().float(), grid_size, num_boxes, num_classes, img_h, img_w)
    scores, labels = (rows[..., 4:5] * rows[..., 5:]).max(-1)  # [B, N]: each box's best class
    xyxy = _boxes.cxcywh_to_xyxy(rows[..., :4])
    keep = (scores > conf) & torch.isfinite(xyxy).all(-1)
    dets = []
    for b in range(out.shape[0]):
        idx = torch.nonzero(keep[b]).squeeze(1)
        bx, sc, lb = xyxy[b, idx], scores[b, idx], labels[b, idx]
        kept = batched_nms(bx, sc, lb, iou)[:max_det]
        dets.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept]})
    return dets


# ----------------------------------------------------------------------------- Squeeze-and-Excitation


def _se_args_ok(x, w1, b1, w2, b2, gate, act="relu") -> bool:
    """One cheap test of every squeeze_excite argument (the op runs per SE block, so the
    common case must not pay for the messages); :func:`_se_explain` says what is wrong."""
    try:
        _, c, _, _ = x.shape
        cr = w1.shape[0]
        d = x.device
        return isinstance(x, Tensor) and (
            w1.shape == (cr, c) and b1.shape == (cr,) and w2.shape == (c, cr) and b2.shape == (c,) and cr >= 1
            and x.is_floating_point() and w1.is_floating_point() and b1.is_floating_point()
            and w2.is_floating_point() and b2.is_floating_point()
            and w1.device == d and b1.device == d and w2.device == d and b2.device == d
            and gate in reference.SE_GATES and act in reference.SE_ACTS
        )
    except (AttributeError, IndexError, TypeError, ValueError):
        return False


def _se_explain(x, w1, b1, w2, b2, gate, act="relu") -> None:
    """Raise the ``ValueError`` naming what is wrong with squeeze_excite's arguments."""
    x = _tensor(x, "x", 4)
    if not x.is_floating_point():
        raise ValueError(f"x: expected a floating-point tensor, got {x.dtype}")
    c = x.shape[1]
    w1, b1, w2, b2 = (_tensor(t, n, d) for t, n, d in ((w1, "w1", 2), (b1, "b1", 1), (w2, "w2", 2), (b2, "b2", 1)))
    for t, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")):
        if not t.is_floating_point():
            raise ValueError(f"{n}: expected a floating-point tensor, got {t.dtype}")
    cr = w1.shape[0]
    if w1.shape[1] != c or cr < 1:
        raise ValueError(f"w1: expected shape [Cr, C={c}] with Cr >= 1, got {tuple(w1.shape)}")
    if b1.shape[0] != cr:
        raise ValueError(f"b1: expected shape [Cr={cr}], got {tuple(b1.shape)}")
    if tuple(w2.shape) != (c, cr):
        raise ValueError(f"w2: expected shape [C={c}, Cr={cr}], got {tuple(w2.shape)}")
    if b2.shape[0] != c:
        raise ValueError(f"b2: expected shape [C={c}], got {tuple(b2.shape)}")
    _same_device(x, "x", w1=w1, b1=b1, w2=w2, b2=b2)
    if gate not in reference.SE_GATES:
        raise ValueError(f"gate: expected one of {reference.SE_GATES}, got {gate!r}")
    if act not in reference.SE_ACTS:
        raise ValueError(f"act: expected one of {reference.SE_ACTS}, got {act!r}")
    raise ValueError("squeeze_excite: invalid arguments")  # not reached: a check above fires


def squeeze_excite(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, gate: str = "sigmoid", act: str = "relu"
) -> Tensor:
    """Squeeze-and-Excitation: ``y = x * gate(w2 @ act(w1 @ mean_hw(x) + b1) + b2)``.

    Args:
        x: ``[N, C, H, W]`` (NCHW-contiguous, channels_last or strided), fp32/fp16/bf16/fp64
            (other floating dtypes are computed in fp32 and cast back).
        w1: ``[Cr, C]``, b1: ``[Cr]``: the squeeze FC. w2: ``[C, Cr]``, b2: ``[C]``: the excite FC.
        gate: ``"sigmoid"`` or ``"hard_sigmoid"`` (``relu6(u + 3) / 6``).
        act: between the FCs, ``"relu"`` or ``"silu"`` (``h * sigmoid(h)``, EfficientNet's);
            the kernels run both.

    Returns:
        ``y`` like ``x`` (channels_last stays channels_last). Differentiable in x and every
        weight through the fused backward kernel.
    """
    if not _se_args_ok(x, w1, b1, w2, b2, gate, act):
        _se_explain(x, w1, b1, w2, b2, gate, act)
    if x.dtype not in _KERNEL_FLOATS:  # e.g. fp8: the kernels read fp32 / fp64 / fp16 / bf16
        return squeeze_excite(x.float(), w1, b1, w2, b2, gate, act).to(x.dtype)
    if _ext.has_kernel_for("squeeze_excite", x) or _on_meta_with_ext(x):
        return torch.ops.zoo.squeeze_excite(x, w1, b1, w2, b2, gate, act)
    return reference.squeeze_excite(x, w1, b1, w2, b2, gate, act)


def _dense_like(x: Tensor) -> Tensor:
    """An empty tensor in the layout the SE kernels return for ``x``: channels_last when x
    is channels_last (and not also NCHW-contiguous), else NCHW-contiguous."""
    cl = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.empty_like(x, memory_format=torch.channels_last if cl else torch.contiguous_format)


# ----------------------------------------------------------------------------- AdderNet


def _pair(v, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= ``minimum``, as ``(h, w)``."""
    pair = (v, v) if isinstance(v, int) and not isinstance(v, bool) else v
    try:
        a, b = pair
        ok = all(isinstance(t, int) and not isinstance(t, bool) and t >= minimum for t in (a, b))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        kind = "positive int" if minimum >= 1 else "non-negative int"
        raise ValueError(f"{name}: expected a {kind} or a pair of them, got {v!r}")
    return int(a), int(b)


def _check_eta(eta) -> float:
    if eta is None:
        return 0.0
    if isinstance(eta, bool):
        raise ValueError(f"eta: expected a number >= 0 or None, got {eta!r}")
    try:
        f = float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"eta: expected a number >= 0 or None, got {eta!r}") from None
    if not (math.isfinite(f) and f >= 0):
        raise ValueError(f"eta: expected a number >= 0 or None, got {eta!r}")
    return f


def _check_adder_args(x, weight, stride, padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """The metadata checks of adder2d (also made by the fake kernels and, with the same
    messages, by csrc/adder.h). Returns (stride, padding) as pairs."""
    x = _tensor(x, "x", 4)
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"x: expected fp32 or fp64, got {x.dtype}")
    weight = _tensor(weight, "weight", 4)
    if weight.dtype != x.dtype:
        raise ValueError(f"weight: expected x's dtype {x.dtype}, got {weight.dtype}")
    if (_definitely(weight.shape[1] != x.shape[1]) or _definitely(weight.shape[0] < 1)
            or _definitely(weight.shape[2] < 1) or _definitely(weight.shape[3] < 1)):
        raise ValueError(f"weight: expected shape [C_out, C_in={x.shape[1]}, kh, kw] with C_out, kh, kw >= 1, "
                         f"got {tuple(weight.shape)}")
    _same_device(x, "x", weight=weight)
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    h, w = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if _definitely(h < weight.shape[2]) or _definitely(w < weight.shape[3]):
        raise ValueError(f"x: padded input {h}x{w} is smaller than the {weight.shape[2]}x{weight.shape[3]} kernel "
                         f"(shape {tuple(x.shape)}, padding {padding})")
    return stride, padding


def adder2d(x: Tensor, weight: Tensor, stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
            eta: float | None = 0.2) -> Tensor:
    """AdderNet's layer (Chen et al., CVPR 2020): ``y[n, co, p] = -sum_k |X_p[n, k] - W[co, k]|``.

    Args:
        x: ``[N, C_in, H, W]`` fp32 or fp64 (other floating dtypes are computed in fp32 and
            cast back).
        weight: ``[C_out, C_in, kh, kw]`` in x's dtype.
        stride, padding: as a convolution's (int or (h, w)); the padding is zeros.
        eta: the paper's adaptive learning-rate scale. In the backward pass the weight
            gradient ``dW`` (full precision) is replaced by ``dW * eta * sqrt(K) / ||dW||_2``
            (``K = weight.numel()``) before autograd hands it on, so ``weight.grad`` and the
            optimizer see the rescaled gradient. ``None`` or ``0`` disables it.

    Returns:
        ``[N, C_out, Ho, Wo]`` with ``Ho = (H + 2*pad_h - kh) // stride_h + 1`` (``Wo`` likewise).
        Differentiable in ``x`` (``dX_p = sum_co HardTanh(W - X_p) * g``, folded like col2im)
        and ``weight`` (``dW = sum_{n,p} (X_p - W) * g``, then rescaled).
    """
    if isinstance(x, Tensor) and x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
        if isinstance(weight, Tensor) and weight.dtype == x.dtype:
            return adder2d(x.float(), weight.float(), stride, padding, eta).to(x.dtype)
    stride, padding = _check_adder_args(x, weight, stride, padding)
    e = _check_eta(eta)
    if _ext.has_kernel_for("adder2d", x) or _on_meta_with_ext(x):
        return torch.ops.zoo.adder2d(x, weight, list(stride), list(padding), e)
    return reference.adder2d(x, weight, stride, padding, e)


# ----------------------------------------------------------------------------- multiply-accumulates
#
# One formula per op, shared by the flop-counter registrations below and by zoo.tracer (zoo.flow).
# Elementwise work (the pooling, the activations, the gate, the scaling) is not counted, as
# torch.utils.flop_counter counts only convolutions and matrix products.


def se_macs(x_shape: Sequence[int], w1_shape: Sequence[int]) -> int:
    """squeeze_excite's multiply-accumulates: its two FC layers, ``N * (C * Cr + Cr * C)`` for
    ``x [N, C, H, W]`` and ``w1 [Cr, C]`` (what the fallback's two ``linear`` calls count)."""
    n, c, cr = int(x_shape[0]), int(x_shape[1]), int(w1_shape[0])
    return n * (c * cr + cr * c)


def adder_macs(out_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """adder2d's operations, counted as the equivalent convolution's multiply-accumulates (one
    subtract-abs-accumulate per weight and output): ``numel(out) * C_in * kh * kw``."""
    return math.prod(int(d) for d in out_shape) * math.prod(int(d) for d in weight_shape[1:])


def yolo_decode_macs(pred_shape: Sequence[int], num_anchors: int) -> int:
    """yolo_decode's multiply-adds: 4 per box, ``(sigmoid(t_x) + c_x) * stride`` and the same
    for y, ``exp(t_w) * anchor_w`` and the same for h. ``pred [B, A*(5+C), H, W]`` holds
    ``B * A * H * W`` boxes."""
    b, _, h, w = (int(d) for d in pred_shape)
    return 4 * b * int(num_anchors) * h * w


def _register_flop_formulas() -> None:
    """torch.utils.flop_counter formulas (2 FLOPs per MAC) for the zoo ops that multiply-accumulate,
    so FlopCounterMode (and :func:`zoo.registry.count_macs`) counts the fused ops."""
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    if torch.ops.zoo.squeeze_excite not in flop_registry:
        @register_flop_formula(torch.ops.zoo.squeeze_excite)
        def _se_flops(x_shape, w1_shape, *args, out_shape=None, **kwargs) -> int:
            return 2 * se_macs(x_shape, w1_shape)

    if torch.ops.zoo.adder2d not in flop_registry:
        @register_flop_formula(torch.ops.zoo.adder2d)
        def _adder_flops(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
            return 2 * adder_macs(out_shape, weight_shape)


# ----------------------------------------------------------------------------- fake kernels


def _register_python_kernels() -> None:
    """Fake (meta) kernels for torch.compile. (squeeze_excite's autograd is registered in C++,
    csrc/autograd.cpp: a Python formula cost about 13 us per call on a CPU.)"""
    # The fakes make the metadata checks of the real kernels (shapes, dtypes, devices,
    # arguments), so that bad input fails the same way under torch.compile or on "meta".
    @torch.library.register_fake("zoo::nms")
    def _nms_fake(boxes, scores, iou_threshold):
        _check_boxes_scores(boxes, scores)
        _unit_interval(iou_threshold, "iou_threshold")
        n = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((n,), dtype=torch.int64)

    @torch.library.register_fake("zoo::batched_nms")
    def _batched_nms_fake(boxes, scores, idxs, iou_threshold):
        boxes, scores = _check_boxes_scores(boxes, scores, allow_flat_empty=True)
        _check_idxs(idxs, boxes.shape[0], boxes)
        _unit_interval(iou_threshold, "iou_threshold")
        n = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((n,), dtype=torch.int64)

    @torch.library.register_fake("zoo::yolo_decode")
    def _yolo_decode_fake(pred, anchors, stride, scale_xy=1.0, cls_act="sigmoid"):
        _check_decode(pred, anchors, stride, scale_xy, cls_act)
        b, ch, h, w = pred.shape
        a = anchors.shape[0]
        return pred.new_empty((b, a * h * w, ch // a))

    @torch.library.register_fake("zoo::yolo_postprocess")
    def _yolo_postprocess_fake(preds, anchors, strides, conf_threshold, iou_threshold, max_det, max_nms,
                               multi_label, scale_xy=None, cls_act="sigmoid"):
        _check_scales(preds, anchors, strides, scale_xy)
        _check_postprocess(preds, anchors, strides, conf_threshold, iou_threshold, max_det, max_nms, multi_label,
                           scale_xy, cls_act)
        k = torch.library.get_ctx().new_dynamic_size()
        p = preds[0]
        return (
            p.new_empty((k, 4), dtype=torch.float32),
            p.new_empty((k,), dtype=torch.float32),
            p.new_empty((k,), dtype=torch.int64),
            p.new_empty((k,), dtype=torch.int64),
        )


    @torch.library.register_fake("zoo::squeeze_excite")
    def _squeeze_excite_fake(x, w1, b1, w2, b2, gate, act="relu"):
        if not _se_args_ok(x, w1, b1, w2, b2, gate, act):
            _se_explain(x, w1, b1, w2, b2, gate, act)
        return _dense_like(x)

    @torch.library.register_fake("zoo::squeeze_excite_backward")
    def _squeeze_excite_backward_fake(grad_y, x, w1, b1, w2, b2, gate, output_mask, act="relu"):
        if not _se_args_ok(x, w1, b1, w2, b2, gate, act):
            _se_explain(x, w1, b1, w2, b2, gate, act)
        _check_floating(grad_y, "grad_y")
        if grad_y.ndim != x.ndim or any(_definitely(a != b) for a, b in zip(grad_y.shape, x.shape)):
            raise ValueError(f"grad_y: expected x's shape {tuple(x.shape)}, got {tuple(grad_y.shape)}")
        _same_device(x, "x", grad_y=grad_y)
        grads = (_dense_like(x), torch.empty_like(w1), torch.empty_like(b1), torch.empty_like(w2), torch.empty_like(b2))
        return tuple(g if wanted else None for g, wanted in zip(grads, output_mask))


    @torch.library.register_fake("zoo::adder2d")
    def _adder2d_fake(x, weight, stride, padding, eta):
        stride, padding = _check_adder_args(x, weight, stride, padding)
        _check_eta(eta)
        ho, wo = reference.adder2d_out_size(x.shape[2], x.shape[3], weight.shape[2], weight.shape[3], stride, padding)
        return x.new_empty((x.shape[0], weight.shape[0], ho, wo))

    @torch.library.register_fake("zoo::adder2d_backward")
    def _adder2d_backward_fake(grad_y, x, weight, stride, padding, output_mask):
        stride, padding = _check_adder_args(x, weight, stride, padding)
        _check_floating(grad_y, "grad_y")
        ho, wo = reference.adder2d_out_size(x.shape[2], x.shape[3], weight.shape[2], weight.shape[3], stride, padding)
        want = (x.shape[0], weight.shape[0], ho, wo)
        if grad_y.ndim != 4 or any(_definitely(a != b) for a, b in zip(grad_y.shape, want)):
            raise ValueError(f"grad_y: expected shape {want}, got {tuple(grad_y.shape)}")
        _same_device(x, "x", grad_y=grad_y)
        return (torch.empty_like(x) if output_mask[0] else None,
                torch.empty_like(weight) if output_mask[1] else None)

    # adder2d's autograd, registered once for every device: the backward kernel gives the
    # paper's dX and full-precision dW, and the rescaling by eta happens here, so
    # weight.grad holds the rescaled gradient (as the fallback's Adder2dFunction does).
    def _adder2d_setup(ctx, inputs, output):
        x, weight, stride, padding, eta = inputs
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, eta)

    def _adder2d_backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        stride, padding, eta = ctx.conf
        mask = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1])]
        dx, dw = torch.ops.zoo.adder2d_backward(grad_y.contiguous(), x, weight, stride, padding, mask)
        if dw is not None:
            dw = reference.adder2d_rescale(dw, eta)
        return dx, dw, None, None, None

    torch.library.register_autograd("zoo::adder2d", _adder2d_backward, setup_context=_adder2d_setup)


if _ext.available():
    _register_python_kernels()
    _register_flop_formulas()
