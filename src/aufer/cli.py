"""Command line: ``aufer demo | prepare | train | evaluate | experiment | table | predict | models | version``.

User mistakes (a missing path, a file that is not media, a missing model, a bad recipe key, a store of the
wrong kind) end with one clear line on stderr and exit code 2, never a traceback. Only the project's own
user-error types are caught (:data:`USER_ERRORS`); a programming error keeps its traceback, and ``--debug``
shows the traceback of user errors too.

Multi-GPU and multi-node training use torchrun's standard launcher, e.g.
``torchrun --nproc-per-node 4 -m aufer train RECIPE``.

Imports: aufer's modules that need no PyTorch are imported at the top; those that import PyTorch, transformers,
MediaPipe or pandas are imported inside the command that needs them (marked ``# heavy``), so that ``aufer
--version`` and a bad ``aufer predict`` input answer before PyTorch loads (``benchmarks/cli_start.py``). Per-method
behaviour comes from the registries the methods fill (``aufer import NAME``: ``IMPORTERS``; ``aufer evaluate
--released NAME``: ``EVALUATORS``), never from a branch here.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import typing
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from aufer import __version__
from aufer._runtime import tune_allocator
from aufer.errors import UserMistake
from aufer.predict.cli import PredictOptions, run_predict
from aufer.predict.defaults import DEFAULT_DETECTOR_RANGE, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE_SCORE

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="aufer: facial Action Units and expressions from images and video.")
err = Console(stderr=True)
out = Console()
for _c in (err, out):  # piped or redirected: no line wrapping, no colour codes
    if not _c.is_terminal:
        _c.soft_wrap = True


class UserError(UserMistake):
    """A problem the user can fix, found by the command line itself; printed as one line."""


#: what a user mistake is: every layer's own error types derive from aufer.errors.UserMistake, so none of their
#: modules (and so no PyTorch) is imported to catch them
USER_ERRORS: tuple[type[BaseException], ...] = (UserMistake,)


_DEBUG = {"on": False}


def _print_version(value: bool) -> None:
    if value:
        out.print(f"aufer {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main_options(debug: bool = typer.Option(False, "--debug", help="show tracebacks of user errors too"),
                  version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                               help="print aufer's version and exit")):
    _DEBUG["on"] = debug


def _fail(msg: str) -> None:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _out_of_memory(e: BaseException) -> bool:
    torch = sys.modules.get("torch")  # nothing ran out of GPU memory if PyTorch was never imported
    return torch is not None and isinstance(e, torch.cuda.OutOfMemoryError)


def _guard(fn, *args, **kwargs):
    """Run ``fn``; user errors become one line and exit code 2 (``--debug``: the traceback)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        if _DEBUG["on"] or not (isinstance(e, USER_ERRORS) or _out_of_memory(e)):
            raise
        if _out_of_memory(e):
            _fail("CUDA out of memory: lower data.au.batch_size / data.expr.batch_size (e.g. --set "
                  "data.au.batch_size=4) and keep the effective batch with --set train.accumulate=2")
        _fail(str(e))


@app.command()
def demo(
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run folder (default runs/demo-<date-time>)"),
    config: Optional[Path] = typer.Option(None, help="a demo recipe (default: the packaged one; see configs/demo/)"),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="override a recipe key, e.g. --set extra.n_val_people=10"),
    epochs: Optional[int] = typer.Option(None, help="override the number of training epochs"),
    workers: Optional[int] = typer.Option(None, help="processes for synthetic data generation"),
    quick: bool = typer.Option(False, help="a small, fast configuration (smoke test; metrics are not meaningful)"),
):
    """Train the joint AU + expression model on the bundled faces (real photos + SYNTHETIC FACS-warp data),
    report test metrics of held-out people, and analyse the bundled video."""
    def run():
        from aufer.demo import run_demo  # noqa: PLC0415  heavy (torch)

        if config is not None and not config.is_file():
            raise UserError(f"{config}: no such recipe file")
        overrides = list(sets or [])
        if epochs is not None:
            overrides.append(f"train.epochs={epochs}")
        if workers is not None:
            overrides.append(f"extra.workers={workers}")
        target = out_dir or Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
        run_demo(target, config, overrides, quick=quick, console=out)
    _guard(run)


@app.command()
def predict(
    paths: list[Path] = typer.Argument(..., help="images, videos and folders (a folder's images make one output, "
                                                  "each of its videos one)"),
    model: Optional[Path] = typer.Option(None, help="run folder or .safetensors checkpoint (default: aufer's shipped model)"),
    output: Optional[Path] = typer.Option(None, "--out", help="the table to write, for one input (.csv or .parquet; "
                                                               "default <name>_<ext>_aufer.csv in --out-dir)"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="folder for default-named outputs (default: here)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv | parquet | openface (OpenFace 2.x's CSV columns "
                                                             "and conventions, <name>_<ext>_aufer_openface.csv; see "
                                                             "docs/output_schema.md). Default: from --out, else csv"),
    plot: bool = typer.Option(True, help="write <output>.png (time series; bar charts for stills)"),
    report: bool = typer.Option(True, help="write <output>.html, an offline report"),
    overlay: bool = typer.Option(False, help="videos: write <output>_overlay.mp4 with boxes, ids, emotion, AUs"),
    landmarks: bool = typer.Option(False, "--landmarks", help="add the 478 mesh points (x_i, y_i, image pixels; "
                                                               "not with --format openface); the five alignment "
                                                               "points are always written"),
    batch_size: int = typer.Option(16, help="faces per model call"),
    max_faces: int = typer.Option(DEFAULT_MAX_FACES, help="faces per frame at most (at least 1; the highest detector "
                                                          "scores are kept, and a frame that reaches the cap is "
                                                          "reported as a warning)"),
    min_face_score: float = typer.Option(DEFAULT_MIN_FACE_SCORE, help="face detector threshold in (0, 1]"),
    detector_range: str = typer.Option(DEFAULT_DETECTOR_RANGE, help="MediaPipe detector: short (faces within ~2 m), "
                                                                    "full (small, far faces) or both"),
    threshold: float = typer.Option(0.5, help="AU presence threshold on the probability (AUxx_c)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    window_stride: Optional[int] = typer.Option(None, help="clip models (MDHR): frames between the T-frame windows "
                                                          "of a face track (default: the model's, MDHR 16)"),
    resume: bool = typer.Option(True, help="resume an interrupted analysis of the same input (its <output>.partial)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="analyse again an input whose output table already "
                                                              "exists and replace it (without it, a finished "
                                                              "output is left as it is and the run says so)"),
):
    """Analyse images, folders and videos: one row per frame and face with AU probabilities (AUxx_p), presence
    (AUxx_c), emotion probabilities (emo_*), head pose and landmarks (columns: docs/output_schema.md); writes a
    table, a metadata sidecar (<output>.json), a figure and an HTML report per input.

    Reruns: an output whose table already exists is kept as it is (a line on stderr says so) unless you pass
    --overwrite; an interrupted run (Ctrl-C) has left <output>.partial, and running the same command again resumes
    it; a run on an output another run is writing at the moment stops with that run's pid."""
    opts = PredictOptions(model=model, out=output, out_dir=out_dir, fmt=fmt, plot=plot, report=report,
                          overlay=overlay, landmarks=landmarks, batch_size=batch_size, max_faces=max_faces,
                          min_face_score=min_face_score, detector_range=detector_range, threshold=threshold,
                          device=device, resume=resume, window_stride=window_stride, overwrite=overwrite)
    try:
        failed = run_predict(list(paths), opts, out, err)
    except KeyboardInterrupt:  # run_predict has said where the partial output is and how to resume
        raise typer.Exit(130) from None
    except USER_ERRORS + (FileNotFoundError,) as e:
        if _DEBUG["on"]:
            raise
        _fail(str(e))
    if failed:
        raise typer.Exit(2)


@app.command()
def prepare(
    dataset: str = typer.Argument(..., help="BP4D | DISFA | DFEW | FERV39K | MAFW | au_csv | expr_csv"),
    root: Path = typer.Option(..., "--root", help="the dataset root as distributed (au_csv / expr_csv: the CSV file)"),
    store: Path = typer.Option(..., "--out", help="face store file to create or resume, e.g. stores/bp4d.sqlite"),
    size: int = typer.Option(256, help="aligned crop side in pixels"),
    workers: Optional[int] = typer.Option(None, help="parallel processes (default: all cores)"),
    frames: Optional[str] = typer.Option(None, help="DFEW frame set: clip_224x224_16f (default) or jpg_256"),
    media_root: Optional[Path] = typer.Option(None, help="au_csv / expr_csv: folder the CSV's media paths are relative to"),
):
    """Detect, align and crop every frame of a dataset once into a face store (resumable: rerun the same
    command after an interruption and it does only what is left)."""
    from aufer.readers import READERS, read_dataset  # noqa: PLC0415  heavy (pandas)
    from aufer.store.prepare import prepare as run_prepare  # noqa: PLC0415  heavy (MediaPipe)

    kw = {}
    if frames:
        kw["frames"] = frames
    if media_root:
        kw["root"] = media_root
    try:
        if not root.exists():
            raise UserError(f"{root}: no such file or folder; pass the dataset root as distributed with --root")
        if dataset.strip().lower() not in {k.lower() for k in READERS}:
            raise UserError(f"unknown dataset {dataset!r}; known: {', '.join(READERS)}")
        records = read_dataset(dataset, root, **kw)
        per_frame = hasattr(records, "aus")  # AU data: a row per labelled frame; expression data: a row per clip
        out.print(f"{records.dataset}: {len(records)} {'labelled frames' if per_frame else 'clips'} in "
                  f"{records.table['sequence' if per_frame else 'clip'].nunique()} sequences")
        report = run_prepare(records, store, crop_size=size, workers=workers)
    except USER_ERRORS + (FileNotFoundError,) as e:
        if _DEBUG["on"]:
            raise
        _fail(str(e))
    out.print(f"{report['store']}: {report['sequences_done']}/{report['sequences']} sequences complete; this run aligned "
              f"{report['frames_done']} frames ({report['frames_per_s']:.1f} frames/s), face found in "
              f"{report['frames_detected']}; {report['n_errors']} unreadable")
    if report["sequences_done"] < report["sequences"]:
        err.print("some sequences are incomplete (unreadable frames above); frames without a face are stored and flagged")


@app.command("label-aus")
def label_aus(
    store: Path = typer.Argument(..., help="an expression face store made by `aufer prepare` (DFEW, FERV39K, ...)"),
    model: Optional[Path] = typer.Option(None, "--model", help="an AU model: run folder, model folder or .safetensors "
                                                               "(e.g. an imported MDHR checkpoint)"),
    openface: Optional[Path] = typer.Option(None, "--openface", help="a folder of OpenFace 2.x CSVs (AUxx_c), one "
                                                                     "per clip, named after the clip"),
    replace: bool = typer.Option(False, "--replace", help="relabel a store that holds labels of another source"),
    batch_size: int = typer.Option(64, help="--model: frames per forward pass"),
    device: str = typer.Option("auto", help="--model: auto | cpu | cuda | cuda:N"),
):
    """Write per-frame AU pseudo-labels into an expression store (AU-DFER's clip AU labels; recipes read them with
    data.expr.au_pseudo = frames | clip_mean | clip_count). Resumable: rerun the same command after an interruption."""
    def run():
        from aufer.models import load_model  # noqa: PLC0415  heavy (torch)
        from aufer.models.weights import resolve_checkpoint  # noqa: PLC0415  heavy (torch)
        from aufer.predict.label_aus import label_store_with_model  # noqa: PLC0415  heavy (torch)
        from aufer.store.au_labels import label_store_from_openface  # noqa: PLC0415  heavy (pandas)

        if (model is None) == (openface is None):
            raise UserError("give exactly one label source: --model RUN (an AU model) or --openface DIR (CSVs)")
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {batch_size}")
        net, weights = None, None
        if model is not None:
            if not store.is_file():
                raise UserError(f"{store}: no such store; make it with `aufer prepare DATASET --root ... --out {store}`")
            try:
                weights = resolve_checkpoint(model)[0]  # a run folder: its selected best.safetensors
                net = load_model(weights)
            except FileNotFoundError as e:
                raise UserError(f"--model {model}: {e}") from None
        with Progress(TextColumn(f"labelling {store.name}"), BarColumn(), MofNCompleteColumn(), console=err,
                      disable=not err.is_terminal) as bar:
            task = bar.add_task("", total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)
            try:
                if model is not None:
                    rep = label_store_with_model(store, net, batch_size=batch_size, device=device, replace=replace,
                                                 progress=tick, model_path=weights)
                else:
                    rep = label_store_from_openface(store, openface, replace=replace, progress=tick)
            except FileNotFoundError as e:
                raise UserError(str(e)) from None
        missing = rep["clips_without_labels"]
        out.print(f"{rep['store']}: AU pseudo-labels of {rep['clips'] - len(missing)}/{rep['clips']} clips from "
                  f"{rep['name']} ({len(rep['aus'])} AUs: {', '.join(map(str, rep['aus']))}); this run labelled "
                  f"{rep['clips_labelled']} clips ({rep['frames_labelled']} frames), {rep['clips_resumed']} were "
                  "labelled before", highlight=False)
        if missing:
            err.print(f"{len(missing)} clips have no labels (AU labels −1), e.g. {', '.join(missing[:5])}"
                      + (" — no CSV named after them (naming rule: aufer.store.au_labels)" if openface else ""),
                      highlight=False)
        if rep.get("frame_mismatch"):
            err.print(f"{len(rep['frame_mismatch'])} clips' CSVs have another frame count than the store, e.g. "
                      f"{rep['frame_mismatch'][0]}; frames without a CSV row stay unlabelled", highlight=False)
    _guard(run)


def _recipe(path: Path, sets: list[str] | None):
    from aufer.engine.recipe import load  # noqa: PLC0415  heavy (torch)

    return load(path, sets or [])


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="a YAML recipe (see configs/)"),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="override a recipe key: --set train.epochs=5 (repeatable)"),
    fold: Optional[str] = typer.Option(None, help="fold (N) or fold pair (EXPR-AU, e.g. 1-2); default the recipe's / the first"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run folder (default runs/<recipe>/<fold>)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last good training state (refused "
                                "if the resolved recipe differs from the one that made it)"),
    allow_changes: Optional[list[str]] = typer.Option(
        None, "--allow-changes", metavar="KEY[,KEY]",
        help="with --resume: accept these changed recipe keys (or sections), e.g. train.epochs; recorded in run.json"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)"),
):
    """Train a recipe on one fold (pair), select the checkpoint on validation, evaluate it on test once.

    A run folder holds one run of one recipe: a second process on the same --out is refused while the first runs
    (run.lock), and --resume continues only the recipe that made the state (--allow-changes for deliberate changes).
    """
    def run():
        from aufer.engine.build import fold_name, parse_fold  # noqa: PLC0415  heavy (torch)
        from aufer.engine.runner import fit  # noqa: PLC0415  heavy (torch)

        r = _recipe(recipe, sets)
        folds = parse_fold(r, fold)
        target = out_dir or Path("runs") / r.name / fold_name(folds)
        allow = [k.strip() for a in allow_changes or [] for k in a.split(",") if k.strip()]
        m = fit(r, target, fold=fold, resume=resume, device=device, console=out, allow_changes=allow,
                overrides=sets or [])
        _print_metrics(m, target)
    _guard(run)


def _print_metrics(m: dict, target: Path) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    parts = []
    for kind, vals in m["test"].items():
        for k in ("au_f1_mean", "au_auc_mean", "uar", "war"):
            if vals.get(k) is not None:
                parts.append(f"{k} {vals[k]:.3f}")
    out.print(f"{target}: test ({m['selection']['label']}, epoch {m['selection']['epoch']}) " + ", ".join(parts))


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., metavar="RUN_OR_MODEL",
                                   help="a run folder written by `aufer train`; with --recipe, any model folder "
                                        "(aufer import … --out DIR, a shipped model, a run's best.safetensors)"),
    recipe: Optional[Path] = typer.Option(None, help="score RUN_OR_MODEL as a model on this recipe's data and fold"),
    fold: Optional[str] = typer.Option(None, help="with --recipe: fold (N) or fold pair (EXPR-AU); default the "
                                                  "recipe's / the protocol's first"),
    eval_out: Optional[Path] = typer.Option(None, "--out", help="with --recipe: output folder (default "
                                                                 "runs/eval/<model>/<recipe>/<fold>)"),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="override a recipe key for this evaluation, e.g. "
                                                                 "--set data.workers=0 (repeatable)"),
    split: str = typer.Option("test", help="val or test"),
    checkpoint: str = typer.Option("best", help="best (selected) or last"),
    flip: bool = typer.Option(False, help="test-time flip averaging (labelled _flip; the benchmark protocols do not use it)"),
    released: Optional[str] = typer.Option(None, "--released", metavar="NAME",
                                           help="also a method's released evaluator (ssm: SSM's AU evaluator, threshold "
                                                "and temporal vote searched on the scored labels, labelled test-tuned; "
                                                "metrics_<split>_<checkpoint>_released.json)"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda ..."),
):
    """Recompute a run's metrics from a checkpoint; writes metrics_<split>_<checkpoint>.json and Parquet
    predictions (per frame and per clip) from which every metric can be recomputed.

    With --recipe, score any model folder on a recipe's data and fold (e.g. an official checkpoint brought in with
    `aufer import`): the same metrics, Parquet predictions and labels as a run, in --out."""
    def run():
        from aufer.engine.runner import evaluate_run  # noqa: PLC0415  heavy (torch)
        from aufer.training import EVALUATORS  # noqa: PLC0415  heavy (torch)

        if recipe is not None:
            from aufer.engine.scoring import evaluate_model  # noqa: PLC0415  heavy (torch)

            if released is not None or checkpoint != "best":
                raise UserError("--released and --checkpoint apply to run folders, not to --recipe scoring")
            r = _recipe(recipe, sets)
            name = run_dir.parent.name if run_dir.suffix == ".safetensors" else run_dir.name
            dest = eval_out or Path("runs") / "eval" / name / r.name / (f"fold-{fold}" if fold else "first-fold")
            res = evaluate_model(run_dir, r, dest, fold=fold, split=split, flip=flip, device=device)
            parts = [f"{k} {v[k]:.3f}" for v in res["metrics"].values() for k in ("au_f1_mean", "uar", "war")
                     if v.get(k) is not None]
            out.print(f"{run_dir} on {r.name} {res['fold_name']} {split}: " + ", ".join(parts) + f" → {dest}")
            if res["aus_not_in_store"]:
                out.print(f"not scored (the store does not label them): AU {res['aus_not_in_store']}")
            return
        if fold is not None or eval_out is not None:
            raise UserError("--fold and --out need --recipe (a run folder is evaluated on its own fold, in place)")

        evaluator = None
        if released is not None:
            if released.lower() not in EVALUATORS:
                raise UserError(f"--released {released}: no such evaluator; known: {', '.join(EVALUATORS.names())}")
            evaluator = EVALUATORS[released.lower()]
        res = evaluate_run(run_dir, split=split, checkpoint=checkpoint, flip=flip, device=device, overrides=sets or [])
        parts = [f"{k} {v[k]:.3f}" for v in res["metrics"].values() for k in ("au_f1_mean", "uar", "war")
                 if v.get(k) is not None]
        out.print(f"{run_dir} {split} ({checkpoint}{', flip TTA' if flip else ''}): " + ", ".join(parts))
        if evaluator is not None:
            try:
                rel = evaluator.evaluate(run_dir, split, checkpoint, flip)
            except (FileNotFoundError, ValueError) as e:
                raise UserError(f"--released {released}: {e}") from e
            out.print(evaluator.summary(rel))
    _guard(run)


@app.command()
def experiment(
    recipe: Path = typer.Argument(..., help="a YAML recipe"),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="override a recipe key (repeatable)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="experiment folder (default runs/<recipe>)"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda ..."),
):
    """Run every fold (pair) of the recipe's protocol (finished folds are skipped, interrupted ones resumed)
    and write a paper-style table: summary.md, summary.csv, summary.json. A fold run with another recipe is
    refused with the changed keys (choose another --out, or delete that fold's folder to rerun it)."""
    def run():
        from aufer.engine.experiment import run_experiment  # noqa: PLC0415  heavy (torch)

        r = _recipe(recipe, sets)
        target = out_dir or Path("runs") / r.name
        run_experiment(r, target, device=device, console=out, overrides=sets or [])
        typer.echo((target / "summary.md").read_text())
    _guard(run)


@app.command()
def table(
    experiments: list[Path] = typer.Argument(..., help="experiment folders (each with summary.json)"),
    published: Optional[Path] = typer.Option(None, help="YAML of published numbers: method -> {column: %, source: ...}"),
    output: Optional[Path] = typer.Option(None, "--out", help="also write the table (.md or .csv)"),
    std: bool = typer.Option(False, "--std", help="cells read mean ± std (over folds or seeds)"),
    targets: bool = typer.Option(True, "--targets/--no-targets",
                                 help="a row with each recipe's published target (its `target:`) and source"),
):
    """Several experiments side by side (rows = methods, columns = AUs and metrics, in %), each beside the
    published figure its recipe should reproduce (the recipe's ``target:``, with its source and selection rule)."""
    def run():
        from aufer.engine.experiment import compare, load_published  # noqa: PLC0415  heavy (torch)

        tab, md = compare(experiments, load_published(published) if published else None, std=std, targets=targets)
        typer.echo(md)
        if output is not None:
            if output.suffix == ".csv":
                tab.to_csv(output)
            else:
                output.write_text(md + "\n")
    _guard(run)


def importer_options(importer) -> dict[str, inspect.Parameter]:
    """The command-line options of an importer: the keyword-only parameters of its ``convert`` (annotations
    evaluated), by name."""
    sig = inspect.signature(importer.convert, eval_str=True)
    return {n: p for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _option_help(p: inspect.Parameter) -> str:
    choices = typing.get_args(p.annotation) if typing.get_origin(p.annotation) is typing.Literal else ()
    value = "|".join(map(str, choices)) if choices else getattr(p.annotation, "__name__", "VALUE").upper()
    flag = f"--{p.name.replace('_', '-')} {value}"
    return flag if p.default is inspect.Parameter.empty else f"[{flag}, default {p.default}]"


def parse_importer_args(name: str, importer, args: list[str]) -> dict:
    """``--dataset BP4D --k 5`` → ``{"dataset": "BP4D", "k": 5}`` by the importer's options: a ``Literal`` lists
    the choices (matched case-insensitively, given back in their own spelling), ``int`` / ``float`` convert, an
    option without default is required.

    Raises:
        UserError: an unknown, missing, repeated or malformed option, a value outside the choices.
    """
    opts = importer_options(importer)
    usage = " ".join(_option_help(p) for p in opts.values())
    given: dict = {}
    it = iter(args)
    for tok in it:
        key = tok[2:].replace("-", "_") if tok.startswith("--") else None
        value = None
        if key is not None and "=" in key:
            key, value = key.split("=", 1)
        if key not in opts:
            raise UserError(f"aufer import {name}: unexpected {tok!r}; its options: {usage or 'none'}")
        if key in given:
            raise UserError(f"aufer import {name}: --{key} given twice")
        if value is None:
            value = next(it, None)
            if value is None:
                raise UserError(f"aufer import {name}: --{key} needs a value ({_option_help(opts[key])})")
        p = opts[key]
        choices = typing.get_args(p.annotation) if typing.get_origin(p.annotation) is typing.Literal else ()
        if choices:
            match = [c for c in choices if str(c).lower() == value.lower()]
            if not match:
                raise UserError(f"aufer import {name}: --{key} must be one of {', '.join(map(str, choices))}, not "
                                f"{value!r}")
            given[key] = match[0]
        elif p.annotation in (int, float):
            try:
                given[key] = p.annotation(value)
            except ValueError:
                raise UserError(f"aufer import {name}: --{key} takes a number, not {value!r}") from None
        else:
            given[key] = value
    missing = [n for n, p in opts.items() if p.default is inspect.Parameter.empty and n not in given]
    if missing:
        raise UserError(f"aufer import {name} needs {' '.join(_option_help(opts[n]) for n in missing)}")
    return given


@app.command("import", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def import_checkpoint(
    ctx: typer.Context,
    method: str = typer.Argument(..., help="the method whose official checkpoint this is (`aufer models` lists the "
                                          "importers and their options: mdhr, ssm, ...)"),
    checkpoint: Path = typer.Argument(..., help="the .pth file the official code saved"),
    out_dir: Path = typer.Option(..., "--out", help="folder to write model.safetensors + model.json into"),
):
    """Convert an official checkpoint into an aufer model folder (tensors only, no code is loaded), which
    `aufer predict --model`, `aufer.load_model` and `aufer evaluate DIR --recipe RECIPE --fold N` read. Each
    method's importer takes its own options after the checkpoint, e.g. `aufer import mdhr best.pth --out
    models/mdhr --dataset BP4D --backbone resnet50` or `aufer import ssm ssm.pth --out models/ssm --pair
    bp4d_dfew`; `aufer models` lists them. Score the result on a fold's test split with `aufer evaluate
    models/mdhr --recipe configs/mdhr/mdhr-resnet50_bp4d_16f_200e.yaml --fold 1`."""
    def run():
        from aufer.models import IMPORTERS, save_model  # noqa: PLC0415  heavy (torch)

        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"--out {out_dir} is a file; give a folder")
        name = method.lower()
        if name not in IMPORTERS:
            raise UserError(f"no importer for {method!r}; known: {', '.join(IMPORTERS.names())}")
        importer = IMPORTERS[name]
        model = importer.convert(checkpoint, **parse_importer_args(name, importer, list(ctx.args)))
        path = save_model(model, out_dir / "model", extra={"imported_from": str(checkpoint), "source": importer.source})
        out.print(f"{checkpoint} → {path} ({model.config['name']}, {len(model.aus)} AUs"
                  f"{f', {len(model.emotions)} emotions' if model.emotions else ''})", highlight=False)
    _guard(run)


@app.command()
def models():
    """List the registered models and their tagged variants (``arch.tag``), the official-checkpoint importers
    (``aufer import NAME``) with their options, the released evaluators, the shipped default model, and the
    catalogue of known official checkpoints (source page, licence, training data, AU set, the import command;
    :mod:`aufer.models.catalogue`; nothing is downloaded)."""
    from aufer.models import IMPORTERS, list_models  # noqa: PLC0415  heavy (torch)
    from aufer.models.catalogue import checkpoints, describe  # noqa: PLC0415
    from aufer.models.shipped import DEFAULT_MODEL, default_model_path, model_card  # noqa: PLC0415  heavy (torch)
    from aufer.training import EVALUATORS  # noqa: PLC0415  heavy (torch)

    for name in list_models(tags=True):
        out.print(name)
    for name in IMPORTERS.names():
        imp = IMPORTERS[name]
        opts = " ".join(_option_help(p) for p in importer_options(imp).values())
        out.print(f"importer: aufer import {name} CKPT --out DIR {opts} — {imp.help} (from {imp.source})",
                  highlight=False)
    for name in EVALUATORS.names():
        out.print(f"released evaluator: aufer evaluate RUN --released {name} ({EVALUATORS[name].label})",
                  highlight=False)
    try:
        weights = default_model_path()
        card = (model_card(weights) or "").splitlines()
        out.print(f"default model: {DEFAULT_MODEL} ({weights}){' — ' + card[0].lstrip('# ') if card else ''}")
    except FileNotFoundError as e:
        out.print(f"default model: not installed ({e})")
    out.print("known official checkpoints (download them yourself, then run the import command):")
    for entry in checkpoints():
        for line in describe(entry):
            out.print(line, highlight=False, markup=False)


@app.command()
def version():
    """Print aufer's version."""
    out.print(__version__)


def main() -> None:
    """Console entry point."""
    tune_allocator()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; rerun the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
