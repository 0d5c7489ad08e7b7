"""MediaPipe face backend: BlazeFace detection (short and full range, merged) + the 478-point attention face mesh.

Uses the legacy ``mediapipe.solutions`` graphs of mediapipe 0.10.21, whose models ship inside the wheel
(nothing is downloaded).

Detection rule (``detector_range``):

* ``"short"``: the short-range BlazeFace model (``model_selection=0``, 128 × 128 input, made for faces within
  about 2 m that fill a good part of the frame) on the whole image.
* ``"full"``: the full-range model (``model_selection=1``, 192 × 192 input, faces up to about 5 m) on the whole
  image and, when the image's long side exceeds the tile side ``T = min(H, W, tile_size)`` pixels, also on
  overlapping ``T × T`` tiles (neighbouring tiles overlap by at least a third of ``T``). The detectors see a
  downscaled image, so a 40-pixel face in a 960 × 540 group photo is 8 pixels at the model input and is missed on
  the whole image but found in a 540-pixel tile. A tile detection touching an inner tile border (a face cut by
  the tile) is dropped; that face lies whole in a neighbouring tile or is found on the whole image.
* ``"both"`` (the default): the union of the two. Short range finds large, close faces more reliably and
  full range small and distant ones; running only one of them misses faces in group photos and makes the face
  count of a multi-person video flicker.

All boxes above ``min_face_score`` are merged by non-maximum suppression (highest score first; a box is dropped
when its IoU with a kept box is ≥ 0.5 or when more than 70 % of its area lies inside a kept box, the way a
tile's partial view of a face or a second model's box around the same face overlaps it), and the best
``max_faces`` boxes are kept. Each kept box is cut out as a square region of interest (``roi_scale`` times the
box) and the face mesh runs on that region, so that the mesh follows the detector (several faces, small faces) and
every landmark set belongs to exactly one detection; a box where the mesh finds no face is dropped, and of two
meshes that landed on the same face (IoU of their landmark boxes ≥ 0.5) only the higher-scoring one is kept.

Cost (2 shared CPU cores, ``benchmarks/multiface.py``): the boxes of a 640 × 360 frame take about 0.8 ms with
short range and 12 ms with both (full range on the whole frame + 3 tiles of 360 pixels), plus about 5 ms of mesh
per face; a 512 × 512 photo (no tiles) 4.4 ms short against 7.5 ms both, a 1392 × 1040 one (6 tiles) 5.7 against
35 ms. On video :class:`aufer.faces.pipeline.FacePipeline` therefore runs the full-range pass only every few
frames or when short range missed a tracked face (8 ms per frame of the bundled video against 6 ms for short and
20 ms for both on every frame).

Importing this module is cheap and has no side effects: ``mediapipe`` itself is imported (and its C++ logging
turned down) when the first :class:`MediaPipeFaceDetector` is made.
"""

from __future__ import annotations

import operator
import os
import sys
import warnings
from contextlib import contextmanager
from typing import Sequence

import cv2
import numpy as np

from aufer.faces.base import Face, box_iou
from aufer.vocab import data_path

__all__ = ["DETECTOR_RANGES", "MediaPipeFaceDetector", "check_max_faces", "check_min_face_score",
           "check_detector_range", "merge_detections", "resolve_min_face_score", "tile_grid"]

#: the bundled photo each graph runs on once at start-up
_WARM_UP_IMAGE = ("faces", "london", "neutral", "001.jpg")
#: accepted values of ``detector_range``
DETECTOR_RANGES = ("short", "full", "both")
#: boxes overlapping a kept box at least this much (IoU) are the same face
NMS_IOU = 0.5
#: a box with more than this fraction of its area inside a kept box is the same face
NMS_INSIDE = 0.7
#: tile detections reaching within this many pixels of an inner tile border are dropped
_TILE_MARGIN = 2.0


def check_max_faces(max_faces) -> int:
    """``max_faces`` as an int ≥ 1.

    Raises:
        ValueError: if it is not an integer ≥ 1 (``True``/``False`` and floats are refused).
    """
    if isinstance(max_faces, bool):
        raise ValueError(f"max_faces must be an integer >= 1, got {max_faces!r}")
    try:
        n = operator.index(max_faces)
    except TypeError:
        raise ValueError(f"max_faces must be an integer >= 1, got {max_faces!r}") from None
    if n < 1:
        raise ValueError(f"max_faces must be an integer >= 1, got {max_faces!r}")
    return int(n)


def check_min_face_score(score) -> float:
    """``min_face_score`` as a float in (0, 1].

    Raises:
        ValueError: if it is not a real number in (0, 1] (NaN and booleans are refused).
    """
    try:
        if isinstance(score, bool):
            raise TypeError
        s = float(score)
    except (TypeError, ValueError):
        raise ValueError(f"min_face_score must be a number in (0, 1], got {score!r}") from None
    if not 0.0 < s <= 1.0:  # False for NaN too
        raise ValueError(f"min_face_score must be a number in (0, 1], got {score!r}")
    return s


def check_detector_range(value) -> str:
    """``detector_range`` as one of ``"short"``, ``"full"``, ``"both"``.

    Raises:
        ValueError: for any other value.
    """
    if value not in DETECTOR_RANGES:
        raise ValueError(f"detector_range must be one of 'short', 'full', 'both', got {value!r}")
    return str(value)


def resolve_min_face_score(min_face_score, min_score) -> float:
    """The threshold given as ``min_face_score`` or by its older name ``min_score`` (validated).

    Raises:
        ValueError: if both are given with different values, or the value is not in (0, 1].
    """
    if min_score is not None:
        if min_face_score is not None and float(min_face_score) != float(min_score):
            raise ValueError(f"min_score is the old name of min_face_score; got both ({min_score!r} and "
                             f"{min_face_score!r})")
        min_face_score = min_score
    return check_min_face_score(0.5 if min_face_score is None else min_face_score)


@contextmanager
def _quiet_stderr():
    """Silence C++ log lines (absl/TFLite) written straight to file descriptor 2 while graphs start."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _import_mediapipe():
    """The ``mediapipe`` module, imported with its C++ logging turned down (unless the user set it)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import mediapipe as mp  # noqa: PLC0415
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("aufer's face backend needs mediapipe==0.10.21 (pip install 'mediapipe==0.10.21' "
                              "'numpy<2')") from e
    return mp


Detection = tuple[np.ndarray, float]  # (x, y, w, h) box in image pixels, detector score


class MediaPipeFaceDetector:
    """Detect faces and their 478 landmarks with MediaPipe (rule: the module docstring).

    Args:
        max_faces: keep at most this many faces per image (highest detector scores first); an int ≥ 1,
            default 4.
        min_face_score: detector confidence threshold in (0, 1], default 0.5 (both models).
        roi_scale: side of the square region given to the face mesh, in detector-box sizes (default 2).
        roi_size: the region is resampled to at most this many pixels per side (native resolution if smaller,
            upsampled to at least ``roi_size // 2``); default 512.
        detector_range: ``"short"``, ``"full"`` or ``"both"`` (default): which BlazeFace models run.
        tile_size: largest tile side in pixels for the full-range pass (default 576, three times the model's
            192-pixel input); ``None`` runs full range on the whole image only.
        min_score: older name of ``min_face_score`` (kept for existing callers).

    Raises:
        ValueError: for ``max_faces`` not an int ≥ 1, ``min_face_score`` not in (0, 1], an unknown
            ``detector_range`` or a ``tile_size`` under 64 pixels.

    ``detect`` is not thread-safe; use one instance per thread or process.
    """

    def __init__(self, max_faces: int = 4, min_face_score: float | None = None, roi_scale: float = 2.0,
                 roi_size: int = 512, *, detector_range: str = "both", tile_size: int | None = 576,
                 min_score: float | None = None):
        self.max_faces = check_max_faces(max_faces)
        self.min_face_score = resolve_min_face_score(min_face_score, min_score)
        self.detector_range = check_detector_range(detector_range)
        if tile_size is not None and (isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer))
                                      or tile_size < 64):
            raise ValueError(f"tile_size must be None or an integer >= 64 pixels, got {tile_size!r}")
        self.tile_size = None if tile_size is None else int(tile_size)
        self.roi_scale = float(roi_scale)
        self.roi_size = int(roi_size)
        mp = _import_mediapipe()
        with _quiet_stderr():
            fd = mp.solutions.face_detection.FaceDetection
            # model_selection 0 = short range, 1 = full range; a second full-range graph for the tiles keeps
            # each graph on one input size
            self._graphs = {"short": fd(model_selection=0, min_detection_confidence=self.min_face_score),
                            "full": fd(model_selection=1, min_detection_confidence=self.min_face_score),
                            "tile": fd(model_selection=1, min_detection_confidence=self.min_face_score)}
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                         refine_landmarks=True, min_detection_confidence=0.3)
            self._warm_up()

    @property
    def min_score(self) -> float:
        """Older name of :attr:`min_face_score`."""
        return self.min_face_score

    @property
    def ranges(self) -> tuple[str, ...]:
        """The passes :meth:`detect` runs: ``("short",)``, ``("full",)`` or ``("short", "full")``."""
        return {"short": ("short",), "full": ("full",), "both": ("short", "full")}[self.detector_range]

    def _warm_up(self) -> None:
        """Run every graph once on a bundled photo, so that their start-up messages come (and go) now."""
        img = cv2.imread(str(data_path(*_WARM_UP_IMAGE)))
        if img is not None:
            rgb = np.ascontiguousarray(img[:, :, ::-1])
            for g in self._graphs.values():
                g.process(rgb)
            self.detect(rgb)

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for g in (*self._graphs.values(), self._mesh):
            g.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _check(image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {got}")
        return np.ascontiguousarray(image)

    def _run(self, graph: str, image: np.ndarray, x0: float = 0.0, y0: float = 0.0) -> list[Detection]:
        h, w = image.shape[:2]
        res = self._graphs[graph].process(image)
        out = []
        for d in res.detections or ():
            bb = d.location_data.relative_bounding_box
            out.append((np.array([x0 + bb.xmin * w, y0 + bb.ymin * h, bb.width * w, bb.height * h]),
                        float(d.score[0])))
        return out

    def tiles(self, shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
        """The tiles of the full-range pass on an image of ``shape``: :func:`tile_grid` with ``tile_size``."""
        return tile_grid(shape, self.tile_size)

    def boxes(self, image: np.ndarray, ranges: Sequence[str] | None = None) -> list[Detection]:
        """Detector boxes of one ``(H, W, 3)`` uint8 RGB image before the mesh: ``(box, score)`` pairs, box
        ``(4,)`` ``x, y, w, h`` in pixels, merged (:func:`merge_detections`), best first, at most
        ``2 * max_faces`` candidates (the mesh may reject some).

        Args:
            ranges: the passes to run, a subset of ``("short", "full")``; default :attr:`ranges`.

        Raises:
            ValueError: for a bad image or an unknown pass.
        """
        image = self._check(image)
        ranges = self.ranges if ranges is None else tuple(ranges)
        dets: list[Detection] = []
        for r in ranges:
            if r == "short":
                dets += self._run("short", image)
            elif r == "full":
                dets += self._run("full", image)
                h, w = image.shape[:2]
                for x0, y0, side in self.tiles(image.shape):
                    tile = np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side])
                    for box, score in self._run("tile", tile, x0, y0):
                        # keep only boxes clear of the inner tile borders (image borders are fine)
                        if ((x0 > 0 and box[0] < x0 + _TILE_MARGIN) or (y0 > 0 and box[1] < y0 + _TILE_MARGIN)
                                or (x0 + side < w and box[0] + box[2] > x0 + side - _TILE_MARGIN)
                                or (y0 + side < h and box[1] + box[3] > y0 + side - _TILE_MARGIN)):
                            continue
                        dets.append((box, score))
            else:
                raise ValueError(f"unknown detector pass {r!r}; expected 'short' or 'full'")
        return merge_detections(dets)[: 2 * self.max_faces]

    def faces_in_boxes(self, image: np.ndarray, dets: Sequence[Detection]) -> list[Face]:
        """Run the face mesh around each ``(box, score)`` detection of an ``(H, W, 3)`` uint8 RGB image; the
        faces, in the order given, without the boxes where the mesh finds no face and without a second mesh on
        the same face (landmark-box IoU ≥ 0.5), at most ``max_faces`` (the first ones).

        Raises:
            ValueError: for a bad image.
        """
        image = self._check(image)
        faces: list[Face] = []
        kept: list[np.ndarray] = []
        for box, score in dets:
            if len(faces) >= self.max_faces:
                break
            lm = self._mesh_in_roi(image, np.asarray(box, dtype=np.float64))
            if lm is None:
                continue
            lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
            lbox = np.r_[lo, hi - lo]
            if any(box_iou(lbox, k) >= NMS_IOU for k in kept):
                continue
            kept.append(lbox)
            faces.append(Face(box=np.asarray(box, dtype=np.float64), score=float(score), landmarks=lm))
        return faces

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one ``(H, W, 3)`` uint8 RGB image, highest score first, at most ``max_faces``; ``[]`` when
        there is none. ``Face.box`` is the detector box (pixels), ``Face.landmarks`` the ``(478, 3)`` mesh.

        Raises:
            ValueError: if ``image`` is not an ``(H, W, 3)`` uint8 array.
        """
        image = self._check(image)
        return self.faces_in_boxes(image, self.boxes(image))

    def _mesh_in_roi(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        side = self.roi_scale * max(box[2], box[3])
        out = int(np.clip(side, self.roi_size // 2, self.roi_size))
        s = out / side
        # image -> roi affine (scale + translate); border filled by replication
        m = np.array([[s, 0, out / 2 - s * cx], [0, s, out / 2 - s * cy]])
        roi = cv2.warpAffine(image, m, (out, out), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        res = self._mesh.process(roi)
        if not res.multi_face_landmarks:
            return None
        lm = np.array([[p.x, p.y, p.z] for p in res.multi_face_landmarks[0].landmark], dtype=np.float64) * out
        lm[:, 0] = (lm[:, 0] - m[0, 2]) / s
        lm[:, 1] = (lm[:, 1] - m[1, 2]) / s
        lm[:, 2] = lm[:, 2] / s
        return lm


def tile_grid(shape: tuple[int, ...], tile_size: int | None) -> list[tuple[int, int, int]]:
    """Overlapping square tiles covering an image of ``shape`` ``(H, W, ...)``: ``(x0, y0, side)`` in pixels with
    ``side = min(H, W, tile_size)``, spread evenly along each axis so that neighbours overlap by at least a third
    of ``side``; ``[]`` when the image fits in one tile (``max(H, W) <= side``) or ``tile_size`` is ``None``."""
    h, w = shape[:2]
    if tile_size is None:
        return []
    side = min(h, w, int(tile_size))
    if max(h, w) <= side:
        return []

    def starts(n: int) -> list[int]:
        if n <= side:
            return [0]
        k = int(np.ceil((n - side) / (side * 2 / 3))) + 1  # stride <= 2/3 side: overlap >= 1/3 side
        return [round(i * (n - side) / (k - 1)) for i in range(k)]

    return [(x, y, side) for y in starts(h) for x in starts(w)]


def _inside(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of box ``a``'s area inside box ``b`` (both ``x, y, w, h``)."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    area = a[2] * a[3]
    return float(max(0.0, x2 - x1) * max(0.0, y2 - y1) / area) if area > 0 else 1.0


def merge_detections(dets: Sequence[Detection], iou: float = NMS_IOU, inside: float = NMS_INSIDE) -> list[Detection]:
    """Non-maximum suppression over ``(box, score)`` pairs (boxes ``x, y, w, h`` pixels) from any passes: by
    decreasing score, a box is kept unless its IoU with a kept box is ≥ ``iou`` or more than ``inside`` of its
    area lies inside a kept box. Returns the kept pairs, best first."""
    keep: list[Detection] = []
    for d in sorted(dets, key=lambda t: -t[1]):
        if all(box_iou(d[0], k[0]) < iou and _inside(d[0], k[0]) <= inside for k in keep):
            keep.append(d)
    return keep
