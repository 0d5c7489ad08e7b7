"""The face pipeline: detect → 478 landmarks → five-point similarity alignment → crop, on any media.

On a still image (or a folder of them) every detector pass of ``detector_range`` runs on every image. On a video
with the default MediaPipe detector and ``detector_range="both"``, the short-range pass runs on every frame and
the full-range pass (whole frame + tiles, the costly one: about 11 ms per 640 × 360 frame against under 1 ms for
short range, see ``benchmarks/multiface.py``) runs on a frame when

* it is the first frame, or ``full_range_every`` frames (default 8) have passed since the last full-range pass
  (so a face that only full range sees is picked up within a third of a second at 24 frames/s), or
* the tracker expects a face there (a live track whose predicted box has its centre inside the frame) that no
  short-range box overlaps with IoU ≥ :data:`aufer.faces.track.MIN_IOU`, i.e. short range has just missed a
  face that is being tracked.

``full_range_every=1`` runs both passes on every frame (the still-image behaviour).
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from aufer.faces.align import align_face
from aufer.faces.base import AlignedFace, FaceDetector, box_iou
from aufer.faces.mediapipe_backend import (MediaPipeFaceDetector, check_detector_range, check_max_faces,
                                           merge_detections, resolve_min_face_score)
from aufer.faces.track import MIN_IOU, FaceTracker, appearance_descriptor
from aufer.media import Frame, iter_frames

__all__ = ["FacePipeline"]


class FacePipeline:
    """Detect, landmark, align and crop every face of an image, a folder or a video.

    Args:
        crop_size: side of the aligned crops in pixels (224 by default).
        detector: a :class:`~aufer.faces.base.FaceDetector`; MediaPipe
            (:class:`~aufer.faces.mediapipe_backend.MediaPipeFaceDetector`) by default.
        max_faces: at most this many faces per frame, an int ≥ 1 (default 4; default detector only).
        min_face_score: detector threshold in (0, 1] (default 0.5; default detector only).
        detector_range: ``"short"``, ``"full"`` or ``"both"`` (default): the BlazeFace models the default detector
            runs (see :mod:`aufer.faces.mediapipe_backend`). ``"both"`` finds faces of every size; the video
            schedule of the module docstring keeps its cost near that of ``"short"``.
        full_range_every: on video with ``"both"``, run the full-range pass at least every this many frames
            (int ≥ 1, default 8; 1 = every frame).
        min_score: older name of ``min_face_score``.

    Raises:
        ValueError: for ``max_faces`` not an int ≥ 1, ``min_face_score`` not in (0, 1], an unknown
            ``detector_range`` or ``full_range_every`` not an int ≥ 1 (also when a ``detector`` is given).

    Example:
        >>> pipe = FacePipeline(crop_size=224, detector_range="both")
        >>> for frame, faces in pipe.iter_media("clip.mp4"):   # doctest: +SKIP
        ...     print(frame.index, [(f.face_id, f.face.score) for f in faces])
    """

    def __init__(self, crop_size: int = 224, detector: FaceDetector | None = None, max_faces: int = 4,
                 min_face_score: float | None = None, *, detector_range: str = "both", full_range_every: int = 8,
                 min_score: float | None = None):
        max_faces = check_max_faces(max_faces)
        min_face_score = resolve_min_face_score(min_face_score, min_score)
        detector_range = check_detector_range(detector_range)
        if isinstance(full_range_every, bool) or not isinstance(full_range_every, (int, np.integer)) \
                or full_range_every < 1:
            raise ValueError(f"full_range_every must be an integer >= 1 frames, got {full_range_every!r}")
        if detector is None:
            detector = MediaPipeFaceDetector(max_faces=max_faces, min_face_score=min_face_score,
                                             detector_range=detector_range)
        self.detector = detector
        self.crop_size = int(crop_size)
        self.full_range_every = int(operator.index(full_range_every))

    def process(self, image: np.ndarray) -> list[AlignedFace]:
        """All faces of one ``(H, W, 3)`` uint8 RGB image, aligned (``face_id`` = index, best score first);
        ``[]`` when there is no face.

        Raises:
            ValueError: if ``image`` is not an ``(H, W, 3)`` uint8 array (default detector).
        """
        return self._align(image, self.detector.detect(image))

    def _align(self, image: np.ndarray, faces) -> list[AlignedFace]:
        out = [align_face(image, f, self.crop_size) for f in faces]
        for i, a in enumerate(out):
            a.face_id = i
        return out

    def track_frames(self, images: Iterable[np.ndarray]) -> Iterator[list[AlignedFace]]:
        """Treat ``images`` (each ``(H, W, 3)`` uint8 RGB, e.g. decoded or generated frames held in memory) as
        consecutive frames of one video: the aligned faces of each, with ``face_id`` tracked as in
        :meth:`iter_media` and the video detection schedule of the module docstring.

        Raises:
            ValueError: if an image is not an ``(H, W, 3)`` uint8 array (default detector).
        """
        video = _Video(self)
        for image in images:
            yield video.faces(image)

    def iter_media(self, path: str | Path, start: int = 0) -> Iterator[tuple[Frame, list[AlignedFace]]]:
        """Stream ``(frame, faces)`` over an image, a folder or a video in constant memory. In a video, faces
        keep their ``face_id`` from frame to frame (:class:`~aufer.faces.track.FaceTracker` on the detector
        boxes and the :func:`~aufer.faces.track.appearance_descriptor` of the aligned crops), also through
        misses of up to 12 frames and when two faces cross. A frame without a face gives ``[]``.

        Raises:
            aufer.media.MediaError: for a missing or unreadable input (see :func:`aufer.media.iter_frames`).
        """
        video = _Video(self)
        for frame in iter_frames(path, start=start):
            if frame.image is None:
                yield frame, []
            elif frame.timestamp_s == frame.timestamp_s:  # a video frame (NaN timestamp = still image)
                yield frame, video.faces(frame.image)
            else:
                yield frame, self.process(frame.image)


class _Video:
    """Per-video state of a :class:`FacePipeline`: the tracker and the full-range schedule."""

    def __init__(self, pipe: FacePipeline):
        self.pipe = pipe
        self.tracker = FaceTracker()
        d = pipe.detector
        self.scheduled = (getattr(d, "detector_range", None) == "both" and pipe.full_range_every > 1
                          and hasattr(d, "boxes") and hasattr(d, "faces_in_boxes"))
        self.since_full = pipe.full_range_every  # the first frame gets the full-range pass

    def faces(self, image: np.ndarray) -> list[AlignedFace]:
        pipe = self.pipe
        found = self._detect(image) if self.scheduled else pipe.detector.detect(image)
        faces = pipe._align(image, found)
        descs = [appearance_descriptor(a.crop) for a in faces]
        for a, k in zip(faces, self.tracker.update([a.face.box for a in faces], descs)):
            a.face_id = k
        return faces

    def _detect(self, image: np.ndarray) -> list:
        """Short range on every frame, full range when due or when short range missed a tracked face."""
        d, every = self.pipe.detector, self.pipe.full_range_every
        short = d.boxes(image, ("short",))
        h, w = image.shape[:2]
        run_full = self.since_full >= every
        if not run_full:
            for box in self.tracker.expected_boxes().values():
                cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
                if 0 <= cx < w and 0 <= cy < h and all(box_iou(box, b) < MIN_IOU for b, _ in short):
                    run_full = True
                    break
        dets = short
        if run_full:
            dets = merge_detections(short + d.boxes(image, ("full",)))[: 2 * d.max_faces]
        self.since_full = 1 if run_full else self.since_full + 1
        return d.faces_in_boxes(image, dets)
