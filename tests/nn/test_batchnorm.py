"""zoo.nn.BatchNorm{1,2,3}d (batch norm in plain tensor ops) and convert_batchnorm, against the
oracle torch.nn.BatchNorm{1,2,3}d: outputs, all gradients and all buffers over mixed train/eval
steps in float64, state dicts both ways, the edge semantics, torchvision's resnet50 converted
there and back, and bad input."""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tests.util import randomize_bn
from zoo.nn import BatchNorm1d, BatchNorm2d, BatchNorm3d, convert_batchnorm

TOL = dict(rtol=1e-10, atol=1e-10)

# (zoo class, torch class, input shape); BatchNorm1d in both of its layouts.
KINDS = {
    "1d-NC": (BatchNorm1d, nn.BatchNorm1d, (6, 4)),
    "1d-NCL": (BatchNorm1d, nn.BatchNorm1d, (3, 4, 5)),
    "2d": (BatchNorm2d, nn.BatchNorm2d, (3, 4, 3, 5)),
    "3d": (BatchNorm3d, nn.BatchNorm3d, (2, 4, 2, 3, 4)),
}
# 20 steps, train (T) and eval (E) mixed, with runs of both.
PATTERN = "TTETEETTTETEETTTEETT"


def _pair(kind, **kw):
    """A zoo and a torch module of ``kind`` in float64, the zoo one loaded from the torch one's
    state dict after giving it non-trivial affine parameters and running statistics."""
    zcls, tcls, shape = KINDS[kind]
    ref = tcls(4, dtype=torch.float64, **kw)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        if ref.weight is not None:
            ref.weight.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.5)
            ref.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64))
        if ref.running_mean is not None:
            ref.running_mean.copy_(torch.randn(4, generator=g, dtype=torch.float64))
            ref.running_var.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.5)
    ours = zcls(4, dtype=torch.float64, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref, shape


def _assert_same_state(ours, ref):
    for name in ("running_mean", "running_var"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert (a is None) == (b is None), name
        if b is not None:
            torch.testing.assert_close(a, b, **TOL)
    if ref.num_batches_tracked is None:
        assert ours.num_batches_tracked is None
    else:
        assert ours.num_batches_tracked.dtype == torch.long
        assert torch.equal(ours.num_batches_tracked, ref.num_batches_tracked)


@pytest.mark.parametrize("track", [True, False], ids=["track", "notrack"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("momentum", [0.1, None], ids=["ema", "cma"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_mixed_train_eval(kind, momentum, affine, track):
    ours, ref, shape = _pair(kind, momentum=momentum, affine=affine, track_running_stats=track)
    g = torch.Generator().manual_seed(0)
    for step, mode in enumerate(PATTERN):
        ours.train(mode == "T")
        ref.train(mode == "T")
        # Batches with a non-zero, channel-dependent mean and scale.
        x = torch.randn(shape, generator=g, dtype=torch.float64) * 2.0 + 0.5 * step
        up = torch.randn(shape, generator=g, dtype=torch.float64)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        for m in (ours, ref):
            m.zero_grad(set_to_none=True)
        ya, yb = ours(xa), ref(xb)
        ya.backward(up)
        yb.backward(up)
        torch.testing.assert_close(ya, yb, **TOL)
        torch.testing.assert_close(xa.grad, xb.grad, **TOL)
        if affine:
            torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **TOL)
            torch.testing.assert_close(ours.bias.grad, ref.bias.grad, **TOL)
        else:
            assert ours.weight is None and ours.bias is None
        _assert_same_state(ours, ref)
    if track:
        assert int(ours.num_batches_tracked) == PATTERN.count("T")


def test_uses_plain_ops_only():
    """No batch-norm kernel runs (forward or backward), and the classes are not torch's."""
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    m = BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    with Record():
        m(x).sum().backward()
        m.eval()
        m(x).sum().backward()
    assert seen and not [op for op in seen if "norm" in op], seen
    for cls in (BatchNorm1d, BatchNorm2d, BatchNorm3d):
        assert not issubclass(cls, nn.modules.batchnorm._NormBase)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("zcls,tcls", [(BatchNorm1d, nn.BatchNorm1d), (BatchNorm2d, nn.BatchNorm2d),
                                       (BatchNorm3d, nn.BatchNorm3d)])
def test_registration_repr_and_state_dict(zcls, tcls, affine, track):
    kw = dict(eps=1e-3, momentum=0.3, affine=affine, track_running_stats=track)
    ours, ref = zcls(5, **kw), tcls(5, **kw)
    assert list(ours._parameters.items()).__repr__() == list(ref._parameters.items()).__repr__()
    assert list(ours._buffers.items()).__repr__() == list(ref._buffers.items()).__repr__()
    assert ours.extra_repr() == ref.extra_repr()
    assert repr(ours) == repr(ref)
    sd = ref.state_dict()
    assert list(ours.state_dict()) == list(sd)
    assert ours.state_dict()._metadata[""]["version"] == sd._metadata[""]["version"]
    # Non-trivial values travel both ways.
    with torch.no_grad():
        for t in ref.state_dict().values():
            t.copy_(torch.arange(t.numel()).view_as(t) + 3)
    ours.load_state_dict(ref.state_dict())
    back = tcls(5, **kw)
    back.load_state_dict(ours.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v) and torch.equal(back.state_dict()[k], v), k


def test_reset_and_factory_kwargs():
    m = BatchNorm2d(3, dtype=torch.float64)
    assert m.weight.dtype == m.running_var.dtype == torch.float64
    assert m.num_batches_tracked.dtype == torch.long
    with torch.no_grad():
        m.weight.fill_(3.0)
        m.bias.fill_(2.0)
    m(torch.randn(4, 3, 2, 2, dtype=torch.float64))
    m.reset_running_stats()
    assert torch.equal(m.running_mean, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(m.running_var, torch.ones(3, dtype=torch.float64))
    assert int(m.num_batches_tracked) == 0 and float(m.weight.detach()[0]) == 3.0
    m.reset_parameters()
    assert torch.equal(m.weight, torch.ones(3, dtype=torch.float64))
    assert torch.equal(m.bias, torch.zeros(3, dtype=torch.float64))
    BatchNorm1d(3, track_running_stats=False, affine=False).reset_parameters()  # no-op, no error
    meta = BatchNorm1d(3, device="meta")
    assert meta.weight.is_meta and meta.num_batches_tracked.is_meta


def test_old_state_dict_without_batch_counter():
    ours = BatchNorm2d(3)
    ours.num_batches_tracked.fill_(7)
    sd = nn.BatchNorm2d(3).state_dict()
    del sd["num_batches_tracked"]
    sd._metadata[""]["version"] = 1
    ours.load_state_dict(sd)  # strict: the missing counter is filled in, as torch does
    assert int(ours.num_batches_tracked) == 7


def test_edge_semantics_match_torch():
    # Tracking switched off after construction: training uses batch statistics and leaves the
    # buffers alone, eval still uses the buffers.
    ours, ref, shape = _pair("2d")
    for m in (ours, ref):
        m.track_running_stats = False
    x = torch.randn(shape, dtype=torch.float64)
    for train in (True, False):
        ours.train(train)
        ref.train(train)
        torch.testing.assert_close(ours(x), ref(x), **TOL)
        _assert_same_state(ours, ref)
    # Eval without running stats: batch statistics, so one value per channel is an error there
    # too; with running stats it is fine.
    ours, ref, _ = _pair("1d-NC", track_running_stats=False)
    ours.eval()
    ref.eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), **TOL)
    for m in (ours, ref):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            m(x[:1])
    ours, ref, _ = _pair("1d-NC")
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x[:1]), ref(x[:1]), **TOL)
    # An empty batch: empty output, counted, statistics unchanged, zero parameter gradients.
    ours, ref, _ = _pair("2d", momentum=None)
    xa = torch.randn(0, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    xb = xa.detach().clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    assert ya.shape == yb.shape == (0, 4, 3, 3)
    ya.sum().backward()
    yb.sum().backward()
    assert torch.equal(ours.weight.grad, ref.weight.grad)
    _assert_same_state(ours, ref)
    # eps: positive with batch statistics, non-negative with running ones.
    for eps, train, ok in ((0.0, True, False), (0.0, False, True), (-1e-3, False, False)):
        ours, ref, shape = _pair("2d", eps=eps)
        x = torch.rand(shape, dtype=torch.float64) + 1.0
        for m in (ours, ref):
            m.train(train)
            if ok:
                m(x)
            else:
                with pytest.raises(ValueError, match="eps"):
                    m(x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input(dtype):
    ours, ref = BatchNorm2d(3), nn.BatchNorm2d(3)
    x = (torch.randn(4, 3, 5, 5) * 3 + 1).to(dtype)
    ya, yb = ours(x), ref(x)
    assert ya.dtype == yb.dtype == dtype
    torch.testing.assert_close(ya.float(), yb.float(), rtol=0, atol=1e-2)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=1e-5, atol=1e-5)
    assert ours.running_var.dtype == torch.float32


# ---------------------------------------------------------------------------- convert_batchnorm

def _bn_types(model):
    return {type(m) for m in model.modules() if "BatchNorm" in type(m).__name__}


def test_convert_resnet50_round_trip():
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.resnet50()).double().eval()
    model.bn1.weight.requires_grad_(False)
    model.layer1[0].bn2.train()  # a mixed-mode model keeps each module's mode
    modes = {n: m.training for n, m in model.named_modules()}
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        model.layer1[0].bn2.eval()
        ref = model(x)
        model.layer1[0].bn2.train()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())

    assert convert_batchnorm(model, to="zoo") is model
    assert _bn_types(model) == {BatchNorm2d}
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert not model.bn1.weight.requires_grad and model.bn1.bias.requires_grad
    assert all(p is params[n] for n, p in model.named_parameters())  # the same tensors, shared
    with torch.no_grad():
        model.layer1[0].bn2.eval()
        torch.testing.assert_close(model(x), ref, **TOL)
        model.layer1[0].bn2.train()

    assert convert_batchnorm(model, to="torch") is model
    assert _bn_types(model) == {nn.BatchNorm2d}
    assert {n: m.training for n, m in model.named_modules()} == modes
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    back = model.state_dict()
    assert list(back) == list(sd)
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in sd.items())


def test_convert_training_forward_updates_like_torch():
    torch.manual_seed(0)
    ref = randomize_bn(torchvision.models.resnet50()).double().train()
    ours = convert_batchnorm(copy.deepcopy(ref), to="zoo")
    assert ours.training and _bn_types(ours) == {BatchNorm2d}
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)
    theirs = ref.state_dict()
    for k, v in ours.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert torch.equal(v, theirs[k]) and int(v) == 1, k
        else:
            torch.testing.assert_close(v, theirs[k], **TOL)


def test_convert_details():
    # The model itself a BN module, in both directions, with bias=False and no running stats.
    tb = nn.BatchNorm1d(3, eps=1e-3, momentum=None, track_running_stats=False, dtype=torch.float64)
    tb.register_parameter("bias", None)  # as bias=False (a keyword of recent torch only)
    zb = convert_batchnorm(tb, to="zoo")
    assert type(zb) is BatchNorm1d and zb.bias is None and zb.running_mean is None
    assert zb.extra_repr() == tb.extra_repr() and zb.weight is tb.weight
    tb2 = convert_batchnorm(zb, to="torch")
    assert type(tb2) is nn.BatchNorm1d and tb2.extra_repr() == tb.extra_repr()
    # Already the target kind, other norms, SyncBatchNorm and subclasses are left alone; a
    # module shared by two parents stays shared.

    class MyBN(nn.BatchNorm2d):
        pass

    shared = nn.BatchNorm2d(4)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), shared, nn.Sequential(shared, nn.GroupNorm(2, 4)),
                        nn.LayerNorm(4), nn.SyncBatchNorm(4), MyBN(4), BatchNorm3d(4),
                        nn.ModuleDict({"a": nn.BatchNorm3d(2, affine=False)}))
    kept = [net[i] for i in (0, 3, 4, 5, 6)]
    convert_batchnorm(net, "zoo")
    assert type(net[1]) is BatchNorm2d and net[2][0] is net[1]
    assert type(net[2][1]) is nn.GroupNorm and type(net[7]["a"]) is BatchNorm3d
    assert [net[i] for i in (0, 3, 4, 5, 6)] == kept
    convert_batchnorm(net, "torch")
    assert type(net[1]) is nn.BatchNorm2d and net[2][0] is net[1] and type(net[6]) is nn.BatchNorm3d
    assert net[1].weight is shared.weight and net[1].running_var is shared.running_var


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("cls,bad_shapes", [
    (BatchNorm1d, [(4,), (2, 3, 4, 4)]),
    (BatchNorm2d, [(2, 3, 4), (2, 3, 4, 4, 4)]),
    (BatchNorm3d, [(2, 3, 4, 4), (2, 3, 4, 4, 4, 4)]),
])
def test_bad_rank(cls, bad_shapes):
    m = cls(3)
    for shape in bad_shapes:
        with pytest.raises(ValueError, match=r"^input: .*expects .*-D .*got a"):
            m(torch.randn(shape))
    assert int(m.num_batches_tracked) == 0


def test_bad_channels_and_values():
    m = BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"input: .*\[N, C, H, W\].*num_features = 3.*got 4 channels"):
        m(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="input: .*floating"):
        m(torch.ones(2, 3, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="input: .*tensor"):
        m([[1.0]])
    for cls, shape in ((BatchNorm1d, (1, 3)), (BatchNorm1d, (1, 3, 1)), (BatchNorm2d, (1, 3, 1, 1)),
                       (BatchNorm3d, (1, 3, 1, 1, 1))):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            cls(3)(torch.randn(shape))
    # Nothing changed by the failed calls (torch would have counted them).
    assert int(m.num_batches_tracked) == 0
    with pytest.raises(ValueError, match="^to: "):
        convert_batchnorm(nn.Sequential(), to="Torch")
