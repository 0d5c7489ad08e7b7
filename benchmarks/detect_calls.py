"""Wall time of two consecutive ``aufer.detect(still)`` calls in a fresh process, with the per-process cache of the
default model and face pipeline (``cached``) and without it (``cold``: :func:`aufer.predict.cache.clear_cache`
before each call, which is what every call cost before the cache: loading the model and building a MediaPipe
pipeline with its warm-up).

    python benchmarks/detect_calls.py [IMAGE] [--repeats 5] [--threads N]

Prints, per mode, the median (and range) over the repeats of call 1 and call 2; the processes of the two modes
are interleaved so that a busy machine slows both alike. The default image is a bundled London photo.
``--threads N`` sets PyTorch's intra-op threads in the children (on a machine that another job keeps busy, fewer
threads than cores avoids the stalls of oversubscription, which would hide the set-up cost).
"""

import argparse
import statistics
import subprocess
import sys

CHILD = """
import sys, time, warnings
warnings.filterwarnings("ignore")
import torch
import aufer
import aufer.predict.rows
from aufer.predict.cache import clear_cache
path, cold = sys.argv[1], sys.argv[2] == "cold"
if int(sys.argv[3]) > 0:
    torch.set_num_threads(int(sys.argv[3]))
out = []
for _ in range(2):
    if cold:
        clear_cache()
    t = time.perf_counter()
    aufer.detect(path)
    out.append(time.perf_counter() - t)
print(" ".join(f"{x:.4f}" for x in out))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image", nargs="?", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="PyTorch threads in the children (0: its default)")
    args = ap.parse_args()
    if args.image is None:
        from aufer.bundled import bundled_faces

        args.image = bundled_faces().query("set == 'london'").path.iloc[0]
    times = {"cold": [], "cached": []}
    for _ in range(args.repeats):
        for mode in times:
            r = subprocess.run([sys.executable, "-c", CHILD, str(args.image), mode, str(args.threads)], capture_output=True, text=True,
                               check=True)
            times[mode].append([float(x) for x in r.stdout.split()])
    print(f"aufer.detect({args.image}), {args.repeats} fresh processes per mode, torch threads "
          f"{args.threads or 'default'}")
    for mode, runs in times.items():
        cells = []
        for k in range(2):
            v = [r[k] for r in runs]
            cells.append(f"call {k + 1}: {statistics.median(v):.2f} s ({min(v):.2f}-{max(v):.2f})")
        print(f"{mode:7s} " + "   ".join(cells))


if __name__ == "__main__":
    main()
