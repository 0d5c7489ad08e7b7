"""Rebuild aufer/data/canonical_face.npy, the canonical frontal face of the head-pose fit
(:func:`aufer.faces.pose.build_canonical_face`: the symmetric mean MediaPipe mesh of the 142 bundled neutral
photos, London Set and Young Adult White Faces, CC BY 4.0).

    python tools/make_canonical_face.py
"""
from pathlib import Path

import numpy as np

from aufer.faces.pose import CANONICAL_FILE, build_canonical_face
from aufer.vocab import data_path

if __name__ == "__main__":
    c = build_canonical_face().astype(np.float32)
    out = Path(data_path(CANONICAL_FILE))
    np.save(out, c)
    print(f"{out}: {c.shape}, {out.stat().st_size} bytes")
