"""Optimizers and learning-rate schedules written from first principles."""
from .schedules import WarmupExponentialDecay, WarmupExponentialLR, warmup_exponential

__all__ = ["WarmupExponentialDecay", "WarmupExponentialLR", "warmup_exponential"]
