"""Text helpers that every benchmark reader shares: text/CSV reading with line numbers, integer and class-name
parsing, split lists and their train/test-disjoint check, and building sorted
:class:`~aufer.readers.records.FrameRecords` / :class:`~aufer.readers.records.ClipRecords`.

Not part of the public API: a reader author imports from here; a user reads datasets through
:func:`aufer.readers.read_dataset` or the readers themselves.

Problems are collected, not raised, so that a reader can report every problem of a layout in one
:class:`~aufer.readers.records.LayoutError`. Line numbers in problem reports are 1-based as in a text editor and
count the header line.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
import pandas as pd

from aufer import vocab
from aufer.media import IMAGE_EXTS
from aufer.readers.records import ClipRecords, FrameRecords, check_layout

__all__ = ["SUBJECT_NAME", "read_lines", "read_csv_rows", "parse_int", "class_index", "folder_has_images",
           "note_label", "collect_split", "check_disjoint", "frame_folder", "clip_rows", "build_frame_records",
           "report_missing", "build_clip_records"]

#: subject folder names of the AU benchmarks: letters then digits (BP4D ``F001``, DISFA ``SN001``)
SUBJECT_NAME = re.compile(r"^[A-Za-z]+\d+$")

T = TypeVar("T")


def _read_text(path: Path, problems: list[str]) -> str | None:
    """A text file's content (undecodable bytes replaced); ``None`` and a problem if missing or unreadable."""
    if not path.is_file():
        problems.append(f"{path}: file missing")
        return None
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        problems.append(f"{path}: cannot be read ({e.__class__.__name__}: {e})")
        return None


def read_lines(path: Path, problems: list[str]) -> list[tuple[int, str]] | None:
    """Non-blank lines of a text file as ``(line number, stripped text)``; ``None`` (and a problem) if the file
    is missing or unreadable. Undecodable bytes are replaced, so that a bad line is reported, not the file."""
    text = _read_text(Path(path), problems)
    if text is None:
        return None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_csv_rows(path: Path, problems: list[str]) -> tuple[list[str], list[tuple[int, list[str]]]] | None:
    """Header cells (stripped) and data rows ``(line number, stripped cells)`` of a comma-separated file; blank
    rows are skipped. ``None`` (and a problem) if the file is missing, unreadable or empty."""
    path = Path(path)
    text = _read_text(path, problems)
    if text is None:
        return None
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if header is None:
                header = cells
            else:
                rows.append((reader.line_num, cells))
    except csv.Error as e:
        problems.append(f"{path} line {reader.line_num}: malformed CSV ({e})")
        return None
    if header is None:
        problems.append(f"{path}: empty file (no header line)")
        return None
    return header, rows


def parse_int(text: str) -> int | None:
    """``int`` of a cell holding an integer (``"3"``, ``" 3 "``, ``"3.0"``); ``None`` for anything else."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None


def class_index(name: str, classes: Sequence[str]) -> int | None:
    """Index of an emotion name in ``classes`` after :func:`aufer.vocab.canonical_emotion` spelling
    normalisation (``Happy`` → ``happiness``); ``None`` if it is not one of them."""
    canon = [vocab.canonical_emotion(c) for c in classes]
    key = vocab.canonical_emotion(name)
    return canon.index(key) if key in canon else None


def folder_has_images(folder: Path) -> bool:
    """Whether ``folder`` is a directory holding at least one image file (any of :data:`aufer.media.IMAGE_EXTS`, the extensions prepare decodes)."""
    try:
        return any(p.suffix.lower() in IMAGE_EXTS for p in Path(folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False


def note_label(labels: dict, clip: str, label: int, where: str, problems: list[str]) -> None:
    """Remember a clip's label (first place it was seen) and report a disagreement with an earlier listing."""
    if clip in labels and labels[clip][0] != label:
        first, first_where = labels[clip]
        problems.append(f"{where}: clip {clip} has label {label} here but {first} at {first_where}")
    labels.setdefault(clip, (label, where))


def collect_split(path: Path, entries: Iterable[tuple[int, T]],
                  parse: Callable[[T, str, list[str]], tuple[str, int] | None],
                  labels: dict[str, tuple[int, str]], problems: list[str]) -> list[str]:
    """Clip keys of one split list, in file order.

    ``entries`` are ``(line number, item)`` pairs of the file at ``path`` (lines from :func:`read_lines` or rows
    from :func:`read_csv_rows`); ``parse(item, where, problems)`` returns ``(clip key, 0-based label)`` or
    ``None`` after recording a problem (``where`` = ``"{path} line {n}"``). Each label is merged into ``labels``
    by :func:`note_label`, which reports a clip labelled differently elsewhere.
    """
    clips = []
    for lineno, item in entries:
        where = f"{path} line {lineno}"
        parsed = parse(item, where, problems)
        if parsed is None:
            continue
        clip, label = parsed
        note_label(labels, clip, label, where, problems)
        clips.append(clip)
    return clips


def check_disjoint(parts: dict[str, list[str]], where: str, problems: list[str]) -> None:
    """Record a problem if a clip is listed in both ``parts["train"]`` and ``parts["test"]`` of one fold;
    ``where`` names the fold (its folder or files) at the start of the problem line."""
    both = sorted(set(parts["train"]) & set(parts["test"]))
    if both:
        problems.append(f"{where}: {len(both)} clip(s) in both train and test, e.g. {both[0]}")


def frame_folder(folder: Path) -> tuple[Path | None, str]:
    """``(folder, "")`` if ``folder`` holds images, else ``(None, why)`` (the folder is missing or holds none)."""
    if folder_has_images(folder):
        return folder, ""
    return None, f"frame folder {folder} {'holds no image' if Path(folder).is_dir() else 'missing'}"


def clip_rows(labels: dict[str, tuple[int, str]],
              locate: Callable[[str], tuple[Path | None, str]]) -> tuple[list[dict], list[str]]:
    """Rows ``{clip, subject, media, label}`` (``subject`` = the clip: the expression benchmarks name no
    subjects) of the clips in ``labels`` (``{clip: (label, where listed)}``), and one line per clip whose media
    ``locate(clip)`` does not find (it returns ``(path, "")`` or ``(None, why)``)."""
    rows, missing = [], []
    for clip, (label, where) in labels.items():
        media, why = locate(clip)
        if media is None:
            missing.append(f"clip {clip} (listed at {where}): {why}")
        else:
            rows.append({"clip": clip, "subject": clip, "media": str(media), "label": label})
    return rows, missing


def build_frame_records(dataset: str, root: str | Path, aus: Sequence[int], columns: dict[str, Sequence],
                        occurrence: np.ndarray, intensity: np.ndarray | None = None,
                        notes: Iterable[str] = ()) -> FrameRecords:
    """:class:`FrameRecords` with its rows sorted by sequence, then frame (stable).

    ``columns`` holds the table columns ``subject, sequence, frame, media, media_index`` (equal lengths N);
    ``occurrence`` is ``(N, A)``, ``intensity`` ``(N, A)`` or ``None``.
    """
    table = pd.DataFrame({
        "subject": pd.Series(columns["subject"], dtype=object).astype(str),
        "sequence": pd.Series(columns["sequence"], dtype=object).astype(str),
        "frame": np.asarray(columns["frame"], dtype=np.int64),
        "media": pd.Series(columns["media"], dtype=object).astype(str),
        "media_index": np.asarray(columns["media_index"], dtype=np.int64),
    })
    occurrence = np.asarray(occurrence, dtype=np.int8).reshape(len(table), len(aus))
    order = table.sort_values(["sequence", "frame"], kind="stable").index.to_numpy()
    table = table.iloc[order].reset_index(drop=True)
    occurrence = occurrence[order]
    if intensity is not None:
        intensity = np.asarray(intensity, dtype=np.float32).reshape(occurrence.shape)[order]
    return FrameRecords(dataset, str(root), tuple(aus), table, occurrence, intensity, list(notes))


def report_missing(missing: Sequence[str], strict: bool, problems: list[str], notes: list[str]) -> None:
    """Sequences or clips whose media is missing: with ``strict`` they are layout problems, otherwise notes
    (``dropped: ...``)."""
    if strict:
        problems.extend(missing)
    else:
        notes.extend(f"dropped: {m}" for m in missing)


def build_clip_records(dataset: str, root: str | Path, classes: Sequence[str], rows: list[dict],
                       folds: dict[str, dict[str, list[str]]] | None = None,
                       notes: Iterable[str] = (), missing: Sequence[str] = (), strict: bool = True,
                       hint: str = "") -> ClipRecords:
    """:class:`ClipRecords` from row dicts ``{clip, subject, media, label}``, sorted by clip; fold lists sorted.

    ``missing`` lists clips whose media is missing: with ``strict`` they raise :class:`LayoutError`, otherwise
    they are noted as dropped and removed from the folds.
    """
    notes, problems = list(notes), []
    report_missing(missing, strict, problems, notes)
    check_layout(dataset, root, problems, hint)
    if missing and not strict:
        kept = {r["clip"] for r in rows}
        folds = {f: {p: [c for c in cs if c in kept] for p, cs in parts.items()} for f, parts in (folds or {}).items()}
    table = pd.DataFrame(rows, columns=list(ClipRecords.COLUMNS))
    table = table.astype({"clip": str, "subject": str, "media": str}).astype({"label": np.int64})
    table = table.sort_values("clip", kind="stable").reset_index(drop=True)
    folds = {f: {s: sorted(c) for s, c in parts.items()} for f, parts in (folds or {}).items()}
    return ClipRecords(dataset, str(root), tuple(classes), table, folds, list(notes))
