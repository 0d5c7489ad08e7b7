"""Run every benchmark in turn (speed and memory figures; not tests)."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for script in ("video_speed.py", "predict_memory.py", "prepare_speed.py", "loader_speed.py", "train_speed.py", "demo_time.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(here / script), *sys.argv[1:]], check=True)
