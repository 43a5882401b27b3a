"""Command line: ``python -m zoo`` / ``zoo``.

* ``fit | validate | test | predict --config FILE [--config FILE ...] [--ckpt_path PATH]``:
  the Lightning CLI (:class:`zoo.lightning_cli.ZooCLI`, also reachable as ``zoo.cli.ZooCLI``),
  with any LightningModule / LightningDataModule named by ``class_path`` in the configs.
* ``list [--task T] [--pattern P] [--markdown]``: the registered models (from the cached
  table in ``zoo/models/index.json``: no torch import, nothing built).
* ``info NAME``: one model's spec, parameter count and MACs at its default input.
* ``flow NAME [--input-size C H W | T C H W] [--format table|markdown|json] [--plot FILE.png]``:
  the data flow of one forward pass (:func:`zoo.flow`): per layer in execution order, input and
  output shapes, parameters, MACs and activation memory, then the totals (built and run on the
  meta device: nothing is computed).
* ``export NAME --ckpt_path CKPT --format onnx|pt2 [--with-postprocess] [--output FILE] [--img-size N]
  [--conf X] [--iou X] [--max-det N]``: the trained model to an ONNX file (standard operators
  only) or a ``torch.export`` program (:mod:`zoo.export`, docs/EXPORT.md).

The exit status is 0 when the command did what it was asked, non-zero otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from .registry import TASKS, model_table

#: the commands that are not Lightning's, with their one-line help
EXTRA_COMMANDS = {
    "list": "list the registered models (name, task, family, parameters, GMACs, input, reference)",
    "info": "one model's spec, parameter count and MACs at its default input",
    "flow": "the data flow of one forward pass: per-layer shapes, parameters, MACs, activation memory",
    "export": "a trained model (its checkpoint) to ONNX or a torch.export .pt2 program, optionally with decode + NMS",
}


def _fmt_macs(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}MACs"
    return f"{n} MACs"


_NUMERIC = ("params", "GMACs")


def _print_table(rows: list[dict[str, Any]], markdown: bool) -> None:
    cols = ["name", "task", "family", "params", "GMACs", "input", "reference"]
    cells = [{**r, "params": f"{r['params']:,}", "GMACs": f"{r['macs'] / 1e9:.2f}",
              "reference": r["reference"] or "-", "verified": r["verified"] or "-"} for r in rows]
    if markdown:
        cols.append("verified")
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---:" if c in _NUMERIC else "---" for c in cols) + "|")
        for r in cells:
            print("| " + " | ".join(f"`{r[c]}`" if c == "name" else r[c] for c in cols) + " |")
        return
    widths = {c: max([len(c)] + [len(r[c]) for r in cells]) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for r in cells:
        print("  ".join(r[c].rjust(widths[c]) if c in _NUMERIC else r[c].ljust(widths[c]) for c in cols).rstrip())


def _info(name: str) -> int:
    from .registry import model_info

    try:
        info = model_info(name)
    except KeyError as err:
        print(f"zoo info: {err.args[0]}", file=sys.stderr)
        return 2
    shape = "x".join(map(str, info["input_size"]))
    print(f"name:       {info['name']}")
    print(f"family:     {info['family']}")
    print(f"task:       {info['task']}")
    print(f"paper:      {info['paper']}")
    print(f"reference:  {info['reference']}")
    print(f"verified:   {info['verified'] or '-'}")
    print(f"builder:    {info['builder']}")
    print(f"defaults:   {info['defaults']}")
    print(f"input:      {shape}, mean {info['mean']}, std {info['std']}")
    print(f"params:     {info['params']:,}")
    print(f"MACs:       {_fmt_macs(info['macs'])} at 1x{shape} (multiply-accumulates of conv/linear layers)")
    return 0


def _flow(name: str, input_size: list[int] | None, fmt: str, plot: str | None) -> int:
    if input_size is not None and (len(input_size) not in (3, 4) or min(input_size) < 1):
        print(f"zoo flow: --input-size: expected C H W (or T C H W for a video model) as positive ints, "
              f"got {' '.join(map(str, input_size))}", file=sys.stderr)
        return 2
    from .tracer import flow

    try:
        result = flow(name, None if input_size is None else tuple(input_size))
    except KeyError as err:
        print(f"zoo flow: {err.args[0]}", file=sys.stderr)
        return 2
    except ValueError as err:
        msg = str(err)
        if input_size is not None and msg.startswith("example:"):
            msg = "--input-size:" + msg[len("example:"):]
        print(f"zoo flow: {msg}", file=sys.stderr)
        return 2
    if plot:
        try:
            result.plot(plot)
        except OSError as err:
            print(f"zoo flow: --plot: cannot write {plot}: {err}", file=sys.stderr)
            return 1
        print(f"zoo flow: wrote {plot}", file=sys.stderr)
    text = {"json": result.to_json, "markdown": result.to_markdown}.get(fmt, result.to_table)()
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `zoo flow NAME | head`: the reader stopped; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.ckpt_path is None:
        print(f"zoo export: a checkpoint is needed: pass --ckpt_path CKPT, the Lightning checkpoint of the "
              f"trained {args.name!r} (as `python -m zoo fit` writes it)", file=sys.stderr)
        return 2
    try:
        from .export import export
    except ImportError as err:  # pragma: no cover - torch itself is missing
        print(f"zoo export: {err}", file=sys.stderr)
        return 1
    try:
        path = export(args.name, args.ckpt_path, args.format, args.output, args.with_postprocess, args.img_size,
                      args.conf, args.iou, args.max_det)
    except KeyError as err:
        print(f"zoo export: {err.args[0]}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"zoo export: {err}", file=sys.stderr)
        return 2
    print(f"zoo export: wrote {path}", file=sys.stderr)
    return 0


def _extra(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo", description="zoo model registry commands")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help=EXTRA_COMMANDS["list"])
    p_list.add_argument("--task", choices=TASKS, default=None)
    p_list.add_argument("--pattern", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p_list.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p_info = sub.add_parser("info", help=EXTRA_COMMANDS["info"])
    p_info.add_argument("name")
    p_flow = sub.add_parser("flow", help=EXTRA_COMMANDS["flow"])
    p_flow.add_argument("name")
    p_flow.add_argument("--input-size", type=int, nargs="+", default=None, metavar="N",
                        help="C H W, or T C H W for a video model (default: the model's input size)")
    p_flow.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p_flow.add_argument("--plot", default=None, metavar="FILE.png",
                        help="also write a PNG: resolution / channels, MACs and activation memory by depth")
    p_export = sub.add_parser("export", help=EXTRA_COMMANDS["export"],
                              description="Export a trained model to ONNX or a torch.export program (docs/EXPORT.md).")
    p_export.add_argument("name", help="the registered model name the checkpoint was trained as (e.g. yolov3_se)")
    p_export.add_argument("--ckpt_path", "--ckpt-path", default=None, metavar="CKPT",
                          help="the Lightning checkpoint of the trained model (required)")
    p_export.add_argument("--format", choices=("onnx", "pt2"), default="onnx",
                          help="onnx: standard ONNX operators (opset 18); pt2: torch.export.save, "
                               "the zoo ops kept (load it after `import zoo`)")
    p_export.add_argument("--with-postprocess", action="store_true",
                          help="end the graph in decode + NMS: boxes, scores, labels, image_index (detection)")
    p_export.add_argument("--output", default=None, metavar="FILE",
                          help="the file to write (default: NAME[-postprocess].FORMAT in the current folder)")
    p_export.add_argument("--img-size", type=int, default=None, metavar="N",
                          help="input height and width (default: the checkpoint's img_size)")
    p_export.add_argument("--conf", type=float, default=None, metavar="X",
                          help="score threshold (default: the checkpoint's conf_threshold)")
    p_export.add_argument("--iou", type=float, default=None, metavar="X",
                          help="NMS IoU threshold (default: the checkpoint's iou_threshold)")
    p_export.add_argument("--max-det", type=int, default=None, metavar="N",
                          help="detections per image at most (default: the checkpoint's max_det)")
    args = parser.parse_args(argv)
    if args.command == "export":
        return _export(args)
    if args.command == "list":
        _print_table(model_table(args.task, args.pattern), args.markdown)
        return 0
    if args.command == "flow":
        return _flow(args.name, args.input_size, args.format, args.plot)
    return _info(args.name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m zoo`` and the ``zoo`` console script; returns the exit status.

    ``argv`` defaults to ``sys.argv[1:]``. A Lightning command returns 0 only when its trainer
    finished; errors propagate as exceptions (a non-zero exit from ``python -m zoo``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in EXTRA_COMMANDS:
        return _extra(args)
    from .lightning_cli import ZooCLI

    cli = ZooCLI(args=None if argv is None else args)
    return 0 if cli.trainer.state.finished else 1


def __getattr__(name: str):
    if name == "ZooCLI":
        from .lightning_cli import ZooCLI

        return ZooCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
