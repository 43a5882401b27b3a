"""Deepfake video classifiers: a clip ``[B, T, 3, H, W]`` in, one logit per clip out (``[B, 1]``).

Three ways to use the frames, the three the DFDC (Kaggle 2020) solutions and their write-ups
compare:

* ``deepfake_effnet_lstm`` (:class:`DeepfakeEffNetLSTM`): the zoo's ``efficientnet_b0`` turns
  every frame into its 1280-d pooled feature vector; an LSTM (hidden 256, optionally
  bidirectional) reads the T vectors in order and a linear layer maps its final hidden state
  to the logit. The only one of the three that sees frame *order* as a sequence (the Güera &
  Delp CNN + LSTM design, with EfficientNet as the frame encoder).
* ``deepfake_effnet`` (:class:`DeepfakeEffNet`): ``efficientnet_b0`` gives each frame its own
  logit (``forward_frames``, ``[B, T, 1]``) and the clip's logit is their mean: the frame-level
  detector most DFDC entries used (the winner: EfficientNet-B7 on face crops, 32 frames). The
  mean does not depend on the order of the frames.
* ``deepfake_r3d`` (:class:`R3D18`): R3D-18 (Tran et al. 2018), a ResNet-18 whose convolutions
  are 3x3x3 over (time, height, width), so motion is filtered directly. The layout and
  parameter count are torchvision's ``r3d_18``; :func:`convert_from_torchvision` loads its
  weights (e.g. its Kinetics-400 checkpoint, with the classifier replaced).

The EfficientNet nets take ImageNet-normalised frames; R3D-18 the Kinetics statistics
(mean 0.43216, 0.394666, 0.37645; std 0.22803, 0.22145, 0.216989).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..nn.checks import check_clip_batch, check_in_chans
from ..registry import create_net, get_spec, register_model

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

_GUERA = "Güera & Delp, Deepfake Video Detection Using Recurrent Neural Networks, AVSS 2018"
_DFDC = "Dolhansky et al., The DeepFake Detection Challenge (DFDC) Dataset, arXiv:2006.07397, 2020"
_TRAN = "Tran et al., A Closer Look at Spatiotemporal Convolutions for Action Recognition, CVPR 2018"


def _positive_int(value: int, name: str, hint: str = "") -> int:
    """``value``; ``ValueError`` naming ``name`` unless it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1{hint}, got {value!r}")
    return value


def _check_drop_rate(drop_rate: float) -> float:
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate: expected a float in [0, 1), got {drop_rate!r}")
    return float(drop_rate)


def _frame_backbone(backbone: str, num_classes: int, in_chans: int, kwargs: dict[str, Any] | None) -> nn.Module:
    """``zoo.create_net(backbone)`` as a per-frame classifier (``num_classes`` 0: pooled features)."""
    spec = get_spec(backbone)
    if spec.task != "classification":
        raise ValueError(f"backbone: {backbone!r} is a {spec.task} model, not a classification backbone")
    kwargs = dict(kwargs or {})
    for key in ("num_classes", "in_chans"):
        if key in kwargs:
            raise ValueError(f"backbone_kwargs: {key!r} is set by the video net itself")
    return create_net(backbone, num_classes=num_classes, in_chans=in_chans, **kwargs)


class DeepfakeEffNetLSTM(nn.Module):
    """A 2D CNN per frame, then an LSTM over the frames.

    ``forward``: ``[B, T, in_chans, H, W]`` normalised frames -> ``[B, num_classes]`` logits.

    Args:
        num_classes: 1 (one fake-vs-real logit per clip).
        hidden_size: LSTM width (256).
        num_layers: stacked LSTM layers.
        bidirectional: also read the frames backwards; the head then sees the final hidden
            states of both directions concatenated.
        drop_rate: dropout on the frame features and before the classifier.
        backbone: the frame encoder, a registered classification net (``efficientnet_b0``;
            ``num_features`` = 1280), built without its classifier.
        backbone_kwargs: extra arguments for it (e.g. ``drop_path_rate``).
    """

    def __init__(self, num_classes: int = 1, in_chans: int = 3, hidden_size: int = 256, num_layers: int = 1,
                 bidirectional: bool = False, drop_rate: float = 0.2, backbone: str = "efficientnet_b0",
                 backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.num_classes = _positive_int(num_classes, "num_classes", " (1: one logit per clip)")
        self.in_chans = check_in_chans(in_chans)
        _positive_int(hidden_size, "hidden_size")
        _positive_int(num_layers, "num_layers")
        self.drop_rate = _check_drop_rate(drop_rate)
        self.backbone = _frame_backbone(backbone, 0, in_chans, {"drop_rate": 0.0, **(backbone_kwargs or {})})
        self.frame_features = int(self.backbone.num_features)
        self.drop = nn.Dropout(self.drop_rate)
        self.lstm = nn.LSTM(self.frame_features, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=bool(bidirectional), dropout=self.drop_rate if num_layers > 1 else 0.0)
        self.num_features = hidden_size * (2 if bidirectional else 1)
        self.fc = nn.Linear(self.num_features, num_classes)

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, T, frame_features]``: the backbone's pooled features per frame."""
        check_clip_batch(x, self.in_chans)
        b, t = x.shape[:2]
        return self.backbone(x.flatten(0, 1)).view(b, t, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, num_features]``: the LSTM's final hidden state (last layer; both
        directions concatenated when bidirectional)."""
        _, (h_n, _) = self.lstm(self.drop(self.encode_frames(x)))
        if self.lstm.bidirectional:
            return torch.cat([h_n[-2], h_n[-1]], dim=1)
        return h_n[-1]

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """``[B, num_features] -> [B, num_classes]``."""
        return self.fc(self.drop(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class DeepfakeEffNet(nn.Module):
    """A 2D CNN classifies every frame; the clip's logit is the mean of the frame logits.

    ``forward``: ``[B, T, in_chans, H, W]`` -> ``[B, num_classes]``; ``forward_frames`` gives the
    per-frame logits ``[B, T, num_classes]`` and ``pool_frames`` turns them into the clip's (a
    video task uses the pair to report frame-level predictions without a second forward pass). ``backbone`` / ``backbone_kwargs`` /
    ``drop_rate`` (the backbone's dropout before its classifier) as in :class:`DeepfakeEffNetLSTM`.
    """

    def __init__(self, num_classes: int = 1, in_chans: int = 3, drop_rate: float = 0.2,
                 backbone: str = "efficientnet_b0", backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.num_classes = _positive_int(num_classes, "num_classes", " (1: one logit per clip)")
        self.in_chans = check_in_chans(in_chans)
        self.drop_rate = _check_drop_rate(drop_rate)
        self.backbone = _frame_backbone(backbone, num_classes, in_chans,
                                        {"drop_rate": self.drop_rate, **(backbone_kwargs or {})})
        self.num_features = int(self.backbone.num_features)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, T, num_classes]``: each frame's logits on its own."""
        check_clip_batch(x, self.in_chans)
        b, t = x.shape[:2]
        return self.backbone(x.flatten(0, 1)).view(b, t, -1)

    @staticmethod
    def pool_frames(frame_logits: torch.Tensor) -> torch.Tensor:
        """``[B, T, num_classes] -> [B, num_classes]``: the mean over the frames."""
        return frame_logits.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_frames(self.forward_frames(x))


class BasicBlock3d(nn.Module):
    """Two 3x3x3 conv-BN layers with a residual; ``stride`` applies to time, height and width."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(out_chs)
        self.conv2 = nn.Conv3d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(nn.Conv3d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm3d(out_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + shortcut)


class R3D18(nn.Module):
    """R3D-18: ``[B, T, in_chans, H, W]`` -> ``[B, num_classes]``.

    A stem conv of kernel (3, 7, 7) and stride (1, 2, 2) to 64 channels (no max pool), four
    stages of two :class:`BasicBlock3d` each (64, 128, 256, 512 channels; stages 2-4 halve T,
    H and W), global average pooling over (t, h, w) and a linear classifier. The net permutes
    the clip to the ``[B, C, T, H, W]`` layout of 3D convolutions itself.
    """

    def __init__(self, num_classes: int = 1, in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = _positive_int(num_classes, "num_classes", " (1: one logit per clip)")
        self.in_chans = check_in_chans(in_chans)
        self.drop_rate = _check_drop_rate(drop_rate)
        self.conv1 = nn.Conv3d(in_chans, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        chs = 64
        for i, (out, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock3d(chs, out, stride), BasicBlock3d(out, out)))
            chs = out
        self.num_features = chs
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.drop = nn.Dropout(self.drop_rate)
        self.fc = nn.Linear(chs, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal convs (fan out), batch norms at 1 / 0, the classifier N(0, 0.01) with bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, 512, t, h, w]`` (t = ceil(T / 8), h, w = H / 16, W / 16 rounded up)."""
        check_clip_batch(x, self.in_chans)
        x = self.relu(self.bn1(self.conv1(x.transpose(1, 2))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 512, t, h, w] -> [B, num_classes]``."""
        return self.fc(self.drop(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# torchvision's VideoResNet names -> the zoo's: the stem and each block's conv/BN pairs are
# Sequentials there (``stem.0`` / ``stem.1``, ``layerI.J.conv1.0`` / ``.conv1.1``, ...)
_TV_R3D = {("stem", "0"): "conv1", ("stem", "1"): "bn1"}
_TV_BLOCK = {("conv1", "0"): "conv1", ("conv1", "1"): "bn1", ("conv2", "0"): "conv2", ("conv2", "1"): "bn2"}


def convert_from_torchvision(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ``r3d_18`` state dict in the zoo's names: ``stem.{0,1}`` -> ``conv1`` / ``bn1``;
    ``layerI.J.conv{1,2}.{0,1}`` -> ``layerI.J.conv{1,2}`` / ``bn{1,2}``; ``downsample.*`` and
    ``fc.*`` keep their names. KeyError for a key of another layout."""
    out = {}
    for key, value in sd.items():
        p = key.split(".")
        if tuple(p[:2]) in _TV_R3D:
            new = [_TV_R3D[tuple(p[:2])]] + p[2:]
        elif p[0].startswith("layer") and len(p) > 4 and tuple(p[2:4]) in _TV_BLOCK:
            new = p[:2] + [_TV_BLOCK[tuple(p[2:4])]] + p[4:]
        elif p[0] == "fc" or (p[0].startswith("layer") and len(p) > 2 and p[2] == "downsample"):
            new = p
        else:
            raise KeyError(f"unexpected key {key!r}")
        out[".".join(new)] = value
    return out


@register_model(family="video", task="video", input_size=(20, 3, 224, 224), paper=_GUERA,
                reference="", verified="frame order matters (permutation test)", num_classes=1)
def deepfake_effnet_lstm(**kwargs) -> DeepfakeEffNetLSTM:
    return DeepfakeEffNetLSTM(**kwargs)


@register_model(family="video", task="video", input_size=(20, 3, 224, 224), paper=_DFDC,
                reference="", verified="frame-order invariant (permutation test)", num_classes=1)
def deepfake_effnet(**kwargs) -> DeepfakeEffNet:
    return DeepfakeEffNet(**kwargs)


@register_model(family="video", task="video", input_size=(16, 3, 112, 112), mean=KINETICS_MEAN,
                std=KINETICS_STD, paper=_TRAN, reference="torchvision:r3d_18",
                converters={"torchvision": convert_from_torchvision}, num_classes=1)
def deepfake_r3d(**kwargs) -> R3D18:
    return R3D18(**kwargs)


__all__ = [
    "BasicBlock3d",
    "DeepfakeEffNet",
    "DeepfakeEffNetLSTM",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "R3D18",
    "convert_from_torchvision",
]
