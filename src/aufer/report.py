"""Plots and tables of predictions and metrics (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from aufer import vocab  # noqa: E402

__all__ = ["plot_timeseries", "plot_confusion", "plot_history"]


def plot_timeseries(df: pd.DataFrame, out_png: str | Path, title: str = "", note: str = "") -> Path:
    """AU probabilities (heat map, one row per AU) and emotion probabilities (lines) over time for the face
    seen in most frames; frames without a face are left blank. Time axis in seconds (frame index for stills)."""
    out_png = Path(out_png)
    faces = df[df["face_detected"].astype(bool)]
    main_id = faces["face_id"].mode().iloc[0] if len(faces) else -1
    frames = df.drop_duplicates("frame").set_index("frame")
    track = faces[faces["face_id"] == main_id].drop_duplicates("frame").set_index("frame").reindex(frames.index)
    t = frames["timestamp_s"].to_numpy(dtype=float)
    xlabel = "time (s)"
    if np.isnan(t).all():
        t, xlabel = frames.index.to_numpy(dtype=float), "frame"
    au_cols = [c for c in df.columns if c.startswith("AU") and c.endswith("_p")]
    emo_cols = [c for c in df.columns if c.startswith("emo_")]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    if au_cols:
        m = track[au_cols].to_numpy(dtype=float).T
        ext = [t[0], t[-1] if len(t) > 1 else t[0] + 1, len(au_cols) - 0.5, -0.5]
        im = ax1.imshow(m, aspect="auto", interpolation="nearest", extent=ext, vmin=0, vmax=1, cmap="viridis")
        ax1.set_yticks(range(len(au_cols)))
        ax1.set_yticklabels([f"{c[:-2]} {vocab.au_name(int(c[2:-2]))}" for c in au_cols], fontsize=7)
        fig.colorbar(im, ax=ax1, label="AU probability", pad=0.01)
    ax1.set_title(title or "AU and emotion time series")
    for c in emo_cols:
        ax2.plot(t, track[c].to_numpy(dtype=float), label=c[4:], lw=1.2)
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_ylabel("emotion probability")
    ax2.set_xlabel(xlabel)
    ax2.legend(ncol=min(len(emo_cols), 7), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="dimgray")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], out_png: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows = true class) with counts."""
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def plot_history(history: list[dict], out_png: str | Path) -> Path:
    """Training losses and validation scores per epoch."""
    df = pd.DataFrame(history)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for c in [c for c in df.columns if c.startswith("loss")]:
        a.plot(df["epoch"], df[c], label=c)
    a.set_xlabel("epoch")
    a.set_title("training loss")
    a.legend()
    for c in [c for c in df.columns if c.startswith("val_")]:
        b.plot(df["epoch"], df[c], label=c)
    b.set_xlabel("epoch")
    b.set_title("validation (model selection)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
