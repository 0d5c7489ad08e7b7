"""Clip-consistent augmentation built from a recipe (methods.md §1.7, §3.3, §6.4; review §2.7).

One random draw per clip (crop box, flip, similarity jitter, colour factors) is applied identically to every
frame and to the landmarks, as the reference code bases do (MDHR ``dataset.py``, SSM ``sync_transform``). All
geometry (resize, crop, rotation/scale/shift, flip) is composed into one 2×3 affine matrix per clip (one
``cv2.warpAffine`` per frame, no intermediate images), and the colour jitter into one affine colour map per frame
(``cv2.transform``). A 16-frame 256 → 224 clip takes a few milliseconds. Sampling is bilinear without
antialiasing: exact enough for the reference ×0.875 (256 → 224); strong downscaling (e.g. to 112) aliases.

Reference recipes as :class:`ClipTransform` fields (the store crop side is 256 for these):

* today's default (``aufer`` demo): ``ClipTransform()`` — whole crop, rotation ±6°, scale ±6 %, shift ±4 %,
  flip 0.5, colour 1 ± 0.3.
* MDHR (§6.4): ``ClipTransform(size=224, resize=256, crop="random", rotation=0, scale=0, shift=0,
  brightness=0.4, contrast=0.4, saturation=0.4, test_crop="resize")``.
* SSM AU clips (§3.3): ``ClipTransform(size=224, resize=256, crop="random_resized", crop_scale=(0.8, 1.0),
  crop_ratio=(0.9, 1.1), rotation=0, scale=0, shift=0, brightness=0, contrast=0, saturation=0,
  test_crop="center")``.

Coordinates: landmarks are in the same pixel coordinates as the image arrays (pixel ``i`` centred at ``i``, the
convention of ``cv2.resize``/``cv2.warpAffine``); geometry is composed in corner coordinates (pixel ``i`` covers
``[i, i + 1)``) and converted once. Landmark ``z`` is scaled by ``sqrt(|det A|)`` of the linear part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import cv2
import numpy as np

from aufer.faces.landmarks import mesh_mirror

__all__ = ["ClipTransform", "transform_clip", "CROPS", "TEST_CROPS"]

#: allowed values of :attr:`ClipTransform.crop`
CROPS = ("none", "random", "random_resized", "center")
#: allowed values of :attr:`ClipTransform.test_crop`
TEST_CROPS = ("resize", "center")

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 weights, as torchvision's rgb_to_grayscale


@lru_cache(maxsize=1)
def _mirror() -> np.ndarray:
    return mesh_mirror()


def _check_pair(name: str, v, lo: float, hi: float | None) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"ClipTransform.{name} must be a pair (low, high), not {v!r}") from None
    if not (lo < a <= b and (hi is None or b <= hi)):
        bound = f"{lo} < low ≤ high" + (f" ≤ {hi}" if hi is not None else "")
        raise ValueError(f"ClipTransform.{name} must satisfy {bound}, not {v!r}")
    return a, b


@dataclass(frozen=True)
class ClipTransform:
    """A clip-consistent transform; fields are the recipe (defaults = the historical :func:`transform_clip`).

    Training (``rng`` given), per clip: resize the ``S``-pixel crop to ``resize`` (default ``S``) → crop
    (``crop``) → resize the crop box to ``size`` → random similarity about the output centre (``rotation``,
    ``scale``, ``shift``) → horizontal flip with probability ``hflip`` (landmarks follow, mesh left/right points
    swapped) → colour jitter (brightness, contrast, saturation factors each drawn from ``U[1 − x, 1 + x]``).
    Evaluation (``rng=None``): ``test_crop``; no randomness.

    Attributes:
        size: output side in pixels; ``None`` = the input crop side ``S``.
        resize: first resize the crop to this side (MDHR/SSM ``Resize(256)``); ``None`` = keep ``S``. It only
            matters for the fixed-size crops (``random``, ``center``, ``test_crop="center"``) and sets the
            pixel grid of ``random_resized`` boxes.
        crop: ``"none"`` (the whole resized crop), ``"random"`` (a uniformly placed ``size × size`` window,
            torchvision ``RandomCrop``), ``"random_resized"`` (a box of area fraction ``U(crop_scale)`` and
            log-uniform aspect ratio in ``crop_ratio``, resized to ``size``, torchvision ``RandomResizedCrop``)
            or ``"center"`` (the central ``size × size`` window).
        crop_scale: area fraction range of ``random_resized``, ``0 < low ≤ high ≤ 1`` (SSM: 0.8–1.0).
        crop_ratio: aspect-ratio (w/h) range of ``random_resized``, ``0 < low ≤ high`` (SSM: 0.9–1.1).
        hflip: flip probability in ``[0, 1]``.
        rotation: maximum rotation in degrees (uniform in ``±rotation``), in ``[0, 180]``.
        scale: maximum relative zoom (uniform in ``1 ± scale``), in ``[0, 1)``.
        shift: maximum translation per axis as a fraction of ``size``, in ``[0, 1]``.
        brightness, contrast, saturation: jitter amplitude ``x`` in ``[0, 1]``: factor ``~ U[1 − x, 1 + x]``
            (MDHR's U(0.6, 1.4) is 0.4); 0 disables it.
        test_crop: evaluation geometry: ``"resize"`` (the whole crop resized to ``size``, MDHR test
            ``Resize(224)``) or ``"center"`` (resize to ``resize``, then the central ``size`` window, SSM test
            ``Resize(256) + CenterCrop(224)``).

    Raises:
        ValueError: at construction, naming the field and its allowed values; at call time when ``size``
            exceeds the resized side for ``crop="random"``/``"center"`` or ``test_crop="center"``.
    """

    size: int | None = None
    resize: int | None = None
    crop: str = "none"
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    hflip: float = 0.5
    rotation: float = 6.0
    scale: float = 0.06
    shift: float = 0.04
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    test_crop: str = "resize"

    def __post_init__(self):
        for name in ("size", "resize"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"ClipTransform.{name} must be a positive int or None, not {v!r}")
        if self.crop not in CROPS:
            raise ValueError(f"ClipTransform.crop must be one of {CROPS}, not {self.crop!r}")
        if self.test_crop not in TEST_CROPS:
            raise ValueError(f"ClipTransform.test_crop must be one of {TEST_CROPS}, not {self.test_crop!r}")
        object.__setattr__(self, "crop_scale", _check_pair("crop_scale", self.crop_scale, 0.0, 1.0))
        object.__setattr__(self, "crop_ratio", _check_pair("crop_ratio", self.crop_ratio, 0.0, None))
        ranges = {"hflip": (0.0, 1.0, True), "rotation": (0.0, 180.0, True), "scale": (0.0, 1.0, False),
                  "shift": (0.0, 1.0, True), "brightness": (0.0, 1.0, True), "contrast": (0.0, 1.0, True),
                  "saturation": (0.0, 1.0, True)}
        for name, (lo, hi, closed) in ranges.items():
            v = getattr(self, name)
            ok = isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and \
                lo <= v and (v <= hi if closed else v < hi)
            if not ok:
                raise ValueError(f"ClipTransform.{name} must be a number in [{lo}, {hi}{']' if closed else ')'}, "
                                 f"not {v!r}")

    @classmethod
    def from_dict(cls, cfg: dict | None) -> "ClipTransform":
        """Build from a recipe mapping (e.g. a YAML section); lists become tuples.

        Raises:
            ValueError: for an unknown key (naming the known ones) or an invalid value.
        """
        cfg = dict(cfg or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"unknown ClipTransform field(s) {unknown}; known: {known}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})

    # ---------------------------------------------------------------------------------------- geometry
    def output_size(self, side: int) -> int:
        """Output side in pixels for ``side``-pixel input crops."""
        return int(self.size or side)

    def matrix(self, side: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, bool]:
        """The clip's affine map from input pixels to output pixels and whether it flips.

        Args:
            side: input crop side ``S`` in pixels.
            rng: the clip's generator; ``None`` = the evaluation geometry.

        Returns:
            ``(2, 3)`` float64 matrix in pixel-centre coordinates (as ``cv2.warpAffine`` takes it) and the flip flag.

        Raises:
            ValueError: if ``size`` exceeds the resized side for a fixed-size crop.
        """
        out = self.output_size(side)
        r = int(self.resize or side)
        a = np.diag([r / side, r / side, 1.0])  # corner coordinates: input -> resized
        mode = self.crop if rng is not None else ("none" if self.test_crop == "resize" else "center")
        if rng is None and mode == "none":
            a = np.eye(3)  # the whole input crop resized to size: the intermediate resize is irrelevant
            r = side
        if mode in ("random", "center") and out > r:
            what = "crop" if rng is not None else "test_crop"
            raise ValueError(f"ClipTransform.{what}={mode!r} needs size ({out}) ≤ the resized side ({r})")
        if mode == "none":
            x0, y0, w, h = 0.0, 0.0, float(r), float(r)
        elif mode == "center":
            x0 = y0 = float(int(round((r - out) / 2)))  # as torchvision CenterCrop
            w = h = float(out)
        elif mode == "random":
            x0, y0 = (float(v) for v in rng.integers(0, r - out + 1, 2))
            w = h = float(out)
        else:
            x0, y0, w, h = _random_resized_box(r, self.crop_scale, self.crop_ratio, rng)
        box = np.array([[out / w, 0, -x0 * out / w], [0, out / h, -y0 * out / h], [0, 0, 1]])
        m = box @ a
        flip = False
        if rng is not None:
            ang = rng.uniform(-self.rotation, self.rotation) if self.rotation else 0.0
            sc = 1.0 + rng.uniform(-self.scale, self.scale) if self.scale else 1.0
            sh = rng.uniform(-self.shift, self.shift, 2) * out if self.shift else np.zeros(2)
            if ang or sc != 1.0 or sh.any():
                c = out / 2
                t = np.radians(ang)
                rot = np.array([[sc * np.cos(t), sc * np.sin(t), 0], [-sc * np.sin(t), sc * np.cos(t), 0], [0, 0, 1]])
                around = np.array([[1, 0, c + sh[0]], [0, 1, c + sh[1]], [0, 0, 1]]) @ rot @ \
                    np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
                m = around @ m
            flip = bool(self.hflip and rng.random() < self.hflip)
            if flip:
                m = np.array([[-1.0, 0, out], [0, 1, 0], [0, 0, 1]]) @ m
        # corner -> pixel-centre coordinates: x_pix = x_corner - 0.5 on both sides
        m = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]]) @ m @ np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
        return m[:2], flip

    def jitter(self, rng: np.random.Generator | None) -> np.ndarray | None:
        """The clip's ``(brightness, contrast, saturation)`` factors, or ``None`` (no colour change)."""
        amp = np.array([self.brightness, self.contrast, self.saturation], np.float64)
        if rng is None or not amp.any():
            return None
        return rng.uniform(1 - amp, 1 + amp)

    # ------------------------------------------------------------------------------------------ apply
    def __call__(self, crops: np.ndarray, landmarks: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Transform one clip.

        Args:
            crops: ``(T, S, S, 3)`` uint8 RGB aligned crops.
            landmarks: ``(T, 478, 3)`` float32, crop pixels.
            rng: the clip's generator (training draws); ``None`` = the evaluation transform.

        Returns:
            ``(T, size, size, 3)`` uint8 crops and ``(T, 478, 3)`` float32 landmarks in output pixels. The
            inputs are returned unchanged (not copied) when the transform is the identity.

        Raises:
            ValueError: if ``crops`` is not ``(T, S, S, 3)`` or as :meth:`matrix`.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.shape[3] != 3:
            raise ValueError(f"crops must be (T, S, S, 3), not {crops.shape}")
        side = crops.shape[1]
        out = self.output_size(side)
        m, flip = self.matrix(side, rng)
        jit = self.jitter(rng)
        identity = np.allclose(m, [[1, 0, 0], [0, 1, 0]]) and out == side
        if identity and jit is None:
            return crops, landmarks
        imgs = crops if identity else _warp(crops, m, out)
        lms = np.array(landmarks, np.float32, copy=True)
        if not identity:
            lms[..., :2] = lms[..., :2] @ m[:, :2].T.astype(np.float32) + m[:, 2].astype(np.float32)
            lms[..., 2] *= np.float32(math.sqrt(abs(np.linalg.det(m[:, :2]))))
        if flip:
            lms = lms[:, _mirror()]
        if jit is not None:
            imgs = _color(imgs, *jit)
        return imgs, lms


def _random_resized_box(r: int, scale: tuple[float, float], ratio: tuple[float, float],
                        rng: np.random.Generator) -> tuple[float, float, float, float]:
    """torchvision ``RandomResizedCrop.get_params`` on an ``r × r`` image: ``(x0, y0, w, h)`` in pixels."""
    area = float(r * r)
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * ar)))
        h = int(round(math.sqrt(target / ar)))
        if 0 < w <= r and 0 < h <= r:
            return float(rng.integers(0, r - w + 1)), float(rng.integers(0, r - h + 1)), float(w), float(h)
    # fallback: the whole image, clamped to the ratio range, centred
    w = h = r
    if 1.0 < ratio[0]:
        h = int(round(w / ratio[0]))
    elif 1.0 > ratio[1]:
        w = int(round(h * ratio[1]))
    return float((r - w) // 2), float((r - h) // 2), float(w), float(h)


def _warp(crops: np.ndarray, m: np.ndarray, out: int) -> np.ndarray:
    """Warp every frame with the clip's matrix (bilinear, replicated border) into one ``(T, out, out, 3)`` array.

    A loop of 3-channel warps: measured faster than one warp of the frames stacked along channels."""
    res = np.empty((len(crops), out, out, 3), np.uint8)
    for t in range(len(crops)):
        cv2.warpAffine(np.ascontiguousarray(crops[t]), m, (out, out), dst=res[t], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return res


def _color(imgs: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Colour jitter per frame as torchvision's ``adjust_brightness`` → ``adjust_contrast`` (blend with the
    frame's mean grey level) → ``adjust_saturation`` (blend with the frame's grey image), grey = ITU-R 601 luma.

    The three blends compose into one affine colour map per frame, ``out = A·x + B·grey(x) + C``, applied by
    ``cv2.transform`` with saturation to ``[0, 255]`` at the end only (torchvision also clips in between; the
    two differ only where an intermediate value leaves ``[0, 255]``). uint8 in and out."""
    b, c, s = float(brightness), float(contrast), float(saturation)
    lin = s * c * b * np.eye(3) + (1 - s) * c * b * np.outer(np.ones(3), _LUMA)  # (3, 3), rows = output channels
    res = np.empty_like(imgs)
    for t in range(len(imgs)):
        mean_grey = float(np.dot(cv2.mean(imgs[t])[:3], _LUMA))
        off = (1 - c) * b * mean_grey
        m = np.hstack([lin, np.full((3, 1), off)]).astype(np.float32)
        cv2.transform(imgs[t], m, dst=res[t])
    return res


def transform_clip(crops: np.ndarray, landmarks: np.ndarray, out_size: int | None = None,
                   rng: np.random.Generator | None = None, max_rotation_deg: float = 6.0, max_scale: float = 0.06,
                   max_shift: float = 0.04, flip: bool = True, color: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Compatibility wrapper: ``ClipTransform(size=out_size, rotation=max_rotation_deg, scale=max_scale,
    shift=max_shift, hflip=0.5 if flip else 0, brightness=contrast=saturation=color)(crops, landmarks, rng)``.

    Args:
        crops: ``(T, S, S, 3)`` uint8 RGB aligned crops.
        landmarks: ``(T, 478, 3)`` float32 crop pixels.
        out_size: output side (``None`` = ``S``); evaluation resizes the whole crop.
        rng: random generator; ``None`` = no augmentation (evaluation).

    Returns:
        ``(T, out, out, 3)`` uint8 crops and ``(T, 478, 3)`` float32 landmarks in output pixels.
    """
    return ClipTransform(size=out_size, rotation=max_rotation_deg, scale=max_scale, shift=max_shift,
                         hflip=0.5 if flip else 0.0, brightness=color, contrast=color,
                         saturation=color)(crops, landmarks, rng)
