"""Multi-face detection and tracking: recall, id switches and speed of the face pipeline.

On the constructed 48-frame 960 × 540 clip of ``tests/multiface_clip.py`` (four bundled people, two crossing,
one absent for 5 frames) it prints, per ``detector_range`` setting, the faces found per frame against the truth,
the detection recall over the fully visible faces, the id switches (a person found with another track id than
at their previous appearance) and frames/s; on the 5-face group photo the faces found; on the bundled 640 × 360
video (one face) the time per frame of the face pipeline (detect + mesh + align + track) for "short", "both"
as scheduled on video (full range every ``full_range_every`` frames or when short range misses a tracked face)
and "both" on every frame.

    python benchmarks/multiface.py [--frames 120] [--repeat 2] [--verbose]
"""

import argparse
import sys
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from multiface_clip import build_clip, group_photo, id_switches, match_to_truth  # noqa: E402

from aufer.bundled import bundled_video  # noqa: E402
from aufer.faces.mediapipe_backend import MediaPipeFaceDetector  # noqa: E402
from aufer.faces.pipeline import FacePipeline  # noqa: E402
from aufer.media import iter_frames  # noqa: E402

SETTINGS = {  # name -> (detector_range, full_range_every)
    "short": ("short", 8),
    "full": ("full", 8),
    "both (video schedule)": ("both", 8),
    "both (every frame)": ("both", 1),
}


def clip_report(pipe: FacePipeline, frames, truth, verbose: bool) -> dict:
    t0 = time.perf_counter()
    found = list(pipe.track_frames(frames))
    dt = time.perf_counter() - t0
    hits = visible = 0
    assignments, per_frame = [], []
    for faces, tr in zip(found, truth):
        m = match_to_truth([a.face.box for a in faces], tr)
        assignments.append({ident: faces[i].face_id for i, ident in m.items()})
        seen = set(m.values())
        vis = [r.identity for r in tr if r.visible]
        visible += len(vis)
        hits += sum(v in seen for v in vis)
        per_frame.append(f"{len(faces)}/{len(tr)}")
        if verbose:
            print("   ", " ".join(f"{k}:{v}" for k, v in sorted(assignments[-1].items())), f"({len(faces)} found)")
    return {"per_frame": per_frame, "recall": hits / max(visible, 1), "switches": id_switches(assignments),
            "fps": len(frames) / dt, "ids": sorted({k for a in assignments for k in a.values()})}


def video_time(pipe: FacePipeline, n: int, repeat: int) -> tuple[float, float]:
    """Best ms per frame of ``iter_media`` over the first ``n`` frames, and the mean faces per frame."""
    best, faces = float("inf"), 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        counts = [len(f) for _, f in islice(pipe.iter_media(bundled_video()), n)]
        best = min(best, (time.perf_counter() - t0) / len(counts) * 1000)
        faces = sum(counts) / len(counts)
    return best, faces


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=120, help="frames of the bundled video to time")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="print identity:track id per clip frame")
    args = ap.parse_args()
    frames, truth = build_clip()
    group, group_truth = group_photo()
    n_decode = sum(1 for _ in islice(iter_frames(bundled_video()), args.frames))
    t0 = time.perf_counter()
    sum(1 for _ in islice(iter_frames(bundled_video()), args.frames))
    decode_ms = (time.perf_counter() - t0) / n_decode * 1000
    print(f"constructed clip: {len(frames)} frames 960x540, 4 people (A, B cross; C absent 5 frames); "
          f"{sum(r.visible for t in truth for r in t)} fully visible faces")
    print(f"bundled video: first {n_decode} frames 640x360 (decode alone {decode_ms:.1f} ms/frame)\n")
    for name, (rng, every) in SETTINGS.items():
        det = MediaPipeFaceDetector(max_faces=8, detector_range=rng)
        pipe = FacePipeline(crop_size=112, detector=det, full_range_every=every)
        if args.verbose:
            print(name)
        r = clip_report(pipe, frames, truth, args.verbose)
        g = len(match_to_truth([f.box for f in det.detect(group)], group_truth))
        ms, per = video_time(pipe, args.frames, args.repeat)
        print(f"{name:22s} clip: recall {r['recall']:6.1%}  id switches {r['switches']}  track ids {r['ids']}  "
              f"{r['fps']:5.1f} frames/s | group photo {g}/{len(group_truth)} | "
              f"video {ms:5.1f} ms/frame ({1000 / ms:5.1f} frames/s, {per:.2f} faces/frame)")
        print(f"{'':22s} faces found/truth per clip frame: {' '.join(r['per_frame'])}")
        det.close()


if __name__ == "__main__":
    main()
