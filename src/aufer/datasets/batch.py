"""The one item/batch schema of every training and evaluation dataset (review §2.10).

Both :class:`~aufer.datasets.windows.AUWindowDataset` (AU windows) and
:class:`~aufer.datasets.clips.ExprClipDataset` (expression clips) return :class:`Item` dicts, built by
:func:`make_item`; losses, metrics and the engine may rely on every key being present with the dtype below. A
loader's batch (:func:`collate`) has the same keys with a leading batch dimension ``B``.

========== ======== =============== ===========================================================================
key        dtype    shape (item)    meaning
========== ======== =============== ===========================================================================
crops      uint8    (T, S, S, 3)    RGB aligned face crops, after the dataset's :class:`ClipTransform`
landmarks  float32  (T, 478, 3)     MediaPipe mesh in output-crop pixels (z in the same units)
au         int64    (T, A)          AU occurrence 1/0; −1 unknown (AU not coded, expression clip) or padding
expr       int64    ()              expression class; −1 unknown (AU windows)
valid      bool     (T,)            False on padding frames of a short AU window
detected   bool     (T,)            whether the face detector found the face in that frame
rows       int64    (T,)            rows of ``records.table`` (AU windows, to write predictions back); −1 for
                                    expression clips, so the key always exists
index      int64    ()              the item's index in its dataset
========== ======== =============== ===========================================================================

The clip/sequence name is not a tensor and is not part of the item: look it up from ``index`` (or ``rows``) in
the dataset's records.
"""

from __future__ import annotations

from typing import Sequence, TypedDict

import numpy as np
import torch

__all__ = ["Item", "ITEM_KEYS", "make_item", "collate"]


class Item(TypedDict):
    """One clip (see the module table); a batch has the same keys with a leading ``B``."""

    crops: torch.Tensor
    landmarks: torch.Tensor
    au: torch.Tensor
    expr: torch.Tensor
    valid: torch.Tensor
    detected: torch.Tensor
    rows: torch.Tensor
    index: torch.Tensor


#: the keys of :class:`Item`, in schema order
ITEM_KEYS: tuple[str, ...] = tuple(Item.__annotations__)


def make_item(crops: np.ndarray, landmarks: np.ndarray, au: np.ndarray, expr: int, valid: np.ndarray | None = None,
              detected: np.ndarray | None = None, rows: np.ndarray | None = None, index: int = 0) -> Item:
    """Build an :class:`Item` with the schema's dtypes from numpy arrays.

    Args:
        crops: ``(T, S, S, 3)`` uint8.
        landmarks: ``(T, 478, 3)``, cast to float32.
        au: ``(T, A)`` labels (1/0/−1), cast to int64; ``A`` may be 0.
        expr: class index, −1 unknown.
        valid, detected: ``(T,)`` bool; default all True.
        rows: ``(T,)`` record rows; default all −1.
        index: the item's index.

    Raises:
        ValueError: if the leading (frame) dimensions disagree or ``crops`` is not uint8 ``(T, S, S, 3)``.
    """
    crops = np.ascontiguousarray(crops)
    t = len(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be uint8 (T, S, S, 3), not {crops.dtype} {crops.shape}")
    valid = np.ones(t, bool) if valid is None else np.asarray(valid, bool)
    detected = np.ones(t, bool) if detected is None else np.asarray(detected, bool)
    rows = np.full(t, -1, np.int64) if rows is None else np.asarray(rows, np.int64)
    au = np.asarray(au, np.int64).reshape(t, -1)
    for name, a in (("landmarks", landmarks), ("au", au), ("valid", valid), ("detected", detected), ("rows", rows)):
        if len(a) != t:
            raise ValueError(f"{name} has {len(a)} frames, crops has {t}")
    return Item(crops=torch.from_numpy(crops), landmarks=torch.from_numpy(np.ascontiguousarray(landmarks, np.float32)),
                au=torch.from_numpy(np.ascontiguousarray(au)), expr=torch.tensor(int(expr), dtype=torch.int64),
                valid=torch.from_numpy(np.ascontiguousarray(valid)),
                detected=torch.from_numpy(np.ascontiguousarray(detected)),
                rows=torch.from_numpy(np.ascontiguousarray(rows)), index=torch.tensor(int(index), dtype=torch.int64))


def collate(items: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Stack items into a batch (``torch.stack`` per key).

    Raises:
        ValueError: if the items have different keys (datasets of two schemas in one loader) or are empty.
        RuntimeError: from ``torch.stack`` when shapes differ (e.g. different ``T`` or crop sides).
    """
    if not items:
        raise ValueError("cannot collate an empty list of items")
    keys = list(items[0])
    for it in items[1:]:
        if list(it) != keys and set(it) != set(keys):
            raise ValueError(f"items disagree on keys: {sorted(keys)} vs {sorted(it)}")
    return {k: torch.stack([it[k] for it in items]) for k in keys}
