"""aufer.detect / aufer.predict.predict against `aufer predict`: one face-detection default, the warning of a frame
that reached the cap, the per-process cache of the default model and face pipelines, and in-memory images
(greyscale, RGB, RGBA) with one clear error for anything else."""

import inspect
import json
import os
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import aufer
from aufer.cli import app
from aufer.media import MediaError, read_image
from aufer.predict import cache
from aufer.predict.cli import PredictOptions
from aufer.predict.defaults import DEFAULT_DETECTOR_RANGE, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE_SCORE, FaceCapWarning
from aufer.predict.rows import predict

from fakes import write_image


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from aufer.models import create_model, save_model

    d = tmp_path_factory.mktemp("model")
    save_model(create_model("aufer_tiny", aus=(1, 12), input_size=32, width=8, dim=16), d / "model")
    return d


@pytest.fixture
def as_default(model_dir, monkeypatch):
    """Make the tiny model aufer's 'default model' for the cache (counting its loads), with an empty cache."""
    from aufer.models import load_model

    loads = []

    def counting(path):
        loads.append(path)
        return load_model(path)

    monkeypatch.setattr(cache, "default_model_path", lambda: model_dir / "model.safetensors")
    monkeypatch.setattr(cache, "load_model", counting)
    cache.clear_cache()
    yield loads
    cache.clear_cache()


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """A still with five people side by side (tests/multiface_clip.py)."""
    from multiface_clip import group_photo

    return write_image(tmp_path_factory.mktemp("group") / "group.jpg", group_photo()[0])


# ------------------------------------------------------------------------------------ one default, one cap
def test_one_max_faces_default_for_the_cli_and_python():
    cli_defaults = {p.name: p.default.default for p in inspect.signature(
        __import__("aufer.cli", fromlist=["predict"]).predict).parameters.values()}
    assert cli_defaults["max_faces"] == PredictOptions().max_faces == DEFAULT_MAX_FACES == 8
    assert cli_defaults["min_face_score"] == PredictOptions().min_face_score == DEFAULT_MIN_FACE_SCORE
    assert cli_defaults["detector_range"] == PredictOptions().detector_range == DEFAULT_DETECTOR_RANGE


def test_detect_finds_the_faces_the_cli_finds(group, model_dir, as_default, tmp_path, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FaceCapWarning)  # five faces are under the default cap: no warning
        df = aufer.detect(group)
    assert len(df) == 5 and df.face_detected.all()
    assert cache.cache_info()["pipelines"] == [(32, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE_SCORE, "both")]
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["predict", str(group), "--model", str(model_dir), "--no-plot", "--no-report"])
    assert r.exit_code == 0, r.stderr
    cli = pd.read_csv(tmp_path / "group_jpg_aufer.csv")
    box = ["face_x", "face_y", "face_w", "face_h"]
    np.testing.assert_allclose(cli[box].to_numpy(float), df[box].to_numpy(float), atol=1e-3)
    np.testing.assert_allclose(cli["AU12_p"], df["AU12_p"], atol=1e-5)


def test_a_run_at_the_cap_says_so_in_python(group, model_dir):
    with pytest.warns(FaceCapWarning, match=r"1 of 1 frame\(s\) hold 2 faces.*max_faces=4"):
        df = predict(group, str(model_dir), max_faces=2)
    assert len(df) == 2


def test_a_run_at_the_cap_says_so_on_stderr_and_in_the_sidecar(group, model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["predict", str(group), "--model", str(model_dir), "--no-plot", "--no-report",
                                 "--max-faces", "3"])
    assert r.exit_code == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and "hold 3 faces" in lines[0] and "--max-faces 6" in lines[0]
    side = json.loads((tmp_path / "group_jpg_aufer.csv.json").read_text())
    assert side["face"]["max_faces"] == 3 and any("hold 3 faces" in w for w in side["warnings"])


def test_own_pipeline_and_detection_settings_do_not_mix(tiny_model, detector):
    from aufer.faces.pipeline import FacePipeline

    with pytest.raises(ValueError, match="max_faces.*your own pipeline"):
        predict(np.zeros((32, 32), np.uint8), tiny_model, FacePipeline(64, detector), max_faces=3)


# ------------------------------------------------------------------------------------------------- cache
class _FakePipeline:
    made = []

    def __init__(self, crop_size, max_faces, min_face_score, detector_range):
        self.key = (crop_size, max_faces, min_face_score, detector_range)
        self.closed = False
        self.detector = self
        _FakePipeline.made.append(self)

    def close(self):
        self.closed = True


def test_pipelines_are_keyed_by_every_setting_and_the_oldest_is_closed(monkeypatch):
    monkeypatch.setattr(cache, "FacePipeline", _FakePipeline)
    cache.clear_cache()
    _FakePipeline.made = []
    a = cache.face_pipeline(160, 8, 0.5, "both")
    assert cache.face_pipeline(160, 8, 0.5, "both") is a
    others = [cache.face_pipeline(*k) for k in ((112, 8, 0.5, "both"), (160, 4, 0.5, "both"),
                                                 (160, 8, 0.7, "both"), (160, 8, 0.5, "short"))]
    assert len({id(p) for p in [a, *others]}) == 5 and len(_FakePipeline.made) == 5
    assert a.closed and not any(p.closed for p in others)  # MAX_PIPELINES = 4: the least recently used went
    cache.clear_cache()
    assert all(p.closed for p in others) and cache.cache_info()["pipelines"] == []


def test_the_default_model_is_loaded_once_per_device_and_reloaded_when_replaced(as_default, model_dir):
    m = cache.default_model()
    assert cache.default_model("cpu") is m and len(as_default) == 1
    assert cache._model_key("cpu") != cache._model_key("cuda:1")  # another device, another entry
    st = (model_dir / "model.safetensors").stat()
    os.utime(model_dir / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # re-exported
    assert cache.default_model() is not m and len(as_default) == 2


def test_cached_calls_give_the_same_rows_as_a_fresh_set_up(as_default, faces_df):
    paths = list(faces_df.path.iloc[:2])
    first = aufer.detect(paths)
    pipe = cache.face_pipeline(32, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE_SCORE, "both")
    second = aufer.detect(paths)
    assert len(as_default) == 1 and cache.face_pipeline(32, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE_SCORE, "both") is pipe
    cache.clear_cache()
    fresh = aufer.detect(paths)
    assert len(as_default) == 2
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first, fresh)


# ------------------------------------------------------------------------------------------ image arrays
@pytest.fixture(scope="module")
def rgb(faces_df):
    return read_image(faces_df.path.iloc[0])


def _numbers(df):
    return df.drop(columns=["file", "status", "emotion"]).to_numpy(dtype=float)


def test_a_greyscale_array_is_one_image(rgb, tiny_model, detector):
    from aufer.faces.pipeline import FacePipeline

    pipe = FacePipeline(64, detector)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    df = predict(grey, tiny_model, pipe)
    assert len(df) == 1 and df.face_detected.all() and df.file.tolist() == ["<array 0>"]
    np.testing.assert_allclose(_numbers(df), _numbers(predict(np.dstack([grey] * 3), tiny_model, pipe)))
    np.testing.assert_allclose(_numbers(predict(grey[:, :, None], tiny_model, pipe)), _numbers(df))
    both = predict([grey, grey], tiny_model, pipe)
    assert both.file.tolist() == ["<array 0>", "<array 1>"]


def test_an_rgba_array_drops_its_alpha(rgb, tiny_model, detector):
    from aufer.faces.pipeline import FacePipeline

    pipe = FacePipeline(64, detector)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    np.testing.assert_allclose(_numbers(predict(rgba, tiny_model, pipe)), _numbers(predict(rgb, tiny_model, pipe)))
    stack = predict(np.stack([rgb, rgb]), tiny_model, pipe)  # (N, H, W, 3)
    assert len(stack) == 2 and stack.face_detected.all()


@pytest.mark.parametrize("bad, words", [
    (np.zeros((8, 8, 3), np.float32), "float32 array of shape (8, 8, 3)"),
    (np.zeros((8, 8, 2), np.uint8), "a 3-D array is one image"),
    (np.zeros((8, 8), np.uint16), "16-bit"),
    (np.zeros((0, 8), np.uint8), "shape (0, 8)"),
    (np.zeros((2, 2, 2, 2, 2), np.uint8), "(H, W) greyscale"),
    (42, "cannot analyse an object of type int"),
    ([np.zeros((8, 8), np.uint8), "a.jpg"], "not both"),
    ([np.zeros((8, 8), np.uint8), None], "input 1 is an object of type NoneType"),
])
def test_anything_else_is_one_clear_error(bad, words, tiny_model):
    with pytest.raises(MediaError) as e:
        predict(bad, tiny_model, pipeline=object())  # fails before the pipeline is used
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    assert "(H, W) greyscale" in msg or "not both" in msg
