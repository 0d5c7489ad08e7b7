"""Start-up time of the command line: how long `aufer --version` and a mistaken `aufer predict missing.mp4` take to
answer, as a ratio to `python -c "import torch"` measured in the same run (these machines are noisy: run it idle).

Target (issue 22): both answer in under 1.5 s on an idle 2-core machine, i.e. before PyTorch is imported.

    python benchmarks/cli_start.py [--repeat 7]

Prints the median wall time of each command over the repeats (fresh processes, interleaved), its ratio to the
torch import, and whether PyTorch was imported on that path (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'pass'": [sys.executable, "-c", "pass"],
    "aufer --version": [sys.executable, "-m", "aufer", "--version"],
    "aufer predict missing.mp4": [sys.executable, "-m", "aufer", "predict", "missing.mp4"],
    "aufer import nosuch x.pth --out m": [sys.executable, "-m", "aufer", "import", "nosuch", "x.pth", "--out", "m"],
}


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True)
    return time.perf_counter() - t0


def _imports_torch(cmd: list[str]) -> bool:
    r = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True)
    return any(re.search(r"\|\s+torch$", line.rstrip()) for line in r.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for k, cmd in COMMANDS.items():  # warm the file cache once
        _time(cmd)
    for _ in range(args.repeat):
        for k, cmd in COMMANDS.items():
            times[k].append(_time(cmd))
    base = statistics.median(times["python -c 'import torch'"])
    print(f"{'command':38s} {'median s':>9s} {'min s':>7s} {'÷ import torch':>15s}  imports torch")
    for k, cmd in COMMANDS.items():
        med = statistics.median(times[k])
        print(f"{k:38s} {med:9.2f} {min(times[k]):7.2f} {med / base:15.2f}  {_imports_torch(cmd)}")


if __name__ == "__main__":
    main()
