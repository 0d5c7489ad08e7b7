"""SSM's training objective (methods.md §3.2, §9.1 items 5, 6, 9; official ``ssm/training/legacy.py`` @ 978d79a,
``mixup_clips`` and ``_joint_training_step``). aufer's own implementation.

One step sees one AU batch (mixed pairwise, :func:`ssm_step`) and one expression batch, and four losses:

* ``L1 = CE(logits_e, y_e)`` -- the expression logits (model output ``"expr"``, official ``dfer_output``);
* ``L2 = λ · BCE(logits_a, y_a) + (1 − λ) · BCE(logits_a, y_b)`` -- mixup-BCE of the smoothed AU logits (``"au"``,
  official ``au_output``) against the clip's own labels y_a and its mixup partner's y_b;
* ``L3 = CE(0.1 · sim_e / 0.01, y_e)`` -- the expression prototype similarities (``"expr_sim"``, ``dfer_output_pro``);
* ``L4`` -- mixup-BCE of the un-smoothed AU similarities (``"au_sim"``, ``au_output_pro``).

Each loss is divided by a detached exponential moving average of itself (the official ``moving_losses``), kept in
``ctx.state`` and therefore reset at every epoch start (the engine clears the loss state then, as the official
``train_joint_epoch`` resets ``moving_losses``): on a term's first step of the epoch ``m_i = L_i``, afterwards
``m_i ← μ · m_i + (1 − μ) · L_i``, and *after* that update ``L̂_i = L_i / (m_i + ε)`` (μ = 0.95, ε = 1e-8; so the
first step gives ``L̂_i = L_i / (L_i + ε) ≈ 1``). The total is

    L = ( w1·L̂1 + w2·L̂2 + a(e) · (w3·L̂3 + w4·L̂4) ) / 3,    a(e) = 2 / (1 + exp(−10 · e / 30)) − 1,

w = (1, 2, 1, 1), e the 0-based epoch. The ramp horizon 30 is a constant in the official code (``p = epoch / 30``,
legacy.py L346), not the run's epoch count; ``epochs`` here is that horizon. a(0) = 0: L3 and L4 give no gradient
in the first epoch.

Differences from the official code, and why:

* Unknown labels (−1, anything but 0/1 for AUs; < 0 for expressions) never count (:func:`aufer.training.losses.masked_ce`,
  :func:`aufer.training.losses.mixup_bce`); frames with ``valid`` False are unknown too. The official losses have no mask
  (its lists hold only 0/1 AU labels and valid classes); with every label known the values are the official ones
  (mixup-BCE with one λ for the batch is exactly ``λ·mean BCE(y_a) + (1−λ)·mean BCE(y_b)``).
* The official step always has both batches. Here a term whose batch is missing, or holds no known label, is
  *absent*: it adds nothing (its L̂ is 0, its log 0), its moving average is neither started nor updated (so the
  first step on which it is present is its first-step rule), and the divisor stays 3 so that a term's weight does
  not depend on which others are present. An AU-only or expression-only step therefore trains its own two terms.
* A model without prototype similarities (SSM's TSP ablation, ``tsp=False``) has no L3 / L4: those terms are
  absent, as above.
* Only the AU batch's AU labels feed L2/L4 and only the expression batch's expression labels feed L1/L3, as the
  official step (any labels of the other task a batch may carry are ignored).
* The losses are computed in float32 (the official run is fp32 throughout, §9.1 item 6; an SSM recipe should set
  ``train.amp: fp32`` to match it, the loss itself is float32 either way).
* :func:`ssm_step` draws the mixup from a generator seeded by (``step_args.seed``, epoch, draw count) instead of the
  global numpy/torch RNGs, so a resumed run draws the same; the distributions are the official ones.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from aufer.datasets.mixup import clip_mixup
from aufer.models.contract import unwrap
from aufer.training.losses import LossContext, masked_bce, masked_ce, mixup_bce
from aufer.training.registry import LOSSES, register_loss, register_step
from aufer.training.steps import StepContext, forward_batch

__all__ = ["ssm_ramp", "ssm_loss", "batch_mixup", "ssm_step"]

_STATE_KEY = "ssm_moving_losses"  # in ctx.state: {"l1".."l4": detached 0-dim float32 tensor}
_DRAWS_KEY = "ssm_mixup_draws"    # in ctx.state: mixup draws made this epoch (seeds the next one)


def ssm_ramp(epoch: int, epochs: int = 30) -> float:
    """The weight of L3 and L4, ``a(e) = 2 / (1 + exp(−10 · e / epochs)) − 1`` (0 at e = 0, → 1), in float64 as
    the official ``np.exp``; ``epochs`` is the ramp horizon (official constant 30)."""
    return 2.0 / (1.0 + math.exp(-10.0 * epoch / epochs)) - 1.0


def _au_labels(batch: dict) -> torch.Tensor:
    """The batch's ``(B, T, A)`` AU labels with −1 on frames whose ``valid`` ``(B, T)`` is False."""
    y = batch["au"]
    if "valid" in batch:
        y = torch.where(batch["valid"].bool().unsqueeze(-1), y, torch.full_like(y, -1))
    return y


@register_loss("ssm")
def ssm_loss(out_au: dict | None, out_expr: dict | None, au_batch: dict | None, expr_batch: dict | None, *,
             ctx: LossContext, epochs: int = 30, momentum: float = 0.95,
             weights: Sequence[float] = (1.0, 2.0, 1.0, 1.0), eps: float = 1e-8,
             au_dfer: dict | None = None) -> dict[str, torch.Tensor]:
    """The SSM recipe loss (registered as ``train.loss: ssm``).

    Args:
        out_au: model outputs on the (mixed) AU clips: ``"au"`` ``(B, T, A)`` smoothed AU logits and ``"au_sim"``
            ``(B, T, A)`` = 0.1 · sim_a / 0.01; its expression outputs are ignored. None for no AU batch.
        out_expr: model outputs on the expression clips: ``"expr"`` ``(B', E)`` and ``"expr_sim"`` ``(B', E)`` =
            0.1 · sim_e / 0.01; its AU outputs are ignored. None for no expression batch.
        au_batch: ``"au"`` ``(B, T, A)`` labels (1/0, −1 unknown), optional ``"valid"`` ``(B, T)``, and, when the
            clips were mixed (:func:`ssm_step`), ``"au_b"`` ``(B, T, A)`` the partner's labels (already −1 on the
            partner's invalid frames) and ``"lam"`` ``(B,)`` the weight of ``"au"``; without them λ = 1 (plain BCE).
        expr_batch: ``"expr"`` ``(B',)`` class indices (−1 unknown).
        ctx: the loss context: ``ctx.epoch`` (0-based) for the ramp, ``ctx.state`` for the moving averages.
        epochs: the ramp horizon (official 30, independent of the run's length).
        momentum: μ of the moving averages (official 0.95).
        weights: (w1, w2, w3, w4) (official 1, 2, 1, 1).
        eps: ε added to the moving average in the divisor (official 1e-8).
        au_dfer: AU-DFER on SSM's expression branch (an aufer combination, in neither paper): keyword arguments
            of :func:`aufer.methods.au_dfer.loss.au_dfer_loss` (e.g. ``{ratio: 0.25, model_aus: [...], label_aus:
            [...]}``); L1 becomes ``(1 − r) · CE + r · L_AU`` of the expression clips' AU logits ``out_expr["au"]``
            against their AU pseudo-labels (``data.expr.au_pseudo``), normalised by its moving average as L1 is.

    Returns:
        ``{"loss", "loss_l1", "loss_l2", "loss_l3", "loss_l4", "ramp"}`` (+ ``"loss_au_dfer"`` with ``au_dfer``):
        ``loss`` with its graph; the raw (un-normalised) L_i and a(e) detached (an absent term logs 0).

    Raises:
        ValueError: neither output given.
    """
    if out_au is None and out_expr is None:
        raise ValueError("ssm_loss needs the outputs on an AU batch, an expression batch, or both")
    terms: list[tuple[torch.Tensor, bool] | None] = [None] * 4  # (L_i, present) per term; None = no output
    extra: dict[str, torch.Tensor] = {}
    if out_expr is not None:
        if expr_batch is None:
            raise ValueError("ssm_loss: out_expr given without expr_batch")
        y_e = expr_batch["expr"]
        present = bool((y_e >= 0).any())
        terms[0] = (masked_ce(out_expr["expr"].float(), y_e), present)
        if au_dfer is not None:  # the registered AU-DFER loss (aufer.methods.au_dfer), looked up by name
            d = LOSSES["au_dfer"](None, out_expr, None, expr_batch, ctx=ctx, **dict(au_dfer))
            terms[0] = (d["loss"], present)
            extra = {"loss_au_dfer": d["loss_au_dfer"]}
        if "expr_sim" in out_expr:  # absent for the TSP ablation (tsp=False): no prototype terms
            terms[2] = (masked_ce(out_expr["expr_sim"].float(), y_e), present)
    if out_au is not None:
        if au_batch is None:
            raise ValueError("ssm_loss: out_au given without au_batch")
        y_a = _au_labels(au_batch)
        known_a = (y_a == 0) | (y_a == 1)
        if "au_b" in au_batch:
            y_b, lam = au_batch["au_b"], au_batch["lam"]
            present = bool((known_a | (y_b == 0) | (y_b == 1)).any())
            bce = lambda z: mixup_bce(z, y_a, y_b, lam)  # noqa: E731
        else:
            present = bool(known_a.any())
            bce = lambda z: masked_bce(z, y_a)  # noqa: E731
        terms[1] = (bce(out_au["au"].float()), present)
        if "au_sim" in out_au:
            terms[3] = (bce(out_au["au_sim"].float()), present)

    moving = ctx.state.setdefault(_STATE_KEY, {})
    scaled: list[torch.Tensor | None] = [None] * 4
    logs: dict[str, torch.Tensor] = {}
    for i, term in enumerate(terms):
        key = f"l{i + 1}"
        if term is None:
            continue
        loss_i, present = term
        logs[f"loss_{key}"] = loss_i.detach()
        if not present:  # no known label: keep the graph, leave the moving average alone
            scaled[i] = loss_i * 0.0
            continue
        d = loss_i.detach()
        m = moving.get(key)
        m = d if m is None else momentum * m.to(d.device) + (1.0 - momentum) * d  # official L325-338
        moving[key] = m
        scaled[i] = loss_i / (m + eps)  # official L340-343: divide by the updated average
    a = ssm_ramp(ctx.epoch, epochs)
    w1, w2, w3, w4 = (float(w) for w in weights)
    main = [w * s for w, s in ((w1, scaled[0]), (w2, scaled[1])) if s is not None]
    aux = [w * s for w, s in ((w3, scaled[2]), (w4, scaled[3])) if s is not None]
    total = sum(main[1:], main[0]) if main else None
    if aux:
        ramped = a * sum(aux[1:], aux[0])
        total = ramped if total is None else total + ramped
    device = total.device
    zero = torch.zeros((), device=device)
    return {"loss": total / 3.0, **{f"loss_l{i}": logs.get(f"loss_l{i}", zero) for i in range(1, 5)},
            "ramp": torch.tensor(a, device=device), **extra}




def batch_mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The official clip-level mixup (``legacy.py`` ``mixup_clips`` L47-71): ONE ``λ ~ Beta(α, α)`` for the whole
    batch and one partner per clip from a uniform random permutation of the batch (a clip may be its own
    partner); every frame of clip b becomes ``λ · x_b + (1 − λ) · x_perm[b]``.

    The official code takes the permutation as the order in which clips first appear in a random permutation of
    the B·T frames, which is a uniform permutation of the clips; here ``torch.randperm(B)``. λ is drawn through a
    numpy generator seeded from ``generator`` (as :func:`aufer.datasets.mixup.clip_mixup`).

    Args:
        x: ``(B, T, 3, H, W)`` float clips (any shape with the batch first). y: ``(B, T, A)`` labels.

    Returns:
        ``mixed`` (shape, dtype and device of ``x``), ``y_b = y[perm]`` and ``lam`` ``(B,)`` float32 (all equal).
    """
    b = x.shape[0]
    perm = torch.randperm(b, generator=generator)
    seed = int(torch.randint(0, 2 ** 63 - 1, (1,), generator=generator, dtype=torch.int64))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    mixed = lam * x + (1.0 - lam) * x[perm.to(x.device)]
    return mixed, y[perm.to(y.device)], torch.full((b,), lam, dtype=torch.float32, device=x.device)


@register_step("ssm")
def ssm_step(model: torch.nn.Module, au_batch: dict | None, expr_batch: dict | None, loss_fn: Callable,
             ctx: StepContext) -> dict[str, torch.Tensor]:
    """SSM's training step (registered as ``train.step: ssm``).

    Forwards the expression clips (:func:`aufer.training.steps.forward_batch`; first, as the official model encodes
    them before the AU clips), mixes the preprocessed AU clips pairwise and forwards them (``model(x, landmarks)``
    through the wrapper, so DDP sees the call; a model that uses landmarks gets each clip's own), then returns
    ``loss_fn(out_au, out_expr, au_batch + {"au_b", "lam"}, expr_batch, ctx=ctx.loss)``. Either batch may be None.

    ``ctx.args`` (the recipe's ``train.step_args``):

    * ``mixup`` (default True): False, or ``alpha ≤ 0`` (as the official ``mixup.enabled: false``), forwards the AU
      clips un-mixed and passes no ``"au_b"``/``"lam"`` (λ = 1);
    * ``alpha`` (0.4): the Beta concentration;
    * ``lam_per`` (``"batch"``): ``"batch"`` = one λ for the batch, as the official ``mixup_clips``
      (:func:`batch_mixup`); ``"clip"`` = one λ per clip (:func:`aufer.datasets.mixup.clip_mixup`, aufer's
      ``mixup`` step) -- a deviation, offered as an option;
    * ``seed`` (0): with the epoch and the number of draws made this epoch (kept in the loss state, which a resumed
      run restores) it seeds the draw, so the same (seed, epoch, step) draws the same mixup.

    The partner's labels carry −1 on the partner's invalid frames (``valid``).
    """
    out_expr = forward_batch(model, expr_batch) if expr_batch is not None else None
    out_au, au_in = None, au_batch
    if au_batch is not None:
        core = unwrap(model)
        x = core.preprocess(au_batch["crops"])
        y = _au_labels(au_batch)
        au_in = {**au_batch, "au": y}
        alpha = float(ctx.args.get("alpha", 0.4))
        if ctx.args.get("mixup", True) and alpha > 0:
            n = ctx.loss.state.get(_DRAWS_KEY, 0)
            ctx.loss.state[_DRAWS_KEY] = n + 1
            g = torch.Generator().manual_seed(hash((int(ctx.args.get("seed", 0)), ctx.loss.epoch, n)) & (2 ** 62 - 1))
            per = ctx.args.get("lam_per", "batch")
            if per == "batch":
                x, y_b, lam = batch_mixup(x, y, alpha, g)
            elif per == "clip":
                x, _, y_b, lam = clip_mixup(x, y, alpha, g)
            else:
                raise ValueError(f"step_args.lam_per must be 'batch' or 'clip', not {per!r}")
            au_in.update(au_b=y_b, lam=lam)
        lm = au_batch["landmarks"] if getattr(core, "uses_landmarks", False) else None
        out_au = model(x, lm)
    return loss_fn(out_au, out_expr, au_in, expr_batch, ctx=ctx.loss)

