"""YOLOv1, YOLOv2, YOLOv4 and YOLOv4-tiny: the darknet cfgs layer for layer, darknet .weights files.

The conv tables below are written out from the cfg files (AlexeyAB/darknet cfg/yolov4.cfg and
cfg/yolov4-tiny.cfg, pjreddie/darknet cfg/yolov2.cfg, darknet's 2015 cfg/yolo.cfg), not from the
zoo's code; parameter counts and darknet file sizes are summed from them. The darknet reorg
layer is checked against a loop over the index formula of darknet's ``reorg_cpu``.
"""
from __future__ import annotations

import struct

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import zoo
from zoo.models.yolov2 import Reorg, darknet_reorg
from zoo.serialization import DarknetWeights
from zoo.weights import DARKNET_MODELS, darknet_state_dict, load_darknet_weights, read_checkpoint
from tests.test_darknet_weights import cfg_params, check_conv_order, write_darknet
from tests.util import n_params, randomize_bn

BN, NO_BN = True, False  # batch_normalize=1 / a bias instead

# ----------------------------------------------------------------------------- cfg tables
# one row per [convolutional], in cfg order: (in channels, filters, size, batch_normalize,
# stride of its output w.r.t. the input image); layer numbers are the cfg's (0-based).


def yolov4_cfg_convs(num_classes: int = 80) -> list[tuple[int, int, int, bool, int]]:
    out = 3 * (5 + num_classes)
    rows = [(3, 32, 3, BN, 1)]  # 0
    # 1-10: 3x3/2 64; 1x1 64 (routed by 9); [route -2] 1x1 64; 1x1 32, 3x3 64, [shortcut];
    # 1x1 64; [route -1,-7]; 1x1 64
    rows += [(32, 64, 3, BN, 2), (64, 64, 1, BN, 2), (64, 64, 1, BN, 2), (64, 32, 1, BN, 2), (32, 64, 3, BN, 2),
             (64, 64, 1, BN, 2), (128, 64, 1, BN, 2)]
    cin, stride = 64, 2
    for c, n in ((128, 2), (256, 8), (512, 8), (1024, 4)):  # 11-23, 24-54, 55-85, 86-104
        stride *= 2
        rows += [(cin, c, 3, BN, stride), (c, c // 2, 1, BN, stride), (c, c // 2, 1, BN, stride)]
        rows += [(c // 2, c // 2, 1, BN, stride), (c // 2, c // 2, 3, BN, stride)] * n
        rows += [(c // 2, c // 2, 1, BN, stride), (c, c, 1, BN, stride)]
        cin = c
    rows += [(1024, 512, 1, BN, 32), (512, 1024, 3, BN, 32), (1024, 512, 1, BN, 32)]  # 105-107
    # 108-113 SPP: 4 x 512 channels
    rows += [(2048, 512, 1, BN, 32), (512, 1024, 3, BN, 32), (1024, 512, 1, BN, 32)]  # 114-116
    rows += [(512, 256, 1, BN, 32)]  # 117, [upsample]
    rows += [(512, 256, 1, BN, 16)]  # 120 on [route] 85
    five16 = [(512, 256, 1, BN, 16), (256, 512, 3, BN, 16), (512, 256, 1, BN, 16), (256, 512, 3, BN, 16),
              (512, 256, 1, BN, 16)]
    rows += five16  # 122-126 after [route] -1, -3
    rows += [(256, 128, 1, BN, 16)]  # 127, [upsample]
    rows += [(256, 128, 1, BN, 8)]  # 130 on [route] 54
    rows += [(256, 128, 1, BN, 8), (128, 256, 3, BN, 8), (256, 128, 1, BN, 8), (128, 256, 3, BN, 8),
             (256, 128, 1, BN, 8)]  # 132-136
    rows += [(128, 256, 3, BN, 8), (256, out, 1, NO_BN, 8)]  # 137-138, [yolo] mask = 0,1,2
    rows += [(128, 256, 3, BN, 16)]  # 141: [route] -4, size=3 stride=2
    rows += five16  # 143-147 after [route] -1, -16
    rows += [(256, 512, 3, BN, 16), (512, out, 1, NO_BN, 16)]  # 148-149, [yolo] mask = 3,4,5
    rows += [(256, 512, 3, BN, 32)]  # 152: [route] -4, size=3 stride=2
    rows += [(1024, 512, 1, BN, 32), (512, 1024, 3, BN, 32), (1024, 512, 1, BN, 32), (512, 1024, 3, BN, 32),
             (1024, 512, 1, BN, 32)]  # 154-158 after [route] -1, -37
    rows += [(512, 1024, 3, BN, 32), (1024, out, 1, NO_BN, 32)]  # 159-160, [yolo] mask = 6,7,8
    return rows


def yolov4_tiny_cfg_convs(num_classes: int = 80) -> list[tuple[int, int, int, bool, int]]:
    out = 3 * (5 + num_classes)
    rows = [(3, 32, 3, BN, 2), (32, 64, 3, BN, 4)]  # 0-1, stride 2 each
    for c, s in ((64, 4), (128, 8), (256, 16)):  # 2-8, 10-16, 18-24 (a [maxpool] after each)
        # 3x3 c; [route -1 groups=2 group_id=1]; 3x3 c/2; 3x3 c/2; [route -1,-2]; 1x1 c; [route -6,-1]
        rows += [(c, c, 3, BN, s), (c // 2, c // 2, 3, BN, s), (c // 2, c // 2, 3, BN, s), (c, c, 1, BN, s)]
    rows += [(512, 512, 3, BN, 32)]  # 26
    rows += [(512, 256, 1, BN, 32), (256, 512, 3, BN, 32), (512, out, 1, NO_BN, 32)]  # 27-29, [yolo] mask = 3,4,5
    rows += [(256, 128, 1, BN, 32)]  # 32 ([route] -4), [upsample], [route] -1, 23: 128 + 256
    rows += [(384, 256, 3, BN, 16), (256, out, 1, NO_BN, 16)]  # 35-36, [yolo] mask = 1,2,3
    return rows


def yolov2_cfg_convs(num_classes: int = 80) -> list[tuple[int, int, int, bool, int]]:
    out = 5 * (5 + num_classes)  # [region] num=5
    return [
        (3, 32, 3, BN, 1), (32, 64, 3, BN, 2), (64, 128, 3, BN, 4), (128, 64, 1, BN, 4), (64, 128, 3, BN, 4),  # 0-6
        (128, 256, 3, BN, 8), (256, 128, 1, BN, 8), (128, 256, 3, BN, 8),  # 8-10
        (256, 512, 3, BN, 16), (512, 256, 1, BN, 16), (256, 512, 3, BN, 16), (512, 256, 1, BN, 16),
        (256, 512, 3, BN, 16),  # 12-16
        (512, 1024, 3, BN, 32), (1024, 512, 1, BN, 32), (512, 1024, 3, BN, 32), (1024, 512, 1, BN, 32),
        (512, 1024, 3, BN, 32),  # 18-22
        (1024, 1024, 3, BN, 32), (1024, 1024, 3, BN, 32),  # 23-24
        (512, 64, 1, BN, 16),  # 26 on [route] 16, then [reorg] stride=2
        (64 * 4 + 1024, 1024, 3, BN, 32),  # 29 after [route] -1, -4
        (1024, out, 1, NO_BN, 32),  # 30, [region]
    ]


# yolo.cfg (2015): (filters, size, stride); no batch_normalize, every conv has a bias
YOLO_CFG_CONVS = [
    (64, 7, 2), (192, 3, 1), (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1),
    *[(256, 1, 1), (512, 3, 1)] * 4, (512, 1, 1), (1024, 3, 1), *[(512, 1, 1), (1024, 3, 1)] * 2,
    (1024, 3, 1), (1024, 3, 2), (1024, 3, 1), (1024, 3, 1),
]
YOLO_CFG_POOLS_AFTER = {0, 1, 5, 15}  # conv indices followed by [maxpool] size=2 stride=2


def yolov1_cfg_convs(num_classes: int = 20, side: int = 7, num: int = 2):
    """(in, out, size, bn=False, output stride) per conv at 448, then the two [connected] as (in, out)."""
    rows, cin, stride = [], 3, 1
    for i, (cout, k, s) in enumerate(YOLO_CFG_CONVS):
        stride *= s
        rows.append((cin, cout, k, NO_BN, stride))
        cin = cout
        if i in YOLO_CFG_POOLS_AFTER:
            stride *= 2
    connected = [(1024 * 7 * 7, 4096), (4096, side * side * (num_classes + 5 * num))]
    return rows, connected


def cfg_values(rows) -> int:
    """float32 values a darknet file holds for these convs: weights + (BN beta, gamma, mean, var | bias)."""
    return sum(k * k * cin * cout + (4 * cout if bn else cout) for cin, cout, k, bn, _ in rows)


CFG = {"yolov4": yolov4_cfg_convs, "yolov4_tiny": yolov4_tiny_cfg_convs, "yolov2": yolov2_cfg_convs}


def _meta(name, **kwargs):
    with torch.device("meta"):
        return zoo.create_net(name, **kwargs)


class Taps:
    """Records module outputs (``out``) and inputs (``inp``) under keys during a forward; removes its hooks on exit."""

    def __init__(self) -> None:
        self.seen: dict[str, torch.Tensor] = {}
        self.handles: list = []

    def out(self, key: str, module: nn.Module) -> None:
        self.handles.append(module.register_forward_hook(lambda m, i, o: self.seen.__setitem__(key, o)))

    def inp(self, key: str, module: nn.Module) -> None:
        self.handles.append(module.register_forward_pre_hook(lambda m, i: self.seen.__setitem__(key, i[0])))

    def __enter__(self) -> "Taps":
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


# ----------------------------------------------------------------------------- parameter counts


def test_parameter_counts_are_the_cfgs():
    assert len(yolov4_cfg_convs()) == 110 and len(yolov4_tiny_cfg_convs()) == 21 and len(yolov2_cfg_convs()) == 23
    # the totals: darknet's own parameter count (conv weights, BN gamma/beta, output conv biases)
    assert cfg_params(yolov4_cfg_convs()) == 64_363_101
    assert cfg_params(yolov4_tiny_cfg_convs()) == 6_056_606
    assert cfg_params(yolov2_cfg_convs()) == 50_962_889
    conv_rows, connected = yolov1_cfg_convs()
    assert len(conv_rows) == 24 and cfg_params(conv_rows) == 60_155_968
    assert cfg_params(conv_rows) + sum(i * o + o for i, o in connected) == 271_703_550
    for num_classes in (80, 7):
        for name, rows in CFG.items():
            assert n_params(_meta(name, num_classes=num_classes)) == cfg_params(rows(num_classes)), name
    assert n_params(_meta("yolov1")) == 271_703_550
    assert n_params(_meta("yolov1", num_classes=3)) == 271_703_550 - 4097 * 49 * 17


@pytest.mark.parametrize(
    "name,header,file_bytes",
    [
        # the released darknet weights (80 COCO classes): size = header + 4 bytes per value
        ("yolov4", 20, 257_717_640),  # AlexeyAB yolov4.weights
        ("yolov4_tiny", 20, 24_251_276),  # AlexeyAB yolov4-tiny.weights
        ("yolov2", 16, 203_934_260),  # pjreddie yolov2.weights (version 0.1: 32-bit "seen")
        ("yolov3", 20, 248_007_048),  # pjreddie yolov3.weights
    ],
)
def test_value_counts_match_released_files_and_mismatches_give_both_counts(name, header, file_bytes):
    values = (file_bytes - header) // 4
    if name in CFG:
        assert cfg_values(CFG[name]()) == values
    net = _meta(name)
    fake = DarknetWeights(torch.tensor([0, 2, 0, 0]), torch.empty(values, device="meta"), f"{name}.weights")
    sd = darknet_state_dict(net, fake, name=name)  # the counts agree: no error (on meta, nothing is read)
    assert set(sd) == set(net.state_dict())
    for found in (values - 1, values + 7):
        short = DarknetWeights(fake["header"], torch.empty(found, device="meta"), f"{name}.weights")
        with pytest.raises(ValueError, match=rf"{name}\.weights.*expected {values} float32 values.*found {found}"):
            darknet_state_dict(net, short, name=name)


def test_yolov1_layers_and_darknet_layout_on_meta():
    net = _meta("yolov1")
    conv_rows, connected = yolov1_cfg_convs()
    order = net.darknet_conv_order()
    convs, fcs = order[:24], order[24:]
    assert all(bn is None for _, bn in order)
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.bias is not None, c.stride[0]) for c, _ in convs] == [
        (cin, cout, k, True, s) for (cin, cout, k, _, _), (_, _, s) in zip(conv_rows, YOLO_CFG_CONVS)
    ]
    assert [(m.in_features, m.out_features) for m, _ in fcs] == connected
    assert net.darknet_connected_layers() == [m for m, _ in fcs]
    # the forward runs them in that order; each conv's output stride is the cfg's (at 448)
    ran = []
    hooks = [m.register_forward_hook(lambda m, i, o: ran.append((m, o.shape))) for m in net.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    out = net(torch.empty(2, 3, 448, 448, device="meta"))
    for h in hooks:
        h.remove()
    assert [m for m, _ in ran] == [m for m, _ in order]
    assert [448 // s[-1] for _, s in ran[:24]] == [r[4] for r in conv_rows]
    assert out.shape == (2, 7 * 7 * 30) == (2, 1470)
    acts = [m for m in net.features if not isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    assert len(acts) == 24 and all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.1 for a in acts)
    assert isinstance(net.dropout, nn.Dropout) and net.dropout.p == 0.5
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    # a darknet file of exactly these values fits; the count is all parameters (no BN)
    fake = DarknetWeights(torch.tensor([0, 1, 0, 0]), torch.empty(271_703_550, device="meta"), "yolo.weights")
    assert set(darknet_state_dict(net, fake)) == set(net.state_dict())


# ----------------------------------------------------------------------------- outputs and attributes

COCO4 = [[(12, 16), (19, 36), (40, 28)], [(36, 75), (76, 55), (72, 146)], [(142, 110), (192, 243), (459, 401)]]
TINY4 = [[(23, 27), (37, 58), (81, 82)], [(81, 82), (135, 169), (344, 319)]]  # masks 1,2,3 and 3,4,5
# yolov2.cfg [region] anchors, in grid cells of 32 pixels
V2_GRID = [(0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434), (7.88282, 3.52778), (9.77052, 9.16828)]
EXPECT = {  # strides, scale_x_y, class activation, input size of the cfg, anchors, family
    "yolov4": ((8, 16, 32), (1.2, 1.1, 1.05), "sigmoid", 608, COCO4, "yolov4"),
    "yolov4_tiny": ((16, 32), (1.05, 1.05), "sigmoid", 416, TINY4, "yolov4"),
    "yolov2": ((32,), (1.0,), "softmax", 608, [[(w * 32, h * 32) for w, h in V2_GRID]], "yolov2"),
}


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: randomize_bn(zoo.create_net(name, num_classes=3), seed=1).eval() for name in EXPECT}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_grid_outputs_attributes_and_specs(nets, name):
    strides, scale_xy, cls_act, size, anchors, family = EXPECT[name]
    net = nets[name]
    with torch.no_grad():
        outs = net(torch.rand(2, 3, 64, 96))
    a = len(anchors[0])
    assert [tuple(o.shape) for o in outs] == [(2, a * (5 + 3), 64 // s, 96 // s) for s in strides]
    assert (net.strides, net.scale_xy, net.cls_act, net.output_kind) == (strides, scale_xy, cls_act, "grid")
    assert (net.num_classes, net.num_anchors, net.in_chans) == (3, a, 3)
    assert net.anchors.dtype == torch.float32 and torch.equal(net.anchors, torch.tensor(anchors, dtype=torch.float32))
    for conv in net.prediction_convs():  # zero box biases, low objectness / class prior (as YOLOv3)
        bias = conv.bias.detach().view(a, 8)
        assert torch.all(bias[:, :4] == 0) and torch.all(bias[:, 4:] < -4)
    spec = zoo.get_spec(name)
    assert (spec.task, spec.family, spec.input_size) == ("detection", family, (3, size, size))
    assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)
    assert spec.defaults["num_classes"] == 80 and spec.reference.startswith("darknet:")
    assert torch.equal(torch.tensor(spec.defaults["anchors"], dtype=torch.float32),
                       torch.tensor(anchors, dtype=torch.float32))
    # what a Detector builds: other classes and anchors (2 per level)
    custom = [[(10 + i, 20 + i), (30 + i, 40 + i)] for i in range(len(strides))]
    net7 = _meta(name, num_classes=7, anchors=custom)
    assert [c.out_channels for c in net7.prediction_convs()] == [2 * 12] * len(strides)
    assert net7.anchors.shape == (len(strides), 2, 2) and net7.num_anchors == 2


def test_yolov3_grid_attributes():
    for name, levels in (("yolov3", 3), ("yolov3_tiny", 2), ("yolov3_se", 3)):
        net = _meta(name)
        assert (net.scale_xy, net.cls_act, net.output_kind) == ((1.0,) * levels, "sigmoid", "grid")


def test_yolov1_outputs_and_specs():
    net = _meta("yolov1")
    assert (net.num_classes, net.grid_size, net.num_boxes, net.in_chans, net.img_size) == (20, 7, 2, 3, 448)
    assert net.strides == (64,) and net.output_kind == "yolov1"
    spec = zoo.get_spec("yolov1")
    assert (spec.task, spec.family, spec.input_size, spec.defaults["num_classes"]) == (
        "detection", "yolov1", (3, 448, 448), 20)
    net = _meta("yolov1", num_classes=7, grid_size=5, num_boxes=3)
    assert net(torch.empty(1, 3, 448, 448, device="meta")).shape == (1, 5 * 5 * (7 + 15))


def test_yolov1_flattens_in_darknet_order():
    """darknet's [connected] layer reads the conv map as one vector, index c*H*W + h*W + w."""
    torch.manual_seed(0)
    net = zoo.create_net("yolov1", img_size=128, num_classes=3).eval()  # a 1024 x 2 x 2 map
    with Taps() as taps, torch.no_grad():
        taps.out("conv", net.features)
        taps.inp("fc_in", net.fc1)
        out = net(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 7 * 7 * 13)
    conv, fc_in = taps.seen["conv"], taps.seen["fc_in"]
    c_, h_, w_ = conv.shape[1:]
    for b, c, h, w in ((0, 0, 0, 1), (1, 5, 1, 0), (1, 1023, 1, 1), (0, 17, 1, 1)):
        assert fc_in[b, c * h_ * w_ + h * w_ + w] == conv[b, c, h, w]


def test_bad_inputs():
    with pytest.raises(ValueError, match="scale_xy"):
        zoo.models.YOLOv4(scale_xy=(1.2, 1.1))
    with pytest.raises(ValueError, match="scale_xy"):
        zoo.models.YOLOv4Tiny(scale_xy=0.5)
    with pytest.raises(ValueError, match="anchors"):
        zoo.models.YOLOv2(anchors=[[(1, 2)], [(3, 4)]])
    with pytest.raises(ValueError, match="num_classes"):
        zoo.models.YOLOv1(num_classes=0)
    with pytest.raises(ValueError, match="img_size"):
        zoo.models.YOLOv1(img_size=100)
    v1 = _meta("yolov1")
    with pytest.raises(ValueError, match=r"x: expected 448x448 images.*got 384x448"):
        v1(torch.empty(1, 3, 384, 448, device="meta"))
    with pytest.raises(ValueError, match="input channel"):
        v1(torch.empty(1, 1, 448, 448, device="meta"))
    v4 = _meta("yolov4_tiny")
    with pytest.raises(ValueError, match="multiples of 32"):
        v4(torch.empty(1, 3, 64, 80, device="meta"))
    with pytest.raises(ValueError, match="reorg"):
        darknet_reorg(torch.zeros(1, 6, 4, 4))


# ----------------------------------------------------------------------------- darknet's reorg


def reorg_loop(x: torch.Tensor, stride: int) -> torch.Tensor:
    """darknet reorg_cpu(x, w, h, c, batch, stride, forward=0, out) as [reorg] calls it (w, h, c:
    the input's sizes), one element at a time over flat memory."""
    n, c, h, w = x.shape
    flat, out = x.reshape(-1).tolist(), [0.0] * x.numel()
    out_c = c // (stride * stride)
    for b in range(n):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    out[in_index] = flat[out_index]
    return torch.tensor(out).view(n, c * stride * stride, h // stride, w // stride)


def test_reorg_is_darknets_index_mapping_not_pixel_unshuffle():
    x = torch.arange(2 * 8 * 4 * 6, dtype=torch.float32).view(2, 8, 4, 6)
    got = darknet_reorg(x, 2)
    assert torch.equal(got, reorg_loop(x, 2))
    assert got.shape == F.pixel_unshuffle(x, 2).shape == (2, 32, 2, 3)
    assert not torch.equal(got, F.pixel_unshuffle(x, 2))
    # nor a space-to-depth with (dy, dx, c) channel order: darknet's mixes rows of different channels
    s2d = x.view(2, 8, 2, 2, 3, 2).permute(0, 3, 5, 1, 2, 4).reshape(2, 32, 2, 3)
    assert not torch.equal(got, s2d)
    # stride 3, odd sizes
    x3 = torch.randn(1, 18, 3, 6)
    assert torch.equal(darknet_reorg(x3, 3), reorg_loop(x3, 3))


def test_yolov2_passthrough_route_order(nets):
    """[route] layers=16 -> 1x1 64 -> [reorg] -> [route] layers=-1,-4: cat([reorg output, layer 24])."""
    net = nets["yolov2"]
    assert isinstance(net.passthrough[1], Reorg)
    with Taps() as taps, torch.no_grad():
        for key, module in (("c16", net.body16), ("p64", net.passthrough[0]), ("reorg", net.passthrough[1]),
                            ("l24", net.neck)):
            taps.out(key, module)
        taps.inp("head_in", net.head[0])
        net(torch.rand(1, 3, 128, 64))
    seen = taps.seen
    assert seen["c16"].shape == (1, 512, 8, 4)
    assert torch.equal(seen["reorg"], reorg_loop(seen["p64"], 2))
    assert torch.equal(seen["head_in"], torch.cat([seen["reorg"], seen["l24"]], 1))


# ----------------------------------------------------------------------------- yolov4 routes and activations


def test_yolov4_routes_spp_and_activations(nets):
    """The cfg's [route] orders, the SPP concat, Mish in layers 0-104 and leaky after."""
    net = nets["yolov4"]
    stage = net.backbone.stages[2]
    with Taps() as taps, torch.no_grad():
        for key in ("spp_pre", "spp_post", "lateral5", "proj4", "td4", "lateral4", "proj3", "down3", "down4"):
            taps.out(key, getattr(net, key))
        for key in ("spp_post", "td4", "td3", "bu4", "bu5"):
            taps.inp(key + "_in", getattr(net, key)[0])
        taps.out("conv_short", stage.conv_short)
        taps.out("conv_post", stage.conv_post)
        taps.inp("fuse_in", stage.conv_fuse)
        net(torch.rand(1, 3, 64, 64))
    seen = taps.seen

    def up(t):
        return t.repeat_interleave(2, -1).repeat_interleave(2, -2)

    x = seen["spp_pre"]
    pools = [F.max_pool2d(F.pad(x, (k // 2,) * 4, value=float("-inf")), k, 1) for k in (13, 9, 5)]
    assert torch.equal(seen["spp_post_in"], torch.cat([*pools, x], 1))  # [route] -1,-3,-5,-6
    assert torch.equal(seen["td4_in"], torch.cat([seen["proj4"], up(seen["lateral5"])], 1))  # [route] -1,-3
    assert torch.equal(seen["td3_in"], torch.cat([seen["proj3"], up(seen["lateral4"])], 1))
    assert torch.equal(seen["bu4_in"], torch.cat([seen["down3"], seen["td4"]], 1))  # [route] -1,-16
    assert torch.equal(seen["bu5_in"], torch.cat([seen["down4"], seen["spp_post"]], 1))  # [route] -1,-37
    assert torch.equal(seen["fuse_in"], torch.cat([seen["conv_post"], seen["conv_short"]], 1))  # [route] -1,-28

    acts = [m.act for m in net.modules() if hasattr(m, "bn") and hasattr(m, "act")]
    assert len(acts) == 107  # 110 convs less the 3 output convs
    assert all(type(a) is nn.Mish for a in acts[:72])
    assert all(type(a) is nn.LeakyReLU and a.negative_slope == 0.1 for a in acts[72:])


def test_yolov4_tiny_channel_split_and_routes(nets):
    net = nets["yolov4_tiny"]
    block = net.blocks[1]
    with Taps() as taps, torch.no_grad():
        for key in ("conv_in", "conv_a", "conv_b", "conv_mix"):
            taps.out(key, getattr(block, key))
        taps.inp("conv_a_in", block.conv_a)
        taps.inp("conv_mix_in", block.conv_mix)
        taps.inp("next_in", net.blocks[2].conv_in)
        taps.out("l23", net.blocks[2].conv_mix)
        taps.out("lateral", net.lateral)
        taps.inp("head16_in", net.head16[0])
        net(torch.rand(1, 3, 64, 64))
    seen = taps.seen
    assert torch.equal(seen["conv_a_in"], seen["conv_in"][:, 64:])  # groups=2 group_id=1: the second half
    assert torch.equal(seen["conv_mix_in"], torch.cat([seen["conv_b"], seen["conv_a"]], 1))  # [route] -1,-2
    assert torch.equal(seen["next_in"], F.max_pool2d(torch.cat([seen["conv_in"], seen["conv_mix"]], 1), 2))
    up = seen["lateral"].repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert torch.equal(seen["head16_in"], torch.cat([up, seen["l23"]], 1))  # [route] -1, 23
    acts = [m.act for m in net.modules() if hasattr(m, "bn") and hasattr(m, "act")]
    assert len(acts) == 19 and all(type(a) is nn.LeakyReLU and a.negative_slope == 0.1 for a in acts)


# ----------------------------------------------------------------------------- darknet .weights round trips


def _empty_like_net(name, **kwargs):
    """The net with uninitialised storage (no init cost); the file fills every parameter and BN buffer."""
    return _meta(name, **kwargs).to_empty(device="cpu").eval()


@pytest.mark.parametrize("name", ["yolov4", "yolov4_tiny", "yolov2"])
def test_darknet_round_trip(nets, tmp_path, name):
    src = nets[name]
    rows = CFG[name](3)
    order = check_conv_order(src, rows)  # shapes, BN or bias, cfg order = forward order, output strides
    path = tmp_path / f"{name}-3cls.weights"
    write_darknet(path, order, version=(0, 2, 5), seen=32013312)
    assert path.stat().st_size == 20 + 4 * cfg_values(rows)

    dst = _empty_like_net(name, num_classes=3)
    load_darknet_weights(dst, path)
    got, want = dst.state_dict(), src.state_dict()
    keys = [k for k in want if not k.endswith("num_batches_tracked")]
    assert len(keys) == sum(5 if bn is not None else 2 for _, bn in order)  # every tensor the file holds
    for k in keys:
        assert torch.equal(got[k], want[k]), k
    if name != "yolov4":  # (the same tensors give the same outputs; skipped for the big net)
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(dst(x), src(x)))
    assert read_checkpoint(path)[0]["header"].tolist() == [0, 2, 5, 32013312]

    # a file for another number of classes: both counts in the message
    found = cfg_values(rows)
    for other in (2, 4):
        expected = cfg_values(CFG[name](other))
        match = rf"{name}-3cls\.weights.*expected {expected} float32 values.*found {found}"
        with pytest.raises(ValueError, match=match):
            load_darknet_weights(_meta(name, num_classes=other), path)


class TinyConnected(nn.Module):
    """A conv with a bias and a darknet [connected] layer on its flattened map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x):
        return self.fc(torch.flatten(F.leaky_relu(self.conv(x), 0.1), 1))

    def darknet_conv_order(self):
        return [(self.conv, None), (self.fc, None)]

    def darknet_connected_layers(self):
        return [self.fc]


@pytest.mark.parametrize("transposed", [False, True])
def test_connected_layers_load_as_darknet_stores_them(tmp_path, transposed):
    """darknet's load_connected_weights: biases, then [outputs, inputs] weights; files whose version
    is above 1000 hold them as [inputs, outputs] (parser.c transposes on load)."""
    torch.manual_seed(0)
    src = TinyConnected()
    path = tmp_path / "tiny.weights"
    with open(path, "wb") as f:
        f.write(struct.pack("<3ii", 0, 1001 if transposed else 1, 0, 0))  # minor > 1000: 32-bit seen
        for t in (src.conv.bias, src.conv.weight, src.fc.bias, src.fc.weight.t() if transposed else src.fc.weight):
            f.write(t.detach().contiguous().numpy().tobytes())
    dst = TinyConnected()
    load_darknet_weights(dst, path)
    assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), src.state_dict().values()))


def test_darknet_models_list_is_complete():
    """zoo.weights.DARKNET_MODELS (named in its error messages) is every registered detection net and
    darknet-family classifier with a darknet layout."""
    names = zoo.list_models(task="detection") + [n for n in zoo.list_models() if zoo.get_spec(n).family == "darknet"]
    assert "darknet53" in names and "yolov4" in names
    have = {n for n in names if hasattr(_meta(n), "darknet_conv_order")}
    assert have - {"yolov3_se"} == set(DARKNET_MODELS)
