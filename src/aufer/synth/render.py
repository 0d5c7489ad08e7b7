"""FACS-warp rendering: a real neutral photo turned into a SYNTHETIC expressive frame.

The photo's MediaPipe mesh landmarks are moved by the AU displacement patterns (:mod:`aufer.synth.patterns`)
and the image is warped piecewise-affinely over a triangulation of the mesh; an opened mouth gets an interior
(the person's teeth, a dark cavity where the jaw dropped, maybe a tongue: :mod:`aufer.synth.mouth`). The motion is a
geometric caricature of each AU (no wrinkles or bulges).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

import cv2
import numpy as np
from scipy.spatial import Delaunay

from aufer.faces import landmarks as L
from aufer.synth.mouth import Mouth, light_of, mouth_of, paint_interior
from aufer.synth.patterns import (AU_PATTERNS, CLOSED_GAP, LIPS_PART_SPAN, SYNTH_AUS, au_field, canonical_matrix, gates,
                                  lip_gap)
from aufer.synth.sample import OCCURRENCE_THRESHOLD

__all__ = ["SYNTH_VERSION", "BaseFace", "render"]

#: bump when rendering changes, so that cached synthetic data are regenerated
#: (5: teeth and cavity in the opened mouth, wider AU25 / AU26, CK+ AU27 drawn as AU26)
SYNTH_VERSION = 5


@dataclass
class BaseFace:
    """A real neutral photo prepared for FACS-warp.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        landmarks: ``(478, 3)`` MediaPipe mesh of the neutral face, image pixels.
        identity: person id (used for subject-exclusive splits and per-person seeds).
        mouth: the person's mouth interior (teeth, cavity); default :func:`aufer.synth.mouth.mouth_of` the
            identity.
    """

    image: np.ndarray
    landmarks: np.ndarray
    identity: str = ""
    aus: tuple[int, ...] = SYNTH_AUS
    mouth: Mouth | None = None

    @cached_property
    def interior(self) -> Mouth:
        """The mouth interior drawn in an opened mouth."""
        return self.mouth if self.mouth is not None else mouth_of(self.identity)

    @cached_property
    def light(self) -> np.ndarray:
        """(3,) RGB of a white surface in the photo (the mouth interior's light, :func:`aufer.synth.mouth.light_of`)."""
        return light_of(self.image, self.landmarks)

    @cached_property
    def to_canonical(self) -> np.ndarray:
        """(2, 3) image → canonical similarity."""
        return canonical_matrix(self.landmarks)

    @cached_property
    def canonical(self) -> np.ndarray:
        """(478, 2) neutral landmarks in the canonical frame (IOD units)."""
        m = self.to_canonical
        return self.landmarks[:, :2] @ m[:, :2].T + m[:, 2]

    @cached_property
    def fields(self) -> np.ndarray:
        """(A, 478, 2) per-AU displacement at intensity 1 in IMAGE pixels, AUs in ``self.aus`` order."""
        c = self.canonical
        masks = gates(c)
        lin_inv = np.linalg.inv(self.to_canonical[:, :2])
        return np.stack([au_field(c, AU_PATTERNS[a], masks) @ lin_inv.T for a in self.aus])

    @cached_property
    def iod_px(self) -> float:
        """Inter-ocular distance in image pixels."""
        return float(1.0 / np.sqrt(abs(np.linalg.det(self.to_canonical[:, :2]))))

    @cached_property
    def _frame_points(self) -> np.ndarray:
        """Fixed points on a rectangle around the face (and the image corners) that bound the warp."""
        h, w = self.image.shape[:2]
        lo = self.landmarks[:, :2].min(0)
        hi = self.landmarks[:, :2].max(0)
        pad = 0.35 * self.iod_px * 2
        x0, y0 = max(0.0, lo[0] - pad), max(0.0, lo[1] - pad)
        x1, y1 = min(w - 1.0, hi[0] + pad), min(h - 1.0, hi[1] + pad)
        k = 8
        xs, ys = np.linspace(x0, x1, k), np.linspace(y0, y1, k)
        ring = np.concatenate([np.stack([xs, np.full(k, y0)], 1), np.stack([xs, np.full(k, y1)], 1),
                               np.stack([np.full(k, x0), ys], 1)[1:-1], np.stack([np.full(k, x1), ys], 1)[1:-1]])
        return ring

    @cached_property
    def triangles(self) -> np.ndarray:
        """(K, 3) triangulation of the neutral mesh points (first 478) plus the fixed frame points."""
        pts = np.concatenate([self.landmarks[:, :2], self._frame_points])
        return Delaunay(pts, qhull_options="QJ").simplices.astype(np.int32)

    @cached_property
    def _closed_gap(self) -> float:
        return lip_gap(self.canonical)


def _warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Piecewise-affine backward warp: the output has ``image``'s pixel at ``src`` where ``dst`` lies.
    Only the bounding box of the triangles that move is resampled."""
    moved = np.abs(dst - src).max(1) > 1e-3
    active = moved[tris].any(1)
    if not active.any():
        return image.copy()
    t = tris[active]
    d = dst[t]  # (K, 3, 2)
    s = src[t]
    h, w = image.shape[:2]
    lo = np.maximum(np.floor(d.reshape(-1, 2).min(0)).astype(int), 0)
    hi = np.minimum(np.ceil(d.reshape(-1, 2).max(0)).astype(int) + 1, [w, h])
    lab = np.full((hi[1] - lo[1], hi[0] - lo[0]), len(t), np.int32)  # len(t) = identity (a still triangle)
    polys = np.round((d - lo) * 16).astype(np.int32)
    for k in range(len(t)):
        cv2.fillConvexPoly(lab, polys[k], k, lineType=cv2.LINE_8, shift=4)
    # per-triangle affine dst -> src: [sx, sy] = A @ [dx, dy, 1], in box-local dst coordinates
    dh = np.concatenate([d - lo, np.ones((len(t), 3, 1))], 2)  # (K, 3, 3)
    aff = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (len(t) + 1, 1, 1))
    aff[:, :, 2] += lo  # identity in box-local coordinates
    ok = np.abs(np.linalg.det(dh)) > 1e-9
    aff[:-1][ok] = np.linalg.solve(dh[ok], s[ok]).transpose(0, 2, 1)
    coef = aff.reshape(-1, 6).astype(np.float32)[lab]  # (bh, bw, 6)
    gy, gx = np.mgrid[0:lab.shape[0], 0:lab.shape[1]].astype(np.float32)
    map_x = coef[..., 0] * gx + coef[..., 1] * gy + coef[..., 2]
    map_y = coef[..., 3] * gx + coef[..., 4] * gy + coef[..., 5]
    out = image.copy()
    out[lo[1]:hi[1], lo[0]:hi[0]] = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def render(base: BaseFace, intensities: Mapping[int, float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one SYNTHETIC expressive frame from a neutral base face.

    Args:
        base: the neutral face.
        intensities: AU → intensity in [0, 1], or an ``(A,)`` array in ``base.aus`` order.

    Returns:
        ``(image, landmarks, labels_intensity)``: the warped ``(H, W, 3)`` uint8 RGB image, the moved mesh
        ``(478, 3)`` in image pixels (where the landmarks were put, before any re-detection), and the ``(A,)``
        intensities actually shown. AU25 (lips part) is derived from the rendered inner-lip gap, so that an
        opening made by AU26 or AU10, or a neutral face at rest with parted lips, is labelled as lips part.

    Raises:
        KeyError: for an AU FACS-warp cannot render.
        ValueError: for an intensity array that is not ``(A,)``.
    """
    a = _as_vector(base, intensities)
    disp = np.tensordot(a, base.fields, axes=1)  # (478, 2) pixels
    src = base.landmarks[:, :2]
    dst = src + disp
    frame = base._frame_points
    image = _warp(base.image, np.concatenate([src, frame]), np.concatenate([dst, frame]), base.triangles)
    m = base.to_canonical
    gap = lip_gap(dst @ m[:, :2].T + m[:, 2])
    jaw = 0.0
    if 26 in base.aus:  # the lower teeth ride on the jaw: AU26's motion of the lower inner-lip midpoint
        j = base.aus.index(26)
        jaw = float(a[j] * (base.fields[j, L.LIP_LOWER_INNER_MID] @ m[:, :2].T)[1])
    # the interior fades in over the last half of the way from the closed gap (or the face's own rest gap) to the
    # gap where AU25 starts to be labelled present, and is fully drawn there: visible teeth are labelled lips part
    full = OCCURRENCE_THRESHOLD * LIPS_PART_SPAN
    image = paint_interior(image, dst[list(L.INNER_LIP_RING)], m, base.canonical, base.interior, base.light, jaw,
                           gap - max(base._closed_gap, CLOSED_GAP) - full / 2, base.iod_px, fade=full / 2)
    shown = a.copy()
    if 25 in base.aus:
        j = base.aus.index(25)
        shown[j] = max(shown[j], float(np.clip((gap - CLOSED_GAP) / LIPS_PART_SPAN, 0.0, 1.0)))
    lm = base.landmarks.copy()
    lm[:, :2] = dst
    return image, lm, shown


def _as_vector(base: BaseFace, intensities: Mapping[int, float] | np.ndarray) -> np.ndarray:
    if isinstance(intensities, Mapping):
        unknown = set(intensities) - set(base.aus)
        if unknown:
            raise KeyError(f"FACS-warp cannot render AU{sorted(unknown)}; it renders AUs {list(base.aus)}")
        return np.array([float(intensities.get(a, 0.0)) for a in base.aus])
    a = np.asarray(intensities, dtype=np.float64)
    if a.shape != (len(base.aus),):
        raise ValueError(f"expected {len(base.aus)} intensities (AUs {list(base.aus)}), got shape {a.shape}")
    return np.clip(a, 0.0, 1.0)

