"""FERV39K reader (7-class dynamic expression, clip level, one official train/test split).

Layout facts: methods.md §1.4, protocols.json ``FERV39K.split``, AU-DFER ``M3DFEL/options.py`` and MAE-DFER
``preprocess/ferv39k.py`` (``4_setups/All_scenes/{train,test}_All.csv``: no header, space-delimited
``<clip path> <Label>``; frame folders ``2_ClipsforFaceCrop/<clip path>/``).
"""

from __future__ import annotations

from pathlib import Path

from aufer import vocab
from aufer.readers.generic import build_clip_records, class_index, folder_has_images, note_label, read_lines
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
    both = sorted(set(parts["train"]) & set(parts["test"]))
    if both:
        problems.append(f"{split_dir}: {len(both)} clip(s) in both train_All.csv and test_All.csv, e.g. {both[0]}")
    check_layout("FERV39K", root, problems, _HINT)

    frame_root = root / FRAME_DIR
    missing: list[str] = []
    rows = []
    for clip, (label, where) in labels.items():
        folder = frame_root / clip
        if not folder_has_images(folder):
            state = "holds no image" if folder.is_dir() else "missing"
            missing.append(f"clip {clip} (listed at {where}): frame folder {folder} {state}")
        else:
            rows.append({"clip": clip, "subject": clip, "media": str(folder), "label": label})
    notes = [f"FERV39K split from {split_dir}, frames from {frame_root}"]
    return build_clip_records("FERV39K", root, classes, rows, {"1": parts}, notes, missing, strict, _HINT)


def _read_split(path: Path, classes: tuple[str, ...], labels: dict, problems: list[str]) -> list[str]:
    lines = read_lines(path, problems)
    if lines is None:
        return []
    clips = []
    for lineno, line in lines:
        where = f"{path} line {lineno}"
        fields = line.rsplit(None, 1)
        if len(fields) != 2:
            problems.append(f"{where}: expected '<clip path> <Label>', got {line[:60]!r}")
            continue
        clip = fields[0].replace("\\", "/").strip("/")
        if clip.startswith("./"):
            clip = clip[2:]
        label = class_index(fields[1], classes)
        if label is None:
            if lineno == lines[0][0] and fields[1].lower() in _HEADER_WORDS:
                continue
            problems.append(f"{where}: unknown label {fields[1]!r} (expected one of {', '.join(classes)}, "
                            "in any spelling aufer.vocab.canonical_emotion knows, e.g. Happy)")
            continue
        note_label(labels, clip, label, where, problems)
        clips.append(clip)
    return clips
