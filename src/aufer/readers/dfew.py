"""DFEW reader (7-class dynamic expression, clip level, 5 official folds).

Layout facts: methods.md §1.3, protocols.json ``DFEW`` (``raw_layout``, ``label_coding``, ``folds``), AU-DFER
``M3DFEL/options.py`` and MAE-DFER ``preprocess/dfew.py`` (``EmoLabel_DataSplit/{train,test}(single-labeled)/
set_{k}.csv`` with columns ``video_name,label``; frame folders ``Clip/{clip_224x224_16f|jpg_256}/{clip:05d}``).
"""

from __future__ import annotations

from pathlib import Path

from aufer import vocab
from aufer.readers._text import (build_clip_records, check_disjoint, clip_rows, collect_split, frame_folder, parse_int,
                                 read_csv_rows)
from aufer.readers.records import ClipRecords, check_layout

__all__ = ["read_dfew", "SPLIT_DIR", "SPLIT_FOLDERS", "FRAME_SETS"]

SPLIT_DIR = "EmoLabel_DataSplit"
#: split folder of each part, inside SPLIT_DIR
SPLIT_FOLDERS = {"train": "train(single-labeled)", "test": "test(single-labeled)"}
#: frame sets shipped under {root}/Clip/: 16 temporally normalised 224×224 face frames, or all frames at 256
FRAME_SETS = ("clip_224x224_16f", "jpg_256")
_HINT = ("Expected DFEW's official layout: EmoLabel_DataSplit/train(single-labeled)/set_{1..5}.csv and "
         "test(single-labeled)/set_{1..5}.csv (header video_name,label; label 1-7) and frame folders "
         "Clip/clip_224x224_16f/{clip:05d}/ or Clip/jpg_256/{clip:05d}/.")


def read_dfew(root: str | Path, frames: str = "clip_224x224_16f", strict: bool = True) -> ClipRecords:
    """Read DFEW's single-labelled clips, their labels and the 5 official folds.

    Layout (methods.md §1.3; protocols.json DFEW; MAE-DFER preprocess/dfew.py):

    * split CSVs ``{root}/EmoLabel_DataSplit/train(single-labeled)/set_{k}.csv`` and
      ``test(single-labeled)/set_{k}.csv``, k = 1 .. ``protocol("DFEW")["folds"]``; header ``video_name,label``;
      ``video_name`` an integer clip number, ``label`` 1–7 → index label − 1 into ``vocab.emotions(7)``
      (happiness, sadness, neutral, anger, surprise, disgust, fear; protocols.json ``label_coding``);
    * frame folders ``{root}/Clip/{frames}/{clip:05d}/`` holding images (any image extension).

    Args:
        root: the dataset root.
        frames: the frame set, ``"clip_224x224_16f"`` (16 aligned frames per clip) or ``"jpg_256"`` (all frames).
        strict: if False, clips without a (non-empty) frame folder are dropped and listed in ``notes``.

    Returns:
        :class:`ClipRecords` ``"DFEW"``: the union of the clips of all split CSVs; ``clip`` = ``subject`` =
        ``f"{clip:05d}"`` (DFEW names no subjects), ``media`` = the frame folder, ``label`` 0–6;
        ``folds`` = ``{"1": {"train": [...], "test": [...]}, ..., "5": ...}``.

    Raises:
        LayoutError: listing every problem: a missing split CSV or frame set, a bad header, a malformed line or a
            label outside 1–7 (file and line), a clip labelled differently in two CSVs or in both parts of a fold,
            and (when ``strict``) a missing or empty frame folder.
    """
    root = Path(root)
    classes = vocab.emotions(7)
    n_folds = int(vocab.protocol("DFEW")["folds"])
    frame_root = root / "Clip" / frames
    problems: list[str] = []
    if not frame_root.is_dir():
        have = sorted(p.name for p in (root / "Clip").iterdir() if p.is_dir()) if (root / "Clip").is_dir() else []
        problems.append(f"{frame_root}: frame set folder missing (found under Clip/: {', '.join(have) or 'nothing'}; "
                        f"frame sets: {', '.join(FRAME_SETS)})")
    labels: dict[str, tuple[int, str]] = {}
    folds: dict[str, dict[str, list[str]]] = {}
    for k in range(1, n_folds + 1):
        parts = {part: _read_split(root / SPLIT_DIR / folder / f"set_{k}.csv", len(classes), labels, problems)
                 for part, folder in SPLIT_FOLDERS.items()}
        check_disjoint(parts, f"{root / SPLIT_DIR} fold {k}", problems)
        folds[str(k)] = parts
    check_layout("DFEW", root, problems, _HINT)

    rows, missing = clip_rows(labels, lambda clip: frame_folder(frame_root / clip))
    notes = [f"DFEW splits from {root / SPLIT_DIR}, frames from {frame_root}"]
    return build_clip_records("DFEW", root, classes, rows, folds, notes, missing, strict, _HINT)


def _read_split(path: Path, n_classes: int, labels: dict, problems: list[str]) -> list[str]:
    """Clip keys of one split CSV; labels (0-based) are merged into ``labels``, problems recorded."""
    parsed = read_csv_rows(path, problems)
    if parsed is None:
        return []
    header, rows = parsed
    names = [h.lower() for h in header]
    if "video_name" not in names or "label" not in names:
        problems.append(f"{path} line 1: header must name columns video_name,label (found: {', '.join(header)})")
        return []
    iv, il = names.index("video_name"), names.index("label")

    def parse(cells: list[str], where: str, problems: list[str]) -> tuple[str, int] | None:
        number = parse_int(cells[iv]) if len(cells) > max(iv, il) else None
        label = parse_int(cells[il]) if number is not None else None
        if number is None or number < 0 or label is None:
            problems.append(f"{where}: expected '<clip number>,<label 1-{n_classes}>', got {','.join(cells)[:60]!r}")
            return None
        if not 1 <= label <= n_classes:
            problems.append(f"{where}: label {label} outside 1-{n_classes}")
            return None
        return f"{number:05d}", label - 1  # csv label 1..7 -> index label-1 (protocols.json)

    return collect_split(path, rows, parse, labels, problems)
