"""``aufer predict`` on many inputs: which outputs to write, checked before any work starts, and one lock per
output so that two runs never write the same file.

- :func:`plan_jobs`: inputs (images, videos, folders with images and videos mixed) → one :class:`Job` per
  video, per single image and per folder of images, each with its own output path (default names keep the
  input's extension: ``x.jpg`` → ``x_jpg_aufer.csv``, ``x.mp4`` → ``x_mp4_aufer.csv``, folder ``shots/`` →
  ``shots_images_aufer.csv``; ``--format openface``: ``x_mp4_aufer_openface.csv``).
- :func:`check_output`: an output path that cannot work (a media suffix, a directory, a path under a file, an
  unwritable place) → :class:`OutputError` before anything is analysed.
- :attr:`Job.finished`: the output table already exists (a finished earlier run). ``aufer predict`` leaves such
  an output alone and says so, unless ``--overwrite`` is given; an interrupted run's output does not exist yet
  (its rows are in ``<output>.partial``), so a rerun resumes it.
- :class:`OutputLock`: ``<output>.lock`` created exclusively while a run writes the output: a second run on
  the same output while the first is still going is refused with the first run's pid; a lock left by a run
  that no longer exists is taken over.

Folders are not searched recursively: their images and videos directly inside are analysed; other files
are reported in :attr:`Plan.skipped`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from aufer.errors import UserMistake
from aufer.locks import PidLock
from aufer.media import IMAGE_EXTS, VIDEO_EXTS, MediaError, media_kind, natural_key

__all__ = ["Job", "Plan", "OutputError", "OptionError", "OutputLock", "plan_jobs", "check_output", "default_name", "FORMATS"]

#: output format → file suffix (``openface``: OpenFace 2.x's CSV layout, :mod:`aufer.predict.openface`)
FORMATS = {"csv": ".csv", "parquet": ".parquet", "openface": ".csv"}


class OutputError(UserMistake, ValueError):
    """An output path that cannot be written (one line saying what to do)."""


class OptionError(UserMistake, ValueError):
    """A command-line option out of its range (one line saying what is allowed)."""


@dataclass
class Job:
    """One input to analyse and the file its rows go to.

    Attributes:
        input: the image, video or folder of images. kind: ``image`` | ``video`` | ``folder``.
        output: the table file (``.csv`` or ``.parquet``).
    """

    input: Path
    kind: str
    output: Path

    @property
    def finished(self) -> bool:
        """The output table exists: an earlier run finished it (an interrupted run leaves only
        ``<output>.partial``)."""
        return self.output.is_file()

    def sibling(self, suffix: str) -> Path:
        """A file beside the output with another ending: ``x_mp4_aufer.csv`` → ``x_mp4_aufer<suffix>``."""
        return self.output.with_name(self.output.stem + suffix)


@dataclass
class Plan:
    """The jobs of one call, and the files inside given folders that are neither images nor videos."""

    jobs: list[Job] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def default_name(path: Path, kind: str, fmt: str = "csv") -> str:
    """The default output name of an input: ``<stem>_<ext>_aufer.<suffix>`` for files,
    ``<folder>_images_aufer.<suffix>`` for a folder of images; ``_aufer_openface.csv`` for the OpenFace
    layout."""
    ext = ("_openface" if fmt == "openface" else "") + FORMATS[fmt]
    if kind == "folder":
        return f"{path.resolve().name or 'root'}_images_aufer{ext}"
    return f"{path.stem}_{path.suffix.lstrip('.').lower()}_aufer{ext}"


def _folder_contents(folder: Path) -> tuple[bool, list[Path], list[Path]]:
    has_images, videos, other = False, [], []
    for p in sorted(folder.iterdir(), key=lambda q: natural_key(q.name)):
        if not p.is_file() or p.name.startswith("."):
            continue
        ext = p.suffix.lower()
        if ext in IMAGE_EXTS:
            has_images = True
        elif ext in VIDEO_EXTS:
            videos.append(p)
        else:
            other.append(p)
    return has_images, videos, other


def plan_jobs(inputs: list[Path], out: Path | None = None, out_dir: Path | None = None,
              fmt: str | None = None) -> Plan:
    """The jobs for ``inputs``.

    Args:
        inputs: images, videos and folders (a folder's images form one job, each of its videos one job).
        out: the output file, for exactly one job; its suffix (``.csv`` / ``.parquet``) sets the format.
        out_dir: where default-named outputs go (default: the current directory).
        fmt: ``csv`` | ``parquet`` | ``openface`` (default: from ``out``'s suffix, else csv; ``openface`` writes
            a ``.csv``).

    Raises:
        aufer.media.MediaError: a missing input, an unsupported file, a folder with no image or video.
        OutputError: ``out`` with several jobs, a format that contradicts ``out``'s suffix, or a bad output
            path (see :func:`check_output`); two jobs with the same output.
    """
    if fmt is not None and fmt not in FORMATS:
        raise OutputError(f"--format must be csv, parquet or openface, not {fmt!r}")
    if out is not None:
        suffix = out.suffix.lower()
        want = {".csv": "csv", ".parquet": "parquet"}.get(suffix)
        if fmt is not None and want is not None and FORMATS[fmt] != suffix:
            raise OutputError(f"--out {out} ends in {suffix} but --format {fmt} writes {FORMATS[fmt]}; make them "
                              "agree")
        fmt = fmt or want
    fmt = fmt or "csv"
    plan = Plan()
    for p in inputs:
        p = Path(p)
        kind = media_kind(p)  # raises MediaError for a missing or unsupported path
        if kind != "folder":
            plan.jobs.append(Job(p, kind, Path()))
            continue
        has_images, videos, other = _folder_contents(p)
        if not has_images and not videos:
            raise MediaError(f"{p}: folder holds no image ({', '.join(sorted(IMAGE_EXTS))}) or video "
                             f"({', '.join(sorted(VIDEO_EXTS))}); pass a folder with media in it")
        if has_images:
            plan.jobs.append(Job(p, "folder", Path()))
        plan.jobs.extend(Job(v, "video", Path()) for v in videos)
        plan.skipped.extend(other)
    if out is not None:
        if len(plan.jobs) != 1:
            raise OutputError(f"--out names one file but the inputs make {len(plan.jobs)} outputs "
                              f"({', '.join(str(j.input) for j in plan.jobs[:3])}{', …' if len(plan.jobs) > 3 else ''}); "
                              "use --out-dir for several")
        plan.jobs[0].output = out
    else:
        base = out_dir or Path(".")
        used: dict[Path, int] = {}
        for j in plan.jobs:
            name = Path(base) / default_name(j.input, j.kind, fmt)
            n = used.get(name, 0)
            used[name] = n + 1
            j.output = name if n == 0 else name.with_name(f"{name.stem}_{n + 1}{name.suffix}")
    seen: dict[Path, Path] = {}
    for j in plan.jobs:
        check_output(j.output, fmt)
        key = j.output.resolve()
        if key in seen:
            raise OutputError(f"{seen[key]} and {j.input} would both write {j.output}; give them different names")
        seen[key] = j.input
    return plan


def check_output(out: Path, fmt: str = "csv") -> None:
    """Refuse an output path that cannot work, before any analysis.

    Raises:
        OutputError: a suffix other than ``.csv`` / ``.parquet`` (an image or video name in particular), a
            suffix that contradicts ``fmt``, an existing directory, a path under an existing file, or a folder
            where files cannot be created.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in IMAGE_EXTS or suffix in VIDEO_EXTS:
        raise OutputError(f"--out {out}: that is an image or video name, and aufer writes a table there; "
                          f"give a .csv or .parquet path (plots and reports are written beside it)")
    if suffix != FORMATS[fmt]:
        raise OutputError(f"--out {out}: a {fmt} output must end in {FORMATS[fmt]}")
    if out.is_dir():
        raise OutputError(f"--out {out} is a directory; give a file name, or use --out-dir {out}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"--out {out}: {parent} is a file, not a folder; choose another output path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"--out {out}: cannot create files in {parent} (permission denied); "
                                  "choose a folder you can write to")
            break


class OutputLock(PidLock):
    """``<output>.lock``, held while a run writes ``output`` (a context manager; :class:`aufer.locks.PidLock`).

    Raises (on enter):
        OutputError: another live process on this machine holds the lock (the message gives its pid and how to
            clear a stale lock by hand when it is on another machine).
    """

    def __init__(self, output: Path):
        super().__init__(Path(output).with_name(Path(output).name + ".lock"))

    def busy_error(self, holder: str) -> Exception:
        return OutputError(f"{self.path.with_suffix('')} is being written by {holder}; wait for it to finish "
                           f"or choose another --out (if no run is going, delete {self.path})")

    def stuck_error(self) -> Exception:
        return OutputError(f"could not take the lock {self.path}; delete it if no run is going")
