"""The VideoClassifier LightningModule: log loss / AUROC / accuracy against scikit-learn, frame-level
metrics of the frame-averaging net, the positive-class weight against the closed form, a batch whose
clips all failed, bad arguments, loading by name."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.tasks import VideoClassifier


def _trainer() -> pl.Trainer:
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", max_epochs=1)


def _clips(n: int = 12, t: int = 3, size: int = 32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, t, 3, size, size, generator=g), (torch.arange(n) % 2).float()


@pytest.mark.parametrize("arch", ["deepfake_effnet", "deepfake_effnet_lstm"])
def test_validation_metrics_match_sklearn(arch):
    torch.manual_seed(0)
    module = VideoClassifier(arch)
    x, y = _clips()
    out = _trainer().validate(module, DataLoader(TensorDataset(x, y), batch_size=5), verbose=False)[0]
    module.eval()
    with torch.no_grad():
        logits, frames = module.forward_with_frames(x)
    p = logits.sigmoid().double().numpy()
    assert out["val/logloss"] == pytest.approx(log_loss(y.numpy(), p), rel=1e-4)
    assert out["val/auroc"] == pytest.approx(roc_auc_score(y.numpy(), p), abs=1e-6)
    assert out["val/acc"] == pytest.approx(accuracy_score(y.numpy(), p >= 0.5))
    if arch == "deepfake_effnet":  # frame level: each frame scored alone, labelled with its clip's label
        fp = frames.sigmoid().reshape(-1).numpy()
        fy = y[:, None].expand_as(frames).reshape(-1).numpy()
        assert out["val/frame_auroc"] == pytest.approx(roc_auc_score(fy, fp), abs=1e-6)
        assert out["val/frame_acc"] == pytest.approx(accuracy_score(fy, fp >= 0.5))
        # and the clip's logit is the mean of the frames'
        assert torch.allclose(logits, frames.mean(dim=1), atol=1e-6)
    else:
        assert frames is None and "val/frame_auroc" not in out


def test_pos_weight_is_the_weighted_binary_cross_entropy():
    module = VideoClassifier("deepfake_effnet", pos_weight=5.0)
    z = torch.tensor([-2.0, 0.5, 1.5, -0.1])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    p = 1 / (1 + np.exp(-z.numpy().astype(np.float64)))
    want = np.mean(-(5.0 * y.numpy() * np.log(p) + (1 - y.numpy()) * np.log(1 - p)))
    assert module._loss(z, y).item() == pytest.approx(want, rel=1e-5)


def test_fit_trains_and_a_batch_of_failed_clips_is_skipped():
    torch.manual_seed(0)
    module = VideoClassifier("deepfake_effnet", lr=1e-3)
    x, y = _clips(n=4)
    batches = [(x[:2], y[:2]), None, (x[2:], y[2:])]  # None: every clip of that batch failed to decode
    trainer = _trainer()
    before = [p.detach().clone() for p in module.parameters()]
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert trainer.global_step == 2  # the None batch made no optimizer step
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_predict_gives_p_fake_and_frame_probabilities():
    module = VideoClassifier("deepfake_effnet").eval()
    x, _ = _clips(n=2)
    out = module.predict_step((x, torch.full((2,), -1.0)), 0)
    with torch.no_grad():
        want = torch.sigmoid(module.net(x).squeeze(1))
    assert torch.allclose(out["p_fake"], want, atol=1e-6)
    assert out["frame_p_fake"].shape == (2, 3)
    assert "frame_p_fake" not in VideoClassifier("deepfake_r3d").eval().predict_step((x, None), 0)


def test_load_by_name_builds_the_video_task():
    module = zoo.load("deepfake_r3d")
    assert isinstance(module, VideoClassifier) and module.classes == ["REAL", "FAKE"]


def test_bad_arguments_and_labels_are_named():
    with pytest.raises(ValueError, match="arch: 'srnet' is a steganalysis model, not a video model"):
        VideoClassifier("srnet")
    with pytest.raises(ValueError, match="classes: expected two names"):
        VideoClassifier("deepfake_effnet", classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="pos_weight"):
        VideoClassifier("deepfake_effnet", pos_weight=0.0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        VideoClassifier("deepfake_effnet", warmup_epochs=-1)
    with pytest.raises(ValueError, match="lr: expected"):
        VideoClassifier("deepfake_effnet", lr=-1.0)
    module = VideoClassifier("deepfake_effnet")
    x, _ = _clips(n=2)
    with pytest.raises(ValueError, match="labels: expected 0 \\(REAL\\) or 1 \\(FAKE\\)"):
        module.training_step((x, torch.tensor([0.0, 2.0])), 0)
    with pytest.raises(ValueError, match="labels: expected a \\[2\\] tensor"):
        module.training_step((x, torch.tensor([0.0])), 0)
