"""Output planning, output-path checks and locks of `aufer predict` (no face detection involved)."""

import json
import os
import subprocess
import sys

import pytest

from aufer.predict.jobs import OutputError, OutputLock, check_output, default_name, plan_jobs
from aufer.media import MediaError

from fakes import face_frame, write_image, write_video


@pytest.fixture
def media(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_image(d / "a.jpg", face_frame(0))
    write_image(d / "b.png", face_frame(1))
    write_video(d / "clip.mp4", [face_frame(0, shift=i) for i in range(3)])
    (d / "notes.txt").write_text("not media")
    return d


def test_default_names_keep_the_extension(tmp_path):
    assert default_name(tmp_path / "x.jpg", "image") == "x_jpg_aufer.csv"
    assert default_name(tmp_path / "x.mp4", "video", "parquet") == "x_mp4_aufer.parquet"
    assert default_name(tmp_path / "shots", "folder") == "shots_images_aufer.csv"


def test_image_and_video_of_one_stem_get_distinct_outputs(tmp_path):
    write_image(tmp_path / "x.jpg", face_frame(0))
    write_video(tmp_path / "x.mp4", [face_frame(0)] * 2)
    plan = plan_jobs([tmp_path / "x.jpg", tmp_path / "x.mp4"], out_dir=tmp_path / "o")
    assert [j.output.name for j in plan.jobs] == ["x_jpg_aufer.csv", "x_mp4_aufer.csv"]


def test_a_mixed_folder_gives_one_job_for_its_images_and_one_per_video(media, tmp_path):
    plan = plan_jobs([media], out_dir=tmp_path / "o")
    assert [(j.kind, j.input.name, j.output.name) for j in plan.jobs] == [
        ("folder", "in", "in_images_aufer.csv"), ("video", "clip.mp4", "clip_mp4_aufer.csv")]
    assert [p.name for p in plan.skipped] == ["notes.txt"]


def test_same_names_from_two_folders_are_numbered(tmp_path):
    for sub in ("p", "q"):
        (tmp_path / sub).mkdir()
        write_image(tmp_path / sub / "x.jpg", face_frame(0))
    plan = plan_jobs([tmp_path / "p" / "x.jpg", tmp_path / "q" / "x.jpg"], out_dir=tmp_path)
    assert [j.output.name for j in plan.jobs] == ["x_jpg_aufer.csv", "x_jpg_aufer_2.csv"]


def test_out_names_one_file_for_one_job_only(media, tmp_path):
    with pytest.raises(OutputError, match="--out-dir"):
        plan_jobs([media], out=tmp_path / "t.csv")
    plan = plan_jobs([media / "clip.mp4"], out=tmp_path / "t.parquet")
    assert plan.jobs[0].output == tmp_path / "t.parquet"


def test_out_suffix_and_format_must_agree(media, tmp_path):
    with pytest.raises(OutputError, match="make them agree"):
        plan_jobs([media / "a.jpg"], out=tmp_path / "t.csv", fmt="parquet")
    with pytest.raises(OutputError, match="csv, parquet or openface"):
        plan_jobs([media / "a.jpg"], fmt="xlsx")
    with pytest.raises(OutputError, match="make them agree"):
        plan_jobs([media / "a.jpg"], out=tmp_path / "t.parquet", fmt="openface")


def test_openface_format_writes_a_csv_with_its_own_default_name(media, tmp_path):
    assert default_name(tmp_path / "x.mp4", "video", "openface") == "x_mp4_aufer_openface.csv"
    assert default_name(tmp_path / "shots", "folder", "openface") == "shots_images_aufer_openface.csv"
    plan = plan_jobs([media], out_dir=tmp_path / "o", fmt="openface")
    assert [j.output.name for j in plan.jobs] == ["in_images_aufer_openface.csv", "clip_mp4_aufer_openface.csv"]
    assert plan_jobs([media / "a.jpg"], out=tmp_path / "t.csv", fmt="openface").jobs[0].output == tmp_path / "t.csv"


def test_a_job_is_finished_when_its_output_table_exists(media, tmp_path):
    job = plan_jobs([media / "a.jpg"], out=tmp_path / "t.csv").jobs[0]
    assert not job.finished
    (tmp_path / "t.csv.partial").write_text("frame\n0\n")  # an interrupted run: not finished, to be resumed
    assert not job.finished
    (tmp_path / "t.csv").write_text("frame\n0\n")
    assert job.finished


def test_missing_input_and_empty_folder_fail_before_any_work(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        plan_jobs([tmp_path / "nope.mp4"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(MediaError, match="no image"):
        plan_jobs([tmp_path / "empty"])


@pytest.mark.parametrize("name, message", [
    ("plot.png", "image or video name"),
    ("copy.mp4", "image or video name"),
    ("table.txt", "must end in .csv"),
])
def test_output_names_that_cannot_be_a_table(tmp_path, name, message):
    with pytest.raises(OutputError, match=message):
        check_output(tmp_path / name)


def test_output_that_is_a_directory_or_under_a_file(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path / "d.csv")
    (tmp_path / "f").write_text("a file")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output(tmp_path / "f" / "sub" / "t.csv")


def test_unwritable_output_folder(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    # root can write anywhere, so the permission answer is simulated for this folder only
    real = os.access
    monkeypatch.setattr("aufer.predict.jobs.os.access", lambda p, mode: False if os.fspath(p) == os.fspath(ro) else real(p, mode))
    with pytest.raises(OutputError, match="permission denied"):
        check_output(ro / "new" / "t.csv")
    check_output(tmp_path / "t.csv")


def test_a_second_lock_on_the_same_output_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "t.csv"
    with OutputLock(out) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
            OutputLock(out).__enter__()
    assert not (tmp_path / "t.csv.lock").exists()
    with OutputLock(out):  # released: can be taken again
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "t.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (tmp_path / "t.csv.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with OutputLock(out) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_schema_doc_is_generated_from_the_schema_module():
    from pathlib import Path

    from aufer.schema import markdown

    doc = Path(__file__).parent.parent / "docs" / "output_schema.md"
    assert doc.read_text() == markdown(), "regenerate: python -m aufer.schema > docs/output_schema.md"


def test_schema_columns_and_empty_rows():
    from aufer.schema import columns, empty_row

    cols = columns((1, 12), ("happiness", "neutral"))
    assert cols[:9] == ["frame", "timestamp_s", "file", "status", "face_id", "face_detected", "success",
                        "confidence", "face_score"]
    assert {"pose_pitch", "pose_yaw", "pose_roll", "lm5_x0", "lm5_y4", "AU12_p", "AU12_c", "emo_neutral"} <= set(cols)
    assert cols[-1] == "emotion" and "x_0" not in cols
    mesh = columns((1,), ("happiness",), mesh=True)
    assert mesh[-1] == "y_477" and len(mesh) == len(columns((1,), ("happiness",))) + 2 * 478
    row = empty_row(3, 0.5, "v.mp4", (1,), ("happiness",), status="unreadable")
    assert list(row) == columns((1,), ("happiness",))
    assert row["status"] == "unreadable" and row["face_id"] == -1 and row["success"] == 0 and row["emotion"] == ""
    with pytest.raises(ValueError, match="status"):
        empty_row(0, 0.0, "x", (1,), (), status="odd")
