"""Lightning callbacks: prediction writers, a one-line-per-epoch summary with a curves plot,
and an exponential moving average of the weights.

* :class:`DetectionWriter` -- ``predict`` of a detector: one PNG per image with its boxes
  drawn and labelled, plus ``detections.json``.
* :class:`ClassificationWriter` -- ``predict`` of a classifier: ``predictions.csv`` (top-k classes).
* :class:`SteganalysisWriter` -- ``predict`` of a steganalyser: ``predictions.csv`` (``p_stego``).
* :class:`VideoWriter` -- ``predict`` of a video classifier: ``submission.csv`` in the DFDC
  format (``filename,label`` with label = P(fake)), plus ``frames.csv`` for frame-level nets.
* :class:`EpochSummary` -- prints one line per epoch (epoch means of the ``train/*`` values,
  the ``val/*`` values, seconds) and draws them per epoch into ``curves.png``.
* :class:`EMA` -- an exponential moving average of the weights, which validation, test,
  predict and checkpoints use in place of the training weights.
* :class:`SkippedItems` -- logs ``data/skipped_<stage>`` per epoch: the items a datamodule's
  ``skip_corrupt`` left out as corrupt (every zoo task adds it). The prediction writers leave
  those items' rows out.
* :class:`ZooCheckpointIO` -- the trainer's checkpoint reading through
  :func:`zoo.serialization.load_file` (weights-only; refused and damaged files named), which
  every ``python -m zoo`` trainer gets (:func:`install_checkpoint_io`).

``python -m zoo predict`` adds the task's writer (``LightningModule.prediction_writer()``)
when the config names none, and ``python -m zoo fit`` adds :class:`EpochSummary`. Under DDP
each process predicts its shard of the set and the writers gather the rows on rank 0, which
writes the files (a detector's PNGs are drawn by the process that predicted the image).
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
import weakref
from pathlib import Path
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, Callback
from pytorch_lightning.plugins.io import CheckpointIO, TorchCheckpointIO
from pytorch_lightning.plugins.io.wrapper import _WrappingCheckpointIO
from pytorch_lightning.trainer.states import TrainerFn

from .serialization import load_file

#: box colours by class index (distinct on a light background)
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#0a9396", "#f032e6", "#9a6324",
           "#800000", "#000075")


def _output_dir(trainer: pl.Trainer, output_dir: str | None, name: str) -> Path:
    return Path(output_dir or os.path.join(trainer.default_root_dir, name))


def _on_rank_zero(items: list) -> list | None:
    """A prediction writer's ``items`` of every process: under DDP, each process's list (its shard
    of the predict set), concatenated in rank order on rank 0 (the dataset's order, with the
    zoo's contiguous eval shards: :class:`zoo.data.base.EvalShardSampler`) and None on the other
    ranks, which then write nothing; one process: ``items``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return items
    parts: list | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(items, parts, dst=0)
    return [item for part in parts for item in part] if parts is not None else None


# ----------------------------------------------------------------------------- detection


def draw_detections(image_path: str, boxes: torch.Tensor, names: list[str], scores: torch.Tensor,
                    labels: torch.Tensor, out_png: str | os.PathLike, min_side: int = 640,
                    line_width: int | None = None) -> None:
    """Draw ``boxes [K, 4]`` (xyxy pixels of the image) with ``"name score"`` labels into ``out_png``.

    An image smaller than ``min_side`` on its long side is enlarged to it first (boxes with it),
    so that labels on small images stay readable; the font is about 1/40 of the long side
    (at least 14 px). Each label sits on a filled tag of its class colour.
    """
    from PIL import Image, ImageDraw, ImageFont

    with Image.open(image_path) as im:
        img = im.convert("RGB")
    f = max(1.0, min_side / max(img.size))
    if f > 1.0:
        img = img.resize((round(img.width * f), round(img.height * f)), Image.Resampling.BILINEAR)
    long_side = max(img.size)
    font_px = max(14, round(long_side / 40))
    width = line_width or max(2, round(long_side / 300))
    font = ImageFont.load_default(size=font_px)
    draw = ImageDraw.Draw(img)
    for box, name, score, label in zip((boxes.float() * f).tolist(), names, scores.tolist(), labels.tolist()):
        colour = PALETTE[int(label) % len(PALETTE)]
        x1, y1, x2, y2 = box
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        text = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        pad = max(2, font_px // 6)
        ty = y1 - th - 2 * pad if y1 - th - 2 * pad >= 0 else y1  # above the box, else inside it
        tx = min(x1, img.width - tw - 2 * pad)
        draw.rectangle((tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad), fill=colour)
        draw.text((tx + pad - left, ty + pad - top), text, fill="white", font=font)
    img.save(out_png)


def _write_csv(path: Path, header: list[str], rows) -> None:
    """``path`` as a CSV file: ``header``, then ``rows``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _predict_dataset(trainer: pl.Trainer, dataloader_idx: int) -> Any:
    loader = trainer.predict_dataloaders
    return getattr(loader[dataloader_idx] if isinstance(loader, (list, tuple)) else loader, "dataset", None)


def _predict_files(trainer: pl.Trainer, dataloader_idx: int) -> list[str] | None:
    """The ``files`` list of the dataset being predicted (None when it has none)."""
    return getattr(_predict_dataset(trainer, dataloader_idx), "files", None)


def _predicted_indices(trainer: pl.Trainer, dataloader_idx: int, batch_indices, n: int) -> list:
    """The dataset indices of a batch's ``n`` predictions: ``batch_indices`` without the items
    that ``skip_corrupt`` left out of the batch (:mod:`zoo.data.corrupt`), or ``[None] * n``."""
    if batch_indices is None:
        return [None] * n
    from zoo.data.corrupt import corrupt_items  # (lazily: the data's record of skipped items)

    record, owner = corrupt_items(_predict_dataset(trainer, dataloader_idx))
    indices = list(batch_indices)
    if record is not None and record.skip:
        indices = [i for i in indices if not record.was_skipped(owner(i))]
    return indices


class DetectionWriter(BasePredictionWriter):
    """Writes what a detector's ``predict`` finds: one PNG per image with its boxes drawn, and
    ``detections.json``.

    Args:
        output_dir: where to write (default: ``<trainer.default_root_dir>/predict``).
        draw: write the PNGs (``detections.json`` is always written).
        min_side: PNGs of smaller images are enlarged to this long side, for readable labels.

    ``detections.json``: ``{"classes": [...], "images": [{"image": path, "png": path,
    "detections": [{"box": [x1, y1, x2, y2], "score": s, "label": i, "class": name}]}]}``,
    boxes in pixels of the original image. Expects the predictions of
    :meth:`zoo.tasks.Detector.predict_step` (per image: ``path``, ``boxes``, ``scores``,
    ``labels``, ``names``).
    """

    def __init__(self, output_dir: str | None = None, draw: bool = True, min_side: int = 640) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.draw = draw
        self.min_side = int(min_side)
        self._records: list[dict[str, Any]] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._records = []
        _output_dir(trainer, self.output_dir, "predict").mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if prediction is None:  # every image of the batch was left out as corrupt
            return
        out_dir = _output_dir(trainer, self.output_dir, "predict")
        for det in prediction:
            record = {"image": det["path"], "png": None, "detections": [
                {"box": [round(float(v), 2) for v in box], "score": round(float(s), 4), "label": int(lab),
                 "class": name}
                for box, s, lab, name in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(),
                                             det["names"])
            ]}
            if self.draw and det["path"]:
                png = out_dir / (Path(det["path"]).stem + ".png")
                draw_detections(det["path"], det["boxes"], det["names"], det["scores"], det["labels"], png,
                                self.min_side)
                record["png"] = str(png)
            self._records.append(record)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        records = _on_rank_zero(self._records)
        if records is None:
            return
        out_dir = _output_dir(trainer, self.output_dir, "predict")
        path = out_dir / "detections.json"
        with open(path, "w") as f:
            json.dump({"classes": list(getattr(pl_module, "classes", [])), "images": records}, f, indent=1)
        n = sum(len(r["detections"]) for r in records)
        print(f"zoo predict: {n} detections in {len(records)} images -> {path}"
              + (f" (+ one PNG per image in {out_dir})" if self.draw else ""))


# ----------------------------------------------------------------------------- classification


class _CSVWriter(BasePredictionWriter):
    """Shared by the CSV prediction writers: one row per sample, starting with its index in the
    dataset and its file (when the dataset has ``files``), into ``<output_dir>/predictions.csv``.
    Subclasses give the rest of each row (:meth:`_cells`) and the header (:meth:`_header`)."""

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self._rows: list[list[Any]] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows = []
        _output_dir(trainer, self.output_dir, "predict").mkdir(parents=True, exist_ok=True)

    def _cells(self, prediction: dict[str, torch.Tensor], classes: list[str]) -> list[list[Any]]:
        raise NotImplementedError

    def _header(self) -> list[str]:
        raise NotImplementedError

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if prediction is None:  # every item of the batch was left out as corrupt
            return
        classes = list(getattr(pl_module, "classes", []) or [])
        files = _predict_files(trainer, dataloader_idx)
        cells = self._cells(prediction, classes)
        indices = _predicted_indices(trainer, dataloader_idx, batch_indices, len(cells))
        for idx, rest in zip(indices, cells):
            self._rows.append([idx, files[idx] if files is not None and idx is not None else ""] + rest)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = _on_rank_zero(self._rows)
        if rows is None:
            return
        path = _output_dir(trainer, self.output_dir, "predict") / "predictions.csv"
        _write_csv(path, ["index", "file"] + self._header(), rows)
        print(f"zoo predict: {len(rows)} predictions -> {path}")


def _class_name(classes: list[str], label: int) -> str | int:
    return classes[label] if label < len(classes) else label


class ClassificationWriter(_CSVWriter):
    """Writes a classifier's ``predict`` results to ``predictions.csv``: one row per sample with
    its index in the dataset, its file (when the dataset has ``files``), and the top-k class
    names and probabilities of :meth:`zoo.tasks.Classifier.predict_step`
    (columns ``class_1, prob_1, ..., class_k, prob_k``).

    Args:
        output_dir: where to write (default: ``<trainer.default_root_dir>/predict``).
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(output_dir)
        self._k = 0

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_predict_epoch_start(trainer, pl_module)
        self._k = 0

    def _cells(self, prediction, classes):
        labels, probs = prediction["labels"].tolist(), prediction["probs"].tolist()
        self._k = max(self._k, max((len(r) for r in labels), default=0))
        return [[c for lab, p in zip(top, ps) for c in (_class_name(classes, lab), round(float(p), 6))]
                for top, ps in zip(labels, probs)]

    def _header(self):
        return [c for i in range(1, self._k + 1) for c in (f"class_{i}", f"prob_{i}")]


class SteganalysisWriter(_CSVWriter):
    """Writes a steganalyser's ``predict`` results to ``predictions.csv``: one row per image with
    its index in the dataset, its file (when the dataset has ``files``), ``p_stego``
    (``1 - P(cover)``), and the most probable class and its probability
    (:meth:`zoo.tasks.Steganalyzer.predict_step`).

    Args:
        output_dir: where to write (default: ``<trainer.default_root_dir>/predict``).
    """

    def _cells(self, prediction, classes):
        probs = prediction["probs"]
        return [[round(p, 6), _class_name(classes, lab), round(float(probs[j, lab]), 6)]
                for j, (p, lab) in enumerate(zip(prediction["p_stego"].tolist(), prediction["labels"].tolist()))]

    def _header(self):
        return ["p_stego", "class", "prob"]


class VideoWriter(BasePredictionWriter):
    """Writes a video classifier's ``predict`` results (:meth:`zoo.tasks.VideoClassifier.predict_step`)
    in the DFDC submission format: ``submission.csv`` with the header ``filename,label`` and one
    row per clip, ``label`` being P(fake) in [0, 1]. For a net with frame-level logits it also
    writes ``frames.csv`` (``filename,frame,label``: ``frame`` is the position among the clip's
    T sampled frames). ``filename`` is the clip's file name (its index when the dataset has no
    ``files``).

    Args:
        output_dir: where to write (default: ``<trainer.default_root_dir>/predict``).
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self._clips: list[tuple[Any, float]] = []
        self._frames: list[tuple[Any, int, float]] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._clips, self._frames = [], []
        _output_dir(trainer, self.output_dir, "predict").mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if prediction is None:  # every clip of the batch failed to decode (skip_corrupt)
            return
        files = _predict_files(trainer, dataloader_idx)
        p = prediction["p_fake"].tolist()
        indices = _predicted_indices(trainer, dataloader_idx, batch_indices, len(p))
        names = [os.path.basename(files[i]) if files is not None and i is not None else i for i in indices]
        self._clips.extend((name, round(float(q), 6)) for name, q in zip(names, p))
        frames = prediction.get("frame_p_fake")
        if frames is not None:
            for name, row in zip(names, frames.tolist()):
                self._frames.extend((name, t, round(float(q), 6)) for t, q in enumerate(row))

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        parts = _on_rank_zero([(self._clips, self._frames)])
        if parts is None:
            return
        clips = [c for part_clips, _ in parts for c in part_clips]
        frames = [f for _, part_frames in parts for f in part_frames]
        out = _output_dir(trainer, self.output_dir, "predict")
        _write_csv(out / "submission.csv", ["filename", "label"], clips)
        if frames:
            _write_csv(out / "frames.csv", ["filename", "frame", "label"], frames)
        print(f"zoo predict: {len(clips)} clips -> {out / 'submission.csv'}")


# ----------------------------------------------------------------------------- corrupt data


def _loaders(loaders: Any) -> Iterator[Any]:
    """The dataloaders in what ``trainer.*_dataloader(s)`` holds (one, a list or a dict of them)."""
    if loaders is None:
        return
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        for item in loaders:
            yield from _loaders(item)
    else:
        yield loaders


class SkippedItems(Callback):
    """Logs how many items the data left out as corrupt, once per epoch: ``data/skipped_train``
    at the end of each training epoch, ``data/skipped_val`` / ``data/skipped_test`` at the end of
    each validation / test run; ``predict`` prints the count when it is not 0.

    A count is the items left out when read in that epoch (a datamodule's ``skip_corrupt``, see
    :mod:`zoo.data.corrupt`; counted across DataLoader workers) plus the files left out at
    ``setup`` (e.g. unparseable annotations: they are missing from every epoch). Nothing is
    logged for data read without ``skip_corrupt``, where a corrupt file raises. Under DDP the
    ranks' counts are summed. Every zoo task adds one (``Task.configure_callbacks``); ``counts``
    holds the latest count per stage.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from zoo.data.corrupt import corrupt_items

        self.counts, self._seen = {}, weakref.WeakKeyDictionary()
        datamodule = trainer.datamodule
        for name in ("train_set", "val_set", "test_set", "predict_set"):  # (zoo.data.base.SplitDataModule's)
            record, _ = corrupt_items(getattr(datamodule, name, None))
            if record is not None:
                record.reset()  # a new run: count from 0

    def count(self, trainer: pl.Trainer, loaders: Any) -> int | None:
        """Items of ``loaders`` left out since the last count, plus those left out at ``setup``
        (None when no loader reads with ``skip_corrupt``)."""
        from zoo.data.corrupt import corrupt_items

        records = []
        for loader in _loaders(loaders):
            record, _ = corrupt_items(getattr(loader, "dataset", None))
            if record is not None and record.skip and all(record is not r for r in records):
                records.append(record)
        if not records:
            return None
        n = 0
        for record in records:
            total = record.total
            n += total - self._seen.get(record, 0)
            self._seen[record] = total
            if trainer.is_global_zero:  # (the same on every rank: counted once)
                n += len(record.left_out)
        return n

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, loaders: Any) -> None:
        n = self.count(trainer, loaders)
        if n is None:
            return
        self.counts[stage] = n
        pl_module.log(f"data/skipped_{stage}", float(n), on_step=False, on_epoch=True, reduce_fx="sum",
                      sync_dist=True, batch_size=1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module, "train", trainer.train_dataloader)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module, "val", trainer.val_dataloaders)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module, "test", trainer.test_dataloaders)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = self.count(trainer, trainer.predict_dataloaders)
        if n is None:
            return
        self.counts["predict"] = n
        if n and trainer.is_global_zero:
            print(f"zoo predict: {n} corrupt item(s) left out (skip_corrupt; the warnings name them)")


# ----------------------------------------------------------------------------- progress


class EpochSummary(Callback):
    """One line per epoch, and the curves of every logged value per epoch in a PNG.

    The line holds the epoch means of the ``train/*`` values logged per step, the ``val/*``
    values of the epoch's validation and the epoch's wall time, e.g.::

        epoch  3/10  train/loss 8.31 (box 1.95, cls 0.41, obj 0.25)  val/loss 7.02  val/mAP50 0.512  [24 s]

    Args:
        plot: where to draw the curves (default: ``curves.png`` in the run's log directory,
            next to its checkpoints); ``""`` draws nothing.
    """

    def __init__(self, plot: str | None = None) -> None:
        self.plot = plot
        self.history: list[dict[str, float]] = []
        self.plot_path: str | None = None
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sums, self._counts, self._start = {}, {}, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith("train/") and torch.is_tensor(value) and value.numel() == 1:
                self._sums[key] = self._sums.get(key, 0.0) + float(value)
                self._counts[key] = self._counts.get(key, 0) + 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = {k: self._sums[k] / self._counts[k] for k in sorted(self._sums)}
        row.update({k: float(v) for k, v in sorted(trainer.callback_metrics.items())
                    if k.startswith("val/") and torch.is_tensor(v) and v.numel() == 1})
        row["epoch"] = trainer.current_epoch + 1
        row["seconds"] = time.perf_counter() - self._start
        self.history.append(row)
        draw = self.plot != "" and not trainer.fast_dev_run
        # (under DDP trainer.log_dir is a broadcast from rank 0: every process asks, or rank 0 waits)
        log_dir = trainer.log_dir if draw and not self.plot else None
        if not trainer.is_global_zero:
            return
        line = self.format_line(row, trainer.max_epochs)
        bar = trainer.progress_bar_callback
        if bar is not None:
            bar.print(line)  # between its bars
        else:
            print(line, flush=True)
        if draw:
            self.plot_path = self.plot or os.path.join(log_dir or trainer.default_root_dir, "curves.png")
            self.draw(self.plot_path)

    @staticmethod
    def format_line(row: dict[str, float], max_epochs: int | None = None) -> str:
        """``epoch  3/10  train/loss 8.31 (box 1.95, ...)  val/loss 7.02  val/mAP50 0.512  [24 s]``."""
        total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
        parts = [f"epoch {int(row['epoch']):>2}{total}"]
        for stage in ("train", "val"):
            main = f"{stage}/loss"
            sub = [k for k in row if k.startswith(f"{stage}/") and k != main]
            if main in row:
                extra = [k for k in sub if not k.startswith(f"{stage}/mAP") and not k.startswith(f"{stage}/acc")]
                text = f"{main} {row[main]:.4g}"
                if extra:
                    text += " (" + ", ".join(f"{k.split('/', 1)[1]} {row[k]:.3g}" for k in extra) + ")"
                parts.append(text)
                sub = [k for k in sub if k not in extra]
            parts += [f"{k} {row[k]:.3f}" for k in sub]
        parts.append(f"[{row['seconds']:.0f} s]")
        return "  ".join(parts)

    def draw(self, path: str | os.PathLike) -> None:
        """Losses (left) and the other ``val/*`` metrics (right) per epoch, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.history]
        keys = sorted({k for r in self.history for k in r if "/" in k})
        losses = [k for k in keys if k.endswith("/loss")]
        metrics = [k for k in keys if k.startswith("val/") and not k.endswith("loss")]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, names, title in ((axes[0], losses, "loss"), (axes[1], metrics, "validation")):
            for k in names:
                ys = [r.get(k, math.nan) for r in self.history]
                ax.plot(epochs, ys, marker="o", label=k)
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            if names:
                ax.legend()
        if metrics and all(k.startswith(("val/mAP", "val/acc")) for k in metrics):
            axes[1].set_ylim(0, 1)
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)


class EMA(Callback):
    """An exponential moving average (EMA) of the weights, evaluated and saved in their place.

    After every optimizer step each floating-point parameter's average moves towards it,
    ``ema = d * ema + (1 - d) * w``, in float32. The decay ramps up with the number of
    updates ``n``: ``d = decay * (1 - exp(-n / tau))``, so the average follows the fast-moving
    early weights and lengthens to about ``1 / (1 - decay)`` steps after a few ``tau``.
    Buffers (BatchNorm running statistics) are the module's own: they already are running
    averages. The average starts from the weights at the start of ``fit``.

    * **Evaluation.** The average is swapped into the module for every validation, test and
      predict run, and at the end of every training epoch; the training weights come back at
      the next training batch. When ``fit`` ends the module holds the average.
    * **Checkpoints.** A checkpoint written at the end of a validation or of an epoch
      (``ModelCheckpoint``'s default moments, ``save_weights_only`` or not) holds the average
      as its ``state_dict``, so ``predict --ckpt_path`` and ``load_from_checkpoint`` use it.
      A full checkpoint also keeps the training weights and the update count in this
      callback's state, and resuming ``fit`` from it restores both.
    * Outside ``fit`` (``validate`` / ``test`` / ``predict`` of a loaded checkpoint) there is
      no average and the callback does nothing: the weights loaded already are the average.

    Args:
        decay: the asymptotic decay, in (0, 1).
        tau: the ramp of the decay, in optimizer steps (> 0).
    """

    def __init__(self, decay: float = 0.999, tau: float = 100.0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay: expected a value in (0, 1), got {decay}")
        if not tau > 0:
            raise ValueError(f"tau: expected a positive number of steps, got {tau}")
        self.decay, self.tau = float(decay), float(tau)
        self.updates = 0
        self._names: list[str] = []
        self._ema: list[torch.Tensor] | None = None
        self._backup: list[torch.Tensor] | None = None  # the training weights while the average is swapped in
        self._last_step = -1
        self._resume: dict[str, torch.Tensor] | None = None

    def decay_at(self, n: int) -> float:
        """The decay of update number ``n`` (1-based)."""
        return self.decay * (1.0 - math.exp(-n / self.tau))

    def _params(self, pl_module: pl.LightningModule) -> list[torch.Tensor]:
        named = dict(pl_module.named_parameters())
        return [named[n] for n in self._names]

    @torch.no_grad()
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._names = [n for n, p in pl_module.named_parameters() if p.is_floating_point()]
        params = self._params(pl_module)
        # (resuming: the module was loaded with the checkpoint's state_dict, i.e. the average)
        self._ema = [p.detach().to(torch.float32, copy=True) for p in params]
        self._backup = None
        if self._resume is not None:
            missing = [n for n in self._names if n not in self._resume]
            if missing:
                raise ValueError(f"EMA: the checkpoint's training weights lack {missing[:3]} ...")
            for name, p in zip(self._names, params):
                p.copy_(self._resume[name].to(p.device, p.dtype))
            self._resume = None
        else:
            self.updates = 0
        self._last_step = trainer.global_step

    @torch.no_grad()
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._restore(pl_module)

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._ema is None or trainer.global_step == self._last_step:  # no optimizer step (accumulating)
            return
        self._last_step = trainer.global_step
        self.updates += 1
        weight = 1.0 - self.decay_at(self.updates)
        for e, p in zip(self._ema, self._params(pl_module)):
            e.lerp_(p.detach().float(), weight)

    @torch.no_grad()
    def _swap_in(self, pl_module: pl.LightningModule) -> None:
        if self._ema is None or self._backup is not None:
            return
        params = self._params(pl_module)
        self._backup = [p.detach().clone() for p in params]
        for p, e in zip(params, self._ema):
            p.copy_(e)

    @torch.no_grad()
    def _restore(self, pl_module: pl.LightningModule) -> None:
        if self._backup is None:
            return
        for p, b in zip(self._params(pl_module), self._backup):
            p.copy_(b)
        self._backup = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn != TrainerFn.FITTING:  # a validate() call of its own: give the weights back
            self._restore(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)  # (for the epoch-end checkpoint; undone at the next batch)

    def on_test_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)  # the fitted module is the average

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.updates = int(state_dict.get("updates", 0))
        self._resume = state_dict.get("train_weights")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # (a full checkpoint: Lightning has put this callback's state_dict() under "callbacks")
        if self._ema is None:
            return
        params = self._params(pl_module)
        if self._backup is not None:  # the module holds the average: state_dict already is the average
            train = self._backup
        else:
            train = [p.detach() for p in params]
            state = checkpoint["state_dict"]
            for name, p, e in zip(self._names, params, self._ema):
                if name in state:
                    state[name] = e.to(p.dtype).clone()
        mine = checkpoint.setdefault("callbacks", {}).setdefault(self.state_key, self.state_dict())
        mine["train_weights"] = {n: t.detach().clone().cpu() for n, t in zip(self._names, train)}


class RNGStates(Callback):
    """Saves the global random-number generators' states (torch's CPU and CUDA generators,
    NumPy's and Python's) in every checkpoint and restores them when a run resumes, so the
    model's own randomness (dropout, drop-path, ...) continues as if the run had never stopped.
    ``python -m zoo fit`` adds it. (The data's randomness does not come from these streams: see
    :mod:`zoo.data.resume`.)"""

    def state_dict(self) -> dict[str, Any]:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, mt, py_gauss = random.getstate()
        state = {"torch": torch.get_rng_state(),
                 "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                           "has_gauss": int(has_gauss), "gauss": float(gauss)},
                 "python": {"version": version, "state": list(mt), "gauss": py_gauss}}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import random

        import numpy as np

        torch.set_rng_state(state_dict["torch"])
        n = state_dict["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        p = state_dict["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class LastCheckpoint(Callback):
    """Writes ``last.ckpt`` every ``every_n_train_steps`` optimizer steps, at the end of every
    training epoch (after its validation) and when training ends, so a killed run loses at most
    ``every_n_train_steps`` steps: ``python -m zoo fit ... --ckpt_path last`` resumes it.

    The file goes where the trainer's ModelCheckpoint writes (``<log dir>/checkpoints``). It is
    written to a temporary name and renamed, so a kill during the write leaves the previous
    ``last.ckpt`` whole. ``python -m zoo fit`` adds one (every 200 steps) unless the config has
    one; ``every_n_train_steps=0`` saves at epoch ends only.
    """

    def __init__(self, every_n_train_steps: int = 200, filename: str = "last") -> None:
        if isinstance(every_n_train_steps, bool) or not isinstance(every_n_train_steps, int) or every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps: expected an int >= 0, got {every_n_train_steps!r}")
        if not filename or "/" in filename or os.sep in filename:
            raise ValueError(f"filename: expected a file name without a folder, got {filename!r}")
        self.every_n_train_steps = every_n_train_steps
        self.filename = filename
        self.dirpath: str | None = None
        self._saved_step = -1

    @property
    def path(self) -> str | None:
        return None if self.dirpath is None else os.path.join(self.dirpath, self.filename + ".ckpt")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        cb = trainer.checkpoint_callback
        dirpath = getattr(cb, "dirpath", None)
        if dirpath is None:
            root = trainer.log_dir or trainer.default_root_dir
            dirpath = os.path.join(root, "checkpoints")
        self.dirpath = trainer.strategy.broadcast(str(dirpath))

    def _save(self, trainer: pl.Trainer) -> None:
        if self.dirpath is None or trainer.sanity_checking or self._saved_step == trainer.global_step \
                and trainer.global_step > 0:
            return
        final = self.path
        tmp = os.path.join(self.dirpath, f".{self.filename}.ckpt.tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, final)
        trainer.strategy.barrier("LastCheckpoint")
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        k = self.every_n_train_steps
        if k and trainer.global_step % k == 0 and trainer.global_step > 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_step = -1  # the epoch's end: save even when the step was just saved
        self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)


class ZooCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` (saving unchanged) reading every checkpoint with
    :func:`zoo.serialization.load_file`: weights-only, a pickle that needs arbitrary code or
    objects refused and a truncated or corrupt file reported, each naming the file.

    ``python -m zoo`` installs it in every trainer (:func:`install_checkpoint_io`), so that
    ``--ckpt_path`` (fit's resume, validate / test / predict) reads through it. Only local files
    are read; ``weights_only=False`` is refused.
    """

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(f"ckpt_path: {os.fspath(path)!r}: the zoo reads checkpoints weights-only; "
                             "weights_only=False is not supported")
        if "://" in str(path):
            raise ValueError(f"ckpt_path: {str(path)!r}: only local checkpoint files are read (download it first)")
        checkpoint = load_file(path, map_location="cpu" if map_location is None else map_location)
        if not isinstance(checkpoint, dict):
            raise ValueError(f"ckpt_path: {os.fspath(path)!r} holds a {type(checkpoint).__name__}, "
                             "not a Lightning checkpoint")
        return checkpoint


def install_checkpoint_io(trainer: pl.Trainer) -> CheckpointIO:
    """Make ``trainer`` read checkpoints with :class:`ZooCheckpointIO`; return its checkpoint IO.

    Replaces Lightning's default ``TorchCheckpointIO``, also as the base of a wrapping plugin
    (``AsyncCheckpointIO``); a checkpoint IO the config chose (any other class, a subclass
    included) is kept as it is.
    """
    strategy = trainer.strategy
    io = strategy.checkpoint_io  # Lightning fills in its default (also a wrapper's base) on access
    if type(io) is TorchCheckpointIO:
        strategy.checkpoint_io = io = ZooCheckpointIO()
    elif isinstance(io, _WrappingCheckpointIO) and type(io.checkpoint_io) is TorchCheckpointIO:
        io._checkpoint_io = ZooCheckpointIO()  # its setter keeps the first base; this one is Lightning's default
    return io
