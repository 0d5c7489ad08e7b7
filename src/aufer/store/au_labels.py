"""AU pseudo-labels of expression clips (``aufer label-aus``, methods.md §4.2): per-frame AU values written into an
expression face store by any aufer AU model (:func:`aufer.predict.label_aus.label_store_with_model`, which runs the
model and writes through the functions here) or from OpenFace 2.x CSVs (:func:`label_store_from_openface`), read
back per clip; the clip rules are :mod:`aufer.store.clip_rules`.

Layout: table ``au_pseudo(seq INTEGER PRIMARY KEY, frames BLOB, probs BLOB)``, one row per labelled clip (``seq`` =
``sequences.id``; ``frames`` its stored frame numbers, int32; ``probs`` ``(n, A)`` float32: model probabilities or
OpenFace presence 0/1, NaN = not labelled), and ``meta["au_pseudo"]``, JSON: the source (model config, SHA-256 of
its weights and path, or the CSV folder), the AU list of the columns, the occurrence threshold (0.5), dates,
``complete``.

Crash-safe and resumable like the rest of the store: a clip is written whole (each batch of finished clips is one
transaction); a rerun with the same source labels only clips without a row (or whose stored frames changed);
another source is refused unless ``replace``, which deletes every row and records the new source in one
transaction. A frame where the store found no face (``detected = 0``) is not labelled by a model.

OpenFace CSVs (every ``*.csv`` below DIR) are matched to clips by the first rule that applies:
1. ``DIR/<clip id>.csv``, the id as a relative path (FERV39K ``Action/Busy/0001`` → ``DIR/Action/Busy/0001.csv``,
   DFEW ``00001`` → ``DIR/00001.csv``); 2. ``DIR/<clip id, "/" → "_">.csv``; 3. ``<media stem>.csv`` anywhere below
DIR, as OpenFace names its output after the ``-f`` video / ``-fdir`` folder (``clip.mp4`` → ``clip.csv``,
``Clip/jpg_256/00001/`` → ``00001.csv``), when that stem names one clip and one CSV only. OpenFace's frame k
(1-based) is the store's frame k − 1; of several faces the one with most successful rows is used. Clips without a
CSV are reported and get no row (labels −1).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from aufer import __version__
from aufer.readers.records import ClipRecords
from aufer.readers.toolkits import read_openface_au_presence, read_openface_csv
from aufer.store.clip_rules import clip_labels_count, clip_labels_mean
from aufer.store.facestore import FaceStore, StoreError

__all__ = ["AULabelError", "label_store_from_openface", "read_au_pseudo", "pseudo_label_info", "pseudo_columns",
           "pseudo_labels", "match_openface_csvs", "open_expr_store", "begin_labelling", "finish_labelling",
           "put_labels", "clips_to_label", "MODES", "THRESHOLD"]

_KEY = "au_pseudo"
_TABLE = "CREATE TABLE IF NOT EXISTS au_pseudo(seq INTEGER PRIMARY KEY, frames BLOB NOT NULL, probs BLOB NOT NULL)"
THRESHOLD = 0.5


class AULabelError(StoreError):
    """A store, model or CSV folder that cannot be used for AU pseudo-labels; the message says what to do."""


# ------------------------------------------------------------------------------------------------ reading
def _as_store(store) -> FaceStore:
    return store if isinstance(store, FaceStore) else FaceStore(store)


def pseudo_label_info(store) -> dict | None:
    """The ``meta["au_pseudo"]`` record of a store (``source``, ``name``, ``aus``, ``values``, ``threshold``,
    ``complete``, dates ...), read afresh from the file; None when the store holds no AU pseudo-labels."""
    row = _as_store(store)._con().execute("SELECT value FROM meta WHERE key = ?", (_KEY,)).fetchone()
    return None if row is None else json.loads(row[0])


def read_au_pseudo(store, clip_ids) -> dict[str, np.ndarray]:
    """Per clip, the stored AU values ``(T, A)`` float32 aligned with the clip's stored frames (row t = the t-th
    stored frame, ascending; expression clips store frames 0..T−1), columns in ``pseudo_label_info(store)["aus"]``
    order; NaN where not labelled (all NaN for a clip without labels).

    Raises:
        AULabelError: the store holds no AU pseudo-labels.
        KeyError: a clip that is not in the store.
    """
    store = _as_store(store)
    info = pseudo_label_info(store)
    if info is None:
        raise AULabelError(f"{store.path} holds no AU pseudo-labels; make them with `aufer label-aus {store.path} "
                           "--model RUN` (or --openface DIR)")
    a = len(info["aus"])
    con = store._con()
    out = {}
    for clip in clip_ids:
        sid = store.sequence_id(str(clip))
        if sid is None:
            raise KeyError(f"clip {clip!r} is not in {store.path}")
        frames = store.stored_frames(str(clip))
        arr = np.full((len(frames), a), np.nan, np.float32)
        row = con.execute("SELECT frames, probs FROM au_pseudo WHERE seq = ?", (sid,)).fetchone()
        if row is not None:  # aligned by frame number (prepare may have added frames since)
            lf = np.frombuffer(row[0], np.int32)
            lp = np.frombuffer(row[1], np.float32).reshape(len(lf), a)
            at = np.searchsorted(frames, lf)
            ok = at < len(frames)
            ok[ok] = frames[at[ok]] == lf[ok]
            arr[at[ok]] = lp[ok]
        out[str(clip)] = arr
    return out


MODES = ("none", "frames", "clip_mean", "clip_count")


def pseudo_columns(store, aus, mode: str) -> tuple[np.ndarray, float]:
    """For :class:`aufer.datasets.clips.ExprClipDataset`: the column of each AU of ``aus`` in the stored labels
    (−1 = the source lacks it) and the occurrence threshold.

    Raises:
        ValueError: an unknown ``mode``, or no ``aus``.
        AULabelError: no AU pseudo-labels in the store, an interrupted labelling, no AU of ``aus`` labelled.
    """
    if mode not in MODES[1:]:
        raise ValueError(f"au_labels must be one of {', '.join(MODES)}, not {mode!r}")
    if not len(aus):
        raise ValueError("au_labels needs the AU columns (aus=...) of the labels")
    store = _as_store(store)
    info = pseudo_label_info(store)
    hint = f"`aufer label-aus {store.path} --model RUN` (or --openface DIR)"
    if info is None:
        raise AULabelError(f"{store.path} holds no AU pseudo-labels (au_labels {mode!r}); make them with {hint}")
    if not info.get("complete"):
        raise AULabelError(f"the AU pseudo-labelling of {store.path} by {info.get('name')} was interrupted; rerun "
                           f"{hint} to finish it")
    have = {int(a): j for j, a in enumerate(info["aus"])}
    cols = np.array([have.get(int(a), -1) for a in aus], np.int64)
    if not (cols >= 0).any():
        raise AULabelError(f"{store.path}: its AU pseudo-labels ({info.get('name')}) cover AUs {info['aus']}, none "
                           f"of the AU columns {list(aus)}")
    return cols, float(info.get("threshold", THRESHOLD))


def pseudo_labels(store, clip: str, frames, cols: np.ndarray, mode: str, threshold: float = THRESHOLD) -> np.ndarray:
    """``(T, len(cols))`` int64 AU labels of a clip's sampled ``frames`` (positions 0..n−1) by ``mode`` (see
    :class:`aufer.datasets.clips.ExprClipDataset`), −1 unknown and in columns ``cols`` −1."""
    probs = read_au_pseudo(store, [clip])[clip]
    t = len(frames)
    if mode == "frames":
        v = probs[np.asarray(frames, np.int64)]
        lab = np.where(np.isnan(v), -1, v >= threshold).astype(np.int64)
    elif mode == "clip_mean":
        lab = np.broadcast_to(clip_labels_mean(probs), (t, probs.shape[1]))
    elif mode == "clip_count":
        occ = np.where(np.isnan(probs), np.nan, (probs >= threshold).astype(np.float64))
        lab = np.broadcast_to(clip_labels_count(occ), (t, probs.shape[1]))
    else:
        raise ValueError(f"au_labels must be one of {', '.join(MODES[1:])}, not {mode!r}")
    return np.where(cols >= 0, lab[:, np.maximum(cols, 0)], -1).astype(np.int64)


# ------------------------------------------------------------------------------------------------ writing
def open_expr_store(store_path) -> tuple[FaceStore, object]:
    """``(store opened for appending, its clip records)`` of an expression store; AULabelError for a missing or
    non-expression store."""
    path = Path(store_path)
    if not path.is_file():
        raise AULabelError(f"{path}: no such store; make it with `aufer prepare DATASET --root ... --out {path}`")
    with FaceStore(path) as ro:  # checked read-only first: nothing is written into a file that is not a store
        records = ro.load_records()
    if not isinstance(records, ClipRecords):
        raise AULabelError(f"{path} holds frame-labelled AU data ({records.dataset}), not expression clips; AU "
                           "pseudo-labels are for expression stores (DFEW, FERV39K, MAFW, expr_csv)")
    store = FaceStore(path, "a")
    store._con().execute(_TABLE)
    return store, records


def begin_labelling(store: FaceStore, identity: dict, describe: dict, replace: bool) -> dict:
    """Record the labelling source: resume the same source, refuse another one unless ``replace``."""
    old = pseudo_label_info(store)
    if old is not None and old.get("identity") != identity and not replace:
        state = "complete" if old.get("complete") else "interrupted"
        raise AULabelError(f"{store.path} already holds AU pseudo-labels ({state}) from {old.get('name')} "
                           f"({old.get('path')}, {old.get('started', '?')[:19]}); pass --replace to relabel it with "
                           f"{describe['name']} ({describe['path'] or 'a model object'})")
    if old is not None and not replace:
        return old
    info = {"format": "aufer-au-pseudo 1", **describe, "identity": identity, "threshold": THRESHOLD,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "finished": None, "complete": False}
    info["aufer_version"] = __version__
    with store._con() as con:  # one transaction: no rows of the old source survive under the new one
        con.execute("DELETE FROM au_pseudo")
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_KEY, json.dumps(info)))
    return info


def finish_labelling(store: FaceStore, info: dict, **facts) -> dict:
    """Mark the labelling complete (with ``facts`` and the finishing time); returns the stored record."""
    info = {**info, **facts, "complete": True, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with store._con() as con:
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_KEY, json.dumps(info)))
    return info


def put_labels(store: FaceStore, rows: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
    """Write finished clips ``(seq id, frames (n,), probs (n, A))`` in one transaction."""
    if rows:
        with store._con() as con:
            con.executemany("INSERT OR REPLACE INTO au_pseudo VALUES (?, ?, ?)",
                            [(sid, np.asarray(f, np.int32).tobytes(), np.asarray(p, np.float32).tobytes())
                             for sid, f, p in rows])


def clips_to_label(store: FaceStore, records) -> tuple[list[tuple[str, int, np.ndarray]], int, list[str]]:
    """Clips still to label ``(clip, seq id, stored frames)``, how many are already labelled, clips without frames."""
    labelled = {int(s): int(n) // 4 for s, n in store._con().execute("SELECT seq, length(frames) FROM au_pseudo")}
    todo, done, empty = [], 0, []
    for clip in records.table["clip"].astype(str):
        sid = store.sequence_id(clip)
        frames = store.stored_frames(clip) if sid is not None else np.zeros(0, np.int64)
        if not len(frames):
            empty.append(clip)
        elif labelled.get(sid) == len(frames):
            done += 1
        else:
            todo.append((clip, sid, frames))
    return todo, done, empty


# -------------------------------------------------------------------------------------------- OpenFace
def match_openface_csvs(records, folder, csvs=None) -> tuple[dict[str, Path], list[str]]:
    """``({clip: csv path}, clips without a CSV)`` by the naming rule of the module docstring."""
    folder = Path(folder)
    csvs = sorted(folder.rglob("*.csv")) if csvs is None else list(csvs)
    by_rel = {p.relative_to(folder).with_suffix("").as_posix(): p for p in csvs}
    stems: dict[str, list[Path]] = {}
    for p in csvs:
        stems.setdefault(p.stem, []).append(p)
    clips = records.table["clip"].astype(str).tolist()
    media = [Path(str(m)).stem if Path(str(m)).suffix else Path(str(m)).name for m in records.table["media"]]
    media_count: dict[str, int] = {}
    for m in media:
        media_count[m] = media_count.get(m, 0) + 1
    found, missing = {}, []
    for clip, m in zip(clips, media):
        p = by_rel.get(clip) or by_rel.get(clip.replace("/", "_"))
        if p is None and media_count[m] == 1 and len(stems.get(m, [])) == 1:
            p = stems[m][0]
        if p is None:
            missing.append(clip)
        else:
            found[clip] = p
    return found, missing


def _header_aus(path: Path) -> set[int]:
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.readline()
    return {int(m.group(1)) for c in head.split(",") if (m := re.fullmatch(r"AU(\d+)_c", c.strip()))}


def _openface_values(path: Path) -> tuple[np.ndarray, tuple[int, ...], np.ndarray, int]:
    try:
        df = read_openface_csv(path)
        ids = df["face_id"].to_numpy()
        faces, counts = np.unique(ids[ids >= 0], return_counts=True)
        face = int(faces[np.argmax(counts)]) if len(faces) > 1 else None  # the face with most successful rows
        return (*read_openface_au_presence(path, face_id=face), df["frame"].nunique())
    except (ValueError, KeyError) as e:
        raise AULabelError(f"{path}: not a readable OpenFace 2.x CSV ({e})") from None


def label_store_from_openface(store_path, csv_folder, replace: bool = False,
                              progress: Callable[[int, int], None] | None = None, commit_every: int = 64) -> dict:
    """Write the OpenFace 2.x presence columns (``AUxx_c``, 0/1, NaN without a face) of the CSVs below
    ``csv_folder`` into an expression store, matched to clips by the module docstring's naming rule (resumable).

    Returns:
        As :func:`aufer.predict.label_aus.label_store_with_model`, plus ``csvs`` (found), ``frame_mismatch`` (clips whose CSV frame count
        differs from the store's).

    Raises:
        AULabelError: a missing or non-expression store, a folder without CSVs, CSVs without ``AUxx_c`` columns or
            matching no clip, an unreadable CSV, labels of another source without ``replace``.
    """
    t0 = time.perf_counter()
    folder = Path(csv_folder)
    store, records = open_expr_store(store_path)
    try:
        if not folder.is_dir():
            raise AULabelError(f"--openface {folder}: no such folder; give the folder of OpenFace's CSVs")
        csvs = sorted(folder.rglob("*.csv"))
        if not csvs:
            raise AULabelError(f"--openface {folder}: no .csv files in it (OpenFace 2.x FeatureExtraction writes "
                               "<video or folder name>.csv into its -out_dir)")
        found, missing = match_openface_csvs(records, folder, csvs)
        if not found:
            raise AULabelError(f"--openface {folder}: none of its {len(csvs)} CSVs is named after a clip of "
                               f"{records.dataset} (e.g. {records.table['clip'].iloc[0]}.csv); see "
                               "aufer.store.au_labels for the naming rule")
        aus = sorted(set().union(*(_header_aus(p) for p in found.values())))
        if not aus:
            raise AULabelError(f"--openface {folder}: its CSVs have no AUxx_c presence columns (run OpenFace with "
                               "-aus)")
        identity = {"kind": "openface", "folder": str(folder.resolve()), "aus": aus}
        info = begin_labelling(store, identity, {"source": "openface", "name": "OpenFace 2.x", "path": str(folder),
                                        "aus": aus, "values": "presence"}, replace)
        todo, resumed, empty = clips_to_label(store, records)
        col = {a: j for j, a in enumerate(aus)}
        done, rows, mismatch, n_frames, labelled = resumed, [], [], 0, 0
        for clip, sid, fr in todo:
            if clip not in found:
                continue
            frames, have, values, n_csv = _openface_values(found[clip])
            arr = np.full((len(fr), len(aus)), np.nan, np.float32)
            pos = {int(f): i for i, f in enumerate(fr)}
            keep = [(pos[int(f)], i) for i, f in enumerate(frames) if int(f) in pos]
            if n_csv != len(fr) or len(keep) < len(frames):
                mismatch.append(clip)
            if keep:
                r, i = np.array(keep).T
                for j, a in enumerate(have):
                    arr[r, col[a]] = values[i, j]
            rows.append((sid, fr, arr))
            n_frames += len(fr)
            labelled += 1
            if len(rows) >= commit_every:
                put_labels(store, rows)
                done += len(rows)
                rows = []
                if progress:
                    progress(done, len(records))
        put_labels(store, rows)
        done += len(rows)
        if progress and rows:
            progress(done, len(records))
        without = sorted(set(missing) | set(empty))
        info = finish_labelling(store, info, clips_labelled=len(records) - len(without), clips_without_labels=len(without),
                       without_examples=without[:20], frame_mismatch=len(mismatch))
        return {"store": str(store.path), "source": "openface", "name": "OpenFace 2.x", "path": str(folder),
                "aus": tuple(aus), "clips": len(records), "clips_labelled": labelled, "clips_resumed": resumed,
                "frames_labelled": n_frames, "clips_without_labels": without, "csvs": len(csvs),
                "frame_mismatch": mismatch, "complete": info["complete"], "seconds": time.perf_counter() - t0}
    finally:
        store.close()
