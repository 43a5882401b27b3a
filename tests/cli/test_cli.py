"""The command line: the composable configs through the real entry point, the argument links,
list / info / --help, exit codes, and what fit / validate / test / predict leave behind."""
from __future__ import annotations

import csv
import glob
import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision
import yaml

import zoo
from zoo.cli import ZooCLI, main
from tests.util import count_macs_with_hooks, n_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = {"classification": os.path.join(ROOT, "configs", "data", "digits.yaml"),
           "detection": os.path.join(ROOT, "configs", "data", "insects.yaml"),
           "steganalysis": os.path.join(ROOT, "configs", "data", "stego.yaml"),
           "video": os.path.join(ROOT, "configs", "data", "deepfake.yaml")}
MODEL_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "classification", "*.yaml"))
                       + glob.glob(os.path.join(ROOT, "configs", "detection", "*.yaml"))
                       + glob.glob(os.path.join(ROOT, "configs", "steganalysis", "*.yaml"))
                + glob.glob(os.path.join(ROOT, "configs", "video", "*.yaml")))


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """LightningCLI warns when sys.argv (here pytest's) and args are both given."""
    monkeypatch.setattr(sys, "argv", ["zoo"])


def tiny_detection(tmp_path) -> list[str]:
    """Overrides that make the insects recipe a seconds-long run."""
    return ["--data.img_size=64", "--data.multiscale=null", "--trainer.precision=32",
            f"--data.data_dir={tmp_path / 'data'}", "--data.synthetic={n_train: 4, n_val: 2, size: 96, seed: 1}"]


@pytest.fixture(scope="session")
def stego_data_dir(tmp_path_factory):
    """One data folder for the steganalysis runs: the default covers are written (and embedded)
    once per session."""
    return tmp_path_factory.mktemp("stego_data")


def tiny_stego(data_dir) -> list[str]:
    """Overrides that make the stego recipe a seconds-long run (one pair per batch)."""
    return ["--data.batch_size=2", f"--data.data_dir={data_dir}", f"--data.cache_dir={data_dir / 'cache'}"]


@pytest.fixture(scope="session")
def video_data_dir(tmp_path_factory):
    """A tiny DFDC-layout folder (4 originals + their fakes, 8 frames of 64x64), written once."""
    from zoo.data import synthetic_deepfakes

    root = tmp_path_factory.mktemp("video_data")
    synthetic_deepfakes(root / "clips", n_originals=4, frames=8, size=64, val_fraction=0.5)
    return root


def tiny_video(data_dir) -> list[str]:
    """Overrides that make the deepfake recipe a seconds-long run."""
    return [f"--data.root={data_dir / 'clips'}", "--data.frames=3", "--data.size=32", "--data.batch_size=2",
            "--data.num_workers=0", f"--data.cache_dir={data_dir / 'cache'}"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def fast_fit(tmp_path, *args: str) -> ZooCLI:
    """``fit --trainer.fast_dev_run=true``; checks the run trained one step on a finite loss."""
    cli = ZooCLI(["fit", *args, "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}",
                  "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
    trainer = cli.trainer
    assert trainer.state.finished and trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert any(k.startswith("val/") for k in trainer.callback_metrics)  # validation ran too
    return cli


# ------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("config", MODEL_CONFIGS, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "configs")))
def test_every_model_config_runs_with_its_task_recipe(config, tmp_path, stego_data_dir, video_data_dir):
    task = os.path.basename(os.path.dirname(config))
    extra = {"detection": tiny_detection(tmp_path), "steganalysis": tiny_stego(stego_data_dir),
             "video": tiny_video(video_data_dir)}.get(task, [])
    cli = fast_fit(tmp_path, "--config", RECIPES[task], "--config", config, *extra)
    with open(config) as f:
        arch = yaml.safe_load(f)["model"]["init_args"]["arch"]
    assert cli.model.hparams.arch == arch and zoo.get_spec(arch).task == task


def test_stego_recipe_follows_the_model_channels_then_predicts_p_stego(tmp_path, stego_data_dir):
    """srnet_rgb gets colour pairs (grey for srnet); fit -> predict writes p_stego per image."""
    cli = fast_fit(tmp_path, "--config", RECIPES["steganalysis"], "--model.init_args.arch", "srnet_rgb",
                   *tiny_stego(stego_data_dir))
    assert cli.datamodule.channels == 3 and cli.model.classes == ["cover", "stego"]
    x, y = next(iter(cli.datamodule.train_dataloader()))
    assert x.shape == (2, 3, 256, 256) and y.tolist() == [0, 1]
    assert 0 < (x[1] - x[0]).abs().max() <= 1
    ckpt = tmp_path / "x.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    pred = tmp_path / "pred"
    pred.mkdir()
    for f in sorted(os.listdir(cli.datamodule.val_set.covers[0].rsplit("/", 1)[0]))[:3]:
        if f.endswith(".png"):
            os.symlink(os.path.join(cli.datamodule.val_set.covers[0].rsplit("/", 1)[0], f), pred / f)
    ZooCLI(["predict", "--config", RECIPES["steganalysis"], "--model.init_args.arch", "srnet_rgb",
            *tiny_stego(stego_data_dir), f"--data.predict_dir={pred}", "--data.crop_size=64",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
            f"--ckpt_path={ckpt}"])
    with open(tmp_path / "predict" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(os.listdir(pred)) and rows
    assert all(0.0 <= float(r["p_stego"]) <= 1.0 and r["class"] in ("cover", "stego") for r in rows)
    assert all(abs(float(r["prob"]) - (float(r["p_stego"]) if r["class"] == "stego" else 1 - float(r["p_stego"])))
               < 1e-5 for r in rows)


def test_deepfake_recipe_fits_then_writes_a_dfdc_submission(tmp_path, video_data_dir):
    """fit -> predict on a folder of mp4s: submission.csv is ``filename,label`` with one row per clip
    and label = P(fake); the frame-averaging net also writes its per-frame probabilities."""
    cli = fast_fit(tmp_path, "--config", RECIPES["video"], "--model.init_args.arch", "deepfake_effnet",
                   *tiny_video(video_data_dir))
    assert cli.model.classes == ["REAL", "FAKE"]
    x, y = next(iter(cli.datamodule.train_dataloader()))
    assert x.shape == (2, 3, 3, 32, 32) and set(y.tolist()) <= {0.0, 1.0}
    ckpt = tmp_path / "x.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    clips = sorted(f for f in os.listdir(video_data_dir / "clips") if f.endswith(".mp4"))[:3]
    pred = tmp_path / "pred"
    pred.mkdir()
    for f in clips:
        os.symlink(video_data_dir / "clips" / f, pred / f)
    ZooCLI(["predict", "--config", RECIPES["video"], "--model.init_args.arch", "deepfake_effnet",
            *tiny_video(video_data_dir), f"--data.predict_dir={pred}", f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false", f"--ckpt_path={ckpt}"])
    with open(tmp_path / "predict" / "submission.csv") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["filename", "label"]
    assert [r[0] for r in rows] == clips and all(0.0 <= float(r[1]) <= 1.0 for r in rows)
    with open(tmp_path / "predict" / "frames.csv") as f:
        frames = list(csv.DictReader(f))
    assert len(frames) == 3 * len(clips)
    # the clip's probability is the sigmoid of the mean frame logit
    for name, p in rows:
        logits = [torch.logit(torch.tensor(float(r["label"]), dtype=torch.float64)) for r in frames
                  if r["filename"] == name]
        assert float(p) == pytest.approx(torch.sigmoid(torch.stack(logits).mean()).item(), abs=1e-4)


def _smallest_of_each_family(task: str) -> list[str]:
    smallest: dict[str, dict] = {}
    for row in zoo.registry.model_table(task=task):
        best = smallest.get(row["family"])
        if best is None or (row["params"], row["name"]) < (best["params"], best["name"]):
            smallest[row["family"]] = row
    return sorted(r["name"] for r in smallest.values())


@pytest.mark.parametrize("name", _smallest_of_each_family("classification"))
def test_every_classification_family_trains_with_the_digits_recipe(name, tmp_path):
    """One recipe file plus the model's name (the smallest variant of each family; the others
    share its code): the data's classes and the model's normalisation are linked, so nothing
    else changes between models."""
    cli = fast_fit(tmp_path, "--config", RECIPES["classification"], "--model.init_args.arch", name)
    spec = zoo.get_spec(name)
    assert cli.model.hparams.arch == name and type(cli.model.net) is type(zoo.create_net(name, num_classes=10))
    assert cli.model.num_classes == 10 and cli.model.classes == [str(d) for d in range(10)]
    assert cli.datamodule.hparams.arch == name and cli.datamodule.mean == spec.mean


def test_demo_overlay_merges_into_the_recipe_and_model_configs(tmp_path):
    """configs/demo/insects_5min.yaml (what `make demo` adds) changes some arguments and keeps the rest."""
    from zoo.callbacks import EMA

    cli = fast_fit(tmp_path, "--config", RECIPES["detection"], "--config",
                   os.path.join(ROOT, "configs", "detection", "yolov3_se.yaml"), "--config",
                   os.path.join(ROOT, "configs", "demo", "insects_5min.yaml"), *tiny_detection(tmp_path))
    with open(RECIPES["detection"]) as f:
        recipe = yaml.safe_load(f)
    hp = cli.model.hparams
    assert hp.arch == "yolov3_se" and hp.anchors == recipe["model"]["init_args"]["anchors"]  # kept
    assert hp.lr == 2e-3 and hp.warmup_steps == 30 and hp.net_kwargs == {"zero_init_residual": True}  # changed
    assert cli.datamodule.hparams.batch_size == 4 and cli.datamodule.hparams.augment["degrees"] == 0
    assert [type(c) for c in cli.trainer.callbacks if isinstance(c, EMA)] == [EMA]


def test_insects_recipe_links_classes_and_size_into_the_detector(tmp_path):
    cli = fast_fit(tmp_path, "--config", RECIPES["detection"], *tiny_detection(tmp_path))
    assert cli.model.classes == list(zoo.data.INSECT_CLASSES) == cli.datamodule.classes
    assert cli.model.num_classes == 7 and cli.model.hparams.img_size == 64
    assert "val/mAP50" in cli.trainer.callback_metrics


def test_imagefolder_recipe_takes_its_classes_from_the_folders(tmp_path):
    from PIL import Image

    for k, cls in enumerate(("cat", "dog", "owl")):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), (60 * k, 20 * i, 90)).save(tmp_path / "train" / cls / f"{i}.png")
    cli = fast_fit(tmp_path, "--config", os.path.join(ROOT, "configs", "data", "imagefolder.yaml"),
                   "--model.init_args.arch=resnet18", f"--data.train_dir={tmp_path / 'train'}",
                   "--data.val_fraction=0.34", "--data.image_size=32", "--data.batch_size=4", "--data.num_workers=0")
    assert cli.model.classes == ["cat", "dog", "owl"] and cli.model.num_classes == 3
    assert cli.model.net.fc.out_features == 3


# ------------------------------------------------------------------------------- the real entry point


def test_python_dash_m_zoo_fit_prints_an_epoch_line_and_no_warning(tmp_path):
    r = _run("fit", "--config", RECIPES["classification"], "--trainer.fast_dev_run=true",
             f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "epoch  1/1  train/loss" in r.stdout and "val/acc1" in r.stdout
    assert "args parameter is intended" not in r.stderr  # LightningCLI's args-and-sys.argv warning


def test_failed_commands_exit_non_zero(tmp_path):
    r = _run("fit", "--config", RECIPES["classification"], "--trainer.fast_dev_run=true", "--model.init_args.lr=-1",
             f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false")
    assert r.returncode != 0 and "learning rate" in r.stderr
    r = _run("fit", "--config", os.path.join(ROOT, "configs", "no_such_recipe.yaml"))
    assert r.returncode != 0 and "no_such_recipe.yaml" in r.stderr
    r = _run("info", "resnet05")
    assert r.returncode == 2
    assert "unknown model name 'resnet05'" in r.stderr and "resnet50" in r.stderr


def test_help_names_the_program_and_every_command():
    r = _run("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: zoo ")
    for command in ("fit", "validate", "test", "predict", "list", "info"):
        assert f"    {command} " in r.stdout, command


# ------------------------------------------------------------------------------- a whole run


def test_fit_then_validate_test_predict_from_checkpoint(tmp_path):
    common = ["--config", RECIPES["classification"], f"--trainer.default_root_dir={tmp_path}",
              "--trainer.enable_progress_bar=false"]
    fit = ZooCLI(["fit", *common, "--trainer.max_epochs=2", "--trainer.limit_train_batches=10",
                  "--trainer.limit_val_batches=1"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    assert os.path.isfile(ckpt)
    log_dir = fit.trainer.log_dir
    assert glob.glob(os.path.join(log_dir, "events.out.tfevents.*")), "fit logs to TensorBoard"
    assert os.path.isfile(os.path.join(log_dir, "curves.png"))
    summary = next(c for c in fit.trainer.callbacks if isinstance(c, zoo.callbacks.EpochSummary))
    assert [r["epoch"] for r in summary.history] == [1, 2] and "val/acc1" in summary.history[-1]

    val = ZooCLI(["validate", *common, f"--ckpt_path={ckpt}"])
    test = ZooCLI(["test", *common, f"--ckpt_path={ckpt}"])
    # oracle: load the checkpoint by hand and count on the val split
    module = zoo.load("resnet18", weights=ckpt).eval()
    dm = val.datamodule
    correct = n = 0
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            correct += (module(x).argmax(1) == y).sum().item()
            n += len(y)
    assert float(val.trainer.callback_metrics["val/acc1"]) == pytest.approx(correct / n, abs=1e-6)
    assert float(test.trainer.callback_metrics["test/acc1"]) == pytest.approx(correct / n, abs=1e-6)

    # predict: the CLI adds the classifier's writer, which writes predictions.csv (top-5)
    assert main(["predict", *common, f"--ckpt_path={ckpt}"]) == 0
    with open(tmp_path / "predict" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and list(rows[0]) == ["index", "file"] + [f"{c}_{i}" for i in range(1, 6)
                                                                      for c in ("class", "prob")]
    with torch.no_grad():
        probs = torch.cat([module(x).softmax(1) for x, _ in dm.val_dataloader()])
    top = probs.topk(5, 1)
    for i, (row, idx, p) in enumerate(zip(rows, top.indices.tolist(), top.values.tolist())):
        assert int(row["index"]) == i and row["class_1"] == str(idx[0])
        assert [float(row[f"prob_{k}"]) for k in range(1, 6)] == pytest.approx(p, abs=1e-5)
        if all(a > b for a, b in zip(p, p[1:])):  # no ties: the whole ranking is determined
            assert [row[f"class_{k}"] for k in range(1, 6)] == [str(j) for j in idx]


def test_detection_fit_then_predict_writes_pngs_and_json(tmp_path):
    """The detection recipe end to end through the CLI: fit (tiny run), then predict on a
    folder of images, which writes one PNG per image and detections.json."""
    from PIL import Image

    common = ["--config", RECIPES["detection"], "--config", os.path.join(ROOT, "configs", "detection", "yolov3.yaml"),
              f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
              *tiny_detection(tmp_path)]
    fit = ZooCLI(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"])
    assert fit.model.classes == list(fit.datamodule.classes) and fit.model.hparams.img_size == 64
    assert "val/mAP50" in fit.trainer.callback_metrics
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    assert os.path.isfile(ckpt)

    # the checkpoint rebuilds the same detector through zoo.load (weights_only)
    loaded = zoo.load("yolov3", weights=ckpt).eval()
    assert loaded.classes == fit.model.classes and loaded.hparams.img_size == 64
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(loaded(x), fit.model.eval()(x)):
            torch.testing.assert_close(a, b)

    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (100, 60), (210, 200, 180)).save(pics / "a.jpeg")
    Image.new("RGB", (50, 80), (120, 130, 140)).save(pics / "b.png")
    out = tmp_path / "predict"  # the CLI's DetectionWriter writes under trainer.default_root_dir
    assert main(["predict", *common, f"--ckpt_path={ckpt}", f"--data.predict_dir={pics}"]) == 0
    data = json.loads((out / "detections.json").read_text())
    assert sorted(os.path.basename(r["image"]) for r in data["images"]) == ["a.jpeg", "b.png"]
    assert data["classes"] == list(fit.datamodule.classes)
    assert {p.name for p in out.glob("*.png")} == {"a.png", "b.png"}
    for r in data["images"]:
        w, h = Image.open(r["image"]).size
        for d in r["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h and 0 <= d["score"] <= 1


# ------------------------------------------------------------------------------- list / info


def test_list_imports_neither_torch_nor_lightning():
    """`zoo list` reads the cached table: no torch import, no model built (what makes it fast)."""
    code = ("import sys; from zoo.cli import main; rc = main(['list']); "
            "assert rc == 0; assert 'torch' not in sys.modules and 'pytorch_lightning' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torch', 'pytorch_lightning')))[:5]")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in zoo.list_models():
        assert name in r.stdout


def test_list_command():
    r = _run("list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "task", "family", "params", "GMACs", "input", "reference"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert sorted(rows) == zoo.list_models()
    ref = torchvision.models.resnet50()
    assert rows["resnet50"][3] == f"{n_params(ref):,}"  # 25,557,032
    assert rows["resnet50"][4] == f"{count_macs_with_hooks(ref, torch.randn(1, 3, 224, 224)) / 1e9:.2f}"  # 4.09
    assert rows["resnet50"][5:] == ["3x224x224", "torchvision:resnet50"]
    r = _run("list", "--task", "detection")
    assert r.returncode == 0 and "resnet50" not in r.stdout and "yolov3_se" in r.stdout


def test_info_command_resnet50():
    r = _run("info", "resnet50")
    assert r.returncode == 0, r.stderr
    ref = torchvision.models.resnet50(weights=None)
    assert f"params:     {n_params(ref):,}" in r.stdout  # 25,557,032
    macs = count_macs_with_hooks(ref, torch.randn(1, 3, 224, 224))
    assert f"{macs / 1e9:.2f} GMACs" in r.stdout  # 4.09
    assert "torchvision:resnet50" in r.stdout
    assert "verified:   weight identity" in r.stdout


def test_docs_models_table_is_current():
    with open(os.path.join(ROOT, "docs", "MODELS.md")) as f:
        doc = f.read()
    r = _run("list", "--markdown")
    assert r.returncode == 0
    assert r.stdout.strip() in doc, "docs/MODELS.md is stale: run `make docs`"


def _checkpoint_recipes() -> list[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "data", "*.yaml"))):
        with open(path) as f:
            callbacks = (yaml.safe_load(f).get("trainer") or {}).get("callbacks") or []
        if any(c["class_path"].endswith("ModelCheckpoint") for c in callbacks):
            out.append(path)
    return out


@pytest.mark.parametrize("recipe", _checkpoint_recipes(), ids=os.path.basename)
def test_recipes_keep_the_best_and_the_final_checkpoint(recipe, tmp_path):
    """best.ckpt holds the best epoch by the monitored metric and last.ckpt the final one, also when
    the metric only gets worse after the first epoch (the recipes' own ModelCheckpoint objects, built
    from their YAML, plus the LastCheckpoint that `zoo fit` adds, on a stand-in module)."""
    from zoo.callbacks import LastCheckpoint

    import pytorch_lightning as pl
    from jsonargparse import ArgumentParser
    from torch.utils.data import DataLoader, TensorDataset

    with open(recipe) as f:
        specs = yaml.safe_load(f)["trainer"]["callbacks"]
    parser = ArgumentParser()
    parser.add_argument("--cb", type=list[pl.Callback])
    callbacks = parser.instantiate_classes(parser.parse_object({"cb": specs})).cb + [LastCheckpoint()]
    monitored = [c for c in callbacks if getattr(c, "monitor", None)]
    assert len(monitored) == 1
    name, sign = monitored[0].monitor, 1.0 if monitored[0].mode == "min" else -1.0

    class Worsening(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

        def training_step(self, batch, i):
            return self.w(batch[0]).sum()

        def validation_step(self, batch, i):
            self.log(name, sign * float(self.current_epoch))  # best at the first epoch

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer = pl.Trainer(max_epochs=3, callbacks=callbacks, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(Worsening(), data, data)
    steps = {f: torch.load(tmp_path / "checkpoints" / f, weights_only=True)["global_step"]
             for f in os.listdir(tmp_path / "checkpoints")}
    assert steps == {"best.ckpt": 2, "last.ckpt": 6}


def test_a_zoo_schedule_from_config_steps_once_per_optimizer_step(tmp_path):
    """``lr_scheduler: zoo.optim.ScheduleLR`` is stepped per optimizer step (Lightning's CLI
    would step a scheduler once per epoch): after 6 steps of a 10-step warmup from 0.1 the lr
    is 0.1 * (0.1 + 0.9 * 6 / 10)."""
    cli = ZooCLI(["fit", "--config", RECIPES["classification"], "--trainer.max_steps=6",
                  "--trainer.limit_val_batches=0", "--trainer.enable_checkpointing=false",
                  "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                  "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={tmp_path}",
                  "--data.batch_size=8", "--optimizer=torch.optim.SGD", "--optimizer.lr=0.1",
                  "--lr_scheduler=zoo.optim.ScheduleLR",
                  "--lr_scheduler.phases=[{kind: linear, steps: 10, start: 0.1}]"])
    trainer = cli.trainer
    assert trainer.global_step == 6
    config = trainer.lr_scheduler_configs[0]
    assert config.interval == "step" and type(config.scheduler).__name__ == "ScheduleLR"
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * (0.1 + 0.9 * 6 / 10), rel=1e-12)
