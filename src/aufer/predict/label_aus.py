"""AU pseudo-labels by a model (``aufer label-aus STORE --model RUN``, methods.md §4.2): run an aufer AU model over
every clip of an expression face store and write its per-frame AU probabilities with the store functions of
:mod:`aufer.store.au_labels` (crash-safe and resumable: a clip is written whole; a rerun with the same model labels
only what is left).

A clip model (:func:`aufer.models.contract.frame_window` T > 1, e.g. MDHR) runs over T-frame windows by the rule of
:class:`aufer.predict.windows.WindowScheduler` (:func:`clip_windows`), so each frame gets one prediction, as in
``aufer predict``; crops are resized from the store's size to :func:`aufer.models.contract.crop_size`; no flip
averaging. A frame where the store found no face (``detected = 0``) is not labelled.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from aufer.models.contract import crop_size, frame_window, probabilities
from aufer.schema import au_parts, au_stems
from aufer.store.au_labels import (AULabelError, begin_labelling, clips_to_label, finish_labelling, open_expr_store,
                                   put_labels)

__all__ = ["label_store_with_model", "clip_windows"]


def clip_windows(n: int, window: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """The forward passes over a clip of ``n`` frames: ``(start, stop, first)`` = run frames ``[start, stop)``
    (padded to ``window`` with the last frame when shorter) and keep the outputs of frames ``[first, stop)``.
    The rule of :class:`aufer.predict.windows.WindowScheduler` for one unbroken face track; ``window`` 1 = one
    pass per frame."""
    stride = window if stride is None else int(stride)
    if window <= 1:
        return [(t, t + 1, t) for t in range(n)]
    if n <= window:
        return [(0, n, 0)] if n else []
    out, end = [(0, window, 0)], window
    while end + stride <= n:
        out.append((end + stride - window, end + stride, end))
        end += stride
    if end < n:
        out.append((n - window, n, end))
    return out


def _state_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _device(name: str):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AULabelError(f"--device {name}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise AULabelError(f"--device must be auto, cpu, cuda or cuda:N, not {name!r}") from None


def _resize(crops: np.ndarray, lms: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = crops.shape[1]
    if s == size:
        return crops, lms
    interp = cv2.INTER_AREA if size < s else cv2.INTER_LINEAR
    return np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in crops]), lms * (size / s)


def _main_outputs(net) -> list[int]:
    """Indices of the model's outputs that are its ``aus`` (FACS numbers), in that order: all of them for most
    models; for a model with left/right sub-AUs (``au_names`` such as OpenGraphAU's AUL1/AUR1), the outputs
    without a side."""
    stems = au_stems(net)
    pos = {au_parts(s): i for i, s in enumerate(stems)}
    return [pos[(int(a), "")] for a in net.aus]


def _run_group(net, store, group, window, stride, size, per_pass, dev) -> list[np.ndarray]:
    """AU probabilities ``(n, A)`` of each clip ``(clip, seq id, frames)`` of ``group`` (windows batched across
    clips)."""
    reads = [store.read(clip, fr.tolist()) for clip, _, fr in group]
    reads = [(*_resize(d["crops"], d["landmarks"], size), d["detected"]) for d in reads]
    main = _main_outputs(net)  # the outputs of ``net.aus``: left/right sub-AUs (OpenGraphAU) are not stored
    out = [np.full((len(fr), len(main)), np.nan, np.float32) for _, _, fr in group]
    units = [(k, w) for k, (_, _, fr) in enumerate(group) for w in clip_windows(len(fr), window, stride)]
    for b in range(0, len(units), per_pass):
        sel = [list(range(start, stop)) + [stop - 1] * (window - (stop - start))  # short clip: its last frame again
               for _, (start, stop, _) in units[b:b + per_pass]]
        ks = [k for k, _ in units[b:b + per_pass]]
        crops = torch.from_numpy(np.stack([reads[k][0][i] for k, i in zip(ks, sel)])).to(dev)
        lms = torch.from_numpy(np.stack([reads[k][1][i] for k, i in zip(ks, sel)]).astype(np.float32)).to(dev)
        p_au = probabilities(net, crops, lms)[0].float().cpu().numpy()[..., main]
        for (k, (start, stop, first)), p in zip(units[b:b + per_pass], p_au):
            out[k][first:stop] = p[first - start:stop - start]
    for arr, (_, _, det) in zip(out, reads):
        arr[~det] = np.nan  # no face found in that frame: not labelled
    return out


def label_store_with_model(store_path, model: torch.nn.Module, batch_size: int = 64, device: str = "auto",
                           replace: bool = False, progress: Callable[[int, int], None] | None = None,
                           stride: int | None = None, model_path: str | Path | None = None) -> dict:
    """Write ``model``'s per-frame AU probabilities for every clip of an expression store (resumable).

    ``model``: a loaded aufer model (``aufer.models.load_model(path)``); ``model_path``: where it was loaded from
    (recorded as the source's path). ``batch_size``: frames per forward pass (clip models: ``batch_size // T`` windows, at
    least 1); clips are committed in groups of about that many frames. ``device``: auto, cpu, cuda, cuda:N.
    ``replace``: relabel a store labelled by another source. ``progress(clips done, clips)`` after each commit.
    ``stride``: clip models, frames between windows (default: the model's ``eval_stride``, else T).

    Returns ``store, source, name, path, aus, clips, clips_labelled`` (this run), ``clips_resumed`` (labelled
    before), ``frames_labelled, clips_without_labels, complete, seconds``.

    Raises:
        AULabelError: a missing or non-expression store, a model without AU outputs, labels of another source
            without ``replace``, a bad device.
    """
    t0 = time.perf_counter()
    store, records = open_expr_store(store_path)
    try:
        net, path = model, (Path(model_path) if model_path is not None else None)
        aus = tuple(int(a) for a in getattr(net, "aus", ()) or ())
        name = (getattr(net, "config", None) or {}).get("name", type(net).__name__)
        if not aus:
            raise AULabelError(f"{path or name} has no AU outputs; label with an AU model (e.g. an imported MDHR "
                               "checkpoint or an aufer joint model)")
        window, size = max(1, frame_window(net)), crop_size(net)
        stride = int(stride or (getattr(net, "default_cfg", None) or {}).get("eval_stride") or window)
        if not 1 <= stride <= window and window > 1:
            raise AULabelError(f"the window stride must be 1 to the model's window {window}, not {stride}")
        identity = {"kind": "model", "config": getattr(net, "config", {}), "weights_sha256": _state_hash(net),
                    "window": window, "stride": stride if window > 1 else 1, "crop_size": size, "flip": False}
        dev = _device(device)
        info = begin_labelling(store, identity, {"source": "model", "name": name, "path": str(path) if path else None,
                                        "aus": list(aus), "values": "probability"}, replace)
        net = net.to(dev).eval()
        todo, resumed, empty = clips_to_label(store, records)
        done, n_frames, group = resumed, 0, []
        for i, item in enumerate(todo):
            group.append(item)
            if sum(len(g[2]) for g in group) < batch_size and i + 1 < len(todo):
                continue
            probs = _run_group(net, store, group, window, stride, size, max(1, int(batch_size) // window), dev)
            put_labels(store, [(sid, fr, p) for (_, sid, fr), p in zip(group, probs)])
            done, n_frames, group = done + len(group), n_frames + sum(len(p) for p in probs), []
            if progress:
                progress(done, len(records))
        info = finish_labelling(store, info, clips_labelled=len(records) - len(empty), clips_without_labels=len(empty),
                       without_examples=empty[:20])
        return {"store": str(store.path), "source": "model", "name": name, "path": str(path) if path else None,
                "aus": aus, "clips": len(records), "clips_labelled": len(todo), "clips_resumed": resumed,
                "frames_labelled": n_frames, "clips_without_labels": empty, "complete": info["complete"],
                "seconds": time.perf_counter() - t0}
    finally:
        store.close()
