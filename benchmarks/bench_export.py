"""CPU latency of an exported detector in onnxruntime against eager torch, in one run.

    python benchmarks/bench_export.py [--arch yolov3_se] [--size 416] [--runs 7] [--threads N]

A ``zoo.tasks.Detector`` (random weights, 80 classes) is saved as a Lightning checkpoint and
exported by :func:`zoo.export.export` (what ``python -m zoo export`` runs) twice: the raw net
(``images -> 3 raw maps``) and with post-processing (decode + NMS in standard ONNX operators).
Before timing, the script checks that onnxruntime gives eager torch's raw maps (max abs
difference) and the same detections as the Detector's predict path.

Four sides, batch 1, fp32, on the CPU, each timed once per run in alternating order
(``benchmarks.timing.alternating_runs``, so that both share the machine's noise) after 2
warm-up calls each:

* eager torch raw: ``Detector(images)`` under ``torch.inference_mode`` (the zoo's fused C++
  ops, e.g. squeeze_excite);
* eager torch + post-processing: that, then ``Detector.postprocess`` (``zoo.ops.yolo_postprocess``,
  the fused C++ kernel) with the checkpoint's thresholds;
* onnxruntime raw / onnxruntime + post-processing: ``InferenceSession.run`` of the two files
  (CPUExecutionProvider, full graph optimisation, ``--threads`` intra-op threads, which do not
  spin-wait between runs; torch gets the same number of threads).

"ratio" is onnxruntime time / eager torch time in the same run (below 1: onnxruntime is faster),
as the median and range over ``--runs`` runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.timing import alternating_runs, median_range  # noqa: E402

PEER = "eager torch"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="yolov3_se")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--runs", type=int, default=7, help="timed runs (>= 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads of both torch and onnxruntime (default: torch's)")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs: at least 5")
    try:
        import onnxruntime as ort

        from zoo.export import export, require_onnx

        require_onnx(runtime=True)
    except ImportError as err:
        print(f"bench_export: {err}", file=sys.stderr)
        return 2
    import pytorch_lightning as pl

    from zoo.tasks import Detector

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    det = Detector(arch=args.arch, img_size=args.size).eval()
    hp = det.hparams
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "det.ckpt")
        torch.save({"state_dict": det.state_dict(), "hyper_parameters": dict(hp),
                    "pytorch-lightning_version": pl.__version__}, ckpt)
        paths = {pp: export(args.arch, ckpt, "onnx", os.path.join(tmp, f"m{int(pp)}.onnx"), with_postprocess=pp)
                 for pp in (False, True)}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # (onnxruntime's threads otherwise spin after each run, taking the cores from the torch
        # side that runs next)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = {pp: ort.InferenceSession(paths[pp], opts, providers=["CPUExecutionProvider"]) for pp in paths}
        sizes = {pp: os.path.getsize(paths[pp]) / 2**20 for pp in paths}
    feed = {"images": x.numpy()}

    def eager_raw():
        with torch.inference_mode():
            return det(x)

    def eager_pp():
        with torch.inference_mode():
            return det.postprocess(det(x), hp.conf_threshold, hp.iou_threshold, hp.max_det)

    sides = {
        "eager torch raw": eager_raw,
        "onnxruntime raw": lambda: sess[False].run(None, feed),
        "eager torch + postprocess": eager_pp,
        "onnxruntime + postprocess": lambda: sess[True].run(None, feed),
    }

    # the same numbers first
    raw_diff = max(float((torch.from_numpy(o) - r).abs().max())
                   for o, r in zip(sides["onnxruntime raw"](), eager_raw()))
    dets = eager_pp()[0]
    boxes, scores, labels, _ = sides["onnxruntime + postprocess"]()
    same = len(labels) == len(dets["labels"]) and labels.tolist() == dets["labels"].tolist()
    # (random weights give boxes thousands of pixels wide, whose corners carry the fp32 error of
    # exp(tw) * anchor: the agreement is relative to each box's largest coordinate)
    scale = 1 + dets["boxes"].abs().amax(1, keepdim=True)
    box_diff = float(((torch.from_numpy(boxes) - dets["boxes"]).abs() / scale).max()) if same and len(labels) else 0.0
    same = same and box_diff <= 1e-3
    print(f"{args.arch} at {args.size}x{args.size}, batch 1, fp32, CPU, {args.threads} threads "
          f"(torch {torch.__version__}, onnxruntime {ort.__version__}); ONNX files {sizes[False]:.0f} MiB / "
          f"{sizes[True]:.0f} MiB")
    print(f"check: raw maps max |onnxruntime - eager| = {raw_diff:.2e}; detections (conf {hp.conf_threshold}, "
          f"iou {hp.iou_threshold}, random weights): eager {len(dets['labels'])}, onnxruntime {len(labels)}, "
          f"{'the same' if same else 'DIFFERENT'} (boxes within {box_diff:.1e} relative)")
    if raw_diff > 1e-3 or not same:
        print("bench_export: onnxruntime and eager torch disagree", file=sys.stderr)
        return 1

    for fn in sides.values():  # warm-up
        fn(), fn()
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _, t in alternating_runs(sides, args.runs):
        for k, v in t.items():
            times[k].append(v)
    print(f"{'side':<28} {'median ms':>10} {'range ms':>17}   ratio to {PEER} (median, range over {args.runs} runs)")
    for name, ts in times.items():
        ms = [t * 1e3 for t in ts]
        line = f"{name:<28} {statistics.median(ms):10.1f} {min(ms):8.1f}-{max(ms):<8.1f}"
        if name.startswith("onnxruntime"):
            peer = "eager torch" + name[len("onnxruntime"):]
            line += f"   {median_range([a / b for a, b in zip(ts, times[peer])])} of {peer}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
