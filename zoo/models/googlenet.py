"""GoogLeNet (Inception v1).

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, in the batch-normalised form that
torchvision builds (``torchvision.models.googlenet``):

* every convolution is conv (no bias) - BN (eps 1e-3) - ReLU (:class:`zoo.nn.ConvBNReLU`);
* stem: 7x7/2 conv (64), 3x3/2 max-pool, 1x1 conv (64), 3x3 conv (192), 3x3/2 max-pool;
* Inception modules 3a, 3b, max-pool, 4a..4e, 2x2/2 max-pool, 5a, 5b (every max-pool with
  ``ceil_mode=True``), global average pooling, dropout 0.2 (``drop_rate``) and a linear layer;
* the 5x5 branch of each Inception module is a **3x3** convolution, as in torchvision (the paper
  has 5x5; see :class:`zoo.nn.InceptionBlock`);
* two auxiliary classifiers (:class:`zoo.nn.InceptionAux`, dropout 0.7) on the outputs of 4a and
  4d, used only while training (``aux_logits=True``, the default).

Parameters: 13,004,888 with the auxiliary heads, 6,624,904 without (1000 classes).

Outputs: in training mode with the auxiliary heads, ``forward`` returns
:class:`GoogLeNetOutputs` ``(logits, aux1, aux2)`` (each ``[N, num_classes]``; aux1 is the head on
4a, aux2 on 4d -- note torchvision's tuple orders them ``(logits, aux_logits2, aux_logits1)``);
:class:`zoo.tasks.Classifier` adds ``aux_weight`` times their cross-entropies to the loss. In eval
mode, or built with ``aux_logits=False``, it returns the logits tensor only.

There is no ``transform_input``: torchvision's ImageNet checkpoint expects it to turn
ImageNet-normalised input into ``(x - 0.5) / 0.5``, so the zoo registers ``googlenet`` with
mean = std = (0.5, 0.5, 0.5) and the data module normalises the images that way itself.

Parameter names are torchvision's (``conv1.conv``, ``inception3a.branch2.0.conv``, ``aux1.fc1``,
``fc``, ...): its state dicts load with no renaming (layout ``"zoo"``). A state dict with the
auxiliary heads (torchvision's ImageNet checkpoint holds them, untrained) loads into a net built
with ``aux_logits=False`` through :func:`drop_aux_heads` (layout ``"torchvision"``).
"""
from __future__ import annotations

import inspect
from typing import Mapping, NamedTuple, Sequence

import torch
from torch import nn

from ..nn.backbone import ClassifierBackbone
from ..nn.checks import check_image_batch
from ..nn.inception import ConvBNReLU, InceptionAux, InceptionBlock
from ..registry import register_model

#: (cin, c1, c3_reduce, c3, c5_reduce, c5, pool_proj) of each Inception module (the paper's table 1).
INCEPTION_CFG: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    """What a GoogLeNet with auxiliary heads returns while training: three ``[N, num_classes]``
    logits -- the main head, the head on Inception 4a (``aux1``) and on 4d (``aux2``)."""

    logits: torch.Tensor
    aux1: torch.Tensor
    aux2: torch.Tensor


class GoogLeNet(ClassifierBackbone, nn.Module):
    """GoogLeNet backbone + classifier (+ the two auxiliary classifiers).

    Input ``[N, in_chans, H, W]`` (any H, W >= 15; 32x32 works). ``forward_features`` returns
    the output of Inception 5b, ``[N, 1024, ~H/32, ~W/32]`` (the pools round up);
    ``forward_head`` pools, applies dropout (``drop_rate``) and classifies it to ``[N, num_classes]``.
    ``forward``: see the module docstring (a :class:`GoogLeNetOutputs` while training with
    ``aux_logits``, else the logits).

    Feature levels (``features_only`` / ``out_indices``): 0 = ``conv1`` (stride 2, 64 channels),
    1 = max-pool + ``conv2`` + ``conv3`` (stride 4, 192), 2 = max-pool + 3a + 3b (stride 8, 480),
    3 = max-pool + 4a..4e (stride 16, 832), 4 = max-pool + 5a + 5b (stride 32, 1024).

    Args:
        aux_logits: build the auxiliary classifiers (ignored, none built, with ``features_only``
            or ``num_classes=0``).
        drop_rate: dropout before the classifier (0.2).
        aux_drop_rate: dropout inside each auxiliary classifier (0.7).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        aux_logits: bool = True,
        aux_drop_rate: float = 0.7,
        features_only: bool = False,
        out_indices: Sequence[int] = (1, 2, 3, 4),
    ) -> None:
        super().__init__()
        self._init_backbone(in_chans, drop_rate)
        self.conv1 = ConvBNReLU(in_chans, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = ConvBNReLU(64, 64, 1)
        self.conv3 = ConvBNReLU(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = InceptionBlock(*INCEPTION_CFG["3a"])
        self.inception3b = InceptionBlock(*INCEPTION_CFG["3b"])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name in ("4a", "4b", "4c", "4d", "4e"):
            setattr(self, f"inception{name}", InceptionBlock(*INCEPTION_CFG[name]))
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = InceptionBlock(*INCEPTION_CFG["5a"])
        self.inception5b = InceptionBlock(*INCEPTION_CFG["5b"])

        info = [
            dict(num_chs=64, reduction=2, module="conv1"),
            dict(num_chs=192, reduction=4, module="conv3"),
            dict(num_chs=480, reduction=8, module="inception3b"),
            dict(num_chs=832, reduction=16, module="inception4e"),
            dict(num_chs=1024, reduction=32, module="inception5b"),
        ]
        self._setup_features(info, features_only, out_indices)
        self._build_head(1024, num_classes)
        self.aux_logits = bool(aux_logits) and not self.features_only and self.num_classes > 0
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if self.aux_logits:
            self.aux1 = InceptionAux(INCEPTION_CFG["4b"][0], num_classes, aux_drop_rate)
            self.aux2 = InceptionAux(INCEPTION_CFG["4e"][0], num_classes, aux_drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.01, a=-2.0, b=2.0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage1(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.maxpool1(x)))

    def _stage2(self, x: torch.Tensor) -> torch.Tensor:
        return self.inception3b(self.inception3a(self.maxpool2(x)))

    def _stage3(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception4a(self.maxpool3(x))
        return self.inception4e(self.inception4d(self.inception4c(self.inception4b(x))))

    def _stage4(self, x: torch.Tensor) -> torch.Tensor:
        return self.inception5b(self.inception5a(self.maxpool4(x)))

    def feature_stages(self) -> list:
        """conv1 (stride 2); max-pool + conv2 + conv3 (4); max-pool + 3a, 3b (8);
        max-pool + 4a..4e (16); max-pool + 5a, 5b (32)."""
        return [self.conv1, self._stage1, self._stage2, self._stage3, self._stage4]

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs | list[torch.Tensor]:
        """``[N, in_chans, H, W]`` -> logits ``[N, num_classes]``; while training with the auxiliary
        heads, :class:`GoogLeNetOutputs` ``(logits, aux1, aux2)``; with ``features_only``, the maps
        at ``out_indices``."""
        if self.features_only or not (self.training and self.aux_logits):
            return super().forward(x)
        check_image_batch(x, self.in_chans)
        x = self._stage2(self._stage1(self.conv1(x)))
        x = self.inception4a(self.maxpool3(x))
        aux1 = self.aux1(x)
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x)
        x = self._stage4(self.inception4e(x))
        return GoogLeNetOutputs(self.forward_head(x), aux1, aux2)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier (and fresh auxiliary ``fc2`` layers) of ``num_classes`` outputs.
        ``num_classes=0`` removes the classifier and the auxiliary heads."""
        super().reset_classifier(num_classes)
        if self.aux_logits:
            if num_classes > 0:
                self.aux1.reset_classifier(num_classes)
                self.aux2.reset_classifier(num_classes)
            else:
                self.aux_logits, self.aux1, self.aux2 = False, None, None


def drop_aux_heads(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A GoogLeNet state dict without its auxiliary classifiers' entries (``aux1.*``, ``aux2.*``),
    for a net built with ``aux_logits=False``; None when it has none (then the ``"zoo"`` layout
    is the one to match)."""
    kept = {k: v for k, v in state_dict.items() if not k.startswith(("aux1.", "aux2."))}
    return kept if len(kept) < len(state_dict) else None


_SZEGEDY = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"


@register_model(
    family="googlenet", task="classification", paper=_SZEGEDY, reference="torchvision:googlenet",
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), converters={"torchvision": drop_aux_heads}, num_classes=1000,
)
def googlenet(**kwargs) -> GoogLeNet:
    allowed = set(inspect.signature(GoogLeNet.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"googlenet: unknown option(s) {unknown}; expected some of {sorted(allowed)}")
    return GoogLeNet(**kwargs)
