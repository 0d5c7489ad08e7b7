"""FERV39K reader (7-class dynamic expression, clip level, one official train/test split).

Layout facts: methods.md §1.4, protocols.json ``FERV39K.split``, AU-DFER ``M3DFEL/options.py`` and MAE-DFER
``preprocess/ferv39k.py`` (``4_setups/All_scenes/{train,test}_All.csv``: no header, space-delimited
``<clip path> <Label>``; frame folders ``2_ClipsforFaceCrop/<clip path>/``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from aufer import vocab
from aufer.readers._text import (build_clip_records, check_disjoint, class_index, clip_rows, collect_split,
                                 frame_folder, read_lines)
from aufer.readers.records import ClipRecords, check_layout

__all__ = ["read_ferv39k", "SPLIT_DIR", "FRAME_DIR"]

SPLIT_DIR = ("4_setups", "All_scenes")
FRAME_DIR = "2_ClipsforFaceCrop"
_HINT = ("Expected FERV39K's official layout: 4_setups/All_scenes/train_All.csv and test_All.csv (lines "
         "'<clip path> <Label>', e.g. 'Action/Busy/0001 Happy') and frame folders 2_ClipsforFaceCrop/<clip path>/.")
_HEADER_WORDS = {"label", "labels", "emotion", "class"}


def read_ferv39k(root: str | Path, strict: bool = True) -> ClipRecords:
    """Read FERV39K's clips, labels and its single official split.

    Layout (methods.md §1.4; protocols.json FERV39K; MAE-DFER preprocess/ferv39k.py):

    * ``{root}/4_setups/All_scenes/train_All.csv`` and ``test_All.csv``: no header, one line per clip,
      ``<relative clip path> <Label>`` separated by white space (e.g. ``Action/Busy/0001 Happy``); labels Happy,
      Sad, Neutral, Angry, Surprise, Disgust, Fear map through ``vocab.canonical_emotion`` onto
      ``vocab.emotions(7)`` (same order as DFEW). A first line whose label reads like a column name is skipped.
    * frame folders ``{root}/2_ClipsforFaceCrop/<relative clip path>/`` holding images.

    Args:
        root: the dataset root.
        strict: if False, clips without a (non-empty) frame folder are dropped and listed in ``notes``.

    Returns:
        :class:`ClipRecords` ``"FERV39K"``: ``clip`` = ``subject`` = the relative clip path, ``media`` = its frame
        folder, ``label`` 0–6; ``folds`` = ``{"1": {"train": [...], "test": [...]}}``.

    Raises:
        LayoutError: listing every problem: a missing split file, a malformed line or unknown label (file and
            line), a clip with two labels or in both train and test, and (when ``strict``) a missing or empty
            frame folder.
    """
    root = Path(root)
    classes = vocab.emotions(7)
    split_dir = root.joinpath(*SPLIT_DIR)
    problems: list[str] = []
    labels: dict[str, tuple[int, str]] = {}
    parts = {part: _read_split(split_dir / f"{part}_All.csv", classes, labels, problems) for part in ("train", "test")}
    check_disjoint(parts, f"{split_dir} (train_All.csv, test_All.csv)", problems)
    check_layout("FERV39K", root, problems, _HINT)

    frame_root = root / FRAME_DIR
    rows, missing = clip_rows(labels, lambda clip: frame_folder(frame_root / clip))
    notes = [f"FERV39K split from {split_dir}, frames from {frame_root}"]
    return build_clip_records("FERV39K", root, classes, rows, {"1": parts}, notes, missing, strict, _HINT)


def _read_split(path: Path, classes: tuple[str, ...], labels: dict, problems: list[str]) -> list[str]:
    """Clip keys of one split file; a first line that reads like column names is skipped."""
    lines = read_lines(path, problems) or []
    if lines and _is_header(lines[0][1]):
        lines = lines[1:]
    return collect_split(path, lines, partial(_parse_line, classes=classes), labels, problems)


def _is_header(line: str) -> bool:
    fields = line.rsplit(None, 1)
    return len(fields) == 2 and fields[1].lower() in _HEADER_WORDS


def _parse_line(line: str, where: str, problems: list[str], *, classes: tuple[str, ...]) -> tuple[str, int] | None:
    """``(clip path, label index)`` of a line ``<clip path> <Label>``; None after recording a problem."""
    fields = line.rsplit(None, 1)
    if len(fields) != 2:
        problems.append(f"{where}: expected '<clip path> <Label>', got {line[:60]!r}")
        return None
    clip = fields[0].replace("\\", "/").strip("/")
    if clip.startswith("./"):
        clip = clip[2:]
    label = class_index(fields[1], classes)
    if label is None:
        problems.append(f"{where}: unknown label {fields[1]!r} (expected one of {', '.join(classes)}, "
                        "in any spelling aufer.vocab.canonical_emotion knows, e.g. Happy)")
        return None
    return clip, label
