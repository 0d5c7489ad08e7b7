import json
import shutil

import numpy as np
import pandas as pd
import pytest

from aufer.bundled import bundled_video
from aufer.faces.pipeline import FacePipeline
from aufer.media import MediaError
from aufer.predict import columns, predict, predict_to_csv
from aufer.predict.rows import _source_key


@pytest.fixture(scope="module")
def pipeline(detector):
    return FacePipeline(crop_size=64, detector=detector)


def test_columns_follow_openface_naming(tiny_model):
    cols = columns(tiny_model.aus, tiny_model.emotions)
    assert cols[:13] == ["frame", "timestamp_s", "file", "status", "face_id", "face_detected", "success",
                         "confidence", "face_score", "face_x", "face_y", "face_w", "face_h"]
    assert "AU01_p" in cols and "AU12_c" in cols and "emo_happiness" in cols and cols[-1] == "emotion"


def test_folder_with_faces_no_face_and_broken_file(tmp_path, faces_df, tiny_model, pipeline):
    shutil.copy(faces_df.path.iloc[0], tmp_path / "a.jpg")
    import cv2

    cv2.imwrite(str(tmp_path / "b.png"), np.full((100, 100, 3), 200, np.uint8))  # no face
    (tmp_path / "c.jpg").write_bytes(b"broken")
    df = predict(tmp_path, tiny_model, pipeline)
    assert list(df.columns) == columns(tiny_model.aus, tiny_model.emotions)
    assert list(df.frame) == [0, 1, 2]
    assert list(df.face_detected) == [True, False, False]
    assert list(df.status) == ["ok", "no_face", "unreadable"] and list(df.success) == [1, 0, 0]
    row = df.iloc[0]
    assert row.confidence == row.face_score > 0.5 and np.isfinite([row.pose_pitch, row.pose_yaw, row.pose_roll]).all()
    assert abs(row.pose_yaw) < 15 and abs(row.pose_roll) < 10  # a frontal studio photo
    # the five alignment points lie inside the face box, eyes above the mouth
    xs, ys = [row[f"lm5_x{i}"] for i in range(5)], [row[f"lm5_y{i}"] for i in range(5)]
    assert all(row.face_x <= x <= row.face_x + row.face_w for x in xs) and ys[0] < ys[3] and xs[0] < xs[1]
    assert 0 <= row.AU12_p <= 1 and row.AU12_c in (0, 1) and row.emotion in tiny_model.emotions
    emo = df.filter(like="emo_").iloc[0]
    assert emo.sum() == pytest.approx(1.0, abs=1e-5)
    assert df.iloc[1].emotion == "" and np.isnan(df.iloc[1].AU12_p)


def test_two_faces_give_two_rows(tmp_path, faces_df, tiny_model, pipeline):
    from aufer.media import read_image
    import cv2

    both = np.concatenate([read_image(faces_df.path.iloc[0]), read_image(faces_df.path.iloc[3])], 1)
    cv2.imwrite(str(tmp_path / "two.jpg"), both[:, :, ::-1])
    df = predict(tmp_path / "two.jpg", tiny_model, pipeline)
    assert len(df) == 2 and set(df.face_id) == {0, 1} and df.face_detected.all()


def test_missing_input_is_a_media_error(tiny_model, pipeline):
    with pytest.raises(MediaError):
        predict("no/such/video.mp4", tiny_model, pipeline)


class _CountingDetector:
    """Passes detection through and counts the frames it was asked about."""

    def __init__(self, detector):
        self.detector, self.n = detector, 0

    def detect(self, image):
        self.n += 1
        return self.detector.detect(image)


@pytest.mark.slow
def test_video_csv_is_atomic_and_resumes(tmp_path, tiny_model, detector):
    src = tmp_path / "short.mp4"
    _cut_video(bundled_video(), src, 30)
    out = tmp_path / "pred.csv"
    counting = _CountingDetector(detector)
    pipeline = FacePipeline(crop_size=64, detector=counting)
    full = predict_to_csv(src, tiny_model, out, pipeline=pipeline, chunk_rows=8)
    ref = pd.read_csv(full)
    assert len(ref) == 30 and ref.frame.tolist() == list(range(30)) and ref.face_detected.all()
    assert not (tmp_path / "pred.csv.partial").exists() and counting.n == 30
    # simulate an interruption: a partial file holding the first 12 frames (the last one possibly cut short)
    out2 = tmp_path / "again.csv"
    lines = out.read_text().splitlines(keepends=True)
    (tmp_path / "again.csv.partial").write_text("".join(lines[:13]))
    key = _source_key(src, tiny_model, flip=True, crop_size=64)
    (tmp_path / "again.csv.partial.json").write_text(json.dumps(key))
    seen = []
    counting.n = 0
    predict_to_csv(src, tiny_model, out2, pipeline=pipeline, chunk_rows=8, progress=lambda d, n: seen.append(d))
    assert counting.n == 30 - 11  # resumed at frame 11 (frame 11 is redone: it may have been incomplete)
    assert seen[0] > 11 and seen[-1] == 30
    again = pd.read_csv(out2)
    assert again.frame.tolist() == list(range(30))
    pd.testing.assert_frame_equal(again.drop(columns=["file"]), ref.drop(columns=["file"]), atol=1e-5)
    # a partial made with other options (no flip averaging) is not resumed
    (tmp_path / "again.csv.partial").write_text("".join(lines[:13]))
    (tmp_path / "again.csv.partial.json").write_text(json.dumps(dict(key, flip=False)))
    counting.n = 0
    predict_to_csv(src, tiny_model, out2, pipeline=pipeline, chunk_rows=8)
    assert counting.n == 30


def test_resume_key_records_flip_and_crop(tmp_path, tiny_model):
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    a, b = _source_key(f, tiny_model, True, 64), _source_key(f, tiny_model, False, 64)
    assert a["flip"] is True and b["flip"] is False and a != b
    assert _source_key(f, tiny_model, True, 112) != a and a["model"] == tiny_model.config


def test_pipeline_crop_size_comes_from_the_default_cfg(tiny_model):
    from types import SimpleNamespace

    from aufer.models import default_cfg
    from aufer.models.contract import crop_size

    assert crop_size(SimpleNamespace(default_cfg=default_cfg("aufer_hf"), input_size=224)) == 256
    assert crop_size(SimpleNamespace(input_size=96)) == 96  # a model without default cfg
    assert crop_size(tiny_model) == tiny_model.input_size == 64  # the crop follows an overridden input size


def _cut_video(src, dst, n_frames):
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream("libx264", rate=24)
        s_out.width, s_out.height, s_out.pix_fmt = s_in.codec_context.width, s_in.codec_context.height, "yuv420p"
        for i, frame in enumerate(inp.decode(s_in)):
            if i == n_frames:
                break
            for p in s_out.encode(frame.reformat(format="yuv420p")):
                out.mux(p)
        for p in s_out.encode():
            out.mux(p)


def test_top_level_detect_is_predict(tmp_path, faces_df, tiny_model, pipeline):
    import aufer
    import aufer.predict as module  # importing the module must not shadow the function

    df = aufer.detect(faces_df.path.iloc[0], tiny_model, pipeline)
    assert len(df) == 1 and df.face_detected.all() and aufer.detect is module.predict


# ------------------------------------------------------------------------------------------------ report.py
def _table(aus, emotions, timestamps, faces_per_frame):
    """A predictions table: frame k has faces_per_frame[k] faces (0 = one no-face row); values are
    deterministic so that the plotted data can be checked."""
    rows = []
    for k, (ts, n) in enumerate(zip(timestamps, faces_per_frame)):
        for i in range(max(n, 1)):
            row = dict.fromkeys(columns(aus, emotions), np.nan)
            row.update(frame=k, timestamp_s=ts, file="v.mp4", face_id=i if n else -1, face_detected=bool(n),
                       emotion="")
            if n:
                for j, c in enumerate(c for c in row if c.endswith("_p")):
                    row[c] = (k + j + i) % 10 / 10
                for j, c in enumerate(c for c in row if c.startswith("emo_")):
                    row[c] = (k * j + i) % 7 / 7
            rows.append(row)
    return pd.DataFrame(rows, columns=columns(aus, emotions))


def test_timeseries_plot_has_one_row_per_au_and_one_line_per_emotion(tmp_path):
    from aufer.predict.report import plot_timeseries, timeseries_figure

    aus, emotions = (1, 4, 12), ("happiness", "sadness", "neutral", "anger")
    df = _table(aus, emotions, [0.0, 0.04, 0.08, 0.12, 0.16], [1, 2, 0, 1, 1])
    fig = timeseries_figure(df, title="t")
    heat, lines = fig.axes[0], fig.axes[1]
    assert heat.collections[0].get_array().shape == (3, 5)
    assert [ln.get_label() for ln in lines.get_lines()] == list(emotions)
    main = df[df.face_id == 0].set_index("frame").reindex(range(5))  # face 0 is in 4 frames, face 1 in one
    for ln, e in zip(lines.get_lines(), emotions):
        np.testing.assert_allclose(ln.get_xdata(), [0.0, 0.04, 0.08, 0.12, 0.16])
        np.testing.assert_allclose(ln.get_ydata(), main[f"emo_{e}"].to_numpy(dtype=float))  # NaN at frame 2
    assert np.ma.getmaskarray(heat.collections[0].get_array())[:, 2].all()  # frame 2 has no face 0: blank
    assert lines.get_xlabel() == "time (s)"
    png = plot_timeseries(df, tmp_path / "ts.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variable_frame_rate_heat_map_and_lines_share_the_real_time_axis():
    """A video that runs at 30 frames/s, then 10: the heat map's cells sit on the real timestamps, where the emotion
    lines put their points (not on evenly spaced frames)."""
    from aufer.predict.report import time_edges, timeseries_figure

    t = [0.0, 1 / 30, 2 / 30, 3 / 30, 3 / 30 + 0.1, 3 / 30 + 0.2, 3 / 30 + 0.3]
    df = _table((1, 12), ("happiness", "neutral"), t, [1] * len(t))
    fig = timeseries_figure(df)
    heat, lines = fig.axes[0], fig.axes[1]
    for ln in lines.get_lines():
        np.testing.assert_allclose(ln.get_xdata(), t)
    edges = heat.collections[0].get_coordinates()[0, :, 0]  # x of the cell corners along the top row
    np.testing.assert_allclose(edges, time_edges(np.array(t)))
    centres = (edges[1:] + edges[:-1]) / 2
    np.testing.assert_allclose(centres[1:-1], t[1:-1], atol=0.02)  # cells straddle their own frame's time
    np.testing.assert_allclose(edges[[0, -1]], [-1 / 60, t[-1] + 0.05])
    assert heat.get_xlim()[1] == pytest.approx(t[-1] + 0.05)  # the axis ends with the video, not after 7 even steps
    np.testing.assert_allclose(time_edges(np.array([2.0])), [1.5, 2.5])


def test_still_image_plot_shows_its_values():
    from aufer.predict.report import timeseries_figure

    df = _table((1, 12), ("happiness", "sadness"), [np.nan], [1])
    fig = timeseries_figure(df)
    lines = fig.axes[1].get_lines()
    assert len(lines) == 2 and fig.axes[1].get_xlabel() == "frame"
    for ln in lines:  # one point each: visible only as a marker
        assert len(ln.get_ydata()) == 1 and np.isfinite(ln.get_ydata()).all() and ln.get_marker() not in ("", "None", None)
    assert fig.axes[0].collections[0].get_array().shape == (2, 1)


def test_report_leaves_the_backend_alone_and_hides_glyph_warnings(tmp_path, monkeypatch):
    import importlib
    import warnings

    import matplotlib

    import aufer.predict.report

    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: pytest.fail("aufer.predict.report switched the backend"))
    report = importlib.reload(aufer.predict.report)
    assert not hasattr(report, "plt")
    df = _table((1,), ("happiness",), [0.0, 0.1], [1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report.plot_timeseries(df, tmp_path / "a.png", title="\u9854 \U0001F600.mp4")  # not in DejaVu Sans
        report.plot_confusion([[3, 1], [0, 2]], ["a", "b"], tmp_path / "c.png", title="\u9854")
        report.plot_history([{"epoch": 1, "loss": 1.0, "val_f1": 0.2}, {"epoch": 2, "loss": 0.5, "val_f1": 0.4}],
                            tmp_path / "h.png")
    cm = report.confusion_figure([[3, 1], [0, 2]], ["a", "b"])
    assert [t.get_text() for t in cm.axes[0].texts] == ["3", "1", "0", "2"]
    assert len(report.history_figure([{"epoch": 1, "loss": 1.0, "val_f1": 0.2}]).axes[1].get_lines()) == 1


# ------------------------------------------------------------------------------------- schema 2 and outputs
def test_mesh_landmarks_in_image_pixels_on_request(faces_df, tiny_model, pipeline):
    from aufer.media import read_image

    path = faces_df.path.iloc[0]
    df = predict(path, tiny_model, pipeline, mesh=True)
    face = pipeline.detector.detect(read_image(path))[0]
    got = np.array([[df.iloc[0][f"x_{i}"], df.iloc[0][f"y_{i}"]] for i in range(478)])
    np.testing.assert_allclose(got, face.landmarks[:, :2], atol=1e-3)
    assert "x_0" not in predict(path, tiny_model, pipeline).columns


def test_api_takes_a_list_of_paths_and_image_arrays(faces_df, tiny_model, pipeline):
    from aufer.media import read_image

    paths = list(faces_df.path.iloc[:2])
    df = predict(paths, tiny_model, pipeline)
    assert list(df.file) == paths and df.face_detected.all()
    arr = predict([read_image(p) for p in paths], tiny_model, pipeline, flip=True)
    assert list(arr.file) == ["<array 0>", "<array 1>"]
    np.testing.assert_allclose(arr.filter(like="_p").to_numpy(float), df.filter(like="_p").to_numpy(float), atol=1e-5)
    with pytest.raises(MediaError, match=r"expected uint8 of shape \(H, W\) greyscale"):
        predict(np.zeros((10, 10, 3), np.float32), tiny_model, pipeline)


def test_parquet_output_equals_the_csv(tmp_path, faces_df, tiny_model, pipeline):
    from aufer.predict import predict_to_file, read_table

    shutil.copy(faces_df.path.iloc[0], tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"broken")
    c = predict_to_file(tmp_path, tiny_model, tmp_path / "o" / "t.csv", pipeline=pipeline)
    q = predict_to_file(tmp_path, tiny_model, tmp_path / "o" / "t.parquet", pipeline=pipeline)
    a, b = read_table(c.output), read_table(q.output)
    assert list(a.columns) == list(b.columns) and list(b.status) == ["ok", "unreadable"]
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert b.emotion.iloc[1] == "" and str(b.dtypes["face_id"]) == "Int64"
    assert c.warnings == q.warnings and "b.jpg" in c.warnings[0] and "unreadable" in c.warnings[0]
    assert (c.n_rows, c.n_frames, c.frames_with_face, c.face_ids) == (2, 2, 1, [0])


def _faststart_video(path, n_frames):
    """A video whose index (moov) comes first, so that a file cut short still opens and promises n_frames."""
    import av

    from fakes import face_frame

    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for i in range(n_frames):
            for p in s.encode(av.VideoFrame.from_ndarray(face_frame(0, shift=i % 5), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_a_truncated_video_warns_with_the_last_good_frame(tmp_path, tiny_model, pipeline):
    from aufer.predict import predict_to_file

    src = _faststart_video(tmp_path / "full.mp4", 40)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 8 // 10])  # the first GOP survives, the tail is lost
    r = predict_to_file(cut, tiny_model, tmp_path / "cut.csv", pipeline=pipeline)
    assert 0 < r.n_frames < 40
    assert len(r.warnings) == 1
    w = r.warnings[0]
    assert f"only {r.n_frames} could be decoded" in w and f"last good frame is {r.n_frames - 1}" in w
    assert f"{40 - r.n_frames} frames are lost" in w


def test_an_unreadable_input_leaves_no_partial_file(tmp_path, tiny_model, pipeline):
    from aufer.predict import predict_to_file

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(MediaError):
        predict_to_file(bad, tiny_model, tmp_path / "o.csv", pipeline=pipeline)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


class _InterruptAfter:
    """A detector that raises KeyboardInterrupt at its n-th call (Ctrl-C in the middle of a video)."""

    def __init__(self, detector, n):
        self.detector, self.n, self.calls = detector, n, 0

    def detect(self, image):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.detector.detect(image)


def test_ctrl_c_keeps_complete_frames_and_the_rerun_says_where_it_resumes(tmp_path, tiny_model, detector):
    from aufer.predict import predict_to_file

    from fakes import face_frame, write_video

    src = write_video(tmp_path / "v.mp4", [face_frame(0, shift=i) for i in range(20)])
    out = tmp_path / "v.csv"
    with pytest.raises(KeyboardInterrupt):  # at frame 14; frames 12 and 13 wait in the model's batch
        predict_to_file(src, tiny_model, out, pipeline=FacePipeline(64, _InterruptAfter(detector, 15)),
                        batch_size=4, chunk_rows=4)
    partial = pd.read_csv(tmp_path / "v.csv.partial")
    assert partial.frame.tolist() == list(range(12)) and not out.exists()
    said = []
    r = predict_to_file(src, tiny_model, out, pipeline=FacePipeline(64, detector), notify=said.append)
    assert r.resumed_from == 11 and "resuming from frame 11" in said[0]  # the last saved frame is redone
    assert pd.read_csv(out).frame.tolist() == list(range(20))


def test_resume_drops_a_line_cut_short_by_an_interrupt(tmp_path):
    from aufer.predict.rows import _truncate_to_complete_frames

    p = tmp_path / "x.csv.partial"
    p.write_text("frame,face_id\n0,0\n1,0\n1,1\n2,0\n2")  # the last write stopped inside a line
    assert _truncate_to_complete_frames(p) == 2
    assert p.read_text() == "frame,face_id\n0,0\n1,0\n1,1\n"
