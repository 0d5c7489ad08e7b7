"""Learnable parameters of a recipe loss itself (e.g. the log variances of uncertainty weighting,
:mod:`aufer.methods.mtl`): built from the loss's ``make_loss_params`` (declared with
``register_loss(..., loss_params=make)``), on the run's device, and trained by the run's optimiser as one more
parameter group.

They must be parameters the optimiser sees, yet not part of the model, whose checkpoints are loaded strictly: the
engine calls :func:`attach_loss_params` before it builds the scheduler (so that the schedule covers the group),
passes the module to the loss as ``ctx.loss_params``, and saves / loads its state dict with the training state;
their optimiser moments are in the optimiser's state already.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

__all__ = ["make_loss_params", "attach_loss_params"]


def make_loss_params(loss_fn: Callable, loss_args: dict) -> nn.Module | None:
    """The loss's parameters ``loss_fn.make_loss_params(**loss_args)`` (on the CPU), or None for a loss without."""
    make = getattr(loss_fn, "make_loss_params", None)
    return None if make is None else make(**loss_args)


def attach_loss_params(loss_fn: Callable, loss_args: dict, optimizer: torch.optim.Optimizer,
                       device: torch.device | str | None = None) -> nn.Module | None:
    """The learnable parameters of a recipe loss (:func:`make_loss_params`), on ``device`` and added to
    ``optimizer`` as the group ``"loss_params"`` (lr ``loss_args.lr`` or the optimiser's default lr, weight decay
    ``loss_args.weight_decay`` or 0); None for a loss without (nothing added). Call it before the scheduler is
    built, and save / load the returned module's state dict with the training state."""
    module = make_loss_params(loss_fn, loss_args)
    if module is None:
        return None
    if device is not None:
        module = module.to(device)
    lr = loss_args.get("lr")
    optimizer.add_param_group({"params": list(module.parameters()), "name": "loss_params",
                               "lr": float(lr if lr is not None else optimizer.defaults["lr"]),
                               "weight_decay": float(loss_args.get("weight_decay", 0.0))})
    return module
