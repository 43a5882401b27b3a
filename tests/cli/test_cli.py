"""The command line: every config through the real entry point, list/info, checkpoints."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision

import zoo
from zoo.cli import ZooCLI, main
from tests.util import count_macs_with_hooks, n_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """LightningCLI warns when sys.argv (here pytest's) and args are both given."""
    monkeypatch.setattr(sys, "argv", ["zoo"])


CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_every_classification_model_has_a_digits_config():
    have = {os.path.basename(c)[: -len("_digits.yaml")] for c in CONFIGS if c.endswith("_digits.yaml")}
    assert set(zoo.list_models(task="classification")) <= have


@pytest.mark.parametrize("config", CONFIGS, ids=os.path.basename)
def test_fast_dev_run_every_config(config, tmp_path):
    assert main(["fit", "--config", config, "--trainer.fast_dev_run=true",
                 f"--trainer.default_root_dir={tmp_path}"]) == 0


def test_python_dash_m_zoo_fit_fast_dev_run(tmp_path):
    cfg = os.path.join(ROOT, "configs", "resnet18_digits.yaml")
    r = _run("fit", "--config", cfg, "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]


def test_fit_then_validate_test_predict_from_checkpoint(tmp_path):
    cfg = os.path.join(ROOT, "configs", "resnet18_digits.yaml")
    common = ["--config", cfg, f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false"]
    fit = ZooCLI(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
                  "--trainer.limit_val_batches=1"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    assert os.path.isfile(ckpt)
    # the datamodule took the model's arch, hence its spec's mean/std
    assert fit.datamodule.hparams.arch == "resnet18" and fit.datamodule.mean == zoo.get_spec("resnet18").mean

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

    assert main(["predict", *common, f"--ckpt_path={ckpt}"]) == 0
    pred = ZooCLI([*common, "--model.topk=2"], run=False)
    batches = pred.trainer.predict(pred.model, datamodule=pred.datamodule, ckpt_path=ckpt)
    labels = torch.cat([b["labels"] for b in batches])
    assert labels.shape == (n, 2)
    with torch.no_grad():
        want = torch.cat([module(x).argmax(1) for x, _ in dm.val_dataloader()])
    assert torch.equal(labels[:, 0], want)


def test_list_command():
    r = _run("list")
    assert r.returncode == 0, r.stderr
    for name in zoo.list_models():
        assert name in r.stdout
    assert "25,557,032" in r.stdout  # resnet50 row
    r = _run("list", "--task", "detection")
    assert r.returncode == 0 and "resnet50" not in r.stdout


def test_info_command_resnet50():
    r = _run("info", "resnet50")
    assert r.returncode == 0, r.stderr
    ref = torchvision.models.resnet50(weights=None)
    assert f"params:     {n_params(ref):,}" in r.stdout  # 25,557,032
    macs = count_macs_with_hooks(ref, torch.randn(1, 3, 224, 224))
    assert f"{macs / 1e9:.2f} GMACs" in r.stdout  # 4.09
    assert "torchvision:resnet50" in r.stdout


def test_info_unknown_model_is_a_clear_error():
    r = _run("info", "resnet05")
    assert r.returncode == 2
    assert "unknown model name 'resnet05'" in r.stderr and "resnet50" in r.stderr


def test_docs_models_table_is_current():
    with open(os.path.join(ROOT, "docs", "MODELS.md")) as f:
        doc = f.read()
    r = _run("list", "--markdown")
    assert r.returncode == 0
    assert r.stdout.strip() in doc, "docs/MODELS.md is stale: run `make docs`"


def test_detection_fit_then_predict_writes_pngs_and_json(tmp_path):
    """The detection recipe end to end through the CLI: fit (tiny run), then predict on a
    folder of images, which writes one PNG per image and detections.json."""
    from PIL import Image

    cfg = os.path.join(ROOT, "configs", "yolov3_insects.yaml")
    common = ["--config", cfg, f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
              "--data.img_size=64", "--data.multiscale=null", "--trainer.precision=32",
              f"--data.data_dir={tmp_path / 'data'}", "--data.synthetic={n_train: 4, n_val: 2, size: 96, seed: 1}"]
    fit = ZooCLI(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"])
    # the detector took the datamodule's class names and input size
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
    out = tmp_path / "predict"  # the config's DetectionWriter writes under trainer.default_root_dir
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
