"""Evaluation metrics of the field (methods.md §1.3, §1.6).

* AU detection: per-AU F1 of the positive class at threshold 0.5, TP/FP/FN summed over all frames, frames
  whose label is not 0/1 ignored; "mean F1" averages the AUs (MDHR ``utils/utils.py::calc_f1_score``).
* Expression recognition: UAR (unweighted average recall = mean per-class recall over the classes present in
  the ground truth) and WAR (weighted average recall = accuracy).
* AUC per AU (SSM reports it): the area under the ROC curve of the frame probabilities, NaN for an AU whose
  known labels are all one class.

**Mean-F1 policy.** F1 is undefined for an AU with no positive label and no positive prediction in the test
frames (2TP + FP + FN = 0). ``policy="zero"`` (the default, as scikit-learn's ``zero_division=0`` in the
reference evaluators) counts it as 0 in the mean; ``policy="skip"`` leaves it out of the mean. Every
evaluation output records the policy it used.

All of F1, UAR and WAR come from summable counts (TP/FP/FN per AU, the confusion matrix), so that shards of a
distributed evaluation are added before the ratios are taken.
"""

from __future__ import annotations

import numpy as np

__all__ = ["au_f1", "au_counts", "confusion", "uar", "war", "f1_from_counts", "mean_f1", "au_auc",
           "uar_from_confusion", "war_from_confusion", "F1_POLICIES"]

F1_POLICIES = ("zero", "skip")


def au_counts(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """TP, FP, FN per AU, shape ``(A, 3)``, from probabilities and labels of shape ``(..., A)``; labels other
    than 0/1 are ignored."""
    p = np.asarray(probs).reshape(-1, np.shape(probs)[-1]) >= threshold
    y = np.asarray(labels).reshape(-1, np.shape(labels)[-1])
    known = (y == 0) | (y == 1)
    pos = y == 1
    tp = (p & pos & known).sum(0)
    fp = (p & ~pos & known).sum(0)
    fn = (~p & pos & known).sum(0)
    return np.stack([tp, fp, fn], 1)


def au_f1(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-AU F1 ``(A,)`` in [0, 1] = 2TP / (2TP + FP + FN); NaN for an AU with no positive label and no
    positive prediction (F1 undefined)."""
    return f1_from_counts(au_counts(probs, labels, threshold))


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-AU F1 ``(A,)`` from TP/FP/FN counts ``(A, 3)`` (e.g. summed over shards); NaN where undefined."""
    c = np.asarray(counts, np.float64)
    den = 2 * c[:, 0] + c[:, 1] + c[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * c[:, 0] / den, np.nan)


def confusion(pred: np.ndarray, true: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix ``(E, E)``: rows = true class, columns = predicted; labels < 0 ignored."""
    pred, true = np.asarray(pred), np.asarray(true)
    keep = true >= 0
    return np.bincount(true[keep] * n_classes + pred[keep], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def uar(pred: np.ndarray, true: np.ndarray, n_classes: int) -> float:
    """Unweighted average recall over the classes present in ``true`` (labels < 0 ignored)."""
    cm = confusion(pred, true, n_classes)
    support = cm.sum(1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else float("nan")


def war(pred: np.ndarray, true: np.ndarray) -> float:
    """Weighted average recall = accuracy over clips with a label (labels < 0 ignored)."""
    pred, true = np.asarray(pred), np.asarray(true)
    keep = true >= 0
    return float((pred[keep] == true[keep]).mean()) if keep.any() else float("nan")


def mean_f1(f1: np.ndarray, policy: str = "zero") -> float:
    """Mean over AUs of per-AU F1 with NaN (undefined) entries counted as 0 (``"zero"``) or left out
    (``"skip"``); see the module docstring.

    Raises:
        ValueError: an unknown policy.
    """
    f1 = np.asarray(f1, np.float64)
    if policy == "zero":
        return float(np.nan_to_num(f1, nan=0.0).mean()) if len(f1) else float("nan")
    if policy == "skip":
        return float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")
    raise ValueError(f"mean-F1 policy must be one of {F1_POLICIES}, not {policy!r}")


def au_auc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-AU ROC AUC ``(A,)`` from probabilities and 0/1 labels of shape ``(..., A)`` (other labels ignored),
    by the rank-sum (Mann–Whitney) formula with ties given half credit; NaN for an AU whose known labels are
    all one class."""
    from scipy.stats import rankdata  # noqa: PLC0415

    p = np.asarray(probs, np.float64).reshape(-1, np.shape(probs)[-1])
    y = np.asarray(labels).reshape(-1, np.shape(labels)[-1])
    out = np.full(p.shape[1], np.nan)
    for j in range(p.shape[1]):
        known = (y[:, j] == 0) | (y[:, j] == 1)
        pos = y[known, j] == 1
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos and n_neg:
            ranks = rankdata(p[known, j])
            out[j] = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def uar_from_confusion(cm: np.ndarray) -> float:
    """UAR from a confusion matrix (rows true): mean recall over the classes with support."""
    cm = np.asarray(cm, np.float64)
    support = cm.sum(1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else float("nan")


def war_from_confusion(cm: np.ndarray) -> float:
    """WAR (accuracy) from a confusion matrix."""
    cm = np.asarray(cm, np.float64)
    return float(np.trace(cm) / cm.sum()) if cm.sum() > 0 else float("nan")
