"""Frame sampling for clips: consecutive-frame windows over AU sequences and TSN segment sampling of DFER clips.

numpy only. Sources (methods.md §1.3, §3.3; protocols.json ``clip_sampling``):

* AU sequences: 16 consecutive labelled frames, non-overlapping at test time, never crossing a gap in frame
  numbers (SSM ``ssm/data/bp4d.py``, ``disfa.py``).
* DFER clips: 16 frames by TSN segment sampling, a random offset in each of 16 equal segments for training,
  segment centres for testing (SSM ``ssm/data/emotion.py``, AU-DFER ``dataset_DFEW.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["runs", "au_windows", "tsn_indices"]


def runs(table: pd.DataFrame) -> list[np.ndarray]:
    """Maximal runs of consecutive frame numbers within each sequence.

    Rows are ordered by (``sequence``, ``frame``) internally; a change of ``sequence`` or a step in ``frame``
    other than +1 starts a new run.

    Args:
        table: a DataFrame with ``sequence`` and ``frame`` columns, rows in any order (e.g.
            :attr:`FrameRecords.table <aufer.readers.records.FrameRecords>`).

    Returns:
        one int64 array per run, holding *positional* row indices into ``table`` (``table.iloc``), in frame
        order; runs ordered by sequence name, then frame.

    Raises:
        ValueError: a (sequence, frame) pair occurs twice, or a column is missing.
    """
    missing = [c for c in ("sequence", "frame") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    if len(table) == 0:
        return []
    seq_codes, _ = pd.factorize(table["sequence"].astype(str), sort=True)
    frames = table["frame"].to_numpy(np.int64)
    order = np.lexsort((frames, seq_codes))
    s, f = seq_codes[order], frames[order]
    same_seq = s[1:] == s[:-1]
    if np.any(same_seq & (f[1:] == f[:-1])):
        i = int(np.flatnonzero(same_seq & (f[1:] == f[:-1]))[0])
        raise ValueError(f"frame {f[i]} of sequence {table['sequence'].iloc[order[i]]!r} appears twice")
    breaks = np.flatnonzero(~same_seq | (f[1:] != f[:-1] + 1)) + 1
    return [r.astype(np.int64) for r in np.split(order, breaks)]


def _pad(rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.full(length, rows[-1], dtype=np.int64)
    idx[: len(rows)] = rows
    return idx, np.arange(length) < len(rows)


def au_windows(table: pd.DataFrame, length: int = 16, train: bool = True,
               rng: np.random.Generator | int | None = None,
               stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``length`` consecutive labelled frames that never cross a gap (see :func:`runs`), their starts
    ``stride`` frames apart (mmaction's ``clip_len``/``stride``; default ``stride = length``: SSM's 16 consecutive
    frames with stride 16, non-overlapping).

    * Test (``train=False``): each run is cut into windows starting at ``0, stride, 2·stride, …`` while a full
      window fits, plus one padded tail window while frames are left uncovered. With the default stride every
      row is in exactly one window at a valid position; with ``stride < length`` windows overlap (sliding-window
      inference) and every row is in at least one. A run shorter than ``length`` gives one padded window.
    * Training: a run of ``L > length`` frames gets windows starting at
      ``clip(arange(o - stride, L, stride), 0, L - length)`` (duplicates dropped), with one random phase
      ``o ∈ [0, stride)`` per run drawn from ``rng``: every window lies inside the run, together they cover every
      frame (about ``ceil(L/stride)`` windows; the first and last possibly overlapping their neighbour more than
      the others), and the alignment changes from epoch to epoch. A run of ``L ≤ length`` frames gives one
      (padded) window. Windows come in run order; shuffle them in the loader.

    Padding repeats the index of the window's last valid frame and is marked ``valid=False``.

    Args:
        table: DataFrame with ``sequence`` and ``frame`` columns, rows in any order.
        length: frames per window (≥ 1).
        train: training (random alignment) or test (fixed) windows.
        rng: a ``numpy.random.Generator``, a seed, or ``None`` (fresh entropy); unused at test time.
        stride: frames between the starts of consecutive windows, ``1 ≤ stride ≤ length`` (default ``length``).

    Returns:
        ``index`` ``(W, length)`` int64 positional row indices into ``table`` and ``valid`` ``(W, length)`` bool.

    Raises:
        ValueError: ``length < 1``, ``stride`` outside ``[1, length]``, or as :func:`runs`.
    """
    if int(length) < 1:
        raise ValueError(f"window length must be at least 1, not {length}")
    length = int(length)
    stride = length if stride is None else int(stride)
    if not 1 <= stride <= length:
        raise ValueError(f"stride must be in [1, length={length}], not {stride}")
    gen = np.random.default_rng(rng) if train else None
    index, valid = [], []
    for run in runs(table):
        n = len(run)
        if train and n > length:
            o = int(gen.integers(0, stride))
            starts = np.unique(np.clip(np.arange(o - stride, n, stride), 0, n - length))
        else:
            starts = np.arange(0, max(n - length, 0) + 1, stride)
            if starts[-1] + length < n:  # frames left after the last full window: one padded tail window
                starts = np.append(starts, starts[-1] + stride)
        for s in starts:
            i, v = _pad(run[s: s + length], length)
            index.append(i)
            valid.append(v)
    if not index:
        return np.zeros((0, length), np.int64), np.zeros((0, length), bool)
    return np.stack(index), np.stack(valid)


def tsn_indices(n_frames: int, num_segments: int = 16, train: bool = False,
                rng: np.random.Generator | int | None = None, segment_frames: int = 1) -> np.ndarray:
    """TSN segment sampling of one frame per segment (methods.md §1.3).

    ``[0, n_frames)`` is split into ``num_segments`` equal (real-valued) segments
    ``[k·n/S, (k+1)·n/S)``, ``k = 0..S-1``.

    * Test: ``floor((k + 0.5)·n/S)``, the frame at each segment's centre. For ``n > S`` this is the DFER code
      bases' ``int(tick/2 + tick·k)`` with ``tick = n/S``.
    * Training (``n ≥ S``): ``floor((k + u_k)·n/S)`` with ``u_k ~ U[0, 1)`` from ``rng``, a random frame of segment
      ``k`` (frames straddling a segment boundary are drawn in proportion to their overlap). Unlike the
      reference code (integer segment length ``n // S``), the last ``n mod S`` frames can be drawn too.
    * ``n < S`` (segments shorter than one frame), both modes: the test formula, deterministic. The result is
      ``0, …, 0, 1, …, 1, …, n−1``: every frame in order, each repeated ``floor(S/n)`` or ``ceil(S/n)`` times
      (the reference code instead pads ``0..n−1`` with the last frame).

    ``segment_frames`` d > 1 (Former-DFER's "8 segments × 2 frames", ``dataloader/dataset_DFEW.py``
    ``duration``): the segments split the ``n − d + 1`` possible start frames, one start per segment is chosen as
    above, and the d consecutive frames from each start are taken (clamped to the last frame when the clip is
    shorter than d), giving ``num_segments · d`` indices.

    Returns:
        ``(num_segments · segment_frames,)`` int64, non-decreasing, in ``[0, n_frames)``.

    Raises:
        ValueError: ``n_frames < 1``, ``num_segments < 1`` or ``segment_frames < 1``.
    """
    n, s, d = int(n_frames), int(num_segments), int(segment_frames)
    if n < 1:
        raise ValueError(f"a clip needs at least one frame, got n_frames={n_frames}")
    if s < 1:
        raise ValueError(f"num_segments must be at least 1, not {num_segments}")
    if d < 1:
        raise ValueError(f"segment_frames must be at least 1, not {segment_frames}")
    m = max(n - d + 1, 1)  # possible start frames
    k = np.arange(s, dtype=np.float64)
    u = np.random.default_rng(rng).random(s) if train and m >= s else np.full(s, 0.5)
    start = np.clip(np.floor((k + u) * m / s).astype(np.int64), 0, m - 1)
    return np.clip((start[:, None] + np.arange(d)[None, :]).reshape(-1), 0, n - 1)
