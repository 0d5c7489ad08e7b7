import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from aufer import metrics
from aufer.training.losses import masked_bce, masked_ce


def test_au_f1_matches_sklearn_and_ignores_unknown(rng):
    probs = rng.random((500, 4))
    labels = (rng.random((500, 4)) < 0.3).astype(int)
    labels[rng.random((500, 4)) < 0.1] = -1  # unknown
    labels[:50, 2] = 9  # BP4D's unknown code
    ours = metrics.au_f1(probs, labels)
    for j in range(4):
        known = (labels[:, j] == 0) | (labels[:, j] == 1)
        ref = f1_score(labels[known, j], probs[known, j] >= 0.5)
        assert ours[j] == pytest.approx(ref)


def test_au_f1_accepts_clips_and_flags_undefined():
    probs = np.zeros((2, 3, 2))
    labels = np.zeros((2, 3, 2), int)
    labels[0, 0, 0] = 1
    f1 = metrics.au_f1(probs, labels)
    assert f1[0] == 0.0 and np.isnan(f1[1])


def test_uar_war_match_sklearn(rng):
    true = rng.integers(0, 7, 300)
    pred = np.where(rng.random(300) < 0.6, true, rng.integers(0, 7, 300))
    assert metrics.uar(pred, true, 7) == pytest.approx(balanced_accuracy_score(true, pred))
    assert metrics.war(pred, true) == pytest.approx(accuracy_score(true, pred))
    assert (metrics.confusion(pred, true, 7) == confusion_matrix(true, pred, labels=range(7))).all()


def test_uar_ignores_unlabelled_and_absent_classes():
    true = np.array([0, 0, 1, -1, -1])
    pred = np.array([0, 1, 1, 5, 5])
    assert metrics.uar(pred, true, 7) == pytest.approx((0.5 + 1.0) / 2)
    assert metrics.war(pred, true) == pytest.approx(2 / 3)


def test_masked_bce_equals_bce_on_known_labels():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 5, requires_grad=True)
    labels = torch.randint(0, 2, (4, 3, 5))
    labels[0] = -1
    labels[1, :, 2] = 9
    known = (labels == 0) | (labels == 1)
    ref = F.binary_cross_entropy_with_logits(logits[known], labels[known].float())
    assert masked_bce(logits, labels).item() == pytest.approx(ref.item(), rel=1e-6)
    masked_bce(logits, labels).backward()
    assert (logits.grad[0] == 0).all() and (logits.grad[1, :, 2] == 0).all()


def test_missing_labels_never_contribute():
    logits = torch.randn(3, 7, requires_grad=True)
    loss = masked_ce(logits, torch.tensor([-1, -1, -1]))
    assert loss.item() == 0.0
    loss.backward()
    assert (logits.grad == 0).all()
    assert masked_bce(torch.randn(2, 1, 4, requires_grad=True), torch.full((2, 1, 4), -1)).item() == 0.0
    l2 = masked_ce(logits, torch.tensor([-1, 3, -1]))
    assert l2.item() == pytest.approx(F.cross_entropy(logits[1:2], torch.tensor([3])).item())
