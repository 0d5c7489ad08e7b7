"""FACS-warp displacement patterns: which mesh landmarks each AU moves, how far, and how the motion spreads.

Patterns (aufer's own design, not a published model) are written in the *canonical face frame*: the aligned
face (see :mod:`aufer.faces.align`) rescaled so that the eye centres sit at (−0.5, 0) and (0.5, 0); units are
inter-ocular distances (IOD), x points to the image right and y down. Each AU is a list of handles (landmark
groups with a displacement at intensity 1) whose motion spreads to the rest of the mesh with a Gaussian
falloff, gated so that motion does not leak across the mouth opening or the eye fissure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from aufer.faces import landmarks as L
from aufer.faces.align import alignment_matrix, template

__all__ = ["Handle", "AU_PATTERNS", "SYNTH_AUS", "CLOSED_GAP", "LIPS_PART_SPAN", "canonical_matrix", "gates",
           "au_field", "lip_gap", "target_motion"]


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
    # Inner-lip gaps as the face pipeline re-detects them at intensity 1: AU25 0.15-0.18 IOD (the upper lip uncovers
    # the upper teeth, the lower lip drops off the lower teeth), AU10 + AU12 + AU25 0.22-0.25 (real toothy smiles
    # measure 0.20-0.24), AU26 0.29-0.32, AU25 + AU26 0.39-0.42 (real surprised and laughing mouths measure
    # 0.30-0.36). Until SYNTH_VERSION 5 the widest opening was 0.25 and AU25 alone 0.07: docs/demo_design.md,
    # "AU25 / AU26 on real open mouths".
    25: (Handle(L.LIPS_INNER_UPPER[1:-1], (0.0, -0.04), 0.06, "above_mouth", taper=True),
         Handle(_LOWER_LIP, (0.0, 0.08), 0.10, "below_mouth", taper=True)),
    26: (Handle(L.CHIN_PAD + _LOWER_LIP, (0.0, 0.24), 0.35, "below_mouth", taper=True),),
}

#: the AUs FACS-warp can render, in the order of its label columns
SYNTH_AUS: tuple[int, ...] = tuple(sorted(AU_PATTERNS))

#: inner-lip gap (IOD) below which the lips count as closed
CLOSED_GAP = 0.02
#: how far beyond CLOSED_GAP the lips part (IOD) at "lips part" intensity 1: the rendered gap gives AU25 an
#: intensity of (gap − CLOSED_GAP) / LIPS_PART_SPAN, so AU25 occurs from a gap of CLOSED_GAP + 0.2 · 0.07 = 0.034
#: IOD, where the drawn mouth interior is fully visible (:func:`aufer.synth.render.render`). A visibility
#: threshold, independent of how far AU25's own pattern opens the lips.
LIPS_PART_SPAN = 0.07


# ----------------------------------------------------------------------------------------- geometry helpers
def _unit_iod() -> float:
    t = template(1)
    return float(np.linalg.norm(t[1] - t[0]))


def canonical_matrix(landmarks: np.ndarray) -> np.ndarray:
    """``(2, 3)`` image → canonical-frame similarity of a ``(478, 2|3)`` mesh in image pixels (eye centres at
    (±0.5, 0), IOD = 1).

    Raises:
        ValueError: if ``landmarks`` is not a mesh (see :func:`aufer.faces.landmarks.five_points`).
    """
    m = alignment_matrix(landmarks, size=1)
    t = template(1)
    mid, iod = (t[0] + t[1]) / 2, _unit_iod()
    out = m / iod
    out[:, 2] = (m[:, 2] - mid) / iod
    return out


def _polyline_y(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    order = np.argsort(xs)
    return np.interp(x, xs[order], ys[order])


def gates(c: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean ``(N,)`` masks of the mesh points each gate (see :class:`Handle`) lets move, from the mesh's
    ``(N, 2)`` canonical coordinates ``c``."""
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
    eye_pts = np.isin(idx, L.UPPER_LID_L + L.LOWER_LID_L + L.UPPER_LID_R + L.LOWER_LID_R
                      + (L.EYE_L_OUTER, L.EYE_L_INNER, L.EYE_R_INNER, L.EYE_R_OUTER))
    eye_pts |= idx >= L.N_MESH_POINTS
    lid_top = min(c[list(L.UPPER_LID_L + L.UPPER_LID_R), 1])
    # per-side eye line (through the eye corners) for the eye gates
    left = x < 0
    eye_y = np.where(left, (c[L.EYE_L_OUTER, 1] + c[L.EYE_L_INNER, 1]) / 2, (c[L.EYE_R_OUTER, 1] + c[L.EYE_R_INNER, 1]) / 2)
    iris = idx >= L.N_MESH_POINTS
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


def au_field(c: np.ndarray, handles: Sequence[Handle], masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Displacement ``(N, 2)`` of every mesh point at intensity 1 for one AU's ``handles``, canonical units, from
    the ``(N, 2)`` canonical mesh ``c`` and its gate ``masks`` (:func:`gates`)."""
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
        w = np.exp(-dist2 / (2 * h.sigma ** 2)) * masks[h.gate][:, None]
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


def lip_gap(c: np.ndarray) -> float:
    """Inner-lip gap (lower minus upper inner-lip midpoint, y) of a canonical mesh ``c``, in IOD."""
    return float(c[L.LIP_LOWER_INNER_MID, 1] - c[L.LIP_UPPER_INNER_MID, 1])


def target_motion(au: int) -> tuple[tuple[int, ...], tuple[float, float]]:
    """The control landmarks of an AU's strongest handle and their direction ``(outward, down)`` — what the
    face pipeline should see move when the AU is rendered."""
    h = max(AU_PATTERNS[au], key=lambda h: np.hypot(*h.d))
    return h.points, h.d

