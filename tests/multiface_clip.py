"""A constructed multi-face clip with known identities, made in memory from the bundled neutral photos.

Four people (London 001, 031, 061 and Canada's first neutral photo), each photo downscaled to ``size`` pixels, are
pasted onto a 960 × 540 grey canvas as the frames of a video:

* ``A`` walks left → right along the top and ``B`` right → left a little lower: they CROSS around the middle of
  the clip; their squares overlap for about ten frames, ``A`` (pasted last) in front, hiding part of ``B``;
* ``C`` drifts slowly at the bottom right and is absent (not pasted) for frames ``GAP`` (5 frames), then comes
  back where it would have been;
* ``D`` drifts slowly at the bottom left.

Every square bobs up and down by a few pixels. :func:`build_clip` gives the frames and, per frame, one
:class:`TruthBox` per pasted face: identity, square ``x, y, w, h`` (pixels) and whether it is fully visible
(inside the canvas and not overlapped by a face pasted after it). :func:`group_photo` gives a still with five
people side by side at different sizes. Use from a test: ``from multiface_clip import build_clip``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from aufer.bundled import bundled_faces
from aufer.media import read_image

W, H = 960, 540
N_FRAMES = 48
#: frames in which C is absent
GAP = range(28, 33)
IDENTITIES = ("A", "B", "C", "D")
_PHOTOS = {"A": ("london", "001"), "B": ("london", "031"), "C": ("london", "061"), "D": ("canada", None)}
_BACKGROUND = 96


@dataclass(frozen=True)
class TruthBox:
    """One pasted face: ``identity`` (``"A"``..), ``box`` ``(x, y, w, h)`` in pixels (the pasted square) and
    ``visible`` (fully visible: inside the canvas and covered by no other face)."""

    identity: str
    box: tuple[float, float, float, float]
    visible: bool


@lru_cache(maxsize=None)
def photo(identity: str) -> np.ndarray:
    """The 512 × 512 RGB neutral photo of a clip identity (read-only array)."""
    df = bundled_faces().query("expression == 'neutral'")
    set_name, face_id = _PHOTOS[identity]
    rows = df[df.set == set_name]
    path = rows.path.iloc[0] if face_id is None else rows.set_index("face_id").loc[face_id, "path"]
    img = read_image(path)
    img.setflags(write=False)
    return img


def _paths(t: int, size: int) -> dict[str, tuple[float, float]]:
    """Top-left corner (pixels) of each identity's square in frame ``t``."""
    u = t / (N_FRAMES - 1)
    bob = 4.0 * np.sin(2 * np.pi * t / 12)
    return {
        "A": (40 + u * (W - 80 - size), 40 + bob),
        "B": (W - 40 - size - u * (W - 80 - size), 120 - bob),
        "C": (W - 60 - size - 50 * u, H - 20 - size + bob),
        "D": (60 + 50 * u, H - 20 - size - bob),
    }


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def build_clip(size: int = 160, n_frames: int = N_FRAMES) -> tuple[list[np.ndarray], list[list[TruthBox]]]:
    """The clip: ``n_frames`` (≤ 48) frames, each ``(540, 960, 3)`` uint8 RGB, and per frame the list of
    :class:`TruthBox` of the faces pasted in it (C absent in frames :data:`GAP`). ``size`` is the side of the
    pasted photos in pixels (the face itself is about 0.55 × ``size`` wide). Deterministic.

    Raises:
        ValueError: if ``n_frames`` is not in 1..48 or ``size`` not in 64..240.
    """
    if not 1 <= n_frames <= N_FRAMES or not 64 <= size <= 240:
        raise ValueError(f"n_frames must be in 1..{N_FRAMES} and size in 64..240, got {n_frames}, {size}")
    small = {k: cv2.resize(photo(k), (size, size), interpolation=cv2.INTER_AREA) for k in IDENTITIES}
    order = ("D", "C", "B", "A")  # paste order: later ones are in front
    frames, truth = [], []
    for t in range(n_frames):
        canvas = np.full((H, W, 3), _BACKGROUND, np.uint8)
        pos = _paths(t, size)
        present = [k for k in order if not (k == "C" and t in GAP)]
        boxes = {}
        for k in present:
            x, y = (int(round(v)) for v in pos[k])
            canvas[y:y + size, x:x + size] = small[k]
            boxes[k] = (float(x), float(y), float(size), float(size))
        rows = []
        for i, k in enumerate(present):
            b = boxes[k]
            inside = b[0] >= 0 and b[1] >= 0 and b[0] + b[2] <= W and b[1] + b[3] <= H
            covered = any(_overlap(b, boxes[j]) for j in present[i + 1:])
            rows.append(TruthBox(k, b, inside and not covered))
        frames.append(canvas)
        truth.append(sorted(rows, key=lambda r: r.identity))
    return frames, truth


def group_photo(sizes: tuple[int, ...] = (60, 90, 120, 160, 200)) -> tuple[np.ndarray, list[TruthBox]]:
    """A 960 × 540 still with ``len(sizes)`` (≤ 5) different people side by side, photo ``i`` downscaled to
    ``sizes[i]`` pixels, centred vertically, equal gaps; with their :class:`TruthBox` es.

    Raises:
        ValueError: for more than 5 sizes or sizes that do not fit side by side.
    """
    people = [("london", "001"), ("london", "011"), ("london", "021"), ("canada", None), ("london", "081")]
    if len(sizes) > len(people) or sum(sizes) + 10 * (len(sizes) + 1) > W or max(sizes) > H:
        raise ValueError(f"cannot place {sizes} on a {W}x{H} canvas")
    df = bundled_faces().query("expression == 'neutral'")
    canvas = np.full((H, W, 3), _BACKGROUND, np.uint8)
    gap = (W - sum(sizes)) // (len(sizes) + 1)
    x, rows = gap, []
    for (set_name, face_id), s in zip(people, sizes):
        rows_set = df[df.set == set_name]
        path = rows_set.path.iloc[1] if face_id is None else rows_set.set_index("face_id").loc[face_id, "path"]
        small = cv2.resize(read_image(path), (s, s), interpolation=cv2.INTER_AREA)
        y = (H - s) // 2
        canvas[y:y + s, x:x + s] = small
        rows.append(TruthBox(f"{set_name}/{face_id or 'c1'}", (float(x), float(y), float(s), float(s)), True))
        x += s + gap
    return canvas, rows


def match_to_truth(det_boxes, truth: list[TruthBox]) -> dict[int, str]:
    """``{detection index: identity}``: each detection box (``x, y, w, h`` pixels) whose centre lies in a truth
    square, assigned one-to-one by least centre distance (Hungarian); unmatched detections are left out."""
    from scipy.optimize import linear_sum_assignment

    if not len(det_boxes) or not truth:
        return {}
    cost = np.full((len(det_boxes), len(truth)), 1e6)
    for i, b in enumerate(det_boxes):
        c = np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])
        for j, tb in enumerate(truth):
            x, y, w, h = tb.box
            if x <= c[0] <= x + w and y <= c[1] <= y + h:
                cost[i, j] = float(np.linalg.norm(c - [x + w / 2, y + h / 2]))
    return {int(i): truth[j].identity for i, j in zip(*linear_sum_assignment(cost)) if cost[i, j] < 1e6}


def id_switches(assignments: list[dict[str, int]]) -> int:
    """Number of id switches over a clip: per frame ``{identity: track id}`` of the identities found; a switch is
    an identity found with a track id other than the one it had when last found."""
    last: dict[str, int] = {}
    n = 0
    for frame in assignments:
        for ident, k in frame.items():
            if ident in last and last[ident] != k:
                n += 1
            last[ident] = k
    return n
