"""Contact sheet of real media: the aligned crop aufer's face pipeline makes of each image (or chosen video frames)
with one bar per AU for each model (flip-averaged probabilities, as ``aufer predict`` makes them), and a table of
the probabilities on stdout.

    python tools/au_contact_sheet.py photo.jpg clip.mp4:300,320,340 --model runs/a --model runs/b --out sheet.png

``VIDEO:F1,F2`` picks frames of a video (first face of each frame); a model is a run folder, a ``.safetensors`` file
or ``default`` (the shipped default model), optionally labelled ``LABEL=PATH``. Nothing is written but the image
(PNG, or JPEG by the name). docs/demo_design.md ("AU25 / AU26 on real open mouths") used it to compare models
before and after a change (docs/img/au_sheet_bundled_video.jpg).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

COLOURS = [(60, 60, 230), (60, 200, 60), (230, 150, 40), (200, 60, 200)]


def _faces(spec: str, crop: int):
    """``[(label, crop uint8 RGB, landmarks)]`` of an image or of chosen frames of a video."""
    from aufer.faces.pipeline import FacePipeline
    from aufer.media import read_image

    path, _, frames = spec.partition(":")
    pipe = FacePipeline(crop_size=crop)
    name = Path(path).stem[:18]
    if not frames:
        faces = pipe.process(read_image(path))
        return [(name, faces[0].crop, faces[0].landmarks)] if faces else []
    want = {int(f) for f in frames.split(",")}
    out = []
    for frame, faces in pipe.iter_media(path):
        if frame.index in want and faces:
            out.append((f"{name} f{frame.index}", faces[0].crop, faces[0].landmarks))
        if frame.index >= max(want):
            break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("media", nargs="+", help="images, or VIDEO:F1,F2,... for video frames")
    ap.add_argument("--model", action="append", required=True,
                    help="[LABEL=]run folder, .safetensors or 'default' (repeatable)")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--per-row", type=int, default=6)
    args = ap.parse_args()

    import torch

    from aufer.models import load_model
    from aufer.models.contract import crop_size, probabilities

    labels = [m.split("=", 1)[0] if "=" in m else Path(m).name for m in args.model]
    paths = [m.split("=", 1)[1] if "=" in m else m for m in args.model]
    models = [load_model(None if m == "default" else m).eval() for m in paths]
    side = crop_size(models[0])
    faces = [f for spec in args.media for f in _faces(spec, side)]
    if not faces:
        raise SystemExit("no face found in the media")
    aus = list(models[0].aus)
    crops = torch.from_numpy(np.stack([f[1] for f in faces]))[:, None]
    lms = torch.from_numpy(np.stack([f[2] for f in faces]).astype(np.float32))[:, None]
    probs = []
    for m in models:
        p, _ = probabilities(m, crops, lms, flip=True)
        probs.append({a: p[:, 0, list(m.aus).index(a)].numpy() for a in aus if a in m.aus})
    print("face".ljust(28) + "model".ljust(14) + "".join(f"AU{a}".rjust(6) for a in aus))
    for i, (label, _, _) in enumerate(faces):
        for name, p in zip(labels, probs):
            print(label[:27].ljust(28) + name[:13].ljust(14)
                  + "".join((f"{p[a][i]:6.2f}" if a in p else "     -") for a in aus))
    w = 300
    tiles = []
    for i, (label, crop, _) in enumerate(faces):
        im = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), (w, w), interpolation=cv2.INTER_CUBIC)
        cv2.putText(im, label[:34], (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
        panel = np.full((140, w, 3), 255, np.uint8)
        bw, y0, hmax = w / len(aus), 118, 105
        cv2.line(panel, (0, y0 - hmax // 2), (w, y0 - hmax // 2), (170, 170, 170), 1)
        for k, a in enumerate(aus):
            for s, p in enumerate(probs):
                if a not in p:
                    continue
                x0 = int(k * bw + 2 + s * (bw - 4) / len(probs))
                x1 = int(k * bw + 2 + (s + 1) * (bw - 4) / len(probs)) - 1
                cv2.rectangle(panel, (x0, y0 - int(p[a][i] * hmax)), (x1, y0), COLOURS[s % len(COLOURS)], -1)
            cv2.putText(panel, str(a), (int(k * bw + 1), 134), cv2.FONT_HERSHEY_SIMPLEX, 0.32, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([im, panel]))
    while len(tiles) % args.per_row:
        tiles.append(np.full_like(tiles[0], 255))
    legend = np.full((24, w * args.per_row, 3), 255, np.uint8)
    for s, name in enumerate(labels):
        cv2.rectangle(legend, (10 + 250 * s, 6), (26 + 250 * s, 18), COLOURS[s % len(COLOURS)], -1)
        cv2.putText(legend, name[-28:], (32 + 250 * s, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [np.hstack(tiles[k:k + args.per_row]) for k in range(0, len(tiles), args.per_row)]
    cv2.imwrite(args.out, np.vstack([legend, *rows]))
    print(f"wrote {args.out} (bars: P(AU); grey line at 0.5)")


if __name__ == "__main__":
    main()
