"""The face pipeline: detect → 478 landmarks → five-point similarity alignment → crop, on any media."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from aufer.faces.align import align_face
from aufer.faces.base import AlignedFace, FaceDetector
from aufer.faces.mediapipe_backend import MediaPipeFaceDetector
from aufer.faces.track import IoUTracker
from aufer.media import Frame, iter_frames

__all__ = ["FacePipeline"]


class FacePipeline:
    """Detect, landmark, align and crop every face of an image, a folder or a video.

    Args:
        crop_size: side of the aligned crops in pixels (224 by default).
        detector: a :class:`~aufer.faces.base.FaceDetector`; MediaPipe by default.
        max_faces: at most this many faces per frame (default detector only).
        min_score: detector threshold in [0, 1] (default detector only).

    Example:
        >>> pipe = FacePipeline(crop_size=224)
        >>> for frame, faces in pipe.iter_media("clip.mp4"):   # doctest: +SKIP
        ...     print(frame.index, [f.face.score for f in faces])
    """

    def __init__(self, crop_size: int = 224, detector: FaceDetector | None = None, max_faces: int = 4,
                 min_score: float = 0.5):
        if detector is None:
            detector = MediaPipeFaceDetector(max_faces=max_faces, min_score=min_score)
        self.detector = detector
        self.crop_size = int(crop_size)

    def process(self, image: np.ndarray) -> list[AlignedFace]:
        """All faces of one ``(H, W, 3)`` uint8 RGB image, aligned; ``[]`` when there is no face."""
        faces = self.detector.detect(image)
        out = [align_face(image, f, self.crop_size) for f in faces]
        for i, a in enumerate(out):
            a.face_id = i
        return out

    def iter_media(self, path: str | Path, start: int = 0) -> Iterator[tuple[Frame, list[AlignedFace]]]:
        """Stream ``(frame, faces)`` over an image, a folder or a video in constant memory. In a video, faces
        keep their ``face_id`` from frame to frame (:class:`IoUTracker`). A frame without a face gives ``[]``.

        Raises:
            aufer.media.MediaError: for a missing or unreadable input (see :func:`aufer.media.iter_frames`).
        """
        tracker = IoUTracker()
        for frame in iter_frames(path, start=start):
            if frame.image is None:
                yield frame, []
                continue
            faces = self.process(frame.image)
            if frame.timestamp_s == frame.timestamp_s:  # video: track identities (NaN timestamp = still)
                for a, k in zip(faces, tracker.update([a.face.box for a in faces])):
                    a.face_id = k
            yield frame, faces
