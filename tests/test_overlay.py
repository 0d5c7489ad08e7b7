"""Overlay video (aufer.predict.overlay): boxes and labels drawn on the predicted frames only, same frame count."""

import math

import numpy as np
import pandas as pd
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from aufer.media import MediaError  # noqa: E402
from aufer.predict.overlay import draw_annotations, frame_annotations, write_overlay_video  # noqa: E402

W, H, N = 160, 120, 20
BOX = (40.0, 30.0, 60.0, 50.0)  # x, y, w, h in pixels
FACE_FRAMES = range(5, 10)


def _write_video(path, n=N, size=(W, H), codec="libx264", pix_fmt="yuv420p", options=None):
    """Solid-colour frames, a slightly different colour each frame; returns the RGB arrays written."""
    imgs = []
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25, options=options or ({"crf": "8"} if codec == "libx264" else {}))
        s.width, s.height, s.pix_fmt = size[0], size[1], pix_fmt
        for i in range(n):
            img = np.full((size[1], size[0], 3), (70 + 4 * i, 100, 130), np.uint8)
            imgs.append(img)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return imgs


def _read(path):
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        return frames, st.codec_context.name, float(st.average_rate)


def _table(path, frames=FACE_FRAMES, box=BOX):
    rows = []
    for f in range(N):
        base = {"frame": f, "timestamp_s": f / 25, "file": str(path)}
        if f in frames:
            rows.append({**base, "face_id": 1, "face_x": box[0], "face_y": box[1], "face_w": box[2], "face_h": box[3],
                         "face_score": 0.9, "face_detected": True, "AU01_p": 0.10, "AU04_p": 0.50, "AU06_p": 0.70,
                         "AU12_p": 0.93, "emo_neutral": 0.2, "emo_happiness": 0.8, "emotion": "happiness",
                         "pose_yaw": 3.0})
        else:
            rows.append({**base, "face_id": -1, "face_detected": False, "emotion": ""})
    return pd.DataFrame(rows)


def _border_mask(box=BOX, size=(W, H), width=3):
    m = np.zeros((size[1], size[0]), np.uint8)
    x, y, w, h = (int(v) for v in box)
    cv2.rectangle(m, (x, y), (x + w, y + h), 1, width)
    return m.astype(bool)


def _border_diff(a, b, mask):
    return float(np.abs(a.astype(float) - b.astype(float))[mask].mean())


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    p = tmp_path_factory.mktemp("overlay") / "in.mp4"
    _write_video(p)
    return p


def test_overlay_marks_only_the_frames_with_a_face(video, tmp_path):
    out = write_overlay_video(video, _table(video), tmp_path / "sub" / "out.mp4")
    assert out == tmp_path / "sub" / "out.mp4" and out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["out.mp4"]  # no temporary file left
    src, _, src_fps = _read(video)
    got, codec, fps = _read(out)
    assert len(got) == len(src) == N
    assert got[0].shape == (H, W, 3)
    assert codec == ("h264" if "libx264" in av.codecs_available else "mpeg4")
    assert fps == pytest.approx(src_fps)
    mask = _border_mask()
    diffs = [_border_diff(g, s, mask) for g, s in zip(got, src)]
    for i in FACE_FRAMES:
        assert diffs[i] > 25, (i, diffs[i])  # the box (and its labels) are drawn
    for i in (0, 4, 10, N - 1):
        assert diffs[i] < 4, (i, diffs[i])  # unchanged up to codec noise
    assert _border_diff(got[0], src[0], np.ones((H, W), bool)) < 3


def test_overlay_falls_back_to_mpeg4(video, tmp_path, monkeypatch):
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    out = write_overlay_video(video, _table(video), tmp_path / "out.mp4", fps=10)
    got, codec, fps = _read(out)
    assert codec == "mpeg4" and len(got) == N and fps == pytest.approx(10)
    assert _border_diff(got[7], got[0], _border_mask()) > 25


def test_overlay_pads_odd_sizes(tmp_path):
    p = tmp_path / "odd.mkv"
    _write_video(p, n=6, size=(81, 61), codec="ffv1", pix_fmt="yuv444p")
    df = _table(p, frames=[2], box=(10, 10, 30, 30)).query("frame < 6")
    got, _, _ = _read(write_overlay_video(p, df, tmp_path / "odd_out.mp4"))
    assert len(got) == 6 and got[0].shape == (62, 82, 3)
    m = _border_mask((10, 10, 30, 30), (82, 62))
    assert _border_diff(got[2], got[0], m) > 25


def test_overlay_errors_leave_nothing(tmp_path, video):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(MediaError):
        write_overlay_video(bad, _table(bad), tmp_path / "out.mp4")
    with pytest.raises(ValueError, match="face_x"):
        write_overlay_video(video, pd.DataFrame({"frame": [0]}), tmp_path / "out.mp4")
    with pytest.raises(ValueError, match="fps"):
        write_overlay_video(video, _table(video), tmp_path / "out.mp4", fps=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_frame_annotations_lines_and_tolerance():
    df = _table("x.mp4")
    df.loc[df.frame == 6, "face_x"] = math.nan  # a row without a usable box is skipped
    notes = frame_annotations(df, top_aus=2)
    assert sorted(notes) == [5, 7, 8, 9]
    (a,) = notes[5]
    assert a["face_id"] == 1 and a["box"] == BOX
    assert a["lines"] == ["id 1", "happiness 0.80", "AU12 0.93", "AU06 0.70"]
    assert frame_annotations(df, top_aus=0)[5][0]["lines"] == ["id 1", "happiness 0.80"]
    # no emo_ or AU columns: the emotion column is used; no face_detected column: face_id >= 0 counts
    slim = df.drop(columns=[c for c in df if c.startswith(("emo_", "AU"))] + ["face_detected"])
    assert frame_annotations(slim)[9][0]["lines"] == ["id 1", "happiness"]
    with pytest.raises(ValueError, match="top_aus"):
        frame_annotations(df, top_aus=-1)


def test_draw_annotations_draws_inside_the_image_only():
    img = np.zeros((50, 60, 3), np.uint8)
    notes = [{"face_id": 0, "box": (50.0, 40.0, 30.0, 30.0), "lines": ["id 0", "neutral 0.50"]}]
    out = draw_annotations(img, notes)  # a box running off the frame must not raise
    assert out is img and out.any()
    assert out[40, 50:].any()  # the top edge of the box
