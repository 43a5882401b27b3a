"""Draw the figures of docs/TRAINING.md from the zoo's own code:

    .venv/bin/python docs/figures/training.py        # writes docs/figures/*.png (a few seconds)

* ``schedules.png``: the learning-rate multipliers of the zoo's schedules, step by step;
* ``optimizer_paths.png``: SGD, Momentum, Nesterov, AdaGrad, RMSProp and Adam (``zoo.optim``)
  on a narrow, tilted 2-D valley;
* ``batchnorm_stats.png``: how ``zoo.nn.BatchNorm1d``'s running mean and variance follow the
  data, as an EMA (``momentum=0.1``) and as a cumulative average (``momentum=None``);
* ``flow_yolov3_se.png``: ``zoo.flow`` of yolov3_se at 416x416 (resolution, channels, MACs and
  activation memory along the depth).
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import zoo  # noqa: E402
from zoo import optim  # noqa: E402
from zoo.nn import BatchNorm1d  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def schedules(path: str) -> None:
    steps = range(0, 3000)
    curves = {
        "detector default: linear warmup 200, x0.1 per 1000 steps":
            optim.WarmupExponentialDecay(200, gamma=0.1, decay_steps=1000, start_factor=0.01),
        "classifier default: linear warmup 300, cosine to 0 at 3000":
            optim.WarmupCosineDecay(300, 3000, start_factor=1 / 301),
        "SRNet: x0.1 at step 2400": optim.MultiStepDecay([2400], 0.1),
        "composed: warmup 100, hold 400, x0.5 every 500, cosine 1000":
            optim.Schedule([optim.linear(100, start=0.0), optim.constant(400),
                            optim.step(0.5, step_size=500, steps=1500), optim.cosine(1000, end=0.0)]),
    }
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for label, f in curves.items():
        ax.plot(list(steps), [f(t) for t in steps], label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("lr / base lr")
    ax.set_title("zoo.optim schedules: phases run in sequence")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def valley(p: torch.Tensor) -> torch.Tensor:
    """A narrow valley tilted 30 degrees: curvature 50 across it, 1 along it, minimum at 0."""
    c, s = 0.8660254, 0.5
    u, v = c * p[0] + s * p[1], -s * p[0] + c * p[1]
    return 0.5 * u ** 2 + 25.0 * v ** 2


def optimizer_paths(path: str, steps: int = 60) -> None:
    start = torch.tensor([-4.0, 2.5], dtype=torch.float64)
    runs = {
        "SGD lr 0.035": lambda p: optim.SGD([p], lr=0.035),
        "Momentum 0.6, lr 0.035": lambda p: optim.SGD([p], lr=0.035, momentum=0.6),
        "Nesterov 0.6, lr 0.025": lambda p: optim.SGD([p], lr=0.025, momentum=0.6, nesterov=True),
        "AdaGrad lr 1": lambda p: optim.Adagrad([p], lr=1.0),
        "RMSProp lr 0.1": lambda p: optim.RMSprop([p], lr=0.1, alpha=0.9),
        "Adam lr 0.3": lambda p: optim.Adam([p], lr=0.3),
    }
    xs = torch.linspace(-5, 5, 201, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    z = valley(torch.stack([gx, gy]))
    fig, ax = plt.subplots(figsize=(7.5, 6))
    ax.contour(gx, gy, z, levels=[0.25, 1, 2.5, 5, 10, 20, 40, 80], colors="0.75", linewidths=0.7)
    for label, make in runs.items():
        p = start.clone().requires_grad_(True)
        opt = make(p)
        trace = [p.detach().clone()]
        for _ in range(steps):
            opt.zero_grad()
            valley(p).backward()
            opt.step()
            trace.append(p.detach().clone())
        t = torch.stack(trace)
        ax.plot(t[:, 0], t[:, 1], marker=".", markersize=3, linewidth=1,
                label=f"{label}: f={valley(t[-1]).item():.2g} after {steps}")
    ax.plot([0], [0], "k*", markersize=10)
    ax.set_xlim(-5, 5)
    ax.set_ylim(-3.5, 4)
    ax.set_title("zoo.optim on a narrow tilted valley (start (-4, 2.5), minimum at *)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def batchnorm_stats(path: str, steps: int = 200) -> None:
    g = torch.Generator().manual_seed(0)
    ema, cma = BatchNorm1d(1, momentum=0.1), BatchNorm1d(1, momentum=None)
    mean_true, std_true = 3.0, 2.0
    rows = []
    for _ in range(steps):
        x = torch.randn(16, 1, generator=g) * std_true + mean_true
        ema(x), cma(x)
        rows.append((ema.running_mean.item(), ema.running_var.item(), cma.running_mean.item(), cma.running_var.item(),
                     x.mean().item()))
    t = list(range(1, steps + 1))
    r = list(zip(*rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(t, r[4], color="0.8", linewidth=0.8, label="this batch's mean")
    axes[0].plot(t, r[0], label="running_mean, EMA momentum 0.1")
    axes[0].plot(t, r[2], label="running_mean, cumulative (momentum None)")
    axes[0].axhline(mean_true, color="k", linestyle="--", linewidth=0.8, label="true mean 3")
    axes[1].plot(t, r[1], label="running_var, EMA momentum 0.1")
    axes[1].plot(t, r[3], label="running_var, cumulative")
    axes[1].axhline(std_true ** 2, color="k", linestyle="--", linewidth=0.8, label="true variance 4")
    for ax, name in zip(axes, ("mean", "variance")):
        ax.set_xlabel("training step (batches of 16)")
        ax.set_title(f"BatchNorm running {name}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    torch.manual_seed(0)
    schedules(os.path.join(HERE, "schedules.png"))
    optimizer_paths(os.path.join(HERE, "optimizer_paths.png"))
    batchnorm_stats(os.path.join(HERE, "batchnorm_stats.png"))
    zoo.flow("yolov3_se").plot(os.path.join(HERE, "flow_yolov3_se.png"))
    print("wrote", ", ".join(sorted(f for f in os.listdir(HERE) if f.endswith(".png"))))


if __name__ == "__main__":
    main()
