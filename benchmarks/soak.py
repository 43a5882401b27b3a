"""Memory soak: ``predict`` over thousands of images, the resident memory sampled as it goes.

    python benchmarks/soak.py [--images 5000] [--batch-size 50] [--workers 2] [--arch resnet18]
                              [--size 32] [--every 10] [--warmup 1000] [--window 1000] [--data DIR]

Writes ``--images`` small PNGs (``--size`` px, random noise) to a folder once (``--data DIR``,
reused when it already holds them; default: a temporary folder), then runs the zoo's normal
predict path in this process: ``python -m zoo predict`` (:class:`zoo.cli.ZooCLI`) with
``configs/data/imagefolder.yaml`` (``ImageFolderDataModule(predict_dir=...)``, ``--workers``
loader processes), a ``Classifier`` of ``--arch`` (random weights) at ``--size`` and the task's
``ClassificationWriter`` writing ``predictions.csv``. A callback samples the resident set size
(RSS) after every batch: this process's and its loader workers' (``/proc``, or psutil when it is
installed). Prints a row every ``--every`` batches (images done, RSS MiB of the main process,
of the workers, total) and a verdict comparing the mean total RSS over the last ``--window``
images with the mean over the first ``--window`` images after ``--warmup`` images::

    flat: last/first = 1.00x, within 10%        (exit code 0)
    GROWING: last/first = 1.24x, more than 10%   (exit code 1)

Not part of ``make test``; run it alone (it uses every core the machine gives it).
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image  # noqa: E402
from pytorch_lightning.callbacks import Callback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "configs", "data", "imagefolder.yaml")
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def _rss_proc(pid: int | str) -> int:
    """RSS in bytes of ``pid`` from ``/proc/<pid>/statm`` (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _children() -> list[int]:
    """This process's child pids (the loader workers), from ``/proc/self/task/*/children``."""
    out: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return out


def rss() -> tuple[int, int]:
    """``(RSS of this process, summed RSS of its children)`` in bytes."""
    try:
        import psutil
    except ImportError:
        return _rss_proc("self"), sum(_rss_proc(p) for p in _children())
    me = psutil.Process()
    kids = 0
    for child in me.children(recursive=True):
        try:
            kids += child.memory_info().rss
        except psutil.Error:
            pass
    return me.memory_info().rss, kids


class RSSSampler(Callback):
    """Samples :func:`rss` after every predict batch: ``samples`` holds ``(images done, main, workers)``;
    prints a row every ``every`` batches."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.samples: list[tuple[int, int, int]] = []
        self._done = 0
        self._batches = 0

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch is not None:
            self._done += int(batch[0].shape[0])
        self._batches += 1
        main, workers = rss()
        self.samples.append((self._done, main, workers))
        if self._batches % self.every == 0:
            print(f"{self._done:>8}  {main / MIB:>9.1f}  {workers / MIB:>11.1f}  {(main + workers) / MIB:>9.1f}",
                  flush=True)


def write_images(folder: str, n: int, size: int) -> str:
    """``n`` random-noise PNGs of ``size`` px in ``folder/predict`` (kept when already there), plus a
    two-class ``folder/train`` tree (the datamodule takes its class names from it)."""
    pred = os.path.join(folder, "predict")
    os.makedirs(pred, exist_ok=True)
    have = {f for f in os.listdir(pred) if f.endswith(".png")}
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"{i:06d}.png"
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        if name not in have:
            Image.fromarray(pixels).save(os.path.join(pred, name))
    for cls in ("a", "b"):
        os.makedirs(os.path.join(folder, "train", cls), exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 100, np.uint8)).save(os.path.join(folder, "train", cls, "0.png"))
    return pred


def mean_in(samples: list[tuple[int, int, int]], lo: int, hi: int) -> float:
    """Mean total RSS (bytes) of the samples taken with ``lo < images done <= hi``."""
    values = [m + w for done, m, w in samples if lo < done <= hi]
    if not values:
        raise SystemExit(f"soak: no sample between {lo} and {hi} images; use more --images or a smaller --batch-size")
    return statistics.mean(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--size", type=int, default=32, help="image side, px (files and network input)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--every", type=int, default=10, help="print a row every this many batches")
    ap.add_argument("--warmup", type=int, default=1000, help="images before the first window")
    ap.add_argument("--window", type=int, default=1000, help="images per compared window")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--data", default=None, help="folder for the images (default: a temporary one)")
    args = ap.parse_args()
    if args.images < args.warmup + 2 * args.window:
        ap.error(f"--images must be >= --warmup + 2 * --window = {args.warmup + 2 * args.window}")

    from zoo.cli import ZooCLI

    with tempfile.TemporaryDirectory(prefix="zoo_soak_") as tmp:
        folder = args.data or os.path.join(tmp, "data")
        t = time.perf_counter()
        pred = write_images(folder, args.images, args.size)
        print(f"soak: {args.images} PNGs of {args.size}x{args.size} in {pred} ({time.perf_counter() - t:.1f} s)")
        print(f"soak: predict {args.arch} at {args.size}x{args.size}, batch {args.batch_size}, "
              f"{args.workers} loader worker(s), RSS via {'psutil' if _has_psutil() else '/proc'}")
        print(f"{'images':>8}  {'main MiB':>9}  {'workers MiB':>11}  {'total MiB':>9}")
        sampler = RSSSampler(args.every)
        out = os.path.join(tmp, "runs")
        sys.argv = ["zoo"]  # (LightningCLI reads it when args are also given)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ZooCLI(["predict", "--config", RECIPE, f"--model.init_args.arch={args.arch}",
                    f"--data.train_dir={os.path.join(folder, 'train')}", f"--data.predict_dir={pred}",
                    f"--data.image_size={args.size}", f"--data.batch_size={args.batch_size}",
                    f"--data.num_workers={args.workers}", f"--trainer.default_root_dir={out}",
                    "--trainer.enable_progress_bar=false", "--trainer.logger=false", "--seed_everything=0"],
                   trainer_defaults={"callbacks": [sampler]})
        seconds = time.perf_counter() - t
        with open(os.path.join(out, "predict", "predictions.csv")) as f:
            rows = sum(1 for _ in csv.DictReader(f))
    done = sampler.samples[-1][0] if sampler.samples else 0
    print(f"soak: {done} images predicted in {seconds:.0f} s ({done / seconds:.0f} images/s), "
          f"{rows} rows in predictions.csv")
    if done != args.images or rows != args.images:
        print(f"soak: FAILED: expected {args.images} images and rows")
        return 1
    first = mean_in(sampler.samples, args.warmup, args.warmup + args.window)
    last = mean_in(sampler.samples, args.images - args.window, args.images)
    ratio = last / first
    peak = max(m + w for _, m, w in sampler.samples)
    print(f"soak: mean total RSS, images {args.warmup + 1}-{args.warmup + args.window}: {first / MIB:.1f} MiB; "
          f"images {args.images - args.window + 1}-{args.images}: {last / MIB:.1f} MiB; peak {peak / MIB:.1f} MiB")
    within = f"{args.tolerance:.0%}"
    if ratio <= 1.0 + args.tolerance:
        print(f"flat: last/first = {ratio:.2f}x, within {within}")
        return 0
    print(f"GROWING: last/first = {ratio:.2f}x, more than {within}")
    return 1


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
