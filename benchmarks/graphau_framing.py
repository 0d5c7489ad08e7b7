"""How aufer frames a face for ME-GraphAU / OpenGraphAU, against the framing of the official demo.

The official test transform (``image_eval`` / ``image_test`` of both repositories) is ``Resize(256)`` (shorter side
to 256 px) + ``CenterCrop(224)`` of the image *as given*: the official datasets hold faces cropped and aligned
beforehand (their repositories do not say how), and OpenGraphAU's ``demo.py`` runs on its ``demo_imgs/`` (1024 ×
1024 portraits, face-centred). aufer instead gives the network its own five-point-aligned 256 px crop, then the same
``Resize(256)`` + ``CenterCrop(224)`` (``graphau`` ``preprocess``). This script measures where the face lands in the
224 × 224 network input under both framings, from aufer's MediaPipe mesh:

* ``iod``: inter-ocular distance (eye centres), input pixels;
* ``eye_x``, ``eye_y``: eye midpoint; ``mouth_y``: mouth-corner midpoint; ``chin_y`` (mesh point 152),
  ``brow_y`` (mesh point 10, the top of the forehead mesh), input pixels;
* ``roll``: the eye line's angle, degrees (0 = level);
* ``inside``: share of the 478 mesh points inside the input (1 = the whole face is seen).

Rows ``official``: the official framing of the image as given (meaningful for face-centred images such as the
official demo images; for an uncropped photo it is not what the official pipeline would see). Rows ``aufer``:
aufer's framing of the same face. Nothing here needs a GraphAU checkpoint; what the framing changes in a real
model's AU probabilities needs one (see docs/graphau.md, "Checking a downloaded checkpoint").

    python benchmarks/graphau_framing.py [IMAGES_OR_FOLDERS ...] [--bundled N]

``--bundled N`` adds the first N neutral and N smiling London photos bundled with aufer (default 10). To measure
the official demo images, pass the ``demo_imgs`` folder of a clone of github.com/lingjivoo/OpenGraphAU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CROP = 256  # aufer's aligned crop for GraphAU (the official Resize(256))
INPUT = 224  # the official CenterCrop(224)
CHIN, BROW = 152, 10  # mesh points: chin tip, top of the forehead mesh


def official_matrix(h: int, w: int) -> np.ndarray:
    """``(2, 3)`` image → network-input matrix of ``Resize(256)`` + ``CenterCrop(224)`` (torchvision's rounding:
    the resized long side ``int(256 · long / short)``, the crop offset ``int(round((side − 224) / 2))``)."""
    rh, rw = (CROP, int(CROP * w / h)) if h <= w else (int(CROP * h / w), CROP)
    top, left = int(round((rh - INPUT) / 2.0)), int(round((rw - INPUT) / 2.0))
    return np.array([[rw / w, 0.0, -left], [0.0, rh / h, -top]])


def aufer_matrix(align_matrix: np.ndarray) -> np.ndarray:
    """Image → network input of aufer's framing: the 256 px alignment, then the centre 224."""
    off = (CROP - INPUT) // 2
    return align_matrix - np.array([[0.0, 0.0, off], [0.0, 0.0, off]])


def geometry(points: np.ndarray) -> dict[str, float]:
    """The measures of the module docstring for ``(478, 2)`` mesh points in network-input pixels."""
    from aufer.faces.landmarks import five_points

    el, er, _, ml, mr = five_points(points)
    eye = (el + er) / 2
    inside = ((points >= 0) & (points < INPUT)).all(1).mean()
    return {"iod": float(np.linalg.norm(er - el)), "eye_x": float(eye[0]), "eye_y": float(eye[1]),
            "mouth_y": float((ml[1] + mr[1]) / 2), "chin_y": float(points[CHIN, 1]),
            "brow_y": float(points[BROW, 1]), "roll": float(np.degrees(np.arctan2(er[1] - el[1], er[0] - el[0]))),
            "inside": float(inside)}


def measure(paths: list[tuple[Path, str]]) -> list[dict]:
    """One row per (image, framing) for the best face of each ``(path, group)``; images without a face are
    reported and left out."""
    from aufer.faces.align import alignment_matrix, transform_points
    from aufer.faces.mediapipe_backend import MediaPipeFaceDetector
    from aufer.media import read_image

    detector = MediaPipeFaceDetector(max_faces=1)
    rows = []
    for p, group in paths:
        img = read_image(p)
        faces = detector.detect(img)
        if not faces:
            print(f"{p}: no face")
            continue
        lm = faces[0].landmarks[:, :2]
        for name, m in (("official", official_matrix(*img.shape[:2])), ("aufer", aufer_matrix(alignment_matrix(lm, CROP)))):
            rows.append({"group": group, "image": p.name, "framing": name,
                         **geometry(transform_points(lm, m)[:, :2])})
    return rows


def _images(args) -> list[tuple[Path, str]]:
    """``(path, group)``: group ``given`` for the command line's images (``*_pred`` drawings of the official demo
    left out), ``bundled`` for the London photos."""
    out = []
    for a in args.inputs:
        p = Path(a)
        files = sorted(q for q in p.iterdir() if q.suffix.lower() in (".jpg", ".jpeg", ".png")
                       and not q.stem.endswith("_pred")) if p.is_dir() else [p]
        out += [(q, "given") for q in files]
    if args.bundled:
        from aufer.bundled import bundled_faces

        df = bundled_faces()
        df = df[df["set"] == "london"]
        for expr in ("neutral", "smiling"):
            out += [(Path(x), "bundled") for x in df[df["expression"] == expr]["path"].head(args.bundled)]
    return out


def main() -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="*", help="images or folders (e.g. OpenGraphAU's demo_imgs)")
    ap.add_argument("--bundled", type=int, default=10, help="first N neutral and N smiling bundled London photos")
    ap.add_argument("--csv", default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = pd.DataFrame(measure(_images(args)))
    if rows.empty:
        raise SystemExit("no face found in the inputs")
    pd.set_option("display.width", 200)
    print(rows.round(2).to_string(index=False))
    print("\nmean and std per group and framing (input pixels, degrees):")
    print(rows.drop(columns="image").groupby(["group", "framing"]).agg(["mean", "std"]).round(2).T.to_string())
    if args.csv:
        rows.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
