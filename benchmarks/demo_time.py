"""Wall time of `aufer demo` with an empty synthetic-data cache (what `make demo` runs after installation).

Prints the stage timings recorded in the run's metrics.json and the ratio to the 15-minute budget.

    python benchmarks/demo_time.py [--out RUN_FOLDER]   (default: a temporary folder, deleted afterwards)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="keep the run folder here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        run = Path(args.out) if args.out else Path(d) / "run"
        env = {**os.environ, "AUFER_CACHE": str(Path(d) / "cache")}
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aufer.cli", "demo", "--out", str(run)], env=env, check=True)
        wall = time.perf_counter() - t
        m = json.loads((run / "metrics.json").read_text())
    for k, v in m["timing"].items():
        print(f"{k:18s} {v:10.1f}")
    print(f"wall time {wall / 60:.1f} min; ratio to the 15 min budget: {wall / 900:.2f}")


if __name__ == "__main__":
    main()
