"""Contact sheet of SYNTHETIC FACS-warp frames: bundled neutral faces rendered with chosen AU combinations, passed
through the face pipeline (detection, landmarks, five-point alignment) as the demo's training data are, each tile
labelled with the re-detected inner-lip gap (IOD) and the AU25 / AU26 labels the frame gets.

    python tools/facswarp_sheet.py --out facswarp.png [--people canada/024f london/042 ...] [--crop 160]
        [--combo "AU25=25:1" --combo "AU12+25+26=12:1,25:1,26:1" ...]

Photos are downscaled to the demo's ``synth_image_size`` (256) before rendering, as in ``aufer demo``. Use it to
look at what the AU head is trained on (docs/demo_design.md, "AU25 / AU26 on real open mouths").
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

DEFAULT_PEOPLE = ["canada/024f", "london/042", "canada/119m", "london/099", "london/115"]
DEFAULT_COMBOS = ["neutral=", "AU25=25:1", "AU26=26:1", "AU25+26=25:1,26:1", "AU10+12+25=10:1,12:1,25:1",
                  "AU6+12+25+26=6:1,12:1,25:1,26:1", "AU1+2+5+25+26=1:1,2:1,5:1,25:1,26:1"]


def _combo(text: str) -> tuple[str, dict[int, float]]:
    name, _, spec = text.partition("=")
    pairs = [p.split(":") for p in spec.split(",") if p]
    return name, {int(a): float(v) for a, v in pairs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--people", nargs="*", default=DEFAULT_PEOPLE, help="bundled identities (set/face_id)")
    ap.add_argument("--combo", action="append", default=None, metavar="NAME=AU:I,AU:I",
                    help="an AU combination (repeatable); default: AU25 / AU26 combinations")
    ap.add_argument("--crop", type=int, default=160, help="aligned crop side (the demo's: 160)")
    ap.add_argument("--image-size", type=int, default=256, help="photo side before rendering (the demo's: 256)")
    args = ap.parse_args()

    from aufer import synth
    from aufer.bundled import bundled_faces
    from aufer.faces.mediapipe_backend import MediaPipeFaceDetector
    from aufer.media import read_image
    from aufer.synth.patterns import canonical_matrix, lip_gap

    combos = [_combo(c) for c in (args.combo or DEFAULT_COMBOS)]
    df = bundled_faces()
    det = MediaPipeFaceDetector(max_faces=1)
    rows = []
    for who in args.people:
        row = df[(df.identity == who) & (df.expression == "neutral")]
        if row.empty:
            raise SystemExit(f"no bundled neutral photo of {who!r}")
        img = read_image(row.path.iloc[0])
        face = det.detect(img)[0]
        k = args.image_size / img.shape[1]
        small = cv2.resize(img, (args.image_size, round(img.shape[0] * k)), interpolation=cv2.INTER_AREA)
        base = synth.BaseFace(small, face.landmarks * k, who)
        tiles = []
        for name, inten in combos:
            out = synth.realise(base, np.array([[inten.get(a, 0.0) for a in base.aus]]), args.crop, det)
            lm = out["landmarks"][0]
            m = canonical_matrix(lm)
            gap = lip_gap(lm[:, :2] @ m[:, :2].T + m[:, 2])
            shown = synth.occurrence(out["intensity"][0])
            tile = cv2.resize(cv2.cvtColor(out["crops"][0], cv2.COLOR_RGB2BGR), (320, 320), interpolation=cv2.INTER_CUBIC)
            cv2.putText(tile, f"{who} {name}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1, cv2.LINE_AA)
            cv2.putText(tile, f"gap {gap:.3f} IOD  labels AU25 {shown[base.aus.index(25)]} AU26 "
                        f"{shown[base.aus.index(26)]}", (4, 312), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1,
                        cv2.LINE_AA)
            tiles.append(tile)
        rows.append(np.hstack(tiles))
    cv2.imwrite(args.out, np.vstack(rows))
    print(f"wrote {args.out}: {len(args.people)} people × {len(combos)} combinations (SYNTHETIC)")


if __name__ == "__main__":
    main()
