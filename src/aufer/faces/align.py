"""Five-point similarity alignment of a face to aufer's canonical crop.

Alignment is a pure function of the landmarks: the five points (eye centres, nose tip, mouth corners) are
taken from the 478-point mesh and mapped by a least-squares similarity (rotation, uniform scale,
translation; Umeyama 1991) onto the canonical template of ``data/alignment.json``.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from aufer.faces import landmarks as L
from aufer.vocab import _json

__all__ = ["template", "five_points", "similarity", "transform_points", "warp_crop"]


@cache
def _template_unit() -> np.ndarray:
    spec = _json("alignment.json")
    pts = np.asarray(spec["arcface_112"], dtype=np.float64) / 112.0
    pts = (pts - 0.5) * float(spec["scale"]) + 0.5
    pts[:, 1] += float(spec["shift_y"])
    pts.setflags(write=False)
    return pts


def template(size: int = 224) -> np.ndarray:
    """Canonical five points for a square crop of ``size`` pixels, shape ``(5, 2)``, pixel coordinates
    (image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner)."""
    return _template_unit() * float(size)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The five alignment points of a 478-point MediaPipe mesh, shape ``(5, 2)`` in the landmarks' units.

    Eye centres are the midpoints of the eye corners (stable under gaze and blinks), then the nose tip and
    the outer mouth corners, in the order of :func:`template`.

    Raises:
        ValueError: if ``landmarks`` is not ``(N >= 468, 2 or 3)``.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] < 2:
        raise ValueError(f"expected MediaPipe mesh landmarks of shape (478, 2|3), got {lm.shape}")
    xy = lm[:, :2]
    return np.stack([
        (xy[L.EYE_L_OUTER] + xy[L.EYE_L_INNER]) / 2,
        (xy[L.EYE_R_INNER] + xy[L.EYE_R_OUTER]) / 2,
        xy[L.NOSE_TIP],
        xy[L.MOUTH_L],
        xy[L.MOUTH_R],
    ])


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
    """The ``(2, 3)`` image → crop similarity of a face, from its mesh landmarks (pixels)."""
    return similarity(five_points(landmarks), template(size))


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int = 224) -> np.ndarray:
    """Resample the aligned ``(size, size, C)`` crop of ``image`` under the image → crop ``matrix``.
    Pixels outside the image are filled by edge replication."""
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
