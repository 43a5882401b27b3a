"""The fused Squeeze-and-Excitation op on CPU: forward/backward vs timm's SE module (an
independent eager oracle) and vs zoo.ops.reference, gradcheck, opcheck, layouts, errors;
with ReLU or SiLU (EfficientNet's) between the FCs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from timm.layers import SEModule
from torch import nn

import zoo.ops as ops
from zoo.nn import SEBlock
from zoo.ops import _ext, reference
from tests.ops.conftest import ALL_GRADS, se_grads_by_autograd

EXT = pytest.mark.skipif(not _ext.available(), reason="zoo._C not built")
GATES = ["sigmoid", "hard_sigmoid"]
ACTS = ["relu", "silu"]
# (gate, act): both gates with ReLU, and SiLU with the gate EfficientNet uses; the act code
# does not depend on the gate, so the full product runs only where it is cheap
GATE_ACTS = [("sigmoid", "relu"), ("hard_sigmoid", "relu"), ("sigmoid", "silu")]
ALL_GATE_ACTS = [(g, a) for a in ACTS for g in GATES]

# (N, C, H, W): ordinary, N=1, H=W=1, C not a multiple of the vector width with odd H*W,
# a long plane and a short one, and a small batch with a wide squeeze (Cr=12 > 4N: the
# CPU kernel's untransposed excite FC)
SHAPES = [(4, 64, 14, 14), (1, 32, 9, 9), (3, 48, 1, 1), (2, 37, 5, 7), (2, 24, 17, 19), (5, 8, 3, 2), (2, 96, 6, 6)]


def _weights(c: int, cr: int, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        (torch.randn(cr, c, generator=g) / c**0.5).to(dtype),
        (torch.randn(cr, generator=g) * 0.1).to(dtype),
        (torch.randn(c, cr, generator=g) / cr**0.5).to(dtype),
        (torch.randn(c, generator=g) * 0.1).to(dtype),
    )


def _timm_se(c: int, cr: int, weights, gate: str, act: str = "relu") -> SEModule:
    """timm's SEModule (1x1 conv FCs, eager) holding the same weights, with nn.ReLU or nn.SiLU."""
    act_layer = nn.ReLU if act == "relu" else nn.SiLU
    m = SEModule(c, rd_channels=cr, gate_layer=gate, act_layer=act_layer).double()
    w1, b1, w2, b2 = (w.double() for w in weights)
    with torch.no_grad():
        m.fc1.weight.copy_(w1[:, :, None, None]), m.fc1.bias.copy_(b1)
        m.fc2.weight.copy_(w2[:, :, None, None]), m.fc2.bias.copy_(b2)
    return m


@EXT
@pytest.mark.parametrize("gate,act", GATE_ACTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_forward_and_backward_match_timm(shape, gate, act, layout):
    n, c, h, w = shape
    cr = max(2, c // 8)
    weights = _weights(c, cr)
    x = torch.randn(shape)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # neither NCHW- nor channels_last-contiguous
        x = torch.randn(n, c, h, 2 * w)[..., ::2]
    dy = torch.randn(shape)

    x_ = x.clone().requires_grad_(True)
    w_ = [t.clone().requires_grad_(True) for t in weights]
    y = ops.squeeze_excite(x_, *w_, gate=gate, act=act)
    y.backward(dy)

    oracle = _timm_se(c, cr, weights, gate, act)
    xd = x.double().requires_grad_(True)
    yd = oracle(xd)
    yd.backward(dy.double())

    assert y.dtype == x.dtype and y.shape == x.shape
    if layout == "channels_last" and h * w > 1 and c > 1:
        assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    torch.testing.assert_close(y.double(), yd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x_.grad.double(), xd.grad, rtol=1e-4, atol=1e-5)
    grads = [oracle.fc1.weight.grad[:, :, 0, 0], oracle.fc1.bias.grad, oracle.fc2.weight.grad[:, :, 0, 0],
             oracle.fc2.bias.grad]
    for got, want in zip(w_, grads):
        torch.testing.assert_close(got.grad.double(), want, rtol=1e-4, atol=1e-5)


# fp64 with the sigmoid gate only: torch's fp64 hardsigmoid backward multiplies by 1/6 rounded
# to fp32, so autograd through the reference is off by 3e-8 relative there (gradcheck covers it)
@EXT
@pytest.mark.parametrize("gate,act,dtype", [(g, a, torch.float32) for g, a in ALL_GATE_ACTS]
                         + [("sigmoid", a, torch.float64) for a in ACTS])
def test_kernels_match_reference_functions(gate, act, dtype):
    x = torch.randn(3, 40, 6, 5, dtype=dtype)
    weights = _weights(40, 5, dtype=dtype)
    dy = torch.randn_like(x)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    btol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.ops.zoo.squeeze_excite(x, *weights, gate, act),
                               reference.squeeze_excite(x, *weights, gate, act), **tol)
    for got, want in zip(torch.ops.zoo.squeeze_excite_backward(dy, x, *weights, gate, ALL_GRADS, act),
                         se_grads_by_autograd(dy, x, *weights, gate, act)):
        torch.testing.assert_close(got, want, **btol)


@EXT
def test_act_defaults_to_relu_in_the_raw_ops():
    """Callers written before act (no act argument) get ReLU, as the schema's default says."""
    x, weights = torch.randn(2, 24, 5, 7), _weights(24, 4)
    dy = torch.randn_like(x)
    assert torch.equal(torch.ops.zoo.squeeze_excite(x, *weights, "sigmoid"),
                       torch.ops.zoo.squeeze_excite(x, *weights, "sigmoid", "relu"))
    for a, b in zip(torch.ops.zoo.squeeze_excite_backward(dy, x, *weights, "sigmoid", ALL_GRADS),
                    torch.ops.zoo.squeeze_excite_backward(dy, x, *weights, "sigmoid", ALL_GRADS, act="relu")):
        assert torch.equal(a, b)
    # and SiLU differs from it (here h < 0 at some channels: the two acts disagree there)
    assert not torch.allclose(torch.ops.zoo.squeeze_excite(x, *weights, "sigmoid", "silu"),
                              torch.ops.zoo.squeeze_excite(x, *weights, "sigmoid"))


@EXT
def test_silu_runs_the_kernel_not_the_fallback(monkeypatch):
    def fallback(*args, **kwargs):
        raise AssertionError("the pure-torch fallback ran")

    monkeypatch.setattr(reference, "squeeze_excite", fallback)
    x, weights = torch.randn(2, 16, 4, 4, requires_grad=True), _weights(16, 4)
    y = ops.squeeze_excite(x, *weights, act="silu")
    y.sum().backward()
    oracle = _timm_se(16, 4, weights, "sigmoid", "silu")
    torch.testing.assert_close(y.double(), oracle(x.detach().double()), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ only the gradients autograd needs


def _leaves(x, weights, x_grad: bool, w_grad: bool):
    return x.clone().requires_grad_(x_grad), [w.clone().requires_grad_(w_grad) for w in weights]


@EXT
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_frozen_weights_give_x_its_full_gradient_only(gate, layout):
    x = torch.randn(3, 40, 6, 5)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weights, dy = _weights(40, 5), torch.randn(3, 40, 6, 5)
    want = se_grads_by_autograd(dy, x, *weights, gate)
    full = torch.ops.zoo.squeeze_excite_backward(dy, x, *weights, gate, ALL_GRADS)
    xf, wf = _leaves(x, weights, x_grad=True, w_grad=False)
    ops.squeeze_excite(xf, *wf, gate=gate).backward(dy)
    assert all(w.grad is None for w in wf)
    assert torch.equal(xf.grad, full[0])  # the same kernel pass: bit for bit
    torch.testing.assert_close(xf.grad, want[0], rtol=1e-4, atol=1e-5)


@EXT
@pytest.mark.parametrize("gate", GATES)
def test_frozen_input_gives_the_weights_their_full_gradients(gate):
    x, weights, dy = torch.randn(3, 40, 6, 5), _weights(40, 5), torch.randn(3, 40, 6, 5)
    want = se_grads_by_autograd(dy, x, *weights, gate)
    full = torch.ops.zoo.squeeze_excite_backward(dy, x, *weights, gate, ALL_GRADS)
    xf, wf = _leaves(x, weights, x_grad=False, w_grad=True)
    ops.squeeze_excite(xf, *wf, gate=gate).backward(dy)
    assert xf.grad is None
    for w, f, oracle in zip(wf, full[1:], want[1:]):
        assert torch.equal(w.grad, f)
        torch.testing.assert_close(w.grad, oracle, rtol=1e-4, atol=1e-5)
    # only one weight trainable (e.g. a fine-tuned bias)
    xf, wf = _leaves(x, weights, x_grad=False, w_grad=False)
    wf[3].requires_grad_(True)
    ops.squeeze_excite(xf, *wf, gate=gate).backward(dy)
    assert [w.grad is None for w in wf] == [True, True, True, False]
    assert torch.equal(wf[3].grad, full[4])


@EXT
@pytest.mark.parametrize("mask,act", [
    ([False, True, True, True, True], "relu"), ([True, False, False, False, False], "relu"),
    ([False, False, True, False, True], "relu"), ([False] * 5, "relu"),
    ([True, True, False, True, False], "silu"), ([False, True, True, False, False], "silu"),
])
def test_backward_output_mask(mask, act):
    """Masked outputs are not computed: they come back as None (undefined), and the computed ones
    equal the full computation."""
    x, weights, dy = torch.randn(2, 24, 5, 7), _weights(24, 4), torch.randn(2, 24, 5, 7)
    full = torch.ops.zoo.squeeze_excite_backward(dy, x, *weights, "sigmoid", ALL_GRADS, act)
    got = torch.ops.zoo.squeeze_excite_backward(dy, x, *weights, "sigmoid", mask, act)
    for wanted, g, f in zip(mask, got, full):
        if wanted:
            assert torch.equal(g, f)
        else:
            assert g is None
    torch.library.opcheck(torch.ops.zoo.squeeze_excite_backward.default, (dy, x, *weights, "sigmoid", mask, act))


_STREAM_CHECK = """
import torch, zoo.ops as ops
from zoo.ops import reference
from tests.ops.conftest import ALL_GRADS, se_grads_by_autograd
torch.manual_seed(0)
for n, c, h, w, cr in [(3, 37, 5, 7, 4), (1, 64, 9, 9, 8), (4, 32, 17, 19, 16)]:
    x, dy = torch.randn(n, c, h, w), torch.randn(n, c, h, w)
    ws = [torch.randn(cr, c) / c**0.5, torch.randn(cr), torch.randn(c, cr) / cr**0.5, torch.randn(c)]
    for gate, act in (("sigmoid", "relu"), ("hard_sigmoid", "relu"), ("sigmoid", "silu")):
        torch.testing.assert_close(torch.ops.zoo.squeeze_excite(x, *ws, gate, act),
                                   reference.squeeze_excite(x, *ws, gate, act), rtol=1e-5, atol=1e-6)
        for got, want in zip(torch.ops.zoo.squeeze_excite_backward(dy, x, *ws, gate, ALL_GRADS, act),
                             se_grads_by_autograd(dy, x, *ws, gate, act)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
print("ok")
"""


@EXT
@pytest.mark.parametrize("env", [{"ZOO_SE_STREAM": "1"}, {"ZOO_NO_AVX512": "1"}], ids=["stream", "no_avx512"])
def test_cpu_kernel_paths_match_reference(env):
    """Kernel paths this machine would not otherwise take (each switch is read once per
    process, hence the subprocess): the scale pass's non-temporal stores (taken for tensors
    larger than the last-level cache), and the portable loops used on CPUs without AVX-512."""
    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", _STREAM_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@EXT
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gate,act", GATE_ACTS)
def test_half_precision_accumulates_in_fp32(dtype, gate, act):
    x = torch.randn(2, 32, 8, 8).to(dtype)
    weights = _weights(32, 4, dtype=dtype)
    want = reference.squeeze_excite(x, *weights, gate, act)
    got = ops.squeeze_excite(x, *weights, gate=gate, act=act)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2)
    dy = torch.randn_like(x)
    for g, w in zip(torch.ops.zoo.squeeze_excite_backward(dy, x, *weights, gate, ALL_GRADS, act),
                    se_grads_by_autograd(dy, x, *weights, gate, act)):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g.float(), w.float(), rtol=1e-2, atol=2e-2)
    # fp32 weights with half activations (as under autocast) work and give fp32 weight grads
    w32 = _weights(32, 4)
    torch.testing.assert_close(ops.squeeze_excite(x, *w32, gate=gate, act=act).float(),
                               reference.squeeze_excite(x, *w32, gate, act).float(), rtol=1e-2, atol=1e-2)
    assert torch.ops.zoo.squeeze_excite_backward(dy, x, *w32, gate, ALL_GRADS, act)[1].dtype == torch.float32


@EXT
@pytest.mark.parametrize("gate,act", GATE_ACTS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gradcheck_float64(gate, act, layout):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_(True)
    weights = [w.double().requires_grad_(True) for w in _weights(6, 3, seed=1)]
    if gate == "hard_sigmoid":  # keep u = w2 z + b2 away from the kinks at +-3
        with torch.no_grad():
            weights[2].mul_(0.5)
    assert torch.autograd.gradcheck(lambda *a: ops.squeeze_excite(*a, gate=gate, act=act), (x, *weights))


@EXT
@pytest.mark.parametrize("gate,act", GATE_ACTS)
def test_opcheck(gate, act):
    x = torch.randn(2, 16, 5, 5)
    weights = _weights(16, 4)
    torch.library.opcheck(torch.ops.zoo.squeeze_excite.default, (x, *weights, gate, act))
    torch.library.opcheck(torch.ops.zoo.squeeze_excite.default,
                          (x.contiguous(memory_format=torch.channels_last), *weights, gate, act))
    torch.library.opcheck(torch.ops.zoo.squeeze_excite_backward.default,
                          (torch.randn_like(x), x, *weights, gate, ALL_GRADS, act))


@EXT
@pytest.mark.parametrize("act", ACTS)
def test_torch_compile(act):
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    weights = [w.requires_grad_(True) for w in _weights(16, 4)]

    def f(x, *w):
        return ops.squeeze_excite(x * 2.0, *w, act=act).sum()

    torch._dynamo.reset()
    got = torch.compile(f, backend="aot_eager")(x, *weights)
    torch.testing.assert_close(got, f(x, *weights))
    got.backward()
    assert x.grad is not None and weights[0].grad is not None


def test_fallback_is_used_under_zoo_ops_torch(monkeypatch):
    monkeypatch.setenv("ZOO_OPS", "torch")
    x = torch.randn(2, 16, 4, 4)
    weights = _weights(16, 4)
    oracle = _timm_se(16, 4, weights, "sigmoid")
    torch.testing.assert_close(ops.squeeze_excite(x, *weights).double(), oracle(x.double()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate,act", GATE_ACTS)
def test_seblock_loads_timm_weights_and_matches(gate, act):
    timm_se = SEModule(64, rd_channels=8, gate_layer=gate, act_layer=nn.ReLU if act == "relu" else nn.SiLU)
    block = SEBlock(64, rd_channels=8, gate=gate, act=act)
    block.load_state_dict(timm_se.state_dict())
    x = torch.randn(2, 64, 7, 7)
    torch.testing.assert_close(block(x), timm_se(x), rtol=1e-5, atol=1e-6)
    assert SEBlock(256).rd_channels == 16  # timm's make_divisible(256 / 16, 8)


def test_input_errors():
    x = torch.randn(2, 16, 4, 4)
    w1, b1, w2, b2 = _weights(16, 4)
    cases = {
        "x: expected a 4-D": (x[0], w1, b1, w2, b2),
        "x: expected a floating-point": (x.long(), w1, b1, w2, b2),
        r"w1: expected shape \[Cr, C=16\]": (x, w1[:, :8], b1, w2, b2),
        "w1: expected a 2-D": (x, w1[None], b1, w2, b2),
        r"b1: expected shape \[Cr=4\]": (x, w1, b1[:3], w2, b2),
        r"w2: expected shape \[C=16, Cr=4\]": (x, w1, b1, w2.t(), b2),
        r"b2: expected shape \[C=16\]": (x, w1, b1, w2, b2[:15]),
        "w2: expected a floating-point": (x, w1, b1, w2.int(), b2),
        "w1: on meta": (x, w1.to("meta"), b1, w2, b2),
        "b2: on meta": (x, w1, b1, w2, b2.to("meta")),
    }
    for msg, args in cases.items():
        with pytest.raises(ValueError, match=msg):
            ops.squeeze_excite(*args)
    with pytest.raises(ValueError, match="gate: expected one of"):
        ops.squeeze_excite(x, w1, b1, w2, b2, gate="relu")
    with pytest.raises(ValueError, match=r"act: expected one of \('relu', 'silu'\), got 'gelu'"):
        ops.squeeze_excite(x, w1, b1, w2, b2, act="gelu")
    with pytest.raises(ValueError, match="gate"):
        SEBlock(16, gate="tanh")
    with pytest.raises(ValueError, match="act: expected one of"):
        SEBlock(16, act="swish")


def _se_bad_inputs():
    """name -> (x, w1, b1, w2, b2, gate, act)"""
    x = torch.randn(2, 16, 4, 4)
    w1, b1, w2, b2 = _weights(16, 4)
    return {
        "x 3-D": (x[0], w1, b1, w2, b2, "sigmoid", "relu"),
        "x int": (x.long(), w1, b1, w2, b2, "sigmoid", "relu"),
        "w1 columns": (x, w1[:, :8], b1, w2, b2, "sigmoid", "relu"),
        "w1 3-D": (x, w1[None], b1, w2, b2, "sigmoid", "relu"),
        "Cr = 0": (x, w1[:0], b1[:0], w2[:, :0], b2, "sigmoid", "relu"),
        "b1 length": (x, w1, b1[:3], w2, b2, "sigmoid", "relu"),
        "b1 2-D": (x, w1, b1[None], w2, b2, "sigmoid", "relu"),
        "w2 transposed": (x, w1, b1, w2.t(), b2, "sigmoid", "relu"),
        "b2 length": (x, w1, b1, w2, b2[:15], "sigmoid", "relu"),
        "w2 int": (x, w1, b1, w2.int(), b2, "sigmoid", "relu"),
        "b1 bool": (x, w1, b1 > 0, w2, b2, "sigmoid", "relu"),
        "w1 on meta": (x, w1.to("meta"), b1, w2, b2, "sigmoid", "relu"),
        "b2 on meta": (x, w1, b1, w2, b2.to("meta"), "sigmoid", "relu"),
        "gate relu": (x, w1, b1, w2, b2, "relu", "relu"),
        "gate Sigmoid": (x, w1, b1, w2, b2, "Sigmoid", "silu"),
        "act gelu": (x, w1, b1, w2, b2, "sigmoid", "gelu"),
        "act SiLU": (x, w1, b1, w2, b2, "hard_sigmoid", "SiLU"),
        "act swish on meta": (x.to("meta"), w1.to("meta"), b1.to("meta"), w2.to("meta"), b2.to("meta"), "sigmoid",
                              "swish"),
        "gate and act": (x, w1, b1, w2, b2, "tanh", "gelu"),  # gate is checked first
    }


@EXT
@pytest.mark.parametrize("case", list(_se_bad_inputs()))
def test_raw_ops_reject_what_the_api_rejects(case, monkeypatch):
    """torch.ops.zoo.squeeze_excite (C++, or the fake kernel for meta tensors), its backward and
    the pure-torch fallback raise the ValueError zoo.ops.squeeze_excite raises, word for word."""
    args = _se_bad_inputs()[case]
    with pytest.raises(ValueError) as api:
        ops.squeeze_excite(*args[:5], gate=args[5], act=args[6])
    with pytest.raises(ValueError) as raw:
        torch.ops.zoo.squeeze_excite(*args)
    assert str(raw.value) == str(api.value)
    x = args[0]
    dy = torch.randn(x.shape) if x.device.type != "meta" else x
    with pytest.raises(ValueError) as raw_backward:
        torch.ops.zoo.squeeze_excite_backward(dy, *args[:6], ALL_GRADS, args[6])
    assert str(raw_backward.value) == str(api.value)
    monkeypatch.setenv("ZOO_OPS", "torch")
    with pytest.raises(ValueError) as fallback:
        ops.squeeze_excite(*args[:5], gate=args[5], act=args[6])
    assert str(fallback.value) == str(api.value)


@EXT
def test_raw_backward_checks_grad_y():
    x, weights = torch.randn(2, 16, 4, 4), _weights(16, 4)
    with pytest.raises(ValueError, match=r"grad_y: expected x's shape \(2, 16, 4, 4\), got \(2, 16, 4\)"):
        torch.ops.zoo.squeeze_excite_backward(x[..., 0], x, *weights, "sigmoid", ALL_GRADS)
    with pytest.raises(ValueError, match="grad_y: expected a floating-point tensor, got torch.int64"):
        torch.ops.zoo.squeeze_excite_backward(x.long(), x, *weights, "sigmoid", ALL_GRADS)
    with pytest.raises(ValueError, match="grad_y: on meta, but x is on cpu"):
        torch.ops.zoo.squeeze_excite_backward(x.to("meta"), x, *weights, "sigmoid", ALL_GRADS)
