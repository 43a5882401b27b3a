"""YOLOv3 and YOLOv3-tiny (Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018).

Built layer for layer from darknet's ``cfg/yolov3.cfg`` and ``cfg/yolov3-tiny.cfg``.

``yolov3``: Darknet-53 (:mod:`zoo.models.darknet`) and three prediction heads. At
stride 32: five convs alternating 1x1 512 / 3x3 1024, a 3x3 1024 and a 1x1 conv
(with bias, no BN, linear) to ``A*(5+C)`` channels. The fifth conv's output is
routed through a 1x1 256 conv, upsampled x2 (nearest) and concatenated
(upsampled map first, as darknet's ``[route] layers = -1, 61``) with the stride-16
stage output; the stride-16 head repeats the pattern with 256 / 512 channels, and
the stride-8 head with 128 / 256. 75 convolutions in all.

``yolov3_se``: the same with a Squeeze-and-Excitation block (reduction 16, the fused
op :func:`zoo.ops.squeeze_excite`) in every one of Darknet-53's 23 residual blocks,
on the branch before the shortcut add.

``yolov3_tiny``: seven 3x3 convs (16 ... 1024) with max-pools (the last one of
stride 1), a 1x1 256 conv, a 3x3 512 conv + output conv at stride 32; the 1x1 256
map through a 1x1 128 conv, upsampled and concatenated with the stride-16 256-channel
map, then a 3x3 256 conv + output conv at stride 16. 13 convolutions.

Output contract (all variants): ``forward(x [B, in_chans, H, W])`` with ``H, W``
multiples of 32 returns a list of raw maps ordered by increasing stride
(``self.strides``), each ``[B, A*(5+C), H/s, W/s]``; for anchor ``a`` channels
``a*(5+C) + k`` hold ``k`` = tx, ty, tw, th, objectness, class logits -- what
:func:`zoo.ops.yolo_decode` / :func:`zoo.ops.yolo_postprocess` take, with
``self.anchors[i]`` (``[A, 2]`` anchor w, h in input pixels) for output ``i``.

Parameter counts (A = 3):

============  ==============  ==============
model         80 classes      7 classes
============  ==============  ==============
yolov3        61,949,149      61,556,044
yolov3_se     62,817,461      62,424,356
yolov3_tiny    8,852,366       8,683,736
============  ==============  ==============

(The SE blocks add 868,312; Darknet-53's body is 40,584,928.) Multiply-accumulates
at 416x416: yolov3 32.93 G, yolov3_tiny 2.78 G (darknet reports 65.86 / 5.56 BFLOPs).

Darknet ``.weights`` files load with :func:`zoo.weights.load_darknet_weights`; every
net here has :meth:`darknet_conv_order` listing its convs in cfg order.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..nn import check_image_batch, check_in_chans
from ..registry import register_model
from .darknet import LEAKY_SLOPE, ConvBNAct, Darknet53

AnchorSpec = Sequence[Sequence[Sequence[float]]] | torch.Tensor

#: COCO anchors of yolov3.cfg (w, h in pixels at 416), one group per output, by increasing stride
#: (masks 0-2 on stride 8, 3-5 on stride 16, 6-8 on stride 32).
COCO_ANCHORS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)

#: yolov3-tiny.cfg anchors, by increasing stride: stride 16 gets anchors 0, 1, 2 and stride 32
#: anchors 3, 4, 5 (``mask = 0,1,2`` and ``mask = 3,4,5``, as darknet's cfg has had since August
#: 2018; a May 2018 version of the cfg had ``mask = 1,2,3`` on stride 16).
TINY_COCO_ANCHORS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((10, 14), (23, 27), (37, 58)),
    ((81, 82), (135, 169), (344, 319)),
)

#: Prior probability the output conv's bias starts objectness and class scores at
#: (RetinaNet's trick; keeps the first steps from being swamped by easy negatives).
PRIOR_PROB = 0.01


def parse_anchors(anchors: AnchorSpec, num_levels: int | None = None, per_level: int = 3) -> torch.Tensor:
    """Anchors as a float32 CPU ``[L, A, 2]`` tensor of (w, h) pixels.

    Accepts ``[L][A][2]`` nested lists (YAML), a flat list of (w, h) pairs, a flat list
    of numbers, or a tensor of any of those shapes. Flat forms are split into
    ``num_levels`` levels (default: groups of ``per_level``). ``ValueError`` naming the
    argument otherwise: odd or ragged lists, a wrong level count, a non-positive or
    non-finite width or height.
    """
    try:
        if isinstance(anchors, torch.Tensor):
            t = anchors.detach().to("cpu", torch.float32).clone()
        else:
            t = torch.tensor(anchors, dtype=torch.float32, device="cpu")
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"anchors: expected groups of (w, h) pairs with the same number of anchors each: {err}"
        ) from None
    if t.ndim == 1:
        if t.numel() % 2:
            raise ValueError(f"anchors: a flat list needs (w, h) pairs, got {t.numel()} numbers")
        t = t.view(-1, 2)
    if t.ndim == 2:
        if t.shape[1] != 2:
            raise ValueError(f"anchors: expected (w, h) pairs, got shape {tuple(t.shape)}")
        levels = num_levels or max(1, t.shape[0] // per_level)
        if t.shape[0] % levels:
            raise ValueError(f"anchors: {t.shape[0]} anchors do not split into {levels} levels")
        t = t.view(levels, -1, 2)
    levels = num_levels or (t.shape[0] if t.ndim == 3 else 0)
    if t.ndim != 3 or t.shape[0] != levels or t.shape[1] < 1 or t.shape[2] != 2:
        raise ValueError(
            f"anchors: expected {levels} levels (one per output, by increasing stride) of A >= 1 (w, h) "
            f"pairs, i.e. shape [{levels}, A, 2]; got shape {tuple(t.shape)}"
        )
    if not (torch.isfinite(t).all() and (t > 0).all()):
        raise ValueError("anchors: every anchor width and height must be a finite positive number of pixels")
    return t


def _anchor_tensor(anchors: AnchorSpec, num_levels: int) -> torch.Tensor:
    """:func:`parse_anchors` for ``num_levels`` outputs, on the default device (checked on the
    CPU; meta inside ``with torch.device("meta")``)."""
    return parse_anchors(anchors, num_levels).to(torch.get_default_device())


def _check_detection_input(x: torch.Tensor, in_chans: int, multiple: int) -> None:
    check_image_batch(x, in_chans)
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise ValueError(f"x: height and width must be positive multiples of {multiple}, got {h}x{w}")


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _check_scale_xy(scale_xy: float | Sequence[float], num_levels: int) -> tuple[float, ...]:
    """darknet's ``scale_x_y`` per output level as a tuple of ``num_levels`` floats (one number:
    the same at every level); ``ValueError`` naming ``scale_xy`` unless each is finite and >= 1."""
    values = [scale_xy] * num_levels if isinstance(scale_xy, (int, float)) else list(scale_xy)
    if len(values) != num_levels or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 1 for v in values
    ):
        raise ValueError(
            f"scale_xy: expected one number >= 1 or {num_levels} of them (one per output), got {scale_xy!r}"
        )
    return tuple(float(v) for v in values)


class _YOLOBase(nn.Module):
    """Shared bits: anchors buffer, output conv init, attribute contract.

    ``output_kind = "grid"``: raw ``[B, A*(5+C), H/s, W/s]`` maps, one per stride. ``cls_act``:
    how class logits become probabilities (``"sigmoid"``: each on its own, YOLOv3/v4;
    ``"softmax"``: over the C classes, YOLOv2's region layer). ``scale_xy``: darknet's
    ``scale_x_y`` per output (1.0 for YOLOv3: ``cx = (sigmoid(tx) * s - (s - 1) / 2 + grid_x) * stride``).
    """

    num_classes: int
    strides: tuple[int, ...]
    anchors: torch.Tensor
    scale_xy: tuple[float, ...]
    output_kind = "grid"
    cls_act = "sigmoid"

    def _setup(
        self,
        num_classes: int,
        in_chans: int,
        anchors: AnchorSpec,
        strides: tuple[int, ...],
        scale_xy: float | Sequence[float] = 1.0,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.in_chans = check_in_chans(in_chans)
        self.strides = strides
        self.scale_xy = _check_scale_xy(scale_xy, len(strides))
        anchor_t = _anchor_tensor(anchors, len(strides))
        self.num_anchors = int(anchor_t.shape[1])
        self.out_channels = self.num_anchors * (5 + num_classes)
        # follows .to(device); not saved (it is rebuilt from the constructor arguments)
        self.register_buffer("anchors", anchor_t, persistent=False)

    def _pred_conv(self, cin: int) -> nn.Conv2d:
        return nn.Conv2d(cin, self.out_channels, 1, bias=True)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=LEAKY_SLOPE, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        prior = math.log(PRIOR_PROB / (1 - PRIOR_PROB))
        for conv in self.prediction_convs():
            nn.init.normal_(conv.weight, std=0.01)
            with torch.no_grad():
                bias = conv.bias.view(self.num_anchors, 5 + self.num_classes)
                bias.zero_()
                bias[:, 4:].fill_(prior)

    def prediction_convs(self) -> list[nn.Conv2d]:  # pragma: no cover - overridden
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, strides={self.strides}, num_anchors={self.num_anchors}"


class YOLOBranch(nn.Module):
    """One yolov3.cfg head: ``convs`` (1x1 mid, 3x3 2mid, 1x1 mid, 3x3 2mid, 1x1 mid),
    then ``conv_out`` (3x3 2mid) and ``pred`` (1x1, bias, linear).

    ``forward(x) -> (route [N, mid, h, w], prediction [N, A*(5+C), h, w])``; ``route``
    feeds the next finer level.
    """

    def __init__(self, cin: int, mid: int, out_channels: int, negative_slope: float = LEAKY_SLOPE) -> None:
        super().__init__()
        layers, c = [], cin
        for i in range(5):
            k, cout = (1, mid) if i % 2 == 0 else (3, 2 * mid)
            layers.append(ConvBNAct(c, cout, k, negative_slope=negative_slope))
            c = cout
        self.convs = nn.Sequential(*layers)
        self.conv_out = ConvBNAct(mid, 2 * mid, 3, negative_slope=negative_slope)
        self.pred = nn.Conv2d(2 * mid, out_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        route = self.convs(x)
        return route, self.pred(self.conv_out(route))


class YOLOv3(_YOLOBase):
    """YOLOv3 (darknet cfg/yolov3.cfg): Darknet-53 + three heads at strides 8, 16, 32.

    Args:
        num_classes: C, the number of object classes.
        anchors: per output (by increasing stride) the ``(w, h)`` anchors in input
            pixels; the same number A of anchors at every level (default: COCO, A = 3).
        in_chans: input channels.
        se: a Squeeze-and-Excitation block in every Darknet-53 residual block.
        se_reduction: SE reduction ratio.
        negative_slope: LeakyReLU slope (darknet: 0.1).
        zero_init_residual: each Darknet-53 residual block starts as the identity
            (:class:`~zoo.models.darknet.Darknet53`).

    Attributes:
        num_classes, in_chans, num_anchors: as built.
        strides: ``(8, 16, 32)``, the order of the outputs.
        anchors: buffer ``float32 [3, A, 2]`` (w, h) pixels, same order as the outputs.
        scale_xy: ``(1.0, 1.0, 1.0)`` (yolov3.cfg has no ``scale_x_y``); ``cls_act``:
            ``"sigmoid"``; ``output_kind``: ``"grid"``.
        backbone: :class:`~zoo.models.darknet.Darknet53` (``features_only``).
        heads: :class:`YOLOBranch` per output (stride 8, 16, 32).
        laterals: the 1x1 convs before each upsampling: ``laterals[i]`` maps the route
            of ``heads[i + 1]`` (512 -> 256, then 256 -> 128) for level ``i``.

    ``forward(x [B, in_chans, H, W])``, ``H, W`` multiples of 32 -> list of
    ``[B, A*(5+C), H/s, W/s]`` for ``s`` in ``strides``; channel ``a*(5+C) + k`` of
    anchor ``a`` is ``k`` = tx, ty, tw, th, objectness, class logits.
    """

    def __init__(
        self,
        num_classes: int = 80,
        anchors: AnchorSpec = COCO_ANCHORS,
        in_chans: int = 3,
        se: bool = False,
        se_reduction: float = 16,
        negative_slope: float = LEAKY_SLOPE,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans, anchors, (8, 16, 32))
        self.backbone = Darknet53(
            num_classes=0,
            in_chans=in_chans,
            se=se,
            se_reduction=se_reduction,
            negative_slope=negative_slope,
            features_only=True,
            out_indices=(3, 4, 5),
        )
        chans = [info["num_chs"] for info in self.backbone.feature_info]  # 256, 512, 1024
        mids = [c // 2 for c in chans]  # 128, 256, 512
        heads, laterals = [], []
        for i, (c, mid) in enumerate(zip(chans, mids)):
            cin = c if i == len(chans) - 1 else c + mids[i + 1] // 2
            heads.append(YOLOBranch(cin, mid, self.out_channels, negative_slope))
            if i < len(chans) - 1:
                laterals.append(ConvBNAct(mids[i + 1], mids[i + 1] // 2, 1, negative_slope=negative_slope))
        self.heads = nn.ModuleList(heads)
        self.laterals = nn.ModuleList(laterals)
        self._init_weights()
        if zero_init_residual:  # (after _init_weights, which resets every BatchNorm)
            self.backbone.zero_init_blocks()

    def prediction_convs(self) -> list[nn.Conv2d]:
        """The output convs, in output order."""
        return [h.pred for h in self.heads]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_detection_input(x, self.in_chans, 32)
        feats = self.backbone.forward_multiscale(x)
        outs: list[torch.Tensor] = []
        route = None
        for i in reversed(range(len(feats))):  # coarse to fine, as the cfg runs them
            if route is None:
                y = feats[i]
            else:  # darknet [route] layers = -1, <stage>: the upsampled map first
                y = torch.cat([_upsample2(self.laterals[i](route)), feats[i]], 1)
            route, pred = self.heads[i](y)
            outs.append(pred)
        return outs[::-1]

    def darknet_conv_order(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """The 75 convs in yolov3.cfg order, as ``(conv, bn)`` (``bn`` None for the output convs).

        Darknet-53's 52, then the stride-32 head (6 + output), the 1x1 256 lateral,
        the stride-16 head (6 + output), the 1x1 128 lateral, the stride-8 head.
        """
        order = list(self.backbone.darknet_conv_order())
        for i in reversed(range(len(self.heads))):
            if i < len(self.laterals):
                order.append((self.laterals[i].conv, self.laterals[i].bn))
            head = self.heads[i]
            order += [(m.conv, m.bn) for m in head.convs]
            order += [(head.conv_out.conv, head.conv_out.bn), (head.pred, None)]
        return order


class MaxPoolStride1(nn.Module):
    """darknet ``[maxpool] size=2 stride=1``: 2x2 max over ``x[i:i+2, j:j+2]``, same size out.

    Darknet pads one cell on the bottom/right that never wins the max; replicating
    the last row/column does the same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)


class YOLOv3Tiny(_YOLOBase):
    """YOLOv3-tiny (darknet cfg/yolov3-tiny.cfg): two outputs at strides 16 and 32.

    Same arguments (but no SE option), attributes and output contract as
    :class:`YOLOv3`; ``strides`` is ``(16, 32)`` and ``anchors`` ``[2, A, 2]``.

    Modules: ``backbone16`` (convs 16..256 with four stride-2 max-pools, stride 16),
    ``backbone32`` (max-pool, conv 512, stride-1 max-pool, conv 1024), ``neck`` (1x1
    256), ``head32`` (3x3 512 + output conv), ``lateral`` (1x1 128 before the
    upsampling), ``head16`` (3x3 256 + output conv on the 128 + 256 concat).
    """

    def __init__(
        self,
        num_classes: int = 80,
        anchors: AnchorSpec = TINY_COCO_ANCHORS,
        in_chans: int = 3,
        negative_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__()
        self._setup(num_classes, in_chans, anchors, (16, 32))

        def conv(cin: int, cout: int, k: int) -> ConvBNAct:
            return ConvBNAct(cin, cout, k, negative_slope=negative_slope)

        layers: list[nn.Module] = []
        c = in_chans
        for i, cout in enumerate((16, 32, 64, 128, 256)):
            if i:
                layers.append(nn.MaxPool2d(2, 2))
            layers.append(conv(c, cout, 3))
            c = cout
        self.backbone16 = nn.Sequential(*layers)
        self.backbone32 = nn.Sequential(nn.MaxPool2d(2, 2), conv(256, 512, 3), MaxPoolStride1(), conv(512, 1024, 3))
        self.neck = conv(1024, 256, 1)
        self.head32 = nn.Sequential(conv(256, 512, 3), self._pred_conv(512))
        self.lateral = conv(256, 128, 1)
        self.head16 = nn.Sequential(conv(128 + 256, 256, 3), self._pred_conv(256))
        self._init_weights()

    def prediction_convs(self) -> list[nn.Conv2d]:
        return [self.head16[1], self.head32[1]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_detection_input(x, self.in_chans, 32)
        c4 = self.backbone16(x)
        route = self.neck(self.backbone32(c4))
        p5 = self.head32(route)
        p4 = self.head16(torch.cat([_upsample2(self.lateral(route)), c4], 1))
        return [p4, p5]

    def darknet_conv_order(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """The 13 convs in yolov3-tiny.cfg order, as ``(conv, bn)`` (``bn`` None for the output convs)."""
        convs = [m for m in self.backbone16 if isinstance(m, ConvBNAct)]
        convs += [m for m in self.backbone32 if isinstance(m, ConvBNAct)]
        convs += [self.neck, self.head32[0]]
        order = [(m.conv, m.bn) for m in convs] + [(self.head32[1], None)]
        order += [(m.conv, m.bn) for m in (self.lateral, self.head16[0])] + [(self.head16[1], None)]
        return order


def _as_nested(anchors) -> list[list[tuple[int, int]]]:
    return [[tuple(a) for a in level] for level in anchors]


def _yolo(reference: str, anchors, **common):
    return register_model(
        family="yolov3",
        task="detection",
        input_size=(3, 416, 416),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        paper="Redmon & Farhadi, YOLOv3: An Incremental Improvement, arXiv:1804.02767, 2018",
        reference=reference,
        verified="the cfg's conv shapes and order; darknet .weights round trip",
        num_classes=80,
        anchors=_as_nested(anchors),
        **common,
    )


@_yolo("darknet:yolov3.cfg", COCO_ANCHORS)
def yolov3(**kwargs) -> YOLOv3:
    return YOLOv3(**kwargs)


@_yolo("darknet:yolov3.cfg", COCO_ANCHORS, se=True, se_reduction=16)
def yolov3_se(**kwargs) -> YOLOv3:
    return YOLOv3(**kwargs)


@_yolo("darknet:yolov3-tiny.cfg", TINY_COCO_ANCHORS)
def yolov3_tiny(**kwargs) -> YOLOv3Tiny:
    return YOLOv3Tiny(**kwargs)
