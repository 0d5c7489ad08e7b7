"""DISFA reader (AU intensity 0–5 → occurrence, frame level, left-camera videos).

Layout facts: methods.md §1.2, protocols.json ``DISFA.raw_layout`` and ``DISFA.occurrence_rule``, and ME-GraphAU
``tool/DISFA_image_label_process.py`` (``ActionUnit_Labels/{SN}/{SN}_au{k}.txt``, lines ``frame,intensity``,
occurrence = intensity ≥ 2).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Iterable

import numpy as np

from aufer import vocab
from aufer.media import MediaError, video_info
from aufer.readers._text import SUBJECT_NAME, build_frame_records, parse_int, read_lines, report_missing
from aufer.readers.records import FrameRecords, LayoutError, check_layout

__all__ = ["read_disfa", "occurrence_rule", "VIDEO_DIR", "LABEL_DIR"]

VIDEO_DIR = "Videos_LeftCamera"
LABEL_DIR = "ActionUnit_Labels"
_HINT = ("Expected DISFA's official layout: Videos_LeftCamera/LeftVideo{SN}_comp.avi and "
         "ActionUnit_Labels/{SN}/{SN}_au{k}.txt with lines 'frame,intensity' (frame 1-based, intensity 0-5).")


@cache
def occurrence_rule() -> tuple[float, float, float]:
    """``(threshold, scale_min, scale_max)`` parsed from protocols.json ``DISFA.occurrence_rule``
    ("intensity >= 2 on the 0-5 scale"): an AU occurs when intensity ≥ threshold."""
    rule = vocab.protocol("DISFA")["occurrence_rule"]
    m = re.search(r">=\s*([\d.]+)\s+on the\s+([\d.]+)\s*-\s*([\d.]+)\s+scale", rule)
    if not m:
        raise RuntimeError(f"cannot parse DISFA occurrence rule {rule!r} in protocols.json")
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def video_path(root: Path, subject: str) -> Path:
    """The left-camera video of a subject: ``{root}/Videos_LeftCamera/LeftVideo{SN}_comp.avi``."""
    return Path(root) / VIDEO_DIR / f"LeftVideo{subject}_comp.avi"


def read_disfa(root: str | Path, subjects: Iterable[str] | None = None, check_videos: bool = True,
               strict: bool = True) -> FrameRecords:
    """Read DISFA's per-frame AU intensities and derive occurrence.

    Layout (methods.md §1.2; protocols.json; ME-GraphAU tool/DISFA_image_label_process.py):

    * videos ``{root}/Videos_LeftCamera/LeftVideo{SN}_comp.avi`` (``SN001`` ...);
    * labels ``{root}/ActionUnit_Labels/{SN}/{SN}_au{k}.txt`` for DISFA's 8 AUs (``vocab.dataset_aus("DISFA")``),
      one line ``frame,intensity`` per frame, frame 1-based, intensity an integer on the 0–5 scale.

    Occurrence = intensity ≥ 2 (protocols.json ``occurrence_rule``, parsed by :func:`occurrence_rule`).
    Videos are not decoded; with ``check_videos`` the container's frame count (PyAV ``stream.frames``, when
    the container states it) must be at least the last labelled frame.

    Args:
        root: the dataset root.
        subjects: read only these subjects (e.g. ``["SN001"]``).
        check_videos: open each video to compare its stated frame count with the labels.
        strict: if False, subjects without a video are dropped and listed in ``notes`` instead of raising.

    Returns:
        :class:`FrameRecords` ``"DISFA"``: one row per labelled frame; ``subject`` = ``sequence`` = ``"SN001"``,
        ``frame`` = the label file's frame number, ``media`` = the video path, ``media_index`` = frame − 1;
        ``occurrence`` ``(N, 8)`` int8 (0/1); ``intensity`` ``(N, 8)`` float32 raw 0–5.

    Raises:
        LayoutError: listing every problem: missing label folder, video or AU file, malformed lines (file and
            line number), AU files of one subject with different frames, a video with fewer frames than labels.
    """
    root = Path(root)
    aus = vocab.dataset_aus("DISFA")
    threshold, _, _ = occurrence_rule()
    label_dir = root / LABEL_DIR
    if not label_dir.is_dir():
        raise LayoutError("DISFA", root, [f"{label_dir}: label folder missing"], _HINT)
    found = sorted(p.name for p in label_dir.iterdir() if p.is_dir() and SUBJECT_NAME.match(p.name))
    problems: list[str] = []
    if subjects is not None:
        wanted = list(dict.fromkeys(subjects))
        problems.extend(f"subject {s}: label folder {label_dir / s} missing" for s in wanted if s not in found)
        found = [s for s in found if s in set(wanted)]
    if not found and not problems:
        problems.append(f"{label_dir}: no subject folder (e.g. ActionUnit_Labels/SN001/)")
    check_layout("DISFA", root, problems, _HINT)

    missing: list[str] = []
    cols: dict[str, list] = {k: [] for k in FrameRecords.COLUMNS}
    intensity = []
    for sn in found:
        parsed = _subject_labels(label_dir / sn, sn, aus, problems)
        if parsed is None:
            continue
        frames, values = parsed
        video = video_path(root, sn)
        if not video.is_file():
            missing.append(f"{sn}: video {video} missing")
            continue
        if check_videos:
            _check_video(video, max(frames), problems)
        cols["subject"].extend([sn] * len(frames))
        cols["sequence"].extend([sn] * len(frames))
        cols["frame"].extend(frames)
        cols["media"].extend([str(video)] * len(frames))
        cols["media_index"].extend(f - 1 for f in frames)
        intensity.append(values)
    notes = [f"DISFA labels from {label_dir}, videos from {root / VIDEO_DIR}; occurrence = intensity >= {threshold:g}"]
    report_missing(missing, strict, problems, notes)
    check_layout("DISFA", root, problems, _HINT)
    if subjects is None:
        notes.extend(_unlabelled_videos(root, set(found)))
    inten = np.concatenate(intensity).astype(np.float32) if intensity else np.zeros((0, len(aus)), np.float32)
    occ = (inten >= threshold).astype(np.int8)
    return build_frame_records("DISFA", root, aus, cols, occ, inten, notes)


def _subject_labels(folder: Path, sn: str, aus: tuple[int, ...], problems: list[str]):
    """``(frame numbers, (F, A) intensities)`` of one subject, or None after recording its problems."""
    per_au: dict[int, dict[int, float]] = {}
    for au in aus:
        parsed = _au_file(folder / f"{sn}_au{au}.txt", problems)
        if parsed is not None:
            per_au[au] = parsed
    if len(per_au) < len(aus):
        return None
    counts = {au: len(v) for au, v in per_au.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{sn}_au{au}.txt {n}" for au, n in counts.items())
        problems.append(f"{folder}: AU files have different frame counts ({listed})")
        return None
    frames = sorted(per_au[aus[0]])
    for au in aus[1:]:
        if sorted(per_au[au]) != frames:
            problems.append(f"{folder}: {sn}_au{au}.txt labels other frame numbers than {sn}_au{aus[0]}.txt")
            return None
    if not frames:
        problems.append(f"{folder}: AU files hold no label line")
        return None
    values = np.array([[per_au[au][f] for au in aus] for f in frames], dtype=np.float32)
    return frames, values


def _au_file(path: Path, problems: list[str]) -> dict[int, float] | None:
    """``{frame: intensity}`` of one ``{SN}_au{k}.txt``; malformed lines are recorded with their number."""
    lines = read_lines(path, problems)
    if lines is None:
        return None
    _, lo, hi = occurrence_rule()
    out: dict[int, float] = {}
    ok = True
    for lineno, line in lines:
        parts = [p.strip() for p in line.split(",")]
        frame = parse_int(parts[0]) if len(parts) == 2 else None
        value = parse_int(parts[1]) if len(parts) == 2 else None
        if frame is None or value is None or frame < 1 or not lo <= value <= hi:
            problems.append(f"{path} line {lineno}: expected 'frame,intensity' (frame >= 1, intensity "
                            f"{lo:g}-{hi:g}), got {line[:60]!r}")
            ok = False
        elif frame in out:
            problems.append(f"{path} line {lineno}: frame {frame} labelled twice")
            ok = False
        else:
            out[frame] = float(value)
    return out if ok else None


def _check_video(video: Path, last_frame: int, problems: list[str]) -> None:
    """Compare the container's stated frame count (:func:`aufer.media.video_info`, no decoding) with the last
    labelled frame."""
    try:
        n = video_info(video)["n_frames"]
    except MediaError as e:
        problems.append(str(e))
        return
    if 0 < n < last_frame:
        problems.append(f"{video}: the video has {n} frames but labels go up to frame {last_frame}")


def _unlabelled_videos(root: Path, labelled: set[str]) -> list[str]:
    folder = root / VIDEO_DIR
    if not folder.is_dir():
        return []
    names = re.compile(r"^LeftVideo(.+)_comp$")
    extra = sorted(m.group(1) for p in folder.iterdir() if (m := names.match(p.stem)) and m.group(1) not in labelled)
    return [f"subjects with a video but no labels (ignored): {', '.join(extra)}"] if extra else []
