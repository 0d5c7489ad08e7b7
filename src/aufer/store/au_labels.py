"""AU pseudo-labels of expression clips (``aufer label-aus``, methods.md §4.2): per-frame AU values written into an
expression face store by any aufer AU model or from OpenFace 2.x CSVs, read back per clip; the clip rules are
:mod:`aufer.au_pseudo`.

Layout: table ``au_pseudo(seq INTEGER PRIMARY KEY, frames BLOB, probs BLOB)``, one row per labelled clip (``seq`` =
``sequences.id``; ``frames`` its stored frame numbers, int32; ``probs`` ``(n, A)`` float32: model probabilities or
OpenFace presence 0/1, NaN = not labelled), and ``meta["au_pseudo"]``, JSON: the source (model config, SHA-256 of
its weights and path, or the CSV folder), the AU list of the columns, the occurrence threshold (0.5), dates,
``complete``.

Crash-safe and resumable like the rest of the store: a clip is written whole (each batch of finished clips is one
transaction); a rerun with the same source labels only clips without a row (or whose stored frames changed);
another source is refused unless ``replace``, which deletes every row and records the new source in one
transaction. A frame where the store found no face (``detected = 0``) is not labelled by a model.

A clip model (:func:`aufer.models.contract.frame_window` T > 1, e.g. MDHR) runs over T-frame windows by the rule of
:mod:`aufer.predict_windows` (:func:`clip_windows`), so each frame gets one prediction, as in ``aufer predict``;
crops are resized from the store's size to :func:`aufer.models.contract.crop_size`; no flip averaging.

OpenFace CSVs (every ``*.csv`` below DIR) are matched to clips by the first rule that applies:
1. ``DIR/<clip id>.csv``, the id as a relative path (FERV39K ``Action/Busy/0001`` → ``DIR/Action/Busy/0001.csv``,
   DFEW ``00001`` → ``DIR/00001.csv``); 2. ``DIR/<clip id, "/" → "_">.csv``; 3. ``<media stem>.csv`` anywhere below
DIR, as OpenFace names its output after the ``-f`` video / ``-fdir`` folder (``clip.mp4`` → ``clip.csv``,
``Clip/jpg_256/00001/`` → ``00001.csv``), when that stem names one clip and one CSV only. OpenFace's frame k
(1-based) is the store's frame k − 1; of several faces the one with most successful rows is used. Clips without a
CSV are reported and get no row (labels −1).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from aufer.store.facestore import FaceStore, StoreError

__all__ = ["AULabelError", "label_store_with_model", "label_store_from_openface", "read_au_pseudo",
           "pseudo_label_info", "pseudo_columns", "pseudo_labels", "match_openface_csvs", "clip_windows", "MODES"]

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
    from aufer.au_pseudo import clip_labels_count, clip_labels_mean  # noqa: PLC0415

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
def _open_expr_store(store_path) -> tuple[FaceStore, object]:
    from aufer.readers.records import ClipRecords  # noqa: PLC0415

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


def _begin(store: FaceStore, identity: dict, describe: dict, replace: bool) -> dict:
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
    from aufer import __version__  # noqa: PLC0415

    info["aufer_version"] = __version__
    with store._con() as con:  # one transaction: no rows of the old source survive under the new one
        con.execute("DELETE FROM au_pseudo")
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_KEY, json.dumps(info)))
    return info


def _finish(store: FaceStore, info: dict, **facts) -> dict:
    info = {**info, **facts, "complete": True, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with store._con() as con:
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_KEY, json.dumps(info)))
    return info


def _put(store: FaceStore, rows: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
    """Write finished clips ``(seq id, frames (n,), probs (n, A))`` in one transaction."""
    if rows:
        with store._con() as con:
            con.executemany("INSERT OR REPLACE INTO au_pseudo VALUES (?, ?, ?)",
                            [(sid, np.asarray(f, np.int32).tobytes(), np.asarray(p, np.float32).tobytes())
                             for sid, f, p in rows])


def _todo(store: FaceStore, records) -> tuple[list[tuple[str, int, np.ndarray]], int, list[str]]:
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


# ---------------------------------------------------------------------------------------------- a model
def clip_windows(n: int, window: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """The forward passes over a clip of ``n`` frames: ``(start, stop, first)`` = run frames ``[start, stop)``
    (padded to ``window`` with the last frame when shorter) and keep the outputs of frames ``[first, stop)``.
    The rule of :class:`aufer.predict_windows.WindowScheduler` for one unbroken face track; ``window`` 1 = one
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
    import torch  # noqa: PLC0415

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _device(name: str):
    import torch  # noqa: PLC0415

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AULabelError(f"--device {name}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise AULabelError(f"--device must be auto, cpu, cuda or cuda:N, not {name!r}") from None


def _resolve_model(model):
    """``(module, path or None)``: a loaded model, or a checkpoint / model folder / run folder (best.safetensors)."""
    if not isinstance(model, (str, Path)):
        return model, None
    from aufer.models.io import load_model  # noqa: PLC0415

    p = Path(model)
    if p.is_dir() and not (p / "model.safetensors").is_file() and (p / "best.safetensors").is_file():
        p = p / "best.safetensors"  # a run folder of `aufer train`
    try:
        return load_model(p), p
    except FileNotFoundError as e:
        raise AULabelError(f"--model {model}: {e}") from None


def _resize(crops: np.ndarray, lms: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = crops.shape[1]
    if s == size:
        return crops, lms
    import cv2  # noqa: PLC0415

    interp = cv2.INTER_AREA if size < s else cv2.INTER_LINEAR
    return np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in crops]), lms * (size / s)


def _run_group(net, store, group, window, stride, size, per_pass, dev) -> list[np.ndarray]:
    """AU probabilities ``(n, A)`` of each clip ``(clip, seq id, frames)`` of ``group`` (windows batched across
    clips)."""
    import torch  # noqa: PLC0415

    from aufer.models.contract import probabilities  # noqa: PLC0415

    reads = [store.read(clip, fr.tolist()) for clip, _, fr in group]
    reads = [(*_resize(d["crops"], d["landmarks"], size), d["detected"]) for d in reads]
    out = [np.full((len(fr), len(net.aus)), np.nan, np.float32) for _, _, fr in group]
    units = [(k, w) for k, (_, _, fr) in enumerate(group) for w in clip_windows(len(fr), window, stride)]
    for b in range(0, len(units), per_pass):
        sel = [list(range(start, stop)) + [stop - 1] * (window - (stop - start))  # short clip: its last frame again
               for _, (start, stop, _) in units[b:b + per_pass]]
        ks = [k for k, _ in units[b:b + per_pass]]
        crops = torch.from_numpy(np.stack([reads[k][0][i] for k, i in zip(ks, sel)])).to(dev)
        lms = torch.from_numpy(np.stack([reads[k][1][i] for k, i in zip(ks, sel)]).astype(np.float32)).to(dev)
        p_au = probabilities(net, crops, lms)[0].float().cpu().numpy()
        for (k, (start, stop, first)), p in zip(units[b:b + per_pass], p_au):
            out[k][first:stop] = p[first - start:stop - start]
    for arr, (_, _, det) in zip(out, reads):
        arr[~det] = np.nan  # no face found in that frame: not labelled
    return out


def label_store_with_model(store_path, model, batch_size: int = 64, device: str = "auto", replace: bool = False,
                           progress: Callable[[int, int], None] | None = None, stride: int | None = None) -> dict:
    """Write ``model``'s per-frame AU probabilities for every clip of an expression store (resumable).

    ``model``: a loaded aufer model or a path (``.safetensors``, a model folder, a run folder's
    ``best.safetensors``). ``batch_size``: frames per forward pass (clip models: ``batch_size // T`` windows, at
    least 1); clips are committed in groups of about that many frames. ``device``: auto, cpu, cuda, cuda:N.
    ``replace``: relabel a store labelled by another source. ``progress(clips done, clips)`` after each commit.
    ``stride``: clip models, frames between windows (default: the model's ``eval_stride``, else T).

    Returns ``store, source, name, path, aus, clips, clips_labelled`` (this run), ``clips_resumed`` (labelled
    before), ``frames_labelled, clips_without_labels, complete, seconds``.

    Raises:
        AULabelError: a missing or non-expression store, a missing model or one without AU outputs, labels of
            another source without ``replace``, a bad device.
    """
    from aufer.models.contract import crop_size, frame_window  # noqa: PLC0415

    t0 = time.perf_counter()
    store, records = _open_expr_store(store_path)
    try:
        net, path = _resolve_model(model)
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
        info = _begin(store, identity, {"source": "model", "name": name, "path": str(path) if path else None,
                                        "aus": list(aus), "values": "probability"}, replace)
        net = net.to(dev).eval()
        todo, resumed, empty = _todo(store, records)
        done, n_frames, group = resumed, 0, []
        for i, item in enumerate(todo):
            group.append(item)
            if sum(len(g[2]) for g in group) < batch_size and i + 1 < len(todo):
                continue
            probs = _run_group(net, store, group, window, stride, size, max(1, int(batch_size) // window), dev)
            _put(store, [(sid, fr, p) for (_, sid, fr), p in zip(group, probs)])
            done, n_frames, group = done + len(group), n_frames + sum(len(p) for p in probs), []
            if progress:
                progress(done, len(records))
        info = _finish(store, info, clips_labelled=len(records) - len(empty), clips_without_labels=len(empty),
                       without_examples=empty[:20])
        return {"store": str(store.path), "source": "model", "name": name, "path": str(path) if path else None,
                "aus": aus, "clips": len(records), "clips_labelled": len(todo), "clips_resumed": resumed,
                "frames_labelled": n_frames, "clips_without_labels": empty, "complete": info["complete"],
                "seconds": time.perf_counter() - t0}
    finally:
        store.close()


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
    import re  # noqa: PLC0415

    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.readline()
    return {int(m.group(1)) for c in head.split(",") if (m := re.fullmatch(r"AU(\d+)_c", c.strip()))}


def _openface_values(path: Path) -> tuple[np.ndarray, tuple[int, ...], np.ndarray, int]:
    from aufer.au_pseudo import read_openface_au_presence  # noqa: PLC0415
    from aufer.readers.toolkits import read_openface_csv  # noqa: PLC0415

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
        As :func:`label_store_with_model`, plus ``csvs`` (found), ``frame_mismatch`` (clips whose CSV frame count
        differs from the store's).

    Raises:
        AULabelError: a missing or non-expression store, a folder without CSVs, CSVs without ``AUxx_c`` columns or
            matching no clip, an unreadable CSV, labels of another source without ``replace``.
    """
    t0 = time.perf_counter()
    folder = Path(csv_folder)
    store, records = _open_expr_store(store_path)
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
        info = _begin(store, identity, {"source": "openface", "name": "OpenFace 2.x", "path": str(folder),
                                        "aus": aus, "values": "presence"}, replace)
        todo, resumed, empty = _todo(store, records)
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
                _put(store, rows)
                done += len(rows)
                rows = []
                if progress:
                    progress(done, len(records))
        _put(store, rows)
        done += len(rows)
        if progress and rows:
            progress(done, len(records))
        without = sorted(set(missing) | set(empty))
        info = _finish(store, info, clips_labelled=len(records) - len(without), clips_without_labels=len(without),
                       without_examples=without[:20], frame_mismatch=len(mismatch))
        return {"store": str(store.path), "source": "openface", "name": "OpenFace 2.x", "path": str(folder),
                "aus": tuple(aus), "clips": len(records), "clips_labelled": labelled, "clips_resumed": resumed,
                "frames_labelled": n_frames, "clips_without_labels": without, "csvs": len(csvs),
                "frame_mismatch": mismatch, "complete": info["complete"], "seconds": time.perf_counter() - t0}
    finally:
        store.close()
