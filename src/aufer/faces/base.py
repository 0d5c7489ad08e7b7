"""Face records shared by every face backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aufer.faces.landmarks import five_points


@dataclass
class Face:
    """One detected face in an image.

    Attributes:
        box: ``(4,)`` float, ``x, y, w, h`` in image pixels (top-left corner, width, height).
        score: detector confidence in [0, 1].
        landmarks: ``(478, 3)`` float, MediaPipe mesh in image pixels; column 2 is relative depth in the same
            units as x (smaller = closer to the camera).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def five(self) -> np.ndarray:
        """The five alignment points ``(5, 2)`` in image pixels (see :func:`aufer.faces.align.five_points`)."""
        return five_points(self.landmarks)


@dataclass
class AlignedFace:
    """A face with its aligned crop.

    Attributes:
        face: the detection in image coordinates.
        crop: ``(S, S, 3)`` uint8 RGB aligned crop.
        matrix: ``(2, 3)`` image → crop similarity.
        landmarks: ``(478, 3)`` mesh in crop pixels.
        face_id: track id within a video (0 for the first face), or the index in a still image.
    """

    face: Face
    crop: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    face_id: int = 0


class FaceDetector(Protocol):
    """A face backend: ``detect(image) -> list[Face]`` on one ``(H, W, 3)`` uint8 RGB image, best first."""

    def detect(self, image: np.ndarray) -> list[Face]: ...


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``x, y, w, h`` boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0
