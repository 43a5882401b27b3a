"""zoo::squeeze_excite and zoo::squeeze_excite_backward on CUDA: the extension's CUDA
kernels vs the pure-torch reference (zoo.ops.reference) on the same inputs, vs the CPU
kernel on the same data, gradcheck and opcheck. Skipped without a CUDA device.

With a device but an extension built without these CUDA kernels the tests skip too, unless
ZOO_REQUIRE_CUDA_OPS=1 (benchmarks/device_check.sh sets it), where they fail instead.

The shapes cover both forward paths of csrc/cuda/se.cu: the single-kernel path (one block
per sample, C*H*W <= 16384 and the scratch fits in shared memory) and the pool / FC / scale
path, with its NCHW small-plane, NCHW large-plane (split) and channels_last pools; with
ReLU or SiLU between the FCs.
"""
from __future__ import annotations


import pytest
import torch

import zoo  # noqa: F401
import zoo.ops as ops
from zoo.ops import _ext, reference
from tests.ops.conftest import ALL_GRADS, require_cuda_kernels, se_grads_by_autograd

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

OPS = ("squeeze_excite", "squeeze_excite_backward")
CUDA = torch.device("cuda")
GATES = ("sigmoid", "hard_sigmoid")
# (gate, act): both gates with ReLU, and SiLU with the sigmoid gate (EfficientNet's); the
# act code is the same whichever the gate, so the full product is not run everywhere
GATE_ACTS = (("sigmoid", "relu"), ("hard_sigmoid", "relu"), ("sigmoid", "silu"))
HALVES = (torch.float16, torch.bfloat16)


@pytest.fixture(autouse=True)
def _needs_cuda_kernels():
    require_cuda_kernels(OPS)


# ------------------------------------------------------------------------ inputs


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def se_weights(c: int, cr: int, dtype=torch.float32, seed: int = 0, gate: str = "sigmoid", device="cpu"):
    """w1 [Cr, C], b1 [Cr], w2 [C, Cr], b2 [C], scaled so that u spans the gate's active range.
    For hard_sigmoid, u stays well inside (-3, 3) at most channels but crosses it at some."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(cr, c, generator=g, dtype=torch.float64) / c**0.5
    b1 = 0.1 * torch.randn(cr, generator=g, dtype=torch.float64)
    w2 = torch.randn(c, cr, generator=g, dtype=torch.float64) / cr**0.5
    b2 = (2.0 if gate == "hard_sigmoid" else 0.5) * torch.randn(c, generator=g, dtype=torch.float64)
    return tuple(t.to(dtype=dtype, device=device) for t in (w1, b1, w2, b2))


def make_x(shape, dtype=torch.float32, layout="nchw", seed=0, device=CUDA):
    """x [N, C, H, W] with the given memory layout: "nchw" (contiguous), "channels_last", or
    "strided" (a slice along W: neither layout, the kernels work on an NCHW copy)."""
    g = torch.Generator().manual_seed(seed)
    data = (torch.randn(shape, generator=g, dtype=torch.float64) + 0.25).to(dtype)
    if layout == "nchw":
        return data.to(device)
    if layout == "channels_last":
        x = data.to(device).contiguous(memory_format=torch.channels_last)
        return x
    if layout == "strided":
        n, c, h, w = shape
        big = torch.zeros(n, c, h, 2 * w + 1, dtype=dtype, device=device)
        x = big[..., 1::2]
        x.copy_(data)
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        return x
    if layout == "misaligned":  # NCHW-contiguous, but 1 element past a 16-byte boundary
        buf = torch.zeros(data.numel() + 1, dtype=dtype, device=device)
        x = buf[1:].view(shape)
        x.copy_(data)
        assert x.is_contiguous() and x.data_ptr() % 16 != 0
        return x
    raise ValueError(layout)


def _expected_strides(x: torch.Tensor):
    return ops._dense_like(x).stride()


def _tol(dtype):
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-12)
    if dtype == torch.float32:
        return dict(rtol=1e-5, atol=1e-6)
    return dict(rtol=1e-2, atol=1e-2)


def _btol(dtype):
    if dtype == torch.float64:
        return dict(rtol=1e-9, atol=1e-11)
    if dtype == torch.float32:
        return dict(rtol=1e-4, atol=1e-5)
    return dict(rtol=2e-2, atol=2e-2)


# Shapes: (N, C, H, W, Cr) on both sides of the single-kernel threshold (C*H*W <= 16384).
FUSED_SHAPES = [
    (2, 37, 5, 5, 9),      # C not a multiple of any vector width, H*W odd
    (3, 16, 1, 1, 4),      # H = W = 1
    (1, 64, 7, 7, 16),     # N = 1
    (4, 16, 32, 32, 4),    # C*H*W = 16384 exactly: the largest single-kernel slab
    (2, 256, 8, 8, 16),    # channels_last with C >= the block size
]
MULTI_SHAPES = [
    (2, 5, 29, 113, 2),    # C*H*W = 16385: just above the threshold; H*W odd
    (2, 37, 31, 17, 9),    # NCHW small planes (a group of lanes per plane), C = 37
    (1, 8, 64, 64, 2),     # N = 1, NCHW large planes split over several blocks
    (2, 3, 99, 101, 2),    # large odd planes: unaligned plane starts, vector head and tail
    (1, 300, 9, 7, 20),    # C > the block size, odd H*W
]


# Every kernel path: shape x layout x dtype, with both gates and ReLU; SiLU (sigmoid gate) on
# every shape and dtype in the two dense layouts (strided and misaligned x reach the same FC
# code through other pool and scale paths, which do not depend on act).
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
LAYOUTS = ("nchw", "channels_last", "strided", "misaligned")


def _path_cases():
    shapes = FUSED_SHAPES + MULTI_SHAPES
    cases = [(s, l, d, g, "relu") for g in GATES for d in DTYPES for l in LAYOUTS for s in shapes]
    cases += [(s, l, d, "sigmoid", "silu") for d in DTYPES for l in LAYOUTS[:2] for s in shapes]
    return [pytest.param(*c, id=f"{'x'.join(map(str, c[0]))}-{c[1]}-{str(c[2])[6:]}-{c[3]}-{c[4]}") for c in cases]


PATH_CASES = _path_cases()


# ------------------------------------------------------------------------ registration


def test_cuda_kernels_registered_and_used(monkeypatch):
    monkeypatch.delenv("ZOO_OPS", raising=False)
    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"zoo::{op}", "CUDA")
    assert _ext.has_kernel("squeeze_excite", CUDA)

    def fallback(*args, **kwargs):
        raise AssertionError("the pure-torch fallback ran")

    x = make_x((2, 16, 4, 4), seed=71).requires_grad_()
    wts = se_weights(16, 4, device=CUDA)
    want = reference.squeeze_excite(x.detach(), *wts, "sigmoid", "silu")
    monkeypatch.setattr(reference, "squeeze_excite", fallback)
    for act in ("relu", "silu"):  # both acts run the CUDA kernels
        y = ops.squeeze_excite(x, *wts, act=act)
        y.sum().backward()
    torch.testing.assert_close(y.detach(), want, **_tol(torch.float32))


# ------------------------------------------------------------------------ forward


@pytest.mark.parametrize("shape,layout,dtype,gate,act", PATH_CASES)
def test_forward_matches_reference(shape, layout, dtype, gate, act):
    n, c, h, w, cr = shape
    x = make_x((n, c, h, w), dtype, layout, seed=n * c + h)
    wts = se_weights(c, cr, _acc(dtype), seed=c, gate=gate, device=CUDA)
    y = torch.ops.zoo.squeeze_excite(x, *wts, gate, act)
    want = reference.squeeze_excite(x, *wts, gate, act)
    assert y.device == x.device and y.dtype == dtype and y.shape == x.shape
    assert y.stride() == _expected_strides(x)
    torch.testing.assert_close(y, want, **_tol(dtype))


@pytest.mark.parametrize("gate,act", GATE_ACTS)
def test_forward_large_channels_use_global_scratch(gate, act):
    # s and z do not fit in shared memory: C = 6500 in fp64 (52 KB), and C = 13000 in fp32;
    # H*W = 4 keeps the slabs above the single-kernel threshold.
    for dtype, c in ((torch.float64, 6500), (torch.float32, 13000)):
        x = make_x((2, c, 2, 2), dtype, seed=c)
        wts = se_weights(c, 8, dtype, seed=1, gate=gate, device=CUDA)
        torch.testing.assert_close(torch.ops.zoo.squeeze_excite(x, *wts, gate, act),
                                   reference.squeeze_excite(x, *wts, gate, act), **_tol(dtype))
        xc = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(torch.ops.zoo.squeeze_excite(xc, *wts, gate, act),
                                   reference.squeeze_excite(xc, *wts, gate, act), **_tol(dtype))


def test_forward_big_channels_last_half():
    # a realistic SE input: many blocks in every kernel, splits along H*W not needed
    x = make_x((8, 256, 56, 56), torch.float16, "channels_last", seed=5)
    wts = se_weights(256, 16, torch.float32, seed=5, device=CUDA)
    y = torch.ops.zoo.squeeze_excite(x, *wts, "sigmoid")
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, reference.squeeze_excite(x, *wts, "sigmoid"), **_tol(torch.float16))


def test_forward_channels_last_split_over_pixels():
    # few (n, channel tile) blocks and many pixels: the channels_last pool splits H*W
    x = make_x((1, 24, 150, 150), torch.float32, "channels_last", seed=6)
    wts = se_weights(24, 6, seed=6, device=CUDA)
    torch.testing.assert_close(torch.ops.zoo.squeeze_excite(x, *wts, "sigmoid"),
                               reference.squeeze_excite(x, *wts, "sigmoid"), **_tol(torch.float32))


@pytest.mark.parametrize("wdtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weights_in_another_dtype(wdtype):
    x = make_x((2, 37, 9, 9), torch.float32, seed=7)
    wts = se_weights(37, 9, wdtype, seed=7, device=CUDA)
    y = torch.ops.zoo.squeeze_excite(x, *wts, "sigmoid")
    torch.testing.assert_close(y, reference.squeeze_excite(x, *wts, "sigmoid"), **_tol(torch.float32))
    dy = make_x((2, 37, 9, 9), torch.float32, seed=8)
    got = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, "sigmoid", ALL_GRADS)
    want = se_grads_by_autograd(dy, x, *wts, "sigmoid")
    for a, b, t in zip(got, want, (x, *wts)):
        assert a.dtype == t.dtype and a.shape == t.shape
        tol = _btol(torch.float32) if a.dtype == torch.float64 else _btol(a.dtype)  # computed in fp32
        torch.testing.assert_close(a, b, **tol)


# ------------------------------------------------------------------------ backward


@pytest.mark.parametrize("shape,layout,dtype,gate,act", PATH_CASES)
def test_backward_matches_reference(shape, layout, dtype, gate, act):
    n, c, h, w, cr = shape
    x = make_x((n, c, h, w), dtype, layout, seed=n + c + h)
    dy = make_x((n, c, h, w), dtype, "nchw", seed=n + c + h + 1)
    wts = se_weights(c, cr, _acc(dtype), seed=c + 1, gate=gate, device=CUDA)
    got = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, gate, ALL_GRADS, act)
    want = se_grads_by_autograd(dy, x, *wts, gate, act)
    assert got[0].stride() == _expected_strides(x) and got[0].dtype == dtype
    for name, a, b in zip(("dx", "dw1", "db1", "dw2", "db2"), got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        # the weight gradients are fp32 sums for half inputs, as in the reference
        tol = _btol(a.dtype if name != "dx" else dtype)
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name}: {m}")


def test_backward_grad_in_other_layout_and_dtype():
    # grad_y may come in any layout (and is cast to x's dtype)
    x = make_x((2, 37, 31, 17), torch.float32, "channels_last", seed=9)
    dy = make_x((2, 37, 31, 17), torch.float64, "strided", seed=10)
    wts = se_weights(37, 9, seed=9, device=CUDA)
    got = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, "sigmoid", ALL_GRADS)
    want = se_grads_by_autograd(dy.float(), x, *wts, "sigmoid")
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **_btol(torch.float32))


@pytest.mark.parametrize("gate,act", GATE_ACTS)
def test_backward_large_channels_use_global_scratch(gate, act):
    # SiLU keeps h in the dh row here (global memory, not shared)
    x = make_x((2, 6500, 2, 2), torch.float64, seed=11)
    dy = make_x((2, 6500, 2, 2), torch.float64, seed=12)
    wts = se_weights(6500, 8, torch.float64, seed=11, gate=gate, device=CUDA)
    got = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, gate, ALL_GRADS, act)
    want = se_grads_by_autograd(dy, x, *wts, gate, act)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **_btol(torch.float64))


@pytest.mark.parametrize("mask,act", [([False, True, True, True, True], "relu"),
                                      ([True, False, False, False, False], "relu"),
                                      ([False, False, False, True, False], "relu"), ([False] * 5, "relu"),
                                      ([True, True, False, False, True], "silu")])
@pytest.mark.parametrize("shape", [(2, 37, 5, 5, 9), (2, 37, 31, 17, 9)], ids=lambda s: "x".join(map(str, s)))
def test_backward_output_mask(mask, act, shape):
    """Masked outputs are not computed (None; no dx pass without mask[0]); the others equal the
    full computation, bit for bit."""
    n, c, h, w, cr = shape
    x, dy = make_x((n, c, h, w), seed=60), make_x((n, c, h, w), seed=61)
    wts = se_weights(c, cr, seed=60, device=CUDA)
    full = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, "sigmoid", ALL_GRADS, act)
    got = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, "sigmoid", mask, act)
    for wanted, g, f in zip(mask, got, full):
        assert torch.equal(g, f) if wanted else g is None
    torch.library.opcheck(torch.ops.zoo.squeeze_excite_backward.default, (dy, x, *wts, "sigmoid", mask, act))


def test_autograd_asks_only_for_the_needed_gradients():
    x, dy = make_x((3, 37, 11, 13), seed=62), make_x((3, 37, 11, 13), seed=63)
    wts = se_weights(37, 9, seed=62, device=CUDA)
    full = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, "sigmoid", ALL_GRADS)
    xf = x.clone().requires_grad_()
    frozen = [t.clone() for t in wts]
    ops.squeeze_excite(xf, *frozen, gate="sigmoid").backward(dy)
    assert torch.equal(xf.grad, full[0]) and all(t.grad is None for t in frozen)
    trainable = [t.clone().requires_grad_() for t in wts]
    ops.squeeze_excite(x.clone(), *trainable, gate="sigmoid").backward(dy)
    for t, f in zip(trainable, full[1:]):
        assert torch.equal(t.grad, f)


def test_hard_sigmoid_derivative_at_the_kinks():
    # u exactly -3 and 3 (and just inside): derivative 0 at the kinks, 1/6 inside (torch's convention)
    c, cr = 4, 1
    w1 = torch.zeros(cr, c, device=CUDA, dtype=torch.float64)
    b1 = torch.ones(cr, device=CUDA, dtype=torch.float64)
    w2 = torch.zeros(c, cr, device=CUDA, dtype=torch.float64)
    b2 = torch.tensor([-3.0, 3.0, -2.999, 2.999], device=CUDA, dtype=torch.float64)
    x = make_x((2, c, 3, 3), torch.float64, seed=13)
    dy = torch.ones_like(x)
    got = torch.ops.zoo.squeeze_excite_backward(dy, x, w1, b1, w2, b2, "hard_sigmoid", ALL_GRADS)
    want = se_grads_by_autograd(dy, x, w1, b1, w2, b2, "hard_sigmoid")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    db2 = got[4].cpu()
    assert db2[0] == 0 and db2[1] == 0 and db2[2] != 0 and db2[3] != 0


@pytest.mark.parametrize("gate,act", GATE_ACTS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_gradcheck_float64(gate, act, layout):
    x = make_x((2, 5, 3, 3), torch.float64, layout, seed=14).requires_grad_()
    wts = [t.requires_grad_() for t in se_weights(5, 2, torch.float64, seed=14, gate=gate, device=CUDA)]
    assert torch.autograd.gradcheck(lambda *a: ops.squeeze_excite(*a, gate=gate, act=act), (x, *wts))


@pytest.mark.parametrize("gate,act", GATE_ACTS)
def test_gradcheck_float64_multi_kernel_path(gate, act):
    # above the single-kernel threshold; fast mode keeps the numerical Jacobian cheap
    x = make_x((2, 20, 30, 30), torch.float64, "channels_last", seed=15).requires_grad_()
    wts = [t.requires_grad_() for t in se_weights(20, 5, torch.float64, seed=15, gate=gate, device=CUDA)]
    assert torch.autograd.gradcheck(lambda *a: ops.squeeze_excite(*a, gate=gate, act=act), (x, *wts),
                                    fast_mode=True)


@pytest.mark.parametrize("act", ("relu", "silu"))
def test_autograd_through_the_api_matches_reference_autograd(act):
    x = make_x((3, 37, 11, 13), torch.float32, "channels_last", seed=16)
    wts = se_weights(37, 9, seed=16, device=CUDA)
    leaves = [t.clone().requires_grad_() for t in (x, *wts)]
    ref_leaves = [t.clone().requires_grad_() for t in (x, *wts)]
    dy = make_x((3, 37, 11, 13), torch.float32, seed=17)
    ops.squeeze_excite(*leaves, gate="sigmoid", act=act).backward(dy)
    reference.squeeze_excite(*ref_leaves, gate="sigmoid", act=act).backward(dy)
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, **_btol(torch.float32))


# ------------------------------------------------------------------------ CUDA == CPU kernel


@pytest.mark.parametrize("shape", [(2, 37, 5, 5, 9), (2, 37, 31, 17, 9), (1, 8, 64, 64, 2)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("gate,act", GATE_ACTS)
def test_cuda_equals_cpu_kernel(shape, layout, dtype, gate, act):
    n, c, h, w, cr = shape
    x = make_x((n, c, h, w), dtype, layout, seed=18)
    dy = make_x((n, c, h, w), dtype, layout, seed=19)
    wts = se_weights(c, cr, _acc(dtype), seed=18, gate=gate, device=CUDA)
    xc, dyc, wc = x.cpu(), dy.cpu(), [t.cpu() for t in wts]
    y = torch.ops.zoo.squeeze_excite(x, *wts, gate, act)
    yc = torch.ops.zoo.squeeze_excite(xc, *wc, gate, act)
    assert y.stride() == yc.stride()
    torch.testing.assert_close(y.cpu(), yc, **_tol(dtype))
    got = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, gate, ALL_GRADS, act)
    want = torch.ops.zoo.squeeze_excite_backward(dyc, xc, *wc, gate, ALL_GRADS, act)
    for a, b in zip(got, want):
        assert a.stride() == b.stride() and a.dtype == b.dtype
        torch.testing.assert_close(a.cpu(), b, **_btol(a.dtype))


# ------------------------------------------------------------------------ empty inputs


@pytest.mark.parametrize("shape", [(0, 8, 4, 4), (2, 8, 0, 4), (2, 8, 4, 0)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_empty_inputs(shape, layout):
    x = torch.zeros(shape, device=CUDA)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    wts = se_weights(8, 2, device=CUDA)
    y = torch.ops.zoo.squeeze_excite(x, *wts, "sigmoid")
    assert y.shape == x.shape and y.device == x.device and y.stride() == _expected_strides(x)
    dx, *dws = torch.ops.zoo.squeeze_excite_backward(torch.zeros_like(x), x, *wts, "hard_sigmoid", ALL_GRADS)
    assert dx.shape == x.shape and dx.stride() == _expected_strides(x)
    for d, t in zip(dws, wts):
        assert d.shape == t.shape and d.dtype == t.dtype and d.device == t.device
        assert torch.count_nonzero(d) == 0


# ------------------------------------------------------------------------ opcheck / streams / devices


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("shape", [(2, 37, 5, 5, 9), (2, 37, 31, 17, 9)], ids=lambda s: "x".join(map(str, s)))
def test_opcheck(layout, shape):
    n, c, h, w, cr = shape
    x = make_x((n, c, h, w), torch.float32, layout, seed=20)
    wts = se_weights(c, cr, seed=20, device=CUDA)
    dy = make_x((n, c, h, w), torch.float32, layout, seed=21)
    for gate, act in GATE_ACTS:
        leaves = [t.clone().requires_grad_() for t in (x, *wts)]
        torch.library.opcheck(torch.ops.zoo.squeeze_excite.default, (*leaves, gate, act))
        torch.library.opcheck(torch.ops.zoo.squeeze_excite_backward.default, (dy, x, *wts, gate, ALL_GRADS, act))


@pytest.mark.parametrize("gate,act,msg", [
    ("sigmoid", "gelu", "act: expected one of ('relu', 'silu'), got 'gelu'"),
    ("tanh", "silu", "gate: expected one of ('sigmoid', 'hard_sigmoid'), got 'tanh'"),
])
def test_raw_cuda_ops_reject_a_bad_gate_or_act(gate, act, msg):
    x = make_x((2, 16, 4, 4), seed=70)
    wts = se_weights(16, 4, device=CUDA)
    with pytest.raises(ValueError) as api:
        ops.squeeze_excite(x, *wts, gate=gate, act=act)
    assert str(api.value) == msg
    with pytest.raises(ValueError) as raw:
        torch.ops.zoo.squeeze_excite(x, *wts, gate, act)
    assert str(raw.value) == msg
    with pytest.raises(ValueError) as raw_backward:
        torch.ops.zoo.squeeze_excite_backward(torch.ones_like(x), x, *wts, gate, ALL_GRADS, act)
    assert str(raw_backward.value) == msg


def test_non_default_stream():
    shapes = [(4, 37, 5, 5, 9), (2, 37, 31, 17, 9), (1, 8, 64, 64, 2)]
    cases = []
    for i, (n, c, h, w, cr) in enumerate(shapes):
        for layout in ("nchw", "channels_last"):
            x = make_x((n, c, h, w), torch.float32, layout, seed=30 + i)
            dy = make_x((n, c, h, w), torch.float32, layout, seed=40 + i)
            cases.append((x, dy, se_weights(c, cr, seed=30 + i, device=CUDA)))

    def run(x, dy, wts):
        return (torch.ops.zoo.squeeze_excite(x, *wts, "sigmoid"),
                *torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, "sigmoid", ALL_GRADS))

    want = [run(*case) for case in cases]
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        # The inputs are produced on `stream` behind a long sleep: a kernel launched on
        # another stream would read them before they exist.
        torch.cuda._sleep(50_000_000)
        got = [run(x * 1.0, dy * 1.0, [t * 1.0 for t in wts]) for x, dy, wts in cases]
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    for g, w in zip(got, want):
        assert torch.equal(g[0], w[0]) and torch.equal(g[1], w[1])  # y, dx: deterministic kernels
        for a, b in zip(g[2:], w[2:]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    dev = torch.device("cuda", 1)
    x = make_x((2, 37, 31, 17), torch.float32, "channels_last", seed=50, device=dev)
    dy = make_x((2, 37, 31, 17), torch.float32, seed=51, device=dev)
    wts = se_weights(37, 9, seed=50, device=dev)
    with torch.cuda.device(0):
        y = torch.ops.zoo.squeeze_excite(x, *wts, "sigmoid")
        got = torch.ops.zoo.squeeze_excite_backward(dy, x, *wts, "sigmoid", ALL_GRADS)
    assert y.device == dev and all(t.device == dev for t in got)
    torch.testing.assert_close(y, reference.squeeze_excite(x, *wts, "sigmoid"), **_tol(torch.float32))
    for a, b in zip(got, se_grads_by_autograd(dy, x, *wts, "sigmoid")):
        torch.testing.assert_close(a, b, **_btol(torch.float32))
