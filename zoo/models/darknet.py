"""Darknet-53 (Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018).

The backbone of YOLOv3, as in darknet's ``cfg/darknet53.cfg`` / ``cfg/yolov3.cfg``:

* every convolution is a darknet ``[convolutional]`` layer with
  ``batch_normalize=1, activation=leaky``: ``Conv2d(bias=False) -> BatchNorm2d ->
  LeakyReLU(0.1)``, padding ``k // 2`` (:class:`ConvBNAct`);
* a 3x3 stem conv of 32 channels, then five stages, each a stride-2 3x3 conv
  followed by ``N`` residual blocks ``[1x1 C/2, 3x3 C] + x`` with
  ``(C, N) = (64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)``;
* 52 convolutions, 40,584,928 parameters in the body.

``darknet53`` is the ImageNet classifier: body + global average pool + a linear
layer (darknet's final 1x1 ``[convolutional]`` of 1000 filters with a bias), 41,609,928
parameters -- the same count as ``timm.create_model("darknet53")``, whose state dict
loads through :func:`convert_from_timm` (below, given to the registry). Note that timm builds
its darknet53 with ``LeakyReLU(0.01)`` (torch's default slope) where darknet uses
0.1: build with ``negative_slope=0.01`` to reproduce timm's outputs.

With ``se=True`` every residual block gets a Squeeze-and-Excitation block
(:class:`zoo.nn.SEBlock`, the fused op :func:`zoo.ops.squeeze_excite`) on its branch,
after the 3x3 conv and before the shortcut add (the ``yolov3_se`` backbone).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..nn import SEBlock
from ..nn.backbone import ClassifierBackbone
from ..registry import register_model

#: (channels, residual blocks) of the five stages.
DARKNET53_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))

#: darknet's ``activation=leaky`` slope.
LEAKY_SLOPE = 0.1


class ConvBNAct(nn.Module):
    """darknet ``[convolutional]`` with ``batch_normalize=1``: conv (no bias) -> BN -> LeakyReLU.

    ``[N, cin, H, W] -> [N, cout, H/stride, W/stride]`` (padding ``kernel_size // 2``).
    """

    def __init__(
        self, cin: int, cout: int, kernel_size: int = 1, stride: int = 1, negative_slope: float = LEAKY_SLOPE
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU(negative_slope, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DarkResidual(nn.Module):
    """Darknet residual block: ``x + se(conv2(conv1(x)))`` with a 1x1 to ``C/2`` and a 3x3 back to ``C``.

    The optional SE block (``se=True``) scales the branch output before the
    shortcut add. ``[N, C, H, W] -> [N, C, H, W]``.
    """

    def __init__(
        self, channels: int, se: bool = False, se_reduction: float = 16, negative_slope: float = LEAKY_SLOPE
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"channels: expected an even number, got {channels}")
        self.conv1 = ConvBNAct(channels, channels // 2, 1, negative_slope=negative_slope)
        self.conv2 = ConvBNAct(channels // 2, channels, 3, negative_slope=negative_slope)
        self.se = SEBlock(channels, reduction=se_reduction) if se else None

    def zero_init_last(self) -> None:
        """Start the branch at 0 (the last BatchNorm's scale): the block is the identity at init."""
        nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if self.se is not None:
            out = self.se(out)
        return x + out


class DarkStage(nn.Module):
    """A stride-2 3x3 conv to ``channels``, then ``depth`` residual blocks."""

    def __init__(
        self,
        cin: int,
        channels: int,
        depth: int,
        se: bool = False,
        se_reduction: float = 16,
        negative_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self.conv_down = ConvBNAct(cin, channels, 3, stride=2, negative_slope=negative_slope)
        self.blocks = nn.Sequential(
            *(DarkResidual(channels, se, se_reduction, negative_slope) for _ in range(depth))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.conv_down(x))


class Darknet53(ClassifierBackbone, nn.Module):
    """Darknet-53 body + (optional) classifier.

    Input ``[N, in_chans, H, W]``. ``forward_features`` returns the stride-32 map
    ``[N, 1024, H/32, W/32]`` (ceil division for sizes that are not multiples of 32);
    ``forward_head`` average-pools and classifies it to ``[N, num_classes]`` logits.
    ``num_classes=0`` keeps no classifier (``forward`` then returns pooled features).

    With ``features_only=True`` the net has no classifier and ``forward`` returns
    the list of maps named by ``out_indices``: 0 = stem (stride 1, 32 channels),
    k = stage k (stride ``2**k``; channels 64, 128, 256, 512, 1024). The default
    ``(3, 4, 5)`` gives the stride 8 / 16 / 32 maps (256 / 512 / 1024 channels)
    the YOLOv3 neck uses. ``feature_info`` lists their channels and strides.
    (Index meanings are timm's for its ``darknet53``.)

    Args:
        num_classes: classifier outputs (0: none).
        in_chans: input channels.
        se: a Squeeze-and-Excitation block in every residual block (before the add).
        se_reduction: SE reduction ratio.
        negative_slope: LeakyReLU slope (darknet 0.1; timm's darknet53 uses 0.01).
        drop_rate: dropout before the classifier.
        features_only, out_indices: see above.
        zero_init_residual: start every residual branch's last BatchNorm scale at 0, so each
            residual block is the identity at init (Goyal et al., 2017; faster early training).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        se: bool = False,
        se_reduction: float = 16,
        negative_slope: float = LEAKY_SLOPE,
        drop_rate: float = 0.0,
        features_only: bool = False,
        out_indices: Sequence[int] = (3, 4, 5),
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self._init_backbone(in_chans, drop_rate)

        self.stem = ConvBNAct(in_chans, 32, 3, negative_slope=negative_slope)
        info = [dict(num_chs=32, reduction=1, module="stem")]
        cin = 32
        stages = []
        for i, (channels, depth) in enumerate(DARKNET53_STAGES):
            stages.append(DarkStage(cin, channels, depth, se, se_reduction, negative_slope))
            cin = channels
            info.append(dict(num_chs=channels, reduction=2 ** (i + 1), module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self._setup_features(info, features_only, out_indices)
        self._build_head(cin, num_classes)
        self._init_weights(negative_slope, zero_init_residual)

    def _init_weights(self, negative_slope: float, zero_init_residual: bool) -> None:
        se_convs = {id(c) for m in self.modules() if isinstance(m, SEBlock) for c in (m.fc1, m.fc2)}
        for m in self.modules():  # SE blocks keep their own (torch default) init
            if isinstance(m, nn.Conv2d) and id(m) not in se_convs:
                nn.init.kaiming_normal_(m.weight, a=negative_slope, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            self.zero_init_blocks()

    def zero_init_blocks(self) -> None:
        """Start every residual branch at 0 (:meth:`DarkResidual.zero_init_last`)."""
        for m in self.modules():
            if isinstance(m, DarkResidual):
                m.zero_init_last()

    def feature_stages(self) -> list[nn.Module]:
        """The stem (stride 1), then the five stages (strides 2 .. 32)."""
        return [self.stem, *self.stages]

    def darknet_conv_order(self) -> list[tuple[nn.Module, nn.BatchNorm2d | None]]:
        """The layers a darknet ``.weights`` file stores, in cfg order: ``(conv, bn)`` pairs.

        The 52 body convs (each with its BN), then -- when the net has a classifier --
        the ``nn.Linear`` classifier as darknet53.cfg's final 1x1 conv with a bias
        (``(fc, None)``). SE blocks are not part of darknet files.
        """
        order: list[tuple[nn.Module, nn.BatchNorm2d | None]] = [(self.stem.conv, self.stem.bn)]
        for stage in self.stages:
            order.append((stage.conv_down.conv, stage.conv_down.bn))
            for block in stage.blocks:
                order += [(block.conv1.conv, block.conv1.bn), (block.conv2.conv, block.conv2.bn)]
        if isinstance(self.fc, nn.Linear):
            order.append((self.fc, None))
        return order


_YOLOV3 = "Redmon & Farhadi, YOLOv3: An Incremental Improvement, arXiv:1804.02767, 2018"


def convert_from_timm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's ``darknet53`` state dict (its cspnet.py) in the zoo's names: ``stem.conv1.*`` ->
    ``stem.*`` and ``head.fc.*`` -> ``fc.*``; ``stages.i.conv_down`` and
    ``stages.i.blocks.j.conv1|conv2`` with their ``conv`` / ``bn`` children are the zoo's names
    already. (timm's LeakyReLU slope is 0.01: build with ``negative_slope=0.01`` for its outputs.)"""
    renames = (("stem.conv1.", "stem."), ("head.fc.", "fc."))
    out = {}
    for k, v in sd.items():
        for old, new in renames:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


@register_model(
    family="darknet",
    task="classification",
    input_size=(3, 256, 256),
    paper=_YOLOV3,
    reference="timm:darknet53",
    converters={"timm": convert_from_timm},
    num_classes=1000,
)
def darknet53(**kwargs) -> Darknet53:
    return Darknet53(**kwargs)
