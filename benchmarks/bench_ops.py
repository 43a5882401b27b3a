"""zoo ops vs torchvision, measured in the same run: one table of time ratios.

    python benchmarks/bench_ops.py [--device cpu|cuda] [--repeats 15] [--runs 1] [--busy-neighbour]

Rows (each at N = 1k / 5k / 20k boxes, IoU threshold 0.5):

* nms, zoo.ops.nms vs torchvision.ops.nms, on four box distributions:
  - ``clustered``: about 20 boxes per object (raw detector output, heavy overlap);
  - ``one object``: all N boxes jittered around a single object, so few survive;
  - ``5 clusters``: a handful of dense clusters (N/5 boxes each);
  - ``sparse``: uniform small boxes over an area that grows with N, so most survive;
* batched_nms with 80 classes on the same distributions, vs torchvision.ops.batched_nms;
* yolo_postprocess (fused) vs the unfused pipeline it must equal: decode every
  map, score = obj * cls, threshold, torchvision.ops.batched_nms, top max_det --
  B=8, 416x416, 80 classes, 3 scales, objectness low in most cells and a few
  hundred cells per image above the 0.25 threshold.

"ratio" is zoo time / peer time (lower is better). Times are medians over --repeats
calls after warm-up, zoo and peer called alternately so both see the same machine
noise; threads as torch has them. Every row first checks that zoo and the peer return
the same result.

``--runs R`` measures the whole table R times and ends with the median and range
(min..max) of each row's ratio over the runs.

``--busy-neighbour`` starts a process that spins on one core (the last CPU this
process may use) for the whole measurement, as a dataloader worker or another job
would, and stops it at the end. Kernels that fork threads for small pieces of work
wait at every fork for the thread the neighbour has descheduled; this mode shows it.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo.ops as ops  # noqa: E402
from zoo.ops import reference  # noqa: E402
from tests.ops.conftest import COCO_ANCHORS, STRIDES, clustered_boxes, uniform_boxes, yolo_maps  # noqa: E402
from benchmarks.timing import timed_pair  # noqa: E402

SIZES = (1000, 5000, 20000)


def distributions(n: int, seed: int):
    """(name, boxes, scores) of each box distribution at size n."""
    return [
        ("clustered", *clustered_boxes(n, seed=seed)),
        ("one object", *clustered_boxes(n, seed=seed, objects=1)),
        ("5 clusters", *clustered_boxes(n, seed=seed, objects=5)),
        ("sparse", *uniform_boxes(n, seed=seed, extent=45.0 * math.sqrt(n))),
    ]


def _spin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    while True:
        pass


class BusyNeighbour:
    """A process spinning on one core while the `with` block runs."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.proc = None
        self.cpu = None

    def __enter__(self):
        if self.enabled:
            cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
            self.cpu = cpus[-1]
            self.proc = mp.get_context("spawn").Process(target=_spin, args=(self.cpu,), daemon=True)
            self.proc.start()
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        return False


def measure(device: torch.device, repeats: int) -> list[tuple[str, str, float, float]]:
    """One pass over every row: (row name, peer name, peer ms, zoo ms)."""
    rows = []
    for n in SIZES:
        for name, boxes, scores in distributions(n, seed=n):
            boxes, scores = boxes.to(device), scores.to(device)
            assert torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5)), (name, n)
            mine, peer = timed_pair(lambda: ops.nms(boxes, scores, 0.5),
                                    lambda: torchvision.ops.nms(boxes, scores, 0.5), device, repeats)
            rows.append((f"nms {name} N={n}", "torchvision.ops.nms", peer * 1e3, mine * 1e3))

    for n in SIZES:
        idxs = torch.randint(0, 80, (n,), generator=torch.Generator().manual_seed(n)).to(device)
        for name, boxes, scores in distributions(n, seed=n + 1):
            boxes, scores = boxes.to(device), scores.to(device)
            assert torch.equal(ops.batched_nms(boxes, scores, idxs, 0.5),
                               torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)), (name, n)
            mine, peer = timed_pair(lambda: ops.batched_nms(boxes, scores, idxs, 0.5),
                                    lambda: torchvision.ops.batched_nms(boxes, scores, idxs, 0.5), device, repeats)
            rows.append((f"batched_nms 80 cls {name} N={n}", "torchvision.ops.batched_nms", peer * 1e3, mine * 1e3))

    maps = [m.to(device) for m in yolo_maps(batch=8, size=416, num_classes=80, positives=300, seed=0)]
    anchors = [a.to(device) for a in COCO_ANCHORS.unbind(0)]
    above = sum(int((m.view(8, 3, 85, -1)[:, :, 4].sigmoid() > 0.25).sum()) for m in maps) / 8

    def unfused():
        return reference.yolo_postprocess(maps, anchors, STRIDES, 0.25, 0.45, 300, 30000, False,
                                          nms_fn=torchvision.ops.batched_nms)

    def fused():
        return ops.yolo_postprocess(maps, anchors, STRIDES, 0.25, 0.45, 300)

    got, want = fused(), unfused()
    assert torch.equal(torch.cat([d["labels"] for d in got]), want[2])
    mine, peer = timed_pair(fused, unfused, device, max(5, repeats // 3))
    rows.append((f"yolo_postprocess B=8 416 80cls ({above:.0f} cells/img > 0.25)", "decode+torchvision pipeline",
                 peer * 1e3, mine * 1e3))
    return rows


def print_table(rows) -> None:
    name_w = max(len(r[0]) for r in rows)
    peer_w = max(len(r[1]) for r in rows)
    print(f"{'op':<{name_w}}  {'peer':<{peer_w}}  {'peer ms':>9}  {'zoo ms':>9}  {'ratio':>6}")
    for name, peer_name, peer_ms, zoo_ms in rows:
        print(f"{name:<{name_w}}  {peer_name:<{peer_w}}  {peer_ms:9.3f}  {zoo_ms:9.3f}  {zoo_ms / peer_ms:6.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per row and side (median)")
    parser.add_argument("--runs", type=int, default=1, help="measure the whole table this many times")
    parser.add_argument("--busy-neighbour", action="store_true",
                        help="keep one core busy with a spinning process while measuring")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_ops: --device cuda but no GPU is visible", file=sys.stderr)
        return 2

    with BusyNeighbour(args.busy_neighbour) as neighbour:
        busy = f", busy neighbour spinning on cpu {neighbour.cpu}" if args.busy_neighbour else ""
        print(f"zoo ops benchmark on {device} (backend: {ops.backend(device)}), torch {torch.__version__}, "
              f"torchvision {torchvision.__version__}, {torch.get_num_threads()} threads{busy}")
        if hasattr(os, "getloadavg"):
            print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
        runs = []
        for r in range(args.runs):
            rows = measure(device, args.repeats)
            runs.append(rows)
            print(f"\nrun {r + 1} of {args.runs}")
            print_table(rows)

    if args.runs > 1:
        print(f"\nzoo / peer time ratio over {args.runs} runs: median [min .. max]")
        name_w = max(len(r[0]) for r in runs[0])
        for i, row in enumerate(runs[0]):
            ratios = [run[i][3] / run[i][2] for run in runs]
            print(f"{row[0]:<{name_w}}  {statistics.median(ratios):6.3f}  [{min(ratios):.3f} .. {max(ratios):.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
