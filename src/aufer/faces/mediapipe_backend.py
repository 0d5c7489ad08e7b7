"""MediaPipe face backend: BlazeFace detection + the 478-point attention face mesh.

Uses the legacy ``mediapipe.solutions`` graphs of mediapipe 0.10.21, whose models ship inside the wheel
(nothing is downloaded). Each detected face is cut out as a square region of interest (twice the detector box)
and the face mesh runs on that region, so that the mesh follows the detector (several faces, small faces) and
every landmark set belongs to exactly one detection.

Importing this module is cheap and has no side effects: ``mediapipe`` itself is imported (and its C++ logging
turned down) when the first :class:`MediaPipeFaceDetector` is made.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

import cv2
import numpy as np

from aufer.faces.base import Face, box_iou
from aufer.vocab import data_path

#: the bundled photo each graph runs on once at start-up
_WARM_UP_IMAGE = ("faces", "london", "neutral", "001.jpg")


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


class MediaPipeFaceDetector:
    """Detect faces and their 478 landmarks with MediaPipe.

    Args:
        max_faces: keep at most this many faces per image (highest detector scores first).
        min_score: detector confidence threshold in [0, 1].
        roi_scale: side of the square region given to the face mesh, in detector-box sizes.
        roi_size: the region is resampled to at most this many pixels per side (native resolution if smaller,
            upsampled to at least ``roi_size // 2``).

    ``detect`` is not thread-safe; use one instance per thread or process.
    """

    def __init__(self, max_faces: int = 4, min_score: float = 0.5, roi_scale: float = 2.0, roi_size: int = 512):
        mp = _import_mediapipe()
        self.max_faces = int(max_faces)
        self.min_score = float(min_score)
        self.roi_scale = float(roi_scale)
        self.roi_size = int(roi_size)
        with _quiet_stderr():
            # model_selection 0 = short range (faces within ~2 m), 1 = full range (small faces); short first.
            self._detectors = [mp.solutions.face_detection.FaceDetection(model_selection=m, min_detection_confidence=min_score)
                               for m in (0, 1)]
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                         refine_landmarks=True, min_detection_confidence=0.3)
            self._warm_up()

    def _warm_up(self) -> None:
        """Run every graph once on a bundled photo, so that their start-up messages come (and go) now."""
        img = cv2.imread(str(data_path(*_WARM_UP_IMAGE)))
        if img is not None:
            rgb = np.ascontiguousarray(img[:, :, ::-1])
            for det in self._detectors:
                det.process(rgb)
            self.detect(rgb)

    def close(self) -> None:
        for g in (*self._detectors, self._mesh):
            g.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _boxes(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        h, w = image.shape[:2]
        for det in self._detectors:
            res = det.process(image)
            if res.detections:
                out = []
                for d in res.detections:
                    bb = d.location_data.relative_bounding_box
                    out.append((np.array([bb.xmin * w, bb.ymin * h, bb.width * w, bb.height * h]), float(d.score[0])))
                out.sort(key=lambda t: -t[1])
                return _nms(out, 0.5)[: self.max_faces]
        return []

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one ``(H, W, 3)`` uint8 RGB image, highest score first; ``[]`` when there is none.

        Raises:
            ValueError: if ``image`` is not an ``(H, W, 3)`` uint8 array.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        image = np.ascontiguousarray(image)
        faces = []
        for box, score in self._boxes(image):
            lm = self._mesh_in_roi(image, box)
            if lm is not None:
                faces.append(Face(box=box, score=score, landmarks=lm))
        return faces

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


def _nms(dets: list[tuple[np.ndarray, float]], thr: float) -> list[tuple[np.ndarray, float]]:
    keep: list[tuple[np.ndarray, float]] = []
    for d in dets:
        if all(box_iou(d[0], k[0]) < thr for k in keep):
            keep.append(d)
    return keep
