"""zoo.callbacks.EMA: the average against torch.optim.swa_utils.AveragedModel, what validation,
checkpoints and the fitted module hold, and resuming against an uninterrupted run."""
from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, TensorDataset

from zoo.callbacks import EMA

DECAY, TAU = 0.8, 3.0


class Tiny(pl.LightningModule):
    """A linear regression with BatchNorm (a buffer the average leaves alone); records what validation sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bn = torch.nn.BatchNorm1d(4)
        self.fc = torch.nn.Linear(4, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        return self.fc(self.bn(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.seen.append(self.fc.weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.5)


def _loader():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 4, generator=g)
    y = x @ torch.randn(4, 2, generator=g) + 0.1 * torch.randn(24, 2, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=4)  # 6 steps per epoch, no shuffling


class Oracle(Callback):
    """torch's AveragedModel with the documented decay ramp, fed the training weights after each step."""

    def __init__(self) -> None:
        def avg(e, p, n):  # n: updates so far, counting the initial copy as the first
            d = DECAY * (1.0 - math.exp(-int(n) / TAU))
            return d * e + (1.0 - d) * p

        self.avg_fn = avg
        self.model: AveragedModel | None = None
        self.at_validation: list[torch.Tensor] = []

    def on_fit_start(self, trainer, pl_module):
        self.model = AveragedModel(pl_module, avg_fn=self.avg_fn, use_buffers=False)
        self.model.update_parameters(pl_module)  # the copy the average starts from

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.model.update_parameters(pl_module)  # (the module holds the training weights here)
        self.last_train = pl_module.fc.weight.detach().clone()

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.at_validation.append(self.model.module.fc.weight.detach().clone())


def _trainer(tmp_path, epochs, callbacks, **kwargs):
    return pl.Trainer(max_epochs=epochs, callbacks=callbacks, default_root_dir=tmp_path, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", **kwargs)


def test_average_matches_averaged_model_and_is_what_evaluation_and_checkpoints_see(tmp_path):
    model, oracle = Tiny(), Oracle()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_weights_only=True, save_top_k=-1,
                           filename="{epoch}")
    _trainer(tmp_path, 3, [EMA(DECAY, TAU), oracle, ckpt], num_sanity_val_steps=0).fit(
        model, _loader(), _loader())
    expected = dict(oracle.model.module.named_parameters())
    # the fitted module is the average (a different thing from the training weights)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=1e-6, atol=1e-7)
    assert not torch.allclose(model.fc.weight, oracle.last_train, rtol=0, atol=1e-4)
    # every validation saw the average of that moment
    assert len(model.seen) == 3
    for seen, ref in zip(model.seen, oracle.at_validation):
        torch.testing.assert_close(seen, ref, rtol=1e-6, atol=1e-7)
    # the weights-only checkpoint of each epoch holds that epoch's average
    for epoch, ref in enumerate(oracle.at_validation):
        state = torch.load(tmp_path / "ckpt" / f"epoch={epoch}.ckpt", weights_only=True)["state_dict"]
        torch.testing.assert_close(state["fc.weight"], ref, rtol=1e-6, atol=1e-7)
        assert "callbacks" not in state


def test_the_callback_does_not_change_training(tmp_path):
    plain = Tiny()
    _trainer(tmp_path / "a", 2, []).fit(plain, _loader())
    with_ema, ema = Tiny(), EMA(DECAY, TAU)
    _trainer(tmp_path / "b", 2, [ema]).fit(with_ema, _loader(), _loader())
    assert ema.updates == 12
    ema._restore(with_ema)  # (the module holds the average after fit; put the training weights back)
    for a, b in zip(plain.parameters(), with_ema.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(plain.bn.running_mean, with_ema.bn.running_mean, rtol=0, atol=0)


def test_resuming_a_full_checkpoint_equals_an_uninterrupted_run(tmp_path):
    whole = Tiny()
    _trainer(tmp_path / "whole", 4, [EMA(DECAY, TAU)]).fit(whole, _loader(), _loader())

    first = Tiny()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "half", save_last=True, save_top_k=0)
    _trainer(tmp_path / "half", 2, [EMA(DECAY, TAU), ckpt]).fit(first, _loader(), _loader())
    saved = torch.load(tmp_path / "half" / "last.ckpt", weights_only=True)
    state = next(v for k, v in saved["callbacks"].items() if k.startswith("EMA"))
    assert state["updates"] == 12 and set(state["train_weights"]) == {"bn.weight", "bn.bias", "fc.weight", "fc.bias"}
    torch.testing.assert_close(saved["state_dict"]["fc.weight"], first.fc.weight)  # the average

    resumed, ema = Tiny(), EMA(DECAY, TAU)
    _trainer(tmp_path / "resumed", 4, [ema]).fit(resumed, _loader(), _loader(),
                                                  ckpt_path=tmp_path / "half" / "last.ckpt")
    assert ema.updates == 24
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_validate_outside_fit_leaves_the_weights_alone(tmp_path):
    model = Tiny()
    before = model.fc.weight.detach().clone()
    _trainer(tmp_path, 1, [EMA(DECAY, TAU)]).validate(model, _loader(), verbose=False)
    assert torch.equal(model.fc.weight, before) and torch.equal(model.seen[0], before)


@pytest.mark.parametrize("kwargs, name", [({"decay": 1.0}, "decay"), ({"decay": 0.0}, "decay"),
                                          ({"tau": 0}, "tau")])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        EMA(**kwargs)
