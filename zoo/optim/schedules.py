"""Learning-rate schedules written out in closed form.

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


def _check(warmup_steps: int, gamma: float, decay_steps: float, start_factor: float) -> None:
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps: expected an int >= 0, got {warmup_steps!r}")
    if not (isinstance(gamma, (int, float)) and 0.0 < gamma <= 1.0):
        raise ValueError(f"gamma: expected a decay factor in (0, 1], got {gamma!r}")
    if not (isinstance(decay_steps, (int, float)) and decay_steps > 0 and math.isfinite(decay_steps)):
        raise ValueError(f"decay_steps: expected a positive number of steps, got {decay_steps!r}")
    if not (isinstance(start_factor, (int, float)) and 0.0 <= start_factor <= 1.0):
        raise ValueError(f"start_factor: expected a value in [0, 1], got {start_factor!r}")


def warmup_exponential(
    step: int, warmup_steps: int, gamma: float, decay_steps: float = 1.0, start_factor: float = 0.0,
    staircase: bool = False,
) -> float:
    """The multiplier ``f(step)`` of the base learning rate (see the module docstring)."""
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    e = (step - warmup_steps) / decay_steps
    return gamma ** (math.floor(e) if staircase else e)


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
