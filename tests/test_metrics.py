"""Metrics: P_E and ALASKA2's weighted AUC against hand-computed values, a dense numerical
integration of the ROC curve and brute force over thresholds; the DFDC log loss against scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.metrics import BinaryLogLoss, ProbabilityOfError, WeightedAUC, roc_points


def _metric(cls, preds, target, **kwargs) -> float:
    m = cls(**kwargs)
    m.update(torch.tensor(preds, dtype=torch.float64), torch.tensor(target))
    return m.compute().item()


def test_probability_of_error_by_hand():
    # covers 0.1 0.4 0.35 0.8, stegos 0.9 0.7 0.6 0.2. Threshold 0.6 (stego when >= 0.6):
    # P_FA = 1/4 (0.8), P_MD = 1/4 (0.2): P_E = 0.25, and no threshold does better
    preds = [0.1, 0.4, 0.35, 0.8, 0.9, 0.7, 0.6, 0.2]
    target = [0, 0, 0, 0, 1, 1, 1, 1]
    assert _metric(ProbabilityOfError, preds, target) == pytest.approx(0.25)
    assert _metric(ProbabilityOfError, [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0  # separable
    assert _metric(ProbabilityOfError, [0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.5  # inverted: best is "never stego"
    assert _metric(ProbabilityOfError, [0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # ties move both rates together


def test_probability_of_error_is_the_brute_force_minimum():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (300,), generator=g)
    preds = (target * 0.7 + torch.randn(300, generator=g)).round(decimals=1).double()  # many ties
    best = 0.5
    for t in sorted(set(preds.tolist())):
        says = preds >= t
        p_fa = (says & (target == 0)).sum().item() / (target == 0).sum().item()
        p_md = (~says & (target == 1)).sum().item() / (target == 1).sum().item()
        best = min(best, 0.5 * (p_fa + p_md))
    m = ProbabilityOfError()
    for chunk in range(3):  # accumulates over updates
        m.update(preds[chunk * 100:(chunk + 1) * 100], target[chunk * 100:(chunk + 1) * 100])
    assert m.compute().item() == pytest.approx(best, abs=1e-7)


def test_weighted_auc_by_hand():
    # perfect detector: 1; a random one (ROC on the diagonal): band [0, .4]: 0.4^2/2 + 0.4 * 0.6 = 0.32,
    # weight 2; band [.4, 1]: 0.6^2/2 = 0.18, weight 1; (0.64 + 0.18) / (0.8 + 0.6) = 0.82 / 1.4
    assert _metric(WeightedAUC, [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert _metric(WeightedAUC, [0.5] * 4, [0, 1, 0, 1]) == pytest.approx(0.82 / 1.4)
    # two covers, two stegos, scores stego 0.9 > cover 0.8 > stego 0.3 > cover 0.1:
    # ROC (0,0) -> (0,.5) -> (.5,.5) -> (.5,1) -> (1,1); TPR is 0.5 on FPR (0, .5), 1 on (.5, 1).
    # band [0,.4]: 0.4 all along = 0.4 -> x2 = 0.8; band [.4,1]: 0.1 * 0.5 + 0.6 * 0.5 = 0.35
    assert _metric(WeightedAUC, [0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]) == pytest.approx((0.8 + 0.35) / 1.4)
    # plain AUC as one band of weight 1
    assert _metric(WeightedAUC, [0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0], tpr_thresholds=(0, 1), weights=(1,)) == \
        pytest.approx(0.75)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_auc_agrees_with_dense_integration(seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 2, (500,), generator=g)
    preds = (target * (0.5 + seed) + torch.randn(500, generator=g)).round(decimals=2).double()
    fpr, tpr = (t.numpy() for t in roc_points(preds, target))
    # the curve sampled on a dense FPR grid (np.interp keeps the upper TPR at vertical jumps,
    # a set of measure zero), then each band's clipped area by the midpoint rule
    x = (np.arange(1_000_000) + 0.5) / 1_000_000
    y = np.interp(x, fpr, tpr)
    bands = [(0.0, 0.4, 2.0), (0.4, 1.0, 1.0)]
    dense = sum(w * np.clip(y - lo, 0, hi - lo).mean() for lo, hi, w in bands) / sum(w * (hi - lo) for lo, hi, w in bands)
    assert _metric(WeightedAUC, preds.tolist(), target.tolist()) == pytest.approx(dense, abs=2e-5)


def test_bad_input_is_a_clear_error():
    m = ProbabilityOfError()
    with pytest.raises(ValueError, match="target: expected binary labels"):
        m.update(torch.rand(4), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="preds, target: expected the same number of elements"):
        m.update(torch.rand(4), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="preds: expected finite scores"):
        m.update(torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="preds: expected a floating-point tensor"):
        m.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="compute.. before any update"):
        m.compute()
    m.update(torch.rand(3), torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match="target: the ROC curve needs both classes, got 0 cover"):
        m.compute()
    with pytest.raises(ValueError, match="tpr_thresholds"):
        WeightedAUC(tpr_thresholds=(0.0, 0.5))
    with pytest.raises(ValueError, match="weights: expected 2 non-negative weights"):
        WeightedAUC(weights=(1.0,))


def test_log_loss_matches_sklearn_over_batches():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    p, y = rng.uniform(0.01, 0.99, 50), rng.integers(0, 2, 50)
    m = BinaryLogLoss()
    for chunk in np.array_split(np.arange(50), 3):
        m.update(torch.tensor(p[chunk]), torch.tensor(y[chunk]))
    assert m.compute().item() == pytest.approx(log_loss(y, p), rel=1e-6)
    logits = np.log(p / (1 - p))
    m2 = BinaryLogLoss(from_logits=True)
    m2.update(torch.tensor(logits), torch.tensor(y))
    assert m2.compute().item() == pytest.approx(log_loss(y, p), rel=1e-6)


def test_log_loss_clips_confident_mistakes():
    m = BinaryLogLoss(eps=1e-15)
    m.update(torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64), torch.tensor([1, 1, 0]))
    # -log(1e-15) for the wrong certain answer, -log(1 - 1e-15) ~ 0 for the right one, log 2
    assert m.compute().item() == pytest.approx((-np.log(1e-15) + np.log(2)) / 3, rel=1e-6)
    with pytest.raises(ValueError, match="preds: expected probabilities in \\[0, 1\\]"):
        m.update(torch.tensor([1.5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="eps"):
        BinaryLogLoss(eps=0.0)
    with pytest.raises(ValueError, match="compute.. before any update"):
        BinaryLogLoss().compute()
