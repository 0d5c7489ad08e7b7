"""In-memory clip sets: the common currency between data sources, loaders and models.

Everything is a clip: a still image is a clip of ``T = 1``. A :class:`ClipSet` holds aligned face crops with
their landmarks and both kinds of labels, with −1 meaning "unknown" so that a sample may carry AU labels,
an expression label, or (never in practice) both.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from aufer.readers.records import ClipRecords, FrameRecords
from aufer.store.facestore import FaceStore, StoredFrame

__all__ = ["ClipSet"]


@dataclass
class ClipSet:
    """N clips of T frames of aligned ``S × S`` face crops.

    Attributes:
        crops: ``(N, T, S, S, 3)`` uint8 RGB aligned crops.
        landmarks: ``(N, T, 478, 3)`` float32 MediaPipe mesh in crop pixels (z in the same units).
        au: ``(N, T, A)`` int8 AU occurrence per frame: 1 present, 0 absent, −1 unknown.
        au_intensity: ``(N, T, A)`` float32 intensity in [0, 1], NaN where unknown.
        expr: ``(N,)`` int64 expression class per clip (index into ``emotions``), −1 unknown.
        identity: ``(N,)`` person id of each clip (for subject-exclusive splits).
        source: ``(N,)`` where a clip comes from, e.g. ``"real"`` or ``"synthetic"``.
        detected: ``(N, T)`` bool, whether the face pipeline found the face in that frame.
        aus: AU numbers of the ``A`` label columns.
        emotions: class names of ``expr``.
        notes: free-text provenance (e.g. the synthetic-data note).
    """

    crops: np.ndarray
    landmarks: np.ndarray
    au: np.ndarray
    au_intensity: np.ndarray
    expr: np.ndarray
    identity: np.ndarray
    source: np.ndarray
    detected: np.ndarray
    aus: tuple[int, ...]
    emotions: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    _ARRAYS = ("crops", "landmarks", "au", "au_intensity", "expr", "identity", "source", "detected")

    def __post_init__(self):
        n = len(self.crops)
        for name in self._ARRAYS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"ClipSet.{name} has {len(getattr(self, name))} rows, crops has {n}")
        if self.au.shape[-1] != len(self.aus):
            raise ValueError(f"au has {self.au.shape[-1]} columns for {len(self.aus)} AUs")

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def n_frames(self) -> int:
        """Frames per clip ``T``."""
        return int(self.crops.shape[1])

    @property
    def crop_size(self) -> int:
        return int(self.crops.shape[2])

    def subset(self, index: np.ndarray | Sequence[int]) -> "ClipSet":
        """Rows ``index`` (integer indices or a boolean mask) as a new ClipSet."""
        idx = np.asarray(index)
        return ClipSet(**{n: getattr(self, n)[idx] for n in self._ARRAYS}, aus=self.aus, emotions=self.emotions,
                       notes=list(self.notes))

    @staticmethod
    def concat(sets: Sequence["ClipSet"]) -> "ClipSet":
        """Stack clip sets with the same T, crop size, AU list and emotions.

        Raises:
            ValueError: if the sets disagree on any of these.
        """
        sets = [s for s in sets if len(s)]
        if not sets:
            raise ValueError("nothing to concatenate")
        first = sets[0]
        for s in sets[1:]:
            if (s.aus, s.emotions, s.crops.shape[1:]) != (first.aus, first.emotions, first.crops.shape[1:]):
                raise ValueError("ClipSets differ in AUs, emotions, clip length or crop size")
        notes = list(dict.fromkeys(n for s in sets for n in s.notes))
        return ClipSet(**{n: np.concatenate([getattr(s, n) for s in sets]) for n in first._ARRAYS},
                       aus=first.aus, emotions=first.emotions, notes=notes)

    def to_store(self, store: FaceStore, prefix: str, kind: str,
                 dataset: str = "FACS-warp") -> FrameRecords | ClipRecords:
        """Write the clips into a :class:`~aufer.store.facestore.FaceStore` (one sequence ``{prefix}/{i:05d}`` per
        clip, frames ``0..T-1``; sequences already complete are skipped) and return their records, so that
        in-memory data (e.g. SYNTHETIC FACS-warp clips) go through the same store, samplers and loaders as a
        benchmark.

        Args:
            kind: ``"au"`` → :class:`~aufer.readers.records.FrameRecords` (one row per frame, AU labels), or
                ``"expr"`` → :class:`~aufer.readers.records.ClipRecords` (one row per clip, expression label).
                Either table has an extra ``source`` column (e.g. ``"real"`` or ``"synthetic"``).

        Raises:
            ValueError: for another ``kind``, or a crop size different from the store's.
        """
        if kind not in ("au", "expr"):
            raise ValueError(f"kind must be 'au' or 'expr', not {kind!r}")
        if store.crop_size != self.crop_size:
            raise ValueError(f"the store holds {store.crop_size}-pixel crops, these clips are {self.crop_size}")
        keys = [f"{prefix}/{i:05d}" for i in range(len(self))]
        done = store.done_sequences()
        nan_box = np.full(4, np.nan, np.float32)
        for i, key in enumerate(keys):
            if key in done:
                continue
            store.write(key, [StoredFrame(t, self.crops[i, t], self.landmarks[i, t], nan_box, 1.0, bool(self.detected[i, t]))
                              for t in range(self.n_frames)])
            store.mark_done(key, self.n_frames)
        t = self.n_frames
        if kind == "au":
            table = pd.DataFrame({"subject": np.repeat(self.identity, t), "sequence": np.repeat(keys, t),
                                  "frame": np.tile(np.arange(t), len(self)), "media": np.repeat(keys, t), "media_index": -1,
                                  "source": np.repeat(self.source, t)})
            return FrameRecords(dataset, "", self.aus, table, self.au.reshape(-1, len(self.aus)),
                                self.au_intensity.reshape(-1, len(self.aus)), list(self.notes))
        table = pd.DataFrame({"clip": keys, "subject": self.identity, "media": keys, "label": self.expr.astype(np.int64),
                              "source": self.source})
        return ClipRecords(dataset, "", self.emotions, table, {}, list(self.notes))

    def save(self, path: str | Path) -> None:
        """Write to one ``.npz`` file atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        meta = {"aus": list(self.aus), "emotions": list(self.emotions), "notes": self.notes}
        with open(tmp, "wb") as f:
            np.savez(f, **{n: getattr(self, n) for n in self._ARRAYS}, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> "ClipSet":
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(**{n: z[n] for n in cls._ARRAYS}, aus=tuple(meta["aus"]), emotions=tuple(meta["emotions"]),
                       notes=meta["notes"])

