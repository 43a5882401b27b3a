"""Learning-rate schedules written out in closed form: a linear warmup, then exponential or
cosine decay. Each is a ``LambdaLR`` stepped once per optimizer step.

``warmup_exponential``: a linear warmup from ``start_factor * lr`` to ``lr`` over
``warmup_steps`` steps, then exponential decay by ``gamma`` every ``decay_steps``
steps (continuously, or in whole stairs with ``staircase=True``):

    f(t) = start_factor + (1 - start_factor) * t / warmup_steps     t <  warmup_steps
    f(t) = gamma ** ((t - warmup_steps) / decay_steps)              t >= warmup_steps

(``floor`` of the exponent with ``staircase``), and ``lr(t) = base_lr * f(t)``. This is the
shape the AI识虫 YOLOv3 recipes use (linear warmup, then exponential or piecewise decay).

:class:`WarmupExponentialDecay` is the factor as a picklable callable for
``torch.optim.lr_scheduler.LambdaLR`` (its state is saved with the scheduler), and
:class:`WarmupExponentialLR` is that LambdaLR, constructible from a LightningCLI config::

    lr_scheduler:
      class_path: zoo.optim.WarmupExponentialLR
      init_args: {warmup_steps: 500, gamma: 0.1, decay_steps: 20000}
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def _check_factor(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name}: expected a value in [0, 1], got {value!r}")


def _check_warmup(warmup_steps: int, start_factor: float) -> None:
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps: expected an int >= 0, got {warmup_steps!r}")
    _check_factor(start_factor, "start_factor")


def check_gamma(gamma: float, name: str = "gamma") -> None:
    """``ValueError`` naming ``name`` unless ``gamma`` is a decay factor in (0, 1]."""
    if isinstance(gamma, bool) or not (isinstance(gamma, (int, float)) and 0.0 < gamma <= 1.0):
        raise ValueError(f"{name}: expected a decay factor in (0, 1], got {gamma!r}")


def _check(warmup_steps: int, gamma: float, decay_steps: float, start_factor: float) -> None:
    _check_warmup(warmup_steps, start_factor)
    check_gamma(gamma)
    if not (isinstance(decay_steps, (int, float)) and decay_steps > 0 and math.isfinite(decay_steps)):
        raise ValueError(f"decay_steps: expected a positive number of steps, got {decay_steps!r}")


def _warmup(step: int, warmup_steps: int, start_factor: float) -> float:
    """The linear warmup both schedules share: ``start_factor`` at step 0, 1 at ``warmup_steps``."""
    return start_factor + (1.0 - start_factor) * step / warmup_steps


def warmup_exponential(
    step: int, warmup_steps: int, gamma: float, decay_steps: float = 1.0, start_factor: float = 0.0,
    staircase: bool = False,
) -> float:
    """The multiplier ``f(step)`` of the base learning rate (see the module docstring)."""
    if step < warmup_steps:
        return _warmup(step, warmup_steps, start_factor)
    e = (step - warmup_steps) / decay_steps
    return gamma ** (math.floor(e) if staircase else e)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, start_factor: float = 0.0,
                  min_factor: float = 0.0) -> float:
    """The multiplier of the base learning rate: the linear warmup of :func:`warmup_exponential`,
    then half a cosine from 1 down to ``min_factor`` at ``total_steps`` (and ``min_factor`` after)::

        f(t) = min_factor + (1 - min_factor) * (1 + cos(pi * min(1, (t - w) / (T - w)))) / 2    t >= w
    """
    if step < warmup_steps:
        return _warmup(step, warmup_steps, start_factor)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupExponentialDecay:
    """``f(step)`` of :func:`warmup_exponential` as a callable for ``LambdaLR``.

    Args:
        warmup_steps: steps of linear warmup (0: none).
        gamma: decay factor per ``decay_steps`` steps after the warmup, in (0, 1].
        decay_steps: steps per factor of ``gamma``.
        start_factor: the multiplier at step 0 (the warmup starts from ``start_factor * lr``).
        staircase: decay in whole steps of ``gamma`` instead of continuously.
    """

    def __init__(self, warmup_steps: int, gamma: float, decay_steps: float = 1.0, start_factor: float = 0.0,
                 staircase: bool = False) -> None:
        _check(warmup_steps, gamma, decay_steps, start_factor)
        self.warmup_steps = warmup_steps
        self.gamma = float(gamma)
        self.decay_steps = float(decay_steps)
        self.start_factor = float(start_factor)
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        return warmup_exponential(step, self.warmup_steps, self.gamma, self.decay_steps, self.start_factor,
                                  self.staircase)

    def __repr__(self) -> str:
        return (f"WarmupExponentialDecay(warmup_steps={self.warmup_steps}, gamma={self.gamma}, "
                f"decay_steps={self.decay_steps}, start_factor={self.start_factor}, staircase={self.staircase})")


class WarmupExponentialLR(LambdaLR):
    """``LambdaLR(optimizer, WarmupExponentialDecay(...))``: linear warmup, then exponential decay.

    Step it once per optimizer step (Lightning: ``interval: step``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0, gamma: float = 0.1,
                 decay_steps: float = 1000.0, start_factor: float = 0.0, staircase: bool = False,
                 last_epoch: int = -1) -> None:
        # (not kept as an attribute: LambdaLR.state_dict saves the scheduler's __dict__, and a
        # checkpoint must hold plain values only, to load with torch.load(weights_only=True))
        super().__init__(optimizer, WarmupExponentialDecay(warmup_steps, gamma, decay_steps, start_factor, staircase),
                         last_epoch=last_epoch)

    @property
    def factor(self) -> WarmupExponentialDecay:
        """The multiplier ``f(step)``."""
        return self.lr_lambdas[0]


class WarmupCosineDecay:
    """``f(step)`` of :func:`warmup_cosine` as a picklable callable for ``LambdaLR``.

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

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.warmup_steps, self.total_steps, self.start_factor, self.min_factor)

    def __repr__(self) -> str:
        return (f"WarmupCosineDecay(warmup_steps={self.warmup_steps}, total_steps={self.total_steps}, "
                f"start_factor={self.start_factor}, min_factor={self.min_factor})")


class WarmupCosineLR(LambdaLR):
    """``LambdaLR(optimizer, WarmupCosineDecay(...))``: linear warmup, then cosine decay to
    ``min_factor * lr`` at ``total_steps``. Step it once per optimizer step. ::

        lr_scheduler:
          class_path: zoo.optim.WarmupCosineLR
          init_args: {warmup_steps: 500, total_steps: 20000}
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0, total_steps: int = 1000,
                 start_factor: float = 0.0, min_factor: float = 0.0, last_epoch: int = -1) -> None:
        # (the factor is not kept as an attribute: see WarmupExponentialLR)
        super().__init__(optimizer, WarmupCosineDecay(warmup_steps, total_steps, start_factor, min_factor),
                         last_epoch=last_epoch)

    @property
    def factor(self) -> WarmupCosineDecay:
        """The multiplier ``f(step)``."""
        return self.lr_lambdas[0]


class MultiStepDecay:
    """``f(step) = gamma ** (number of milestones <= step)``: the lr is multiplied by ``gamma`` at
    each milestone step (the shape of SRNet's recipe: 1e-3, then 1e-4 for the last fifth).
    A picklable callable for ``LambdaLR`` (plain attributes, so a checkpoint holding it loads
    with ``weights_only=True``).
    """

    def __init__(self, milestones: list[int], gamma: float = 0.1) -> None:
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones) \
                or list(milestones) != sorted(milestones):
            raise ValueError(f"milestones: expected increasing step numbers >= 1, got {milestones!r}")
        check_gamma(gamma)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        return self.gamma ** sum(1 for m in self.milestones if step >= m)

    def __repr__(self) -> str:
        return f"MultiStepDecay(milestones={self.milestones}, gamma={self.gamma})"


class MultiStepDecayLR(LambdaLR):
    """``LambdaLR(optimizer, MultiStepDecay(milestones, gamma))``; step it once per optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        super().__init__(optimizer, MultiStepDecay(milestones, gamma), last_epoch=last_epoch)
