"""Fixed high-pass filters and the truncation layer used by the steganalysis nets.

* :data:`KV_KERNEL` / :func:`kv_kernel`: the 5x5 "KV" residual filter (Ker & Vidal; the
  SQUARE 5x5 kernel of the spatial rich model), integer taps divided by 12.
* :func:`srm_kernels`: the 30 linear high-pass residual kernels of the spatial rich model
  (Fridrich & Kodovsky, "Rich Models for Steganalysis of Digital Images", IEEE TIFS 2012),
  each centred in a 5x5 kernel, built here from their definitions (see the function).
* :class:`HighPassFilter`: a fixed (non-trainable, stored as a buffer) convolution.
* :class:`TLU`: the truncated linear unit ``clamp(x, -T, T)`` of YeNet.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Integer taps of the KV (SQUARE 5x5) kernel; divide by 12 for the filter.
KV_KERNEL: tuple[tuple[int, ...], ...] = (
    (-1, 2, -2, 2, -1),
    (2, -6, 8, -6, 2),
    (-2, 8, -12, 8, -2),
    (2, -6, 8, -6, 2),
    (-1, 2, -2, 2, -1),
)

#: Integer taps of the SQUARE 3x3 kernel; divide by 4.
KB_KERNEL: tuple[tuple[int, ...], ...] = ((-1, 2, -1), (2, -4, 2), (-1, 2, -1))

#: The 8 unit directions (row step, column step), starting to the right and turning clockwise.
DIRECTIONS: tuple[tuple[int, int], ...] = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def kv_kernel() -> torch.Tensor:
    """The KV filter as a ``[5, 5]`` float32 tensor (integer taps / 12)."""
    return torch.tensor(KV_KERNEL, dtype=torch.float32) / 12.0


def _line_kernel(coeffs: tuple[int, ...], first_offset: int, direction: tuple[int, int]) -> torch.Tensor:
    """5x5 kernel with ``coeffs[k]`` at ``centre + (first_offset + k) * direction``."""
    k = torch.zeros(5, 5)
    for i, c in enumerate(coeffs):
        step = first_offset + i
        k[2 + step * direction[0], 2 + step * direction[1]] = c
    return k


def _embed(kernel: torch.Tensor) -> torch.Tensor:
    """Centre a square odd-sized kernel in a 5x5 one."""
    out = torch.zeros(5, 5)
    p = (5 - kernel.shape[0]) // 2
    out[p:p + kernel.shape[0], p:p + kernel.shape[1]] = kernel
    return out


def srm_kernels() -> tuple[list[str], torch.Tensor]:
    """The 30 SRM residual kernels: ``(names, weight)``, ``weight`` of shape ``[30, 1, 5, 5]``.

    Each is the integer kernel of its residual divided by the denominator of its definition:

    * ``S1_d`` (8, d = 0..7 over :data:`DIRECTIONS`): 1st order, ``-1`` at the centre and
      ``+1`` at the neighbour in direction d; divided by 1.
    * ``S2_d`` (4, d = 0..3: horizontal, diagonal, vertical, anti-diagonal): 2nd order,
      ``1, -2, 1`` on the line through the centre (``-2`` at the centre); divided by 2.
    * ``S3_d`` (8, d = 0..7): 3rd order, ``1, -3, 3, -1`` at offsets -1, 0, 1, 2 along
      direction d (``-3`` at the centre); divided by 3.
    * ``SQUARE3x3``: :data:`KB_KERNEL` / 4; ``EDGE3x3_r`` (4, r = 0..3): its top two rows
      (bottom row zeroed) rotated by ``r`` quarter turns; / 4.
    * ``SQUARE5x5``: :data:`KV_KERNEL` / 12; ``EDGE5x5_r`` (4): its top three rows (last two
      zeroed) rotated by ``r`` quarter turns; / 12.

    All smaller kernels are centred in 5x5. Every kernel sums to zero.
    """
    names: list[str] = []
    kernels: list[torch.Tensor] = []
    for d, direction in enumerate(DIRECTIONS):
        names.append(f"S1_{d}")
        kernels.append(_line_kernel((-1, 1), 0, direction))
    for d, direction in enumerate(DIRECTIONS[:4]):
        names.append(f"S2_{d}")
        kernels.append(_line_kernel((1, -2, 1), -1, direction) / 2)
    for d, direction in enumerate(DIRECTIONS):
        names.append(f"S3_{d}")
        kernels.append(_line_kernel((1, -3, 3, -1), -1, direction) / 3)
    kb = torch.tensor(KB_KERNEL, dtype=torch.float32)
    names.append("SQUARE3x3")
    kernels.append(_embed(kb) / 4)
    edge3 = kb.clone()
    edge3[2:] = 0
    for r in range(4):
        names.append(f"EDGE3x3_{r}")
        kernels.append(_embed(torch.rot90(edge3, r)) / 4)
    kv = torch.tensor(KV_KERNEL, dtype=torch.float32)
    names.append("SQUARE5x5")
    kernels.append(kv / 12)
    edge5 = kv.clone()
    edge5[3:] = 0
    for r in range(4):
        names.append(f"EDGE5x5_{r}")
        kernels.append(torch.rot90(edge5, r) / 12)
    return names, torch.stack(kernels).unsqueeze(1)


class HighPassFilter(nn.Module):
    """Fixed convolution ``[N, C, H, W] -> [N, K, H, W]`` ('same' zero padding), not trained.

    ``kernel``: ``[K, C, k, k]`` (or ``[k, k]`` for one channel in and out), odd ``k``. It is
    stored as a buffer, so it is saved in the state dict but is not a parameter.
    """

    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        if kernel.ndim == 2:
            kernel = kernel[None, None]
        if kernel.ndim != 4 or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 == 0:
            raise ValueError(f"kernel: expected [K, C, k, k] with odd k, got shape {tuple(kernel.shape)}")
        self.register_buffer("weight", kernel.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), padding=self.weight.shape[-1] // 2)


class TLU(nn.Module):
    """Truncated linear unit: ``clamp(x, -threshold, threshold)``, any shape."""

    def __init__(self, threshold: float = 3.0) -> None:
        super().__init__()
        if not threshold > 0:
            raise ValueError(f"threshold: expected a positive number, got {threshold!r}")
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-self.threshold, self.threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"
