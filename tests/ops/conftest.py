"""Input generators shared by the op tests (CPU and CUDA)."""
from __future__ import annotations

import math
import os

import pytest
import torch

COCO_ANCHORS = torch.tensor(
    [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]],
    dtype=torch.float32,
).view(3, 3, 2)
STRIDES = [8.0, 16.0, 32.0]


def clustered_boxes(n: int, seed: int = 0, extent: float = 1000.0, quantum: float | None = 1 / 16,
                    objects: int | None = None):
    """``n`` boxes around ``objects`` objects (default n/20: heavy overlap, like raw detector
    output) and unique scores. Coordinates are multiples of ``quantum`` in [0, extent] so that
    torchvision's batched_nms coordinate-offset trick is exact in fp32."""
    g = torch.Generator().manual_seed(seed)
    k = objects or max(1, n // 20)
    centers = torch.rand(k, 2, generator=g) * extent * 0.9 + extent * 0.05
    sizes = torch.rand(k, 2, generator=g) * extent * 0.08 + extent * 0.02
    which = torch.randint(0, k, (n,), generator=g)
    c = centers[which] + torch.randn(n, 2, generator=g) * 0.1 * sizes[which]
    wh = sizes[which] * (1 + 0.1 * torch.randn(n, 2, generator=g)).clamp(min=0.5)
    boxes = torch.cat([c - wh / 2, c + wh / 2], 1).clamp(0, extent)
    if quantum:
        boxes = (boxes / quantum).round() * quantum
    scores = torch.randperm(n, generator=g).float() / max(n, 1)
    return boxes, scores


def uniform_boxes(n: int, seed: int = 0, extent: float = 1000.0, max_size: float = 60.0):
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(n, 2, generator=g) * extent * 16).round() / 16
    wh = (torch.rand(n, 2, generator=g) * max_size * 16).round() / 16
    return torch.cat([xy, xy + wh], 1), torch.randperm(n, generator=g).float() / max(n, 1)


def nms_adversarial_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Named (boxes, scores) inputs that stress NMS: ties, duplicates, degenerate boxes,
    far-away and negative coordinates, everything suppressed, nothing at all."""
    g = torch.Generator().manual_seed(3)
    boxes, _ = clustered_boxes(400, seed=4)
    one_box = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(300, 1)
    return {
        "all_tied": (boxes, torch.full((400,), 0.5)),
        "few_levels": (boxes, torch.randint(0, 4, (400,), generator=g).float()),
        "duplicates": (boxes[:50].repeat(8, 1), torch.rand(400, generator=g)),
        "duplicates_tied": (boxes[:20].repeat(20, 1), torch.ones(400)),
        "zero_area": (torch.cat([boxes[:200, :2], boxes[:200, :2]], 1).repeat(2, 1), torch.rand(400, generator=g)),
        "zero_width": (boxes[:, [0, 1, 0, 3]], torch.rand(400, generator=g)),
        "points_and_lines": (
            torch.tensor([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 0], [0, 0, 10, 0], [0, 0, 10, 10]]).float(),
            torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]),
        ),
        "huge_coordinates": (boxes * 100 + 1e5, torch.rand(400, generator=g)),
        "around_1e5_small_boxes": (boxes / 100 + 1e5, torch.rand(400, generator=g)),
        "negative_coordinates": (boxes - 500, torch.rand(400, generator=g)),
        "all_suppressed": (one_box, torch.rand(300, generator=g)),
        "all_suppressed_tied": (one_box, torch.ones(300)),
        "empty": (torch.zeros(0, 4), torch.zeros(0)),
    }


def yolo_maps(batch=2, size=416, num_classes=80, positives=200, seed=0, anchors_per_scale=3):
    """Raw YOLO maps as a trained net emits them: objectness logits mostly very low,
    ``positives`` cells per image with objectness around 0.25..0.99 and one strong class."""
    g = torch.Generator().manual_seed(seed)
    a, k = anchors_per_scale, 5 + num_classes
    maps = []
    for s in STRIDES:
        h = int(size // s)
        p = torch.randn(batch, a, k, h, h, generator=g)
        p[:, :, 4] = p[:, :, 4] - 8.0
        p[:, :, 5:] = p[:, :, 5:] - 3.0
        maps.append(p)
    for b in range(batch):
        for _ in range(positives):
            si = int(torch.randint(0, len(maps), (1,), generator=g))
            p = maps[si]
            h = p.shape[-1]
            ai = int(torch.randint(0, a, (1,), generator=g))
            y, x = (int(v) for v in torch.randint(0, h, (2,), generator=g))
            p[b, ai, 4, y, x] = float(torch.rand(1, generator=g) * 6 - 1)
            p[b, ai, 5 + int(torch.randint(0, num_classes, (1,), generator=g)), y, x] = 3.0 + float(
                torch.rand(1, generator=g)
            )
    return [p.reshape(batch, a * k, p.shape[-2], p.shape[-1]) for p in maps]


def require_cuda_kernels(ops: tuple[str, ...]) -> None:
    """Skip unless zoo._C has CUDA kernels for every op in ``ops``; with
    ZOO_REQUIRE_CUDA_OPS=1 (set by benchmarks/device_check.sh on a GPU machine) fail instead."""
    from zoo.ops import _ext

    if _ext.available() and all(torch._C._dispatch_has_kernel_for_dispatch_key(f"zoo::{op}", "CUDA") for op in ops):
        return
    msg = (f"zoo._C has no CUDA kernels for {', '.join(ops)} (build with ZOO_FORCE_CUDA=1); "
           f"load error: {_ext.load_error()}")
    if os.environ.get("ZOO_REQUIRE_CUDA_OPS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


# ------------------------------------------------------------------------ fp64 NMS


def fp64_boxes(n: int, seed: int):
    """Clustered boxes with coordinates that are not fp32 values (fp64 jitter of up to 1e-3)
    and fp64 scores, some of which are distinct in fp64 but equal once rounded to fp32."""
    boxes, _ = clustered_boxes(n, seed=seed, quantum=None)
    g = torch.Generator().manual_seed(seed)
    boxes = boxes.double() + torch.rand(n, 4, generator=g, dtype=torch.float64) * 1e-3
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2])
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    scores[1::7] = scores[::7][: scores[1::7].numel()] + 1e-12  # fp32 ties, fp64 order
    return boxes, scores


# Two boxes whose IoU is h: [0, 0, 1, 1] and [0, 0, 1, h] (inside it). h is not an fp32
# value; rounded to fp32 it is exactly 0.5.
NEAR_THRESHOLD_PAIRS = [
    (0.5 + 1e-12, 0.5, [0]),            # above the threshold only in fp64: suppressed
    (0.5 - 1e-9, 0.5 - 1e-10, [0, 1]),  # below it only in fp64: kept
]


def near_threshold_pair(h):
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, h]], dtype=torch.float64)
    return boxes, torch.tensor([0.9, 0.8], dtype=torch.float64)


# ------------------------------------------------------------------------ YOLO decode at extreme logits


# Extreme logits, one grid cell each (W = 6, H = 1): size logits far above the cap of
# WH_LOGIT_MAX = 10, +inf, and very negative; centre logits at +-inf. Every value below
# decodes exactly in fp32 (sigmoid(+-inf) = 1 / 0, sigmoid(0) = 0.5, exp(0) = 1, exp(-1e4) = 0).
EXTREME_TX = [math.inf, -math.inf, 0.0, math.inf, -math.inf, 0.0]
EXTREME_TY = [-math.inf, math.inf, math.inf, 0.0, 0.0, -math.inf]
EXTREME_TW = [50.0, 1e4, math.inf, -1e4, -math.inf, 0.0]
EXTREME_TH = [1e4, math.inf, 50.0, 0.0, -1e4, -math.inf]


def extreme_logit_map():
    """pred [1, 1*(5+6), 1, 6]: cell x has the logits above, objectness 2 + x (distinct
    scores) and class x the only likely class, so class-aware NMS never compares two cells."""
    w = len(EXTREME_TX)
    pred = torch.full((1, 5 + w, 1, w), -20.0)
    for k, row in enumerate((EXTREME_TX, EXTREME_TY, EXTREME_TW, EXTREME_TH)):
        pred[0, k, 0] = torch.tensor(row)
    pred[0, 4, 0] = torch.arange(w) + 2.0
    for x in range(w):
        pred[0, 5 + x, 0, x] = 20.0
    return pred


# ------------------------------------------------------------------------ bad input
#
# Inputs zoo.ops rejects with a ValueError; the raw torch.ops.zoo.* ops must reject each one
# with the same message (tests/ops/test_ops.py, test_ops_cuda.py).

BIG = 2**31 + 1  # more boxes than int32 numbers; expanded from one row, so no memory is used


def nms_bad_inputs():
    b, s = clustered_boxes(10)
    nan_at = torch.arange(40).view(10, 4) == 5
    return {
        "boxes 3-D": (b[None], s),
        "boxes [N, 3]": (b[:, :3], s),
        "boxes int": (b.long(), s),
        "boxes (0,)": (torch.zeros(0), torch.zeros(0)),  # torchvision.ops.nms rejects it too
        "scores 2-D": (b, s[:, None]),
        "scores int": (b, (s * 10).long()),
        "scores short": (b, s[:9]),
        "scores NaN": (b, torch.where(torch.arange(10) == 3, float("nan"), s)),
        "scores inf": (b, torch.where(torch.arange(10) == 3, float("-inf"), s)),
        "boxes NaN": (torch.where(nan_at, float("nan"), b), s),
        "boxes inf": (torch.where(nan_at, float("inf"), b), s),
        "boxes NaN and scores NaN": (torch.where(nan_at, float("nan"), b), s * float("nan")),
        "boxes inverted x": (b[:, [2, 1, 0, 3]], s),
        "boxes inverted y": (b[:, [0, 3, 2, 1]], s),
        "scores on meta": (b, s.to("meta")),
        "boxes fp64, scores on meta": (b.double(), s.to("meta")),
        "too many boxes": (torch.zeros(1, 4).expand(BIG, 4), torch.zeros(1).expand(BIG)),
    }


def yolo_decode_bad_inputs():
    p = yolo_maps(batch=1, size=64, num_classes=2, positives=5)[0]  # [1, 21, 8, 8], A = 3
    a = COCO_ANCHORS[0].clone()
    return {
        "pred 3-D": (p[0], a, 8.0),
        "pred int": (p.long(), a, 8.0),
        "pred zero classes": (torch.zeros(1, 15, 4, 4), a, 8.0),
        "pred channels": (p[:, :20], a, 8.0),
        "anchors 1-D": (p, a[0], 8.0),
        "anchors [A, 3]": (p, torch.ones(3, 3), 8.0),
        "anchors empty": (p, torch.zeros(0, 2), 8.0),
        "anchors int": (p, a.long(), 8.0),
        "anchors negative": (p, -a, 8.0),
        "anchors zero": (p, a * 0, 8.0),
        "anchors NaN": (p, a * float("nan"), 8.0),
        "anchors inf": (p, a * float("inf"), 8.0),
        "anchors on meta": (p, a.to("meta"), 8.0),
        "stride 0": (p, a, 0.0),
        "stride -8": (p, a, -8.0),
        "stride NaN": (p, a, float("nan")),
        "stride inf": (p, a, float("inf")),
        "scale_xy 0": (p, a, 8.0, 0.0),
        "scale_xy -1.2": (p, a, 8.0, -1.2),
        "scale_xy NaN": (p, a, 8.0, float("nan")),
        "scale_xy inf": (p, a, 8.0, float("inf")),
        "cls_act relu": (p, a, 8.0, 1.0, "relu"),
        "cls_act Softmax": (p, a, 8.0, 1.2, "Softmax"),
        # two faults: the checks' order decides (stride, scale_xy, cls_act, then the anchor values)
        "scale_xy NaN and cls_act relu": (p, a, 8.0, float("nan"), "relu"),
        "stride 0 and scale_xy 0": (p, a, 0.0, 0.0),
        "anchors NaN and cls_act relu": (p, a * float("nan"), 8.0, 1.0, "relu"),
    }


def yolo_postprocess_bad_inputs():
    maps = yolo_maps(batch=2, size=64, num_classes=2, positives=5)
    anc = [a.clone() for a in COCO_ANCHORS.unbind(0)]
    good = (maps, anc, STRIDES, 0.25, 0.45, 300, 30000, False, None, "sigmoid")

    def with_(i, v):
        return tuple(v if j == i else x for j, x in enumerate(good))

    def scale(lst, i, v):
        return [v if j == i else x for j, x in enumerate(lst)]

    return {
        "anchors count": with_(1, anc[:2]),
        "strides count": with_(2, STRIDES[:1]),
        "batch differs": with_(0, scale(maps, 1, maps[1][:1])),
        "classes differ": with_(0, scale(maps, 1, maps[1][:, :18])),
        "zero classes": with_(0, scale(maps, 0, torch.zeros(2, 15, 8, 8))),
        "preds[1] int": with_(0, scale(maps, 1, maps[1].long())),
        "preds[2] on meta": with_(0, scale(maps, 2, maps[2].to("meta"))),
        "anchors[1] negative": with_(1, scale(anc, 1, -anc[1])),
        "anchors[2] NaN": with_(1, scale(anc, 2, anc[2] * float("nan"))),
        "anchors[0] [A, 3]": with_(1, scale(anc, 0, torch.ones(3, 3))),
        "anchors[1] on meta": with_(1, scale(anc, 1, anc[1].to("meta"))),
        "strides[1] NaN": with_(2, [8.0, float("nan"), 32.0]),
        "strides[2] 0": with_(2, [8.0, 16.0, 0.0]),
        "conf 2": with_(3, 2.0),
        "conf NaN": with_(3, float("nan")),
        "iou -0.1": with_(4, -0.1),
        "iou NaN": with_(4, float("nan")),
        "max_det 0": with_(5, 0),
        "max_nms 0": with_(6, 0),
        "max_nms -5": with_(6, -5),
        "scale_xy count": with_(8, [1.2, 1.1]),
        "scale_xy too many": with_(8, [1.2, 1.1, 1.05, 1.0]),
        "scale_xy[1] NaN": with_(8, [1.2, float("nan"), 1.05]),
        "scale_xy[2] 0": with_(8, [1.2, 1.1, 0.0]),
        "scale_xy[0] -1": with_(8, [-1.0, 1.1, 1.05]),
        "scale_xy[1] inf": with_(8, [1.2, float("inf"), 1.05]),
        "cls_act relu": with_(9, "relu"),
        # two faults: the checks' order decides
        "scale_xy count and preds[1] int": tuple([scale(maps, 1, maps[1].long()), *good[1:8], [1.0], "sigmoid"]),
        "scale_xy[1] NaN and anchors[0] NaN": tuple([maps, scale(anc, 0, anc[0] * float("nan")), *good[2:8],
                                                    [1.0, float("nan"), 1.0], "sigmoid"]),
        "cls_act relu and max_det 0": tuple([*good[:5], 0, *good[6:9], "relu"]),
        "cls_act relu and scale_xy[2] 0": tuple([*good[:8], [1.0, 1.0, 0.0], "relu"]),
    }


# ------------------------------------------------------------------------ Squeeze-and-Excitation

# output_mask of zoo::squeeze_excite_backward asking for every gradient
ALL_GRADS = [True] * 5


def se_grads_by_autograd(grad_y, x, w1, b1, w2, b2, gate, act="relu"):
    """The oracle of the SE backward kernels: (dx, dw1, db1, dw2, db2), the gradients of the
    pure-torch reference forward (zoo.ops.reference.squeeze_excite, with ``act`` between the
    FCs) by torch autograd, each in its input's dtype."""
    from zoo.ops import reference

    leaves = [t.detach().requires_grad_(True) for t in (x, w1, b1, w2, b2)]
    y = reference.squeeze_excite(*leaves, gate, act)
    return torch.autograd.grad(y, leaves, grad_y.to(y.dtype))


@pytest.fixture
def anchors():
    return list(COCO_ANCHORS.unbind(0))
