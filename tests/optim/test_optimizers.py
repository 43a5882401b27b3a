"""zoo.optim's seven optimizers against torch.optim (the oracle): the same trajectory for every
option, state_dict round trips through a weights-only checkpoint, argument checks, closures."""
from __future__ import annotations

import io
import itertools

import pytest
import torch
from torch import nn

import zoo.optim as zo

STEPS = 100

# (zoo class, torch class, hyper-parameters shared by every case). The eps values are large
# enough that putting eps in the wrong place (inside / outside a square root, before / after a
# bias correction) moves the weights by far more than the tolerance.
BASE = {
    "SGD": (zo.SGD, torch.optim.SGD, {"lr": 0.05}),
    "Adagrad": (zo.Adagrad, torch.optim.Adagrad, {"lr": 0.05, "eps": 1e-3}),
    "RMSprop": (zo.RMSprop, torch.optim.RMSprop, {"lr": 3e-3, "alpha": 0.9, "eps": 1e-3}),
    "Adam": (zo.Adam, torch.optim.Adam, {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-3}),
    "AdamW": (zo.AdamW, torch.optim.AdamW, {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-3}),
    "Adamax": (zo.Adamax, torch.optim.Adamax, {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-3}),
    "Adadelta": (zo.Adadelta, torch.optim.Adadelta, {"lr": 1.0, "rho": 0.8, "eps": 1e-4}),
}


def _grid(**axes) -> list[dict]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def _cases() -> list[tuple[str, dict]]:
    cases = []
    for kw in _grid(momentum=[0.0, 0.9], dampening=[0.0, 0.3], nesterov=[False, True],
                    weight_decay=[0.0, 1e-2], maximize=[False, True]):
        if not kw["nesterov"] or (kw["momentum"] > 0 and kw["dampening"] == 0):
            cases.append(("SGD", kw))
    cases += [("Adagrad", kw) for kw in _grid(lr_decay=[0.0, 0.05], initial_accumulator_value=[0.0, 0.1],
                                               weight_decay=[0.0, 1e-2], maximize=[False, True])]
    cases += [("RMSprop", kw) for kw in _grid(centered=[False, True], momentum=[0.0, 0.9],
                                               weight_decay=[0.0, 1e-2], maximize=[False, True])]
    for name in ("Adam", "AdamW"):
        cases += [(name, kw) for kw in _grid(amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True])]
    for name in ("Adamax", "Adadelta"):
        cases += [(name, kw) for kw in _grid(weight_decay=[0.0, 1e-2], maximize=[False, True])]
    return cases


CASES = _cases()


def _case_id(case) -> str:
    name, kw = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


def make_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def make_data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 5, generator=g, dtype=torch.float64), torch.randn(32, 3, generator=g, dtype=torch.float64)


def groups(net: nn.Sequential, lr: float) -> list[dict]:
    """Two parameter groups, the second at half the learning rate."""
    return [{"params": list(net[0].parameters())}, {"params": list(net[2].parameters()), "lr": lr / 2}]


def loss_fn(net, x, y, maximize: bool) -> torch.Tensor:
    # when maximizing, maximize the negated loss: the same well-behaved descent, which an
    # optimizer that ignored `maximize` would turn into an ascent
    loss = nn.functional.mse_loss(net(x), y)
    return -loss if maximize else loss


def trajectory(net, opt, x, y, maximize: bool, steps: int, start: int = 0) -> torch.Tensor:
    """``[steps, n]``: all the parameters, flattened, after each step."""
    out = []
    for i in range(start, start + steps):
        opt.zero_grad()
        # a different batch each step (a fixed rotation of the data), so the moments vary
        k = (5 * i) % len(x)
        loss_fn(net, x.roll(k, 0)[:16], y.roll(k, 0)[:16], maximize).backward()
        opt.step()
        out.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    return torch.stack(out)


def flat(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_trajectory_matches_torch(case):
    name, kw = case
    zoo_cls, torch_cls, base = BASE[name]
    hp = {**base, **kw}
    x, y = make_data()
    runs = []
    for cls in (zoo_cls, torch_cls):
        net = make_net()
        opt = cls(groups(net, hp["lr"]), **hp)
        runs.append(trajectory(net, opt, x, y, kw.get("maximize", False), STEPS))
    ours, theirs = runs
    assert (ours[-1] != flat(make_net())).all()  # every weight moved
    # every weight after every step (a mismatch is reported at its (step - 1, weight) index)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", list(BASE))
def test_defaults_are_torch_defaults(name):
    zoo_cls, torch_cls, _ = BASE[name]
    p = [nn.Parameter(torch.zeros(2))]
    ours, theirs = zoo_cls(p).defaults, torch_cls(p).defaults
    assert ours == {k: theirs[k] for k in ours}


@pytest.mark.parametrize("name", list(BASE))
def test_complex_parameters_match_torch(name):
    """A complex parameter is updated as its (real, imaginary) pairs, as torch.optim does."""
    zoo_cls, torch_cls, base = BASE[name]
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(4, 3, dtype=torch.complex128, generator=g)
    x = torch.randn(8, 4, dtype=torch.complex128, generator=g)
    results = []
    for cls in (zoo_cls, torch_cls):
        w = nn.Parameter(w0.clone())
        opt = cls([w], **base)
        for _ in range(20):
            opt.zero_grad()
            (x @ w).abs().square().sub(1).square().mean().backward()
            opt.step()
        results.append(w.detach())
    assert not torch.equal(results[0], w0)
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------------- checkpoints

# one demanding option set per optimizer: every state buffer in use
ROUND_TRIP = {
    "SGD": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    "Adagrad": {"lr_decay": 0.05, "initial_accumulator_value": 0.1},
    "RMSprop": {"centered": True, "momentum": 0.9},
    "Adam": {"amsgrad": True, "weight_decay": 1e-2},
    "AdamW": {"amsgrad": True},
    "Adamax": {"weight_decay": 1e-2},
    "Adadelta": {"weight_decay": 1e-2},
}


@pytest.mark.parametrize("name", list(BASE))
def test_state_dict_round_trip_resumes_bitwise(name):
    zoo_cls, _, base = BASE[name]
    hp = {**base, **ROUND_TRIP[name]}
    x, y = make_data()

    net = make_net()
    whole = trajectory(net, zoo_cls(groups(net, hp["lr"]), **hp), x, y, False, 100)

    net = make_net()
    opt = zoo_cls(groups(net, hp["lr"]), **hp)
    first = trajectory(net, opt, x, y, False, 50)
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert ckpt["optimizer"]["state"] and all(  # tensors only (a step count and the buffers)
        isinstance(v, torch.Tensor) for s in ckpt["optimizer"]["state"].values() for v in s.values())

    net2 = make_net(seed=99)  # different initial weights: everything must come from the checkpoint
    net2.load_state_dict(ckpt["model"])
    opt2 = zoo_cls(groups(net2, hp["lr"]), **hp)
    opt2.load_state_dict(ckpt["optimizer"])
    second = trajectory(net2, opt2, x, y, False, 50, start=50)

    assert int(opt2.state[next(net2.parameters())]["step"]) == 100
    assert torch.equal(torch.cat([first, second]), whole)


@pytest.mark.parametrize("name", list(BASE))
def test_zoo_state_dict_continues_in_torch(name):
    """The state uses torch.optim's names, so torch's optimizer resumes from zoo's state (and the
    run matches torch's own uninterrupted one)."""
    zoo_cls, torch_cls, base = BASE[name]
    hp = {**base, **ROUND_TRIP[name]}
    x, y = make_data()
    net = make_net()
    whole = trajectory(net, torch_cls(groups(net, hp["lr"]), **hp), x, y, False, 60)
    net = make_net()
    opt = zoo_cls(groups(net, hp["lr"]), **hp)
    trajectory(net, opt, x, y, False, 30)
    opt2 = torch_cls(groups(net, hp["lr"]), **hp)
    opt2.load_state_dict(opt.state_dict())
    second = trajectory(net, opt2, x, y, False, 30, start=30)
    torch.testing.assert_close(second, whole[30:], rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------------- arguments

BAD = [
    (zo.SGD, {"lr": -1}, "lr"),
    (zo.SGD, {"momentum": -0.1}, "momentum"),
    (zo.SGD, {"weight_decay": -1e-4}, "weight_decay"),
    (zo.SGD, {"nesterov": True}, "nesterov"),
    (zo.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
    (zo.SGD, {"lr": float("nan")}, "lr"),
    (zo.SGD, {"lr": "0.1"}, "lr"),
    (zo.Adagrad, {"lr": -0.1}, "lr"),
    (zo.Adagrad, {"lr_decay": -1}, "lr_decay"),
    (zo.Adagrad, {"weight_decay": -1}, "weight_decay"),
    (zo.Adagrad, {"initial_accumulator_value": -0.5}, "initial_accumulator_value"),
    (zo.Adagrad, {"eps": -1e-10}, "eps"),
    (zo.RMSprop, {"lr": -1}, "lr"),
    (zo.RMSprop, {"alpha": -0.1}, "alpha"),
    (zo.RMSprop, {"alpha": 1.5}, "alpha"),
    (zo.RMSprop, {"eps": -1}, "eps"),
    (zo.RMSprop, {"momentum": -0.9}, "momentum"),
    (zo.RMSprop, {"weight_decay": -1}, "weight_decay"),
    (zo.Adam, {"lr": -1}, "lr"),
    (zo.Adam, {"eps": -1}, "eps"),
    (zo.Adam, {"betas": (1.0, 0.999)}, r"betas\[0\]"),
    (zo.Adam, {"betas": (0.9, -0.1)}, r"betas\[1\]"),
    (zo.Adam, {"betas": (0.9,)}, "betas"),
    (zo.Adam, {"weight_decay": -1}, "weight_decay"),
    (zo.AdamW, {"lr": -1}, "lr"),
    (zo.AdamW, {"betas": (0.9, 1.0)}, r"betas\[1\]"),
    (zo.AdamW, {"weight_decay": -0.01}, "weight_decay"),
    (zo.Adamax, {"lr": -1}, "lr"),
    (zo.Adamax, {"betas": (-0.1, 0.999)}, r"betas\[0\]"),
    (zo.Adamax, {"eps": -1}, "eps"),
    (zo.Adamax, {"weight_decay": -1}, "weight_decay"),
    (zo.Adadelta, {"lr": -1}, "lr"),
    (zo.Adadelta, {"rho": 1.1}, "rho"),
    (zo.Adadelta, {"rho": -0.1}, "rho"),
    (zo.Adadelta, {"eps": -1}, "eps"),
    (zo.Adadelta, {"weight_decay": -1}, "weight_decay"),
]


@pytest.mark.parametrize("cls,kwargs,name", BAD, ids=[f"{c.__name__}-{k}" for c, k, _ in BAD])
def test_bad_arguments_name_the_argument(cls, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}: ") as err:
        cls([nn.Parameter(torch.zeros(2))], **kwargs)
    value = kwargs.get(name)  # a plain argument (not betas[i] or nesterov): the message shows its value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        assert str(err.value).endswith(f"got {value!r}")


def test_bad_argument_message_reads_as_documented():
    with pytest.raises(ValueError) as err:
        zo.Adam([nn.Parameter(torch.zeros(2))], lr=-1)
    assert str(err.value) == "lr: expected a value >= 0, got -1"


def test_bad_per_group_override_is_refused():
    net = make_net()
    with pytest.raises(ValueError, match="^lr: "):
        zo.SGD([{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": -0.1}], lr=0.1)
    opt = zo.Adam(net[0].parameters())
    with pytest.raises(ValueError, match=r"^betas\[1\]: "):
        opt.add_param_group({"params": net[2].parameters(), "betas": (0.9, 1.5)})
    assert len(opt.param_groups) == 1


def test_boundaries_that_torch_accepts_are_accepted():
    p = [nn.Parameter(torch.zeros(2))]
    for cls, kw in [(zo.SGD, {"lr": 0}), (zo.RMSprop, {"alpha": 0, "eps": 0}), (zo.RMSprop, {"alpha": 1}),
                    (zo.Adam, {"betas": (0.0, 0.0)}), (zo.Adadelta, {"rho": 1.0}), (zo.Adagrad, {"eps": 0})]:
        cls(p, **kw)
        getattr(torch.optim, cls.__name__)(p, **kw)


# ----------------------------------------------------------------------------- step details


@pytest.mark.parametrize("name", list(BASE))
def test_closure_is_evaluated_with_grad_and_its_loss_returned(name):
    zoo_cls, torch_cls, base = BASE[name]
    x, y = make_data()
    finals = []
    for cls in (zoo_cls, torch_cls):
        net = make_net()
        opt = cls(net.parameters(), **base)
        calls = []

        def closure():
            opt.zero_grad()
            loss = nn.functional.mse_loss(net(x), y)
            loss.backward()  # needs grad mode: step() must enable it
            calls.append(loss)
            return loss

        for _ in range(3):
            with torch.no_grad():
                returned = opt.step(closure)
            assert returned is calls[-1]
        assert len(calls) == 3
        finals.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*finals):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)
    assert zoo_cls(make_net().parameters(), **base).step() is None


@pytest.mark.parametrize("name", list(BASE))
def test_parameters_without_gradient_are_skipped(name):
    zoo_cls, _, base = BASE[name]
    net = make_net()
    frozen = net[2].weight
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    opt = zoo_cls(net.parameters(), **base)
    x, y = make_data()
    nn.functional.mse_loss(net(x), y).backward()
    opt.step()
    assert frozen.grad is None and torch.equal(frozen, before) and frozen not in opt.state
    assert int(opt.state[net[0].weight]["step"]) == 1


@pytest.mark.parametrize("name", list(BASE))
def test_sparse_gradients_are_refused(name):
    zoo_cls, _, base = BASE[name]
    emb = nn.Embedding(10, 3, sparse=True)
    opt = zoo_cls(emb.parameters(), **base)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


def test_gradient_is_not_modified_in_place():
    """maximize and L2 decay make a new tensor: p.grad stays what backward wrote."""
    for cls, kw in [(zo.SGD, {"momentum": 0.9, "weight_decay": 0.1, "maximize": True}),
                    (zo.Adam, {"weight_decay": 0.1, "maximize": True}), (zo.Adadelta, {"weight_decay": 0.1})]:
        p = nn.Parameter(torch.ones(3))
        p.grad = torch.tensor([1.0, -2.0, 3.0])
        cls([p], **kw).step()
        assert p.grad.tolist() == [1.0, -2.0, 3.0]
