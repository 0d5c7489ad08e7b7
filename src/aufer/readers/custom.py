"""The user formats: one CSV of per-frame AU labels (:func:`read_au_csv`) and one CSV of per-clip expression
labels (:func:`read_expr_csv`).

Line numbers in problem reports are 1-based as in a text editor and count the header line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from aufer import vocab
from aufer.media import MediaError, media_kind, natural_key
from aufer.readers._text import (build_clip_records, build_frame_records, class_index, folder_has_images, parse_int,
                                 read_csv_rows)
from aufer.readers.records import ClipRecords, FrameRecords, check_layout

__all__ = ["read_au_csv", "read_expr_csv"]

_AU_COLUMN = re.compile(r"^AU0*(\d+)$", re.IGNORECASE)
_AU_INTENSITY_COLUMN = re.compile(r"^AU0*(\d+)_r$", re.IGNORECASE)
_UNKNOWN_CELLS = ("", "-1", "9")
_SPLITS = ("train", "test", "val")

_AU_CSV_HINT = ("Expected a CSV with a 'media' column (image or video path), 'frame' (0-based index, required for "
                "videos), optional 'subject'/'sequence', AU columns AU1/AU01... (1, 0, empty/-1/9 = unknown) and "
                "optional intensity columns AU12_r.")
_EXPR_CSV_HINT = ("Expected a CSV with columns 'media' (video or folder of frames) and 'label' (class name or "
                  "0-based index), optional 'clip', 'subject', 'fold' and 'split' (train/test).")


# ------------------------------------------------------------------------------------------ one open CSV
@dataclass
class _Table:
    """One user CSV being read: where it is, its header, and the problems found so far.

    Attributes:
        path: the CSV file.
        base: the folder relative media paths start from.
        header: the header cells; ``col`` maps each lower-cased name to its first column index.
        rows: data rows ``(line number, cells)``.
    """

    dataset: str
    path: Path
    base: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]
    col: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, dataset: str, path: Path, base: Path) -> "_Table":
        """Read the CSV's header and rows.

        Raises:
            LayoutError: if the file is missing, unreadable or empty.
        """
        problems: list[str] = []
        parsed = read_csv_rows(path, problems)
        check_layout(dataset, path, problems)
        header, rows = parsed
        col = {name.lower(): i for i, name in reversed(list(enumerate(header)))}
        return cls(dataset, path, base, header, rows, col)

    def where(self, lineno: int) -> str:
        return f"{self.path} line {lineno}"

    def cell(self, cells: list[str], name: str) -> str:
        """The cell of column ``name``, ``""`` when the CSV has no such column."""
        return cells[self.col[name]] if name in self.col else ""

    def require(self, names: Sequence[str]) -> None:
        for name in names:
            if name not in self.col:
                self.problems.append(f"{self.path} line 1: required column {name!r} missing "
                                     f"(header: {', '.join(self.header)})")

    def check(self, hint: str) -> None:
        """Raise :class:`LayoutError` listing the problems found so far, if any."""
        check_layout(self.dataset, self.path, self.problems, hint)

    def media(self, cells: list[str]) -> Path:
        """The row's media path (``\\`` → ``/``; relative paths start at ``base``)."""
        p = Path(cells[self.col["media"]].replace("\\", "/"))
        return p if p.is_absolute() else self.base / p


def _kind(path: Path) -> str:
    """``"image"``, ``"video"``, ``"folder"``, ``"missing"`` or ``"other"``."""
    if not path.exists():
        return "missing"
    try:
        return media_kind(path)
    except MediaError:
        return "other"


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------------------------- AU csv
@dataclass
class _AuTable(_Table):
    """An AU CSV: the AU numbers read (ascending), their occurrence and intensity column indices, and the kind
    of each media path seen (each file is looked at once)."""

    aus: list[int] = field(default_factory=list)
    occ_cols: dict[int, int] = field(default_factory=dict)
    int_cols: dict[int, int] = field(default_factory=dict)
    kinds: dict[Path, str] = field(default_factory=dict)


def read_au_csv(csv_path: str | Path, root: str | Path | None = None) -> FrameRecords:
    """Read a user's per-frame AU labels from one CSV file.

    Layout (aufer's own generic format): a header line, then one row per labelled frame with columns

    * ``media`` (required): an image file or a video, relative to ``root`` (default: the CSV's folder) or absolute;
    * ``frame`` (required for video rows): 0-based frame index in the video (``media_index``); for image rows
      an optional frame number, else the image's 0-based position in its sequence, sorted by file name
      (numeric-aware: ``2.jpg`` before ``10.jpg``) — give a ``frame`` column to keep gaps in frame numbers;
    * ``subject`` (optional): default the image's parent folder name, or the video's stem;
    * ``sequence`` (optional): default, for images, the subject when all its images lie in one folder (else
      ``subject/folder``); for videos, the video's path relative to ``root``;
    * AU occurrence columns ``AU1``/``AU01``/``AU12`` ...: ``1`` present, ``0`` absent, empty/``-1``/``9``
      unknown (stored as −1; BP4D's 9 = unknown convention, protocols.json);
    * optional intensity columns ``AU12_r`` (each needs its occurrence column), kept as float32, empty = NaN.

    Returns:
        :class:`FrameRecords` named ``"au_csv"``, ``aus`` = the AU columns in ascending AU number, rows sorted by
        sequence then frame; ``intensity`` is ``None`` without ``_r`` columns.

    Raises:
        LayoutError: listing every problem: missing CSV or ``media`` column, no AU column, a missing media file
            (with its line), a video row without ``frame``, a bad AU value (line and column), a frame twice.
    """
    csv_path = Path(csv_path)
    t = _AuTable.open("au_csv", csv_path, Path(root) if root is not None else csv_path.parent)
    _au_columns(t)
    t.require(["media"])
    if not t.occ_cols:
        t.problems.append(f"{csv_path} line 1: no AU columns (name them AU1, AU01, AU12 ...; "
                          f"header: {', '.join(t.header)})")
    t.check(_AU_CSV_HINT)

    t.aus = sorted(t.occ_cols)
    entries = [e for lineno, cells in t.rows if (e := _au_row(t, lineno, cells)) is not None]
    if not t.rows:
        t.problems.append(f"{csv_path}: no data rows after the header")
    t.check(_AU_CSV_HINT)

    _fill_image_defaults(entries, t.base)
    _check_duplicates(entries, t.problems)
    t.check(_AU_CSV_HINT)
    columns = {k: [e[k] for e in entries] for k in FrameRecords.COLUMNS}
    occurrence = np.array([e["occ"] for e in entries], dtype=np.int8).reshape(len(entries), len(t.aus))
    intensity = (np.array([e["int"] for e in entries], dtype=np.float32).reshape(occurrence.shape)
                 if t.int_cols else None)
    return build_frame_records("au_csv", t.base, t.aus, columns, occurrence, intensity,
                               [f"read from {csv_path}: {len(entries)} frames, AUs {t.aus}"])


def _au_columns(t: _AuTable) -> None:
    """Find the occurrence (``AU12``) and intensity (``AU12_r``) columns; record clashes and orphans."""
    for i, name in enumerate(t.header):
        for pattern, target in ((_AU_COLUMN, t.occ_cols), (_AU_INTENSITY_COLUMN, t.int_cols)):
            m = pattern.match(name)
            if not m:
                continue
            au = int(m.group(1))
            if au in target:
                t.problems.append(f"{t.path} line 1: columns {t.header[target[au]]!r} and {name!r} both name AU{au}")
            target[au] = i
    for au in sorted(set(t.int_cols) - set(t.occ_cols)):
        t.problems.append(f"{t.path} line 1: intensity column {t.header[t.int_cols[au]]!r} has no occurrence "
                          f"column AU{au}")


def _au_row(t: _AuTable, lineno: int, cells: list[str]) -> dict | None:
    """One frame entry of the AU CSV, or None after recording the row's problem."""
    where = t.where(lineno)
    if len(cells) != len(t.header):
        t.problems.append(f"{where}: {len(cells)} fields, the header has {len(t.header)}")
        return None
    media = t.media(cells)
    if media not in t.kinds:
        t.kinds[media] = _kind(media)
    kind = t.kinds[media]
    if kind == "missing":
        t.problems.append(f"{where}: media file missing: {media}")
        return None
    if kind not in ("image", "video"):
        t.problems.append(f"{where}: media {media} is not an image or a video file")
        return None
    frame_text = t.cell(cells, "frame")
    frame = parse_int(frame_text) if frame_text else None
    if frame_text and (frame is None or frame < 0):
        t.problems.append(f"{where}: frame {frame_text!r} is not a non-negative integer")
        return None
    if kind == "video" and frame is None:
        t.problems.append(f"{where}: media {media} is a video; give its 0-based frame index in a 'frame' column")
        return None
    occ, inten, bad = [], [], []
    for au in t.aus:
        text = cells[t.occ_cols[au]]
        value = -1 if text in _UNKNOWN_CELLS else parse_int(text)
        if value not in (-1, 0, 1):
            bad.append(f"{t.header[t.occ_cols[au]]}={text!r}")
        occ.append(value if value in (0, 1) else -1)
        j = t.int_cols.get(au)
        inten.append(_intensity(cells[j], t.header[j], bad) if j is not None else np.nan)
    if bad:
        t.problems.append(f"{where}: bad AU value(s) {', '.join(bad)} (use 1, 0, or empty/-1/9 for unknown; "
                          "intensities are numbers)")
        return None
    subject = t.cell(cells, "subject") or (media.parent.name if kind == "image" else media.stem)
    sequence = t.cell(cells, "sequence") or None
    if sequence is None and kind == "video":
        sequence = _relative(media, t.base)
    return {"subject": subject, "sequence": sequence, "frame": frame, "media": str(media),
            "media_index": frame if kind == "video" else -1, "occ": occ, "int": inten, "where": where,
            "folder": media.parent}


def _intensity(text: str, name: str, bad: list[str]) -> float:
    if text in _UNKNOWN_CELLS:
        return np.nan
    try:
        return float(text)
    except ValueError:
        bad.append(f"{name}={text!r}")
        return np.nan


def _fill_image_defaults(entries: list[dict], base: Path) -> None:
    """Default sequence keys of image rows, then 0-based positions as frame numbers where none was given."""
    folders: dict[str, set] = {}
    for e in entries:
        if e["sequence"] is None:
            folders.setdefault(e["subject"], set()).add(e["folder"])
    for e in entries:
        if e["sequence"] is None:
            one = len(folders[e["subject"]]) == 1
            e["sequence"] = e["subject"] if one else f"{e['subject']}/{_relative(e['folder'], base)}"
    by_seq: dict[str, list[dict]] = {}
    for e in entries:
        if e["frame"] is None:
            by_seq.setdefault(e["sequence"], []).append(e)
    for seq_entries in by_seq.values():
        for i, e in enumerate(sorted(seq_entries, key=lambda e: natural_key(Path(e["media"]).name))):
            e["frame"] = i


def _check_duplicates(entries: list[dict], problems: list[str]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for e in entries:
        key = (e["sequence"], e["frame"])
        if key in seen:
            problems.append(f"{e['where']}: sequence {key[0]!r} frame {key[1]} already given at {seen[key]}")
        else:
            seen[key] = e["where"]


# ------------------------------------------------------------------------------------------- expr csv
@dataclass
class _ExprTable(_Table):
    """An expression CSV: the class names, the clips read so far (first row of each) and the folds."""

    classes: tuple[str, ...] = ()
    clips: dict[str, dict] = field(default_factory=dict)
    folds: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def read_expr_csv(csv_path: str | Path, root: str | Path | None = None,
                  classes: Sequence[str] | None = None) -> ClipRecords:
    """Read a user's per-clip expression labels from one CSV file.

    Layout (aufer's own generic format): a header line, then one row per clip (or per clip and fold) with columns

    * ``media`` (required): a video file or a folder of frames, relative to ``root`` (default: the CSV's folder);
    * ``label`` (required): a class name (any spelling :func:`aufer.vocab.canonical_emotion` knows, e.g.
      ``happy``) or a 0-based integer index into ``classes``; empty or ``-1`` = unknown (−1);
    * ``clip`` (optional): the clip key, default the media path relative to ``root`` without its extension;
    * ``subject`` (optional): default the clip key;
    * ``split`` (optional, ``train``/``test``/``val``) and ``fold`` (optional, default ``"1"``; needs ``split``):
      build ``folds``. A clip may appear on several rows (e.g. once per fold) if media and label agree.

    ``classes``: the class names, index = label; default: the 7 DFEW/FERV39K classes if every label fits them
    (vocab.emotions(7)), else the 11 MAFW classes (vocab.emotions(11)), else the sorted unique names. Integer
    labels without ``classes`` index the 7 classes if all are < 7, else the 11 classes.

    Returns:
        :class:`ClipRecords` named ``"expr_csv"``, sorted by clip.

    Raises:
        LayoutError: listing every problem: missing CSV or required column, a missing or empty media (line), an
            unknown label (line), a clip listed twice with different media/label or twice in one fold.
    """
    csv_path = Path(csv_path)
    t = _ExprTable.open("expr_csv", csv_path, Path(root) if root is not None else csv_path.parent)
    t.require(["media", "label"])
    if "fold" in t.col and "split" not in t.col:
        t.problems.append(f"{csv_path} line 1: a 'fold' column needs a 'split' column (train/test)")
    if not t.rows:
        t.problems.append(f"{csv_path}: no data rows after the header")
    t.check(_EXPR_CSV_HINT)

    good_rows = []
    for lineno, cells in t.rows:
        if len(cells) != len(t.header):
            t.problems.append(f"{t.where(lineno)}: {len(cells)} fields, the header has {len(t.header)}")
        else:
            good_rows.append((lineno, cells))
    t.classes = tuple(classes) if classes is not None else _guess_classes([t.cell(c, "label") for _, c in good_rows])
    for lineno, cells in good_rows:
        _expr_row(t, lineno, cells)
    t.check(_EXPR_CSV_HINT)
    rows_out = [{k: v for k, v in c.items() if k in ClipRecords.COLUMNS} for c in t.clips.values()]
    return build_clip_records("expr_csv", t.base, t.classes, rows_out, t.folds,
                              [f"read from {csv_path}: {len(rows_out)} clips, classes {list(t.classes)}"])


def _guess_classes(labels: list[str]) -> tuple[str, ...]:
    names = {vocab.canonical_emotion(t) for t in labels if t and t != "-1" and parse_int(t) is None}
    ints = [parse_int(t) for t in labels if t and t != "-1" and parse_int(t) is not None]
    seven, eleven = vocab.emotions(7), vocab.emotions(11)
    if names <= set(seven) and all(0 <= i < len(seven) for i in ints):
        return seven
    if names <= set(eleven) and all(0 <= i < len(eleven) for i in ints):
        return eleven
    return tuple(sorted(names))


def _expr_row(t: _ExprTable, lineno: int, cells: list[str]) -> None:
    """Add one row's clip (and its fold membership) to ``t``, or record the row's problem."""
    where = t.where(lineno)
    media = t.media(cells)
    kind = _kind(media)
    if kind == "missing":
        t.problems.append(f"{where}: media missing: {media}")
        return
    if kind == "folder" and not folder_has_images(media):
        t.problems.append(f"{where}: frame folder {media} holds no image file")
        return
    if kind not in ("folder", "video"):
        t.problems.append(f"{where}: media {media} is not a video file or a folder of frames")
        return
    label_text = t.cell(cells, "label")
    label = _label_value(label_text, t.classes)
    if label is None:
        t.problems.append(f"{where}: unknown label {label_text!r} (classes: {', '.join(t.classes)})")
        return
    clip = t.cell(cells, "clip") or _relative(media.with_suffix("") if kind == "video" else media, t.base)
    subject = t.cell(cells, "subject") or clip
    row = {"clip": clip, "subject": subject, "media": str(media), "label": label, "where": where}
    if clip in t.clips:
        first = t.clips[clip]
        if (first["media"], first["label"], first["subject"]) != (row["media"], label, subject):
            t.problems.append(f"{where}: clip {clip!r} listed again with a different media, label or subject "
                              f"(first at {first['where']})")
            return
        if "split" not in t.col:
            t.problems.append(f"{where}: clip {clip!r} listed twice (first at {first['where']})")
            return
    t.clips.setdefault(clip, row)
    if "split" in t.col:
        split = t.cell(cells, "split").lower()
        if split not in _SPLITS:
            t.problems.append(f"{where}: split {t.cell(cells, 'split')!r} is not one of {', '.join(_SPLITS)}")
            return
        fold = t.cell(cells, "fold") or "1"
        fold = str(parse_int(fold)) if parse_int(fold) is not None else fold
        parts = t.folds.setdefault(fold, {"train": [], "test": []})
        if any(clip in members for members in parts.values()):
            t.problems.append(f"{where}: clip {clip!r} listed twice in fold {fold}")
            return
        parts.setdefault(split, []).append(clip)


def _label_value(text: str, classes: Sequence[str]) -> int | None:
    if text in ("", "-1"):
        return -1
    idx = parse_int(text)
    if idx is not None:
        return idx if 0 <= idx < len(classes) else None
    return class_index(text, classes)
