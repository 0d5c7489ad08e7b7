"""``aufer prepare``: detect, align and crop every frame of a dataset once, into a :class:`FaceStore`.

Work is split into jobs (a sequence, or a slice of one), run in parallel worker processes that each hold one
face pipeline and commit their frames to the store every ``commit_every`` frames. A rerun asks the store what is
already there and does only the rest, so a ``kill -9`` loses at most the frames in flight (uncommitted batches).

Per frame, the *primary* face is kept (:func:`aufer.faces.track.primary_face`): the face overlapping the previous
frame's face most (IoU ≥ 0.3), else the largest. A frame without a face is stored with ``detected = 0`` and the crop given by the last alignment of
the same job (or, before any face was seen, the central square of the frame), with the last landmarks (or
zeros): the frame keeps its place in the sequence, and the flag says not to trust it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from aufer.faces.align import align_face, centre_matrix, warp_crop
from aufer.faces.landmarks import N_LANDMARKS
from aufer.faces.mediapipe_backend import MediaPipeFaceDetector
from aufer.faces.track import primary_face
from aufer.media import MediaError, iter_video, list_images, read_image
from aufer.readers.records import ClipRecords, FrameRecords
from aufer.store.facestore import FaceStore, StoredFrame

__all__ = ["prepare", "plan_jobs", "Job"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    """Frames of one sequence to align.

    Attributes:
        key: sequence key in the store.
        video: path of the video holding the frames, or ``""`` for image files.
        frames: store frame numbers to write.
        sources: per frame, the image path (image jobs) or the 0-based frame index in ``video``.
        all_frames: a video clip whose every frame is wanted, count unknown until decoded (``frames`` empty).
    """

    key: str
    video: str = ""
    frames: list[int] = field(default_factory=list)
    sources: list = field(default_factory=list)
    all_frames: bool = False
    expected: int | None = None

    def __len__(self) -> int:
        return len(self.frames)


def _frame_jobs(records: FrameRecords, stored: dict[str, set[int]]) -> list[Job]:
    jobs = []
    for key, g in records.table.groupby("sequence", sort=False):
        done = stored.get(key, set())
        g = g[~g["frame"].isin(done)]
        if g.empty:
            continue
        videos = g.loc[g["media_index"] >= 0, "media"].unique()
        if len(videos) > 1 or (len(videos) == 1 and (g["media_index"] < 0).any()):
            raise ValueError(f"sequence {key!r} mixes several media files; one sequence must be one video or images")
        if len(videos):
            g = g.sort_values("media_index")
            jobs.append(Job(key, str(videos[0]), g["frame"].astype(int).tolist(), g["media_index"].astype(int).tolist()))
        else:
            jobs.append(Job(key, "", g["frame"].astype(int).tolist(), g["media"].astype(str).tolist()))
    return jobs


def _clip_jobs(records: ClipRecords, stored: dict[str, set[int]], done: set[str]) -> list[Job]:
    jobs = []
    for clip, media in zip(records.table["clip"], records.table["media"]):
        if clip in done:
            continue
        p = Path(media)
        if p.is_dir():
            files = list_images(p)
            have = stored.get(clip, set())
            todo = [(i, str(f)) for i, f in enumerate(files) if i not in have]
            jobs.append(Job(clip, "", [i for i, _ in todo], [f for _, f in todo], expected=len(files)))
        else:
            jobs.append(Job(clip, str(p), all_frames=True))
    return jobs


def _split(job: Job, parts: int) -> list[Job]:
    if parts <= 1 or job.all_frames or len(job) < 2 * parts:
        return [job]
    edges = np.linspace(0, len(job), parts + 1).round().astype(int)
    return [Job(job.key, job.video, job.frames[a:b], job.sources[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def plan_jobs(records: FrameRecords | ClipRecords, store: FaceStore, workers: int = 1,
              max_image_job: int = 256) -> list[Job]:
    """The jobs still to do for ``records`` given what ``store`` holds (frames already stored are skipped).

    Image jobs are cut into slices of at most ``max_image_job`` frames (finer progress, balanced workers);
    when there are fewer jobs than ``workers``, long sequences are cut into ``workers`` slices (a video slice
    decodes from the start of the video and skips the frames before its first one).
    """
    ft = store.frame_table()
    stored = {k: set(g["frame"].tolist()) for k, g in ft.groupby("sequence")} if len(ft) else {}
    if isinstance(records, FrameRecords):
        jobs = _frame_jobs(records, stored)
        for key, g in records.table.groupby("sequence", sort=False):
            store.set_expected(str(key), int(g["frame"].nunique()))
    else:
        jobs = _clip_jobs(records, stored, store.done_sequences())
        for j in jobs:
            if j.expected is not None:
                store.set_expected(j.key, j.expected)
    out = []
    for j in jobs:
        out.extend(_split(j, -(-len(j) // max_image_job)) if not j.video else [j])
    if len(out) < workers:
        out = [p for j in out for p in _split(j, workers)]
    return out


# ------------------------------------------------------------------------------------------------ workers
_STATE: dict = {}


def _init_worker(store_path: str, crop_size: int, max_faces: int, min_score: float, own_process: bool = True) -> None:
    if own_process:  # keep each worker process to its own core
        cv2.setNumThreads(1)
    try:  # an exception here would make a Pool respawn its workers forever: keep it for the first job instead
        _STATE["detector"] = MediaPipeFaceDetector(max_faces=max_faces, min_score=min_score, detector_range="short")
        _STATE["store"] = FaceStore(store_path, "a")
        _STATE["crop_size"] = crop_size
        _STATE.pop("error", None)
    except Exception as e:  # noqa: BLE001
        _STATE["error"] = f"{e.__class__.__name__}: {e}"


def _frames_of(job: Job):
    """``(frame number, image or None, error)`` for the job's frames, in order."""
    if not job.video:
        for f, path in zip(job.frames, job.sources):
            try:
                yield f, read_image(path), ""
            except MediaError as e:
                yield f, None, str(e)
        return
    if job.all_frames:
        for fr in iter_video(job.video):
            yield fr.index, fr.image, ""
        return
    want = dict(zip(job.sources, job.frames))
    last = max(want)
    seen = set()
    for fr in iter_video(job.video, start=min(want)):
        if fr.index in want:
            seen.add(fr.index)
            yield want[fr.index], fr.image, ""
        if fr.index >= last:
            break
    for idx in sorted(set(want) - seen):
        yield want[idx], None, f"{job.video}: frame {idx} could not be decoded (video shorter than its labels?)"


def _detect(det: MediaPipeFaceDetector, img: np.ndarray) -> list:
    """Benchmark frames hold one large, near face: the short-range detector, and the full-range pass (whole frame
    and tiles, about 6× the cost on a 1392 × 1040 BP4D frame) only on a frame where short range finds nothing."""
    return det.detect(img) or det.faces_in_boxes(img, det.boxes(img, ("full",)))


def _run_job(job: Job, commit_every: int = 32) -> dict:
    if "error" in _STATE:
        raise RuntimeError(f"a prepare worker could not start: {_STATE['error']}")
    det, store, size = _STATE["detector"], _STATE["store"], _STATE["crop_size"]
    batch: list[StoredFrame] = []
    prev_box = prev_m = prev_lm = None
    n = n_det = 0
    errors: list[str] = []
    for f, img, err in _frames_of(job):
        if img is None:
            errors.append(err)
            crop = np.zeros((size, size, 3), np.uint8)
            batch.append(StoredFrame(f, crop, np.zeros((N_LANDMARKS, 3)), np.full(4, np.nan), 0.0, False))
        else:
            face = primary_face(_detect(det, img), prev_box)
            if face is not None:
                a = align_face(img, face, size)
                prev_box, prev_m, prev_lm = face.box, a.matrix, a.landmarks
                batch.append(StoredFrame(f, a.crop, a.landmarks, face.box, face.score, True))
                n_det += 1
            else:
                m = prev_m if prev_m is not None else centre_matrix(img.shape, size)
                crop = warp_crop(img, m, size)
                lm = prev_lm if prev_lm is not None else np.zeros((N_LANDMARKS, 3))
                batch.append(StoredFrame(f, crop, lm, np.full(4, np.nan), 0.0, False))
        n += 1
        if len(batch) >= commit_every:
            store.write(job.key, batch)
            batch = []
    if batch:
        store.write(job.key, batch)
    if job.all_frames:
        store.mark_done(job.key, n)
    return {"key": job.key, "frames": n, "detected": n_det, "errors": errors}


# ------------------------------------------------------------------------------------------------- driver
def prepare(records: FrameRecords | ClipRecords, out: str | Path, crop_size: int = 256, workers: int | None = None,
            codec: str = "jpeg", quality: int = 95, commit_every: int = 32, max_faces: int = 3,
            min_score: float = 0.5, progress: bool = True) -> dict:
    """Align every frame of ``records`` into the store ``out`` (created or resumed).

    Args:
        records: what a reader returned (:mod:`aufer.readers`).
        out: the store file (``.sqlite``); an existing store is resumed.
        crop_size: aligned crop side in pixels (256: the reference code bases align to 256 and crop 224).
        workers: parallel processes (default: all cores).
        codec, quality: crop encoding (see :class:`FaceStore`).
        commit_every: frames per commit (the most a ``kill -9`` can lose per worker).
        max_faces, min_score: face detector settings.

    Returns:
        A report: ``frames_done`` (this run), ``frames_detected``, ``sequences_done``, ``sequences``, ``errors``
        (unreadable frames, first 20), ``seconds``, ``frames_per_s``, ``store``.

    Raises:
        aufer.store.facestore.StoreError: if ``out`` exists with another crop size or is not a store.
        RuntimeError: if a worker process cannot start (its reason is in the message).

    Worker processes are *spawned*: in a script, call ``prepare`` under ``if __name__ == "__main__":`` (the
    ``aufer prepare`` command does this for you).
    """
    workers = max(1, int(workers or os.cpu_count() or 1))
    store = FaceStore(out, "a", crop_size=crop_size, codec=codec, quality=quality)
    kind = "frames" if isinstance(records, FrameRecords) else "clips"
    store.set_meta(dataset=records.dataset, kind=kind, notes=records.notes)
    store.save_records(records)
    jobs = plan_jobs(records, store, workers)
    total = sum(len(j) for j in jobs) or None
    t0 = time.perf_counter()
    done = det = 0
    errors: list[str] = []
    init = (str(store.path), store.crop_size, max_faces, min_score)
    with Progress(TextColumn(f"aligning {records.dataset}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress, transient=False) as bar:
        task = bar.add_task("", total=total)
        for r in _results(jobs, workers, init, commit_every):
            done += r["frames"]
            det += r["detected"]
            errors.extend(r["errors"])
            bar.update(task, advance=r["frames"])
    n_done = store.finalize()
    seqs = store.sequences()
    secs = time.perf_counter() - t0
    for e in errors[:5]:
        log.warning("%s", e)
    return {"store": str(store.path), "frames_done": done, "frames_detected": det, "sequences": len(seqs),
            "sequences_done": n_done, "errors": errors[:20], "n_errors": len(errors), "seconds": secs,
            "frames_per_s": done / secs if secs > 0 else float("nan")}


def _results(jobs: list[Job], workers: int, init: tuple, commit_every: int) -> Iterator[dict]:
    """The report of each job as it finishes: in this process when one worker (or one job) suffices, else in a
    pool of spawned worker processes (closed and joined however the caller stops)."""
    if workers == 1 or len(jobs) <= 1:
        _init_worker(*init, own_process=False)
        yield from (_run_job(j, commit_every) for j in jobs)
        return
    pool = mp.get_context("spawn").Pool(min(workers, len(jobs)), _init_worker, init)
    try:
        yield from pool.imap_unordered(_job_entry, [(j, commit_every) for j in jobs])
    finally:
        pool.close()
        pool.join()


def _job_entry(args) -> dict:
    return _run_job(*args)
