"""Forward speed of one model per classifier family against its outside reference.

    python benchmarks/bench_models.py [--models NAME ...] [--runs 5] [--repeats 3] [--batch 8] [--size 224]

Each zoo net gets the reference's weights (random, BatchNorm statistics randomised) through
the zoo's converters, and the script first checks that both give the same logits. Then, in
eval mode under ``torch.inference_mode`` (fp32, CPU, batch 8 at 224x224 by default), the two
forwards are timed alternately (``benchmarks.timing.timed_pair``: the median of ``--repeats``
calls each, after 3 warm-up calls) in each of ``--runs`` runs. "ratio" is zoo time /
reference time (below 1: the zoo is faster), as the median and range over the runs; the
target is <= 1.05 everywhere, and below 1 where the zoo's fused SE op replaces the eager SE
module (se_resnet50, ghostnet, efficientnet).

The references are timm's and torchvision's own nets; the AdderNets have no outside
implementation to race (benchmarks/bench_adder.py compares their op with the pure-torch one).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402
from zoo.weights import convert_state_dict  # noqa: E402
from benchmarks.timing import keep_freed_memory, timed_pair  # noqa: E402

# one model per family: zoo name -> (library, reference name)
MODELS = {
    "resnet50": ("torchvision", "resnet50"),
    "se_resnet50": ("timm", "seresnet50"),
    "darknet53": ("timm", "darknet53"),  # built with timm's LeakyReLU slope (below)
    "densenet121": ("torchvision", "densenet121"),
    "googlenet": ("torchvision", "googlenet"),
    "res2net50_26w_4s": ("timm", "res2net50_26w_4s"),
    "resnest50d": ("timm", "resnest50d"),
    "ghostnet_100": ("timm", "ghostnet_100"),
    "efficientnet_b0": ("timm", "efficientnet_b0"),
}
# zoo build options that make the architecture the reference's
NET_KWARGS = {"darknet53": {"negative_slope": 0.01}}


def build_reference(lib: str, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if lib == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None)
    import timm

    return timm.create_model(name, pretrained=False)


def randomize_bn(net: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)


def pair(name: str, lib: str, ref_name: str) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """(zoo net, reference net) with the same weights, both in eval mode; and the layout converted."""
    ref = build_reference(lib, ref_name)
    randomize_bn(ref)
    net = zoo.create_net(name, **NET_KWARGS.get(name, {}))
    sd, layout = convert_state_dict(name, ref.state_dict(), net)
    net.load_state_dict(sd, strict=True)
    return net.eval(), ref.eval(), layout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(MODELS), help=f"from {', '.join(MODELS)}")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    keep_freed_memory()
    device = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, zoo.ops backend: {zoo.ops.backend()}; "
          f"forward, eval, fp32, batch {args.batch} at {args.size}x{args.size}, "
          f"{args.runs} runs x median of {args.repeats}")
    print("| model | reference | layout | zoo ms | reference ms | ratio median | ratio range |")
    print("|---|---|---|---:|---:|---:|---|")
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    for name in args.models:
        lib, ref_name = MODELS[name]
        if name not in zoo.list_models():
            print(f"| {name} | {lib}:{ref_name} | - | - | - | - | not registered |")
            continue
        net, ref, layout = pair(name, lib, ref_name)
        with torch.inference_mode():
            diff = (net(x) - ref(x)).abs().max().item()
            if diff > 1e-3:
                raise SystemExit(f"{name}: outputs differ from {lib}:{ref_name} by {diff:.2e}; not comparable")
            times = [timed_pair(lambda: net(x), lambda: ref(x), device, args.repeats) for _ in range(args.runs)]
        ratios = [a / b for a, b in times]
        print(f"| {name} | {lib}:{ref_name} | {layout} | {statistics.median(a for a, _ in times) * 1e3:.0f} | "
              f"{statistics.median(b for _, b in times) * 1e3:.0f} | {statistics.median(ratios):.3f} | "
              f"{min(ratios):.3f}-{max(ratios):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
