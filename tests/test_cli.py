import json
import os
import subprocess
import sys

import pytest


def _aufer(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "aufer.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.mark.parametrize("make", ["missing", "text", "broken_image"])
def test_user_mistakes_are_one_line_errors(tmp_path, make):
    target = tmp_path / {"missing": "nope.mp4", "text": "notes.txt", "broken_image": "x.jpg"}[make]
    if make == "text":
        target.write_text("hello")
    if make == "broken_image":
        target.write_bytes(b"not a jpeg")
    model_dir = tmp_path / "m"
    _tiny_checkpoint(model_dir)
    r = _aufer("predict", str(target), "--model", str(model_dir), cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip().startswith("error:")
    assert len([ln for ln in r.stderr.strip().splitlines() if ln.strip()]) <= 2


def test_models_lists_registry():
    r = _aufer("models")
    assert r.returncode == 0 and "aufer_tiny" in r.stdout


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    """`aufer demo --quick` runs every stage and leaves a complete run folder; `aufer predict` then uses it."""
    run = tmp_path / "runs" / "quick"
    r = _aufer("demo", "--quick", "--out", str(run), cwd=tmp_path, env={"AUFER_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("config.yaml", "metrics.json", "model.safetensors", "model.json", "predictions.csv", "history.json",
                 "split.json", "plots/video_timeseries.png", "plots/training.png", "plots/test_confusion.png"):
        assert (run / name).is_file(), name
    m = json.loads((run / "metrics.json").read_text())
    t = m["test"]
    assert 0 <= t["au_synthetic"]["f1_mean"] <= 1 and 0 <= t["expression_all"]["uar"] <= 1
    assert 0 <= t["real_photos"]["happy_vs_neutral_accuracy"] <= 1 and "SYNTHETIC" in m["synthetic_note"]
    # the demo trained through the engine: its run folder agrees with the demo's summary
    engine = json.loads((run / "train" / "metrics.json").read_text())
    assert engine["test"]["au"]["au_f1_mean"] == t["au_synthetic"]["f1_mean"]
    assert engine["selection"]["label"] == "validation-selected" and m["selection"]["epoch"] == engine["selection"]["epoch"]
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2]
    # the expression store is lossless (as `aufer predict`'s crops), the SYNTHETIC AU store JPEG
    from aufer.store import FaceStore

    (cache,) = (tmp_path / "cache" / "demo").iterdir()
    assert FaceStore(cache / "expr.sqlite").codec == "png" and FaceStore(cache / "au.sqlite").codec == "jpeg"
    assert t["real_photos"]["n_photos"] == 12 and not t["flip_tta"]  # 6 test people × (neutral, smiling)
    split = json.loads((run / "split.json").read_text())
    groups = [set(v) for v in split.values()]
    assert sum(map(len, groups)) == len(set().union(*groups))  # subject-exclusive
    import pandas as pd

    pred = pd.read_csv(run / "predictions.csv")
    assert pred.frame.nunique() == 472 and pred.face_detected.mean() > 0.9
    # the demo's run folder is a model for `aufer predict`; the sidecar says which model made the file
    img = tmp_path / "face.jpg"
    from aufer.bundled import bundled_faces

    img.write_bytes(open(bundled_faces().path.iloc[0], "rb").read())
    r2 = _aufer("predict", str(img), "--model", str(run), cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    for name in ("face_jpg_aufer.csv", "face_jpg_aufer.png", "face_jpg_aufer.html"):
        assert (tmp_path / name).is_file(), name
    side = json.loads((tmp_path / "face_jpg_aufer.csv.json").read_text())
    assert side["model"] == "aufer_fusion.faceapi" and "SYNTHETIC" in side["synthetic_note"] and side["default_model"] is None
    # the demo fuses its model with face-api's network (extra.fuse_faceapi), weights chosen on validation people
    assert set(m["fusion"]) >= {"w_faceapi", "w_probe", "bias"} and m["fusion"]["n_val_photos"] == 8
    assert "real_photos_aufer_alone" in t


def _tiny_checkpoint(folder):
    from aufer.models import create_model
    from aufer.models import save_model

    save_model(create_model("aufer_tiny", aus=(1, 12), input_size=32, width=8, dim=16), folder / "model")


def test_shipped_demo_recipes_are_valid_and_configs_builds_on_the_package_copy():
    from pathlib import Path

    from aufer.demo import DemoSettings, demo_recipe
    from aufer.engine.recipe import build_section, load, read

    root = Path(__file__).parents[1]
    shipped = read(root / "configs" / "demo" / "aufer-lite0_facswarp-london_160px_8e.yaml")
    packaged = read(demo_recipe())
    assert {k: v for k, v in shipped.items() if k != "name"} == {k: v for k, v in packaged.items() if k != "name"}
    for path, crop, model in ((demo_recipe(), 160, "aufer_lite.lite0"), (demo_recipe(quick=True), 112, "aufer_tiny")):
        raw = read(path)
        assert build_section(DemoSettings, raw["extra"], "extra").crop_size == crop and raw["model"]["name"] == model
        load(path, values={"data": {"au": {"store": "a"}, "expr": {"store": "b"}}})  # validates every key


def test_demo_rejects_unknown_settings(tmp_path):
    r = _aufer("demo", "--set", "extra.epochz=3", "--out", str(tmp_path / "d"), cwd=tmp_path)
    assert r.returncode == 2 and "extra.epochz" in r.stderr and "Traceback" not in r.stderr
    assert "n_val_people" in r.stderr  # the valid keys are listed
    r = _aufer("demo", "--set", "extra.fe_synth_exclude=[joy]", "--out", str(tmp_path / "d"), cwd=tmp_path)
    assert r.returncode == 2 and "joy" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("damage", ["missing", "truncated", "unknown_model", "shapes", "bad_json"])
def test_bad_model_files_are_one_line_errors(tmp_path, faces_df, damage):
    """A model folder or file that is missing, corrupted or truncated, or whose model.json names an unknown model
    or does not fit the weights: one line, exit code 2 (in-process CLI, no MediaPipe needed)."""
    import json as _json

    from typer.testing import CliRunner

    from aufer.cli import app

    folder = tmp_path / "m"
    _tiny_checkpoint(folder)
    w, j = folder / "model.safetensors", folder / "model.json"
    if damage == "missing":
        w.unlink()
    elif damage == "truncated":
        w.write_bytes(w.read_bytes()[:1000])
    elif damage == "unknown_model":
        cfg = _json.loads(j.read_text())
        cfg["model"]["name"] = "aufer_from_the_future"
        j.write_text(_json.dumps(cfg))
    elif damage == "shapes":
        cfg = _json.loads(j.read_text())
        cfg["model"]["dim"] = 24
        j.write_text(_json.dumps(cfg))
    else:
        j.write_text("{not json")
    res = CliRunner().invoke(app, ["predict", str(faces_df.path.iloc[0]), "--model", str(folder),
                                   "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "error:" in res.output
    needle = {"missing": "no checkpoint", "truncated": "truncated", "unknown_model": "aufer_from_the_future",
              "shapes": "do not fit", "bad_json": "not valid JSON"}[damage]
    assert needle in res.output


def test_predict_writes_table_sidecar_figure_report_and_overlay(tmp_path, monkeypatch):
    """One video with a name matplotlib's font lacks: every output of `aufer predict`, nothing leaking to stderr."""
    import warnings

    import av
    from typer.testing import CliRunner

    from aufer.cli import app
    from fakes import face_frame, write_video

    _tiny_checkpoint(tmp_path / "m")
    src = write_video(tmp_path / "顔 \U0001F600.mp4", [face_frame(0, shift=i) for i in range(6)])
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = CliRunner().invoke(app, ["predict", str(src), "--model", str(tmp_path / "m"), "--overlay"])
    assert r.exit_code == 0, r.stderr
    stem = "顔 \U0001F600_mp4_aufer"
    for suffix in (".csv", ".csv.json", ".png", ".html", "_overlay.mp4"):
        assert (tmp_path / (stem + suffix)).is_file(), suffix
    assert "warning" not in r.stderr.lower()
    with av.open(str(tmp_path / (stem + "_overlay.mp4"))) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6
    side = json.loads((tmp_path / (stem + ".csv.json")).read_text())
    assert side["schema_version"] == 2 and side["face"]["detector_range"] == "both" and side["frames"] == 6
