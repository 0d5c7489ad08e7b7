"""Multi-face detection and tracking: option validation, merge and tile rules, the tracker on the ground truth of
a constructed clip (fast, no MediaPipe), the video detection schedule with a scripted detector, and MediaPipe
end to end on the clip and on a 5-face group photo (slow)."""

import numpy as np
import pytest
from multiface_clip import GAP, IDENTITIES, build_clip, group_photo, id_switches, match_to_truth

from aufer.faces import landmarks as L
from aufer.faces.align import template
from aufer.faces.base import Face
from aufer.faces.mediapipe_backend import (MediaPipeFaceDetector, check_max_faces, check_min_face_score,
                                           merge_detections, resolve_min_face_score, tile_grid)
from aufer.faces.pipeline import FacePipeline
from aufer.faces.track import FaceTracker, IoUTracker, appearance_descriptor


@pytest.fixture(scope="module")
def clip():
    return build_clip()


# ------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3", True, None])
def test_max_faces_must_be_a_positive_int(bad):
    for make in (lambda: FacePipeline(max_faces=bad), lambda: MediaPipeFaceDetector(max_faces=bad)):
        with pytest.raises(ValueError, match="max_faces") as e:
            make()  # validated before MediaPipe starts
        assert "\n" not in str(e.value)
    assert check_max_faces(np.int64(3)) == 3


@pytest.mark.parametrize("bad", [0, 0.0, -0.2, 1.5, float("nan"), "high", True])
def test_min_face_score_must_be_in_zero_one(bad):
    for make in (lambda: FacePipeline(min_face_score=bad), lambda: MediaPipeFaceDetector(min_face_score=bad)):
        with pytest.raises(ValueError, match="min_face_score") as e:
            make()
        assert "\n" not in str(e.value)
    assert check_min_face_score(1) == 1.0 and check_min_face_score(0.05) == 0.05


def test_other_options_are_validated():
    with pytest.raises(ValueError, match="detector_range"):
        FacePipeline(detector_range="medium")
    with pytest.raises(ValueError, match="full_range_every"):
        FacePipeline(full_range_every=0)
    with pytest.raises(ValueError, match="tile_size"):
        MediaPipeFaceDetector(tile_size=32)
    with pytest.raises(ValueError, match="min_score"):
        FacePipeline(min_face_score=0.6, min_score=0.7)  # old and new name disagree
    assert resolve_min_face_score(None, 0.6) == 0.6 == resolve_min_face_score(0.6, 0.6)  # the old name still works
    assert resolve_min_face_score(None, None) == 0.5  # the documented default


# ------------------------------------------------------------------------------------ merge and tiles


def test_merge_keeps_one_box_per_face_best_first():
    big = (np.array([100.0, 100, 80, 80]), 0.9)
    shifted = (np.array([108.0, 104, 80, 80]), 0.8)  # IoU 0.72 with big: same face, another model
    part = (np.array([100.0, 100, 40, 60]), 0.95)  # a tile's partial view, all inside big
    other = (np.array([300.0, 100, 60, 60]), 0.6)
    touching = (np.array([170.0, 100, 60, 60]), 0.7)  # overlaps big a little: another face
    kept = merge_detections([shifted, other, big, touching, part])
    assert [s for _, s in kept] == [0.95, 0.9, 0.7, 0.6]


def test_tiles_cover_wide_images_with_overlap():
    t = tile_grid((360, 640, 3), 576)
    assert [(y, s) for _, y, s in t] == [(0, 360)] * 3
    xs = [x for x, _, _ in t]
    assert xs[0] == 0 and xs[-1] + 360 == 640 and all(b - a <= 240 for a, b in zip(xs, xs[1:]))
    t = tile_grid((1080, 1920, 3), 576)
    assert {s for *_, s in t} == {576} and max(x for x, *_ in t) + 576 == 1920 and max(y for _, y, _ in t) + 576 == 1080
    assert tile_grid((512, 512, 3), 576) == [] and tile_grid((360, 640, 3), None) == []


# ------------------------------------------------------------------------------------------ tracker


def _face_box(tb, rng, jitter=3.0):
    """A detector-like box (the face inside a pasted photo square) with pixel jitter."""
    x, y, s, _ = tb.box
    return np.array([x + 0.22 * s, y + 0.25 * s, 0.56 * s, 0.6 * s]) + rng.uniform(-jitter, jitter, 4)


@pytest.mark.parametrize("with_descriptors", [False, True])
def test_tracker_on_truth_boxes_has_no_id_switch(clip, with_descriptors):
    """Ground-truth boxes with jitter; B dropped whenever A covers it (10 frames), C absent 5 frames, and 10% of
    the other detections dropped at random: every person keeps one id."""
    frames, truth = clip
    rng = np.random.default_rng(1)
    tracker = FaceTracker()
    assignments = []
    for image, tr in zip(frames, truth):
        kept = [r for r in tr if r.visible and rng.random() > 0.1]
        boxes = [_face_box(r, rng) for r in kept]
        descs = None
        if with_descriptors:
            descs = [appearance_descriptor(image[int(b[1]):int(b[1] + b[3]), int(b[0]):int(b[0] + b[2])])
                     for b in boxes]
        ids = tracker.update(boxes, descs)
        assignments.append({r.identity: k for r, k in zip(kept, ids)})
    assert id_switches(assignments) == 0
    per_person = {p: {a[p] for a in assignments if p in a} for p in IDENTITIES}
    assert all(len(v) == 1 for v in per_person.values()) and len(set().union(*per_person.values())) == 4
    # C was seen right before and right after its 5-frame absence, under the same id
    assert "C" in assignments[GAP[0] - 1] or "C" in assignments[GAP[0] - 2]
    assert any("C" in a for a in assignments[GAP[-1] + 1:GAP[-1] + 3])


def test_id_survives_a_five_frame_miss_but_not_max_age():
    t = FaceTracker(max_age=6)
    box = lambda i: np.array([10.0 + 6 * i, 50, 40, 40])  # noqa: E731 - moving 6 px per frame
    ids = [t.update([box(i)])[0] for i in range(5)]
    for _ in range(5):
        assert t.update([]) == []
    ids.append(t.update([box(10)])[0])  # 30 px further on: the constant-velocity prediction is there
    assert ids == [0] * 6
    for _ in range(7):
        t.update([])
    assert t.update([box(18)]) == [1]  # gone for more than max_age frames: a new face


def test_faces_crossing_head_on_keep_their_ids():
    """Two faces on one line moving towards each other, through full overlap: the motion prediction, not the last
    box, decides; the old frame-to-frame IoU rule swapped them."""
    rng = np.random.default_rng(0)
    t = FaceTracker()
    for i in range(30):
        a = np.array([20.0 + 10 * i, 100, 60, 60]) + rng.uniform(-1, 1, 4)
        b = np.array([255.0 - 10 * i, 104, 60, 60]) + rng.uniform(-1, 1, 4)
        swap = i % 2 == 1  # the detector's order changes from frame to frame
        ids = t.update([b, a] if swap else [a, b])
        assert (ids[::-1] if swap else ids) == [0, 1], f"frame {i}"


def test_assignment_is_global_not_greedy():
    t = IoUTracker()
    assert t.update([np.array([0.0, 0, 10, 10]), np.array([6.0, 0, 10, 10])]) == [0, 1]
    # greedy would give the best pair (IoU 0.67) to track 0 and a new id to the other box
    assert t.update([np.array([2.0, 0, 10, 10]), np.array([-3.0, 0, 10, 10])]) == [1, 0]


def test_appearance_decides_between_two_equal_overlaps():
    t = FaceTracker()
    da, db = np.eye(8)[0], np.eye(8)[1]
    assert t.update([np.array([0.0, 0, 20, 20]), np.array([20.0, 0, 20, 20])], [da, db]) == [0, 1]
    mid = np.array([10.0, 0, 20, 20])  # as close to both tracks
    assert t.update([mid], [db]) == [1]
    t2 = FaceTracker()
    t2.update([np.array([0.0, 0, 20, 20]), np.array([20.0, 0, 20, 20])], [da, db])
    assert t2.update([mid], [da]) == [0]
    with pytest.raises(ValueError, match="descriptors"):
        t2.update([mid], [da, db])


def test_appearance_descriptor_tells_people_apart(clip):
    frames, truth = clip
    crops = {r.identity: frames[0][int(r.box[1]):int(r.box[1] + r.box[3]), int(r.box[0]):int(r.box[0] + r.box[2])]
             for r in truth[0]}
    d = {k: appearance_descriptor(c) for k, c in crops.items()}
    assert all(v.shape == (176,) and abs(np.linalg.norm(v) - 1) < 1e-9 for v in d.values())
    again = appearance_descriptor(crops["A"][3:-2, 2:-3])  # the same face, boxed a few pixels differently
    assert again @ d["A"] > 0.9 > max(again @ d[k] for k in "BCD")
    with pytest.raises(ValueError):
        appearance_descriptor(np.zeros((2, 2, 3), np.uint8))


# ------------------------------------------------------------------------------- video schedule


def _fake_face(box) -> Face:
    """A face whose mesh has only its five alignment points set, placed as the template in the box."""
    x, y, w, h = box
    lm = np.zeros((L.N_LANDMARKS, 3))
    five = template(1) * [w, h] + [x, y]
    for i, p in zip(((L.EYE_L_OUTER, L.EYE_L_INNER), (L.EYE_R_INNER, L.EYE_R_OUTER), (L.NOSE_TIP,), (L.MOUTH_L,),
                     (L.MOUTH_R,)), five):
        lm[list(i), :2] = p
    return Face(box=np.asarray(box, dtype=np.float64), score=0.9, landmarks=lm)


class _ScriptedDetector:
    """Two faces; short range sees face 1 only on some frames, full range sees both; records its passes."""

    detector_range, max_faces = "both", 4

    def __init__(self, short_sees_second):
        self.frame, self.calls, self.short_sees_second = -1, [], short_sees_second

    def boxes(self, image, ranges):
        if ranges == ("short",):
            self.frame += 1
        self.calls.append((self.frame, ranges))
        a, b = (np.array([40.0, 40, 80, 80]), 0.9), (np.array([200.0 + 2 * self.frame, 40, 80, 80]), 0.8)
        return [a, b] if ranges == ("full",) or self.short_sees_second(self.frame) else [a]

    def faces_in_boxes(self, image, dets):
        return [_fake_face(b) for b, _ in dets]

    def detect(self, image):  # pragma: no cover - the schedule uses boxes/faces_in_boxes
        raise AssertionError("detect() called on video")


def test_video_runs_full_range_when_due_or_when_short_range_misses_a_tracked_face():
    det = _ScriptedDetector(lambda f: f not in (5, 6))  # short range misses face 1 in frames 5 and 6
    pipe = FacePipeline(crop_size=32, detector=det, full_range_every=4)
    images = [np.zeros((160, 320, 3), np.uint8)] * 12
    out = list(pipe.track_frames(images))
    full = [f for f, r in det.calls if r == ("full",)]
    assert full == [0, 4, 5, 6, 10]  # first frame, every 4th since the last, and the two misses
    assert all(sorted(a.face_id for a in faces) == [0, 1] for faces in out)  # no face lost, no id churn
    assert all(len(faces) == 2 for faces in out)


def test_video_schedule_picks_up_a_face_only_full_range_sees():
    det = _ScriptedDetector(lambda f: False)  # face 1 is small: short range never sees it
    pipe = FacePipeline(crop_size=32, detector=det, full_range_every=8)
    out = list(pipe.track_frames([np.zeros((160, 320, 3), np.uint8)] * 6))
    assert [len(f) for f in out] == [2] * 6  # once tracked, each miss of short range calls full range
    assert {a.face_id for f in out for a in f} == {0, 1}


# ------------------------------------------------------------------------------------- MediaPipe


@pytest.mark.slow
def test_group_photo_all_five_faces_found(detector):
    image, truth = group_photo((60, 90, 120, 160, 200))
    assert detector.detector_range == "both"
    faces = detector.detect(image)
    m = match_to_truth([f.box for f in faces], truth)
    assert len(faces) == 4 and len(m) == 4  # max_faces=4 by default: the best four
    wide = MediaPipeFaceDetector(max_faces=8)
    try:
        faces = wide.detect(image)
        m = match_to_truth([f.box for f in faces], truth)
        assert len(faces) == 5 and sorted(m.values()) == sorted(r.identity for r in truth)
        wide.max_faces = 2
        assert len(wide.detect(image)) == 2
        wide.detector_range = "short"  # the old first pass alone misses most of them
        assert len(wide.detect(image)) <= 2
    finally:
        wide.close()


@pytest.mark.slow
def test_pipeline_on_the_constructed_clip(clip):
    frames, truth = clip
    pipe = FacePipeline(crop_size=112, max_faces=6)
    assert pipe.detector.min_face_score == 0.5 and pipe.detector.min_score == 0.5
    found = list(pipe.track_frames(frames))
    visible = hits = 0
    assignments = []
    for faces, tr in zip(found, truth):
        m = match_to_truth([a.face.box for a in faces], tr)
        assert len(m) == len(faces), "a face found where there is none"
        assignments.append({ident: faces[i].face_id for i, ident in m.items()})
        for r in tr:
            if r.visible:
                visible += 1
                hits += r.identity in m.values()
    per_person = {p: sum(p in a for a, tr in zip(assignments, truth) if any(r.identity == p and r.visible for r in tr))
                  / sum(any(r.identity == p and r.visible for r in tr) for tr in truth) for p in IDENTITIES}
    assert min(per_person.values()) >= 0.9, per_person
    assert id_switches(assignments) <= 1
    assert len({k for a in assignments for k in a.values()}) <= 5
    pipe.detector.close()
