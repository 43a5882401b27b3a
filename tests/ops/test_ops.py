"""Custom ops on CPU: extension vs pure-torch reference vs torchvision / closed forms."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo.ops as ops
from zoo.ops import _ext, boxes, reference
from tests.ops.conftest import (
    BIG, COCO_ANCHORS, NEAR_THRESHOLD_PAIRS, STRIDES, clustered_boxes, extreme_logit_map, fp64_boxes,
    near_threshold_pair, nms_adversarial_cases, nms_bad_inputs, uniform_boxes, yolo_decode_bad_inputs, yolo_maps,
    yolo_postprocess_bad_inputs,
)

EXT = pytest.mark.skipif(not _ext.available(), reason="zoo._C not built")


def ext_nms(boxes, scores, thr):
    return torch.ops.zoo.nms(boxes.contiguous(), scores.contiguous(), thr)


def ext_batched(boxes, scores, idxs, thr):
    return torch.ops.zoo.batched_nms(boxes.contiguous(), scores.contiguous(), idxs.long().contiguous(), thr)


NMS_IMPLS = {"ext": ext_nms, "api": ops.nms, "reference": reference.nms}
BATCHED_IMPLS = {"ext": ext_batched, "api": ops.batched_nms, "reference": reference.batched_nms}


def _impls(table):
    return [pytest.param(fn, id=name, marks=EXT if name == "ext" else ()) for name, fn in table.items()]


# ------------------------------------------------------------------------ build / backend


def test_extension_is_built_and_used(monkeypatch):
    """`make setup` builds zoo._C; a missing build must fail here, not skip quietly."""
    monkeypatch.delenv("ZOO_OPS", raising=False)
    assert _ext.available(), f"zoo._C failed to load: {_ext.load_error()}"
    assert ops.backend("cpu") == "ext"
    for op in ("nms", "batched_nms", "yolo_decode", "yolo_postprocess"):
        assert _ext.has_kernel(op, torch.device("cpu"))


def test_zoo_ops_torch_forces_the_fallback(monkeypatch):
    monkeypatch.setenv("ZOO_OPS", "torch")
    assert ops.backend("cpu") == "torch"
    boxes, scores = clustered_boxes(300)
    calls = []
    real = reference.nms
    monkeypatch.setattr(reference, "nms", lambda *a: calls.append(1) or real(*a))
    assert torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
    assert calls, "ZOO_OPS=torch must route through zoo.ops.reference"


def test_meta_device_has_no_kernel():
    assert ops.backend("meta") == "torch"


# ------------------------------------------------------------------------ nms


def _sized(table, sizes, reference_max=5000):
    """(impl, n) pairs; the slow pure-torch reference is checked up to ``reference_max`` boxes."""
    return [pytest.param(p.values[0], n, id=f"{p.id}-{n}", marks=p.marks)
            for p in _impls(table) for n in sizes if not (p.id == "reference" and n > reference_max)]


@pytest.mark.parametrize("impl,n", _sized(NMS_IMPLS, [0, 1, 2, 10, 100, 1000, 5000, 20000]))
@pytest.mark.parametrize("maker", [clustered_boxes, uniform_boxes], ids=["clustered", "uniform"])
def test_nms_random_matches_torchvision(impl, n, maker):
    boxes, scores = maker(n, seed=n)
    for thr in (0.3, 0.5, 0.7):
        assert torch.equal(impl(boxes, scores, thr), torchvision.ops.nms(boxes, scores, thr)), thr


@pytest.mark.parametrize("impl", _impls(NMS_IMPLS))
def test_nms_adversarial(impl):
    cases = nms_adversarial_cases()
    for name, (b, s) in cases.items():
        for thr in (0.0, 0.3, 0.5, 1.0):
            want = torchvision.ops.nms(b, s, thr)
            assert torch.equal(impl(b, s, thr), want), (name, thr)
    keep = impl(*cases["all_suppressed"], 0.5)
    assert keep.tolist() == [int(cases["all_suppressed"][1].argmax())]


@EXT
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_half_precision_computes_in_fp32(dtype):
    boxes, scores = clustered_boxes(3000, seed=7, extent=400.0, quantum=0.25)
    b, s = boxes.to(dtype), scores.to(dtype)
    want = torchvision.ops.nms(b.float(), s.float(), 0.5)
    assert torch.equal(ops.nms(b, s, 0.5), want)
    assert torch.equal(reference.nms(b, s, 0.5), want)


@EXT
def test_nms_threshold_compared_like_torchvision():
    # An IoU of exactly float(0.3) is above 0.3 in double: torchvision suppresses it.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 3.0]])  # IoU 0.3 in fp32
    iou = torchvision.ops.box_iou(boxes[:1], boxes[1:]).item()
    scores = torch.tensor([1.0, 0.5])
    for thr in (0.3, iou, math.nextafter(iou, 0.0), math.nextafter(iou, 1.0)):
        want = torchvision.ops.nms(boxes, scores, thr)
        assert torch.equal(ops.nms(boxes, scores, thr), want), thr
        assert torch.equal(reference.nms(boxes, scores, thr), want), thr


@pytest.mark.parametrize("impl,n", _sized(NMS_IMPLS, [300, 3000], reference_max=300))
def test_nms_fp64_computes_in_fp64(impl, n):
    boxes, scores = fp64_boxes(n, seed=n)
    differs = 0
    for thr in torch.linspace(0.05, 0.95, 19).tolist() + [0.0, 1.0]:
        want = torchvision.ops.nms(boxes, scores, thr)
        assert torch.equal(impl(boxes, scores, thr), want), thr
        differs += not torch.equal(torchvision.ops.nms(boxes.float(), scores.float(), thr), want)
    assert differs > 0, "the fp32 computation should differ somewhere: the test would not see fp64 rounded to fp32"


@pytest.mark.parametrize("impl", _impls(BATCHED_IMPLS))
def test_batched_nms_fp64_computes_in_fp64(impl):
    boxes, scores = fp64_boxes(2000, seed=5)
    idxs = torch.randint(0, 5, (2000,), generator=torch.Generator().manual_seed(5))
    for thr in (0.1, 0.3, 0.5, 0.7, 0.9):
        # (above 1000 boxes torchvision runs its per-category path, exact for any coordinates)
        want = torchvision.ops.batched_nms(boxes, scores, idxs, thr)
        assert torch.equal(impl(boxes, scores, idxs, thr), want), thr
        differs = not torch.equal(torchvision.ops.batched_nms(boxes.float(), scores.float(), idxs, thr), want)
        assert differs or thr != 0.5, "fp32 should decide some pair otherwise at 0.5"


@pytest.mark.parametrize("impl", _impls(NMS_IMPLS))
@pytest.mark.parametrize("h,thr,fp64_keeps", NEAR_THRESHOLD_PAIRS)
def test_nms_fp64near_threshold_pair(impl, h, thr, fp64_keeps):
    boxes, scores = near_threshold_pair(h)
    assert torchvision.ops.nms(boxes, scores, thr).tolist() == fp64_keeps
    assert torchvision.ops.nms(boxes.float(), scores.float(), thr).tolist() != fp64_keeps  # fp32 decides otherwise
    assert impl(boxes, scores, thr).tolist() == fp64_keeps


@pytest.mark.parametrize("impl", _impls(BATCHED_IMPLS))
@pytest.mark.parametrize("h,thr,fp64_keeps", NEAR_THRESHOLD_PAIRS)
def test_batched_nms_fp64near_threshold_pair(impl, h, thr, fp64_keeps):
    boxes, scores = near_threshold_pair(h)
    idxs = torch.zeros(2, dtype=torch.int64)
    assert torchvision.ops.batched_nms(boxes, scores, idxs, thr).tolist() == fp64_keeps
    assert impl(boxes, scores, idxs, thr).tolist() == fp64_keeps


@pytest.mark.parametrize("impl", _impls(NMS_IMPLS))
def test_nms_fp64_scores_ordered_in_fp64(impl):
    # equal in fp32, ordered in fp64: the later index scores higher and must be visited first
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0]], dtype=torch.float64)
    scores = torch.tensor([0.5, 0.5 + 1e-12], dtype=torch.float64)
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [1]
    assert impl(boxes, scores, 0.5).tolist() == [1]


# ------------------------------------------------------------------------ batched_nms


@pytest.mark.parametrize("impl,n", _sized(BATCHED_IMPLS, [0, 1, 50, 999, 1001, 5000, 20000]))
@pytest.mark.parametrize("classes", [1, 3, 80])
def test_batched_nms_matches_torchvision(impl, n, classes):
    boxes, scores = clustered_boxes(n, seed=n + classes)
    idxs = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(n))
    for thr in (0.3, 0.5):
        assert torch.equal(impl(boxes, scores, idxs, thr), torchvision.ops.batched_nms(boxes, scores, idxs, thr))


@pytest.mark.parametrize("impl", _impls(BATCHED_IMPLS))
def test_batched_nms_adversarial(impl):
    boxes, _ = clustered_boxes(2000, seed=11)
    g = torch.Generator().manual_seed(12)
    idxs = torch.randint(0, 80, (2000,), generator=g)
    far = boxes * 100 + 1e5
    for b in (boxes, far, boxes - 500):
        scores = torch.rand(2000, generator=g)
        # torchvision's per-class path (exact for any coordinates) is the oracle here
        want = torchvision.ops.boxes._batched_nms_vanilla(b, scores, idxs, 0.5)
        assert torch.equal(impl(b, scores, idxs, 0.5), want)
    # tied scores: torchvision's final sort is not stable, so compare the set and the
    # score sequence with it, and the exact order with the stable reference
    tied = torch.randint(0, 3, (2000,), generator=g).float()
    got = impl(boxes, tied, idxs, 0.5)
    tv = torchvision.ops.batched_nms(boxes, tied, idxs, 0.5)
    assert set(got.tolist()) == set(tv.tolist())
    assert torch.equal(tied[got], tied[tv])
    assert torch.equal(got, reference.batched_nms(boxes, tied, idxs, 0.5))
    # same box in every class: nothing is suppressed across classes
    same = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(5, 1)
    assert impl(same, torch.rand(5, generator=g), torch.arange(5), 0.1).numel() == 5


@st.composite
def nms_problem(draw):
    n = draw(st.integers(0, 60))
    coord = st.integers(0, 64).map(lambda v: v / 4)
    rows = []
    for _ in range(n):
        x1, y1 = draw(coord), draw(coord)
        w, h = draw(st.integers(0, 40).map(lambda v: v / 4)), draw(st.integers(0, 40).map(lambda v: v / 4))
        rows.append([x1, y1, x1 + w, y1 + h])
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(n, 4)
    levels = draw(st.integers(1, 8))
    scores = torch.tensor([draw(st.integers(0, levels)) / levels for _ in range(n)], dtype=torch.float32)
    idxs = torch.tensor([draw(st.integers(0, 3)) for _ in range(n)], dtype=torch.int64)
    thr = draw(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0]))
    return boxes, scores, idxs, thr


@EXT
@settings(max_examples=300, deadline=None)
@given(nms_problem())
def test_fuzz_nms_and_batched_nms(problem):
    boxes, scores, idxs, thr = problem
    want = torchvision.ops.nms(boxes, scores, thr)
    assert torch.equal(ext_nms(boxes, scores, thr), want)
    assert torch.equal(reference.nms(boxes, scores, thr), want)
    got = ext_batched(boxes, scores, idxs, thr)
    assert torch.equal(got, reference.batched_nms(boxes, scores, idxs, thr))
    tv = torchvision.ops.batched_nms(boxes, scores, idxs, thr)
    assert set(got.tolist()) == set(tv.tolist()) and torch.equal(scores[got], scores[tv])


# ------------------------------------------------------------------------ yolo_decode


def test_yolo_decode_closed_form():
    """Hand-picked logits: sigmoid(0) = 0.5, exp(log 2) = 2, sigmoid(log 3) = 0.75."""
    a, c, h, w = 2, 2, 2, 3
    pred = torch.zeros(1, a * (5 + c), h, w)
    pred.view(1, a, 5 + c, h, w)[:, :, 2:4] = math.log(2.0)
    pred.view(1, a, 5 + c, h, w)[:, :, 5] = math.log(3.0)
    anchors = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    for decode in (ops.yolo_decode, reference.yolo_decode):
        out = decode(pred, anchors, 8.0)
        assert out.shape == (1, a * h * w, 5 + c)
        for ai in range(a):
            for y in range(h):
                for x in range(w):
                    row = out[0, ai * h * w + y * w + x]
                    want = [(0.5 + x) * 8, (0.5 + y) * 8, 2 * anchors[ai, 0].item(), 2 * anchors[ai, 1].item(),
                            0.5, 0.75, 0.5]
                    torch.testing.assert_close(row, torch.tensor(want), rtol=1e-6, atol=1e-6)


def test_yolo_decode_caps_extreme_size_logits():
    pred, anchors, stride = extreme_logit_map(), torch.tensor([[12.0, 20.0]]), 8.0
    t = pred[0, :4, 0].t()  # [W, 4] (tx, ty, tw, th) per cell
    grid = boxes.cell_grid(1, t.shape[0])[0]  # [W, 2]
    want = boxes.decode_boxes(t, grid, anchors[0], stride)
    cap = torch.exp(torch.tensor(boxes.WH_LOGIT_MAX))
    assert boxes.WH_LOGIT_MAX == 10.0
    # closed form: capped sizes are exp(10) * anchor, the others exp(t) * anchor
    assert torch.equal(want[:, 2], torch.tensor([cap * 12, cap * 12, cap * 12, 0.0, 0.0, 12.0]))
    assert torch.equal(want[:, 3], torch.tensor([cap * 20, cap * 20, cap * 20, 20.0, 0.0, 0.0]))
    assert torch.equal(want[:, 0], torch.tensor([8.0, 8.0, 20.0, 32.0, 32.0, 44.0]))
    assert torch.equal(want[:, 1], torch.tensor([0.0, 8.0, 8.0, 4.0, 4.0, 0.0]))
    impls = {"reference": reference.yolo_decode, "api": ops.yolo_decode}
    if _ext.available():
        impls["ext"] = torch.ops.zoo.yolo_decode
    for name, decode in impls.items():
        got = decode(pred, anchors, stride)[0, :, :4]
        assert torch.isfinite(got).all(), name
        assert torch.equal(got, want), name


def test_yolo_postprocess_returns_the_capped_boxes():
    pred, anchors, stride = extreme_logit_map(), torch.tensor([[12.0, 20.0]]), 8.0
    t = pred[0, :4, 0].t()
    want = boxes.cxcywh_to_xyxy(boxes.decode_boxes(t, boxes.cell_grid(1, t.shape[0])[0], anchors[0], stride))
    impls = {"reference": reference.yolo_postprocess}
    if _ext.available():
        impls["ext"] = torch.ops.zoo.yolo_postprocess
    for name, post in impls.items():
        got_boxes, scores, labels, _ = post([pred], [anchors], [stride], 0.5, 0.45, 300, 30000, False)
        # every cell passes; scores rise with the cell index, and label x is cell x
        assert labels.tolist() == [5, 4, 3, 2, 1, 0], name
        assert torch.isfinite(got_boxes).all(), name
        assert torch.equal(got_boxes, want[labels]), name
    dets = ops.yolo_postprocess([pred], anchors, [stride], conf_threshold=0.5)
    assert torch.equal(dets[0]["boxes"], want[dets[0]["labels"]])


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 1e-2)])
def test_yolo_decode_matches_reference(dtype, tol):
    maps = yolo_maps(batch=3, size=128, num_classes=7, seed=2)
    for p, anc, s in zip(maps, COCO_ANCHORS, STRIDES):
        p = p.to(dtype)
        got = ops.yolo_decode(p, anc, s)
        want = reference.yolo_decode(p.float(), anc, s)
        assert got.dtype == dtype and got.shape == want.shape
        torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol * 10)


# ------------------------------------------------------------------------ yolo_postprocess


def _post_args(maps, conf=0.25, iou=0.45, max_det=300, max_nms=30000, multi_label=False):
    return (maps, list(COCO_ANCHORS.unbind(0)), STRIDES, conf, iou, max_det, max_nms, multi_label)


def _assert_same_detections(got, want):
    gb, gs, gl, gi = got
    wb, ws, wl, wi = want
    assert torch.equal(gl, wl) and torch.equal(gi, wi)
    torch.testing.assert_close(gs, ws, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gb, wb, rtol=1e-5, atol=1e-3)


@EXT
@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("setting", [
    dict(), dict(conf=0.5, iou=0.3), dict(max_det=5), dict(max_nms=40), dict(conf=0.99), dict(conf=0.0, max_nms=500),
])
def test_yolo_postprocess_equals_unfused_pipeline(multi_label, setting):
    maps = yolo_maps(batch=3, size=320, num_classes=20, positives=150, seed=5)
    args = _post_args(maps, multi_label=multi_label, **setting)
    fused = torch.ops.zoo.yolo_postprocess(*args)
    _assert_same_detections(fused, reference.yolo_postprocess(*args))
    _assert_same_detections(fused, reference.yolo_postprocess(*args, nms_fn=torchvision.ops.batched_nms))
    if "max_det" in setting:
        assert torch.bincount(fused[3]).max() <= setting["max_det"]


@EXT
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_yolo_postprocess_half_inputs(dtype):
    maps = [m.to(dtype) for m in yolo_maps(batch=2, size=256, num_classes=5, seed=8)]
    fused = torch.ops.zoo.yolo_postprocess(*_post_args(maps))
    want = reference.yolo_postprocess(*_post_args([m.float() for m in maps]))
    _assert_same_detections(fused, want)
    assert fused[0].dtype == torch.float32


def test_yolo_postprocess_api_splits_per_image():
    maps = yolo_maps(batch=4, size=256, num_classes=3, positives=60, seed=9)
    maps[0][2] = -30.0  # image 2 has no object at all
    maps[1][2] = -30.0
    maps[2][2] = -30.0
    dets = ops.yolo_postprocess(maps, COCO_ANCHORS, STRIDES, conf_threshold=0.3, iou_threshold=0.5)
    boxes, scores, labels, image = reference.yolo_postprocess(*_post_args(maps, conf=0.3, iou=0.5))
    assert len(dets) == 4 and dets[2]["boxes"].shape == (0, 4)
    for b, d in enumerate(dets):
        sel = image == b
        assert torch.equal(d["labels"], labels[sel])
        torch.testing.assert_close(d["scores"], scores[sel], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(d["boxes"], boxes[sel], rtol=1e-5, atol=1e-3)
        assert torch.all(d["scores"][:-1] >= d["scores"][1:])


def test_yolo_postprocess_single_class_single_scale():
    maps = yolo_maps(batch=1, size=64, num_classes=1, positives=20, seed=10)[2:]
    dets = ops.yolo_postprocess(maps, [COCO_ANCHORS[2]], [32], conf_threshold=0.1)
    want = reference.yolo_postprocess(maps, [COCO_ANCHORS[2]], [32.0], 0.1, 0.45, 300, 30000, False)
    assert torch.equal(dets[0]["labels"], want[2])


# ------------------------------------------------------------------------ scale_x_y and the class activation
#
# darknet's scale_x_y s (AlexeyAB/darknet cfg/yolov4.cfg: 1.2, 1.1, 1.05 for strides 8, 16, 32):
# cx = (sigmoid(tx) * s - 0.5 * (s - 1) + x) * stride; and YOLOv2's softmax class probabilities.

YOLOV4_SCALE_XY = [1.2, 1.1, 1.05]


def _decoders():
    """The yolo_decode implementations: the raw kernel, the API (kernel path) and the reference."""
    impls = {"api": ops.yolo_decode, "reference": reference.yolo_decode}
    if _ext.available():
        impls["ext"] = torch.ops.zoo.yolo_decode
    return impls


def _fp32(v: float) -> float:
    return float(np.float32(v))


def test_decode_boxes_scale_one_is_the_yolov3_formula():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 3, 4, 5, 4, generator=g) * 4
    grid = boxes.cell_grid(4, 5)
    anchors = torch.rand(1, 3, 1, 1, 2, generator=g) * 100 + 1
    yolov3 = torch.cat([(torch.sigmoid(t[..., :2]) + grid) * 16.0, torch.exp(t[..., 2:].clamp(max=10.0)) * anchors], -1)
    assert torch.equal(boxes.decode_boxes(t, grid, anchors, 16.0), yolov3)
    assert torch.equal(boxes.decode_boxes(t, grid, anchors, 16.0, scale_xy=1.0), yolov3)
    assert boxes.xy_scale_terms(1.0) == (1.0, 0.0)
    # s != 1 changes the centres only
    other = boxes.decode_boxes(t, grid, anchors, 16.0, scale_xy=1.2)
    assert torch.equal(other[..., 2:], yolov3[..., 2:]) and not torch.equal(other[..., :2], yolov3[..., :2])


def test_xy_scale_terms_round_like_darknet():
    """s rounded to fp32; the offset 0.5 * (s - 1) from that fp32 s in double, then rounded to fp32
    (darknet: -0.5 * (float scale_x_y - 1))."""
    for s in (1.2, 1.1, 1.05, 2.0, 0.5, 1e-3, 7.3):
        s32 = _fp32(s)
        assert boxes.xy_scale_terms(s) == (s32, _fp32(0.5 * (s32 - 1.0))), s
    assert boxes.xy_scale_terms(1.2) == (_fp32(1.2), _fp32(0.1000000238418579))


@pytest.mark.parametrize("scale_xy", [1.0, 1.05, 1.1, 1.2, 2.0])
def test_yolo_decode_scale_xy_closed_form(scale_xy):
    """sigmoid(0) = 0.5 decodes to the cell's centre (exactly: 0.5 * s and 0.5 * (s - 1) are exact
    in fp32 for s in [1, 2)); sigmoid(-inf) = 0 and sigmoid(+inf) = 1 reach (s - 1) / 2 beyond
    the cell's borders."""
    w, stride = 3, 8.0
    pred = torch.zeros(1, 6, 1, w)
    pred[0, 0] = torch.tensor([0.0, -math.inf, math.inf])  # tx per cell x
    pred[0, 1] = torch.tensor([math.inf, 0.0, -math.inf])  # ty
    anchors = torch.tensor([[10.0, 20.0]])
    half_out = (scale_xy - 1) / 2
    want_cx = torch.tensor([(0 + 0.5) * stride, (1 - half_out) * stride, (2 + 1 + half_out) * stride])
    want_cy = torch.tensor([(1 + half_out) * stride, 0.5 * stride, -half_out * stride])
    for name, decode in _decoders().items():
        out = decode(pred, anchors, stride, scale_xy)[0]
        assert out[0, 0].item() == 0.5 * stride, name  # exact
        assert out[1, 1].item() == 0.5 * stride, name
        torch.testing.assert_close(out[:, 0], want_cx, rtol=1e-6, atol=1e-5, msg=name)
        torch.testing.assert_close(out[:, 1], want_cy, rtol=1e-6, atol=1e-5, msg=name)
        assert torch.equal(out[:, 2:4], torch.tensor([[10.0, 20.0]]).expand(3, 2)), name  # exp(0) * anchor


@EXT
@pytest.mark.parametrize("scale_xy", [1.0, 1.05, 1.1, 1.2, 0.5, 3.7])
def test_yolo_decode_centres_round_like_the_torch_formula(scale_xy):
    """The kernel's centre is (sigmoid(t) * s - offset + x) * stride in fp32, one rounding per
    operation, with s and offset as darknet rounds them: feed the kernel's own sigmoid (its
    objectness output for the same logit) to that formula in torch and get the same bits."""
    g = torch.Generator().manual_seed(1)
    a, c, h, w = 2, 3, 4, 5
    p = torch.randn(2, a, 5 + c, h, w, generator=g) * 4
    p[:, :, 1] = p[:, :, 0]
    p[:, :, 4] = p[:, :, 0]  # objectness logit = tx = ty
    pred = p.reshape(2, a * (5 + c), h, w)
    out = torch.ops.zoo.yolo_decode(pred, torch.tensor([[10.0, 13.0], [30.0, 61.0]]), 16.0, scale_xy)
    assert_centres_are_the_rounded_formula(out, scale_xy, a, h, w, 16.0)


def assert_centres_are_the_rounded_formula(out, scale_xy, a, h, w, stride):
    """``out`` (a decode of 2 images whose tx = ty = objectness logit): its centres equal
    ``(sigmoid * s - offset + grid) * stride`` in fp32 with the kernel's own sigmoid (its
    objectness column), s rounded to fp32 and the offset 0.5 * (s - 1) from that s."""
    sig = out[..., 4].view(2, a, h, w)
    s32 = torch.tensor(scale_xy, dtype=torch.float32)
    off32 = torch.tensor(0.5 * (s32.item() - 1.0), dtype=torch.float32)
    gx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    gy = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    assert torch.equal(out[..., 0].view(2, a, h, w), (sig * s32 - off32 + gx) * stride)
    assert torch.equal(out[..., 1].view(2, a, h, w), (sig * s32 - off32 + gy) * stride)


def _softmax_oracle(pred: torch.Tensor, a: int) -> torch.Tensor:
    """Class probabilities ``[B, A*H*W, C]`` by torch.softmax over the class channels."""
    b, ch, h, w = pred.shape
    logits = pred.float().view(b, a, ch // a, h, w)[:, :, 5:]  # [B, A, C, H, W]
    return torch.softmax(logits, dim=2).permute(0, 1, 3, 4, 2).reshape(b, a * h * w, ch // a - 5)


@pytest.mark.parametrize("scale_xy", [1.0, 1.05, 1.2])
@pytest.mark.parametrize("cls_act", ["sigmoid", "softmax"])
def test_yolo_decode_scale_xy_and_cls_act_match_reference(scale_xy, cls_act):
    g = torch.Generator().manual_seed(3)
    a, c, h, w, stride = 3, 7, 5, 6, 16.0
    pred = torch.randn(2, a * (5 + c), h, w, generator=g) * 3
    anchors = torch.rand(a, 2, generator=g) * 200 + 5
    want = reference.yolo_decode(pred, anchors, stride, scale_xy, cls_act)
    # the reference against the closed forms: centres, sigmoid objectness, class probabilities
    t = pred.view(2, a, 5 + c, h, w).permute(0, 1, 3, 4, 2)
    gx = torch.arange(w).view(1, 1, 1, w)
    cx = ((torch.sigmoid(t[..., 0].double()) * scale_xy - 0.5 * (scale_xy - 1) + gx) * stride).reshape(2, -1)
    torch.testing.assert_close(want[..., 0].double(), cx, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(want[..., 4], torch.sigmoid(t[..., 4]).reshape(2, -1))
    probs = _softmax_oracle(pred, a) if cls_act == "softmax" else torch.sigmoid(t[..., 5:]).reshape(2, a * h * w, c)
    torch.testing.assert_close(want[..., 5:], probs, rtol=1e-6, atol=1e-7)
    for name, decode in _decoders().items():
        got = decode(pred, anchors, stride, scale_xy, cls_act)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4, msg=name)
        torch.testing.assert_close(got[..., 5:], want[..., 5:], rtol=4e-7, atol=1e-7, msg=name)
    if scale_xy == 1.0 and _ext.available():
        assert torch.equal(torch.ops.zoo.yolo_decode(pred, anchors, stride, 1.0, cls_act)[..., :5],
                           torch.ops.zoo.yolo_decode(pred, anchors, stride)[..., :5])


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 1e-2)])
def test_yolo_decode_softmax_other_dtypes(dtype, tol):
    g = torch.Generator().manual_seed(4)
    pred = (torch.randn(1, 2 * 9, 3, 4, generator=g) * 3).to(dtype)
    anchors = torch.tensor([[12.0, 16.0], [40.0, 30.0]])
    got = ops.yolo_decode(pred, anchors, 8.0, 1.1, "softmax")
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), reference.yolo_decode(pred.float(), anchors, 8.0, 1.1, "softmax"),
                               rtol=tol, atol=tol)
    torch.testing.assert_close(got[..., 5:].float(), _softmax_oracle(pred, 2), rtol=tol, atol=tol)


def test_yolo_decode_softmax_is_stable_and_propagates_nan_like_torch():
    """The max is subtracted before exp: logits of 1e30 or 100 give probabilities, not inf/inf.
    A NaN or +inf logit, or a cell of only -inf logits, gives NaN for the whole cell, as
    torch.softmax does; -inf next to finite logits is probability 0."""
    rows = [
        [1e30, 0.0, -1e30], [100.0, 99.0, 98.0], [200.0, -200.0, 0.0], [math.nan, 0.0, 1.0],
        [math.inf, 0.0, 1.0], [-math.inf, -math.inf, -math.inf], [-math.inf, 0.0, 0.0],
    ]
    n = len(rows)
    pred = torch.zeros(1, 5 + 3, 1, n)
    pred[0, 5:, 0] = torch.tensor(rows).t()
    oracle = torch.softmax(torch.tensor(rows), dim=1)
    assert oracle[0].tolist() == [1.0, 0.0, 0.0]
    assert torch.isnan(oracle[3:6]).all() and oracle[6].tolist() == [0.0, 0.5, 0.5]
    for name, decode in _decoders().items():
        got = decode(pred, torch.tensor([[4.0, 4.0]]), 8.0, 1.0, "softmax")[0, :, 5:]
        torch.testing.assert_close(got, oracle, rtol=1e-6, atol=1e-7, equal_nan=True, msg=name)
        assert torch.equal(got[6], torch.tensor([0.0, 0.5, 0.5])), name


def test_yolo_decode_softmax_differs_from_sigmoid():
    """Objectness is a sigmoid either way; the class probabilities of one cell sum to 1 only
    with softmax."""
    pred = yolo_maps(batch=1, size=64, num_classes=4, positives=5, seed=5)[0]
    soft = ops.yolo_decode(pred, COCO_ANCHORS[0], 8.0, cls_act="softmax")
    sig = ops.yolo_decode(pred, COCO_ANCHORS[0], 8.0)
    assert torch.equal(soft[..., :5], sig[..., :5])
    torch.testing.assert_close(soft[..., 5:].sum(-1), torch.ones(soft.shape[:2]))
    assert (sig[..., 5:].sum(-1) - 1).abs().max() > 0.5


@EXT
def test_yolo_decode_fallback_equals_the_kernel_with_the_new_arguments(monkeypatch):
    pred = yolo_maps(batch=2, size=64, num_classes=3, positives=8, seed=6)[1]
    monkeypatch.delenv("ZOO_OPS", raising=False)
    kernel = ops.yolo_decode(pred, COCO_ANCHORS[1], 16.0, 1.1, "softmax")
    monkeypatch.setenv("ZOO_OPS", "torch")
    calls = []
    real = reference.yolo_decode
    monkeypatch.setattr(reference, "yolo_decode", lambda *a: calls.append(a[3:]) or real(*a))
    fallback = ops.yolo_decode(pred, COCO_ANCHORS[1], 16.0, 1.1, "softmax")
    assert calls == [(1.1, "softmax")]
    torch.testing.assert_close(fallback, kernel, rtol=1e-5, atol=1e-4)


def _unfused_with_torchvision(maps, scale_xy, cls_act, conf=0.25, iou=0.45, max_det=300, multi_label=False):
    """The pipeline written out here: each scale decoded by zoo.ops.yolo_decode with its own
    scale_xy, score = obj * p, best class (or every class above conf), torchvision's class-aware NMS
    (its per-class path, exact for any coordinates)."""
    rows = torch.cat([ops.yolo_decode(m, a, s, sxy, cls_act) for m, a, s, sxy in
                      zip(maps, COCO_ANCHORS, STRIDES, scale_xy)], 1)
    out = []
    for d in rows:
        scores = d[:, 4:5] * d[:, 5:]
        if multi_label:
            r, lab = torch.nonzero(scores > conf, as_tuple=True)
            sc = scores[r, lab]
        else:
            sc, lab = scores.max(1)
            r = torch.nonzero(sc > conf).squeeze(1)
            sc, lab = sc[r], lab[r]
        xyxy = boxes.cxcywh_to_xyxy(d[r, :4])
        keep = torchvision.ops.boxes._batched_nms_vanilla(xyxy, sc, lab, iou)[:max_det]  # (exact per class)
        out.append((xyxy[keep], sc[keep], lab[keep]))
    return out


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("cls_act", ["sigmoid", "softmax"])
@pytest.mark.parametrize("scale_xy", [None, 1.2, YOLOV4_SCALE_XY], ids=["none", "one", "per-scale"])
def test_yolo_postprocess_scale_xy_and_cls_act(backend, scale_xy, cls_act, multi_label):
    maps = yolo_maps(batch=2, size=128, num_classes=5, positives=40, seed=7)
    dets = ops.yolo_postprocess(maps, COCO_ANCHORS, STRIDES, conf_threshold=0.2, multi_label=multi_label,
                                scale_xy=scale_xy, cls_act=cls_act)
    per_scale = [1.0] * 3 if scale_xy is None else [scale_xy] * 3 if isinstance(scale_xy, float) else scale_xy
    want = _unfused_with_torchvision(maps, per_scale, cls_act, conf=0.2, multi_label=multi_label)
    assert sum(len(d["scores"]) for d in dets) > 10
    for d, (wb, ws, wl) in zip(dets, want):
        assert torch.equal(d["labels"], wl)
        torch.testing.assert_close(d["scores"], ws, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(d["boxes"], wb, rtol=1e-5, atol=1e-3)


@EXT
@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("cls_act", ["sigmoid", "softmax"])
def test_yolo_postprocess_fused_equals_the_pipeline_on_its_own_decode(cls_act, multi_label):
    """Exactly the reference pipeline fed with the kernel's decode (the same scale_xy and cls_act
    reach both), and close to the pure reference."""
    maps = yolo_maps(batch=2, size=128, num_classes=6, positives=60, seed=8)
    args = (*_post_args(maps, conf=0.15, multi_label=multi_label), YOLOV4_SCALE_XY, cls_act)
    fused = torch.ops.zoo.yolo_postprocess(*args)
    exact = reference.yolo_postprocess(*args, decode_fn=torch.ops.zoo.yolo_decode)
    for got, want in zip(fused, exact):
        assert torch.equal(got, want)
    _assert_same_detections(fused, reference.yolo_postprocess(*args, nms_fn=torchvision.ops.batched_nms))
    # the arguments matter: another scale_xy moves the boxes, another cls_act the scores
    plain = torch.ops.zoo.yolo_postprocess(*_post_args(maps, conf=0.15, multi_label=multi_label))
    assert fused[0].shape[0] > 10 and not torch.equal(fused[0][:5], plain[0][:5])


def test_yolo_postprocess_scale_xy_forms_agree(backend):
    maps = yolo_maps(batch=1, size=96, num_classes=3, positives=20, seed=9)
    run = functools.partial(ops.yolo_postprocess, maps, COCO_ANCHORS, STRIDES, conf_threshold=0.2)
    base = run()[0]
    for same in (run(scale_xy=None), run(scale_xy=1.0), run(scale_xy=[1.0, 1.0, 1.0])):
        assert all(torch.equal(same[0][k], base[k]) for k in base)
    per = run(scale_xy=YOLOV4_SCALE_XY)[0]
    for form in ((1.2, 1.1, 1.05), torch.tensor(YOLOV4_SCALE_XY, dtype=torch.float64), np.array(YOLOV4_SCALE_XY)):
        assert all(torch.equal(run(scale_xy=form)[0][k], per[k]) for k in per)
    one = run(scale_xy=1.2)[0]
    assert all(torch.equal(run(scale_xy=[1.2] * 3)[0][k], one[k]) for k in one)
    assert not torch.equal(one["boxes"], base["boxes"])


def test_yolo_scale_xy_and_cls_act_errors(backend):
    maps = yolo_maps(batch=1, size=64, num_classes=2, positives=5)
    anc = list(COCO_ANCHORS.unbind(0))
    for bad in (0.0, -1.2, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="^scale_xy: expected a positive number"):
            ops.yolo_decode(maps[0], anc[0], 8, scale_xy=bad)
        with pytest.raises(ValueError, match="^scale_xy: expected a positive number"):
            ops.yolo_postprocess(maps, anc, STRIDES, scale_xy=bad)
        with pytest.raises(ValueError, match=r"^scale_xy\[1\]: expected a positive number"):
            ops.yolo_postprocess(maps, anc, STRIDES, scale_xy=[1.2, bad, 1.05])
    with pytest.raises(ValueError, match="^scale_xy: got 2 values for 3 scales in preds"):
        ops.yolo_postprocess(maps, anc, STRIDES, scale_xy=[1.2, 1.1])
    with pytest.raises(ValueError, match=r"^scale_xy: expected None, a number or one number per scale"):
        ops.yolo_postprocess(maps, anc, STRIDES, scale_xy=torch.ones(3, 1))
    for bad in ("relu", "Softmax", None, 1):
        with pytest.raises(ValueError, match=r"^cls_act: expected one of \('sigmoid', 'softmax'\), got"):
            ops.yolo_decode(maps[0], anc[0], 8, cls_act=bad)
        with pytest.raises(ValueError, match=r"^cls_act: expected one of \('sigmoid', 'softmax'\), got"):
            ops.yolo_postprocess(maps, anc, STRIDES, cls_act=bad)
    # the order of the checks: stride before scale_xy before cls_act before the anchor values
    with pytest.raises(ValueError, match="^stride"):
        ops.yolo_decode(maps[0], anc[0], 0, scale_xy=0.0, cls_act="relu")
    with pytest.raises(ValueError, match="^scale_xy"):
        ops.yolo_decode(maps[0], -anc[0], 8, scale_xy=0.0, cls_act="relu")
    with pytest.raises(ValueError, match="^cls_act"):
        ops.yolo_decode(maps[0], -anc[0], 8, cls_act="relu")
    with pytest.raises(ValueError, match="^max_det"):
        ops.yolo_postprocess(maps, anc, STRIDES, max_det=0, cls_act="relu")
    with pytest.raises(ValueError, match=r"^scale_xy\[2\]"):
        ops.yolo_postprocess(maps, [anc[0], anc[1], -anc[2]], STRIDES, scale_xy=[1, 1, 0], cls_act="relu")


def test_yolo_decode_meta_takes_the_new_arguments():
    pred = torch.zeros(2, 3 * 8, 4, 5, device="meta")
    anchors = torch.ones(3, 2, device="meta")
    out = ops.yolo_decode(pred, anchors, 8.0, 1.2, "softmax")
    assert out.is_meta and out.shape == (2, 3 * 4 * 5, 8)
    with pytest.raises(ValueError, match="^cls_act"):
        ops.yolo_decode(pred, anchors, 8.0, 1.2, "relu")


# ------------------------------------------------------------------------ YOLOv1 (darknet's detection layer)


def _yolov1_example():
    """S=2, 2 boxes per cell, 3 classes, a 200 x 100 (w x h) image: darknet's layout written out
    entry by entry, with the decoded rows worked out by hand."""
    s, nb, c = 2, 2, 3
    probs = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.0, 0.0, 1.0], [0.6, 0.3, 0.1]]  # per cell i = row*S + col
    confs = [[0.9, 0.2], [0.4, 0.8], [0.05, 0.6], [0.7, 0.3]]                 # per cell, box
    xywh = {  # (cell, box): x, y in the cell, sqrt(w), sqrt(h) of the image
        (0, 0): (0.5, 0.5, 0.5, 0.5), (0, 1): (0.0, 1.0, 0.1, 0.2),
        (1, 0): (0.25, 0.75, 0.3, 0.4), (1, 1): (0.5, 0.5, 1.0, 1.0),
        (2, 0): (0.75, 0.25, 0.2, 0.6), (2, 1): (0.5, 0.5, 0.5, 0.5),
        (3, 0): (0.5, 0.0, 0.4, 0.3), (3, 1): (1.0, 1.0, 0.0, 0.9),
    }
    flat = [p for cell in probs for p in cell] + [v for cell in confs for v in cell]
    flat += [v for i in range(s * s) for n in range(nb) for v in xywh[(i, n)]]
    assert len(flat) == s * s * (c + 5 * nb)
    # decoded by hand: cx = (x + col) / S * 200, cy = (y + row) / S * 100, w = sqrt_w^2 * 200, h = sqrt_h^2 * 100
    rows = [
        [50.0, 25.0, 50.0, 25.0, 0.9, 0.1, 0.7, 0.2],      # cell 0 (row 0, col 0), box 0
        [0.0, 50.0, 2.0, 4.0, 0.2, 0.1, 0.7, 0.2],         # cell 0, box 1
        [125.0, 37.5, 18.0, 16.0, 0.4, 0.5, 0.3, 0.2],     # cell 1 (row 0, col 1), box 0
        [150.0, 25.0, 200.0, 100.0, 0.8, 0.5, 0.3, 0.2],   # cell 1, box 1
        [75.0, 62.5, 8.0, 36.0, 0.05, 0.0, 0.0, 1.0],      # cell 2 (row 1, col 0), box 0
        [50.0, 75.0, 50.0, 25.0, 0.6, 0.0, 0.0, 1.0],      # cell 2, box 1
        [150.0, 50.0, 32.0, 9.0, 0.7, 0.6, 0.3, 0.1],      # cell 3 (row 1, col 1), box 0
        [200.0, 100.0, 0.0, 81.0, 0.3, 0.6, 0.3, 0.1],     # cell 3, box 1
    ]
    return torch.tensor([flat]), torch.tensor([rows]), (s, nb, c)


def test_decode_yolov1_hand_built_example():
    out, want, (s, nb, c) = _yolov1_example()
    got = boxes.decode_yolov1(out, s, nb, c, img_h=100, img_w=200)
    assert got.shape == (1, s * s * nb, 5 + c)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    # a batch decodes image by image; fp64 stays fp64; gradients flow to every entry used
    two = boxes.decode_yolov1(torch.cat([out, out.flip(1)]).double().requires_grad_(), s, nb, c, 100, 200)
    assert two.dtype == torch.float64
    torch.testing.assert_close(two[0].float(), want[0], rtol=1e-6, atol=1e-5)
    leaf = out.clone().requires_grad_()
    boxes.decode_yolov1(leaf, s, nb, c, 100, 200).sum().backward()
    assert (leaf.grad != 0).sum() > 40


def test_decode_yolov1_darknet_size():
    """cfg/yolo.cfg: side=7 num=2 classes=20 -> 1470 values per image, 98 boxes."""
    out = torch.rand(3, 1470)
    rows = boxes.decode_yolov1(out, 7, 2, 20, 448, 448)
    assert rows.shape == (3, 98, 25)
    # box n of cell i = row*7 + col: (x, y) at 7*7*(20+2) + (i*2 + n)*4, class probs at i*20
    i, n = 7 * 3 + 5, 1
    base = 49 * 22 + (i * 2 + n) * 4
    torch.testing.assert_close(rows[1, i * 2 + n, 0], (out[1, base] + 5) / 7 * 448)
    torch.testing.assert_close(rows[1, i * 2 + n, 1], (out[1, base + 1] + 3) / 7 * 448)
    torch.testing.assert_close(rows[1, i * 2 + n, 3], out[1, base + 3] ** 2 * 448)
    assert torch.equal(rows[1, i * 2 + n, 4], out[1, 49 * 20 + i * 2 + n])
    assert torch.equal(rows[1, i * 2 + n, 5:], out[1, i * 20:(i + 1) * 20])


def _yolov1_oracle(out, s, nb, c, img_h, img_w, conf, iou, max_det):
    rows = boxes.decode_yolov1(out.float(), s, nb, c, img_h, img_w)
    want = []
    for r in rows:
        scores, labels = (r[:, 4:5] * r[:, 5:]).max(1)
        sel = scores > conf
        xyxy = torchvision.ops.box_convert(r[sel, :4], "cxcywh", "xyxy")
        keep = torchvision.ops.boxes._batched_nms_vanilla(xyxy, scores[sel], labels[sel], iou)[:max_det]
        want.append((xyxy[keep], scores[sel][keep], labels[sel][keep]))
    return want


@pytest.mark.parametrize("conf,iou,max_det", [(0.25, 0.45, 300), (0.05, 0.3, 300), (0.1, 0.5, 4), (0.9, 0.5, 300)])
def test_yolov1_postprocess_equals_decode_and_torchvision(backend, conf, iou, max_det):
    g = torch.Generator().manual_seed(10)
    s, nb, c, bsz = 3, 2, 4, 3
    probs = torch.softmax(torch.randn(bsz, s * s, c, generator=g) * 2, -1).reshape(bsz, -1)
    confs = torch.rand(bsz, s * s * nb, generator=g)
    box = torch.rand(bsz, s * s * nb, 4, generator=g) * torch.tensor([1.0, 1.0, 0.6, 0.6]) + torch.tensor(
        [0.0, 0.0, 0.2, 0.2])
    out = torch.cat([probs, confs, box.reshape(bsz, -1)], 1)
    dets = ops.yolov1_postprocess(out, s, nb, c, (96, 128), conf, iou, max_det)
    want = _yolov1_oracle(out, s, nb, c, 96, 128, conf, iou, max_det)
    assert len(dets) == bsz
    for d, (wb, ws, wl) in zip(dets, want):
        assert d["boxes"].dtype == torch.float32 and d["labels"].dtype == torch.int64
        assert torch.equal(d["labels"], wl) and torch.equal(d["scores"], ws) and torch.equal(d["boxes"], wb)
        assert len(d["scores"]) <= max_det
    if conf < 0.9:
        assert sum(len(d["scores"]) for d in dets) > 3
    # a square img_size is one int
    square = ops.yolov1_postprocess(out, s, nb, c, 96, conf, iou, max_det)
    for d, (wb, ws, wl) in zip(square, _yolov1_oracle(out, s, nb, c, 96, 96, conf, iou, max_det)):
        assert torch.equal(d["boxes"], wb) and torch.equal(d["labels"], wl)


def test_yolov1_postprocess_hand_built_example():
    """score = confidence * class prob, best class per box; class-aware NMS at IoU 0.45."""
    out, _, (s, nb, c) = _yolov1_example()
    dets = ops.yolov1_postprocess(out, s, nb, c, (100, 200), conf_threshold=0.3, iou_threshold=0.45)[0]
    # scores: cell 0 box 0: 0.9*0.7 = 0.63 (class 1); cell 1 box 1: 0.8*0.5 = 0.4 (class 0);
    # cell 2 box 1: 0.6 (class 2); cell 3 box 0: 0.7*0.6 = 0.42 (class 0); the rest <= 0.3.
    # Boxes of class 0 (cell 1 box 1: the whole image; cell 3 box 0: 32 x 9) overlap by 288 / 20000: both stay.
    assert dets["labels"].tolist() == [1, 2, 0, 0]
    torch.testing.assert_close(dets["scores"], torch.tensor([0.63, 0.6, 0.42, 0.4]))
    torch.testing.assert_close(dets["boxes"][0], torch.tensor([25.0, 12.5, 75.0, 37.5]))
    torch.testing.assert_close(dets["boxes"][3], torch.tensor([50.0, -25.0, 250.0, 75.0]))


def test_yolov1_postprocess_drops_non_finite_boxes():
    out, _, (s, nb, c) = _yolov1_example()
    bad = out.clone()
    bad[0, s * s * (c + nb) + 2] = math.nan  # sqrt(w) of cell 0 box 0: its box is NaN
    dets = ops.yolov1_postprocess(bad, s, nb, c, (100, 200), conf_threshold=0.3)[0]
    assert dets["labels"].tolist() == [2, 0, 0] and torch.isfinite(dets["boxes"]).all()


def test_yolov1_errors(backend):
    out, _, (s, nb, c) = _yolov1_example()
    cases = {
        "^grid_size: expected a positive int": dict(grid_size=0),
        "^num_boxes: expected a positive int": dict(num_boxes=True),
        "^num_classes: expected a positive int": dict(num_classes=2.0),
        r"^out: expected shape \[B, S\*S\*\(C\+5\*num_boxes\)\] = \[B, 52\]": dict(out=out[:, :50]),
        r"^out: expected shape .* got \(52,\)": dict(out=out[0]),
        "^out: expected a floating-point tensor": dict(out=out.long()),
        "^out: expected a torch.Tensor": dict(out=out.tolist()),
        "^img_size: expected a positive number": dict(img_size=(0, 100)),
        r"^img_size: expected an int or \(h, w\)": dict(img_size=(1, 2, 3)),
        "^conf_threshold": dict(conf_threshold=1.5),
        "^iou_threshold": dict(iou_threshold=float("nan")),
        "^max_det: expected a positive int": dict(max_det=0),
        "^out: on meta": dict(out=out.to("meta")),
    }
    for msg, change in cases.items():
        kwargs = dict(out=out, grid_size=s, num_boxes=nb, num_classes=c, img_size=(100, 200))
        kwargs.update(change)
        with pytest.raises(ValueError, match=msg):
            ops.yolov1_postprocess(**kwargs)
    with pytest.raises(ValueError, match="^img_w: expected a positive number"):
        boxes.decode_yolov1(out, s, nb, c, 100, -1)
    with pytest.raises(ValueError, match="^grid_size"):
        boxes.decode_yolov1(out, 0, nb, c, 100, 200)


# ------------------------------------------------------------------------ registration / compile


@EXT
def test_opcheck_every_op():
    boxes, scores = clustered_boxes(200, seed=1)
    idxs = torch.randint(0, 5, (200,))
    torch.library.opcheck(torch.ops.zoo.nms.default, (boxes, scores, 0.5))
    torch.library.opcheck(torch.ops.zoo.batched_nms.default, (boxes, scores, idxs, 0.5))
    maps = yolo_maps(batch=2, size=96, num_classes=4, positives=10, seed=3)
    torch.library.opcheck(torch.ops.zoo.yolo_decode.default, (maps[0], COCO_ANCHORS[0].clone(), 8.0))
    torch.library.opcheck(torch.ops.zoo.yolo_decode.default, (maps[0], COCO_ANCHORS[0].clone(), 8.0, 1.2, "softmax"))
    torch.library.opcheck(torch.ops.zoo.yolo_postprocess.default, _post_args(maps, max_det=50))
    torch.library.opcheck(torch.ops.zoo.yolo_postprocess.default,
                          (*_post_args(maps, max_det=50, multi_label=True), [1.2, 1.1, 1.05], "softmax"))


@EXT
def test_ops_run_under_torch_compile():
    boxes, scores = clustered_boxes(500, seed=2)
    idxs = torch.randint(0, 4, (500,))
    maps = yolo_maps(batch=2, size=96, num_classes=4, positives=10, seed=4)

    def detect(boxes, scores, idxs, p0):
        keep = torch.ops.zoo.batched_nms(boxes * 1.0, scores, idxs, 0.5)
        decoded = torch.ops.zoo.yolo_decode(p0 + 0.0, COCO_ANCHORS[0], 8.0)
        return keep, torch.ops.zoo.nms(boxes[keep], scores[keep], 0.3), decoded.sum()

    torch._dynamo.reset()
    compiled = torch.compile(detect, fullgraph=True, dynamic=False, backend="aot_eager")
    got, want = compiled(boxes, scores, idxs, maps[0]), detect(boxes, scores, idxs, maps[0])
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2])

    def api(boxes, scores):  # the validating Python API, with its graph breaks
        return ops.nms(boxes, scores, 0.5)

    assert torch.equal(torch.compile(api)(boxes, scores), torchvision.ops.nms(boxes, scores, 0.5))


# ------------------------------------------------------------------------ input checks


@pytest.fixture(params=["ext", "torch"])
def backend(request, monkeypatch):
    """Runs a test through the extension and through the pure-torch fallback (ZOO_OPS=torch)."""
    if request.param == "ext" and not _ext.available():
        pytest.skip("zoo._C not built")
    if request.param == "torch":
        monkeypatch.setenv("ZOO_OPS", "torch")
    else:
        monkeypatch.delenv("ZOO_OPS", raising=False)
    return request.param


def test_nms_input_errors(backend):
    b, s = clustered_boxes(10)
    bad = {
        "boxes: expected a 2-D": (b[None], s, 0.5),
        r"boxes: expected shape \[N, 4\]": (b[:, :3], s, 0.5),
        "boxes: expected a floating-point": (b.long(), s, 0.5),
        "scores: expected a 1-D": (b, s[:, None], 0.5),
        "scores: has 9 entries": (b, s[:9], 0.5),
        "scores: contains NaN": (b, torch.where(torch.arange(10) == 3, float("nan"), s), 0.5),
        "scores: contains NaN or infinite": (b, torch.where(torch.arange(10) == 3, float("inf"), s), 0.5),
        "boxes: contains NaN": (torch.where(torch.arange(40).view(10, 4) == 5, float("inf"), b), s, 0.5),
        "boxes: expected x1 <= x2": (b[:, [2, 1, 0, 3]], s, 0.5),
        r"iou_threshold: expected a value in \[0, 1\]": (b, s, 1.5),
        r"iou_threshold: expected a value in \[0, 1\], got nan": (b, s, float("nan")),
        "iou_threshold: expected a number": (b, s, "high"),
        "scores: on meta": (b, s.to("meta"), 0.5),
        "boxes: expected a torch.Tensor": (b.tolist(), s, 0.5),
    }
    for msg, args in bad.items():
        with pytest.raises(ValueError, match=msg):
            ops.nms(*args)


def test_batched_nms_input_errors(backend):
    b, s = clustered_boxes(10)
    i = torch.zeros(10, dtype=torch.int64)
    with pytest.raises(ValueError, match="idxs: expected an integer tensor"):
        ops.batched_nms(b, s, i.float(), 0.5)
    with pytest.raises(ValueError, match="idxs: has 8 entries"):
        ops.batched_nms(b, s, i[:8], 0.5)
    with pytest.raises(ValueError, match="idxs: on meta"):
        ops.batched_nms(b, s, i.to("meta"), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        ops.batched_nms(b, s, i, -0.1)


def test_yolo_input_errors(backend):
    maps = yolo_maps(batch=1, size=64, num_classes=2, positives=5)
    anc = list(COCO_ANCHORS.unbind(0))
    with pytest.raises(ValueError, match="pred: expected a 4-D"):
        ops.yolo_decode(maps[0][0], anc[0], 8)
    with pytest.raises(ValueError, match="pred: channel count 20"):
        ops.yolo_decode(maps[0][:, :20], anc[0], 8)
    with pytest.raises(ValueError, match="pred: expected a floating-point"):
        ops.yolo_decode(maps[0].long(), anc[0], 8)
    with pytest.raises(ValueError, match=r"anchors: expected shape \[A, 2\]"):
        ops.yolo_decode(maps[0], torch.ones(3, 3), 8)
    with pytest.raises(ValueError, match="anchors: anchor sizes must be finite and > 0"):
        ops.yolo_decode(maps[0], -anc[0], 8)
    with pytest.raises(ValueError, match="stride: expected a positive number"):
        ops.yolo_decode(maps[0], anc[0], 0)
    with pytest.raises(ValueError, match="anchors: on meta"):
        ops.yolo_decode(maps[0], anc[0].to("meta"), 8)
    with pytest.raises(ValueError, match="preds: expected a non-empty list"):
        ops.yolo_postprocess([], anc, STRIDES)
    with pytest.raises(ValueError, match="preds: expected a non-empty list"):
        ops.yolo_postprocess(maps[0], anc, STRIDES)
    with pytest.raises(ValueError, match="anchors: got 2 anchor sets for 3 scales"):
        ops.yolo_postprocess(maps, anc[:2], STRIDES)
    with pytest.raises(ValueError, match="strides: got 1 strides"):
        ops.yolo_postprocess(maps, anc, [8])
    with pytest.raises(ValueError, match=r"preds\[1\]: batch 1 and 1 classes differ"):
        ops.yolo_postprocess([maps[0], maps[1][:, :18]], anc[:2], STRIDES[:2])
    with pytest.raises(ValueError, match=r"preds\[2\]: on meta"):
        ops.yolo_postprocess([maps[0], maps[1], maps[2].to("meta")], anc, STRIDES)
    with pytest.raises(ValueError, match="conf_threshold"):
        ops.yolo_postprocess(maps, anc, STRIDES, conf_threshold=2.0)
    with pytest.raises(ValueError, match="max_det: expected a positive int"):
        ops.yolo_postprocess(maps, anc, STRIDES, max_det=0)
    with pytest.raises(ValueError, match=r"strides\[1\]"):
        ops.yolo_postprocess(maps, anc, [8, float("nan"), 32])
    with pytest.raises(ValueError, match="pred: channel count 15 is not A\\*\\(5\\+C\\) for A=3 anchors and C>=1"):
        ops.yolo_decode(torch.zeros(1, 15, 4, 4), anc[0], 8)  # zero classes


# ------------------------------------------------------------------------ the raw ops check their input too
#
# Each case is an input zoo.ops rejects. torch.ops.zoo.* (the C++ entry points, or the fake
# kernel for "meta" tensors) must reject it with a ValueError carrying the same message, and so
# must the pure-torch fallback (ZOO_OPS=torch).

NMS_CASES = list(nms_bad_inputs())
THRESHOLD_CASES = {"thr 1.5": 1.5, "thr -0.1": -0.1, "thr nan": float("nan"), "thr inf": float("inf")}


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def _same_rejection(api, raw, args, monkeypatch):
    monkeypatch.delenv("ZOO_OPS", raising=False)
    want = _message(api, *args)
    assert _message(raw, *args) == want
    monkeypatch.setenv("ZOO_OPS", "torch")
    assert _message(api, *args) == want
    return want


@EXT
@pytest.mark.parametrize("case", NMS_CASES + list(THRESHOLD_CASES))
def test_raw_nms_rejects_what_the_api_rejects(case, monkeypatch):
    b, s = clustered_boxes(10)
    args = (*nms_bad_inputs()[case], 0.5) if case in NMS_CASES else (b, s, THRESHOLD_CASES[case])
    msg = _same_rejection(ops.nms, torch.ops.zoo.nms, args, monkeypatch)
    if case == "too many boxes":
        assert msg.startswith("boxes: 2147483649 boxes")


@EXT
@pytest.mark.parametrize("case", [c for c in NMS_CASES if c != "boxes (0,)"] + list(THRESHOLD_CASES) + [
    "idxs float", "idxs 2-D", "idxs short", "idxs on meta", "idxs bool"])
def test_raw_batched_nms_rejects_what_the_api_rejects(case, monkeypatch):
    b, s = clustered_boxes(10)
    i = torch.arange(10) % 3
    if case in NMS_CASES:
        boxes, scores = nms_bad_inputs()[case]  # ("boxes (0,)" is no error here: test_empty_flat_boxes)
        idxs = torch.zeros(1, dtype=torch.int64).expand(BIG) if case == "too many boxes" else i
        args = (boxes, scores, idxs, 0.5)
    elif case in THRESHOLD_CASES:
        args = (b, s, i, THRESHOLD_CASES[case])
    else:
        idxs = {"idxs float": i.float(), "idxs 2-D": i[:, None], "idxs short": i[:8], "idxs on meta": i.to("meta"),
                "idxs bool": i > 0}[case]
        args = (b, s, idxs, 0.5)
    _same_rejection(ops.batched_nms, torch.ops.zoo.batched_nms, args, monkeypatch)


@EXT
@pytest.mark.parametrize("case", list(yolo_decode_bad_inputs()))
def test_raw_yolo_decode_rejects_what_the_api_rejects(case, monkeypatch):
    _same_rejection(ops.yolo_decode, torch.ops.zoo.yolo_decode, yolo_decode_bad_inputs()[case], monkeypatch)


def _api_postprocess(preds, anchors, strides, conf, iou, max_det, max_nms, multi_label, scale_xy=None,
                     cls_act="sigmoid"):
    return ops.yolo_postprocess(preds, anchors, strides, conf_threshold=conf, iou_threshold=iou, max_det=max_det,
                                max_nms=max_nms, multi_label=multi_label, scale_xy=scale_xy, cls_act=cls_act)


@EXT
@pytest.mark.parametrize("case", list(yolo_postprocess_bad_inputs()))
def test_raw_yolo_postprocess_rejects_what_the_api_rejects(case, monkeypatch):
    _same_rejection(_api_postprocess, torch.ops.zoo.yolo_postprocess, yolo_postprocess_bad_inputs()[case], monkeypatch)


# ------------------------------------------------------------------------ empty (0,) inputs, as torchvision


EMPTY = {
    "(0,) float": lambda: torch.zeros(0),
    "(0, 4)": lambda: torch.zeros(0, 4),
}


@pytest.mark.parametrize("impl", _impls({"ext": ext_batched, "api": ops.batched_nms, "reference": reference.batched_nms}))
@pytest.mark.parametrize("boxes", list(EMPTY))
@pytest.mark.parametrize("idxs_dtype", [torch.int64, torch.int32, torch.float32])
def test_empty_flat_boxes(impl, boxes, idxs_dtype):
    """torchvision.ops.batched_nms takes boxes of shape (0,) (e.g. torch.tensor([])) as no boxes,
    with scores (0,) and idxs (0,) of any dtype; so do the zoo's."""
    b, s, i = EMPTY[boxes](), torch.zeros(0), torch.zeros(0, dtype=idxs_dtype)
    want = torchvision.ops.batched_nms(b, s, i, 0.5)
    if impl is ext_batched:
        got = torch.ops.zoo.batched_nms(b, s, i, 0.5)
    elif impl is reference.batched_nms:
        got = reference.batched_nms(b.reshape(0, 4), s, i, 0.5)
    else:
        got = impl(b, s, i, 0.5)
    assert got.shape == want.shape == (0,) and got.dtype == want.dtype == torch.int64


def test_empty_flat_boxes_nms_rejected_like_torchvision(backend):
    b, s = torch.zeros(0), torch.zeros(0)
    with pytest.raises(RuntimeError, match="boxes should be a 2d tensor"):
        torchvision.ops.nms(b, s, 0.5)
    with pytest.raises(ValueError, match=r"boxes: expected a 2-D tensor, got shape \(0,\)"):
        ops.nms(b, s, 0.5)
    assert torchvision.ops.nms(b.view(0, 4), s, 0.5).shape == ops.nms(b.view(0, 4), s, 0.5).shape == (0,)
