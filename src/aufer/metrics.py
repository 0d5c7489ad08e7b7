"""Evaluation metrics of the field (methods.md §1.3, §1.6).

* AU detection: per-AU F1 of the positive class at threshold 0.5, TP/FP/FN summed over all frames, frames
  whose label is not 0/1 ignored; "mean F1" averages the AUs (MDHR ``utils/utils.py::calc_f1_score``).
* Expression recognition: UAR (unweighted average recall = mean per-class recall over the classes present in
  the ground truth) and WAR (weighted average recall = accuracy).
"""

from __future__ import annotations

import numpy as np

__all__ = ["au_f1", "au_counts", "confusion", "uar", "war"]


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
    c = au_counts(probs, labels, threshold).astype(np.float64)
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
