"""Optimizers and learning-rate schedules written from first principles."""
from __future__ import annotations

import torch

from .schedules import (
    WarmupCosineDecay,
    WarmupCosineLR,
    WarmupExponentialDecay,
    WarmupExponentialLR,
    warmup_cosine,
    warmup_exponential,
)

OPTIMIZERS = ("sgd", "adamw")


def weight_decay_groups(module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: ``weight_decay`` on weight matrices and kernels, none on
    biases and normalisation parameters (every parameter with at most one dimension)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(module, name: str, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """The tasks' default optimizer over ``module``'s parameters (no weight decay on biases and norms).

    ``"sgd"``: SGD with ``momentum`` (Nesterov when momentum > 0). ``"adamw"``: AdamW with
    ``betas=(momentum, 0.999)``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    groups = weight_decay_groups(module, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))


__all__ = [
    "OPTIMIZERS",
    "WarmupCosineDecay",
    "WarmupCosineLR",
    "WarmupExponentialDecay",
    "WarmupExponentialLR",
    "make_optimizer",
    "warmup_cosine",
    "warmup_exponential",
    "weight_decay_groups",
]
