"""BP4D-Spontaneous reader (AU occurrence, frame level).

Layout facts: methods.md §1.1, protocols.json ``BP4D.raw_layout``, and ME-GraphAU
``tool/BP4D_image_label_process.py`` (labels read from ``AUCoding/AU_OCC/{subject}_{task}.csv`` with the frame
number in column ``"0"`` and one column per AU number; images addressed as ``{subject}/{task}/{frame}.jpg``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from aufer import vocab
from aufer.media import IMAGE_EXTS
from aufer.readers._text import SUBJECT_NAME, build_frame_records, parse_int, read_csv_rows, report_missing
from aufer.readers.records import FrameRecords, LayoutError, check_layout

__all__ = ["read_bp4d", "FRAME_DIRS", "LABEL_DIR"]

#: label folder, relative to the dataset root (ME-GraphAU tool/BP4D_image_label_process.py)
LABEL_DIR = ("AUCoding", "AU_OCC")
#: folders that may hold ``{subject}/{task}/`` frame folders; "" = the root itself. The official archive's
#: folder name varies between copies (aufer assumption, not a published fact).
FRAME_DIRS = ("", "Sequences", "2D+3D", "img", "images")

_HINT = ("Expected BP4D's official layout: AUCoding/AU_OCC/{subject}_{task}.csv (header '0,1,2,...' with the frame "
         "number in column '0') and frames {root}/[Sequences|2D+3D|img|images/]{subject}/{task}/{frame}.jpg.")


def read_bp4d(root: str | Path, subjects: Iterable[str] | None = None, frame_dir: str | None = None,
              strict: bool = True) -> FrameRecords:
    """Read BP4D's AU occurrence labels and locate every labelled frame's image.

    Layout (methods.md §1.1; ME-GraphAU tool/BP4D_image_label_process.py):

    * labels ``{root}/AUCoding/AU_OCC/{subject}_{task}.csv`` (e.g. ``F001_T1.csv``): a header line whose first
      column (``"0"``) holds the frame number and whose other columns are named by AU number; only BP4D's 12
      AUs (``vocab.dataset_aus("BP4D")``, in that order) are read. Values: 1 active, 0 inactive, anything else
      (9 = unknown, protocols.json) → −1.
    * frames ``{root}/{frame_dir}/{subject}/{task}/{frame}.jpg`` with ``frame_dir`` one of :data:`FRAME_DIRS`
      (detected: the one holding most labelled sequences) unless given; file names are frame numbers, possibly
      zero-padded (``0001.jpg``, ``1.jpg``), matched by integer value; any image extension.

    Args:
        root: the dataset root.
        subjects: read only these subjects (e.g. ``["F001"]``).
        frame_dir: force the frame folder (relative to ``root``) instead of detecting it.
        strict: if False, labelled frames without an image (and sequences without a frame folder) are dropped
            and listed in ``notes`` instead of raising.

    Returns:
        :class:`FrameRecords` ``"BP4D"``: one row per labelled frame, ``subject`` ``"F001"``, ``sequence``
        ``"F001/T1"``, ``frame`` = the CSV's frame number, ``media`` = the image path, ``media_index`` = −1;
        ``occurrence`` ``(N, 12)`` int8; ``intensity`` None. Sorted by sequence, then frame.

    Raises:
        LayoutError: listing every problem: missing label folder or frame folders, a CSV without some of the 12
            AU columns, malformed lines (file and line number), requested subjects without labels, and (when
            ``strict``) labelled frames without an image, reported per sequence.
    """
    root = Path(root)
    aus = vocab.dataset_aus("BP4D")
    label_dir = root.joinpath(*LABEL_DIR)
    if not label_dir.is_dir():
        raise LayoutError("BP4D", root, [f"{label_dir}: label folder missing"], _HINT)
    problems: list[str] = []
    csvs = _label_files(label_dir, problems)
    if subjects is not None:
        wanted = list(dict.fromkeys(subjects))
        for s in sorted(set(wanted) - {s for s, _ in csvs}):
            problems.append(f"subject {s}: no label file {label_dir}/{s}_T*.csv")
        csvs = {k: v for k, v in csvs.items() if k[0] in set(wanted)}
    if not csvs and not problems:
        problems.append(f"{label_dir}: no label file named {{subject}}_{{task}}.csv")
    check_layout("BP4D", root, problems, _HINT)

    frames_root = _frame_root(root, list(csvs), frame_dir)
    if frames_root is None:
        looked = ", ".join(str(root / d / "{subject}/{task}") for d in ((frame_dir,) if frame_dir else FRAME_DIRS))
        raise LayoutError("BP4D", root, [f"no frame folder found for any labelled sequence; looked for {looked}"],
                          _HINT)

    missing: list[str] = []
    cols: dict[str, list] = {k: [] for k in FrameRecords.COLUMNS}
    occurrence = []
    for (subject, task), path in sorted(csvs.items()):
        parsed = _parse_label_csv(path, aus, problems)
        if parsed is None:
            continue
        frames, occ = parsed
        images = _sequence_images(frames_root / subject / task, frames, f"{subject}/{task}", missing)
        keep = [i for i, f in enumerate(frames) if f in images]
        for i in keep:
            cols["subject"].append(subject)
            cols["sequence"].append(f"{subject}/{task}")
            cols["frame"].append(frames[i])
            cols["media"].append(str(images[frames[i]]))
            cols["media_index"].append(-1)
        occurrence.extend(occ[i] for i in keep)
    notes = [f"BP4D labels from {label_dir}, frames from {frames_root}"]
    report_missing(missing, strict, problems, notes)
    check_layout("BP4D", root, problems, _HINT)
    notes.extend(_unlabelled_subjects(frames_root, {s for s, _ in csvs}, subjects))
    occ = np.asarray(occurrence, dtype=np.int8).reshape(len(cols["frame"]), len(aus))
    return build_frame_records("BP4D", root, aus, cols, occ, None, notes)


def _label_files(label_dir: Path, problems: list[str]) -> dict[tuple[str, str], Path]:
    """``{(subject, task): csv path}`` from file names ``{subject}_{task}.csv``."""
    out = {}
    for path in sorted(label_dir.iterdir()):
        if path.suffix.lower() != ".csv":
            continue
        subject, _, task = path.stem.rpartition("_")
        if not subject or not task:
            problems.append(f"{path}: file name is not {{subject}}_{{task}}.csv (e.g. F001_T1.csv)")
            continue
        out[(subject, task)] = path
    return out


def _frame_root(root: Path, sequences: list[tuple[str, str]], frame_dir: str | None) -> Path | None:
    """The candidate folder holding the most labelled ``{subject}/{task}`` folders (first on ties), or None."""
    candidates = (frame_dir,) if frame_dir is not None else FRAME_DIRS
    counts = [sum((root / c / s / t).is_dir() for s, t in sequences) for c in candidates]
    best = int(np.argmax(counts))
    return root / candidates[best] if counts[best] > 0 else None


def _parse_label_csv(path: Path, aus: tuple[int, ...], problems: list[str]):
    """``(frame numbers, occurrence rows)`` of one AU_OCC CSV, or None after recording its problems."""
    parsed = read_csv_rows(path, problems)
    if parsed is None:
        return None
    header, rows = parsed
    columns = {}
    for i, name in enumerate(header[1:], 1):
        au = parse_int(name)
        if au is not None:
            columns.setdefault(au, i)
    absent = [str(a) for a in aus if a not in columns]
    if absent:
        problems.append(f"{path} line 1: AU column(s) {', '.join(absent)} missing from the header")
        return None
    idx = [columns[a] for a in aus]
    frames, occ, seen = [], [], {}
    for lineno, cells in rows:
        where = f"{path} line {lineno}"
        if len(cells) < len(header):
            problems.append(f"{where}: {len(cells)} fields, the header has {len(header)}")
            continue
        frame = parse_int(cells[0])
        if frame is None:
            problems.append(f"{where}: frame number {cells[0]!r} is not an integer")
            continue
        values = [parse_int(cells[j]) for j in idx]
        bad = [f"AU{a}={cells[j]!r}" for a, j, v in zip(aus, idx, values) if v is None]
        if bad:
            problems.append(f"{where}: non-integer value(s) {', '.join(bad)}")
            continue
        if frame in seen:
            problems.append(f"{where}: frame {frame} already labelled on line {seen[frame]}")
            continue
        seen[frame] = lineno
        frames.append(frame)
        occ.append([v if v in (0, 1) else -1 for v in values])
    return frames, occ


def _sequence_images(folder: Path, frames: list[int], sequence: str, missing: list[str]) -> dict[int, Path]:
    """``{frame number: image path}`` of a sequence folder; one line in ``missing`` if labelled frames lack one."""
    if not folder.is_dir():
        missing.append(f"{sequence}: frame folder {folder} missing ({len(frames)} labelled frames)")
        return {}
    images: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS and p.stem.isdigit():
            images.setdefault(int(p.stem), p)
    absent = [f for f in frames if f not in images]
    if absent:
        width = max((len(p.stem) for p in images.values() if p.stem.startswith("0")), default=0)
        first = folder / f"{absent[0]:0{width}d}.jpg"
        missing.append(f"{sequence}: {len(absent)} of {len(frames)} labelled frames have no image, "
                       f"first missing: {first}")
    return images


def _unlabelled_subjects(frames_root: Path, labelled: set[str], subjects) -> list[str]:
    if subjects is not None:
        return []
    extra = sorted(p.name for p in frames_root.iterdir()
                   if p.is_dir() and SUBJECT_NAME.match(p.name) and p.name not in labelled)
    return [f"subjects with frames but no label file (ignored): {', '.join(extra)}"] if extra else []
