"""The Steganalyzer LightningModule: P(stego), its metrics against sklearn / brute force, the papers'
optimizer recipes and schedules, loading by name."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.tasks import Steganalyzer, stego_probability


def test_stego_probability_is_one_minus_p_cover():
    logits = torch.randn(7, 4, dtype=torch.float64)
    p = np.exp(logits.numpy())
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(stego_probability(logits).numpy(), p[:, 1:].sum(axis=1), rtol=1e-6)


def _brute_force_pe(score: np.ndarray, stego: np.ndarray) -> float:
    best = 0.5
    for t in np.concatenate([np.unique(score), [np.inf]]):
        fa = np.mean(score[stego == 0] >= t)
        md = np.mean(score[stego == 1] < t)
        best = min(best, 0.5 * (fa + md))
    return best


@pytest.mark.parametrize("num_classes", [2, 3])
def test_validation_metrics_match_independent_computations(num_classes):
    torch.manual_seed(0)
    module = Steganalyzer("xunet", num_classes=num_classes)
    x = torch.rand(24, 1, 32, 32) * 255
    y = torch.arange(24) % num_classes
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    out = trainer.validate(module, DataLoader(TensorDataset(x, y), batch_size=6), verbose=False)[0]
    module.eval()
    with torch.no_grad():
        logits = module(x)
    # the module's float32 score (ties in it must be ties here too), ranked by sklearn / brute force
    score = (1 - logits.softmax(1)[:, 0]).double().numpy()
    stego = (y > 0).numpy()
    assert out["val/auroc"] == pytest.approx(roc_auc_score(stego, score), abs=1e-6)
    assert out["val/pe"] == pytest.approx(_brute_force_pe(score, stego), abs=1e-6)
    assert out["val/acc"] == pytest.approx(float((logits.argmax(1) == y).double().mean()), abs=1e-6)
    assert 0.0 <= out["val/wauc"] <= 1.0


def test_paper_recipes_build_the_named_optimizers():
    srnet = Steganalyzer("srnet", optimizer="adamax", lr=1e-3, weight_decay=2e-4)
    opt = srnet.configure_optimizers()
    assert isinstance(opt, torch.optim.Adamax) and opt.defaults["lr"] == 1e-3
    decays = {g["weight_decay"] for g in opt.param_groups}
    assert decays == {2e-4, 0.0}  # kernels decay, BN and biases not
    yenet = Steganalyzer("yenet", optimizer="adadelta", lr=0.4, momentum=0.95, weight_decay=5e-4)
    opt = yenet.configure_optimizers()
    assert isinstance(opt, torch.optim.Adadelta)
    assert opt.defaults["rho"] == 0.95 and opt.defaults["eps"] == 1e-8 and opt.defaults["lr"] == 0.4


def _lrs(sched, opt, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_equal_their_closed_forms():
    m = Steganalyzer("xunet", optimizer="adamax", lr=1e-3, lr_milestones=[0.5, 0.8], lr_gamma=0.1)
    opt = torch.optim.Adamax(m.parameters(), lr=1e-3)
    lrs = _lrs(m.lr_scheduler(opt, 100), opt, 100)
    expect = [1e-3 * 0.1 ** ((t >= 50) + (t >= 80)) for t in range(100)]
    np.testing.assert_allclose(lrs, expect, rtol=1e-12)
    x = Steganalyzer("xunet", optimizer="sgd", lr=1e-3, lr_decay_steps=7, lr_gamma=0.9)
    opt = torch.optim.SGD(x.parameters(), lr=1e-3)
    lrs = _lrs(x.lr_scheduler(opt, None), opt, 30)
    np.testing.assert_allclose(lrs, [1e-3 * 0.9 ** (t // 7) for t in range(30)], rtol=1e-12)
    assert Steganalyzer("xunet").lr_scheduler(opt, 100) is None  # no schedule: a constant lr


def test_load_by_name_and_from_a_checkpoint(tmp_path):
    module = zoo.load("srnet_rgb")
    assert isinstance(module, Steganalyzer) and module.classes == ["cover", "stego"]
    assert module(torch.rand(2, 3, 32, 32) * 255).shape == (2, 2)
    m = zoo.load("xunet", num_classes=3)
    path = tmp_path / "x.pt"
    torch.save(m.net.state_dict(), path)
    again = zoo.load("xunet", weights=str(path), num_classes=3)
    for a, b in zip(m.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs,match", [
    ({"arch": "resnet18"}, "arch: 'resnet18' is a classification model"),
    ({"arch": "srnet", "optimizer": "lbfgs"}, "optimizer: expected one of"),
    ({"arch": "srnet", "lr_milestones": [0.8, 0.5]}, "lr_milestones: expected increasing"),
    ({"arch": "srnet", "lr_milestones": [1.2]}, "lr_milestones: expected increasing"),
    ({"arch": "srnet", "lr_milestones": [0.5], "lr_decay_steps": 10}, "choose one schedule"),
    ({"arch": "srnet", "lr_gamma": 0.0}, "lr_gamma"),
    ({"arch": "srnet", "num_classes": 1}, "at least 2 classes"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Steganalyzer(**kwargs)
