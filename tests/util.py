"""Helpers shared by the tests (oracles that do not use the zoo's own code)."""
from __future__ import annotations

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
