"""Run logging: per-step and per-epoch rows to CSV and TensorBoard, a rich progress bar with ETA, and the
environment (versions, device, commit) in the run folder. Only the main process writes."""

from __future__ import annotations

import csv
import json
import platform
import subprocess
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import aufer

__all__ = ["RunLog", "environment", "git_commit"]


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the aufer checkout (``+dirty`` when it has uncommitted changes); None outside git."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device, world_size: int = 1) -> dict:
    """Versions, device name and commit, as written to ``env.json``."""
    env = {"aufer": aufer.__version__, "commit": git_commit(), "python": platform.python_version(),
           "torch": torch.__version__, "platform": platform.platform(), "device": str(device),
           "world_size": world_size, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    try:
        import transformers  # noqa: PLC0415

        env["transformers"] = transformers.__version__
    except ImportError:
        pass
    return env


class _Csv:
    def __init__(self, path: Path):
        self.path, self.fields = path, None

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        if self.fields is None:
            if not new:
                with open(self.path, newline="") as f:
                    self.fields = next(csv.reader(f), None)
            self.fields = self.fields or list(row)
        extra = [k for k in row if k not in self.fields]
        if extra:  # a new column (e.g. validation metrics): rewrite the header
            rows = list(csv.DictReader(open(self.path, newline=""))) if not new else []
            self.fields = self.fields + extra
            with open(self.path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields)
                w.writeheader()
                w.writerows(rows)
            new = False
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in self.fields})


class RunLog:
    """``steps.csv`` (every ``log_every`` steps), ``epochs.csv`` (one row per epoch), TensorBoard events under
    ``tb/`` and a rich progress bar. Inactive (writes nothing) on processes other than the main one."""

    def __init__(self, run_dir: str | Path, *, active: bool = True, console=None, tensorboard: bool = True,
                 progress: bool = True):
        self.dir, self.active = Path(run_dir), active
        self.steps, self.epochs = _Csv(self.dir / "steps.csv"), _Csv(self.dir / "epochs.csv")
        self.tb = None
        if active and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

                self.tb = SummaryWriter(str(self.dir / "tb"))
            except ImportError:  # tensorboard is a dependency; without it only the CSVs are written
                self.tb = None
        self.console = console
        self.bar = None
        self._task = None
        if active and progress:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                console=console, transient=True)
            self.bar.start()

    def task(self, description: str, total: int | None, completed: int = 0) -> None:
        """Start (or replace) the progress bar's task."""
        if self.bar is None:
            return
        if self._task is not None:
            self.bar.remove_task(self._task)
        self._task = self.bar.add_task(description, total=total, completed=completed, info="")

    def advance(self, n: int = 1, info: str = "") -> None:
        if self.bar is not None and self._task is not None:
            self.bar.update(self._task, advance=n, info=info)

    def print(self, text: str) -> None:
        if not self.active:
            return
        if self.bar is not None:
            self.bar.console.print(text, highlight=False)
        elif self.console is not None:
            self.console.print(text, highlight=False)

    def step(self, global_step: int, row: dict) -> None:
        if not self.active:
            return
        self.steps.write({"step": global_step, **row})
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, global_step)

    def epoch(self, epoch: int, row: dict, global_step: int) -> None:
        if not self.active:
            return
        self.epochs.write({"epoch": epoch, **row})
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and v == v:
                    self.tb.add_scalar(f"epoch/{k}", v, global_step)
            self.tb.flush()

    def write_json(self, name: str, data) -> None:
        if self.active:
            p = self.dir / name
            tmp = p.with_name(p.name + ".partial")
            tmp.write_text(json.dumps(data, indent=1, default=str))
            tmp.replace(p)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
