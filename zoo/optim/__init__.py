"""Optimizers and learning-rate schedules written from first principles."""
from .schedules import WarmupExponentialDecay, WarmupExponentialLR, warmup_exponential


def weight_decay_groups(module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: ``weight_decay`` on weight matrices and kernels, none on
    biases and normalisation parameters (every parameter with at most one dimension)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


__all__ = ["WarmupExponentialDecay", "WarmupExponentialLR", "warmup_exponential", "weight_decay_groups"]
