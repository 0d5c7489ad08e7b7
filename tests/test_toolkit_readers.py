"""Readers of OpenFace 2.x and py-feat 0.6 CSVs (fixtures written by hand in each tool's documented layout) and
the header dispatch of read_predictions. Expected values are parsed from the fixtures with the csv module, not
taken from the readers."""

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aufer import vocab
from aufer.readers.toolkits import ToolkitLayoutError, read_openface_csv, read_predictions, read_pyfeat_csv
from aufer.schema import BASE_COLUMNS, columns, empty_row

FIXTURES = Path(__file__).parent / "fixtures"
OPENFACE = FIXTURES / "openface_2x_sample.csv"
PYFEAT = FIXTURES / "pyfeat_fex_sample.csv"


def _raw(path: Path) -> list[dict]:
    """Rows of a CSV as dicts of stripped strings (the first of duplicate header names wins)."""
    with open(path, newline="") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = [h.strip() for h in next(reader)]
        rows = []
        for cells in reader:
            row = {}
            for h, v in zip(header, cells):
                row.setdefault(h, v.strip())
            rows.append(row)
    return rows


def _num(v: str) -> float:
    return float(v) if v != "" else math.nan


# ------------------------------------------------------------------------------------------------ OpenFace
def test_openface_fixture_has_the_documented_spaced_header():
    first = OPENFACE.read_text().splitlines()[0]
    assert first.startswith("frame, face_id, timestamp, confidence, success, gaze_0_x")
    assert ", pose_Rx, pose_Ry, pose_Rz, x_0" in first and first.endswith("AU28_c, AU45_c")


def test_openface_leading_spaces_are_stripped(tmp_path):
    df = read_openface_csv(OPENFACE)
    assert not [c for c in df.columns if c != c.strip()]
    assert {"face_id", "AU12_c", "AU12_r", "pose_yaw"} <= set(df.columns)
    # the same file without the spaces reads the same
    plain = tmp_path / "plain.csv"
    plain.write_text(OPENFACE.read_text().replace(", ", ","))
    pd.testing.assert_frame_equal(read_openface_csv(plain, source="x"), read_openface_csv(OPENFACE, source="x"))


def test_openface_frames_become_zero_based_and_faces_keep_their_ids():
    raw = _raw(OPENFACE)
    df = read_openface_csv(OPENFACE)
    assert df.attrs["source_tool"] == "openface"
    assert df["frame"].tolist() == [int(r["frame"]) - 1 for r in raw]
    assert df["frame"].min() == 0 and df["frame"].dtype.kind == "i"
    np.testing.assert_allclose(df["timestamp_s"], [float(r["timestamp"]) for r in raw])
    first = df[df["frame"] == 0]
    assert first["face_id"].tolist() == [0, 1]  # two faces in one frame


def test_openface_success_maps_to_face_detected_and_failed_rows_are_empty():
    raw = _raw(OPENFACE)
    df = read_openface_csv(OPENFACE)
    success = [int(r["success"]) for r in raw]
    assert 0 in success and 1 in success
    assert df["face_detected"].tolist() == [s == 1 for s in success]
    assert df["success"].tolist() == success
    np.testing.assert_allclose(df["confidence"], [float(r["confidence"]) for r in raw])
    failed = df[~df["face_detected"]]
    assert (failed["status"] == "no_face").all() and (failed["face_id"] == -1).all()
    # OpenFace writes zeros for a failed frame; they must not read as measurements
    au = [c for c in df.columns if c.startswith("AU")]
    assert failed[au + ["pose_pitch", "pose_yaw", "pose_roll", "face_score", "lm5_x0"]].isna().all().all()
    ok = df[df["face_detected"]]
    assert (ok["status"] == "ok").all()
    np.testing.assert_allclose(ok["face_score"], ok["confidence"])


def test_openface_pose_radians_become_degrees_with_the_same_signs():
    raw = _raw(OPENFACE)
    df = read_openface_csv(OPENFACE)
    for name, col in (("pose_pitch", "pose_Rx"), ("pose_yaw", "pose_Ry"), ("pose_roll", "pose_Rz")):
        expected = [math.degrees(float(r[col])) if r["success"] == "1" else math.nan for r in raw]
        np.testing.assert_allclose(df[name], expected, equal_nan=True)
    # the fixture's first face: 0.174533, -0.349066, 0.087266 rad
    np.testing.assert_allclose(df.loc[0, ["pose_pitch", "pose_yaw", "pose_roll"]].astype(float), [10, -20, 5],
                               atol=1e-3)


def test_openface_au_columns_presence_and_intensity():
    raw = _raw(OPENFACE)
    df = read_openface_csv(OPENFACE)
    header = raw[0].keys()
    assert [c for c in df.columns if c.endswith("_c")] == sorted(c for c in header if c.startswith("AU") and
                                                                 c.endswith("_c"))
    assert {c for c in df.columns if c.endswith("_r")} == {c for c in header if c.startswith("AU") and
                                                          c.endswith("_r")}
    assert "AU28_c" in df and "AU28_r" not in df  # OpenFace codes AU28 for presence only
    assert not [c for c in df.columns if c.endswith("_p") or c.startswith("emo_")]  # no probabilities, no emotions
    ok = df["face_detected"]
    c_values = df.loc[ok, [c for c in df.columns if c.endswith("_c")]].to_numpy()
    assert set(np.unique(c_values)) <= {0.0, 1.0}
    r_values = df.loc[ok, [c for c in df.columns if c.endswith("_r")]].to_numpy()
    assert r_values.min() >= 0 and r_values.max() <= 5
    assert df.loc[0, "AU12_c"] == float(raw[0]["AU12_c"]) == 1.0
    assert df.loc[0, "AU12_r"] == pytest.approx(float(raw[0]["AU12_r"]))


def test_openface_landmarks_are_optional_and_feed_the_five_points():
    raw = _raw(OPENFACE)
    assert not [c for c in read_openface_csv(OPENFACE).columns if c.startswith("lm68_")]
    df = read_openface_csv(OPENFACE, landmarks=True)
    assert len([c for c in df.columns if c.startswith("lm68_")]) == 136
    assert df.loc[1, "lm68_x30"] == pytest.approx(float(raw[1]["x_30"]))
    eye = (float(raw[1]["x_36"]) + float(raw[1]["x_39"])) / 2
    assert df.loc[1, "lm5_x0"] == pytest.approx(eye)  # image-left eye centre from its corners
    assert df.loc[1, "lm5_y4"] == pytest.approx(float(raw[1]["y_54"]))  # image-right mouth corner


def test_openface_file_from_details_or_argument(tmp_path):
    assert (read_openface_csv(OPENFACE)["file"] == str(OPENFACE)).all()
    csv_path = tmp_path / "clip.csv"
    csv_path.write_text(OPENFACE.read_text())
    (tmp_path / "clip_of_details.txt").write_text("Input:/data/videos/clip.mp4\nCamera parameters:500,500,320,240\n")
    assert (read_openface_csv(csv_path)["file"] == "/data/videos/clip.mp4").all()
    assert (read_openface_csv(csv_path, source="other.mp4")["file"] == "other.mp4").all()


def test_openface_without_face_id_is_one_face(tmp_path):
    df = pd.read_csv(OPENFACE, skipinitialspace=True).drop(columns=["face_id"])
    path = tmp_path / "single.csv"
    df.to_csv(path, index=False)
    out = read_openface_csv(path)
    assert out["face_id"].tolist() == [0 if ok else -1 for ok in out["face_detected"]]


# ------------------------------------------------------------------------------------------------- py-feat
def test_pyfeat_faces_boxes_ids_and_frames():
    raw = _raw(PYFEAT)
    df = read_pyfeat_csv(PYFEAT)
    assert df.attrs["source_tool"] == "py-feat"
    assert df["frame"].tolist() == [int(r["frame"]) for r in raw]  # py-feat counts from 0 already
    has_face = [r["FaceScore"] != "" for r in raw]
    assert False in has_face
    assert df["face_detected"].tolist() == has_face
    assert df["file"].tolist() == [r["input"] for r in raw]
    for name, col in (("face_x", "FaceRectX"), ("face_y", "FaceRectY"), ("face_w", "FaceRectWidth"),
                      ("face_h", "FaceRectHeight"), ("face_score", "FaceScore")):
        np.testing.assert_allclose(df[name], [_num(r[col]) for r in raw], equal_nan=True)
    # faces numbered per frame in row order, -1 without a face
    assert df["face_id"].tolist() == [0, 1, -1, 0]
    assert df.loc[2, "status"] == "no_face" and df.loc[2, "confidence"] == 0.0
    assert df["timestamp_s"].isna().all()
    np.testing.assert_allclose(read_pyfeat_csv(PYFEAT, fps=25.0)["timestamp_s"], df["frame"] / 25.0)


def test_pyfeat_aus_become_probabilities_and_presence():
    raw = _raw(PYFEAT)
    df = read_pyfeat_csv(PYFEAT)
    au_cols = [c for c in raw[0] if c.startswith("AU")]
    assert len(au_cols) == 20
    for c in au_cols:
        expected = [_num(r[c]) for r in raw]
        np.testing.assert_allclose(df[f"{c}_p"], expected, equal_nan=True)
        np.testing.assert_array_equal(df[f"{c}_c"], [math.nan if math.isnan(v) else float(v >= 0.5)
                                                     for v in expected])
    assert df["AU12_c"].tolist()[:2] == [1.0, 0.0] and df.loc[3, "AU12_c"] == 0.0  # 0.91, 0.12, 0.49
    assert read_pyfeat_csv(PYFEAT, threshold=0.4).loc[3, "AU12_c"] == 1.0


def test_pyfeat_emotions_use_aufers_names_and_argmax():
    raw = _raw(PYFEAT)
    df = read_pyfeat_csv(PYFEAT)
    emo = [c for c in df.columns if c.startswith("emo_")]
    assert sorted(emo) == sorted(f"emo_{e}" for e in vocab.EMOTIONS_7)
    names = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    for k, r in enumerate(raw):
        if r["FaceScore"] == "":
            assert df.loc[k, "emotion"] == "" and df.loc[k, emo].isna().all()
            continue
        probs = {n: float(r[n]) for n in names}
        assert df.loc[k, "emotion"] == vocab.canonical_emotion(max(probs, key=probs.get))
        assert df.loc[k, "emo_happiness"] == pytest.approx(probs["happiness"])


def test_pyfeat_pose_signs_follow_aufer():
    raw = _raw(PYFEAT)
    df = read_pyfeat_csv(PYFEAT)
    np.testing.assert_allclose(df["pose_pitch"], [-_num(r["Pitch"]) for r in raw], equal_nan=True)
    np.testing.assert_allclose(df["pose_yaw"], [_num(r["Yaw"]) for r in raw], equal_nan=True)
    np.testing.assert_allclose(df["pose_roll"], [_num(r["Roll"]) for r in raw], equal_nan=True)


def test_pyfeat_csv_without_index_column_reads_the_same(tmp_path):
    lines = PYFEAT.read_text().splitlines()
    assert lines[0].startswith("frame,frame,")  # to_csv wrote the index (named frame) first
    stripped = tmp_path / "noindex.csv"
    stripped.write_text("\n".join(line.split(",", 1)[1] for line in lines) + "\n")
    a, b = read_pyfeat_csv(PYFEAT), read_pyfeat_csv(stripped)
    pd.testing.assert_frame_equal(a, b, check_like=False, check_exact=False)


def test_pyfeat_bad_options():
    with pytest.raises(ValueError, match="fps"):
        read_pyfeat_csv(PYFEAT, fps=0)
    with pytest.raises(ValueError, match="threshold"):
        read_pyfeat_csv(PYFEAT, threshold=1.5)


# --------------------------------------------------------------------------------------------- dispatch
def _aufer_table(tmp_path: Path, suffix: str) -> Path:
    aus, emotions = (1, 12), vocab.EMOTIONS_7
    rows = [empty_row(0, 0.0, "clip.mp4", aus, emotions)]
    face = empty_row(1, 0.04, "clip.mp4", aus, emotions, status="ok")
    face.update(face_id=0, face_detected=True, success=1, confidence=0.9, face_score=0.9, AU12_p=0.8, AU12_c=1,
                emotion="happiness")
    rows.append(face)
    df = pd.DataFrame(rows, columns=columns(aus, emotions))
    path = tmp_path / f"pred{suffix}"
    df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_predictions_recognises_aufers_own_table(tmp_path, suffix):
    df = read_predictions(_aufer_table(tmp_path, suffix))
    assert df.attrs["source_tool"] == "aufer"
    assert df["face_detected"].tolist() == [False, True]
    assert df["emotion"].tolist() == ["", "happiness"]
    assert [c.name for c in BASE_COLUMNS] == list(df.columns[: len(BASE_COLUMNS)])


def test_read_predictions_dispatches_on_the_header():
    assert read_predictions(OPENFACE).attrs["source_tool"] == "openface"
    assert read_predictions(PYFEAT, fps=30.0).attrs["source_tool"] == "py-feat"
    both = [read_predictions(OPENFACE), read_predictions(PYFEAT)]
    for df in both:  # one table shape for comparisons
        assert [c.name for c in BASE_COLUMNS] == list(df.columns[: len(BASE_COLUMNS)])


def test_unknown_layout_names_the_expected_columns(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("time,face,smile\n0.0,1,0.3\n")
    with pytest.raises(ValueError) as err:
        read_predictions(path)
    msg = str(err.value)
    assert isinstance(err.value, ToolkitLayoutError) and "\n" not in msg
    for col in ("timestamp_s", "success", "FaceScore", "smile"):
        assert col in msg


def test_a_reader_given_the_other_tools_csv_says_what_is_missing():
    with pytest.raises(ToolkitLayoutError, match="OpenFace.*missing column.*timestamp"):
        read_openface_csv(PYFEAT)
    with pytest.raises(ToolkitLayoutError, match="py-feat.*missing column.*FaceScore"):
        read_pyfeat_csv(OPENFACE)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_predictions(FIXTURES / "absent.csv")
