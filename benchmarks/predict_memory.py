"""Peak memory of `aufer predict` against video length: the bundled video at 1× and 10× its length.

The 10× video is the bundled one looped ten times (re-encoded H.264, 4720 frames). Each analysis runs in its own
process; peak resident memory (max RSS) is read from the operating system. Prints both figures and their ratio
(1.0 = memory does not grow with length).

    python benchmarks/predict_memory.py [--model runs/demo-...] [--times 10]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import av

from aufer.bundled import bundled_video


def loop_video(src: Path, dst: Path, times: int) -> int:
    n = 0
    with av.open(str(dst), "w") as out:
        stream = None
        for _ in range(times):
            with av.open(str(src)) as inp:
                s_in = inp.streams.video[0]
                if stream is None:
                    stream = out.add_stream("libx264", rate=s_in.average_rate)
                    stream.width, stream.height, stream.pix_fmt = s_in.codec_context.width, s_in.codec_context.height, "yuv420p"
                for frame in inp.decode(s_in):
                    out_frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                    out_frame.pts = n
                    for p in stream.encode(out_frame.reformat(format="yuv420p")):
                        out.mux(p)
                    n += 1
        for p in stream.encode():
            out.mux(p)
    return n


CHILD = """
import resource, sys
from aufer.faces.pipeline import FacePipeline
from aufer.predict import predict_to_csv
from aufer._runtime import tune_allocator
from aufer.models import load_model
from aufer.models.shipped import default_model_path
tune_allocator()
model = load_model(sys.argv[3] or default_model_path())
predict_to_csv(sys.argv[1], model, sys.argv[2], resume=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(video: Path, out_csv: Path, model: str) -> float:
    r = subprocess.run([sys.executable, "-c", CHILD, str(video), str(out_csv), model or ""], capture_output=True,
                       text=True, check=True)
    return int(r.stdout.strip().splitlines()[-1]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="")
    ap.add_argument("--times", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        long = d / f"x{args.times}.mp4"
        n = loop_video(bundled_video(), long, args.times)
        one = peak_rss_mb(bundled_video(), d / "a.csv", args.model)
        many = peak_rss_mb(long, d / "b.csv", args.model)
    print(f"1x video  (472 frames): peak RSS {one:7.1f} MiB")
    print(f"{args.times}x video ({n} frames): peak RSS {many:7.1f} MiB")
    print(f"ratio {args.times}x / 1x: {many / one:.3f}")


if __name__ == "__main__":
    main()
