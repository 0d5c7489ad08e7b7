"""SSM's released AU evaluator (IEEE TAFFC 2026, official code @ ``978d79a``), re-implemented as an aufer option.

**Every AU figure here is "test-tuned"** (``"label": "test-tuned"``; ``"val-tuned"`` on the validation split):
one global probability threshold and one global temporal vote are chosen to maximise the mean F1 *on the very
labels they are then scored on* (the official ``"selection_scope": "current_evaluation_labels"``). It is not a
held-out number; aufer's standard figure is ``au_f1_mean`` at threshold 0.5 in ``metrics_<split>_<ckpt>.json``.

What the official code does (file:line of ``978d79a``; methods.md §1.6, §3.4):

* Segments (``ssm/data/bp4d.py`` L477-508, L530-566; ``disfa.py`` L331-355): the test frames of one sequence,
  split wherever the frame number does not step by +1; every frame once ("complete_frames"), padding masked
  out, and the segments rebuilt in frame order (``ssm/evaluation/metrics.py`` L143-199).
* Vote (``adaptive_vote.py`` L362-403): ``b = prob >= threshold``; the window of frame t is t-K..t+K of its own
  segment, edge-padded (the first/last frame repeated, never a neighbouring segment); the frame is positive
  when at least ``r`` of the ``W = 2K+1`` window entries are (``r = ceil(p·W)``, L108-112). K = 0, r = 1 is
  plain thresholding.
* Search (``metrics.py`` L201-225, ``adaptive_vote.py`` L213-359; config ``"evaluation"`` of
  ``configs/bp4d_dfew.json`` L254-285): thresholds 0.01..0.99 step 0.01, K = 0..7, and p over every fraction
  r'/(2K'+1) of the K range, which for each K yields every r = 1..W ("search_all_vote_requirements"). The
  score of a candidate is the *mean over AUs* of the per-AU F1 = 2TP/(2TP+FP+FN) (0 where undefined), TP/FP/FN
  summed over all frames of all segments; the one (threshold, K, r) with the highest mean is kept, global
  across AUs. Ties (|Δ| ≤ 1e-12): per (K, r) the threshold nearest 0.5 (then the lower); across (K, r) in the
  order K ↑, r ↑, a later one replaces the kept one only if its score is higher by more than 1e-12 or it ties
  with a smaller key (|K−3|, |p−0.3|, |thr−0.5|, K, p, thr) (L194-210, L298-329). The reported p of a rule
  is, of the searched p that give the same r, the one nearest 0.3 (then the lower) (L143-156).
* AUC (``metrics.py`` L231-245): per AU ``sklearn.metrics.roc_auc_score`` of the raw (un-voted) sigmoid
  probabilities over all frames, NaN for a one-class AU, mean by ``nanmean``.
* Expressions (``metrics.py`` L347-374): argmax; WAR = correct / clips, UAR = mean recall over the classes
  present, both in % — no tuning; they equal aufer's :func:`aufer.metrics.uar` / ``war`` (checked below).
* Epochs (``ssm/runner.py`` L700-771, L793-820): after every epoch both tasks are scored on the **test** split;
  the expression checkpoint is the epoch of best test UAR ("checkpoint_selection_metric":
  "emotion_validation_uar" names the test loader), the AU figure is the maximum over epochs of the test-tuned
  mean F1, and the AUC figure the maximum over epochs of the AUC, each at its own epoch.

**Best-epoch selection is not implemented here**: it needs test predictions of every epoch, which aufer does not
keep. A user reproduces it with ``select.mode: test`` (the engine then selects the checkpoint on the test
split and labels it "test-selected"); that checkpoint scored by :func:`evaluate_released` gives the released
protocol (test-selected + test-tuned). Differences that remain: aufer selects by ``select.metric`` at
threshold 0.5 (not by the tuned F1), with one epoch for both tasks (SSM: one per task, and one more for AUC).

Deviations, all deliberate:

1. Labels −1 (unknown): the official evaluator raises on any label not 0/1 (``adaptive_vote.py`` L91-94; the
   datasets reject such rows, ``bp4d.py`` L315-323). ``unknown="mask"`` (default) keeps those frames in the
   vote and leaves the (frame, AU) out of TP/FP/FN and AUC; ``unknown="drop"`` removes every frame with an
   unknown label and splits its segment there, as the official datasets' ``skip_invalid`` does.
2. AUC by :func:`aufer.metrics.au_auc` (rank-sum, ties half credit), which equals ``roc_auc_score``; no
   scikit-learn at run time. Probabilities come from aufer's Parquet tables (float32), not recomputed.
3. Expression clips labelled −1 are left out (the official code raises). Everything is a fraction, not %.
4. Several predictions of one frame (overlapping test windows, ``stride < length``) are refused as the official
   code does (``metrics.py`` L157-161); the released protocol uses non-overlapping windows.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from aufer import metrics
from aufer.datasets.sampling import runs
from aufer.training.registry import Evaluator, register_evaluator

__all__ = ["THRESHOLDS", "HALF_WINDOWS", "TIE_REFERENCE", "temporal_vote", "released_au_search",
           "frame_segments", "released_metrics_from_predictions", "released_expr_metrics", "evaluate_released",
           "released_summary"]

THRESHOLDS = np.arange(1, 100) / 100.0  # 0.01..0.99; i/100 is the double the official round(..., 12) yields
HALF_WINDOWS = tuple(range(8))  # K = 0..7
TIE_REFERENCE = (3, 0.3, 0.5)  # (K, p, threshold) preferred on exact ties
_EPS = 1e-12
NOTE = ("threshold and temporal vote (K, required votes) were chosen to maximise the mean F1 on the same labels "
        "they are scored on (SSM's released evaluator, selection_scope current_evaluation_labels): not a held-out "
        "figure; aufer's standard figure is au_f1_mean at threshold 0.5 without voting")


def _bounds(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last row ``(N,)``, ``(N,)`` of each row's segment; a segment must be one contiguous block of
    rows in temporal order."""
    seg = np.asarray(segments)
    if seg.ndim != 1 or len(seg) == 0:
        raise ValueError("segments must be a non-empty (N,) array")
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    if len(starts) != len(np.unique(seg)):
        raise ValueError("each segment must be one contiguous block of rows (rows sorted by segment, then frame)")
    lengths = np.diff(np.r_[starts, len(seg)])
    return np.repeat(starts, lengths), np.repeat(starts + lengths - 1, lengths)


def _windows(values: np.ndarray, first: np.ndarray, last: np.ndarray, k: int) -> np.ndarray:
    """``(N, 2k+1, A)`` window of each row inside its segment, edge-padded (index clipped to the segment)."""
    idx = np.arange(len(values))[:, None] + np.arange(-k, k + 1)[None, :]
    return values[np.clip(idx, first[:, None], last[:, None])]


def _required(k: int, p: float) -> int:
    return int(math.ceil(p * (2 * k + 1) - _EPS))


def temporal_vote(prob: np.ndarray, segments: np.ndarray, half_window: int, required_votes: int | None = None, *,
                  threshold: float = 0.5, p: float | None = None) -> np.ndarray:
    """SSM's segment-safe temporal vote (``adaptive_vote.py`` L362-403): binary predictions ``(N, A)`` uint8.

    Args:
        prob: ``(N, A)`` probabilities, rows of a segment contiguous and in frame order.
        segments: ``(N,)`` segment id of each row; windows never cross a segment boundary (edge padding).
        half_window: K ≥ 0; the window has ``W = 2K+1`` frames.
        required_votes: r in 1..W positive frames needed; or give ``p`` (r = ceil(p·W)). Default: the
            majority, r = K+1.
        threshold: a frame votes positive when ``prob >= threshold``.
    """
    k = int(half_window)
    if k < 0:
        raise ValueError("half_window must be >= 0")
    w = 2 * k + 1
    r = int(required_votes) if required_votes is not None else _required(k, p) if p is not None else (w + 1) // 2
    if not 1 <= r <= w:
        raise ValueError(f"required_votes must be in [1, {w}]")
    first, last = _bounds(segments)
    binary = np.asarray(prob, np.float64) >= threshold
    return (_windows(binary, first, last, k).sum(1) >= r).astype(np.uint8)


def _rules(half_windows: Sequence[int], ref_p: float) -> list[tuple[int, int, float]]:
    """(K, r, reported p) in search order K ↑, r ↑; p candidates are every r'/(2K'+1) of the K range
    (``metrics.py`` L47-57), the reported one nearest ``ref_p`` among those giving r (``adaptive_vote.py``
    L143-156)."""
    ks = sorted({int(k) for k in half_windows})
    if not ks or ks[0] < 0:
        raise ValueError("half_windows must be non-negative integers")
    cands = sorted({r / (2 * k + 1) for k in ks for r in range(1, 2 * k + 2)})
    out = []
    for k in ks:
        groups: dict[int, list[float]] = {}
        for p in cands:
            groups.setdefault(_required(k, p), []).append(p)
        out += [(k, r, min(ps, key=lambda q: (abs(q - ref_p), q))) for r, ps in sorted(groups.items())]
    return out


def _f1_grid(level: np.ndarray, pos: np.ndarray, neg: np.ndarray, n_thr: int) -> np.ndarray:
    """Per-AU F1 ``(T, A)`` at every threshold index j from ``level`` ``(N, A)`` = number of thresholds a frame
    passes (positive at j iff ``level > j``); ``pos``/``neg`` ``(N, A)`` the known positive/negative labels."""
    a = level.shape[1]
    code = level.astype(np.int64) + np.arange(a) * (n_thr + 1)
    size = a * (n_thr + 1)
    hp = np.bincount(code[pos], minlength=size).reshape(a, n_thr + 1)
    hn = np.bincount(code[neg], minlength=size).reshape(a, n_thr + 1)
    tp = np.cumsum(hp[:, ::-1], 1)[:, ::-1][:, 1:]
    fp = np.cumsum(hn[:, ::-1], 1)[:, ::-1][:, 1:]
    fn = pos.sum(0)[:, None] - tp
    den = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, den, out=np.zeros(den.shape), where=den > 0)
    return np.ascontiguousarray(f1.T)


def _nan_none(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def released_au_search(prob: np.ndarray, labels: np.ndarray, segments: np.ndarray, *,
                       aus: Sequence[str] | None = None, thresholds: Sequence[float] | None = None,
                       half_windows: Sequence[int] = HALF_WINDOWS, tie_reference: tuple = TIE_REFERENCE,
                       unknown: str = "mask", label: str = "test-tuned") -> dict:
    """SSM's joint search of a global threshold and temporal vote on the given labels (see the module text).

    Args:
        prob: ``(N, A)`` frame probabilities (sigmoid outputs), rows of a segment contiguous in frame order.
        labels: ``(N, A)`` 1/0, −1 unknown (see ``unknown``).
        segments: ``(N,)`` id of each row's continuous segment (:func:`frame_segments`).
        aus: A names for the per-AU entries (default ``AU1``.. by column).
        thresholds, half_windows, tie_reference: the official grid (0.01..0.99, K 0..7, (3, 0.3, 0.5)).
        unknown: ``"mask"`` or ``"drop"`` (module text, deviation 1).
        label: ``"test-tuned"`` on test labels; copied into the result.

    Returns:
        ``label``, ``note``, ``au_f1`` (per AU), ``au_f1_mean`` (the maximised mean), ``threshold``,
        ``half_window`` K, ``window`` W, ``required_votes`` r, ``p`` and its equivalence interval, ``au_auc``,
        ``au_auc_mean``, the threshold-0.5 no-vote point of the same labels (``au_f1_mean_at_0.5_no_vote``),
        frame/segment counts.
    """
    p = np.asarray(prob, np.float64)
    y = np.asarray(labels)
    seg = np.asarray(segments)
    if p.ndim != 2 or y.shape != p.shape or seg.shape != (len(p),):
        raise ValueError(f"prob (N, A), labels (N, A), segments (N,) expected; got {p.shape}, {y.shape}, {seg.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be finite and in [0, 1]")
    if unknown not in ("mask", "drop"):
        raise ValueError("unknown must be 'mask' or 'drop'")
    _bounds(seg)
    if unknown == "drop":
        keep = ((y == 0) | (y == 1)).all(1)
        seg = np.cumsum(np.r_[True, (seg[1:] != seg[:-1]) | ~keep[:-1]])  # a dropped row ends its segment
        p, y, seg = p[keep], y[keep], seg[keep]
        if not len(p):
            raise ValueError("no frame has every AU label known")
    aus = list(aus) if aus is not None else [f"AU{j + 1}" for j in range(p.shape[1])]
    thr = np.asarray(THRESHOLDS if thresholds is None else sorted(set(float(t) for t in thresholds)), np.float64)
    ref_k, ref_p, ref_t = int(tie_reference[0]), float(tie_reference[1]), float(tie_reference[2])
    first, last = _bounds(seg)
    pos, neg = y == 1, y == 0
    level = np.searchsorted(thr, p, side="right").astype(np.uint8 if len(thr) < 255 else np.int32)

    best = None  # (score, key, K, r, p, threshold index, per-AU F1)
    rules = _rules(half_windows, ref_p)
    for k in sorted({r[0] for r in rules}):
        ordered = np.sort(_windows(level, first, last, k), axis=1)  # (N, W, A) ascending per window
        w = 2 * k + 1
        for _, r, pr in (x for x in rules if x[0] == k):
            grid = _f1_grid(ordered[:, w - r], pos, neg, len(thr))  # r-th largest passes ⇔ ≥ r votes
            macro = grid.mean(axis=1)
            top = float(macro.max())
            ti = min(np.flatnonzero(np.abs(macro - top) <= _EPS), key=lambda i: (abs(thr[i] - ref_t), thr[i]))
            key = (abs(k - ref_k), abs(pr - ref_p), abs(float(thr[ti]) - ref_t), k, pr, float(thr[ti]))
            if best is None or top > best[0] + _EPS or (abs(top - best[0]) <= _EPS and key < best[1]):
                best = (top, key, k, r, pr, int(ti), grid[ti].copy())
    score, _, k, r, pr, ti, per_au = best
    w = 2 * k + 1
    base = metrics.f1_from_counts(metrics.au_counts(p, y, 0.5))
    auc = metrics.au_auc(p, y)
    return {"label": label, "note": NOTE,
            "protocol": "SSM 978d79a: global threshold + segment-safe temporal vote, max mean F1 on these labels",
            "au_f1": {a: float(v) for a, v in zip(aus, per_au)}, "au_f1_mean": float(score),
            "threshold": float(thr[ti]), "half_window": int(k), "window": int(w), "required_votes": int(r),
            "p": float(pr), "p_interval": [(r - 1) / w, r / w],
            "au_auc": {a: _nan_none(v) for a, v in zip(aus, auc)},
            "au_auc_mean": _nan_none(np.nanmean(auc)) if np.isfinite(auc).any() else None,
            "au_f1_at_0.5_no_vote": {a: float(np.nan_to_num(v)) for a, v in zip(aus, base)},
            "au_f1_mean_at_0.5_no_vote": metrics.mean_f1(base, "zero"),
            "unknown_labels": unknown, "n_frames": int(len(p)), "n_segments": int(len(np.unique(first))),
            "n_thresholds": int(len(thr)), "n_vote_rules": len(rules),
            "tie_break": f"max mean F1, then nearest (K, p, threshold) to ({ref_k}, {ref_p:g}, {ref_t:g})"}


def frame_segments(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order ``(N,)`` (positional, by sequence then frame) and segment id ``(N,)`` of each ordered row: a
    segment is a maximal run of consecutive frame numbers within one ``sequence`` (``bp4d.py`` L477-508).

    Raises:
        ValueError: a (sequence, frame) pair occurs twice (overlapping test windows).
    """
    try:
        parts = runs(table)
    except ValueError as e:
        raise ValueError(f"{e}: the released protocol scores every frame once (test windows with stride = "
                         "length)") from e
    if not parts:
        raise ValueError("no frames")
    return np.concatenate(parts), np.repeat(np.arange(len(parts)), [len(x) for x in parts])


def released_metrics_from_predictions(frames_parquet_path: str | Path, *, label: str = "test-tuned",
                                      **search) -> dict:
    """:func:`released_au_search` on an aufer per-frame table (``<split>[_<ckpt>]_au_frames.parquet``: columns
    ``sequence``, ``frame``, ``subject``, ``AUxx_p``, ``AUxx``; see :mod:`aufer.engine.tables`)."""
    df = pd.read_parquet(frames_parquet_path)
    codes = [c[:-2] for c in df.columns if c.endswith("_p")]
    if not codes or any(c not in df.columns for c in codes):
        raise ValueError(f"{frames_parquet_path}: no AUxx_p / AUxx column pairs")
    order, seg = frame_segments(df)
    df = df.iloc[order]
    out = released_au_search(df[[f"{c}_p" for c in codes]].to_numpy(), df[codes].to_numpy(), seg,
                             aus=[f"AU{int(c[2:])}" for c in codes], label=label, **search)
    out["n_sequences"] = int(df["sequence"].nunique())
    out["source"] = str(frames_parquet_path)
    return out


def released_expr_metrics(clips_parquet_path: str | Path) -> dict:
    """UAR/WAR of an aufer per-clip table computed as SSM's ``evaluate_emotions`` does (``metrics.py``
    L347-374, in % there, fractions here), and whether they equal aufer's ``metrics.uar`` / ``war``."""
    df = pd.read_parquet(clips_parquet_path)
    n = sum(c.startswith("emo_") for c in df.columns)
    y, pred = df["label"].to_numpy(np.int64), df["pred"].to_numpy(np.int64)
    keep = y >= 0
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y[keep], pred[keep]), 1)
    support = cm.sum(1)
    recall = np.divide(100.0 * np.diag(cm), support, out=np.zeros(n), where=support > 0)
    uar_ssm = float(recall[support > 0].mean()) / 100 if keep.any() else float("nan")
    war_ssm = 100.0 * int(np.trace(cm)) / int(keep.sum()) / 100 if keep.any() else float("nan")
    uar_a, war_a = metrics.uar(pred, y, n), metrics.war(pred, y)
    return {"label": "untuned (argmax)", "uar": uar_ssm, "war": war_ssm, "uar_aufer": uar_a, "war_aufer": war_a,
            "equal_to_aufer": bool(abs(uar_ssm - uar_a) <= 1e-12 and abs(war_ssm - war_a) <= 1e-12),
            "n_clips": int(keep.sum()), "n_unlabelled_clips": int((~keep).sum()), "source": str(clips_parquet_path)}


def _selection(run_dir: Path, split: str, tag: str, checkpoint: str) -> str | None:
    for f, get in ((run_dir / f"metrics_{split}{tag}.json", lambda m: m.get("selection")),
                   (run_dir / "metrics.json", lambda m: m["selection"]["label"] if checkpoint == "best" else None)):
        if f.is_file():
            try:
                return get(json.loads(f.read_text()))
            except (ValueError, KeyError, TypeError):
                pass
    return None


def evaluate_released(run_dir: str | Path, split: str = "test", checkpoint: str = "best", *, flip: bool = False,
                      unknown: str = "mask") -> dict:
    """The released SSM figures of a run from its prediction tables; writes
    ``metrics_<split>_<checkpoint>[_flip]_released.json`` atomically and returns its content.

    Reads ``predictions/<split>_<checkpoint>[_flip]_{au_frames,expr_clips}.parquet``, written by
    :func:`aufer.engine.runner.evaluate_run` (``aufer evaluate``); for test/best without flip, ``fit``'s
    ``predictions/test_{au_frames,expr_clips}.parquet`` are used when those are absent.

    Raises:
        FileNotFoundError: no prediction table for that split/checkpoint (run ``evaluate_run`` first).
    """
    run_dir = Path(run_dir)
    if split not in ("val", "test") or checkpoint not in ("best", "last"):
        raise ValueError("split is val or test, checkpoint is best or last")
    tag = f"_{checkpoint}" + ("_flip" if flip else "")
    pdir = run_dir / "predictions"

    def table(kind: str) -> Path | None:
        for name in [f"{split}{tag}_{kind}.parquet"] + (
                [f"test_{kind}.parquet"] if (split, checkpoint, flip) == ("test", "best", False) else []):
            if (pdir / name).is_file():
                return pdir / name
        return None

    au_path, expr_path = table("au_frames"), table("expr_clips")
    if au_path is None and expr_path is None:
        raise FileNotFoundError(
            f"{pdir} has no {split}{tag}_au_frames.parquet / _expr_clips.parquet: run aufer.engine.runner."
            f"evaluate_run({str(run_dir)!r}, split={split!r}, checkpoint={checkpoint!r}, flip={flip}) first "
            f"(`aufer evaluate {run_dir} --split {split} --checkpoint {checkpoint}{' --flip' if flip else ''}`)")
    lab = "test-tuned" if split == "test" else "val-tuned"
    selection = _selection(run_dir, split, tag, checkpoint)
    out = {"label": lab, "note": NOTE, "run": str(run_dir), "split": split, "checkpoint": checkpoint,
           "flip_tta": flip, "selection": selection,
           "released_protocol": ("test-selected + test-tuned: the released SSM protocol (best epoch by the test "
                                 "split, select.mode: test)") if selection == "test-selected" and split == "test"
           else "threshold and vote tuned on the scored labels; the checkpoint was not selected on test",
           "au": released_metrics_from_predictions(au_path, label=lab, unknown=unknown) if au_path else None,
           "expr": released_expr_metrics(expr_path) if expr_path else None}
    path = run_dir / f"metrics_{split}{tag}_released.json"
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, path)
    return out


def released_summary(result: dict) -> str:
    """The one line ``aufer evaluate RUN --released ssm`` prints for a result of :func:`evaluate_released`."""
    a, e = result["au"] or {}, result["expr"] or {}
    parts = [f"au_f1_mean {a['au_f1_mean']:.3f} (threshold {a['threshold']:.2f}, K {a['half_window']}, "
             f"votes {a['required_votes']}/{a['window']}; 0.5 without vote: {a['au_f1_mean_at_0.5_no_vote']:.3f})"] if a else []
    if a.get("au_auc_mean") is not None:
        parts.append(f"au_auc_mean {a['au_auc_mean']:.3f}")
    parts += [f"{k} {e[k]:.3f}" for k in ("uar", "war") if e.get(k) is not None]
    return (f"{result['run']} {result['split']} ({result['checkpoint']}) SSM released evaluator, {result['label']} "
            "(tuned on the scored labels): " + ", ".join(parts))


register_evaluator("ssm", Evaluator(
    evaluate=lambda run_dir, split, checkpoint, flip: evaluate_released(run_dir, split=split, checkpoint=checkpoint,
                                                                        flip=flip),
    summary=released_summary, label="test-tuned"))
