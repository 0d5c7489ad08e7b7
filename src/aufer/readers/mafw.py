"""MAFW reader (11-class dynamic expression, single-labelled subset, clip level, 5 official folds).

Layout facts: methods.md §1.5, protocols.json ``MAFW`` (``classes``, ``folds``), MAE-DFER ``preprocess/mafw.py``
(``split/single/no_caption/set_{k}/{train,test}.txt``: no header, space-delimited ``<video file> <label>``;
frames ``data/frames/{stem}/``). The archive names the split folder ``Train & Test Set``; ``split`` and
``Train_Test_Set`` are accepted as renamed copies.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from aufer import vocab
from aufer.readers._text import (build_clip_records, check_disjoint, class_index, clip_rows, collect_split,
                                 folder_has_images, read_lines)
from aufer.readers.records import ClipRecords, LayoutError, check_layout

__all__ = ["read_mafw", "SPLIT_DIRS", "SPLIT_SUBDIR", "FRAME_DIR", "CLIP_DIR"]

SPLIT_DIRS = ("Train & Test Set", "split", "Train_Test_Set")
SPLIT_SUBDIR = ("single", "no_caption")
FRAME_DIR = ("data", "frames")
CLIP_DIR = ("data", "clips")
_HINT = ("Expected MAFW's official layout: 'Train & Test Set/single/no_caption/set_{1..5}/train.txt' and test.txt "
         "(lines '<video file> <label>', e.g. '00025.mp4 happiness') and frames data/frames/{stem}/ or videos "
         "data/clips/{video file}.")


def read_mafw(root: str | Path, strict: bool = True) -> ClipRecords:
    """Read MAFW's single-labelled clips, their 11-class labels and the 5 official folds.

    Layout (methods.md §1.5; protocols.json MAFW; MAE-DFER preprocess/mafw.py):

    * split files ``{root}/Train & Test Set/single/no_caption/set_{k}/train.txt`` and ``test.txt`` (the folder
      may also be named ``split`` or ``Train_Test_Set``), k = 1 .. ``protocol("MAFW")["folds"]``; one line per
      clip, ``<video file name> <label>`` separated by white space, e.g. ``00025.mp4 happiness``; labels are
      names of ``vocab.emotions(11)`` (happiness, sadness, neutral, anger, surprise, disgust, fear, contempt,
      anxiety, helplessness, disappointment), spelling normalised by ``vocab.canonical_emotion``.
    * media: the frame folder ``{root}/data/frames/{stem}/`` if it holds images, else the video
      ``{root}/data/clips/{video file name}``.

    Args:
        root: the dataset root.
        strict: if False, clips with neither frames nor video are dropped and listed in ``notes``.

    Returns:
        :class:`ClipRecords` ``"MAFW"``: ``clip`` = ``subject`` = the file stem (``"00025"``), ``label`` 0–10;
        ``folds`` = ``{"1": {"train": [...], "test": [...]}, ..., "5": ...}``.

    Raises:
        LayoutError: listing every problem: no split folder, a missing split file, a malformed line or unknown
            label (file and line), a clip with two labels or in both parts of a fold, and (when ``strict``) a clip
            with neither frame folder nor video.
    """
    root = Path(root)
    classes = vocab.emotions(11)
    n_folds = int(vocab.protocol("MAFW")["folds"])
    split_root = next((root / d for d in SPLIT_DIRS if (root / d).is_dir()), None)
    if split_root is None:
        looked = ", ".join(repr(str(root / d)) for d in SPLIT_DIRS)
        raise LayoutError("MAFW", root, [f"no split folder: looked for {looked}"], _HINT)
    problems: list[str] = []
    labels: dict[str, tuple[int, str]] = {}
    names: dict[str, str] = {}
    folds: dict[str, dict[str, list[str]]] = {}
    for k in range(1, n_folds + 1):
        folder = split_root.joinpath(*SPLIT_SUBDIR, f"set_{k}")
        parts = {part: _read_split(folder / f"{part}.txt", classes, labels, names, problems)
                 for part in ("train", "test")}
        check_disjoint(parts, f"{folder} (train.txt, test.txt)", problems)
        folds[str(k)] = parts
    check_layout("MAFW", root, problems, _HINT)

    rows, missing = clip_rows(labels, lambda clip: _media(root, clip, names[clip]))
    notes = [f"MAFW splits from {split_root.joinpath(*SPLIT_SUBDIR)}"]
    return build_clip_records("MAFW", root, classes, rows, folds, notes, missing, strict, _HINT)


def _media(root: Path, clip: str, name: str) -> tuple[Path | None, str]:
    """The clip's frame folder if it holds images, else its video file, else ``(None, why)``."""
    frames = root.joinpath(*FRAME_DIR, clip)
    if folder_has_images(frames):
        return frames, ""
    video = root.joinpath(*CLIP_DIR, name)
    if video.is_file():
        return video, ""
    return None, f"neither frame folder {frames} nor video {video}"


def _read_split(path: Path, classes: tuple[str, ...], labels: dict, names: dict, problems: list[str]) -> list[str]:
    """Clip keys (file stems) of one split file; each clip's video file name is remembered in ``names``."""
    lines = read_lines(path, problems) or []
    return collect_split(path, lines, partial(_parse_line, classes=classes, names=names), labels, problems)


def _parse_line(line: str, where: str, problems: list[str], *, classes: tuple[str, ...],
                names: dict[str, str]) -> tuple[str, int] | None:
    """``(clip stem, label index)`` of a line ``<video file> <label>``; None after recording a problem."""
    fields = line.split()
    if len(fields) != 2:
        problems.append(f"{where}: expected '<video file> <label>', got {line[:60]!r}")
        return None
    label = class_index(fields[1], classes)
    if label is None:
        problems.append(f"{where}: unknown label {fields[1]!r} (classes: {', '.join(classes)})")
        return None
    clip = Path(fields[0]).stem
    names.setdefault(clip, fields[0])
    return clip, label
