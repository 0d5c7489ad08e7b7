"""Run logging: per-step and per-epoch rows to CSV and TensorBoard, progress, and the environment (versions,
device, commit) in the run folder. Only the main process writes.

Progress goes to a rich bar on a terminal; when the output is not a terminal (a batch job, ``| tee``) it is
one plain line every ``print_every`` training steps instead (:func:`progress_line`)::

    epoch 1/2 step 3/7 | loss 0.6810 loss_au 0.6810 | lr 3.00e-03 | step 0.048s data 0.019s | 83.1 samples/s
    | peak_rss 552 MB | ETA 0:00:00 run 0:00:01   (one line)

Both ETAs come from measured step times (the mean of the last :data:`ETA_WINDOW` steps) from the first step
on; they count training steps only, not validation.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import aufer

__all__ = ["RunLog", "environment", "git_commit", "peak_memory", "duration", "progress_line", "log_plan", "ETA_WINDOW"]

#: the ETA is the mean time of the last this-many training steps times the steps left
ETA_WINDOW = 50


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


def peak_memory(device: torch.device) -> tuple[str, float]:
    """The process' peak memory so far, in MiB, with its column name: ``("peak_cuda_mb", …)`` — the tensors'
    peak on the CUDA device (``torch.cuda.max_memory_allocated``) — or, on any other device, ``("peak_rss_mb",
    …)`` — the peak resident set size of this process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``; its
    children, the loader workers, are not counted). ``nan`` where neither can be read (Windows)."""
    device = torch.device(device)
    if device.type == "cuda":
        return "peak_cuda_mb", torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource  # noqa: PLC0415  (POSIX only)

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return "peak_rss_mb", float("nan")
    return "peak_rss_mb", rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB elsewhere


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` of a number of seconds (rounded); ``-:--:--`` for None or NaN."""
    if seconds is None or math.isnan(seconds):
        return "-:--:--"
    s = round(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(epoch: int, epochs: int, step: int, steps: int, logs: dict, lr: float, step_s: float, data_s: float,
                  samples_s: float, memory: tuple[str, float], eta_epoch: float | None, eta_run: float | None) -> str:
    """The non-terminal progress line: ``epoch E/N step S/T | <loss terms> | lr … | step …s data …s |
    … samples/s | peak_rss|peak_cuda … MB | ETA <epoch> run <run>``.

    Args:
        step, steps: steps done in the epoch and the epoch's total.
        logs: the loss terms of the last step (floats).
        step_s, data_s: mean seconds per step and of it waiting for data, since the previous line.
        samples_s: training samples per second over all processes, since the previous line.
        memory: ``(column name, MiB)`` from :func:`peak_memory`.
        eta_epoch, eta_run: seconds left in the epoch and in the run (training steps only).
    """
    terms = " ".join(f"{k} {v + 0.0:.4f}" for k, v in logs.items())  # + 0.0: no "-0.0000"
    return (f"epoch {epoch}/{epochs} step {step}/{steps} | {terms} | lr {lr:.2e}"
            f" | step {step_s:.3f}s data {data_s:.3f}s | {samples_s:.1f} samples/s"
            f" | {memory[0].removesuffix('_mb')} {memory[1]:.0f} MB"
            f" | ETA {duration(eta_epoch)} run {duration(eta_run)}")


def log_plan(recipe, joint, *, world_size: int, device: torch.device | str, steps: int) -> dict:
    """:class:`RunLog`'s keyword arguments for a run: its size (``epochs``, ``steps_per_epoch``,
    ``samples_per_step`` over all processes), ``print_every``, ``device`` and a ``header`` line saying the
    loader workers and pinning actually used (``data.workers`` is capped at the process' CPUs,
    :func:`aufer.datasets.loaders.loader_workers`).

    Args:
        recipe: the :class:`~aufer.engine.recipe.Recipe`; joint: the training
            :class:`~aufer.datasets.loaders.JointLoader`; steps: steps per epoch.
    """
    loaders = [ld for ld in (joint.au_loader, joint.expr_loader) if ld is not None]
    samples = sum(ld.batch_size for ld in loaders) * int(world_size)
    workers = max(ld.num_workers for ld in loaders)
    capped = (f" (data.workers {recipe.data.workers} capped at this process' CPUs)"
              if workers < recipe.data.workers else "")
    header = (f"training {recipe.train.epochs} epochs × {steps} steps of {samples} samples ({world_size} "
              f"process{'es' if world_size > 1 else ''}, {device}); {workers} loader workers{capped}, pin_memory "
              f"{'on' if any(ld.pin_memory for ld in loaders) else 'off'}")
    return {"print_every": recipe.train.print_every, "epochs": recipe.train.epochs, "steps_per_epoch": steps,
            "samples_per_step": samples, "device": device, "header": header}


class _Interval:
    """Sums of step times since it was last read (one per consumer: the CSV rows and the printed lines)."""

    def __init__(self):
        self.step_s = self.data_s = 0.0
        self.n = 0

    def add(self, step_s: float, data_s: float) -> None:
        self.step_s += step_s
        self.data_s += data_s
        self.n += 1

    def take(self) -> tuple[float, float, int, float]:
        """(mean step s, mean data s, steps, total step s) since the last call; then starts again."""
        n = max(1, self.n)
        out = (self.step_s / n, self.data_s / n, self.n, self.step_s)
        self.__init__()
        return out


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
    ``tb/`` and progress: a rich bar on a terminal, otherwise one line every ``print_every`` steps
    (:func:`progress_line`). Inactive (writes and prints nothing) on processes other than the main one.

    Timing columns (seconds, wall clock, of this process): ``steps.csv`` — ``step_s`` and ``data_s`` (mean time
    per step and of it waiting for the loader, since the previous row), ``elapsed_s`` (since this log was
    opened: a resumed run starts again at 0), ``samples_s`` (training samples per second over all processes) and
    the peak memory (``peak_rss_mb`` on CPU, ``peak_cuda_mb`` on CUDA: :func:`peak_memory`); ``epochs.csv`` —
    ``wall_s`` (the epoch, validation included), ``train_s`` (its training steps) and ``data_s`` (of those,
    waiting for data).

    Args:
        console: a rich ``Console``; its ``is_terminal`` chooses bar or lines (default: whether stdout is a
            terminal, printing lines to stdout).
        progress: show progress at all (bar or lines).
        print_every: steps between two progress lines when not on a terminal (also the last step of an epoch).
        epochs, steps_per_epoch: the run's size (for step counts and ETAs).
        samples_per_step: training samples of one step over all processes (for ``samples_s``).
        device: where training runs (which peak memory is measured).
        header: a line printed once when progress is shown (e.g. the run's size and loader settings).
    """

    def __init__(self, run_dir: str | Path, *, active: bool = True, console=None, tensorboard: bool = True,
                 progress: bool = True, print_every: int = 50, epochs: int = 0, steps_per_epoch: int = 0,
                 samples_per_step: int = 0, device: torch.device | str = "cpu", header: str | None = None):
        self.dir, self.active = Path(run_dir), active
        self.steps, self.epochs = _Csv(self.dir / "steps.csv"), _Csv(self.dir / "epochs.csv")
        self.tb = None
        if active and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

                self.tb = SummaryWriter(str(self.dir / "tb"))
            except ImportError:  # tensorboard is a dependency; without it only the CSVs are written
                self.tb = None
        terminal = console.is_terminal if console is not None else sys.stdout.isatty()
        self.lines = bool(active and progress and not terminal)
        if self.lines and console is None:
            console = Console()
        self.console = console
        self.print_every = max(1, int(print_every))
        self.n_epochs, self.steps_per_epoch = int(epochs), int(steps_per_epoch)
        self.samples_per_step, self.device = int(samples_per_step), torch.device(device)
        self._window: collections.deque[float] = collections.deque(maxlen=ETA_WINDOW)
        self._rows, self._printed = _Interval(), _Interval()
        self._opened = time.perf_counter()
        self._epoch_t0, self._epoch_train, self._epoch_data = self._opened, 0.0, 0.0
        self.bar = None
        self._task = None
        if active and progress and not self.lines:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                                TextColumn("{task.fields[info]}"), console=console, transient=True)
            self.bar.start()
        if header and active and progress:
            self.print(header)

    def task(self, description: str, total: int | None, completed: int = 0) -> None:
        """Start (or replace) the progress bar's task; an epoch's timing starts here."""
        self._epoch_t0, self._epoch_train, self._epoch_data = time.perf_counter(), 0.0, 0.0
        if self.bar is None:
            return
        if self._task is not None:
            self.bar.remove_task(self._task)
        self._task = self.bar.add_task(description, total=total, completed=completed, info="", eta=duration(None))

    def advance(self, n: int = 1, info: str = "", eta: str | None = None) -> None:
        if self.bar is not None and self._task is not None:
            self.bar.update(self._task, advance=n, info=info, **({"eta": eta} if eta is not None else {}))

    def eta(self, epoch: int, done: int) -> tuple[float | None, float | None]:
        """Seconds left in epoch ``epoch`` (1-based) after ``done`` of its steps, and in the whole run: the mean
        of the last :data:`ETA_WINDOW` measured step times × the steps left (None before any step)."""
        if not self._window:
            return None, None
        mean = sum(self._window) / len(self._window)
        left = max(0, self.steps_per_epoch - done)
        return mean * left, mean * (left + max(0, self.n_epochs - epoch) * self.steps_per_epoch)

    def train_step(self, global_step: int, epoch: int, done: int, logs: dict, lr: float, step_s: float,
                   data_s: float, *, row: bool) -> None:
        """One training step done: record its times, move the bar (or print a line every ``print_every``
        steps), and with ``row`` write a ``steps.csv`` row.

        Args:
            global_step: steps done in the run (1-based); epoch: 1-based; done: steps done in the epoch.
            logs: the step's loss terms; lr: the first parameter group's learning rate.
            step_s, data_s: the step's wall time and data-wait time in seconds
                (:class:`aufer.engine.loop.StepTimes`).
        """
        self._window.append(step_s)
        self._rows.add(step_s, data_s)
        self._printed.add(step_s, data_s)
        self._epoch_train += step_s
        self._epoch_data += data_s
        if not self.active:
            return
        eta_epoch, eta_run = self.eta(epoch, done)
        if self.bar is not None:
            self.advance(1, " ".join(f"{k} {v:.4f}" for k, v in logs.items()),
                         eta=f"{duration(eta_epoch)} (run {duration(eta_run)})")
        memory = peak_memory(self.device)
        if row:
            mean_s, mean_data, n, total = self._rows.take()
            self.step(global_step, {"epoch": epoch, **logs, "lr": lr, "step_s": mean_s, "data_s": mean_data,
                                    "elapsed_s": time.perf_counter() - self._opened,
                                    "samples_s": self.samples_per_step * n / total if total > 0 else float("nan"),
                                    memory[0]: memory[1]})
        if self.lines and (global_step % self.print_every == 0 or done == self.steps_per_epoch):
            mean_s, mean_data, n, total = self._printed.take()
            self.print(progress_line(epoch, self.n_epochs, done, self.steps_per_epoch, logs, lr, mean_s, mean_data,
                                     self.samples_per_step * n / total if total > 0 else float("nan"), memory,
                                     eta_epoch, eta_run))

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
        """An ``epochs.csv`` row: ``row`` plus the epoch's ``wall_s``, ``train_s`` and ``data_s``."""
        if not self.active:
            return
        row = {**row, "wall_s": time.perf_counter() - self._epoch_t0, "train_s": self._epoch_train,
               "data_s": self._epoch_data}
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
