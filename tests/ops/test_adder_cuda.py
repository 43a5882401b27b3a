"""zoo::adder2d / zoo::adder2d_backward on CUDA: the CUDA kernels against the pure-torch
reference and the CPU kernel on the same data, autograd through zoo.ops.adder2d (the rescaled
weight gradient), opcheck, and the raw op's ValueErrors. Skipped without a CUDA device; with a
device but no CUDA kernels they skip too, unless ZOO_REQUIRE_CUDA_OPS=1 (device_check.sh)."""
from __future__ import annotations

import pytest
import torch

import zoo.ops as ops
from zoo.ops import reference
from tests.ops.conftest import require_cuda_kernels

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
# (N, C_in, H, W, C_out, k, stride, padding)
SHAPES = [(2, 3, 7, 6, 5, 3, 1, 1), (2, 7, 12, 9, 33, 3, 2, 0), (1, 40, 9, 10, 16, 1, 1, 0), (4, 16, 16, 16, 32, 3, 1, 1)]


@pytest.fixture(autouse=True)
def _needs_cuda_kernels():
    require_cuda_kernels(("adder2d", "adder2d_backward"))


def _inputs(shape, dtype, seed=0):
    n, ci, h, w, co, k, _, _ = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ci, h, w, generator=g, dtype=torch.float64).to(dtype)
    wt = (0.7 * torch.randn(co, ci, k, k, generator=g, dtype=torch.float64)).to(dtype)
    gy_shape = (n, co, (h + 2 * shape[7] - k) // shape[6] + 1, (w + 2 * shape[7] - k) // shape[6] + 1)
    gy = torch.randn(gy_shape, generator=g, dtype=torch.float64).to(dtype)
    return x, wt, gy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_kernels_match_reference_and_cpu(shape, dtype):
    x, w, gy = _inputs(shape, dtype)
    s, p = [shape[6]] * 2, [shape[7]] * 2
    y = torch.ops.zoo.adder2d(x.to(CUDA), w.to(CUDA), s, p, 0.2)
    dx, dw = torch.ops.zoo.adder2d_backward(gy.to(CUDA), x.to(CUDA), w.to(CUDA), s, p, [True, True])
    y_ref = reference.adder2d_forward(x, w, s, p)
    dx_ref, dw_ref = reference.adder2d_backward(gy, x, w, s, p)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-11)
    for got, want in ((y, y_ref), (dx, dx_ref), (dw, dw_ref)):
        torch.testing.assert_close(got.cpu(), want, **tol)
    y_cpu = torch.ops.zoo.adder2d(x, w, s, p, 0.2)
    torch.testing.assert_close(y.cpu(), y_cpu, **tol)
    only_dw = torch.ops.zoo.adder2d_backward(gy.to(CUDA), x.to(CUDA), w.to(CUDA), s, p, [False, True])
    assert only_dw[0] is None


def test_autograd_rescales_the_weight_gradient_on_cuda():
    x, w, gy = _inputs(SHAPES[0], torch.float64)
    xc, wc = x.to(CUDA).requires_grad_(), w.to(CUDA).requires_grad_()
    ops.adder2d(xc, wc, 1, 1, eta=0.2).backward(gy.to(CUDA))
    dx, dw = reference.adder2d_backward(gy, x, w, (1, 1), (1, 1))
    torch.testing.assert_close(xc.grad.cpu(), dx)
    torch.testing.assert_close(wc.grad.cpu(), dw * 0.2 * dw.numel() ** 0.5 / dw.norm())


def test_opcheck_cuda():
    x, w, gy = _inputs(SHAPES[1], torch.float64)
    torch.library.opcheck(torch.ops.zoo.adder2d,
                          (x.to(CUDA).requires_grad_(), w.to(CUDA).requires_grad_(), [2, 2], [0, 0], 0.2))
    torch.library.opcheck(torch.ops.zoo.adder2d_backward,
                          (gy.to(CUDA), x.to(CUDA), w.to(CUDA), [2, 2], [0, 0], [True, True]))


def test_raw_cuda_op_value_errors():
    x, w, _ = _inputs(SHAPES[0], torch.float32)
    x, w = x.to(CUDA), w.to(CUDA)
    with pytest.raises(ValueError, match="weight: on cpu, but x is on cuda"):
        torch.ops.zoo.adder2d(x, w.cpu(), [1, 1], [1, 1], 0.2)
    with pytest.raises(ValueError, match="x: expected fp32 or fp64, got torch.float16"):
        torch.ops.zoo.adder2d(x.half(), w.half(), [1, 1], [1, 1], 0.2)
    with pytest.raises(ValueError, match="stride: expected a positive int"):
        torch.ops.zoo.adder2d(x, w, [0, 1], [1, 1], 0.2)
