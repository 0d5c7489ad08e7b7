"""``aufer predict --format openface``: aufer's rows in OpenFace 2.x's CSV layout, so that scripts written for
OpenFace's ``FeatureExtraction`` / ``FaceLandmarkVidMulti`` output run on aufer's.

Layout (OpenFace 2.x's names, order and conventions; OpenFace's ``RecorderCSV`` and wiki "Output-Format"; the
column mapping is :data:`aufer.schema.OPENFACE_MAP`, documented in ``docs/output_schema.md``):

* header cells separated by ``", "`` (a space after each comma), as the OpenFace 2.x release binaries and the
  wiki write them (OpenFace's later source writes ``","``; ``pandas.read_csv(..., skipinitialspace=True)`` or
  stripping the names reads both); data cells separated by ``","``;
* ``frame`` (1-based: aufer's ``frame`` + 1; for a folder of images, the image's position from 1, as OpenFace's
  ``-fdir``), ``face_id``, ``timestamp`` (s, 3 decimals), ``confidence`` (2 decimals), ``success`` (0/1);
* ``pose_Rx, pose_Ry, pose_Rz`` in radians (3 decimals) = aufer's ``pose_pitch, pose_yaw, pose_roll`` × π/180,
  no sign change (both are ``R = Rx · Ry · Rz`` in camera coordinates, x right, y down, z away from the camera;
  :mod:`aufer.faces.pose`);
* ``AUxx_r`` (intensity 0–5) only for a model that gives intensity: none of aufer's models does, so none is
  written (the sidecar says so); ``AUxx_c`` presence 0/1 (written ``0.0`` / ``1.0`` as OpenFace does) for those
  of the model's AUs that OpenFace 2.x has (its 18, :func:`aufer.vocab.openface_aus`; never a left/right sub-AU
  such as ``AU01L``), sorted by name as OpenFace sorts them; the model's other AUs (e.g. OpenGraphAU's AU11,
  AU24, AU01L …) get no ``_c`` column here, the sidecar lists them (``model_aus_not_in_openface``), and their
  probabilities stay among aufer's ``AUxx_p``;
* a frame without a face gives one row with ``face_id`` 0, ``success`` 0, ``confidence`` 0 and zeros for pose
  and ``AUxx_c``: ``FeatureExtraction``'s convention (``FaceLandmarkVidMulti`` writes no row at all then);
* then aufer's own columns, which OpenFace has no name for: ``file``, ``status``, the face box ``face_x …
  face_h``, the alignment points ``lm5_*``, ``AUxx_p`` (every AU of the model, sub-AUs included), ``emo_*`` and
  ``emotion`` (empty cells where there is no face).

Not written, because aufer does not measure them: ``gaze_*``, ``eye_lmk_*``, ``pose_Tx/Ty/Tz``, the 68 iBUG
landmarks ``x_i, y_i``, ``X_i, Y_i, Z_i``, the shape parameters ``p_*``, and the AUs of OpenFace's 18 that the
model lacks. Where the quantities differ: ``confidence`` is aufer's face-detector score (OpenFace: its landmark
tracker's certainty); ``timestamp`` is the frame's presentation time (OpenFace: frame index / the container's
nominal frame rate, which differs on variable-frame-rate video), and 0 for still images (OpenFace's image
sequences); ``face_id`` is aufer's track id (OpenFace's multi-face tracker: the tracker slot).
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from aufer import vocab
from aufer.schema import AU_P_COLUMN, OPENFACE_MAP, au_parts, au_stem

__all__ = ["OPENFACE_HEAD", "OPENFACE_POSE", "openface_columns", "write_openface_csv", "read_openface_output",
           "openface_notes", "openface_summary"]

#: OpenFace 2.x's first columns (sequences: FeatureExtraction, FaceLandmarkVidMulti)
OPENFACE_HEAD = tuple(of for of, _, _ in OPENFACE_MAP[:5])
#: OpenFace 2.x's head rotation columns (radians), and aufer's (degrees) they are made from
OPENFACE_POSE = tuple(of for of, _, _ in OPENFACE_MAP[5:8])
_POSE_FROM = tuple(ours for _, ours, _ in OPENFACE_MAP[5:8])
_EXTRA_BASE = ("file", "status", "face_x", "face_y", "face_w", "face_h",
               *(f"lm5_{c}{i}" for i in range(5) for c in "xy"))
_AU_P = AU_P_COLUMN  # AU01_p, AU01L_p: aufer's own columns, every AU of the model
_AU_R = re.compile(r"^AU(\d+)_r$")
_AU_C = re.compile(r"^AU(\d+)_c$")


def _openface_au(col: str, pattern: re.Pattern) -> bool:
    """``col`` is an OpenFace AU column (``AU01_c``, ``AU45_r``): one of OpenFace 2.x's 18 AUs, no side."""
    m = pattern.match(col)
    return bool(m) and int(m.group(1)) in vocab.openface_aus()


def openface_columns(header: Sequence[str]) -> list[str]:
    """The columns of the OpenFace-layout file made from an aufer table with columns ``header``
    (:func:`aufer.schema.columns`): OpenFace's (see the module docstring) then aufer's own.

    Raises:
        ValueError: ``header`` holds aufer's 478 mesh points (``x_i``, ``y_i``), which would read as OpenFace's 68
            iBUG landmarks.
    """
    if "x_0" in header:
        raise ValueError("the OpenFace layout cannot hold aufer's 478 mesh points: OpenFace's x_i, y_i are the 68 "
                         "iBUG landmarks; write the mesh with --format csv or parquet")
    r = sorted(c for c in header if _openface_au(c, _AU_R))
    c = sorted(c for c in header if _openface_au(c, _AU_C))
    extras = [*_EXTRA_BASE, *sorted(x for x in header if _AU_P.match(x)),
              *(x for x in header if x.startswith("emo_")), *(["emotion"] if "emotion" in header else [])]
    return [*OPENFACE_HEAD, *OPENFACE_POSE, *r, *c, *extras]


def _num(s: str) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return math.nan


def _fixed(x: float, digits: int) -> str:
    """OpenFace's ``std::fixed`` numbers; 0 where there is no value."""
    return f"{x if math.isfinite(x) else 0.0:.{digits}f}"


def _openface_row(row: dict, r_cols: list[str], c_cols: list[str], extras: list[str]) -> list[str]:
    face = row.get("success") in ("1", "1.0") and row.get("status") == "ok"
    ts = _num(row["timestamp_s"])
    out = [str(int(row["frame"]) + 1), str(int(float(row["face_id"]))) if face else "0",
           _fixed(ts if math.isfinite(ts) else 0.0, 3), _fixed(_num(row["confidence"]) if face else 0.0, 2),
           "1" if face else "0"]
    for col in _POSE_FROM:
        out.append(_fixed(math.radians(_num(row[col])) if face else 0.0, 3))
    out += [_fixed(_num(row[c]) if face else 0.0, 2) for c in r_cols]
    out += [_fixed(_num(row[c]) if face else 0.0, 1) for c in c_cols]
    for c in extras:
        v = row.get(c, "")
        out.append("" if v in ("nan", "NaN") else v)
    return out


def _frames(rows: Iterable[dict]) -> Iterable[list[dict]]:
    """Consecutive rows of one frame (same file and frame index), in order."""
    group: list[dict] = []
    key = None
    for row in rows:
        k = (row["file"], row["frame"])
        if group and k != key:
            yield group
            group = []
        key = k
        group.append(row)
    if group:
        yield group


def write_openface_csv(src: str | Path, dst: str | Path) -> Path:
    """Convert an aufer CSV (the partial file of :func:`aufer.predict.predict_to_file`) to the OpenFace layout,
    streamed (constant memory) and atomically (a ``.tmp`` file, then :func:`os.replace`). Within a frame the
    faces are written in ``face_id`` order, as OpenFace writes its trackers.

    Raises:
        ValueError: ``src`` holds the 478-point mesh (see :func:`openface_columns`).
        OSError: ``src`` cannot be read or ``dst`` written (no ``.tmp`` file is left behind).
    """
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        with open(src, newline="") as f, open(tmp, "w", newline="") as g:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            cols = openface_columns(header)
            n_fixed = len(OPENFACE_HEAD) + len(OPENFACE_POSE)
            r_cols = [c for c in cols[n_fixed:] if _openface_au(c, _AU_R)]
            c_cols = [c for c in cols[n_fixed:] if _openface_au(c, _AU_C)]
            extras = cols[n_fixed + len(r_cols) + len(c_cols):]
            g.write(", ".join(cols) + "\n")
            w = csv.writer(g, lineterminator="\n")
            for group in _frames(reader):
                group.sort(key=lambda r: _num(r["face_id"]))
                w.writerows(_openface_row(r, r_cols, c_cols, extras) for r in group)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def read_openface_output(path: str | Path, still: bool = False, threshold: float | None = None):
    """Read a file of :func:`write_openface_csv` back into aufer's table (:func:`aufer.schema.columns` order),
    for the figures and the report: :func:`aufer.readers.toolkits.read_openface_csv` for OpenFace's columns,
    aufer's own columns as written.

    Args:
        path: the OpenFace-layout CSV.
        still: the input was a still image or a folder of stills (``timestamp_s`` becomes NaN, aufer's
            convention, instead of OpenFace's 0).
        threshold: the presence threshold of the run: the ``AUxx_c`` of the model's AUs that OpenFace lacks
            (not in the file) are made from their ``AUxx_p`` with it; None leaves them NaN.

    Returns:
        A DataFrame with aufer's columns (``AUxx_p``, ``AUxx_c`` for every AU of the file's ``AUxx_p`` and
        ``AUxx_c`` columns, sorted by name; ``emo_*``, ``emotion``; no mesh).

    Raises:
        aufer.readers.toolkits.ToolkitLayoutError: not an OpenFace-layout file.
    """
    import numpy as np  # noqa: PLC0415  heavy
    import pandas as pd  # noqa: PLC0415  heavy

    from aufer.readers.toolkits import read_openface_csv  # noqa: PLC0415  heavy (pandas)
    from aufer.schema import columns  # noqa: PLC0415

    df = read_openface_csv(path)
    raw = pd.read_csv(path, skipinitialspace=True, keep_default_na=False,
                      dtype={"file": str, "status": str, "emotion": str})
    raw.columns = [str(c).strip() for c in raw.columns]
    face = df["face_detected"].to_numpy()
    for c in raw.columns:
        if c in ("file", "status", "emotion"):
            df[c] = raw[c].astype(str).to_numpy()
        elif c in _EXTRA_BASE or _AU_P.match(c) or c.startswith("emo_"):
            df[c] = np.where(face, pd.to_numeric(raw[c], errors="coerce").to_numpy(dtype=float), np.nan)
    if still:
        df["timestamp_s"] = np.nan
    stems = {au_stem(c[:-2]) for c in df.columns if _AU_C.match(c)} | {c[:-2] for c in raw.columns if _AU_P.match(c)}
    aus = sorted(stems)
    emotions = [c[4:] for c in raw.columns if c.startswith("emo_")]
    cols = columns(aus, emotions)
    out = df.reindex(columns=cols)
    for st in aus:  # presence of the AUs OpenFace lacks: not in the file
        if f"{st}_c" not in df.columns and threshold is not None:
            pr = out[f"{st}_p"].to_numpy(dtype=float)
            out[f"{st}_c"] = np.where(np.isfinite(pr), (pr >= threshold).astype(float), np.nan)
    for c in ("emotion",):
        if c in out:
            out[c] = out[c].fillna("").astype(str)
    out.attrs.update(df.attrs)
    return out


def openface_summary(path: str | Path) -> tuple[int, int, int, list[int]]:
    """``(rows, frames, frames with a face, face ids)`` of an OpenFace-layout file, read in chunks."""
    import pandas as pd  # noqa: PLC0415  heavy

    frames: set[int] = set()
    with_face: set[int] = set()
    ids: set[int] = set()
    n = 0
    want = {"frame", "face_id", "success"}
    for c in pd.read_csv(path, usecols=lambda x: x.strip() in want, skipinitialspace=True, chunksize=100_000):
        c.columns = [x.strip() for x in c.columns]
        n += len(c)
        frames.update(c["frame"].tolist())
        ok = c["success"].astype(float) == 1
        with_face.update(c.loc[ok, "frame"].tolist())
        ids.update(int(i) for i in c.loc[ok, "face_id"])
    return n, len(frames), len(with_face), sorted(ids)


def openface_notes(aus: Sequence[int | str], model_name: str = "the model") -> dict:
    """What the sidecar says about an OpenFace-layout output: what is written, how it differs from OpenFace's
    own values, and what is missing. ``aus``: the model's AU numbers or names / column stems
    (:func:`aufer.schema.au_stems`); ``model_aus_not_in_openface`` lists the stems of those OpenFace 2.x does not
    have (left/right sub-AUs included), whose presence is not written as ``AUxx_c``."""
    stems = [au_stem(a) for a in aus]
    of = set(vocab.openface_aus())
    have = {au_parts(s)[0] for s in stems if not au_parts(s)[1]}
    missing_aus = [f"{vocab.au_code(a)}_c" for a in vocab.openface_aus() if a not in have]
    left_out = [s for s in stems if au_parts(s)[1] or au_parts(s)[0] not in of]
    return {
        "layout": "OpenFace 2.x FeatureExtraction CSV: header cells separated by ', ' (the OpenFace 2.x "
                  "releases); OpenFace's columns first, then aufer's own",
        "frame": "1-based (aufer's frame + 1)",
        "timestamp": "seconds, the frame's presentation time; OpenFace uses frame index / nominal frame rate "
                     "(the same on constant-frame-rate video); 0 for still images, as OpenFace's image sequences",
        "confidence": "aufer's face-detector score (OpenFace: landmark-tracking certainty)",
        "pose": "pose_Rx, pose_Ry, pose_Rz in radians = pose_pitch, pose_yaw, pose_roll (degrees) x pi/180, no "
                "sign change (R = Rx Ry Rz, camera coordinates x right, y down, z away from the camera)",
        "AUxx_r": f"not written: {model_name} gives AU occurrence probabilities only, no AU intensity; no aufer "
                  "model gives intensity",
        "AUxx_c": "presence 0/1 at the threshold, for the model's AUs that OpenFace 2.x has (its 18, no "
                  "left/right sub-AU)",
        "model_aus_not_in_openface": left_out,
        "model_aus_not_in_openface_note": "AUs of the model that OpenFace 2.x does not report: no AUxx_c column "
                                          "in OpenFace's part; their probabilities are in aufer's appended "
                                          "AUxx_p columns" if left_out else "none: every AU of the model is one "
                                          "of OpenFace's",
        "rows_without_face": "one row per frame with face_id 0, success 0, confidence 0, zeros for pose and "
                             "AUxx_c (FeatureExtraction's convention); status and file say why",
        "openface_columns_not_written": ["gaze_*", "eye_lmk_*", "pose_Tx", "pose_Ty", "pose_Tz",
                                         "x_0..x_67", "y_0..y_67", "X_0..Z_67", "p_*", *missing_aus],
        "aufer_columns_appended": ["file", "status", "face_x", "face_y", "face_w", "face_h", "lm5_*",
                                   "AUxx_p (every AU of the model)",
                                   "emo_*", "emotion"],
    }
