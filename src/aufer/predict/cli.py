"""What ``aufer predict`` does, behind the command line's options (:mod:`aufer.cli` declares them).

For each job of :func:`aufer.predict.jobs.plan_jobs`: take the output's lock, stream the rows into the table
(:func:`aufer.predict.predict_to_file`, resumable; aufer's CSV, Parquet or OpenFace 2.x's layout), write the
metadata sidecar ``<output>.json``, the figure (``<output stem>.png``: time series for video, bar charts for
stills), the offline HTML report (``<output stem>.html``) and, on request, the overlay video
(``<output stem>_overlay.mp4``); then print one summary table. Every output path is checked before the first
frame is analysed. An output table that already exists (a finished earlier run) is left as it is, with a line
on stderr, unless ``--overwrite`` is given; an interrupted run has no output table yet, so rerunning the same
command resumes it.

The inputs, options and outputs are checked before PyTorch, MediaPipe or pandas is imported (those imports sit in
the functions that need them, marked ``heavy``), so that a mistake is answered at once.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aufer import __version__
from aufer.media import MediaError, iter_frames, read_image
from aufer.predict.defaults import DEFAULT_DETECTOR_RANGE, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE_SCORE
from aufer.predict.jobs import OptionError, OutputLock, plan_jobs
from aufer.predict.openface import openface_notes, read_openface_output
from aufer.schema import SCHEMA_VERSION, au_stems, face_mask

__all__ = ["PredictOptions", "run_predict", "metadata", "face_thumbnails", "MAX_THUMBNAILS"]

#: face thumbnails in one HTML report at most (the report says when there are more faces)
MAX_THUMBNAILS = 64


@dataclass
class PredictOptions:
    """The options of one ``aufer predict`` call (see ``aufer predict --help``)."""

    model: Path | None = None
    out: Path | None = None
    out_dir: Path | None = None
    fmt: str | None = None
    plot: bool = True
    report: bool = True
    overlay: bool = False
    landmarks: bool = False
    batch_size: int = 16
    max_faces: int = DEFAULT_MAX_FACES
    min_face_score: float = DEFAULT_MIN_FACE_SCORE
    detector_range: str = DEFAULT_DETECTOR_RANGE
    threshold: float = 0.5
    device: str = "auto"
    resume: bool = True
    overwrite: bool = False
    flip: bool = True
    window_stride: int | None = None


def _resolve_device(name: str):
    import torch  # noqa: PLC0415


    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda: no CUDA GPU is visible to PyTorch here; use --device cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise OptionError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def metadata(job, source: dict, opts: PredictOptions, pipeline, result=None, aus=()) -> dict:
    """The sidecar ``<output>.json``: aufer's version, the schema, the output format, the model and its card, the
    face backend and its thresholds, the options, the input and the run's warnings; for ``--format openface``
    also what the OpenFace layout holds and lacks (:func:`aufer.predict.openface.openface_notes`; ``aus``: the
    model's AU numbers or column stems, :func:`aufer.schema.au_stems`)."""
    det = pipeline.detector
    face = {"backend": type(det).__name__, "crop_size": pipeline.crop_size}
    for k in ("detector_range", "min_score", "max_faces"):
        if hasattr(det, k):
            face[k] = getattr(det, k)
    fmt = opts.fmt or ("parquet" if job.output.suffix.lower() == ".parquet" else "csv")
    meta = {"aufer_version": __version__, "schema_version": SCHEMA_VERSION, "input": str(job.input),
            "input_kind": job.kind, "output": str(job.output), "format": fmt, **source, "face": face,
            "options": {"threshold": opts.threshold, "flip_average": opts.flip, "landmarks_mesh": opts.landmarks,
                        "batch_size": opts.batch_size},
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if fmt == "openface":
        meta["openface"] = openface_notes(aus, str(source.get("model") or "the model"))
    if result is not None:
        meta.update({"rows": result.n_rows, "frames": result.n_frames, "frames_with_face": result.frames_with_face,
                     "face_ids": result.face_ids, "resumed_from_frame": result.resumed_from,
                     "warnings": result.warnings})
    return meta


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def _note(source: dict) -> str:
    note = f"model {source['model']}" + (f" ({source['default_model']})" if source.get("default_model") else "")
    if source.get("synthetic_note"):
        note += "; AU training motion is SYNTHETIC (FACS-warp)"
    return note


def face_thumbnails(df, kind: str, source: Path, crop: int = 96, limit: int = MAX_THUMBNAILS) -> dict:
    """One thumbnail per face: per track of a video, per (file, face) of a still or a folder of stills; each cut
    from the input at the face's highest-score frame (box + 20 % margin), resized to ``crop`` × ``crop`` RGB
    uint8.

    Args:
        df: the prediction table. kind: ``video`` | ``image`` | ``folder`` (:class:`aufer.predict.jobs.Job`).
        source: the video (for ``kind == "video"``; stills are read from ``df["file"]``).
        limit: at most this many thumbnails (videos: the lowest face ids; stills: in file order).

    Returns:
        ``{face_id: image}`` for a video, ``{(file name, face_id): image}`` for stills; a face whose crop cannot
        be cut (an unreadable file, an empty box) has none.
    """
    faces = df[face_mask(df)]
    if faces.empty:
        return {}
    keys = ["face_id"] if kind == "video" else ["file", "face_id"]
    best = faces.loc[faces.groupby(keys, sort=False)["face_score"].idxmax()]
    if kind != "video":
        order = {f: i for i, f in enumerate(dict.fromkeys(df["file"]))}
        best = best.assign(_o=best["file"].map(order)).sort_values(["_o", "face_id"], kind="stable")
    else:
        best = best.sort_values("face_id", kind="stable")
    best = best.head(limit)
    out = {}

    def cut(img, r):
        x, y, w, h = r.face_x, r.face_y, r.face_w, r.face_h
        m = 0.2 * max(w, h)
        x0, y0 = int(max(0, x - m)), int(max(0, y - m))
        x1, y1 = int(min(img.shape[1], x + w + m)), int(min(img.shape[0], y + h + m))
        if x1 <= x0 or y1 <= y0:
            return None
        return cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), (crop, crop), interpolation=cv2.INTER_AREA)

    if kind == "video":
        want: dict[int, list] = {}
        for r in best.itertuples():
            want.setdefault(int(r.frame), []).append(r)
        last = max(want)
        for fr in iter_frames(source):
            if fr.image is not None and fr.index in want:
                for r in want[fr.index]:
                    t = cut(fr.image, r)
                    if t is not None:
                        out[int(r.face_id)] = t
            if fr.index >= last:
                break
    else:
        for file, rows in best.groupby("file", sort=False):
            try:
                img = read_image(file)
            except Exception:  # noqa: BLE001  (a thumbnail is optional; the table is already written)
                continue
            for r in rows.itertuples():
                t = cut(img, r)
                if t is not None:
                    out[(Path(str(file)).name, int(r.face_id))] = t
    return out


def _figures(job, df, source: dict, opts: PredictOptions, card: str | None, meta: dict, console: Console) -> list[Path]:
    from aufer.predict.report import plot_predictions  # noqa: PLC0415  heavy

    made = []
    title = f"aufer on {job.input.name}"
    if opts.plot:
        made.append(plot_predictions(df, job.sibling(".png"), title=title, note=_note(source)))
    if opts.report:
        from aufer.predict.report_html import write_html_report  # noqa: PLC0415  heavy

        made.append(write_html_report(df, job.sibling(".html"), title=title, model_name=str(source["model"]),
                                      model_card_text=card, thumbnails=face_thumbnails(df, job.kind, job.input),
                                      meta=meta))
    if opts.overlay:
        if job.kind != "video":
            console.print(f"[yellow]warning:[/] --overlay: {job.input} is not a video; no overlay written",
                          highlight=False)
        else:
            from aufer.predict.overlay import write_overlay_video  # noqa: PLC0415  heavy

            made.append(write_overlay_video(job.input, df, job.sibling("_overlay.mp4")))
    return made


def run_predict(inputs: list[Path], opts: PredictOptions, out: Console, err: Console) -> int:
    """Run ``aufer predict``; returns the number of inputs that failed (their error is printed and the
    others go on). User errors that stop everything before any work (a bad output path, a missing input, a
    bad model, an option out of range) raise :class:`aufer.media.MediaError`, :class:`aufer.predict.jobs.OutputError`,
    :class:`aufer.predict.jobs.OptionError` or :class:`aufer.models.CheckpointError` with one line."""
    if opts.max_faces < 1:
        raise OptionError(f"--max-faces must be at least 1, not {opts.max_faces}")
    if not 0.0 < opts.min_face_score <= 1.0:
        raise OptionError(f"--min-face-score must be in (0, 1], not {opts.min_face_score}")
    if opts.batch_size < 1:
        raise OptionError(f"--batch-size must be at least 1, not {opts.batch_size}")
    if not 0.0 < opts.threshold < 1.0:
        raise OptionError(f"--threshold must be in (0, 1), not {opts.threshold}")
    if opts.window_stride is not None and opts.window_stride < 1:
        raise OptionError(f"--window-stride must be at least 1, not {opts.window_stride}")
    if opts.detector_range not in ("short", "full", "both"):
        raise OptionError(f"--detector-range must be short, full or both, not {opts.detector_range!r}")
    if opts.fmt == "openface" and opts.landmarks:
        raise OptionError("--landmarks cannot go with --format openface: OpenFace's x_i, y_i are the 68 iBUG "
                          "landmarks, aufer's the 478 MediaPipe mesh points; use --format csv or parquet for them")
    plan = plan_jobs(inputs, opts.out, opts.out_dir, opts.fmt)  # every output checked before any work
    summary = Table(title="aufer predict", show_lines=False)
    for c in ("input", "output", "frames", "with face", "face ids", "notes"):
        summary.add_column(c, overflow="fold")
    jobs = plan.jobs
    if not opts.overwrite:
        for job in (j for j in jobs if j.finished):
            err.print(f"[yellow]kept:[/] {job.output} already holds a finished analysis of {job.input}; it is left "
                      "as it is (pass --overwrite to analyse it again)", highlight=False)
            summary.add_row(str(job.input), str(job.output), "-", "-", "-", "kept: finished earlier")
        jobs = [j for j in jobs if not j.finished]
    if not jobs:
        _print_summary(summary, out)
        return 0
    from aufer.faces.pipeline import FacePipeline  # noqa: PLC0415  heavy
    from aufer.models import load_model  # noqa: PLC0415  heavy
    from aufer.models.contract import crop_size  # noqa: PLC0415  heavy
    from aufer.models.shipped import DEFAULT_MODEL, default_model_path, model_card, provenance  # noqa: PLC0415  heavy
    from aufer.predict.rows import predict_to_file, read_table  # noqa: PLC0415  heavy

    device = _resolve_device(opts.device)
    model_path = opts.model or default_model_path()
    net = load_model(model_path).to(device)
    if opts.model is None:
        err.print(f"using aufer's default model {DEFAULT_MODEL} (its AU training motion is synthetic; see its "
                  "model card)", highlight=False)
    source = provenance(model_path, net)
    card = model_card(model_path)
    pipeline = FacePipeline(crop_size=crop_size(net), max_faces=opts.max_faces, min_face_score=opts.min_face_score,
                            detector_range=opts.detector_range)
    for p in plan.skipped[:10]:
        err.print(f"[yellow]skipped:[/] {p} (not an image or a video)", highlight=False)
    if len(plan.skipped) > 10:
        err.print(f"[yellow]skipped:[/] … and {len(plan.skipped) - 10} more files that are not media", highlight=False)

    failed = 0
    for job in jobs:
        partial = job.output.with_name(job.output.name + ".partial")
        try:
            with OutputLock(job.output), Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
                task = bar.add_task(f"analysing {job.input.name}", total=None)
                result = predict_to_file(
                    job.input, net, job.output, pipeline=pipeline, batch_size=opts.batch_size,
                    threshold=opts.threshold, resume=opts.resume, flip=opts.flip, mesh=opts.landmarks,
                    fmt=opts.fmt, progress=lambda d, n: bar.update(task, completed=d, total=n),
                    notify=lambda m: err.print(m, highlight=False),
                    options={"max_faces": opts.max_faces, "min_face_score": opts.min_face_score,
                             "detector_range": opts.detector_range, "threshold": opts.threshold},
                    window_stride=opts.window_stride)
                meta = metadata(job, source, opts, pipeline, result, aus=au_stems(net))
                _write_json(job.output.with_name(job.output.name + ".json"), meta)
                for w in result.warnings[:10]:
                    err.print(f"[yellow]warning:[/] {w}", highlight=False)
                if len(result.warnings) > 10:
                    err.print(f"[yellow]warning:[/] … and {len(result.warnings) - 10} more (all in "
                              f"{job.output.name}.json)", highlight=False)
                if opts.fmt == "openface":
                    df = read_openface_output(job.output, still=job.kind != "video", threshold=opts.threshold)
                else:
                    df = read_table(job.output)
                extra = _figures(job, df, source, opts, card, meta, err)
        except KeyboardInterrupt:
            done = _frames_in(partial)
            err.print(f"interrupted: {done} frames of {job.input} are saved in {partial}; rerun the same command "
                      "to resume from there", highlight=False)
            raise
        except MediaError as e:  # this input is unreadable: say so, go on with the others
            failed += 1
            err.print(f"[bold red]error:[/] {e}", highlight=False)
            summary.add_row(str(job.input), "-", "-", "-", "-", "failed: see the error above")
            continue
        notes = []
        if result.resumed_from is not None:
            notes.append(f"resumed at frame {result.resumed_from}")
        if result.warnings:
            notes.append(f"{len(result.warnings)} warning(s)")
        notes.append(", ".join(p.name for p in extra))
        summary.add_row(str(job.input), str(job.output), str(result.n_frames), str(result.frames_with_face),
                        str(len(result.face_ids)), "; ".join(n for n in notes if n))
    _print_summary(summary, out)
    return failed


def _print_summary(summary: Table, out: Console) -> None:
    if out.is_terminal:
        out.print(summary)
    else:  # piped or redirected: one tab-separated line per input, nothing wrapped
        print("\t".join(c.header for c in summary.columns), file=out.file)
        for row in zip(*(c._cells for c in summary.columns)):
            print("\t".join(map(str, row)), file=out.file)


def _frames_in(partial: Path) -> int:
    """Complete frames in a partial CSV (0 if none)."""
    try:
        import pandas as pd  # noqa: PLC0415  heavy

        f = pd.read_csv(partial, usecols=["frame"])["frame"]
        return int(f.nunique() - 1) if len(f) else 0
    except (OSError, ValueError, KeyError):
        return 0
