"""Records: what a dataset reader returns, before any face is detected.

Two kinds, matching the two kinds of labels in the field:

* :class:`FrameRecords` — AU datasets (BP4D, DISFA, a user's per-frame AU CSV): one row per labelled frame, AU
  occurrence per frame (1 present, 0 absent, −1 unknown), optionally the raw intensity.
* :class:`ClipRecords` — expression datasets (DFEW, FERV39K, MAFW, a user's clip CSV): one row per clip, one
  expression label per clip (−1 unknown), plus the dataset's official train/test folds.

Every frame or clip lives in a *sequence* (``sequence`` key): the unit that ``aufer prepare`` aligns in one go
and that the face-crop store indexes. For AU data a sequence is a subject's task or video (e.g. ``F001/T1``), for
expression data a sequence is one clip.

Readers validate a dataset's layout before reading it and raise :class:`LayoutError` listing every missing or
malformed file (with the line number for a bad line), so that a user learns what to fix in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from aufer.errors import UserMistake

__all__ = ["LayoutError", "FrameRecords", "ClipRecords", "check_layout"]


class LayoutError(UserMistake, ValueError):
    """A dataset root does not have the expected layout.

    Attributes:
        dataset: the dataset's name, e.g. ``"BP4D"``.
        problems: one line per problem, each naming the file (and line) concerned.
    """

    def __init__(self, dataset: str, root: str | Path, problems: Sequence[str], hint: str = ""):
        self.dataset, self.root, self.problems = dataset, str(root), list(problems)
        shown = self.problems[:20]
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        msg = f"{dataset} layout problem(s) under {root}:\n  " + "\n  ".join(shown) + more
        if hint:
            msg += f"\n{hint}"
        super().__init__(msg)


def check_layout(dataset: str, root: str | Path, problems: list[str], hint: str = "") -> None:
    """Raise :class:`LayoutError` when ``problems`` is not empty."""
    if problems:
        raise LayoutError(dataset, root, problems, hint)


def _require_columns(table: pd.DataFrame, columns: Sequence[str], owner: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{owner}.table lacks columns {missing}")


@dataclass
class FrameRecords:
    """An AU dataset: one row per labelled frame.

    Attributes:
        dataset: name, e.g. ``"BP4D"``.
        root: the dataset root that was read.
        aus: AU numbers of the label columns, in the dataset's standard order (e.g. BP4D's 12).
        table: one row per frame, columns ``subject`` (str), ``sequence`` (str, unique in the dataset, e.g.
            ``"F001/T1"``), ``frame`` (int, the dataset's own frame number), ``media`` (str, path of an image
            file, or of the video holding the frame), ``media_index`` (int, 0-based frame index in that video;
            −1 for an image file). Rows are sorted by sequence, then frame.
        occurrence: ``(N, A)`` int8, 1 present, 0 absent, −1 unknown.
        intensity: ``(N, A)`` float32 raw intensity on the dataset's own scale (DISFA 0–5), NaN unknown;
            ``None`` when the dataset has none.
        notes: provenance lines (e.g. "SYNTHETIC ...").
    """

    dataset: str
    root: str
    aus: tuple[int, ...]
    table: pd.DataFrame
    occurrence: np.ndarray
    intensity: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    COLUMNS = ("subject", "sequence", "frame", "media", "media_index")

    def __post_init__(self):
        self.aus = tuple(int(a) for a in self.aus)
        _require_columns(self.table, self.COLUMNS, "FrameRecords")
        if self.occurrence.shape != (len(self.table), len(self.aus)):
            raise ValueError(f"occurrence has shape {self.occurrence.shape}, expected {(len(self.table), len(self.aus))}")
        if self.intensity is not None and self.intensity.shape != self.occurrence.shape:
            raise ValueError("intensity and occurrence differ in shape")
        self.occurrence = self.occurrence.astype(np.int8, copy=False)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def subjects(self) -> list[str]:
        """Subjects in order of first appearance."""
        return list(dict.fromkeys(self.table["subject"]))

    @property
    def sequences(self) -> list[str]:
        return list(dict.fromkeys(self.table["sequence"]))

    def subset(self, mask: np.ndarray | Sequence[bool]) -> "FrameRecords":
        """Rows where ``mask`` is true (a boolean mask or integer indices)."""
        idx = np.asarray(mask)
        return FrameRecords(self.dataset, self.root, self.aus, self.table.iloc[idx].reset_index(drop=True) if idx.dtype != bool
                            else self.table[idx].reset_index(drop=True), self.occurrence[idx],
                            None if self.intensity is None else self.intensity[idx], list(self.notes))

    def of_subjects(self, subjects: Iterable[str]) -> "FrameRecords":
        """Rows of the given subjects."""
        return self.subset(self.table["subject"].isin(list(subjects)).to_numpy())


@dataclass
class ClipRecords:
    """An expression dataset: one row per clip.

    Attributes:
        dataset: name, e.g. ``"DFEW"``.
        root: the dataset root that was read.
        classes: class names, index = label (e.g. DFEW's 7: happiness, sadness, neutral, ...).
        table: one row per clip, columns ``clip`` (str, unique; also the sequence key), ``subject`` (str; the clip
            itself where the dataset names no subject), ``media`` (str, a folder of frames or a video file),
            ``label`` (int, index into ``classes``, −1 unknown).
        folds: the official splits, ``{"1": {"train": [clip, ...], "test": [clip, ...]}, ...}`` (FERV39K has one,
            named ``"1"``); empty when the data has none.
        notes: provenance lines.
    """

    dataset: str
    root: str
    classes: tuple[str, ...]
    table: pd.DataFrame
    folds: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    COLUMNS = ("clip", "subject", "media", "label")

    def __post_init__(self):
        self.classes = tuple(self.classes)
        _require_columns(self.table, self.COLUMNS, "ClipRecords")
        if self.table["clip"].duplicated().any():
            dup = self.table["clip"][self.table["clip"].duplicated()].iloc[0]
            raise ValueError(f"clip {dup!r} appears twice")

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int64 labels, −1 unknown."""
        return self.table["label"].to_numpy(np.int64)

    def subset(self, clips: Iterable[str]) -> "ClipRecords":
        """The given clips, in the order of the table."""
        keep = self.table["clip"].isin(list(clips))
        return ClipRecords(self.dataset, self.root, self.classes, self.table[keep].reset_index(drop=True), {},
                           list(self.notes))
