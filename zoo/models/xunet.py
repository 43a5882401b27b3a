"""XuNet: the CNN steganalyser of G. Xu, H.-Z. Wu, Y.-Q. Shi, "Structural Design of
Convolutional Neural Networks for Steganalysis", IEEE Signal Processing Letters 23(5), 2016.

Input: grey images ``[N, 1, H, W]`` as float pixel values on the 0..255 scale (no
normalisation). Output: ``[N, 2]`` logits (cover, stego).

Layout: a fixed KV high-pass filter (5x5, not trained, a buffer) -> five groups

* G1: conv 8@5x5 (no bias) -> ABS -> BN -> TanH -> avgpool 5/2 (padding 2)
* G2: conv 16@5x5 -> BN -> TanH -> avgpool 5/2
* G3, G4: conv 32 / 64 @1x1 -> BN -> ReLU -> avgpool 5/2
* G5: conv 128@1x1 -> BN -> ReLU -> global average pool

-> fully connected 128 -> 2. Convolutions have no bias (BN follows each). Trainable
parameters with one input channel (14,906)::

    G1 conv 1*8*25 = 200      BN 2*8   = 16
    G2 conv 8*16*25 = 3200    BN 2*16  = 32
    G3 conv 16*32 = 512       BN 2*32  = 64
    G4 conv 32*64 = 2048      BN 2*64  = 128
    G5 conv 64*128 = 8192     BN 2*128 = 256
    FC 128*2 + 2 = 258

Any input of at least 1x1 works (the convolutions are padded, the last pool is global).
"""
from __future__ import annotations

from torch import Tensor, nn

from ..nn.checks import check_image_batch, check_in_chans
from ..nn.stego_filters import HighPassFilter, kv_kernel
from ..registry import register_model

_XU = "Xu, Wu, Shi, Structural Design of Convolutional Neural Networks for Steganalysis, IEEE SPL 2016"


class XuGroup(nn.Sequential):
    """conv (no bias) -> [ABS] -> BN -> TanH/ReLU -> avgpool 5/2 or global average.

    ``[N, cin, H, W] -> [N, cout, ceil(H/2), ceil(W/2)]`` (or ``[N, cout, 1, 1]`` if global).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, act: str, absolute: bool = False,
                 global_pool: bool = False) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)]
        if absolute:
            layers.append(_Abs())
        layers += [nn.BatchNorm2d(cout), nn.Tanh() if act == "tanh" else nn.ReLU(inplace=True)]
        layers.append(nn.AdaptiveAvgPool2d(1) if global_pool else nn.AvgPool2d(5, stride=2, padding=2))
        super().__init__(*layers)


class _Abs(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.abs()


class XuNet(nn.Module):
    """XuNet: ``[N, in_chans, H, W]`` pixel values (0..255) -> ``[N, num_classes]`` logits."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.in_chans = check_in_chans(in_chans)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        # The same KV filter on every input channel, summed: one residual map.
        self.hpf = HighPassFilter(kv_kernel().expand(1, in_chans, 5, 5))
        self.features = nn.Sequential(
            XuGroup(1, 8, 5, "tanh", absolute=True),
            XuGroup(8, 16, 5, "tanh"),
            XuGroup(16, 32, 1, "relu"),
            XuGroup(32, 64, 1, "relu"),
            XuGroup(64, 128, 1, "relu", global_pool=True),
        )
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(128, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[N, in_chans, H, W] -> [N, 128]``."""
        check_image_batch(x, self.in_chans)
        return self.features(self.hpf(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in_chans, H, W]`` (0..255 pixel values) -> ``[N, num_classes]`` logits."""
        return self.fc(self.drop(self.forward_features(x)))


@register_model(
    family="xunet", task="steganalysis", input_size=(1, 256, 256), mean=(0.0,), std=(1.0,), paper=_XU,
    reference="paper:Xu2016", verified="parameter count and KV filter from the paper", num_classes=2,
)
def xunet(**kwargs) -> XuNet:
    unknown = sorted(set(kwargs) - {"num_classes", "in_chans", "drop_rate"})
    if unknown:
        raise ValueError(f"xunet: unknown option(s) {unknown}; expected some of ['drop_rate', 'in_chans', 'num_classes']")
    return XuNet(**kwargs)
