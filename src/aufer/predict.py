"""Streaming analysis of images, folders and videos → one row per (frame, face).

Column schema (version ``SCHEMA_VERSION``), units in brackets:

``frame`` (0-based index), ``timestamp_s`` [s; NaN for stills], ``file`` (source file), ``face_id`` (track id in
a video, −1 when no face), ``face_x, face_y, face_w, face_h`` [image pixels], ``face_score`` [0–1 detector
confidence], ``face_detected`` (bool), ``AUxx_p`` [probability 0–1] and ``AUxx_c`` [0/1 presence at
threshold 0.5] per AU (OpenFace naming, AU01 …), ``emo_<name>`` [probability 0–1] per emotion, ``emotion``
(top emotion; empty when no face).

A frame without a face gives one row with ``face_detected = False`` and empty predictions, so every frame of
the input appears in the output.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from aufer import vocab
from aufer.faces.pipeline import FacePipeline
from aufer.media import media_kind, video_info
from aufer.models import contract

__all__ = ["SCHEMA_VERSION", "columns", "iter_predictions", "predict", "predict_to_csv"]

SCHEMA_VERSION = 1


def columns(aus, emotions) -> list[str]:
    """Output column names for a model's AUs and emotions, in order."""
    return (["frame", "timestamp_s", "file", "face_id", "face_x", "face_y", "face_w", "face_h", "face_score",
             "face_detected"] + [f"{vocab.au_code(a)}_p" for a in aus] + [f"{vocab.au_code(a)}_c" for a in aus]
            + [f"emo_{e}" for e in emotions] + ["emotion"])


def _empty_row(frame, aus, emotions) -> dict:
    row = {"frame": frame.index, "timestamp_s": frame.timestamp_s, "file": frame.source, "face_id": -1,
           "face_x": math.nan, "face_y": math.nan, "face_w": math.nan, "face_h": math.nan, "face_score": math.nan,
           "face_detected": False}
    row.update({f"{vocab.au_code(a)}_p": math.nan for a in aus})
    row.update({f"{vocab.au_code(a)}_c": math.nan for a in aus})
    row.update({f"emo_{e}": math.nan for e in emotions})
    row["emotion"] = ""
    return row


def _run_model(model, items: list, threshold: float, flip: bool) -> None:
    """Fill predictions into ``items`` = [(row, aligned_face)] with one batched pass (T = 1 per face; clip
    models need per-track windows, not yet supported)."""
    crops = torch.from_numpy(np.stack([a.crop for _, a in items]))[:, None]
    lms = torch.from_numpy(np.stack([a.landmarks for _, a in items]).astype(np.float32))[:, None]
    p_au, p_e = contract.probabilities(model, crops, lms, flip=flip)
    p_au, p_e = p_au[:, 0].numpy(), p_e.numpy()
    for k, (row, _) in enumerate(items):
        for j, a in enumerate(model.aus):
            row[f"{vocab.au_code(a)}_p"] = float(p_au[k, j])
            row[f"{vocab.au_code(a)}_c"] = int(p_au[k, j] >= threshold)
        for j, e in enumerate(model.emotions):
            row[f"emo_{e}"] = float(p_e[k, j])
        row["emotion"] = model.emotions[int(p_e[k].argmax())]


def iter_predictions(path: str | Path, model, pipeline: FacePipeline | None = None, start: int = 0,
                     batch_size: int = 16, threshold: float = 0.5, flip: bool = True) -> Iterator[dict]:
    """Rows (dicts with :func:`columns` keys) for every frame and face of ``path``, in frame order, streamed in
    constant memory. ``start`` skips frames before that index (resuming). ``flip`` averages each face's
    predictions with those of its mirror image (:func:`aufer.models.contract.flip_average`; on by default here
    for practitioners, unlike evaluation, where benchmark protocols use no test-time augmentation).

    Without ``pipeline``, faces are aligned at the model's crop size
    (:func:`aufer.models.contract.crop_size`: ``default_cfg["crop_size"]``, else ``input_size``).

    Raises:
        aufer.media.MediaError: for a missing, unsupported or unreadable input.
    """
    model.eval()
    pipeline = pipeline or FacePipeline(crop_size=contract.crop_size(model))
    pending: list = []  # (row, aligned face or None) waiting for the model, in frame order

    def flush() -> list[dict]:
        with_face = [p for p in pending if p[1] is not None]
        if with_face:
            _run_model(model, with_face, threshold, flip)
        rows = [r for r, _ in pending]
        pending.clear()
        return rows

    for frame, faces in pipeline.iter_media(path, start=start):
        if not faces:
            pending.append((_empty_row(frame, model.aus, model.emotions), None))
        for a in faces:
            row = _empty_row(frame, model.aus, model.emotions)
            x, y, w, h = (float(v) for v in a.face.box)
            row.update({"face_id": int(a.face_id), "face_x": x, "face_y": y, "face_w": w, "face_h": h,
                        "face_score": float(a.face.score), "face_detected": True})
            pending.append((row, a))
        if sum(a is not None for _, a in pending) >= batch_size:
            yield from flush()
    yield from flush()


def predict(path: str | Path, model=None, pipeline: FacePipeline | None = None, batch_size: int = 16,
            threshold: float = 0.5, flip: bool = True) -> pd.DataFrame:
    """Analyse an image, a folder or a video; returns the table of :func:`columns` (one row per frame and face).
    ``model``: a loaded model, a checkpoint path, or None for aufer's shipped default model
    (:func:`aufer.models.io.default_model_path`). ``flip``: average with the mirrored face (see
    :func:`iter_predictions`).

    Example:
        >>> from aufer.models.io import load_model            # doctest: +SKIP
        >>> df = predict("clip.mp4", load_model("runs/demo"))
        >>> df[["timestamp_s", "AU12_p", "emotion"]].head()
    """
    if model is None or isinstance(model, (str, Path)):
        from aufer.models.io import load_model  # noqa: PLC0415

        model = load_model(model)
    rows = list(iter_predictions(path, model, pipeline, batch_size=batch_size, threshold=threshold, flip=flip))
    return pd.DataFrame(rows, columns=columns(model.aus, model.emotions))


def _source_key(path: Path, model, flip: bool, crop_size: int) -> dict:
    """What a partial CSV must have been made with to be resumed: the input file, the model, the options."""
    st = path.stat()
    return {"input": str(path.resolve()), "size": st.st_size, "mtime": int(st.st_mtime),
            "model": getattr(model, "config", {}), "flip": bool(flip), "crop_size": int(crop_size),
            "schema": SCHEMA_VERSION}


def predict_to_csv(path: str | Path, model, out_csv: str | Path, pipeline: FacePipeline | None = None,
                   batch_size: int = 16, threshold: float = 0.5, resume: bool = True, progress=None,
                   chunk_rows: int = 256, flip: bool = True) -> Path:
    """Analyse ``path`` and write the table to ``out_csv`` in constant memory.

    Rows are appended in chunks to ``<out_csv>.partial``, which becomes ``out_csv`` only when the input is
    complete (atomic). If a run is interrupted, the next call with the same input and model resumes after the
    last complete frame (``resume=True``); a partial file made with another model, ``flip`` or crop size is
    started afresh. ``progress(frame_index, n_frames)`` is called per written chunk. ``flip``: see
    :func:`iter_predictions`.

    Raises:
        aufer.media.MediaError: for a missing, unsupported or unreadable input.
    """
    path, out_csv = Path(path), Path(out_csv)
    kind = media_kind(path)
    n_frames = video_info(path)["n_frames"] if kind == "video" else None
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    partial = out_csv.with_name(out_csv.name + ".partial")
    sidecar = out_csv.with_name(out_csv.name + ".partial.json")
    cols = columns(model.aus, model.emotions)
    pipeline = pipeline or FacePipeline(crop_size=contract.crop_size(model))
    key = _source_key(path, model, flip, pipeline.crop_size)
    start = 0
    if resume and partial.exists() and sidecar.exists() and json.loads(sidecar.read_text()) == key:
        start = _truncate_to_complete_frames(partial)
    else:
        with open(partial, "w", newline="") as f:
            csv.writer(f).writerow(cols)
        sidecar.write_text(json.dumps(key))
    buf: list[dict] = []
    last_frame = start - 1

    def write(rows):
        with open(partial, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    for row in iter_predictions(path, model, pipeline, start=start, batch_size=batch_size, threshold=threshold,
                                flip=flip):
        if buf and row["frame"] != last_frame and len(buf) >= chunk_rows:
            write(buf)
            buf = []
            if progress:
                progress(last_frame + 1, n_frames)
        buf.append(row)
        last_frame = row["frame"]
    if buf:
        write(buf)
    if progress:
        progress(last_frame + 1, n_frames)
    os.replace(partial, out_csv)
    sidecar.unlink(missing_ok=True)
    return out_csv


def _truncate_to_complete_frames(partial: Path) -> int:
    """Drop rows of the last frame in a partial CSV (it may be incomplete); return the frame to restart from."""
    df = pd.read_csv(partial, usecols=["frame"])
    if df.empty:
        return 0
    last = int(df["frame"].iloc[-1])
    keep = int((df["frame"] < last).sum())
    with open(partial) as f:
        lines = f.readlines()[: keep + 1]
    tmp = partial.with_name(partial.name + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, partial)
    return last
