"""Step functions: what one training step computes, chosen by name from the recipe (``train.step``).

A step function has the signature ``step_fn(model, au_batch, expr_batch, loss_fn, ctx) -> dict`` and returns
the loss to minimise under ``"loss"`` (with its graph) plus detached scalars to log. The loop
(:func:`aufer.engine.loop.train_one_epoch`) does everything around it — autocast, backward, accumulation,
clipping, the optimiser and scheduler steps, EMA — so that a method that needs a different step (MAL's
bilevel look-ahead, SSM's clip-level mixup) replaces only this function. No hook framework: a plain dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from aufer.losses import LossContext

__all__ = ["StepContext", "to_device", "forward_batch", "joint_step", "STEPS"]


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
    core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    x = core.preprocess(batch["crops"])
    lm = batch["landmarks"] if getattr(core, "uses_landmarks", False) else None
    return model(x, lm)


def joint_step(model: torch.nn.Module, au_batch: dict | None, expr_batch: dict | None, loss_fn: Callable,
               ctx: StepContext) -> dict[str, torch.Tensor]:
    """The default step: forward the AU batch and the expression batch (either may be None for single-task
    recipes) and apply the recipe's loss to both outputs."""
    out_au = forward_batch(model, au_batch) if au_batch is not None else None
    out_expr = forward_batch(model, expr_batch) if expr_batch is not None else None
    return loss_fn(out_au, out_expr, au_batch, expr_batch, ctx=ctx.loss)


STEPS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {"joint": joint_step}
"""Step functions by recipe name (``train.step``). A method registers its own, e.g. ``STEPS["mal"] = mal_step``."""
