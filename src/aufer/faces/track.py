"""Which face is which from frame to frame.

Two policies share the IoU threshold :data:`MIN_IOU`:

* :func:`primary_face`, for ``aufer prepare`` (one face per frame): the face overlapping the previous one, else
  the largest.
* :class:`FaceTracker` (also named :class:`IoUTracker`), for the streaming pipeline: every face keeps an id.

Tracking rule of :class:`FaceTracker`, one :meth:`~FaceTracker.update` per frame:

1. **Tracks.** A track holds its last box (``x, y, w, h`` pixels), a constant-velocity motion model (velocity of
   the box centre in pixels per frame, an exponential average with weight ``MOMENTUM`` = 0.5 on the old value)
   and, when descriptors are given, an appearance descriptor (unit vector, exponential average with weight
   ``DESCRIPTOR_MOMENTUM`` = 0.8 on the old value). A track not matched for more than ``max_age`` frames
   (default 12) is dropped; until then it coasts on its velocity, so an id survives a short miss.
2. **Prediction.** A track last seen ``g`` frames ago is expected at its box moved by ``g`` × velocity (same
   size). Matching against the predicted box, not the last one, is what keeps the ids of two faces that pass each
   other: each prediction stays on its own face's side.
3. **Gate.** A detection may take a track when the IoU of its box with the predicted box is ≥ ``min_iou``
   (default 0.3), or, with descriptors on both sides, when their cosine similarity is ≥ ``min_similarity``
   (default 0.9) and its centre is within ``MAX_DISTANCE`` = 1.5 track sizes (``sqrt(w·h)``) of the predicted
   centre (a face that came back a little off its predicted path).
4. **Cost and assignment.** Allowed pairs cost ``(1 − IoU) + APPEARANCE_WEIGHT · (1 − similarity) +
   DISTANCE_WEIGHT · min(distance, 1)`` (weights 0.5 and 0.25, distance in track sizes; the appearance term is
   left out without descriptors); the assignment with the most allowed pairs and, among those, the least total
   cost is found with the Hungarian method (:func:`scipy.optimize.linear_sum_assignment`; a greedy
   best-pair-first rule leaves a face unmatched when its only track went to a slightly better pair).
   Detections left over start new tracks with new ids (0, 1, 2, ... in order of appearance).

Appearance is a tie-breaker, not an identity: on the 102 bundled London people the descriptor of
:func:`appearance_descriptor` (aligned 224-pixel crops) has a cosine similarity of 0.96 on average between one
person's neutral and smiling faces (93 % of them ≥ 0.9) and 0.63 between different people (2 % of the pairs
≥ 0.9); the ranges overlap, so appearance never vetoes an overlap match.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from aufer.faces.base import Face, box_iou

__all__ = ["MIN_IOU", "FaceTracker", "IoUTracker", "appearance_descriptor", "primary_face"]

#: boxes of consecutive frames overlapping at least this much (intersection over union) are the same face
MIN_IOU = 0.3
#: appearance similarity needed to match a face outside the IoU gate
MIN_SIMILARITY = 0.9
#: reach of the appearance gate, in track sizes from the predicted centre
MAX_DISTANCE = 1.5
#: cost weights of the appearance and distance terms
APPEARANCE_WEIGHT = 0.5
DISTANCE_WEIGHT = 0.25
#: weight of the old value in the velocity and descriptor averages
MOMENTUM = 0.5
DESCRIPTOR_MOMENTUM = 0.8
_FORBIDDEN = 1e6


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


def appearance_descriptor(crop: np.ndarray) -> np.ndarray:
    """A small appearance descriptor of a face crop (ideally the aligned crop of
    :func:`aufer.faces.align.align_face`): ``(176,)`` float64 unit vector, the concatenation of a 12 × 12 grey
    patch of the central 70 % of the crop (zero mean, weight 0.75 of the squared norm) and a 8 × 4 hue ×
    saturation histogram of the whole crop (square-rooted, weight 0.25). Compare two with a dot product (cosine
    similarity in [−1, 1]).

    Args:
        crop: ``(H, W, 3)`` uint8 RGB image, any size ≥ 4 pixels per side.

    Raises:
        ValueError: if ``crop`` is not an ``(H, W, 3)`` uint8 array of at least 4 × 4 pixels.
    """
    if (not isinstance(crop, np.ndarray) or crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8
            or min(crop.shape[:2]) < 4):
        got = f"{crop.shape} {crop.dtype}" if isinstance(crop, np.ndarray) else type(crop).__name__
        raise ValueError(f"expected an (H, W, 3) uint8 RGB crop of at least 4x4 pixels, got {got}")
    crop = np.ascontiguousarray(crop)
    h, w = crop.shape[:2]
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[int(h * 0.15): h - int(h * 0.15), int(w * 0.15): w - int(w * 0.15)]
    g = cv2.resize(grey, (12, 12), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    g -= g.mean()
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [8, 4], [0, 180, 0, 256]).astype(np.float64).ravel()
    hist = np.sqrt(hist / max(hist.sum(), 1.0))
    parts = [np.sqrt(0.75) * _unit(g), np.sqrt(0.25) * _unit(hist)]
    return _unit(np.concatenate(parts))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class _Track:
    __slots__ = ("box", "velocity", "last", "descriptor")

    def __init__(self, box: np.ndarray, t: int, descriptor: np.ndarray | None):
        self.box, self.last, self.descriptor = box, t, descriptor
        self.velocity = np.zeros(2)

    def predict(self, t: int) -> np.ndarray:
        p = self.box.copy()
        p[:2] += self.velocity * (t - self.last)
        return p


def _centre(b: np.ndarray) -> np.ndarray:
    return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])


class FaceTracker:
    """Face tracker by IoU, motion and appearance with Hungarian assignment (rule and thresholds: the module
    docstring). Ids are ints from 0, never reused.

    Args:
        min_iou: IoU between a detection and a track's predicted box that allows a match (default 0.3).
        max_age: frames a track survives unmatched (default 12: half a second at 24 frames/s); a face missed for
            up to this many frames keeps its id.
        min_similarity: descriptor cosine similarity that allows a match outside the IoU gate (default 0.9).

    Raises:
        ValueError: if ``min_iou`` or ``min_similarity`` is not in [0, 1] or ``max_age`` is negative.

    Example:
        >>> t = FaceTracker()
        >>> t.update([np.array([0, 0, 10, 10]), np.array([50, 50, 10, 10])])
        [0, 1]
    """

    def __init__(self, min_iou: float = MIN_IOU, max_age: int = 12, min_similarity: float = MIN_SIMILARITY):
        if not 0.0 <= float(min_iou) <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {min_iou!r}")
        if not 0.0 <= float(min_similarity) <= 1.0:
            raise ValueError(f"min_similarity must be in [0, 1], got {min_similarity!r}")
        if int(max_age) < 0:
            raise ValueError(f"max_age must be >= 0 frames, got {max_age!r}")
        self.min_iou, self.max_age, self.min_similarity = float(min_iou), int(max_age), float(min_similarity)
        self._tracks: dict[int, _Track] = {}
        self._next = 0
        self._t = -1

    @property
    def frame(self) -> int:
        """Index of the last frame given to :meth:`update` (−1 before the first)."""
        return self._t

    def expected_boxes(self) -> dict[int, np.ndarray]:
        """``{id: (4,) box}``: where each live track (seen in the last ``max_age`` frames) is expected in the
        next frame, ``x, y, w, h`` pixels (constant-velocity prediction)."""
        t = self._t + 1
        return {k: tr.predict(t) for k, tr in self._tracks.items() if t - tr.last <= self.max_age}

    def update(self, boxes: Sequence[np.ndarray], descriptors: Sequence[np.ndarray | None] | None = None) -> list[int]:
        """Ids for the faces of the next frame, in the order given.

        Args:
            boxes: one ``(4,)`` box per face, ``x, y, w, h`` in pixels.
            descriptors: optional, one unit-vector descriptor per face (e.g. :func:`appearance_descriptor` of
                its aligned crop; ``None`` for a face without one); all of one length.

        Raises:
            ValueError: if ``descriptors`` is given with a length other than ``len(boxes)``.
        """
        boxes = [np.asarray(b, dtype=np.float64).reshape(4) for b in boxes]
        if descriptors is None:
            descs: list[np.ndarray | None] = [None] * len(boxes)
        else:
            descs = [None if d is None else np.asarray(d, dtype=np.float64).ravel() for d in descriptors]
            if len(descs) != len(boxes):
                raise ValueError(f"got {len(descs)} descriptors for {len(boxes)} boxes")
        self._t += 1
        t = self._t
        self._tracks = {k: tr for k, tr in self._tracks.items() if t - tr.last <= self.max_age}
        keys = list(self._tracks)
        ids: list[int | None] = [None] * len(boxes)
        if boxes and keys:
            cost = np.full((len(boxes), len(keys)), _FORBIDDEN)
            for j, k in enumerate(keys):
                tr = self._tracks[k]
                pred = tr.predict(t)
                size = max(float(np.sqrt(pred[2] * pred[3])), 1e-6)
                for i, b in enumerate(boxes):
                    iou = box_iou(b, pred)
                    dist = float(np.linalg.norm(_centre(b) - _centre(pred))) / size
                    sim = None
                    if descs[i] is not None and tr.descriptor is not None:
                        sim = float(descs[i] @ tr.descriptor)
                    ok = iou >= self.min_iou or (sim is not None and sim >= self.min_similarity
                                                 and dist <= MAX_DISTANCE)
                    if ok:
                        c = (1.0 - iou) + DISTANCE_WEIGHT * min(dist, 1.0)
                        if sim is not None:
                            c += APPEARANCE_WEIGHT * (1.0 - sim)
                        cost[i, j] = c
            for i, j in zip(*linear_sum_assignment(cost)):
                if cost[i, j] < _FORBIDDEN:
                    ids[i] = keys[j]
                    self._match(self._tracks[keys[j]], boxes[i], descs[i], t)
        for i, b in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self._next
                self._tracks[self._next] = _Track(b, t, descs[i])
                self._next += 1
        return ids  # type: ignore[return-value]

    @staticmethod
    def _match(tr: _Track, box: np.ndarray, desc: np.ndarray | None, t: int) -> None:
        observed = (_centre(box) - _centre(tr.box)) / max(t - tr.last, 1)
        tr.velocity = MOMENTUM * tr.velocity + (1.0 - MOMENTUM) * observed
        tr.box, tr.last = box, t
        if desc is not None:
            tr.descriptor = desc if tr.descriptor is None else _unit(
                DESCRIPTOR_MOMENTUM * tr.descriptor + (1.0 - DESCRIPTOR_MOMENTUM) * desc)


#: the former name of :class:`FaceTracker` (greedy IoU only before), kept for existing callers
IoUTracker = FaceTracker
