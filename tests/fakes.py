"""Tiny, format-faithful fake copies of the dataset layouts read by :mod:`aufer.readers`.

Every image shows a REAL bundled face photo (London/Canada sets, ``aufer.bundled``) downscaled and
pasted onto a plain canvas, so that a face detector finds it; the smiling photo of the same person is used where
the fake label says "smile" (AU12 active, or happiness). Labels are deterministic patterns, not real annotations.
Builders are deterministic for their arguments, write only under ``root`` and return a dict of what they wrote
(paths and the expected reader output), so that tests can compare.

Use from a test: ``from fakes import make_fake_bp4d`` (``tests/`` is on ``sys.path`` via pytest's rootdir
conftest).
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from aufer import vocab

__all__ = [
    "face_frame", "write_image", "write_video", "make_fake_bp4d", "make_fake_disfa", "make_fake_dfew",
    "make_fake_ferv39k", "make_fake_mafw", "make_fake_au_csv", "make_fake_expr_csv", "FERV39K_NAMES",
]

#: FERV39K's own label spellings (its split files), in vocab.emotions(7) order
FERV39K_NAMES = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")


# ----------------------------------------------------------------------------------------- images, videos
@lru_cache(maxsize=1)
def _people() -> tuple[tuple[str, str], ...]:
    """``(neutral path, smiling path)`` of the London people with both photos (sorted by id)."""
    from aufer.bundled import bundled_faces

    df = bundled_faces().query("set == 'london'")
    neutral = dict(zip(df.query("expression == 'neutral'").face_id, df.query("expression == 'neutral'").path))
    smiling = dict(zip(df.query("expression == 'smiling'").face_id, df.query("expression == 'smiling'").path))
    return tuple((neutral[k], smiling[k]) for k in sorted(neutral) if k in smiling)


@lru_cache(maxsize=256)
def _photo(identity: int, smiling: bool, width: int) -> np.ndarray:
    people = _people()
    path = people[identity % len(people)][int(smiling)]
    img = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.resize(img, (width, width), interpolation=cv2.INTER_AREA)


def face_frame(identity: int = 0, smiling: bool = False, size: tuple[int, int] = (320, 240), shift: int = 0,
               fill: float = 2 / 3) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 RGB frame: a real bundled face photo (person ``identity``; smiling or neutral photo)
    scaled to ``fill`` × the canvas' shorter side and pasted near the centre of a ``size = (W, H)`` grey
    canvas, moved ``shift`` pixels to the right (small per-frame motion)."""
    w, h = size
    side = max(16, int(round(min(w, h) * fill)))
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = (96 + 8 * (identity % 5), 104, 112)
    face = _photo(identity, smiling, side)
    x0 = int(np.clip((w - side) // 2 + shift, 0, w - side))
    y0 = (h - side) // 2
    canvas[y0:y0 + side, x0:x0 + side] = face
    return canvas


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB image (JPEG/PNG by extension), creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 25, codec: str | None = None) -> Path:
    """Write RGB frames as a video with PyAV (yuv420p; ``libx264`` for .mp4/.mkv, else ``mpeg4``)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or ("libx264" if path.suffix.lower() in (".mp4", ".mkv", ".mov") else "mpeg4")
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, keys)).encode()))


def _gapped_frames(n: int, gap: bool, start: int = 1) -> list[int]:
    """``n`` frame numbers from ``start``; with ``gap`` the second half starts 2 frames later (e.g. 1–3, 6–8)."""
    half = (n + 1) // 2
    return [start + i + (2 if gap and i >= half else 0) for i in range(n)]


def _fold_parts(keys: Sequence[str], n_folds: int) -> dict[str, dict[str, list[str]]]:
    """Official-style folds: key j is a test clip of fold (j mod n_folds) + 1 and a training clip elsewhere."""
    return {str(k + 1): {"train": [c for j, c in enumerate(keys) if j % n_folds != k],
                         "test": [c for j, c in enumerate(keys) if j % n_folds == k]} for k in range(n_folds)}


# ------------------------------------------------------------------------------------------------ BP4D
def make_fake_bp4d(root: str | Path, subjects: Sequence[str] = ("F001", "M001"), tasks: Sequence[str] = ("T1", "T2"),
                   n_frames: int = 6, gap: bool = True, frame_dir: str = "", pad: int = 4,
                   size: tuple[int, int] = (320, 240), unknown: bool = True, ext: str = ".jpg") -> dict:
    """A fake BP4D: ``{root}/AUCoding/AU_OCC/{subject}_{task}.csv`` (header ``0,1,...,99``: frame number, then one
    column per AU number; BP4D's 12 AUs 0/1 with a few 9s when ``unknown``, other AUs 9) and frames
    ``{root}/{frame_dir}/{subject}/{task}/{frame:0{pad}d}.jpg`` for every frame from 1 to the last labelled one
    (so frames in the gap exist but are not labelled, as in the real data).

    Returns: ``root``, ``label_dir``, ``frames_root``, ``subjects``, ``tasks``, ``frames`` (labelled frame
    numbers of every sequence), ``n_rows``, ``occurrence`` ``{"F001/T1": (n_frames, 12) int8 with −1 for 9}``,
    ``csv`` ``{"F001/T1": path}``, ``images`` ``{"F001/T1": {frame: path}}``.
    """
    root = Path(root)
    aus = vocab.dataset_aus("BP4D")
    label_dir = root / "AUCoding" / "AU_OCC"
    label_dir.mkdir(parents=True, exist_ok=True)
    frames_root = root / frame_dir if frame_dir else root
    frames = _gapped_frames(n_frames, gap)
    out = {"root": root, "label_dir": label_dir, "frames_root": frames_root, "subjects": tuple(subjects),
           "tasks": tuple(tasks), "frames": frames, "n_rows": len(subjects) * len(tasks) * n_frames,
           "occurrence": {}, "csv": {}, "images": {}}
    i12 = aus.index(12)
    for si, subject in enumerate(subjects):
        for task in tasks:
            seq = f"{subject}/{task}"
            rng = _rng("bp4d", seq)
            raw = rng.integers(0, 2, size=(n_frames, len(aus)))
            raw[:, i12] = (np.arange(n_frames) // 2) % 2  # smile on, off in pairs of frames
            if unknown:
                raw[0, (si + 1) % len(aus)] = 9
                raw[-1, (si + 5) % len(aus)] = 9
            out["occurrence"][seq] = np.where(raw == 9, -1, raw).astype(np.int8)
            path = label_dir / f"{subject}_{task}.csv"
            lines = [",".join(str(c) for c in range(100))]
            for f, row in zip(frames, raw):
                values = {a: v for a, v in zip(aus, row)}
                lines.append(",".join([str(f)] + [str(values.get(c, 9)) for c in range(1, 100)]))
            path.write_text("\n".join(lines) + "\n")
            out["csv"][seq] = path
            smile = dict(zip(frames, raw[:, i12] == 1))
            imgs = {}
            for f in range(1, frames[-1] + 1):
                img = face_frame(si, bool(smile.get(f, False)), size, shift=f % 3)
                imgs[f] = write_image(frames_root / subject / task / f"{f:0{pad}d}{ext}", img)
            out["images"][seq] = {f: imgs[f] for f in frames}
    return out


# ----------------------------------------------------------------------------------------------- DISFA
def make_fake_disfa(root: str | Path, subjects: Sequence[str] = ("SN001", "SN002"), n_frames: int = 12,
                    size: tuple[int, int] = (320, 240), codec: str = "mpeg4") -> dict:
    """A fake DISFA: left-camera videos ``{root}/Videos_LeftCamera/LeftVideo{SN}_comp.avi`` (``n_frames``
    frames, PyAV ``codec``, yuv420p) and per-AU label files ``{root}/ActionUnit_Labels/{SN}/{SN}_au{k}.txt``
    (lines ``frame,intensity``, frame 1..n_frames, intensity 0–5, every value 0–5 appears for AU1) for DISFA's
    8 AUs. The person smiles where AU12 intensity ≥ 2.

    Returns: ``root``, ``subjects``, ``n_frames``, ``n_rows``, ``videos`` ``{SN: path}``, ``label_files``
    ``{SN: {au: path}}``, ``intensity`` ``{SN: (n_frames, 8) int}`` in vocab.dataset_aus("DISFA") order.
    """
    root = Path(root)
    aus = vocab.dataset_aus("DISFA")
    out = {"root": root, "subjects": tuple(subjects), "n_frames": n_frames, "n_rows": len(subjects) * n_frames,
           "videos": {}, "label_files": {}, "intensity": {}}
    for si, sn in enumerate(subjects):
        values = _rng("disfa", sn).integers(0, 6, size=(n_frames, len(aus)))
        values[:, 0] = np.arange(n_frames) % 6
        out["intensity"][sn] = values
        out["label_files"][sn] = {}
        folder = root / "ActionUnit_Labels" / sn
        folder.mkdir(parents=True, exist_ok=True)
        for j, au in enumerate(aus):
            path = folder / f"{sn}_au{au}.txt"
            path.write_text("".join(f"{f},{v}\n" for f, v in enumerate(values[:, j], 1)))
            out["label_files"][sn][au] = path
        smile = values[:, aus.index(12)] >= 2
        frames = [face_frame(si, bool(smile[i]), size, shift=i % 3) for i in range(n_frames)]
        out["videos"][sn] = write_video(root / "Videos_LeftCamera" / f"LeftVideo{sn}_comp.avi", frames, codec=codec)
    return out


# ------------------------------------------------------------------------------------------------ DFEW
def make_fake_dfew(root: str | Path, n_clips: int = 14, frames: Sequence[str] = ("clip_224x224_16f",),
                   n_frames: int = 4, size: tuple[int, int] = (224, 224), n_folds: int | None = None) -> dict:
    """A fake DFEW: split CSVs ``{root}/EmoLabel_DataSplit/{train,test}(single-labeled)/set_{k}.csv`` (header
    ``video_name,label``, label 1–7) for k = 1..5 (protocols.json folds), clip numbers 1, 3, 5, ... (every
    other number, as the single-labelled subset skips clips), clip j labelled ``j mod 7 + 1`` and a test clip of
    fold ``j mod 5 + 1``; frame folders ``{root}/Clip/{frame set}/{clip:05d}/{i:05d}.jpg`` (``n_frames`` face
    crops filling the image) for each frame set in ``frames``.

    Returns: ``root``, ``clips`` (keys ``"00001"``...), ``labels`` ``{clip: 0-based label}``, ``folds`` (as
    ClipRecords.folds), ``csv`` ``{(fold, "train"|"test"): path}``, ``folders`` ``{(frame set, clip): path}``.
    """
    root = Path(root)
    n_folds = n_folds or int(vocab.protocol("DFEW")["folds"])
    n_classes = len(vocab.emotions(7))
    numbers = [1 + 2 * j for j in range(n_clips)]
    clips = [f"{n:05d}" for n in numbers]
    labels = {c: j % n_classes for j, c in enumerate(clips)}
    folds = _fold_parts(clips, n_folds)
    out = {"root": root, "clips": clips, "labels": labels, "folds": folds, "csv": {}, "folders": {}}
    for fold, parts in folds.items():
        for part, members in parts.items():
            path = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / f"set_{fold}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("video_name,label\n" + "".join(f"{int(c)},{labels[c] + 1}\n" for c in members))
            out["csv"][(fold, part)] = path
    for frame_set in frames:
        for j, c in enumerate(clips):
            folder = root / "Clip" / frame_set / c
            for i in range(n_frames):
                write_image(folder / f"{i + 1:05d}.jpg", face_frame(j, labels[c] == 0, size, shift=i % 3, fill=1.0))
            out["folders"][(frame_set, c)] = folder
    return out


# --------------------------------------------------------------------------------------------- FERV39K
def make_fake_ferv39k(root: str | Path, n_train: int = 7, n_test: int = 4, n_frames: int = 3,
                      size: tuple[int, int] = (224, 224)) -> dict:
    """A fake FERV39K: ``{root}/4_setups/All_scenes/train_All.csv`` and ``test_All.csv`` (no header, lines
    ``<scene>/<sub-scene>/<nnnn> <Label>`` with FERV39K's spellings Happy, Sad, ...), clip j labelled
    ``j mod 7``; frame folders ``{root}/2_ClipsforFaceCrop/<clip path>/{i:04d}.jpg``.

    Returns: ``root``, ``train`` / ``test`` (clip paths), ``labels`` ``{clip: 0-based label}``, ``csv``
    ``{"train"|"test": path}``, ``folders`` ``{clip: path}``.
    """
    root = Path(root)
    scenes = ("Action/Busy", "Daily/Eating", "Crime/Argue")
    clips = [f"{scenes[j % len(scenes)]}/{j + 1:04d}" for j in range(n_train + n_test)]
    labels = {c: j % len(FERV39K_NAMES) for j, c in enumerate(clips)}
    out = {"root": root, "train": clips[:n_train], "test": clips[n_train:], "labels": labels, "csv": {}, "folders": {}}
    split_dir = root / "4_setups" / "All_scenes"
    split_dir.mkdir(parents=True, exist_ok=True)
    for part in ("train", "test"):
        path = split_dir / f"{part}_All.csv"
        path.write_text("".join(f"{c} {FERV39K_NAMES[labels[c]]}\n" for c in out[part]))
        out["csv"][part] = path
    for j, c in enumerate(clips):
        folder = root / "2_ClipsforFaceCrop" / c
        for i in range(n_frames):
            write_image(folder / f"{i + 1:04d}.jpg", face_frame(j, labels[c] == 0, size, shift=i % 3, fill=1.0))
        out["folders"][c] = folder
    return out


# ------------------------------------------------------------------------------------------------ MAFW
def make_fake_mafw(root: str | Path, n_clips: int = 12, media: str = "mixed", n_frames: int = 4,
                   size: tuple[int, int] = (320, 240), split_dir: str = "Train & Test Set",
                   n_folds: int | None = None) -> dict:
    """A fake MAFW: split files ``{root}/{split_dir}/single/no_caption/set_{k}/{train,test}.txt`` for k = 1..5
    (protocols.json folds), lines ``{clip:05d}.mp4 <class name>``, clip j labelled ``j mod 11`` in
    vocab.emotions(11); media ``{root}/data/frames/{stem}/{i:04d}.jpg`` (``media="frames"``), videos
    ``{root}/data/clips/{stem}.mp4`` (``"clips"``), or frames for even and videos for odd clips (``"mixed"``).

    Returns: ``root``, ``clips`` (stems), ``labels`` ``{stem: 0-based}``, ``folds``, ``split_files``
    ``{(fold, "train"|"test"): path}``, ``media`` ``{stem: path}``.
    """
    root = Path(root)
    n_folds = n_folds or int(vocab.protocol("MAFW")["folds"])
    classes = vocab.emotions(11)
    clips = [f"{5 * j + 1:05d}" for j in range(n_clips)]
    labels = {c: j % len(classes) for j, c in enumerate(clips)}
    folds = _fold_parts(clips, n_folds)
    out = {"root": root, "clips": clips, "labels": labels, "folds": folds, "split_files": {}, "media": {}}
    for fold, parts in folds.items():
        folder = root / split_dir / "single" / "no_caption" / f"set_{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        for part, members in parts.items():
            path = folder / f"{part}.txt"
            path.write_text("".join(f"{c}.mp4 {classes[labels[c]]}\n" for c in members))
            out["split_files"][(fold, part)] = path
    for j, c in enumerate(clips):
        images = [face_frame(j, labels[c] == 0, size, shift=i % 3) for i in range(n_frames)]
        as_frames = media == "frames" or (media == "mixed" and j % 2 == 0)
        if as_frames:
            for i, img in enumerate(images):
                write_image(root / "data" / "frames" / c / f"{i + 1:04d}.jpg", img)
            out["media"][c] = root / "data" / "frames" / c
        else:
            out["media"][c] = write_video(root / "data" / "clips" / f"{c}.mp4", images)
    return out


# --------------------------------------------------------------------------------------------- generic
def make_fake_au_csv(root: str | Path, subjects: Sequence[str] = ("P01", "P02"), n_images: int = 4,
                     n_video_frames: int = 8, gap: bool = True, size: tuple[int, int] = (320, 240),
                     name: str = "labels.csv") -> dict:
    """A fake generic AU CSV (:func:`aufer.readers.custom.read_au_csv`): images
    ``{root}/media/{subject}/img_{k:02d}.jpg`` (frame column left empty: frame = position in the folder), one
    video ``{root}/media/talk.mp4`` of ``n_video_frames`` frames of which frames 0–2 and 5–7 (with ``gap``) are
    labelled, and ``{root}/{name}`` with columns ``media,frame,subject,AU1,AU02,AU12,AU12_r`` (AU1 holds the
    unknown codes empty, -1 and 9; AU12_r an intensity, empty = NaN). Media paths are relative to ``root``.

    Returns: ``root``, ``csv``, ``aus`` (1, 2, 12), ``n_rows``, ``rows``: dicts ``sequence, frame, media,
    media_index, subject, occurrence (3,), intensity`` in the reader's sorted order.
    """
    root = Path(root)
    rows = []
    for si, subject in enumerate(subjects):
        for k in range(n_images):
            rel = f"media/{subject}/img_{k:02d}.jpg"
            smile = k % 2 == 1
            write_image(root / rel, face_frame(si, smile, size, shift=k % 3))
            occ = [(k + si) % 2, 1 - (k % 2), int(smile)]
            if k == 1:
                occ[0] = -1
            rows.append({"media": rel, "frame": "", "subject": subject, "sequence": subject, "frame_no": k,
                         "media_index": -1, "occ": occ, "int": 3.0 if smile else 0.0})
    video_frames = [face_frame(len(subjects), i >= n_video_frames // 2, size, shift=i % 3)
                    for i in range(n_video_frames)]
    write_video(root / "media" / "talk.mp4", video_frames)
    labelled = [f - 1 for f in _gapped_frames(n_video_frames - (2 if gap else 0), gap)]
    for f in labelled:
        smile = f >= n_video_frames // 2
        rows.append({"media": "media/talk.mp4", "frame": str(f), "subject": "talk", "sequence": "media/talk.mp4",
                     "frame_no": f, "media_index": f, "occ": [f % 2, 0, int(smile)], "int": np.nan if f == 0 else
                     (2.5 if smile else 0.5)})
    unknown_codes = ["", "-1", "9"]
    lines = ["media,frame,subject,AU1,AU02,AU12,AU12_r"]
    for i, r in enumerate(rows):
        cells = [str(v) if v != -1 else unknown_codes[i % 3] for v in r["occ"]]
        inten = "" if np.isnan(r["int"]) else f"{r['int']:g}"
        lines.append(",".join([r["media"], r["frame"], r["subject"], *cells, inten]))
    csv_path = root / name
    csv_path.write_text("\n".join(lines) + "\n")
    expected = sorted(rows, key=lambda r: (r["sequence"], r["frame_no"]))
    return {"root": root, "csv": csv_path, "aus": (1, 2, 12), "n_rows": len(rows),
            "rows": [{"sequence": r["sequence"], "frame": r["frame_no"], "media": str(root / r["media"]),
                      "media_index": r["media_index"], "subject": r["subject"], "occurrence": r["occ"],
                      "intensity": r["int"]} for r in expected]}


def make_fake_expr_csv(root: str | Path, n_clips: int = 6, media: str = "folders", labels: str = "names",
                       n_folds: int = 2, n_frames: int = 3, size: tuple[int, int] = (224, 224),
                       name: str = "clips.csv") -> dict:
    """A fake generic expression CSV (:func:`aufer.readers.custom.read_expr_csv`): clips
    ``{root}/clips/c{j:02d}/`` (frame folders, ``media="folders"``) or ``{root}/clips/c{j:02d}.mp4`` (``"videos"``),
    clip j labelled ``j mod 7`` of vocab.emotions(7), written as names with other spellings (``happy``,
    ``Sadness``...; ``labels="names"``) or 0-based indices (``"indices"``); ``{root}/{name}`` with columns
    ``media,label,subject,fold,split``, one row per clip and fold (``n_folds`` folds, clip j tested in fold
    ``j mod n_folds + 1``); subject ``s{j mod 3}``.

    Returns: ``root``, ``csv``, ``clips`` (keys ``"clips/c00"``...), ``labels`` ``{clip: index}``, ``subjects``,
    ``folds``, ``n_rows`` (clips).
    """
    root = Path(root)
    classes = vocab.emotions(7)
    clips, lab, subjects, media_of = [], {}, {}, {}
    for j in range(n_clips):
        key = f"clips/c{j:02d}"
        images = [face_frame(j, j % 7 == 0, size, shift=i % 3, fill=1.0) for i in range(n_frames)]
        if media == "videos":
            write_video(root / f"{key}.mp4", images)
            media_of[key] = f"{key}.mp4"
        else:
            for i, img in enumerate(images):
                write_image(root / key / f"{i:03d}.jpg", img)
            media_of[key] = key
        clips.append(key)
        lab[key] = j % len(classes)
        subjects[key] = f"s{j % 3}"
    spellings = {"happiness": "happy", "sadness": "Sadness", "anger": "angry"}
    folds = _fold_parts(clips, n_folds)
    lines = ["media,label,subject,fold,split"]
    for fold, parts in folds.items():
        for part, members in parts.items():
            for c in members:
                text = str(lab[c]) if labels == "indices" else spellings.get(classes[lab[c]], classes[lab[c]])
                lines.append(f"{media_of[c]},{text},{subjects[c]},{fold},{part}")
    csv_path = root / name
    csv_path.write_text("\n".join(lines) + "\n")
    return {"root": root, "csv": csv_path, "clips": clips, "labels": lab, "subjects": subjects, "folds": folds,
            "n_rows": n_clips}
