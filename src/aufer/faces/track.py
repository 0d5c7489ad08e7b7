"""Which face is which from frame to frame: one IoU policy for the streaming pipeline (every face keeps an id,
:class:`IoUTracker`) and for ``aufer prepare`` (one face per frame, :func:`primary_face`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aufer.faces.base import Face, box_iou

__all__ = ["MIN_IOU", "IoUTracker", "primary_face"]

#: boxes of consecutive frames overlapping at least this much (intersection over union) are the same face
MIN_IOU = 0.3


def primary_face(faces: Sequence[Face], prev_box: np.ndarray | None, min_iou: float = MIN_IOU) -> Face | None:
    """The face to follow in a one-face-per-frame sequence: the face whose box overlaps ``prev_box`` (the
    previous frame's face, ``x, y, w, h`` pixels) most, if that IoU is at least ``min_iou``; else the largest
    face (box area); ``None`` when ``faces`` is empty."""
    if not faces:
        return None
    if prev_box is not None:
        ious = [box_iou(f.box, prev_box) for f in faces]
        k = int(np.argmax(ious))
        if ious[k] >= min_iou:
            return faces[k]
    return max(faces, key=lambda f: f.box[2] * f.box[3])


class IoUTracker:
    """Greedy frame-to-frame face tracker: a face keeps its ``face_id`` while its box overlaps (IoU ≥
    ``min_iou``) the box of a track seen in the last ``max_age`` frames; new faces get new ids (0, 1, ...)."""

    def __init__(self, min_iou: float = MIN_IOU, max_age: int = 12):
        self.min_iou, self.max_age = min_iou, max_age
        self._tracks: dict[int, tuple[np.ndarray, int]] = {}  # id -> (box, last frame)
        self._next = 0
        self._t = -1

    def update(self, boxes: list[np.ndarray]) -> list[int]:
        """Ids for the boxes (``x, y, w, h`` pixels) of the next frame, in the order given."""
        self._t += 1
        self._tracks = {k: v for k, v in self._tracks.items() if self._t - v[1] <= self.max_age}
        pairs = sorted(((box_iou(b, tb), i, k) for i, b in enumerate(boxes) for k, (tb, _) in self._tracks.items()),
                       reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        used = set()
        for iou, i, k in pairs:
            if iou < self.min_iou:
                break
            if ids[i] is None and k not in used:
                ids[i] = k
                used.add(k)
        for i, b in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self._next
                self._next += 1
            self._tracks[ids[i]] = (np.asarray(b, dtype=np.float64), self._t)
        return ids  # type: ignore[return-value]
