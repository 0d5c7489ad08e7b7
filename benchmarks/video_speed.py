"""Video analysis speed, end to end, on the bundled 640×360 video, with aufer's default model.

Prints frames/s for: decoding only, decoding + face pipeline, and the whole `predict` path (decode, detect,
landmarks, align, model with the flip average `aufer predict` uses, CSV rows), and the ratio to the 30 frames/s
target of issue 10. The allocator is tuned as the `aufer` command does (aufer._runtime). ``--model`` gives another
checkpoint; ``--arch aufer_tiny`` an untrained architecture (speed does not depend on the weights). ``--compare
OTHER`` times a second checkpoint's end-to-end path in the same run, alternating the two, and prints the ratio
(these machines are noisy: compare within one run).

    python benchmarks/video_speed.py [--model runs/demo-...] [--arch NAME] [--repeat 2] [--compare OTHER]
"""

import argparse
import time

import torch

from aufer.bundled import bundled_video
from aufer.synth import SYNTH_AUS
from aufer.faces.pipeline import FacePipeline
from aufer.media import iter_frames
from aufer.models import create_model
from aufer.predict import iter_predictions
from aufer.predict.defaults import DEFAULT_MAX_FACES as MAX_FACES
from aufer.models import load_model


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return n, min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--arch", default=None, help="an untrained registered model instead of a checkpoint")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--compare", default=None, help="another checkpoint, timed end to end in the same run")
    args = ap.parse_args()
    from aufer._runtime import tune_allocator
    from aufer.models.shipped import default_model_path

    tune_allocator()
    if args.arch:
        model = create_model(args.arch, aus=SYNTH_AUS).eval()
    else:
        model = load_model(args.model or default_model_path())
    video = bundled_video()
    from aufer.models.contract import crop_size

    pipe = FacePipeline(crop_size=crop_size(model), max_faces=MAX_FACES)

    n, t_dec = best_of(lambda: sum(1 for _ in iter_frames(video)), args.repeat)
    _, t_face = best_of(lambda: sum(1 for _ in pipe.iter_media(video)), args.repeat)
    rows, t_all = best_of(lambda: sum(1 for _ in iter_predictions(video, model, pipe)), args.repeat)
    print(f"video: {video.name}, {n} frames 640x360, torch threads {torch.get_num_threads()}, model "
          f"{model.config.get('name')}")
    print(f"decode only              {n / t_dec:8.1f} frames/s")
    print(f"decode + faces           {n / t_face:8.1f} frames/s")
    print(f"end to end (predict)     {n / t_all:8.1f} frames/s   ({rows} rows)")
    print(f"ratio to the 30 frames/s target: {n / t_all / 30:.2f}x")
    if args.compare:
        other = load_model(args.compare)
        pipe2 = FacePipeline(crop_size=crop_size(other), max_faces=MAX_FACES)
        times = {"model": [], "other": []}
        for _ in range(args.repeat):  # alternate, so that both see the same machine load
            for key, m, p in (("model", model, pipe), ("other", other, pipe2)):
                t = time.perf_counter()
                sum(1 for _ in iter_predictions(video, m, p))
                times[key].append(time.perf_counter() - t)
        a, b = min(times["model"]), min(times["other"])
        print(f"compare: {model.config.get('name')} {n / a:.1f} frames/s, {args.compare} "
              f"({other.config.get('name')}) {n / b:.1f} frames/s; time ratio model/other {a / b:.2f}")


if __name__ == "__main__":
    main()
