"""The YOLOv3 loss without Lightning: target assignment (closed form), the encode -> decode round
trip through zoo.ops.yolo_decode, ignore_thresh, perfect logits, and training and inference
decoding the same boxes, extreme logits included."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_convert

import zoo.ops as ops
from zoo.losses import YOLOLoss, build_targets
from zoo.losses.yolo import decode_level
from zoo.models.yolov3 import parse_anchors
from zoo.ops.boxes import WH_LOGIT_MAX
from tests.util import perfect_maps

COCO = parse_anchors([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198],
                      [373, 326]])
STRIDES = (8, 16, 32)
SIZES = [(52, 52), (26, 26), (13, 13)]


def random_xyxy(n, size=416, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, 2, generator=g) * size * 0.8 + size * 0.1
    wh = torch.rand(n, 2, generator=g) * size * 0.4 + 4
    return torch.cat([c - wh / 2, c + wh / 2], 1).clamp(0, size)


def test_assignment_best_anchor_and_cell():
    # a 30 x 61 box (exactly anchor 3, level 1 = stride 16) centred at (100.5, 200.25)
    box = torch.tensor([[100.5 - 15, 200.25 - 30.5, 100.5 + 15, 200.25 + 30.5]])
    out = build_targets([{"boxes": box, "labels": torch.tensor([4])}], COCO, STRIDES, SIZES)
    assert [t["b"].numel() for t in out] == [0, 1, 0]
    t = out[1]
    assert (t["a"].item(), t["gx"].item(), t["gy"].item(), t["labels"].item()) == (0, 100 // 16, 200 // 16, 4)
    torch.testing.assert_close(t["txy"], torch.tensor([[100.5 / 16 - 6, 200.25 / 16 - 12]]))
    torch.testing.assert_close(t["twh"], torch.zeros(1, 2), atol=1e-6, rtol=0)


def test_encode_then_yolo_decode_round_trip():
    """Boxes assigned by build_targets, encoded into logits and decoded by zoo.ops.yolo_decode at
    the assigned rows come back as the input boxes within 1e-4."""
    targets = [{"boxes": random_xyxy(12, seed=s), "labels": torch.arange(12) % 7} for s in range(2)]
    assigned = build_targets(targets, COCO, STRIDES, SIZES)
    inputs = torch.cat([t["boxes"] for t in targets])
    found = 0
    for t, anchors, s, (h, w) in zip(assigned, COCO, STRIDES, SIZES):
        v = torch.full((2, 3, h, w, 12), -12.0)
        off = t["txy"].clamp(1e-6, 1 - 1e-6).double()
        v[t["b"], t["a"], t["gy"], t["gx"], 0:2] = torch.log(off / (1 - off)).float()
        v[t["b"], t["a"], t["gy"], t["gx"], 2:4] = t["twh"]
        dec = ops.yolo_decode(v.permute(0, 1, 4, 2, 3).reshape(2, 36, h, w), anchors, float(s))
        got = box_convert(dec[t["b"], t["a"] * h * w + t["gy"] * w + t["gx"], :4], "cxcywh", "xyxy")
        for b, row in zip(t["b"].tolist(), got):  # each decoded box is one of its image's inputs
            assert (row[None] - targets[b]["boxes"]).abs().amax(1).min() < 1e-4
        found += len(got)
    assert found == len(inputs)


def test_ignore_thresh_removes_objectness_penalty():
    """A second anchor predicting the truth confidently is penalised unless ignore_thresh spares it."""
    targets = [{"boxes": torch.tensor([[100.0, 100.0, 140.0, 150.0]]), "labels": torch.tensor([0])}]
    maps = perfect_maps(targets, COCO, STRIDES, SIZES, 2)
    t = next(t for t in build_targets(targets, COCO, STRIDES, SIZES) if t["b"].numel())
    lvl = next(i for i, x in enumerate(build_targets(targets, COCO, STRIDES, SIZES)) if x["b"].numel())
    v = maps[lvl].view(1, 3, 7, *SIZES[lvl])
    a, other = t["a"].item(), (t["a"].item() + 1) % 3
    v[0, other, :, t["gy"], t["gx"]] = v[0, a, :, t["gy"], t["gx"]]
    v[0, other, 2:4, t["gy"], t["gx"]] += torch.log(COCO[lvl][a] / COCO[lvl][other])[:, None]  # same decoded box
    _, spared = YOLOLoss(2, "giou", ignore_thresh=0.5)(maps, targets, COCO, STRIDES)
    _, penalised = YOLOLoss(2, "giou", ignore_thresh=1.0)(maps, targets, COCO, STRIDES)
    assert spared["obj"] < 0.1 * penalised["obj"]
    assert spared["box"] == pytest.approx(0.0, abs=1e-4) and spared["cls"] < 1e-4


@pytest.mark.parametrize("box_loss", ["mse", "giou", "ciou"])
def test_perfect_logits_have_near_zero_loss(box_loss):
    targets = [{"boxes": random_xyxy(5, seed=3), "labels": torch.tensor([0, 1, 2, 0, 1])}]
    maps = perfect_maps(targets, COCO, STRIDES, SIZES, 3)
    _, parts = YOLOLoss(3, box_loss, ignore_thresh=0.7)(maps, targets, COCO, STRIDES)
    assert parts["box"] < 1e-4 and parts["cls"] < 1e-4 and parts["obj"] < 1e-3
    # and the same maps with one class logit moved elsewhere are not
    wrong = [m.clone() for m in maps]
    for m in wrong:
        v = m.view(1, 3, 8, *m.shape[2:])
        v[:, :, 5:] = v[:, :, 5:].roll(1, dims=2)
    _, parts = YOLOLoss(3, box_loss, ignore_thresh=0.7)(wrong, targets, COCO, STRIDES)
    assert parts["cls"] > 1.0


def test_training_and_inference_decode_the_same_boxes_for_extreme_logits():
    """The loss decodes with the same formula and t_wh cap as zoo.ops.yolo_decode (extension or
    fallback) and yolo_postprocess: huge logits give the same finite boxes on both sides."""
    g = torch.Generator().manual_seed(0)
    p = torch.randn(2, 3 * 7, 4, 5, generator=g)
    v = p.view(2, 3, 7, 4, 5)
    v[0, 0, 2, 0, 0], v[0, 1, 3, 1, 2], v[1, 2, 2, 3, 4] = 50.0, 1e4, float("inf")
    v[1, 0, 0, 2, 1], v[1, 1, 1, 0, 3] = 80.0, -80.0  # sigmoid saturates: offsets 1 and 0
    anchors, stride = COCO[2], 32.0
    train = decode_level(p, anchors, stride)  # [B, A, H, W, 4]
    fallback = ops.reference.yolo_decode(p, anchors, stride)[..., :4].view(2, 3, 4, 5, 4)
    kernel = ops.yolo_decode(p, anchors, stride)[..., :4].view(2, 3, 4, 5, 4)
    assert torch.isfinite(train).all() and torch.equal(train, fallback)  # the same torch code
    torch.testing.assert_close(kernel, train, rtol=1e-6, atol=0)  # the C++ kernel: same formula, libm's exp
    cap = math.exp(WH_LOGIT_MAX)
    torch.testing.assert_close(train[0, 0, 0, 0, 2], anchors[0, 0] * cap)
    torch.testing.assert_close(train[0, 1, 1, 2, 3], anchors[1, 1] * cap)
    torch.testing.assert_close(train[1, 2, 3, 4, 2], anchors[2, 0] * cap)
    assert train[1, 0, 2, 1, 0] == (1 + 1) * stride and train[1, 1, 0, 3, 1] == pytest.approx(0.0, abs=1e-6)
    # the fused post-processing returns those boxes for a cell that passes the threshold
    v[:, :, 4] = -20.0
    v[0, 1, 4, 1, 2], v[0, 1, 5, 1, 2] = 20.0, 20.0
    dets = ops.yolo_postprocess([p], [anchors], [stride], conf_threshold=0.5)
    assert len(dets[0]["boxes"]) == 1 and len(dets[1]["boxes"]) == 0
    want = box_convert(decode_level(p, anchors, stride)[0, 1, 1, 2][None], "cxcywh", "xyxy")
    torch.testing.assert_close(dets[0]["boxes"], want)


def test_loss_argument_errors():
    with pytest.raises(ValueError, match="box_loss"):
        YOLOLoss(3, box_loss="l1")
    with pytest.raises(ValueError, match="ignore_thresh"):
        YOLOLoss(3, ignore_thresh=1.5)
