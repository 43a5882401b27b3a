"""YOLOv4 and YOLOv4-tiny (Bochkovskiy, Wang & Liao, "YOLOv4: Optimal Speed and Accuracy of
Object Detection", 2020; the tiny model: Wang, Bochkovskiy & Liao, "Scaled-YOLOv4", 2021).

Built layer for layer from AlexeyAB/darknet ``cfg/yolov4.cfg`` and ``cfg/yolov4-tiny.cfg``.
Every ``[convolutional]`` but the output ones is ``batch_normalize=1``: ``Conv2d(bias=False) ->
BatchNorm2d -> activation``, padding ``k // 2``; the output convs (1x1 to ``A*(5+C)``) have a
bias and no activation.

``yolov4`` (layer numbers are the cfg's, 0-based):

* CSPDarknet53 (layers 0-104, Mish): a 3x3 32 stem, then five CSP stages of
  ``(C, N) = (64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)``. A stage is a 3x3 stride-2 conv to
  C, then two 1x1 convs on its output: ``short`` (to C/2) and ``main`` (to C/2), N residual blocks
  ``x + conv3x3(conv1x1(x))`` on ``main`` (C/2 wide), a 1x1 C/2 conv, the concatenation
  ``[main, short]`` (``[route] layers = -1, -k``: the route's first layer first) and a 1x1 conv to C.
  The first stage is wider: ``short``/``main`` keep 64 channels and its block is 1x1 32, 3x3 64.
* SPP (105-116, leaky from here on): 1x1 512, 3x3 1024, 1x1 512; max-pools 5, 9, 13 (stride 1,
  same size) concatenated as ``[pool13, pool9, pool5, x]`` (``[route] layers = -1, -3, -5, -6``),
  2048 channels; 1x1 512, 3x3 1024, 1x1 512 (``p5``).
* PANet, top-down (117-136): ``p5`` through a 1x1 256, upsampled x2 (nearest) and concatenated
  *after* the stride-16 backbone map's 1x1 256 (``[route] layers = -1, -3``), then five convs
  (1x1 256, 3x3 512, 1x1 256, 3x3 512, 1x1 256: ``n4``); the same again at stride 8 with 128 / 256
  channels (``n3``).
* bottom-up with the heads (137-161): ``n3`` -> 3x3 256 -> output (stride 8); ``n3`` -> 3x3
  stride-2 256, concatenated with ``n4``, five convs (``m4``) -> 3x3 512 -> output (stride 16);
  ``m4`` -> 3x3 stride-2 512, concatenated with ``p5``, five convs -> 3x3 1024 -> output (stride 32).

110 convolutions. Anchors (pixels at 608): 12,16 19,36 40,28 | 36,75 76,55 72,146 | 142,110
192,243 459,401 (masks 0-2, 3-5, 6-8 by increasing stride); ``scale_x_y`` 1.2, 1.1, 1.05.

``yolov4_tiny`` (leaky throughout): 3x3 stride-2 32 and 64 convs, then three tiny CSP blocks
(C = 64, 128, 256), each: 3x3 C conv (``x``); its second channel half (``[route] groups=2
group_id=1``) through two 3x3 C/2 convs ``a``, ``b``; ``[b, a]`` (C) through a 1x1 C conv (``t``);
out ``[x, t]`` (2C), then a 2x2 max-pool. 3x3 512; 1x1 256 (``route``) -> 3x3 512 -> output
(stride 32, ``mask = 3,4,5``); ``route`` -> 1x1 128, upsampled and concatenated with the third
block's ``t`` (256, stride 16) -> 3x3 256 -> output (stride 16, ``mask = 1,2,3``: the cfg gives
anchor 3 (81,82) to both heads and none to anchor 0 (10,14) -- kept as the cfg has it, since
the released weights were trained so). 21 convolutions, ``scale_x_y = 1.05`` at both outputs.

Output contract: as :mod:`zoo.models.yolov3` -- ``forward(x [B, in_chans, H, W])``, ``H, W``
multiples of 32, returns ``[B, A*(5+C), H/s, W/s]`` maps by increasing stride; channel
``a*(5+C) + k`` is ``k`` = tx, ty, tw, th, objectness, class logits. Decode with
``zoo.ops.yolo_decode(..., scale_xy=net.scale_xy[i])``: ``cx = (sigmoid(tx) * s - (s - 1) / 2 +
grid_x) * stride`` (``cls_act = "sigmoid"``).

Parameter counts (A = 3; BN running statistics are buffers, not counted):

=============  ==============  ==============
model          80 classes      7 classes
=============  ==============  ==============
yolov4         64,363,101      63,969,996
yolov4_tiny     6,056,606       5,887,976
=============  ==============  ==============

Darknet ``.weights`` files (e.g. AlexeyAB's yolov4.weights, yolov4-tiny.weights) load with
:func:`zoo.weights.load_darknet_weights` through :meth:`darknet_conv_order`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import register_model
from .darknet import LEAKY_SLOPE, ConvBNAct
from .yolov3 import AnchorSpec, _as_nested, _check_detection_input, _upsample2, _YOLOBase

#: yolov4.cfg anchors (w, h pixels), one group per output by increasing stride.
YOLOV4_ANCHORS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((12, 16), (19, 36), (40, 28)),
    ((36, 75), (76, 55), (72, 146)),
    ((142, 110), (192, 243), (459, 401)),
)

#: yolov4-tiny.cfg anchors ``10,14, 23,27, 37,58, 81,82, 135,169, 344,319`` through its masks:
#: ``mask = 1,2,3`` at stride 16, ``mask = 3,4,5`` at stride 32.
YOLOV4_TINY_ANCHORS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((23, 27), (37, 58), (81, 82)),
    ((81, 82), (135, 169), (344, 319)),
)

#: darknet ``scale_x_y`` of the three yolov4.cfg ``[yolo]`` layers, by increasing stride.
YOLOV4_SCALE_XY = (1.2, 1.1, 1.05)


class ConvBNMish(ConvBNAct):
    """darknet ``[convolutional]`` with ``batch_normalize=1, activation=mish``: conv (no bias) -> BN -> Mish.

    ``mish(x) = x * tanh(softplus(x))``. ``[N, cin, H, W] -> [N, cout, H/stride, W/stride]``.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__(cin, cout, kernel_size, stride)
        self.act = nn.Mish()


class CSPResidual(nn.Module):
    """``x + conv2(conv1(x))``: a 1x1 to ``hidden`` and a 3x3 back to ``channels`` (Mish),
    darknet's ``[shortcut] from=-3 activation=linear``. ``[N, C, H, W] -> [N, C, H, W]``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = ConvBNMish(channels, hidden, 1)
        self.conv2 = ConvBNMish(hidden, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class CSPStage(nn.Module):
    """One CSPDarknet53 stage: ``[N, cin, H, W] -> [N, cout, H/2, W/2]``.

    ``d = conv_down(x)`` (3x3 stride 2); ``short = conv_short(d)``, ``main =
    conv_post(blocks(conv_main(d)))`` (1x1 convs to ``cout // 2``; ``cout`` in the first stage);
    out ``conv_fuse(cat([main, short]))``. ``first=True``: the first stage's widths (see the module
    docstring). The convs run, and sit in darknet files, in the order down, short, main, blocks,
    post, fuse.
    """

    def __init__(self, cin: int, cout: int, depth: int, first: bool = False) -> None:
        super().__init__()
        half = cout if first else cout // 2
        hidden = cout // 2 if first else half
        self.conv_down = ConvBNMish(cin, cout, 3, stride=2)
        self.conv_short = ConvBNMish(cout, half, 1)
        self.conv_main = ConvBNMish(cout, half, 1)
        self.blocks = nn.Sequential(*(CSPResidual(half, hidden) for _ in range(depth)))
        self.conv_post = ConvBNMish(half, half, 1)
        self.conv_fuse = ConvBNMish(2 * half, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.conv_down(x)
        short = self.conv_short(d)
        main = self.conv_post(self.blocks(self.conv_main(d)))
        return self.conv_fuse(torch.cat([main, short], 1))

    def convs(self) -> list[ConvBNAct]:
        """The stage's convs in cfg order."""
        out: list[ConvBNAct] = [self.conv_down, self.conv_short, self.conv_main]
        for block in self.blocks:
            out += [block.conv1, block.conv2]
        return out + [self.conv_post, self.conv_fuse]


#: CSPDarknet53's five stages: (channels, residual blocks).
CSPDARKNET53_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))


class CSPDarknet53(nn.Module):
    """yolov4.cfg layers 0-104: 3x3 32 stem (Mish) and five :class:`CSPStage`.

    ``forward(x [N, in_chans, H, W])`` -> the stride 8, 16, 32 maps ``[N, 256, H/8, W/8]``,
    ``[N, 512, H/16, W/16]``, ``[N, 1024, H/32, W/32]`` (cfg layers 54, 85, 104). 72 convolutions.
    """

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.stem = ConvBNMish(in_chans, 32, 3)
        stages, cin = [], 32
        for i, (cout, depth) in enumerate(CSPDARKNET53_STAGES):
            stages.append(CSPStage(cin, cout, depth, first=i == 0))
            cin = cout
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:
                outs.append(x)
        return outs

    def convs(self) -> list[ConvBNAct]:
        return [self.stem] + [c for stage in self.stages for c in stage.convs()]


class SPP(nn.Module):
    """yolov4.cfg's spatial pyramid pooling: ``[N, C, H, W] -> [N, 4C, H, W]``,
    ``cat([maxpool13(x), maxpool9(x), maxpool5(x), x])``, each pool stride 1 with ``k // 2``
    padding (darknet pads with values that never win the max, as torch's ``-inf`` padding)."""

    def __init__(self, sizes: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        self.sizes = tuple(sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = [F.max_pool2d(x, k, stride=1, padding=k // 2) for k in reversed(self.sizes)]
        return torch.cat([*pools, x], 1)


def _leaky(cin: int, cout: int, k: int, stride: int = 1, negative_slope: float = LEAKY_SLOPE) -> ConvBNAct:
    return ConvBNAct(cin, cout, k, stride, negative_slope=negative_slope)


def _five(cin: int, mid: int, negative_slope: float) -> nn.Sequential:
    """1x1 mid, 3x3 2mid, 1x1 mid, 3x3 2mid, 1x1 mid (leaky): ``[N, cin, h, w] -> [N, mid, h, w]``."""
    layers, c = [], cin
    for i in range(5):
        k, cout = (1, mid) if i % 2 == 0 else (3, 2 * mid)
        layers.append(_leaky(c, cout, k, negative_slope=negative_slope))
        c = cout
    return nn.Sequential(*layers)


class YOLOv4(_YOLOBase):
    """YOLOv4 (AlexeyAB/darknet cfg/yolov4.cfg): CSPDarknet53 + SPP + PANet, outputs at strides 8, 16, 32.

    Args:
        num_classes: C, the number of object classes.
        anchors: per output (by increasing stride) the ``(w, h)`` anchors in input pixels; the
            same number A at every level (default: the cfg's, A = 3).
        in_chans: input channels.
        scale_xy: darknet's ``scale_x_y`` per output (default the cfg's 1.2, 1.1, 1.05), or one
            number for all; only the decoder and loss use it.
        negative_slope: LeakyReLU slope of the neck and heads (darknet: 0.1).

    Attributes:
        num_classes, in_chans, num_anchors, scale_xy: as built; ``cls_act = "sigmoid"``,
            ``output_kind = "grid"``.
        strides: ``(8, 16, 32)``; anchors: buffer ``float32 [3, A, 2]`` (w, h) pixels, same order.
        backbone: :class:`CSPDarknet53`. spp_pre, spp, spp_post: layers 105-116 (``p5``).
        lateral5, proj4, td4, lateral4, proj3, td3: the top-down path (``lateral*``: 1x1 before
            each upsampling; ``proj*``: 1x1 on the backbone map). head3, head4, head5: 3x3 conv +
            output conv per stride. down3, down4, bu4, bu5: the bottom-up path.

    ``forward(x [B, in_chans, H, W])``, ``H, W`` multiples of 32 -> ``[p8, p16, p32]``, each
    ``[B, A*(5+C), H/s, W/s]``.
    """

    def __init__(
        self,
        num_classes: int = 80,
        anchors: AnchorSpec = YOLOV4_ANCHORS,
        in_chans: int = 3,
        scale_xy: float | Sequence[float] = YOLOV4_SCALE_XY,
        negative_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans, anchors, (8, 16, 32), scale_xy)
        ns = negative_slope

        def conv(cin: int, cout: int, k: int, stride: int = 1) -> ConvBNAct:
            return _leaky(cin, cout, k, stride, ns)

        self.backbone = CSPDarknet53(in_chans)
        self.spp_pre = nn.Sequential(conv(1024, 512, 1), conv(512, 1024, 3), conv(1024, 512, 1))
        self.spp = SPP()
        self.spp_post = nn.Sequential(conv(2048, 512, 1), conv(512, 1024, 3), conv(1024, 512, 1))
        self.lateral5 = conv(512, 256, 1)
        self.proj4 = conv(512, 256, 1)
        self.td4 = _five(512, 256, ns)
        self.lateral4 = conv(256, 128, 1)
        self.proj3 = conv(256, 128, 1)
        self.td3 = _five(256, 128, ns)
        self.head3 = nn.Sequential(conv(128, 256, 3), self._pred_conv(256))
        self.down3 = conv(128, 256, 3, 2)
        self.bu4 = _five(512, 256, ns)
        self.head4 = nn.Sequential(conv(256, 512, 3), self._pred_conv(512))
        self.down4 = conv(256, 512, 3, 2)
        self.bu5 = _five(1024, 512, ns)
        self.head5 = nn.Sequential(conv(512, 1024, 3), self._pred_conv(1024))
        self._init_weights()

    def prediction_convs(self) -> list[nn.Conv2d]:
        """The output convs, in output order."""
        return [self.head3[1], self.head4[1], self.head5[1]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_detection_input(x, self.in_chans, 32)
        c3, c4, c5 = self.backbone(x)
        p5 = self.spp_post(self.spp(self.spp_pre(c5)))  # layers 105-116
        up = _upsample2(self.lateral5(p5))  # 117-118
        n4 = self.td4(torch.cat([self.proj4(c4), up], 1))  # 119-126: [route] -1, -3
        up = _upsample2(self.lateral4(n4))  # 127-128
        n3 = self.td3(torch.cat([self.proj3(c3), up], 1))  # 129-136
        out8 = self.head3(n3)  # 137-138
        m4 = self.bu4(torch.cat([self.down3(n3), n4], 1))  # 140-147: [route] -1, -16
        out16 = self.head4(m4)  # 148-149
        m5 = self.bu5(torch.cat([self.down4(m4), p5], 1))  # 151-158: [route] -1, -37
        out32 = self.head5(m5)  # 159-160
        return [out8, out16, out32]

    def darknet_conv_order(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """The 110 convs in yolov4.cfg order, as ``(conv, bn)`` (``bn`` None for the output convs)."""
        convs: list[ConvBNAct | nn.Conv2d] = [*self.backbone.convs(), *self.spp_pre, *self.spp_post]
        convs += [self.lateral5, self.proj4, *self.td4, self.lateral4, self.proj3, *self.td3, *self.head3]
        convs += [self.down3, *self.bu4, *self.head4, self.down4, *self.bu5, *self.head5]
        return [(m, None) if isinstance(m, nn.Conv2d) else (m.conv, m.bn) for m in convs]


class TinyCSPBlock(nn.Module):
    """yolov4-tiny's CSP block: ``[N, C, H, W] -> ([N, 2C, H, W], t [N, C, H, W])``.

    ``x = conv_in(x)`` (3x3 C); ``a = conv_a(x[:, C/2:])`` (darknet ``[route] groups=2
    group_id=1``: the second half of the channels), ``b = conv_b(a)`` (3x3 C/2 each);
    ``t = conv_mix(cat([b, a]))`` (1x1 C); returns ``(cat([x, t]), t)``.
    """

    def __init__(self, channels: int, negative_slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        half = channels // 2
        self.conv_in = _leaky(channels, channels, 3, negative_slope=negative_slope)
        self.conv_a = _leaky(half, half, 3, negative_slope=negative_slope)
        self.conv_b = _leaky(half, half, 3, negative_slope=negative_slope)
        self.conv_mix = _leaky(channels, channels, 1, negative_slope=negative_slope)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv_in(x)
        a = self.conv_a(x[:, x.shape[1] // 2 :])
        b = self.conv_b(a)
        t = self.conv_mix(torch.cat([b, a], 1))
        return torch.cat([x, t], 1), t

    def convs(self) -> list[ConvBNAct]:
        return [self.conv_in, self.conv_a, self.conv_b, self.conv_mix]


class YOLOv4Tiny(_YOLOBase):
    """YOLOv4-tiny (AlexeyAB/darknet cfg/yolov4-tiny.cfg): two outputs at strides 16 and 32.

    Same arguments, attributes and output contract as :class:`YOLOv4`; ``strides`` is
    ``(16, 32)``, ``anchors`` ``[2, A, 2]``, ``scale_xy`` default ``(1.05, 1.05)``.

    Modules: ``stem`` (two 3x3 stride-2 convs, 32 and 64), ``blocks`` (three
    :class:`TinyCSPBlock`, 64 / 128 / 256, each followed by a 2x2 max-pool), ``conv5`` (3x3 512),
    ``neck`` (1x1 256), ``head32`` (3x3 512 + output conv), ``lateral`` (1x1 128 before the
    upsampling), ``head16`` (3x3 256 + output conv on the 128 + 256 concat).
    """

    def __init__(
        self,
        num_classes: int = 80,
        anchors: AnchorSpec = YOLOV4_TINY_ANCHORS,
        in_chans: int = 3,
        scale_xy: float | Sequence[float] = 1.05,
        negative_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans, anchors, (16, 32), scale_xy)
        ns = negative_slope
        self.stem = nn.Sequential(_leaky(in_chans, 32, 3, 2, ns), _leaky(32, 64, 3, 2, ns))
        self.blocks = nn.ModuleList(TinyCSPBlock(c, ns) for c in (64, 128, 256))
        self.conv5 = _leaky(512, 512, 3, negative_slope=ns)
        self.neck = _leaky(512, 256, 1, negative_slope=ns)
        self.head32 = nn.Sequential(_leaky(256, 512, 3, negative_slope=ns), self._pred_conv(512))
        self.lateral = _leaky(256, 128, 1, negative_slope=ns)
        self.head16 = nn.Sequential(_leaky(128 + 256, 256, 3, negative_slope=ns), self._pred_conv(256))
        self._init_weights()

    def prediction_convs(self) -> list[nn.Conv2d]:
        return [self.head16[1], self.head32[1]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_detection_input(x, self.in_chans, 32)
        x = self.stem(x)
        t = x
        for block in self.blocks:
            x, t = block(x)
            x = F.max_pool2d(x, 2, 2)
        route = self.neck(self.conv5(x))  # layers 26-27
        p32 = self.head32(route)  # 28-29
        p16 = self.head16(torch.cat([_upsample2(self.lateral(route)), t], 1))  # 31-36: [route] -1, 23
        return [p16, p32]

    def darknet_conv_order(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """The 21 convs in yolov4-tiny.cfg order, as ``(conv, bn)`` (``bn`` None for the output convs)."""
        convs: list[ConvBNAct | nn.Conv2d] = [*self.stem, *(c for b in self.blocks for c in b.convs())]
        convs += [self.conv5, self.neck, *self.head32, self.lateral, *self.head16]
        return [(m, None) if isinstance(m, nn.Conv2d) else (m.conv, m.bn) for m in convs]


def _yolo4(reference: str, input_size: int, anchors, paper: str):
    return register_model(
        family="yolov4",
        task="detection",
        input_size=(3, input_size, input_size),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        paper=paper,
        reference=reference,
        verified="the cfg's conv shapes and order; darknet .weights round trip",
        num_classes=80,
        anchors=_as_nested(anchors),
    )


@_yolo4("darknet:yolov4.cfg", 608, YOLOV4_ANCHORS,
        "Bochkovskiy, Wang & Liao, YOLOv4: Optimal Speed and Accuracy of Object Detection, arXiv:2004.10934, 2020")
def yolov4(**kwargs) -> YOLOv4:
    return YOLOv4(**kwargs)


@_yolo4("darknet:yolov4-tiny.cfg", 416, YOLOV4_TINY_ANCHORS,
        "Wang, Bochkovskiy & Liao, Scaled-YOLOv4: Scaling Cross Stage Partial Network, CVPR 2021 (YOLOv4-tiny)")
def yolov4_tiny(**kwargs) -> YOLOv4Tiny:
    return YOLOv4Tiny(**kwargs)
