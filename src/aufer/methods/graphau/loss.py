"""ME-GraphAU's training losses (IJCAI 2022; official ``utils.py`` ``WeightedAsymmetricLoss``, ``train_stage1.py``,
``train_stage2.py`` and ``tool/*_deal_AU_relation.py`` of github.com/CVI-SZU/ME-GraphAU). aufer's own code.

* Stage 1: ``L_WA``, the weighted asymmetric loss on the similarity classifier's probabilities p ∈ [0, 1]
  (:func:`aufer.training.losses.weighted_asymmetric_loss`; weights = the training fold's normalised inverse AU
  occurrence rates, as the official ``*_calculate_AU_class_weights.py`` computes them).
* Stage 2: ``L = L_WA + λ · L_E`` with λ = ``--lam`` = 0.001 (official ``conf.py``): ``L_E`` is the cross-entropy of
  the 4-way edge logits of every ordered AU pair (j, k) against the pair's co-occurrence state ``2 · y_j + y_k``
  (0 neither, 1 only k, 2 only j, 3 both; :func:`edge_labels`, as the official relation lists store it).

Differences from the official code, and why: unknown labels (anything but 0/1) never count — an unknown AU drops out
of ``L_WA`` and every pair that involves it drops out of ``L_E`` (the official lists hold only 0/1, so with every
label known the values are the official ones); aufer computes in float32 (the official weights are float64).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from aufer.training.losses import LossContext, weighted_asymmetric_loss
from aufer.training.registry import register_loss

__all__ = ["edge_labels", "edge_loss", "graphau_loss"]


def edge_labels(labels: torch.Tensor) -> torch.Tensor:
    """``(N, A)`` AU labels (1 present, 0 absent, else unknown) → ``(N, A·A)`` int64 co-occurrence states
    ``2 · y_j + y_k`` for the pair (j, k) at index ``j · A + k``; −1 where either AU is unknown."""
    known = (labels == 0) | (labels == 1)
    y = labels.clamp(0, 1).long()
    rel = 2 * y[:, :, None] + y[:, None, :]
    ok = known[:, :, None] & known[:, None, :]
    return torch.where(ok, rel, torch.full_like(rel, -1)).flatten(1)


def edge_loss(edge_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``L_E``: cross-entropy of ``(N, A·A, 4)`` edge logits against :func:`edge_labels` of ``(N, A)`` labels, over
    the pairs whose two AUs are known; 0 (with a graph) when there are none."""
    target = edge_labels(labels).reshape(-1)
    logits = edge_logits.reshape(-1, edge_logits.shape[-1]).float()
    if not bool((target >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=-1)


@register_loss("graphau", uses_class_weights=True)
def graphau_loss(out_au: dict | None, out_expr: dict | None, au_batch: dict | None, expr_batch: dict | None, *,
                 ctx: LossContext, lam: float = 0.001, class_weights: bool = True,
                 weights: Sequence[float] | None = None, eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """The ME-GraphAU recipe loss (registered as ``train.loss: graphau``): ``L_WA`` (stage 1) plus ``lam · L_E``
    when the model gives edge logits (stage 2).

    Reads the model's ``"au_prob"`` ``(B, T, A)`` and, for stage 2, ``"edge"`` ``(B, T, A·A, 4)`` (or ``(B, A·A, 4)``
    for T = 1), and the AU batch's ``"au"`` ``(B, T, A)`` labels (−1 unknown) and ``"valid"`` ``(B, T)`` frames.
    Expression batches carry no AU label and add nothing.

    Args:
        ctx: the loss context; ``ctx.au_weight`` holds the fold's class weights.
        lam: λ of ``L_E`` (official 0.001).
        class_weights: weight ``L_WA`` by ``weights`` if given, else ``ctx.au_weight``.
        weights: explicit ``(A,)`` class weights (e.g. the official per-fold files).
        eps: the log clamp (official 1e-8).

    Returns:
        ``{"loss", "loss_wa", "loss_edge"}`` (``loss`` with its graph, the others detached).

    Raises:
        ValueError: no AU output with its batch.
    """
    if out_au is None or au_batch is None:
        raise ValueError("graphau_loss needs the AU output and its batch (ME-GraphAU is AU-only)")
    prob = out_au["au_prob"].flatten(0, 1)
    labels = au_batch["au"].flatten(0, 1)
    valid = au_batch["valid"].flatten(0, 1) if "valid" in au_batch else None
    w = None
    if class_weights:
        w = torch.as_tensor(weights, dtype=torch.float32) if weights is not None else ctx.au_weight
    l_wa = weighted_asymmetric_loss(prob, labels, w, eps=eps, valid=valid)
    loss, l_edge = l_wa, torch.zeros((), device=prob.device)
    if "edge" in out_au and lam:
        edges = out_au["edge"]
        edges = edges.reshape(-1, *edges.shape[-2:])
        masked = labels if valid is None else torch.where(valid.bool()[:, None], labels, torch.full_like(labels, -1))
        l_edge = edge_loss(edges, masked)
        loss = loss + lam * l_edge
    return {"loss": loss, "loss_wa": l_wa.detach(), "loss_edge": l_edge.detach()}
