"""Generic user formats (one CSV of per-frame AU labels, one CSV of per-clip expression labels), plus the small
helpers that every dataset reader of :mod:`aufer.datasets` shares (text/CSV reading with line numbers, integer
parsing, building sorted :class:`~aufer.readers.records.FrameRecords` / ``ClipRecords``).

Line numbers in problem reports are 1-based as in a text editor and count the header line.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from aufer import vocab
from aufer.readers.records import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ClipRecords, FrameRecords, check_layout
from aufer.media import natural_key

__all__ = ["read_au_csv", "read_expr_csv"]

_AU_COLUMN = re.compile(r"^AU0*(\d+)$", re.IGNORECASE)
_AU_INTENSITY_COLUMN = re.compile(r"^AU0*(\d+)_r$", re.IGNORECASE)
_UNKNOWN_CELLS = ("", "-1", "9")
_SPLITS = ("train", "test", "val")


# ------------------------------------------------------------------------------------------ shared helpers
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
    """Whether ``folder`` is a directory holding at least one image file (any of ``IMAGE_EXTENSIONS``)."""
    try:
        return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in Path(folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False


def note_label(labels: dict, clip: str, label: int, where: str, problems: list[str]) -> None:
    """Remember a clip's label (first place it was seen) and report a disagreement with an earlier listing."""
    if clip in labels and labels[clip][0] != label:
        first, first_where = labels[clip]
        problems.append(f"{where}: clip {clip} has label {label} here but {first} at {first_where}")
    labels.setdefault(clip, (label, where))


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


def _open_table(dataset: str, csv_path: Path) -> tuple[list[str], list[tuple[int, list[str]]], dict[str, int], list[str]]:
    """Header, rows, lower-cased column name → first index, and an empty problem list of a generic CSV.

    Raises:
        LayoutError: if the file is missing, unreadable or empty.
    """
    problems: list[str] = []
    parsed = read_csv_rows(csv_path, problems)
    check_layout(dataset, csv_path, problems)
    header, rows = parsed
    return header, rows, {name.lower(): i for i, name in reversed(list(enumerate(header)))}, problems


def _resolve(media: str, base: Path) -> Path:
    p = Path(media.replace("\\", "/"))
    return p if p.is_absolute() else base / p


def _media_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else "other"


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------------------------- AU csv
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
    base = Path(root) if root is not None else csv_path.parent
    header, rows, col, problems = _open_table("au_csv", csv_path)
    occ_cols, int_cols = _au_columns(csv_path, header, problems)
    if "media" not in col:
        problems.append(f"{csv_path} line 1: required column 'media' missing (header: {', '.join(header)})")
    if not occ_cols:
        problems.append(f"{csv_path} line 1: no AU columns (name them AU1, AU01, AU12 ...; "
                        f"header: {', '.join(header)})")
    check_layout("au_csv", csv_path, problems, _AU_CSV_HINT)

    aus = sorted(occ_cols)
    entries = []
    exists: dict[Path, str] = {}
    for lineno, cells in rows:
        entry = _au_row(csv_path, base, header, col, cells, lineno, aus, occ_cols, int_cols, exists, problems)
        if entry is not None:
            entries.append(entry)
    if not rows:
        problems.append(f"{csv_path}: no data rows after the header")
    check_layout("au_csv", csv_path, problems, _AU_CSV_HINT)

    _fill_image_defaults(entries, base)
    _check_duplicates(csv_path, entries, problems)
    check_layout("au_csv", csv_path, problems, _AU_CSV_HINT)
    columns = {k: [e[k] for e in entries] for k in FrameRecords.COLUMNS}
    occurrence = np.array([e["occ"] for e in entries], dtype=np.int8).reshape(len(entries), len(aus))
    intensity = (np.array([e["int"] for e in entries], dtype=np.float32).reshape(occurrence.shape)
                 if int_cols else None)
    return build_frame_records("au_csv", base, aus, columns, occurrence, intensity,
                               [f"read from {csv_path}: {len(entries)} frames, AUs {aus}"])


_AU_CSV_HINT = ("Expected a CSV with a 'media' column (image or video path), 'frame' (0-based index, required for "
                "videos), optional 'subject'/'sequence', AU columns AU1/AU01... (1, 0, empty/-1/9 = unknown) and "
                "optional intensity columns AU12_r.")


def _au_columns(csv_path: Path, header: list[str], problems: list[str]) -> tuple[dict[int, int], dict[int, int]]:
    occ: dict[int, int] = {}
    inten: dict[int, int] = {}
    for i, name in enumerate(header):
        for pattern, target in ((_AU_COLUMN, occ), (_AU_INTENSITY_COLUMN, inten)):
            m = pattern.match(name)
            if not m:
                continue
            au = int(m.group(1))
            if au in target:
                problems.append(f"{csv_path} line 1: columns {header[target[au]]!r} and {name!r} both name AU{au}")
            target[au] = i
    for au in sorted(set(inten) - set(occ)):
        problems.append(f"{csv_path} line 1: intensity column {header[inten[au]]!r} has no occurrence column AU{au}")
    return occ, inten


def _au_row(csv_path, base, header, col, cells, lineno, aus, occ_cols, int_cols, exists, problems) -> dict | None:
    where = f"{csv_path} line {lineno}"
    if len(cells) != len(header):
        problems.append(f"{where}: {len(cells)} fields, the header has {len(header)}")
        return None
    media = _resolve(cells[col["media"]], base)
    if media not in exists:
        exists[media] = _media_kind(media) if media.exists() else "missing"
    kind = exists[media]
    if kind == "missing":
        problems.append(f"{where}: media file missing: {media}")
        return None
    if kind not in ("image", "video"):
        problems.append(f"{where}: media {media} is not an image or a video file")
        return None
    frame_text = cells[col["frame"]] if "frame" in col else ""
    frame = parse_int(frame_text) if frame_text else None
    if frame_text and (frame is None or frame < 0):
        problems.append(f"{where}: frame {frame_text!r} is not a non-negative integer")
        return None
    if kind == "video" and frame is None:
        problems.append(f"{where}: media {media} is a video; give its 0-based frame index in a 'frame' column")
        return None
    occ, inten, bad = [], [], []
    for au in aus:
        text = cells[occ_cols[au]]
        value = -1 if text in _UNKNOWN_CELLS else parse_int(text)
        if value not in (-1, 0, 1):
            bad.append(f"{header[occ_cols[au]]}={text!r}")
        occ.append(value if value in (0, 1) else -1)
        inten.append(_intensity(cells[int_cols[au]], header[int_cols[au]], bad) if au in int_cols else np.nan)
    if bad:
        problems.append(f"{where}: bad AU value(s) {', '.join(bad)} (use 1, 0, or empty/-1/9 for unknown; "
                        "intensities are numbers)")
        return None
    default_subject = media.parent.name if kind == "image" else media.stem
    subject = cells[col["subject"]] if "subject" in col and cells[col["subject"]] else default_subject
    sequence = cells[col["sequence"]] if "sequence" in col and cells[col["sequence"]] else None
    if sequence is None and kind == "video":
        sequence = _relative(media, base)
    return {"subject": subject, "sequence": sequence, "frame": frame, "media": str(media),
            "media_index": frame if kind == "video" else -1, "occ": occ, "int": inten, "where": where,
            "folder": media.parent}


def _intensity(text: str, name: str, bad: list[str]) -> float:
    if text in ("", "-1", "9"):
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


def _check_duplicates(csv_path: Path, entries: list[dict], problems: list[str]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for e in entries:
        key = (e["sequence"], e["frame"])
        if key in seen:
            problems.append(f"{e['where']}: sequence {key[0]!r} frame {key[1]} already given at {seen[key]}")
        else:
            seen[key] = e["where"]


# ------------------------------------------------------------------------------------------- expr csv
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
    base = Path(root) if root is not None else csv_path.parent
    header, rows, col, problems = _open_table("expr_csv", csv_path)
    for name in ("media", "label"):
        if name not in col:
            problems.append(f"{csv_path} line 1: required column {name!r} missing (header: {', '.join(header)})")
    if "fold" in col and "split" not in col:
        problems.append(f"{csv_path} line 1: a 'fold' column needs a 'split' column (train/test)")
    if not rows:
        problems.append(f"{csv_path}: no data rows after the header")
    check_layout("expr_csv", csv_path, problems, _EXPR_CSV_HINT)

    good_rows = []
    for lineno, cells in rows:
        if len(cells) != len(header):
            problems.append(f"{csv_path} line {lineno}: {len(cells)} fields, the header has {len(header)}")
        else:
            good_rows.append((lineno, cells))
    classes = tuple(classes) if classes is not None else _guess_classes([c[col["label"]] for _, c in good_rows])
    clips: dict[str, dict] = {}
    folds: dict[str, dict[str, list[str]]] = {}
    for lineno, cells in good_rows:
        _expr_row(csv_path, base, col, cells, lineno, classes, clips, folds, problems)
    check_layout("expr_csv", csv_path, problems, _EXPR_CSV_HINT)
    rows_out = [{k: v for k, v in c.items() if k in ClipRecords.COLUMNS} for c in clips.values()]
    return build_clip_records("expr_csv", base, classes, rows_out, folds,
                              [f"read from {csv_path}: {len(rows_out)} clips, classes {list(classes)}"])


_EXPR_CSV_HINT = ("Expected a CSV with columns 'media' (video or folder of frames) and 'label' (class name or "
                  "0-based index), optional 'clip', 'subject', 'fold' and 'split' (train/test).")


def _guess_classes(labels: list[str]) -> tuple[str, ...]:
    names = {vocab.canonical_emotion(t) for t in labels if t and t != "-1" and parse_int(t) is None}
    ints = [parse_int(t) for t in labels if t and t != "-1" and parse_int(t) is not None]
    seven, eleven = vocab.emotions(7), vocab.emotions(11)
    if names <= set(seven) and all(0 <= i < len(seven) for i in ints):
        return seven
    if names <= set(eleven) and all(0 <= i < len(eleven) for i in ints):
        return eleven
    return tuple(sorted(names))


def _expr_row(csv_path, base, col, cells, lineno, classes, clips, folds, problems) -> None:
    where = f"{csv_path} line {lineno}"
    media = _resolve(cells[col["media"]], base)
    kind = _media_kind(media) if media.exists() else "missing"
    if kind == "missing":
        problems.append(f"{where}: media missing: {media}")
        return
    if kind == "folder" and not folder_has_images(media):
        problems.append(f"{where}: frame folder {media} holds no image file")
        return
    if kind not in ("folder", "video"):
        problems.append(f"{where}: media {media} is not a video file or a folder of frames")
        return
    label_text = cells[col["label"]]
    label = _label_value(label_text, classes)
    if label is None:
        problems.append(f"{where}: unknown label {label_text!r} (classes: {', '.join(classes)})")
        return
    clip = cells[col["clip"]] if "clip" in col and cells[col["clip"]] else _relative(
        media.with_suffix("") if kind == "video" else media, base)
    subject = cells[col["subject"]] if "subject" in col and cells[col["subject"]] else clip
    row = {"clip": clip, "subject": subject, "media": str(media), "label": label, "where": where}
    if clip in clips:
        first = clips[clip]
        if (first["media"], first["label"], first["subject"]) != (row["media"], label, subject):
            problems.append(f"{where}: clip {clip!r} listed again with a different media, label or subject "
                            f"(first at {first['where']})")
            return
        if "split" not in col:
            problems.append(f"{where}: clip {clip!r} listed twice (first at {first['where']})")
            return
    clips.setdefault(clip, row)
    if "split" in col:
        split = cells[col["split"]].lower()
        if split not in _SPLITS:
            problems.append(f"{where}: split {cells[col['split']]!r} is not one of {', '.join(_SPLITS)}")
            return
        fold = (cells[col["fold"]] if "fold" in col and cells[col["fold"]] else "1")
        fold = str(parse_int(fold)) if parse_int(fold) is not None else fold
        parts = folds.setdefault(fold, {"train": [], "test": []})
        if any(clip in members for members in parts.values()):
            problems.append(f"{where}: clip {clip!r} listed twice in fold {fold}")
            return
        parts.setdefault(split, []).append(clip)


def _label_value(text: str, classes: Sequence[str]) -> int | None:
    if text in ("", "-1"):
        return -1
    idx = parse_int(text)
    if idx is not None:
        return idx if 0 <= idx < len(classes) else None
    return class_index(text, classes)
