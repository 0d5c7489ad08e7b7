"""Losses with label masks: a missing label (−1) never contributes to a loss.

Heterogeneous joint learning mixes AU-labelled clips (expression −1) and expression-labelled clips (AU −1):
each task's loss averages over the labels that exist, and is an exact zero (with a graph) when a batch
holds none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["masked_bce", "masked_ce"]


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None = None,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy over the known AU labels.

    Args:
        logits: ``(..., A)`` AU logits.
        labels: ``(..., A)`` with 1 present, 0 absent, anything else (−1, 9) unknown.
        pos_weight: optional ``(A,)`` weight of positive examples (as ``BCEWithLogitsLoss``).
        weight: optional ``(A,)`` per-AU weight (e.g. class weights of methods.md §1.1).

    Returns:
        Scalar mean over known labels (0 if there is none).
    """
    known = (labels == 0) | (labels == 1)
    if not bool(known.any()):
        return logits.sum() * 0.0
    target = labels.clamp(0, 1).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    if weight is not None:
        loss = loss * weight
    return loss[known].mean()


def masked_ce(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
              label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the clips with a known expression label.

    Args:
        logits: ``(B, E)``.
        labels: ``(B,)`` class index, −1 unknown.
        weight: optional ``(E,)`` class weights.

    Returns:
        Scalar mean over known labels (0 if there is none).
    """
    known = labels >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], labels[known], weight=weight, label_smoothing=label_smoothing)
