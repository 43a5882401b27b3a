"""The Detector LightningModule: mAP of perfect predictions through its own post-processing,
overfitting one batch, prediction mapping and writing, argument checks, the default schedule."""
from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from torch.optim.lr_scheduler import ExponentialLR, LinearLR, SequentialLR

import zoo
from zoo.callbacks import DetectionWriter
from zoo.data import to_original
from zoo.tasks import Detector
from tests.util import fit_and_record_lrs, perfect_maps, torch_schedule_lrs


def _targets():
    return [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [34.0, 10.0, 60.0, 28.0]]), "labels": torch.tensor([0, 2]),
             "iscrowd": torch.zeros(2, dtype=torch.long)},
            {"boxes": torch.tensor([[10.0, 10.0, 50.0, 54.0]]), "labels": torch.tensor([1]),
             "iscrowd": torch.zeros(1, dtype=torch.long)}]


def test_map_of_perfect_predictions_is_one():
    """Maps that decode to the truth (built without the zoo's assignment code) score mAP 1 through
    the Detector's own post-processing (zoo.ops.yolo_postprocess) and metric; wrong labels do not."""
    det = Detector("yolov3_tiny", classes=["a", "b", "c"], img_size=64)
    targets = _targets()
    maps = perfect_maps(targets, det.anchors.float(), det.strides, [(64 // s, 64 // s) for s in det.strides], 3)
    dets = det.postprocess(maps, det.hparams.eval_conf_threshold, det.hparams.eval_iou_threshold, 100)
    det.val_map.update(dets, [Detector.metric_target(t) for t in targets])
    res = det.val_map.compute()
    assert float(res["map_50"]) == pytest.approx(1.0) and float(res["map"]) == pytest.approx(1.0)
    det.val_map.reset()
    wrong = [{**d, "labels": (d["labels"] + 1) % 3} for d in dets]
    det.val_map.update(wrong, [Detector.metric_target(t) for t in targets])
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


def test_channels_last_computes_what_the_default_layout_computes():
    torch.manual_seed(0)
    plain = Detector("yolov3_se", classes=["a", "b", "c"], img_size=64).eval()
    nhwc = Detector("yolov3_se", classes=["a", "b", "c"], img_size=64, channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())
    conv = nhwc.net.backbone.stem.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(plain(x), nhwc(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        targets = _targets()
        torch.testing.assert_close(nhwc.loss(nhwc(x), targets)[0], plain.loss(plain(x), targets)[0],
                                   rtol=1e-4, atol=1e-4)


def test_to_original_inverts_the_letterbox():
    meta = {"scale": 0.5, "pad": (0.0, 16.0), "orig_size": (100, 200)}
    net = torch.tensor([[10.0, 26.0, 50.0, 56.0], [-5.0, 10.0, 300.0, 80.0]])
    want = torch.tensor([[20.0, 20.0, 100.0, 80.0], [0.0, 0.0, 200.0, 100.0]])
    torch.testing.assert_close(to_original(net, meta), want)


def test_detector_argument_errors():
    for kwargs, msg in (({"arch": "resnet18"}, "not a detection model"), ({"box_loss": "l1"}, "box_loss"),
                        ({"ignore_thresh": 1.5}, "ignore_thresh"), ({"img_size": 100}, "img_size"),
                        ({"classes": ["a", "b"], "num_classes": 3}, "num_classes"),
                        ({"optimizer": "lamb"}, "optimizer"), ({"conf_threshold": -0.1}, "conf_threshold")):
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
    assert isinstance(det.prediction_writer(), DetectionWriter)

    class _Trainer:
        default_root_dir = str(tmp_path)

    writer = DetectionWriter(min_side=360)
    writer.on_predict_epoch_start(_Trainer(), det)
    writer.write_on_batch_end(_Trainer(), det, out, None, None, 0, 0)
    writer.on_predict_epoch_end(_Trainer(), det)
    data = json.loads((tmp_path / "predict" / "detections.json").read_text())
    assert data["classes"] == ["x", "y"] and data["images"][0]["image"] == str(img_path)
    dets = data["images"][0]["detections"]
    assert len(dets) == len(out[0]["labels"])
    torch.testing.assert_close(torch.tensor([d["box"] for d in dets]), b, atol=0.01, rtol=0)
    png = tmp_path / "predict" / "a.png"
    assert png.is_file() and Image.open(png).size == (360, 240)  # enlarged 3x for readable labels


def test_default_schedule_is_linear_warmup_then_exponential(tmp_path):
    """The schedule the Detector configures equals torch's LinearLR (from 0) then ExponentialLR
    with one factor of lr_gamma spread over the steps after the warmup."""
    from zoo.data import DetectionDataModule

    det = Detector("yolov3_tiny", classes=list("abcdefg"), img_size=64, lr=0.01, warmup_steps=3, lr_gamma=0.1)
    dm = DetectionDataModule(img_size=64, batch_size=2, data_dir=str(tmp_path / "data"),
                             synthetic={"n_train": 8, "n_val": 2, "size": 64, "seed": 0})
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                         default_root_dir=str(tmp_path))
    lrs = fit_and_record_lrs(trainer, det, datamodule=dm)
    total = 8  # 2 epochs x 4 batches
    want = torch_schedule_lrs(0.01, total, lambda opt: SequentialLR(
        opt, [LinearLR(opt, start_factor=1e-12, end_factor=1.0, total_iters=3),
              ExponentialLR(opt, gamma=0.1 ** (1 / (total - 3)))], milestones=[3]))
    assert len(lrs) == total
    for got, exp in zip(lrs, want):
        assert got == pytest.approx(exp, rel=1e-9, abs=1e-12)
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW)
    assert trainer.optimizers[0].param_groups[1]["weight_decay"] == 0.0


def test_zoo_load_builds_a_detector():
    det = zoo.load("yolov3_tiny", num_classes=3)
    assert isinstance(det, Detector) and det.num_classes == 3
    with torch.no_grad():
        outs = det(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(3 * 8, 64 // s, 64 // s) for s in det.strides]
