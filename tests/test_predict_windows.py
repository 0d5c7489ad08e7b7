"""Clip models in `aufer predict`: T-frame windows over each face track, one row per frame."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aufer.predict.windows import WindowScheduler


def _face(track, frame):
    crop = np.full((4, 4, 3), frame % 256, np.uint8)  # the crop encodes its frame, to see what each window held
    return SimpleNamespace(face_id=track, crop=crop, landmarks=np.zeros((478, 3), np.float32))


class _Recorder:
    """A fake T-frame model: p_au of a frame = the frame index its crop encodes, seen through the window."""

    def __init__(self):
        self.windows = []

    def run(self, crops, lms):
        self.windows.append([int(c[0, 0, 0]) for c in crops[0]] if len(crops) == 1 else
                            [[int(c[0, 0, 0]) for c in w] for w in crops])
        frames = crops[:, :, 0, 0, 0].float().numpy()
        return frames[..., None], np.zeros((len(crops), 0), np.float32)


def _drive(tracks_per_frame, window, stride):
    rec, filled = _Recorder(), {}
    sched = WindowScheduler(rec.run, lambda row, pa, pe: filled.setdefault(row["key"], []).append(float(pa[0])),
                            window, stride)
    for f, tracks in enumerate(tracks_per_frame):
        sched.add_frame(f, [({"key": (k, f)}, _face(k, f)) for k in tracks])
    sched.finish()
    return rec, filled


def test_non_overlapping_chunks_and_the_padded_tail():
    rec, filled = _drive([[0]] * 10, window=4, stride=4)
    # 0-3, 4-7, then the last 2 frames with the previous frames as context (no padding needed)
    assert rec.windows == [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert all(len(v) == 1 for v in filled.values()) and len(filled) == 10  # every frame predicted exactly once
    assert all(v == [float(f)] for (_, f), v in filled.items())  # each frame got its own output


def test_a_track_shorter_than_the_window_is_padded_with_its_last_frame():
    rec, filled = _drive([[0], [0], [0]], window=5, stride=5)
    assert rec.windows == [[0, 1, 2, 2, 2]] and sorted(filled) == [(0, 0), (0, 1), (0, 2)]


def test_sliding_windows_with_a_stride():
    rec, filled = _drive([[0]] * 7, window=4, stride=1)
    assert rec.windows == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]]
    assert len(filled) == 7 and all(len(v) == 1 for v in filled.values())


def test_a_gap_ends_the_track_and_two_tracks_are_batched():
    frames = [[0, 1], [0, 1], [0], [0, 1], [0, 1]]  # track 1 misses frame 2: its first part ends there
    rec, filled = _drive(frames, window=2, stride=2)
    assert len(filled) == 9 and all(len(v) == 1 for v in filled.values())
    assert [[0, 1], [0, 1]] in rec.windows  # tracks 0 and 1 in one batch at frame 1
    flat = [w for x in rec.windows for w in (x if isinstance(x[0], list) else [x])]
    assert [0, 1] in flat and [2, 3] in flat and [3, 4] in flat  # track 1 restarts at frame 3 after its gap


def test_bad_window_arguments():
    with pytest.raises(ValueError, match="stride"):
        WindowScheduler(None, None, 4, 5)


def test_an_mdhr_model_analyses_a_video_one_row_per_frame(tmp_path, detector):
    """A tiny random MDHR (T = 16 window) through `aufer.predict.predict` on a 20-frame video with a face."""
    from aufer.faces.pipeline import FacePipeline
    from aufer.models import create_model
    from aufer.models.contract import frame_window
    from aufer.predict import predict
    from fakes import face_frame, write_video

    torch.manual_seed(0)
    tiny = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                layer_type="basic")
    m = create_model("mdhr.bp4d_resnet50", hf_config=tiny, pretrained=False, input_size=64, dim=16).eval()
    assert frame_window(m) == 16
    src = write_video(tmp_path / "v.mp4", [face_frame(0, shift=i % 4) for i in range(20)])
    df = predict(src, m, FacePipeline(crop_size=64, detector=detector))
    assert df.frame.tolist() == list(range(20)) and df.face_detected.all()
    p = df.filter(regex=r"^AU\d+_p$").to_numpy(float)
    assert p.shape == (20, 12) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert (df.emotion == "").all()  # AU-only
