"""zoo.ops.adder2d / zoo.nn.Adder2d (AdderNet, Chen et al., CVPR 2020) on the CPU, both backends:
the forward against a direct loop, both gradients against the paper's formulas computed
independently (explicit patches, fp64), the extension's kernels against the chunked pure-torch
fallback, opcheck, the peak memory of one forward+backward, and bad input."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import zoo.ops as ops
from zoo.nn import Adder2d
from zoo.ops import _ext, reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_ext = pytest.mark.skipif(not _ext.available(), reason="zoo._C is not built")

# (N, C_in, H, W, C_out, k, stride, padding)
SHAPES = [
    (2, 3, 6, 7, 4, 3, 1, 0),
    (2, 3, 6, 7, 4, 3, 1, 1),
    (2, 3, 7, 6, 5, 3, 2, 0),
    (1, 2, 7, 7, 3, 3, 2, 1),
    (2, 4, 5, 6, 3, 1, 1, 0),
    (2, 4, 5, 6, 3, 1, 2, 0),
]


@pytest.fixture(params=["ext", "torch"])
def backend(request, monkeypatch):
    if request.param == "ext":
        if not _ext.available():
            pytest.skip("zoo._C is not built")
        monkeypatch.delenv("ZOO_OPS", raising=False)
    else:
        monkeypatch.setenv("ZOO_OPS", "torch")
    return request.param


def _inputs(shape, dtype=torch.float64, seed=0):
    n, ci, h, w, co, k, _, _ = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ci, h, w, generator=g, dtype=torch.float64)
    wt = 0.7 * torch.randn(co, ci, k, k, generator=g, dtype=torch.float64)  # |W - X| both below and above 1
    return x.to(dtype), wt.to(dtype)


def _padded(x, p):
    return torch.nn.functional.pad(x, (p, p, p, p))


def loop_forward(x, w, s, p):
    """y[n, co, i, j] = -sum |patch - W[co]|, one output value at a time."""
    xp = _padded(x, p)
    n, co, k = x.shape[0], w.shape[0], w.shape[2]
    ho, wo = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    y = torch.zeros(n, co, ho, wo, dtype=x.dtype)
    for b in range(n):
        for c in range(co):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b, :, i * s:i * s + k, j * s:j * s + k]
                    y[b, c, i, j] = -(patch - w[c]).abs().sum()
    return y


def paper_grads(g, x, w, s, p):
    """The paper's gradients by their definition, on explicitly extracted patches:
    dW[co] = sum_{n,i,j} (patch - W[co]) g, and for each patch entry sum_co HT(W[co] - patch) g,
    added back onto the (padded) input position it was read from."""
    xp = _padded(x, p)
    n, co, k = x.shape[0], w.shape[0], w.shape[2]
    ho, wo = g.shape[2], g.shape[3]
    dw = torch.zeros_like(w)
    dxp = torch.zeros_like(xp)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                patch = xp[b, :, i * s:i * s + k, j * s:j * s + k]  # [C_in, k, k]
                gv = g[b, :, i, j].view(co, 1, 1, 1)
                dw += (patch[None] - w) * gv
                dxp[b, :, i * s:i * s + k, j * s:j * s + k] += ((w - patch[None]).clamp(-1, 1) * gv).sum(0)
    dx = dxp[:, :, p:p + x.shape[2], p:p + x.shape[3]]
    return dx, dw


def rescaled(dw, eta):
    return dw * eta * dw.numel() ** 0.5 / dw.norm()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}c{}h{}w{}o{}k{}s{}p{}".format(*s))
def test_forward_equals_direct_loop(backend, shape):
    x, w = _inputs(shape)
    s, p = shape[6], shape[7]
    y = ops.adder2d(x, w, s, p)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, loop_forward(x, w, s, p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eta", [0.2, None, 0])
@pytest.mark.parametrize("shape", SHAPES[1:4] + SHAPES[5:], ids=lambda s: "n{}c{}h{}w{}o{}k{}s{}p{}".format(*s))
def test_gradients_are_the_papers(backend, shape, eta):
    x, w = _inputs(shape, seed=1)
    s, p = shape[6], shape[7]
    x.requires_grad_(True)
    w.requires_grad_(True)
    y = ops.adder2d(x, w, s, p, eta=eta)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y.backward(g)
    dx, dw = paper_grads(g, x.detach(), w.detach(), s, p)
    torch.testing.assert_close(x.grad, dx, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(w.grad, rescaled(dw, eta) if eta else dw, rtol=1e-10, atol=1e-10)
    if eta:
        assert abs(w.grad.norm().item() - eta * w.numel() ** 0.5) < 1e-9


def test_module_rescales_inside_backward(backend):
    m = Adder2d(3, 4, 3, padding=1, eta=0.5).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    g = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    m(x).backward(g)
    _, dw = paper_grads(g, x, m.weight.detach(), 1, 1)
    torch.testing.assert_close(m.weight.grad, rescaled(dw, 0.5), rtol=1e-10, atol=1e-10)
    # the optimizer sees the rescaled gradient: one SGD step moves W by lr * rescaled dW
    w0 = m.weight.detach().clone()
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    torch.testing.assert_close(m.weight.detach(), w0 - 0.1 * rescaled(dw, 0.5), rtol=1e-10, atol=1e-10)


def test_frozen_weight_and_input(backend):
    x, w = _inputs(SHAPES[1])
    wg = w.clone().requires_grad_(True)
    ops.adder2d(x, wg, 1, 1).sum().backward()  # x needs no gradient
    xg = x.clone().requires_grad_(True)
    ops.adder2d(xg, w, 1, 1).sum().backward()  # the weight needs none
    dx, dw = paper_grads(torch.ones(2, 4, 6, 7, dtype=torch.float64), x, w, 1, 1)
    torch.testing.assert_close(wg.grad, rescaled(dw, 0.2))
    torch.testing.assert_close(xg.grad, dx)


def test_half_precision_is_computed_in_fp32(backend):
    x, w = _inputs(SHAPES[1], dtype=torch.float32)
    y = ops.adder2d(x.to(torch.bfloat16), w.to(torch.bfloat16), 1, 1)
    assert y.dtype == torch.bfloat16
    want = ops.adder2d(x.to(torch.bfloat16).float(), w.to(torch.bfloat16).float(), 1, 1)
    torch.testing.assert_close(y.float(), want, rtol=1e-2, atol=1e-2)


# ------------------------------------------------------------------------ kernel vs fallback


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 20, 11, 13, 19, 3, 1, 1), (2, 7, 12, 9, 33, 3, 2, 0), (1, 40, 9, 10, 16, 1, 1, 0)])
def test_kernel_matches_fallback(shape, dtype):
    """Sizes off the kernels' tiles: C_out not a multiple of 16, K not a multiple of 16, the
    positions not a multiple of 64, and a 1x1 kernel."""
    x, w = _inputs(shape, dtype=dtype, seed=3)
    s, p = (shape[6],) * 2, (shape[7],) * 2
    y = torch.ops.zoo.adder2d(x, w, list(s), list(p), 0.2)
    want = reference.adder2d_forward(x, w, s, p)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(y, want, **tol)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
    dx, dw = torch.ops.zoo.adder2d_backward(g, x, w, list(s), list(p), [True, True])
    dx_r, dw_r = reference.adder2d_backward(g, x, w, s, p)
    torch.testing.assert_close(dx, dx_r, **tol)
    torch.testing.assert_close(dw, dw_r, **tol)
    only_dx = torch.ops.zoo.adder2d_backward(g, x, w, list(s), list(p), [True, False])
    assert only_dx[1] is None and torch.equal(only_dx[0], dx)


@needs_ext
def test_opcheck():
    x, w = _inputs(SHAPES[2], dtype=torch.float64)
    torch.library.opcheck(torch.ops.zoo.adder2d, (x.requires_grad_(), w.requires_grad_(), [2, 2], [0, 0], 0.2))
    g = torch.randn(2, 5, 3, 2, dtype=torch.float64)
    torch.library.opcheck(torch.ops.zoo.adder2d_backward, (g, x.detach(), w.detach(), [2, 2], [0, 0], [True, True]))


# ------------------------------------------------------------------------ memory

MEMORY_BUDGET = 2**30  # 1 GiB: the full [N*L, K, C_out] difference tensor alone is 4.8 GB here

_MEMORY_SCRIPT = textwrap.dedent("""
    import torch, zoo.ops as ops

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 64, 32, 32, generator=g).requires_grad_()
    w = (0.1 * torch.randn(64, 64, 3, 3, generator=g)).requires_grad_()
    dy = torch.randn(32, 64, 32, 32, generator=g)
    ops.adder2d(x[:1, :, :4, :4].detach(), w.detach(), 1, 1)  # load the libraries first
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    base = status("VmRSS:")
    ops.adder2d(x, w, 1, 1, eta=0.2).backward(dy)
    print(status("VmHWM:") - base, ops.backend("cpu"))
""")


@pytest.mark.parametrize("which", ["ext", "torch"])
def test_peak_memory_of_forward_backward_is_bounded(which):
    """One forward+backward at x (32, 64, 32, 32), 3x3, 64 -> 64: the growth of the peak resident
    set (VmHWM, reset through /proc/self/clear_refs) in a fresh process stays under 1 GiB."""
    if which == "ext" and not _ext.available():
        pytest.skip("zoo._C is not built")
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs")
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="2")
    env.pop("ZOO_OPS", None)
    if which == "torch":
        env["ZOO_OPS"] = "torch"
    r = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    grown, used = r.stdout.split()
    assert used == ("ext" if which == "ext" else "torch")
    assert int(grown) < MEMORY_BUDGET, f"peak RSS grew by {int(grown) / 2**20:.0f} MiB"


# ------------------------------------------------------------------------ bad input


def _bad_cases():
    x, w = _inputs(SHAPES[1], dtype=torch.float32)
    return {
        "x 3-D": ((x[0], w, 1, 1, 0.2), "x: expected a 4-D tensor"),
        "x int": ((x.long(), w, 1, 1, 0.2), "x: expected fp32 or fp64, got torch.int64"),
        "weight 3-D": ((x, w[0], 1, 1, 0.2), "weight: expected a 4-D tensor"),
        "weight dtype": ((x, w.double(), 1, 1, 0.2), "weight: expected x's dtype torch.float32, got torch.float64"),
        "weight channels": ((x, w[:, :2], 1, 1, 0.2), r"weight: expected shape \[C_out, C_in=3, kh, kw\]"),
        "weight on meta": ((x, w.to("meta"), 1, 1, 0.2), "weight: on meta, but x is on cpu"),
        "stride 0": ((x, w, [0, 1], 1, 0.2), "stride: expected a positive int or a pair of them"),
        "padding -1": ((x, w, 1, [1, -1], 0.2), "padding: expected a non-negative int or a pair of them"),
        "too small": ((x[:, :, :1, :1], w, 1, 0, 0.2), "x: padded input 1x1 is smaller than the 3x3 kernel"),
        "eta negative": ((x, w, 1, 1, -1.0), "eta: expected a number >= 0 or None"),
        "eta nan": ((x, w, 1, 1, float("nan")), "eta: expected a number >= 0 or None"),
    }


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_bad_input_raises_value_error(backend, case):
    args, msg = _bad_cases()[case]
    with pytest.raises(ValueError, match=msg):
        ops.adder2d(*args)


def test_eta_must_be_a_number_not_a_flag(backend):
    x, w = _inputs(SHAPES[1], dtype=torch.float32)
    with pytest.raises(ValueError, match="eta: expected a number >= 0 or None, got True"):
        ops.adder2d(x, w, 1, 1, True)


@needs_ext
@pytest.mark.parametrize("case", sorted(set(_bad_cases()) - {"x 3-D", "weight 3-D"}))
def test_raw_op_rejects_what_the_wrapper_rejects(case):
    (x, w, s, p, eta), msg = _bad_cases()[case]
    s = [s, s] if isinstance(s, int) else s
    p = [p, p] if isinstance(p, int) else p
    with pytest.raises(ValueError, match=msg):
        torch.ops.zoo.adder2d(x, w, s, p, eta)


@needs_ext
def test_raw_backward_checks_grad_y():
    x, w = _inputs(SHAPES[1])
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 4, 6, 7\), got \(2, 4, 6, 6\)"):
        torch.ops.zoo.adder2d_backward(torch.zeros(2, 4, 6, 6, dtype=torch.float64), x, w, [1, 1], [1, 1],
                                       [True, True])


def test_module_arguments_and_input_are_checked():
    for kwargs, msg in [
        (dict(in_channels=0), "in_channels"), (dict(out_channels=2.5), "out_channels"),
        (dict(kernel_size=0), "kernel_size"), (dict(stride=(1, 0)), "stride"), (dict(padding=-1), "padding"),
        (dict(eta=-0.1), "eta"), (dict(eta=float("inf")), "eta"),
    ]:
        args = dict(in_channels=3, out_channels=4, kernel_size=3) | kwargs
        with pytest.raises(ValueError, match=msg):
            Adder2d(**args)
    m = Adder2d(3, 4, 3, eta=None)
    assert m.eta == 0.0 and m.weight.shape == (4, 3, 3, 3) and m.bias is None
    with pytest.raises(ValueError, match="x: expected a 4-D"):
        m(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="takes 3 input channel"):
        m(torch.zeros(1, 2, 8, 8))
    b = Adder2d(3, 4, 3, bias=True)
    with torch.no_grad():
        b.bias.fill_(1.5)
        b.weight.copy_(m.weight)
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(b(x), m(x) + 1.5)
