"""YOLOv2 (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", 2017).

Built layer for layer from pjreddie/darknet ``cfg/yolov2.cfg`` (layer numbers below are the
cfg's, 0-based). Every conv but the last is ``batch_normalize=1, activation=leaky``
(:class:`~zoo.models.darknet.ConvBNAct`, padding ``k // 2``); max-pools are 2x2 stride 2.

* Darknet-19 (layers 0-22): 3x3 32, pool, 3x3 64, pool, 3x3 128, 1x1 64, 3x3 128, pool,
  3x3 256, 1x1 128, 3x3 256, pool, 3x3 512, 1x1 256, 3x3 512, 1x1 256, 3x3 512 (layer 16, the
  stride-16 map), pool, 3x3 1024, 1x1 512, 3x3 1024, 1x1 512, 3x3 1024.
* two 3x3 1024 convs (23, 24);
* the passthrough: layer 16 (512 channels, stride 16) -> 1x1 64 (26) -> ``[reorg] stride=2``
  (27, ``[N, 64, 2h, 2w] -> [N, 256, h, w]``, :func:`darknet_reorg`);
* ``[route] layers = -1, -4`` (28): ``cat([reorg output, layer 24])``, 256 + 1024 channels;
  3x3 1024 (29); 1x1 to ``A*(5+C)`` with a bias, linear (30); ``[region]`` (31).

23 convolutions; 50,962,889 parameters at 80 classes (50,588,764 at 7). The region layer's
5 anchors are in grid cells: ``0.57273,0.677385, 1.87446,2.06253, 3.33843,5.47434,
7.88282,3.52778, 9.77052,9.16828``; ``anchors`` holds them in input pixels (x 32). Class
probabilities are a softmax over the C logits (``softmax=1``: ``cls_act = "softmax"``),
objectness and the box offsets as YOLOv3's (``scale_xy = (1.0,)``).

Output contract: ``forward(x [B, in_chans, H, W])``, ``H, W`` multiples of 32, returns
``[out]`` with ``out`` ``[B, A*(5+C), H/32, W/32]``; channel ``a*(5+C) + k`` of anchor ``a``
is ``k`` = tx, ty, tw, th, objectness, class logits (darknet's region layer has this layout).
Darknet ``.weights`` files (pjreddie's yolov2.weights) load with
:func:`zoo.weights.load_darknet_weights` through :meth:`YOLOv2.darknet_conv_order`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import register_model
from .darknet import LEAKY_SLOPE, ConvBNAct
from .yolov3 import AnchorSpec, _as_nested, _check_detection_input, _YOLOBase

#: yolov2.cfg ``[region] anchors`` (w, h) in grid cells (units of the stride, 32).
YOLOV2_GRID_ANCHORS: tuple[tuple[float, float], ...] = (
    (0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434), (7.88282, 3.52778), (9.77052, 9.16828),
)

#: The same in input pixels (x 32), as the one output level's group.
YOLOV2_ANCHORS: tuple[tuple[tuple[float, float], ...], ...] = (
    tuple((w * 32, h * 32) for w, h in YOLOV2_GRID_ANCHORS),
)

#: Darknet-19's convs up to the stride-16 map (layer 16) and from there to layer 22:
#: ``(filters, size)``, ``"M"`` a 2x2 max-pool.
DARKNET19_TO_16 = ((32, 3), "M", (64, 3), "M", (128, 3), (64, 1), (128, 3), "M", (256, 3), (128, 1), (256, 3),
                   "M", (512, 3), (256, 1), (512, 3), (256, 1), (512, 3))
DARKNET19_TO_32 = ("M", (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3))


def darknet_reorg(x: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """darknet's ``[reorg]`` layer (pjreddie/darknet): ``[N, C, H, W] -> [N, C*s*s, H/s, W/s]``.

    The layer calls ``reorg_cpu(input, w=W, h=H, c=C, ..., forward=0)``, which sets, for every
    ``k < C, j < H, i < W`` (flat indices of one image, row-major)::

        out[i + W*(j + H*k)] = x[w2 + W*s*(h2 + H*s*c2)]
        c2 = k % (C / s²),  off = k // (C / s²),  w2 = i*s + off % s,  h2 = j*s + off // s

    i.e. it reads the input's memory as a ``[C/s², H*s, W*s]`` array (not ``[C, H, W]``) and
    writes the output's memory as ``[C, H, W]`` before it is taken as ``[C*s², H/s, W/s]``. So
    output channel planes are not whole spatial sub-grids of one input channel: the mapping
    mixes rows of different input channels. It is *not* a space-to-depth
    (``F.pixel_unshuffle``, channel ``c*s² + dy*s + dx``, nor the ``(dy*s + dx)*C + c`` order),
    but the weights darknet trained (yolov2.weights) expect exactly it. (AlexeyAB/darknet's
    ``[reorg]`` passes the output sizes instead, a true space-to-depth; its ``[reorg_old]`` is
    this one.)

    With plain views: the input memory as ``[N, C/s², H, s, W, s]`` is ``(c2, j, dy, i, dx)``
    with ``h2 = j*s + dy``, ``w2 = i*s + dx``; the output memory is ``(dy, dx, c2, j, i)``
    (``k = (dy*s + dx) * C/s² + c2``): one permute.
    """
    if x.ndim != 4:
        raise ValueError(f"x: expected a 4-D [N, C, H, W] batch, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    s = stride
    if c % (s * s) or h % s or w % s:
        raise ValueError(
            f"x: darknet reorg with stride {s} needs channels divisible by {s * s} and height and width by {s}, "
            f"got shape {tuple(x.shape)}"
        )
    y = x.reshape(n, c // (s * s), h, s, w, s).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * s * s, h // s, w // s)


class Reorg(nn.Module):
    """:func:`darknet_reorg` as a module (darknet ``[reorg] stride=s``)."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return darknet_reorg(x, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


def _darknet19(cin: int, spec, negative_slope: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for item in spec:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout, k = item
            layers.append(ConvBNAct(cin, cout, k, negative_slope=negative_slope))
            cin = cout
    return nn.Sequential(*layers), cin


class YOLOv2(_YOLOBase):
    """YOLOv2 (pjreddie/darknet cfg/yolov2.cfg): Darknet-19 + passthrough, one output at stride 32.

    Args:
        num_classes: C, the number of object classes.
        anchors: the ``(w, h)`` anchors in input pixels, as ``[1, A, 2]`` or a flat list of pairs
            (default: the cfg's 5 grid-unit anchors x 32).
        in_chans: input channels.
        negative_slope: LeakyReLU slope (darknet: 0.1).

    Attributes:
        num_classes, in_chans, num_anchors: as built; ``strides = (32,)``; ``anchors``: buffer
            ``float32 [1, A, 2]`` (w, h) pixels; ``scale_xy = (1.0,)``; ``cls_act = "softmax"``;
            ``output_kind = "grid"``.
        body16: Darknet-19 to layer 16 (stride 16, 512 channels); body32: layers 17-22 (stride 32,
        1024); neck: layers 23-24; passthrough: the 1x1 64 conv (26) and :class:`Reorg` (27);
        head: the 3x3 1024 conv (29) and the output conv (30).
    """

    cls_act = "softmax"

    def __init__(
        self,
        num_classes: int = 80,
        anchors: AnchorSpec = YOLOV2_ANCHORS,
        in_chans: int = 3,
        negative_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans, anchors, (32,))
        ns = negative_slope
        self.body16, c16 = _darknet19(in_chans, DARKNET19_TO_16, ns)
        self.body32, c32 = _darknet19(c16, DARKNET19_TO_32, ns)
        self.neck = nn.Sequential(
            ConvBNAct(c32, 1024, 3, negative_slope=ns), ConvBNAct(1024, 1024, 3, negative_slope=ns)
        )
        self.passthrough = nn.Sequential(ConvBNAct(c16, 64, 1, negative_slope=ns), Reorg(2))
        self.head = nn.Sequential(ConvBNAct(64 * 4 + 1024, 1024, 3, negative_slope=ns), self._pred_conv(1024))
        self._init_weights()

    def prediction_convs(self) -> list[nn.Conv2d]:
        return [self.head[1]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_detection_input(x, self.in_chans, 32)
        c16 = self.body16(x)
        y = self.neck(self.body32(c16))  # layers 17-24
        p = self.passthrough(c16)  # 25-27
        return [self.head(torch.cat([p, y], 1))]  # 28: [route] layers = -1, -4; 29-30

    def darknet_conv_order(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """The 23 convs in yolov2.cfg order, as ``(conv, bn)`` (``bn`` None for the output conv)."""
        convs = [m for seq in (self.body16, self.body32, self.neck) for m in seq if isinstance(m, ConvBNAct)]
        convs += [self.passthrough[0], self.head[0]]
        return [(m.conv, m.bn) for m in convs] + [(self.head[1], None)]


@register_model(
    family="yolov2",
    task="detection",
    input_size=(3, 608, 608),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    paper="Redmon & Farhadi, YOLO9000: Better, Faster, Stronger, CVPR 2017 (arXiv:1612.08242)",
    reference="darknet:yolov2.cfg",
    verified="the cfg's conv shapes and order; darknet reorg index formula; darknet .weights round trip",
    num_classes=80,
    anchors=_as_nested(YOLOV2_ANCHORS),
)
def yolov2(**kwargs) -> YOLOv2:
    return YOLOv2(**kwargs)

