"""The demo's data: bundled photos → subject-exclusive identity groups → real and SYNTHETIC clips → two face
stores (AU, expression) with split files, so that the engine trains on them like on any prepared benchmark.

Identity groups:

* AU-train — the 40 Canada people (+ optionally some London people): SYNTHETIC FACS-warp AU clips only;
* FE-train — London people: their REAL neutral and smiling photos plus SYNTHETIC prototype expressions;
* validation — London people, for model selection only; test — London people, reported once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import aufer
from aufer import synth, vocab
from aufer.bundled import bundled_faces
from aufer.faces.align import align_face
from aufer.faces.pipeline import FacePipeline
from aufer.media import read_image
from aufer.protocols import Split
from aufer.readers.records import ClipRecords, FrameRecords
from aufer.store import FaceStore
from aufer.synth import ClipSet

__all__ = ["DemoSettings", "DemoData", "HAPPY", "NEUTRAL", "split_identities", "prepare_data", "StageProgress"]

HAPPY, NEUTRAL = vocab.EMOTIONS_7.index("happiness"), vocab.EMOTIONS_7.index("neutral")
#: the expression store keeps its crops losslessly: a second JPEG compression (quality 95, 4:2:0 chroma) of the
#: 160-pixel crops costs a frozen-feature probe 2-5 points of real happy-vs-neutral accuracy
#: (docs/demo_design.md), and ``aufer predict`` never compresses its crops. The AU store stays JPEG (its 7,000+
#: SYNTHETIC frames).
EXPR_CODEC = "png"


@dataclass
class DemoSettings:
    """The demo's data settings: the recipe's ``extra`` section (validated like every recipe key)."""

    crop_size: int = 112                # aligned crop side (pixels)
    synth_image_size: int = 256         # photos are downscaled to this side before FACS-warp (speed)
    n_test_people: int = 34             # London people held out for test
    n_val_people: int = 14              # London people for validation (model selection)
    au_train_extra_london: int = 0      # London people added to AU-train (besides the 40 Canada people)
    max_au_train_people: int = 0        # use at most this many AU-train people (0 = all)
    clip_frames: int = 16               # frames per synthetic AU clip
    au_clips_per_person: int = 12       # synthetic AU clips per AU-train person
    au_eval_clips_per_person: int = 4   # synthetic AU clips per validation / test person
    fe_synth_per_emotion: int = 2       # synthetic prototype stills per FE-train person and emotion
    fe_synth_real_classes: bool = True  # also train on synthetic neutral / happiness stills (real photos show them)
    fe_synth_exclude: list[str] = field(default_factory=list)  # no synthetic FE-train stills of these emotions
    fe_eval_per_emotion: int = 1        # synthetic prototype stills per validation / test person and emotion
    real_repeat: int = 1                # each real FE-train photo appears this many times per epoch
    workers: int = 2                    # processes for synthetic data generation
    video: str = ""                     # video analysed at the end ("" = the bundled Pexels video)
    fuse_faceapi: bool = False          # fuse the trained model with face-api's expression network (aufer.models.fusion)


def synth_excluded(s: DemoSettings) -> list[int]:
    """Class indices (of :data:`aufer.vocab.EMOTIONS_7`) that get no SYNTHETIC FE-train stills:
    ``fe_synth_exclude``, plus neutral and happiness when ``fe_synth_real_classes`` is false.

    Raises:
        ValueError: an emotion of ``fe_synth_exclude`` that is not one of the 7 classes.
    """
    bad = [e for e in s.fe_synth_exclude if e not in vocab.EMOTIONS_7]
    if bad:
        raise ValueError(f"extra.fe_synth_exclude: {bad} are not emotions; use some of {', '.join(vocab.EMOTIONS_7)}")
    names = set(s.fe_synth_exclude) | (set() if s.fe_synth_real_classes else {"happiness", "neutral"})
    return sorted(vocab.EMOTIONS_7.index(e) for e in names)


def without_excluded(stills: ClipSet, s: DemoSettings) -> ClipSet:
    """The SYNTHETIC stills less those of the classes :func:`synth_excluded` names (``stills`` itself when none)."""
    drop = synth_excluded(s)
    return stills.subset(np.flatnonzero(~np.isin(stills.expr, drop))) if drop else stills


def split_identities(identities_london: list[str], identities_canada: list[str], s: DemoSettings,
                     seed: int = 0) -> dict[str, list[str]]:
    """Subject-exclusive split: ``au_train``, ``fe_train``, ``val``, ``test`` (seeded shuffle of London people).

    Raises:
        ValueError: if the requested group sizes do not fit the London set.
    """
    london = sorted(identities_london)
    np.random.default_rng(seed).shuffle(london)
    n_t, n_v, n_x = s.n_test_people, s.n_val_people, s.au_train_extra_london
    if n_t + n_v + n_x >= len(london):
        raise ValueError(f"test {n_t} + val {n_v} + extra AU-train {n_x} people leave no FE-train people "
                         f"out of {len(london)}")
    au_train = sorted(identities_canada) + london[n_t + n_v:n_t + n_v + n_x]
    if s.max_au_train_people:
        au_train = au_train[: s.max_au_train_people]
    split = {"test": london[:n_t], "val": london[n_t:n_t + n_v], "au_train": au_train, "fe_train": london[n_t + n_v + n_x:]}
    # aufer.protocols.Split refuses an identity in two parts (or twice in one: AU-train vs FE-train)
    Split(train=tuple(split["au_train"] + split["fe_train"]), val=tuple(split["val"]), test=tuple(split["test"]),
          unit="subject")
    return split


class StageProgress:
    """Rich progress display of the demo's data stages."""

    def __init__(self, console):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def task(self, description: str, total: int | None):
        tid = self.progress.add_task(description, total=total)
        return lambda n=1: self.progress.advance(tid, n)

    def log(self, msg: str) -> None:
        self.progress.console.print(msg)


def cache_dir(s: DemoSettings, seed: int, split: dict) -> Path:
    """Where the demo's synthetic data and stores are cached (``$AUFER_CACHE``, default ``~/.cache/aufer``),
    keyed by everything they depend on."""
    keys = ("crop_size", "synth_image_size", "clip_frames", "au_clips_per_person", "au_eval_clips_per_person",
            "fe_synth_per_emotion", "fe_eval_per_emotion", "real_repeat", "fe_synth_real_classes", "fe_synth_exclude")
    settings = {k: v for k, v in asdict(s).items() if k in keys}
    blob = json.dumps({"version": aufer.__version__, "synth": synth.SYNTH_VERSION, "store": 3, "seed": seed,
                       "cfg": settings, "split": split}, sort_keys=True)
    root = Path(os.environ.get("AUFER_CACHE", Path.home() / ".cache" / "aufer"))
    return root / "demo" / hashlib.sha1(blob.encode()).hexdigest()[:16]


def _cached(path: Path, make) -> ClipSet:
    if path.exists():
        return ClipSet.load(path)
    cs = make()
    cs.save(path)
    return cs


def _detect_photos(df: pd.DataFrame, steps: StageProgress) -> dict:
    """Face + landmarks of every bundled photo (full resolution), keyed by path."""
    pipe = FacePipeline(crop_size=112)
    tick = steps.task("detect faces in bundled photos", len(df))
    out = {}
    for p in df["path"]:
        img = read_image(p)
        faces = pipe.detector.detect(img)
        out[p] = (img, faces[0] if faces else None)
        tick()
    return out


def _real_clips(rows: pd.DataFrame, detections: dict, crop_size: int) -> ClipSet:
    """Real photos as T = 1 clips with expression labels (neutral / happiness) and no AU labels."""
    crops, lms, labels, ids = [], [], [], []
    for r in rows.itertuples():
        img, face = detections[r.path]
        if face is None:
            continue
        a = align_face(img, face, crop_size)
        crops.append(a.crop)
        lms.append(a.landmarks.astype(np.float32))
        labels.append(HAPPY if r.expression == "smiling" else NEUTRAL)
        ids.append(r.identity)
    n, na = len(crops), len(synth.SYNTH_AUS)
    return ClipSet(crops=np.stack(crops)[:, None], landmarks=np.stack(lms)[:, None], au=np.full((n, 1, na), -1, np.int8),
                   au_intensity=np.full((n, 1, na), np.nan, np.float32), expr=np.array(labels, np.int64),
                   identity=np.array(ids), source=np.full(n, "real"), detected=np.ones((n, 1), bool),
                   aus=synth.SYNTH_AUS, emotions=vocab.EMOTIONS_7, notes=["real photos (London Set, CC BY 4.0)"])


def _bases(rows: pd.DataFrame, detections: dict, size: int) -> list:
    out = []
    for r in rows.itertuples():
        img, face = detections[r.path]
        if face is None:
            continue
        k = size / img.shape[1]
        small = cv2.resize(img, (size, round(img.shape[0] * k)), interpolation=cv2.INTER_AREA)
        out.append(synth.BaseFace(small, face.landmarks * k, r.identity))
    return out


def _concat_frames(parts: list[FrameRecords]) -> FrameRecords:
    p0 = parts[0]
    inten = None if any(p.intensity is None for p in parts) else np.concatenate([p.intensity for p in parts])
    return FrameRecords("FACS-warp", "", p0.aus, pd.concat([p.table for p in parts], ignore_index=True),
                        np.concatenate([p.occurrence for p in parts]), inten, list(p0.notes))


def _concat_clips(parts: list[ClipRecords]) -> ClipRecords:
    p0 = parts[0]
    return ClipRecords("bundled", "", p0.classes, pd.concat([p.table for p in parts], ignore_index=True), {},
                       list(p0.notes))


@dataclass
class DemoData:
    """The demo's stores, split files and the clip ids of its evaluation subsets."""

    split: dict[str, list[str]]       # identity groups
    au_store: Path                    # SYNTHETIC AU clips of AU-train, validation and test people
    expr_store: Path                  # real photos + SYNTHETIC prototypes of FE-train, validation and test people
    au_split: Path                    # split file (subjects)
    expr_split: Path                  # split file (clips)
    real_val: list[str]               # clip ids of the real validation photos
    real_test: list[str]              # clip ids of the real test photos
    synth_test: list[str]             # clip ids of the synthetic test prototypes


def prepare_data(s: DemoSettings, seed: int, steps: StageProgress, out_dir: Path) -> DemoData:
    """Detect the bundled faces, split identities, build (or load from the cache) the synthetic data and write
    the two stores with their records; split files go into ``out_dir``."""
    df = bundled_faces()
    split = split_identities(list(df[df.set == "london"].identity.unique()), list(df[df.set == "canada"].identity.unique()),
                             s, seed)
    cache = cache_dir(s, seed, split)
    detections = _detect_photos(df, steps)
    neutral = df[df.expression == "neutral"]
    bases = {g: _bases(neutral[neutral.identity.isin(split[g])], detections, s.synth_image_size) for g in split}
    real = {g: _real_clips(df[(df.set == "london") & df.identity.isin(split[g])], detections, s.crop_size)
            for g in ("fe_train", "val", "test")}
    plan = {  # name: (identity group, kind, clips per person, seed stream)
        "au_train": ("au_train", "au", s.au_clips_per_person, 1), "val_au": ("val", "au", s.au_eval_clips_per_person, 2),
        "test_au": ("test", "au", s.au_eval_clips_per_person, 3),
        "fe_train_synth": ("fe_train", "expr", s.fe_synth_per_emotion, 4),
        "val_expr_synth": ("val", "expr", s.fe_eval_per_emotion, 5),
        "test_expr_synth": ("test", "expr", s.fe_eval_per_emotion, 6)}
    parts = {}
    for name, (group, kind, n, stream) in plan.items():
        b, sd = bases[group], seed * 1000 + stream
        path = cache / f"{name}.npz"
        if kind == "au":
            tick = steps.task(f"FACS-warp (synthetic) {name}: {len(b)}×{n} clips", len(b))
            parts[name] = _cached(path, lambda b=b, n=n, sd=sd, tick=tick: synth.make_au_clips(
                b, n, s.clip_frames, s.crop_size, sd, s.workers, tick))
        else:
            tick = steps.task(f"FACS-warp (synthetic) {name}: {len(b)}×7×{n} stills", len(b))
            parts[name] = _cached(path, lambda b=b, n=n, sd=sd, tick=tick: synth.make_expression_clips(
                b, n, vocab.EMOTIONS_7, 1, s.crop_size, sd, s.workers, tick))
        tick(0)
    au_store = FaceStore(cache / "au.sqlite", "a", crop_size=s.crop_size)
    au = _concat_frames([parts[k].to_store(au_store, k, "au") for k in ("au_train", "val_au", "test_au")])
    au_store.save_records(au)
    au_store.close()
    ex_store = FaceStore(cache / "expr.sqlite", "a", crop_size=s.crop_size, codec=EXPR_CODEC)
    fe_synth = without_excluded(parts["fe_train_synth"], s)  # excluded classes are learned from real photos only
    fe_train = ClipSet.concat([real["fe_train"]] * max(1, s.real_repeat) + [fe_synth])
    ex_parts = {"fe_train": fe_train.to_store(ex_store, "fe_train", "expr"),
                "real_val": real["val"].to_store(ex_store, "real_val", "expr"),
                "synth_val": parts["val_expr_synth"].to_store(ex_store, "synth_val", "expr"),
                "real_test": real["test"].to_store(ex_store, "real_test", "expr"),
                "synth_test": parts["test_expr_synth"].to_store(ex_store, "synth_test", "expr")}
    ex_store.save_records(_concat_clips(list(ex_parts.values())))
    ex_store.close()
    clips = {k: list(v.table["clip"]) for k, v in ex_parts.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    au_split, expr_split = out_dir / "split_au.json", out_dir / "split_expr.json"
    au_split.write_text(json.dumps({"train": split["au_train"], "val": split["val"], "test": split["test"]}, indent=1))
    expr_split.write_text(json.dumps({"train": clips["fe_train"], "val": clips["real_val"] + clips["synth_val"],
                                      "test": clips["real_test"] + clips["synth_test"]}, indent=1))
    return DemoData(split, cache / "au.sqlite", cache / "expr.sqlite", au_split, expr_split, clips["real_val"],
                    clips["real_test"], clips["synth_test"])
