"""Darknet binary .weights import: round trips through an independent writer, bad files.

The conv sequences below are written out from darknet's cfg/yolov3.cfg and
cfg/yolov3-tiny.cfg (not from the zoo's code); the writer serialises a randomly
initialised net in that order, as darknet's save_convolutional_weights does.
"""
from __future__ import annotations

import struct

import pytest
import torch
from torch import nn

import zoo
from zoo.weights import (
    DarknetWeights,
    convert_state_dict,
    load_darknet_weights,
    load_weights,
    read_checkpoint,
)
from tests.util import randomize_bn


# ----------------------------------------------------------------------------- cfg facts
# one entry per [convolutional] section, in cfg order:
# (in channels, filters, size, batch_normalize, stride of the output w.r.t. the input image)


def yolov3_cfg_convs(num_classes: int = 80) -> list[tuple[int, int, int, bool, int]]:
    out = 3 * (5 + num_classes)  # filters of the linear conv before each [yolo]
    convs = [(3, 32, 3, True, 1)]
    cin, stride = 32, 1
    for c, n in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):  # Darknet-53
        stride *= 2
        convs.append((cin, c, 3, True, stride))  # size=3 stride=2 downsample
        for _ in range(n):  # residual: 1x1 c/2, 3x3 c, [shortcut] from=-3
            convs += [(c, c // 2, 1, True, stride), (c // 2, c, 3, True, stride)]
        cin = c
    # stride 32 head (layers 75..81), [yolo] mask = 6,7,8
    convs += [(1024, 512, 1, True, 32), (512, 1024, 3, True, 32), (1024, 512, 1, True, 32), (512, 1024, 3, True, 32)]
    convs += [(1024, 512, 1, True, 32), (512, 1024, 3, True, 32), (1024, out, 1, False, 32)]
    # [route] -4, 1x1 256, [upsample], [route] -1, 61 (256 + 512)
    convs.append((512, 256, 1, True, 32))
    convs += [(768, 256, 1, True, 16), (256, 512, 3, True, 16), (512, 256, 1, True, 16), (256, 512, 3, True, 16)]
    convs += [(512, 256, 1, True, 16), (256, 512, 3, True, 16), (512, out, 1, False, 16)]
    # [route] -4, 1x1 128, [upsample], [route] -1, 36 (128 + 256)
    convs.append((256, 128, 1, True, 16))
    convs += [(384, 128, 1, True, 8), (128, 256, 3, True, 8), (256, 128, 1, True, 8), (128, 256, 3, True, 8)]
    convs += [(256, 128, 1, True, 8), (128, 256, 3, True, 8), (256, out, 1, False, 8)]
    return convs


def yolov3_tiny_cfg_convs(num_classes: int = 80) -> list[tuple[int, int, int, bool, int]]:
    out = 3 * (5 + num_classes)
    convs = [
        (3, 16, 3, True, 1), (16, 32, 3, True, 2), (32, 64, 3, True, 4), (64, 128, 3, True, 8),
        (128, 256, 3, True, 16),  # layer 8, routed later
        (256, 512, 3, True, 32),  # after [maxpool] size=2 stride=2
        (512, 1024, 3, True, 32),  # after [maxpool] size=2 stride=1
        (1024, 256, 1, True, 32), (256, 512, 3, True, 32), (512, out, 1, False, 32),  # [yolo] mask 3,4,5
        (256, 128, 1, True, 32),  # [route] -4, then [upsample], [route] -1, 8 (128 + 256)
        (384, 256, 3, True, 16), (256, out, 1, False, 16),  # [yolo] (stride 16)
    ]
    return convs


CFG = {"yolov3": yolov3_cfg_convs, "yolov3_tiny": yolov3_tiny_cfg_convs}


def cfg_params(convs) -> int:
    """Parameters of a conv sequence: weights + (BN gamma, beta) or a bias."""
    return sum(k * k * cin * cout + (2 * cout if bn else cout) for cin, cout, k, bn, _ in convs)


def test_cfg_facts_agree_with_reference_counts():
    convs = yolov3_cfg_convs()
    assert len(convs) == 75 and len(yolov3_tiny_cfg_convs()) == 13
    assert cfg_params(convs[:52]) == 40_584_928  # the Darknet-53 body
    assert cfg_params(convs) == 61_949_149
    assert cfg_params(yolov3_cfg_convs(7)) == 61_556_044


# ----------------------------------------------------------------------------- the writer


def observed_conv_order(net: nn.Module, size: int = 64) -> list[tuple[nn.Conv2d, int]]:
    """(conv, output stride) in the order the forward pass runs them (darknet runs its layers in cfg order)."""
    calls: list[tuple[nn.Conv2d, int]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: calls.append((m, size // o.shape[-1])))
        for m in net.modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return calls


def check_conv_order(net: nn.Module, cfg) -> list[tuple[nn.Module, nn.Module | None]]:
    order = net.darknet_conv_order()
    got = [(c.in_channels, c.out_channels, c.kernel_size[0], bn is not None) for c, bn in order]
    assert got == [entry[:4] for entry in cfg]
    ran = observed_conv_order(net)
    assert [m for m, _ in ran] == [c for c, _ in order], "darknet_conv_order is not the forward (cfg) order"
    assert [s for _, s in ran] == [entry[4] for entry in cfg]
    for conv, bn in order:
        assert bn is None or bn.num_features == conv.out_channels
    return order


def write_darknet(path, order, version=(0, 2, 0), seen=123456, limit=None) -> None:
    """Serialise ``order`` [(conv, bn)] as darknet's save_weights: header, then per conv
    (bn beta, gamma, mean, var | conv bias) and the conv weights."""
    major, minor, _ = version
    with open(path, "wb") as f:
        f.write(struct.pack("<3i", *version))
        wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
        f.write(struct.pack("<q" if wide else "<i", seen))
        for conv, bn in order[:limit]:
            parts = [bn.bias, bn.weight, bn.running_mean, bn.running_var] if bn is not None else [conv.bias]
            for t in parts + [conv.weight]:
                f.write(t.detach().float().contiguous().numpy().tobytes())


def _outputs(net, x):
    with torch.no_grad():
        return net.eval()(x)


def _make(name, seed, **kwargs):
    torch.manual_seed(seed)
    return randomize_bn(zoo.create_net(name, **kwargs), seed=seed)


@pytest.fixture(scope="module")
def yolov3_file(tmp_path_factory):
    src = _make("yolov3", 1, num_classes=7)
    order = check_conv_order(src, yolov3_cfg_convs(7))
    path = tmp_path_factory.mktemp("darknet") / "yolov3-insects.weights"
    write_darknet(path, order)
    yield src, path
    path.unlink()


X = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(3))


def test_yolov3_round_trip(yolov3_file):
    src, path = yolov3_file
    dst = _make("yolov3", 2, num_classes=7)
    assert not torch.equal(_outputs(dst, X)[0], _outputs(src, X)[0])
    load_darknet_weights(dst, path)
    for a, b in zip(_outputs(dst, X), _outputs(src, X)):
        assert torch.equal(a, b)


def test_yolov3_through_load_weights_and_convert_state_dict(yolov3_file):
    src, path = yolov3_file
    dst = _make("yolov3", 4, num_classes=7)
    assert load_weights(dst, "yolov3", path) == "darknet"
    assert all(torch.equal(a, b) for a, b in zip(_outputs(dst, X), _outputs(src, X)))

    sd, hparams = read_checkpoint(path)  # what zoo.load does with a weights path
    assert isinstance(sd, DarknetWeights) and hparams is None
    assert sd["header"].tolist() == [0, 2, 0, 123456]
    converted, layout = convert_state_dict("yolov3", sd, _make("yolov3", 5, num_classes=7))
    assert layout == "darknet"
    assert all(torch.equal(converted[k], v) for k, v in src.state_dict().items() if "num_batches" not in k)


def _meta_yolov3(**kwargs):
    with torch.device("meta"):  # the file is checked against the net before anything is copied
        return zoo.create_net("yolov3", **kwargs)


def test_wrong_number_of_classes_names_the_file(yolov3_file):
    _, path = yolov3_file
    with pytest.raises(ValueError, match=r"yolov3-insects\.weights.*too short"):
        load_darknet_weights(_meta_yolov3(num_classes=80), path)
    with pytest.raises(ValueError, match=r"yolov3-insects\.weights.*left over"):
        load_darknet_weights(_meta_yolov3(num_classes=2), path)


def test_yolov3_se_needs_strict_false(yolov3_file):
    src, path = yolov3_file
    net = _make("yolov3_se", 6, num_classes=7)
    with pytest.raises(ValueError, match=r"yolov3-insects\.weights.*strict=False"):
        load_darknet_weights(net, path)
    se_before = {k: v.clone() for k, v in net.state_dict().items() if ".se." in k}
    load_darknet_weights(net, path, strict=False)
    sd, want = net.state_dict(), src.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in want.items() if "num_batches" not in k)
    assert len(se_before) == 23 * 4 and all(torch.equal(sd[k], v) for k, v in se_before.items())


def test_backbone_cut_and_darknet53_classifier(tmp_path, yolov3_file):
    src, _ = yolov3_file
    order = src.darknet_conv_order()
    cut = tmp_path / "darknet53.conv.74"  # darknet partial: the 52 Darknet-53 convs
    write_darknet(cut, order, limit=52)

    dst = _make("yolov3", 7, num_classes=7)
    heads_before = {k: v.clone() for k, v in dst.state_dict().items() if not k.startswith("backbone.")}
    assert load_weights(dst, "yolov3", cut) == "darknet"  # a .conv.N file loads partially
    sd, want = dst.state_dict(), src.state_dict()
    assert all(torch.equal(sd[k], want[k]) for k in sd if k.startswith("backbone.") and "num_batches" not in k)
    assert all(torch.equal(sd[k], v) for k, v in heads_before.items())

    renamed = tmp_path / "darknet53-cut.weights"  # the same bytes, but named as a full file
    cut.rename(renamed)
    with pytest.raises(ValueError, match=r"darknet53-cut\.weights.*first 52 layers.*strict=False"):
        load_darknet_weights(dst, renamed)

    # darknet53.cfg: the same 52 convs, then the 1000-filter 1x1 conv (with bias) as the classifier
    clf_src = _make("darknet53", 8)
    clf_order = clf_src.darknet_conv_order()
    assert len(clf_order) == 53 and clf_order[-1] == (clf_src.fc, None)
    full = tmp_path / "darknet53.weights"
    with open(full, "wb") as f:
        f.write(struct.pack("<3iq", 0, 2, 0, 0))
        for conv, bn in clf_order:
            parts = [bn.bias, bn.weight, bn.running_mean, bn.running_var] if bn is not None else [conv.bias]
            for t in parts + [conv.weight]:
                f.write(t.detach().contiguous().numpy().tobytes())
    renamed.unlink()
    clf = _make("darknet53", 9)
    load_darknet_weights(clf, full)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_outputs(clf, x), _outputs(clf_src, x))


def test_yolov3_tiny_round_trip(tmp_path):
    src = _make("yolov3_tiny", 1)
    order = check_conv_order(src, yolov3_tiny_cfg_convs())
    path = tmp_path / "yolov3-tiny.weights"
    write_darknet(path, order, version=(0, 2, 5))
    dst = _make("yolov3_tiny", 2)
    load_darknet_weights(dst, path)
    for a, b in zip(_outputs(dst, X), _outputs(src, X)):
        assert torch.equal(a, b)
    bad = _make("yolov3_tiny", 3, num_classes=7)
    with pytest.raises(ValueError, match=r"yolov3-tiny\.weights.*left over"):
        load_darknet_weights(bad, path)


# ----------------------------------------------------------------------------- bad files, on a small net


class TwoConvs(nn.Module):
    """A tiny net with a darknet layout: conv-BN-leaky, then a linear 1x1 conv with a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.out = nn.Conv2d(4, 6, 1)

    def forward(self, x):
        return self.out(nn.functional.leaky_relu(self.bn(self.conv(x)), 0.1))

    def darknet_conv_order(self):
        return [(self.conv, self.bn), (self.out, None)]


SMALL_VALUES = 4 * 4 + 4 * 3 * 9 + 6 + 6 * 4  # 154


def _small_file(path, version=(0, 2, 0), extra=b"", cut_bytes=0):
    torch.manual_seed(0)
    src = randomize_bn(TwoConvs())
    write_darknet(path, src.darknet_conv_order(), version=version)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut_bytes] + extra)
    return src


@pytest.mark.parametrize("version,header_bytes", [((0, 2, 0), 20), ((0, 1, 0), 16), ((1, 0, 0), 20)])
def test_seen_width_follows_the_version(tmp_path, version, header_bytes):
    path = tmp_path / "small.weights"
    src = _small_file(path, version=version)
    assert path.stat().st_size == header_bytes + 4 * SMALL_VALUES
    net = TwoConvs()
    load_darknet_weights(net, path)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(_outputs(net, x), _outputs(src, x))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(cut_bytes=8), "too short.*ends inside layer 1"),
        (dict(cut_bytes=4 * (6 + 24)), "too short.*first 1 layers"),
        (dict(extra=struct.pack("<f", 1.0)), "1 float32 values are left over"),
        (dict(extra=b"\x00\x01"), "not a whole number of float32"),
        (dict(version=(-1, 2, 0)), "bad darknet header"),
    ],
)
def test_bad_files_name_the_file(tmp_path, kwargs, match):
    path = tmp_path / "broken.weights"
    _small_file(path, **kwargs)
    with pytest.raises(ValueError, match=r"broken\.weights.*" + match):
        load_darknet_weights(TwoConvs(), path)


def test_bad_headers_and_other_files(tmp_path):
    short = tmp_path / "short.weights"
    short.write_bytes(struct.pack("<3i", 0, 2, 0))
    with pytest.raises(ValueError, match=r"short\.weights.*too short for a darknet weights header"):
        load_darknet_weights(TwoConvs(), short)
    short.write_bytes(struct.pack("<3ii", 0, 2, 0, 0))  # 0.2 needs a 64-bit seen
    with pytest.raises(ValueError, match=r"short\.weights.*too short for a darknet weights header"):
        load_darknet_weights(TwoConvs(), short)

    pth = tmp_path / "actually-a-torch-file.weights"  # zip magic "PK\x03\x04" as the major version
    torch.save(TwoConvs().state_dict(), pth)
    with pytest.raises(ValueError, match=r"actually-a-torch-file\.weights.*bad darknet header"):
        load_darknet_weights(TwoConvs(), pth)

    ok = tmp_path / "small.weights"
    _small_file(ok)
    with pytest.raises(ValueError, match=r"small\.weights.*resnet18 has no darknet layout"):
        load_weights(zoo.create_net("resnet18"), "resnet18", ok)
    with pytest.raises(FileNotFoundError):
        load_darknet_weights(TwoConvs(), tmp_path / "missing.weights")
