"""Distributed data parallel on CPU: ``python -m zoo fit|validate ... --trainer.strategy ddp
--trainer.devices 2 --trainer.accelerator cpu`` (Lightning's DDP, two processes over gloo).

* the digits classifier and the insects detector each train a few steps under DDP, exit 0 and
  write a checkpoint;
* ``validate`` under DDP gives the same val metrics as a single process on the same checkpoint
  (the oracle), on val sets whose size does not divide by 2 (361 digits: 45 batches on one
  rank, 46 on the other; 9 insect images: 4 and 5). Lightning's own DistributedSampler would
  repeat a sample there, and torchmetrics' mAP would fail to gather uneven per-image lists;
* ``predict`` under DDP writes every row once, in dataset order (the writer gathers on rank 0);
* the pieces on their own: the unpadded eval sampler and the mAP's gather of uneven shards.

The runs are subprocesses (DDP starts one process per device). docs/DISTRIBUTED.md.
"""
from __future__ import annotations

import csv
import glob
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

import zoo
from zoo.cli import ZooCLI, main
from zoo.data.base import EvalShardSampler, shard_for_eval
from zoo.metrics import MeanAveragePrecision
from zoo.serialization import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
SINGLE = ["--trainer.devices=1", "--trainer.accelerator=cpu"]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]

# resnet18 on 16x16 digits; val_fraction 0.2009 of the 1,797 digits: 361 val images (odd)
CLASSIFIER = ["--config", os.path.join(ROOT, "configs", "data", "digits.yaml"), "--model.init_args.arch=resnet18",
              "--data.image_size=16", "--data.batch_size=4", "--data.val_fraction=0.2009"]
N_VAL_DIGITS = 361
ANCHORS = [[[15, 15], [10, 27], [20, 23]], [[28, 28], [41, 22], [47, 47]]]  # yolov3_tiny: two levels


def detector_args(data_dir) -> list[str]:
    """The insects recipe with yolov3_tiny at 128 px: 8 train and 9 val images (odd)."""
    return ["--config", os.path.join(ROOT, "configs", "data", "insects.yaml"), "--model.init_args.arch=yolov3_tiny",
            f"--model.init_args.anchors={ANCHORS}", "--data.img_size=128", "--data.multiscale=null",
            "--trainer.precision=32", "--data.batch_size=4", f"--data.data_dir={data_dir}",
            "--data.synthetic={n_train: 8, n_val: 9, size: 128, seed: 1}"]


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """LightningCLI warns when sys.argv (here pytest's) and args are both given."""
    monkeypatch.setattr(sys, "argv", ["zoo"])


def run_zoo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m zoo ARGS`` in its own session (a hung DDP run is killed with the process it
    started for rank 1); one thread per process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"python -m zoo {' '.join(args[:1])} did not finish in {timeout} s (a DDP hang?)\n{err[-3000:]}")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert result.returncode == 0, f"exit {result.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    return result


def fitted_checkpoint(result: subprocess.CompletedProcess) -> str:
    """The checkpoint ``zoo fit`` printed (its best, else its last)."""
    found = re.findall(r"^zoo fit: checkpoint (.+)$", result.stdout, re.M)
    assert found, result.stdout[-2000:]
    assert os.path.isfile(found[-1])
    return found[-1]


def ddp_validate(args: list[str], ckpt: str, log_dir) -> dict[str, float]:
    """The metrics of ``validate`` under DDP, from the CSV its rank 0 logged."""
    run_zoo("validate", *args, *DDP, *QUIET, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={log_dir}",
            "--trainer.logger=CSVLogger", f"--trainer.logger.init_args.save_dir={log_dir}")
    (path,) = glob.glob(os.path.join(log_dir, "**", "metrics.csv"), recursive=True)
    with open(path) as f:
        (row,) = list(csv.DictReader(f))
    return {k: float(v) for k, v in row.items() if "/" in k and v != ""}


def single_validate(args: list[str], ckpt: str, root) -> dict[str, float]:
    """The oracle: the same ``validate`` in one process (this one)."""
    cli = ZooCLI(["validate", *args, *SINGLE, *QUIET, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={root}",
                  "--trainer.logger=false"])
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if "/" in k}


def assert_same_metrics(ddp: dict[str, float], single: dict[str, float], exact: list[str]) -> None:
    assert set(exact) | {"val/loss"} <= set(ddp) == set(single), (ddp, single)
    for key in exact:  # the same samples, in the same order: the same value
        assert ddp[key] == pytest.approx(single[key], rel=1e-6, abs=1e-12), (key, ddp, single)
    # (a mean of per-sample losses summed in another order: float32 rounding apart; one sample
    # more or less moves it by far more)
    assert ddp["val/loss"] == pytest.approx(single["val/loss"], rel=1e-5), (ddp, single)


def assert_trained_under_ddp(result: subprocess.CompletedProcess, ckpt: str, steps: int) -> None:
    log = result.stdout + result.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log and "Starting with 2 processes" in log
    saved = [load_file(p)
             for p in glob.glob(os.path.join(os.path.dirname(ckpt), "*.ckpt"))]
    assert max(s["global_step"] for s in saved) == steps  # (the best may be an earlier one)
    assert all(torch.isfinite(v).all() for s in saved for v in s["state_dict"].values() if v.is_floating_point())


# ------------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize("n", [7, 9, 361])
@pytest.mark.parametrize("world", [2, 3, 4])
def test_eval_shards_cover_the_set_once_in_order(n, world):
    shards = [list(EvalShardSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))  # rank order = dataset order, no repeat
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(EvalShardSampler(range(n), num_replicas=world, rank=r)) for r in range(world)] == list(map(len, shards))
    # what it replaces: torch's sampler pads the set by repeating its first samples
    padded = [i for r in range(world) for i in DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False)]
    assert len(padded) == -(-n // world) * world


def test_eval_shards_need_a_sample_per_process_and_leave_single_process_loaders_alone():
    with pytest.raises(ValueError, match="fewer than the 3 processes"):
        EvalShardSampler(range(2), num_replicas=3, rank=0)
    loader = DataLoader(range(5), batch_size=2)
    assert shard_for_eval(loader) is loader  # torch.distributed is not initialised here


def test_map_gathers_uneven_shards_in_rank_order(monkeypatch):
    """Three processes holding 4, 5 and 0 images (faked collectives): after the zoo's gather,
    ``compute()`` equals one metric over the 9 images in order, with score ties across images
    (COCO breaks them by image order, so another order gives another mAP)."""
    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for i in range(9):
        k = int(torch.randint(1, 5, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * 50
        boxes = torch.cat([xy, xy + torch.rand(k, 2, generator=g) * 30 + 5], 1)
        targets.append({"boxes": boxes, "labels": torch.randint(0, 3, (k,), generator=g)})
        det = boxes + torch.randn(k, 4, generator=g) * 2
        preds.append({"boxes": det, "scores": torch.full((k,), 0.5), "labels": targets[-1]["labels"].clone()})

    def metric(idx):
        m = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
        if idx:
            m.update([preds[i] for i in idx], [targets[i] for i in idx])
        return m

    def value(m):
        r = m.compute()
        return float(r["map"]), float(r["map_50"])

    shards = [metric(list(range(4))), metric(list(range(4, 9))), metric([])]
    locals_ = []
    monkeypatch.setattr(zoo.metrics.dist, "get_world_size", lambda group=None: 3)
    monkeypatch.setattr(zoo.metrics.dist, "all_gather_object",
                        lambda out, obj, group=None: (locals_.append(obj), out.__setitem__(slice(None), [obj] * 3)))
    for m in shards:  # what each process would send
        m._sync_dist()
    monkeypatch.setattr(zoo.metrics.dist, "all_gather_object", lambda out, obj, group=None: out.__setitem__(
        slice(None), locals_))
    rank0 = metric(list(range(4)))
    rank0._sync_dist()
    assert value(rank0) == value(metric(list(range(9))))
    assert value(metric([0, 4, 1, 5, 2, 6, 3, 7, 8])) != value(metric(list(range(9))))  # order matters


# ------------------------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def classifier_fit(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_classifier")
    result = run_zoo("fit", *CLASSIFIER, *DDP, *QUIET, "--trainer.max_steps=3", "--trainer.limit_train_batches=3",
                     "--trainer.max_epochs=1", f"--trainer.default_root_dir={root}")
    return result, fitted_checkpoint(result)


@pytest.fixture(scope="module")
def detector_fit(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_detector")
    args = detector_args(root / "data")
    result = run_zoo("fit", *args, *DDP, *QUIET, "--trainer.max_steps=2", "--trainer.max_epochs=2",
                     f"--trainer.default_root_dir={root}")
    return result, fitted_checkpoint(result), args


def test_classifier_trains_under_ddp(classifier_fit):
    result, ckpt = classifier_fit
    assert_trained_under_ddp(result, ckpt, steps=3)
    # validation ran at the epoch's end over both shards (180 + 181 images), and the epoch line says so
    assert re.search(r"^epoch  1/1  train/loss \S+ .*val/acc1 ", result.stdout, re.M), result.stdout
    assert zoo.load("resnet18", weights=ckpt).num_classes == 10


def test_detector_trains_under_ddp(detector_fit):
    result, ckpt, _ = detector_fit
    assert_trained_under_ddp(result, ckpt, steps=2)
    assert re.search(r"^epoch  2/2  train/loss .*val/mAP50 ", result.stdout, re.M), result.stdout
    assert zoo.load("yolov3_tiny", weights=ckpt).classes == list(zoo.data.INSECT_CLASSES)


def test_classifier_metrics_under_ddp_equal_one_process(classifier_fit, tmp_path):
    _, ckpt = classifier_fit
    assert N_VAL_DIGITS % 2 == 1
    ddp = ddp_validate(CLASSIFIER, ckpt, tmp_path / "ddp")
    single = single_validate(CLASSIFIER, ckpt, tmp_path / "single")
    assert_same_metrics(ddp, single, exact=["val/acc1", "val/acc5"])


def test_classifier_predict_under_ddp_writes_every_row_once_in_order(classifier_fit, tmp_path):
    """Each process predicts its shard; the writer gathers the rows on rank 0, which writes
    predictions.csv: the single process's rows (index 0..360), in the same order."""
    _, ckpt = classifier_fit

    def rows(root):
        with open(root / "predict" / "predictions.csv") as f:
            return list(csv.DictReader(f))

    run_zoo("predict", *CLASSIFIER, *DDP, *QUIET, f"--ckpt_path={ckpt}",
            f"--trainer.default_root_dir={tmp_path / 'ddp'}")
    assert main(["predict", *CLASSIFIER, *SINGLE, *QUIET, f"--ckpt_path={ckpt}",
                 f"--trainer.default_root_dir={tmp_path / 'single'}"]) == 0
    ddp, single = rows(tmp_path / "ddp"), rows(tmp_path / "single")
    assert [int(r["index"]) for r in ddp] == list(range(N_VAL_DIGITS)) == [int(r["index"]) for r in single]
    for a, b in zip(ddp, single):
        assert a["class_1"] == b["class_1"] and float(a["prob_1"]) == pytest.approx(float(b["prob_1"]), abs=1e-5)


def constant_head(ckpt: str, out: str) -> str:
    """``ckpt`` with yolov3_tiny's two 1x1 output convs made constant (weights 0, set biases): every
    cell predicts its anchor boxes (centred, anchor-sized), one class per anchor, the same scores
    in every cell of every image. The mAP is then known to be above 0 on the seed-1 insects and
    depends on the order of the images (their score ties), which a gather in the wrong order, or a
    repeated image, changes (0.000587 in order; 0.000515 interleaved across ranks, 0.000541 in
    rank-strided order, 0.000515 with the first image repeated)."""
    saved = load_file(ckpt)
    classes = {(0, 0): 2, (0, 1): 3, (0, 2): 1, (1, 0): 2, (1, 1): 5, (1, 2): 4}  # (level, anchor) -> class
    objectness = {(0, 0): 3.0, (0, 2): 2.5}  # the others 1.0
    for level, name in enumerate(("net.head16.1", "net.head32.1")):
        weight, bias = saved["state_dict"][f"{name}.weight"], saved["state_dict"][f"{name}.bias"]
        b = torch.full((3, 5 + 7), -10.0)  # per anchor: tx, ty, tw, th, objectness, 7 class logits
        b[:, :4] = 0.0
        for a in range(3):
            b[a, 4] = objectness.get((level, a), 1.0)
            b[a, 5 + classes[level, a]] = 4.0
        weight.zero_()
        bias.copy_(b.reshape(-1))
    torch.save(saved, out)
    return out


def test_detector_map_under_ddp_equals_one_process(detector_fit, tmp_path):
    _, ckpt, args = detector_fit
    ckpt = constant_head(ckpt, str(tmp_path / "constant_head.ckpt"))
    ddp = ddp_validate(args, ckpt, tmp_path / "ddp")
    single = single_validate(args, ckpt, tmp_path / "single")
    assert single["val/mAP50"] > 0
    assert_same_metrics(ddp, single, exact=["val/mAP", "val/mAP50"])
