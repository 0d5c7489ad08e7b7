"""FACS-warp: SYNTHETIC AU-labelled images and clips made from real neutral faces.

A real neutral photo is turned into an expressive one by moving its MediaPipe mesh landmarks with a per-AU
displacement pattern and warping the image piecewise-affinely over a triangulation of the mesh. The motion is
synthetic (a geometric caricature of each AU: no wrinkles, bulges or teeth), and every output of this module
carries ``SYNTHETIC_NOTE``.

Displacement patterns (aufer's own design, not a published model) are written in the *canonical face frame*:
the aligned face (see :mod:`aufer.faces.align`) rescaled so that the eye centres sit at (−0.5, 0) and (0.5, 0);
units are inter-ocular distances (IOD), x points to the image right and y down. Each AU is a list of handles
(landmark groups with a displacement at intensity 1) whose motion spreads to the rest of the mesh with a
Gaussian falloff, gated so that motion does not leak across the mouth opening or the eye fissure.

AU combinations come from two real sources (package data): CK+ P(AU | emotion) for expression prototypes
(facs_priors.json) and the BP4D/DISFA frame base rates (label_stats.json). Clips follow onset–apex–offset
intensity curves. Everything is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from typing import Mapping, Sequence

import zlib

import cv2
import numpy as np
from scipy.spatial import Delaunay

from aufer import vocab
from aufer.faces import landmarks as L
from aufer.faces.align import alignment_matrix, template

__all__ = [
    "SYNTHETIC_NOTE", "SYNTH_AUS", "OCCURRENCE_THRESHOLD", "Handle", "AU_PATTERNS", "BaseFace", "render",
    "intensity_curve", "sample_au_peaks", "sample_expression_peaks", "au_clip_intensities", "target_motion",
    "occurrence", "realise", "make_au_clips", "make_expression_clips", "SYNTH_VERSION",
]

#: bump when rendering changes, so that cached synthetic data are regenerated
SYNTH_VERSION = 4

SYNTHETIC_NOTE = "SYNTHETIC facial motion (aufer FACS-warp of a real neutral photo); not a real expression"

#: an AU is labelled present (occurrence 1) when its intensity in [0, 1] reaches this value (aufer's convention,
#: close to FACS intensity B on the A–E scale; DISFA's ≥ 2 of 5 would be 0.4).
OCCURRENCE_THRESHOLD = 0.2


@dataclass(frozen=True)
class Handle:
    """One group of control landmarks of an AU pattern.

    Attributes:
        points: MediaPipe mesh indices (both sides of the face where the AU is bilateral).
        d: displacement at intensity 1 in IOD units, ``(outward, down)``: outward > 0 moves a point away from
            the face midline (mirrored per side), down > 0 moves it down.
        sigma: falloff radius in IOD units (Gaussian).
        gate: which mesh points may move: ``all``, ``above_mouth``, ``below_mouth``, ``above_lids``,
            ``upper_eye`` or ``lower_eye``.
        only: if set, only these points move (no spread to the rest of the mesh).
        taper: lip points move less towards the mouth corners (parabolic profile across the mouth width), so
            that an opening mouth is lens-shaped.
    """

    points: tuple[int, ...]
    d: tuple[float, float]
    sigma: float
    gate: str = "all"
    only: tuple[int, ...] | None = None
    taper: bool = False


_LOWER_LIP = L.LIPS_OUTER_LOWER + L.LIPS_INNER_LOWER
_UPPER_LIP = L.LIPS_OUTER_UPPER + L.LIPS_INNER_UPPER
_UPPER_LID_MID = (161, 160, 159, 158, 157, 388, 387, 386, 385, 384)
_LOWER_LID = L.LOWER_LID_L + L.LOWER_LID_R
_LIP_CENTRE_UPPER = (0, 37, 267, 13, 82, 312, 81, 311)

#: AU → handles. Magnitudes are at intensity 1 (a strong, "E"-level action) in IOD units.
AU_PATTERNS: dict[int, tuple[Handle, ...]] = {
    1: (Handle(L.BROW_L_INNER + L.BROW_R_INNER, (0.0, -0.10), 0.10, "above_lids"),),
    2: (Handle(L.BROW_L_OUTER + L.BROW_R_OUTER, (0.0, -0.10), 0.10, "above_lids"),),
    4: (Handle(L.BROW_L_INNER + L.BROW_R_INNER, (-0.05, 0.06), 0.08, "above_lids"),
        Handle(L.BROW_L_MID + L.BROW_R_MID + L.BROW_L_OUTER + L.BROW_R_OUTER, (-0.02, 0.03), 0.08, "above_lids")),
    5: (Handle(_UPPER_LID_MID, (0.0, -0.035), 0.05, "upper_eye"),),
    6: (Handle(_LOWER_LID, (0.0, -0.03), 0.05, "lower_eye"),
        Handle(L.CHEEK_L + L.CHEEK_R, (0.0, -0.05), 0.12, "lower_eye")),
    7: (Handle(_LOWER_LID, (0.0, -0.04), 0.04, "lower_eye"),),
    9: (Handle(L.NOSE_ALAE, (0.0, -0.07), 0.09, "above_mouth"),
        Handle(_LIP_CENTRE_UPPER, (0.0, -0.03), 0.06, "above_mouth"),
        Handle(L.BROW_L_INNER + L.BROW_R_INNER, (-0.01, 0.025), 0.07, "above_lids")),
    10: (Handle(_UPPER_LIP, (0.0, -0.045), 0.08, "above_mouth"),),
    12: (Handle(L.MOUTH_CORNERS, (0.07, -0.06), 0.11, "all"),),
    15: (Handle(L.MOUTH_CORNERS, (0.01, 0.05), 0.10, "all"),),
    17: (Handle(L.CHIN_PAD, (0.0, -0.05), 0.15, "below_mouth"),),
    20: (Handle(L.MOUTH_CORNERS, (0.08, 0.01), 0.11, "all"),),
    23: (Handle(L.MOUTH_CORNERS, (-0.045, 0.0), 0.06, "all"),
         Handle(L.LIPS_OUTER_UPPER, (0.0, 0.012), 0.04, "above_mouth", only=L.LIPS_OUTER_UPPER),
         Handle(L.LIPS_OUTER_LOWER, (0.0, -0.012), 0.04, "below_mouth", only=L.LIPS_OUTER_LOWER)),
    25: (Handle(L.LIPS_INNER_UPPER[1:-1], (0.0, -0.02), 0.05, "above_mouth", taper=True),
         Handle(_LOWER_LIP, (0.0, 0.05), 0.10, "below_mouth", taper=True)),
    26: (Handle(L.CHIN_PAD + _LOWER_LIP, (0.0, 0.20), 0.35, "below_mouth", taper=True),),
}

#: the AUs FACS-warp can render, in the order of its label columns
SYNTH_AUS: tuple[int, ...] = tuple(sorted(AU_PATTERNS))

_CLOSED_GAP = 0.02  # inner-lip gap (IOD) below which the lips count as closed


# ----------------------------------------------------------------------------------------- geometry helpers
def _unit_iod() -> float:
    t = template(1)
    return float(np.linalg.norm(t[1] - t[0]))


def _canonical_matrix(landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) image → canonical-frame similarity (eye centres at (±0.5, 0), IOD = 1)."""
    m = alignment_matrix(landmarks, size=1)
    t = template(1)
    mid, iod = (t[0] + t[1]) / 2, _unit_iod()
    out = m / iod
    out[:, 2] = (m[:, 2] - mid) / iod
    return out


def _polyline_y(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    order = np.argsort(xs)
    return np.interp(x, xs[order], ys[order])


def _gates(c: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean (N,) masks of the mesh points each gate lets move, from canonical coordinates ``c``."""
    n = len(c)
    idx = np.arange(n)
    x, y = c[:, 0], c[:, 1]
    upper_lip = np.isin(idx, _UPPER_LIP)
    lower_lip = np.isin(idx, _LOWER_LIP)
    mouth_mid = (c[L.LIP_UPPER_INNER_MID] + c[L.LIP_LOWER_INNER_MID]) / 2
    mouth_y = _polyline_y(x, np.array([c[L.MOUTH_L, 0], mouth_mid[0], c[L.MOUTH_R, 0]]),
                          np.array([c[L.MOUTH_L, 1], mouth_mid[1], c[L.MOUTH_R, 1]]))
    below = (y > mouth_y) & ~upper_lip
    below |= lower_lip
    eye_pts = np.isin(idx, L.UPPER_LID_L + L.LOWER_LID_L + L.UPPER_LID_R + L.LOWER_LID_R + (33, 133, 362, 263)) | (idx >= 468)
    lid_top = min(c[list(L.UPPER_LID_L + L.UPPER_LID_R), 1])
    # per-side eye line (through the eye corners) for the eye gates
    left = x < 0
    eye_y = np.where(left, (c[L.EYE_L_OUTER, 1] + c[L.EYE_L_INNER, 1]) / 2, (c[L.EYE_R_OUTER, 1] + c[L.EYE_R_INNER, 1]) / 2)
    iris = idx >= 468
    upper_lid = np.isin(idx, L.UPPER_LID_L + L.UPPER_LID_R)
    lower_lid = np.isin(idx, L.LOWER_LID_L + L.LOWER_LID_R)
    return {
        "all": np.ones(n, bool),
        "above_mouth": ~below,
        "below_mouth": below,
        "above_lids": (y < lid_top - 0.02) & ~eye_pts,
        "upper_eye": ((y < eye_y) | upper_lid) & ~iris & ~lower_lid & (y > eye_y - 0.25),
        "lower_eye": ((y > eye_y) | lower_lid) & ~iris & ~upper_lid & (y < mouth_y),
    }


def _au_field(c: np.ndarray, handles: Sequence[Handle], gates: Mapping[str, np.ndarray]) -> np.ndarray:
    """Displacement (N, 2) of every mesh point at intensity 1 for one AU, canonical units."""
    total = np.zeros_like(c)
    for h in handles:
        pts = np.asarray(h.points)
        anchors = c[pts]
        side = np.sign(anchors[:, 0]) * (np.abs(anchors[:, 0]) > 0.05)
        d = np.stack([h.d[0] * side, np.full(len(pts), h.d[1])], axis=1)  # (K, 2)
        if h.only is not None:
            f = np.zeros_like(c)
            f[pts] = d
            total += f
            continue
        dist2 = ((c[:, None, :] - anchors[None, :, :]) ** 2).sum(-1)  # (N, K)
        w = np.exp(-dist2 / (2 * h.sigma ** 2)) * gates[h.gate][:, None]
        f = (w @ d) / np.maximum(1.0, w.sum(1, keepdims=True))
        if h.taper:
            f *= _lip_taper(c)[:, None]
        total += f
    return total


def _lip_taper(c: np.ndarray) -> np.ndarray:
    """(N,) factor: 1 away from the lips; on lip points sqrt(1 - (distance from the mouth centre / half mouth
    width)^2), so 0 at the corners."""
    mid_x = (c[L.MOUTH_L, 0] + c[L.MOUTH_R, 0]) / 2
    half = abs(c[L.MOUTH_R, 0] - c[L.MOUTH_L, 0]) / 2
    prof = np.sqrt(np.clip(1 - ((c[:, 0] - mid_x) / half) ** 2, 0.0, 1.0))
    lips = np.isin(np.arange(len(c)), _UPPER_LIP + _LOWER_LIP)
    return np.where(lips, prof, 1.0)


# -------------------------------------------------------------------------------------------- base faces
@dataclass
class BaseFace:
    """A real neutral photo prepared for FACS-warp.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        landmarks: ``(478, 3)`` MediaPipe mesh of the neutral face, image pixels.
        identity: person id (used for subject-exclusive splits and per-person seeds).
    """

    image: np.ndarray
    landmarks: np.ndarray
    identity: str = ""
    aus: tuple[int, ...] = SYNTH_AUS

    @cached_property
    def to_canonical(self) -> np.ndarray:
        """(2, 3) image → canonical similarity."""
        return _canonical_matrix(self.landmarks)

    @cached_property
    def canonical(self) -> np.ndarray:
        """(478, 2) neutral landmarks in the canonical frame (IOD units)."""
        m = self.to_canonical
        return self.landmarks[:, :2] @ m[:, :2].T + m[:, 2]

    @cached_property
    def fields(self) -> np.ndarray:
        """(A, 478, 2) per-AU displacement at intensity 1 in IMAGE pixels, AUs in ``self.aus`` order."""
        c = self.canonical
        gates = _gates(c)
        lin_inv = np.linalg.inv(self.to_canonical[:, :2])
        return np.stack([_au_field(c, AU_PATTERNS[a], gates) @ lin_inv.T for a in self.aus])

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
        return _lip_gap(self.canonical)


def _lip_gap(c: np.ndarray) -> float:
    return float(c[L.LIP_LOWER_INNER_MID, 1] - c[L.LIP_UPPER_INNER_MID, 1])


# ------------------------------------------------------------------------------------------------- render
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


def _paint_mouth(image: np.ndarray, dst: np.ndarray, opening: float, iod_px: float) -> np.ndarray:
    """Darken the opened mouth (the inner-lip polygon) in proportion to how far the lips parted."""
    if opening <= 0:
        return image
    ring = dst[list(L.INNER_LIP_RING), :2]
    k = max(3, int(0.03 * iod_px) | 1)
    h, w = image.shape[:2]
    x0, y0 = np.maximum(np.floor(ring.min(0)).astype(int) - k, 0)
    x1, y1 = np.minimum(np.ceil(ring.max(0)).astype(int) + k + 1, [w, h])
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((ring - [x0, y0]) * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    alpha = cv2.GaussianBlur(mask, (k, k), 0).astype(np.float32)[..., None] / 255.0
    alpha *= float(np.clip(opening / 0.04, 0.0, 1.0)) * 0.9
    cavity = np.array([52, 22, 24], np.float32)  # dark red-brown
    out = image.copy()
    patch = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (patch * (1 - alpha) + cavity * alpha).round().clip(0, 255).astype(np.uint8)
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
    """
    a = _as_vector(base, intensities)
    disp = np.tensordot(a, base.fields, axes=1)  # (478, 2) pixels
    src = base.landmarks[:, :2]
    dst = src + disp
    frame = base._frame_points
    image = _warp(base.image, np.concatenate([src, frame]), np.concatenate([dst, frame]), base.triangles)
    m = base.to_canonical
    gap = _lip_gap(dst @ m[:, :2].T + m[:, 2])
    image = _paint_mouth(image, dst, gap - max(base._closed_gap, 0.0), base.iod_px)
    shown = a.copy()
    if 25 in base.aus:
        j = base.aus.index(25)
        full25 = -AU_PATTERNS[25][0].d[1] + AU_PATTERNS[25][1].d[1]
        shown[j] = max(shown[j], float(np.clip((gap - _CLOSED_GAP) / full25, 0.0, 1.0)))
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


def target_motion(au: int) -> tuple[tuple[int, ...], tuple[float, float]]:
    """The control landmarks of an AU's strongest handle and their direction ``(outward, down)`` — what the
    face pipeline should see move when the AU is rendered."""
    h = max(AU_PATTERNS[au], key=lambda h: np.hypot(*h.d))
    return h.points, h.d


# --------------------------------------------------------------------------------- intensities and labels
def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def intensity_curve(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random onset–apex–offset curve in [0, 1], shape ``(n_frames,)``, apex value 1.

    The window starts anywhere from before the onset to inside the apex, so that clips show onsets, apices
    and offsets in varied proportions; a single frame (``n_frames == 1``) is a random point of such a curve.
    """
    t_len = max(n_frames, 16)
    onset = rng.uniform(0.15, 0.4) * t_len
    apex = rng.uniform(0.1, 0.5) * t_len
    offset = rng.uniform(0.15, 0.4) * t_len
    start = rng.uniform(-0.6 * onset, 0.5 * (onset + apex))
    if n_frames == 1:
        x = np.array([rng.uniform(0.0, onset + apex + offset)])
    else:
        x = np.arange(t_len, dtype=np.float64) + start
    up = _smoothstep(x / onset)
    down = 1 - _smoothstep((x - onset - apex) / offset)
    return np.minimum(up, down)[:n_frames]


@dataclass
class _Priors:
    aus: tuple[int, ...]
    base_rate: np.ndarray  # (A,)
    emotions: tuple[str, ...]
    p_au_given_emotion: np.ndarray  # (E, A), neutral row zeros


def _priors(aus: Sequence[int], emotion_list: Sequence[str]) -> _Priors:
    return _priors_cached(tuple(aus), tuple(emotion_list))


@cache
def _priors_cached(aus: tuple[int, ...], emotion_list: tuple[str, ...]) -> _Priors:
    ck_emotions = [e for e in emotion_list if e != "neutral"]
    ck = vocab.ckplus_prior(ck_emotions, aus, missing=0.0)
    counts = vocab.reference("facs_priors")["ckplus_p_au_given_emotion"]["counts"]
    n = np.array([counts[{"happiness": "happy"}.get(e, e)] for e in ck_emotions], dtype=np.float64)
    ck_marginal = (ck * n[:, None]).sum(0) / n.sum()
    real = vocab.au_base_rates(aus)
    # AUs that BP4D/DISFA do not code (e.g. AU5, AU20) fall back to their CK+ peak-frame marginal
    rate = np.array([real.get(a, ck_marginal[i]) for i, a in enumerate(aus)])
    p = np.zeros((len(emotion_list), len(aus)))
    for i, e in enumerate(emotion_list):
        if e != "neutral":
            p[i] = ck[ck_emotions.index(e)]
    return _Priors(aus, rate, tuple(emotion_list), p)


def sample_au_peaks(rng: np.random.Generator, aus: Sequence[int] = SYNTH_AUS, mode: str | None = None,
                    emotion_list: Sequence[str] = vocab.EMOTIONS_7) -> np.ndarray:
    """Peak intensities ``(A,)`` of a random AU combination for an AU-labelled clip.

    ``mode``: ``prototype`` draws a non-neutral emotion and turns each AU on with CK+ P(AU | emotion);
    ``base_rate`` turns each AU on independently with its BP4D/DISFA frame base rate; ``None`` picks one of the
    two at random. Active AUs get a peak in U(0.3, 1).
    """
    pri = _priors(aus, emotion_list)
    if mode is None:
        mode = "prototype" if rng.random() < 0.5 else "base_rate"
    if mode == "prototype":
        e = rng.choice([i for i, name in enumerate(pri.emotions) if name != "neutral"])
        return _draw(rng, pri.p_au_given_emotion[e], at_least_one=True)
    if mode == "base_rate":
        return _draw(rng, pri.base_rate, at_least_one=False)
    raise ValueError(f"mode must be 'prototype', 'base_rate' or None, not {mode!r}")


def sample_expression_peaks(rng: np.random.Generator, emotion: str, aus: Sequence[int] = SYNTH_AUS,
                            emotion_list: Sequence[str] = vocab.EMOTIONS_7, source: str | None = None) -> np.ndarray:
    """Peak intensities ``(A,)`` of a prototype expression of ``emotion``, peaks in U(0.4, 1), at least one AU on.

    ``source``: ``ckplus`` turns each AU on with the empirical CK+ P(AU | emotion) (posed peak frames: e.g.
    happiness nearly always with parted lips); ``emfacs`` turns each AU of the textbook EMFACS prototype on with
    probability 0.9 (e.g. happiness = AU6 + AU12, lips closed; recalled, unverified table); ``None`` picks one
    of the two at random. ``neutral`` gives sub-threshold resting motion only (peaks < 0.1).
    """
    if emotion == "neutral":
        return rng.uniform(0.0, 0.1, len(aus)) * (rng.random(len(aus)) < 0.3)
    if source is None:
        source = "ckplus" if rng.random() < 0.5 else "emfacs"
    if source == "ckplus":
        pri = _priors(aus, emotion_list)
        p = pri.p_au_given_emotion[list(pri.emotions).index(emotion)]
    elif source == "emfacs":
        proto = vocab.emfacs_prototypes()[emotion]
        p = np.array([0.9 if a in proto else 0.0 for a in aus])
    else:
        raise ValueError(f"source must be 'ckplus', 'emfacs' or None, not {source!r}")
    return _draw(rng, p, at_least_one=True, low=0.4)


def _draw(rng: np.random.Generator, p: np.ndarray, at_least_one: bool, low: float = 0.3) -> np.ndarray:
    on = rng.random(len(p)) < p
    for _ in range(20):
        if on.any() or not at_least_one:
            break
        on = rng.random(len(p)) < p
    if at_least_one and not on.any():
        on[int(np.argmax(p))] = True
    return np.where(on, rng.uniform(low, 1.0, len(p)), 0.0)


def au_clip_intensities(peaks: np.ndarray, n_frames: int, rng: np.random.Generator, jitter: float = 2.0) -> np.ndarray:
    """Per-frame intensities ``(T, A)`` for AU peaks ``(A,)``: one shared onset–apex–offset curve, shifted by a
    few frames per AU (``jitter``, frames) so that AUs do not move in lock-step."""
    base = intensity_curve(n_frames + 8, rng)
    out = np.zeros((n_frames, len(peaks)))
    t = np.arange(n_frames) + 4.0
    for j, p in enumerate(peaks):
        if p > 0:
            shift = rng.uniform(-jitter, jitter) if n_frames > 1 else 0.0
            out[:, j] = p * np.interp(t + shift, np.arange(len(base)), base)
    return out


def occurrence(intensity: np.ndarray) -> np.ndarray:
    """0/1 AU occurrence labels (int8) from intensities in [0, 1] (``>= OCCURRENCE_THRESHOLD``)."""
    return (np.asarray(intensity) >= OCCURRENCE_THRESHOLD).astype(np.int8)


# ---------------------------------------------------------------------------------------------- datasets
def _rng(seed: int, identity: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(identity.encode()), int(stream)])


_WORKER_DETECTOR = None


def _detector():
    global _WORKER_DETECTOR
    if _WORKER_DETECTOR is None:
        from aufer.faces.mediapipe_backend import MediaPipeFaceDetector  # noqa: PLC0415

        _WORKER_DETECTOR = MediaPipeFaceDetector(max_faces=1)
    return _WORKER_DETECTOR


def realise(base: BaseFace, intensities: np.ndarray, crop_size: int, detector=None) -> dict[str, np.ndarray]:
    """Render frames of intensities ``(T, A)`` and pass each through the face pipeline (detection, landmarks,
    alignment), as a real frame would be.

    Returns a dict of ``crops (T, S, S, 3)`` uint8, ``landmarks (T, 478, 3)`` float32 in crop pixels (as
    re-detected; the rendered positions where detection fails), ``intensity (T, A)`` shown, ``detected (T,)``.
    """
    from aufer.faces.align import alignment_matrix, transform_points, warp_crop  # noqa: PLC0415

    det = detector or _detector()
    t_len = len(intensities)
    crops = np.zeros((t_len, crop_size, crop_size, 3), np.uint8)
    lms = np.zeros((t_len, 478, 3), np.float32)
    shown = np.zeros((t_len, len(base.aus)), np.float32)
    detected = np.zeros(t_len, bool)
    for t in range(t_len):
        image, rendered, shown[t] = render(base, intensities[t])
        faces = det.detect(image)
        lm = faces[0].landmarks if faces else rendered
        detected[t] = bool(faces)
        m = alignment_matrix(lm, crop_size)
        crops[t] = warp_crop(image, m, crop_size)
        lms[t] = transform_points(lm, m)
    return {"crops": crops, "landmarks": lms, "intensity": shown, "detected": detected}


def _au_clip_task(args) -> dict[str, np.ndarray]:
    base, n_clips, n_frames, crop_size, seed = args
    rng = _rng(seed, base.identity, 1)
    out = [realise(base, au_clip_intensities(sample_au_peaks(rng, base.aus), n_frames, rng), crop_size)
           for _ in range(n_clips)]
    return {k: np.stack([o[k] for o in out]) for k in out[0]}


def _expr_task(args) -> tuple[dict[str, np.ndarray], np.ndarray]:
    base, n_per_emotion, emotion_list, n_frames, crop_size, seed = args
    rng = _rng(seed, base.identity, 2)
    out, labels = [], []
    for e_idx, emo in enumerate(emotion_list):
        for _ in range(n_per_emotion):
            peaks = sample_expression_peaks(rng, emo, base.aus, emotion_list)
            if n_frames == 1:  # a still near the apex
                inten = (peaks * rng.uniform(0.7, 1.0))[None]
            else:
                inten = au_clip_intensities(peaks, n_frames, rng)
            out.append(realise(base, inten, crop_size))
            labels.append(e_idx)
    return {k: np.stack([o[k] for o in out]) for k in out[0]}, np.array(labels, np.int64)


def _run(fn, tasks: list, workers: int, progress=None) -> list:
    if workers <= 1 or len(tasks) <= 1:
        results = []
        for t in tasks:
            results.append(fn(t))
            if progress:
                progress()
        return results
    import multiprocessing as mp  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        results = []
        for r in ex.map(fn, tasks):
            results.append(r)
            if progress:
                progress()
        return results


def make_au_clips(bases: Sequence[BaseFace], n_clips: int, n_frames: int = 16, crop_size: int = 224, seed: int = 0,
                  workers: int = 1, progress=None) -> "ClipSet":
    """SYNTHETIC AU-labelled clips: ``n_clips`` per base face, AU combinations from :func:`sample_au_peaks`,
    onset–apex–offset curves, every frame re-detected and aligned by the face pipeline.

    Returns a :class:`~aufer.synth.clipset.ClipSet` with AU labels per frame and ``expr = -1``; its
    ``source`` is ``"synthetic"`` and its notes carry :data:`SYNTHETIC_NOTE`. Deterministic for ``seed``
    (whatever ``workers``): each identity draws from its own seeded generator.
    """
    from aufer.synth.clipset import ClipSet  # noqa: PLC0415

    res = _run(_au_clip_task, [(b, n_clips, n_frames, crop_size, seed) for b in bases], workers, progress)
    inten = np.concatenate([r["intensity"] for r in res])
    n = len(inten)
    return ClipSet(
        crops=np.concatenate([r["crops"] for r in res]), landmarks=np.concatenate([r["landmarks"] for r in res]),
        au=occurrence(inten), au_intensity=inten.astype(np.float32), expr=np.full(n, -1, np.int64),
        identity=np.repeat([b.identity for b in bases], n_clips), source=np.full(n, "synthetic"),
        detected=np.concatenate([r["detected"] for r in res]), aus=tuple(bases[0].aus), emotions=vocab.EMOTIONS_7,
        notes=[SYNTHETIC_NOTE])


def make_expression_clips(bases: Sequence[BaseFace], n_per_emotion: int, emotion_list: Sequence[str] = vocab.EMOTIONS_7,
                          n_frames: int = 1, crop_size: int = 224, seed: int = 0, workers: int = 1,
                          progress=None, with_au_labels: bool = False) -> "ClipSet":
    """SYNTHETIC prototype expressions: ``n_per_emotion`` clips per emotion and base face, AUs drawn from CK+
    P(AU | emotion) (:func:`sample_expression_peaks`); a still (``n_frames == 1``) shows the expression near
    its apex. Expression labels only, unless ``with_au_labels`` (then the rendered AUs are labelled too).
    """
    from aufer.synth.clipset import ClipSet  # noqa: PLC0415

    tasks = [(b, n_per_emotion, tuple(emotion_list), n_frames, crop_size, seed) for b in bases]
    res = _run(_expr_task, tasks, workers, progress)
    inten = np.concatenate([r[0]["intensity"] for r in res])
    n = len(inten)
    au = occurrence(inten) if with_au_labels else np.full(inten.shape, -1, np.int8)
    return ClipSet(
        crops=np.concatenate([r[0]["crops"] for r in res]), landmarks=np.concatenate([r[0]["landmarks"] for r in res]),
        au=au, au_intensity=inten.astype(np.float32) if with_au_labels else np.full(inten.shape, np.nan, np.float32),
        expr=np.concatenate([r[1] for r in res]),
        identity=np.repeat([b.identity for b in bases], n_per_emotion * len(emotion_list)),
        source=np.full(n, "synthetic"), detected=np.concatenate([r[0]["detected"] for r in res]),
        aus=tuple(bases[0].aus), emotions=tuple(emotion_list), notes=[SYNTHETIC_NOTE])
