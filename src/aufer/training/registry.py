"""The training registries: recipe losses (``train.loss``), step functions (``train.step``) and released-code
evaluators (``aufer evaluate --released NAME``). Each method registers its own entries with the decorators below
(:mod:`aufer.registry` explains how a lookup sees every method); this module imports no method.

Loss functions: ``fn(out_au, out_expr, au_batch, expr_batch, *, ctx, **loss_args) -> dict`` with a ``"loss"`` scalar
to minimise (with its graph) and detached scalars to log (:mod:`aufer.training.losses`).

Step functions: ``step_fn(model, au_batch, expr_batch, loss_fn, ctx) -> dict``, the same dict
(:mod:`aufer.training.steps`).

Evaluators: :class:`Evaluator` entries, a function of a run folder and a one-line summary of its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from aufer.registry import Registry

__all__ = ["LOSSES", "STEPS", "EVALUATORS", "Evaluator", "register_loss", "register_step", "register_evaluator"]

F = TypeVar("F", bound=Callable)

LOSSES = Registry("loss", "train.loss")
"""Recipe losses by name (``train.loss``)."""

STEPS = Registry("step", "train.step")
"""Step functions by name (``train.step``)."""

EVALUATORS = Registry("evaluator", "aufer evaluate --released")
"""Released-code evaluators by name (``aufer evaluate RUN --released NAME``)."""


def register_loss(name: str, *, uses_class_weights: bool = False,
                  loss_params: Callable | None = None) -> Callable[[F], F]:
    """Register a recipe loss under ``name`` (decorator).

    Args:
        uses_class_weights: the loss always reads the fold's AU class weights ``ctx.au_weight`` (otherwise the
            engine computes them only for ``loss_args.class_weights: true``); set as ``fn.uses_class_weights``.
        loss_params: ``make(**loss_args) -> nn.Module``: learnable parameters of the loss itself (e.g. uncertainty
            weighting's log variances), built and given to the optimiser by
            :func:`aufer.training.loss_params.attach_loss_params`; set as ``fn.make_loss_params``.

    Raises:
        ValueError: ``name`` is already registered.
    """
    def deco(fn: F) -> F:
        if uses_class_weights:
            fn.uses_class_weights = True  # type: ignore[attr-defined]
        if loss_params is not None:
            fn.make_loss_params = loss_params  # type: ignore[attr-defined]
        return LOSSES.register(name)(fn)
    return deco


def register_step(name: str, *, uses_class_weights: bool = False) -> Callable[[F], F]:
    """Register a step function under ``name`` (decorator); ``uses_class_weights``: the step always reads the fold's
    AU class weights ``ctx.loss.au_weight`` (set as ``fn.uses_class_weights``). Raises ValueError if the name is
    taken."""
    def deco(fn: F) -> F:
        if uses_class_weights:
            fn.uses_class_weights = True  # type: ignore[attr-defined]
        return STEPS.register(name)(fn)
    return deco


@dataclass(frozen=True)
class Evaluator:
    """A method's re-implementation of its released evaluation code (e.g. SSM's test-tuned AU search).

    Attributes:
        evaluate: ``evaluate(run_dir, split, checkpoint, flip) -> dict`` (reads the run's prediction tables,
            writes its own metrics file); raises ``FileNotFoundError`` / ``ValueError`` for a run it cannot score.
        summary: ``summary(result) -> str``, the one line ``aufer evaluate`` prints.
        label: what the figures are (e.g. ``"test-tuned"``), for the help text.
    """

    evaluate: Callable[..., dict]
    summary: Callable[[dict], str]
    label: str = ""


def register_evaluator(name: str, evaluator: Evaluator) -> Evaluator:
    """Register a released-code evaluator under ``name``; returns it. Raises ValueError if the name is taken."""
    return EVALUATORS.register(name)(evaluator)
