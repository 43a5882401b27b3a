"""The Classifier LightningModule: loss, metrics, predict, checkpoints."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

import zoo
from zoo.data import DigitsDataModule
from zoo.tasks import Classifier
from tests.util import fit_and_record_lrs, torch_schedule_lrs


def _trainer(tmp_path, **kw):
    kw.setdefault("max_epochs", 1)
    return pl.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_model_summary=False, **kw)


def test_loss_is_label_smoothed_cross_entropy():
    torch.manual_seed(0)
    m = Classifier("resnet18", num_classes=4, label_smoothing=0.2).eval()
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 3, 1])
    loss = m.training_step((x, y), 0)
    # closed form: (1 - eps) * NLL(target) + eps * mean over classes of -log p
    logp = m(x).log_softmax(1)
    want = (0.8 * -logp.gather(1, y[:, None]).squeeze(1) + 0.2 * -logp.mean(1)).mean()
    torch.testing.assert_close(loss, want)


def test_predict_step_returns_topk():
    m = Classifier("resnet18", num_classes=10, topk=3).eval()
    x = torch.randn(4, 3, 32, 32)
    out = m.predict_step((x, torch.zeros(4, dtype=torch.long)), 0)
    probs = torch.softmax(m(x), 1)
    vals, idx = torch.sort(probs, 1, descending=True)
    assert torch.equal(out["labels"], idx[:, :3])
    torch.testing.assert_close(out["probs"], vals[:, :3])
    assert m.predict_step(x, 0)["labels"].shape == (4, 3)


def test_validation_metrics_match_a_manual_count(tmp_path):
    pl.seed_everything(0)
    m = Classifier("resnet18", num_classes=10)
    dm = DigitsDataModule(arch="resnet18", augment=False)
    res = _trainer(tmp_path).validate(m, datamodule=dm, verbose=False)[0]
    dm.setup("validate")
    m.eval()
    correct1 = correct5 = n = 0
    loss = 0.0
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            logits = m(x)
            top5 = logits.topk(5, 1).indices
            correct1 += (top5[:, 0] == y).sum().item()
            correct5 += (top5 == y[:, None]).any(1).sum().item()
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            n += len(y)
    assert res["val/acc1"] == pytest.approx(correct1 / n, abs=1e-6)
    assert res["val/acc5"] == pytest.approx(correct5 / n, abs=1e-6)
    assert res["val/loss"] == pytest.approx(loss / n, rel=1e-4)


def test_checkpoint_roundtrip_rebuilds_the_same_model(tmp_path):
    pl.seed_everything(0)
    m = Classifier("resnet18", num_classes=10, lr=0.01, label_smoothing=0.1)
    dm = DigitsDataModule(augment=False)
    trainer = _trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(m, datamodule=dm)
    path = str(tmp_path / "m.ckpt")
    trainer.save_checkpoint(path)

    x = torch.randn(2, 3, 32, 32)
    m.eval()
    for loaded in (Classifier.load_from_checkpoint(path), zoo.load("resnet18", weights=path)):
        loaded.eval()
        assert loaded.hparams.label_smoothing == 0.1 and loaded.hparams.num_classes == 10
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), m(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="checkpoint of 'resnet18', not 'resnet34'"):
        zoo.load("resnet34", weights=path)


def test_default_schedule_is_linear_warmup_then_cosine(tmp_path):
    """The lr the trainer applies each step equals torch's LinearLR (from lr / (warmup + 1)) then
    CosineAnnealingLR down to 0 at the last step."""
    m = Classifier("resnet18", num_classes=10, lr=0.1, warmup_epochs=1)
    trainer = _trainer(tmp_path, max_epochs=4, limit_train_batches=5, limit_val_batches=0)
    lrs = fit_and_record_lrs(trainer, m, datamodule=DigitsDataModule())
    total, warm = 20, 5
    want = torch_schedule_lrs(0.1, total, lambda opt: SequentialLR(
        opt, [LinearLR(opt, start_factor=1 / (warm + 1), end_factor=1.0, total_iters=warm),
              CosineAnnealingLR(opt, T_max=total - warm)], milestones=[warm]))
    assert len(lrs) == total
    for got, exp in zip(lrs, want):
        assert got == pytest.approx(exp, rel=1e-9, abs=1e-12)
    assert isinstance(trainer.optimizers[0], torch.optim.SGD) and trainer.optimizers[0].param_groups[1]["weight_decay"] == 0.0
    assert trainer.optimizers[0].defaults["nesterov"]


def test_bad_arguments():
    with pytest.raises(KeyError, match="closest"):
        Classifier("resnet19")
    with pytest.raises(ValueError, match="optimizer"):
        Classifier("resnet18", optimizer="lbfgs")
    with pytest.raises(ValueError, match="num_classes"):
        Classifier("resnet18", num_classes=1)
    with pytest.raises(ValueError, match="label_smoothing"):
        Classifier("resnet18", label_smoothing=1.5)


def _aux_loss_oracle(outputs, y, aux_weight, label_smoothing):
    main = F.cross_entropy(outputs[0], y, label_smoothing=label_smoothing)
    aux = [F.cross_entropy(o, y, label_smoothing=label_smoothing) for o in outputs[1:]]
    return main, main + aux_weight * (aux[0] + aux[1])


@pytest.mark.parametrize("aux_weight", [0.3, 1.5])
def test_training_loss_adds_weighted_auxiliary_losses(aux_weight):
    kw = {} if aux_weight == 0.3 else {"aux_weight": aux_weight}  # 0.3 is the default
    m = Classifier("googlenet", num_classes=4, label_smoothing=0.1, **kw).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    torch.manual_seed(5)  # the same dropout masks in both passes
    loss = m.training_step((x, y), 0)
    torch.manual_seed(5)
    outputs = m.net(x)
    assert len(outputs) == 3 and all(o.shape == (2, 4) for o in outputs)
    main, want = _aux_loss_oracle(outputs, y, aux_weight, 0.1)
    torch.testing.assert_close(loss, want)
    assert (want - main).item() > 0  # the auxiliary terms count


def test_net_without_auxiliary_outputs_gets_plain_cross_entropy():
    m = Classifier("googlenet", num_classes=4, net_kwargs={"aux_logits": False, "drop_rate": 0.0}).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    loss = m.training_step((x, y), 0)
    logits = m.net(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 4)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y))


def test_fit_logs_total_and_main_loss_and_evaluates_on_logits(tmp_path):
    """One step at lr 0 without dropout: the logged train/loss and train/loss_main equal CE on the
    net's own train-mode outputs; validation (eval mode) scores the logits tensor."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    m = Classifier("googlenet", num_classes=3, lr=0.0, weight_decay=0.0,
                   net_kwargs={"drop_rate": 0.0, "aux_drop_rate": 0.0})
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(m, train_dataloaders=loader, val_dataloaders=loader)
    with torch.no_grad():
        val = F.cross_entropy(m.eval().net(x), y)  # before the train-mode pass moves the BN statistics
        main, total = _aux_loss_oracle(m.train().net(x), y, 0.3, 0.0)
    metrics = trainer.callback_metrics
    assert metrics["train/loss_main"].item() == pytest.approx(main.item(), rel=1e-5)
    assert metrics["train/loss"].item() == pytest.approx(total.item(), rel=1e-5)
    assert metrics["val/loss"].item() == pytest.approx(val.item(), rel=1e-5)


def test_aux_weight_must_be_non_negative():
    with pytest.raises(ValueError, match="aux_weight"):
        Classifier("resnet18", aux_weight=-0.1)
    with pytest.raises(ValueError, match="aux_weight"):
        Classifier("resnet18", aux_weight=float("nan"))
