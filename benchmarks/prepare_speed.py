"""Speed of `aufer prepare` (detect, 478 landmarks, align, crop, encode, commit) on 640×360 video.

The bundled Pexels video (472 frames, 640×360) is used as COPIES sequences of an AU dataset (one row per frame,
labels all unknown), prepared into a fresh store with 1 worker and with all cores; prints frames/s of each, the
ratio to the 60 frames/s target and the parallel speed-up.

    python benchmarks/prepare_speed.py [--copies 4] [--size 256]
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from aufer.bundled import bundled_video
from aufer.store.prepare import prepare
from aufer.readers.records import FrameRecords
from aufer.media import video_info


def video_records(copies: int) -> FrameRecords:
    """COPIES sequences, each every frame of the bundled video (labels unknown)."""
    video = str(bundled_video())
    n = video_info(video)["n_frames"]
    table = pd.concat([pd.DataFrame({"subject": f"copy{k}", "sequence": f"copy{k}", "frame": np.arange(n),
                                     "media": video, "media_index": np.arange(n)}) for k in range(copies)],
                      ignore_index=True)
    return FrameRecords("bundled-video", "", (12,), table, np.full((len(table), 1), -1, np.int8))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    rec = video_records(args.copies)
    cores = os.cpu_count() or 1
    fps = {}
    with tempfile.TemporaryDirectory() as d:
        for workers in sorted({1, cores}):
            r = prepare(rec, Path(d) / f"w{workers}.sqlite", crop_size=args.size, workers=workers, progress=False)
            fps[workers] = r["frames_per_s"]
            size_kib = (Path(d) / f"w{workers}.sqlite").stat().st_size / 1024 / r["frames_done"]
            print(f"workers {workers}: {r['frames_done']} frames of 640x360 in {r['seconds']:.1f} s = "
                  f"{r['frames_per_s']:.1f} frames/s; face found in {r['frames_detected']}; store {size_kib:.1f} KiB/frame")
    best = max(fps.values())
    print(f"best {best:.1f} frames/s on {cores} cores; ratio to the 60 frames/s target: {best / 60:.2f}; "
          f"speed-up {cores} vs 1 worker: {fps[cores] / fps[1]:.2f}")


if __name__ == "__main__":
    main()
