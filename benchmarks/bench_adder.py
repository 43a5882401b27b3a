"""zoo.ops.adder2d: the extension's kernel vs the chunked pure-torch version (zoo.ops.reference).

    python benchmarks/bench_adder.py [--device cpu|cuda] [--runs 5] [--repeats 3]

For each shape (fp32, 3x3, padding 1): forward time (no grad) and forward+backward time
(x and the weight require grad; backward of a fixed dy) of

* kernel: ``torch.ops.zoo.adder2d`` (the C++/CUDA kernels, autograd registered from Python);
* torch: ``zoo.ops.reference.adder2d`` (unfold + cdist(p=1) forward, chunked HardTanh input
  gradient, the weight gradient through torch's convolution backward).

Prints, per row, the ratio kernel time / torch time (below 1: the kernel is faster) as the
median and range over ``--runs`` runs; each run times both alternately (median of ``--repeats``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.ops import _ext, reference  # noqa: E402
from benchmarks.timing import keep_freed_memory, timed_pair  # noqa: E402

SHAPES = [(32, 64, 32, 32, 64), (8, 16, 16, 16, 32)]  # (N, C_in, H, W, C_out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    if not (_ext.available() and torch._C._dispatch_has_kernel_for_dispatch_key("zoo::adder2d", device.type.upper())):
        print(f"zoo._C has no adder2d kernel for {device.type}: {_ext.load_error()}", file=sys.stderr)
        return 1
    keep_freed_memory()
    print(f"adder2d on {device.type} (fp32, 3x3, padding 1), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; ratio = kernel / torch chunked, median [min, max] of {args.runs} runs")
    print(f"{'shape':<28} {'pass':<10} {'kernel ms':>10} {'torch ms':>10} {'ratio':>8}  range")
    for n, ci, h, w, co in SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, ci, h, w, generator=g).to(device)
        wt = (0.1 * torch.randn(co, ci, 3, 3, generator=g)).to(device)
        dy = torch.randn(n, co, h, w, generator=g).to(device)

        def fwd(fn):
            def run():
                with torch.no_grad():
                    fn(x, wt)
            return run

        def fwd_bwd(fn):
            def run():
                xg, wg = x.detach().requires_grad_(), wt.detach().requires_grad_()
                fn(xg, wg).backward(dy)
            return run

        kernel = lambda a, b: torch.ops.zoo.adder2d(a, b, [1, 1], [1, 1], 0.2)  # noqa: E731
        torch_ = lambda a, b: reference.adder2d(a, b, (1, 1), (1, 1), 0.2)  # noqa: E731
        for label, wrap in (("forward", fwd), ("fwd+bwd", fwd_bwd)):
            ka, ta, ratios = [], [], []
            for _ in range(args.runs):
                tk, tt = timed_pair(wrap(kernel), wrap(torch_), device, args.repeats)
                ka.append(tk), ta.append(tt), ratios.append(tk / tt)
            print(f"{str((n, ci, h, w)) + f' ->{co}':<28} {label:<10} {statistics.median(ka) * 1e3:>10.1f} "
                  f"{statistics.median(ta) * 1e3:>10.1f} {statistics.median(ratios):>8.3f}  "
                  f"[{min(ratios):.3f}, {max(ratios):.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
