"""The Lightning side of ``python -m zoo``: :class:`ZooCLI`, a LightningCLI for the zoo's tasks
and datamodules (kept apart from :mod:`zoo.cli` so that ``zoo list`` / ``zoo info`` never import
Lightning)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from .callbacks import EpochSummary, LastCheckpoint, RNGStates, install_checkpoint_io
from .serialization import load_file

DESCRIPTION = ("zoo: train and run registered models (Lightning CLI). Also: `zoo list` (the registered "
               "models), `zoo info NAME` (one model's spec, parameters and MACs), `zoo flow NAME` (per-layer "
               "data flow) and `zoo export NAME --ckpt_path CKPT` (ONNX / pt2).")


def latest_last_checkpoint(root: str | os.PathLike) -> str | None:
    """The most recently written ``last*.ckpt`` (Lightning's name for a run's latest checkpoint,
    ``last.ckpt``, ``last-step.ckpt``, ``last-v1.ckpt``, ...) anywhere under ``root``, or None."""
    found = [p for p in Path(root).rglob("last*.ckpt") if p.is_file()]
    return str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else None


class ZooCLI(LightningCLI):
    """LightningCLI for the zoo's tasks (``zoo.tasks.*``) and datamodules (``zoo.data.*``).

    Arguments shared by model and data are linked, not copied by hand:

    * the model's ``arch`` becomes the datamodule's ``arch`` (so a classification datamodule
      normalises with that model's mean/std);
    * the datamodule's ``classes`` (known when it is built) become the model's ``classes``
      (and so its number of classes), and a detection datamodule's ``img_size`` the detector's.

    A link whose target a class does not have is skipped. ``fit`` adds
    :class:`zoo.callbacks.EpochSummary` (one line per epoch, ``curves.png``); ``predict`` adds
    the task's prediction writer (``LightningModule.prediction_writer()``) unless the config
    names one.
    """

    def __init__(self, args: Sequence[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("parser_kwargs", {"prog": "zoo", "description": DESCRIPTION})
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=list(args) if args is not None else None,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.init_args.arch", "data.init_args.arch")
        parser.link_arguments("data.init_args.img_size", "model.init_args.img_size")
        parser.link_arguments("data.classes", "model.init_args.classes", apply_on="instantiate")

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Lightning's subcommands, plus ``list`` and ``info`` so that ``--help`` shows them
        (``zoo.cli.main`` runs those two before Lightning is involved)."""
        from .cli import EXTRA_COMMANDS

        super()._add_subcommands(parser, **kwargs)
        subcommands = parser._subcommands_action
        for name, help_text in EXTRA_COMMANDS.items():
            subcommands.add_subcommand(name, LightningArgumentParser(description=help_text), help=help_text)

    @staticmethod
    def configure_optimizers(lightning_module: pl.LightningModule, optimizer: Any, lr_scheduler: Any = None) -> Any:
        """Lightning's wiring of a config's ``optimizer:`` / ``lr_scheduler:``, except that the zoo's
        schedules (``zoo.optim.ScheduleLR`` and its subclasses, whose steps are optimizer steps) are
        stepped once per optimizer step instead of once per epoch."""
        if getattr(lr_scheduler, "STEP_INTERVAL", False):
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}
        return LightningCLI.configure_optimizers(lightning_module, optimizer, lr_scheduler)

    def _parse_ckpt_path(self) -> None:
        """Lightning's reading of ``--ckpt_path``'s saved hyper-parameters into the config, with the
        file read by :func:`zoo.serialization.load_file` (Lightning calls ``torch.load`` here
        itself): a refused or damaged checkpoint stops the command with an error naming it."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        ckpt = load_file(ckpt_path)
        if not isinstance(ckpt, dict):
            raise ValueError(f"ckpt_path: {ckpt_path!r} holds a {type(ckpt).__name__}, not a Lightning checkpoint")
        hparams = dict(ckpt.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Lightning's trainer, reading checkpoints with :class:`zoo.callbacks.ZooCheckpointIO`
        (unless the config chose a checkpoint IO), plus the command's default callbacks."""
        trainer = super().instantiate_trainer(**kwargs)
        install_checkpoint_io(trainer)
        if self.subcommand == "fit" and not any(isinstance(c, EpochSummary) for c in trainer.callbacks):
            trainer.callbacks.append(EpochSummary())
        if self.subcommand == "predict" and not any(isinstance(c, BasePredictionWriter) for c in trainer.callbacks):
            writer = getattr(self.model, "prediction_writer", lambda: None)()
            if writer is not None:
                trainer.callbacks.append(writer)
        return trainer

    def before_fit(self) -> None:
        """Resumable runs: unless the config has them, add :class:`zoo.callbacks.LastCheckpoint`
        (``last.ckpt`` every 200 steps and every epoch; only when checkpointing is on) and
        :class:`zoo.callbacks.RNGStates` (the RNG states in every checkpoint), so that
        ``--ckpt_path last`` continues a killed run exactly."""
        callbacks = self.trainer.callbacks
        if self.trainer.checkpoint_callbacks and not any(isinstance(c, LastCheckpoint) for c in callbacks):
            callbacks.append(LastCheckpoint())
        if not any(isinstance(c, RNGStates) for c in callbacks):
            callbacks.append(RNGStates())

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """Lightning's, with ``--ckpt_path last`` meaning the newest ``last*.ckpt`` of any earlier
        run under ``trainer.default_root_dir`` (Lightning looks only in this run's new version
        folder, where a restarted process has written nothing yet)."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if kwargs.get("ckpt_path") == "last":
            found = latest_last_checkpoint(self.trainer.default_root_dir)
            if found is not None:
                kwargs["ckpt_path"] = found
        return kwargs

    def after_fit(self) -> None:
        """Say where the run ended: the final logged metrics and the checkpoint written."""
        trainer = self.trainer
        if trainer.fast_dev_run or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if "/" in k}
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        cb = trainer.checkpoint_callback
        print(f"zoo fit: done after {trainer.current_epoch} epoch(s): {shown}")
        if cb is not None and cb.monitor and cb.best_model_score is not None:
            print(f"zoo fit: best {cb.monitor}={float(cb.best_model_score):.4f}")
        if cb is not None and cb.best_model_path:
            print(f"zoo fit: checkpoint {cb.best_model_path}")
        summary = next((c for c in trainer.callbacks if isinstance(c, EpochSummary)), None)
        if summary is not None and summary.plot_path:
            print(f"zoo fit: curves {summary.plot_path}")
