"""MDHR's training loss (methods.md §6.3 and §9.2; paper Eq. 10-12; official ``utils/utils.py``
``WeightedAsymmetricLoss`` and ``train.py`` of github.com/CVI-SZU/MDHR @ 3497bed). aufer's own implementation.

``L = L_AU + λ · L_sub`` with λ = 0.01:

* ``L_AU`` -- weighted asymmetric loss on the similarity classifier's probabilities p ∈ [0, 1] (the model's
  ``"au_prob"``): ``−w_n [y log p + p̄ (1 − y) log(1 − p)]`` with both logs clamped at ``eps`` = 1e-8 and p̄ = p
  without gradient (negatives are down-weighted by their own, detached, probability), averaged over the known
  labels. w_n are the training fold's per-AU class weights (:func:`mdhr_class_weights`).
* ``L_sub`` -- cross-entropy of each region's AU-combination logits (the model's ``"sub"``) against the region's
  code, the binary number of its AUs' labels, most significant bit first in the listed AU order
  (:func:`region_labels`), averaged over the regions.

Unknown labels (anything but 0/1, e.g. −1 on padded frames or 9 in BP4D) never count: an AU label that is unknown
drops out of ``L_AU``, and a frame with any unknown AU of a region drops out of that region's ``L_sub``.

Differences from the official code, and why:

* The official loss has no mask (its training lists hold only 0/1; its validation loss counts padded frames with
  label −1, and padded frames repeat the last real sub-label, methods.md §9.2.4). aufer averages over known
  labels only; with every label known it is the official value (mean over frames × AUs, mean of the region CEs).
* A region without any known frame in the batch is left out of the average over regions (the official code always
  has all of them).
* The official class weights are float64 (``np.loadtxt``), promoting the loss to float64; aufer computes in
  float32.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from aufer import protocols
from aufer.training.losses import LossContext, weighted_asymmetric_loss
from aufer.training.registry import register_loss

__all__ = ["weighted_asymmetric_loss", "region_labels", "sub_loss", "mdhr_class_weights", "mdhr_loss"]


def region_labels(labels: torch.Tensor, groups: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Region AU-combination codes from per-frame AU labels.

    Args:
        labels: ``(..., A)`` 1 / 0 / unknown.
        groups: each region's AU column indices in bit order (the model's ``"sub_groups"``), e.g. BP4D's
            ``((0, 1, 2, 4), (3,), (6, 7, 8), (5, 9, 10, 11))``.

    Returns:
        ``codes`` ``(..., R)`` int64, ``Σ_i y[g_i] · 2^(k−1−i)`` (the first AU is the most significant bit: AU1 +
        AU2 in BP4D's up region AU1 AU2 AU4 AU7 is 0b1100 = 12), and ``known`` ``(..., R)`` bool, False where any
        of the region's AU labels is unknown (the code there is meaningless).
    """
    codes, known = [], []
    for cols in groups:
        y = labels[..., list(cols)]
        k = len(cols)
        w = 2 ** torch.arange(k - 1, -1, -1, device=labels.device)
        codes.append((y.clamp(0, 1).long() * w).sum(-1))
        known.append(((y == 0) | (y == 1)).all(-1))
    return torch.stack(codes, -1), torch.stack(known, -1)


def sub_loss(sub_logits: Sequence[torch.Tensor], labels: torch.Tensor, groups: Sequence[Sequence[int]],
             valid: torch.Tensor | None = None) -> torch.Tensor:
    """MDHR's ``L_sub``: for each region the cross-entropy of its logits ``(..., 2^k_r)`` against
    :func:`region_labels` over the frames where the code is known, averaged over the regions that have such
    frames (the official code averages its 4 BP4D regions). 0 (with a graph) if there is none."""
    codes, known = region_labels(labels, groups)
    if valid is not None:
        known = known & valid.reshape(*valid.shape, *([1] * (known.ndim - valid.ndim))).bool()
    terms = []
    for r, logits in enumerate(sub_logits):
        m = known[..., r]
        if bool(m.any()):
            terms.append(F.cross_entropy(logits.float()[m], codes[..., r][m]))
    if not terms:
        return sum(s.float().sum() for s in sub_logits) * 0.0
    return torch.stack(terms).mean()


def mdhr_class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-AU class weights of a training fold as the official code uses them (its
    ``<dataset>_train_weight_fold<k>.txt``, computed by ME-GraphAU's ``tool/BP4D_calculate_AU_class_weights.py``):
    ``w_j = (1/r_j) / Σ_k (1/r_k) · A`` with r_j the positive rate of AU j among the training frames.

    ``labels`` ``(N, A)``; labels other than 0/1 are ignored (:func:`aufer.protocols.au_class_weights`; the
    official lists hold only 0/1, where this is their formula: it reproduces the shipped BP4D and DISFA fold-1
    files to their 6 printed decimals).
    """
    return protocols.au_class_weights(np.asarray(labels))


@register_loss("mdhr", uses_class_weights=True)
def mdhr_loss(out_au: dict | None, out_expr: dict | None, au_batch: dict | None, expr_batch: dict | None, *,
              ctx: LossContext, sub_weight: float = 0.01, class_weights: bool = True,
              weights: Sequence[float] | None = None, eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """The MDHR recipe loss ``L_AU + sub_weight · L_sub`` (registered as ``train.loss: mdhr``).

    Reads the model outputs ``"au_prob"`` ``(B, T, A)``, ``"sub"`` (R tensors ``(B, T, 2^k_r)``) and
    ``"sub_groups"`` (:class:`aufer.methods.mdhr.model.MDHR`) and the batches' ``"au"`` ``(B, T, A)`` labels (−1 unknown)
    and ``"valid"`` ``(B, T)`` frame mask. Either batch may be None (an AU-only recipe passes None for the
    expression batch; expression clips carry no AU label and add nothing).

    Args:
        ctx: the loss context; ``ctx.au_weight`` holds the fold's class weights (this loss sets
            ``uses_class_weights``, so the engine always computes them).
        sub_weight: λ (official 0.01).
        class_weights: weight ``L_AU`` by the class weights (``weights`` if given, else ``ctx.au_weight``; without
            either the AUs are unweighted).
        weights: explicit ``(A,)`` class weights, e.g. the official per-fold files' values.
        eps: the log clamp (official 1e-8).

    Returns:
        ``{"loss", "loss_au", "loss_sub"}`` (``loss`` with its graph, the others detached).
    """
    pairs = [(o, b) for o, b in ((out_au, au_batch), (out_expr, expr_batch)) if o is not None and b is not None]
    if not pairs:
        raise ValueError("mdhr_loss needs at least one (output, batch) pair")
    prob = torch.cat([o["au_prob"].flatten(0, 1) for o, _ in pairs])
    labels = torch.cat([b["au"].flatten(0, 1) for _, b in pairs])
    valid = None
    if all("valid" in b for _, b in pairs):
        valid = torch.cat([b["valid"].flatten(0, 1) for _, b in pairs])
    has_sub = all("sub" in o for o, _ in pairs)  # MDHR(aux_branch=False) has no "sub" outputs: no L_sub
    w = None
    if class_weights:
        if weights is not None:
            w = torch.as_tensor(list(weights), dtype=torch.float32, device=prob.device)
        elif ctx.au_weight is not None:
            w = ctx.au_weight
    l_au = weighted_asymmetric_loss(prob, labels, w, eps=eps, valid=valid)
    if not has_sub:
        return {"loss": l_au, "loss_au": l_au.detach(), "loss_sub": torch.zeros((), device=prob.device)}
    groups = pairs[0][0]["sub_groups"]
    subs = [torch.cat([o["sub"][r].flatten(0, 1) for o, _ in pairs]) for r in range(len(pairs[0][0]["sub"]))]
    l_sub = sub_loss(subs, labels, groups, valid=valid)
    return {"loss": l_au + sub_weight * l_sub, "loss_au": l_au.detach(), "loss_sub": l_sub.detach()}
