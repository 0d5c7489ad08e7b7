"""AU-DFER's training loss (Liu, Gu, Shi, Fu, "Action Unit Enhance Dynamic Facial Expression Recognition", arXiv
2507.07678; methods.md §4.3 and §9.3; official code github.com/Cross-Innovation-Lab/AU-DFER, ``AU_cri_set`` of
``Former-DFER_AU/main_DFEW.py``, ``Former-DFER_AU/main_FERV39K.py``, ``M3DFEL_AU/solver_with_AU_weighted.py``,
``MAE-DFER_AU/engine_for_finetuning.py``). aufer's own implementation; every number is read from
``data/reference/au_dfer.json``.

``L = (1 − r) · CE(logits_e, y_e) + r · L_AU`` with r = 0.25, and, over samples i and the 18 AUs j,

    L_AU = mean_ij  − w_ij · [ p_ij · y_ij · log σ(z_ij) + (1 − y_ij) · log(1 − σ(z_ij)) ],
    w_ij = 5 · W[y_e,i, j],     p_ij = pos_weight (one 18-vector, or one per sample: :func:`pos_weight_for`),

i.e. ``torch.nn.BCEWithLogitsLoss(weight=5·W[y_e], pos_weight=P)`` (reduction "mean": the plain mean over B × 18,
not normalised by the weights). W is the 7 × 18 AU-expression matrix, row = the sample's *true* emotion.

The 18 AUs: :data:`AU_DFER_AUS`, RECONSTRUCTED ([RECON], methods.md §4.2): upstream never names them; the
OpenFace 2.0 presence order ``1 2 4 5 6 7 9 10 12 14 15 17 20 23 25 26 28 45`` fits the implied base rates.

Differences from the official code, and why:

* Unknown AU labels (anything but 0/1) and clips without an emotion (y_e = −1) are left out: ``L_AU`` is the mean
  over the *known* entries (with every label known: upstream's mean over B × 18). Upstream has no unknown labels.
* The variants follow methods.md §4.3, not the released quirks (§9.3): ``minor`` uses each minority class's own
  ``distinct`` row (upstream DFEW-``minor`` fear uses the FERV39K fear row, FERV39K-``minor`` fear the FERV39K
  neutral row); on MAE-DFER only ``global`` works as released (integer/argmax label handling). The ``distinct``
  vectors are the released ones (FERV39K ``surprise`` equals the FERV39K global vector: an upstream copy error).
* Computed in float32 (upstream: float32 ``weight``, float64 ``pos_weight``, float32 result).
* The expression clips' AU labels come from the batch (``"au"``: clip labels ``(B, A)``, or per-frame labels
  ``(B, T, A)`` made clip labels by :mod:`aufer.store.clip_rules`), in aufer's AU order (``label_aus``), and the model's
  per-frame AU logits ``(B, T, A)`` are averaged over the (valid) frames to one clip logit per AU; the AU-DFER
  hosts have a clip-level AU head (``Linear(feat→18)`` on the clip feature), so a model with ``(B, A)`` clip logits
  is used as it is. Both are put in :data:`AU_DFER_AUS` order by AU number; an AU-DFER AU the model (or the label
  set) lacks is masked (−1) and simply drops out of the mean.
* An AU batch (AU-DFER hosts have none) is ignored by default; ``au_batch_weight > 0`` adds
  ``au_batch_weight · masked_bce`` of its per-frame labels (logged ``"loss_au"``), an aufer extension.
"""

from __future__ import annotations

from functools import cache
from typing import Sequence

import torch
import torch.nn.functional as F

from aufer import vocab
from aufer.methods.au_dfer.vocab import au_dfer_pos_weight, au_dfer_weights
from aufer.store.clip_rules import clip_labels_count, clip_labels_mean
from aufer.training.losses import LossContext, masked_bce, masked_ce
from aufer.training.registry import register_loss

__all__ = ["AU_DFER_AUS", "au_dfer_matrices", "pos_weight_for", "au_dfer_au_loss", "au_dfer_loss"]

#: AU-DFER's 18 AUs, column order of W and of the pos_weight vectors. RECONSTRUCTED ([RECON]): the OpenFace 2.0
#: presence order; not written in the upstream code (au_dfer.json ``au_order_status``).
AU_DFER_AUS: tuple[int, ...] = tuple(int(a) for a in vocab.reference("au_dfer")["au_order"])

_HOSTS = {"m3dfel": "m3dfel", "mae_dfer": "mae_dfer", "former_dfer": "former_dfer"}
_DATASETS = {"dfew": "DFEW", "ferv39k": "FERV39K"}


def _key(name: str, table: dict, what: str) -> str:
    k = str(name).strip().lower().replace("-", "_")
    if k not in table:
        raise ValueError(f"{what} must be one of {', '.join(sorted(table))}, not {name!r}")
    return table[k]


def _emotion_rows(names: Sequence[str]) -> list[int]:
    """Index, in ``names`` (au_dfer.json spelling), of each emotion of :data:`aufer.vocab.EMOTIONS_7`."""
    canon = [vocab.canonical_emotion(e) for e in names]
    return [canon.index(e) for e in vocab.EMOTIONS_7]


@cache
def _matrices(dataset: str, host: str, rows: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if rows not in ("majority", "former_dfer"):
        raise ValueError(f"rows must be 'majority' or 'former_dfer', not {rows!r}")
    if dataset == "FERV39K" and host == "former_dfer":
        variant = "FERV39K_former_dfer"  # its own matrix, its released row keys (``rows`` has no effect)
    else:  # DFEW; FERV39K on M3DFEL / MAE-DFER reuses the DFEW matrix
        variant = "DFEW" if rows == "majority" else "DFEW_former_dfer_variant"
    w, names, aus = au_dfer_weights(variant)
    assert tuple(aus) == AU_DFER_AUS
    order = _emotion_rows(names)
    ref = vocab.reference("au_dfer")
    p_global = au_dfer_pos_weight("global", dataset)
    p_distinct = au_dfer_pos_weight("distinct", dataset)[_emotion_rows(ref["emotions"])]
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return f(w[order]), f(p_global), f(p_distinct)


def au_dfer_matrices(dataset: str = "DFEW", host: str = "m3dfel", rows: str = "majority"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AU-DFER's ``W`` ``(7, 18)``, global ``pos_weight`` ``(18,)`` and distinct ``pos_weight`` ``(7, 18)``.

    Rows in aufer's :data:`~aufer.vocab.EMOTIONS_7` order (happiness, sadness, neutral, anger, surprise, disgust,
    fear; the same order as upstream's happy, sad, neutral, angry, surprise, disgust, fear), columns in
    :data:`AU_DFER_AUS` order (RECONSTRUCTED). float32 CPU tensors, shared between calls: do not modify them.

    Args:
        dataset: ``DFEW`` or ``FERV39K`` (selects the pos_weight vectors, and W for ``former_dfer``).
        host: ``m3dfel``, ``mae_dfer`` or ``former_dfer``. FERV39K: Former-DFER_AU/main_FERV39K.py uses its own
            matrix (low weights on an emotion's own AUs, AU28/AU45 constant 1.7469; semantics unclear), M3DFEL_AU
            and MAE-DFER_AU reuse the DFEW matrix. DFEW: the same matrix for every host (``rows`` decides).
        rows: the DFEW matrix's row assignment (methods.md §4.3 "Row-assignment discrepancy"): ``majority``
            (M3DFEL_AU, MAE-DFER_AU; the surprise row has the largest AU2 and AU5, fear the largest AU1, AU20
            and AU26) or ``former_dfer``
            (Former-DFER_AU/main_DFEW.py: the rows of sadness, neutral, surprise and fear are those the majority
            gives neutral, surprise, fear and sadness). No effect on the Former-DFER FERV39K matrix, which has
            one released assignment. The pos_weight rows are keyed by true emotion in every code base.

    Raises:
        ValueError: for another dataset, host or rows value.
    """
    return _matrices(_key(dataset, _DATASETS, "dataset"), _key(host, _HOSTS, "host"),
                     str(rows).strip().lower().replace("-", "_"))


def pos_weight_for(variant: str, emotion: torch.Tensor, p_global: torch.Tensor, p_distinct: torch.Tensor
                   ) -> torch.Tensor:
    """Per-sample ``pos_weight`` ``(B, 18)`` of a ``--posw_option`` variant (methods.md §4.3).

    * ``global``: ``p_global`` ``(18,)`` for every sample;
    * ``distinct``: ``p_distinct[y_e]`` (rows in :data:`~aufer.vocab.EMOTIONS_7` order);
    * ``minor``: ``p_distinct[y_e]`` for the minority classes of au_dfer.json (disgust, surprise, fear), ones for
      anger, happiness, sadness, neutral.

    Samples with ``emotion`` −1 get ones (they are dropped by :func:`au_dfer_au_loss` anyway).

    Raises:
        ValueError: for another variant.
    """
    emotion = emotion.long()
    dev = emotion.device
    p_global, p_distinct = p_global.to(dev, torch.float32), p_distinct.to(dev, torch.float32)
    known = (emotion >= 0).unsqueeze(-1)
    if variant == "global":
        return p_global.expand(len(emotion), -1).clone()
    if variant not in ("distinct", "minor"):
        raise ValueError(f"pos_weight variant must be global, distinct or minor, not {variant!r}")
    rows = p_distinct[emotion.clamp(min=0)]
    if variant == "minor":
        minor = {vocab.canonical_emotion(e) for e in vocab.reference("au_dfer")["pos_weight"]["minor"]["minor_classes"]}
        is_minor = torch.tensor([e in minor for e in vocab.EMOTIONS_7], device=dev)[emotion.clamp(min=0)]
        known = known & is_minor.unsqueeze(-1)
    return torch.where(known, rows, torch.ones_like(rows))


def au_dfer_au_loss(au_logits: torch.Tensor, au_labels: torch.Tensor, emotion: torch.Tensor, W: torch.Tensor,
                    pos_weight: torch.Tensor, scale: float = 5.0) -> torch.Tensor:
    """``L_AU``: ``BCEWithLogits(weight = scale · W[y_e], pos_weight)`` over the known entries.

    Args:
        au_logits: ``(B, 18)`` clip AU logits z.
        au_labels: ``(B, 18)`` clip labels, 1 / 0, anything else (−1) unknown.
        emotion: ``(B,)`` true emotion (row of W), −1 unknown: that sample is dropped.
        W: ``(E, 18)`` AU-expression matrix (:func:`au_dfer_matrices`).
        pos_weight: ``(18,)`` or per-sample ``(B, 18)`` (:func:`pos_weight_for`).
        scale: the factor on W (upstream ``[x*5 for x in row]``).

    Returns:
        Scalar float32: the mean of ``−w·[p·y·log σ(z) + (1−y)·log(1−σ(z))]`` over the entries with a known label
        of samples with a known emotion (torch's ``reduction="mean"`` over B × 18 when all are known); 0 (with a
        graph) if there is none.

    Raises:
        ValueError: if an emotion index is outside W's rows.
    """
    z = au_logits.float()
    emotion = emotion.long()
    if bool((emotion >= W.shape[0]).any()):
        raise ValueError(f"emotion index {int(emotion.max())} outside W's {W.shape[0]} rows")
    known = ((au_labels == 0) | (au_labels == 1)) & (emotion >= 0).unsqueeze(-1)
    if not bool(known.any()):
        return z.sum() * 0.0
    weight = scale * W.to(z)[emotion.clamp(min=0)]
    el = F.binary_cross_entropy_with_logits(z, au_labels.clamp(0, 1).to(z), weight=weight,
                                            pos_weight=pos_weight.to(z), reduction="none")
    return el[known].mean()


def _columns(x: torch.Tensor, have: Sequence[int], fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x[..., A]`` in :data:`AU_DFER_AUS` order by AU number (first occurrence), ``fill`` where ``have`` lacks
    the AU; and the ``(18,)`` bool mask of the AUs found."""
    pos = {int(a): i for i, a in reversed(list(enumerate(have)))}
    idx = torch.tensor([pos.get(a, -1) for a in AU_DFER_AUS], device=x.device)
    found = idx >= 0
    if x.shape[-1] == 0:
        return torch.full((*x.shape[:-1], len(AU_DFER_AUS)), fill, dtype=x.dtype, device=x.device), found
    out = x[..., idx.clamp(min=0)]
    return torch.where(found, out, torch.full_like(out, fill)), found


def _check_width(x: torch.Tensor, aus: Sequence[int], what: str) -> None:
    if x.shape[-1] != len(aus):
        raise ValueError(f"{what} has {x.shape[-1]} AU columns but its AU list has {len(aus)} ({list(aus)}); "
                         f"pass loss_args.model_aus / label_aus")


@register_loss("au_dfer")
def au_dfer_loss(out_au: dict | None, out_expr: dict | None, au_batch: dict | None, expr_batch: dict | None, *,
                 ctx: LossContext, ratio: float = 0.25, posw: str = "global", dataset: str = "DFEW",
                 host: str = "m3dfel", rows: str = "majority", label_smoothing: float = 0.0, scale: float = 5.0,
                 clip_rule: str = "mean", threshold: float = 0.5, min_value: float = 0.01,
                 model_aus: Sequence[int] | None = None, label_aus: Sequence[int] | None = None,
                 au_batch_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """The AU-DFER recipe loss (registered as ``train.loss: au_dfer``):
    ``(1 − ratio) · CE + ratio · L_AU`` over the expression batch's clips (see the module docstring).

    Reads ``out_expr["expr"]`` ``(B, E)`` and ``out_expr["au"]`` ``(B, T, A)`` logits (mean over the frames whose
    ``expr_batch["valid"]`` is True; ``(B, A)`` used as is) and ``expr_batch["expr"]`` ``(B,)`` and
    ``expr_batch["au"]`` (``(B, A)`` clip labels, or ``(B, T, A)`` per-frame labels, −1 unknown, made clip labels
    by ``clip_rule``). Clips with ``expr`` −1 count in neither term.

    Args:
        ctx: the loss context (unused).
        ratio: r (upstream ``AU_ratio`` / ``AU_weight`` 0.25). posw: ``global`` / ``distinct`` / ``minor``.
        dataset, host, rows: the matrices (:func:`au_dfer_matrices`). scale: factor on W (5).
        label_smoothing: of the CE (M3DFEL 0.1; Former-DFER, MAE-DFER without mixup 0).
        clip_rule: per-frame → clip labels: ``mean`` (Former-DFER, :func:`aufer.store.clip_rules.clip_labels_mean` with
            ``threshold``) or ``count`` (M3DFEL, :func:`aufer.store.clip_rules.clip_labels_count` with ``min_value``).
        model_aus: AU numbers of the model's AU columns; default ``out_expr["aus"]`` if present, else the label
            columns' ``label_aus``. label_aus: AU numbers of the label columns; default ``expr_batch["aus"]`` if
            present, else :data:`AU_DFER_AUS` (aufer's 18-AU OpenFace order). The engine builds the model and the
            expression clips with the same ``data.aus``: with ``data.expr.aus`` = the 18 OpenFace AUs the defaults
            fit; with another list give both (e.g. ``model_aus = label_aus = data.aus``).
        au_batch_weight: weight of a masked BCE on the AU batch's per-frame labels (0: the AU batch is ignored).

    Note: expression clips carry AU labels only after ``aufer label-aus`` wrote pseudo-labels into their store and
    the recipe sets ``data.expr.au_pseudo`` (``frames``, ``clip_mean`` or ``clip_count``); otherwise they are all
    −1 and ``L_AU`` is 0.

    Returns:
        ``{"loss", "loss_expr", "loss_au_dfer"}`` (+ ``"loss_au"`` when ``au_batch_weight > 0``); ``loss`` has the
        graph, the others are detached.

    Raises:
        ValueError: no output at all, an AU list that does not match the columns, an unknown option.
    """
    if clip_rule not in ("mean", "count"):
        raise ValueError(f"clip_rule must be 'mean' or 'count', not {clip_rule!r}")
    outs = [o[k] for o in (out_au, out_expr) if o is not None for k in ("au", "expr") if k in o]
    if not outs:
        raise ValueError("au_dfer_loss needs at least one model output with 'au' or 'expr' logits")
    zero = sum(t.float().sum() * 0.0 for t in outs)  # an exact 0 with a graph
    l_expr, l_au_dfer = zero, zero
    if out_expr is not None and expr_batch is not None:
        emotion = expr_batch["expr"].long()
        valid = expr_batch.get("valid")
        labels = expr_batch["au"]
        if labels.ndim == 3:
            if valid is not None:
                labels = torch.where(valid.bool().unsqueeze(-1), labels, torch.full_like(labels, -1))
            labels = (clip_labels_mean(labels, threshold) if clip_rule == "mean"
                      else clip_labels_count(labels, min_value))
        if "au" not in out_expr or "expr" not in out_expr:
            raise ValueError("au_dfer_loss needs the model's 'au' and 'expr' logits on the expression batch")
        z = out_expr["au"].float()
        if z.ndim == 3:
            w = (valid.to(z) if valid is not None else z.new_ones(z.shape[:2])).unsqueeze(-1)
            z = (z * w).sum(1) / w.sum(1).clamp(min=1)
        label_aus = tuple(label_aus if label_aus is not None else expr_batch.get("aus", AU_DFER_AUS))
        model_aus = tuple(model_aus if model_aus is not None else out_expr.get("aus", label_aus))
        _check_width(labels, label_aus, "expr_batch['au']")
        _check_width(z, model_aus, "out_expr['au']")
        z18, has = _columns(z, model_aus, 0.0)
        y18, _ = _columns(labels.long(), label_aus, -1)
        y18 = torch.where(has, y18, torch.full_like(y18, -1))  # AUs the model lacks: masked
        W, p_global, p_distinct = au_dfer_matrices(dataset, host, rows)
        pw = pos_weight_for(posw, emotion, p_global, p_distinct)
        l_au_dfer = au_dfer_au_loss(z18, y18, emotion, W.to(z.device), pw, scale=scale)
        l_expr = masked_ce(out_expr["expr"].float(), emotion, label_smoothing=label_smoothing)
    loss = (1 - ratio) * l_expr + ratio * l_au_dfer
    logs = {"loss_expr": l_expr.detach(), "loss_au_dfer": l_au_dfer.detach()}
    if au_batch_weight > 0:
        l_au = zero
        if out_au is not None and au_batch is not None:
            y = au_batch["au"]
            if "valid" in au_batch:
                y = torch.where(au_batch["valid"].bool().unsqueeze(-1), y, torch.full_like(y, -1))
            l_au = masked_bce(out_au["au"].float(), y)
        loss = loss + au_batch_weight * l_au
        logs["loss_au"] = l_au.detach()
    return {"loss": loss, **logs}
