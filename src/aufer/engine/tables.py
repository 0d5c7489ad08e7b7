"""Prediction tables (Parquet) from which every metric can be recomputed, and the metrics recomputed from them.

* ``<split>_au_frames.parquet`` — one row per evaluated AU frame (padding left out): ``sequence``, ``frame``,
  ``subject``, then per AU ``AUxx_p`` (probability) and ``AUxx`` (label: 1, 0, −1 unknown).
* ``<split>_expr_clips.parquet`` — one row per expression clip: ``clip``, ``subject``, ``label`` (class
  index, −1 unknown), ``pred`` (top class), then ``emo_<name>`` probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from aufer import metrics, vocab

__all__ = ["au_frame_table", "expr_clip_table", "write_table", "metrics_from_tables"]


def au_frame_table(pred: dict[str, np.ndarray], dataset, aus: Sequence[int]) -> pd.DataFrame:
    """Per-frame AU probabilities and labels of an AU window dataset's predictions (``rows`` index its records)."""
    valid = pred["valid"].astype(bool)
    rows = pred["rows"][valid]
    t = dataset.records.table.iloc[rows]
    df = pd.DataFrame({"sequence": t["sequence"].astype(str).to_numpy(), "frame": t["frame"].to_numpy(),
                       "subject": t["subject"].astype(str).to_numpy()})
    p, y = pred["p_au"][valid], pred["au"][valid]
    for j, a in enumerate(aus):
        df[f"{vocab.au_code(a)}_p"] = p[:, j].astype(np.float32)
        df[vocab.au_code(a)] = y[:, j].astype(np.int8)
    return df.sort_values(["sequence", "frame"], kind="stable").reset_index(drop=True)


def expr_clip_table(pred: dict[str, np.ndarray], dataset, emotions: Sequence[str]) -> pd.DataFrame:
    """Per-clip expression probabilities, top class and label of an expression clip dataset's predictions."""
    t = dataset.records.table.iloc[pred["index"]]
    df = pd.DataFrame({"clip": t["clip"].astype(str).to_numpy(), "subject": t["subject"].astype(str).to_numpy(),
                       "label": pred["expr"].astype(np.int64), "pred": pred["p_expr"].argmax(1).astype(np.int64)})
    for j, e in enumerate(emotions):
        df[f"emo_{e}"] = pred["p_expr"][:, j].astype(np.float32)
    return df.sort_values("clip", kind="stable").reset_index(drop=True)


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as Parquet atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def metrics_from_tables(au: pd.DataFrame | None = None, expr: pd.DataFrame | None = None, *, threshold: float = 0.5,
                        f1_policy: str = "zero", emotions: Sequence[str] | None = None) -> dict:
    """Per-AU F1, mean F1, AUC, UAR, WAR and confusion recomputed from the prediction tables alone."""
    out: dict = {}
    if au is not None and len(au):
        codes = [c[:-2] for c in au.columns if c.endswith("_p")]
        p = au[[f"{c}_p" for c in codes]].to_numpy()
        y = au[codes].to_numpy()
        f1 = metrics.au_f1(p, y, threshold)
        out["au_f1"] = {f"AU{int(c[2:])}": (None if np.isnan(v) else float(v)) for c, v in zip(codes, f1)}
        out["au_f1_mean"] = metrics.mean_f1(f1, f1_policy)
        auc = metrics.au_auc(p, y)
        out["au_auc_mean"] = float(np.nanmean(auc)) if np.isfinite(auc).any() else None
    if expr is not None and len(expr):
        names = emotions or [c[4:] for c in expr.columns if c.startswith("emo_")]
        cm = metrics.confusion(expr["pred"].to_numpy(), expr["label"].to_numpy(), len(names))
        if cm.sum():
            out["uar"] = metrics.uar_from_confusion(cm)
            out["war"] = metrics.war_from_confusion(cm)
            out["confusion"] = cm.tolist()
    return out
