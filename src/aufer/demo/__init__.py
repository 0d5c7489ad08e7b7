"""The embedded experiment (``aufer demo``): heterogeneous joint AU + expression learning on the bundled faces,
trained through the same engine (:func:`aufer.engine.runner.fit`) as the benchmarks.

No sample carries both labels. The model is selected on validation people and reported once on test people:
per-AU F1 and mean F1 (threshold 0.5) on SYNTHETIC AU clips, UAR/WAR on expressions, and on the REAL photos of
held-out people the happy-vs-neutral accuracy and the fraction of people whose AU12 probability is higher on
their smiling photo. The run ends by analysing the bundled video with the trained model.

The recipe is ``aufer/data/recipes/demo_lite.yaml`` on ``demo.yaml`` (``configs/demo/`` builds on them); the
``extra`` section holds the demo's data settings (:class:`DemoSettings`).
"""

from __future__ import annotations

import json
import shutil
import time
from importlib import resources
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from aufer import synth
from aufer.bundled import ATTRIBUTION, bundled_video
from aufer.datasets.clips import ExprClipDataset
from aufer.datasets.loaders import make_loader
from aufer.demo.data import (HAPPY, NEUTRAL, DemoData, DemoSettings, StageProgress, prepare_data, split_identities,
                             synth_excluded)
from aufer.demo.metrics import dataset_probabilities, held_out_metrics, real_photo_metrics
from aufer.engine.loop import evaluate
from aufer.engine.recipe import RecipeError, build_section, load, read
from aufer.engine.runner import fit
from aufer.media import video_info
from aufer.models import load_model, save_model
from aufer.models.fusion import assemble, choose_fusion_weights
from aufer.predict import predict_to_csv
from aufer.predict.report import plot_confusion, plot_history, plot_timeseries
from aufer.store import FaceStore
from aufer.vocab import data_path

__all__ = ["run_demo", "demo_recipe", "read_demo_recipe", "engine_recipe", "DemoSettings", "DemoData", "split_identities", "prepare_data",
           "real_photo_metrics", "held_out_metrics", "HAPPY", "NEUTRAL"]


def demo_recipe(quick: bool = False) -> Path:
    """The packaged demo recipe: ``demo_lite.yaml`` (EfficientNet-Lite0 at 160 px, built on ``demo.yaml``, which
    holds the demo's data settings and selection with the from-scratch ``aufer_tiny``); with ``quick``,
    ``demo_quick.yaml`` (a smoke configuration on ``aufer_tiny``)."""
    name = "demo_quick.yaml" if quick else "demo_lite.yaml"
    return Path(str(resources.files("aufer"))) / "data" / "recipes" / name


def read_demo_recipe(path: str | Path, overrides=()) -> tuple[dict, DemoSettings, int]:
    """The merged mapping of a demo recipe, its validated ``extra`` section and its seed.

    Raises:
        aufer.engine.recipe.RecipeError: a missing file, or a bad ``extra`` key or value.
    """
    raw = read(path, overrides)
    settings = build_section(DemoSettings, raw.get("extra"), "extra")
    try:
        synth_excluded(settings)
    except ValueError as e:
        raise RecipeError(str(e)) from None
    return raw, settings, int(raw.get("seed", 0))


def engine_recipe(path: str | Path, overrides, raw: dict, settings: DemoSettings, au_store, au_split, expr_store,
                  expr_split, **sections):
    """The validated engine recipe of a demo run over the given stores and split files; the model's input
    size defaults to the crop size; ``sections`` (e.g. ``select={"mode": "last"}``) replace top-level sections
    given by the caller."""
    values = {"data": {"au": {"store": str(au_store), "split_file": str(au_split)},
                       "expr": {"store": str(expr_store), "split_file": str(expr_split)}}, **sections}
    if "input_size" not in ((raw.get("model") or {}).get("args") or {}):
        values["model"] = {"args": {"input_size": settings.crop_size}}
    return load(path, overrides, values=values)


def _eval_set(store_path: Path, clips: list[str]):
    store = FaceStore(store_path)
    return ExprClipDataset(store, store.load_records().subset(clips), num_segments=1, aus=synth.SYNTH_AUS)


def run_demo(out_dir: str | Path, recipe: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
             quick: bool = False, console=None) -> dict:
    """Run the embedded experiment and write the run folder.

    The folder holds ``config.yaml`` (the resolved recipe), ``split.json`` (identity groups), ``train/`` (the
    engine's run folder: logs, states, best/last checkpoints, Parquet predictions), ``model.safetensors`` +
    ``model.json`` (the selected checkpoint), ``metrics.json``, ``history.json``, ``predictions.csv`` (the video
    analysis) and ``plots/``. Synthetic data and stores are cached (``$AUFER_CACHE``, default
    ``~/.cache/aufer``) so that a repeated run does not generate them again.

    Args:
        recipe: a demo recipe (default the packaged one); ``overrides`` are ``--set`` strings.

    Returns:
        The metrics dict written to ``metrics.json``.

    Raises:
        aufer.engine.recipe.RecipeError: a bad recipe or setting (one line).
    """
    console = console or Console()
    out = Path(out_dir)
    if (out / "train" / "metrics.json").exists():
        raise RecipeError(f"{out} already holds a finished demo; choose another --out")
    path = Path(recipe) if recipe is not None else demo_recipe(quick)
    raw, settings, seed = read_demo_recipe(path, overrides)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    console.print(f"[bold]aufer demo[/] → {out}")

    with StageProgress(console) as steps:
        t0 = time.perf_counter()
        try:
            data = prepare_data(settings, seed, steps, out)
        except ValueError as e:  # group sizes that do not fit the bundled people
            raise RecipeError(f"extra: {e}") from None
        timing["data_s"] = time.perf_counter() - t0
        steps.log(f"identities: AU-train {len(data.split['au_train'])}, FE-train {len(data.split['fe_train'])}, "
                  f"validation {len(data.split['val'])}, test {len(data.split['test'])} (subject-exclusive)")
    (out / "split.json").write_text(json.dumps(data.split, indent=1))
    r = engine_recipe(path, overrides, raw, settings, data.au_store, data.au_split, data.expr_store, data.expr_split)
    shutil.rmtree(out / "train", ignore_errors=True)  # an unfinished earlier training is redone from the cache
    val_real = _eval_set(data.expr_store, data.real_val)
    t0 = time.perf_counter()
    result = fit(r, out / "train", console=console, extra_eval={"real": lambda m: real_photo_metrics(m, val_real)})
    timing["train_s"] = time.perf_counter() - t0
    (out / "config.yaml").write_text((out / "train" / "config.yaml").read_text())
    model = load_model(out / "train" / "best.safetensors")
    synth_expr = evaluate(model, make_loader(_eval_set(data.expr_store, data.synth_test), 64, train=False))
    n_au_frames = result["test"]["au"]["n_au_frames"]
    test = held_out_metrics(result["test"], real_photo_metrics(model, _eval_set(data.expr_store, data.real_test)),
                            synth_expr, n_au_frames)
    sel = result["selection"]
    fusion = None
    if settings.fuse_faceapi:
        model, fusion = fuse_with_faceapi(model, _eval_set(data.expr_store, data.real_val))
        test["real_photos_aufer_alone"] = test["real_photos"]
        test["real_photos"] = real_photo_metrics(model, _eval_set(data.expr_store, data.real_test))
    save_model(model, out / "model", keep=("faceapi.",), extra={
        "trained_on": "aufer demo: SYNTHETIC FACS-warp AU clips + real London Set photos + SYNTHETIC prototype "
                      "expressions; " + ATTRIBUTION,
        "synthetic_note": synth.SYNTHETIC_NOTE, "selected_epoch": sel["epoch"], "selection": "validation people only",
        **({"fusion": fusion} if fusion else {})})
    history = [{k.replace("train_", ""): v for k, v in row.items()}
               for row in pd.read_csv(out / "train" / "epochs.csv").to_dict("records")]
    metrics = {
        "note": "AU metrics and synthetic-expression metrics are measured on SYNTHETIC FACS-warp data of held-out "
                "people; real_photos are real London Set photos of held-out people.",
        "synthetic_note": synth.SYNTHETIC_NOTE,
        "split_sizes": {k: len(v) for k, v in data.split.items()},
        "model": r.model.name, "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "selection": {"epoch": sel["epoch"], "criterion": "mean of validation " + ", ".join(r.select.metric),
                      "data": "validation people only (never test)"},
        "test": test,
        **({"fusion": fusion} if fusion else {}),
        "validation_at_selected_epoch": next((h for h in history if h["epoch"] == sel["epoch"]), None),
        "targets": {"happy_vs_neutral_accuracy": 0.90, "au12_smile_gt_neutral": 0.95,
                    "note": "targets of the demo (issue 2); not measurements"},
    }
    plot_history(history, out / "plots" / "training.png")
    plot_confusion(test["expression_all"]["confusion"], model.emotions, out / "plots" / "test_confusion.png",
                   "test expressions (real + synthetic)")

    with StageProgress(console) as steps:
        t0 = time.perf_counter()
        video = Path(settings.video) if settings.video else bundled_video()
        tick_v = steps.task(f"analyse video {video.name}", video_info(video)["n_frames"] or None)
        state = {"done": 0}

        def progress(done, total):
            tick_v(done - state["done"])
            state["done"] = done

        csv_path = predict_to_csv(video, model, out / "predictions.csv", progress=progress)
        timing["video_s"] = time.perf_counter() - t0
    pred = pd.read_csv(csv_path)
    plot_timeseries(pred, out / "plots" / "video_timeseries.png", title=f"aufer demo model on {video.name}",
                    note="model trained on SYNTHETIC FACS-warp AU data and real London Set photos; " + ATTRIBUTION)
    timing["video_frames"] = int(pred["frame"].nunique())
    timing["video_fps"] = timing["video_frames"] / timing["video_s"]
    timing["total_s"] = time.perf_counter() - t_start
    metrics["timing"] = timing
    metrics["video"] = {"file": str(video), "frames": timing["video_frames"],
                        "face_detected_fraction": float(pred.groupby("frame")["face_detected"].any().mean())}
    (out / "history.json").write_text(json.dumps(history, indent=1))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    _print_summary(console, metrics, out)
    return metrics


def fuse_with_faceapi(model, val_real) -> tuple:
    """aufer's default-model design (:mod:`aufer.models.fusion`): the trained JointNet fused with face-api's
    expression network, the fusion weights chosen on the validation people's real photos ``val_real`` (an
    evaluation dataset of one-frame clips; never test people). Returns the fused model and a summary of the
    choice."""
    faceapi = load_model(data_path("models", "faceapi-expression"))
    p_fa = dataset_probabilities(assemble(model, faceapi, 1.0, 0.0, 0.0), val_real)  # the fused output is face-api's
    p_pr = dataset_probabilities(model, val_real)
    smiling = p_fa["expr"] == HAPPY
    keep = smiling | (p_fa["expr"] == NEUTRAL)
    (wf, wp, b), table = choose_fusion_weights(p_fa["p_expr"][keep], p_pr["p_expr"][keep], smiling[keep])
    chosen = next(r for r in table if r[:3] == (wf, wp, b))
    lowest = min(table, key=lambda r: r[3])
    return assemble(model, faceapi, wf, wp, b), {
        "w_faceapi": wf, "w_probe": wp, "bias": b, "val_log_loss": chosen[3], "val_happy_vs_neutral": chosen[4],
        "lowest_val_log_loss": {"weights": list(lowest[:3]), "log_loss": lowest[3], "standard_error": lowest[5]},
        "rule": "one standard error: of the candidates within one SE of the lowest validation log-loss, the one with "
                "the most face-api weight (aufer.models.fusion.choose_fusion_weights)",
        "n_val_photos": int(keep.sum()), "chosen_on": "validation people's real neutral and smiling photos"}


def _print_summary(console, m: dict, out: Path) -> None:
    t = m["test"]
    table = Table(title="aufer demo — test (held-out people; model selected on validation)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("data")
    table.add_row("AU mean F1 (thr 0.5)", f"{t['au_synthetic']['f1_mean']:.3f}", "SYNTHETIC FACS-warp clips")
    table.add_row("expression UAR / WAR", f"{t['expression_all']['uar']:.3f} / {t['expression_all']['war']:.3f}",
                  "real photos + SYNTHETIC prototypes")
    r = t["real_photos"]
    table.add_row("happy vs neutral accuracy", f"{r['happy_vs_neutral_accuracy']:.3f}", f"REAL photos (n={r['n_photos']})")
    if "au12_smile_gt_neutral" in r:
        table.add_row("AU12 higher when smiling", f"{r['au12_smile_gt_neutral']:.3f}",
                      f"REAL photo pairs (n={r['n_people_paired']} people)")
    table.add_row("video analysis", f"{m['timing']['video_fps']:.1f} frames/s", m["video"]["file"].rsplit("/", 1)[-1])
    table.add_row("total time", f"{m['timing']['total_s'] / 60:.1f} min", "")
    console.print(table)
    console.print(f"run folder: {out}")
