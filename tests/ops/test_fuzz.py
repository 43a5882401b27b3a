"""Fuzzed zoo.ops: hypothesis property tests of every op that computes (nms, batched_nms,
yolo_decode, yolo_postprocess, squeeze_excite and adder2d with their backward passes), on
random shapes (zero-size dims included), dtypes (fp32 / fp64 / fp16 / bf16 / fp8, and integer,
bool and complex input the ops must refuse), values (NaN, +-inf, 1e30, 1e-30, ties) and layouts
(transposed, strided, offset, expanded, channels_last), and tensors on mismatched devices.

The property, for every drawn call:

1. It returns or raises ``ValueError``; any other exception fails the test, and a crash kills
   the run (``make asan`` runs this file under AddressSanitizer + UBSan, where a memory error or
   undefined behaviour in a kernel is a report, and a failure).
2. It raises exactly when the input breaks the op's documented rules, restated here without
   zoo.ops' code (the ``*_invalid`` functions below).
3. A valid call through the extension (the default path) returns what ``zoo.ops.reference``
   returns for the same values, to the tolerance of the dtype (below).
4. The fallback (``ZOO_OPS=torch``) raises the same message, or returns the same result.

The contracts pinned here (docs/OPS.md, the op docstrings):

* NMS (nms, batched_nms): kept indices are compared exactly. The order is a stable descending
  sort of the scores, so tied scores keep the lower index first (no tolerance is needed: both
  compute the IoU with the same fp32 / fp64 operations). A NaN or +-inf score, a NaN or +-inf
  coordinate or an inverted box (x2 < x1 or y2 < y1) is a ``ValueError``: NaN has no place in
  a descending order, so NMS refuses it rather than pick one. Finite but huge boxes (1e30) are
  valid: their fp32 areas overflow to inf, the IoU is NaN and suppresses nothing, in both.
* yolo_decode: NaN logits stay NaN, +-inf and huge logits decode to the capped box
  (docs/OPS.md); values are compared with a few-ulp tolerance (the kernels' expf and torch's
  sigmoid/exp may differ in the last bits) and NaN / +-inf must be at the same places. With
  darknet's scale_x_y ``s``, ``sigmoid * s - 0.5 * (s - 1)`` can cancel to near 0, so the centres
  get an absolute tolerance of a few fp32 ulps of ``(s + |offset| + cell) * stride`` too. The
  softmax class activation must give NaN where torch.softmax does (the whole row, for a NaN or
  +inf logit or a row of -inf).
* yolo_postprocess: its result is decode -> score -> threshold -> cap -> batched NMS; a few-ulp
  difference in the decode can flip a threshold or IoU comparison, so the oracle is the
  reference pipeline (``reference.yolo_postprocess``) fed with the kernel's own decode (itself
  checked against ``reference.yolo_decode`` above), compared exactly; where the reference's
  decode agrees bit for bit, the plain reference (the fallback) must agree exactly too.
  Candidate boxes may hold NaN (a NaN box logit with a high score): a NaN box suppresses nothing.
* squeeze_excite: NaN / inf anywhere propagate as in torch (ReLU(NaN) = NaN, sigmoid(-inf) =
  0), so NaN and inf must be at the same places; finite values within a bound derived from the
  magnitudes of the intermediate sums (accumulation error of the FCs, times the gate's slope).
  The exception: a sample and channel whose FC terms overflow the accumulation type (1e30
  weights times 1e30 activations in fp32) is not compared, and then no gradient is: fused
  multiply-adds (the kernels' AVX-512 FCs, torch's BLAS) round ``inf - (a product beyond the
  range)`` to -inf where an unfused sum gets NaN, so the result is unspecified there.
  An empty x (any dimension 0) gives an empty output and zero weight gradients.
* adder2d: ``-sum |x - w|`` has only non-negative terms, so the relative tolerance is K * eps;
  gradients are compared to the scale of their terms.
* meta tensors (no data): squeeze_excite, adder2d and yolo_decode return a meta result of the
  right shape; nms, batched_nms and yolo_postprocess (whose output size depends on the
  values) raise ``ValueError``. A tensor on another device than the first is a ``ValueError``.

Each test is ``derandomize=True`` (the same examples on every run, so CI is deterministic);
examples that once failed are pinned with ``@example``. ``ZOO_FUZZ_SCALE=20`` runs 20 times as
many examples from random seeds (a local soak).
"""
from __future__ import annotations

import contextlib
import math
import os

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import zoo.ops as ops
from zoo.ops import _ext, boxes, reference

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"zoo._C not built: {_ext.load_error()}")

NAN, INF = math.nan, math.inf
KERNEL_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
FP8 = torch.float8_e4m3fn
EPS = {torch.float32: 2.0**-23, torch.float64: 2.0**-52, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


# ZOO_FUZZ_SCALE=k runs k times the examples with random seeds (a longer local soak; CI runs
# the fixed, derandomized set).
SCALE = float(os.environ.get("ZOO_FUZZ_SCALE", "0") or 0)


def _settings(n: int):
    return settings(max_examples=int(n * SCALE) if SCALE else n, deadline=None, derandomize=not SCALE,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True, scope="module")
def _extension_path():
    """The extension path is the default: no ZOO_OPS while these tests run."""
    saved = os.environ.pop("ZOO_OPS", None)
    yield
    if saved is not None:
        os.environ["ZOO_OPS"] = saved


@contextlib.contextmanager
def _fallback():
    """ZOO_OPS=torch (the pure-torch fallback) inside the block."""
    os.environ["ZOO_OPS"] = "torch"
    try:
        yield
    finally:
        del os.environ["ZOO_OPS"]


def _outcome(fn):
    """(result, None) or (None, ValueError message); any other exception propagates."""
    try:
        return fn(), None
    except ValueError as err:
        return None, str(err)


def _run_both(fn):
    """fn() on the extension path and under ZOO_OPS=torch: ((result, err), (result, err))."""
    ext = _outcome(fn)
    with _fallback():
        fb = _outcome(fn)
    return ext, fb


def _check_errors(ext, fb, invalid: str | None):
    """Both paths raise (with one message) iff the input is invalid; returns True if they did."""
    (_, err), (_, fb_err) = ext, fb
    event(f"refused: {invalid}" if invalid else "computed")
    if invalid:
        assert err is not None, f"expected a ValueError ({invalid}), got a result"
        assert fb_err == err, f"the fallback's message differs: {fb_err!r} vs {err!r}"
        return True
    assert err is None, f"unexpected ValueError: {err}"
    assert fb_err is None, f"unexpected ValueError from the fallback: {fb_err}"
    return False


# ----------------------------------------------------------------------------- values and layouts

seeds = st.integers(0, 2**32 - 1)
FINITE_SPECIALS = [1e30, -1e30, 1e-30, 0.0, -0.0, 1e-40]
SPECIAL_VALUES = [NAN, INF, -INF] + FINITE_SPECIALS
specials = st.lists(st.tuples(st.integers(0, 2**20), st.sampled_from(SPECIAL_VALUES)), max_size=3)
finite_specials = st.lists(st.tuples(st.integers(0, 2**20), st.sampled_from(FINITE_SPECIALS)), max_size=3)


class _Faults:
    """Where one example may break its input. About two thirds of the examples are clean (every
    site takes a valid choice), so that most calls compute; in the others each site draws its
    faults independently, often more than one (then both paths must raise the same message)."""

    def __init__(self, draw):
        self.draw = draw
        self.on = draw(st.integers(0, 99)) < 35

    def pick(self, faults, weight: int = 5):
        """None (no fault here) or one of ``faults``."""
        return self.draw(st.sampled_from([None] * weight + list(faults))) if self.on else None

    def choose(self, valid, invalid=()):
        """One of ``valid``, or, in a faulty example, of ``valid`` and ``invalid``."""
        return self.draw(st.sampled_from(list(valid) + (list(invalid) if self.on else [])))

    def value(self, valid: st.SearchStrategy, invalid) -> object:
        return self.draw(st.one_of(valid, st.sampled_from(list(invalid))) if self.on else valid)


def _values(gen: torch.Generator, shape, kind: str) -> torch.Tensor:
    """fp64 values of one kind: ``normal`` (N(0, 3)), ``grid`` (halves in [-4, 4]: ties and exact
    arithmetic), ``zeros``, ``huge`` (+-1e30..4e30), ``tiny`` (+-1e-30), ``mixed`` (each of those)."""
    normal = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    if kind == "normal":
        return normal
    grid = torch.randint(-8, 9, shape, generator=gen).double() / 2
    if kind == "grid":
        return grid
    if kind == "zeros":
        return torch.zeros(shape, dtype=torch.float64)
    sign = torch.randint(0, 2, shape, generator=gen).double() * 2 - 1
    huge = sign * 1e30 * torch.randint(1, 5, shape, generator=gen).double()
    if kind == "huge":
        return huge
    tiny = sign * 1e-30 * torch.randint(1, 5, shape, generator=gen).double()
    if kind == "tiny":
        return tiny
    pick = torch.randint(0, 4, shape, generator=gen)
    return torch.where(pick == 0, normal, torch.where(pick == 1, grid, torch.where(pick == 2, huge, tiny)))


def _inject(t: torch.Tensor, spec) -> torch.Tensor:
    """t (fp64) with the drawn special values at the drawn (wrapped) flat positions."""
    if t.numel() == 0 or not spec:
        return t
    t = t.clone()
    flat = t.view(-1)
    for i, v in spec:
        flat[i % flat.numel()] = v
    return t


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """fp64 values as ``dtype``; integer and bool dtypes get small integers (no NaN casts)."""
    if dtype.is_floating_point or dtype.is_complex:
        return t.to(dtype)
    if dtype == torch.bool:
        return t > 0
    return t.nan_to_num(0.0, 100.0, -100.0).clamp(-100, 100).round().to(dtype)


def _poison(t: torch.Tensor):
    if t.dtype.is_floating_point or t.dtype.is_complex:
        return NAN
    return True if t.dtype == torch.bool else 7


def _layout(t: torch.Tensor, how: str) -> torch.Tensor:
    """The same values in another memory layout (or, for ``expanded``, the first entry along dim 0
    repeated by a stride-0 view). Filler the op must not read is NaN (or 7)."""
    if how == "offset":  # contiguous, at storage offset 1
        big = torch.full((t.numel() + 1,), _poison(t), dtype=t.dtype)
        big[1:] = t.reshape(-1)
        return big[1:].view(t.shape)
    if how == "strided":  # innermost stride 2
        big = torch.full((*t.shape, 2), _poison(t), dtype=t.dtype)
        big[..., 0] = t
        return big[..., 0]
    if how == "transposed" and t.ndim >= 2:  # the last two dims column-major
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if how == "channels_last" and t.ndim == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if how == "expanded" and t.ndim >= 1 and t.shape[0] > 0:
        return t[:1].expand(t.shape)
    if how == "expanded_hw" and t.ndim == 4 and t.shape[2] > 0 and t.shape[3] > 0:
        return t[:, :, :1, :1].expand(t.shape)
    return t.contiguous()


def _assert_close(got: torch.Tensor, want: torch.Tensor, rtol: float, atol, what: str = "", skip=None) -> None:
    """Same shape and dtype; NaN and +-inf at the same places; elsewhere
    ``|got - want| <= atol + rtol * |want|`` (atol a number or a tensor shaped like want). Entries
    where ``skip`` (broadcast to want's shape) is True are not compared."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} vs {want.dtype}"
    if got.is_meta or got.numel() == 0:
        return
    g, w = got.detach().double(), want.detach().double()
    if skip is not None:
        keep = ~skip.expand(w.shape)
        g, w = g[keep], w[keep]
        if not isinstance(atol, (int, float)):
            atol = atol.expand(keep.shape)[keep]
    assert torch.equal(g.isnan(), w.isnan()), f"{what}: NaN at other places\n{g}\n{w}"
    inf = w.isinf()
    assert torch.equal(g.isinf(), inf) and torch.equal(g[inf], w[inf]), f"{what}: inf at other places\n{g}\n{w}"
    fin = ~(w.isnan() | inf)
    atol_t = atol if isinstance(atol, (int, float)) else atol.double().expand(w.shape)[fin]
    err = (g[fin] - w[fin]).abs()
    bound = atol_t + rtol * w[fin].abs()
    bad = ~(err <= bound)  # a NaN bound (inf * 0) accepts nothing: catch it as a failure too
    bound_bad = torch.as_tensor(bound).expand(err.shape)[bad][:5].tolist()
    assert not bad.any(), (f"{what}: off by {err[bad][:5].tolist()} (bound {bound_bad}); "
                           f"got {g[fin][bad][:5].tolist()}, want {w[fin][bad][:5].tolist()}")


def _magnitude(t: torch.Tensor) -> float:
    """max |t| (0 for an empty tensor, inf if t holds NaN or inf)."""
    return float(t.detach().double().abs().nan_to_num(nan=INF).amax()) if t.numel() else 0.0


def _cube(m: float) -> float:
    return m**3 if m < 1e90 else INF


def _square(m: float) -> float:
    return m**2 if m < 1e150 else INF


def _exact(got: torch.Tensor, want: torch.Tensor, what: str = "") -> None:
    _assert_close(got, want, 0.0, 0.0, what)


def _threshold_invalid(v, name: str) -> str | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return f"{name} not a number"
    return None if 0.0 <= f <= 1.0 else f"{name} outside [0, 1]"


def _kernel_float(t: torch.Tensor) -> torch.Tensor:
    """What the wrappers compute on: t as it is for fp32/fp64/fp16/bf16, else an fp32 copy."""
    return t if t.dtype in KERNEL_FLOATS else t.float()


thresholds = st.one_of(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0, 1]), st.floats(0.0, 1.0))
BAD_THRESHOLDS = [-0.1, 1.5, NAN, INF, "high"]


# ----------------------------------------------------------------------------- nms / batched_nms

BOX_DTYPES = [torch.float32] * 4 + [torch.float64, torch.float16, torch.bfloat16, FP8]
NOT_FLOATING = [torch.int64, torch.int32, torch.bool, torch.complex64]
IDX_DTYPES = [torch.int64] * 3 + [torch.int32, torch.int16, torch.int8, torch.uint8, torch.uint64]


@st.composite
def nms_inputs(draw, batched: bool):
    gen = torch.Generator().manual_seed(draw(seeds))
    faults = _Faults(draw)
    n = draw(st.integers(0, 40))
    kind = draw(st.sampled_from(["grid", "grid", "normal", "huge", "tiny", "mixed", "offset"]))
    if kind == "offset":  # small boxes far from the origin: 1e30 + 4 == 1e30 in fp32 and fp64
        xy = _values(gen, (n, 2), "grid") + 1e30
        wh = _values(gen, (n, 2), "grid").abs()
    else:
        xy = _values(gen, (n, 2), kind)
        wh = _values(gen, (n, 2), kind).abs()
    boxes = torch.cat([xy, xy + wh], 1)
    if n and faults.pick(["inverted"]):  # one inverted box
        i = draw(st.integers(0, n - 1))
        boxes[i] = boxes[i, [2, 3, 0, 1]] + torch.tensor([0.0, 0.0, -1.0, -1.0], dtype=torch.float64)
    boxes = _inject(boxes, draw(specials if faults.on else finite_specials))
    score_kind = draw(st.sampled_from(["levels", "levels", "uniform", "normal", "huge", "zeros"]))
    if score_kind == "levels":  # ties
        levels = draw(st.integers(1, 4))
        scores = torch.randint(0, levels + 1, (n,), generator=gen).double() / levels
    elif score_kind == "uniform":
        scores = torch.rand(n, generator=gen, dtype=torch.float64)
    else:
        scores = _values(gen, (n,), score_kind)
    scores = _inject(scores, draw(specials if faults.on else finite_specials))
    boxes = _layout(_cast(boxes, faults.choose(BOX_DTYPES, NOT_FLOATING)),
                    draw(st.sampled_from(["contiguous", "offset", "strided", "transposed", "expanded"])))
    scores = _layout(_cast(scores, faults.choose(BOX_DTYPES, NOT_FLOATING)),
                     draw(st.sampled_from(["contiguous", "offset", "strided", "expanded"])))
    shape_bug = faults.pick(["boxes 3-D", "boxes [N, 3]", "boxes (0,)", "scores 2-D", "scores short", "scores long"])
    if shape_bug == "boxes 3-D":
        boxes = boxes[None]
    elif shape_bug == "boxes [N, 3]":
        boxes = boxes[:, :3]
    elif shape_bug == "boxes (0,)":
        boxes, scores = boxes.new_zeros(0), scores.new_zeros(0)
    elif shape_bug == "scores 2-D":
        scores = scores[:, None]
    elif shape_bug == "scores short" and n:
        scores = scores[1:]
    elif shape_bug == "scores long":
        scores = torch.cat([scores, scores.new_zeros(1)])
    device = faults.choose(["cpu"], ["meta-first", "meta-second", "meta-all"])
    idxs = None
    if batched:
        idx_kind = draw(st.sampled_from(["few", "few", "one", "wide", "extreme"]))
        if idx_kind == "few":
            idxs = torch.randint(0, 4, (n,), generator=gen)
        elif idx_kind == "one":
            idxs = torch.zeros(n, dtype=torch.int64)
        elif idx_kind == "wide":
            idxs = torch.randint(-2**62, 2**62, (n,), generator=gen)
        else:
            pick = torch.randint(0, 3, (n,), generator=gen)
            idxs = torch.tensor([-2**63, 2**63 - 1, 0])[pick]
        dtype = faults.choose(IDX_DTYPES, [torch.bool, torch.float32])
        idxs = idxs.to(dtype) if dtype != torch.bool else idxs > 0
        idxs = _layout(idxs, draw(st.sampled_from(["contiguous", "offset", "strided", "expanded"])))
        idx_bug = faults.pick(["idxs 2-D", "idxs short"]) or (draw(st.sampled_from([None, "idxs empty float"])))
        if idx_bug == "idxs 2-D":
            idxs = idxs[:, None]
        elif idx_bug == "idxs short" and idxs.shape[0]:
            idxs = idxs[1:]
        elif idx_bug == "idxs empty float" and idxs.shape[0] == 0:
            idxs = torch.zeros(0)  # torch.tensor([]): fp32, valid when there are no boxes
    tensors = [boxes, scores] + ([idxs] if batched else [])
    if device == "meta-first":
        tensors[0] = tensors[0].to("meta")
    elif device == "meta-second":
        tensors[-1] = tensors[-1].to("meta")
    elif device == "meta-all":
        tensors = [t.to("meta") for t in tensors]
    return (*tensors, faults.value(thresholds, BAD_THRESHOLDS))


def _nms_invalid(boxes, scores, thr, idxs=None) -> str | None:
    """Why nms / batched_nms (idxs given) must refuse these arguments, or None."""
    flat_empty = idxs is not None and boxes.ndim == 1 and boxes.numel() == 0
    if not flat_empty and (boxes.ndim != 2 or boxes.shape[1] != 4):
        return "boxes shape"
    if not boxes.is_floating_point():
        return "boxes dtype"
    n = 0 if flat_empty else boxes.shape[0]
    if scores.ndim != 1 or not scores.is_floating_point() or scores.shape[0] != n:
        return "scores"
    if scores.device != boxes.device:
        return "devices"
    if idxs is not None:
        integer = not (idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool)
        if idxs.ndim != 1 or not (integer or idxs.numel() == 0 and idxs.is_floating_point()):
            return "idxs"
        if idxs.shape[0] != n:
            return "idxs length"
        if idxs.device != boxes.device:
            return "devices"
    if _threshold_invalid(thr, "iou_threshold"):
        return "threshold"
    if n and boxes.is_meta:
        return "values on meta"
    if n:
        b, s = boxes.double(), scores.double()
        if not (torch.isfinite(b).all() and torch.isfinite(s).all()):
            return "NaN / inf"
        if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
            return "inverted"
    return None


def _torchvision_agrees(boxes, scores, thr, keep) -> None:
    """torchvision.ops.nms is the zoo's independent oracle where it computes alike (fp32 / fp64)."""
    if boxes.dtype in (torch.float32, torch.float64) and scores.dtype == boxes.dtype and not boxes.is_meta:
        assert torch.equal(keep, torchvision.ops.nms(boxes.contiguous(), scores.contiguous(), float(thr)))


def _meta(*shape):
    return torch.zeros(shape, device="meta")


@_settings(400)
@given(nms_inputs(batched=False))
# an inverted box and a bad threshold: the kernel named the threshold, the fallback the box
@example((torch.tensor([[1.0, -3.0, -4.0, -5.0]]), torch.tensor([0.0]), -0.1))
# boxes on meta: NotImplementedError ("Cannot copy out of meta tensor") from the value check
@example((_meta(1, 4), _meta(1), 0.0))
def test_fuzz_nms(args):
    boxes, scores, thr = args
    ext, fb = _run_both(lambda: ops.nms(boxes, scores, thr))
    if _check_errors(ext, fb, _nms_invalid(boxes, scores, thr)):
        return
    b, s = _kernel_float(boxes.contiguous()), _kernel_float(scores.contiguous())
    want = reference.nms(b, s, float(thr))
    _exact(ext[0], want, "nms (extension)")
    _exact(fb[0], want, "nms (fallback)")
    _torchvision_agrees(boxes, scores, thr, ext[0])
    # the raw op takes what the wrapper passes it
    if boxes.dtype in KERNEL_FLOATS and scores.dtype in KERNEL_FLOATS and not boxes.is_meta:
        _exact(torch.ops.zoo.nms(boxes, scores, float(thr)), want, "torch.ops.zoo.nms")


@_settings(400)
@given(nms_inputs(batched=True))
@example((torch.tensor([[1.0, -3.0, -4.0, -5.0]]), torch.tensor([0.0]), torch.tensor([0]), 1.5))
@example((_meta(2, 4), _meta(2), torch.zeros(2, dtype=torch.int64, device="meta"), 0.5))
def test_fuzz_batched_nms(args):
    boxes, scores, idxs, thr = args
    ext, fb = _run_both(lambda: ops.batched_nms(boxes, scores, idxs, thr))
    if _check_errors(ext, fb, _nms_invalid(boxes, scores, thr, idxs)):
        return
    b, s = _kernel_float(boxes.contiguous()).reshape(-1, 4), _kernel_float(scores.contiguous())
    want = reference.batched_nms(b, s, idxs.contiguous(), float(thr))
    _exact(ext[0], want, "batched_nms (extension)")
    _exact(fb[0], want, "batched_nms (fallback)")


# ----------------------------------------------------------------------------- yolo_decode / yolo_postprocess

PRED_DTYPES = [torch.float32] * 4 + [torch.float64, torch.float16, torch.bfloat16, FP8]
ANCHOR_DTYPES = [torch.float32] * 6 + [torch.float64, torch.float16]
PRED_LAYOUTS = ["contiguous", "channels_last", "offset", "strided", "transposed", "expanded", "expanded_hw"]
strides_st = st.one_of(st.sampled_from([8, 16.0, 32.0, 1.0, 0.5, 1e30]), st.floats(1e-3, 1e3))
BAD_STRIDES = [0.0, -8.0, NAN, INF, "8"]
# darknet's scale_x_y: mostly 1 (YOLOv3), YOLOv4's values, and others > 0
scale_xy_st = st.one_of(st.sampled_from([1.0, 1.0, 1.0, 1.2, 1.1, 1.05, 2.0, 0.5]), st.floats(1e-3, 8.0))
BAD_SCALE_XY = [0.0, -1.2, NAN, INF, -INF]
CLS_ACTS = ["sigmoid", "softmax"]
BAD_CLS_ACTS = ["relu", "Softmax", ""]


def _logits(gen, shape, kind: str) -> torch.Tensor:
    """Raw YOLO maps ``[B, A, 5+C, H, W]`` (fp64): ``sparse`` (objectness low but in a few cells),
    ``dense`` (N(0, 3)), ``grid`` (integers in [-3, 3]: ties, identical boxes), ``extreme``
    (+-inf, +-50, +-1e4, 0: the size cap and saturated sigmoids), ``huge`` (+-1e30)."""
    if kind == "sparse":
        p = torch.randn(shape, generator=gen, dtype=torch.float64)
        p[:, :, 4] -= 6.0
        hot = torch.rand(shape[:2] + shape[3:], generator=gen) < 0.2
        p[:, :, 4] = torch.where(hot, p[:, :, 4] + 9.0, p[:, :, 4])
        return p
    if kind == "dense":
        return torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    if kind == "grid":
        return torch.randint(-3, 4, shape, generator=gen).double()
    if kind == "extreme":
        vals = torch.tensor([INF, -INF, 50.0, -50.0, 1e4, -1e4, 0.0, 3.0], dtype=torch.float64)
        return vals[torch.randint(0, len(vals), shape, generator=gen)]
    return _values(gen, shape, "huge")


@st.composite
def yolo_scale(draw, gen, batch: int, classes: int, faults: _Faults):
    """One scale: (pred, anchors, stride), possibly broken (the caller's checks say how)."""
    a = draw(st.integers(1, 3))
    h, w = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    pred = _logits(gen, (batch, a, 5 + classes, h, w), draw(st.sampled_from(["sparse", "sparse", "dense", "grid",
                                                                             "extreme", "huge"])))
    pred = _inject(pred.reshape(batch, a * (5 + classes), h, w), draw(specials))
    channel_bug = faults.pick(["+1", "no classes"])
    if channel_bug == "+1":
        pred = torch.cat([pred, pred[:, :1]], 1)
    elif channel_bug == "no classes":
        pred = pred.reshape(batch, a, 5 + classes, h, w)[:, :, :5].reshape(batch, a * 5, h, w)
    pred = _layout(_cast(pred, faults.choose(PRED_DTYPES, [torch.int32, torch.bool])),
                   draw(st.sampled_from(PRED_LAYOUTS)))
    anchor_kind = draw(st.sampled_from(["normal", "normal", "grid", "huge", "tiny"]))
    anchors = {"normal": torch.rand(a, 2, generator=gen, dtype=torch.float64) * 100 + 1,
               "grid": torch.randint(1, 9, (a, 2), generator=gen).double(),
               "huge": torch.full((a, 2), 1e30, dtype=torch.float64),
               "tiny": torch.full((a, 2), 1e-30, dtype=torch.float64)}[anchor_kind]
    if faults.on:
        anchors = _inject(anchors, draw(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([0.0, -1.0, NAN, INF])),
                                                 max_size=1)))
    anchors = _layout(_cast(anchors, faults.choose(ANCHOR_DTYPES, [torch.int64])),
                      draw(st.sampled_from(["contiguous", "transposed", "strided", "expanded"])))
    anchor_bug = faults.pick(["[A, 3]", "[0, 2]", "1-D", "A + 1"])
    if anchor_bug == "[A, 3]":
        anchors = torch.cat([anchors, anchors[:, :1]], 1)
    elif anchor_bug == "[0, 2]":
        anchors = anchors[:0]
    elif anchor_bug == "1-D":
        anchors = anchors[0]
    elif anchor_bug == "A + 1":
        anchors = torch.cat([anchors, anchors[:1]])
    return pred, anchors, faults.value(strides_st, BAD_STRIDES)


def _apply_device(draw, faults: _Faults, first: torch.Tensor, second: torch.Tensor):
    device = faults.choose(["cpu"] * 6 + ["meta-all"], ["meta-first", "meta-second"])
    if device in ("meta-first", "meta-all"):
        first = first.to("meta")
    if device in ("meta-second", "meta-all"):
        second = second.to("meta")
    return first, second


def _stride_invalid(s) -> bool:
    try:
        f = float(s)
    except (TypeError, ValueError):
        return True
    return not (math.isfinite(f) and f > 0)


def _scale_xy_invalid(v) -> bool:
    return _stride_invalid(v)  # finite and > 0, as a stride


def _scale_invalid(pred, anchors, stride) -> str | None:
    """Why one scale of yolo_decode / yolo_postprocess is refused, or None."""
    if anchors.ndim != 2:
        return "anchors rank"
    a = max(1, anchors.shape[0])
    if pred.ndim != 4 or not pred.is_floating_point():
        return "pred rank / dtype"
    ch = pred.shape[1]
    if ch % a or ch // a < 6:
        return "channels"
    if not anchors.is_floating_point() or anchors.shape[1] != 2 or anchors.shape[0] < 1:
        return "anchors"
    if anchors.device != pred.device:
        return "devices"
    if not anchors.is_meta:
        af = anchors.float()
        if not (torch.isfinite(af) & (af > 0)).all():
            return "anchor values"
    if _stride_invalid(stride):
        return "stride"
    return None


@st.composite
def decode_inputs(draw):
    gen = torch.Generator().manual_seed(draw(seeds))
    faults = _Faults(draw)
    pred, anchors, stride = draw(yolo_scale(gen, draw(st.integers(0, 2)), draw(st.integers(1, 4)), faults))
    pred, anchors = _apply_device(draw, faults, pred, anchors)
    return pred, anchors, stride, faults.value(scale_xy_st, BAD_SCALE_XY), faults.choose(CLS_ACTS, BAD_CLS_ACTS)


def _decode_tolerance(dtype, want: torch.Tensor | None = None, stride: float = 1.0, scale_xy: float = 1.0):
    """rtol and atol of yolo_decode's result ``want [B, A*H*W, 5+C]``; with ``want``, an atol per
    entry: a few fp32 ulps of ``(s + |offset| + H + W) * stride`` on the centres (the
    cancellation in ``sigmoid * s - offset``), 1e-30 elsewhere."""
    rtol = 8 * EPS[torch.float32] if dtype in (torch.float32, torch.float64) else 2 * EPS[dtype]
    atol = 1e-30
    if want is not None and scale_xy != 1.0 and want.numel():
        s, off = boxes.xy_scale_terms(scale_xy)
        atol = torch.full(want.shape, 1e-30, dtype=torch.float64)
        atol[..., 0:2] = min(8 * EPS[torch.float32] * (s + abs(off) + want.shape[1]) * float(stride), 1e300)
    return dict(rtol=rtol, atol=atol)


@_settings(300)
@given(decode_inputs())
# on meta: RuntimeError ("Tensor.item() cannot be called on meta tensors") from the anchor check
@example((_meta(1, 6, 1, 1), _meta(1, 2), 8.0))
# bad anchor values and a bad stride: the kernel named the anchors, the Python path the stride
@example((torch.zeros(1, 6, 1, 1), torch.tensor([[0.0, 1.0]]), -8.0))
def test_fuzz_yolo_decode(args):
    pred, anchors, stride, *rest = args
    scale_xy, cls_act = rest or (1.0, "sigmoid")  # (the pinned examples predate the two arguments)
    ext, fb = _run_both(lambda: ops.yolo_decode(pred, anchors, stride, scale_xy, cls_act))
    invalid = _scale_invalid(pred, anchors, stride)
    if invalid is None and _scale_xy_invalid(scale_xy):
        invalid = "scale_xy"
    if invalid is None and cls_act not in ("sigmoid", "softmax"):
        invalid = "cls_act"
    if _check_errors(ext, fb, invalid):
        return
    p = _kernel_float(pred.contiguous())
    want = reference.yolo_decode(p, anchors.float(), float(stride), float(scale_xy), cls_act)
    if pred.is_meta:
        assert ext[0].is_meta and fb[0].is_meta
    event(f"yolo_decode: {cls_act}, scale_xy {'1' if float(scale_xy) == 1.0 else 'other'}")
    tol = _decode_tolerance(p.dtype, want, float(stride), float(scale_xy))
    _assert_close(ext[0], want, what="yolo_decode (extension)", **tol)
    _assert_close(fb[0], want, what="yolo_decode (fallback)", **tol)


@st.composite
def postprocess_inputs(draw):
    gen = torch.Generator().manual_seed(draw(seeds))
    faults = _Faults(draw)
    batch, classes = draw(st.integers(0, 2)), draw(st.integers(1, 4))
    preds, anchors, strides = [], [], []
    for _ in range(draw(st.integers(1, 3))):
        p, a, s = draw(yolo_scale(gen, batch, classes, faults))
        preds.append(p), anchors.append(a), strides.append(s)
    mismatch = faults.pick(["batch", "classes", "anchors count", "strides count", "empty"])
    if mismatch == "batch" and len(preds) > 1:
        preds[1] = torch.cat([preds[1], preds[1]])
    elif mismatch == "classes" and len(preds) > 1:
        a = max(1, anchors[1].shape[0]) if anchors[1].ndim == 2 else 1
        preds[1] = torch.cat([preds[1], preds[1][:, :a]], 1)
    elif mismatch == "anchors count":
        anchors = anchors[1:]
    elif mismatch == "strides count":
        strides = strides + [8.0]
    elif mismatch == "empty":
        preds, anchors, strides = [], [], []
    if preds:
        i = draw(st.integers(0, len(preds) - 1))
        j = draw(st.integers(0, len(preds) - 1))
        device = faults.choose(["cpu"], ["meta-first", "meta-second", "meta-all"])
        if device == "meta-first":
            preds[i] = preds[i].to("meta")
        elif device == "meta-second" and j < len(anchors):
            anchors[j] = anchors[j].to("meta")
        elif device == "meta-all":
            preds = [p.to("meta") for p in preds]
            anchors = [a.to("meta") for a in anchors]
    if (draw(st.booleans()) and anchors and all(a.ndim == 2 for a in anchors)
            and len({tuple(a.shape) for a in anchors} | {a.dtype for a in anchors} | {a.device for a in anchors}) == 3):
        anchors = torch.stack(anchors)  # one [S, A, 2] tensor, as the API also takes
    conf, iou = faults.value(thresholds, BAD_THRESHOLDS), faults.value(thresholds, BAD_THRESHOLDS)
    counts = st.sampled_from([1, 2, 5, 300, 30000])
    max_det, max_nms = (faults.value(counts, [0, -1, True, 2.0]) for _ in range(2))
    # scale_xy: None, one number for every scale, or one per scale (sometimes one too many)
    kind = draw(st.sampled_from(["none", "none", "one", "list"]))
    if kind == "one":
        scale_xy = faults.value(scale_xy_st, BAD_SCALE_XY)
    elif kind == "list":
        scale_xy = [faults.value(scale_xy_st, BAD_SCALE_XY) for _ in preds]
        if faults.pick(["one too many"]):
            scale_xy.append(1.0)
        if draw(st.booleans()):
            scale_xy = tuple(scale_xy)
    else:
        scale_xy = None
    cls_act = faults.choose(CLS_ACTS, BAD_CLS_ACTS)
    return preds, anchors, strides, conf, iou, max_det, max_nms, draw(st.booleans()), scale_xy, cls_act


def _scale_xy_list(scale_xy, n: int) -> list[float] | None:
    """The API's scale_xy as one value per scale (a list shorter or longer than n stays so)."""
    if scale_xy is None:
        return None
    return list(scale_xy) if isinstance(scale_xy, (list, tuple)) else [scale_xy] * n


def _postprocess_invalid(preds, anchors, strides, conf, iou, max_det, max_nms, scale_xy=None,
                         cls_act="sigmoid") -> str | None:
    if isinstance(anchors, torch.Tensor):
        anchors = list(anchors.unbind(0)) if anchors.ndim == 3 else [anchors]
    if not preds or len(anchors) != len(preds) or len(strides) != len(preds):
        return "scale counts"
    sxy = _scale_xy_list(scale_xy, len(preds))
    if sxy is not None and len(sxy) != len(preds):
        return "scale_xy count"
    if sxy is not None and any(_scale_xy_invalid(v) for v in sxy):
        return "scale_xy"
    if cls_act not in ("sigmoid", "softmax"):
        return "cls_act"
    first = None
    for p, a, s in zip(preds, anchors, strides):
        why = _scale_invalid(p, a, s)
        if why:
            return why
        c = p.shape[1] // a.shape[0] - 5
        if first is None:
            first = (c, p.shape[0], p.device)
        elif (c, p.shape[0]) != first[:2]:
            return "batch / classes"
        elif p.device != first[2]:
            return "devices"
    if _threshold_invalid(conf, "conf") or _threshold_invalid(iou, "iou"):
        return "thresholds"
    for v in (max_det, max_nms):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            return "counts"
    if preds[0].is_meta:
        return "values on meta"
    return None


def _ext_decode(p, a, s, scale_xy=1.0, cls_act="sigmoid"):
    return torch.ops.zoo.yolo_decode(p.contiguous(), a.float(), s, scale_xy, cls_act)


@_settings(250)
@given(postprocess_inputs())
# an empty batch: the fallback raised torch.cat's "expected a non-empty list of Tensors"
@example(([torch.zeros(0, 6, 0, 0)], [torch.tensor([[98.0, 71.75]])], [8], 0.0, 0.0, 1, 1, False))
# a bad anchor value in scale 0, an integer map in scale 1: the two paths named different faults
@example(([torch.zeros(1, 6, 1, 1), torch.zeros(1, 6, 1, 1, dtype=torch.int32)],
          [torch.tensor([[0.0, 71.75]]), torch.tensor([[93.0, 65.5]])], [8, 8], 0.0, 0.0, 1, 1, False))
# on meta: RuntimeError from the anchor check
@example(([_meta(1, 6, 2, 2)], [_meta(1, 2)], [8], 0.25, 0.45, 300, 30000, False))
def test_fuzz_yolo_postprocess(args):
    preds, anchors, strides, conf, iou, max_det, max_nms, multi_label, *rest = args
    scale_xy, cls_act = rest or (None, "sigmoid")  # (the pinned examples predate the two arguments)

    def call():
        return ops.yolo_postprocess(preds, anchors, strides, conf_threshold=conf, iou_threshold=iou, max_det=max_det,
                                    max_nms=max_nms, multi_label=multi_label, scale_xy=scale_xy, cls_act=cls_act)

    ext, fb = _run_both(call)
    invalid = _postprocess_invalid(preds, anchors, strides, conf, iou, max_det, max_nms, scale_xy, cls_act)
    if _check_errors(ext, fb, invalid):
        return
    anchor_list = list(anchors.unbind(0)) if isinstance(anchors, torch.Tensor) else anchors
    batch = preds[0].shape[0]
    sxy = _scale_xy_list(scale_xy, len(preds))
    sxy = None if sxy is None else [float(v) for v in sxy]
    args = ([_kernel_float(p.contiguous()).float() for p in preds], [a.float() for a in anchor_list],
            [float(s) for s in strides], float(conf), float(iou), max_det, max_nms, multi_label, sxy, cls_act)
    event(f"yolo_postprocess: {cls_act}, scale_xy {'None' if sxy is None else 'given'}")
    # the oracle: the reference pipeline on the kernel's own decode (see the module docstring)
    boxes, scores, labels, image = reference.yolo_postprocess(*args, decode_fn=_ext_decode)
    per_scale = sxy or [1.0] * len(preds)

    def same(p, a, s, v):
        k, r = torch.ops.zoo.yolo_decode(p, a, s, v, cls_act), reference.yolo_decode(p, a, s, v, cls_act)
        return torch.equal(k.isnan(), r.isnan()) and torch.equal(k.nan_to_num(), r.nan_to_num())

    same_decode = all(same(p, a, s, v) for p, a, s, v in zip(*args[:3], per_scale))
    for name, (got, _) in (("extension", ext), ("fallback", fb)):
        if name == "fallback" and not same_decode:
            continue  # the fallback decodes with torch's sigmoid / exp: a last-bit difference may flip a decision
        assert len(got) == batch, name
        for b, det in enumerate(got):
            sel = image == b
            _exact(det["boxes"], boxes[sel], f"{name}: image {b} boxes")
            _exact(det["scores"], scores[sel], f"{name}: image {b} scores")
            _exact(det["labels"], labels[sel], f"{name}: image {b} labels")
            assert det["labels"].numel() <= max_det
    # the fused kernel takes the wrapper's arguments as they are
    raw = torch.ops.zoo.yolo_postprocess(*args)
    for got, want, what in zip(raw, (boxes, scores, labels, image), ("boxes", "scores", "labels", "image")):
        _exact(got, want, f"torch.ops.zoo.yolo_postprocess {what}")


# ----------------------------------------------------------------------------- squeeze_excite

X_DTYPES = [torch.float32] * 5 + [torch.float64, torch.float16, torch.bfloat16, FP8]
W_DTYPES = [torch.float32] * 8 + [torch.float64, torch.float16, torch.bfloat16]
X_LAYOUTS = ["contiguous", "contiguous", "channels_last", "channels_last", "offset", "strided", "transposed",
             "expanded", "expanded_hw"]
W_LAYOUTS = ["contiguous", "contiguous", "transposed", "strided", "offset", "expanded"]


@st.composite
def se_inputs(draw):
    gen = torch.Generator().manual_seed(draw(seeds))
    faults = _Faults(draw)
    n, c, h, w = draw(st.integers(0, 3)), draw(st.integers(0, 6)), draw(st.integers(0, 5)), draw(st.integers(0, 5))
    cr = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["normal", "normal", "grid", "zeros", "huge", "tiny", "mixed"]))
    x = _inject(_values(gen, (n, c, h, w), kind), draw(specials))
    wkind = draw(st.sampled_from(["normal", "normal", "normal", "grid", "zeros", "mixed"]))
    weights = [_values(gen, s, wkind) / max(1, s[-1]) ** 0.5 for s in ((cr, c), (cr,), (c, cr), (c,))]
    if draw(st.integers(0, 2)) == 0:  # biases that saturate the ReLU, weights with NaN / inf
        weights[1] = weights[1] + draw(st.sampled_from([-100.0, 100.0, 0.0]))
        for k in range(4):
            weights[k] = _inject(weights[k], draw(specials))
    x = _cast(x, faults.choose(X_DTYPES, NOT_FLOATING))
    wdt = draw(st.sampled_from(W_DTYPES))
    weights = [_cast(t, wdt if draw(st.integers(0, 5)) else faults.choose(W_DTYPES, [torch.int32]))
               for t in weights]
    shape_bug = faults.pick(["x 3-D", "w1 [Cr, C+1]", "w1 [0, C]", "b1 [Cr+1]", "w2 [Cr, C]", "b2 [C+1]", "w1 1-D"])
    w1, b1, w2, b2 = weights
    if shape_bug == "x 3-D":
        x = x[0] if n else x.new_zeros(c, h, w)
    elif shape_bug == "w1 [Cr, C+1]":
        w1 = torch.cat([w1, w1[:, :1] if c else w1.new_zeros(cr, 1)], 1)
    elif shape_bug == "w1 [0, C]":
        w1 = w1[:0]
    elif shape_bug == "b1 [Cr+1]":
        b1 = torch.cat([b1, b1[:1]])
    elif shape_bug == "w2 [Cr, C]" and c != cr:
        w2 = w2.t()
    elif shape_bug == "b2 [C+1]":
        b2 = torch.cat([b2, b2.new_zeros(1)])
    elif shape_bug == "w1 1-D":
        w1 = w1.reshape(-1)
    gate = faults.choose(reference.SE_GATES, ["tanh"])
    act = faults.choose(reference.SE_ACTS, ["gelu"])
    x_layout = draw(st.sampled_from(X_LAYOUTS))
    w_layouts = [draw(st.sampled_from(W_LAYOUTS)) for _ in range(4)]
    device = faults.choose(["cpu"] * 6 + ["meta-all"], ["meta-first", "meta-second"])
    meta = {"cpu": (), "meta-first": (0,), "meta-second": (draw(st.integers(1, 4)),),
            "meta-all": (0, 1, 2, 3, 4)}[device]
    grads = [draw(st.booleans()) for _ in range(5)]
    return x, [w1, b1, w2, b2], gate, act, x_layout, w_layouts, meta, grads, draw(seeds)


def _se_invalid(x, w1, b1, w2, b2, gate, act) -> str | None:
    if x.ndim != 4 or not x.is_floating_point():
        return "x"
    if (w1.ndim, b1.ndim, w2.ndim, b2.ndim) != (2, 1, 2, 1):
        return "weight ranks"
    if not all(t.is_floating_point() for t in (w1, b1, w2, b2)):
        return "weight dtypes"
    c, cr = x.shape[1], w1.shape[0]
    if w1.shape[1] != c or cr < 1 or b1.shape[0] != cr or tuple(w2.shape) != (c, cr) or b2.shape[0] != c:
        return "weight shapes"
    if any(t.device != x.device for t in (w1, b1, w2, b2)):
        return "devices"
    if gate not in reference.SE_GATES or act not in reference.SE_ACTS:
        return "gate / act"
    return None


def _se_forward_bound(x, w1, b1, w2, b2, gate, dtype):
    """(bound, overflow): the per-element error bound of y, from the magnitudes of the pooled sums
    and of both FCs (in fp64), times the accumulation type's epsilon and the number of terms, times
    the gate's slope, times |x|; and, per (sample, channel) ``[N, C, 1, 1]``, whether an FC's
    terms or sums reach beyond the accumulation type's range (1e30 weights times 1e30 values).

    Where they do, the result is unspecified: the AVX-512 FCs use fused multiply-adds, which
    round inf - (a product beyond the range) to -inf where an unfused sum first rounds the product
    to inf and gets NaN; torch's own BLAS (the fallback's linear) differs from itself there with
    the weights' layout."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    big = torch.finfo(acc).max / 4
    xa = x.detach().double().abs()
    ms = xa.mean((2, 3)) if x.shape[2] * x.shape[3] else xa.new_zeros(x.shape[:2])
    mh = ms @ w1.detach().double().abs().t() + b1.detach().double().abs()
    mu = mh @ w2.detach().double().abs().t() + b2.detach().double().abs()
    overflow = ~(mu < big) | ~(mh < big).all(1, keepdim=True)  # (NaN compares False: overflow too)
    terms = x.shape[1] + w1.shape[0] + x.shape[2] * x.shape[3] + 8
    slope = 0.25 if gate == "sigmoid" else 1 / 6
    dg = 4 * EPS[acc] * (terms * slope * mu + 4)  # the gate's error (absolute: g is in [0, 1])
    return (xa * dg[:, :, None, None]).nan_to_num(nan=INF), overflow[:, :, None, None]


def _grad_tolerance(x_dtype: torch.dtype, grad_dtype: torch.dtype, scale: float, gate: str):
    """Tolerance of a gradient: the accumulation type's (fp64 for fp64 x, else fp32), or the
    gradient's own dtype if that is coarser (fp16 / bf16)."""
    acc = torch.float64 if x_dtype == torch.float64 else torch.float32
    rtol = 1e-3 if grad_dtype in (torch.float16, torch.bfloat16) else 64 * EPS[acc]
    if gate == "hard_sigmoid" and acc == torch.float64:
        rtol = 64 * EPS[torch.float32]  # torch's fp64 hardsigmoid backward multiplies by 1/6 rounded to fp32
    return dict(rtol=4 * rtol, atol=rtol * scale)


def _se_example(x, w1, b1, w2, b2, gate="sigmoid", grads=(False,) * 5):
    weights = [torch.tensor(w) for w in (w1, b1, w2, b2)]
    return (x, weights, gate, "relu", "contiguous", ["contiguous"] * 4, (), list(grads), 0)


NO_GRAD, DB2 = (False,) * 5, (False, False, False, False, True)


@_settings(400)
@given(se_inputs())
# the kernel's ReLU gave 0 for NaN (torch's gives NaN): one NaN pixel did not poison its sample
@example(_se_example(torch.tensor([[[[NAN, -0.8803]]]]), [[-6.5364]], [1.7053], [[-3.2536]], [-4.1958]))
# sigmoid(-inf) was 1 / (1 + e^88) = 6e-39, not 0 (inf * gate: inf, not torch's NaN)
@example(_se_example(torch.tensor([[[[INF]]]]), [[-0.8803], [-6.5364], [1.7053]], [-1.8784, -2.4224, 0.6986],
                     [[1.4515, -1.2458, -0.6986]], [-1.7899]))
# a NaN in W2 was skipped where ReLU gave 0 (0 * NaN is NaN)
@example(_se_example(torch.tensor([[[[4.6230]]]]), [[-0.8803]], [-106.5364], [[NAN]], [-3.2536]))
# hard_sigmoid's backward multiplied a NaN gradient by its slope 0 (torch selects 0)
@example(_se_example(torch.tensor([[[[NAN]]]]), [[-0.8803]], [-6.5364], [[1.7053]], [-3.2536], "hard_sigmoid", DB2))
# an empty plane: the fallback's weight gradients were NaN (mean of nothing), the kernel's 0
@example(_se_example(torch.zeros(1, 1, 0, 0), [[4.6230]], [-0.8803], [[-6.5364]], [1.7053], grads=DB2))
@example(_se_example(torch.zeros(1, 1, 0, 0), [[4.6230]], [-0.8803], [[NAN]], [1.7053], grads=DB2))
# fp8 input: the kernel refused it (ValueError), the fallback computed it
@example(_se_example(torch.ones(1, 1, 1, 1).to(FP8), [[1.0]], [0.0], [[1.0]], [0.0]))
def test_fuzz_squeeze_excite(args):
    x0, weights0, gate, act, x_layout, w_layouts, meta, grads, seed = args
    requires = [g and t.is_floating_point() for g, t in zip(grads, [x0, *weights0])]
    leaves = [t.clone().requires_grad_(r) for t, r in zip([x0, *weights0], requires)]
    inputs = [_layout(leaves[0], x_layout), *(_layout(t, how) for t, how in zip(leaves[1:], w_layouts))]
    inputs = [t.to("meta") if i in meta else t for i, t in enumerate(inputs)]
    x, w1, b1, w2, b2 = inputs
    ext, fb = _run_both(lambda: ops.squeeze_excite(x, w1, b1, w2, b2, gate=gate, act=act))
    if _check_errors(ext, fb, _se_invalid(x, w1, b1, w2, b2, gate, act)):
        return
    plain = [t.detach().contiguous() for t in inputs]
    xk = _kernel_float(plain[0])
    want = reference.squeeze_excite(xk, *plain[1:], gate, act).to(x.dtype)
    if x.is_meta:
        assert ext[0].is_meta and fb[0].is_meta and ext[0].shape == x.shape
        return
    out_eps = EPS.get(x.dtype, 2.0**-3)  # fp8: 3 mantissa bits
    bound, overflow = _se_forward_bound(xk, *plain[1:], gate, xk.dtype)
    finite_terms = not bool(overflow.any())
    event("squeeze_excite: an FC overflows" if not finite_terms else "squeeze_excite: FCs in range")
    for name, (y, _) in (("extension", ext), ("fallback", fb)):
        _assert_close(y, want, rtol=2 * out_eps if x.dtype != xk.dtype or x.dtype in EPS else 0, atol=bound,
                      what=f"squeeze_excite forward ({name})", skip=overflow)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            assert y.is_contiguous(memory_format=torch.channels_last), "channels_last in, channels_last out"
    # backward (autograd through the C++ autograd kernel and the fused backward): NaN / inf at the
    # same places; finite values to a bound that scales with the inputs' magnitudes (so, with huge
    # or non-finite inputs, only where the non-finite values are)
    live = [leaf for leaf, r in zip(leaves, requires) if r]
    if not live or x.dtype not in KERNEL_FLOATS or not finite_terms:
        return
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x.dtype)
    got = torch.autograd.grad(ext[0], live, gy, allow_unused=True)
    ref_leaves = [t.detach().clone().requires_grad_(r) for t, r in zip(leaves, requires)]
    ref_in = [_layout(ref_leaves[0], x_layout), *(_layout(t, how) for t, how in zip(ref_leaves[1:], w_layouts))]
    y_ref = reference.squeeze_excite(*ref_in, gate, act)
    want_g = torch.autograd.grad(y_ref, [t for t, r in zip(ref_leaves, requires) if r], gy, allow_unused=True)
    scale = 1.0 + _cube(max(_magnitude(t) for t in (*leaves, gy))) * (
        x.shape[2] * x.shape[3] + x.shape[1] + 4)
    for i, (g, wg) in enumerate(zip(got, want_g)):
        if wg is None:
            assert g is None or not g.any(), f"grad {i}: the reference has none"
            continue
        g = torch.zeros_like(wg) if g is None else g
        _assert_close(g, wg, what=f"squeeze_excite grad {i}", **_grad_tolerance(x.dtype, wg.dtype, scale, gate))


# ----------------------------------------------------------------------------- adder2d

ADDER_DTYPES = [torch.float32] * 5 + [torch.float64, torch.float64, torch.float16, torch.bfloat16]


@st.composite
def adder_inputs(draw):
    gen = torch.Generator().manual_seed(draw(seeds))
    faults = _Faults(draw)
    low = 0 if faults.on else 1  # no output channel or an empty kernel: refused
    n, cin, cout = draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(low, 3))
    kh, kw = draw(st.integers(low, 3)), draw(st.integers(low, 3))
    stride = faults.value(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
                          [0, -1, True, 1.5, (1, 2, 3), (0, 1), None])
    padding = faults.value(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))),
                           [-1, (0, -1), False, "same"])
    h, w = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    if not faults.on:  # the padded input holds the kernel
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        h, w = max(h, kh - 2 * ph), max(w, kw - 2 * pw)
    kind = draw(st.sampled_from(["normal", "normal", "grid", "zeros", "huge", "mixed"]))
    x = _inject(_values(gen, (n, cin, h, w), kind), draw(specials))
    weight = _inject(_values(gen, (cout, cin, kh, kw), draw(st.sampled_from(["normal", "grid", kind]))),
                     draw(specials))
    dtype = faults.choose(ADDER_DTYPES, [torch.int32])
    x = _cast(x, dtype)
    weight = _cast(weight, dtype if not faults.pick(["other dtype"]) else draw(st.sampled_from(ADDER_DTYPES)))
    eta = faults.value(st.sampled_from([0.2, 0.2, 0.0, None, 1.0, 1e-3]), [-1.0, NAN, INF, True, "big"])
    x_layout = draw(st.sampled_from(X_LAYOUTS))
    w_layout = draw(st.sampled_from(["contiguous", "contiguous", "channels_last", "transposed", "strided",
                                     "expanded"]))
    device = faults.choose(["cpu"] * 6 + ["meta-all"], ["meta-first", "meta-second"])
    meta = {"cpu": (), "meta-first": (0,), "meta-second": (1,), "meta-all": (0, 1)}[device]
    grads = (draw(st.booleans()), draw(st.booleans()))
    return x, weight, stride, padding, eta, x_layout, w_layout, meta, grads, draw(seeds)


def _pair_ok(v, minimum: int):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        v = (v, v)
    if not (isinstance(v, (tuple, list)) and len(v) == 2):
        return None
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= minimum for t in v):
        return None
    return tuple(v)


def _adder_invalid(x, weight, stride, padding, eta) -> str | None:
    if x.ndim != 4 or weight.ndim != 4:
        return "ranks"
    if not x.is_floating_point() or weight.dtype != x.dtype:
        return "dtypes"
    if x.dtype in (torch.float16, torch.bfloat16):
        pass  # computed in fp32 (weight in the same dtype, checked above)
    elif x.dtype not in (torch.float32, torch.float64):
        return "dtype"
    if weight.shape[1] != x.shape[1] or weight.shape[0] < 1 or weight.shape[2] < 1 or weight.shape[3] < 1:
        return "weight shape"
    if weight.device != x.device:
        return "devices"
    s, p = _pair_ok(stride, 1), _pair_ok(padding, 0)
    if s is None or p is None:
        return "stride / padding"
    if x.shape[2] + 2 * p[0] < weight.shape[2] or x.shape[3] + 2 * p[1] < weight.shape[3]:
        return "padded input smaller than the kernel"
    if eta is not None:
        if isinstance(eta, bool):
            return "eta"
        try:
            e = float(eta)
        except (TypeError, ValueError):
            return "eta"
        if not (math.isfinite(e) and e >= 0):
            return "eta"
    return None


def _adder_example(x, weight, padding=0, grads=(False, False)):
    return (x, weight, 1, padding, 0.2, "contiguous", "contiguous", (), grads, 0)


@_settings(300)
@given(adder_inputs())
# an empty kernel (kh = 0): the kernel computed, the fallback raised RuntimeError from unfold
@example(_adder_example(torch.ones(1, 2, 3, 3), torch.ones(2, 2, 0, 1)))
# no input channels, and an empty plane that only the padding fills: RuntimeError in the fallback
@example(_adder_example(torch.ones(1, 0, 3, 3), torch.ones(2, 0, 2, 2)))
@example(_adder_example(torch.ones(1, 2, 0, 3), torch.ones(2, 2, 1, 1), padding=1))
# that empty plane's backward: RuntimeError from at::convolution_backward in the kernel
@example(_adder_example(torch.zeros(1, 1, 0, 0), torch.tensor([[[[4.6230]]]]), padding=1, grads=(False, True)))
def test_fuzz_adder2d(args):
    x0, w0, stride, padding, eta, x_layout, w_layout, meta, grads, seed = args
    requires = [g and t.is_floating_point() for g, t in zip(grads, (x0, w0))]
    leaves = [t.clone().requires_grad_(r) for t, r in zip((x0, w0), requires)]
    x, weight = (_layout(t, how) for t, how in zip(leaves, (x_layout, w_layout)))
    x, weight = (t.to("meta") if i in meta else t for i, t in enumerate((x, weight)))
    ext, fb = _run_both(lambda: ops.adder2d(x, weight, stride=stride, padding=padding, eta=eta))
    if _check_errors(ext, fb, _adder_invalid(x, weight, stride, padding, eta)):
        return
    s, p = _pair_ok(stride, 1), _pair_ok(padding, 0)
    conv = x.dtype in (torch.float16, torch.bfloat16)  # computed in fp32 and cast back
    xk, wk = (t.detach().contiguous().float() if conv else t.detach().contiguous() for t in (x, weight))
    if x.is_meta:
        ho, wo = reference.adder2d_out_size(x.shape[2], x.shape[3], weight.shape[2], weight.shape[3], s, p)
        assert ext[0].is_meta and fb[0].is_meta and ext[0].shape == fb[0].shape == (x.shape[0], weight.shape[0], ho, wo)
        return
    want = reference.adder2d_forward(xk, wk, s, p).to(x.dtype)
    k = weight[0].numel()
    rtol = (4 * k + 4) * EPS[xk.dtype] + (2 * EPS[x.dtype] if conv else 0.0)
    for name, (y, _) in (("extension", ext), ("fallback", fb)):
        _assert_close(y, want, rtol=rtol, atol=1e-300, what=f"adder2d forward ({name})")
    # backward: the paper's gradients (eta rescales dW), through autograd on both paths
    live = [t for t, r in zip(leaves, requires) if r]
    if not live:
        return
    gy = torch.randn(want.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x.dtype)
    got = torch.autograd.grad(ext[0], live, gy, allow_unused=True, retain_graph=True)  # (shared layout nodes)
    with _fallback():
        got_fb = torch.autograd.grad(fb[0], live, gy, allow_unused=True)
    e = 0.0 if eta is None else float(eta)
    ref_leaves = [t.detach().clone().requires_grad_(r) for t, r in zip(leaves, requires)]
    rx, rw = (_layout(t, how) for t, how in zip(ref_leaves, (x_layout, w_layout)))
    y_ref = reference.adder2d(rx.float() if conv else rx, rw.float() if conv else rw, s, p, e)
    want_g = torch.autograd.grad(y_ref, [t for t, r in zip(ref_leaves, requires) if r], gy.to(y_ref.dtype),
                                 allow_unused=True)
    mag = max(_magnitude(t) for t in (*leaves, gy))
    terms = x.shape[0] * want.shape[2] * want.shape[3] + weight.shape[0] * k + 1
    for which, g_list in (("extension", got), ("fallback", got_fb)):
        for i, (g, wg) in enumerate(zip(g_list, want_g)):
            wg = wg.to(g.dtype)
            eps = EPS[x.dtype]
            if e and live[i] is leaves[-1] and requires[1]:
                # dW * eta * sqrt(K) / ||dW||: compare only where ||dW|| is well above the rounding noise
                raw = reference.adder2d_weight_grad(gy.to(y_ref.dtype), rx.detach().to(y_ref.dtype),
                                                    rw.detach().to(y_ref.dtype), s, p)
                if float(raw.double().norm()) < 1e4 * eps * terms * _square(1 + mag):
                    continue
                _assert_close(g, wg, rtol=1e-2 if conv else 1e-4, atol=1e-2 if conv else 1e-4,
                              what=f"adder2d rescaled dW ({which})")
                continue
            _assert_close(g, wg, rtol=16 * eps, atol=16 * eps * terms * _square(1 + mag),
                          what=f"adder2d grad {i} ({which})")
