"""Index sets of the MediaPipe 478-point face mesh (468 mesh points + 10 iris points), its left/right mirror
permutation and its five alignment points.

These are facts of the mesh topology (mediapipe ``face_mesh_connections``), not published constants.
"Image-left" is the side with the smaller x in an upright, non-mirrored image: the subject's right.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from aufer.vocab import read_json

#: points of the refined MediaPipe mesh: 468 face-mesh points + 10 iris points
N_LANDMARKS = 478
#: face-mesh points; the iris points follow them (indices N_MESH_POINTS .. N_LANDMARKS - 1)
N_MESH_POINTS = 468

# eye corners (image-left eye: outer 33, inner 133; image-right eye: inner 362, outer 263)
EYE_L_OUTER, EYE_L_INNER, EYE_R_INNER, EYE_R_OUTER = 33, 133, 362, 263
IRIS_L, IRIS_R = 468, 473  # iris centres (refined landmarks)
NOSE_TIP = 1
MOUTH_L, MOUTH_R = 61, 291  # outer mouth corners
LIP_UPPER_INNER_MID, LIP_LOWER_INNER_MID = 13, 14
CHIN = 152

BROW_L_INNER = (107, 55, 66, 65)
BROW_L_MID = (105, 52)
BROW_L_OUTER = (70, 46, 63, 53)
BROW_R_INNER = (336, 285, 296, 295)
BROW_R_MID = (334, 282)
BROW_R_OUTER = (300, 276, 293, 283)

UPPER_LID_L = (246, 161, 160, 159, 158, 157, 173)
LOWER_LID_L = (7, 163, 144, 145, 153, 154, 155)
UPPER_LID_R = (466, 388, 387, 386, 385, 384, 398)
LOWER_LID_R = (249, 390, 373, 374, 380, 381, 382)

LIPS_OUTER_UPPER = (185, 40, 39, 37, 0, 267, 269, 270, 409)
LIPS_OUTER_LOWER = (146, 91, 181, 84, 17, 314, 405, 321, 375)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (95, 88, 178, 87, 14, 317, 402, 318, 324)
MOUTH_CORNERS = (61, 291, 78, 308)

# inner-lip contour as a closed polygon (image-left corner, upper lip, image-right corner, lower lip back)
INNER_LIP_RING = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)

NOSE_ALAE = (98, 327, 64, 294, 129, 358, 48, 278)
CHEEK_L = (117, 118, 119, 100, 101, 50, 36, 205)
CHEEK_R = (346, 347, 348, 329, 330, 280, 266, 425)
CHIN_PAD = (152, 175, 199, 200, 18, 148, 377, 176, 400)

# points whose position hardly changes with facial expression (eye corners and the nose ridge)
RIGID = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4)


@cache
def mesh_mirror() -> np.ndarray:
    """``(478,)`` left/right permutation of the mesh: ``mirror[i]`` is the point that lands on point ``i`` when
    the face is flipped horizontally (data/mesh_mirror.json, derived by tools/make_mesh_mirror.py)."""
    return np.asarray(read_json("mesh_mirror.json")["mirror"], dtype=np.int64)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The five alignment points of a 478-point MediaPipe mesh, shape ``(5, 2)`` in the landmarks' units.

    Eye centres are the midpoints of the eye corners (stable under gaze and blinks), then the nose tip and
    the outer mouth corners, in the order of :func:`aufer.faces.align.template`.

    Raises:
        ValueError: if ``landmarks`` is not ``(N >= 468, 2 or 3)``.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < N_MESH_POINTS or lm.shape[1] < 2:
        raise ValueError(f"expected MediaPipe mesh landmarks of shape ({N_LANDMARKS}, 2|3), got {lm.shape}")
    xy = lm[:, :2]
    return np.stack([
        (xy[EYE_L_OUTER] + xy[EYE_L_INNER]) / 2,
        (xy[EYE_R_INNER] + xy[EYE_R_OUTER]) / 2,
        xy[NOSE_TIP],
        xy[MOUTH_L],
        xy[MOUTH_R],
    ])
