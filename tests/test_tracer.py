"""zoo.flow / zoo.tracer and `python -m zoo flow`.

Oracles: torch.utils.flop_counter.FlopCounterMode run with the zoo ops' pure-torch fallback
(ZOO_OPS=torch, read on every op call), so it counts the SE blocks' plain matrix products and
none of the zoo's MAC formulas; torchvision's resnet50 (parameter count, every leaf's output
shape, by forward hooks); the parameter counts the model files state (yolov3_se 62,817,461;
srnet 4,776,962, hand-summed); darknet's cfg (the routes' shapes at 416).
"""
from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo import registry
from zoo.cli import main
from zoo.ops import _ext
from zoo.tracer import Flow, flow

EXT = _ext.available() and not _ext.forced_fallback()  # the extension runs the zoo ops
PARAMS = {"resnet50": None, "yolov3_se": 62_817_461, "srnet": 4_776_962}  # None: torchvision's count


def _meta_net(name: str) -> nn.Module:
    with torch.device("meta"):
        return registry.create_net(name)


def _oracle_macs(net: nn.Module, size: tuple[int, ...], monkeypatch) -> int:
    """FlopCounterMode's FLOPs // 2 with the fallback ops (ZOO_OPS=torch)."""
    with monkeypatch.context() as m:
        m.setenv("ZOO_OPS", "torch")
        net.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(torch.empty((1, *size), device="meta"))
    return counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def flows() -> dict[str, Flow]:
    """Each model traced once (with the extension where it is built), shared by the tests."""
    return {name: flow(name) for name in PARAMS}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_totals_match_flop_counter_and_param_count(name, flows, monkeypatch):
    f = flows[name]
    size = registry.get_spec(name).input_size
    net = _meta_net(name)
    expected = PARAMS[name]
    if expected is None:
        with torch.device("meta"):
            expected = sum(p.numel() for p in torchvision.models.resnet50().parameters())
        assert expected == 25_557_032
    assert f.totals["params"] == expected
    assert f.totals["macs"] == pytest.approx(_oracle_macs(net, size, monkeypatch), rel=0.01)
    assert f.totals["macs"] == sum(r["macs"] for r in f.rows)
    assert f.totals["activation_bytes"] == sum(r["activation_bytes"] for r in f.rows) > 0
    assert sum(r["params"] for r in f.rows) == expected  # every parameter is in exactly one row
    assert f.input_shape == [1, *size]
    # the fallback gives the same parameters and MACs; the SE rows differ (its FCs are separate
    # ops, whose [N, Cr] / [N, C] outputs add a little activation memory)
    with monkeypatch.context() as m:
        m.setenv("ZOO_OPS", "torch")
        g = flow(net, size)
    assert g.totals["params"] == f.totals["params"] and g.totals["macs"] == f.totals["macs"]
    assert g.totals["activation_bytes"] == pytest.approx(f.totals["activation_bytes"], rel=1e-3)
    assert not any(r["type"].startswith("zoo.") for r in g.rows)
    if name == "yolov3_se" and EXT:
        assert sum(r["type"] == "zoo.squeeze_excite" for r in f.rows) == 23  # one per Darknet-53 block
        assert g.totals["activation_bytes"] > f.totals["activation_bytes"]
    else:
        assert [r["path"] for r in g.rows] == [r["path"] for r in f.rows]


def test_resnet50_rows_follow_torchvision(flows):
    f = flows["resnet50"]
    # torchvision's resnet50 (the zoo keeps its module names): each leaf call's output shape
    ref = torchvision.models.resnet50()
    calls = []
    leaves = {m: n for n, m in ref.named_modules() if not list(m.children())}
    hooks = [m.register_forward_hook(lambda m, a, o: calls.append((leaves[m], list(o.shape)))) for m in leaves]
    with torch.no_grad():
        ref.eval()(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    g = flow(zoo.create_net("resnet50"), (3, 64, 64))  # real CPU tensors, a small input
    leaf_rows = [(r["path"], r["output_shapes"][0]) for r in g.rows if "(" not in r["path"]]
    assert sorted(leaf_rows) == sorted(calls)  # (the zoo's bottleneck runs its downsample first)

    rows = f.rows
    assert (rows[0]["path"], rows[0]["type"]) == ("conv1", "Conv2d")
    assert rows[0]["input_shapes"] == [[1, 3, 224, 224]] and rows[0]["output_shapes"] == [[1, 64, 112, 112]]
    assert rows[0]["params"] == 64 * 3 * 7 * 7 and rows[0]["macs"] == 64 * 112 * 112 * 3 * 7 * 7
    assert (rows[-1]["path"], rows[-1]["type"]) == ("fc", "Linear")
    assert rows[-1]["input_shapes"] == [[1, 2048]] and rows[-1]["output_shapes"] == [[1, 1000]]
    assert rows[-1]["params"] == 2048 * 1000 + 1000 and rows[-1]["macs"] == 2048 * 1000
    layer4 = [r for r in rows if r["path"].startswith("layer4.")]
    assert layer4[-1]["path"] == "layer4.2.relu" and layer4[-1]["output_shapes"] == [[1, 2048, 7, 7]]
    add = next(r for r in rows if r["path"] in ("layer4.2(add)", "layer4.2(add_)"))  # the residual connection
    assert add["input_shapes"] == [[1, 2048, 7, 7]] * 2 and add["output_shapes"] == [[1, 2048, 7, 7]]
    # execution order: the top-level blocks appear in the order the forward runs them
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    tops = [order.index(r["path"].split(".")[0].split("(")[0]) for r in rows]
    assert tops == sorted(tops)
    # the ReLU module of a bottleneck runs three times: three rows
    assert sum(r["path"] == "layer1.0.relu" for r in rows) == 3


def test_yolov3_scales_and_routes(flows):
    f = flows["yolov3_se"]
    rows = f.rows
    preds = {r["path"]: r["output_shapes"] for r in rows if r["path"].endswith(".pred")}
    assert preds == {"heads.2.pred": [[1, 255, 13, 13]], "heads.1.pred": [[1, 255, 26, 26]],
                     "heads.0.pred": [[1, 255, 52, 52]]}
    index = {r["path"]: i for i, r in enumerate(rows)}
    assert index["heads.2.pred"] < index["heads.1.pred"] < index["heads.0.pred"]  # coarse to fine, as the cfg
    for i, size in ((2, 13), (1, 26), (0, 52)):  # every row of a branch at its stride
        branch = [r for r in rows if r["path"].startswith(f"heads.{i}.")]
        assert len(branch) == 3 * 6 + 1 and all(r["output_shapes"][0][2:] == [size, size] for r in branch)
    cats = [(i, r) for i, r in enumerate(rows) if r["type"] == "cat"]
    assert [(r["path"], r["input_shapes"], r["output_shapes"]) for _, r in cats] == [
        ("(cat)", [[1, 256, 26, 26], [1, 512, 26, 26]], [[1, 768, 26, 26]]),  # upsampled lateral, stage 4
        ("(cat)", [[1, 128, 52, 52], [1, 256, 52, 52]], [[1, 384, 52, 52]]),  # upsampled lateral, stage 3
    ]
    for i, r in cats:  # the lateral's upsampled map feeds the concatenation
        up = rows[i - 1]
        assert up["type"] == "upsample_nearest2d" and up["output_shapes"][0] == r["input_shapes"][0]
        assert rows[i + 1]["input_shapes"] == r["output_shapes"]
    table = f.to_table()
    lines = table.splitlines()
    assert lines[0] == "yolov3_se: input 1x3x416x416, %d rows" % len(rows)
    assert len(lines) == len(rows) + 2 + 4
    assert any(line.split()[1:3] == ["heads.2.pred", "Conv2d"] and "1x255x13x13" in line for line in lines)
    assert any(line.split()[1:3] == ["(cat)", "cat"] and "1x128x52x52, 1x256x52x52" in line for line in lines)
    assert f"params:      {f.totals['params']:,}" in table and f"({f.totals['macs']:,} multiply" in table


class _Toy(nn.Module):
    """A shared Linear run twice, a functional conv and matmul, a parameter of the container."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.randn(4, 2, 3, 3))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):  # x [N, 2, 6, 6]
        y = F.conv2d(x, self.w)  # [N, 4, 4, 4]
        z = y.flatten(1)[:, :8]
        z = self.fc(self.fc(z)) @ torch.ones(8, 3)
        return self.drop(z)


def test_module_rows_params_and_functional_ops():
    net = _Toy().train()
    f = flow(net, torch.randn(2, 2, 6, 6))
    assert [(r["path"], r["type"]) for r in f.rows] == [
        ("(convolution)", "convolution"), ("fc", "Linear"), ("fc", "Linear"), ("(mm)", "mm"), ("drop", "Dropout")]
    conv, fc1, fc2, mm, drop = f.rows
    assert conv["macs"] == 2 * 4 * 4 * 4 * 2 * 3 * 3 and conv["input_shapes"] == [[2, 2, 6, 6]]
    assert conv["params"] == 4 * 2 * 3 * 3  # the container's own parameter: its functional row
    assert (fc1["params"], fc2["params"]) == (8 * 8 + 8, 0)  # counted once
    assert fc1["macs"] == fc2["macs"] == 2 * 8 * 8 and mm["macs"] == 2 * 8 * 3
    assert drop["output_shapes"] == [[2, 3]] and drop["activation_bytes"] == 2 * 3 * 4
    assert f.totals == {"params": 4 * 18 + 72, "macs": 2304 + 256 + 48, "activation_bytes":
                        sum(r["activation_bytes"] for r in f.rows)}
    assert net.training and net.drop.training  # the training flags are back
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()(torch.randn(2, 2, 6, 6))
    assert f.totals["macs"] == counter.get_total_flops() // 2


def test_bad_arguments():
    with pytest.raises(KeyError, match="unknown model name 'resnet5'"):
        flow("resnet5")
    with pytest.raises(TypeError, match="model: expected an nn.Module"):
        flow(42)
    with pytest.raises(TypeError, match="example: expected a Tensor"):
        flow("resnet18", "3x224x224")
    with pytest.raises(ValueError, match="example: expected an input size"):
        flow("resnet18", (3, 0, 224))
    with pytest.raises(ValueError, match="example: required"):
        flow(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"example: the forward pass of yolov3 on an input of shape 1x3x100x100 "
                                         r"failed: .*multiples of 32"):
        flow("yolov3", (3, 100, 100))
    net = nn.Sequential(nn.Linear(3, 2)).train()
    with pytest.raises(ValueError, match="example: the forward pass of Sequential"):
        flow(net, (4,))
    assert net.training  # restored after a failed forward too


def test_lazy_export_and_video_input():
    assert "flow" in zoo.__all__
    f = zoo.flow("deepfake_r3d", (4, 3, 32, 32))  # (T, C, H, W)
    assert f.input_shape == [1, 4, 3, 32, 32] and f.totals["params"] == 33_166_785


@pytest.mark.skipif(not EXT, reason="the zoo ops run their fallback (zoo._C not built, or ZOO_OPS=torch)")
def test_count_macs_counts_the_fused_ops():
    """The registered flop formulas: adder2d as its convolution, squeeze_excite as its two FCs."""
    net = _meta_net("adder_resnet20")
    hooked = 0

    def hook(m, a, o):
        nonlocal hooked
        if isinstance(m, (nn.Conv2d, zoo.nn.Adder2d)):
            hooked += o.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            hooked += o.numel() * m.in_features

    hooks = [m.register_forward_hook(hook) for m in net.modules()]
    macs = registry.count_macs(net, (3, 32, 32))
    for h in hooks:
        h.remove()
    assert macs == hooked > 40_000_000
    assert flow(net, (3, 32, 32)).totals["macs"] == macs
    se = zoo.nn.SEBlock(64, rd_channels=8).to("meta")
    with FlopCounterMode(display=False) as counter:
        se(torch.empty(2, 64, 5, 5, device="meta"))
    assert counter.get_flop_counts()["Global"] == {torch.ops.zoo.squeeze_excite: 2 * 2 * (64 * 8 + 8 * 64)}


def test_cli_flow(capsys, tmp_path):
    assert main(["flow", "resnet18", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    f = flow("resnet18")
    assert data["totals"] == f.totals and data["rows"] == f.rows and data["model"] == "resnet18"
    assert data["totals"]["params"] == 11_689_512

    assert main(["flow", "resnet18", "--format", "markdown"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "| # | path | type | input | output | params | MACs | activations |" in out
    assert sum(line.startswith("| ") for line in out) == len(f.rows) + 1

    png = tmp_path / "flow.png"
    assert main(["flow", "resnet18", "--input-size", "3", "64", "64", "--plot", str(png)]) == 0
    out = capsys.readouterr()
    assert "input 1x3x64x64" in out.out and str(png) in out.err
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000

    assert main(["flow", "resnt18"]) == 2
    assert "zoo flow: unknown model name 'resnt18'; closest: resnet18" in capsys.readouterr().err
    assert main(["flow", "resnet18", "--input-size", "3", "224"]) == 2
    assert "--input-size: expected C H W (or T C H W" in capsys.readouterr().err
    assert main(["flow", "yolov3_tiny", "--input-size", "3", "100", "100"]) == 2
    err = capsys.readouterr().err
    assert "zoo flow: --input-size: the forward pass of yolov3_tiny" in err and "multiples of 32" in err
    with pytest.raises(SystemExit) as exc:
        main(["flow", "resnet18", "--input-size", "3", "x", "64"])
    assert exc.value.code == 2 and "--input-size: invalid int value: 'x'" in capsys.readouterr().err
