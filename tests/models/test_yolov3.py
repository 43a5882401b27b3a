"""YOLOv3 family: parameter counts (the YOLOv3 paper and darknet cfg facts), output contract, anchors, the SE variant."""
from __future__ import annotations

import pytest
import torch

import zoo
import zoo.nn.se
import zoo.ops
from zoo.models.darknet import DarkResidual
from zoo.models.yolov3 import YOLOv3, YOLOv3Tiny
from zoo.nn import SEBlock
from tests.test_darknet_weights import cfg_params, yolov3_cfg_convs, yolov3_tiny_cfg_convs
from tests.util import n_params, randomize_bn

COCO = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]
TINY = [[(10, 14), (23, 27), (37, 58)], [(81, 82), (135, 169), (344, 319)]]
STRIDES = {"yolov3": (8, 16, 32), "yolov3_se": (8, 16, 32), "yolov3_tiny": (16, 32)}
ANCHORS = {"yolov3": COCO, "yolov3_se": COCO, "yolov3_tiny": TINY}


def _meta(name, **kwargs):
    with torch.device("meta"):
        return zoo.create_net(name, **kwargs)


def _se_params(channels: int, rd: int) -> int:
    return 2 * channels * rd + rd + channels


@pytest.mark.parametrize("num_classes", [80, 7])
def test_parameter_counts(num_classes):
    counts = {n: n_params(_meta(n, num_classes=num_classes)) for n in STRIDES}
    assert counts["yolov3"] == {80: 61_949_149, 7: 61_556_044}[num_classes]  # darknet yolov3.cfg
    assert counts["yolov3"] == cfg_params(yolov3_cfg_convs(num_classes))
    assert counts["yolov3_tiny"] == cfg_params(yolov3_tiny_cfg_convs(num_classes))
    # SE (reduction 16, bottleneck rounded to a multiple of 8) in each of the 23 residual blocks
    se = sum(n * _se_params(c, max(8, c // 16)) for c, n in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)))
    assert counts["yolov3_se"] == counts["yolov3"] + se


def test_registry_specs():
    assert zoo.list_models("yolov3*") == ["yolov3", "yolov3_se", "yolov3_tiny"]
    for name in STRIDES:
        spec = zoo.get_spec(name)
        assert (spec.task, spec.family, spec.input_size) == ("detection", "yolov3", (3, 416, 416))
        assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)
        assert spec.defaults["num_classes"] == 80 and spec.defaults["anchors"] == ANCHORS[name]
        assert spec.reference.startswith("darknet:yolov3")
    assert zoo.get_spec("yolov3_se").defaults["se"] is True


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: zoo.create_net(name, num_classes=7).eval() for name in STRIDES}


@pytest.mark.parametrize("name", sorted(STRIDES))
@pytest.mark.parametrize("size", [(96, 96), (64, 128)])
def test_output_contract(nets, name, size):
    net = nets[name]
    h, w = size
    with torch.no_grad():
        outs = net(torch.rand(2, 3, h, w))
    assert isinstance(outs, list) and net.strides == STRIDES[name]
    assert [tuple(o.shape) for o in outs] == [(2, 3 * (5 + 7), h // s, w // s) for s in net.strides]
    assert net.num_classes == 7 and net.num_anchors == 3
    # per anchor a: channels a*(5+C) + (tx, ty, tw, th, obj, classes); the output convs start
    # with zero box biases and a low objectness / class prior
    for conv in net.prediction_convs():
        bias = conv.bias.detach().view(3, 12)
        assert torch.all(bias[:, :4] == 0) and torch.all(bias[:, 4:] < -4)
    # the maps are what the zoo's decoder takes
    rows = [zoo.ops.yolo_decode(o, a, s).shape[1] for o, a, s in zip(outs, net.anchors, net.strides)]
    assert rows == [3 * (h // s) * (w // s) for s in net.strides]
    dets = zoo.ops.yolo_postprocess(outs, net.anchors, net.strides, conf_threshold=0.0)
    assert len(dets) == 2 and all(d["boxes"].shape[1] == 4 for d in dets)


@pytest.mark.parametrize("name", sorted(STRIDES))
def test_anchors_buffer(name):
    net = _meta(name)
    a = net.anchors
    assert a.dtype == torch.float32 and a.shape == (len(STRIDES[name]), 3, 2)
    assert a.device.type == "meta"  # built where the net is built; follows .to()
    assert "anchors" in dict(net.named_buffers())
    net = zoo.create_net(name) if name == "yolov3_tiny" else YOLOv3(anchors=ANCHORS[name])
    assert torch.equal(net.anchors, torch.tensor(ANCHORS[name], dtype=torch.float32))
    assert net.to(torch.device("meta")).anchors.device.type == "meta"


def test_boxes_at_416_and_custom_anchors():
    net = _meta("yolov3")
    outs = net(torch.empty(1, 3, 416, 416, device="meta"))
    assert sum(net.num_anchors * o.shape[2] * o.shape[3] for o in outs) == 10_647  # boxes at 416 (the YOLOv3 paper)

    custom = [[(1, 2), (3, 4)], [(5, 6), (7, 8)], [(9, 10), (11, 12)]]  # 2 anchors per level
    net = zoo.create_net("yolov3", num_classes=7, anchors=custom)
    assert net.anchors.tolist() == [[list(map(float, p)) for p in lvl] for lvl in custom]
    assert [h.pred.out_channels for h in net.heads] == [2 * 12] * 3
    with pytest.raises(ValueError, match="anchors"):
        YOLOv3(anchors=COCO[:2])
    with pytest.raises(ValueError, match="anchors"):
        YOLOv3Tiny(anchors=[[(10, 14), (23, 27), (37, 58)], [(81, 82), (0, 169), (344, 319)]])
    with pytest.raises(ValueError, match="num_classes"):
        YOLOv3Tiny(num_classes=0)


def test_bad_inputs_are_clear_errors(nets):
    net = nets["yolov3_tiny"]
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 64, 80))
    with pytest.raises(ValueError, match="input channel"):
        net(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        nets["yolov3"](torch.rand(1, 3, 48, 64))


def test_in_chans():
    net = _meta("yolov3", in_chans=4)
    assert net.backbone.stem.conv.in_channels == 4
    assert _meta("yolov3_tiny", in_chans=1).backbone16[0].conv.in_channels == 1


def test_yolov3_se_has_an_se_block_per_residual_block(monkeypatch):
    torch.manual_seed(0)
    plain = randomize_bn(zoo.create_net("yolov3", num_classes=7)).eval()
    net = zoo.create_net("yolov3_se", num_classes=7).eval()
    blocks = [m for m in net.modules() if isinstance(m, DarkResidual)]
    assert len(blocks) == 23 == sum(isinstance(m, SEBlock) for m in net.modules())
    assert all(isinstance(b.se, SEBlock) and b.se.rd_channels == max(8, b.se.channels // 16) for b in blocks)
    assert not any(isinstance(m, SEBlock) for m in plain.modules())

    missing, unexpected = net.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and len(missing) == 23 * 4 and all(".se." in k for k in missing)
    x = torch.rand(1, 3, 64, 64)

    calls = []
    real = zoo.nn.se.squeeze_excite
    monkeypatch.setattr(zoo.nn.se, "squeeze_excite", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        # gate 1 everywhere: the SE net is the plain net
        for b in blocks:
            b.se.fc2.weight.zero_()
            b.se.fc2.bias.fill_(1e4)
        assert all(torch.equal(a, b) for a, b in zip(net(x), plain(x)))
        assert len(calls) == 23  # every SE block runs the fused op

        # gate 0 everywhere: each residual block is the identity; the same as the plain net
        # with its residual branches switched off (last BN of the branch zeroed). An SE placed
        # anywhere but on the branch output before the add would not give this.
        for b in blocks:
            b.se.fc2.bias.fill_(-1e4)
        for b in (m for m in plain.modules() if isinstance(m, DarkResidual)):
            b.conv2.bn.weight.zero_()
            b.conv2.bn.bias.zero_()
        assert all(torch.equal(a, b) for a, b in zip(net(x), plain(x)))
