"""Overlay video: the input video with each detected face's box, id, top emotion and strongest AUs drawn on it.

The input is decoded frame by frame (:func:`aufer.media.iter_video`, PyAV) and re-encoded as it goes, so memory
does not grow with the video's length. Drawing uses OpenCV; encoding uses H.264 (``libx264``, ``yuv420p``) when
this PyAV build has it, else MPEG-4 Part 2 (``mpeg4``). Audio is not copied.
"""

from __future__ import annotations

import logging
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd

from aufer.media import iter_video, video_info
from aufer.predict.report import format_au_group, strongest_aus, table_columns
from aufer.schema import face_mask

__all__ = ["write_overlay_video", "frame_annotations", "draw_annotations"]

log = logging.getLogger(__name__)

# RGB colours per face id (cycled), chosen to stand out on skin and on dark or light backgrounds
_PALETTE = ((0, 255, 0), (255, 0, 255), (0, 200, 255), (255, 160, 0), (255, 255, 0), (255, 60, 60))


def frame_annotations(df: pd.DataFrame, top_aus: int = 3) -> dict[int, list[dict]]:
    """What to draw on each frame: ``{frame: [{"face_id", "box": (x, y, w, h) pixels, "lines": [str]}]}`` for
    the rows with a detected face and a finite box. ``lines`` are ``"id N"``, ``"<emotion> 0.87"`` (the highest
    ``emo_*`` probability, else the ``emotion`` column) and up to ``top_aus`` lines ``"AU12 0.93"`` (highest
    ``AUxx_p`` first; a model with left/right sub-AUs gets one line per AU with its sides, ``"AU12 0.93 (L.95
    R.90)"``, :func:`aufer.predict.report.strongest_aus`): never one line per AU of a 41-AU model. Rows of
    other columns, or lacking optional ones, are tolerated.

    Raises:
        ValueError: if ``frame`` or the box columns (``face_x, face_y, face_w, face_h``) are missing, or
            ``top_aus`` < 0.
    """
    need = ["frame", "face_x", "face_y", "face_w", "face_h"]
    emo_cols, au_cols = table_columns(df, need, top_aus)
    rows = df[face_mask(df)]
    box = rows[need[1:]].apply(pd.to_numeric, errors="coerce")
    rows = rows[np.isfinite(box.to_numpy(dtype=float)).all(axis=1)]
    emo = rows[emo_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float) if emo_cols else None
    au = rows[au_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float) if au_cols else None
    out: dict[int, list[dict]] = {}
    for k, (_, r) in enumerate(rows.iterrows()):
        fid = int(r["face_id"]) if "face_id" in r.index and pd.notna(r["face_id"]) else -1
        lines = [f"id {fid}"]
        if emo is not None and np.isfinite(emo[k]).any():
            j = int(np.nanargmax(emo[k]))
            lines.append(f"{emo_cols[j][4:]} {emo[k, j]:.2f}")
        elif "emotion" in r.index and isinstance(r["emotion"], str) and r["emotion"]:
            lines.append(r["emotion"])
        if au is not None and top_aus:
            groups = strongest_aus({c[:-2]: au[k, j] for j, c in enumerate(au_cols)}, top_aus)
            lines += [format_au_group(g, compact=True) for g in groups]
        out.setdefault(int(r["frame"]), []).append(
            {"face_id": fid, "box": tuple(float(r[c]) for c in need[1:]), "lines": lines})
    return out


def draw_annotations(image: np.ndarray, annotations: list[dict]) -> np.ndarray:
    """Draw :func:`frame_annotations` entries (boxes and their text) on an RGB ``uint8`` image ``(H, W, 3)``
    in place; returns it. Text sits above the box when there is room, else below it, else inside it at the
    top, on a dark background for legibility; sizes scale with the image height."""
    h, w = image.shape[:2]
    scale = max(0.35, h / 1000.0)
    thick = max(2, int(round(h / 300)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for a in annotations:
        x, y, bw, bh = a["box"]
        x0, y0 = int(round(x)), int(round(y))
        x1, y1 = int(round(x + bw)), int(round(y + bh))
        colour = _PALETTE[a["face_id"] % len(_PALETTE)] if a["face_id"] >= 0 else (255, 255, 255)
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, thick, cv2.LINE_AA)
        sizes = [cv2.getTextSize(t, font, scale, 1) for t in a["lines"]]
        line_h = max([s[0][1] + s[1] for s in sizes] or [0]) + 3
        block_h = line_h * len(a["lines"])
        if y0 - thick - block_h >= 0:  # above the box, else below it, else inside it at the top
            ty = y0 - thick - block_h
        elif y1 + thick + block_h < h:
            ty = y1 + thick
        else:
            ty = max(y0 + thick, 0)
        tx = min(max(x0, 0), max(w - 1, 0))
        for t, ((tw, th), base) in zip(a["lines"], sizes):
            cv2.rectangle(image, (tx, ty), (min(tx + tw + 4, w - 1), ty + line_h), (0, 0, 0), cv2.FILLED)
            cv2.putText(image, t, (tx + 2, ty + th + 1), font, scale, colour, 1, cv2.LINE_AA)
            ty += line_h
    return image


def _open_output(path: Path, width: int, height: int, rate: Fraction):
    """An output container and a video stream: libx264 (yuv420p) if it can be opened, else mpeg4."""
    container = av.open(str(path), mode="w")
    for codec, opts in (("libx264", {"crf": "20", "preset": "veryfast"}), ("mpeg4", {})):
        if codec not in av.codecs_available:
            continue
        try:
            stream = container.add_stream(codec, rate=rate, options=opts)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "mpeg4":  # no CRF: a generous bit rate (about 6 bits per pixel and second at 25 fps)
                stream.codec_context.bit_rate = max(1_000_000, int(width * height * 6 * float(rate)))
            stream.codec_context.open()  # fails here, not at the first frame, when the encoder is unusable
            return container, stream
        except (av.error.FFmpegError, ValueError) as e:
            log.info("encoder %s unavailable (%s); trying the next", codec, e)
            container.close()
            path.unlink(missing_ok=True)
            container = av.open(str(path), mode="w")
    container.close()
    raise RuntimeError("this PyAV build can encode neither libx264 nor mpeg4 video")


def write_overlay_video(video_path: str | Path, df: pd.DataFrame, out_path: str | Path, *, fps: float | None = None,
                        top_aus: int = 3) -> Path:
    """Re-encode ``video_path`` with the predictions of ``df`` drawn on it (:func:`frame_annotations`,
    :func:`draw_annotations`): for each row of a frame with a detected face, its box, ``id N``, the top emotion
    with its probability and the ``top_aus`` strongest AUs (``AU12 0.93``). Frames without rows are written
    unchanged, so the output has the same frames as the input. Streaming: constant memory.

    Args:
        video_path: the video that ``df`` was made from (rows are matched on ``frame`` = decoded frame index).
        df: a table of :func:`aufer.predict.columns`; needs ``frame`` and the ``face_*`` box in pixels.
        out_path: the video to write (container from its extension, e.g. ``.mp4``); its folder is created. It is
            written to a temporary file beside it, then renamed (:func:`os.replace`): never left half-written.
        fps: the output frame rate; None = the input's (25 when unknown). The frames are not resampled.
        top_aus: how many AUs to list per face.

    Returns:
        ``Path(out_path)``. H.264 (``libx264``, ``yuv420p``) when available, else MPEG-4; an odd width or height
        is padded by one black pixel column or row (yuv420p needs even sizes). Audio is not copied.

    Raises:
        aufer.media.MediaError: if the input cannot be opened or decoded as a video.
        ValueError: if ``df`` lacks ``frame`` or the box columns, or ``fps`` is not positive.
        RuntimeError: if neither libx264 nor mpeg4 can be used to encode.
    """
    video_path, out_path = Path(video_path), Path(out_path)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    notes = frame_annotations(df, top_aus=top_aus)
    info = video_info(video_path)
    in_fps = fps or info["fps"] or 25.0
    rate = Fraction(in_fps).limit_denominator(1001) if fps is None else Fraction(fps).limit_denominator(100000)
    width, height = info["width"] + info["width"] % 2, info["height"] + info["height"] % 2
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix}")
    container, stream = _open_output(tmp, width, height, rate)
    closed = False
    try:
        n = 0
        for frame in iter_video(video_path):
            img = frame.image
            if img.shape[0] != height or img.shape[1] != width:
                img = np.pad(img, ((0, height - img.shape[0]), (0, width - img.shape[1]), (0, 0)))
            if frame.index in notes:
                img = draw_annotations(np.ascontiguousarray(img), notes[frame.index])
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="yuv420p")
            vf.pts = n
            vf.time_base = Fraction(1) / rate
            for packet in stream.encode(vf):
                container.mux(packet)
            n += 1
        for packet in stream.encode(None):
            container.mux(packet)
        container.close()
        closed = True
        os.replace(tmp, out_path)
    finally:
        if not closed:
            try:
                container.close()
            except (av.error.FFmpegError, ValueError, OSError):  # already failing: keep the first error
                pass
        tmp.unlink(missing_ok=True)
    return out_path
