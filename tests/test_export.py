"""zoo.export and ``python -m zoo export``: ONNX (standard operators, run in onnxruntime) and
torch.export ``.pt2`` programs of a Detector checkpoint, raw and with decode + NMS, against the
eager model and the Detector's own predict path (zoo.ops.yolo_postprocess, the C++ kernel); the
ONNX translations of the zoo ops against closed forms and torchvision; the CLI's errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torchvision  # noqa: E402

import zoo.ops as ops  # noqa: E402
from zoo import export as zexport  # noqa: E402
from zoo.cli import main  # noqa: E402
from zoo.nn.se import SEBlock  # noqa: E402
from zoo.tasks import Detector  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG = 64


def _save_checkpoint(module: pl.LightningModule, path) -> str:
    """What Lightning's checkpoint holds that ``load_from_checkpoint`` reads."""
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A yolov3_tiny Detector (3 classes, 64 px) whose output convs are scaled so that random
    images give confident, overlapping boxes, and its checkpoint."""
    torch.manual_seed(0)
    det = Detector(arch="yolov3_tiny", num_classes=3, img_size=IMG, conf_threshold=0.3, iou_threshold=0.45,
                   max_det=7)
    with torch.no_grad():
        for conv in det.net.prediction_convs():
            conv.weight.mul_(4)
            conv.bias.view(det.net.num_anchors, -1)[:, 4:].normal_(0.0, 2.0)
    det.eval()
    return det, _save_checkpoint(det, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _session(path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _ops_used(path) -> set[tuple[str, str]]:
    model = onnx.load(os.fspath(path))
    return {(n.domain, n.op_type) for n in model.graph.node}


def _images(b: int, seed: int) -> torch.Tensor:
    return torch.rand(b, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def _predict(det, images):
    """The Detector's predict path (zoo.ops.yolo_postprocess with the checkpoint's thresholds)."""
    with torch.no_grad():
        return det.predict_step((images,), 0)


def _assert_same_detections(flat, dets):
    """``flat = (boxes, scores, labels, image_index)`` equal to the per-image ``dets``."""
    boxes, scores, labels, image = (torch.as_tensor(t) for t in flat)
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64 and image.dtype == torch.int64
    assert sum(len(d["labels"]) for d in dets) > 0, "the test images must give detections"
    assert image.tolist() == sorted(image.tolist())
    for i, d in enumerate(dets):
        rows = image == i
        assert int(rows.sum()) == len(d["labels"]), f"image {i}: count"
        assert labels[rows].tolist() == d["labels"].tolist(), f"image {i}: classes"
        torch.testing.assert_close(boxes[rows], d["boxes"].float(), atol=1e-3, rtol=0)
        torch.testing.assert_close(scores[rows], d["scores"].float(), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------- ONNX


def test_onnx_raw_matches_eager_forward(tiny, tmp_path):
    det, ckpt = tiny
    out = zexport.export("yolov3_tiny", ckpt, "onnx", tmp_path / "raw.onnx")
    assert {d for d, _ in _ops_used(out)} == {""}, "standard ONNX operators only"
    sess = _session(out)
    assert [o.name for o in sess.get_outputs()] == ["stride16", "stride32"]
    for b in (1, 3):  # the batch dimension is dynamic
        x = _images(b, b)
        got = sess.run(None, {"images": x.numpy()})
        with torch.no_grad():
            want = det(x)
        assert len(got) == len(want) == 2
        for g, w in zip(got, want):
            torch.testing.assert_close(torch.from_numpy(g), w, atol=1e-4, rtol=0)


def test_onnx_with_postprocess_gives_the_detectors_detections(tiny, tmp_path):
    det, ckpt = tiny
    out = zexport.export("yolov3_tiny", ckpt, "onnx", tmp_path / "pp.onnx", with_postprocess=True)
    used = _ops_used(out)
    assert {d for d, _ in used} == {""}
    assert ("", "NonMaxSuppression") in used
    sess = _session(out)
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores", "labels", "image_index"]
    x = _images(3, 10)
    dets = _predict(det, x)
    assert max(len(d["labels"]) for d in dets) == 7, "max_det (7, from the checkpoint) caps an image"
    assert len({lab for d in dets for lab in d["labels"].tolist()}) > 1, "several classes, so NMS is class-aware"
    _assert_same_detections(sess.run(None, {"images": x.numpy()}), dets)


def test_onnx_postprocess_thresholds_override_the_checkpoints(tiny, tmp_path):
    det, ckpt = tiny
    out = zexport.export("yolov3_tiny", ckpt, "onnx", tmp_path / "pp.onnx", with_postprocess=True,
                         conf_threshold=0.6, iou_threshold=0.3, max_det=100)
    x = _images(2, 20)
    with torch.no_grad():
        dets = det.postprocess(det(x), 0.6, 0.3, 100)
        default = det.postprocess(det(x), 0.3, 0.45, 7)
    assert [len(d["labels"]) for d in dets] != [len(d["labels"]) for d in default], "the overrides must matter"
    _assert_same_detections(_session(out).run(None, {"images": x.numpy()}), dets)


def _onnx_run(module: nn.Module, example: torch.Tensor, x: torch.Tensor, path) -> list:
    zexport.save_onnx(module.eval(), example, path)
    assert {d for d, _ in _ops_used(path)} == {""}, "standard ONNX operators only"
    return _session(path).run(None, {"images": x.numpy()})


def test_squeeze_excite_translation(tmp_path):
    """Every gate and activation, against the closed form written here."""
    torch.manual_seed(1)
    blocks = nn.Sequential(*[SEBlock(16, 4, gate=g, act=a) for g in ("sigmoid", "hard_sigmoid")
                             for a in ("relu", "silu")])
    with torch.no_grad():
        for blk in blocks:
            blk.fc2.bias.normal_(0.0, 3.0)  # gate inputs on both sides of hard_sigmoid's linear part
    x = torch.randn(3, 16, 5, 7)
    got = _onnx_run(blocks, torch.randn(2, 16, 5, 7), x, tmp_path / "se.onnx")[0]
    assert ("", "HardSigmoid") in _ops_used(tmp_path / "se.onnx")
    want = x.double()
    for blk in blocks:
        s = want.mean((2, 3))
        h = s @ blk.fc1.weight.double().flatten(1).T + blk.fc1.bias.double()
        z = h.clamp(min=0) if blk.act == "relu" else h * torch.sigmoid(h)
        u = z @ blk.fc2.weight.double().flatten(1).T + blk.fc2.bias.double()
        g = torch.sigmoid(u) if blk.gate == "sigmoid" else ((u + 3).clamp(0, 6) / 6)
        want = want * g[:, :, None, None]
    torch.testing.assert_close(torch.from_numpy(got).double(), want, atol=1e-5, rtol=1e-5)


class _Decode(nn.Module):
    def __init__(self, anchors, stride):
        super().__init__()
        self.register_buffer("anchors", anchors)
        self.stride = stride

    def forward(self, pred):
        return (ops.yolo_decode(pred, self.anchors, self.stride),
                ops.yolo_decode(pred, self.anchors, self.stride, scale_xy=1.2, cls_act="softmax"))


def _decode_closed_form(pred, anchors, stride, scale_xy=1.0, cls_act="sigmoid"):
    b, ch, h, w = pred.shape
    a = anchors.shape[0]
    p = pred.double().view(b, a, ch // a, h, w)
    gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    cx = (torch.sigmoid(p[:, :, 0]) * scale_xy - 0.5 * (scale_xy - 1) + gx) * stride
    cy = (torch.sigmoid(p[:, :, 1]) * scale_xy - 0.5 * (scale_xy - 1) + gy) * stride
    bw = torch.exp(p[:, :, 2].clamp(max=10)) * anchors[:, 0].double()[None, :, None, None]
    bh = torch.exp(p[:, :, 3].clamp(max=10)) * anchors[:, 1].double()[None, :, None, None]
    obj = torch.sigmoid(p[:, :, 4])
    cls = torch.sigmoid(p[:, :, 5:]) if cls_act == "sigmoid" else torch.softmax(p[:, :, 5:], dim=2)
    rows = torch.cat([torch.stack([cx, cy, bw, bh, obj], 2), cls], 2)  # [B, A, 5+C, H, W]
    return rows.permute(0, 1, 3, 4, 2).reshape(b, a * h * w, ch // a)


def test_yolo_decode_translation(tmp_path):
    """Plain (YOLOv3) and with scale_xy 1.2 and softmax classes (YOLOv4 / YOLOv2), against the
    darknet formulas written here."""
    anchors = torch.tensor([[10.0, 14.0], [23.0, 27.0]])
    pred = torch.randn(3, 2 * (5 + 4), 3, 5) * 3
    pred[0, 2, 0, 0] = 40.0  # a diverging size logit: capped at 10
    got = _onnx_run(_Decode(anchors, 16.0), torch.randn(2, 18, 3, 5), pred, tmp_path / "dec.onnx")
    for g, kwargs in zip(got, ({}, {"scale_xy": 1.2, "cls_act": "softmax"})):
        torch.testing.assert_close(torch.from_numpy(g).double(), _decode_closed_form(pred, anchors, 16.0, **kwargs),
                                   atol=1e-4, rtol=1e-5)


class _Postprocess(nn.Module):
    """Two levels of raw maps (strides 8 and 16, 2 anchors, 4 classes) from 1x1 convs of the
    pooled image, then zoo::yolo_postprocess with each argument the Detector leaves alone:
    multi_label, a max_nms cap that bites, scale_xy and softmax classes, a threshold nothing passes."""

    CALLS = ((0.3, 0.5, 10, 30000, True, None, "sigmoid"),
             (0.15, 0.4, 50, 25, False, [1.05, 1.2], "softmax"),
             (1.0, 0.5, 10, 30000, False, None, "sigmoid"))

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.convs = nn.ModuleList([nn.Conv2d(3, 2 * 9, 1) for _ in range(2)])
        with torch.no_grad():
            for c in self.convs:
                c.weight.mul_(8)
        self.register_buffer("anchors", torch.tensor([[[10.0, 13], [16, 30]], [[33, 23], [30, 61]]]))

    def maps(self, x):
        return [c(nn.functional.avg_pool2d(x, s)) for c, s in zip(self.convs, (8, 16))]

    def forward(self, x):
        preds, anchors = self.maps(x), list(self.anchors.unbind(0))
        out = ()
        for args in self.CALLS:
            out += tuple(torch.ops.zoo.yolo_postprocess(preds, anchors, [8.0, 16.0], *args))
        return out


def test_yolo_postprocess_translation_arguments(tmp_path):
    m = _Postprocess().eval()
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    got = _onnx_run(m, x[:2], x, tmp_path / "post.onnx")
    with torch.no_grad():
        preds = m.maps(x)
    for i, (conf, iou, max_det, max_nms, multi, sxy, act) in enumerate(m.CALLS):
        dets = ops.yolo_postprocess(preds, m.anchors, [8, 16], conf, iou, max_det, multi, max_nms, sxy, act)
        if conf == 1.0:
            assert all(len(d["labels"]) == 0 for d in dets)
            assert [g.shape for g in got[4 * i:4 * i + 4]] == [(0, 4), (0,), (0,), (0,)]
            continue
        if max_nms < 100:  # the cap must matter: more candidates than max_nms in some image
            unc = ops.yolo_postprocess(preds, m.anchors, [8, 16], conf, 1.0, 10**6, multi, 10**6, sxy, act)
            assert max(len(d["labels"]) for d in unc) > max_nms
        _assert_same_detections(got[4 * i:4 * i + 4], dets)


class _TinyV1(nn.Module):
    """A stand-in for YOLOv1 with its attributes and output layout (``[B, S*S*(C+5B)]``, S=3,
    B=2, C=3, 64 px), small enough to export in a second."""

    output_kind, grid_size, num_boxes, num_classes, img_size = "yolov1", 3, 2, 3, 64

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.fc = nn.Linear(3 * 8 * 8, 9 * (3 + 5 * 2))
        with torch.no_grad():
            self.fc.weight.mul_(3)
            self.fc.bias.fill_(0.5)

    def forward(self, x):
        return self.fc(nn.functional.avg_pool2d(x, 8).flatten(1))


def test_yolov1_postprocess_onnx_and_pt2(tmp_path):
    """YOLOv1's post-processing (torch + zoo::batched_nms, translated to NonMaxSuppression) in
    ONNX and pt2, against zoo.ops.yolov1_postprocess."""
    net = _TinyV1().eval()
    module = zexport.YOLOv1Postprocess(net, 0.2, 0.3, 6).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        dets = ops.yolov1_postprocess(net(x), 3, 2, 3, 64, 0.2, 0.3, 6)
    assert 0 < len(dets[0]["labels"])
    zexport.save_onnx(module, x, tmp_path / "v1.onnx", dynamic_batch=False)
    assert ("", "NonMaxSuppression") in _ops_used(tmp_path / "v1.onnx")
    _assert_same_detections(_session(tmp_path / "v1.onnx").run(None, {"images": x.numpy()}), dets)
    prog = zexport.save_pt2(module, x, tmp_path / "v1.pt2", dynamic_batch=False)
    assert "zoo.batched_nms.default" in {str(n.target) for n in prog.graph.nodes}
    with torch.no_grad():
        _assert_same_detections(torch.export.load(str(tmp_path / "v1.pt2")).module()(x), dets)


class _NMS(nn.Module):
    """``x [N, 6]`` -> boxes (x1, y1, x1 + |w|, y1 + |h|), scores, classes -> the kept indices of
    batched NMS at each threshold (and plain NMS at the first)."""

    def __init__(self, *ious: float) -> None:
        super().__init__()
        self.ious = ious

    def forward(self, x):
        boxes = torch.cat([x[:, :2], x[:, :2] + x[:, 2:4].abs()], 1)
        kept = tuple(ops.batched_nms(boxes, x[:, 4], x[:, 5].long(), iou) for iou in self.ious)
        return kept + (ops.nms(boxes, x[:, 4], self.ious[0]),)


def test_nms_translations_equal_torchvision(tmp_path):
    g = torch.Generator().manual_seed(3)
    n = 300
    x = torch.cat([torch.rand(n, 2, generator=g) * 50, torch.rand(n, 2, generator=g) * 30 + 5,
                   torch.rand(n, 1, generator=g), torch.randint(0, 4, (n, 1), generator=g).float()], 1)
    x[10:20, 4] = 0.5  # equal scores: the lower index first
    boxes = torch.cat([x[:, :2], x[:, :2] + x[:, 2:4]], 1)
    batched, plain = _onnx_run(_NMS(0.4), x[:50], x, tmp_path / "nms.onnx")
    assert batched.tolist() == torchvision.ops.batched_nms(boxes, x[:, 4], x[:, 5].long(), 0.4).tolist()
    assert plain.tolist() == torchvision.ops.nms(boxes, x[:, 4], 0.4).tolist()


# ------------------------------------------------------------------------------- pt2


def test_pt2_raw_and_with_postprocess(tiny, tmp_path):
    det, ckpt = tiny
    x = _images(3, 30)
    raw = torch.export.load(zexport.export("yolov3_tiny", ckpt, "pt2", tmp_path / "raw.pt2"))
    with torch.no_grad():
        want = det(x)
        got = raw.module()(x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)

    path = zexport.export("yolov3_tiny", ckpt, "pt2", tmp_path / "pp.pt2", with_postprocess=True)
    prog = torch.export.load(path)
    targets = {str(n.target) for n in prog.graph.nodes if n.op == "call_function"}
    assert "zoo.yolo_postprocess.default" in targets
    with torch.no_grad():
        flat = prog.module()(x)
    _assert_same_detections(flat, _predict(det, x))


# ------------------------------------------------------------------------------- errors and CLI


def test_cli_export_writes_the_file(tiny, tmp_path, capsys):
    _, ckpt = tiny
    out = tmp_path / "m.pt2"
    assert main(["export", "yolov3_tiny", "--ckpt_path", ckpt, "--format", "pt2", "--with-postprocess",
                 "--output", str(out), "--img-size", "96", "--conf", "0.5", "--max-det", "3"]) == 0
    assert os.path.isfile(out) and f"wrote {out}" in capsys.readouterr().err
    prog = torch.export.load(str(out))
    assert tuple(prog.example_inputs[0][0].shape[1:]) == (3, 96, 96)
    consts = [n.args[3:6] for n in prog.graph.nodes if str(n.target) == "zoo.yolo_postprocess.default"]
    assert consts == [(0.5, 0.45, 3)]  # overridden conf and max_det; the checkpoint's iou


def test_cli_export_needs_a_checkpoint():
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-m", "zoo", "export", "yolov3_tiny", "--format", "onnx"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "a checkpoint is needed" in r.stderr and "--ckpt_path" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_export_errors(tiny, tmp_path, capsys):
    _, ckpt = tiny
    missing = str(tmp_path / "nope.ckpt")
    assert main(["export", "yolov3_tiny", "--ckpt_path", missing]) == 2
    err = capsys.readouterr().err
    assert "no such checkpoint file" in err and missing in err
    assert main(["export", "yolov3", "--ckpt_path", ckpt]) == 2
    assert "is a checkpoint of 'yolov3_tiny', not 'yolov3'" in capsys.readouterr().err
    assert main(["export", "yolov3_tinyy", "--ckpt_path", ckpt]) == 2
    assert "yolov3_tiny" in capsys.readouterr().err
    assert main(["export", "yolov3_tiny", "--ckpt_path", ckpt, "--img-size", "80"]) == 2
    assert "img_size: expected a multiple of 32" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", "yolov3_tiny", "--ckpt_path", ckpt, "--format", "tflite"])
    assert exc.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="format: expected one of"):
        zexport.export("yolov3_tiny", ckpt, "tflite")
    with pytest.raises(ValueError, match="conf_threshold: expected a value in"):
        zexport.export("yolov3_tiny", ckpt, "pt2", tmp_path / "x.pt2", with_postprocess=True, conf_threshold=1.5)


def test_an_op_without_onnx_translation_is_a_clear_error(tmp_path):
    """zoo::adder2d has no ONNX translation: a ValueError saying so and naming pt2, which works."""
    from zoo.nn import Adder2d

    m = nn.Sequential(Adder2d(3, 4, 3, padding=1)).eval()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="zoo::adder2d, which has no ONNX translation; export it with format 'pt2'"):
        zexport.save_onnx(m, x, tmp_path / "adder.onnx")
    prog = zexport.save_pt2(m, x, tmp_path / "adder.pt2")
    assert "zoo.adder2d.default" in {str(n.target) for n in prog.graph.nodes}


def test_missing_onnx_names_the_export_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    with pytest.raises(ImportError, match=r"onnxscript.*\"export\" extra"):
        zexport.require_onnx()
    with pytest.raises(ImportError, match="export"):
        zexport.onnx_translations()


def test_onnxruntime_nms_threshold_rules():
    """What the translations rely on: onnxruntime's NonMaxSuppression keeps a box only when its
    score is > score_threshold and suppresses one only when IoU > iou_threshold (the zoo ops' rules)."""
    from onnx import TensorProto, helper

    node = helper.make_node("NonMaxSuppression", ["b", "s", "m", "i", "t"], ["o"])
    inputs = [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, None, 4]),
              helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 1, None]),
              helper.make_tensor_value_info("m", TensorProto.INT64, [1]),
              helper.make_tensor_value_info("i", TensorProto.FLOAT, [1]),
              helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])]
    graph = helper.make_graph([node], "nms", inputs, [helper.make_tensor_value_info("o", TensorProto.INT64, [None, 3])])
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
                                .SerializeToString(), providers=["CPUExecutionProvider"])

    def kept(boxes, scores, iou, thr):
        feeds = {"b": torch.tensor([boxes]).numpy(), "s": torch.tensor([[scores]]).numpy(),
                 "m": torch.tensor([10]).numpy(), "i": torch.tensor([iou]).numpy(), "t": torch.tensor([thr]).numpy()}
        return sess.run(None, feeds)[0][:, 2].tolist()

    assert kept([[0.0, 0, 1, 1], [5, 5, 6, 6]], [0.5, 0.7], 0.5, 0.5) == [1]  # score == threshold: out
    assert kept([[0.0, 0, 3, 1], [1, 0, 4, 1]], [0.9, 0.8], 0.5, 0.0) == [0, 1]  # IoU 2/4 == threshold: kept
    assert kept([[0.0, 0, 3, 1], [1, 0, 4, 1]], [0.9, 0.8], 0.49, 0.0) == [0]
    assert kept([[0.0, 0, 1, 1]] * 3, [0.5] * 3, 0.5, 0.0) == [0]  # equal scores: the lower index wins


def test_nms_translation_iou_threshold_edges(tmp_path):
    """IoU 3/10 is fp32 0.30000001 > 0.3: suppressed at iou_threshold 0.3, as torchvision and the
    zoo's NMS do (NonMaxSuppression gets the fp32 value below 0.3, not fp32(0.3), which would keep
    it); IoU exactly 0.5 at 0.5: kept."""
    x = torch.tensor([[0.0, 0, 6, 1, 0.9, 0], [3, 0, 7, 1, 0.8, 0],
                      [0, 5, 3, 1, 0.7, 1], [1, 5, 3, 1, 0.6, 1]])
    boxes = torch.cat([x[:, :2], x[:, :2] + x[:, 2:4]], 1)
    got = _onnx_run(_NMS(0.3, 0.5), x, x, tmp_path / "edges.onnx")
    for kept, iou, expected in zip(got, (0.3, 0.5), ([0, 2], [0, 1, 2, 3])):
        assert torchvision.ops.batched_nms(boxes, x[:, 4], x[:, 5].long(), iou).tolist() == expected
        assert ops.batched_nms(boxes, x[:, 4], x[:, 5].long(), iou).tolist() == expected
        assert kept.tolist() == expected
