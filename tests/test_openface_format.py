"""`aufer predict --format openface`: OpenFace 2.x's column names, order and conventions, checked against the
OpenFace 2.x header of tests/fixtures/openface_2x_sample.csv (written in OpenFace's documented layout) and read
back with aufer's own OpenFace reader."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aufer.cli import app
from aufer.faces.pose import rotation_matrix
from aufer.predict.openface import (OPENFACE_HEAD, OPENFACE_POSE, openface_columns, read_openface_output,
                                    write_openface_csv)
from aufer.readers.toolkits import read_openface_csv, read_predictions
from aufer.schema import columns, empty_row

from fakes import face_frame, write_image, write_video

FIXTURE = Path(__file__).parent / "fixtures" / "openface_2x_sample.csv"
AUS, EMOTIONS = (1, 2, 12, 25), ("neutral", "happiness")


def _aufer_csv(path: Path) -> pd.DataFrame:
    """An aufer table of a short video: frame 0 with faces 3 and 1 (in that order), frame 1 without a face,
    frame 2 with face 1; deterministic values."""
    rows = []
    for frame, ids in ((0, (3, 1)), (1, ()), (2, (1,))):
        if not ids:
            rows.append(empty_row(frame, frame / 24, "v.mp4", AUS, EMOTIONS))
        for k, fid in enumerate(ids):
            r = empty_row(frame, frame / 24, "v.mp4", AUS, EMOTIONS, status="ok")
            r.update({"face_id": fid, "face_detected": True, "success": 1, "confidence": 0.9 - k / 10,
                      "face_score": 0.9 - k / 10, "face_x": 10.0 + fid, "face_y": 20.0, "face_w": 50.0, "face_h": 52.0,
                      "pose_pitch": 10.0 * fid, "pose_yaw": -20.0, "pose_roll": 5.0 + frame})
            for i in range(5):
                r[f"lm5_x{i}"], r[f"lm5_y{i}"] = 12.0 + i, 30.0 + i
            for j, a in enumerate(AUS):
                r[f"AU{a:02d}_p"] = (j + fid) % 4 / 4 + 0.1
                r[f"AU{a:02d}_c"] = int(r[f"AU{a:02d}_p"] >= 0.5)
            r.update({"emo_neutral": 0.3, "emo_happiness": 0.7, "emotion": "happiness"})
            rows.append(r)
    df = pd.DataFrame(rows, columns=columns(AUS, EMOTIONS))
    df.to_csv(path, index=False)
    return df


@pytest.fixture
def converted(tmp_path):
    src = tmp_path / "t.csv.partial"
    aufer = _aufer_csv(src)
    out = write_openface_csv(src, tmp_path / "t_openface.csv")
    return aufer, out


def _header_line(path: Path) -> str:
    return path.read_text().splitlines()[0]


def test_the_header_is_openface_s_in_openface_s_order_and_spelling(converted):
    _, out = converted
    ours = _header_line(out).split(", ")
    theirs = _header_line(FIXTURE).split(", ")  # OpenFace 2.x: ", " between header cells
    assert ", ".join(ours) == _header_line(out)  # same separator
    n_of = len(OPENFACE_HEAD) + len(OPENFACE_POSE) + len(AUS)
    openface_part, aufer_part = ours[:n_of], ours[n_of:]
    assert set(openface_part) <= set(theirs)  # every OpenFace-named column exists in OpenFace's header …
    assert sorted(openface_part, key=theirs.index) == openface_part  # … in OpenFace's order
    assert openface_part[:5] == theirs[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert [c for c in openface_part if c.endswith("_c")] == ["AU01_c", "AU02_c", "AU12_c", "AU25_c"]
    assert not [c for c in ours if c.endswith("_r")]  # no intensity from aufer's models
    assert not set(aufer_part) & set(theirs)  # aufer's own columns never reuse an OpenFace name
    assert aufer_part[:2] == ["file", "status"] and aufer_part[-1] == "emotion" and "AU12_p" in aufer_part


def test_openface_conventions(converted):
    aufer, out = converted
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f, skipinitialspace=True))
    assert [(r["frame"], r["face_id"], r["success"]) for r in rows] == [
        ("1", "1", "1"), ("1", "3", "1"), ("2", "0", "0"), ("3", "1", "1")]  # 1-based; faces in id order
    assert [r["timestamp"] for r in rows] == ["0.000", "0.000", "0.042", "0.083"]  # seconds, 3 decimals
    src = aufer.set_index(["frame", "face_id"])
    for r in rows:
        if r["success"] == "1":
            a = src.loc[(int(r["frame"]) - 1, int(r["face_id"]))]
            assert r["confidence"] == f"{a.confidence:.2f}"
            for of, deg in zip(OPENFACE_POSE, ("pose_pitch", "pose_yaw", "pose_roll")):
                assert float(r[of]) == pytest.approx(math.radians(a[deg]), abs=5e-4)  # radians, same sign
            assert r["AU12_c"] == f"{a.AU12_c:.1f}" and float(r["AU12_p"]) == pytest.approx(a.AU12_p)
            assert r["file"] == "v.mp4" and r["status"] == "ok" and r["emotion"] == "happiness"
        else:  # FeatureExtraction's failed frame: zeros; aufer's own columns empty
            assert (r["confidence"], r["pose_Rx"], r["AU12_c"]) == ("0.00", "0.000", "0.0")
            assert r["status"] == "no_face" and r["AU12_p"] == "" and r["emotion"] == ""


def test_aufer_s_openface_reader_reads_it_back(converted):
    aufer, out = converted
    back = read_openface_csv(out)
    assert read_predictions(out).attrs["source_tool"] == "openface"
    key = ["frame", "face_id"]
    a = aufer[aufer.face_detected].sort_values(key).reset_index(drop=True)
    b = back[back.face_detected].sort_values(key).reset_index(drop=True)
    assert a[key].values.tolist() == b[key].values.tolist()
    np.testing.assert_allclose(b[["pose_pitch", "pose_yaw", "pose_roll"]], a[["pose_pitch", "pose_yaw", "pose_roll"]],
                               atol=0.03)  # 3 decimals of a radian
    np.testing.assert_allclose(b["timestamp_s"], a["timestamp_s"], atol=5e-4)
    np.testing.assert_array_equal(b[[f"AU{x:02d}_c" for x in AUS]], a[[f"AU{x:02d}_c" for x in AUS]])
    assert back.loc[back.frame == 1, "face_detected"].tolist() == [False]
    # and the full aufer table, for the figures and the report
    full = read_openface_output(out)
    assert list(full.columns) == columns(AUS, EMOTIONS)
    np.testing.assert_allclose(full["AU12_p"], aufer["AU12_p"].iloc[[1, 0, 2, 3]], equal_nan=True)  # faces in id order
    assert read_openface_output(out, still=True)["timestamp_s"].isna().all()


def test_the_mesh_is_not_written_under_openface_s_landmark_names():
    with pytest.raises(ValueError, match="68 iBUG"):
        openface_columns(columns(AUS, EMOTIONS, mesh=True))


def test_pose_matrices_are_openface_s():
    """aufer's R(pitch, yaw, roll) is OpenFace's Euler2RotationMatrix (RotationHelpers.h: R = Rx * Ry * Rz),
    transcribed here element by element, for angles in radians."""
    rng = np.random.default_rng(0)
    for a, b, c in rng.uniform(-1.2, 1.2, size=(20, 3)):
        s1, s2, s3, c1, c2, c3 = np.sin(a), np.sin(b), np.sin(c), np.cos(a), np.cos(b), np.cos(c)
        openface = np.array([[c2 * c3, -c2 * s3, s2],
                             [c1 * s3 + c3 * s1 * s2, c1 * c3 - s1 * s2 * s3, -c2 * s1],
                             [s1 * s3 - c1 * c3 * s2, c3 * s1 + c1 * s2 * s3, c1 * c2]])
        np.testing.assert_allclose(rotation_matrix(*np.degrees([a, b, c])), openface, atol=1e-12)


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from aufer.models import create_model, save_model

    d = tmp_path_factory.mktemp("model")
    save_model(create_model("aufer_tiny", aus=(1, 12), input_size=32, width=8, dim=16), d / "model")
    return d


def test_predict_format_openface_keeps_sidecar_figure_and_report(tmp_path, model_dir, monkeypatch):
    src = write_video(tmp_path / "v.mp4", [face_frame(0, shift=i) for i in range(4)])
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["predict", str(src), "--model", str(model_dir), "--format", "openface"])
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "v_mp4_aufer_openface.csv"
    for suffix in (".csv.json", ".png", ".html"):
        assert (tmp_path / ("v_mp4_aufer_openface" + suffix)).is_file(), suffix
    assert _header_line(out).startswith("frame, face_id, timestamp, confidence, success, pose_Rx, pose_Ry, pose_Rz, "
                                        "AU01_c, AU12_c, file")
    df = read_openface_csv(out)
    assert df.frame.tolist() == [0, 1, 2, 3] and df.face_detected.all()
    side = json.loads((tmp_path / "v_mp4_aufer_openface.csv.json").read_text())
    assert side["format"] == "openface" and side["frames"] == 4 and side["face_ids"] == [0]
    assert side["openface"]["AUxx_r"].startswith("not written") and "AU45_c" in side["openface"][
        "openface_columns_not_written"]
    assert "id 0" in (tmp_path / "v_mp4_aufer_openface.html").read_text()


def test_predict_format_openface_refuses_the_mesh(tmp_path, model_dir):
    write_image(tmp_path / "a.jpg", face_frame(0))
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "a.jpg"), "--model", str(model_dir), "--format",
                                 "openface", "--landmarks"])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "--landmarks cannot go with --format openface" in lines[0]
