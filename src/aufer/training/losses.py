"""Losses with label masks (a missing label, −1, never contributes to a loss), the loss context, and the naive joint
loss (``train.loss: joint``) that every method's recipe can fall back to.

Heterogeneous joint learning mixes AU-labelled clips (expression −1) and expression-labelled clips (AU −1):
each task's loss averages over the labels that exist, and is an exact zero (with a graph) when a batch
holds none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from aufer.training.registry import register_loss

__all__ = ["masked_bce", "masked_ce", "mixup_bce", "weighted_asymmetric_loss", "LossContext", "joint_loss"]


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


def mixup_bce(logits: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor, lam: torch.Tensor,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of mixed clips (SSM's L2, methods.md §3.2): ``λ · BCE(logits, y_a) + (1 − λ) · BCE(logits, y_b)``,
    each term over its own known (0/1) labels.

    Args:
        logits: ``(B, T, A)``; labels_a, labels_b: ``(B, T, A)`` (−1 unknown); lam: ``(B,)`` weight of ``y_a``.
        weight: optional ``(A,)`` per-AU weight.

    Returns:
        Scalar: the λ-weighted sum of element losses over the λ-weighted count of known labels (0 if none).
    """
    lam = lam.to(logits.dtype).view(-1, *([1] * (logits.ndim - 1)))
    num, den = logits.sum() * 0.0, logits.new_zeros(())
    for y, w in ((labels_a, lam), (labels_b, 1 - lam)):
        known = ((y == 0) | (y == 1)).to(logits.dtype)
        el = F.binary_cross_entropy_with_logits(logits, y.clamp(0, 1).to(logits.dtype), reduction="none")
        if weight is not None:
            el = el * weight
        num = num + (w * known * el).sum()
        den = den + (w * known).sum()
    return num / den if bool(den > 0) else num


# ------------------------------------------------------------------------------------------- recipe losses
@dataclass
class LossContext:
    """What a recipe loss may read besides the outputs and batches.

    Attributes:
        epoch: 0-based epoch (SSM's ramp a(e) needs it).
        state: per-run mutable state a loss may keep (e.g. SSM's loss EMAs); the loop clears it at every epoch
            start.
        au_weight: optional ``(A,)`` per-AU class weights of the training fold (methods.md §1.1), on the device.
        loss_params: the loss's own learnable parameters (:func:`aufer.training.loss_params.attach_loss_params`),
            or None.
    """

    epoch: int = 0
    state: dict = field(default_factory=dict)
    au_weight: torch.Tensor | None = None
    loss_params: torch.nn.Module | None = None


def _known(labels: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    known = (labels == 0) | (labels == 1)
    if valid is not None:
        known = known & valid.reshape(*valid.shape, *([1] * (labels.ndim - valid.ndim))).bool()
    return known


def weighted_asymmetric_loss(prob: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
                             eps: float = 1e-8, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The weighted asymmetric loss of ME-GraphAU (its ``utils.py`` ``WeightedAsymmetricLoss``), which MDHR adopts as
    ``L_AU`` (Eq. 10), over the known labels.

    Args:
        prob: ``(..., A)`` probabilities p ∈ [0, 1] (not logits).
        labels: ``(..., A)`` 1 present, 0 absent, anything else unknown.
        weight: optional ``(A,)`` per-AU class weights.
        eps: clamp of p and 1 − p inside the logs.
        valid: optional frame mask broadcastable from the left (e.g. ``(B, T)``); False frames never count.

    Returns:
        Scalar: mean of ``−w [y log p + p̄ (1 − y) log(1 − p)]`` over the known labels; 0 (with a graph) if none.
    """
    known = _known(labels, valid)
    p = prob.float()
    if not bool(known.any()):
        return p.sum() * 0.0
    y = labels.clamp(0, 1).to(p.dtype)
    el = y * torch.log(p.clamp(min=eps)) + p.detach() * (1 - y) * torch.log((1 - p).clamp(min=eps))
    if weight is not None:
        el = el * weight.to(p)
    return -el[known].mean()


@register_loss("joint")
def joint_loss(out_au: dict | None, out_expr: dict | None, au_batch: dict | None, expr_batch: dict | None, *,
               ctx: LossContext, au_weight: float = 1.0, expr_weight: float = 1.0, label_smoothing: float = 0.0,
               class_weights: bool = False) -> dict[str, torch.Tensor]:
    """The naive joint (hard parameter sharing) loss of heterogeneous AU + expression training:
    ``au_weight · BCE(AU labels) + expr_weight · CE(expression labels)``.

    Each term averages over the labels that exist in *both* batches of the step (an AU clip's expression is −1,
    an expression clip's AUs are −1), so the step may have only one of the two batches.

    Args:
        out_au, out_expr: model outputs (``"au"`` ``(B, T, A)``, ``"expr"`` ``(B, E)`` logits) on the AU batch and on
            the expression batch; either may be None. A model whose ``"expr"`` is not trained by SGD (an
            expression probe with an auxiliary head, :class:`aufer.models.joint.JointNet`) gives the logits to
            train as ``"expr_train"``, which are then used instead.
        au_batch, expr_batch: the batches (``"au"`` ``(B, T, A)`` int, ``"expr"`` ``(B,)`` int; −1 unknown).
        class_weights: weight each AU by ``ctx.au_weight`` (the fold's class weights).

    Returns:
        ``{"loss", "loss_au", "loss_expr"}`` scalars (``loss`` carries the graph).
    """
    outs = [(o, b) for o, b in ((out_au, au_batch), (out_expr, expr_batch)) if o is not None]
    au_logits = torch.cat([o["au"].flatten(0, 1) for o, _ in outs])
    au_labels = torch.cat([b["au"].flatten(0, 1) for _, b in outs])
    expr_logits = torch.cat([o.get("expr_train", o["expr"]) for o, _ in outs])
    expr_labels = torch.cat([b["expr"] for _, b in outs])
    w = ctx.au_weight if class_weights else None
    l_au = masked_bce(au_logits.float(), au_labels, weight=w)
    l_expr = masked_ce(expr_logits.float(), expr_labels, label_smoothing=label_smoothing)
    return {"loss": au_weight * l_au + expr_weight * l_expr, "loss_au": l_au.detach(), "loss_expr": l_expr.detach()}
