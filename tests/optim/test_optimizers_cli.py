"""zoo.optim's optimizers chosen from a config: each configs/optim/*.yaml, added to the digits
recipe, replaces the classifier's optimizer (LightningCLI's ``optimizer:`` key) and trains it."""
from __future__ import annotations

import os
import sys

import pytest
import pytorch_lightning as pl
import torch
import yaml

import zoo.optim
from zoo.callbacks import EpochSummary
from zoo.cli import ZooCLI

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = os.path.join(ROOT, "configs", "data", "digits.yaml")
OPTIM_DIR = os.path.join(ROOT, "configs", "optim")
CLASSES = {"sgd": zoo.optim.SGD, "adagrad": zoo.optim.Adagrad, "rmsprop": zoo.optim.RMSprop,
           "adam": zoo.optim.Adam, "adamw": zoo.optim.AdamW, "adamax": zoo.optim.Adamax,
           "adadelta": zoo.optim.Adadelta}
STEPS = 40

# the CLI's optimizer replaces the task's configure_optimizers, and says so
pytestmark = pytest.mark.filterwarnings("ignore:.*configure_optimizers. will be overridden")


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """LightningCLI warns when sys.argv (here pytest's) and args are both given."""
    monkeypatch.setattr(sys, "argv", ["zoo"])


class LossRecorder(pl.Callback):
    """The training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def test_every_optimizer_has_a_config():
    assert sorted(f[:-5] for f in os.listdir(OPTIM_DIR) if f.endswith(".yaml")) == sorted(CLASSES)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_optimizer_config_trains_the_digits_classifier(name, tmp_path):
    """The recipe's resnet18 at 16x16, 30 steps of 32 images with the optimizer of
    configs/optim/<name>.yaml: the trainer's optimizer is zoo's class with the config's
    arguments, and the training loss falls to well under half its starting value (ln 10)."""
    config = os.path.join(OPTIM_DIR, f"{name}.yaml")
    recorder = LossRecorder()
    cli = ZooCLI(["fit", "--config", DIGITS, "--config", config,
                  "--data.image_size=16", "--data.batch_size=32", "--data.augment=false",
                  f"--trainer.max_steps={STEPS}", "--trainer.limit_val_batches=0", "--trainer.logger=false",
                  "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
                  "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={tmp_path}"],
                 trainer_defaults={"callbacks": [recorder, EpochSummary(plot="")]})
    trainer = cli.trainer
    assert trainer.global_step == STEPS
    (opt,) = trainer.optimizers
    assert type(opt) is CLASSES[name]
    with open(config) as f:
        init_args = yaml.safe_load(f)["optimizer"]["init_args"]
    assert init_args and all(opt.defaults[k] == v for k, v in init_args.items())
    assert len(opt.state) == len(list(cli.model.parameters()))  # every weight was stepped by it
    losses = recorder.losses
    assert len(losses) == STEPS and all(map(torch.isfinite, torch.tensor(losses)))
    first, last = losses[0], sum(losses[-10:]) / 10
    assert first == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=0.1)  # an untrained net
    assert last < 0.5 * first, (name, losses)


def test_optimizer_on_the_command_line():
    """``--optimizer zoo.optim.Adam --optimizer.lr ...`` without a config file (parsed and
    instantiated, not run)."""
    cli = ZooCLI(["--config", DIGITS, "--optimizer", "zoo.optim.Adam", "--optimizer.lr", "0.003",
                  "--optimizer.betas", "[0.8, 0.9]", "--optimizer.amsgrad", "true", "--trainer.logger=false"],
                 run=False)
    opt = cli.model.configure_optimizers()
    assert type(opt) is zoo.optim.Adam
    assert opt.defaults == {"lr": 0.003, "betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0.0,
                            "amsgrad": True, "maximize": False}
