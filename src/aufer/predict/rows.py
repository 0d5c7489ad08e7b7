"""Streaming analysis of images, folders and videos → one row per (frame, face), in the table of
:mod:`aufer.schema` (every column, its unit and meaning; schema version ``SCHEMA_VERSION``).

- :func:`predict`: the Python API; a path, a list of paths or image arrays → one DataFrame.
- :func:`iter_predictions`: the rows of one input, streamed in constant memory.
- :func:`predict_to_file`: one input → a CSV, Parquet or OpenFace-layout file, written atomically and resumable.

Outputs of many inputs, output-path checks and locks are in :mod:`aufer.predict.jobs`; the face-detection
defaults shared with ``aufer predict`` in :mod:`aufer.predict.defaults`; the per-process cache of the default
model and face pipelines in :mod:`aufer.predict.cache`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from aufer.faces.pipeline import FacePipeline
from aufer.faces.pose import head_pose
from aufer.media import Frame, MediaError, media_kind, video_info
from aufer.models import contract, load_model
from aufer.predict import cache
from aufer.predict.defaults import (DEFAULT_DETECTOR_RANGE, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE_SCORE,
                                    FaceCapWarning, cap_message)
from aufer.predict.inputs import split_inputs
from aufer.predict.openface import openface_summary, write_openface_csv
from aufer.predict.windows import WindowScheduler
from aufer.schema import (SCHEMA_VERSION, TEXT_COLUMNS, au_stems, columns, csv_read_options, empty_row, face_mask,
                          read_table)

__all__ = ["SCHEMA_VERSION", "columns", "iter_predictions", "predict", "predict_to_file", "predict_to_csv",
           "PredictResult", "read_table"]


def _device_of(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _fill(row: dict, p_au: np.ndarray, p_e: np.ndarray, model, threshold: float) -> None:
    """Write one face's AU probabilities ``(A,)`` and emotion probabilities ``(E,)`` into its row."""
    for j, code in enumerate(au_stems(model)):
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


def _default_pipeline(model, max_faces: int | None = None, min_face_score: float | None = None,
                      detector_range: str | None = None) -> FacePipeline:
    """The cached MediaPipe pipeline at ``model``'s crop size with these settings (None: the defaults of
    :mod:`aufer.predict.defaults`, those of ``aufer predict``)."""
    return cache.face_pipeline(
        contract.crop_size(model), DEFAULT_MAX_FACES if max_faces is None else max_faces,
        DEFAULT_MIN_FACE_SCORE if min_face_score is None else min_face_score,
        DEFAULT_DETECTOR_RANGE if detector_range is None else detector_range)


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

    Without ``pipeline``, the default face pipeline of :func:`predict` is used (:func:`_default_pipeline`:
    ``aufer predict``'s detection defaults, faces aligned at the model's crop size
    :func:`aufer.models.contract.crop_size`, cached per process).

    Raises:
        aufer.media.MediaError: for a missing, unsupported or unreadable input.
    """
    model.eval()
    pipeline = pipeline or _default_pipeline(model)
    if contract.frame_window(model) > 1:
        yield from _iter_clip_predictions(path, model, pipeline, start, threshold, flip, mesh, window_stride)
        return
    pending: list = []  # (row, aligned face or None) waiting for the model, in frame order
    aus, emotions = au_stems(model), model.emotions

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
    aus, emotions = au_stems(model), model.emotions
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
    """Rows for in-memory ``(H, W, 3)`` uint8 RGB images (``file`` = ``<array i>``)."""
    model.eval()
    pending: list = []
    for i, img in enumerate(images):
        frame = Frame(i, math.nan, img, f"<array {i}>")
        pending.extend(_frame_rows(frame, pipeline.process(img), au_stems(model), model.emotions, mesh))
    with_face = [p for p in pending if p[1] is not None]
    for k in range(0, len(with_face), batch_size):
        _run_model(model, with_face[k:k + batch_size], threshold, flip)
    return [r for r, _ in pending]


class _CapCounter:
    """Counts the frames of a row stream that hold ``max_faces`` faces (the detector's cap: there may have been
    more faces). Rows of one frame are consecutive, as every row stream of this module gives them."""

    def __init__(self, max_faces: int | None):
        self.max_faces = max_faces
        self.frames = self.at_cap = 0
        self.first: int | None = None
        self._key, self._faces = None, 0

    def add(self, row: dict) -> None:
        key = (row["file"], row["frame"])
        if key != self._key:
            self._close()
            self._key, self._faces = key, 0
            self.frames += 1
        self._faces += bool(row["face_detected"])

    def _close(self) -> None:
        if self._key is not None and self.max_faces and self._faces >= self.max_faces:
            self.at_cap += 1
            if self.first is None:
                self.first = int(self._key[1])
        self._key = None

    def message(self, source: str) -> str | None:
        """The warning line (:func:`aufer.predict.defaults.cap_message`), or None when no frame hit the cap."""
        self._close()
        if not self.at_cap:
            return None
        return cap_message(source, self.at_cap, self.frames, self.first, self.max_faces)


def _max_faces(pipeline) -> int | None:
    """The cap of a pipeline's detector (None for a detector without one)."""
    return getattr(getattr(pipeline, "detector", None), "max_faces", None)


def predict(inputs, model=None, pipeline: FacePipeline | None = None, batch_size: int = 16,
            threshold: float = 0.5, flip: bool = True, mesh: bool = False,
            device: str | torch.device | None = None, window_stride: int | None = None, *,
            max_faces: int | None = None, min_face_score: float | None = None,
            detector_range: str | None = None) -> pd.DataFrame:
    """Analyse images, folders or videos; returns ONE table of :mod:`aufer.schema` (a row per frame and face).

    With the defaults it finds the same faces as ``aufer predict`` (:mod:`aufer.predict.defaults`: at most
    ``DEFAULT_MAX_FACES`` = 8 faces per frame, detector threshold 0.5, detector range ``both``). The default
    model and the face pipeline are set up once per process and reused by later calls
    (:mod:`aufer.predict.cache`; :func:`aufer.predict.cache.clear_cache` frees them); a model or pipeline you
    pass is used as is.

    Args:
        inputs: a path (image, folder of images, video), a list of paths, or images held in memory: one uint8
            numpy array of shape ``(H, W)`` (greyscale), ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA, alpha
            dropped), an ``(N, H, W, C)`` stack or a list of such arrays (``file`` is then ``<array i>``); see
            :mod:`aufer.predict.inputs`. Rows of several inputs are concatenated in input order; ``file`` tells
            them apart.
        model: a loaded model, a checkpoint path, or None for aufer's shipped default model
            (:func:`aufer.models.shipped.default_model_path`, loaded once per process and device).
        pipeline: your own :class:`~aufer.faces.pipeline.FacePipeline` (then leave ``max_faces``,
            ``min_face_score`` and ``detector_range`` unset); None = the default MediaPipe pipeline at the
            model's crop size with those three settings.
        max_faces: faces kept per frame at most, int ≥ 1 (default 8, as ``aufer predict``). A frame holding that
            many faces may have had more: the call then warns (:class:`aufer.predict.defaults.FaceCapWarning`).
        min_face_score: face detector threshold in (0, 1] (default 0.5).
        detector_range: ``"short"``, ``"full"`` or ``"both"`` (default).
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or None (the model's current device; the CPU for the
            default model).
        flip: average with the mirrored face (see :func:`iter_predictions`). ``mesh``: add the 478 mesh points.
        window_stride: clip models only (:func:`iter_predictions`).

    Raises:
        aufer.media.MediaError: a missing, unsupported or unreadable input, an array that is not an image, or
            something that is neither a path nor an image (one line saying what to pass).
        ValueError: ``pipeline`` together with ``max_faces`` / ``min_face_score`` / ``detector_range``, or one
            of those out of range.

    Warns:
        FaceCapWarning: some frame of an input held ``max_faces`` faces.

    Example:
        >>> df = predict("clip.mp4")                      # doctest: +SKIP
        >>> df[["timestamp_s", "face_id", "AU12_p", "emotion"]].head()
    """
    kind, items = split_inputs(inputs)  # a bad input answers before any model is loaded
    settings = {"max_faces": max_faces, "min_face_score": min_face_score, "detector_range": detector_range}
    if pipeline is not None and any(v is not None for v in settings.values()):
        given = ", ".join(k for k, v in settings.items() if v is not None)
        raise ValueError(f"{given} set the default face pipeline; with your own pipeline, set them on it instead")
    if model is None:
        model = cache.default_model(device)
    else:
        if isinstance(model, (str, Path)):
            model = load_model(model)
        if device is not None:
            model.to(device)
    if pipeline is None:
        pipeline = _default_pipeline(model, max_faces, min_face_score, detector_range)
    cols = columns(au_stems(model), model.emotions, mesh)
    if kind == "arrays":
        groups = [("image arrays", _iter_array_predictions(items, model, pipeline, batch_size, threshold, flip,
                                                           mesh))]
    else:
        groups = [(str(p), list(iter_predictions(p, model, pipeline, batch_size=batch_size, threshold=threshold,
                                                 flip=flip, mesh=mesh, window_stride=window_stride)))
                  for p in items]
    for source, rows in groups:
        counter = _CapCounter(_max_faces(pipeline))
        for r in rows:
            counter.add(r)
        msg = counter.message(source)
        if msg:
            warnings.warn(msg, FaceCapWarning, stacklevel=2)
    return pd.DataFrame([r for _, rows in groups for r in rows], columns=cols)


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
        video, unreadable images, frames that hold ``max_faces`` faces).
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
    """Analyse ``path`` and write the table to ``out`` in constant memory: aufer's CSV (``fmt="csv"``, the
    default unless ``out`` ends in ``.parquet``), Parquet (``fmt="parquet"``) or OpenFace 2.x's CSV layout
    (``fmt="openface"``, :mod:`aufer.predict.openface`; not with ``mesh``).

    Rows are appended in chunks (of at least ``chunk_rows`` rows, whole frames) to ``<out>.partial`` (aufer's
    CSV); when the input is complete it becomes ``out`` (atomic rename; Parquet and the OpenFace layout are
    converted from it in a stream). An existing ``out`` is replaced (``aufer predict`` refuses that without
    ``--overwrite``). An interrupted run leaves the partial file and a key (``<out>.partial.json``); the next
    call with the same input, model and options resumes after the last complete frame (``resume=True``) and
    says so through ``notify``; otherwise it starts afresh. If the input cannot be read at all, no partial file
    stays behind. ``progress(frames_done, n_frames or None)`` is called per chunk. A frame that holds as many
    faces as the pipeline's detector keeps (``max_faces``) adds a line to :attr:`PredictResult.warnings`.

    Raises:
        aufer.media.MediaError: for a missing, unsupported or unreadable input.
        ValueError: ``fmt="openface"`` with ``mesh=True`` (OpenFace's ``x_i, y_i`` are 68 other points).
    """
    path, out = Path(path), Path(out)
    fmt = fmt or ("parquet" if out.suffix.lower() == ".parquet" else "csv")
    if fmt == "openface" and mesh:
        raise ValueError("fmt='openface' cannot hold the 478 mesh points (OpenFace's x_i, y_i are the 68 iBUG "
                         "landmarks); write the mesh as csv or parquet")
    kind = media_kind(path)
    n_frames = video_info(path)["n_frames"] if kind == "video" else None
    out.parent.mkdir(parents=True, exist_ok=True)
    partial, key_file = _partial_paths(out)
    cols = columns(au_stems(model), model.emotions, mesh)
    pipeline = pipeline or _default_pipeline(model)
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
    capped = _CapCounter(_max_faces(pipeline))

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
            capped.add(row)
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
    cap = capped.message(str(path) + (f" (frames {start} on)" if start else ""))
    if cap:
        result.warnings.append(cap)
    if fmt == "parquet":
        _csv_to_parquet(partial, out, cols)
        partial.unlink()
    elif fmt == "openface":
        write_openface_csv(partial, out)
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
    if fmt == "openface":
        result.n_rows, result.n_frames, result.frames_with_face, result.face_ids = openface_summary(out)
        return
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
