"""The template method's loss and step (SYNTHETIC example).

Loss (``train.loss: template_au``): ``L = Σ_j w_j · BCE(z_j, y_j) / #known`` over the known AU labels of the AU
batch, each AU weighted by the fold's class weights ``ctx.au_weight`` (``uses_class_weights``: the engine computes
them for this loss); the expression batch, if any, is ignored (an AU-only method).

Step (``train.step: template_au``): forward the AU batch only (a method whose step differs from the default
``joint`` step replaces just this function; the loop does autocast, backward, clipping, the optimiser, EMA).
"""

from __future__ import annotations

from typing import Callable

import torch

from aufer.training.losses import LossContext, masked_bce
from aufer.training.registry import register_loss, register_step
from aufer.training.steps import StepContext, forward_batch

__all__ = ["template_au_loss", "template_au_step"]


@register_loss("template_au", uses_class_weights=True)
def template_au_loss(out_au: dict | None, out_expr: dict | None, au_batch: dict | None, expr_batch: dict | None, *,
                     ctx: LossContext, weighted: bool = True) -> dict[str, torch.Tensor]:
    """Class-weighted BCE of the AU logits ``out_au["au"]`` ``(B, T, A)`` against ``au_batch["au"]`` (−1 unknown).

    Returns:
        ``{"loss", "loss_au"}`` (``loss`` with its graph; an exact 0 with a graph when the step has no AU batch).

    Raises:
        ValueError: no output at all.
    """
    if out_au is None:
        outs = [o["au"] for o in (out_expr,) if o is not None]
        if not outs:
            raise ValueError("template_au_loss needs the model's outputs on an AU batch")
        zero = outs[0].sum() * 0.0
        return {"loss": zero, "loss_au": zero.detach()}
    l_au = masked_bce(out_au["au"].float(), au_batch["au"], weight=ctx.au_weight if weighted else None)
    return {"loss": l_au, "loss_au": l_au.detach()}


@register_step("template_au")
def template_au_step(model: torch.nn.Module, au_batch: dict | None, expr_batch: dict | None, loss_fn: Callable,
                     ctx: StepContext) -> dict[str, torch.Tensor]:
    """Forward the AU batch (through the DDP wrapper, so that DDP sees the call) and apply the recipe's loss."""
    out_au = forward_batch(model, au_batch) if au_batch is not None else None
    out_expr = forward_batch(model, expr_batch) if out_au is None and expr_batch is not None else None
    return loss_fn(out_au, out_expr, au_batch, None, ctx=ctx.loss)
