"""Optimizers and learning-rate schedules written from first principles."""
from __future__ import annotations

import math

import torch

from .optimizers import Adadelta, Adagrad, Adam, AdamW, Adamax, RMSprop, SGD
from .schedules import (
    PHASES,
    MultiStepDecay,
    MultiStepDecayLR,
    Schedule,
    ScheduleLR,
    WarmupCosineDecay,
    WarmupCosineLR,
    WarmupExponentialDecay,
    WarmupExponentialLR,
    check_gamma,
    constant,
    cosine,
    exponential,
    linear,
    schedule_value,
    step,
    warmup_cosine,
    warmup_exponential,
)

OPTIMIZERS = ("sgd", "adamw", "adamax", "adadelta")


def weight_decay_groups(module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: ``weight_decay`` on weight matrices and kernels, none on
    biases and normalisation parameters (every parameter with at most one dimension)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def check_optimizer(name: str) -> None:
    """``ValueError`` unless ``name`` is one of :data:`OPTIMIZERS`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_optimizer_args(name: str, lr: float, weight_decay: float, momentum: float) -> None:
    """The arguments of :func:`make_optimizer`, checked when a task is built (not at its first
    step): ``ValueError`` naming the argument unless ``name`` is one of :data:`OPTIMIZERS`,
    ``lr >= 0`` (0 freezes the weights, as in torch.optim), ``weight_decay >= 0`` and ``0 <= momentum < 1`` (SGD's momentum, the first
    beta of AdamW and Adamax, Adadelta's rho)."""
    check_optimizer(name)
    if not (_is_number(lr) and lr >= 0):
        raise ValueError(f"lr: expected a learning rate >= 0, got {lr!r}")
    if not (_is_number(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay: expected a value >= 0, got {weight_decay!r}")
    if not (_is_number(momentum) and 0 <= momentum < 1):
        raise ValueError(f"momentum: expected a value in [0, 1), got {momentum!r}")


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused (one kernel per step) optimizers take every parameter."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = set(_get_fused_kernels_supported_devices())
    return bool(params) and all(p.is_floating_point() and p.device.type in devices for p in params)


def make_optimizer(module, name: str, lr: float, weight_decay: float, momentum: float,
                   fused: bool | None = None) -> torch.optim.Optimizer:
    """The tasks' default optimizer over ``module``'s parameters (no weight decay on biases and norms).

    ``"sgd"``: SGD with ``momentum`` (Nesterov when momentum > 0). ``"adamw"``: AdamW with
    ``betas=(momentum, 0.999)``. ``"adamax"``: Adamax with ``betas=(momentum, 0.999)`` and L2
    ``weight_decay`` added to the gradient (SRNet's recipe). ``"adadelta"``: Adadelta with
    ``rho=momentum`` and ``eps=1e-8`` (YeNet's recipe: lr 0.4, rho 0.95, weight decay 5e-4, as
    L2 added to the gradient). ``fused``: torch's single-kernel implementation (the same
    update; on the CPU about 5x faster than the default for-each one on a 60M-parameter net);
    ``None`` uses it wherever every parameter's device has it.
    """
    check_optimizer_args(name, lr, weight_decay, momentum)
    groups = weight_decay_groups(module, weight_decay)
    if fused is None:
        fused = _fused_ok([p for g in groups for p in g["params"]])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0, fused=fused)
    if name == "adamax":  # (torch has no fused Adamax / Adadelta)
        return torch.optim.Adamax(groups, lr=lr, betas=(momentum, 0.999))
    if name == "adadelta":
        return torch.optim.Adadelta(groups, lr=lr, rho=momentum, eps=1e-8)
    return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), fused=fused)


__all__ = [
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "MultiStepDecay",
    "MultiStepDecayLR",
    "OPTIMIZERS",
    "PHASES",
    "RMSprop",
    "SGD",
    "Schedule",
    "ScheduleLR",
    "WarmupCosineDecay",
    "WarmupCosineLR",
    "WarmupExponentialDecay",
    "WarmupExponentialLR",
    "check_gamma",
    "check_optimizer",
    "check_optimizer_args",
    "constant",
    "cosine",
    "exponential",
    "linear",
    "make_optimizer",
    "schedule_value",
    "step",
    "warmup_cosine",
    "warmup_exponential",
    "weight_decay_groups",
]
