"""The catalogue of bad inputs: each case asserts its exact outcome — a well-formed row, a warning, or one clear
line on stderr with exit code 2 (never a traceback). The command runs in-process (typer's CliRunner) with a
tiny random model; faces are found by the real MediaPipe pipeline.
"""

import json
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aufer.cli import app

from fakes import face_frame, write_image, write_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from aufer.models import create_model
    from aufer.models import save_model

    d = tmp_path_factory.mktemp("model")
    save_model(create_model("aufer_tiny", aus=(1, 12), input_size=32, width=8, dim=16), d / "model")
    return d


@pytest.fixture
def run(tmp_path, model_dir, monkeypatch):
    """``run(*args)`` → CliRunner result of ``aufer predict ARGS --model <tiny>`` in tmp_path (no report)."""
    monkeypatch.chdir(tmp_path)

    def _run(*args, cmd="predict", model=True):
        extra = ["--model", str(model_dir), "--no-report", "--no-plot"] if cmd == "predict" and model else []
        return CliRunner().invoke(app, [cmd, *map(str, args), *extra])
    return _run


def one_line_error(r, *fragments):
    """Exit code 2, no traceback, a single non-empty stderr line starting with 'error:' holding the fragments."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def layout_error(r, dataset, root):
    """A dataset-layout error: exit code 2, no traceback, a first line 'error: <dataset> layout problem(s) under
    <root>:' and then one indented line per problem (each naming the file concerned)."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and "Traceback" not in r.stderr + r.stdout, r.stderr
    assert lines[0] == f"error: {dataset} layout problem(s) under {root}:", lines[0]
    assert len(lines) >= 2 and lines[1].startswith("  ")


def table(path):
    from aufer.predict import read_table

    return read_table(path)


# ------------------------------------------------------------------------------------------ missing / empty
def test_missing_file(run, tmp_path):
    one_line_error(run(tmp_path / "nope.mp4"), "no such file or folder")


def test_empty_folder(run, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(run(tmp_path / "empty"), "holds no image", "or video")


def test_zero_byte_image(run, tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    one_line_error(run(tmp_path / "z.jpg"), "cannot be decoded as an image")
    assert not list(tmp_path.glob("*.partial*"))


def test_zero_byte_video(run, tmp_path):
    (tmp_path / "z.mp4").write_bytes(b"")
    one_line_error(run(tmp_path / "z.mp4"), "cannot be opened as a video")
    assert not list(tmp_path.glob("*.partial*")) and not list(tmp_path.glob("*_aufer.csv"))


def test_wrong_type(run, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(run(tmp_path / "notes.txt"), "not an image", "or a video")


def test_text_file_named_like_a_video(run, tmp_path):
    (tmp_path / "fake.mp4").write_text("this is not a video " * 100)
    one_line_error(run(tmp_path / "fake.mp4"), "fake.mp4", "video")
    assert not list(tmp_path.glob("*.partial*"))


def test_truncated_video_warns_and_keeps_the_good_frames(run, tmp_path):
    import av

    src = tmp_path / "full.mp4"
    with av.open(str(src), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for i in range(40):
            for p in s.encode(av.VideoFrame.from_ndarray(face_frame(0, shift=i % 5), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = src.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 8 // 10])
    r = run(tmp_path / "cut.mp4")
    assert r.exit_code == 0, r.stderr
    assert "warning:" in r.stderr and "frames are lost" in r.stderr and "last good frame" in r.stderr
    df = table(tmp_path / "cut_mp4_aufer.csv")
    assert 0 < df.frame.nunique() < 40
    side = json.loads((tmp_path / "cut_mp4_aufer.csv.json").read_text())
    assert len(side["warnings"]) == 1 and "frames are lost" in side["warnings"][0]


# --------------------------------------------------------------------------------------------- odd images
def _expect_one_face(run, tmp_path, name):
    r = run(tmp_path / name)
    assert r.exit_code == 0, r.stderr
    out = tmp_path / (name.rsplit(".", 1)[0] + "_" + name.rsplit(".", 1)[1] + "_aufer.csv")
    df = table(out)
    assert len(df) == 1 and df.status.iloc[0] == "ok" and df.face_detected.iloc[0]
    return df


def test_alpha_png(run, tmp_path):
    rgb = face_frame(2)
    rgba = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    _expect_one_face(run, tmp_path, "alpha.png")


def test_grayscale_image(run, tmp_path):
    cv2.imwrite(str(tmp_path / "grey.png"), cv2.cvtColor(face_frame(3), cv2.COLOR_RGB2GRAY))
    _expect_one_face(run, tmp_path, "grey.png")


def test_16_bit_png(run, tmp_path):
    img16 = cv2.cvtColor(face_frame(4), cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "deep.png"), img16)
    assert cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    _expect_one_face(run, tmp_path, "deep.png")


def test_huge_image(run, tmp_path):
    big = np.full((3000, 4000, 3), 120, np.uint8)
    big[1000:1600, 1500:2100] = cv2.resize(face_frame(5, size=(600, 600), fill=1.0), (600, 600))
    write_image(tmp_path / "huge.jpg", big)
    df = _expect_one_face(run, tmp_path, "huge.jpg")
    assert 1400 < df.face_x.iloc[0] < 1800 and df.face_w.iloc[0] > 250  # found where it was put, in pixels


def test_tiny_image_gives_a_no_face_row(run, tmp_path):
    write_image(tmp_path / "tiny.png", cv2.resize(face_frame(0), (8, 6), interpolation=cv2.INTER_AREA))
    r = run(tmp_path / "tiny.png")
    assert r.exit_code == 0, r.stderr
    df = table(tmp_path / "tiny_png_aufer.csv")
    assert len(df) == 1 and df.status.iloc[0] == "no_face" and df.face_id.iloc[0] == -1 and df.emotion.iloc[0] == ""


def test_image_without_a_face(run, tmp_path):
    write_image(tmp_path / "wall.jpg", np.full((240, 320, 3), 180, np.uint8))
    r = run(tmp_path / "wall.jpg")
    # not a terminal: the summary is one tab-separated line per input (frames 1, with a face 0, face ids 0)
    assert r.exit_code == 0 and "wall_jpg_aufer.csv\t1\t0\t0" in r.stdout
    df = table(tmp_path / "wall_jpg_aufer.csv")
    assert df.status.tolist() == ["no_face"] and not df.face_detected.any() and np.isnan(df.AU12_p).all()


def test_group_photo_gives_a_row_per_face(run, tmp_path):
    from multiface_clip import group_photo

    img, truth = group_photo()
    write_image(tmp_path / "group.jpg", img)
    r = run(tmp_path / "group.jpg")
    assert r.exit_code == 0, r.stderr
    df = table(tmp_path / "group_jpg_aufer.csv")
    assert len(df) == len(truth) == 5 and sorted(df.face_id) == [0, 1, 2, 3, 4] and df.face_detected.all()


def test_many_faces_capped_by_max_faces(run, tmp_path):
    from multiface_clip import group_photo

    write_image(tmp_path / "group.jpg", group_photo()[0])
    r = run(tmp_path / "group.jpg", "--max-faces", "2")
    assert r.exit_code == 0, r.stderr
    df = table(tmp_path / "group_jpg_aufer.csv")
    assert len(df) == 2
    assert "warning:" in r.stderr and "hold 2 faces, the most kept per frame" in r.stderr  # the cap is reported


def test_unicode_path(run, tmp_path):
    d = tmp_path / "répertoire 顔"
    write_image(d / "visage ü.jpg", face_frame(1))
    r = run(d / "visage ü.jpg", "--out-dir", d)
    assert r.exit_code == 0, r.stderr
    assert table(d / "visage ü_jpg_aufer.csv").face_detected.all()


def test_folder_with_an_unreadable_image_lists_it(run, tmp_path):
    d = tmp_path / "shots"
    write_image(d / "1.jpg", face_frame(0))
    (d / "2.jpg").write_bytes(b"garbage")
    write_image(d / "3.jpg", face_frame(1))
    r = run(d)
    assert r.exit_code == 0, r.stderr
    assert "warning:" in r.stderr and "2.jpg" in r.stderr and "unreadable" in r.stderr
    df = table(tmp_path / "shots_images_aufer.csv")
    assert df.status.tolist() == ["ok", "unreadable", "ok"]


def test_folder_with_videos_and_other_files(run, tmp_path):
    d = tmp_path / "mixed"
    write_image(d / "a.jpg", face_frame(0))
    write_video(d / "v.mp4", [face_frame(1, shift=i) for i in range(3)])
    (d / "notes.txt").write_text("x")
    r = run(d)
    assert r.exit_code == 0, r.stderr
    assert "skipped:" in r.stderr and "notes.txt" in r.stderr
    assert table(tmp_path / "mixed_images_aufer.csv").frame.tolist() == [0]
    assert table(tmp_path / "v_mp4_aufer.csv").frame.tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------------------------ models
def test_missing_model_folder(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "a.jpg"), "--model", str(tmp_path / "no-model")])
    one_line_error(r, "no-model")


def test_truncated_model_file(run, tmp_path, model_dir):
    write_image(tmp_path / "a.jpg", face_frame(0))
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (model_dir / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    (bad / "model.json").write_text((model_dir / "model.json").read_text())
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "a.jpg"), "--model", str(bad)])
    one_line_error(r, "model.safetensors")


def test_model_json_naming_an_unknown_model(run, tmp_path, model_dir):
    write_image(tmp_path / "a.jpg", face_frame(0))
    bad = tmp_path / "odd"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    meta = json.loads((model_dir / "model.json").read_text())
    meta["model"]["name"] = "no_such_arch"
    (bad / "model.json").write_text(json.dumps(meta))
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "a.jpg"), "--model", str(bad)])
    one_line_error(r, "no_such_arch")


# ----------------------------------------------------------------------------------------------- outputs
def test_out_with_an_image_suffix_writes_nothing(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    one_line_error(run(tmp_path / "a.jpg", "--out", tmp_path / "x.png"), "image or video name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


def test_out_is_a_directory(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    (tmp_path / "res.csv").mkdir()
    one_line_error(run(tmp_path / "a.jpg", "--out", tmp_path / "res.csv"), "is a directory", "--out-dir")


def test_out_under_a_file(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    one_line_error(run(tmp_path / "a.jpg", "--out", tmp_path / "a.jpg" / "t.csv"), "is a file, not a folder")


def test_out_for_several_inputs(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    write_image(tmp_path / "b.jpg", face_frame(1))
    one_line_error(run(tmp_path / "a.jpg", tmp_path / "b.jpg", "--out", tmp_path / "t.csv"), "--out-dir")


def test_format_contradicting_the_out_suffix(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    one_line_error(run(tmp_path / "a.jpg", "--out", tmp_path / "t.csv", "--format", "parquet"), "make them agree")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_faces_below_one(run, tmp_path, value):
    write_image(tmp_path / "a.jpg", face_frame(0))
    one_line_error(run(tmp_path / "a.jpg", "--max-faces", value), "--max-faces must be at least 1")


def test_min_face_score_out_of_range(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    one_line_error(run(tmp_path / "a.jpg", "--min-face-score", "1.5"), "--min-face-score must be in (0, 1]")


def test_a_second_run_while_the_first_writes_the_output_is_refused(run, tmp_path):
    import socket

    write_image(tmp_path / "a.jpg", face_frame(0))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "a_jpg_aufer.csv.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        one_line_error(run(tmp_path / "a.jpg"), "is being written by", f"pid {holder.pid}")
        assert not (tmp_path / "a_jpg_aufer.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(tmp_path / "a.jpg").exit_code == 0  # the holder is gone: its stale lock is taken over


def test_a_finished_output_is_kept_unless_overwrite_is_given(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    write_image(tmp_path / "b.jpg", face_frame(1))
    assert run(tmp_path / "a.jpg").exit_code == 0
    out = tmp_path / "a_jpg_aufer.csv"
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    r = run(tmp_path / "a.jpg", tmp_path / "b.jpg")  # a is finished: kept; b is new: analysed
    assert r.exit_code == 0, r.stderr
    kept = [ln for ln in r.stderr.splitlines() if ln.startswith("kept:")]
    assert len(kept) == 1 and "a_jpg_aufer.csv" in kept[0] and "--overwrite" in kept[0]
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before and (tmp_path / "b_jpg_aufer.csv").is_file()
    assert "kept: finished earlier" in r.stdout
    r = run(tmp_path / "a.jpg", "--overwrite")
    assert r.exit_code == 0 and "kept:" not in r.stderr
    assert out.stat().st_mtime_ns != before[1] and table(out).face_detected.all()


def test_parquet_output(run, tmp_path):
    write_image(tmp_path / "a.jpg", face_frame(0))
    r = run(tmp_path / "a.jpg", "--format", "parquet")
    assert r.exit_code == 0, r.stderr
    df = pd.read_parquet(tmp_path / "a_jpg_aufer.parquet")
    assert df.status.tolist() == ["ok"] and json.loads((tmp_path / "a_jpg_aufer.parquet.json").read_text())[
        "schema_version"] == 2


def test_version_flag(run):
    import aufer

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"aufer {aufer.__version__}"


# ------------------------------------------------------------------------------------------------ prepare
def test_prepare_with_a_missing_root(run, tmp_path):
    one_line_error(run("BP4D", "--root", tmp_path / "nope", "--out", tmp_path / "s.sqlite", cmd="prepare"),
                   "no such file or folder")


def test_prepare_with_a_root_of_the_wrong_layout(run, tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "readme.txt").write_text("not BP4D")
    layout_error(run("BP4D", "--root", tmp_path / "root", "--out", tmp_path / "s.sqlite", cmd="prepare"), "BP4D",
                 tmp_path / "root")
    assert not (tmp_path / "s.sqlite").exists()


def test_prepare_with_a_label_file_missing_columns(run, tmp_path):
    (tmp_path / "labels.csv").write_text("path,smile\na.jpg,1\n")
    r = run("au_csv", "--root", tmp_path / "labels.csv", "--out", tmp_path / "s.sqlite", cmd="prepare")
    layout_error(r, "au_csv", tmp_path / "labels.csv")
    assert "AU" in r.stderr and not (tmp_path / "s.sqlite").exists()


def test_prepare_with_an_unknown_dataset(run, tmp_path):
    one_line_error(run("CK+", "--root", tmp_path, "--out", tmp_path / "s.sqlite", cmd="prepare"), "unknown dataset")


# ------------------------------------------------------------------------------------ interrupted (real Ctrl-C)
@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_the_rerun_says_where(tmp_path, model_dir):
    src = write_video(tmp_path / "long.mp4", [face_frame(i // 40, shift=i % 7) for i in range(400)])
    cmd = [sys.executable, "-m", "aufer.cli", "predict", str(src), "--model", str(model_dir), "--no-report", "--no-plot"]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "long_mp4_aufer.csv.partial"
    t0 = time.time()
    while time.time() - t0 < 120 and (not partial.exists() or partial.stat().st_size < 20_000):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted:" in err and "rerun the same command to resume" in err and "Traceback" not in err
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming from frame" in r.stderr
    assert table(tmp_path / "long_mp4_aufer.csv").frame.tolist() == list(range(400))
    assert not partial.exists() and not (tmp_path / "long_mp4_aufer.csv.lock").exists()
