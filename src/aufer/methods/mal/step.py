"""MAL — Meta Auxiliary Learning for facial AU detection (Yong Li, Shiguang Shan, IEEE TAFFC; arXiv 2105.06620),
RECONSTRUCTED. No code of the paper is public and only its abstract was read: the algorithm below is the
reconstruction of ``methods.md`` §5 (tag [RECON]), a learning-to-reweight (Ren et al. 2018, "L2RW") one-step
look-ahead consistent with the abstract, plus the Meta-Weight-Net variant (Shu et al. 2019). Every number this
module produces is a number of that reconstruction, not of the paper's method.

AU detection is the primary task, facial-expression (FE) recognition the auxiliary one. Each step gets an AU batch
and an FE batch; the AU batch is split into B_a (trained on) and a meta batch B_m (``split_batch``). Per FE sample i
(loss ℓ_i, cross-entropy, unknown labels masked):

1. virtual update θ̂(ε) = θ − η ⊙ ∇_θ [ L_AU(B_a; θ) + Σ_i ε_i ℓ_i(θ) ]        (``create_graph=True``; ε = 0)
2. meta gradient g_i = ∂ L_AU(B_m; θ̂(ε)) / ∂ε_i at ε = 0  (θ̂ evaluated with ``torch.func.functional_call``)
3. weights w_i = c · max(−g_i, 0)  — **not normalised**, so their total also balances the two tasks
4. real loss L_AU(B_a; θ) + Σ_i w_i ℓ_i(θ) with w detached; the engine's loop does backward and the optimiser step.

L_AU is the multi-label BCE over known labels weighted per AU by the fold's class weights (``ctx.loss.au_weight``,
methods.md §1.1); frames with ``valid`` False are unknown. Decisions of this reconstruction (none is from the paper):

* **meta batch**: the engine has no meta loader, so the AU batch of the step is split by clips: its last
  ``round(meta_fraction · B)`` clips are B_m, the others B_a (the loader shuffles, so B_m is a random subset of the
  training subjects' clips, held out from this step's B_a; over the epochs every clip serves in both roles). The
  real update trains on B_a only; use an AU batch twice the joint baseline's to give it the same AU clips per step.
* **η**: the optimiser's current learning rate of each parameter's group (per-parameter η with several groups);
  ``step_args.meta_lr`` replaces it by one constant. The look-ahead is a plain SGD step whatever the optimiser
  (as L2RW). g is (to first order) proportional to η, so with a learning rate of 0 (warm-up start) every weight is 0, and the scale
  of the weights follows the schedule; ``scale`` (c) and ``meta_lr`` set it.
* **BatchNorm**: the look-ahead runs the model in its current mode (train: batch statistics, as the real forward
  normalises) but on *copies* of every buffer passed to ``functional_call``, so the running statistics and
  ``num_batches_tracked`` of the model never see the virtual pass. BN in eval mode was not chosen: early in training
  the running statistics are far from the batch statistics, and the meta gradient would be that of another function.
  The forward at θ of B_a and the FE batch is the real step's forward (shared with the real loss, as L2RW's
  Algorithm 1), so it updates the running statistics once, as a joint step does. Under DDP the look-ahead runs on the
  unwrapped model with its own (stateless, buffer-copy) forwards and the real loss is forwarded through DDP.
* **Meta-Weight-Net** (``variant: mwn``): w_i = WNet(ℓ_i) (MLP 1→100→1, sigmoid; input the detached loss value);
  WNet's parameters Θ are trained by the same look-ahead's meta gradient ∂L_AU(B_m; θ̂(Θ))/∂Θ with their own Adam
  (lr 1e-3, weight decay 1e-4: MW-Net's released code as recalled, [MEM]), one update per step before the weights
  are computed. WNet and its Adam live in ``ctx.state["mal_wnet"]`` as plain state dicts (tensors and containers
  only, ``torch.load(weights_only=True)`` reads them), rebuilt every step, so that a runner which saves ``ctx.state``
  with the training state resumes them exactly; one that does not restarts WNet on resume. The weights are not
  normalised either.
* Cost: the look-ahead is a second-order pass (``create_graph``) through every parameter it moves; restricting it
  with ``meta_params`` to the layers after the backbone skips the backbone's double backward
  (``benchmarks/mal_speed.py``). θ̂ is linear in ε, so exactly g_i = −⟨η ⊙ ∇L_AU(B_m; θ̂(0)), ∇ℓ_i(θ)⟩: a forward-mode
  JVP of the ℓ_i along η ⊙ ∇L_AU(B_m; θ̂(0)) would give the same g without the double backward (not done). Under DDP each process weighs its own FE samples with its own look-ahead (local
  gradients); that path has not been run on several processes.
* FE samples with an unknown label (−1) get weight 0 and are left out of the weight statistics; AU labels an FE
  clip may carry (pseudo-labels) are not used, only the AU batch trains the AU task.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from aufer.models.contract import unwrap
from aufer.training.losses import masked_bce
from aufer.training.registry import register_step
from aufer.training.steps import StepContext, forward_batch, joint_step

__all__ = ["RECONSTRUCTED", "au_loss", "fe_losses", "split_batch", "param_lrs", "mal_meta_gradient",
           "mal_meta_weights", "MetaWeightNet", "mwn_update", "mal_step"]

log = logging.getLogger(__name__)

RECONSTRUCTED = "MAL (reconstructed from the abstract, methods.md §5; no public code)"
_WNET_KEY = "mal_wnet"  # in ctx.state: {"model": WNet state dict, "optim": its Adam state dict}
_announced: set[int] = set()


# ------------------------------------------------------------------------------------------------ losses
def _au_labels(batch: dict) -> torch.Tensor:
    y = batch["au"]
    if "valid" in batch:
        y = torch.where(batch["valid"][..., None].to(torch.bool), y, torch.full_like(y, -1))
    return y


def _full(x: torch.Tensor) -> torch.Tensor:  # losses in float32 at least (autocast gives bf16/fp16 logits)
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def au_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L_AU: BCE over the known (0/1) AU labels, each AU weighted by ``weight`` (the fold's class weights)."""
    return masked_bce(_full(logits), labels, weight=weight)


def fe_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ℓ_i: per-sample cross-entropy ``(B,)`` (float32, or float64 logits' own); 0 for an unknown label (−1)."""
    known = labels >= 0
    el = F.cross_entropy(_full(logits), labels.clamp(min=0), reduction="none")
    return el * known.to(el.dtype)


def split_batch(batch: dict, meta_fraction: float = 0.5) -> tuple[dict, dict]:
    """``(B_a, B_m)``: the batch's first clips and its last ``round(meta_fraction · B)`` (at least one each).

    Raises:
        ValueError: a batch of fewer than 2 clips, or ``meta_fraction`` outside (0, 1).
    """
    n = int(batch["crops"].shape[0])
    if not 0.0 < meta_fraction < 1.0:
        raise ValueError(f"step_args.meta_fraction must be in (0, 1), not {meta_fraction}")
    if n < 2:
        raise ValueError(f"MAL (reconstructed) splits the AU batch into B_a and a meta batch: it needs at least 2 "
                         f"clips, got {n}; raise data.au.batch_size")
    k = min(max(int(round(meta_fraction * n)), 1), n - 1)

    def take(sl: slice) -> dict:
        return {key: (v[sl] if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == n else v)
                for key, v in batch.items()}

    return take(slice(0, n - k)), take(slice(n - k, n))


def param_lrs(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, meta_lr: float | None = None,
              only: Sequence[str] | None = None) -> dict[str, float]:
    """η per parameter name for the look-ahead: the learning rate of the optimiser group holding the parameter
    (``meta_lr`` instead, when given). Only trainable parameters in the optimiser (all trainable ones with
    ``meta_lr``), and with ``only`` those whose name is or starts with one of its prefixes (``"fuse"``,
    ``"backbone.net._blocks.15"``)."""
    by_id = {id(p): float(g["lr"]) for g in optimizer.param_groups for p in g["params"]} if optimizer else {}
    out = {}
    for n, p in model.named_parameters():
        if not p.requires_grad or (only and not any(n == q or n.startswith(q + ".") for q in only)):
            continue
        if meta_lr is not None:
            out[n] = float(meta_lr)
        elif id(p) in by_id:
            out[n] = by_id[id(p)]
    return out


# ------------------------------------------------------------------------------------------ the look-ahead
def _inputs(core: nn.Module, batch: dict) -> tuple:
    x = core.preprocess(batch["crops"])
    return (x, batch["landmarks"] if getattr(core, "uses_landmarks", False) else None)


def _stateless(core: nn.Module, batch: dict, params: Mapping[str, torch.Tensor] | None = None) -> dict:
    """The model's outputs with ``params`` substituted and every buffer a copy: nothing of the model changes."""
    buffers = {n: b.clone() for n, b in core.named_buffers()}
    return functional_call(core, {**buffers, **(params or {})}, _inputs(core, batch))


def _outputs(core, au_batch, expr_batch, outputs):
    if outputs is not None:
        return outputs
    return _stateless(core, au_batch), _stateless(core, expr_batch)


def _meta_loss(core: nn.Module, inner: torch.Tensor, lrs: Mapping[str, float], meta_batch: dict,
               au_weight: torch.Tensor | None) -> torch.Tensor:
    """L_AU(B_m; θ̂) with θ̂ = θ − η ⊙ ∇_θ inner (the graph kept, so it differentiates in what ``inner`` holds)."""
    if not lrs:
        raise ValueError("MAL (reconstructed): no parameter for the look-ahead (none trainable in the optimiser, or "
                         "step_args.meta_params matches none)")
    params = dict(core.named_parameters())
    names = list(lrs)
    grads = torch.autograd.grad(inner, [params[n] for n in names], create_graph=True, allow_unused=True)
    fast = {n: params[n] - lrs[n] * g for n, g in zip(names, grads) if g is not None}
    out = _stateless(core, meta_batch, fast)
    return au_loss(out["au"], _au_labels(meta_batch), au_weight)


def _au_weight(au_weight, loss_ctx):
    return au_weight if au_weight is not None else (loss_ctx.au_weight if loss_ctx is not None else None)


def _lrs(core, lr, meta_params):
    if isinstance(lr, Mapping):
        return {n: float(v) for n, v in lr.items() if not meta_params or any(n == q or n.startswith(q + ".")
                                                                                for q in meta_params)}
    return param_lrs(core, None, float(lr), meta_params)


def _l2rw(core, au_batch, expr_batch, meta_batch, lrs, au_weight, outputs) -> tuple[torch.Tensor, torch.Tensor]:
    out_a, out_e = _outputs(core, au_batch, expr_batch, outputs)
    ell = fe_losses(out_e["expr"], expr_batch["expr"])
    eps = torch.zeros_like(ell, requires_grad=True)
    inner = au_loss(out_a["au"], _au_labels(au_batch), au_weight) + (eps * ell).sum()
    meta = _meta_loss(core, inner, lrs, meta_batch, au_weight)
    (g,) = torch.autograd.grad(meta, [eps], retain_graph=outputs is not None, allow_unused=True)
    return (torch.zeros_like(ell) if g is None else g.detach()), meta.detach()


def mal_meta_gradient(model: nn.Module, au_batch: dict, expr_batch: dict, meta_batch: dict, *,
                      lr: float | Mapping[str, float], loss_ctx=None, au_weight: torch.Tensor | None = None,
                      meta_params: Sequence[str] | None = None, outputs: tuple[dict, dict] | None = None) -> torch.Tensor:
    """g = ∂ L_AU(B_m; θ̂(ε)) / ∂ε at ε = 0, ``(B_e,)`` (detached) — MAL's meta gradient, reconstructed.

    Args:
        model: the (unwrapped) model: ``model.preprocess(crops)``, ``model(x, landmarks)`` → ``{"au", "expr"}``.
        au_batch, expr_batch, meta_batch: B_a, the FE batch, B_m (dicts as the loaders give, on the device).
        lr: η, one float for every trainable parameter or ``{name: η}`` (:func:`param_lrs`; names missing from
            it are not moved by the look-ahead).
        loss_ctx, au_weight: the AU class weights (``au_weight``, else ``loss_ctx.au_weight``; None = unweighted).
        meta_params: only these parameter-name prefixes take the virtual step (default: all in ``lr``).
        outputs: ``(out_a, out_e)`` already computed by the model at θ with their graphs (the real step's forward,
            kept alive: the graph is retained); default: stateless forwards here (buffers copied).
    """
    lrs = _lrs(model, lr, meta_params)
    return _l2rw(model, au_batch, expr_batch, meta_batch, lrs, _au_weight(au_weight, loss_ctx), outputs)[0]


def mal_meta_weights(model: nn.Module, au_batch: dict, expr_batch: dict, meta_batch: dict, *,
                     lr: float | Mapping[str, float], loss_ctx=None, au_weight: torch.Tensor | None = None,
                     scale: float = 1.0, meta_params: Sequence[str] | None = None,
                     outputs: tuple[dict, dict] | None = None) -> torch.Tensor:
    """MAL's FE sample weights, reconstructed: ``w_i = scale · max(−g_i, 0)`` (:func:`mal_meta_gradient`), ``(B_e,)``,
    detached, ≥ 0, **not normalised**; 0 for FE samples with an unknown label. Arguments as
    :func:`mal_meta_gradient`."""
    g = mal_meta_gradient(model, au_batch, expr_batch, meta_batch, lr=lr, loss_ctx=loss_ctx, au_weight=au_weight,
                          meta_params=meta_params, outputs=outputs)
    return float(scale) * (-g).clamp(min=0) * (expr_batch["expr"] >= 0).to(g.dtype)


# ---------------------------------------------------------------------------------------- Meta-Weight-Net
class MetaWeightNet(nn.Module):
    """Meta-Weight-Net (Shu et al., NeurIPS 2019) as MAL's weight function, reconstructed: an MLP 1 → ``hidden``
    → 1 with ReLU and a sigmoid, on each FE sample's (detached) loss value; ``(B,)`` → ``(B,)`` in (0, 1)."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(losses.detach().to(self.net[0].weight.dtype).unsqueeze(-1))).squeeze(-1)


def mwn_update(model: nn.Module, au_batch: dict, expr_batch: dict, meta_batch: dict, *, wnet: MetaWeightNet,
               wnet_opt: torch.optim.Optimizer, lr: float | Mapping[str, float], loss_ctx=None,
               au_weight: torch.Tensor | None = None, meta_params: Sequence[str] | None = None,
               outputs: tuple[dict, dict] | None = None) -> torch.Tensor:
    """One meta update of the Meta-Weight-Net (reconstructed): θ̂(Θ) = θ − η ⊙ ∇_θ[L_AU(B_a) + Σ_i WNet_Θ(ℓ_i) ℓ_i],
    Θ ← ``wnet_opt`` step on ∂L_AU(B_m; θ̂(Θ))/∂Θ (gradients averaged over processes under DDP). Arguments as
    :func:`mal_meta_gradient`. Returns the meta loss L_AU(B_m; θ̂) (detached)."""
    lrs = _lrs(model, lr, meta_params)
    au_weight = _au_weight(au_weight, loss_ctx)
    out_a, out_e = _outputs(model, au_batch, expr_batch, outputs)
    ell = fe_losses(out_e["expr"], expr_batch["expr"])
    w = wnet(ell) * (expr_batch["expr"] >= 0).to(ell.dtype)
    inner = au_loss(out_a["au"], _au_labels(au_batch), au_weight) + (w * ell).sum()
    meta = _meta_loss(model, inner, lrs, meta_batch, au_weight)
    ps = [p for p in wnet.parameters() if p.requires_grad]
    grads = torch.autograd.grad(meta, ps, retain_graph=outputs is not None, allow_unused=True)
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    for p, g in zip(ps, grads):
        g = torch.zeros_like(p) if g is None else g.detach()
        if dist:
            torch.distributed.all_reduce(g)
            g /= torch.distributed.get_world_size()
        p.grad = g
    wnet_opt.step()
    wnet_opt.zero_grad(set_to_none=True)
    return meta.detach()


def _wnet(ctx: StepContext, device) -> tuple[MetaWeightNet, torch.optim.Optimizer]:
    a = ctx.args
    with torch.random.fork_rng(devices=[]):  # its initialisation does not move the training RNG
        torch.manual_seed(int(a.get("seed", 0)))
        net = MetaWeightNet(int(a.get("wnet_hidden", 100)))
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=float(a.get("wnet_lr", 1e-3)),
                           weight_decay=float(a.get("wnet_weight_decay", 1e-4)))
    st = ctx.state.get(_WNET_KEY)
    if st is not None:
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
    return net, opt


# ------------------------------------------------------------------------------------------------- the step
@register_step("mal", uses_class_weights=True)
def mal_step(model: nn.Module, au_batch: dict | None, expr_batch: dict | None, loss_fn: Callable,
             ctx: StepContext) -> dict[str, torch.Tensor]:
    """MAL's training step, reconstructed (registered as ``train.step: mal``; see the module docstring). Returns ``{"loss": L_AU(B_a) + Σ w_i ℓ_i}`` (w detached) and logs: ``loss_au`` (B_a),
    ``loss_expr`` (unweighted mean CE of the FE samples), ``loss_expr_weighted`` (Σ w_i ℓ_i), ``mal_meta_loss``
    (L_AU(B_m; θ̂)), ``mal_weight_mean``, ``mal_weight_sum``, ``mal_weight_zero_frac`` (share of weights exactly 0)
    and ``mal_w_<emotion>`` (mean weight of the step's samples of that emotion, only emotions present).

    A step with only one of the two batches (single-task data) has no FE samples to weigh or no AU data to judge
    them by: it is the recipe's loss on the joint step. The recipe's loss is otherwise unused.

    ``ctx.args`` (``train.step_args``): ``variant`` (``"l2rw"`` | ``"mwn"``, default l2rw); ``meta_fraction`` (0.5):
    the share of the AU batch held out as B_m; ``scale`` (1.0): c, multiplying every weight; ``meta_lr`` (null: the
    optimiser's per-group lr): η of the look-ahead; ``meta_params`` (null: all): parameter-name prefixes that take
    the virtual step (must include shared layers, or every g is 0); ``class_weights`` (True): weigh L_AU by the
    fold's AU class weights (``ctx.loss.au_weight``); MWN: ``wnet_lr`` (1e-3), ``wnet_weight_decay`` (1e-4),
    ``wnet_hidden`` (100), ``seed`` (0, its initialisation).

    Raises:
        ValueError: unknown variant, an AU batch of one clip, or class weights asked for and not computed.
    """
    if au_batch is None or expr_batch is None:
        return joint_step(model, au_batch, expr_batch, loss_fn, ctx)
    a = ctx.args
    if id(ctx) not in _announced:
        _announced.add(id(ctx))
        log.info("%s: variant %s", RECONSTRUCTED, a.get("variant", "l2rw"))
    variant = a.get("variant", "l2rw")
    if variant not in ("l2rw", "mwn"):
        raise ValueError(f"step_args.variant must be 'l2rw' or 'mwn', not {variant!r}")
    cw = None
    if a.get("class_weights", True):
        cw = ctx.loss.au_weight
        if cw is None:
            raise ValueError("MAL (reconstructed) weighs L_AU by the fold's AU class weights, which the engine did not "
                             "compute: set train.loss_args.class_weights: true (or step_args.class_weights: false)")
    core = unwrap(model)
    b_a, b_m = split_batch(au_batch, float(a.get("meta_fraction", 0.5)))
    lrs = param_lrs(core, ctx.optimizer, a.get("meta_lr"), a.get("meta_params"))
    if ctx.optimizer is None and a.get("meta_lr") is None:
        raise ValueError("MAL (reconstructed): the look-ahead needs the optimiser's learning rate (ctx.optimizer) or "
                         "step_args.meta_lr")
    out_a, out_e = forward_batch(model, b_a), forward_batch(model, expr_batch)
    shared = (out_a, out_e) if core is model else None  # DDP: the look-ahead does its own stateless forwards
    y_e = expr_batch["expr"]
    known = y_e >= 0
    scale = float(a.get("scale", 1.0))
    ell = fe_losses(out_e["expr"], y_e)
    if variant == "l2rw":
        g, meta = _l2rw(core, b_a, expr_batch, b_m, lrs, cw, shared)
        w = scale * (-g).clamp(min=0)
    else:
        wnet, opt = _wnet(ctx, y_e.device)
        meta = mwn_update(core, b_a, expr_batch, b_m, wnet=wnet, wnet_opt=opt, lr=lrs, au_weight=cw, outputs=shared)
        ctx.state[_WNET_KEY] = {"model": wnet.state_dict(), "optim": opt.state_dict()}
        with torch.no_grad():
            w = scale * wnet(ell)
    w = (w * known.to(w.dtype)).detach()
    l_au = au_loss(out_a["au"], _au_labels(b_a), cw)
    l_fe = (w * ell).sum()
    logs: dict[str, torch.Tensor] = {"loss_au": l_au.detach(), "loss_expr_weighted": l_fe.detach(),
                                     "mal_meta_loss": meta}
    if bool(known.any()):
        wk = w[known]
        logs.update(loss_expr=ell[known].mean().detach(), mal_weight_mean=wk.mean(), mal_weight_sum=wk.sum(),
                    mal_weight_zero_frac=(wk == 0).float().mean())
        for k, name in enumerate(getattr(core, "emotions", ())):
            sel = y_e == k
            if bool(sel.any()):
                logs[f"mal_w_{str(name).replace(' ', '_')}"] = w[sel].mean()
    return {"loss": l_au + l_fe, **logs}
