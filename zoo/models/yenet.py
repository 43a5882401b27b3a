"""YeNet: the CNN steganalyser of J. Ye, J. Ni, Y. Yi, "Deep Learning Hierarchical
Representations for Image Steganalysis", IEEE Transactions on Information Forensics and
Security 12(11), 2017.

Input: grey images ``[N, 1, 256, 256]`` as float pixel values on the 0..255 scale (no
normalisation). Output: ``[N, 2]`` logits (cover, stego).

Layout (no padding anywhere; every convolution has a bias):

* L1: conv 30@5x5, initialised with the 30 SRM high-pass kernels
  (:func:`zoo.nn.stego_filters.srm_kernels`) and trained -> TLU (clamp to [-3, 3])
* L2, L3, L4: conv 30@3x3 -> ReLU; avgpool 2/2 after L4
* L5, L6, L7: conv 32@5x5 -> ReLU -> avgpool 3/2
* L8: conv 16@3x3 -> ReLU
* L9: conv 16@3x3 stride 3 -> ReLU
* FC: 16*3*3 = 144 -> 2

Spatial sizes at 256: 252, 250, 248, 246 -> 123, 119 -> 59, 55 -> 27, 23 -> 11, 9, 3. The
fully connected layer fixes the L9 output at 3x3, which holds for inputs of 256 to 303
pixels a side; other sizes raise ``ValueError``. Parameters (107,700)::

    L1 30*25 + 30 = 780
    L2..L4 3 * (30*30*9 + 30) = 24,390
    L5 30*32*25 + 32 = 24,032      L6, L7 2 * (32*32*25 + 32) = 51,264
    L8 32*16*9 + 16 = 4,624        L9 16*16*9 + 16 = 2,320
    FC 144*2 + 2 = 290
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn.checks import check_image_batch, check_in_chans
from ..nn.stego_filters import TLU, srm_kernels
from ..registry import register_model

_YE = ("Ye, Ni, Yi, Deep Learning Hierarchical Representations for Image Steganalysis, "
       "IEEE TIFS 2017")


class YeNet(nn.Module):
    """YeNet: ``[N, in_chans, H, W]`` pixel values (0..255), H, W in 256..303 -> ``[N, num_classes]``."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, drop_rate: float = 0.0,
                 tlu_threshold: float = 3.0) -> None:
        super().__init__()
        self.in_chans = check_in_chans(in_chans)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 30, 5)
        with torch.no_grad():
            # Each SRM kernel on every input channel, divided among them.
            self.conv1.weight.copy_(srm_kernels()[1].expand(30, in_chans, 5, 5) / in_chans)
            self.conv1.bias.zero_()
        self.tlu = TLU(tlu_threshold)
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(30, 30, 3), relu(),
            nn.Conv2d(30, 30, 3), relu(),
            nn.Conv2d(30, 30, 3), relu(),
            nn.AvgPool2d(2, 2),
            nn.Conv2d(30, 32, 5), relu(), nn.AvgPool2d(3, 2),
            nn.Conv2d(32, 32, 5), relu(), nn.AvgPool2d(3, 2),
            nn.Conv2d(32, 32, 5), relu(), nn.AvgPool2d(3, 2),
            nn.Conv2d(32, 16, 3), relu(),
            nn.Conv2d(16, 16, 3, stride=3), relu(),
        )
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(16 * 3 * 3, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[N, in_chans, H, W] -> [N, 16, 3, 3]``."""
        check_image_batch(x, self.in_chans)
        if not (256 <= x.shape[-2] <= 303 and 256 <= x.shape[-1] <= 303):
            raise ValueError(
                f"x: YeNet's fully connected layer needs inputs of 256..303 pixels a side "
                f"(256 in the paper), got {tuple(x.shape[-2:])}"
            )
        return self.features(self.tlu(self.conv1(x)))

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in_chans, H, W]`` (0..255 pixel values) -> ``[N, num_classes]`` logits."""
        return self.fc(self.drop(self.forward_features(x).flatten(1)))


@register_model(
    family="yenet", task="steganalysis", input_size=(1, 256, 256), mean=(0.0,), std=(1.0,), paper=_YE,
    reference="paper:Ye2017", verified="parameter count and SRM initialisation from the paper", num_classes=2,
)
def yenet(**kwargs) -> YeNet:
    allowed = ["drop_rate", "in_chans", "num_classes", "tlu_threshold"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"yenet: unknown option(s) {unknown}; expected some of {allowed}")
    return YeNet(**kwargs)
