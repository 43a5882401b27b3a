"""Fused Squeeze-and-Excitation op vs an eager nn.Module SE with the same weights.

    python benchmarks/bench_se.py [--device cpu|cuda] [--repeats 30] [--act relu|silu]

For each shape (fp32): forward time (no grad) and forward+backward time (x and the
weights require grad; backward of a random dy) of

* eager: ``x * sigmoid(fc2(act(fc1(x.mean((2, 3), keepdim=True)))))`` with 1x1 conv FCs,
  as timm / torchvision write it (``act``: ReLU, or SiLU with ``--act silu`` as in EfficientNet);
* fused: ``zoo.ops.squeeze_excite(..., act=act)`` (the C++/CUDA kernel),

"speedup" is eager time / fused time (higher is better; targets: forward >= 1.4x and
forward+backward >= 1.3x on the CPU, forward >= 1.5x on a GPU). "GB/s" is the fused
forward's read of x plus write of y (the 2-pass memory floor: no SE can move less)
divided by its time; "copy GB/s" is the same traffic for ``y.copy_(x)`` measured in
the same run, the machine's practical ceiling for it.

On Linux the script first tells glibc's malloc to keep freed memory (see
``benchmarks.timing.keep_freed_memory``): otherwise the page faults of re-allocated
25 MB outputs come and go between runs and can outweigh both kernels.
``--malloc default`` measures with glibc's default behaviour instead.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo.ops as ops  # noqa: E402
from benchmarks.timing import keep_freed_memory, timed, timed_pair  # noqa: E402

SHAPES = [(32, 64, 56, 56), (32, 256, 28, 28), (32, 512, 14, 14), (8, 1024, 7, 7), (1, 256, 28, 28)]


class EagerSE(nn.Module):
    def __init__(self, c: int, r: int, act: str = "relu") -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)
        self.act = nn.ReLU() if act == "relu" else nn.SiLU()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--act", default="relu", choices=["relu", "silu"], help="the activation between the FCs")
    parser.add_argument("--malloc", default="keep", choices=["keep", "default"],
                        help="keep: glibc keeps freed memory for reuse (default); default: glibc's own policy")
    args = parser.parse_args()
    kept = args.malloc == "keep" and keep_freed_memory()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_se: --device cuda but no GPU is visible", file=sys.stderr)
        return 2
    print(f"squeeze_excite on {device} (backend: {ops.backend(device)}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, fp32, act={args.act}, "
          f"malloc: {'keeps freed memory' if kept else 'default'}")
    fwd_target, bwd_target = (1.4, 1.3) if device.type == "cpu" else (1.5, None)

    head = (f"{'shape':<20} {'eager fwd ms':>12} {'fused fwd ms':>12} {'speedup':>8} "
            f"{'eager f+b ms':>12} {'fused f+b ms':>12} {'speedup':>8} {'GB/s':>7} {'copy GB/s':>9}")
    print(head)
    missed = 0
    for shape in SHAPES:
        n, c, h, w = shape
        r = max(8, c // 16)
        torch.manual_seed(0)
        eager = EagerSE(c, r, args.act).to(device)
        x = torch.randn(shape, device=device)
        dy = torch.randn(shape, device=device)
        params = (eager.fc1.weight.view(r, c), eager.fc1.bias, eager.fc2.weight.view(c, r), eager.fc2.bias)

        def fused_fwd():
            return ops.squeeze_excite(x, *params, act=args.act)

        with torch.no_grad():
            torch.testing.assert_close(fused_fwd(), eager(x), rtol=1e-4, atol=1e-5)
            t_eager, t_fused = timed_pair(lambda: eager(x), fused_fwd, device, args.repeats)
            y = torch.empty_like(x)
            t_copy = timed(lambda: y.copy_(x), device, args.repeats)

        xg = x.clone().requires_grad_(True)

        def eager_fb():
            eager.zero_grad(set_to_none=True)
            xg.grad = None
            eager(xg).backward(dy)

        def fused_fb():
            eager.zero_grad(set_to_none=True)
            xg.grad = None
            ops.squeeze_excite(xg, eager.fc1.weight.view(r, c), eager.fc1.bias, eager.fc2.weight.view(c, r),
                               eager.fc2.bias, act=args.act).backward(dy)

        t_eager_fb, t_fused_fb = timed_pair(eager_fb, fused_fb, device, args.repeats)
        gbytes = 2 * x.numel() * x.element_size() / 1e9
        s_f, s_fb = t_eager / t_fused, t_eager_fb / t_fused_fb
        missed += s_f < fwd_target
        missed += bwd_target is not None and s_fb < bwd_target
        print(f"{str(shape):<20} {t_eager * 1e3:12.3f} {t_fused * 1e3:12.3f} {s_f:7.2f}x "
              f"{t_eager_fb * 1e3:12.3f} {t_fused_fb * 1e3:12.3f} {s_fb:7.2f}x "
              f"{gbytes / t_fused:7.1f} {gbytes / t_copy:9.1f}")
    tgt = f"forward >= {fwd_target}x" + (f", forward+backward >= {bwd_target}x" if bwd_target else "")
    print(f"targets: {tgt}; {missed} missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
