"""Helpers shared by the tests (oracles that do not use the zoo's own code)."""
from __future__ import annotations

import math

import torch
from torch import nn


def randomize_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics,
    so that a weight-identity test also checks the BN buffers are carried over."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
    return net


def count_macs_with_hooks(net: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of conv and linear layers, counted with forward hooks
    from each layer's output shape (independent of torch.utils.flop_counter)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    net.eval()
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return total


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def perfect_maps(targets, anchors, strides, sizes, num_classes, scale_xy=None):
    """Raw maps that decode to exactly the target boxes, built with a scalar re-derivation of
    darknet's assignment (no zoo code): each box goes to the anchor of largest corner-aligned IoU
    among all of them, at the cell holding its centre; logits are sigmoid^-1 of the offset in the
    cell and log(wh / anchor); objectness and the class logit high there, low everywhere else.
    ``scale_xy`` (one per level, default 1): the offsets invert darknet's scaled centre
    ``cx = (sigmoid(tx) * s - (s - 1) / 2 + gx) * stride`` instead."""
    scale_xy = [1.0] * len(strides) if scale_xy is None else list(scale_xy)
    levels, per_level = anchors.shape[:2]
    flat = anchors.reshape(-1, 2).tolist()
    maps = [torch.full((len(targets), per_level, h, w, 5 + num_classes), -12.0) for h, w in sizes]
    for b, t in enumerate(targets):
        for (x1, y1, x2, y2), label in zip(t["boxes"].tolist(), t["labels"].tolist()):
            w, h = x2 - x1, y2 - y1
            ious = [min(w, aw) * min(h, ah) / (w * h + aw * ah - min(w, aw) * min(h, ah)) for aw, ah in flat]
            k = max(range(len(flat)), key=ious.__getitem__)
            lvl, a = divmod(k, per_level)
            s = strides[lvl]
            cx, cy = (x1 + x2) / 2 / s, (y1 + y2) / 2 / s
            gx, gy = int(math.floor(cx)), int(math.floor(cy))
            sc = scale_xy[lvl]
            fx, fy = (min(max((f + (sc - 1) / 2) / sc, 1e-6), 1 - 1e-6) for f in (cx - gx, cy - gy))
            cell = maps[lvl][b, a, gy, gx]
            cell[0], cell[1] = math.log(fx / (1 - fx)), math.log(fy / (1 - fy))
            cell[2], cell[3] = math.log(w / flat[k][0]), math.log(h / flat[k][1])
            cell[4] = 12.0
            cell[5 + label] = 12.0
    return [m.permute(0, 1, 4, 2, 3).reshape(m.shape[0], -1, m.shape[2], m.shape[3]).contiguous() for m in maps]


def fit_and_record_lrs(trainer, module, **fit_kwargs) -> list[float]:
    """``trainer.fit(module, **fit_kwargs)``, returning the first group's lr at every training batch."""
    import pytorch_lightning as pl

    lrs: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer.callbacks.append(Record())
    trainer.fit(module, **fit_kwargs)
    return lrs


def scheduled_lrs(scheduler, optimizer, steps: int) -> list[float]:
    """The first group's lr at each of ``steps`` steps of ``optimizer`` under ``scheduler``."""
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def torch_schedule_lrs(lr: float, steps: int, make_scheduler) -> list[float]:
    """The lr of each of ``steps`` steps under ``make_scheduler(optimizer)`` (a torch scheduler), from ``lr``."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    return scheduled_lrs(make_scheduler(opt), opt, steps)


try:  # a callback the resume tests name in a config: SIGKILL the training process at a step
    import pytorch_lightning as _pl

    class KillAtStep(_pl.Callback):
        """Kills its own process with SIGKILL (no clean-up, no last checkpoint) when a training
        batch starts with ``trainer.global_step == step``."""

        def __init__(self, step: int) -> None:
            self.step = step

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == self.step:
                import os
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
except ImportError:  # pragma: no cover - Lightning is a hard dependency
    pass
