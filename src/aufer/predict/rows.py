"""Streaming analysis of images, folders and videos → one row per (frame, face), in the table of
:mod:`aufer.schema` (every column, its unit and meaning; schema version ``SCHEMA_VERSION``).

- :func:`predict`: the Python API; a path, a list of paths or RGB image arrays → one DataFrame.
- :func:`iter_predictions`: the rows of one input, streamed in constant memory.
- :func:`predict_to_file`: one input → a CSV or Parquet file, written atomically and resumable.

Outputs of many inputs, output-path checks and locks are in :mod:`aufer.predict.jobs`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from aufer import vocab
from aufer.faces.pipeline import FacePipeline
from aufer.faces.pose import head_pose
from aufer.media import Frame, MediaError, media_kind, video_info
from aufer.models import contract, load_model
from aufer.predict.windows import WindowScheduler
from aufer.schema import SCHEMA_VERSION, TEXT_COLUMNS, columns, csv_read_options, empty_row, face_mask, read_table

__all__ = ["SCHEMA_VERSION", "columns", "iter_predictions", "predict", "predict_to_file", "predict_to_csv",
           "PredictResult", "read_table"]


def _device_of(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _fill(row: dict, p_au: np.ndarray, p_e: np.ndarray, model, threshold: float) -> None:
    """Write one face's AU probabilities ``(A,)`` and emotion probabilities ``(E,)`` into its row."""
    for j, a in enumerate(model.aus):
        code = vocab.au_code(a)
        row[f"{code}_p"] = float(p_au[j])
        row[f"{code}_c"] = int(p_au[j] >= threshold)
    for j, e in enumerate(model.emotions):
        row[f"emo_{e}"] = float(p_e[j])
    row["emotion"] = model.emotions[int(np.argmax(p_e))] if len(model.emotions) else ""


def _probabilities(model, crops: torch.Tensor, lms: torch.Tensor, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`aufer.models.contract.probabilities` on the model's device → ``(B, T, A)``, ``(B, E)`` numpy."""
    dev = _device_of(model)
    p_au, p_e = contract.probabilities(model, crops.to(dev), lms.to(dev), flip=flip)
    return p_au.float().cpu().numpy(), p_e.float().cpu().numpy()


def _run_model(model, items: list, threshold: float, flip: bool) -> None:
    """Fill predictions into ``items`` = [(row, aligned_face)] with one batched pass of T = 1 per face (frame
    models; clip models go through :mod:`aufer.predict.windows`)."""
    crops = torch.from_numpy(np.stack([a.crop for _, a in items]))[:, None]
    lms = torch.from_numpy(np.stack([a.landmarks for _, a in items]).astype(np.float32))[:, None]
    p_au, p_e = _probabilities(model, crops, lms, flip)
    for k, (row, _) in enumerate(items):
        _fill(row, p_au[k, 0], p_e[k], model, threshold)


def _face_row(frame: Frame, a, aus, emotions, mesh: bool) -> dict:
    row = empty_row(frame.index, frame.timestamp_s, frame.source, aus, emotions, status="ok", mesh=mesh)
    x, y, w, h = (float(v) for v in a.face.box)
    score = float(a.face.score)
    h_img, w_img = frame.image.shape[:2]
    pitch, yaw, roll = (float(v) for v in head_pose(a.face.landmarks, image_size=(w_img, h_img)))
    row.update({"face_id": int(a.face_id), "face_detected": True, "success": 1, "confidence": score,
                "face_score": score, "face_x": x, "face_y": y, "face_w": w, "face_h": h,
                "pose_pitch": pitch, "pose_yaw": yaw, "pose_roll": roll})
    for i, (px, py) in enumerate(a.face.five):
        row[f"lm5_x{i}"], row[f"lm5_y{i}"] = float(px), float(py)
    if mesh:
        lm = a.face.landmarks
        for i in range(lm.shape[0]):
            row[f"x_{i}"], row[f"y_{i}"] = float(lm[i, 0]), float(lm[i, 1])
    return row


def _frame_rows(frame: Frame, faces: list, aus, emotions, mesh: bool) -> list[tuple[dict, object]]:
    """The rows of one frame as ``(row, aligned face or None)``: a row per face, else one ``unreadable`` or
    ``no_face`` row."""
    if frame.image is None:
        return [(empty_row(frame.index, frame.timestamp_s, frame.source, aus, emotions, "unreadable", mesh), None)]
    if not faces:
        return [(empty_row(frame.index, frame.timestamp_s, frame.source, aus, emotions, mesh=mesh), None)]
    return [(_face_row(frame, a, aus, emotions, mesh), a) for a in faces]


def iter_predictions(path: str | Path, model, pipeline: FacePipeline | None = None, start: int = 0,
                     batch_size: int = 16, threshold: float = 0.5, flip: bool = True,
                     mesh: bool = False, window_stride: int | None = None) -> Iterator[dict]:
    """Rows (dicts with :func:`aufer.schema.columns` keys) for every frame and face of ``path``, in frame order,
    streamed in constant memory. ``start`` skips frames before that index (resuming). ``flip`` averages each
    face's predictions with those of its mirror image (:func:`aufer.models.contract.flip_average`; on by
    default here for practitioners, unlike evaluation, where benchmark protocols use no test-time
    augmentation). ``mesh`` adds the 478 mesh points (``x_i``, ``y_i``, image pixels). The model runs on the
    device its parameters are on. A clip model (:func:`aufer.models.contract.frame_window` T > 1, e.g. MDHR)
    runs over T-frame windows of each face track, every ``window_stride`` frames (default: its cfg's
    ``eval_stride``, else T; see :mod:`aufer.predict.windows`); every frame still gets one row.

    Without ``pipeline``, faces are aligned at the model's crop size
    (:func:`aufer.models.contract.crop_size`: ``default_cfg["crop_size"]``, else ``input_size``).

    Raises:
        aufer.media.MediaError: for a missing, unsupported or unreadable input.
    """
    model.eval()
    pipeline = pipeline or FacePipeline(crop_size=contract.crop_size(model))
    if contract.frame_window(model) > 1:
        yield from _iter_clip_predictions(path, model, pipeline, start, threshold, flip, mesh, window_stride)
        return
    pending: list = []  # (row, aligned face or None) waiting for the model, in frame order
    aus, emotions = model.aus, model.emotions

    def flush() -> list[dict]:
        with_face = [p for p in pending if p[1] is not None]
        if with_face:
            _run_model(model, with_face, threshold, flip)
        rows = [r for r, _ in pending]
        pending.clear()
        return rows

    for frame, faces in pipeline.iter_media(path, start=start):
        pending.extend(_frame_rows(frame, faces, aus, emotions, mesh))
        if sum(a is not None for _, a in pending) >= batch_size:
            yield from flush()
    yield from flush()


def _iter_clip_predictions(path, model, pipeline, start, threshold, flip, mesh, window_stride) -> Iterator[dict]:
    """:func:`iter_predictions` for a clip model: rows in frame order, each released once its window has run."""
    t = contract.frame_window(model)
    stride = window_stride or int((getattr(model, "default_cfg", None) or {}).get("eval_stride") or t)
    queue: deque = deque()
    waiting: set[int] = set()

    def fill(row, p_au, p_e):
        _fill(row, p_au, p_e, model, threshold)
        waiting.discard(id(row))

    sched = WindowScheduler(lambda c, lm: _probabilities(model, c, lm, flip), fill, t, min(stride, t))
    aus, emotions = model.aus, model.emotions
    for frame, faces in pipeline.iter_media(path, start=start):
        rows = _frame_rows(frame, faces, aus, emotions, mesh)
        queue.extend(r for r, _ in rows)
        items = [(r, a) for r, a in rows if a is not None]
        waiting.update(id(r) for r, _ in items)
        sched.add_frame(frame.index, items)
        while queue and id(queue[0]) not in waiting:
            yield queue.popleft()
    sched.finish()
    yield from queue


def _iter_array_predictions(images: Sequence[np.ndarray], model, pipeline, batch_size, threshold, flip, mesh):
    """Rows for in-memory RGB images (``file`` = ``<array i>``)."""
    model.eval()
    pending: list = []
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise MediaError(f"image array {i}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}; "
                             "convert it first (e.g. cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))")
        frame = Frame(i, math.nan, img, f"<array {i}>")
        pending.extend(_frame_rows(frame, pipeline.process(img), model.aus, model.emotions, mesh))
    with_face = [p for p in pending if p[1] is not None]
    for k in range(0, len(with_face), batch_size):
        _run_model(model, with_face[k:k + batch_size], threshold, flip)
    return [r for r, _ in pending]


def predict(inputs, model=None, pipeline: FacePipeline | None = None, batch_size: int = 16,
            threshold: float = 0.5, flip: bool = True, mesh: bool = False,
            device: str | torch.device | None = None, window_stride: int | None = None) -> pd.DataFrame:
    """Analyse images, folders or videos; returns ONE table of :mod:`aufer.schema` (a row per frame and face).

    Args:
        inputs: a path (image, folder of images, video), a list of paths, an ``(H, W, 3)`` uint8 RGB array,
            or a list of such arrays (``file`` is then ``<array i>``). Rows of several inputs are concatenated
            in input order; ``file`` tells them apart.
        model: a loaded model, a checkpoint path, or None for aufer's shipped default model
            (:func:`aufer.models.shipped.default_model_path`).
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or None (the model's current device).
        flip: average with the mirrored face (see :func:`iter_predictions`). ``mesh``: add the 478 mesh points.
        window_stride: clip models only (:func:`iter_predictions`).

    Raises:
        aufer.media.MediaError: a missing, unsupported or unreadable input, or a malformed array.

    Example:
        >>> df = predict("clip.mp4")                      # doctest: +SKIP
        >>> df[["timestamp_s", "face_id", "AU12_p", "emotion"]].head()
    """
    if model is None or isinstance(model, (str, Path)):
        model = load_model(model)
    if device is not None:
        model.to(device)
    pipeline = pipeline or FacePipeline(crop_size=contract.crop_size(model))
    cols = columns(model.aus, model.emotions, mesh)
    if isinstance(inputs, np.ndarray) and inputs.ndim == 3:
        inputs = [inputs]
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    inputs = list(inputs)
    arrays = [x for x in inputs if isinstance(x, np.ndarray)]
    if arrays and len(arrays) != len(inputs):
        raise MediaError("pass either paths or image arrays, not both in one call")
    if arrays:
        rows = _iter_array_predictions(arrays, model, pipeline, batch_size, threshold, flip, mesh)
    else:
        rows = [r for p in inputs for r in iter_predictions(p, model, pipeline, batch_size=batch_size,
                                                            threshold=threshold, flip=flip, mesh=mesh,
                                                            window_stride=window_stride)]
    return pd.DataFrame(rows, columns=cols)


def _source_key(path: Path, model, flip: bool, crop_size: int, mesh: bool = False, options: dict | None = None) -> dict:
    """What a partial output must have been made with to be resumed: the input file, the model, the options."""
    st = path.stat()
    return {"input": str(path.resolve()), "size": st.st_size, "mtime": int(st.st_mtime),
            "model": getattr(model, "config", {}), "flip": bool(flip), "crop_size": int(crop_size),
            "mesh": bool(mesh), "options": options or {}, "schema": SCHEMA_VERSION}


@dataclass
class PredictResult:
    """What :func:`predict_to_file` did.

    Attributes:
        output: the file written. n_rows / n_frames: rows and distinct frames in it. frames_with_face:
        frames where at least one face was found. face_ids: distinct track ids. resumed_from: the frame an
        interrupted earlier run was resumed from (None: started afresh). warnings: one line each (a truncated
        video, unreadable images).
    """

    output: Path
    n_rows: int = 0
    n_frames: int = 0
    frames_with_face: int = 0
    face_ids: list[int] = field(default_factory=list)
    resumed_from: int | None = None
    warnings: list[str] = field(default_factory=list)


def _partial_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".partial"), out.with_name(out.name + ".partial.json")


def predict_to_file(path: str | Path, model, out: str | Path, pipeline: FacePipeline | None = None,
                    batch_size: int = 16, threshold: float = 0.5, resume: bool = True,
                    progress: Callable[[int, int | None], None] | None = None, chunk_rows: int = 256,
                    flip: bool = True, mesh: bool = False, fmt: str | None = None,
                    notify: Callable[[str], None] | None = None, options: dict | None = None,
                    window_stride: int | None = None) -> PredictResult:
    """Analyse ``path`` and write the table to ``out`` (CSV, or Parquet when ``fmt="parquet"`` or ``out``
    ends in ``.parquet``) in constant memory.

    Rows are appended in chunks (of at least ``chunk_rows`` rows, whole frames) to ``<out>.partial`` (CSV);
    when the input is complete it becomes ``out`` (atomic rename; Parquet is converted from it in row
    groups). An interrupted run leaves the partial file and a key (``<out>.partial.json``); the next call
    with the same input, model and options resumes after the last complete frame (``resume=True``) and says
    so through ``notify``; otherwise it starts afresh. If the input cannot be read at all, no partial file
    stays behind. ``progress(frames_done, n_frames or None)`` is called per chunk.

    Raises:
        aufer.media.MediaError: for a missing, unsupported or unreadable input.
    """
    path, out = Path(path), Path(out)
    fmt = fmt or ("parquet" if out.suffix.lower() == ".parquet" else "csv")
    kind = media_kind(path)
    n_frames = video_info(path)["n_frames"] if kind == "video" else None
    out.parent.mkdir(parents=True, exist_ok=True)
    partial, key_file = _partial_paths(out)
    cols = columns(model.aus, model.emotions, mesh)
    pipeline = pipeline or FacePipeline(crop_size=contract.crop_size(model))
    opts = dict(options or {}, **({"window_stride": window_stride} if window_stride else {}))
    key = _source_key(path, model, flip, pipeline.crop_size, mesh, opts)
    result = PredictResult(out)
    start = 0
    if resume and partial.exists() and key_file.exists() and _read_key(key_file) == key:
        start = _truncate_to_complete_frames(partial)
        result.resumed_from = start
        if notify:
            notify(f"{path}: resuming from frame {start} (the partial output {partial} of an interrupted run)")
    else:
        with open(partial, "w", newline="") as f:
            csv.writer(f).writerow(cols)
        key_file.write_text(json.dumps(key))
    buf: list[dict] = []
    last_frame, last_ts = start - 1, math.nan
    written = 0

    def write(rows):
        with open(partial, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    try:
        for row in iter_predictions(path, model, pipeline, start=start, batch_size=batch_size,
                                    threshold=threshold, flip=flip, mesh=mesh, window_stride=window_stride):
            if buf and row["frame"] != last_frame and len(buf) >= chunk_rows:
                rows, buf = buf, []  # emptied first: an interrupt inside write() must not write them twice
                write(rows)
                written += len(rows)
                if progress:
                    progress(last_frame + 1, n_frames)
            if row["status"] == "unreadable":
                result.warnings.append(f"{row['file']}: cannot be decoded as an image; its row has status "
                                       "'unreadable'")
            buf.append(row)
            last_frame, last_ts = row["frame"], row["timestamp_s"]
    except MediaError:
        if start == 0 and written == 0:  # nothing of this input could be read: leave nothing behind
            partial.unlink(missing_ok=True)
            key_file.unlink(missing_ok=True)
        raise
    except BaseException:  # KeyboardInterrupt included: keep what the model has done for the rerun
        if buf:  # rows arrive a whole frame at a time (the model runs on whole frames)
            write(buf)
        raise
    if buf:
        write(buf)
    if progress:
        progress(last_frame + 1, n_frames)
    if kind == "video" and n_frames and last_frame + 1 < n_frames:
        lost = n_frames - (last_frame + 1)
        result.warnings.append(
            f"{path}: the video's header promises {n_frames} frames but only {last_frame + 1} could be decoded; "
            f"the last good frame is {last_frame} ({last_ts:.2f} s), {lost} frames are lost (truncated or "
            "corrupt file)")
    if fmt == "parquet":
        _csv_to_parquet(partial, out, cols)
        partial.unlink()
    else:
        os.replace(partial, out)
    key_file.unlink(missing_ok=True)
    _summarise(out, fmt, result)
    return result


def predict_to_csv(path: str | Path, model, out_csv: str | Path, **kwargs) -> Path:
    """:func:`predict_to_file` to a CSV; returns its path."""
    return predict_to_file(path, model, out_csv, fmt="csv", **kwargs).output


def _read_key(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _csv_to_parquet(src: Path, dst: Path, cols: list[str], rows_per_group: int = 50_000) -> None:
    """Convert a partial CSV to Parquet in row groups (constant memory), atomically."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    tmp = dst.with_name(dst.name + ".tmp")
    writer = None
    try:
        for chunk in pd.read_csv(src, chunksize=rows_per_group, **csv_read_options(cols)):
            chunk = _typed(chunk)
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(table.cast(schema))
        if writer is None:  # header only
            writer = pq.ParquetWriter(tmp, pa.Table.from_pandas(_typed(pd.read_csv(src, nrows=0)), preserve_index=False).schema)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, dst)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Column dtypes of the schema: ints as nullable Int64 where a face-less row has none, text as str."""
    for c in df.columns:
        if c in TEXT_COLUMNS:
            df[c] = df[c].astype(str)
        elif c in ("frame", "face_id", "success") or c.endswith("_c"):
            df[c] = pd.to_numeric(df[c]).astype("Int64")
        elif c == "face_detected":
            df[c] = face_mask(df)
        else:
            df[c] = pd.to_numeric(df[c]).astype("float64")
    return df


def _summarise(out: Path, fmt: str, result: PredictResult) -> None:
    """Counts of the finished file, read back column by column (constant memory for CSV via chunks)."""
    frames: set[int] = set()
    with_face: set[int] = set()
    ids: set[int] = set()
    n = 0
    cols = ["frame", "face_id", "face_detected"]
    chunks = [pd.read_parquet(out, columns=cols)] if fmt == "parquet" else pd.read_csv(out, usecols=cols, chunksize=100_000)
    for c in chunks:
        n += len(c)
        frames.update(c["frame"].tolist())
        det = face_mask(c)
        with_face.update(c.loc[det, "frame"].tolist())
        ids.update(int(i) for i in c.loc[det, "face_id"].tolist())
    result.n_rows, result.n_frames, result.frames_with_face = n, len(frames), len(with_face)
    result.face_ids = sorted(ids)


def _truncate_to_complete_frames(partial: Path) -> int:
    """Drop a last line cut short (an interrupt inside a write) and the rows of the last frame in a partial CSV
    (it may be incomplete); return the frame to restart from."""
    with open(partial, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
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
