"""zoo ops vs torchvision, measured in the same run: one table of time ratios.

    python benchmarks/bench_ops.py [--device cpu|cuda] [--repeats 20]

Rows:
* nms at N = 1k / 5k / 20k boxes (clustered like raw detector output: ~20 boxes
  per object, heavy overlap), zoo.ops.nms vs torchvision.ops.nms;
* batched_nms with 80 classes at the same sizes;
* yolo_postprocess (fused) vs the unfused pipeline it must equal: decode every
  map, score = obj * cls, threshold, torchvision.ops.batched_nms, top max_det --
  B=8, 416x416, 80 classes, 3 scales, objectness low in most cells and a few
  hundred cells per image above the 0.25 threshold.

"ratio" is zoo time / peer time (lower is better); "target" is the goal from the
issue (<= 0.5 for NMS at 5k and 20k, <= 1/3 for the fused post-processing).
Times are medians over --repeats runs after warm-up, threads as torch has them.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo.ops as ops  # noqa: E402
from zoo.ops import reference  # noqa: E402
from tests.ops.conftest import COCO_ANCHORS, STRIDES, clustered_boxes, yolo_maps  # noqa: E402
from benchmarks.timing import timed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_ops: --device cuda but no GPU is visible", file=sys.stderr)
        return 2

    print(f"zoo ops benchmark on {device} (backend: {ops.backend(device)}), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, {torch.get_num_threads()} threads")
    rows = []

    for n in (1000, 5000, 20000):
        boxes, scores = clustered_boxes(n, seed=n)
        boxes, scores = boxes.to(device), scores.to(device)
        assert torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
        peer = timed(lambda: torchvision.ops.nms(boxes, scores, 0.5), device, args.repeats) * 1e3
        mine = timed(lambda: ops.nms(boxes, scores, 0.5), device, args.repeats) * 1e3
        rows.append((f"nms N={n}", "torchvision.ops.nms", peer, mine, 0.5 if n >= 5000 else None))

    for n in (1000, 5000, 20000):
        boxes, scores = clustered_boxes(n, seed=n + 1)
        idxs = torch.randint(0, 80, (n,), generator=torch.Generator().manual_seed(n))
        boxes, scores, idxs = boxes.to(device), scores.to(device), idxs.to(device)
        assert torch.equal(ops.batched_nms(boxes, scores, idxs, 0.5),
                           torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))
        peer = timed(lambda: torchvision.ops.batched_nms(boxes, scores, idxs, 0.5), device, args.repeats) * 1e3
        mine = timed(lambda: ops.batched_nms(boxes, scores, idxs, 0.5), device, args.repeats) * 1e3
        rows.append((f"batched_nms N={n}, 80 cls", "torchvision.ops.batched_nms", peer, mine,
                     0.5 if n >= 5000 else None))

    maps = [m.to(device) for m in yolo_maps(batch=8, size=416, num_classes=80, positives=300, seed=0)]
    anchors = [a.to(device) for a in COCO_ANCHORS.unbind(0)]
    above = sum(int((m.view(8, 3, 85, -1)[:, :, 4].sigmoid() > 0.25).sum()) for m in maps) / 8

    def unfused():
        return reference.yolo_postprocess(maps, anchors, STRIDES, 0.25, 0.45, 300, 30000, False,
                                          nms_fn=torchvision.ops.batched_nms)

    def fused():
        return ops.yolo_postprocess(maps, anchors, STRIDES, 0.25, 0.45, 300)

    got, want = fused(), unfused()
    assert sum(len(d["labels"]) for d in got) == want[2].numel()
    assert torch.equal(torch.cat([d["labels"] for d in got]), want[2])
    peer = timed(unfused, device, max(5, args.repeats // 4)) * 1e3
    mine = timed(fused, device, args.repeats) * 1e3
    rows.append((f"yolo_postprocess B=8 416 80cls ({above:.0f} cells/img > 0.25)", "decode+torchvision pipeline",
                 peer, mine, 1 / 3))

    name_w = max(len(r[0]) for r in rows)
    peer_w = max(len(r[1]) for r in rows)
    print(f"{'op':<{name_w}}  {'peer':<{peer_w}}  {'peer ms':>9}  {'zoo ms':>9}  {'ratio':>6}  {'target':>7}  ok")
    failed = 0
    for name, peer_name, peer_ms, zoo_ms, target in rows:
        ratio = zoo_ms / peer_ms
        ok = "-" if target is None else ("yes" if ratio <= target else "NO")
        failed += ok == "NO"
        tgt = "-" if target is None else f"<={target:.2f}"
        print(f"{name:<{name_w}}  {peer_name:<{peer_w}}  {peer_ms:9.3f}  {zoo_ms:9.3f}  {ratio:6.3f}  {tgt:>7}  {ok}")
    print(f"{failed} target(s) missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
