"""Command line: ``python -m zoo`` / ``zoo``.

* ``fit | validate | test | predict --config configs/NAME.yaml [--ckpt_path PATH]``:
  the Lightning CLI (:class:`ZooCLI`), with any LightningModule / LightningDataModule
  named by ``class_path`` in the config.
* ``list [--task T] [--pattern P] [--markdown]``: the registered models.
* ``info NAME``: one model's spec, parameter count and MACs at its default input.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from . import registry
from .registry import TASKS, get_spec, list_models, model_info

EXTRA_COMMANDS = ("list", "info")


class ZooCLI(LightningCLI):
    """LightningCLI for the zoo's tasks and datamodules.

    A datamodule with an ``arch`` argument left unset gets the model's ``arch``,
    so it normalises inputs with the mean/std of that model's spec; a model with
    ``classes`` / ``img_size`` left unset (the Detector) gets the datamodule's.
    """

    def __init__(self, args: Sequence[str] | None = None, **kwargs) -> None:
        kwargs.setdefault("parser_kwargs", {"description": "zoo: train and run registered models. "
                                            "Extra commands: `zoo list`, `zoo info NAME`."})
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=list(args) if args is not None else None,
            **kwargs,
        )

    def after_fit(self) -> None:
        """Say where the run ended: the final logged metrics and the checkpoint written."""
        trainer = self.trainer
        if trainer.fast_dev_run or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if "/" in k}
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        cb = trainer.checkpoint_callback
        ckpt = cb.best_model_path if cb else ""
        print(f"zoo fit: done after {trainer.current_epoch} epoch(s): {shown}")
        if cb is not None and cb.monitor and cb.best_model_score is not None:
            print(f"zoo fit: best {cb.monitor}={float(cb.best_model_score):.4f}")
        if ckpt:
            print(f"zoo fit: checkpoint {ckpt}")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        model, data = config.get("model"), config.get("data")
        if model is None or data is None:
            return
        model_args = model.get("init_args") or {}
        arch = model_args.get("arch")
        data_args = data.get("init_args")
        if data_args is None:
            return
        if arch is not None and "arch" in data_args and data_args["arch"] is None:
            data_args["arch"] = arch
        # a detector left without class names / input size takes the datamodule's
        for key in ("classes", "img_size"):
            if key in model_args and model_args[key] is None and data_args.get(key) is not None:
                model_args[key] = data_args[key]


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def _fmt_macs(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}MACs"
    return f"{n} MACs"


def model_table(task: str | None = None, pattern: str = "*") -> list[dict[str, str]]:
    """One row per registered model: name, task, family, params, reference."""
    import torch

    rows = []
    for name in list_models(pattern, task=task):
        spec = get_spec(name)
        with torch.device("meta"):
            params = registry.count_params(registry.create_net(name))
        rows.append(
            {"name": name, "task": spec.task, "family": spec.family, "params": _fmt_count(params),
             "reference": spec.reference or "-"}
        )
    return rows


def _print_table(rows: list[dict[str, str]], markdown: bool) -> None:
    cols = ["name", "task", "family", "params", "reference"]
    if markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---:" if c == "params" else "---" for c in cols) + "|")
        for r in rows:
            print("| " + " | ".join(f"`{r[c]}`" if c == "name" else r[c] for c in cols) + " |")
        return
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        print("  ".join(r[c].rjust(widths[c]) if c == "params" else r[c].ljust(widths[c]) for c in cols).rstrip())


def _extra(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo", description="zoo model registry commands")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the registered models")
    p_list.add_argument("--task", choices=TASKS, default=None)
    p_list.add_argument("--pattern", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p_list.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p_info = sub.add_parser("info", help="spec, parameter count and MACs of one model")
    p_info.add_argument("name")
    args = parser.parse_args(argv)

    if args.command == "list":
        _print_table(model_table(args.task, args.pattern), args.markdown)
        return 0
    try:
        info = model_info(args.name)
    except KeyError as err:
        print(f"zoo info: {err.args[0]}", file=sys.stderr)
        return 2
    c, h, w = info["input_size"]
    print(f"name:       {info['name']}")
    print(f"family:     {info['family']}")
    print(f"task:       {info['task']}")
    print(f"paper:      {info['paper']}")
    print(f"reference:  {info['reference']}")
    print(f"builder:    {info['builder']}")
    print(f"defaults:   {info['defaults']}")
    print(f"input:      {c}x{h}x{w}, mean {info['mean']}, std {info['std']}")
    print(f"params:     {_fmt_count(info['params'])}")
    print(f"MACs:       {_fmt_macs(info['macs'])} at 1x{c}x{h}x{w} (multiply-accumulates of conv/linear layers)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m zoo`` and the ``zoo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_COMMANDS:
        return _extra(argv)
    ZooCLI(args=argv)
    return 0
