"""The Detector task: box geometry vs torchvision, target assignment and the encode/decode
round trip through zoo.ops.yolo_decode, the loss (ignore_thresh, overfitting one batch),
mAP sanity, prediction mapping and writing."""
from __future__ import annotations

import json

import pytest
import torch
from torchvision.ops import box_convert, box_iou, complete_box_iou, generalized_box_iou

import zoo
import zoo.ops as ops
from zoo.models.yolov3 import parse_anchors
from zoo.tasks.detection import (
    DetectionWriter,
    Detector,
    box_iou_cxcywh,
    build_targets,
    shape_iou,
    to_original,
    yolo_loss,
)

COCO = parse_anchors([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198],
                      [373, 326]])
STRIDES = (8, 16, 32)


def _random_xyxy(n, size=416, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, 2, generator=g) * size * 0.8 + size * 0.1
    wh = torch.rand(n, 2, generator=g) * size * 0.4 + 4
    return torch.cat([c - wh / 2, c + wh / 2], 1).clamp(0, size)


@pytest.mark.parametrize("kind,oracle", [("iou", box_iou), ("giou", generalized_box_iou),
                                         ("ciou", complete_box_iou)])
def test_iou_variants_match_torchvision(kind, oracle):
    a, b = _random_xyxy(64, seed=1), _random_xyxy(64, seed=2)
    b[:8] = a[:8] + 3.0  # some heavily overlapping pairs too
    ours = box_iou_cxcywh(box_convert(a, "xyxy", "cxcywh"), box_convert(b, "xyxy", "cxcywh"), kind)
    torch.testing.assert_close(ours, oracle(a, b).diagonal(), rtol=1e-4, atol=1e-5)


def test_shape_iou_closed_form():
    wh = torch.tensor([[10.0, 20.0]])
    anchors = torch.tensor([[10.0, 20.0], [5.0, 20.0], [20.0, 40.0]])
    torch.testing.assert_close(shape_iou(wh, anchors), torch.tensor([[1.0, 0.5, 0.25]]))


def test_parse_anchors_forms_and_errors():
    nested = [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]]
    flat = [v for lvl in nested for pair in lvl for v in pair]
    assert torch.equal(parse_anchors(nested), COCO) and torch.equal(parse_anchors(flat), COCO)
    assert parse_anchors(flat[:12], num_levels=2).shape == (2, 3, 2)
    for bad, levels, msg in (([1, 2, 3], None, "pairs"), ([[0, 5], [1, 1], [2, 2]], None, "positive"),
                             (flat, 2, "do not split into 2 levels"), (nested, 2, "expected 2 levels")):
        with pytest.raises(ValueError, match=msg):
            parse_anchors(bad, num_levels=levels)


def test_assignment_best_anchor_and_cell():
    # a 30 x 61 box (exactly anchor 3, level 1 = stride 16) centred at (100.5, 200.25)
    box = torch.tensor([[100.5 - 15, 200.25 - 30.5, 100.5 + 15, 200.25 + 30.5]])
    out = build_targets([{"boxes": box, "labels": torch.tensor([4])}], COCO, STRIDES, [(52, 52), (26, 26), (13, 13)])
    assert [t["b"].numel() for t in out] == [0, 1, 0]
    t = out[1]
    assert (t["a"].item(), t["gx"].item(), t["gy"].item(), t["labels"].item()) == (0, 100 // 16, 200 // 16, 4)
    torch.testing.assert_close(t["txy"], torch.tensor([[100.5 / 16 - 6, 200.25 / 16 - 12]]))
    torch.testing.assert_close(t["twh"], torch.zeros(1, 2), atol=1e-6, rtol=0)


def _logits_from_targets(targets, anchors, strides, sizes, num_classes, batch):
    """Raw maps whose decode is exactly the assigned boxes: sigmoid^-1 of the cell offsets,
    log(wh / anchor), high objectness and class logits at the assigned cells, low elsewhere."""
    maps = []
    assigned = build_targets(targets, anchors, strides, sizes)
    for (h, w), t, lvl_anchors in zip(sizes, assigned, anchors):
        a_n = lvl_anchors.shape[0]
        v = torch.full((batch, a_n, h, w, 5 + num_classes), -12.0)
        off = t["txy"].clamp(1e-6, 1 - 1e-6).double()
        v[t["b"], t["a"], t["gy"], t["gx"], 0:2] = torch.log(off / (1 - off)).float()
        v[t["b"], t["a"], t["gy"], t["gx"], 2:4] = t["twh"]
        v[t["b"], t["a"], t["gy"], t["gx"], 4] = 12.0
        v[t["b"], t["a"], t["gy"], t["gx"], 5 + t["labels"]] = 12.0
        maps.append(v.permute(0, 1, 4, 2, 3).reshape(batch, a_n * (5 + num_classes), h, w).contiguous())
    return maps, assigned


def test_encode_then_yolo_decode_round_trip():
    """A box encoded into targets and decoded by zoo.ops.yolo_decode comes back within 1e-4."""
    targets = [{"boxes": _random_xyxy(12, seed=s), "labels": torch.arange(12) % 7} for s in range(2)]
    sizes = [(52, 52), (26, 26), (13, 13)]
    maps, assigned = _logits_from_targets(targets, COCO, STRIDES, sizes, 7, 2)
    for p, t, anchors, s, (h, w) in zip(maps, assigned, COCO, STRIDES, sizes):
        dec = ops.yolo_decode(p, anchors, float(s))  # [B, A*H*W, 5+C]
        rows = t["a"] * h * w + t["gy"] * w + t["gx"]
        got = dec[t["b"], rows, :4]
        torch.testing.assert_close(got, t["box"], rtol=0, atol=1e-4)
    # and the xyxy boxes as given (not just the assigned cxcywh) come back
    all_boxes = torch.cat([t["boxes"] for t in targets])
    back = torch.cat([box_convert(t["box"], "cxcywh", "xyxy") for t in assigned])
    assert back.shape == all_boxes.shape
    for row in back:  # every decoded box is one of the inputs (duplicate-free inputs)
        assert (row[None] - all_boxes).abs().amax(1).min() < 1e-4


def test_ignore_thresh_removes_objectness_penalty():
    """A second anchor predicting the truth confidently is penalised unless ignore_thresh spares it."""
    box = torch.tensor([[100.0, 100.0, 140.0, 150.0]])
    targets = [{"boxes": box, "labels": torch.tensor([0])}]
    sizes = [(52, 52), (26, 26), (13, 13)]
    maps, assigned = _logits_from_targets(targets, COCO, STRIDES, sizes, 2, 1)
    # copy the positive prediction to anchor (a+1) % 3 of the same level and cell
    lvl = next(i for i, t in enumerate(assigned) if t["b"].numel())
    t = assigned[lvl]
    v = maps[lvl].view(1, 3, 7, *sizes[lvl])
    a, other = t["a"].item(), (t["a"].item() + 1) % 3
    v[0, other, :, t["gy"], t["gx"]] = v[0, a, :, t["gy"], t["gx"]]
    v[0, other, 2:4, t["gy"], t["gx"]] += torch.log(COCO[lvl][a] / COCO[lvl][other])[:, None]  # same decoded box
    spared, parts_spared = yolo_loss(maps, targets, COCO, STRIDES, 2, "giou", ignore_thresh=0.5)
    penalised, parts_pen = yolo_loss(maps, targets, COCO, STRIDES, 2, "giou", ignore_thresh=1.0)
    assert parts_spared["obj"] < 0.1 * parts_pen["obj"]
    assert parts_spared["box"] == pytest.approx(0.0, abs=1e-4) and parts_spared["cls"] < 1e-4


@pytest.mark.parametrize("box_loss", ["mse", "giou", "ciou"])
def test_perfect_logits_have_near_zero_box_loss(box_loss):
    targets = [{"boxes": _random_xyxy(5, seed=3), "labels": torch.tensor([0, 1, 2, 0, 1])}]
    sizes = [(52, 52), (26, 26), (13, 13)]
    maps, _ = _logits_from_targets(targets, COCO, STRIDES, sizes, 3, 1)
    _, parts = yolo_loss(maps, targets, COCO, STRIDES, 3, box_loss, ignore_thresh=0.7)
    assert parts["box"] < 1e-4 and parts["cls"] < 1e-4 and parts["obj"] < 1e-3


def test_map_of_perfect_predictions_is_one():
    """Through the Detector's own post-processing (zoo.ops.yolo_postprocess) and metric."""
    det = Detector("yolov3_tiny", classes=["a", "b", "c"], img_size=64)
    anchors = det.anchors.float()
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [34.0, 10.0, 60.0, 28.0]]), "labels": torch.tensor([0, 2]),
                "iscrowd": torch.zeros(2, dtype=torch.long)},
               {"boxes": torch.tensor([[10.0, 10.0, 50.0, 54.0]]), "labels": torch.tensor([1]),
                "iscrowd": torch.zeros(1, dtype=torch.long)}]
    sizes = [(64 // s, 64 // s) for s in det.strides]
    maps, _ = _logits_from_targets(targets, anchors, det.strides, sizes, 3, 2)
    dets = det.postprocess(maps, det.hparams.eval_conf_threshold, det.hparams.eval_iou_threshold, 100)
    det.val_map.update(dets, [Detector._metric_target(t) for t in targets])
    res = det.val_map.compute()
    assert float(res["map_50"]) == pytest.approx(1.0) and float(res["map"]) == pytest.approx(1.0)
    # and a clearly wrong prediction set scores lower
    det.val_map.reset()
    wrong = [{**d, "labels": (d["labels"] + 1) % 3} for d in dets]
    det.val_map.update(wrong, [Detector._metric_target(t) for t in targets])
    assert float(det.val_map.compute()["map_50"]) < 0.5


@pytest.mark.parametrize("arch,size", [("yolov3_tiny", 96), ("yolov3_se", 64)])
def test_overfits_one_batch(arch, size):
    """On one fixed small batch the loss falls at least 10x within 150 steps."""
    torch.manual_seed(0)
    det = Detector(arch, classes=["a", "b"], img_size=size)
    images = torch.rand(2, 3, size, size)
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 50.0], [50.0, 50.0, 90.0, 80.0]]) * size / 96,
                "labels": torch.tensor([0, 1])},
               {"boxes": torch.tensor([[20.0, 30.0, 70.0, 60.0]]) * size / 96, "labels": torch.tensor([1])}]
    opt = torch.optim.Adam(det.parameters(), lr=1e-3)
    det.train()
    first = None
    for step in range(150):
        loss, _ = det.loss(det(images), targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < first / 10:
            break
    assert loss.item() < first / 10, (first, loss.item(), step)


def test_to_original_inverts_the_letterbox():
    meta = {"scale": 0.5, "pad": (0.0, 16.0), "orig_size": (100, 200)}
    net = torch.tensor([[10.0, 26.0, 50.0, 56.0], [-5.0, 10.0, 300.0, 80.0]])
    want = torch.tensor([[20.0, 20.0, 100.0, 80.0], [0.0, 0.0, 200.0, 100.0]])
    torch.testing.assert_close(to_original(net, meta), want)


def test_detector_argument_errors():
    for kwargs, msg in (({"arch": "resnet18"}, "not a detection model"), ({"box_loss": "l1"}, "box_loss"),
                        ({"ignore_thresh": 1.5}, "ignore_thresh"), ({"img_size": 100}, "img_size"),
                        ({"classes": ["a", "b"], "num_classes": 3}, "num_classes"), ({"optimizer": "lamb"}, "optimizer")):
        with pytest.raises(ValueError, match=msg):
            Detector(**{"arch": "yolov3_tiny", **kwargs})


def test_predict_step_and_writer(tmp_path):
    from PIL import Image

    img_path = tmp_path / "a.jpeg"
    Image.new("RGB", (120, 80), (200, 190, 170)).save(img_path)
    det = Detector("yolov3_tiny", classes=["x", "y"], img_size=64, conf_threshold=0.0).eval()
    meta = {"path": str(img_path), "orig_size": (80, 120), "scale": 64 / 120, "pad": (0.0, (64 - 80 * 64 / 120) / 2)}
    with torch.no_grad():
        out = det.predict_step((torch.rand(1, 3, 64, 64), [{}], [meta]), 0)
    assert len(out) == 1 and out[0]["boxes"].shape[1] == 4 and len(out[0]["names"]) == len(out[0]["labels"])
    b = out[0]["boxes"]
    assert (b[:, 0::2] >= 0).all() and (b[:, 0::2] <= 120).all() and (b[:, 1::2] <= 80).all()

    class _Trainer:
        default_root_dir = str(tmp_path)

    writer = DetectionWriter()
    writer.on_predict_epoch_start(_Trainer(), det)
    writer.write_on_batch_end(_Trainer(), det, out, None, None, 0, 0)
    writer.on_predict_epoch_end(_Trainer(), det)
    data = json.loads((tmp_path / "predict" / "detections.json").read_text())
    assert data["classes"] == ["x", "y"] and data["images"][0]["image"] == str(img_path)
    assert len(data["images"][0]["detections"]) == len(out[0]["labels"])
    png = tmp_path / "predict" / "a.png"
    assert png.is_file() and Image.open(png).size == (120, 80)


def test_zoo_load_builds_a_detector():
    det = zoo.load("yolov3_tiny", num_classes=3)
    assert isinstance(det, Detector) and det.num_classes == 3
    with torch.no_grad():
        outs = det(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(3 * 8, 64 // s, 64 // s) for s in det.strides]
