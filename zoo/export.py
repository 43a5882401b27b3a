"""Export a trained zoo model: ONNX (``torch.onnx.export(..., dynamo=True)``) or a
``torch.export`` program (``.pt2``). ``python -m zoo export`` is :func:`export`.

Two graphs per model:

* raw: ``images [B, 3, H, W] -> the net's output`` (for a YOLO grid net one raw map
  ``[B, A*(5+C), H/s, W/s]`` per stride, by increasing stride; for YOLOv1 ``[B, S*S*(C+5B)]``);
* with post-processing (detection only): the same net followed by decode + score + threshold
  + class-aware NMS + the per-image cap, with the outputs of ``torch.ops.zoo.yolo_postprocess``:
  ``boxes [K, 4]`` xyxy fp32 pixels of the network input, ``scores [K]`` fp32, ``labels [K]``
  int64, ``image_index [K]`` int64 (rows grouped by image, each image's by descending score).
  The thresholds are the checkpoint's ``conf_threshold`` / ``iou_threshold`` / ``max_det`` unless
  overridden.

The batch dimension is dynamic (except YOLOv1 with post-processing, whose torch post-processing
loops over the images: exported for one image); height and width are fixed at export
(``img_size``, default the checkpoint's).

``.pt2`` keeps the zoo's custom ops as ``torch.ops.zoo.*`` nodes (their fake kernels give the
shapes), so loading one needs ``import zoo`` first (it registers the ops):
``import zoo; prog = torch.export.load("m.pt2"); boxes, scores, labels, image = prog.module()(x)``.

ONNX has only standard operators (default domain, opset 18): :func:`onnx_translations` maps each
zoo op the exported graph may hold to ONNX:

* ``zoo::squeeze_excite``: ReduceMean, Gemm, Relu (or ``h * Sigmoid(h)`` for SiLU), Sigmoid
  (or ``HardSigmoid(alpha=1/6, beta=0.5)``), Mul;
* ``zoo::yolo_decode``: the darknet decode in Sigmoid / Exp / Min / Softmax arithmetic;
* ``zoo::yolo_postprocess``: that decode, then ReduceMax + ArgMax (best class, first on ties),
  TopK (the ``max_nms`` cap; TopK keeps the lower index first on ties, as the op's stable sort),
  NonMaxSuppression with one score row per class (class-aware), then a sort and the
  ``max_det`` cap per image;
* ``zoo::nms`` / ``zoo::batched_nms`` (YOLOv1's post-processing calls batched_nms):
  NonMaxSuppression.

ONNX NonMaxSuppression keeps a box when ``score > score_threshold`` and suppresses one when
``IoU > iou_threshold`` (both strict: onnxruntime 1.32 keeps a score equal to the threshold out
and an IoU equal to the threshold in), the op's rules. The IoU threshold is passed as the
largest fp32 value <= it, so an fp32 IoU compares with it as the op compares (in double).
"""
from __future__ import annotations

import math
import os
import re
import torch
from torch import Tensor, nn

FORMATS = ("onnx", "pt2")

#: the ONNX opset of the translations (and of the exported graph)
ONNX_OPSET = 18

_EXTRA_HINT = 'pip install -e ".[export]"  (the "export" extra: onnx, onnxscript, onnxruntime)'

__all__ = ["FORMATS", "ONNX_OPSET", "GridPostprocess", "RawNet", "YOLOv1Postprocess", "export", "export_module",
           "load_task", "onnx_translations", "require_onnx", "save_onnx", "save_pt2"]


def require_onnx(runtime: bool = False):
    """Import onnx and onnxscript (and onnxruntime with ``runtime``); ``ImportError`` naming the
    ``export`` extra when one is missing. Returns the onnxruntime module or None."""
    missing = []
    for mod in ("onnx", "onnxscript") + (("onnxruntime",) if runtime else ()):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}, which is not installed: {_EXTRA_HINT}")
    if runtime:
        import onnxruntime

        return onnxruntime
    return None


# ----------------------------------------------------------------------------- loading


def _task_classes() -> dict[str, type]:
    from .tasks import TASK_CLASSES

    return TASK_CLASSES


def load_task(name: str, ckpt_path: str | os.PathLike | None):
    """The task module (e.g. :class:`zoo.tasks.Detector`) of the registered model ``name``,
    rebuilt from the Lightning checkpoint ``ckpt_path`` (read weights-only, as every zoo file).

    ``ValueError`` when ``ckpt_path`` is None or not a checkpoint of ``name``;
    ``FileNotFoundError`` when there is no such file; ``KeyError`` for an unknown ``name``."""
    from .registry import get_spec
    from .serialization import load_file

    spec = get_spec(name)
    if ckpt_path is None:
        raise ValueError("ckpt_path: a checkpoint is needed (a Lightning checkpoint of the trained model, "
                         "as `python -m zoo fit` writes); export does not export untrained weights")
    path = os.fspath(ckpt_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ckpt_path: no such checkpoint file: {path!r}")
    try:
        cls = _task_classes()[spec.task]
    except KeyError:
        raise ValueError(f"name: no task module for {spec.task!r} models ({name!r})") from None
    checkpoint = load_file(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"ckpt_path: {path!r} is not a Lightning checkpoint (no 'state_dict')")
    hparams = checkpoint.get(cls.CHECKPOINT_HYPER_PARAMS_KEY) or {}
    arch = hparams.get("arch")
    if arch is None:
        raise ValueError(f"ckpt_path: {path!r} has no saved 'arch' hyper-parameter: not a checkpoint of a zoo task")
    if arch != name:
        raise ValueError(f"ckpt_path: {path!r} is a checkpoint of {arch!r}, not {name!r}")
    del checkpoint
    task = cls.load_from_checkpoint(path, map_location="cpu")
    return task.eval()


# ----------------------------------------------------------------------------- modules to export


class RawNet(nn.Module):
    """The net alone: ``images -> raw outputs`` (a list of maps becomes a tuple)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor):
        out = self.net(images)
        return tuple(out) if isinstance(out, (list, tuple)) else out


class GridPostprocess(nn.Module):
    """A YOLO grid net (v2 / v3 / v4) followed by ``torch.ops.zoo.yolo_postprocess``:
    ``images [B, 3, H, W] -> (boxes [K, 4] xyxy fp32, scores [K], labels [K] int64,
    image_index [K] int64)``, the flat form of :func:`zoo.ops.yolo_postprocess` (best class per
    box, ``multi_label=False``)."""

    def __init__(self, net: nn.Module, conf_threshold: float, iou_threshold: float, max_det: int,
                 max_nms: int = 30000) -> None:
        super().__init__()
        from . import ops

        self.net = net
        self.strides = [float(s) for s in net.strides]
        self.conf_threshold = ops._unit_interval(conf_threshold, "conf_threshold")
        self.iou_threshold = ops._unit_interval(iou_threshold, "iou_threshold")
        self.max_det = ops._positive_int(max_det, "max_det")
        self.max_nms = ops._positive_int(max_nms, "max_nms")
        self.scale_xy = [float(s) for s in getattr(net, "scale_xy", [1.0] * len(self.strides))]
        self.cls_act = str(getattr(net, "cls_act", "sigmoid"))

    def forward(self, images: Tensor):
        preds = [p.float() for p in self.net(images)]
        anchors = [a for a in self.net.anchors.float().unbind(0)]
        return torch.ops.zoo.yolo_postprocess(preds, anchors, self.strides, self.conf_threshold, self.iou_threshold,
                                              self.max_det, self.max_nms, False, self.scale_xy, self.cls_act)


class YOLOv1Postprocess(nn.Module):
    """YOLOv1 followed by :func:`zoo.ops.yolov1_postprocess` (torch + ``zoo::batched_nms``),
    flattened to ``(boxes [K, 4], scores [K], labels [K], image_index [K])`` like
    :class:`GridPostprocess`. The batch is unrolled image by image, so it is fixed at export."""

    def __init__(self, net: nn.Module, conf_threshold: float, iou_threshold: float, max_det: int) -> None:
        super().__init__()
        from . import ops

        self.net = net
        self.conf_threshold = ops._unit_interval(conf_threshold, "conf_threshold")
        self.iou_threshold = ops._unit_interval(iou_threshold, "iou_threshold")
        self.max_det = ops._positive_int(max_det, "max_det")

    def forward(self, images: Tensor):
        from . import ops

        net = self.net
        dets = ops.yolov1_postprocess(net(images).float(), int(net.grid_size), int(net.num_boxes),
                                      int(net.num_classes), int(net.img_size), self.conf_threshold,
                                      self.iou_threshold, self.max_det)
        image = [torch.full_like(d["labels"], i) for i, d in enumerate(dets)]
        return (torch.cat([d["boxes"] for d in dets]), torch.cat([d["scores"] for d in dets]),
                torch.cat([d["labels"] for d in dets]), torch.cat(image))


def export_module(task, with_postprocess: bool = False, conf_threshold: float | None = None,
                  iou_threshold: float | None = None, max_det: int | None = None) -> nn.Module:
    """The ``nn.Module`` that :func:`export` exports for ``task`` (in eval mode): :class:`RawNet`,
    or with ``with_postprocess`` (a detection task) :class:`GridPostprocess` /
    :class:`YOLOv1Postprocess` with the task's thresholds (the arguments that are not None win)."""
    net = task.net
    if not with_postprocess:
        return RawNet(net).eval()
    hp = task.hparams
    if "conf_threshold" not in hp:
        raise ValueError(f"with_postprocess: only detection models have post-processing "
                         f"({hp.get('arch')!r} is not one)")
    conf = hp["conf_threshold"] if conf_threshold is None else conf_threshold
    iou = hp["iou_threshold"] if iou_threshold is None else iou_threshold
    det = hp["max_det"] if max_det is None else max_det
    if getattr(net, "output_kind", "grid") == "yolov1":
        return YOLOv1Postprocess(net, conf, iou, det).eval()
    return GridPostprocess(net, conf, iou, det).eval()


def _input_shape(task, name: str, img_size: int | None) -> tuple[int, ...]:
    """The example input's shape (batch 2: the batch dimension is exported as dynamic, and a
    size-1 example would be specialised)."""
    from .registry import get_spec

    shape = list(get_spec(name).input_size)
    hp_size = task.hparams.get("img_size")
    size = img_size if img_size is not None else hp_size
    if img_size is not None and (isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0):
        raise ValueError(f"img_size: expected a positive int, got {img_size!r}")
    if size is not None:
        shape[-2:] = [int(size), int(size)]
    in_chans = getattr(task.net, "in_chans", None)
    if in_chans is not None:
        shape[-3] = int(in_chans)
    net = task.net
    if getattr(net, "output_kind", None) == "yolov1" and shape[-1] != int(net.img_size):
        raise ValueError(f"img_size: {name} takes {net.img_size}x{net.img_size} images only (its head is fully "
                         f"connected), got {shape[-1]}")
    strides = getattr(net, "strides", None)
    if strides is not None and shape[-1] % max(int(s) for s in strides):
        raise ValueError(f"img_size: expected a multiple of {max(int(s) for s in strides)} for {name}, got {shape[-1]}")
    return (2, *shape)


# ----------------------------------------------------------------------------- ONNX translations


def _fp32_below(value: float) -> float:
    """The largest fp32 value <= ``value``."""
    from .ops.reference import float_threshold

    return float_threshold(value)


def onnx_translations() -> dict:
    """``{torch op overload: onnxscript-traced function}`` for ``torch.onnx.export``'s
    ``custom_translation_table``: every zoo op an exported zoo graph may hold, in standard ONNX
    operators (opset 18). Needs onnxscript (the ``export`` extra)."""
    require_onnx()
    from onnxscript import opset18 as op

    def const_f(v: float):
        return op.Constant(value_float=float(v))

    def const_i(*v: int):
        return op.Constant(value_ints=[int(x) for x in v])

    def squeeze_excite(x, w1, b1, w2, b2, gate: str = "sigmoid", act: str = "relu"):
        s = op.ReduceMean(x, const_i(2, 3), keepdims=0)  # [N, C]
        h = op.Gemm(s, op.CastLike(w1, x), op.CastLike(b1, x), transB=1)  # [N, Cr]
        z = op.Relu(h) if act == "relu" else op.Mul(h, op.Sigmoid(h))
        u = op.Gemm(z, op.CastLike(w2, x), op.CastLike(b2, x), transB=1)  # [N, C]
        g = op.Sigmoid(u) if gate == "sigmoid" else op.HardSigmoid(u, alpha=1.0 / 6.0, beta=0.5)
        return op.Mul(x, op.Unsqueeze(g, const_i(2, 3)))

    def decode_level(pred, anchors, stride: float, scale_xy: float, cls_act: str):
        """``pred [B, A*(5+C), H, W]`` -> fp32 ``[B, A*H*W, 5+C]`` (cx, cy, w, h, obj, class probs)."""
        p = op.Cast(pred, to=1)  # fp32
        b = op.Shape(p, start=0, end=1)
        h = op.Shape(p, start=2, end=3)
        w = op.Shape(p, start=3, end=4)
        a = op.Shape(anchors, start=0, end=1)
        hw = op.Mul(h, w)
        p = op.Reshape(p, op.Concat(b, a, const_i(-1), hw, axis=0))  # [B, A, 5+C, HW]
        p = op.Transpose(p, perm=[0, 1, 3, 2])  # [B, A, HW, 5+C]
        cell = op.Range(op.Constant(value_int=0), op.Squeeze(hw, const_i(0)), op.Constant(value_int=1))
        w0 = op.Squeeze(w, const_i(0))
        grid = op.Cast(op.Concat(op.Unsqueeze(op.Mod(cell, w0), const_i(1)),
                                 op.Unsqueeze(op.Div(cell, w0), const_i(1)), axis=1), to=1)  # [HW, 2] (x, y)
        txy = op.Slice(p, const_i(0), const_i(2), const_i(3))
        twh = op.Slice(p, const_i(2), const_i(4), const_i(3))
        tobj = op.Slice(p, const_i(4), const_i(5), const_i(3))
        tcls = op.Slice(p, const_i(5), const_i(2**62), const_i(3))
        sxy = op.Sigmoid(txy)
        if scale_xy != 1.0:  # darknet's scale_x_y: sigmoid * s - (s - 1) / 2
            sxy = op.Sub(op.Mul(sxy, const_f(scale_xy)), const_f(0.5 * (scale_xy - 1.0)))
        xy = op.Mul(op.Add(sxy, grid), const_f(stride))
        anc = op.Reshape(op.Cast(anchors, to=1), op.Concat(const_i(1), a, const_i(1, 2), axis=0))
        wh = op.Mul(op.Exp(op.Min(twh, const_f(10.0))), anc)
        cls = op.Sigmoid(tcls) if cls_act == "sigmoid" else op.Softmax(tcls, axis=-1)
        out = op.Concat(xy, wh, op.Sigmoid(tobj), cls, axis=-1)
        return op.Reshape(out, op.Concat(b, const_i(-1), op.Shape(out, start=3, end=4), axis=0))

    def check_cls_act(cls_act: str) -> None:
        if cls_act not in ("sigmoid", "softmax"):
            raise ValueError(f"cls_act: expected 'sigmoid' or 'softmax', got {cls_act!r}")

    def yolo_decode(pred, anchors, stride: float, scale_xy: float = 1.0, cls_act: str = "sigmoid"):
        check_cls_act(cls_act)
        return op.CastLike(decode_level(pred, anchors, float(stride), float(scale_xy), cls_act), pred)

    def scale_list(scale_xy, n: int) -> list[float]:
        if scale_xy is None:
            return [1.0] * n
        if isinstance(scale_xy, (int, float)):
            return [float(scale_xy)] * n
        return [float(s) for s in scale_xy]

    def nms_sorted(boxes, scores, labels, conf: float, iou: float, per_class_cap: int, num_classes):
        """NonMaxSuppression over ``boxes [B, K, 4]`` whose ``scores [B, K]`` are in descending order
        (ties: the order wanted), one score row per class of ``labels [B, K]`` (``num_classes``:
        a 1-D int64 tensor). Returns ``(batch [M], position [M])`` of the kept boxes, sorted by
        batch, then position (so by descending score)."""
        classes = op.Range(op.Constant(value_int=0), op.Squeeze(num_classes, const_i(0)), op.Constant(value_int=1))
        onehot = op.Equal(op.Unsqueeze(labels, const_i(1)), op.Unsqueeze(classes, const_i(0, 2)))  # [B, C, K]
        per_class = op.Where(onehot, op.Unsqueeze(scores, const_i(1)), const_f(-math.inf))
        sel = op.NonMaxSuppression(
            boxes, per_class, op.Constant(value_ints=[int(per_class_cap)]),
            op.Constant(value_floats=[_fp32_below(iou)]), op.Constant(value_floats=[conf]))  # [M, 3]
        bi = op.Squeeze(op.Slice(sel, const_i(0), const_i(1), const_i(1)), const_i(1))
        pos = op.Squeeze(op.Slice(sel, const_i(2), const_i(3), const_i(1)), const_i(1))
        k = op.Shape(scores, start=1, end=2)
        key = op.Add(op.Mul(bi, k), pos)
        _, order = op.TopK(key, op.Shape(key), largest=0, sorted=1)
        return op.Gather(bi, order), op.Gather(pos, order)

    def cap_per_image(bi, batch, cap: int):
        """Mask ``[M]``: True for the first ``cap`` entries of each image (``bi`` sorted)."""
        images = op.Range(op.Constant(value_int=0), op.Squeeze(batch, const_i(0)), op.Constant(value_int=1))
        counts = op.ReduceSum(op.Cast(op.Equal(op.Unsqueeze(bi, const_i(1)), op.Unsqueeze(images, const_i(0))), to=7),
                              const_i(0), keepdims=0)  # [B]
        starts = op.CumSum(counts, op.Constant(value_int=0), exclusive=1)
        rank = op.Sub(op.Range(op.Constant(value_int=0), op.Squeeze(op.Shape(bi), const_i(0)),
                               op.Constant(value_int=1)), op.Gather(starts, bi))
        return op.Less(rank, op.Constant(value_int=int(cap)))

    def yolo_postprocess(preds, anchors, strides, conf_threshold: float, iou_threshold: float, max_det: int,
                         max_nms: int, multi_label: bool, scale_xy=None, cls_act: str = "sigmoid"):
        check_cls_act(cls_act)
        scales = scale_list(scale_xy, len(preds))
        decoded = op.Concat(*[decode_level(p, a, float(s), sx, cls_act)
                              for p, a, s, sx in zip(preds, anchors, strides, scales)], axis=1)  # [B, N, 5+C]
        xy = op.Slice(decoded, const_i(0), const_i(2), const_i(2))
        half = op.Div(op.Slice(decoded, const_i(2), const_i(4), const_i(2)), const_f(2.0))
        boxes = op.Concat(op.Sub(xy, half), op.Add(xy, half), axis=-1)  # [B, N, 4] xyxy
        obj = op.Slice(decoded, const_i(4), const_i(5), const_i(2))
        cls_scores = op.Mul(obj, op.Slice(decoded, const_i(5), const_i(2**62), const_i(2)))  # [B, N, C]
        batch = op.Shape(decoded, start=0, end=1)
        num_classes = op.Shape(cls_scores, start=2, end=3)
        if multi_label:  # one entry per (row, class), in (row, class) order
            flat = op.Reshape(cls_scores, op.Concat(batch, const_i(-1), axis=0))  # [B, N*C]
            entry_boxes_of = lambda idx: op.Div(idx, num_classes)  # noqa: E731
            entry_labels_of = lambda idx: op.Mod(idx, num_classes)  # noqa: E731
        else:  # one entry per row: its best class (the first on ties)
            flat = op.ReduceMax(cls_scores, const_i(2), keepdims=0)  # [B, N]
            best = op.ArgMax(cls_scores, axis=2, keepdims=0, select_last_index=0)  # [B, N]
            entry_boxes_of = lambda idx: idx  # noqa: E731
            entry_labels_of = lambda idx: op.GatherElements(best, idx, axis=1)  # noqa: E731
        # the max_nms cap: the highest scores first, ties by the lower index (the op's stable sort);
        # entries at or under the threshold are left to NonMaxSuppression's score_threshold
        k = op.Min(op.Shape(flat, start=1, end=2), op.Constant(value_ints=[int(max_nms)]))
        top_s, top_i = op.TopK(flat, k, axis=1, largest=1, sorted=1)  # [B, k]
        rows = entry_boxes_of(top_i)
        top_l = entry_labels_of(top_i)
        idx4 = op.Expand(op.Unsqueeze(rows, const_i(2)), op.Concat(batch, k, const_i(4), axis=0))
        top_b = op.GatherElements(boxes, idx4, axis=1)  # [B, k, 4]
        bi, pos = nms_sorted(top_b, top_s, top_l, float(conf_threshold), float(iou_threshold), int(max_det),
                             num_classes)
        keep = cap_per_image(bi, batch, int(max_det))
        bi, pos = op.Compress(bi, keep, axis=0), op.Compress(pos, keep, axis=0)
        flat_i = op.Add(op.Mul(bi, op.Squeeze(k, const_i(0))), pos)
        out_boxes = op.Gather(op.Reshape(top_b, const_i(-1, 4)), flat_i)
        out_scores = op.Gather(op.Reshape(top_s, const_i(-1)), flat_i)
        out_labels = op.Cast(op.Gather(op.Reshape(top_l, const_i(-1)), flat_i), to=7)
        return out_boxes, out_scores, out_labels, bi

    def single_nms(boxes, scores, labels, iou: float):
        """Indices of the boxes kept by class-aware NMS (``labels`` int64, or None for one class),
        by descending score (ties: lower index first), as zoo::batched_nms returns them."""
        b = op.Cast(boxes, to=1)
        s = op.Cast(scores, to=1)
        n = op.Shape(s)
        top_s, order = op.TopK(s, n, largest=1, sorted=1)  # stable: ties keep the lower index first
        top_b = op.Unsqueeze(op.Gather(b, order), const_i(0))  # [1, N, 4]
        if labels is None:
            top_l = op.Expand(const_i(0), n)
            num_classes = const_i(1)
        else:
            top_l = op.Gather(op.Cast(labels, to=7), order)
            # class ids are shifted to 0..max-min (NonMaxSuppression numbers its score rows)
            top_l = op.Sub(top_l, op.ReduceMin(top_l, keepdims=1))
            num_classes = op.Add(op.ReduceMax(top_l, keepdims=1), const_i(1))
        _, pos = nms_sorted(top_b, op.Unsqueeze(top_s, const_i(0)), op.Unsqueeze(top_l, const_i(0)),
                            -math.inf, iou, 2**62, num_classes)
        return op.Gather(order, pos)

    def batched_nms(boxes, scores, idxs, iou_threshold: float):
        return single_nms(boxes, scores, idxs, float(iou_threshold))

    def nms(boxes, scores, iou_threshold: float):
        return single_nms(boxes, scores, None, float(iou_threshold))

    zoo = torch.ops.zoo
    return {
        zoo.squeeze_excite.default: squeeze_excite,
        zoo.yolo_decode.default: yolo_decode,
        zoo.yolo_postprocess.default: yolo_postprocess,
        zoo.batched_nms.default: batched_nms,
        zoo.nms.default: nms,
    }


# ----------------------------------------------------------------------------- writing files


def _batch_dim() -> tuple[dict]:
    """``dynamic_shapes`` for one input whose dimension 0 (the batch) is dynamic."""
    return ({0: torch.export.Dim("batch", min=1)},)


def _output_names(module: nn.Module, example: Tensor) -> list[str]:
    if isinstance(module, (GridPostprocess, YOLOv1Postprocess)):
        return ["boxes", "scores", "labels", "image_index"]
    with torch.no_grad():
        out = module(example)
    if isinstance(out, (tuple, list)):
        strides = getattr(getattr(module, "net", None), "strides", None)
        if strides is not None and len(strides) == len(out):
            return [f"stride{int(s)}" for s in strides]
        return [f"output{i}" for i in range(len(out))]
    return ["output"]


def save_onnx(module: nn.Module, example: Tensor, path: str | os.PathLike, dynamic_batch: bool = True):
    """Export ``module`` (called on ``example``) to the ONNX file ``path`` with the zoo ops
    translated (:func:`onnx_translations`); input ``images``, outputs named (the stride of each
    raw map; ``boxes``, ``scores``, ``labels``, ``image_index`` after post-processing).
    Returns the ``torch.onnx.ONNXProgram``."""
    require_onnx()
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module, (example,), dynamo=True, custom_translation_table=onnx_translations(),
                input_names=["images"], output_names=_output_names(module, example),
                dynamic_shapes=_batch_dim() if dynamic_batch else None,
                opset_version=ONNX_OPSET, external_data=False, verbose=False, report=False,
            )
        except torch.onnx.OnnxExporterError as err:
            missing = re.search(r"No ONNX function found for <OpOverload\(op='zoo\.(\w+)'", str(err))
            if missing is None:
                raise
            raise ValueError(f"format: the model runs zoo::{missing.group(1)}, which has no ONNX translation; "
                             "export it with format 'pt2'") from err
    program.save(os.fspath(path), external_data=False)
    return program


def save_pt2(module: nn.Module, example: Tensor, path: str | os.PathLike, dynamic_batch: bool = True):
    """``torch.export.export`` of ``module`` on ``example`` saved to ``path`` (``torch.export.save``);
    the zoo ops stay ``torch.ops.zoo.*`` nodes. Returns the ``ExportedProgram``."""
    with torch.no_grad():
        program = torch.export.export(module, (example,),
                                      dynamic_shapes=_batch_dim() if dynamic_batch else None)
    torch.export.save(program, os.fspath(path))
    return program


def export(name: str, ckpt_path: str | os.PathLike | None, format: str = "onnx",
           output: str | os.PathLike | None = None, with_postprocess: bool = False, img_size: int | None = None,
           conf_threshold: float | None = None, iou_threshold: float | None = None, max_det: int | None = None,
           dynamic_batch: bool = True) -> str:
    """Export the registered model ``name`` with the weights of the checkpoint ``ckpt_path`` to
    ``format`` (``"onnx"`` or ``"pt2"``) and return the written path.

    Args:
        output: the file (default ``<name>[-postprocess].<format>`` in the current directory).
        with_postprocess: end the graph in decode + NMS (detection models).
        img_size: the input's height and width (default: the checkpoint's ``img_size``, else the
            model's default input size).
        conf_threshold, iou_threshold, max_det: override the checkpoint's.
        dynamic_batch: export the batch dimension as dynamic (otherwise fixed at 2). YOLOv1 with
            post-processing is always exported for one image at a time (its post-processing
            loops over the images).
    """
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {format!r}")
    if format == "onnx":
        require_onnx()
    task = load_task(name, ckpt_path)
    module = export_module(task, with_postprocess, conf_threshold, iou_threshold, max_det)
    example = torch.rand(_input_shape(task, name, img_size))
    if isinstance(module, YOLOv1Postprocess):  # (its post-processing loops over the images: one image)
        example, dynamic_batch = example[:1], False
    if output is None:
        output = f"{name}{'-postprocess' if with_postprocess else ''}.{format}"
    output = os.fspath(output)
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise ValueError(f"output: the folder {parent!r} does not exist")
    (save_onnx if format == "onnx" else save_pt2)(module, example, output, dynamic_batch)
    return output

