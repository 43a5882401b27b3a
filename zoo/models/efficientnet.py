"""EfficientNet-B0 .. B7.

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019, in the layout of timm's ``efficientnet_b0`` .. ``efficientnet_b7`` (PyTorch
"same"-size symmetric padding ``k // 2``, BatchNorm eps 1e-5).

B0 is a 3x3 stride-2 stem (32 channels), seven stages of MBConv blocks (Table 1 of the paper:
a depthwise-separable first stage of expansion 1, then inverted residuals of expansion 6,
all with SiLU and a Squeeze-and-Excitation a quarter of the block's input width), a 1x1 conv
to 1280 channels, global average pooling, dropout and the classifier. B1..B7 scale it by the
compound coefficients (width, depth): every width becomes ``round_filters(c) =
make_divisible(c * width, 8)`` and every stage's repeat count ``ceil(r * depth)``.
Stochastic depth (``drop_path_rate``) grows linearly with the block index, ``rate * i / n``
over the ``n`` blocks (block 0 never drops).

Parameter names follow timm's (``conv_stem``, ``bn1``, ``blocks.i.j.*``, ``conv_head``,
``bn2``), except the SE FCs (``se.fc1`` / ``se.fc2``) and the classifier (``fc``).
:func:`convert_from_timm` and :func:`convert_from_torchvision` map the two libraries'
layouts. torchvision's B0..B4 compute exactly what timm's do; its B5..B7 use BatchNorm
eps 1e-3 (and momentum 0.01): build the zoo net with ``bn_eps=1e-3`` for the same outputs
from torchvision's weights (their keys load either way).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from ..nn import DepthwiseSeparable, MBConv, make_divisible
from ..nn.backbone import ClassifierBackbone
from ..nn.se import from_timm_keys
from ..registry import register_model

# B0, one row per stage: (expansion, depthwise kernel, stride of its first block, output width, repeats)
EFFICIENTNET_B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHS, HEAD_CHS, SE_RATIO = 32, 1280, 0.25
# ``blocks[a:b]`` of each feature stage; index 0 also runs the stem. Each ends at the last
# stage before the next stride-2 one, as timm's feature_info (blocks.0 / 1 / 2 / 4 / 6).
_STAGE_BLOCKS = ((0, 1), (1, 2), (2, 3), (3, 5), (5, 7))

# (width multiplier, depth multiplier, paper resolution, dropout) per variant
EFFICIENTNET_PARAMS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}


def round_filters(channels: int, width_mult: float) -> int:
    """``channels * width_mult`` rounded to a multiple of 8 (never more than 10% down)."""
    return make_divisible(channels * width_mult, 8)


def round_repeats(repeats: int, depth_mult: float) -> int:
    """``ceil(repeats * depth_mult)``."""
    return int(math.ceil(repeats * depth_mult))


class EfficientNet(ClassifierBackbone, nn.Module):
    """EfficientNet backbone + classifier.

    Input ``[N, in_chans, H, W]``. ``forward_features`` returns ``[N, num_features, H/32, W/32]``
    (after ``conv_head`` -> BN -> SiLU; ``num_features = round_filters(1280)``);
    ``forward_head`` pools, applies dropout (``drop_rate``) and the classifier:
    ``[N, num_classes]``.

    ``features_only=True``: no head and no ``conv_head``; ``forward`` returns the maps at
    ``out_indices``: 0 = stem + ``blocks.0`` (stride 2), 1 = ``blocks.1`` (4), 2 = ``blocks.2``
    (8), 3 = ``blocks.3..4`` (16), 4 = ``blocks.5..6`` (32) -- timm's feature_info.

    ``bn_eps``: every BatchNorm's eps (1e-5 as timm; torchvision's B5..B7 use 1e-3).
    ``zero_init_residual``: zero the last BN's scale of every residual MBConv, so that each
    starts as the identity (off by default, as in timm; it steadies short runs from scratch).
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        bn_eps: float = 1e-5,
        zero_init_residual: bool = False,
        features_only: bool = False,
        out_indices: Sequence[int] = (1, 2, 3, 4),
    ) -> None:
        super().__init__()
        if not width_mult > 0 or not depth_mult > 0:
            raise ValueError(f"width_mult, depth_mult: expected positive multipliers, got {width_mult}, {depth_mult}")
        if not 0.0 <= drop_path_rate <= 1.0:
            raise ValueError(f"drop_path_rate: expected a probability in [0, 1], got {drop_path_rate}")
        if not bn_eps > 0:
            raise ValueError(f"bn_eps: expected > 0, got {bn_eps}")
        self._init_backbone(in_chans, drop_rate)
        self.drop_path_rate = float(drop_path_rate)

        chs = round_filters(STEM_CHS, width_mult)
        self.conv_stem = nn.Conv2d(in_chans, chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(chs, eps=bn_eps)
        self.act1 = nn.SiLU(inplace=True)

        repeats = [round_repeats(r, depth_mult) for *_, r in EFFICIENTNET_B0_STAGES]
        total, idx = sum(repeats), 0
        stages, stage_chs = [], []
        for (expand, k, stride, c, _), n in zip(EFFICIENTNET_B0_STAGES, repeats):
            out = round_filters(c, width_mult)
            blocks = []
            for j in range(n):
                s, dpr = stride if j == 0 else 1, drop_path_rate * idx / total
                if expand == 1:
                    blocks.append(DepthwiseSeparable(chs, out, k, s, SE_RATIO, dpr, bn_eps))
                else:
                    blocks.append(MBConv(chs, out, k, s, expand, SE_RATIO, dpr, bn_eps))
                chs, idx = out, idx + 1
            stages.append(nn.Sequential(*blocks))
            stage_chs.append(chs)
        self.blocks = nn.Sequential(*stages)

        info = [
            dict(num_chs=stage_chs[b - 1], reduction=2 * 2**i, module=f"blocks.{b - 1}")
            for i, (_, b) in enumerate(_STAGE_BLOCKS)
        ]
        self._setup_features(info, features_only, out_indices)
        head_chs = round_filters(HEAD_CHS, width_mult)
        if not self.features_only:
            self.conv_head = nn.Conv2d(chs, head_chs, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(head_chs, eps=bn_eps)
            self.act2 = nn.SiLU(inplace=True)
        self._build_head(head_chs, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool = False) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init over fan-out, per group (timm's, for depthwise convs)
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # every residual block starts as the identity
            for m in self.modules():
                if isinstance(m, MBConv) and m.has_skip:
                    nn.init.zeros_(m.bn3.weight)

    def _stem_stage(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](self.act1(self.bn1(self.conv_stem(x))))

    def feature_stages(self) -> list:
        """stem + ``blocks[0]`` (stride 2), ``blocks[1]``, ``blocks[2]``, ``blocks[3:5]``,
        ``blocks[5:7]`` (strides 4 .. 32)."""
        return [self._stem_stage] + [self.blocks[a:b] for a, b in _STAGE_BLOCKS[1:]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_chans, H, W] -> [N, num_features, H/32, W/32]`` (with ``features_only``: the
        last stage's map, before the absent ``conv_head``)."""
        x = super().forward_features(x)
        if self.features_only:
            return x
        return self.act2(self.bn2(self.conv_head(x)))


def convert_from_timm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's ``efficientnet_bX`` state dict in the zoo's names: ``.se.conv_reduce.`` -> ``.se.fc1.``,
    ``.se.conv_expand.`` -> ``.se.fc2.``, ``classifier.`` -> ``fc.`` (:func:`zoo.nn.se.from_timm_keys`);
    every other key is the zoo's already."""
    return from_timm_keys(sd)


# torchvision's ``features.i.j.block.<b>.<c>`` -> the zoo's block child, per block type
_TV_MBCONV = {
    "0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2": "se", "3.0": "conv_pwl", "3.1": "bn3"
}
_TV_DS = {"0.0": "conv_dw", "0.1": "bn1", "1": "se", "2.0": "conv_pw", "2.1": "bn2"}


def _tv_key(p: list[str], last: int, mbconv: set) -> str:
    """One torchvision key (split at the dots) in the zoo's name; IndexError/ValueError if unknown."""
    if p[:2] == ["classifier", "1"]:
        return ".".join(["fc"] + p[2:])
    if p[0] != "features":
        return ".".join(p)
    if p[1] in ("0", str(last)):
        names = ("conv_stem", "bn1") if p[1] == "0" else ("conv_head", "bn2")
        return ".".join([names[int(p[2])]] + p[3:])
    if p[3] != "block":
        raise ValueError
    table = _TV_MBCONV if (p[1], p[2]) in mbconv else _TV_DS
    pos, tail = (f"{p[4]}.{p[5]}", p[6:]) if f"{p[4]}.{p[5]}" in table else (p[4], p[5:])
    return ".".join([f"blocks.{int(p[1]) - 1}.{p[2]}", table[pos]] + tail)


def convert_from_torchvision(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ``efficientnet_bX`` state dict in the zoo's names.

    ``features.0.{0,1}`` -> ``conv_stem`` / ``bn1``; ``features.i.j.block.*`` (1 <= i <= 7) ->
    ``blocks.{i-1}.j.*`` (an MBConv has ``block.0`` expand, ``block.1`` depthwise, ``block.2``
    SE, ``block.3`` project; the expansion-1 block has no expand); the last ``features.8.{0,1}``
    -> ``conv_head`` / ``bn2``; ``classifier.1`` -> ``fc``. The keys load into every variant;
    the outputs equal torchvision's for B0..B4, and for B5..B7 with ``bn_eps=1e-3``.
    """
    parts_of = {k: k.split(".") for k in sd}
    feature_ids = [int(p[1]) for p in parts_of.values() if p[0] == "features" and len(p) > 2 and p[1].isdigit()]
    if not feature_ids:
        raise KeyError("no 'features.*' keys")
    last = max(feature_ids)
    mbconv = {(p[1], p[2]) for p in parts_of.values() if p[0] == "features" and p[3:5] == ["block", "3"]}
    out = {}
    for k, v in sd.items():
        try:
            out[_tv_key(parts_of[k], last, mbconv)] = v
        except (IndexError, ValueError):
            raise KeyError(f"unexpected key {k!r}") from None
    return out


_TAN = "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019"


def _efficientnet(name: str):
    _, _, res, dropout = EFFICIENTNET_PARAMS[name]
    return register_model(
        family="efficientnet",
        task="classification",
        input_size=(3, res, res),
        paper=_TAN,
        reference=f"timm:{name}",
        converters={"timm": convert_from_timm, "torchvision": convert_from_torchvision},
        num_classes=1000,
        drop_rate=dropout,
        drop_path_rate=0.2,
    )


def _build(name: str, **kwargs) -> EfficientNet:
    width, depth, _, _ = EFFICIENTNET_PARAMS[name]
    return EfficientNet(width_mult=width, depth_mult=depth, **kwargs)


@_efficientnet("efficientnet_b0")
def efficientnet_b0(**kwargs) -> EfficientNet:
    return _build("efficientnet_b0", **kwargs)


@_efficientnet("efficientnet_b1")
def efficientnet_b1(**kwargs) -> EfficientNet:
    return _build("efficientnet_b1", **kwargs)


@_efficientnet("efficientnet_b2")
def efficientnet_b2(**kwargs) -> EfficientNet:
    return _build("efficientnet_b2", **kwargs)


@_efficientnet("efficientnet_b3")
def efficientnet_b3(**kwargs) -> EfficientNet:
    return _build("efficientnet_b3", **kwargs)


@_efficientnet("efficientnet_b4")
def efficientnet_b4(**kwargs) -> EfficientNet:
    return _build("efficientnet_b4", **kwargs)


@_efficientnet("efficientnet_b5")
def efficientnet_b5(**kwargs) -> EfficientNet:
    return _build("efficientnet_b5", **kwargs)


@_efficientnet("efficientnet_b6")
def efficientnet_b6(**kwargs) -> EfficientNet:
    return _build("efficientnet_b6", **kwargs)


@_efficientnet("efficientnet_b7")
def efficientnet_b7(**kwargs) -> EfficientNet:
    return _build("efficientnet_b7", **kwargs)
