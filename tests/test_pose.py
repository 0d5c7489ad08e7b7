"""Head pose from the MediaPipe mesh: known rotations of the canonical face are recovered, the documented sign
conventions hold, and real meshes behave (slow: MediaPipe on a bundled photo)."""

import cv2
import numpy as np
import pytest

from aufer.faces.landmarks import EYE_L_OUTER, EYE_R_OUTER, NOSE_TIP, N_LANDMARKS, N_MESH_POINTS
from aufer.faces.pose import POSE_POINTS, canonical_face, head_pose, rotation_matrix

EYE_MID = (EYE_L_OUTER, EYE_R_OUTER)


@pytest.fixture(scope="module")
def canon():
    return canonical_face()


def _mesh(canon, r, scale=150.0, shift=(320.0, 240.0), noise=0.0, rng=None):
    """Orthographic image of the canonical face turned by ``r``: ``(478, 3)`` pixels (the 10 iris points are
    copies of eye corners; head_pose does not use them), z in the same pixel scale."""
    pts = canon @ np.asarray(r).T * scale + [shift[0], shift[1], 0.0]
    if noise:
        pts = pts + rng.normal(0.0, noise, pts.shape)
    iris = np.repeat(pts[[EYE_L_OUTER, EYE_R_OUTER]], 5, axis=0)
    return np.concatenate([pts, iris])


def _about(axis: str, deg: float) -> np.ndarray:
    """Right-handed rotation by ``deg`` about a camera axis, written out independently of rotation_matrix."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def test_rotation_matrix_is_rx_ry_rz_with_right_handed_axes(rng):
    p, y, r = rng.uniform(-60, 60, 3)
    m = rotation_matrix(p, y, r)
    assert m.shape == (3, 3)
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m) == pytest.approx(1.0)
    np.testing.assert_allclose(m, _about("x", p) @ _about("y", y) @ _about("z", r), atol=1e-12)
    # +90 roll takes the image's x axis (right) onto its y axis (down): clockwise on screen
    np.testing.assert_allclose(rotation_matrix(0, 0, 90) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    batch = rotation_matrix(np.array([0.0, 10.0]), 0.0, np.array([5.0, -5.0]))
    assert batch.shape == (2, 3, 3)
    np.testing.assert_allclose(batch[1], rotation_matrix(10, 0, -5))


def test_canonical_face_is_symmetric_frontal_and_in_eye_units(canon):
    assert canon.shape == (N_MESH_POINTS, 3)
    assert not canon.flags.writeable
    assert np.linalg.norm(canon[EYE_R_OUTER] - canon[EYE_L_OUTER]) == pytest.approx(1.0)
    assert canon[NOSE_TIP, 0] == pytest.approx(0.0, abs=1e-9)  # on the symmetry plane
    assert canon[EYE_L_OUTER, 0] < 0 < canon[EYE_R_OUTER, 0]  # image-left eye has the smaller x
    assert canon[NOSE_TIP, 2] < canon[list(EYE_MID), 2].min()  # the nose is closest to the camera
    assert canon[10, 1] < canon[NOSE_TIP, 1] < canon[152, 1]  # forehead above the nose above the chin (y down)


def test_frontal_face_gives_zero_at_any_scale_and_position(canon):
    for scale, shift in [(40.0, (10.0, 900.0)), (300.0, (640.0, 360.0))]:
        angles = head_pose(_mesh(canon, np.eye(3), scale, shift))
        np.testing.assert_allclose(angles, 0.0, atol=1e-6)
        assert all(isinstance(a, float) for a in angles)


@pytest.mark.parametrize("angles", [
    (10, 0, 0), (-10, 0, 0), (0, 20, 0), (0, -20, 0), (0, 0, 30), (0, 0, -30),
    (30, 0, 0), (0, 30, 0), (10, -20, 30), (-30, 20, -10), (20, 30, 15), (-20, -30, 25),
])
def test_recovers_known_rotations_from_noisy_pixels(canon, angles):
    rng = np.random.default_rng([a + 100 for a in angles])
    lm = _mesh(canon, rotation_matrix(*angles), scale=120.0, shift=(400.0, 300.0), noise=0.5, rng=rng)
    np.testing.assert_allclose(head_pose(lm), angles, atol=1.0)


def test_sign_conventions_from_the_mesh_geometry(canon):
    front = _mesh(canon, np.eye(3))
    assert front[NOSE_TIP, 0] == pytest.approx(front[list(EYE_MID), 0].mean())

    turned = _mesh(canon, _about("y", 20))  # a turn that moves the nose tip towards the image's left
    assert turned[NOSE_TIP, 0] < turned[list(EYE_MID), 0].mean() - 10
    p, y, r = head_pose(turned)
    assert y == pytest.approx(20, abs=1e-6) and abs(p) < 1e-6 and abs(r) < 1e-6

    down = _mesh(canon, _about("x", 15))  # nose tip moves down the image relative to the eyes: looking down
    drop = lambda m: m[NOSE_TIP, 1] - m[list(EYE_MID), 1].mean()  # noqa: E731
    assert drop(down) > drop(front)
    p, y, r = head_pose(down)
    assert p == pytest.approx(15, abs=1e-6) and abs(y) < 1e-6 and abs(r) < 1e-6

    tilted = _mesh(canon, _about("z", 12))  # image-right eye lower than the image-left eye: clockwise
    assert tilted[EYE_R_OUTER, 1] > tilted[EYE_L_OUTER, 1]
    p, y, r = head_pose(tilted)
    assert r == pytest.approx(12, abs=1e-6) and abs(p) < 1e-6 and abs(y) < 1e-6


def test_batch_with_a_missing_face(canon):
    lms = np.stack([_mesh(canon, rotation_matrix(a, -a, a / 2)) for a in (0.0, 15.0, 25.0)])
    lms[1, POSE_POINTS[0]] = np.nan
    p, y, r = head_pose(lms)
    assert p.shape == y.shape == r.shape == (3,)
    assert np.isnan([p[1], y[1], r[1]]).all()
    np.testing.assert_allclose([p[2], y[2], r[2]], [25, -25, 12.5], atol=1e-6)
    np.testing.assert_allclose(head_pose(lms[:, :N_MESH_POINTS])[0][[0, 2]], p[[0, 2]])  # 468 points work too


def _perspective_mesh(canon, angles, centre_mm, f, size):
    """A face of 65 mm eye-corner width at ``centre_mm`` (camera coordinates) seen by a pinhole camera: x, y
    projected, z = depth along the line of sight in pixels at the face's distance."""
    t = np.asarray(centre_mm, dtype=np.float64)
    pts = canon * 65.0 @ rotation_matrix(*angles).T + t
    uv = f * pts[:, :2] / pts[:, 2:] + np.asarray(size) / 2
    d = t / np.linalg.norm(t)
    # depth along the ray: component of (pts - t) on d, in pixels at the face's distance
    z = (pts - t) @ d * f / np.linalg.norm(t)
    return np.c_[uv, z]


def test_image_size_converts_an_off_centre_face_to_camera_axes(canon):
    size, f = (1280, 720), 600.0
    off = _perspective_mesh(canon, (5, -10, 8), (400.0, 150.0, 700.0), f, size)  # ~30 degrees off axis
    np.testing.assert_allclose(head_pose(off, image_size=size, focal_px=f), (5, -10, 8), atol=1.5)
    assert abs(head_pose(off)[1] - -10) > 10  # relative to the line of sight it looks turned
    centred = _perspective_mesh(canon, (10, 10, 10), (0.0, 0.0, 700.0), f, size)
    np.testing.assert_allclose(head_pose(centred, image_size=size), head_pose(centred), atol=0.05)


def test_bad_input_raises_clear_errors(canon):
    lm = _mesh(canon, np.eye(3))
    with pytest.raises(ValueError, match=r"\(478, 3\)"):
        head_pose(lm[:, :2])
    with pytest.raises(ValueError, match="478"):
        head_pose(lm[:100])
    with pytest.raises(ValueError, match="image_size"):
        head_pose(lm, image_size=(0, 480))
    with pytest.raises(ValueError, match="image_size"):
        head_pose(lm, focal_px=500.0)
    with pytest.raises(ValueError, match="focal_px"):
        head_pose(lm, image_size=(640, 480), focal_px=-1.0)


@pytest.mark.slow
def test_real_mesh_frontal_rolled_and_mirrored(detector, neutral_image):
    """A frontal photo reads near zero; turning the photo clockwise by 15 degrees adds 15 degrees of roll;
    mirroring it flips yaw and roll and keeps pitch."""
    def pose_of(img):
        faces = detector.detect(np.ascontiguousarray(img))
        assert faces, "no face found"
        assert faces[0].landmarks.shape == (N_LANDMARKS, 3)
        return np.array(head_pose(faces[0].landmarks))

    base = pose_of(neutral_image)
    assert abs(base[1]) < 8 and abs(base[2]) < 8 and abs(base[0]) < 15
    h, w = neutral_image.shape[:2]
    # OpenCV's positive angles turn the image counter-clockwise, so -15 is clockwise
    clockwise = cv2.warpAffine(neutral_image, cv2.getRotationMatrix2D((w / 2, h / 2), -15, 1.0), (w, h))
    change = pose_of(clockwise) - base
    assert change[2] == pytest.approx(15, abs=1.0)
    # MediaPipe's mesh of a turned photo is not exactly the turned mesh: pitch and yaw move by ~1 degree
    assert abs(change[0]) < 2.5 and abs(change[1]) < 2.5
    mirrored = pose_of(neutral_image[:, ::-1])
    np.testing.assert_allclose(mirrored, base * [1, -1, -1], atol=1.5)


@pytest.mark.slow
def test_shipped_canonical_face_is_what_the_bundled_photos_give():
    from aufer.faces.pose import build_canonical_face

    np.testing.assert_allclose(build_canonical_face(), canonical_face(), atol=1e-5)
