"""Read other toolkits' per-frame CSVs into aufer's prediction table, so that tools can be compared on the same
video: OpenFace 2.x (FeatureExtraction, FaceLandmarkVidMulti) and py-feat 0.6 (a ``Fex`` saved with
``to_csv``), plus aufer's own CSV/Parquet.

Every reader returns a DataFrame with the columns of :data:`aufer.schema.BASE_COLUMNS` (NaN where the tool does
not measure the quantity), then the AU columns the tool gives, then its emotions, and sets
``df.attrs["source_tool"]`` to ``"openface"``, ``"py-feat"`` or ``"aufer"`` and ``df.attrs["source_path"]`` to the
path read. Columns are named as in aufer's table wherever the quantity is the same, so
``df["AU12_c"]`` of each reader can be compared directly; what a tool does not give is left out (OpenFace:
no ``AUxx_p``, no emotions) rather than filled with NaN, so that ``"AU12_p" in df`` says whether it exists.

Rows without a face follow aufer's table: ``face_detected`` False, ``status`` ``"no_face"``, ``face_id`` −1,
``success`` 0, ``face_score`` and every measurement NaN (OpenFace writes zeros there; they are not kept);
``confidence`` is the tool's own value where it gives one (OpenFace does, also for failed frames), else 0.
The tools' 68 landmarks (iBUG 68-point scheme) are named ``lm68_x{i}``, ``lm68_y{i}`` (not ``x_i``/``y_i``,
which are MediaPipe mesh points in aufer's table); aufer's five alignment points ``lm5_*`` are filled from them
(eye centres = midpoints of the eye corners 36/39 and 42/45, nose tip 30, mouth corners 48 and 54).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from aufer import vocab
from aufer.schema import BASE_COLUMNS, face_mask, read_table

__all__ = ["ToolkitLayoutError", "read_openface_csv", "read_pyfeat_csv", "read_predictions", "read_openface_au_presence"]

#: columns that identify each layout (checked by :func:`read_predictions` and the readers)
AUFER_KEY = ("frame", "timestamp_s", "file", "face_detected")
OPENFACE_KEY = ("frame", "timestamp", "confidence", "success")
PYFEAT_KEY = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore", "input")

_OF_AU = re.compile(r"^AU(\d\d)_([rc])$")
_PF_AU = re.compile(r"^AU(\d\d)$")
_PF_EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")  # py-feat 0.6 names
# five alignment points from the iBUG 68-point scheme, as aufer.faces.landmarks.five_points takes them
_LM5_FROM_68 = ((36, 39), (42, 45), (30,), (48,), (54,))


class ToolkitLayoutError(ValueError):
    """A file is not in the layout a reader expects; the message names the columns that were expected."""


def _header(path: Path) -> list[str]:
    """The stripped header cells of a CSV (OpenFace writes ``", face_id"``: a space after each comma)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        row = next(csv.reader(f), [])
    return [c.strip() for c in row]


def _check_file(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file; check the path")
    return p


def _require(path: Path, cols, key: tuple[str, ...], tool: str) -> None:
    missing = [c for c in key if c not in set(cols)]
    if missing:
        raise ToolkitLayoutError(f"{path}: not a {tool} CSV: missing column(s) {', '.join(missing)} "
                                 f"(expected {', '.join(key)})")


def _empty_table(n: int) -> dict[str, np.ndarray]:
    """The base columns of aufer's table for ``n`` rows (name -> values), every value 'no face'."""
    out = {c.name: np.full(n, np.nan) for c in BASE_COLUMNS}
    out.update({"status": np.full(n, "no_face", dtype=object), "face_id": np.full(n, -1),
                "face_detected": np.zeros(n, dtype=bool), "success": np.zeros(n, dtype=int),
                "confidence": np.zeros(n), "file": np.full(n, "", dtype=object)})
    return out


def _numbers(df: pd.DataFrame, col: str, face: np.ndarray) -> np.ndarray:
    """A column as float64, NaN where there is no face (and where the text is not a number)."""
    return np.where(face, pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64), np.nan)


def _frames(path: Path, df: pd.DataFrame) -> np.ndarray:
    """The ``frame`` column as int64; a clear error for a value that is not a whole number."""
    f = pd.to_numeric(df["frame"], errors="coerce")
    bad = (f.isna() | (f != f.round())).to_numpy()
    if bad.any():
        raise ToolkitLayoutError(f"{path}: column frame must hold whole frame numbers, found "
                                 f"{df['frame'].iloc[int(np.argmax(bad))]!r} in data row {int(np.argmax(bad)) + 1}")
    return f.to_numpy().astype(np.int64)


def _table(cols: dict[str, np.ndarray], order: list[str], tool: str, path: Path) -> pd.DataFrame:
    out = pd.DataFrame({k: cols[k] for k in order})
    out.attrs.update({"source_tool": tool, "source_path": str(path)})
    return out


def _landmarks68(df: pd.DataFrame, face: np.ndarray, out: dict, keep: bool) -> list[str]:
    """Fill ``lm5_*`` of ``out`` from the 68 landmarks ``x_i``/``y_i`` of ``df`` where present; with ``keep``, also
    add ``lm68_x{i}``, ``lm68_y{i}`` and return their names."""
    if not all(f"{c}_{i}" in df.columns for c in "xy" for i in range(68)):
        return []
    xy = {c: np.stack([_numbers(df, f"{c}_{i}", face) for i in range(68)], axis=1) for c in "xy"}
    for k, idx in enumerate(_LM5_FROM_68):
        for c in "xy":
            out[f"lm5_{c}{k}"] = xy[c][:, list(idx)].mean(axis=1)
    if not keep:
        return []
    names = []
    for c in "xy":
        for i in range(68):
            out[f"lm68_{c}{i}"] = xy[c][:, i]
            names.append(f"lm68_{c}{i}")
    return names


def _openface_source(path: Path) -> str:
    """The input named in OpenFace's ``<name>_of_details.txt`` beside ``<name>.csv`` (line ``Input:...``), else
    the CSV's own path."""
    details = path.with_name(path.stem + "_of_details.txt")
    if details.is_file():
        for line in details.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Input:") and line[6:].strip():
                return line[6:].strip()
    return str(path)


def read_openface_csv(path: str | Path, landmarks: bool = False, source: str | None = None) -> pd.DataFrame:
    """Read an OpenFace 2.x FeatureExtraction / FaceLandmarkVidMulti CSV into aufer's prediction table.

    OpenFace 2.x's documented layout (wiki "Output-Format"): ``frame, face_id, timestamp, confidence, success,
    gaze_*, eye_lmk_*, pose_Tx … pose_Rz, x_0 … x_67, y_0 … y_67, X_0 … Z_67, p_scale … p_33, AUxx_r …,
    AUxx_c …``, with a space after every comma of the header (``", face_id"``); the spaces are stripped here.
    A CSV without ``face_id`` (older FeatureExtraction output, one face per video) is read as face 0.

    Mapping:

    * ``frame`` − 1 → ``frame``: OpenFace counts frames from 1, aufer from 0.
    * ``timestamp`` [s] → ``timestamp_s``; ``file``: ``source`` if given, else the ``Input:`` line of
      ``<name>_of_details.txt`` next to the CSV, else the CSV's path.
    * ``success`` → ``success`` (0/1), ``face_detected`` (= success == 1), ``status`` (ok / no_face);
      ``confidence`` → ``confidence`` and ``face_score`` (NaN when success is 0, as in aufer's table).
    * ``face_id`` → ``face_id`` where success is 1, −1 otherwise (aufer's "no face" id).
    * ``pose_Rx, pose_Ry, pose_Rz`` [rad] → ``pose_pitch, pose_yaw, pose_roll`` [deg], **no sign change**:
      OpenFace's rotation is ``R = Rx · Ry · Rz`` in camera coordinates (x right, y down, z away from the
      camera), the convention :func:`aufer.faces.pose.head_pose` uses. In my reading of the wiki and of
      OpenFace's RotationHelpers.h (a frontal face looks along −z), positive Rx = looking down, positive Ry =
      turned towards the image's left (the subject's right), positive Rz = tilted clockwise in the image — the
      same signs as aufer's; an OpenFace user's account (OpenFace issue #966: head tipped up → negative Rx,
      turning to one's right → positive Ry) agrees. OpenFace corrects the pose for the camera's perspective
      (``GetPose``); compare it with ``head_pose(..., image_size=(w, h))``, which uses OpenFace's default focal
      length.
    * ``AUxx_c`` → ``AUxx_c`` (0/1 as float, NaN without a face); ``AUxx_r`` (intensity 0–5) kept as ``AUxx_r``.
      OpenFace gives no probabilities: no ``AUxx_p`` column. No emotions: no ``emo_*`` / ``emotion`` columns.
    * No face box in OpenFace's CSV: ``face_x … face_h`` are NaN. ``lm5_*`` come from the 68 landmarks (pixels);
      with ``landmarks=True`` the 68 points are kept as ``lm68_x{i}``, ``lm68_y{i}`` (pixels).

    Args:
        path: the CSV file.
        landmarks: keep the 68 landmarks (136 columns).
        source: the video or image the CSV was made from, for the ``file`` column.

    Returns:
        One row per CSV row, with ``df.attrs["source_tool"] == "openface"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ToolkitLayoutError: (a ValueError) if the CSV lacks ``frame, timestamp, confidence, success``.
    """
    p = _check_file(path)
    _require(p, _header(p), OPENFACE_KEY, "OpenFace 2.x")
    df = pd.read_csv(p, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    success = pd.to_numeric(df["success"], errors="coerce").fillna(0).to_numpy().astype(int)
    face = success == 1
    out = _empty_table(len(df))
    out["frame"] = _frames(p, df) - 1
    out["timestamp_s"] = pd.to_numeric(df["timestamp"], errors="coerce").to_numpy(dtype=np.float64)
    out["file"][:] = source if source is not None else _openface_source(p)
    out["status"] = np.where(face, "ok", "no_face").astype(object)
    face_id = (pd.to_numeric(df["face_id"], errors="coerce").fillna(0).to_numpy().astype(int)
               if "face_id" in df.columns else np.zeros(len(df), dtype=int))
    out["face_id"] = np.where(face, face_id, -1)
    out["face_detected"] = face
    out["success"] = success
    out["confidence"] = pd.to_numeric(df["confidence"], errors="coerce").to_numpy(dtype=np.float64)
    out["face_score"] = np.where(face, out["confidence"], np.nan)
    for col, name in (("pose_Rx", "pose_pitch"), ("pose_Ry", "pose_yaw"), ("pose_Rz", "pose_roll")):
        if col in df.columns:
            out[name] = np.degrees(_numbers(df, col, face))
    lm68 = _landmarks68(df, face, out, landmarks)
    aus = sorted((m[2], int(m[1]), c) for c in df.columns if (m := _OF_AU.match(c)))  # _c first, by AU number
    for _, _, col in aus:
        out[col] = _numbers(df, col, face)
    order = [c.name for c in BASE_COLUMNS] + [c for _, _, c in aus] + lm68
    return _table(out, order, "openface", p)


def read_pyfeat_csv(path: str | Path, threshold: float = 0.5, fps: float | None = None,
                    landmarks: bool = False) -> pd.DataFrame:
    """Read a py-feat 0.6 ``Fex`` CSV (``fex.to_csv(...)``) into aufer's prediction table.

    py-feat 0.6's documented layout (``feat.utils`` column lists and ``Detector``): ``frame``, ``FaceRectX,
    FaceRectY, FaceRectWidth, FaceRectHeight, FaceScore``, ``x_0 … x_67, y_0 … y_67``, ``AU01 … AU43`` (20 AUs;
    probabilities 0–1 for the default ``xgb`` AU model), ``Pitch, Roll, Yaw`` [deg], ``anger, disgust, fear,
    happiness, sadness, surprise, neutral`` (probabilities), ``input`` (the file), and for videos
    ``approx_time``. A leading index column written by ``to_csv`` (``Unnamed: 0``, or a second ``frame``) is
    dropped. This is py-feat 0.6's layout as documented; other versions may differ.

    Mapping:

    * ``frame`` → ``frame`` unchanged (py-feat 0.6 counts video frames and images from 0, like aufer);
      ``timestamp_s`` = ``frame / fps`` if ``fps`` is given, else NaN (``approx_time`` is rounded to whole
      seconds and not used); ``input`` → ``file``.
    * A row has a face when ``FaceScore`` is a number: ``face_detected``, ``status``, ``success`` (1/0),
      ``confidence`` (= FaceScore, 0 without a face), ``face_score`` (= FaceScore, NaN without a face).
    * ``face_id``: py-feat 0.6 does not track faces; the faces of a frame are numbered 0, 1, … in the CSV's row
      order (so ``(file, frame, face_id)`` is unique), −1 without a face. The same number in two frames is not
      necessarily the same person.
    * ``FaceRectX, FaceRectY, FaceRectWidth, FaceRectHeight`` [px] → ``face_x, face_y, face_w, face_h``.
    * ``AUxx`` → ``AUxx_p``; ``AUxx_c`` = ``AUxx_p >= threshold`` (0/1 as float, NaN without a face).
    * Emotions → ``emo_<name>`` with aufer's names (:data:`aufer.vocab.EMOTIONS_7`; py-feat's seven names are
      the same words: anger, disgust, fear, happiness, sadness, surprise, neutral), in aufer's order;
      ``emotion`` = the most probable ("" without a face).
    * Head pose, in my reading of py-feat 0.6's source (``convert_to_euler``: img2pose's rotation turned into
      AFLW2000-style angles, ``R = Rx(−Pitch) · Ry(Yaw) · Rz(Roll)`` in camera coordinates):
      ``pose_pitch = −Pitch``, ``pose_yaw = Yaw``, ``pose_roll = Roll`` [deg], so that the signs are aufer's
      (positive pitch = looking down; py-feat's positive Pitch = looking up). Not checked against a py-feat
      run.
    * ``lm5_*`` come from the 68 landmarks; ``landmarks=True`` keeps them as ``lm68_x{i}``, ``lm68_y{i}``.

    Args:
        path: the CSV file.
        threshold: probability at which ``AUxx_c`` is 1 (aufer's default 0.5).
        fps: the video's frame rate, to fill ``timestamp_s``.
        landmarks: keep the 68 landmarks (136 columns).

    Returns:
        One row per CSV row, with ``df.attrs["source_tool"] == "py-feat"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ToolkitLayoutError: (a ValueError) if the CSV lacks the face-box, ``FaceScore`` or ``input`` columns.
        ValueError: if ``fps`` is not positive or ``threshold`` is outside [0, 1].
    """
    p = _check_file(path)
    if fps is not None and not (float(fps) > 0):
        raise ValueError(f"fps must be a positive frame rate, got {fps!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    _require(p, _header(p), PYFEAT_KEY, "py-feat 0.6 Fex")
    df = pd.read_csv(p)
    df.columns = [str(c).strip() for c in df.columns]
    df = df.drop(columns=[c for c in df.columns if c.startswith("Unnamed:") or c == "frame.1"])
    score = pd.to_numeric(df["FaceScore"], errors="coerce").to_numpy(dtype=np.float64)
    face = ~np.isnan(score)
    out = _empty_table(len(df))
    frame = _frames(p, df) if "frame" in df.columns else np.arange(len(df))
    out["frame"] = frame
    if fps is not None:
        out["timestamp_s"] = frame / float(fps)
    out["file"] = df["input"].fillna("").astype(str).to_numpy(dtype=object)
    out["status"] = np.where(face, "ok", "no_face").astype(object)
    order = pd.Series(face.astype(int)).groupby([out["file"], frame]).cumsum().to_numpy() - 1
    out["face_id"] = np.where(face, order, -1)
    out["face_detected"] = face
    out["success"] = face.astype(int)
    out["confidence"] = np.where(face, score, 0.0)
    out["face_score"] = score
    for col, name in (("FaceRectX", "face_x"), ("FaceRectY", "face_y"), ("FaceRectWidth", "face_w"),
                      ("FaceRectHeight", "face_h")):
        out[name] = _numbers(df, col, face)
    for col, name, sign in (("Pitch", "pose_pitch", -1.0), ("Yaw", "pose_yaw", 1.0), ("Roll", "pose_roll", 1.0)):
        if col in df.columns:
            out[name] = sign * _numbers(df, col, face)
    lm68 = _landmarks68(df, face, out, landmarks)
    aus = sorted((int(m[1]), c) for c in df.columns if (m := _PF_AU.match(c)))
    for _, c in aus:
        prob = _numbers(df, c, face)
        out[f"{c}_p"] = prob
        out[f"{c}_c"] = np.where(np.isnan(prob), np.nan, (prob >= threshold).astype(float))
    emo_cols = _pyfeat_emotions(df, face, out)
    au_cols = [f"{c}_p" for _, c in aus] + [f"{c}_c" for _, c in aus]
    return _table(out, [c.name for c in BASE_COLUMNS] + au_cols + emo_cols + lm68, "py-feat", p)


def _pyfeat_emotions(df: pd.DataFrame, face: np.ndarray, out: dict) -> list[str]:
    """Add ``emo_<aufer name>`` (aufer's order) and ``emotion`` to ``out`` from py-feat's emotion columns; return
    the names added."""
    present = {vocab.canonical_emotion(c): c for c in _PF_EMOTIONS if c in df.columns}
    names = [e for e in vocab.EMOTIONS_7 if e in present]
    if not names:
        return []
    probs = np.stack([_numbers(df, present[e], face) for e in names], axis=1)
    for j, e in enumerate(names):
        out[f"emo_{e}"] = probs[:, j]
    has = ~np.isnan(probs).all(axis=1)
    top = np.where(np.isnan(probs), -np.inf, probs).argmax(axis=1)
    out["emotion"] = np.where(has, np.array(names, dtype=object)[top], "").astype(object)
    return [f"emo_{e}" for e in names] + ["emotion"]


def _read_aufer(path: Path) -> pd.DataFrame:
    df = read_table(path)
    missing = [c for c in AUFER_KEY if c not in df.columns]
    if missing:
        raise ToolkitLayoutError(f"{path}: not an aufer prediction table: missing column(s) {', '.join(missing)} "
                                 f"(expected {', '.join(AUFER_KEY)})")
    df["face_detected"] = face_mask(df)
    if "emotion" in df.columns:
        df["emotion"] = df["emotion"].fillna("").astype(str)
    df.attrs.update({"source_tool": "aufer", "source_path": str(path)})
    return df


def read_predictions(path: str | Path, **kwargs) -> pd.DataFrame:
    """Read a per-frame prediction table of aufer (CSV or Parquet), OpenFace 2.x or py-feat 0.6, recognised by
    its header, into aufer's table (see the readers for the mappings); ``kwargs`` go to the chosen reader
    (:func:`read_openface_csv`, :func:`read_pyfeat_csv`; none for aufer's own tables).

    Checks, in order: aufer (``frame, timestamp_s, file, face_detected``), OpenFace (``frame, timestamp,
    confidence, success``), py-feat (``FaceRectX … FaceScore, input``).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ToolkitLayoutError: (a ValueError) for any other layout, naming the columns each tool's table has.
        TypeError: for keyword arguments the chosen reader does not take.
    """
    p = _check_file(path)
    if p.suffix.lower() == ".parquet":
        if kwargs:
            raise TypeError(f"aufer's own tables take no reader options, got {', '.join(kwargs)}")
        return _read_aufer(p)
    cols = set(_header(p))
    if set(AUFER_KEY) <= cols:
        if kwargs:
            raise TypeError(f"aufer's own tables take no reader options, got {', '.join(kwargs)}")
        return _read_aufer(p)
    if set(OPENFACE_KEY) <= cols:
        return read_openface_csv(p, **kwargs)
    if set(PYFEAT_KEY) <= cols:
        return read_pyfeat_csv(p, **kwargs)
    found = ", ".join(sorted(cols)[:8]) + (", …" if len(cols) > 8 else "")
    raise ToolkitLayoutError(
        f"{p}: unknown prediction table; expected aufer's ({', '.join(AUFER_KEY)}), OpenFace 2.x's "
        f"({', '.join(OPENFACE_KEY)}) or py-feat's ({', '.join(PYFEAT_KEY)}) columns; found {found or 'none'}")


def read_openface_au_presence(csv_path: str | Path, face_id: int | None = None
                              ) -> tuple[np.ndarray, tuple[int, ...], np.ndarray]:
    """The ``AUxx_c`` presence columns of an OpenFace 2.x CSV, read by
    :func:`aufer.readers.toolkits.read_openface_csv` (its layout checks, its stripped header).

    Args:
        csv_path: an OpenFace 2.x FeatureExtraction / FaceLandmarkVidMulti CSV.
        face_id: keep only the rows of this OpenFace face id (rows where OpenFace failed have no face id in
            aufer's table and are then dropped); None keeps every row (several faces: frames repeat).

    Returns:
        ``frames`` ``(N,)`` int64, **0-based** (OpenFace's ``frame`` − 1, aufer's convention); ``aus`` the AU
        numbers in increasing order (OpenFace 2.0: the 18 of :func:`aufer.vocab.openface_aus`, AU28 included);
        ``values`` ``(N, A)`` float64 presence 0/1, NaN on rows without a face (``success`` 0) — unknown for
        :func:`aufer.store.clip_rules.clip_labels_mean` / ``clip_labels_count``.

    Raises:
        FileNotFoundError, ToolkitLayoutError: as ``read_openface_csv``.
    """
    df = read_openface_csv(csv_path)
    if face_id is not None:
        df = df[df["face_id"] == int(face_id)]
    cols = sorted((int(c[2:4]), c) for c in df.columns if c.startswith("AU") and c.endswith("_c"))
    values = df[[c for _, c in cols]].to_numpy(dtype=np.float64) if cols else np.zeros((len(df), 0))
    return df["frame"].to_numpy(dtype=np.int64), tuple(a for a, _ in cols), values
