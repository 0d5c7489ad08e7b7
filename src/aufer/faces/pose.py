"""Head pose (pitch, yaw, roll in degrees) from the 478-point MediaPipe face mesh.

Method
------
A rigid rotation is fitted between a canonical frontal 3-D face and the observed mesh on points that facial
expressions hardly move (:data:`POSE_POINTS`: eye corners, nose ridge, upper forehead, temples) by orthogonal
Procrustes with scale (Kabsch 1976; Umeyama 1991): ``observed ≈ s · R · canonical + t``. The observed mesh is
used in 3-D: MediaPipe's x, y in image pixels and its relative depth z in the same pixel scale, exactly as
:class:`aufer.faces.mediapipe_backend.MediaPipeFaceDetector` stores them. The scale ``s`` and translation
``t`` are fitted too; only ``R`` is reported. The chin and mouth are left out because the jaw drops with
AU26/AU27 and would read as the head pitching down.

Axes and signs (aufer = OpenFace 2.x)
-------------------------------------
Camera coordinates: x to the image's right, y down the image, z away from the camera (MediaPipe's z sign: smaller
= closer). The frontal canonical face looks at the camera (its nose points to −z). A pose is the rotation
``R = Rx(pitch) · Ry(yaw) · Rz(roll)`` that turns the frontal face into the observed one, with right-handed
rotation matrices about these axes: the convention OpenFace 2.x documents for ``pose_Rx, pose_Ry, pose_Rz``
("R = Rx * Ry * Rz, left-handed positive sign", OpenFace wiki Output-Format and RotationHelpers.h), so
aufer's ``(pitch, yaw, roll)`` in degrees equal OpenFace's ``(pose_Rx, pose_Ry, pose_Rz)`` in radians times
180/π, with no sign flips.

* positive **pitch**: the face looks **down** (chin towards the chest; the nose tip moves down the image);
* positive **yaw**: the face turns towards the **image's left** (the nose tip moves left of the eyes), i.e. the
  subject turns to their own right;
* positive **roll**: the head tilts **clockwise as seen in the image** (the image-right eye drops lower than
  the image-left eye), i.e. towards the subject's left shoulder.

Ranges: pitch and roll in (−180, 180], yaw in [−90, 90] (gimbal lock at |yaw| = 90°).

Without ``image_size`` the angles are relative to the line of sight (an orthographic view: what the face mesh
sees). With ``image_size`` they are converted to the camera's axes for a pinhole camera with its principal point
at the image centre, as OpenFace's ``GetPose`` does; for a face near the image centre the two agree.

Canonical face
--------------
The mediapipe 0.10.21 wheel does not ship ``canonical_face_model.obj`` (only the graphs and models), so the
canonical face is built (:func:`build_canonical_face`, once, by ``tools/make_canonical_face.py``; shipped as
``aufer/data/canonical_face.npy``) as the mean of the MediaPipe meshes of aufer's 142 bundled frontal
neutral photos (London Set and Young Adult White Faces, CC BY 4.0; see ``aufer/data/ATTRIBUTION.md``):
generalised Procrustes on :data:`POSE_POINTS`, turned to the photos' mean orientation in camera coordinates,
then made exactly left/right symmetric with :func:`aufer.faces.landmarks.mesh_mirror`. Zero pitch is therefore
the mean head pitch of people photographed looking into a camera at face height, and zero yaw and roll come
from the face's symmetry. Checked once while writing this module (not at run time, and nothing of it is used
here): :func:`head_pose` reads MediaPipe's own canonical face model (``canonical_face_model.obj``, Apache-2.0,
``mediapipe/modules/face_geometry/data`` in the MediaPipe repository, not in the wheel) as pitch 0.13°, yaw 0°,
roll 0°; the 142 photos' own poses have standard deviations of 4.3° pitch, 2.4° yaw and 1.6° roll around it.

Off-centre faces: the conversion with ``image_size`` assumes the mesh shows the face as seen along the line of
sight (depth measured along that line). On synthetic pinhole views of a face 30–40° off the optical axis it
recovers the camera-axis pose within 1.5°, where the uncorrected angles are off by up to 30°.
"""

from __future__ import annotations

from functools import cache
from typing import Sequence

import numpy as np

from aufer.bundled import bundled_faces
from aufer.faces.landmarks import EYE_L_OUTER, EYE_R_OUTER, N_MESH_POINTS, RIGID, mesh_mirror
from aufer.faces.mediapipe_backend import MediaPipeFaceDetector
from aufer.media import read_image
from aufer.vocab import data_path

__all__ = ["POSE_POINTS", "build_canonical_face", "canonical_face", "head_pose", "rotation_matrix"]

#: mesh points the pose is fitted on: :data:`aufer.faces.landmarks.RIGID` (eye corners, nose ridge), the upper
#: forehead (10, 151, 109, 338) and the temples (127, 356); chosen among candidate sets on the bundled photos
#: and video for the smallest neutral-vs-smiling pose difference and frame-to-frame jitter.
POSE_POINTS: tuple[int, ...] = tuple(RIGID) + (10, 151, 109, 338, 127, 356)

#: focal length guess of OpenFace 2.x when no intrinsics are given (SequenceCapture::SetCameraIntrinsics):
#: f = (500 · W / 640 + 500 · H / 480) / 2 pixels
_OPENFACE_FOCAL = (500.0 / 640.0, 500.0 / 480.0)


def _axis_rotations(pitch, yaw, roll):
    p, y, r = (np.radians(np.asarray(a, dtype=np.float64)) for a in (pitch, yaw, roll))
    p, y, r = np.broadcast_arrays(p, y, r)
    zero, one = np.zeros_like(p), np.ones_like(p)

    def mat(rows):
        return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)

    rx = mat([[one, zero, zero], [zero, np.cos(p), -np.sin(p)], [zero, np.sin(p), np.cos(p)]])
    ry = mat([[np.cos(y), zero, np.sin(y)], [zero, one, zero], [-np.sin(y), zero, np.cos(y)]])
    rz = mat([[np.cos(r), -np.sin(r), zero], [np.sin(r), np.cos(r), zero], [zero, zero, one]])
    return rx, ry, rz


def rotation_matrix(pitch, yaw, roll) -> np.ndarray:
    """Rotation ``R = Rx(pitch) · Ry(yaw) · Rz(roll)`` for angles in degrees (aufer's and OpenFace's
    convention, see the module docstring), applied as ``R @ point`` to column vectors in camera coordinates
    (x right, y down, z away from the camera).

    Args:
        pitch, yaw, roll: degrees; scalars or arrays that broadcast together to shape ``S``.

    Returns:
        ``S + (3, 3)`` float64 rotation matrices (``(3, 3)`` for scalars).
    """
    rx, ry, rz = _axis_rotations(pitch, yaw, roll)
    return rx @ ry @ rz


def _euler(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pitch, yaw, roll) in degrees of ``(..., 3, 3)`` rotations, inverse of :func:`rotation_matrix`."""
    yaw = np.degrees(np.arcsin(np.clip(r[..., 0, 2], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(-r[..., 1, 2], r[..., 2, 2]))
    roll = np.degrees(np.arctan2(-r[..., 0, 1], r[..., 0, 0]))
    return pitch, yaw, roll


def _kabsch(ref: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Proper rotations ``(N, 3, 3)`` that best map centred ``ref (K, 3)`` onto centred ``obs (N, K, 3)`` in the
    least-squares sense (the uniform scale of the similarity does not change the rotation)."""
    a = ref - ref.mean(axis=0)
    b = obs - obs.mean(axis=1, keepdims=True)
    h = np.einsum("nki,kj->nij", b, a)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    d[d == 0] = 1.0
    u[..., :, 2] *= d[:, None]
    return u @ vt


def _unit(x: np.ndarray) -> np.ndarray:
    """A mesh centred on its pose points and scaled to unit RMS radius there."""
    x = x - x[list(POSE_POINTS)].mean(axis=0)
    return x / np.sqrt((x[list(POSE_POINTS)] ** 2).sum(axis=1).mean())


def _frontal_meshes() -> np.ndarray:
    """``(M, 468, 3)`` MediaPipe meshes (image pixels) of the bundled neutral frontal photos."""
    paths = bundled_faces().query("expression == 'neutral'")["path"]
    meshes = []
    with MediaPipeFaceDetector(max_faces=1) as det:
        for p in paths:
            faces = det.detect(read_image(p))
            if faces:
                meshes.append(faces[0].landmarks[:N_MESH_POINTS])
    if len(meshes) < 10:
        raise RuntimeError(f"only {len(meshes)} of {len(paths)} bundled frontal photos gave a face mesh; the "
                           "canonical face needs aufer's bundled photos (aufer/data/faces) and mediapipe==0.10.21")
    return np.stack(meshes)


def _canonical_from(meshes: np.ndarray) -> np.ndarray:
    """Symmetric mean face ``(468, 3)`` of frontal meshes ``(M, 468, 3)`` in the photos' mean camera orientation,
    in units of the outer-eye-corner distance, origin at the centroid of :data:`POSE_POINTS`."""
    pts = list(POSE_POINTS)
    x = np.stack([_unit(m) for m in meshes])
    mean = x[0]
    for _ in range(5):  # generalised Procrustes: align every mesh to the mean, average, repeat
        r = _kabsch(mean[pts], x[:, pts])  # mean -> each mesh
        mean = _unit(np.einsum("nji,nkj->nki", r, x).mean(axis=0))  # each mesh -> mean (R^T), averaged
    # turn the mean to the photos' mean orientation (chordal mean of the mean -> photo rotations)
    u, _, vt = np.linalg.svd(_kabsch(mean[pts], x[:, pts]).sum(axis=0))
    if np.linalg.det(u @ vt) < 0:
        u[:, 2] *= -1
    mean = mean @ (u @ vt).T
    # symmetry axis from the mirror pairs: keeps the photos' mean pitch, sets yaw and roll by symmetry
    mirror = mesh_mirror()[:N_MESH_POINTS]
    pair = mirror != np.arange(N_MESH_POINTS)
    diff = mean[mirror[pair]] - mean[pair]
    diff[diff[:, 0] < 0] *= -1  # every pair as image-left -> image-right
    ex = diff.sum(axis=0)
    ex /= np.linalg.norm(ex)
    ey = np.array([0.0, 1.0, 0.0]) - ex[1] * ex
    ey /= np.linalg.norm(ey)
    basis = np.stack([ex, ey, np.cross(ex, ey)])
    c = (mean - mean[pts].mean(axis=0)) @ basis.T
    c = (c + c[mirror] * np.array([-1.0, 1.0, 1.0])) / 2
    return c / np.linalg.norm(c[EYE_R_OUTER] - c[EYE_L_OUTER])


#: the canonical face as shipped (``python tools/make_canonical_face.py`` rebuilds it from the bundled photos)
CANONICAL_FILE = "canonical_face.npy"


def build_canonical_face() -> np.ndarray:
    """Build the canonical face from the bundled photos (module docstring), ``(468, 3)`` float64; about 2 s.

    Raises:
        RuntimeError: if fewer than 10 bundled photos give a face mesh (data or mediapipe missing).
    """
    return _canonical_from(_frontal_meshes())


@cache
def canonical_face() -> np.ndarray:
    """The canonical frontal face, ``(468, 3)`` float64, read-only: camera axes (x right, y down, z away from
    the camera; the nose tip has the smallest z), origin at the centroid of :data:`POSE_POINTS`, unit = the
    distance between the outer eye corners. Read from ``aufer/data/canonical_face.npy`` (made by
    :func:`build_canonical_face`, float32), so the pose needs neither MediaPipe nor the photos at run time.
    """
    c = np.load(data_path(CANONICAL_FILE)).astype(np.float64)
    if c.shape != (N_MESH_POINTS, 3):
        raise RuntimeError(f"{data_path(CANONICAL_FILE)} holds {c.shape}, expected ({N_MESH_POINTS}, 3); "
                           "reinstall aufer or run tools/make_canonical_face.py")
    c.setflags(write=False)
    return c


def _check_size(image_size, focal_px) -> tuple[float, float, float] | None:
    if image_size is None:
        if focal_px is not None:
            raise ValueError("focal_px needs image_size=(width, height) too; pass both or neither")
        return None
    try:
        w, h = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height) in pixels, got {image_size!r}") from None
    if not (w > 0 and h > 0 and np.isfinite(w) and np.isfinite(h)):
        raise ValueError(f"image_size must be two positive pixel counts (width, height), got {image_size!r}")
    if focal_px is None:
        f = 0.5 * (_OPENFACE_FOCAL[0] * w + _OPENFACE_FOCAL[1] * h)
    else:
        f = float(focal_px)
        if not (f > 0 and np.isfinite(f)):
            raise ValueError(f"focal_px must be a positive focal length in pixels, got {focal_px!r}")
    return w, h, f


def _ray_rotations(centres: np.ndarray, w: float, h: float, f: float) -> np.ndarray:
    """``(N, 3, 3)`` smallest rotations taking the optical axis (0, 0, 1) onto the ray through each face centre
    ``(N, 2)`` (pixels) of a pinhole camera with focal length ``f`` and principal point at the image centre."""
    d = np.concatenate([(centres - [w / 2, h / 2]) / f, np.ones((len(centres), 1))], axis=1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    axis = np.stack([-d[:, 1], d[:, 0], np.zeros(len(d))], axis=1)  # (0, 0, 1) x d
    s = np.linalg.norm(axis, axis=1)
    c = d[:, 2]
    k = np.zeros((len(d), 3, 3))
    k[:, 0, 2], k[:, 1, 2] = axis[:, 1], -axis[:, 0]
    k[:, 2, 0], k[:, 2, 1] = -axis[:, 1], axis[:, 0]
    # Rodrigues with the unnormalised axis: R = I + K + K^2 (1 - c) / s^2
    scale = np.where(s > 1e-12, (1 - c) / np.maximum(s, 1e-12) ** 2, 0.5)
    return np.eye(3) + k + (k @ k) * scale[:, None, None]


def head_pose(landmarks, image_size: Sequence[float] | None = None, focal_px: float | None = None):
    """Head pose of one face or a batch, in degrees, in aufer's convention (= OpenFace 2.x; module docstring):
    positive pitch = looking down, positive yaw = turned towards the image's left (the subject's right),
    positive roll = tilted clockwise in the image.

    Args:
        landmarks: MediaPipe mesh(es) as aufer stores them, ``(478, 3)`` or ``(N, 478, 3)`` (``468`` points
            without the irises also work): x, y in image pixels, z the relative depth in the same pixel scale
            (smaller = closer to the camera). A face whose pose points are not all finite gets NaN angles.
        image_size: ``(width, height)`` of the image in pixels. If given, the pose is converted from the line
            of sight to the camera's axes (pinhole camera, principal point at the image centre), which is what
            OpenFace reports; if omitted, the pose is relative to the line of sight.
        focal_px: focal length in pixels for that conversion; default OpenFace 2.x's guess
            ``(500 · width / 640 + 500 · height / 480) / 2``.

    Returns:
        ``(pitch, yaw, roll)``: three floats for one face, or three ``(N,)`` float64 arrays for a batch.

    Raises:
        ValueError: if ``landmarks`` is not ``(468 | 478, 3)`` or ``(N, 468 | 478, 3)``, if ``image_size`` is not
            two positive numbers, or if ``focal_px`` is not positive or is given without ``image_size``.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    single = lm.ndim == 2
    if single:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1] < N_MESH_POINTS or lm.shape[2] != 3:
        raise ValueError(f"head_pose needs MediaPipe meshes of shape (478, 3) or (N, 478, 3) with x, y, z in "
                         f"pixels, got {np.shape(landmarks)}")
    camera = _check_size(image_size, focal_px)
    pitch = np.full(len(lm), np.nan)
    yaw, roll = pitch.copy(), pitch.copy()
    obs = lm[:, list(POSE_POINTS)]
    ok = np.isfinite(obs).all(axis=(1, 2))
    if ok.any():
        ref = canonical_face()[list(POSE_POINTS)]
        r = _kabsch(ref, obs[ok])
        if camera is not None:
            r = _ray_rotations(obs[ok, :, :2].mean(axis=1), *camera) @ r
        pitch[ok], yaw[ok], roll[ok] = _euler(r)
    if single:
        return float(pitch[0]), float(yaw[0]), float(roll[0])
    return pitch, yaw, roll
