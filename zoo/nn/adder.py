"""AdderNet's layer (Chen et al., "AdderNet: Do We Really Need Multiplications in Deep
Learning?", CVPR 2020): a convolution whose cross-correlation is replaced by the negative L1
distance between each input patch and each filter.

``y[n, co, oh, ow] = -sum_{ci, kh, kw} |x_pad[n, ci, oh*s + kh, ow*s + kw] - W[co, ci, kh, kw]|``

The paper follows every adder layer with BatchNorm (the outputs are all <= 0 and scale with
the patch size).
"""
from __future__ import annotations

import torch
from torch import nn

from ..ops import _check_eta, _pair, adder2d
from .checks import check_image_batch


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return v


class Adder2d(nn.Module):
    """Adder "convolution": ``[N, in_channels, H, W] -> [N, out_channels, Ho, Wo]`` with
    ``Ho = (H + 2*padding - kh) // stride + 1`` (as ``nn.Conv2d``, zero padding).

    Args:
        in_channels, out_channels: channel counts; ``weight`` is ``[out, in, kh, kw]``.
        kernel_size, stride, padding: an int or an (h, w) pair each.
        bias: add a learned per-channel bias after the adder (the paper uses none: BN follows).
        eta: the paper's adaptive learning-rate scale, ``None`` or ``0`` to disable. The scaling
            happens inside the op's backward (:func:`zoo.ops.adder2d`): the weight gradient
            ``dW`` (the full-precision ``sum (X - W) * g``) is replaced by
            ``dW * eta * sqrt(K) / ||dW||_2`` (``K = weight.numel()``) before it reaches
            ``weight.grad``, so the optimizer (and weight decay, clipping, ...) sees the
            rescaled gradient. The input gradient is the paper's HardTanh-clipped one either way.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = False,
        eta: float | None = 0.2,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.eta = _check_eta(eta)  # None -> 0.0 (off)
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Standard normal weights (as the paper's code draws them); a zero bias.

        An adder layer measures the L1 distance between each patch and each filter, so its
        filters must live at the scale of its input -- BatchNorm output, about N(0, 1) -- for
        the distance to depend on them. With ``nn.Conv2d``'s Kaiming-uniform draw (|w| <=
        1/sqrt(fan_in), 0.04 for a 64-channel 3x3) every ``|x - w|`` is about ``|x|``, and an
        adder_resnet20 trained 5 epochs on the digits stayed below 70% val accuracy."""
        nn.init.normal_(self.weight, 0.0, 1.0)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, in_channels, H, W]`` -> ``[N, out_channels, Ho, Wo]``."""
        check_image_batch(x, self.in_channels)
        y = adder2d(x, self.weight, self.stride, self.padding, self.eta)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, eta={self.eta}")
        return s + ("" if self.bias is not None else ", bias=False")
