"""Input checks shared by the nets: bad input raises ``ValueError`` naming the argument."""
from __future__ import annotations

import torch


def check_image_batch(x: torch.Tensor, in_chans: int, arg: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating ``[N, in_chans, H, W]`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{arg}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{arg}: expected a 4-D [N, C, H, W] batch, got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"{arg}: the net takes {in_chans} input channel(s) but got {x.shape[1]} "
            f"(shape {tuple(x.shape)}); build it with in_chans={x.shape[1]} or fix the input"
        )
    if not x.is_floating_point():
        raise ValueError(f"{arg}: expected a floating-point tensor, got {x.dtype}")


def check_in_chans(in_chans: int) -> int:
    """``in_chans`` as given; ``ValueError`` unless it is a positive int."""
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans: expected a positive int, got {in_chans!r}")
    return in_chans


def check_clip_batch(x: torch.Tensor, in_chans: int, arg: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating ``[B, T, in_chans, H, W]`` batch of clips."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{arg}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(f"{arg}: expected a 5-D [B, T, C, H, W] batch of clips, got shape {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"{arg}: expected at least one frame per clip, got shape {tuple(x.shape)}")
    if x.shape[2] != in_chans:
        raise ValueError(f"{arg}: the net takes {in_chans} channel(s) per frame but got {x.shape[2]} "
                         f"(shape {tuple(x.shape)}, expected [B, T, C, H, W])")
    if not x.is_floating_point():
        raise ValueError(f"{arg}: expected a floating-point tensor, got {x.dtype}")
