"""Warmup + exponential / cosine decay against torch's own schedulers and the closed forms."""
from __future__ import annotations

import copy

import io
import math
import pickle

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LinearLR, SequentialLR

from zoo.optim import (
    WarmupCosineDecay,
    WarmupCosineLR,
    WarmupExponentialDecay,
    WarmupExponentialLR,
    make_optimizer,
    warmup_exponential,
)
from tests.util import scheduled_lrs


def _opt(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


@pytest.mark.parametrize("warmup,start,gamma", [(5, 0.1, 0.9), (10, 0.01, 0.5), (0, 1.0, 0.95)])
def test_matches_torch_linear_then_exponential(warmup, start, gamma):
    """decay_steps=1 is torch's LinearLR (warmup) followed by ExponentialLR."""
    ours_opt, ref_opt = _opt(), _opt()
    ours = WarmupExponentialLR(ours_opt, warmup_steps=warmup, gamma=gamma, decay_steps=1, start_factor=start)
    if warmup:
        ref = SequentialLR(ref_opt, [LinearLR(ref_opt, start_factor=start, end_factor=1.0, total_iters=warmup),
                                     ExponentialLR(ref_opt, gamma=gamma)], milestones=[warmup])
    else:
        ref = ExponentialLR(ref_opt, gamma=gamma)
    a, b = scheduled_lrs(ours, ours_opt, 40), scheduled_lrs(ref, ref_opt, 40)
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("warmup,start,min_factor", [(5, 0.1, 0.0), (3, 0.25, 0.1), (0, 1.0, 0.05)])
def test_cosine_matches_torch_linear_then_cosine_annealing(warmup, start, min_factor):
    """WarmupCosineLR is torch's LinearLR followed by CosineAnnealingLR(eta_min=min_factor * lr)
    over the steps after the warmup, and stays at the minimum past total_steps."""
    total = 30
    ours_opt, ref_opt = _opt(), _opt()
    ours = WarmupCosineLR(ours_opt, warmup_steps=warmup, total_steps=total, start_factor=start, min_factor=min_factor)
    cosine = CosineAnnealingLR(ref_opt, T_max=total - warmup, eta_min=0.1 * min_factor)
    ref = cosine if not warmup else SequentialLR(
        ref_opt, [LinearLR(ref_opt, start_factor=start, end_factor=1.0, total_iters=warmup), cosine],
        milestones=[warmup])
    a, b = scheduled_lrs(ours, ours_opt, total + 1), scheduled_lrs(ref, ref_opt, total + 1)
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12)
    assert scheduled_lrs(ours, ours_opt, 5) == pytest.approx([0.1 * min_factor] * 5, abs=1e-12)


def test_make_optimizer_groups_and_kinds():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    sgd = make_optimizer(net, "sgd", lr=0.1, weight_decay=1e-4, momentum=0.9)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    decayed, free = sgd.param_groups
    assert {p.ndim for p in decayed["params"]} == {2, 4} and decayed["weight_decay"] == 1e-4
    assert {p.ndim for p in free["params"]} == {1} and free["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(free["params"]) == len(list(net.parameters()))
    adamw = make_optimizer(net, "adamw", lr=1e-3, weight_decay=5e-4, momentum=0.937)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.937, 0.999)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(net, "lamb", lr=1e-3, weight_decay=0.0, momentum=0.9)


@pytest.mark.parametrize("name, reference", [
    ("sgd", lambda groups: torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True, foreach=False)),
    ("adamw", lambda groups: torch.optim.AdamW(groups, lr=0.05, betas=(0.9, 0.999), foreach=False)),
])
def test_make_optimizer_fuses_on_the_cpu_and_steps_like_torch(name, reference):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))
    twin = copy.deepcopy(net)
    ours = make_optimizer(net, name, lr=0.05, weight_decay=1e-2, momentum=0.9)
    assert ours.defaults["fused"] is True  # every parameter is on the CPU
    assert make_optimizer(net, name, 0.05, 1e-2, 0.9, fused=False).defaults["fused"] is False
    ref = reference([{"params": [p for p in twin.parameters() if p.ndim > 1], "weight_decay": 1e-2},
                     {"params": [p for p in twin.parameters() if p.ndim <= 1], "weight_decay": 0.0}])
    x = torch.randn(16, 5)
    for _ in range(5):
        for model, opt in ((net, ours), (twin, ref)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_closed_form_with_decay_steps_and_staircase():
    f = WarmupExponentialDecay(warmup_steps=4, gamma=0.1, decay_steps=10, start_factor=0.2)
    assert f(0) == pytest.approx(0.2)
    assert f(2) == pytest.approx(0.2 + 0.8 * 2 / 4)
    assert f(4) == pytest.approx(1.0)
    assert f(14) == pytest.approx(0.1)
    assert f(9) == pytest.approx(0.1 ** 0.5)
    s = WarmupExponentialDecay(warmup_steps=4, gamma=0.1, decay_steps=10, staircase=True)
    assert [s(t) for t in (4, 13, 14, 23, 24)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
    assert warmup_exponential(7, 4, 0.5, 3.0) == pytest.approx(0.5)
    # monotone: rises through the warmup, falls after it
    vals = [f(t) for t in range(60)]
    assert all(b > a for a, b in zip(vals[:4], vals[1:5])) and all(b < a for a, b in zip(vals[4:], vals[5:]))
    assert math.isclose(f(4 + 10 * 3), 1e-3, rel_tol=1e-12)


def test_state_round_trip_and_pickle():
    opt = _opt()
    sched = WarmupExponentialLR(opt, warmup_steps=3, gamma=0.5, decay_steps=2)
    scheduled_lrs(sched, opt, 5)
    state = sched.state_dict()
    # plain values only: a Lightning checkpoint holding it loads with weights_only=True
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = _opt()
    sched2 = WarmupExponentialLR(opt2, warmup_steps=3, gamma=0.5, decay_steps=2)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
    f = pickle.loads(pickle.dumps(sched.factor))
    assert f(7) == sched.factor(7)


@pytest.mark.parametrize("kwargs,msg", [
    ({"warmup_steps": -1, "total_steps": 10}, "warmup_steps"),
    ({"warmup_steps": 5, "total_steps": 4}, "total_steps"),
    ({"warmup_steps": 0, "total_steps": 10, "min_factor": 1.5}, "min_factor"),
    ({"warmup_steps": 2, "total_steps": 10, "start_factor": -0.1}, "start_factor"),
])
def test_cosine_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        WarmupCosineDecay(**kwargs)


@pytest.mark.parametrize("kwargs,msg", [
    ({"warmup_steps": -1, "gamma": 0.5}, "warmup_steps"),
    ({"warmup_steps": 2, "gamma": 0.0}, "gamma"),
    ({"warmup_steps": 2, "gamma": 1.5}, "gamma"),
    ({"warmup_steps": 2, "gamma": 0.5, "decay_steps": 0}, "decay_steps"),
    ({"warmup_steps": 2, "gamma": 0.5, "start_factor": 2.0}, "start_factor"),
])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        WarmupExponentialDecay(**kwargs)


@pytest.mark.parametrize("kwargs,msg", [
    ({"lr": -1e-3}, "lr: expected a learning rate >= 0"),
    ({"lr": float("nan")}, "lr: expected"),
    ({"weight_decay": -1e-4}, "weight_decay: expected a value >= 0"),
    ({"momentum": 1.0}, "momentum: expected a value in \\[0, 1\\)"),
    ({"momentum": -0.1}, "momentum: expected"),
    ({"optimizer": "lbfgs"}, "optimizer: expected one of"),
])
@pytest.mark.parametrize("task,arch", [("Classifier", "resnet18"), ("Detector", "yolov3"),
                                       ("Steganalyzer", "xunet")])
def test_every_task_names_a_bad_optimizer_argument_when_built(task, arch, kwargs, msg):
    # checked in __init__, before the net is built, not at the first training step
    import zoo.tasks

    with pytest.raises(ValueError, match=msg):
        getattr(zoo.tasks, task)(arch, **kwargs)


@pytest.mark.parametrize("gamma", [0.0, 1.5, True, "0.1"])
def test_decay_factor_checks_are_shared(gamma):
    from zoo.optim import MultiStepDecay
    from zoo.tasks import Detector, Steganalyzer

    for build, name in ((lambda: WarmupExponentialDecay(2, gamma), "gamma"),
                        (lambda: MultiStepDecay([3], gamma), "gamma"),
                        (lambda: Detector("yolov3", lr_gamma=gamma), "lr_gamma"),
                        (lambda: Steganalyzer("xunet", lr_gamma=gamma), "lr_gamma")):
        with pytest.raises(ValueError, match=f"{name}: expected a decay factor in \\(0, 1\\]"):
            build()


def test_make_optimizer_checks_its_arguments():
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer(torch.nn.Linear(2, 2), "sgd", lr=0.1, weight_decay=0.0, momentum=1.2)


# ----------------------------------------------------------------------------- composable phases


def _closed_form_mix(t: int) -> float:
    """Written out by hand for the phases of test_composed_schedule_equals_its_closed_form."""
    if t < 10:                                   # linear warmup 0.1 -> 1 over 10 steps
        return 0.1 + 0.9 * t / 10
    t -= 10
    if t < 5:                                    # hold at 1
        return 1.0
    t -= 5
    if t < 21:                                   # x0.5 every 7 steps, 21 steps long
        return 0.5 ** (t // 7)
    t -= 21                                      # ended at 0.5 ** 3
    if t < 10:                                   # x0.9 every 2 steps (continuous)
        return 0.125 * 0.9 ** (t / 2)
    t -= 10
    level = 0.125 * 0.9 ** 5
    if t < 20:                                   # half a cosine down to 0.05
        return 0.05 + (level - 0.05) * (1 + math.cos(math.pi * t / 20)) / 2
    return 0.05                                  # held after the last phase


def test_composed_schedule_equals_its_closed_form_at_every_step():
    from zoo.optim import Schedule, constant, cosine, exponential, linear, step

    f = Schedule([linear(10, start=0.1), constant(5), step(0.5, step_size=7, steps=21),
                  exponential(0.9, decay_steps=2, steps=10), cosine(20, end=0.05)])
    for t in range(100):
        assert f(t) == pytest.approx(_closed_form_mix(t), rel=1e-12, abs=1e-15), t


@pytest.mark.parametrize("phase, closed_form", [
    ({"kind": "constant", "steps": None, "factor": 0.3}, lambda t: 0.3),
    ({"kind": "linear", "steps": 8, "start": 0.0, "end": 0.5}, lambda t: 0.5 * min(t, 8) / 8),
    ({"kind": "exponential", "gamma": 0.8}, lambda t: 0.8 ** t),
    ({"kind": "exponential", "gamma": 0.5, "decay_steps": 4, "staircase": True}, lambda t: 0.5 ** (t // 4)),
    ({"kind": "step", "gamma": 0.1, "milestones": [3, 9]}, lambda t: 0.1 ** ((t >= 3) + (t >= 9))),
    ({"kind": "step", "gamma": 0.5, "step_size": 5}, lambda t: 0.5 ** (t // 5)),
    ({"kind": "cosine", "steps": 12, "end": 0.2}, lambda t: 0.2 + 0.8 * (1 + math.cos(math.pi * min(t, 12) / 12)) / 2),
])
def test_each_phase_kind_equals_its_closed_form(phase, closed_form):
    from zoo.optim import Schedule

    f = Schedule([phase])
    for t in range(30):
        assert f(t) == pytest.approx(closed_form(t), rel=1e-12, abs=1e-15), t


@pytest.mark.parametrize("after, torch_after", [
    ({"kind": "step", "gamma": 0.5, "step_size": 4}, lambda o: torch.optim.lr_scheduler.StepLR(o, 4, gamma=0.5)),
    ({"kind": "step", "gamma": 0.3, "milestones": [3, 11]},
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 11], gamma=0.3)),
    ({"kind": "cosine", "steps": 10, "end": 0.2}, lambda o: CosineAnnealingLR(o, T_max=10, eta_min=0.1 * 0.2)),
    ({"kind": "exponential", "gamma": 0.95}, lambda o: ExponentialLR(o, gamma=0.95)),
])
def test_schedule_lr_matches_torch_sequential_schedulers(after, torch_after):
    """A linear warmup then each decay, as torch's SequentialLR builds it (torch restarts each
    scheduler from the base lr, which is where the warmup ends)."""
    from zoo.optim import ScheduleLR

    ours_opt, ref_opt = _opt(), _opt()
    ours = ScheduleLR(ours_opt, [{"kind": "linear", "steps": 5, "start": 0.2}, after])
    ref = SequentialLR(ref_opt, [LinearLR(ref_opt, start_factor=0.2, end_factor=1.0, total_iters=5),
                                 torch_after(ref_opt)], milestones=[5])
    a, b = scheduled_lrs(ours, ours_opt, 16), scheduled_lrs(ref, ref_opt, 16)
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12)


def test_zoo_defaults_are_instances_of_the_composition():
    from zoo.optim import MultiStepDecay, Schedule, cosine, exponential, linear, step

    pairs = [
        (WarmupExponentialDecay(4, 0.5, 3.0, start_factor=0.1), Schedule([linear(4, 0.1), exponential(0.5, 3.0)])),
        (WarmupCosineDecay(6, 40, start_factor=0.2, min_factor=0.1), Schedule([linear(6, 0.2), cosine(34, 0.1)])),
        (MultiStepDecay([10, 20], 0.1), Schedule([step(0.1, milestones=[10, 20])])),
    ]
    for ours, composed in pairs:
        assert isinstance(ours, Schedule) and ours.phases == composed.phases
        assert [ours(t) for t in range(50)] == [composed(t) for t in range(50)]
    # and still their closed forms
    f = pairs[1][0]
    for t in range(50):
        assert f(t) == pytest.approx(0.2 + 0.8 * t / 6 if t < 6 else
                                     0.1 + 0.9 * (1 + math.cos(math.pi * min(1, (t - 6) / 34))) / 2, rel=1e-12)


def test_schedule_lr_state_is_plain_data():
    from zoo.optim import ScheduleLR

    phases = [{"kind": "linear", "steps": 3, "start": 0.5}, {"kind": "exponential", "gamma": 0.9}]
    opt = _opt()
    sched = ScheduleLR(opt, phases)
    scheduled_lrs(sched, opt, 7)
    buf = io.BytesIO()
    torch.save({"scheduler": sched.state_dict(), "optimizer": opt.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = _opt()
    sched2 = ScheduleLR(opt2, phases)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert sched2.factor.phases == sched.factor.phases
    assert scheduled_lrs(sched2, opt2, 5) == scheduled_lrs(sched, opt, 5)


@pytest.mark.parametrize("phases, msg", [
    ([], "phases: expected a non-empty list"),
    ([{"kind": "warmup", "steps": 3}], r"phases\[0\].kind: expected one of"),
    ([{"kind": "linear", "steps": 0}], r"phases\[0\].steps: expected an int >= 1"),
    ([{"kind": "cosine", "steps": None}], r"phases\[0\].steps: a cosine phase needs a length"),
    ([{"kind": "exponential", "gamma": 0.5}, {"kind": "constant"}], r"phases\[0\].steps: only the last phase"),
    ([{"kind": "exponential", "steps": 3, "gamma": 1.5}], r"phases\[0\].gamma: expected a decay factor"),
    ([{"kind": "step", "gamma": 0.5}], r"phases\[0\]: a step phase takes one of milestones or step_size"),
    ([{"kind": "step", "milestones": [5, 2]}], r"phases\[0\].milestones: expected increasing"),
    ([{"kind": "linear", "steps": 3, "start": -1}], r"phases\[0\].start: expected a finite multiplier"),
    ([{"kind": "cosine", "steps": 3, "gamma": 0.5}], r"phases\[0\]: a cosine phase takes"),
])
def test_bad_phases_are_named(phases, msg):
    from zoo.optim import Schedule

    with pytest.raises(ValueError, match=msg):
        Schedule(phases)
