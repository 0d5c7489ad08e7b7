"""Step functions: what one training step computes, chosen by name from the recipe (``train.step``).

A step function has the signature ``step_fn(model, au_batch, expr_batch, loss_fn, ctx) -> dict`` and returns
the loss to minimise under ``"loss"`` (with its graph) plus detached scalars to log. The loop
(:func:`aufer.engine.loop.train_one_epoch`) does everything around it — autocast, backward, accumulation,
clipping, the optimiser and scheduler steps, EMA — so that a method that needs a different step (MAL's
bilevel look-ahead, SSM's clip-level mixup) replaces only this function, registered with
:func:`aufer.training.registry.register_step`. No hook framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from aufer.datasets.mixup import clip_mixup
from aufer.models.contract import unwrap
from aufer.training.losses import LossContext, mixup_bce
from aufer.training.registry import register_step

__all__ = ["StepContext", "to_device", "forward_batch", "joint_step", "mixup_step"]


@dataclass
class StepContext:
    """What a step may read: the device, the loss context (epoch, loss state, class weights), the optimiser
    (a bilevel step reads its learning rate), the recipe's ``train.step_args`` and the step's own state."""

    device: torch.device
    loss: LossContext
    optimizer: torch.optim.Optimizer | None = None
    args: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)


_TENSOR_KEYS = ("crops", "landmarks", "au", "expr", "valid")


def to_device(batch: dict | None, device: torch.device) -> dict | None:
    """The batch with its model inputs and labels on ``device`` (non-blocking copies; uint8 crops move as
    uint8, 4× less than float)."""
    if batch is None:
        return None
    return {k: (v.to(device, non_blocking=True) if k in _TENSOR_KEYS and isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def forward_batch(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The model's outputs on a batch already on the device: ``model(model.preprocess(crops), landmarks)``,
    landmarks passed only to a model that uses them (:mod:`aufer.models.contract`)."""
    core = unwrap(model)
    x = core.preprocess(batch["crops"])
    lm = batch["landmarks"] if getattr(core, "uses_landmarks", False) else None
    return model(x, lm)


@register_step("joint")
def joint_step(model: torch.nn.Module, au_batch: dict | None, expr_batch: dict | None, loss_fn: Callable,
               ctx: StepContext) -> dict[str, torch.Tensor]:
    """The default step: forward the AU batch and the expression batch (either may be None for single-task
    recipes) and apply the recipe's loss to both outputs."""
    out_au = forward_batch(model, au_batch) if au_batch is not None else None
    out_expr = forward_batch(model, expr_batch) if expr_batch is not None else None
    return loss_fn(out_au, out_expr, au_batch, expr_batch, ctx=ctx.loss)


@register_step("mixup")
def mixup_step(model: torch.nn.Module, au_batch: dict | None, expr_batch: dict | None, loss_fn: Callable,
               ctx: StepContext) -> dict[str, torch.Tensor]:
    """Clip-level mixup of the AU clips (SSM, methods.md §3.2; :func:`aufer.datasets.mixup.clip_mixup`): the
    preprocessed AU clips are mixed pairwise (one λ ~ Beta(α, α) per clip, ``train.step_args.alpha``, default 0.4)
    and their AU term is :func:`aufer.training.losses.mixup_bce` (weight ``step_args.au_weight``, default 1); the
    expression batch goes through the recipe's loss unchanged. A model that uses landmarks gets each clip's own
    (un-mixed) landmarks: a mixed face has no true mesh (SSM's model uses none). The mixing draws come from a generator
    seeded by (``step_args.seed``, epoch, step), kept in the loss state, so a resumed run draws the same."""
    logs: dict[str, torch.Tensor] = {}
    total = None
    if au_batch is not None:
        core = unwrap(model)
        n = ctx.loss.state.get("mixup_draws", 0)
        ctx.loss.state["mixup_draws"] = n + 1
        g = torch.Generator().manual_seed(hash((int(ctx.args.get("seed", 0)), ctx.loss.epoch, n)) & (2 ** 62 - 1))
        x, y_a, y_b, lam = clip_mixup(core.preprocess(au_batch["crops"]), au_batch["au"],
                                      float(ctx.args.get("alpha", 0.4)), g)
        lm = au_batch["landmarks"] if getattr(core, "uses_landmarks", False) else None
        out = model(x, lm)
        l_mix = mixup_bce(out["au"].float(), y_a, y_b, lam,
                          ctx.loss.au_weight if ctx.args.get("class_weights") else None)
        total = float(ctx.args.get("au_weight", 1.0)) * l_mix
        logs["loss_au_mixup"] = l_mix.detach()
    if expr_batch is not None:
        res = loss_fn(None, forward_batch(model, expr_batch), None, expr_batch, ctx=ctx.loss)
        total = res["loss"] if total is None else total + res["loss"]
        logs.update({k: v for k, v in res.items() if k != "loss"})
    return {"loss": total, **logs}
