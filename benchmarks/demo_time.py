"""Wall time of `aufer demo` with an empty synthetic-data cache (what `make demo` runs after installation).

Prints the stage timings recorded in the run's metrics.json and the ratio to the 15-minute budget.

    python benchmarks/demo_time.py
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "AUFER_CACHE": str(Path(d) / "cache")}
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aufer.cli", "demo", "--out", str(Path(d) / "run")], env=env, check=True)
        wall = time.perf_counter() - t
        m = json.loads((Path(d) / "run" / "metrics.json").read_text())
    for k, v in m["timing"].items():
        print(f"{k:18s} {v:10.1f}")
    print(f"wall time {wall / 60:.1f} min; ratio to the 15 min budget: {wall / 900:.2f}")


if __name__ == "__main__":
    main()
