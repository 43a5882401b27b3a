"""The YOLOv1 / v2 / v4 losses without Lightning: YOLOLoss's ``scale_xy`` (s = 1 bit-identical to
YOLOv3, the scaled decode equal to zoo.ops.yolo_decode's), RegionLoss and YOLOv1Loss against
closed-form values on hand-built cases, and each loss driving the real registered net on one
fixed batch (the loss falls 10x)."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_convert, box_iou

import zoo
import zoo.ops as ops
from zoo.losses import RegionLoss, YOLOLoss, YOLOv1Loss, build_targets
from zoo.losses.yolo import decode_level, ignore_mask
from zoo.models.yolov3 import parse_anchors
from tests.util import perfect_maps

COCO = parse_anchors([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198],
                      [373, 326]])
STRIDES = (8, 16, 32)
SIZES = [(52, 52), (26, 26), (13, 13)]
V4_SCALE = (1.2, 1.1, 1.05)  # AlexeyAB/darknet cfg/yolov4.cfg scale_x_y, strides 8, 16, 32


def random_xyxy(n, size=416, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, 2, generator=g) * size * 0.8 + size * 0.1
    wh = torch.rand(n, 2, generator=g) * size * 0.4 + 4
    return torch.cat([c - wh / 2, c + wh / 2], 1).clamp(0, size)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def iou_xyxy(a, b) -> float:
    """Plain-Python IoU of two (x1, y1, x2, y2) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def xyxy(cx, cy, w, h):
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def scaled_perfect_maps(targets, anchors, strides, sizes, num_classes, scale_xy):
    """:func:`tests.util.perfect_maps` under darknet's scaled centre (``scale_xy`` per level)."""
    return perfect_maps(targets, anchors, strides, sizes, num_classes, scale_xy)


# ------------------------------------------------------------------ YOLOLoss with scale_xy (v3 / v4)


@pytest.mark.parametrize("box_loss", ["mse", "giou", "ciou"])
def test_scale_xy_one_is_the_yolov3_loss_bit_for_bit(box_loss):
    g = torch.Generator().manual_seed(1)
    maps = [torch.randn(2, 3 * 8, h, w, generator=g) for h, w in SIZES]
    targets = [{"boxes": random_xyxy(6, seed=s), "labels": torch.arange(6) % 3} for s in range(2)]
    loss = YOLOLoss(3, box_loss, ignore_thresh=0.5)
    total, parts = loss(maps, targets, COCO, STRIDES)
    for scale in (1.0, 1, [1.0, 1.0, 1.0], (1, 1, 1)):
        t2, p2 = loss(maps, targets, COCO, STRIDES, scale_xy=scale)
        assert torch.equal(total, t2) and all(torch.equal(parts[k], p2[k]) for k in parts)
    t3, _ = loss(maps, targets, COCO, STRIDES, scale_xy=V4_SCALE)  # (and the scale does change it)
    assert not torch.equal(total, t3)


def test_scaled_decode_matches_yolo_decode_and_the_ignore_mask_uses_it():
    """The loss decodes a level as zoo.ops.yolo_decode(..., scale_xy) does (the op's own path:
    the C++ kernel when built), and the ignore mask is that decode's IoU with the truths
    (torchvision) above the threshold."""
    g = torch.Generator().manual_seed(2)
    p = torch.randn(2, 3 * 8, 5, 6, generator=g) * 2
    anchors, stride = COCO[1], 16.0
    gts = [random_xyxy(3, size=90, seed=4), torch.zeros(0, 4)]
    for s in V4_SCALE:
        train = decode_level(p, anchors, stride, s)  # [B, A, H, W, 4]
        op = ops.yolo_decode(p, anchors, stride, scale_xy=s)[..., :4].view(2, 3, 5, 6, 4)
        torch.testing.assert_close(train, op, rtol=1e-6, atol=1e-4)
        unscaled = decode_level(p, anchors, stride)
        assert (train[..., :2] - unscaled[..., :2]).abs().max() > 0.1
        mask = ignore_mask(p, anchors, stride, s, gts, 0.3)
        want = box_iou(box_convert(op[0].reshape(-1, 4), "cxcywh", "xyxy"), gts[0]).amax(1) > 0.3
        assert torch.equal(mask[0].reshape(-1), want) and not mask[1].any()


@pytest.mark.parametrize("box_loss", ["mse", "giou", "ciou"])
def test_maps_perfect_under_the_scaled_decode_have_near_zero_loss_only_with_that_scale(box_loss):
    """Maps built (by an independent inversion) to decode to the truths with YOLOv4's scale_xy:
    zoo.ops.yolo_decode returns the truths, the loss with that scale_xy is ~0 on boxes, and the
    loss without it is not."""
    boxes = torch.tensor([[97.0, 130.0, 127.0, 170.0], [150.0, 30.0, 250.0, 154.0], [17.0, 200.0, 60.0, 300.0]])
    # centres (112, 150) at stride 16 (x on a cell border: offset 0), (200, 92) at 32, (38.5, 250) at 16
    targets = [{"boxes": boxes, "labels": torch.tensor([0, 1, 2])}]
    maps = scaled_perfect_maps(targets, COCO, STRIDES, SIZES, 3, V4_SCALE)
    for t, m, anchors, s, sc, (h, w) in zip(build_targets(targets, COCO, STRIDES, SIZES), maps, COCO, STRIDES,
                                           V4_SCALE, SIZES):
        dec = ops.yolo_decode(m, anchors, float(s), scale_xy=sc)
        got = box_convert(dec[t["b"], t["a"] * h * w + t["gy"] * w + t["gx"], :4], "cxcywh", "xyxy")
        for row in got:
            assert (row[None] - boxes).abs().amax(1).min() < 1e-3
    loss = YOLOLoss(3, box_loss, ignore_thresh=0.7)
    _, parts = loss(maps, targets, COCO, STRIDES, scale_xy=V4_SCALE)
    assert parts["box"] < 1e-4 and parts["cls"] < 1e-4 and parts["obj"] < 1e-3
    _, unscaled = loss(maps, targets, COCO, STRIDES)
    assert unscaled["box"] > 100 * max(parts["box"].item(), 1e-6)


def test_yolo_loss_scale_xy_errors():
    maps = [torch.zeros(1, 24, h, w) for h, w in SIZES]
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    for bad in ([1.2, 1.1], -1.0, [1.0, float("nan"), 1.0], "big", True):
        with pytest.raises(ValueError, match="scale_xy"):
            YOLOLoss(3)(maps, targets, COCO, STRIDES, scale_xy=bad)
    with pytest.raises(ValueError, match="preds"):
        YOLOLoss(3)(maps[:2], targets, COCO, STRIDES)
    with pytest.raises(ValueError, match="preds"):
        YOLOLoss(4)(maps, targets, COCO, STRIDES)  # 24 channels are 3 x (5 + 3)
    with pytest.raises(ValueError, match="lambda_box"):
        YOLOLoss(3, lambda_box=-1.0)


# ------------------------------------------------------------------ RegionLoss (v2)

# One truth on a 2x2 grid (stride 32, 64 px input), anchors 20x20 and 40x60, C = 2. Every raw
# value is 0 except objectness (-2 everywhere, +1 at the truth's cell and anchor) and the class
# logits there (1, 0); the truth (cx 40, cy 24, w 36, h 44) belongs to anchor 1 (shape IoU 0.66
# vs 0.25) at cell (gx 1, gy 0), offsets (0.25, 0.75). Image 1 has no truth.
R_ANCHORS = torch.tensor([[[20.0, 20.0], [40.0, 60.0]]])
R_TRUTH = (40.0, 24.0, 36.0, 44.0)


def _region_case(label=1):
    v = torch.zeros(2, 2, 2, 2, 7)  # [B, A, H, W, 5+C]
    v[..., 4] = -2.0
    v[0, 1, 0, 1, 4] = 1.0
    v[0, 1, 0, 1, 5] = 1.0
    pred = v.permute(0, 1, 4, 2, 3).reshape(2, 14, 2, 2)
    targets = [{"boxes": torch.tensor([xyxy(*R_TRUTH)]), "labels": torch.tensor([label])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    return pred, targets


def _region_pred_boxes():
    """Every prediction's decoded box in image 0 (raw offsets 0: the cell centre, the anchor's size)."""
    out = {}
    for a, (aw, ah) in enumerate(R_ANCHORS[0].tolist()):
        for gy in range(2):
            for gx in range(2):
                out[(a, gy, gx)] = xyxy((gx + 0.5) * 32, (gy + 0.5) * 32, aw, ah)
    return out


@pytest.mark.parametrize("thresh", [0.6, 0.25])
@pytest.mark.parametrize("box_loss", ["mse", "giou"])
def test_region_loss_closed_form(box_loss, thresh):
    pred, targets = _region_case()
    truth = xyxy(*R_TRUTH)
    boxes = _region_pred_boxes()
    iou = iou_xyxy(boxes[(1, 0, 1)], truth)
    weight = 2 - R_TRUTH[2] * R_TRUTH[3] / (64 * 64)
    if box_loss == "mse":
        err = (0.5 - 0.25) ** 2 + (0.5 - 0.75) ** 2 + math.log(36 / 40) ** 2 + math.log(44 / 60) ** 2
    else:
        p = boxes[(1, 0, 1)]
        hull = (max(p[2], truth[2]) - min(p[0], truth[0])) * (max(p[3], truth[3]) - min(p[1], truth[1]))
        inter = iou * (40 * 60 + 36 * 44) / (1 + iou)
        union = 40 * 60 + 36 * 44 - inter
        err = 1 - (iou - (hull - union) / hull)
    entropy = -(iou * math.log(iou) + (1 - iou) * math.log(1 - iou))
    obj_pos = 5.0 * (softplus(1.0) - iou * 1.0 - entropy)  # BCE(1, iou) minus its floor
    ignored = [k for k, b in boxes.items() if k != (1, 0, 1) and iou_xyxy(b, truth) > thresh]
    if thresh == 0.25:
        assert len(ignored) >= 1  # (the case exercises the ignore rule)
    noobj = (7 - len(ignored) + 8) * softplus(-2.0)
    cls = math.log(math.e + 1.0)  # cross-entropy of logits (1, 0) for class 1
    want_box, want_obj, want_cls = weight * err / 2, (obj_pos + noobj) / 2, cls / 2
    total, parts = RegionLoss(2, box_loss, ignore_thresh=thresh)(pred, targets, R_ANCHORS, (32,))
    assert parts["box"].item() == pytest.approx(want_box, rel=1e-5)
    assert parts["obj"].item() == pytest.approx(want_obj, rel=1e-5)
    assert parts["cls"].item() == pytest.approx(want_cls, rel=1e-5)
    assert total.item() == pytest.approx(want_box + want_obj + want_cls, rel=1e-5)
    # without rescore the positive's target is 1; other scales multiply their terms
    _, plain = RegionLoss(2, box_loss, ignore_thresh=thresh, rescore=False, object_scale=2.0, noobject_scale=3.0,
                          class_scale=0.5, coord_scale=4.0)(pred, targets, R_ANCHORS[0], 32)
    assert plain["obj"].item() == pytest.approx((2.0 * (softplus(1.0) - 1.0) + 3.0 * noobj) / 2, rel=1e-5)
    assert plain["box"].item() == pytest.approx(4.0 * want_box, rel=1e-5)
    assert plain["cls"].item() == pytest.approx(0.5 * want_cls, rel=1e-5)


def test_region_loss_later_truth_wins_a_shared_cell_and_anchor():
    pred, targets = _region_case()
    other = xyxy(44.0, 20.0, 38.0, 46.0)  # same cell (1, 0) and anchor 1, another box and class
    both = [{"boxes": torch.tensor([xyxy(*R_TRUTH), other]), "labels": torch.tensor([1, 0])}, targets[1]]
    last = [{"boxes": torch.tensor([other]), "labels": torch.tensor([0])}, targets[1]]
    first = [targets[0], targets[1]]
    loss = RegionLoss(2, "mse", ignore_thresh=1.0)  # (no ignore rule: it looks at every truth)
    got = loss(pred, both, R_ANCHORS, (32,))[0]
    assert got.item() == pytest.approx(loss(pred, last, R_ANCHORS, (32,))[0].item(), rel=1e-6)
    assert got.item() != pytest.approx(loss(pred, first, R_ANCHORS, (32,))[0].item(), rel=1e-3)


def test_region_loss_errors():
    pred, targets = _region_case()
    for kwargs, name in (({"box_loss": "l1"}, "box_loss"), ({"ignore_thresh": 1.5}, "ignore_thresh"),
                         ({"object_scale": -1.0}, "object_scale"), ({"rescore": "yes"}, "rescore"),
                         ({"num_classes": 0}, "num_classes")):
        with pytest.raises(ValueError, match=name):
            RegionLoss(**{"num_classes": 2, **kwargs})
    with pytest.raises(ValueError, match="preds"):
        RegionLoss(2)([pred, pred], targets, R_ANCHORS, (32, 32))
    with pytest.raises(ValueError, match="preds"):
        RegionLoss(3)(pred, targets, R_ANCHORS, (32,))  # 14 channels are 2 x (5 + 2)
    with pytest.raises(ValueError, match="scale_xy"):
        RegionLoss(2)(pred, targets, R_ANCHORS, (32,), scale_xy=[1.0, 1.0])


# ------------------------------------------------------------------ YOLOv1Loss

# S = 2, B = 2, C = 2 on a 64 x 64 input: one truth (8, 40, 40, 60) -> centre (24, 50), relative
# (0.375, 0.78125), w 0.5, h 0.3125: cell row 1, col 0 (i = 2), offsets (0.75, 0.5625).
V1 = {"S": 2, "B": 2, "C": 2}
V1_TRUTH = (8.0, 40.0, 40.0, 60.0)


def _v1_out(cell_boxes, cell_conf=(0.3, 0.2), other_conf=0.1, cell_cls=(0.2, 0.7), other_cls=0.4, batch=2):
    """darknet's detection layout, written index by index: classes at i*C + j, confidences at
    S*S*C + i*B + n, boxes at S*S*(C+B) + (i*B + n)*4 + k."""
    S, B, C = V1["S"], V1["B"], V1["C"]
    out = torch.zeros(batch, S * S * (C + 5 * B))
    for img in range(batch):
        for i in range(S * S):
            for j in range(C):
                out[img, i * C + j] = cell_cls[j] if (img, i) == (0, 2) else other_cls
            for n in range(B):
                out[img, S * S * C + i * B + n] = cell_conf[n] if (img, i) == (0, 2) else other_conf
                for k in range(4):
                    out[img, S * S * (C + B) + (i * B + n) * 4 + k] = cell_boxes[n][k] if (img, i) == (0, 2) else 0.5
    return out


def _v1_targets(*boxes, labels=None):
    labels = labels or [1] * len(boxes)
    return [{"boxes": torch.tensor(list(boxes)).reshape(-1, 4), "labels": torch.tensor(labels)},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]


def _v1_rel(box, row, col, S=2):
    """A raw (x, y, sqrt w, sqrt h) of cell (row, col) as a relative (x1, y1, x2, y2)."""
    return xyxy((box[0] + col) / S, (box[1] + row) / S, box[2] ** 2, box[3] ** 2)


def test_yolov1_loss_closed_form():
    boxes = [(0.5, 0.5, 0.6, 0.5), (0.7, 0.6, 0.3, 0.3)]
    out = _v1_out(boxes)
    truth = (8 / 64, 40 / 64, 40 / 64, 60 / 64)
    ious = [iou_xyxy(_v1_rel(b, 1, 0), truth) for b in boxes]
    assert ious[0] > ious[1] > 0  # box 0 is responsible
    target = (0.75, 0.5625, math.sqrt(0.5), math.sqrt(0.3125))
    coord = 5.0 * sum((p - t) ** 2 for p, t in zip(boxes[0], target))
    obj = (0.3 - ious[0]) ** 2
    noobj = 0.5 * (0.2 ** 2 + 6 * 0.1 ** 2 + 8 * 0.1 ** 2)  # box 1 of the cell, 3 other cells, image 1
    cls = (0.2 - 0.0) ** 2 + (0.7 - 1.0) ** 2
    loss = YOLOv1Loss(2, grid_size=2, num_boxes=2)
    total, parts = loss(out, _v1_targets(V1_TRUTH), 64)
    assert parts["box"].item() == pytest.approx(coord / 2, rel=1e-5)
    assert parts["obj"].item() == pytest.approx((obj + noobj) / 2, rel=1e-5)
    assert parts["cls"].item() == pytest.approx(cls / 2, rel=1e-5)
    assert total.item() == pytest.approx((coord + obj + noobj + cls) / 2, rel=1e-5)
    # rescore off: the target is 1; the lambdas scale their terms; (H, W) works like the side
    _, p2 = YOLOv1Loss(2, 2, 2, lambda_coord=1.0, lambda_noobj=2.0, lambda_obj=3.0, lambda_cls=0.5,
                       rescore=False)(out, _v1_targets(V1_TRUTH), (64, 64))
    assert p2["box"].item() == pytest.approx(coord / 5 / 2, rel=1e-5)
    assert p2["obj"].item() == pytest.approx((3.0 * (0.3 - 1.0) ** 2 + 4 * noobj) / 2, rel=1e-5)
    assert p2["cls"].item() == pytest.approx(0.5 * cls / 2, rel=1e-5)


def test_yolov1_responsible_box_when_no_box_overlaps_is_the_nearest():
    # both predicted boxes miss the truth; box 1's (cx, cy, w, h) is nearer
    boxes = [(0.0, 0.0, 0.05, 0.05), (0.1, 0.95, 0.1, 0.1)]
    truth = (8 / 64, 40 / 64, 40 / 64, 60 / 64)
    assert all(iou_xyxy(_v1_rel(b, 1, 0), truth) == 0 for b in boxes)
    target = (0.75, 0.5625, math.sqrt(0.5), math.sqrt(0.3125))
    _, parts = YOLOv1Loss(2, 2, 2)(_v1_out(boxes), _v1_targets(V1_TRUTH), 64)
    coord = 5.0 * sum((p - t) ** 2 for p, t in zip(boxes[1], target))
    noobj = 0.5 * (0.3 ** 2 + 6 * 0.1 ** 2 + 8 * 0.1 ** 2)
    assert parts["box"].item() == pytest.approx(coord / 2, rel=1e-5)
    assert parts["obj"].item() == pytest.approx(((0.2 - 0.0) ** 2 + noobj) / 2, rel=1e-5)


def test_yolov1_first_truth_wins_a_cell():
    out = _v1_out([(0.5, 0.5, 0.6, 0.5), (0.7, 0.6, 0.3, 0.3)])
    other = (2.0, 34.0, 30.0, 62.0)  # centre (16, 48): the same cell, another class
    loss = YOLOv1Loss(2, 2, 2)
    both = loss(out, _v1_targets(V1_TRUTH, other, labels=[1, 0]), 64)[0]
    assert both.item() == pytest.approx(loss(out, _v1_targets(V1_TRUTH, labels=[1]), 64)[0].item(), rel=1e-6)
    assert both.item() != pytest.approx(loss(out, _v1_targets(other, labels=[0]), 64)[0].item(), rel=1e-3)


def test_yolov1_loss_errors():
    for kwargs, name in (({"grid_size": 0}, "grid_size"), ({"num_boxes": 1.5}, "num_boxes"),
                         ({"lambda_coord": -1.0}, "lambda_coord"), ({"lambda_noobj": float("inf")}, "lambda_noobj"),
                         ({"rescore": 1}, "rescore")):
        with pytest.raises(ValueError, match=name):
            YOLOv1Loss(**{"num_classes": 2, **kwargs})
    loss = YOLOv1Loss(2, 2, 2)
    out = _v1_out([(0.5, 0.5, 0.6, 0.5), (0.7, 0.6, 0.3, 0.3)])
    with pytest.raises(ValueError, match="out"):
        loss(out[:, :-1], _v1_targets(V1_TRUTH), 64)
    with pytest.raises(ValueError, match="img_size"):
        loss(out, _v1_targets(V1_TRUTH), 0)
    with pytest.raises(ValueError, match="targets"):
        loss(out, _v1_targets(V1_TRUTH)[:1], 64)
    with pytest.raises(ValueError, match="targets"):
        loss(out, _v1_targets(V1_TRUTH, labels=[2]), 64)


# ------------------------------------------------------------------ each loss trains its net


def _one_batch(size):
    torch.manual_seed(0)
    images = torch.rand(2, 3, size, size)
    f = size / 64
    targets = [{"boxes": torch.tensor([[6.0, 8.0, 30.0, 40.0], [36.0, 30.0, 60.0, 52.0]]) * f,
                "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[12.0, 14.0, 44.0, 50.0]]) * f, "labels": torch.tensor([1])}]
    return images, targets


@pytest.mark.parametrize("arch", ["yolov4", "yolov2", "yolov1"])
def test_loss_falls_tenfold_on_one_batch(arch):
    """The registered net (all of it) trained with its loss by Adam on one fixed batch of two
    64 x 64 images (3 boxes, 3 classes): the loss falls at least 10x within 40 steps."""
    images, targets = _one_batch(64)
    if arch == "yolov1":  # (its connected layer is built for the input size; no dropout on one batch)
        net = zoo.create_net(arch, num_classes=3, img_size=64, drop_rate=0.0)
        crit = YOLOv1Loss(3, net.grid_size, net.num_boxes)
        step_loss, lr = (lambda: crit(net(images), targets, 64)[0]), 5e-5
    else:
        net = zoo.create_net(arch, num_classes=3)
        crit = RegionLoss(3) if arch == "yolov2" else YOLOLoss(3, "ciou")
        assert (net.cls_act == "softmax") == (arch == "yolov2")
        step_loss, lr = (lambda: crit(net(images), targets, net.anchors, net.strides, net.scale_xy)[0]), 1e-3
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    net.train()
    first = None
    for step in range(40):
        loss = step_loss()
        first = first if first is not None else loss.item()
        if loss.item() <= first / 10:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() <= first / 10, (first, loss.item(), step)
