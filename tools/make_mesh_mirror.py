"""Derive the left/right mirror permutation of the MediaPipe 478-point mesh from the bundled neutral faces.

For each bundled neutral photo the mesh is put in aufer's canonical face frame (eye centres at (±0.5, 0));
the mean shape is mirrored (x → −x) and matched one-to-one to itself by minimum total distance (Hungarian
algorithm). Writes src/aufer/data/mesh_mirror.json. Run: python tools/make_mesh_mirror.py
"""

import json

import numpy as np
from scipy.optimize import linear_sum_assignment

from aufer.bundled import bundled_faces, data_dir
from aufer.synth.patterns import canonical_matrix
from aufer.faces.mediapipe_backend import MediaPipeFaceDetector
from aufer.media import read_image


def main() -> None:
    det = MediaPipeFaceDetector(max_faces=1)
    shapes = []
    for path in bundled_faces().query("expression == 'neutral'").path:
        lm = det.detect(read_image(path))[0].landmarks
        m = canonical_matrix(lm)
        shapes.append(lm[:, :2] @ m[:, :2].T + m[:, 2])
    mean = np.mean(shapes, 0)
    mirrored = mean * [-1, 1]
    cost = ((mean[:, None] - mirrored[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    perm = cols[np.argsort(rows)]
    err = np.sqrt(cost[np.arange(len(perm)), perm])
    out = {
        "_about": "Left/right mirror permutation of the MediaPipe 478-point face mesh: mirror[i] is the index of the "
                  "point that lands on point i when the face is flipped horizontally. Derived by "
                  "tools/make_mesh_mirror.py from the mean canonical shape of aufer's 142 bundled neutral photos "
                  f"(mirrored and matched one-to-one, Hungarian algorithm); max match distance {err.max():.4f} IOD, "
                  f"mean {err.mean():.4f} IOD.",
        "mirror": perm.tolist(),
    }
    (data_dir() / "mesh_mirror.json").write_text(json.dumps(out))
    print("involution:", bool((perm[perm] == np.arange(len(perm))).all()), "max err", err.max())


if __name__ == "__main__":
    main()
