"""Image and video input: one stream of frames for an image, a folder of images or a video.

Videos are decoded with PyAV one frame at a time (constant memory, whatever the length). Every user mistake
(missing path, a file that is neither an image nor a video, an unreadable or truncated video) raises
:class:`MediaError` with a one-line message that says what to do; a truncated video yields the frames that
could be decoded and records a warning.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from aufer.errors import UserMistake

log = logging.getLogger(__name__)

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"})

__all__ = ["MediaError", "Frame", "media_kind", "read_image", "iter_frames", "video_info", "list_images", "natural_key"]


class MediaError(UserMistake, ValueError):
    """A user-facing problem with an input path (message is one line and says what to do)."""


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based frame number in the video, or position of the image in the sorted folder.
        timestamp_s: presentation time in seconds (NaN for still images).
        image: ``(H, W, 3)`` uint8 RGB, or ``None`` for an unreadable image inside a folder.
        source: file the frame came from (the image file for folders).
        error: why ``image`` is ``None`` (one line), else ``None``.
    """

    index: int
    timestamp_s: float
    image: np.ndarray | None
    source: str
    error: str | None = None


def media_kind(path: str | Path) -> str:
    """``"image"``, ``"video"`` or ``"folder"`` for an existing path.

    Raises:
        MediaError: if the path does not exist or its extension is neither an image nor a video.
    """
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file or folder; check the path")
    if p.is_dir():
        return "folder"
    ext = p.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise MediaError(f"{p}: not an image ({', '.join(sorted(IMAGE_EXTS))}) or a video "
                     f"({', '.join(sorted(VIDEO_EXTS))}); pass an image, a folder of images or a video")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (grey and alpha images are converted).

    Raises:
        MediaError: if the file is missing or cannot be decoded as an image.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: no such image file; check the path")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise MediaError(f"{p}: cannot be decoded as an image (corrupt or not an image file); "
                         "re-export it as JPEG or PNG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def natural_key(name: str) -> list[tuple]:
    """Sort key of a file name in natural order: digit runs compare as numbers (``2.jpg`` < ``10.jpg``)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, in natural name order (``2.jpg`` before ``10.jpg``, so that
    unpadded frame numbers stay in time order).

    Raises:
        MediaError: if the folder holds no image file.
    """
    folder = Path(folder)
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise MediaError(f"{folder}: folder holds no image files ({', '.join(sorted(IMAGE_EXTS))})")
    return files


def _open_video(path: Path):
    import av  # noqa: PLC0415

    try:
        container = av.open(str(path))
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as e:
        raise MediaError(f"{path}: cannot be opened as a video ({e.__class__.__name__}); "
                         "check that the file is complete and re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4)") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: has no video stream")
    return container


def video_info(path: str | Path) -> dict:
    """Container facts of a video: ``n_frames`` (0 if unknown), ``fps``, ``width``, ``height``, ``duration_s``.

    Raises:
        MediaError: if the file cannot be opened as a video.
    """
    path = Path(path)
    with _open_video(path) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or s.guessed_rate or 0.0)
        dur = float(s.duration * s.time_base) if s.duration else (c.duration / 1e6 if c.duration else float("nan"))
        return {"n_frames": int(s.frames or 0), "fps": fps, "width": s.codec_context.width,
                "height": s.codec_context.height, "duration_s": dur}


def iter_video(path: str | Path, start: int = 0) -> Iterator[Frame]:
    """Decode a video frame by frame. Frames before ``start`` are decoded and skipped (for resuming).

    A video that ends early (truncated, corrupt tail) stops at the last decodable frame and logs a warning.

    Raises:
        MediaError: if the file cannot be opened or no frame at all can be decoded.
    """
    import av  # noqa: PLC0415

    path = Path(path)
    container = _open_video(path)
    n = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else 0.0
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        t0 = stream.start_time or 0
        it = container.decode(stream)
        while True:
            try:
                frame = next(it)
            except StopIteration:
                break
            except (av.error.InvalidDataError, av.error.FFmpegError, EOFError) as e:
                if n == 0:
                    raise MediaError(f"{path}: no frame could be decoded ({e.__class__.__name__}); "
                                     "the video is corrupt or truncated") from None
                log.warning("%s: decoding stopped after %d frames (%s); the video looks truncated",
                            path, n, e.__class__.__name__)
                break
            if n >= start:
                ts = (frame.pts - t0) * tb if frame.pts is not None and tb else (n / fps if fps else float("nan"))
                yield Frame(n, float(ts), frame.to_ndarray(format="rgb24"), str(path))
            n += 1
    finally:
        container.close()
    if n == 0:
        raise MediaError(f"{path}: the video holds no decodable frame")


def iter_frames(path: str | Path, start: int = 0) -> Iterator[Frame]:
    """Frames of an image, a folder of images (sorted by name) or a video, in order, from index ``start``.

    An unreadable image inside a folder yields a frame with ``image=None`` and its ``error`` (so that one bad
    file neither stops a long job nor disappears from the output); a single unreadable image raises.

    Raises:
        MediaError: for a missing path, an unsupported file, an unreadable image or video.
    """
    kind = media_kind(path)
    if kind == "video":
        yield from iter_video(path, start=start)
    elif kind == "image":
        if start == 0:
            yield Frame(0, float("nan"), read_image(path), str(path))
    else:
        for i, f in enumerate(list_images(path)):
            if i < start:
                continue
            try:
                img = read_image(f)
            except MediaError as e:  # the caller reports it (aufer predict: a warning and an 'unreadable' row)
                yield Frame(i, float("nan"), None, str(f), error=str(e))
                continue
            yield Frame(i, float("nan"), img, str(f))
