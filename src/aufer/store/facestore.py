"""The face-crop store: aligned crops of a dataset, computed once by ``aufer prepare``, read fast by the loaders.

Format: one SQLite file (Python's standard ``sqlite3``). Why SQLite rather than HDF5, LMDB, zarr or a folder of
JPEG files:

* **crash-safe resumption** — every commit is atomic and durable (write-ahead log), so a ``kill -9`` of
  ``aufer prepare`` loses only the frames not yet committed, and a rerun asks the store what is done (HDF5 files
  can be corrupted by an interrupted write);
* **several writer processes** — the workers of ``prepare`` commit their own batches; SQLite serialises them;
* **fast windows** — frames are clustered by ``(sequence, frame)`` (a ``WITHOUT ROWID`` primary key), so a
  16-frame window is one indexed range query that touches a few pages of one file, instead of 16 file opens;
  nothing ever decodes a whole video;
* **one portable file**, readable by any SQLite tool, with no extra dependency.

Crops are stored JPEG-encoded (quality 95, as the reference code bases store their aligned frames) or PNG;
landmarks as float16 crop pixels (error < 0.125 px at 256 px crops).

Schema::

    meta(key TEXT PRIMARY KEY, value TEXT)             crop_size, codec, aufer version, dataset, notes
    sequences(id INTEGER PRIMARY KEY, key TEXT UNIQUE, expected INTEGER, done INTEGER)
    frames(seq, frame, detected, score, box BLOB, landmarks BLOB, crop BLOB, PRIMARY KEY (seq, frame))

``frame`` is the dataset's own frame number (AU datasets) or the 0-based position in the clip (expression
clips). A frame where no face was found is stored with ``detected = 0`` (see :mod:`aufer.store.prepare` for
which crop it gets), never dropped.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import pandas as pd

from aufer import __version__
from aufer.errors import UserMistake
from aufer.faces.landmarks import N_LANDMARKS
from aufer.readers.records import ClipRecords, FrameRecords

__all__ = ["FaceStore", "StoredFrame", "StoreError"]


class StoreError(UserMistake, ValueError):
    """A store file is missing, not a store, or was made with incompatible settings."""


@dataclass
class StoredFrame:
    """One frame to write: ``crop`` ``(S, S, 3)`` uint8 RGB, ``landmarks`` ``(478, 3)`` crop pixels, ``box``
    ``(4,)`` ``x, y, w, h`` image pixels (NaN when not detected), ``score`` in [0, 1], ``detected``."""

    frame: int
    crop: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray
    score: float
    detected: bool


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sequences(id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, expected INTEGER,
                                     done INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS frames(seq INTEGER NOT NULL, frame INTEGER NOT NULL, detected INTEGER NOT NULL,
                                  score REAL, box BLOB, landmarks BLOB, crop BLOB NOT NULL,
                                  PRIMARY KEY (seq, frame)) WITHOUT ROWID;
"""


class FaceStore:
    """A face-crop store file.

    Args:
        path: the ``.sqlite`` file.
        mode: ``"r"`` read only (the file must exist), ``"a"`` read/write (created when missing).
        crop_size: side of the crops in pixels; required when creating, checked when appending.
        codec: ``"jpeg"`` or ``"png"`` (creation only).
        quality: JPEG quality 1–100 (creation only).

    Raises:
        StoreError: if a store opened for reading does not exist or is not a store, or ``crop_size``
            disagrees with an existing store.

    Reading is safe from several processes (each DataLoader worker opens its own connection lazily).
    """

    def __init__(self, path: str | Path, mode: str = "r", crop_size: int | None = None, codec: str = "jpeg",
                 quality: int = 95):
        self.path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', not {mode!r}")
        self.mode = mode
        if mode == "r" and not self.path.is_file():
            raise StoreError(f"{self.path}: no such store; create it with `aufer prepare DATASET --root ... --out {self.path}`")
        if mode == "a":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._connect()
            con.executescript(_SCHEMA)
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                if crop_size is None:
                    raise StoreError("a new store needs crop_size")
                if codec not in ("jpeg", "png"):
                    raise ValueError(f"codec must be 'jpeg' or 'png', not {codec!r}")
                with con:
                    con.executemany("INSERT INTO meta VALUES (?, ?)", [
                        ("crop_size", str(int(crop_size))), ("codec", codec), ("quality", str(int(quality))),
                        ("aufer_version", __version__), ("format", "aufer-face-store 1")])
            elif crop_size is not None and int(meta["crop_size"]) != int(crop_size):
                raise StoreError(f"{self.path} holds {meta['crop_size']}-pixel crops, not {crop_size}; "
                                 "use another --out or the same --size")
        try:
            meta = dict(self._con().execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: not an aufer face store ({e})") from None
        if "crop_size" not in meta:
            raise StoreError(f"{self.path}: not an aufer face store (no meta table entries)")
        self.meta = meta
        self.crop_size = int(meta["crop_size"])
        self.codec = meta["codec"]
        self.quality = int(meta.get("quality", 95))
        self._seq_ids: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        if self.mode == "r":
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60, check_same_thread=False)
        else:
            con = sqlite3.connect(self.path, timeout=120, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA mmap_size=268435456")
        self._pid, self._connection = os.getpid(), con
        return con

    def _con(self) -> sqlite3.Connection:
        """This process's connection (a forked DataLoader worker opens its own)."""
        if getattr(self, "_connection", None) is None or self._pid != os.getpid():
            self._connect()
            self._seq_ids = {}
        return self._connection

    def close(self) -> None:
        if getattr(self, "_connection", None) is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):  # picklable for DataLoader workers: the connection is reopened in the worker
        d = dict(self.__dict__)
        d["_connection"] = None
        d["_seq_ids"] = {}
        return d

    # --------------------------------------------------------------------------------------------- meta
    def set_meta(self, **items) -> None:
        """Store free-form metadata (values are JSON-encoded unless strings)."""
        with self._con() as con:
            con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in items.items()])
        self.meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in items.items()})

    # ---------------------------------------------------------------------------------------- sequences
    def sequence_id(self, key: str, create: bool = False) -> int | None:
        """Integer id of a sequence key; ``None`` when absent (or created when ``create``)."""
        if key in self._seq_ids:
            return self._seq_ids[key]
        con = self._con()
        row = con.execute("SELECT id FROM sequences WHERE key = ?", (key,)).fetchone()
        if row is None:
            if not create:
                return None
            with con:
                con.execute("INSERT OR IGNORE INTO sequences(key) VALUES (?)", (key,))
            row = con.execute("SELECT id FROM sequences WHERE key = ?", (key,)).fetchone()
        self._seq_ids[key] = int(row[0])
        return self._seq_ids[key]

    def sequences(self) -> pd.DataFrame:
        """One row per sequence: ``key``, ``expected`` (frames to store, NaN if unknown), ``done`` (bool),
        ``stored`` (frames stored), ``detected`` (frames with a face)."""
        q = ("SELECT s.key, s.expected, s.done, COUNT(f.frame), COALESCE(SUM(f.detected), 0) FROM sequences s "
             "LEFT JOIN frames f ON f.seq = s.id GROUP BY s.id ORDER BY s.id")
        rows = self._con().execute(q).fetchall()
        df = pd.DataFrame(rows, columns=["key", "expected", "done", "stored", "detected"])
        df["done"] = df["done"].astype(bool)
        return df

    def done_sequences(self) -> set[str]:
        """Keys of the sequences whose every frame is stored."""
        return {r[0] for r in self._con().execute("SELECT key FROM sequences WHERE done = 1")}

    def stored_frames(self, key: str) -> np.ndarray:
        """Frame numbers stored for a sequence, ascending (empty when none)."""
        sid = self.sequence_id(key)
        if sid is None:
            return np.zeros(0, np.int64)
        return np.array([r[0] for r in self._con().execute("SELECT frame FROM frames WHERE seq = ? ORDER BY frame", (sid,))],
                        np.int64)

    def n_frames(self, key: str) -> int:
        """Number of frames stored for a sequence."""
        sid = self.sequence_id(key)
        if sid is None:
            raise KeyError(f"sequence {key!r} is not in {self.path}; was it prepared?")
        return int(self._con().execute("SELECT COUNT(*) FROM frames WHERE seq = ?", (sid,)).fetchone()[0])

    def set_expected(self, key: str, expected: int | None) -> None:
        """Record how many frames a sequence should hold (``None`` = unknown until decoded)."""
        sid = self.sequence_id(key, create=True)
        with self._con() as con:
            con.execute("UPDATE sequences SET expected = ? WHERE id = ?", (expected, sid))

    def finalize(self) -> int:
        """Mark sequences done whose stored frame count reached ``expected``; returns how many are done."""
        with self._con() as con:
            con.execute("UPDATE sequences SET done = 1 WHERE expected IS NOT NULL AND expected <= "
                        "(SELECT COUNT(*) FROM frames f WHERE f.seq = sequences.id)")
        return int(self._con().execute("SELECT COUNT(*) FROM sequences WHERE done = 1").fetchone()[0])

    # ------------------------------------------------------------------------------------------- write
    def encode(self, crop: np.ndarray) -> bytes:
        """Encode one ``(S, S, 3)`` uint8 RGB crop with the store's codec."""
        bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
        if self.codec == "jpeg":
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        else:
            ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RuntimeError("crop encoding failed")
        return buf.tobytes()

    def write(self, key: str, frames: Sequence[StoredFrame]) -> None:
        """Store frames of one sequence in one transaction (replacing frames with the same number).

        Raises:
            ValueError: if a crop is not ``(crop_size, crop_size, 3)`` uint8.
        """
        if self.mode != "a":
            raise StoreError(f"{self.path} is open read-only")
        s = self.crop_size
        rows = []
        sid = self.sequence_id(key, create=True)
        for f in frames:
            if f.crop.shape != (s, s, 3) or f.crop.dtype != np.uint8:
                raise ValueError(f"crop of frame {f.frame} is {f.crop.shape} {f.crop.dtype}, expected ({s}, {s}, 3) uint8")
            rows.append((sid, int(f.frame), int(bool(f.detected)), float(f.score),
                         np.asarray(f.box, np.float32).tobytes(), np.asarray(f.landmarks, np.float16).tobytes(),
                         self.encode(f.crop)))
        with self._con() as con:
            con.executemany("INSERT OR REPLACE INTO frames VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def mark_done(self, key: str, expected: int | None = None) -> None:
        """Mark a sequence complete (optionally recording its frame count)."""
        sid = self.sequence_id(key, create=True)
        with self._con() as con:
            con.execute("UPDATE sequences SET done = 1, expected = COALESCE(?, expected) WHERE id = ?", (expected, sid))

    # -------------------------------------------------------------------------------------------- read
    def _decode(self, buf: bytes) -> np.ndarray:
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def read(self, key: str, frames: Iterable[int]) -> dict[str, np.ndarray]:
        """Frames of one sequence, in the order asked (repeats allowed, e.g. padded windows).

        Returns:
            ``crops`` ``(T, S, S, 3)`` uint8 RGB, ``landmarks`` ``(T, 478, 3)`` float32 crop pixels, ``detected``
            ``(T,)`` bool, ``score`` ``(T,)`` float32, ``box`` ``(T, 4)`` float32 image pixels.

        Raises:
            KeyError: if the sequence or one of the frames is not in the store.
        """
        frames = [int(f) for f in frames]
        sid = self.sequence_id(key)
        if sid is None:
            raise KeyError(f"sequence {key!r} is not in {self.path}; run `aufer prepare` for this dataset")
        lo, hi = min(frames), max(frames)
        con = self._con()
        if hi - lo < 4 * len(set(frames)):  # a window: one range scan
            cur = con.execute("SELECT frame, detected, score, box, landmarks, crop FROM frames "
                              "WHERE seq = ? AND frame BETWEEN ? AND ?", (sid, lo, hi))
        else:  # scattered frames (TSN over a long clip)
            wanted = sorted(set(frames))
            cur = con.execute(f"SELECT frame, detected, score, box, landmarks, crop FROM frames WHERE seq = ? AND "
                              f"frame IN ({','.join('?' * len(wanted))})", (sid, *wanted))
        got = {r[0]: r for r in cur}
        missing = [f for f in frames if f not in got]
        if missing:
            raise KeyError(f"frames {missing[:5]} of sequence {key!r} are not in {self.path}; "
                           "was `aufer prepare` interrupted? Rerun it to finish")
        decoded = {f: self._decode(got[f][5]) for f in set(frames)}
        t = len(frames)
        return {
            "crops": np.stack([decoded[f] for f in frames]),
            "landmarks": np.stack([np.frombuffer(got[f][4], np.float16).reshape(N_LANDMARKS, -1) for f in frames]).astype(np.float32),
            "detected": np.array([bool(got[f][1]) for f in frames]),
            "score": np.array([got[f][2] for f in frames], np.float32).reshape(t),
            "box": np.stack([np.frombuffer(got[f][3], np.float32) for f in frames]),
        }

    # ----------------------------------------------------------------------------------------- records
    def save_records(self, records: FrameRecords | ClipRecords) -> None:
        """Keep the dataset's records (labels, subjects, folds, and any extra table columns such as ``source``)
        in the store, so that training needs only the store file. Replaces records saved before."""
        if isinstance(records, FrameRecords):
            df = records.table.copy()
            for j, a in enumerate(records.aus):
                df[f"AU{a}"] = records.occurrence[:, j]
                if records.intensity is not None:
                    df[f"AU{a}_r"] = records.intensity[:, j]
            info = {"kind": "frames", "aus": list(records.aus), "intensity": records.intensity is not None}
        else:
            df = records.table.copy()
            info = {"kind": "clips", "classes": list(records.classes), "folds": records.folds}
        info.update(dataset=records.dataset, root=records.root, notes=list(records.notes))
        con = self._con()
        with con:
            df.to_sql("records", con, if_exists="replace", index=False, chunksize=20000)
        self.set_meta(records=info)

    def load_records(self) -> FrameRecords | ClipRecords:
        """The records saved by :meth:`save_records` (:class:`~aufer.readers.records.FrameRecords` or
        :class:`~aufer.readers.records.ClipRecords`).

        Raises:
            StoreError: if the store holds no records.
        """
        if "records" not in self.meta:
            raise StoreError(f"{self.path} holds no records; it was not made by `aufer prepare`")
        info = json.loads(self.meta["records"])
        df = pd.read_sql("SELECT * FROM records", self._con())
        if info["kind"] == "frames":
            aus = tuple(info["aus"])
            label_cols = [f"AU{a}" for a in aus] + ([f"AU{a}_r" for a in aus] if info["intensity"] else [])
            occ = df[[f"AU{a}" for a in aus]].to_numpy(np.int8)
            inten = df[[f"AU{a}_r" for a in aus]].to_numpy(np.float32) if info["intensity"] else None
            return FrameRecords(info["dataset"], info["root"], aus, df.drop(columns=label_cols), occ, inten,
                                info["notes"])
        df["label"] = df["label"].astype(np.int64)
        return ClipRecords(info["dataset"], info["root"], tuple(info["classes"]), df, info["folds"], info["notes"])

    def frame_table(self) -> pd.DataFrame:
        """One row per stored frame: ``sequence``, ``frame``, ``detected``, ``score`` (no pixels)."""
        rows = self._con().execute("SELECT s.key, f.frame, f.detected, f.score FROM frames f JOIN sequences s "
                                   "ON s.id = f.seq ORDER BY s.id, f.frame").fetchall()
        df = pd.DataFrame(rows, columns=["sequence", "frame", "detected", "score"])
        df["detected"] = df["detected"].astype(bool)
        return df
