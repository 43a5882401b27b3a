"""SRNet, the steganalysis residual network of Boroumand, Chen and Fridrich, "Deep Residual
Network for Steganalysis of Digital Images" (IEEE TIFS 2019), and ``srnet_rgb``, its
colour variant with one front stream per colour channel.

Layers (types in :mod:`zoo.nn.srnet`; every conv 3x3 stride 1 padding 1, BN after each):

- L1-L2: Type 1 with 64 and 16 channels;
- L3-L7: Type 2, 16 channels (L1-L7 keep the full resolution: no pooling, so the stego noise
  residual is not averaged away);
- L8-L11: Type 3 with 16, 64, 128, 256 channels (each halves the resolution);
- L12: Type 4, 512 channels, then global average pooling;
- a fully connected layer 512 -> ``num_classes`` (2: cover / stego).

The input is the image's pixel values as floats on the 0..255 scale (no normalisation:
the registered mean is 0 and std 1). ``[N, C, H, W] -> [N, num_classes]`` logits.

``srnet_rgb`` splits the net after L7 (the last unpooled layer): each of the ``in_chans``
colour channels goes through its own copy of L1-L7 (1 channel in, 16 out); the streams'
16-channel outputs are concatenated (48 channels for RGB) and the rest (L8 onward, whose first
convolutions take 48 channels) fuses them.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from ..nn.checks import check_image_batch, check_in_chans
from ..nn.srnet import SRNetType1, SRNetType2, SRNetType3, SRNetType4
from ..registry import register_model

_PAPER = (
    "Boroumand, Chen, Fridrich, Deep Residual Network for Steganalysis of Digital Images, "
    "IEEE TIFS 2019"
)
_REFERENCE = "paper:Boroumand et al. 2019 (SRNet), TIFS 14(5)"

#: output channels of the Type 3 layers L8-L11, then of the Type 4 layer L12.
TYPE3_CHANNELS = (16, 64, 128, 256)
TYPE4_CHANNELS = 512


def srnet_front(in_chans: int = 1, bias: bool = False) -> nn.Sequential:
    """L1-L7, the unpooled layers: ``[N, in_chans, H, W] -> [N, 16, H, W]``."""
    return nn.Sequential(
        SRNetType1(in_chans, 64, bias),
        SRNetType1(64, 16, bias),
        *(SRNetType2(16, bias) for _ in range(5)),
    )


def srnet_back(cin: int = 16, bias: bool = False) -> nn.Sequential:
    """L8-L12: ``[N, cin, H, W] -> [N, 512]`` (four Type 3 layers, then Type 4 with global pooling)."""
    layers: list[nn.Module] = []
    for cout in TYPE3_CHANNELS:
        layers.append(SRNetType3(cin, cout, bias))
        cin = cout
    layers.append(SRNetType4(cin, TYPE4_CHANNELS, bias))
    return nn.Sequential(*layers)


def _check_common(num_classes: int, drop_rate: float) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if not 0.0 <= float(drop_rate) < 1.0:
        raise ValueError(f"drop_rate: expected a float in [0, 1), got {drop_rate!r}")


class _SRNetBase(nn.Module):
    """What SRNet and SRNet-RGB share: the argument checks, L8-L12 (:func:`srnet_back`), the
    dropout and the classifier. A subclass registers its unpooled front layers in
    :meth:`_make_front`, which returns their output channels (L8's input)."""

    def __init__(self, num_classes: int, in_chans: int, drop_rate: float, conv_bias: bool) -> None:
        super().__init__()
        _check_common(num_classes, drop_rate)
        self.in_chans = check_in_chans(in_chans)
        self.num_classes = num_classes
        self.num_features = TYPE4_CHANNELS
        self.back = srnet_back(self._make_front(conv_bias), conv_bias)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(TYPE4_CHANNELS, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The initialisation of the authors' code: every conv He-normal (fan in, std
        ``sqrt(2 / fan_in)``) with conv biases (``conv_bias``) 0.2, the classifier normal with std
        0.01 and bias 0, batch norms at scale 1 and shift 0. (torch's default conv initialisation,
        std ``1 / sqrt(3 fan_in)``, is ~2.45x smaller.)"""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def _make_front(self, conv_bias: bool) -> int:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """``[N, 512] -> [N, num_classes]``."""
        return self.fc(self.drop(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class SRNet(_SRNetBase):
    """SRNet. ``forward``: ``[N, in_chans, H, W]`` float pixels (0..255) -> ``[N, num_classes]``.

    ``conv_bias`` gives every convolution a bias (the paper's have none).
    """

    def __init__(self, num_classes: int = 2, in_chans: int = 1, drop_rate: float = 0.0,
                 conv_bias: bool = False) -> None:
        super().__init__(num_classes, in_chans, drop_rate, conv_bias)

    def _make_front(self, conv_bias: bool) -> int:
        self.front = srnet_front(self.in_chans, conv_bias)
        return 16

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_chans, H, W] -> [N, 512]`` (pooled features before the classifier)."""
        check_image_batch(x, self.in_chans)
        return self.back(self.front(x))


class SRNetRGB(_SRNetBase):
    """SRNet with one L1-L7 stream per colour channel, fused from L8 on.

    ``forward``: ``[N, in_chans, H, W]`` float pixels (0..255) -> ``[N, num_classes]``.
    ``streams[c]`` sees only channel ``c``; their ``[N, 16, H, W]`` outputs are concatenated to
    ``[N, 16 * in_chans, H, W]`` and go through L8-L12 and the classifier.
    """

    def __init__(self, num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.0,
                 conv_bias: bool = False) -> None:
        super().__init__(num_classes, in_chans, drop_rate, conv_bias)

    def _make_front(self, conv_bias: bool) -> int:
        self.streams = nn.ModuleList(srnet_front(1, conv_bias) for _ in range(self.in_chans))
        return 16 * self.in_chans

    def forward_streams(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The per-channel stream outputs: ``in_chans`` tensors ``[N, 16, H, W]``."""
        check_image_batch(x, self.in_chans)
        return [stream(x[:, c:c + 1]) for c, stream in enumerate(self.streams)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_chans, H, W] -> [N, 512]``."""
        return self.back(torch.cat(self.forward_streams(x), dim=1))


def _build(cls: type, name: str, kwargs: dict) -> nn.Module:
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; expected some of {sorted(allowed)}")
    return cls(**kwargs)


@register_model(
    family="srnet", task="steganalysis", input_size=(1, 256, 256), mean=(0.0,), std=(1.0,),
    paper=_PAPER, reference=_REFERENCE,
    verified="layer list and exact parameter counts (4,776,962; 4,779,618 with conv biases) hand-summed",
    num_classes=2,
)
def srnet(**kwargs) -> SRNet:
    """SRNet for grey images: ``[N, 1, H, W]`` pixels (0..255) -> ``[N, 2]``."""
    return _build(SRNet, "srnet", kwargs)


@register_model(
    family="srnet", task="steganalysis", input_size=(3, 256, 256), mean=(0.0,) * 3, std=(1.0,) * 3,
    paper=_PAPER, reference=_REFERENCE,
    verified="split after L7, exact parameter count hand-summed, streams tested independent",
    num_classes=2,
)
def srnet_rgb(**kwargs) -> SRNetRGB:
    """SRNet with per-channel L1-L7 streams: ``[N, 3, H, W]`` pixels (0..255) -> ``[N, 2]``."""
    return _build(SRNetRGB, "srnet_rgb", kwargs)
