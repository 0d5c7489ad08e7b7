"""TEMPORARY: the pre-engine loop, kept only until the demo trains through aufer.engine (being ported)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from aufer import metrics
from aufer.synth import ClipSet
from aufer.losses import masked_bce, masked_ce

__all__ = ["joint_steps", "train_one_epoch", "predict_clips", "evaluate"]


def joint_steps(au_loader: Iterable, fe_loader: Iterable) -> Iterator[tuple[dict, dict]]:
    """Heterogeneous pairing: one AU batch and one expression batch per step. An epoch runs the longer loader
    once; the shorter restarts as often as needed."""
    n_au, n_fe = len(au_loader), len(fe_loader)
    if n_au >= n_fe:
        yield from zip(au_loader, _restarting(fe_loader))
    else:
        yield from ((a, f) for f, a in zip(fe_loader, _restarting(au_loader)))


def _restarting(loader: Iterable) -> Iterator:
    while True:
        empty = True
        for b in loader:
            empty = False
            yield b
        if empty:
            return


def _forward(model, batch: dict) -> dict[str, torch.Tensor]:
    x = model.preprocess(batch["crops"])
    lm = batch["landmarks"] if getattr(model, "uses_landmarks", False) else None
    return model(x, lm)


def train_one_epoch(model: torch.nn.Module, au_loader: Iterable, fe_loader: Iterable, optimizer: torch.optim.Optimizer,
                    scheduler=None, au_weight: float = 1.0, fe_weight: float = 1.0, label_smoothing: float = 0.0,
                    on_step: Callable[[], None] | None = None) -> dict[str, float]:
    """One epoch of joint AU + expression training with masked losses.

    Each step forwards the AU batch and the expression batch; the loss is ``au_weight · BCE(AU labels) +
    fe_weight · CE(expression labels)``, each over the labels that exist (a batch's missing labels never count).

    Returns:
        Mean ``loss_au`` and ``loss_expr`` over the epoch.
    """
    model.train()
    sums, n = np.zeros(2), 0
    for au_b, fe_b in joint_steps(au_loader, fe_loader):
        out_a, out_f = _forward(model, au_b), _forward(model, fe_b)
        l_au = masked_bce(torch.cat([out_a["au"].flatten(0, 1), out_f["au"].flatten(0, 1)]),
                          torch.cat([au_b["au"].flatten(0, 1), fe_b["au"].flatten(0, 1)]))
        l_fe = masked_ce(torch.cat([out_a["expr"], out_f["expr"]]), torch.cat([au_b["expr"], fe_b["expr"]]),
                         label_smoothing=label_smoothing)
        loss = au_weight * l_au + fe_weight * l_fe
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        sums += [l_au.item(), l_fe.item()]
        n += 1
        if on_step:
            on_step()
    return {"loss_au": sums[0] / max(n, 1), "loss_expr": sums[1] / max(n, 1)}


def _batches(data, batch_size: int):
    if isinstance(data, ClipSet):
        from aufer.datasets.loaders import clip_loader  # noqa: PLC0415

        return clip_loader(data, batch_size)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def predict_clips(model: torch.nn.Module, data, batch_size: int = 32, flip: bool = True,
                  labels: bool = False) -> tuple[np.ndarray, ...]:
    """Probabilities on whole clips: AU ``(N, T, A)`` (sigmoid) and expression ``(N, E)`` (softmax), averaged
    with the mirrored face when ``flip`` (as :meth:`~aufer.models.joint.JointNet.probabilities`).

    Args:
        data: a :class:`ClipSet`, or a dataset yielding the loaders' items (e.g. an evaluation
            :class:`~aufer.datasets.loaders.AUWindowDataset` or :class:`~aufer.datasets.loaders.ExprClipDataset`
            over a face store).
        labels: also return the labels seen: AU ``(N, T, A)`` (−1 unknown or padding) and expression ``(N,)``.
    """
    model.eval()
    out: list[list[np.ndarray]] = [[], [], [], []]
    for b in _batches(data, batch_size):
        p_au, p_e = model.probabilities(b["crops"], b["landmarks"], flip=flip)
        for k, v in enumerate((p_au, p_e, b["au"], b["expr"])):
            out[k].append(v.numpy())
    res = tuple(np.concatenate(v) for v in out)
    return res if labels else res[:2]


def evaluate(model: torch.nn.Module, data, batch_size: int = 32, threshold: float = 0.5,
             flip: bool = True) -> dict:
    """Metrics on a clip set or a store-backed evaluation dataset: per-AU F1 (threshold 0.5, frames with a 0/1
    label; padding frames carry −1), mean F1, and UAR / WAR over the clips with an expression label. Entries
    are omitted when the data have no label of that kind. AU columns are the model's."""
    p_au, p_expr, au, expr = predict_clips(model, data, batch_size, flip, labels=True)
    out: dict = {"n_clips": len(p_expr)}
    if ((au == 0) | (au == 1)).any():
        f1 = metrics.au_f1(p_au, au, threshold)
        out["au_f1"] = {f"AU{a}": (None if np.isnan(v) else float(v)) for a, v in zip(model.aus, f1)}
        out["au_f1_mean"] = float(np.nanmean(f1))
    if (expr >= 0).any():
        pred = p_expr.argmax(1)
        n_classes = len(model.emotions)
        out["uar"] = metrics.uar(pred, expr, n_classes)
        out["war"] = metrics.war(pred, expr)
        out["confusion"] = metrics.confusion(pred, expr, n_classes).tolist()
    return out
