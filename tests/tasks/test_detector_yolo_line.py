"""The Detector with YOLOv1 / v2 / v4 nets: the loss and post-processing it picks from the net
(scale_xy, softmax classes, YOLOv1's flat output) checked against hand-computed detections, its
argument checks, and each model config training on the embedded insects from the command line."""
from __future__ import annotations

import math
import os
import sys

import pytest
import torch
from torchvision.ops import box_convert

import zoo.ops as ops
from zoo.callbacks import EMA
from zoo.cli import ZooCLI
from zoo.losses import RegionLoss, YOLOLoss, YOLOv1Loss
from zoo.tasks import Detector
from tests.losses.test_yolo_line import scaled_perfect_maps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = ["a", "b", "c"]


def _target(*boxes, labels):
    return {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}


def test_yolov4_tiny_postprocess_decodes_with_the_nets_scale_xy():
    """Maps built to decode to the truths under yolov4-tiny's scale_x_y = 1.05 come back as the
    truths (and score mAP 1) through the Detector's post-processing; decoding them without the
    scale (zoo.ops.yolo_postprocess's default) moves the boxes."""
    det = Detector("yolov4_tiny", classes=CLASSES, img_size=64)
    assert isinstance(det.criterion, YOLOLoss) and det.scale_xy == (1.05, 1.05) and det.cls_act == "sigmoid"
    # both on stride 16, centres (16, 24) and (48, 40.5): on cell borders in x (offset 0)
    targets = [_target([4.0, 8.0, 28.0, 40.0], [30.0, 22.0, 66.0, 59.0], labels=[0, 2])]
    sizes = [(64 // s, 64 // s) for s in det.strides]
    maps = scaled_perfect_maps(targets, det.anchors.float(), det.strides, sizes, 3, det.scale_xy)
    dets = det.postprocess(maps, 0.5, 0.5, 100)
    assert len(dets[0]["boxes"]) == 2
    for box, label in zip(targets[0]["boxes"], targets[0]["labels"]):
        i = int((dets[0]["boxes"] - box).abs().amax(1).argmin())
        torch.testing.assert_close(dets[0]["boxes"][i], box, atol=1e-3, rtol=0)
        assert dets[0]["labels"][i] == label
    det.val_map.update(dets, [Detector.metric_target(t) for t in targets])
    assert float(det.val_map.compute()["map"]) == pytest.approx(1.0)
    plain = ops.yolo_postprocess(maps, det.anchors.float(), [float(s) for s in det.strides], conf_threshold=0.5)
    assert (plain[0]["boxes"][:, None, 0] - torch.tensor([[4.0, 30.0]])).abs().min() > 0.1


def test_yolov2_scores_with_softmax_classes_and_trains_with_the_region_loss():
    det = Detector("yolov2", classes=CLASSES, img_size=64, loss_kwargs={"object_scale": 2.0})
    assert isinstance(det.criterion, RegionLoss) and det.cls_act == "softmax"
    assert det.criterion.object_scale == 2.0 and det.criterion.box_loss == "giou"  # the hparams' box_loss
    a = det.net.num_anchors
    v = torch.full((1, a, 2, 2, 8), -12.0)  # [B, A, H, W, 5+C] at stride 32
    v[0, 1, 1, 0, :5] = torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0])
    v[0, 1, 1, 0, 5:] = torch.tensor([2.0, 1.0, 0.0])
    pred = [v.permute(0, 1, 4, 2, 3).reshape(1, a * 8, 2, 2)]
    dets = det.postprocess(pred, 0.3, 0.5, 100)[0]
    score = 1 / (1 + math.exp(-3)) * math.exp(2) / (math.exp(2) + math.e + 1)  # sigmoid(obj) * softmax
    aw, ah = det.anchors[0, 1].tolist()
    assert dets["labels"].tolist() == [0] and dets["scores"].item() == pytest.approx(score, rel=1e-5)
    torch.testing.assert_close(dets["boxes"][0], torch.tensor([16 - aw / 2, 48 - ah / 2, 16 + aw / 2, 48 + ah / 2]))
    loss, parts = det.loss(pred, [_target([4.0, 30.0, 30.0, 60.0], labels=[1])])
    assert torch.isfinite(loss) and set(parts) == {"box", "obj", "cls"}


def test_yolov1_postprocess_and_loss_read_the_flat_output():
    """A hand-written darknet detection-layer vector (S = 7, B = 2, C = 3) for a 64 x 64 input:
    one confident box comes back at its decoded place; the loss is YOLOv1Loss at the net's size."""
    det = Detector("yolov1", classes=CLASSES, img_size=64)
    assert isinstance(det.criterion, YOLOv1Loss) and det.net.img_size == 64 and det.input_hw() == (64, 64)
    S, B, C = 7, 2, 3
    out = torch.zeros(1, S * S * (C + 5 * B))
    i, n = 3 * S + 4, 1  # row 3, col 4, box 1
    out[0, i * C:(i + 1) * C] = torch.tensor([0.1, 0.8, 0.1])
    out[0, S * S * C + i * B + n] = 0.9
    out[0, S * S * (C + B) + (i * B + n) * 4:][:4] = torch.tensor([0.5, 0.25, 0.5, 0.6])
    dets = det.postprocess(out, 0.25, 0.45, 100)[0]
    cx, cy, w, h = (0.5 + 4) / 7 * 64, (0.25 + 3) / 7 * 64, 0.25 * 64, 0.36 * 64
    assert dets["labels"].tolist() == [1] and dets["scores"].item() == pytest.approx(0.72)
    torch.testing.assert_close(dets["boxes"][0], torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    targets = [_target([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], labels=[1])]
    want, _ = YOLOv1Loss(3, 7, 2)(out, targets, 64)
    torch.testing.assert_close(det.loss(out, targets)[0], want)


def test_detector_loss_arguments():
    with pytest.raises(ValueError, match="loss_kwargs"):
        Detector("yolov4_tiny", img_size=64, loss_kwargs="scale")
    with pytest.raises(ValueError, match="loss_kwargs"):
        Detector("yolov4_tiny", img_size=64, loss_kwargs={"object_scale": 5.0})  # not a YOLOLoss argument
    with pytest.raises(ValueError, match="loss_kwargs"):
        Detector("yolov4_tiny", img_size=64, loss_kwargs={"box_loss": "mse"})  # the Detector's own argument
    with pytest.raises(ValueError, match="img_size"):
        Detector("yolov1", img_size=96)  # YOLOv1 takes multiples of 64
    with pytest.raises(ValueError, match="img_size"):
        Detector("yolov1", img_size=64, net_kwargs={"img_size": 128})
    with pytest.raises(ValueError, match="box_loss"):
        Detector("yolov1", img_size=64, box_loss="l1")
    with pytest.raises(ValueError, match="anchors"):
        Detector("yolov1", img_size=64, anchors=[[[10, 14], [23, 27]]])


# ------------------------------------------------------------------ command line


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """LightningCLI warns when sys.argv (here pytest's) and args are both given."""
    monkeypatch.setattr(sys, "argv", ["zoo"])


@pytest.fixture(scope="module")
def insects_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("insects")


def _config(*parts):
    return os.path.join(ROOT, "configs", *parts)


@pytest.mark.parametrize("arch,loss", [("yolov1", YOLOv1Loss), ("yolov2", RegionLoss), ("yolov3_tiny", YOLOLoss),
                                       ("yolov4_tiny", YOLOLoss)])
def test_each_net_gets_the_loss_of_its_kind(arch, loss):
    model = Detector(arch=arch, num_classes=3, img_size=64, anchors=None)
    assert type(model.criterion) is loss
    assert model.cls_act == ("softmax" if arch == "yolov2" else "sigmoid")


# (tests/cli/test_cli.py runs every configs/detection/*.yaml with the insects recipe; here yolov4's
# config runs with the demo recipe on top, and the test checks what the net and loss got)
@pytest.mark.parametrize("arch,loss", [("yolov4", YOLOLoss)])
def test_model_config_trains_on_the_insects_from_the_command_line(arch, loss, tmp_path, insects_dir):
    """``fit --config configs/data/insects.yaml --config configs/detection/<arch>.yaml`` (64 px, batch 2,
    4 training scenes, fast_dev_run): one step on a finite loss of the net's kind, then validation
    mAP. yolov4 also takes the demo recipe on top (configs/demo/yolov4_insects.yaml)."""
    demo = ["--config", _config("demo", "yolov4_insects.yaml")]
    cli = ZooCLI(["fit", "--config", _config("data", "insects.yaml"), "--config", _config("detection", f"{arch}.yaml"),
                  *demo, "--data.img_size=64", "--data.multiscale=null", "--data.batch_size=2",
                  "--trainer.precision=32", f"--data.data_dir={insects_dir}",
                  "--data.synthetic={n_train: 4, n_val: 2, size: 96, seed: 1}", "--trainer.fast_dev_run=1",
                  f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
                  "--trainer.enable_model_summary=false"])
    trainer, model = cli.trainer, cli.model
    assert trainer.state.finished and trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and "val/mAP50" in trainer.callback_metrics
    assert model.hparams.arch == arch and type(model.criterion) is loss and model.num_classes == 7
    assert model.anchors.shape[1] == 3
    assert model.hparams.box_loss == "ciou" and model.hparams.lr == 2e-3 and model.scale_xy == (1.2, 1.1, 1.05)
    assert [type(c) for c in trainer.callbacks if isinstance(c, EMA)] == [EMA]
