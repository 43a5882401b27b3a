"""Learning-rate schedules written out in closed form and composed in sequence.

A schedule is a multiplier ``f(t)`` of the base learning rate, ``lr(t) = base_lr * f(t)`` at
optimizer step ``t``, made of *phases* run one after the other. Each phase lasts ``steps``
steps (the last may last for ever: ``steps: None``) and starts from the *level* the previous
one ended at (1.0 for the first phase), so a decay continues from wherever the warmup left
the learning rate. With ``u`` the step inside the phase and ``L`` its starting level:

=============== ======================================================= =========================
kind            f during the phase                                       options
=============== ======================================================= =========================
``constant``    ``factor`` (default ``L``)                                ``factor``
``linear``      ``start + (end - start) * u / steps``                     ``start`` (``L``), ``end`` (1)
``exponential`` ``L * gamma ** (u / decay_steps)``                        ``gamma``, ``decay_steps``,
                (``floor`` of the exponent with ``staircase``)            ``staircase``
``step``        ``L * gamma ** (number of milestones <= u)``, or          ``gamma``, ``milestones``
                ``L * gamma ** floor(u / step_size)``                     or ``step_size``
``cosine``      ``end + (L - end) * (1 + cos(pi * u / steps)) / 2``       ``end`` (0)
=============== ======================================================= =========================

After the last phase with a finite length the multiplier stays at the value it ended at.

The zoo's two default schedules are instances:

* the detector's (the AI识虫 YOLOv3 recipes): a linear warmup from ``start_factor`` to 1 over
  ``warmup_steps`` steps, then exponential decay by ``gamma`` every ``decay_steps`` steps --
  :class:`WarmupExponentialDecay` = ``[linear, exponential]``;
* the classifier's: the same warmup, then half a cosine down to ``min_factor`` at
  ``total_steps`` -- :class:`WarmupCosineDecay` = ``[linear, cosine]``.

:class:`Schedule` is the multiplier as a picklable callable for
``torch.optim.lr_scheduler.LambdaLR``; its state is plain data (the phases as dicts), so a
checkpoint holding it loads with ``torch.load(weights_only=True)``. :class:`ScheduleLR` is that
LambdaLR, constructible from a LightningCLI config (``python -m zoo fit`` steps the zoo's
schedules once per optimizer step)::

    lr_scheduler:
      class_path: zoo.optim.ScheduleLR
      init_args:
        phases:
          - {kind: linear, steps: 500, start: 0.001}
          - {kind: cosine, steps: 19500, end: 0.01}
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

#: the phase kinds of a :class:`Schedule`
PHASES = ("constant", "linear", "exponential", "step", "cosine")

#: the options each phase kind takes (besides ``kind`` and ``steps``)
_OPTIONS = {
    "constant": ("factor",),
    "linear": ("start", "end"),
    "exponential": ("gamma", "decay_steps", "staircase"),
    "step": ("gamma", "milestones", "step_size"),
    "cosine": ("end",),
}


def _check_factor(value: float, name: str) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name}: expected a value in [0, 1], got {value!r}")


def _check_level(value: float, name: str) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name}: expected a finite multiplier >= 0, got {value!r}")


def _check_steps(value, name: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


def _check_warmup(warmup_steps: int, start_factor: float) -> None:
    _check_steps(warmup_steps, "warmup_steps")
    _check_factor(start_factor, "start_factor")


def check_gamma(gamma: float, name: str = "gamma") -> None:
    """``ValueError`` naming ``name`` unless ``gamma`` is a decay factor in (0, 1]."""
    if isinstance(gamma, bool) or not (isinstance(gamma, (int, float)) and 0.0 < gamma <= 1.0):
        raise ValueError(f"{name}: expected a decay factor in (0, 1], got {gamma!r}")


def _check_decay_steps(decay_steps: float, name: str = "decay_steps") -> None:
    if isinstance(decay_steps, bool) or not (
            isinstance(decay_steps, (int, float)) and decay_steps > 0 and math.isfinite(decay_steps)):
        raise ValueError(f"{name}: expected a positive number of steps, got {decay_steps!r}")


def _check_milestones(milestones, name: str = "milestones") -> None:
    if not isinstance(milestones, (list, tuple)) or any(
            isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones) \
            or list(milestones) != sorted(milestones):
        raise ValueError(f"{name}: expected increasing step numbers >= 1, got {milestones!r}")


# ----------------------------------------------------------------------------- phases


def constant(steps: int | None = None, factor: float | None = None) -> dict[str, Any]:
    """A phase holding ``factor`` (default: the level the previous phase ended at)."""
    return {"kind": "constant", "steps": steps, "factor": factor}


def linear(steps: int, start: float | None = None, end: float = 1.0) -> dict[str, Any]:
    """A phase going linearly from ``start`` (default: the current level) to ``end`` over
    ``steps`` steps (a warmup when ``end`` is 1)."""
    return {"kind": "linear", "steps": steps, "start": start, "end": end}


def exponential(gamma: float, decay_steps: float = 1.0, steps: int | None = None,
                staircase: bool = False) -> dict[str, Any]:
    """A phase multiplying the level by ``gamma`` every ``decay_steps`` steps (continuously, or
    in whole stairs with ``staircase``)."""
    return {"kind": "exponential", "steps": steps, "gamma": gamma, "decay_steps": decay_steps,
            "staircase": staircase}


def step(gamma: float = 0.1, milestones: list[int] | None = None, step_size: int | None = None,
         steps: int | None = None) -> dict[str, Any]:
    """A phase multiplying the level by ``gamma`` at each of ``milestones`` (steps counted from
    the phase's start), or every ``step_size`` steps."""
    return {"kind": "step", "steps": steps, "gamma": gamma, "milestones": milestones, "step_size": step_size}


def cosine(steps: int, end: float = 0.0) -> dict[str, Any]:
    """A phase going down half a cosine from the current level to ``end`` over ``steps`` steps."""
    return {"kind": "cosine", "steps": steps, "end": end}


def _normalise(phases: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The phases checked, with every option filled in (plain ints, floats, bools, lists)."""
    if isinstance(phases, dict) or not isinstance(phases, (list, tuple)) or not phases:
        raise ValueError(f"phases: expected a non-empty list of phase dicts, got {phases!r}")
    out = []
    for i, phase in enumerate(phases):
        where = f"phases[{i}]"
        if not isinstance(phase, dict):
            raise ValueError(f"{where}: expected a dict with a 'kind', got {phase!r}")
        kind = phase.get("kind")
        if kind not in PHASES:
            raise ValueError(f"{where}.kind: expected one of {PHASES}, got {kind!r}")
        unknown = set(phase) - {"kind", "steps", *_OPTIONS[kind]}
        if unknown:
            raise ValueError(f"{where}: a {kind} phase takes {('steps', *_OPTIONS[kind])}, not {sorted(unknown)}")
        n = phase.get("steps")
        if n is None:
            if kind in ("linear", "cosine"):
                raise ValueError(f"{where}.steps: a {kind} phase needs a length, got None")
            if i != len(phases) - 1:
                raise ValueError(f"{where}.steps: only the last phase may last for ever (steps None)")
        else:
            _check_steps(n, f"{where}.steps", 1 if kind in ("linear", "cosine") else 0)
        p: dict[str, Any] = {"kind": kind, "steps": n}
        if kind == "constant":
            p["factor"] = phase.get("factor")
            if p["factor"] is not None:
                _check_level(p["factor"], f"{where}.factor")
                p["factor"] = float(p["factor"])
        elif kind == "linear":
            p["start"], p["end"] = phase.get("start"), phase.get("end", 1.0)
            for key in ("start", "end"):
                if p[key] is not None or key == "end":
                    _check_level(p[key], f"{where}.{key}")
                    p[key] = float(p[key])
        elif kind == "exponential":
            check_gamma(phase.get("gamma"), f"{where}.gamma")
            _check_decay_steps(phase.get("decay_steps", 1.0), f"{where}.decay_steps")
            p.update(gamma=float(phase["gamma"]), decay_steps=float(phase.get("decay_steps", 1.0)),
                     staircase=bool(phase.get("staircase", False)))
        elif kind == "step":
            check_gamma(phase.get("gamma", 0.1), f"{where}.gamma")
            milestones, size = phase.get("milestones"), phase.get("step_size")
            if (milestones is None) == (size is None):
                raise ValueError(f"{where}: a step phase takes one of milestones or step_size, "
                                 f"got milestones={milestones!r}, step_size={size!r}")
            if milestones is not None:
                _check_milestones(milestones, f"{where}.milestones")
                milestones = [int(m) for m in milestones]
            else:
                _check_steps(size, f"{where}.step_size", 1)
            p.update(gamma=float(phase.get("gamma", 0.1)), milestones=milestones, step_size=size)
        else:  # cosine
            _check_level(phase.get("end", 0.0), f"{where}.end")
            p["end"] = float(phase.get("end", 0.0))
        out.append(p)
    return out


def _phase_value(p: dict[str, Any], u: float, level: float) -> float:
    """The multiplier ``u`` steps into phase ``p``, which starts at ``level``."""
    kind = p["kind"]
    if kind == "constant":
        return level if p["factor"] is None else p["factor"]
    if kind == "linear":
        start = level if p["start"] is None else p["start"]
        return start + (p["end"] - start) * u / p["steps"]
    if kind == "exponential":
        e = u / p["decay_steps"]
        return level * p["gamma"] ** (math.floor(e) if p["staircase"] else e)
    if kind == "step":
        if p["milestones"] is not None:
            return level * p["gamma"] ** sum(1 for m in p["milestones"] if u >= m)
        return level * p["gamma"] ** (u // p["step_size"])
    progress = min(1.0, u / p["steps"])  # cosine
    return p["end"] + (level - p["end"]) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule_value(phases: list[dict[str, Any]], t: int) -> float:
    """``f(t)`` of the (normalised) ``phases`` run in sequence from level 1.0."""
    level = 1.0
    for p in phases:
        n = p["steps"]
        if n is None or t < n:
            return _phase_value(p, t, level)
        level = _phase_value(p, n, level)
        t -= n
    return level


class Schedule:
    """The multiplier ``f(step)`` of ``phases`` run in sequence (see the module docstring): a
    picklable callable for ``LambdaLR`` whose state (``phases``, a list of dicts of plain values)
    is saved with the scheduler.

    >>> f = Schedule([linear(5, start=0.1), cosine(95, end=0.01)])
    >>> f(0), f(5), f(100)
    (0.1, 1.0, 0.01)
    """

    def __init__(self, phases: list[dict[str, Any]]) -> None:
        self.phases = _normalise(phases)

    def __call__(self, step: int) -> float:
        return schedule_value(self.phases, step)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(phases={self.phases})"


class ScheduleLR(LambdaLR):
    """``LambdaLR(optimizer, Schedule(phases))``; step it once per optimizer step (``python -m zoo
    fit`` does so for the zoo's schedules, see ``STEP_INTERVAL``)."""

    #: stepped per optimizer step (not per epoch) when a LightningCLI config names this class
    STEP_INTERVAL = True

    def __init__(self, optimizer: torch.optim.Optimizer, phases: list[dict[str, Any]], last_epoch: int = -1) -> None:
        # (the Schedule is not kept as an attribute: LambdaLR.state_dict saves the scheduler's
        # __dict__, and a checkpoint must hold plain values only, for torch.load(weights_only=True))
        super().__init__(optimizer, Schedule(phases), last_epoch=last_epoch)

    @property
    def factor(self) -> Schedule:
        """The multiplier ``f(step)``."""
        return self.lr_lambdas[0]


# ----------------------------------------------------------------------------- the zoo's defaults


def warmup_exponential(
    step: int, warmup_steps: int, gamma: float, decay_steps: float = 1.0, start_factor: float = 0.0,
    staircase: bool = False,
) -> float:
    """The detector's multiplier, in closed form::

        f(t) = start_factor + (1 - start_factor) * t / warmup_steps     t <  warmup_steps
        f(t) = gamma ** ((t - warmup_steps) / decay_steps)              t >= warmup_steps

    (``floor`` of the exponent with ``staircase``)."""
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    e = (step - warmup_steps) / decay_steps
    return gamma ** (math.floor(e) if staircase else e)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, start_factor: float = 0.0,
                  min_factor: float = 0.0) -> float:
    """The classifier's multiplier, in closed form: the linear warmup of :func:`warmup_exponential`,
    then half a cosine from 1 down to ``min_factor`` at ``total_steps`` (and ``min_factor`` after)::

        f(t) = min_factor + (1 - min_factor) * (1 + cos(pi * min(1, (t - w) / max(1, T - w)))) / 2    t >= w
    """
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _warmup_phases(warmup_steps: int, start_factor: float) -> list[dict[str, Any]]:
    return [linear(warmup_steps, start=start_factor, end=1.0)] if warmup_steps else []


class WarmupExponentialDecay(Schedule):
    """The detector's schedule, ``Schedule([linear(warmup_steps, start_factor), exponential(gamma,
    decay_steps, staircase)])`` (:func:`warmup_exponential` in closed form).

    Args:
        warmup_steps: steps of linear warmup (0: none).
        gamma: decay factor per ``decay_steps`` steps after the warmup, in (0, 1].
        decay_steps: steps per factor of ``gamma``.
        start_factor: the multiplier at step 0 (the warmup starts from ``start_factor * lr``).
        staircase: decay in whole steps of ``gamma`` instead of continuously.
    """

    def __init__(self, warmup_steps: int, gamma: float, decay_steps: float = 1.0, start_factor: float = 0.0,
                 staircase: bool = False) -> None:
        _check_warmup(warmup_steps, start_factor)
        check_gamma(gamma)
        _check_decay_steps(decay_steps)
        self.warmup_steps = warmup_steps
        self.gamma = float(gamma)
        self.decay_steps = float(decay_steps)
        self.start_factor = float(start_factor)
        self.staircase = bool(staircase)
        super().__init__(_warmup_phases(warmup_steps, start_factor)
                         + [exponential(gamma, decay_steps, staircase=staircase)])

    def __repr__(self) -> str:
        return (f"WarmupExponentialDecay(warmup_steps={self.warmup_steps}, gamma={self.gamma}, "
                f"decay_steps={self.decay_steps}, start_factor={self.start_factor}, staircase={self.staircase})")


class WarmupExponentialLR(ScheduleLR):
    """``LambdaLR(optimizer, WarmupExponentialDecay(...))``: linear warmup, then exponential decay.
    Step it once per optimizer step. ::

        lr_scheduler:
          class_path: zoo.optim.WarmupExponentialLR
          init_args: {warmup_steps: 500, gamma: 0.1, decay_steps: 20000}
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0, gamma: float = 0.1,
                 decay_steps: float = 1000.0, start_factor: float = 0.0, staircase: bool = False,
                 last_epoch: int = -1) -> None:
        LambdaLR.__init__(self, optimizer, WarmupExponentialDecay(warmup_steps, gamma, decay_steps, start_factor,
                                                                  staircase), last_epoch=last_epoch)


class WarmupCosineDecay(Schedule):
    """The classifier's schedule, ``Schedule([linear(warmup_steps, start_factor), cosine(total_steps
    - warmup_steps, min_factor)])`` (:func:`warmup_cosine` in closed form).

    Args:
        warmup_steps: steps of linear warmup (0: none).
        total_steps: the step at which the cosine reaches ``min_factor``.
        start_factor: the multiplier at step 0.
        min_factor: the multiplier at the end.
    """

    def __init__(self, warmup_steps: int, total_steps: int, start_factor: float = 0.0, min_factor: float = 0.0) -> None:
        _check_warmup(warmup_steps, start_factor)
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < max(1, warmup_steps):
            raise ValueError(f"total_steps: expected an int >= max(1, warmup_steps={warmup_steps}), got {total_steps!r}")
        _check_factor(min_factor, "min_factor")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.start_factor = float(start_factor)
        self.min_factor = float(min_factor)
        super().__init__(_warmup_phases(warmup_steps, start_factor)
                         + [cosine(max(1, total_steps - warmup_steps), end=min_factor)])

    def __repr__(self) -> str:
        return (f"WarmupCosineDecay(warmup_steps={self.warmup_steps}, total_steps={self.total_steps}, "
                f"start_factor={self.start_factor}, min_factor={self.min_factor})")


class WarmupCosineLR(ScheduleLR):
    """``LambdaLR(optimizer, WarmupCosineDecay(...))``: linear warmup, then cosine decay to
    ``min_factor * lr`` at ``total_steps``. Step it once per optimizer step. ::

        lr_scheduler:
          class_path: zoo.optim.WarmupCosineLR
          init_args: {warmup_steps: 500, total_steps: 20000}
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0, total_steps: int = 1000,
                 start_factor: float = 0.0, min_factor: float = 0.0, last_epoch: int = -1) -> None:
        LambdaLR.__init__(self, optimizer, WarmupCosineDecay(warmup_steps, total_steps, start_factor, min_factor),
                          last_epoch=last_epoch)


class MultiStepDecay(Schedule):
    """``f(step) = gamma ** (number of milestones <= step)``, ``Schedule([step(gamma, milestones)])``:
    the lr is multiplied by ``gamma`` at each milestone step (the shape of SRNet's recipe: 1e-3,
    then 1e-4 for the last fifth)."""

    def __init__(self, milestones: list[int], gamma: float = 0.1) -> None:
        _check_milestones(milestones)
        check_gamma(gamma)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        super().__init__([step(gamma, milestones=self.milestones)])

    def __repr__(self) -> str:
        return f"MultiStepDecay(milestones={self.milestones}, gamma={self.gamma})"


class MultiStepDecayLR(ScheduleLR):
    """``LambdaLR(optimizer, MultiStepDecay(milestones, gamma))``; step it once per optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        LambdaLR.__init__(self, optimizer, MultiStepDecay(milestones, gamma), last_epoch=last_epoch)
