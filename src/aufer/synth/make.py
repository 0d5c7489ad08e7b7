"""SYNTHETIC clip sets: FACS-warp renders of real neutral faces, each frame re-detected and aligned by the face
pipeline as a real frame would be, with AU and/or expression labels.

Work is split by base face (one task per identity, each with its own seeded generator), so that the output is
the same whatever the number of worker processes.
"""

from __future__ import annotations

import multiprocessing as mp
import zlib
from concurrent.futures import ProcessPoolExecutor
from typing import Sequence

import numpy as np

from aufer import vocab
from aufer.faces.align import align_face
from aufer.faces.base import Face, FaceDetector
from aufer.faces.landmarks import N_LANDMARKS
from aufer.faces.mediapipe_backend import MediaPipeFaceDetector
from aufer.synth.clipset import ClipSet
from aufer.synth.render import BaseFace, render
from aufer.synth.sample import au_clip_intensities, occurrence, sample_au_peaks, sample_expression_peaks

__all__ = ["SYNTHETIC_NOTE", "realise", "make_au_clips", "make_expression_clips"]

SYNTHETIC_NOTE = "SYNTHETIC facial motion (aufer FACS-warp of a real neutral photo); not a real expression"


def _rng(seed: int, identity: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(identity.encode()), int(stream)])


_WORKER_DETECTOR: FaceDetector | None = None


def _detector() -> FaceDetector:
    """This process's MediaPipe detector, made on first use (mediapipe is imported only then)."""
    global _WORKER_DETECTOR
    if _WORKER_DETECTOR is None:
        _WORKER_DETECTOR = MediaPipeFaceDetector(max_faces=1)
    return _WORKER_DETECTOR


def realise(base: BaseFace, intensities: np.ndarray, crop_size: int,
            detector: FaceDetector | None = None) -> dict[str, np.ndarray]:
    """Render frames of intensities ``(T, A)`` and pass each through the face pipeline (detection, landmarks,
    alignment by :func:`aufer.faces.align.align_face`), as a real frame would be.

    Returns a dict of ``crops (T, S, S, 3)`` uint8, ``landmarks (T, 478, 3)`` float32 in crop pixels (as
    re-detected; the rendered positions where detection fails), ``intensity (T, A)`` shown, ``detected (T,)``.
    ``detector`` defaults to one MediaPipe detector per process.
    """
    det = detector or _detector()
    t_len = len(intensities)
    crops = np.zeros((t_len, crop_size, crop_size, 3), np.uint8)
    lms = np.zeros((t_len, N_LANDMARKS, 3), np.float32)
    shown = np.zeros((t_len, len(base.aus)), np.float32)
    detected = np.zeros(t_len, bool)
    for t in range(t_len):
        image, rendered, shown[t] = render(base, intensities[t])
        faces = det.detect(image)
        detected[t] = bool(faces)
        face = faces[0] if faces else Face(box=np.full(4, np.nan), score=0.0, landmarks=rendered)
        a = align_face(image, face, crop_size)
        crops[t] = a.crop
        lms[t] = a.landmarks
    return {"crops": crops, "landmarks": lms, "intensity": shown, "detected": detected}


def _au_clip_task(args) -> dict[str, np.ndarray]:
    base, n_clips, n_frames, crop_size, seed = args
    rng = _rng(seed, base.identity, 1)
    out = [realise(base, au_clip_intensities(sample_au_peaks(rng, base.aus), n_frames, rng), crop_size)
           for _ in range(n_clips)]
    return {k: np.stack([o[k] for o in out]) for k in out[0]}


def _expr_task(args) -> tuple[dict[str, np.ndarray], np.ndarray]:
    base, n_per_emotion, emotion_list, n_frames, crop_size, seed = args
    rng = _rng(seed, base.identity, 2)
    out, labels = [], []
    for e_idx, emo in enumerate(emotion_list):
        for _ in range(n_per_emotion):
            peaks = sample_expression_peaks(rng, emo, base.aus, emotion_list)
            if n_frames == 1:  # a still near the apex
                inten = (peaks * rng.uniform(0.7, 1.0))[None]
            else:
                inten = au_clip_intensities(peaks, n_frames, rng)
            out.append(realise(base, inten, crop_size))
            labels.append(e_idx)
    return {k: np.stack([o[k] for o in out]) for k in out[0]}, np.array(labels, np.int64)


def _run(fn, tasks: list, workers: int, progress=None) -> list:
    """``[fn(t) for t in tasks]``, in ``workers`` spawned processes when there are several; ``progress()`` is
    called after each task."""
    if workers <= 1 or len(tasks) <= 1:
        return _collect(map(fn, tasks), progress)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        return _collect(ex.map(fn, tasks), progress)


def _collect(results, progress) -> list:
    out = []
    for r in results:
        out.append(r)
        if progress:
            progress()
    return out


def make_au_clips(bases: Sequence[BaseFace], n_clips: int, n_frames: int = 16, crop_size: int = 224, seed: int = 0,
                  workers: int = 1, progress=None) -> ClipSet:
    """SYNTHETIC AU-labelled clips: ``n_clips`` per base face, AU combinations from :func:`sample_au_peaks`,
    onset–apex–offset curves, every frame re-detected and aligned by the face pipeline.

    Returns a :class:`~aufer.synth.clipset.ClipSet` with AU labels per frame and ``expr = -1``; its
    ``source`` is ``"synthetic"`` and its notes carry :data:`SYNTHETIC_NOTE`. Deterministic for ``seed``
    (whatever ``workers``): each identity draws from its own seeded generator.
    """
    res = _run(_au_clip_task, [(b, n_clips, n_frames, crop_size, seed) for b in bases], workers, progress)
    inten = np.concatenate([r["intensity"] for r in res])
    n = len(inten)
    return ClipSet(
        crops=np.concatenate([r["crops"] for r in res]), landmarks=np.concatenate([r["landmarks"] for r in res]),
        au=occurrence(inten), au_intensity=inten.astype(np.float32), expr=np.full(n, -1, np.int64),
        identity=np.repeat([b.identity for b in bases], n_clips), source=np.full(n, "synthetic"),
        detected=np.concatenate([r["detected"] for r in res]), aus=tuple(bases[0].aus), emotions=vocab.EMOTIONS_7,
        notes=[SYNTHETIC_NOTE])


def make_expression_clips(bases: Sequence[BaseFace], n_per_emotion: int, emotion_list: Sequence[str] = vocab.EMOTIONS_7,
                          n_frames: int = 1, crop_size: int = 224, seed: int = 0, workers: int = 1,
                          progress=None, with_au_labels: bool = False) -> ClipSet:
    """SYNTHETIC prototype expressions: ``n_per_emotion`` clips per emotion and base face, AUs drawn from CK+
    P(AU | emotion) (:func:`sample_expression_peaks`); a still (``n_frames == 1``) shows the expression near
    its apex. Expression labels only, unless ``with_au_labels`` (then the rendered AUs are labelled too).
    """
    tasks = [(b, n_per_emotion, tuple(emotion_list), n_frames, crop_size, seed) for b in bases]
    res = _run(_expr_task, tasks, workers, progress)
    inten = np.concatenate([r[0]["intensity"] for r in res])
    n = len(inten)
    au = occurrence(inten) if with_au_labels else np.full(inten.shape, -1, np.int8)
    return ClipSet(
        crops=np.concatenate([r[0]["crops"] for r in res]), landmarks=np.concatenate([r[0]["landmarks"] for r in res]),
        au=au, au_intensity=inten.astype(np.float32) if with_au_labels else np.full(inten.shape, np.nan, np.float32),
        expr=np.concatenate([r[1] for r in res]),
        identity=np.repeat([b.identity for b in bases], n_per_emotion * len(emotion_list)),
        source=np.full(n, "synthetic"), detected=np.concatenate([r[0]["detected"] for r in res]),
        aus=tuple(bases[0].aus), emotions=tuple(emotion_list), notes=[SYNTHETIC_NOTE])
