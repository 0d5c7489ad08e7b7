"""Five-point similarity alignment of a face to aufer's canonical crop.

Alignment is a pure function of the landmarks: the five points (eye centres, nose tip, mouth corners) are
taken from the 478-point mesh (:func:`aufer.faces.landmarks.five_points`, re-exported here) and mapped by a
least-squares similarity (rotation, uniform scale, translation; Umeyama 1991) onto the canonical template of
``data/alignment.json``.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from aufer.faces.base import AlignedFace, Face
from aufer.faces.landmarks import five_points
from aufer.vocab import read_json

__all__ = ["template", "five_points", "similarity", "transform_points", "alignment_matrix", "centre_matrix",
           "warp_crop", "align_face"]


@cache
def _template_unit() -> np.ndarray:
    spec = read_json("alignment.json")
    pts = np.asarray(spec["arcface_112"], dtype=np.float64) / 112.0
    pts = (pts - 0.5) * float(spec["scale"]) + 0.5
    pts[:, 1] += float(spec["shift_y"])
    pts.setflags(write=False)
    return pts


def template(size: int = 224) -> np.ndarray:
    """Canonical five points for a square crop of ``size`` pixels, shape ``(5, 2)``, pixel coordinates
    (image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner)."""
    return _template_unit() * float(size)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` onto ``dst`` (both ``(K, 2)``, K ≥ 2), as a
    ``(2, 3)`` matrix ``M`` with ``dst ≈ src @ M[:, :2].T + M[:, 2]``. Reflections are excluded.

    Source: Umeyama, "Least-squares estimation of transformation parameters between two point patterns",
    IEEE TPAMI 13(4), 1991.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var_s = (s ** 2).sum() / len(src)
    scale = (sig * sign).sum() / var_s if var_s > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` similarity to ``(N, 2|3)`` points. A third (depth) column is scaled by the
    transform's scale factor so that it stays in the same units as x and y."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts.copy()
    out[:, :2] = pts[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    if pts.shape[1] > 2:
        out[:, 2] = pts[:, 2] * np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    return out


def alignment_matrix(landmarks: np.ndarray, size: int = 224) -> np.ndarray:
    """The ``(2, 3)`` image → crop similarity of a face, from its ``(478, 2|3)`` mesh landmarks (pixels), for a
    crop of ``size`` pixels.

    Raises:
        ValueError: if ``landmarks`` is not a mesh (see :func:`five_points`).
    """
    return similarity(five_points(landmarks), template(size))


def centre_matrix(shape: tuple[int, ...], size: int = 224) -> np.ndarray:
    """The ``(2, 3)`` image → crop matrix that maps the central square of an image of ``shape`` ``(H, W, ...)``
    onto a ``size`` × ``size`` crop: the crop of a frame where no face was ever seen."""
    h, w = shape[:2]
    side = min(h, w)
    s = size / side
    return np.array([[s, 0, -s * (w - side) / 2], [0, s, -s * (h - side) / 2]])


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int = 224) -> np.ndarray:
    """Resample the aligned ``(size, size, C)`` crop of an ``(H, W, C)`` ``image`` under the ``(2, 3)`` image →
    crop ``matrix``. Pixels outside the image are filled by edge replication; a shrink by 2× or more is
    pre-filtered with a box filter (no aliasing)."""
    scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    interp = cv2.INTER_AREA if scale < 0.7 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:
        # warpAffine ignores INTER_AREA; pre-shrink with a box filter to avoid aliasing
        k = int(round(1.0 / scale))
        if k >= 2:
            small = cv2.resize(image, None, fx=1.0 / k, fy=1.0 / k, interpolation=cv2.INTER_AREA)
            pre = np.array([[1.0 / k, 0, 0.5 / k - 0.5], [0, 1.0 / k, 0.5 / k - 0.5]])
            full = np.vstack([matrix, [0, 0, 1]]) @ np.linalg.inv(np.vstack([pre, [0, 0, 1]]))
            return cv2.warpAffine(small, full[:2], (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_face(image: np.ndarray, face: Face, size: int = 224) -> AlignedFace:
    """Align one detected face of an ``(H, W, 3)`` uint8 image: its ``(size, size, 3)`` uint8 crop, the
    ``(2, 3)`` image → crop matrix and the ``(478, 3)`` landmarks in crop pixels.

    Raises:
        ValueError: if ``face.landmarks`` is not a mesh (see :func:`five_points`).
    """
    m = alignment_matrix(face.landmarks, size)
    return AlignedFace(face=face, crop=warp_crop(image, m, size), matrix=m, landmarks=transform_points(face.landmarks, m))
