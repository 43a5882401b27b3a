"""Custom ops on CUDA: the extension's CUDA kernels vs the pure-torch reference (run on
the same inputs on the CPU) and vs torchvision on CUDA. Skipped without a CUDA device.

With a device but an extension built without CUDA kernels the tests skip too, unless
ZOO_REQUIRE_CUDA_OPS=1 (benchmarks/device_check.sh sets it), where they fail instead.
"""
from __future__ import annotations

import math

import pytest
import torch
import torchvision

import zoo  # noqa: F401
import zoo.ops as ops
from zoo.ops import _ext, reference
from tests.ops.test_ops import assert_centres_are_the_rounded_formula
from tests.ops.conftest import (
    COCO_ANCHORS, NEAR_THRESHOLD_PAIRS, STRIDES, clustered_boxes, extreme_logit_map, fp64_boxes, near_threshold_pair,
    nms_adversarial_cases, nms_bad_inputs, require_cuda_kernels, uniform_boxes, yolo_decode_bad_inputs, yolo_maps,
    yolo_postprocess_bad_inputs,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

OPS = ("nms", "batched_nms", "yolo_decode", "yolo_postprocess")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _needs_cuda_kernels():
    require_cuda_kernels(OPS)


def cu(*tensors):
    out = tuple(t.to(CUDA) for t in tensors)
    return out if len(out) > 1 else out[0]


def ext_nms(boxes, scores, thr):
    """The CUDA kernel on CUDA copies of CPU inputs; the result comes back to the CPU."""
    keep = torch.ops.zoo.nms(*cu(boxes.contiguous(), scores.contiguous()), thr)
    assert keep.device.type == "cuda" and keep.dtype == torch.int64
    return keep.cpu()


def ext_batched(boxes, scores, idxs, thr):
    keep = torch.ops.zoo.batched_nms(*cu(boxes.contiguous(), scores.contiguous(), idxs.long().contiguous()), thr)
    assert keep.device.type == "cuda" and keep.dtype == torch.int64
    return keep.cpu()


def _post_args(maps, conf=0.25, iou=0.45, max_det=300, max_nms=30000, multi_label=False, device="cpu"):
    anchors = [a.to(device) for a in COCO_ANCHORS.unbind(0)]
    return ([m.to(device) for m in maps], anchors, STRIDES, conf, iou, max_det, max_nms, multi_label)


def _assert_same_detections(got, want):
    gb, gs, gl, gi = (t.cpu() for t in got)
    wb, ws, wl, wi = want
    assert gb.dtype == torch.float32 and gs.dtype == torch.float32
    assert gl.dtype == torch.int64 and gi.dtype == torch.int64
    assert torch.equal(gl, wl) and torch.equal(gi, wi)
    torch.testing.assert_close(gs, ws, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gb, wb, rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------------ registration


def test_cuda_kernels_registered_and_used(monkeypatch):
    monkeypatch.delenv("ZOO_OPS", raising=False)
    assert ops.backend("cuda") == "ext"
    for op in OPS:
        assert _ext.has_kernel(op, CUDA)


# ------------------------------------------------------------------------ nms


@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 65, 1000, 5000, 20000])
@pytest.mark.parametrize("maker", [clustered_boxes, uniform_boxes], ids=["clustered", "uniform"])
def test_nms_matches_reference_and_torchvision(n, maker):
    boxes, scores = maker(n, seed=n + 1)  # unique scores: torchvision's sort is not stable
    for thr in (0.3, 0.5, 0.7):
        got = ext_nms(boxes, scores, thr)
        assert torch.equal(got, reference.nms(boxes, scores, thr)), thr
        assert torch.equal(got, torchvision.ops.nms(*cu(boxes, scores), thr).cpu()), thr


def test_nms_adversarial():
    cases = nms_adversarial_cases()
    for name, (b, s) in cases.items():
        for thr in (0.0, 0.3, 0.5, 1.0):
            got = ext_nms(b, s, thr)
            assert torch.equal(got, reference.nms(b, s, thr)), (name, thr)
            if s.unique().numel() == s.numel():  # torchvision (CPU kernel) leaves the order of ties open
                assert torch.equal(got, torchvision.ops.nms(b, s, thr)), (name, thr)
    b, s = cases["all_suppressed"]
    assert ext_nms(b, s, 0.5).tolist() == [int(s.argmax())]
    assert ext_nms(*cases["all_suppressed_tied"], 0.5).tolist() == [0]  # ties: lowest index first
    assert ext_nms(*cases["duplicates_tied"], 1.0).tolist() == list(range(400))  # IoU 1 is not > 1
    empty = torch.ops.zoo.nms(torch.zeros(0, 4, device=CUDA), torch.zeros(0, device=CUDA), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64 and empty.device.type == "cuda"


def test_nms_threshold_compared_like_the_reference():
    # IoU of exactly float(0.3): above 0.3 when compared in double, as the reference does
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 3.0]])
    iou = reference.box_iou_matrix(boxes)[0, 1].item()
    scores = torch.tensor([1.0, 0.5])
    for thr in (0.3, iou, math.nextafter(iou, 0.0), math.nextafter(iou, 1.0), 0.5):
        want = reference.nms(boxes, scores, thr)
        assert torch.equal(ext_nms(boxes, scores, thr), want), thr
        assert torch.equal(want, torchvision.ops.nms(boxes, scores, thr)), thr


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_half_precision_computes_in_fp32(dtype):
    boxes, scores = clustered_boxes(3000, seed=7, extent=400.0, quantum=0.25)
    b, s = boxes.to(dtype), scores.to(dtype)
    got = ext_nms(b, s, 0.5)
    assert torch.equal(got, reference.nms(b, s, 0.5))
    assert torch.equal(ops.nms(*cu(b, s), 0.5).cpu(), got)


def test_nms_through_the_api_on_cuda():
    boxes, scores = clustered_boxes(2000, seed=8)
    keep = ops.nms(*cu(boxes, scores), 0.5)
    assert keep.device.type == "cuda"
    assert torch.equal(keep.cpu(), reference.nms(boxes, scores, 0.5))


def test_nms_100k_boxes():
    boxes, scores = clustered_boxes(100_000, seed=9)
    got = ext_nms(boxes, scores, 0.5)
    assert torch.equal(got, torchvision.ops.nms(*cu(boxes, scores), 0.5).cpu())


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_properties(0).total_memory < 48 * 2**30,
    reason="needs a GPU with >= 48 GiB (the 64x64-bit mask of 400k boxes takes 20 GB)",
)
def test_nms_400k_boxes_uses_the_global_memory_bitset():
    # 500 disjoint clusters of 800 identical boxes: each cluster keeps its best box only.
    # 400k boxes need 6250 words of `removed`, more than shared memory holds.
    clusters, per = 500, 800
    k = torch.arange(clusters).repeat_interleave(per)
    x, y = (k % 25).float() * 40, (k // 25).float() * 40
    boxes = torch.stack([x, y, x + 30, y + 30], 1)
    scores = torch.randperm(clusters * per, generator=torch.Generator().manual_seed(0)).float()
    best = torch.full((clusters,), -1.0).scatter_reduce(0, k, scores, "amax")
    want = torch.nonzero(scores == best[k]).squeeze(1)
    want = want[torch.sort(scores[want], descending=True).indices]
    got = ext_nms(boxes, scores, 0.5)
    assert torch.equal(got, want)
    torch.cuda.empty_cache()


@pytest.mark.parametrize("n", [300, 3000])
def test_nms_fp64_computes_in_fp64(n):
    # the fp64 mask kernel: equal to torchvision's CPU kernel, which computes fp64 in fp64
    boxes, scores = fp64_boxes(n, seed=n)
    for thr in torch.linspace(0.05, 0.95, 19).tolist() + [0.0, 1.0]:
        want = torchvision.ops.nms(boxes, scores, thr)
        assert torch.equal(ext_nms(boxes, scores, thr), want), thr
        assert torch.equal(ops.nms(*cu(boxes, scores), thr).cpu(), want), thr
    idxs = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(n))
    for thr in (0.3, 0.5, 0.7):
        # torchvision's per-category path (what torchvision.ops.batched_nms runs above 1000 boxes):
        # exact for any coordinates, where its offset trick for fewer boxes rounds fp64 coordinates
        want = torchvision.ops.boxes._batched_nms_vanilla(boxes, scores, idxs, thr)
        assert torch.equal(ext_batched(boxes, scores, idxs, thr), want), thr


@pytest.mark.parametrize("h,thr,fp64_keeps", NEAR_THRESHOLD_PAIRS)
def test_nms_fp64_near_threshold_pair(h, thr, fp64_keeps):
    boxes, scores = near_threshold_pair(h)
    assert torchvision.ops.nms(boxes, scores, thr).tolist() == fp64_keeps
    assert ext_nms(boxes, scores, thr).tolist() == fp64_keeps
    assert ext_batched(boxes, scores, torch.zeros(2, dtype=torch.int64), thr).tolist() == fp64_keeps
    assert ext_nms(boxes.float(), scores.float(), thr).tolist() != fp64_keeps  # fp32 decides otherwise


# ------------------------------------------------------------------------ the mask size check


def _expanded(n, *shape_dtype):
    return [torch.zeros(1, *shape, dtype=dtype, device=CUDA).expand(n, *shape) for shape, dtype in shape_dtype]


def test_nms_mask_over_the_grid_limit_is_a_value_error():
    # 65535 * 64 + 1 boxes: mask rows of 65536 words, one more than the mask kernel's grid takes.
    # Expanded from one row: no memory is used, and the check runs before anything is sorted.
    n = 65535 * 64 + 1
    boxes, scores, idxs = _expanded(n, ((4,), torch.float32), ((), torch.float32), ((), torch.int64))
    msg = (rf"boxes: {n} boxes in one NMS problem need a suppression mask of {n} x 65536 64-bit words "
           rf"\({n * 65536 * 8} bytes\); the CUDA kernel takes at most 4194240 boxes \(65535 words per row\)")
    for call in (lambda: torch.ops.zoo.nms(boxes, scores, 0.5), lambda: ops.nms(boxes, scores, 0.5),
                 lambda: torch.ops.zoo.batched_nms(boxes, scores, idxs, 0.5),
                 lambda: ops.batched_nms(boxes, scores, idxs, 0.5)):
        with pytest.raises(ValueError, match=msg):
            call()


def test_nms_mask_over_the_device_memory_is_a_value_error():
    n = 65535 * 64  # within the grid, but the mask takes 2.2 TB
    assert n * 65535 * 8 > torch.cuda.get_device_properties(0).total_memory
    boxes, scores = _expanded(n, ((4,), torch.float32), ((), torch.float32))
    with pytest.raises(ValueError, match=rf"boxes: {n} boxes in one NMS problem .* bytes available \(\d+ free \+ \d+ "
                                         r"cached by torch\)"):
        torch.ops.zoo.nms(boxes, scores, 0.5)


# ------------------------------------------------------------------------ the raw CUDA ops check their input


def _tensor_to_cuda(t: torch.Tensor) -> torch.Tensor:
    """t on the GPU with the same strides: an expanded tensor stays expanded (t.to() would
    allocate every row of the 2**31 + 1 row "too many boxes" case)."""
    storage = torch.as_strided(t, (t.untyped_storage().nbytes() // t.element_size(),), (1,), 0)
    return torch.as_strided(storage.to(CUDA), t.shape, t.stride(), t.storage_offset())


def _to_cuda(args):
    out = [_to_cuda(a) if isinstance(a, (list, tuple)) else _tensor_to_cuda(a) if isinstance(a, torch.Tensor) else a
           for a in args]
    return out if isinstance(args, list) else tuple(out)


def _message(fn, *args):
    with pytest.raises(ValueError) as info:
        fn(*args)
    return str(info.value)


@pytest.mark.parametrize("case", [c for c in nms_bad_inputs() if "meta" not in c])
def test_raw_nms_rejects_what_the_cpu_kernel_rejects(case):
    boxes, scores = nms_bad_inputs()[case]
    want = _message(torch.ops.zoo.nms, boxes, scores, 0.5)
    assert _message(torch.ops.zoo.nms, *_to_cuda((boxes, scores)), 0.5) == want
    if case != "boxes (0,)":
        idxs = torch.zeros(boxes.shape[0] if boxes.ndim else 0, dtype=torch.int64)
        if case == "too many boxes":
            idxs = torch.zeros(1, dtype=torch.int64).expand(boxes.shape[0])
        want = _message(torch.ops.zoo.batched_nms, boxes, scores, idxs, 0.5)
        assert _message(torch.ops.zoo.batched_nms, *_to_cuda((boxes, scores, idxs)), 0.5) == want


@pytest.mark.parametrize("case", [c for c in yolo_decode_bad_inputs() if "meta" not in c])
def test_raw_yolo_decode_rejects_what_the_cpu_kernel_rejects(case):
    args = yolo_decode_bad_inputs()[case]
    assert _message(torch.ops.zoo.yolo_decode, *_to_cuda(args)) == _message(torch.ops.zoo.yolo_decode, *args)


@pytest.mark.parametrize("case", [c for c in yolo_postprocess_bad_inputs() if "meta" not in c])
def test_raw_yolo_postprocess_rejects_what_the_cpu_kernel_rejects(case):
    args = yolo_postprocess_bad_inputs()[case]
    assert _message(torch.ops.zoo.yolo_postprocess, *_to_cuda(args)) == _message(torch.ops.zoo.yolo_postprocess,
                                                                                  *args)


def test_cpu_and_cuda_tensors_mixed():
    b, s = clustered_boxes(10)
    with pytest.raises(ValueError, match="scores: on cpu, but boxes is on cuda:0; put them on one device"):
        torch.ops.zoo.nms(b.to(CUDA), s, 0.5)
    maps = yolo_maps(batch=1, size=64, num_classes=2, positives=5)
    with pytest.raises(ValueError, match=r"anchors: on cpu, but pred is on cuda:0"):
        torch.ops.zoo.yolo_decode(maps[0].to(CUDA), COCO_ANCHORS[0], 8.0)


@pytest.mark.parametrize("boxes", [torch.zeros(0), torch.zeros(0, 4)], ids=["(0,)", "(0, 4)"])
def test_batched_nms_empty_flat_boxes(boxes):
    got = torch.ops.zoo.batched_nms(boxes.to(CUDA), torch.zeros(0, device=CUDA), torch.zeros(0, device=CUDA), 0.5)
    want = torchvision.ops.batched_nms(boxes, torch.zeros(0), torch.zeros(0), 0.5)
    assert got.shape == want.shape == (0,) and got.dtype == torch.int64 and got.device.type == "cuda"


# ------------------------------------------------------------------------ batched_nms


@pytest.mark.parametrize("n", [0, 1, 50, 999, 1001, 5000, 20000])
@pytest.mark.parametrize("classes", [1, 3, 80])
def test_batched_nms_matches_reference_and_torchvision(n, classes):
    # coordinates are multiples of 1/16 in [0, 1000], scores unique: torchvision's
    # coordinate-offset trick is exact and its sort order unambiguous
    boxes, scores = clustered_boxes(n, seed=n + classes)
    idxs = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(n))
    for thr in (0.3, 0.5):
        got = ext_batched(boxes, scores, idxs, thr)
        assert torch.equal(got, reference.batched_nms(boxes, scores, idxs, thr)), thr
        assert torch.equal(got, torchvision.ops.batched_nms(*cu(boxes, scores, idxs), thr).cpu()), thr


def test_batched_nms_adversarial():
    boxes, _ = clustered_boxes(2000, seed=11)
    g = torch.Generator().manual_seed(12)
    idxs = torch.randint(0, 80, (2000,), generator=g)
    for b in (boxes, boxes * 100 + 1e5, boxes - 500):
        scores = torch.rand(2000, generator=g)
        got = ext_batched(b, scores, idxs, 0.5)
        assert torch.equal(got, reference.batched_nms(b, scores, idxs, 0.5))
        assert torch.equal(got, torchvision.ops.boxes._batched_nms_vanilla(b, scores, idxs, 0.5))
    tied = torch.randint(0, 3, (2000,), generator=g).float()
    assert torch.equal(ext_batched(boxes, tied, idxs, 0.5), reference.batched_nms(boxes, tied, idxs, 0.5))
    # the same box in every class: nothing is suppressed across classes
    same = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(5, 1)
    assert ext_batched(same, torch.tensor([0.1, 0.5, 0.3, 0.9, 0.2]), torch.arange(5), 0.1).tolist() == [3, 1, 2, 4, 0]
    # int32 categories, and huge category ids
    assert torch.equal(ext_batched(boxes, tied, idxs.int(), 0.5), reference.batched_nms(boxes, tied, idxs, 0.5))
    big = idxs * 10**12
    assert torch.equal(ext_batched(boxes, tied, big, 0.5), reference.batched_nms(boxes, tied, big, 0.5))


# ------------------------------------------------------------------------ yolo_decode


@pytest.mark.parametrize(
    "dtype,rtol,atol",
    [(torch.float32, 1e-5, 1e-4), (torch.float16, 2e-3, 1e-3), (torch.bfloat16, 1.6e-2, 1e-2)],
)
@pytest.mark.parametrize("shape", [(3, 3, 7, 13, 17), (2, 3, 80, 20, 20), (1, 1, 1, 1, 1), (2, 2, 40, 33, 5)])
def test_yolo_decode_matches_reference(dtype, rtol, atol, shape):
    bsz, a, c, h, w = shape
    g = torch.Generator().manual_seed(sum(shape))
    pred = (torch.randn(bsz, a * (5 + c), h, w, generator=g) * 3).to(dtype)
    anchors = torch.rand(a, 2, generator=g) * 300 + 5
    got = torch.ops.zoo.yolo_decode(*cu(pred, anchors), 16.0)
    assert got.dtype == dtype and got.device.type == "cuda" and got.shape == (bsz, a * h * w, 5 + c)
    want = reference.yolo_decode(pred, anchors, 16.0)  # CPU, same inputs
    torch.testing.assert_close(got.cpu().float(), want.float(), rtol=rtol, atol=atol)
    # and the reference run on CUDA
    torch.testing.assert_close(got, reference.yolo_decode(*cu(pred, anchors), 16.0), rtol=rtol, atol=atol)


def test_yolo_decode_realistic_maps_through_the_api():
    maps = yolo_maps(batch=2, size=320, num_classes=80, seed=2)
    for p, anc, s in zip(maps, COCO_ANCHORS, STRIDES):
        got = ops.yolo_decode(*cu(p, anc), s)
        torch.testing.assert_close(got.cpu(), reference.yolo_decode(p, anc, s), rtol=1e-5, atol=1e-4)


def test_yolo_decode_caps_extreme_size_logits():
    pred, anchors = extreme_logit_map(), torch.tensor([[12.0, 20.0]])
    got = torch.ops.zoo.yolo_decode(*cu(pred, anchors), 8.0).cpu()
    want = reference.yolo_decode(pred, anchors, 8.0)
    assert torch.isfinite(got[..., :4]).all()
    # expf on the device may differ from the host's in the last bits (exp(10) * anchor)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    post = torch.ops.zoo.yolo_postprocess([pred.to(CUDA)], [anchors.to(CUDA)], [8.0], 0.5, 0.45, 300, 30000, False)
    _assert_same_detections(post, reference.yolo_postprocess([pred], [anchors], [8.0], 0.5, 0.45, 300, 30000, False))
    assert torch.isfinite(post[0]).all()



@pytest.mark.parametrize("cls_act", ["sigmoid", "softmax"])
@pytest.mark.parametrize("scale_xy", [1.0, 1.05, 1.2])
@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float32, 1e-5, 1e-4), (torch.float16, 2e-3, 1e-3)])
# (1, 2, 40, 9, 7): 45 channels span two 32-channel tiles of the decode kernel, whose softmax
# must still cover all 40 classes; 63 cells span two 32-cell tiles
@pytest.mark.parametrize("shape", [(2, 3, 7, 13, 17), (1, 2, 40, 9, 7), (1, 1, 1, 1, 1)])
def test_yolo_decode_scale_xy_and_cls_act_match_reference(cls_act, scale_xy, dtype, rtol, atol, shape):
    bsz, a, c, h, w = shape
    g = torch.Generator().manual_seed(sum(shape))
    pred = (torch.randn(bsz, a * (5 + c), h, w, generator=g) * 3).to(dtype)
    anchors = torch.rand(a, 2, generator=g) * 300 + 5
    got = torch.ops.zoo.yolo_decode(*cu(pred, anchors), 16.0, scale_xy, cls_act)
    assert got.dtype == dtype and got.shape == (bsz, a * h * w, 5 + c)
    want = reference.yolo_decode(pred, anchors, 16.0, scale_xy, cls_act)  # CPU, same inputs
    torch.testing.assert_close(got.cpu().float(), want.float(), rtol=rtol, atol=atol)
    # the CPU kernel, and for softmax torch.softmax over the class channels
    torch.testing.assert_close(got.cpu(), torch.ops.zoo.yolo_decode(pred, anchors, 16.0, scale_xy, cls_act),
                               rtol=rtol, atol=atol)
    if cls_act == "softmax":
        logits = pred.float().view(bsz, a, 5 + c, h, w)[:, :, 5:]
        probs = torch.softmax(logits, dim=2).permute(0, 1, 3, 4, 2).reshape(bsz, a * h * w, c)
        torch.testing.assert_close(got[..., 5:].cpu().float(), probs, rtol=rtol, atol=atol)


@pytest.mark.parametrize("scale_xy", [1.0, 1.05, 1.2, 3.7])
def test_yolo_decode_centres_round_like_the_torch_formula(scale_xy):
    """(sigmoid(t) * s - offset + x) * stride, one fp32 rounding per operation (--fmad=false),
    s and offset as darknet rounds them: the CUDA kernel's own sigmoid (its objectness output for
    the same logit) through that formula in torch gives the kernel's bits."""
    g = torch.Generator().manual_seed(1)
    a, c, h, w = 2, 3, 4, 37
    p = torch.randn(2, a, 5 + c, h, w, generator=g) * 4
    p[:, :, 1] = p[:, :, 0]
    p[:, :, 4] = p[:, :, 0]
    out = torch.ops.zoo.yolo_decode(*cu(p.reshape(2, a * (5 + c), h, w), torch.tensor([[10.0, 13.0], [30.0, 61.0]])),
                                    16.0, scale_xy).cpu()
    assert_centres_are_the_rounded_formula(out, scale_xy, a, h, w, 16.0)


def test_yolo_decode_softmax_extremes():
    """Stable (the max subtracted) and NaN where torch.softmax gives NaN: the whole cell, for a
    NaN or +inf logit or only -inf logits."""
    rows = [[1e30, 0.0, -1e30], [200.0, -200.0, 0.0], [math.nan, 0.0, 1.0], [math.inf, 0.0, 1.0],
            [-math.inf, -math.inf, -math.inf], [-math.inf, 0.0, 0.0]]
    pred = torch.zeros(1, 8, 1, len(rows))
    pred[0, 5:, 0] = torch.tensor(rows).t()
    got = torch.ops.zoo.yolo_decode(*cu(pred, torch.tensor([[4.0, 4.0]])), 8.0, 1.0, "softmax")[0, :, 5:].cpu()
    torch.testing.assert_close(got, torch.softmax(torch.tensor(rows), 1), rtol=1e-6, atol=1e-7, equal_nan=True)
    post = torch.ops.zoo.yolo_postprocess([pred.to(CUDA)], [torch.tensor([[4.0, 4.0]], device=CUDA)], [8.0], 0.0,
                                          0.45, 300, 30000, True, None, "softmax")
    want = reference.yolo_postprocess([pred], [torch.tensor([[4.0, 4.0]])], [8.0], 0.0, 0.45, 300, 30000, True, None,
                                      "softmax")
    _assert_same_detections(post, want)


# ------------------------------------------------------------------------ yolo_postprocess


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize(
    "setting",
    [dict(), dict(conf=0.5, iou=0.3), dict(max_det=5), dict(max_nms=40), dict(conf=0.99), dict(conf=0.0, max_nms=500)],
)
def test_yolo_postprocess_matches_reference(multi_label, setting):
    maps = yolo_maps(batch=3, size=320, num_classes=20, positives=150, seed=5)
    got = torch.ops.zoo.yolo_postprocess(*_post_args(maps, multi_label=multi_label, device=CUDA, **setting))
    assert all(t.device.type == "cuda" for t in got)
    want = reference.yolo_postprocess(*_post_args(maps, multi_label=multi_label, **setting))
    _assert_same_detections(got, want)
    image, scores = got[3].cpu(), got[1].cpu()
    assert torch.all(image[:-1] <= image[1:])
    same = image[:-1] == image[1:]
    assert torch.all(scores[:-1][same] >= scores[1:][same])
    if "max_det" in setting:
        assert torch.bincount(image).max() <= setting["max_det"]


@pytest.mark.parametrize("multi_label", [False, True])
def test_yolo_postprocess_realistic_640(multi_label):
    maps = yolo_maps(batch=4, size=640, num_classes=80, positives=300, seed=6)
    maps[0][1] = -30.0  # image 1: no objectness anywhere
    maps[1][1] = -30.0
    maps[2][1] = -30.0
    got = torch.ops.zoo.yolo_postprocess(*_post_args(maps, multi_label=multi_label, device=CUDA))
    want = reference.yolo_postprocess(*_post_args(maps, multi_label=multi_label))
    _assert_same_detections(got, want)
    assert 1 not in got[3].tolist() and got[0].shape[0] > 100


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_yolo_postprocess_half_inputs(dtype):
    maps = [m.to(dtype) for m in yolo_maps(batch=2, size=256, num_classes=5, seed=8)]
    got = torch.ops.zoo.yolo_postprocess(*_post_args(maps, device=CUDA))
    _assert_same_detections(got, reference.yolo_postprocess(*_post_args(maps)))


def test_yolo_postprocess_single_scale_single_class():
    maps = yolo_maps(batch=2, size=64, num_classes=1, positives=20, seed=10)[2:]
    args = ([maps[0]], [COCO_ANCHORS[2]], [32.0], 0.1, 0.45, 300, 30000, False)
    got = torch.ops.zoo.yolo_postprocess([maps[0].to(CUDA)], [COCO_ANCHORS[2].to(CUDA)], *args[2:])
    _assert_same_detections(got, reference.yolo_postprocess(*args))


def test_yolo_postprocess_api_on_cuda():
    maps = yolo_maps(batch=3, size=256, num_classes=3, positives=60, seed=9)
    dets = ops.yolo_postprocess(cu(*maps), COCO_ANCHORS.to(CUDA), STRIDES, conf_threshold=0.3, iou_threshold=0.5)
    boxes, scores, labels, image = reference.yolo_postprocess(*_post_args(maps, conf=0.3, iou=0.5))
    assert len(dets) == 3
    for b, d in enumerate(dets):
        sel = image == b
        assert d["boxes"].device.type == "cuda"
        assert torch.equal(d["labels"].cpu(), labels[sel])
        torch.testing.assert_close(d["scores"].cpu(), scores[sel], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(d["boxes"].cpu(), boxes[sel], rtol=1e-5, atol=1e-3)



@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("cls_act", ["sigmoid", "softmax"])
@pytest.mark.parametrize("scale_xy", [None, [1.2, 1.1, 1.05]], ids=["none", "yolov4"])
def test_yolo_postprocess_scale_xy_and_cls_act(scale_xy, cls_act, multi_label):
    maps = yolo_maps(batch=2, size=256, num_classes=12, positives=80, seed=16)
    args = (*_post_args(maps, conf=0.2, multi_label=multi_label, device=CUDA), scale_xy, cls_act)
    got = torch.ops.zoo.yolo_postprocess(*args)
    want = reference.yolo_postprocess(*_post_args(maps, conf=0.2, multi_label=multi_label), scale_xy, cls_act)
    _assert_same_detections(got, want)
    assert got[0].shape[0] > 20
    # the CPU kernel, and the API with one scale_xy for every scale
    _assert_same_detections(got, torch.ops.zoo.yolo_postprocess(
        *_post_args(maps, conf=0.2, multi_label=multi_label), scale_xy, cls_act))
    dets = ops.yolo_postprocess(cu(*maps), COCO_ANCHORS.to(CUDA), STRIDES, conf_threshold=0.2,
                                multi_label=multi_label, scale_xy=1.2, cls_act=cls_act)
    ref = reference.yolo_postprocess(*_post_args(maps, conf=0.2, multi_label=multi_label), [1.2] * 3, cls_act)
    for b, d in enumerate(dets):
        assert torch.equal(d["labels"].cpu(), ref[2][ref[3] == b])
        torch.testing.assert_close(d["boxes"].cpu(), ref[0][ref[3] == b], rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------------ opcheck / streams / devices


def test_opcheck_every_op_on_cuda():
    boxes, scores = cu(*clustered_boxes(300, seed=1))
    idxs = torch.randint(0, 5, (300,)).to(CUDA)
    torch.library.opcheck(torch.ops.zoo.nms.default, (boxes, scores, 0.5))
    torch.library.opcheck(torch.ops.zoo.batched_nms.default, (boxes, scores, idxs, 0.5))
    maps = yolo_maps(batch=2, size=96, num_classes=4, positives=10, seed=3)
    torch.library.opcheck(torch.ops.zoo.yolo_decode.default, (maps[0].to(CUDA), COCO_ANCHORS[0].to(CUDA), 8.0))
    torch.library.opcheck(torch.ops.zoo.yolo_postprocess.default, _post_args(maps, max_det=50, device=CUDA))
    torch.library.opcheck(
        torch.ops.zoo.yolo_postprocess.default, _post_args(maps, max_det=50, multi_label=True, device=CUDA)
    )
    torch.library.opcheck(torch.ops.zoo.yolo_decode.default,
                          (maps[0].to(CUDA), COCO_ANCHORS[0].to(CUDA), 8.0, 1.2, "softmax"))
    torch.library.opcheck(torch.ops.zoo.yolo_postprocess.default,
                          (*_post_args(maps, max_det=50, device=CUDA), [1.2, 1.1, 1.05], "softmax"))


def test_non_default_stream():
    boxes, scores = cu(*clustered_boxes(5000, seed=13))
    idxs = torch.randint(0, 10, (5000,)).to(CUDA)
    maps = [m.to(CUDA) for m in yolo_maps(batch=2, size=320, num_classes=20, positives=100, seed=14)]
    anchors = [a.to(CUDA) for a in COCO_ANCHORS.unbind(0)]

    def run(b, m):
        return (
            torch.ops.zoo.nms(b, scores, 0.5),
            torch.ops.zoo.batched_nms(b, scores, idxs, 0.5),
            torch.ops.zoo.yolo_decode(m[0], anchors[0], 8.0),
            *torch.ops.zoo.yolo_postprocess(m, anchors, STRIDES, 0.25, 0.45, 300, 30000, False),
        )

    want = run(boxes, maps)
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        # The inputs are produced on `stream` behind a long sleep: a kernel launched on
        # another stream would read them before they exist.
        torch.cuda._sleep(50_000_000)
        b = boxes * 1.0
        m = [x * 1.0 for x in maps]
        got = run(b, m)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    for g, w in zip(got, want):
        assert torch.equal(g, w)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    dev = torch.device("cuda", 1)
    boxes, scores = clustered_boxes(3000, seed=15)
    with torch.cuda.device(0):
        keep = torch.ops.zoo.nms(boxes.to(dev), scores.to(dev), 0.5)
    assert keep.device == dev
    assert torch.equal(keep.cpu(), reference.nms(boxes, scores, 0.5))
