"""The training loop as plain functions (torchvision reference-script style): :func:`train_one_epoch`,
:func:`predict` and :func:`evaluate`. No hook framework: a method changes the loss or the step function
(:mod:`aufer.training.steps`), and the caller passes one plain ``on_step`` callback for logging and checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from aufer import metrics
from aufer.engine.distributed import is_active, reduce_sum, unwrap
from aufer.models.contract import probabilities
from aufer.training.steps import StepContext, to_device

__all__ = ["NonFiniteLossError", "StepTimes", "autocast", "train_one_epoch", "predict", "evaluate", "summarise"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; ``epoch`` and ``step`` (1-based, within the epoch) say where."""

    def __init__(self, epoch: int, step: int, value: float):
        super().__init__(f"the loss is {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass
class StepTimes:
    """Wall-clock timing that :func:`train_one_epoch` fills in (``time.perf_counter`` seconds).

    ``step_s`` is the last step from the moment the loop asked the loader for its batches to the moment its loss
    values were on the CPU (which waits for the device), ``data_s`` the part of it spent waiting for the loader
    (on the first step of an epoch this includes starting the loader's workers); the ``on_step`` callback is not
    part of either. ``total_s``, ``data_total_s`` and ``steps`` sum them over every step timed since the object
    was made (or :meth:`reset`).
    """

    step_s: float = 0.0
    data_s: float = 0.0
    total_s: float = 0.0
    data_total_s: float = 0.0
    steps: int = 0

    def reset(self) -> None:
        """Zero every field."""
        self.step_s = self.data_s = self.total_s = self.data_total_s = 0.0
        self.steps = 0

    def _add(self, step_s: float, data_s: float) -> None:
        self.step_s, self.data_s = step_s, data_s
        self.total_s += step_s
        self.data_total_s += data_s
        self.steps += 1


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` (bf16/fp16) on the device, or a no-op for fp32 (``None``)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _finite_everywhere(loss: torch.Tensor) -> bool:
    ok = np.array([float(torch.isfinite(loss.detach()).all())])
    return bool(reduce_sum(ok)[0] == (torch.distributed.get_world_size() if is_active() else 1))


def train_one_epoch(model: torch.nn.Module, loader: Iterable, step_fn: Callable, loss_fn: Callable,
                    optimizer: torch.optim.Optimizer, *, ctx: StepContext, epoch: int = 0, scheduler=None,
                    scaler: torch.amp.GradScaler | None = None, amp_dtype: torch.dtype | None = None,
                    clip_grad: float | None = None, accumulate: int = 1, ema=None, start_step: int = 0,
                    n_steps: int | None = None, on_step: Callable[[int, dict], None] | None = None,
                    freeze_bn: bool = False, times: StepTimes | None = None) -> dict[str, float]:
    """One epoch (or what is left of it, from ``start_step``) of training.

    Each step: move the batches to ``ctx.device``; under autocast, ``step_fn`` computes the loss; stop with
    :class:`NonFiniteLossError` if it is not finite (on any process) before anything is updated; clear the
    gradients at the first step of each accumulation cycle; backward
    (scaled for fp16) of ``loss / accumulate``; every ``accumulate`` steps (and at the epoch's end) clip the
    gradient norm to ``clip_grad``, step the optimiser, then the per-step ``scheduler``, then the ``ema``
    (``AveragedModel.update_parameters``). Under DDP the gradient all-reduce is skipped on the steps that only
    accumulate.

    Args:
        loader: yields ``(au_batch, expr_batch)`` (either may be None), e.g. a
            :class:`~aufer.datasets.loaders.JointLoader` already positioned at ``start_step``.
        epoch: 0-based epoch (for messages; the loss reads ``ctx.loss.epoch``).
        start_step: steps of this epoch already done before (resume); counts continue from it.
        n_steps: the epoch's total number of steps (the last one flushes accumulation); default ``len(loader)``
            + ``start_step``.
        on_step: ``on_step(steps_done_in_epoch, logs)`` after every step (logs are floats).
        freeze_bn: BatchNorm layers normalise with their running statistics and do not update them (small
            per-device batches; DDP on CPU, where SyncBatchNorm is unavailable).
        times: filled with each step's wall and data-wait time before ``on_step`` is called (:class:`StepTimes`).

    Returns:
        Means of the step logs over the steps run.
    """
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    total = n_steps if n_steps is not None else start_step + len(loader)  # type: ignore[arg-type]
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    n = 0
    done = start_step
    params = [p for g in optimizer.param_groups for p in g["params"]]
    times = times if times is not None else StepTimes()
    t0 = time.perf_counter()  # the first step's data wait includes starting the loader (its workers)
    batches = iter(loader)
    while True:
        try:
            au_b, expr_b = next(batches)
        except StopIteration:
            break
        if done >= total:
            break
        t_data = time.perf_counter() - t0
        au_b, expr_b = to_device(au_b, ctx.device), to_device(expr_b, ctx.device)
        last_micro = (done + 1) % accumulate == 0 or done + 1 == total
        sync = model.no_sync() if (not last_micro and hasattr(model, "no_sync")) else contextlib.nullcontext()
        with sync:
            with autocast(ctx.device, amp_dtype):
                out = step_fn(model, au_b, expr_b, loss_fn, ctx)
            loss = out["loss"]
            if not _finite_everywhere(loss):
                raise NonFiniteLossError(epoch + 1, done + 1, float(loss.detach().float().cpu()))
            if done % accumulate == 0:  # the first micro-step of an optimiser step (torchvision's order)
                optimizer.zero_grad(set_to_none=True)
            scaled = loss / accumulate
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        if last_micro:
            if scaler is not None:
                scaler.unscale_(optimizer)
            if clip_grad:
                torch.nn.utils.clip_grad_norm_(params, clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update_parameters(unwrap(model))
        done += 1
        logs = {k: float(v.detach().float().cpu()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}
        times._add(time.perf_counter() - t0, t_data)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        n += 1
        if on_step is not None:
            on_step(done, logs)
        t0 = time.perf_counter()
    return {k: v / counts[k] for k, v in sums.items()}


def _probabilities(model, crops, landmarks, flip: bool):
    return probabilities(model, crops, landmarks, flip=flip)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: Iterable, *, device: torch.device | str = "cpu", flip: bool = False,
            amp_dtype: torch.dtype | None = None, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Probabilities over a loader of evaluation items (model in eval mode).

    Args:
        flip: average with the mirrored face (:func:`aufer.models.contract.flip_average`; test-time
            augmentation, off by default because the benchmark protocols do not use it).
        progress: called with the number of batches done.

    Returns:
        ``p_au`` ``(N, T, A)`` sigmoid probabilities, ``p_expr`` ``(N, E)`` softmax probabilities, and the items'
        ``au`` ``(N, T, A)`` (−1 unknown or padding), ``expr`` ``(N,)``, ``valid`` ``(N, T)``, ``index`` ``(N,)`` and
        ``rows`` ``(N, T)`` (when the items carry them).
    """
    device = torch.device(device)
    core = unwrap(model).eval()
    keys = ("au", "expr", "valid", "index", "rows")
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("p_au", "p_expr", *keys)}
    for i, b in enumerate(loader):
        crops = b["crops"].to(device, non_blocking=True)
        lm = b["landmarks"].to(device, non_blocking=True) if getattr(core, "uses_landmarks", False) else None
        with autocast(device, amp_dtype):
            p_au, p_e = _probabilities(core, crops, lm, flip)
        out["p_au"].append(p_au.float().cpu().numpy())
        out["p_expr"].append(p_e.float().cpu().numpy())
        for k in keys:
            if k in b:
                out[k].append(b[k].numpy())
        if progress is not None:
            progress(i + 1)
    return {k: np.concatenate(v) for k, v in out.items() if v}


def summarise(pred: dict[str, np.ndarray], aus: Sequence[int], emotions: Sequence[str], *, threshold: float = 0.5,
              f1_policy: str = "zero", auc: bool = True, reduce: bool = False) -> dict:
    """Metrics of :func:`predict`'s output: per-AU F1 at ``threshold`` (frames with a 0/1 label), mean F1
    under ``f1_policy`` (:func:`aufer.metrics.mean_f1`), per-AU AUC, UAR, WAR and the confusion matrix
    (rows = true class). AU entries are present when some frame has an AU label, expression entries when some
    clip has an expression label. With ``reduce`` (DDP evaluation on shards) the counts are summed over
    processes first; AUC, which is not summable, is then left out."""
    if "p_au" not in pred:  # an empty shard (more processes than evaluation clips)
        pred = {"p_au": np.zeros((0, 1, len(aus)), np.float32), "au": np.zeros((0, 1, len(aus)), np.int64),
                "p_expr": np.zeros((0, len(emotions)), np.float32), "expr": np.zeros(0, np.int64)}
    res: dict = {"n_clips": int(reduce_sum(np.array([len(pred["p_expr"])]))[0]) if reduce else len(pred["p_expr"])}
    au, p_au = pred["au"], pred["p_au"]
    counts = metrics.au_counts(p_au, au, threshold)
    n_known = np.array([int(((au == 0) | (au == 1)).sum())])
    if reduce:
        counts, n_known = reduce_sum(counts), reduce_sum(n_known)
    if n_known[0] > 0:
        f1 = metrics.f1_from_counts(counts)
        res["au_f1"] = {f"AU{a}": (None if math.isnan(v) else float(v)) for a, v in zip(aus, f1)}
        res["au_f1_mean"] = metrics.mean_f1(f1, f1_policy)
        res["f1_policy"] = f1_policy
        res["threshold"] = threshold
        res["n_au_frames"] = int(((au == 0) | (au == 1)).any(-1).sum()) if not reduce else None
        if auc and not reduce:
            a = metrics.au_auc(p_au, au)
            res["au_auc"] = {f"AU{x}": (None if math.isnan(v) else float(v)) for x, v in zip(aus, a)}
            res["au_auc_mean"] = float(np.nanmean(a)) if np.isfinite(a).any() else None
    if pred["p_expr"].shape[-1] == 0:  # an AU-only model (MDHR): no expression output to score
        return res
    expr = pred["expr"]
    cm = metrics.confusion(pred["p_expr"].argmax(1), expr, len(emotions))
    if reduce:
        cm = reduce_sum(cm)
    if cm.sum() > 0:
        res["uar"] = metrics.uar_from_confusion(cm)
        res["war"] = metrics.war_from_confusion(cm)
        res["confusion"] = cm.astype(int).tolist()
        res["emotions"] = list(emotions)
    return res


def evaluate(model: torch.nn.Module, loader: Iterable, *, device: torch.device | str = "cpu", flip: bool = False,
             threshold: float = 0.5, f1_policy: str = "zero", amp_dtype: torch.dtype | None = None,
             reduce: bool = False) -> dict:
    """:func:`predict` then :func:`summarise` with the model's AUs and emotions; ``flip_tta`` in the result
    records whether test-time flip averaging was on."""
    core = unwrap(model)
    pred = predict(model, loader, device=device, flip=flip, amp_dtype=amp_dtype)
    res = summarise(pred, core.aus, core.emotions, threshold=threshold, f1_policy=f1_policy, reduce=reduce)
    res["flip_tta"] = bool(flip)
    return res
