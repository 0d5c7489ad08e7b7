"""What :func:`aufer.detect` sets up once per process: aufer's default model and the default face pipelines.

``aufer.detect(path)`` without ``model`` or ``pipeline`` used to load the shipped model and build a MediaPipe
face pipeline (four detector graphs and a face mesh, each run once to warm up) on every call. Both are now kept:

* the default model, one per device (key: the weights file, its size and modification time — a retrained and
  re-exported default model is picked up — and the device); it is only read (``eval()``, ``no_grad``), never
  trained, so sharing it between calls and threads does not change results;
* face pipelines, per thread (MediaPipe graphs are not thread-safe), keyed by everything that changes what they
  find: the crop size (the model's), ``max_faces``, ``min_face_score`` and ``detector_range``; at most
  :data:`MAX_PIPELINES` per thread, the least recently used one is closed first. A pipeline keeps no state
  between calls (each video gets its own tracker; still images are detected independently), so a cached one
  gives the same rows as a fresh one. The face pipeline runs on the CPU whatever ``device`` the model uses.

A model or pipeline passed by the caller is never cached. :func:`clear_cache` drops everything (e.g. to free
memory, or to time a cold start).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import torch

from aufer.faces.pipeline import FacePipeline
from aufer.models import load_model
from aufer.models.shipped import default_model_path

__all__ = ["default_model", "face_pipeline", "clear_cache", "cache_info", "MAX_PIPELINES", "MAX_MODELS"]

#: face pipelines kept per thread
MAX_PIPELINES = 4
#: default-model copies kept (one per device in practice)
MAX_MODELS = 2

_models: OrderedDict = OrderedDict()
_models_lock = threading.Lock()
_local = threading.local()
_all_pipelines: list = []  # every thread's cache, so that clear_cache() can close them all
_all_lock = threading.Lock()


def _model_key(device) -> tuple:
    weights = Path(default_model_path())
    st = weights.stat()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return str(weights.resolve()), st.st_size, st.st_mtime_ns, str(dev)


def default_model(device: str | torch.device | None = None) -> torch.nn.Module:
    """aufer's shipped default model on ``device`` (None = CPU), loaded once per process and device.

    Raises:
        FileNotFoundError: the package holds no default model.
        aufer.models.CheckpointError: its files are damaged.
    """
    key = _model_key(device)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = load_model(Path(key[0])).to(torch.device(key[3])).eval()
            _models[key] = model
            while len(_models) > MAX_MODELS:
                _models.popitem(last=False)
        _models.move_to_end(key)
        return model


def _thread_pipelines() -> OrderedDict:
    cache = getattr(_local, "pipelines", None)
    if cache is None:
        cache = _local.pipelines = OrderedDict()
        with _all_lock:
            _all_pipelines.append(cache)
    return cache


def face_pipeline(crop_size: int, max_faces: int, min_face_score: float, detector_range: str) -> FacePipeline:
    """A MediaPipe :class:`~aufer.faces.pipeline.FacePipeline` with these settings, built once per thread.

    Args:
        crop_size: side of the aligned crops in pixels (the model's, :func:`aufer.models.contract.crop_size`).
        max_faces: faces kept per frame at most (int ≥ 1). min_face_score: detector threshold in (0, 1].
        detector_range: ``"short"``, ``"full"`` or ``"both"``.

    Raises:
        ValueError: for a setting out of range (as :class:`~aufer.faces.pipeline.FacePipeline`).
    """
    key = (int(crop_size), int(max_faces), float(min_face_score), str(detector_range))
    cache = _thread_pipelines()
    pipe = cache.get(key)
    if pipe is None:
        pipe = FacePipeline(crop_size=key[0], max_faces=key[1], min_face_score=key[2], detector_range=key[3])
        cache[key] = pipe
        while len(cache) > MAX_PIPELINES:
            _close(cache.popitem(last=False)[1])
    cache.move_to_end(key)
    return pipe


def _close(pipe: FacePipeline) -> None:
    close = getattr(pipe.detector, "close", None)
    if close is not None:
        close()


def clear_cache() -> None:
    """Forget the cached default models and close every thread's cached face pipelines (call it while no
    :func:`aufer.detect` is running in another thread: a pipeline in use would be closed under it)."""
    with _models_lock:
        _models.clear()
    with _all_lock:
        for cache in _all_pipelines:
            while cache:
                _close(cache.popitem()[1])


def cache_info() -> dict:
    """What is cached now: ``{"models": [(weights, size, mtime_ns, device)], "pipelines": [(crop_size,
    max_faces, min_face_score, detector_range)]}`` (pipelines of the calling thread)."""
    with _models_lock:
        models = list(_models)
    return {"models": models, "pipelines": list(_thread_pipelines())}
