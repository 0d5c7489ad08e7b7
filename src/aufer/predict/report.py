"""Plots of predictions and metrics.

Figures are built as :class:`matplotlib.figure.Figure` objects, without pyplot: importing this module does not
change the user's matplotlib backend, and nothing is left open in pyplot's figure manager. Each ``*_figure``
function returns the figure (to show in a notebook or inspect); each ``plot_*`` function writes it as PNG.
Warnings about glyphs missing from the font (e.g. in file names used as titles) are silenced.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from aufer.schema import AU_P_COLUMN, au_groups, au_label, au_parts, face_mask

__all__ = ["timeseries_figure", "time_edges", "still_figure", "predictions_figure", "confusion_figure",
           "history_figure", "plot_timeseries", "plot_still", "plot_predictions", "plot_confusion", "plot_history",
           "is_still", "MAX_STILL_FACES", "quiet_glyphs", "strongest_aus", "format_au_group", "AU_ROW_INCHES"]

#: at most this many faces get a row of bar charts in :func:`still_figure`
MAX_STILL_FACES = 8

_AU_P = AU_P_COLUMN  # AU01_p, and AU01L_p / AU01R_p for a left/right sub-AU

#: height of one AU row (heat-map row or bar) in inches, so that a model with many AUs (OpenGraphAU: 41) gets a
#: taller figure and its labels keep their size
AU_ROW_INCHES = 0.19


@contextlib.contextmanager
def quiet_glyphs() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph .* missing from", category=UserWarning)
        yield


def _save(fig: Figure, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    with quiet_glyphs():
        fig.savefig(out_png, dpi=110)
    return out_png


def time_edges(t: np.ndarray) -> np.ndarray:
    """Cell edges ``(n + 1,)`` around increasing sample times ``t`` ``(n,)``: halfway between neighbours, and
    half a neighbouring gap beyond the first and last sample (half a unit for a single sample). Cells are as
    wide as the real spacing, so a variable-frame-rate video keeps its real time axis."""
    t = np.asarray(t, dtype=float)
    if len(t) == 1:
        return np.array([t[0] - 0.5, t[0] + 0.5])
    mid = (t[1:] + t[:-1]) / 2
    return np.concatenate([[t[0] - (t[1] - t[0]) / 2], mid, [t[-1] + (t[-1] - t[-2]) / 2]])


def timeseries_figure(df: pd.DataFrame, title: str = "", note: str = "") -> Figure:
    """AU probabilities (heat map, one row per ``AUxx_p`` column) and emotion probabilities (one line per
    ``emo_`` column, with point markers so that a still image or a short input shows its values) over time,
    for the face seen in most frames; frames without that face are blank.

    Both panels share ONE time axis, the real one: ``timestamp_s`` of each frame (a variable-frame-rate video
    keeps its uneven spacing). Each heat-map cell is centred on its frame's timestamp and reaches halfway to the
    neighbouring frames (:func:`time_edges`). Stills (every timestamp NaN) use the frame index instead.

    Args:
        df: a table of :func:`aufer.predict.columns` (one row per frame and face).
        title: the figure title; ``note``: small grey text at the bottom (e.g. the model used).

    The heat map has one row per AU column, sub-AUs right after their AU (``AU01, AU01L, AU01R, AU02 …``, thin
    white lines between AUs), each labelled with its stem and FACS name; its height grows with the number of AUs
    (:data:`AU_ROW_INCHES` per row, at least 4.2 in), so 41 AUs (OpenGraphAU) keep readable labels. A model
    without emotion classes gets a low emotion panel that says so.

    Returns:
        The figure: axes 0 = AU heat map (a :class:`~matplotlib.collections.QuadMesh`, ``axes[0].collections[0]``,
        values ``(A, n_frames)``, cell edges ``(n_frames + 1,)`` on the x axis), 1 = emotion lines (x =
        timestamps), 2 = the colour bar when there are AU columns. Time axis in seconds, or the frame index for
        stills (NaN timestamps).
    """
    faces = df[face_mask(df)]
    main_id = faces["face_id"].mode().iloc[0] if len(faces) else -1
    frames = df.drop_duplicates("frame").set_index("frame")
    track = faces[faces["face_id"] == main_id].drop_duplicates("frame").set_index("frame").reindex(frames.index)
    t = frames["timestamp_s"].to_numpy(dtype=float)
    xlabel = "time (s)"
    if np.isnan(t).any():  # stills (or a table without times): the frame index
        t, xlabel = frames.index.to_numpy(dtype=float), "frame"
    order = np.argsort(t, kind="stable")  # frames in time order (decoders give them so; be safe)
    t, track = t[order], track.iloc[order]
    au_cols = _au_cols(df)
    emo_cols = [c for c in df.columns if c.startswith("emo_")]
    heat_h = max(4.2, AU_ROW_INCHES * len(au_cols))  # 12 AUs: the former 12 × 7 in figure; 41 AUs: 7.8 in
    emo_h = 2.8 if emo_cols else 1.2  # an AU-only model (OpenGraphAU, ME-GraphAU): a low panel that says so
    fig = Figure(figsize=(12, heat_h + emo_h), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [heat_h, emo_h]})
    if au_cols and len(t):
        m = np.ma.masked_invalid(track[au_cols].to_numpy(dtype=float).T)
        mesh = ax1.pcolormesh(time_edges(t), np.arange(len(au_cols) + 1) - 0.5, m, vmin=0, vmax=1,
                              cmap="viridis", shading="flat")
        ax1.set_ylim(len(au_cols) - 0.5, -0.5)
        ax1.set_yticks(range(len(au_cols)))
        ax1.set_yticklabels([_au_label(c) for c in au_cols], fontsize=7)
        for y in _group_edges(au_cols):  # an AU with left/right sub-AUs: its rows framed by thin lines
            ax1.axhline(y - 0.5, color="white", lw=0.8)
        fig.colorbar(mesh, ax=ax1, label="AU probability", pad=0.01)
    ax1.set_title(title or "AU and emotion time series")
    for c in emo_cols:
        ax2.plot(t, track[c].to_numpy(dtype=float), label=c[4:], lw=1.2, marker="o", ms=3 if len(t) > 50 else 5,
                 markevery=max(1, len(t) // 200))
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_ylabel("emotion probability")
    ax2.set_xlabel(xlabel)
    if emo_cols:
        ax2.legend(ncol=min(len(emo_cols), 7), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    else:
        ax2.set_yticks([])
        ax2.set_ylabel("")
        ax2.text(0.5, 0.5, "no emotion classes: this model gives AUs only", transform=ax2.transAxes,
                 ha="center", va="center", fontsize=9, color="dimgray")
    if note:  # laid out below the legend (a plain fig.text would sit on it)
        fig.supxlabel(note, x=0.01, ha="left", fontsize=7, color="dimgray")
    return fig


def plot_timeseries(df: pd.DataFrame, out_png: str | Path, title: str = "", note: str = "") -> Path:
    """Write :func:`timeseries_figure` as PNG; returns its path."""
    return _save(timeseries_figure(df, title, note), out_png)


def _au_cols(df: pd.DataFrame) -> list[str]:
    """The ``AUxx_p`` columns of ``df`` in column order, except that left/right sub-AUs follow their AU
    (:func:`aufer.schema.au_groups`): ``AU01_p, AU01L_p, AU01R_p, AU02_p, …``. Without sub-AUs: column order."""
    cols = [str(c) for c in df.columns if _AU_P.match(str(c))]
    return [f"{st}_p" for _, g in au_groups(c[:-2] for c in cols) for st in g]


def _group_edges(au_cols: Sequence[str]) -> list[int]:
    """Row indices (in :func:`_au_cols` order) where an AU with left/right sub-AUs starts or ends, inside the
    heat map: where :func:`timeseries_figure` draws a thin line so that the rows of one AU read as a block."""
    edges, k = set(), 0
    for _, g in au_groups(c[:-2] for c in au_cols):
        if len(g) > 1:
            edges.update((k, k + len(g)))
        k += len(g)
    return sorted(e for e in edges if 0 < e < len(au_cols))


def _au_label(col: str) -> str:
    return au_label(col[:-2])


def strongest_aus(values: Mapping[str, float], k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` strongest AUs of one face, a left/right pair counted with its AU.

    Args:
        values: AU column stem (``AU12``, ``AU12L``; :func:`aufer.schema.au_stem`) → probability; NaN is skipped.
        k: how many AUs (groups) to return, ≥ 0.

    Returns:
        Up to ``k`` groups, strongest first (a group's strength is its highest value; ties keep the column
        order), each a list of ``(stem, value)``: the whole-face AU first, then ``L``, then ``R``, those
        present and finite. Without sub-AUs each group is one ``(stem, value)``, the former ranking.
    """
    finite = {str(st): float(v) for st, v in values.items() if v is not None and np.isfinite(float(v))}
    groups = [[(st, finite[st]) for st in g if st in finite] for _, g in au_groups(finite)]
    groups = [g for g in groups if g]
    order = sorted(range(len(groups)), key=lambda i: -max(v for _, v in groups[i]))
    return [groups[i] for i in order[:k]]


def format_au_group(group: Sequence[tuple[str, float]], compact: bool = False) -> str:
    """One group of :func:`strongest_aus` as a short text: ``"AU12 0.81"``, ``"AU12 0.81 (L 0.84, R 0.77)"``,
    or ``"AU12 L 0.84, R 0.77"`` for sub-AUs without their whole-face AU. ``compact`` (the overlay's narrow
    lines): ``"AU12 0.81 (L.84 R.77)"``."""
    main = [(st, v) for st, v in group if not au_parts(st)[1]]
    sides = [(au_parts(st)[1], v) for st, v in group if au_parts(st)[1]]
    if compact:
        side_txt = " ".join(f"{sd}{v:.2f}".replace("0.", ".", 1) if v < 1 else f"{sd}{v:.2f}" for sd, v in sides)
    else:
        side_txt = ", ".join(f"{sd} {v:.2f}" for sd, v in sides)
    if main:
        st, v = main[0]
        return f"{st} {v:.2f}" + (f" ({side_txt})" if sides else "")
    return f"AU{au_parts(group[0][0])[0]:02d} {side_txt}"




def table_columns(df: pd.DataFrame, need: Sequence[str], top_aus: int) -> tuple[list[str], list[str]]:
    """Check a prediction table for ``need`` and ``top_aus`` ≥ 0; return its emotion and AU probability columns.

    Raises:
        ValueError: a column of ``need`` is missing, or ``top_aus`` < 0.
    """
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"prediction table lacks column(s) {missing}")
    if top_aus < 0:
        raise ValueError(f"top_aus must be >= 0, got {top_aus}")
    return [c for c in df.columns if str(c).startswith("emo_")], _au_cols(df)


def is_still(df: pd.DataFrame) -> bool:
    """True when ``df`` comes from a still image or a folder of stills: no ``timestamp_s`` column, or every
    ``timestamp_s`` is NaN (an empty table counts as stills)."""
    if "timestamp_s" not in df.columns:
        return True
    return bool(pd.to_numeric(df["timestamp_s"], errors="coerce").isna().all())


def still_figure(df: pd.DataFrame, title: str = "", note: str = "") -> Figure:
    """Horizontal bar charts of the AU probabilities (``AUxx_p``, left) and emotion probabilities (``emo_*``,
    right; the top emotion in orange) of each detected face of a still image or a folder of stills: one row of
    subplots per face, titled with the file name and ``face_id``, in frame order.

    At most :data:`MAX_STILL_FACES` faces are drawn; when there are more, the figure says how many were left
    out. Without any detected face the figure holds one empty axes saying so. Missing optional columns are
    tolerated (no AU columns: emotion bars only, and vice versa).

    Args:
        df: a table of :func:`aufer.predict.columns` (one row per frame and face); needs ``file`` and
            ``face_id`` for the labels (falls back to the row number).
        title: the figure title; ``note``: small grey text at the bottom (e.g. the model used).

    Returns:
        The figure. For face ``k`` (0-based), ``fig.axes[k * n_panels + j]`` is panel ``j`` (AU bars first
        when there are AU columns); bar ``i`` of a panel is ``ax.patches[i]`` with ``width`` = probability,
        in column order from top to bottom (left/right sub-AUs right after their AU). The height per face grows
        with the number of bars (:data:`AU_ROW_INCHES` each), so 41 AUs stay legible.
    """
    faces = df[face_mask(df)]
    au_cols, emo_cols = _au_cols(df), [c for c in df.columns if str(c).startswith("emo_")]
    panels = [cols for cols in (au_cols, emo_cols) if cols]
    shown = faces.iloc[:MAX_STILL_FACES]
    n_bars = max([len(c) for c in panels] or [1])
    row_h = max(1.8, AU_ROW_INCHES * n_bars + 0.7)
    if not len(shown) or not panels:
        fig = Figure(figsize=(9, 3), layout="constrained")
        ax = fig.subplots()
        ax.set_axis_off()
        n_img = df["frame"].nunique() if "frame" in df.columns else len(df)
        ax.text(0.5, 0.5, f"no face detected in {n_img} image(s)" if not len(shown) else
                "no AU or emotion columns to plot", ha="center", va="center", fontsize=12)
        fig.suptitle(title or "AU and emotion probabilities")
    else:
        fig = Figure(figsize=(5.5 * len(panels), row_h * len(shown) + 0.9), layout="constrained")
        axes = np.atleast_2d(fig.subplots(len(shown), len(panels), squeeze=False))
        for k, (_, row) in enumerate(shown.iterrows()):
            name = Path(str(row["file"])).name if "file" in row.index else f"row {k}"
            fid = row["face_id"] if "face_id" in row.index else "?"
            label = f"{name} \N{MIDDLE DOT} face {int(fid) if pd.notna(fid) else '?'}"
            for j, cols in enumerate(panels):
                ax = axes[k, j]
                vals = pd.to_numeric(row[cols], errors="coerce").to_numpy(dtype=float)
                is_emo = cols is emo_cols
                colors = ["tab:blue"] * len(cols)
                if is_emo and np.isfinite(vals).any():
                    colors[int(np.nanargmax(vals))] = "tab:orange"
                ax.barh(range(len(cols)), vals, color=colors, height=0.75)
                for i, v in enumerate(vals):
                    if np.isfinite(v):
                        ax.text(min(v, 1.0) + 0.01, i, f"{v:.2f}", va="center", fontsize=6)
                ax.set_yticks(range(len(cols)))
                ax.set_yticklabels([c[4:] for c in cols] if is_emo else [_au_label(c) for c in cols], fontsize=7)
                ax.set_ylim(len(cols) - 0.5, -0.5)
                ax.set_xlim(0, 1.12)
                ax.tick_params(axis="x", labelsize=7)
                ax.set_title(f"{label}: {'emotion' if is_emo else 'AU'} probabilities", fontsize=8)
        axes[-1, 0].set_xlabel("probability")
        more = (f"\nshowing the first {len(shown)} of {len(faces)} detected faces; the prediction table holds all"
                if len(faces) > len(shown) else "")
        fig.suptitle((title or "AU and emotion probabilities") + more)
    if note:  # laid out below the axes (a plain fig.text would sit on the x label)
        fig.supxlabel(note, x=0.01, ha="left", fontsize=7, color="dimgray")
    return fig


def predictions_figure(df: pd.DataFrame, title: str = "", note: str = "") -> Figure:
    """:func:`still_figure` when ``df`` comes from stills (:func:`is_still`: every ``timestamp_s`` NaN),
    :func:`timeseries_figure` otherwise (a video)."""
    return still_figure(df, title, note) if is_still(df) else timeseries_figure(df, title, note)


def plot_still(df: pd.DataFrame, out_png: str | Path, title: str = "", note: str = "") -> Path:
    """Write :func:`still_figure` as PNG; returns its path."""
    return _save(still_figure(df, title, note), out_png)


def plot_predictions(df: pd.DataFrame, out_png: str | Path, title: str = "", note: str = "") -> Path:
    """Write :func:`predictions_figure` (bars for stills, time series for a video) as PNG; returns its path."""
    return _save(predictions_figure(df, title, note), out_png)


def confusion_figure(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix ``(C, C)`` (rows = true class, columns = predicted), with the counts
    written in the cells.

    Raises:
        ValueError: if ``cm`` is not ``(len(classes), len(classes))``.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {len(classes)} classes")
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
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
    return fig


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], out_png: str | Path, title: str = "") -> Path:
    """Write :func:`confusion_figure` as PNG; returns its path."""
    return _save(confusion_figure(cm, classes, title), out_png)


def history_figure(history: list[dict]) -> Figure:
    """Training losses (columns ``loss*``, left) and validation scores (columns ``val_*``, right) per
    ``epoch``, one line each, from a list of per-epoch dicts."""
    df = pd.DataFrame(history)
    fig = Figure(figsize=(11, 4), layout="constrained")
    a, b = fig.subplots(1, 2)
    for ax, prefix, name in ((a, "loss", "training loss"), (b, "val_", "validation (model selection)")):
        cols = [c for c in df.columns if c.startswith(prefix)]
        for c in cols:
            ax.plot(df["epoch"], df[c], label=c, marker="o" if len(df) < 30 else None)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        if cols:
            ax.legend(fontsize=8)
    return fig


def plot_history(history: list[dict], out_png: str | Path) -> Path:
    """Write :func:`history_figure` as PNG; returns its path."""
    return _save(history_figure(history), out_png)
