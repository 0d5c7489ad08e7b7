"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018) of the joint model's AU and expression losses, a
multi-task baseline of the MAL comparison (issue 14, point 5); the package :mod:`aufer.methods.mtl` says what the
other baselines are.

* **Single-task AU / expression**: the existing ``joint`` loss (:func:`aufer.training.losses.joint_loss`) on a recipe with
  one task's data (``configs/baseline/*_au-only_*``, ``*_expr-only_*``): each term averages over the labels that
  exist, so the other head simply gets no gradient. Nothing to add.
* **Naive joint (hard parameter sharing)**: the existing ``joint`` loss with both tasks' data,
  ``au_weight · L_AU + expr_weight · L_expr`` on one shared encoder (``configs/baseline/*_naive-joint_*``).
* **Uncertainty weighting** (Kendall, Gal & Cipolla, CVPR 2018): :func:`uncertainty_loss` here.

Uncertainty weighting learns one log variance s_t = log σ_t² per task. The paper's objectives, with s = log σ²
(equation numbers [MEM], recalled, not checked against the paper text): Eq. (7), two Gaussian (regression) tasks,
``1/(2σ²)·L + log σ = ½·exp(−s)·L + ½·s`` per task; Eq. (10), regression + softmax classification, where the
classification term is ``1/σ²·L + log σ = exp(−s)·L + ½·s`` (from a temperature-scaled softmax and an
approximation). Implementations commonly use ``exp(−s)·L + s`` for every task, the form chosen here by default
(``form: common``); ``form: regression`` (the ½ variant, Eq. 7) and ``form: classification`` (Eq. 10's softmax term,
``exp(−s)·L + ½·s``) are the alternatives. For each task the optimum is s* = log L (common, regression) or
log 2L (classification): the weight exp(−s) of a task ends up near 1/L.

Where the s_t live (they must be parameters the optimiser sees, yet not part of the model, whose checkpoints are
loaded strictly): :func:`aufer.training.loss_params.attach_loss_params` builds them as a small module
(:class:`UncertaintyWeights`) from the loss's ``make_loss_params`` and adds them to the run's optimiser as one more parameter group ``"loss_params"``
(learning rate ``loss_args.lr``, default the optimiser's base lr; weight decay ``loss_args.weight_decay``, default
0), before the scheduler is built so that the schedule covers them. The loss reads them from
``ctx.loss_params``. They survive a resume when the runner saves ``loss_params.state_dict()`` with the training
state and loads it back (their optimiser moments are in the optimiser's state already, the group being part of
the optimiser); the model's checkpoints stay those of the plain joint model. Under DDP the s_t are not DDP
parameters: the loss gives them the gradient of the process-averaged task losses (an all-reduce of two numbers), so
every process makes the same update.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from aufer.training.losses import LossContext, masked_bce, masked_ce
from aufer.training.registry import register_loss

__all__ = ["UncertaintyWeights", "uncertainty_terms", "uncertainty_loss"]

FORMS = ("common", "regression", "classification")


class UncertaintyWeights(nn.Module):
    """The learnable log variances ``log_vars = (s_au, s_expr)`` of uncertainty weighting."""

    def __init__(self, init: Sequence[float] = (0.0, 0.0)):
        super().__init__()
        if len(init) != 2:
            raise ValueError(f"loss_args.init: two initial log variances (AU, expression), not {list(init)}")
        self.log_vars = nn.Parameter(torch.tensor([float(v) for v in init], dtype=torch.float32))


def uncertainty_terms(losses: torch.Tensor, s: torch.Tensor, form: str = "common") -> torch.Tensor:
    """Per-task weighted terms ``(K,)`` for task losses ``losses`` ``(K,)`` and log variances ``s`` ``(K,)``:
    common ``exp(−s)·L + s``; regression ``½·exp(−s)·L + ½·s``; classification ``exp(−s)·L + ½·s``."""
    if form == "common":
        return torch.exp(-s) * losses + s
    if form == "regression":
        return 0.5 * torch.exp(-s) * losses + 0.5 * s
    if form == "classification":
        return torch.exp(-s) * losses + 0.5 * s
    raise ValueError(f"loss_args.form must be one of {', '.join(FORMS)}, not {form!r}")


def _global_mean(values: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DDP: the task losses averaged over the processes that have them (detached), and whether any has them."""
    buf = torch.cat([values.detach() * present, present])
    torch.distributed.all_reduce(buf)
    k = len(values)
    return buf[:k] / buf[k:].clamp(min=1), (buf[k:] > 0).to(values.dtype)


def _make_log_vars(init: Sequence[float] = (0.0, 0.0), **_) -> UncertaintyWeights:
    """The loss's learnable parameters for :func:`aufer.training.loss_params.attach_loss_params`."""
    return UncertaintyWeights(init)


@register_loss("uncertainty", loss_params=_make_log_vars)
def uncertainty_loss(out_au: dict | None, out_expr: dict | None, au_batch: dict | None, expr_batch: dict | None, *,
                     ctx: LossContext, form: str = "common", init: Sequence[float] = (0.0, 0.0), lr: float | None = None,
                     weight_decay: float = 0.0, label_smoothing: float = 0.0,
                     class_weights: bool = False) -> dict[str, torch.Tensor]:
    """Uncertainty weighting (Kendall, Gal & Cipolla 2018) of the joint model's two losses:
    ``Σ_t term_t(L_t, s_t)`` (:func:`uncertainty_terms`; default ``exp(−s_au)·L_au + s_au + exp(−s_e)·L_e + s_e``).

    L_au and L_e are the naive joint loss's terms (:func:`aufer.training.losses.joint_loss`: over the labels that exist in
    both batches). A task without a known label in the step is absent: neither its loss nor its s_t term is added
    (otherwise s_t alone would be pushed to −∞). ``init``, ``lr``, ``weight_decay`` configure the s_t
    (:func:`aufer.training.loss_params.attach_loss_params`); ``class_weights`` weighs the AU term by ``ctx.au_weight``.

    Returns:
        ``{"loss", "loss_au", "loss_expr", "uw_s_au", "uw_s_expr", "uw_weight_au", "uw_weight_expr"}``.

    Raises:
        RuntimeError: the run has no loss parameters (``ctx.loss_params`` is None: the engine did not call
            :func:`aufer.training.loss_params.attach_loss_params`).
    """
    params = getattr(ctx, "loss_params", None)
    if params is None:
        raise RuntimeError("train.loss uncertainty needs its learnable log variances: the engine must build them with "
                           "aufer.training.loss_params.attach_loss_params and pass them as ctx.loss_params")
    s = params.log_vars
    outs = [(o, b) for o, b in ((out_au, au_batch), (out_expr, expr_batch)) if o is not None]
    au_logits = torch.cat([o["au"].flatten(0, 1) for o, _ in outs])
    au_labels = torch.cat([b["au"].flatten(0, 1) for _, b in outs])
    expr_logits = torch.cat([o["expr"] for o, _ in outs])
    expr_labels = torch.cat([b["expr"] for _, b in outs])
    l_au = masked_bce(au_logits.float(), au_labels, weight=ctx.au_weight if class_weights else None)
    l_e = masked_ce(expr_logits.float(), expr_labels, label_smoothing=label_smoothing)
    losses = torch.stack([l_au, l_e])
    present = torch.stack([((au_labels == 0) | (au_labels == 1)).any(), (expr_labels >= 0).any()]).to(losses.dtype)
    s = s.to(losses.dtype)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # θ gets exp(−s)·∇L_t as usual; s gets the gradient at the process-averaged task losses L̄_t of the tasks any
        # process has (the same on every process, so the s_t stay equal); the value stays Σ term_t(L_t, s_t)
        bar, anywhere = _global_mean(losses, present)
        sd, ld = s.detach(), losses.detach()
        s_part = uncertainty_terms(bar, s, form) * anywhere
        total = (((uncertainty_terms(losses, sd, form) - uncertainty_terms(ld, sd, form)) * present).sum()
                 + (s_part - s_part.detach()).sum() + (uncertainty_terms(ld, sd, form) * present).sum())
    else:
        total = (uncertainty_terms(losses, s, form) * present).sum()
    w = torch.exp(-s.detach())
    return {"loss": total, "loss_au": l_au.detach(), "loss_expr": l_e.detach(), "uw_s_au": s[0].detach(),
            "uw_s_expr": s[1].detach(), "uw_weight_au": w[0], "uw_weight_expr": w[1]}
