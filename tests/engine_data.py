"""Small face stores for the engine tests, written without MediaPipe: learnable SYNTHETIC crops (an AU shows
as a bright region, an expression as a brightness level) under real benchmark subject names, so that the
benchmark protocols (BP4D folds, DFEW folds) apply to them. Labels and pixels are synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aufer import vocab
from aufer.readers.records import ClipRecords
from aufer.store import FaceStore
from aufer.synth import ClipSet

#: one BP4D subject of each of the three partitions (protocols.json), so every fold has test subjects
BP4D_SUBJECTS = ("F001", "M007", "M011", "M010", "F007", "F015")


def _landmarks(n, t, s, rng):
    base = rng.uniform(4, s - 4, (478, 3)).astype(np.float32)
    return np.broadcast_to(base, (n, t, 478, 3)).copy()


def au_store(path: str | Path, subjects=BP4D_SUBJECTS, seqs: int = 2, frames: int = 16, size: int = 32,
             aus=(1, 12), seed: int = 0, all_known: bool = True) -> Path:
    """An AU store of dataset "BP4D": ``seqs`` sequences of ``frames`` frames per subject; AU1 lights the
    top half, AU12 the bottom half."""
    rng = np.random.default_rng(seed)
    n = len(subjects) * seqs
    au = rng.integers(0, 2, (n, frames, len(aus))).astype(np.int8)
    if not all_known:
        au[:, 0, 0] = -1
    crops = np.full((n, frames, size, size, 3), 60, np.uint8)
    crops += rng.integers(0, 20, crops.shape, dtype=np.uint8)
    crops[au[..., 0] == 1, : size // 2] += 120
    crops[au[..., 1] == 1, size // 2:] += 120
    identity = np.repeat(np.array(subjects), seqs)
    cs = ClipSet(crops, _landmarks(n, frames, size, rng), au, au.astype(np.float32), np.full(n, -1, np.int64),
                 identity, np.full(n, "synthetic"), np.ones((n, frames), bool), tuple(aus), vocab.EMOTIONS_7)
    store = FaceStore(path, "a", crop_size=size)
    records = cs.to_store(store, "seq", "au", dataset="BP4D")
    store.save_records(records)
    store.close()
    return Path(path)


def expr_store(path: str | Path, n_clips: int = 30, frames: int = 4, size: int = 32, n_folds: int = 5,
               seed: int = 1, classes=("happiness", "sadness", "neutral")) -> Path:
    """An expression store of dataset "DFEW" with ``n_folds`` official-style folds (clip j tests in fold
    j mod n_folds + 1); the class sets the brightness."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_clips) % len(classes)
    crops = np.empty((n_clips, frames, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        crops[i] = 40 + 70 * y + rng.integers(0, 20, (frames, size, size, 3))
    cs = ClipSet(crops, _landmarks(n_clips, frames, size, rng), np.full((n_clips, frames, 2), -1, np.int8),
                 np.full((n_clips, frames, 2), np.nan, np.float32), labels.astype(np.int64),
                 np.array([f"c{i:03d}" for i in range(n_clips)]), np.full(n_clips, "synthetic"),
                 np.ones((n_clips, frames), bool), (1, 12), tuple(classes))
    store = FaceStore(path, "a", crop_size=size)
    rec = cs.to_store(store, "clip", "expr", dataset="DFEW")
    clips = list(rec.table["clip"])
    folds = {str(k): {"train": [c for j, c in enumerate(clips) if j % n_folds + 1 != k],
                      "test": [c for j, c in enumerate(clips) if j % n_folds + 1 == k]} for k in range(1, n_folds + 1)}
    store.save_records(ClipRecords("DFEW", "", tuple(classes), rec.table, folds, []))
    store.close()
    return Path(path)


def tiny_recipe(au: Path | None = None, expr: Path | None = None, **over) -> dict:
    """A recipe mapping for a tiny CPU run (model ``aufer_tiny_image`` at 32 px)."""
    r = {"name": "tiny", "seed": 0,
         "model": {"name": "aufer_tiny_image", "args": {"input_size": 32, "width": 4, "dim": 16, "dropout": 0.0}},
         "optim": {"lr": 3e-3, "weight_decay": 0.0}, "schedule": {"name": "constant"},
         "train": {"epochs": 2, "log_every": 1}, "select": {"metric": ["au_f1_mean", "uar"]}}
    data = {}
    if au is not None:
        data["au"] = {"store": str(au), "clip_len": 4, "batch_size": 4, "val_subjects": 1,
                      "transform": {"rotation": 0, "scale": 0, "shift": 0, "hflip": 0.0}}
    if expr is not None:
        data["expr"] = {"store": str(expr), "num_segments": 2, "batch_size": 4, "val_fraction": 0.2,
                        "transform": {"rotation": 0, "scale": 0, "shift": 0, "hflip": 0.0}}
    r["data"] = data
    for k, v in over.items():
        r.setdefault(k, {}).update(v) if isinstance(v, dict) else r.__setitem__(k, v)
    return r


def crash_copy(full: Path, part: Path) -> str:
    """Copy a finished run ``full`` to ``part`` as it was after a crash in mid-epoch: only the first mid-epoch
    resume state is kept (LATEST points at it) and the end-of-run files are removed (best.* stay: they are written
    at the best epoch so far). Returns the kept state's name."""
    import json
    import shutil

    meta = {p.name: json.loads((p / "meta.json").read_text()) for p in (full / "state").glob("step-*")}
    mid = [n for n, m in meta.items() if m["step"] != 0]
    assert mid, f"no mid-epoch state among {meta}"
    shutil.copytree(full, part)
    for p in (part / "state").glob("step-*"):
        if p.name not in mid:
            shutil.rmtree(p)
    (part / "state" / "LATEST").write_text(mid[0] + "\n")
    for name in ("metrics.json", "last.safetensors", "last.json"):
        (part / name).unlink()
    return mid[0]
