"""Embedding throughput: zoo's parallel stego cache vs a single-process conseal loop.

    python benchmarks/bench_embed.py [--algorithm wow] [--payload 0.4] [--images 16] [--runs 5]

Both sides embed the same ``--images`` grey 256x256 covers of the embedded default
(``zoo.data.default_covers``) with the same algorithm and payload, read from PNG and written
as PNG:

* zoo: ``zoo.data.embed_covers(..., workers=os.cpu_count())`` into an empty cache folder
  (process pool, one task per image);
* loop: a plain Python loop calling conseal's simulator on each image in this process
  (the loop a user would write by hand).

Prints images/s of each and the ratio zoo / loop as the median and range over ``--runs``
runs (each run times both, in alternating order). Embedding is CPU-bound, so the ratio is
bounded by the number of cores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.timing import alternating_runs, median_range  # noqa: E402
from zoo.data.steganalysis import default_covers, embed_covers  # noqa: E402


def conseal_loop(covers: list[str], out: str, algorithm: str, payload: float) -> None:
    import conseal

    for i, path in enumerate(covers):
        x0 = np.asarray(Image.open(path).convert("L"), dtype=np.uint8)
        if algorithm == "lsbm":
            x1 = conseal.lsb.simulate(x0, payload, modify=conseal.LSB_MATCHING, seed=i)
        else:
            x1 = getattr(conseal, algorithm).simulate_single_channel(x0, payload, seed=i)
        Image.fromarray(x1).save(os.path.join(out, os.path.basename(path)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algorithm", default="wow", choices=["wow", "suniward", "hill", "lsbm"])
    ap.add_argument("--payload", type=float, default=0.4)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data-dir", default="runs/data")
    args = ap.parse_args()
    covers = default_covers(os.path.join(args.data_dir, "stego_photos_grey_256"))[: args.images]
    workers = os.cpu_count() or 1
    embed = {"algorithm": args.algorithm, "payload": args.payload, "seed": 0}
    conseal_loop(covers[:1], tempfile.mkdtemp(), args.algorithm, args.payload)  # warm up (numba, imports)
    ratios, zoo_rates, loop_rates = [], [], []
    outs: dict[str, str] = {}
    sides = {"zoo": lambda: embed_covers(covers, outs["zoo"], embed, workers=workers, progress=False),
             "loop": lambda: conseal_loop(covers, outs["loop"], args.algorithm, args.payload)}

    def fresh_folder(side: str) -> None:  # untimed: an empty output folder per side and run
        outs[side] = tempfile.mkdtemp(prefix=f"bench_embed_{side}_")

    for r, times in alternating_runs(sides, args.runs, before=fresh_folder, after=lambda side: shutil.rmtree(outs[side])):
        zoo_rates.append(len(covers) / times["zoo"])
        loop_rates.append(len(covers) / times["loop"])
        ratios.append(times["loop"] / times["zoo"])
        print(f"run {r + 1}: zoo {zoo_rates[-1]:.2f} img/s, loop {loop_rates[-1]:.2f} img/s, "
              f"zoo/loop {ratios[-1]:.2f}x", flush=True)
    med = statistics.median
    print(f"{args.algorithm} {args.payload} bpp, {len(covers)} images 256x256, {workers} worker(s): "
          f"zoo {med(zoo_rates):.2f} img/s, loop {med(loop_rates):.2f} img/s; "
          f"throughput zoo/loop {median_range(ratios)}")


if __name__ == "__main__":
    main()
