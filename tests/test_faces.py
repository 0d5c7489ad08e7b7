import numpy as np
import pytest

from aufer.bundled import bundled_video, template_landmarks
from aufer.faces import landmarks as L
from aufer.faces.align import align_face, five_points, template
from aufer.faces.base import Face
from aufer.faces.pipeline import FacePipeline
from aufer.faces.track import IoUTracker, primary_face
from aufer.media import read_image


@pytest.mark.slow
def test_pupils_match_human_placement(detector, faces_df):
    """Acceptance test: on the 142 bundled neutral photos, the pupil centres found by the pipeline lie within 3%
    of the inter-ocular distance of the human-placed template points 0 and 1 for at least 95% of the photos."""
    tpl = template_landmarks().query("point in (0, 1)")
    neutral = faces_df.query("expression == 'neutral'").set_index(["set", "face_id"])
    errors = []
    for (set_name, face_id), pts in tpl.groupby(["set", "face_id"]):
        p = pts.sort_values("point")[["x", "y"]].to_numpy()
        faces = detector.detect(read_image(neutral.loc[(set_name, face_id), "path"]))
        assert faces, f"no face found in {set_name}/{face_id}"
        lm = faces[0].landmarks
        iod = np.linalg.norm(p[1] - p[0])
        e = max(np.linalg.norm(lm[L.IRIS_L, :2] - p[0]), np.linalg.norm(lm[L.IRIS_R, :2] - p[1])) / iod
        errors.append(e)
    errors = np.array(errors)
    assert len(errors) == 142
    assert (errors <= 0.03).mean() >= 0.95, f"only {(errors <= 0.03).mean():.1%} within 3% (median {np.median(errors):.3f})"


def test_face_record_and_alignment(detector, neutral_image):
    faces = detector.detect(neutral_image)
    assert len(faces) == 1
    f = faces[0]
    assert f.landmarks.shape == (478, 3) and 0.5 <= f.score <= 1.0
    x, y, w, h = f.box
    assert 0 <= x < x + w <= 512 and 0 <= y < y + h <= 512
    a = align_face(neutral_image, f, 224)
    assert a.crop.shape == (224, 224, 3) and a.crop.dtype == np.uint8
    # the five alignment points land on the canonical template (within a few pixels)
    assert np.abs(five_points(a.landmarks) - template(224)).max() < 8


def test_no_face_gives_empty_list(detector):
    blank = np.full((360, 640, 3), 127, np.uint8)
    assert detector.detect(blank) == []
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_several_faces(detector, faces_df):
    a = read_image(faces_df.path.iloc[0])
    b = read_image(faces_df.path.iloc[5])
    both = np.concatenate([a, b], axis=1)  # two faces side by side
    faces = detector.detect(both)
    assert len(faces) == 2
    centres = sorted(f.box[0] + f.box[2] / 2 for f in faces)
    assert centres[0] < 512 < centres[1]


def test_video_stream_tracks_one_face():
    pipe = FacePipeline(crop_size=112)
    ids, n = [], 0
    for frame, faces in pipe.iter_media(bundled_video()):
        assert frame.image.shape == (360, 640, 3)
        assert not np.isnan(frame.timestamp_s)
        ids += [a.face_id for a in faces]
        n += 1
        if n == 24:
            break
    assert n == 24 and len(ids) >= 22 and set(ids) == {0}


def test_tracker_keeps_and_creates_ids():
    t = IoUTracker()
    assert t.update([np.array([0, 0, 10, 10]), np.array([50, 50, 10, 10])]) == [0, 1]
    assert t.update([np.array([51, 50, 10, 10]), np.array([1, 0, 10, 10])]) == [1, 0]
    assert t.update([np.array([200, 200, 10, 10])]) == [2]


def test_primary_face_follows_the_previous_box_else_the_largest():
    def face(x, w):
        return Face(box=np.array([x, 0.0, w, w]), score=0.9, landmarks=np.zeros((L.N_LANDMARKS, 3)))

    small, large = face(0, 10), face(100, 40)
    assert primary_face([], None) is None
    assert primary_face([small, large], None) is large
    assert primary_face([small, large], np.array([1.0, 0, 10, 10])) is small  # IoU 0.82: the same face
    assert primary_face([small, large], np.array([7.0, 0, 10, 10])) is large  # IoU 0.18 < 0.3: a new face
    assert primary_face([small, large], np.array([7.0, 0, 10, 10]), min_iou=0.1) is small
