"""The embedded experiment (``aufer demo``): heterogeneous joint AU + expression learning on the bundled faces.

Identities are split subject-exclusively into four groups:

* AU-train — the 40 Canada people (+ optionally some London people): SYNTHETIC FACS-warp AU clips only
  (AU labels per frame, no expression label);
* FE-train — London people: their REAL neutral and smiling photos plus SYNTHETIC prototype expressions of
  the 7 classes (expression labels only, no AU label);
* validation — London people, used for model selection only;
* test — London people, used once at the end.

No sample carries both labels. The model is selected on validation and reported on test: per-AU F1 and mean F1
(threshold 0.5) on synthetic AU clips, UAR/WAR on expressions, and on the REAL photos of held-out people the
happy-vs-neutral accuracy and the fraction of people whose AU12 probability is higher on their smiling photo.
The run ends by analysing the bundled video with the trained model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

import aufer
from aufer import vocab
from aufer import synth
from aufer.bundled import ATTRIBUTION, bundled_faces, bundled_video
from aufer.synth import ClipSet
from aufer.datasets.loaders import AUWindowDataset, ExprClipDataset, JointLoader, store_loader
from aufer.readers.records import ClipRecords, FrameRecords
from aufer.store.facestore import FaceStore
from aufer.faces.pipeline import FacePipeline, align_face
from aufer.media import read_image
from aufer.protocols import Split

__all__ = ["DemoConfig", "DemoData", "split_identities", "prepare_data", "train_model", "held_out_metrics", "run_demo", "StageProgress",
           "real_photo_metrics"]

HAPPY, NEUTRAL = vocab.EMOTIONS_7.index("happiness"), vocab.EMOTIONS_7.index("neutral")


@dataclass
class DemoConfig:
    """Settings of the embedded experiment (saved, resolved, as ``config.yaml`` in the run folder)."""

    seed: int = 0
    model: str = "aufer_tiny"
    model_args: dict = field(default_factory=dict)  # extra arguments of the model factory (may set input_size; default crop_size)
    crop_size: int = 112                # aligned crop side (pixels)
    synth_image_size: int = 256         # photos are downscaled to this side before FACS-warp (speed)
    n_test_people: int = 34             # London people held out for test
    n_val_people: int = 14              # London people for validation (model selection)
    au_train_extra_london: int = 0      # London people added to AU-train (besides the 40 Canada people)
    max_au_train_people: int = 0        # use at most this many AU-train people (0 = all)
    clip_frames: int = 16               # frames per synthetic AU clip
    au_clips_per_person: int = 12       # synthetic AU clips per AU-train person
    au_eval_clips_per_person: int = 4   # synthetic AU clips per validation / test person
    fe_synth_per_emotion: int = 2       # synthetic prototype stills per FE-train person and emotion
    fe_eval_per_emotion: int = 1        # synthetic prototype stills per validation / test person and emotion
    real_repeat: int = 1                # each real FE-train photo appears this many times per epoch
    epochs: int = 16
    au_batch: int = 8                   # AU clips per step
    train_frames: int = 4               # frames drawn from each AU clip per step
    fe_batch: int = 32                  # expression clips per step
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.0        # on the expression loss
    ema_decay: float = 0.99             # exponential moving average of the weights (0 = off), used for evaluation
    workers: int = 2                    # processes for synthetic data generation
    video: str = ""                     # video analysed at the end ("" = the bundled Pexels video)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "DemoConfig":
        """Read a YAML file of settings (unknown keys raise ``ValueError``), then apply ``overrides``."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown demo settings {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def quick(cls, **overrides) -> "DemoConfig":
        """A minutes-to-seconds configuration for smoke tests (few people, clips and epochs)."""
        base = dict(n_test_people=6, n_val_people=4, max_au_train_people=8, au_clips_per_person=2, au_eval_clips_per_person=1,
                    clip_frames=8, fe_synth_per_emotion=1, fe_eval_per_emotion=1, epochs=2, au_batch=4,
                    fe_batch=16, workers=1)
        base.update(overrides)
        return cls(**base)


def split_identities(identities_london: list[str], identities_canada: list[str], cfg: DemoConfig) -> dict[str, list[str]]:
    """Subject-exclusive split: ``au_train``, ``fe_train``, ``val``, ``test`` (seeded shuffle of London people).

    Raises:
        ValueError: if the requested group sizes do not fit the London set.
    """
    london = sorted(identities_london)
    rng = np.random.default_rng(cfg.seed)
    rng.shuffle(london)
    n_t, n_v, n_x = cfg.n_test_people, cfg.n_val_people, cfg.au_train_extra_london
    if n_t + n_v + n_x >= len(london):
        raise ValueError(f"test {n_t} + val {n_v} + extra AU-train {n_x} people leave no FE-train people "
                         f"out of {len(london)}")
    au_train = sorted(identities_canada) + london[n_t + n_v:n_t + n_v + n_x]
    if cfg.max_au_train_people:
        au_train = au_train[: cfg.max_au_train_people]
    split = {"test": london[:n_t], "val": london[n_t:n_t + n_v], "au_train": au_train, "fe_train": london[n_t + n_v + n_x:]}
    # aufer.protocols.Split refuses an identity in two parts (or twice in one: AU-train vs FE-train)
    Split(train=tuple(split["au_train"] + split["fe_train"]), val=tuple(split["val"]), test=tuple(split["test"]),
          unit="subject")
    return split


# ----------------------------------------------------------------------------------------------- helpers
class StageProgress:
    """Rich progress display of the demo's stages (falls back to plain prints without a terminal)."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # noqa: PLC0415

        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def task(self, description: str, total: int | None):
        tid = self.progress.add_task(description, total=total)
        return lambda n=1: self.progress.advance(tid, n)

    def log(self, msg: str) -> None:
        self.progress.console.print(msg)


def _cache_dir(cfg: DemoConfig, split: dict) -> Path:
    keys = ("seed", "crop_size", "synth_image_size", "clip_frames", "au_clips_per_person", "au_eval_clips_per_person",
            "fe_synth_per_emotion", "fe_eval_per_emotion", "real_repeat")
    blob = json.dumps({"version": aufer.__version__, "synth": synth.SYNTH_VERSION, "cfg": {k: getattr(cfg, k) for k in keys}, "split": split},
                      sort_keys=True)
    root = Path(os.environ.get("AUFER_CACHE", Path.home() / ".cache" / "aufer"))
    return root / "demo" / hashlib.sha1(blob.encode()).hexdigest()[:16]


def _cached(path: Path, make) -> ClipSet:
    if path.exists():
        return ClipSet.load(path)
    cs = make()
    cs.save(path)
    return cs


def _detect_photos(df, steps: StageProgress) -> dict[str, object]:
    """Face + landmarks of every bundled photo (full resolution), keyed by path."""
    pipe = FacePipeline(crop_size=112)
    tick = steps.task("detect faces in bundled photos", len(df))
    out = {}
    for p in df["path"]:
        img = read_image(p)
        faces = pipe.detector.detect(img)
        out[p] = (img, faces[0] if faces else None)
        tick()
    return out


def _real_clips(rows, detections, crop_size: int) -> ClipSet:
    """Real photos as T = 1 clips with expression labels (neutral / happiness) and no AU labels."""
    crops, lms, labels, ids, det = [], [], [], [], []
    for _, r in rows.iterrows():
        img, face = detections[r.path]
        if face is None:
            continue
        a = align_face(img, face, crop_size)
        crops.append(a.crop)
        lms.append(a.landmarks.astype(np.float32))
        labels.append(HAPPY if r.expression == "smiling" else NEUTRAL)
        ids.append(r.identity)
        det.append(True)
    n, na = len(crops), len(synth.SYNTH_AUS)
    return ClipSet(crops=np.stack(crops)[:, None], landmarks=np.stack(lms)[:, None], au=np.full((n, 1, na), -1, np.int8),
                   au_intensity=np.full((n, 1, na), np.nan, np.float32), expr=np.array(labels, np.int64),
                   identity=np.array(ids), source=np.full(n, "real"), detected=np.array(det)[:, None],
                   aus=synth.SYNTH_AUS, emotions=vocab.EMOTIONS_7, notes=["real photos (London Set, CC BY 4.0)"])


def _bases(rows, detections, size: int) -> list[synth.BaseFace]:
    out = []
    for _, r in rows.iterrows():
        img, face = detections[r.path]
        if face is None:
            continue
        s = size / img.shape[1]
        small = cv2.resize(img, (size, round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        out.append(synth.BaseFace(small, face.landmarks * s, r.identity))
    return out


def real_photo_metrics(model, real) -> dict:
    """Metrics on real neutral/smiling photos of held-out people (``real``: an evaluation
    :class:`~aufer.datasets.loaders.ExprClipDataset` of one-frame clips).

    * ``happy_vs_neutral_accuracy``: a photo is called happy when P(happiness) > P(neutral);
    * ``top1_accuracy_7class``: the arg-max over all 7 classes equals the truth (stricter);
    * ``au12_smile_gt_neutral``: fraction of people with both photos whose AU12 probability is higher on the
      smiling photo.
    """
    from aufer._legacy_loop import predict_clips  # noqa: PLC0415

    p_au, p_e, _, truth = predict_clips(model, real, labels=True)
    identity = real.records.table["subject"].to_numpy()
    called_happy = p_e[:, HAPPY] > p_e[:, NEUTRAL]
    out = {"n_photos": int(len(truth)),
           "happy_vs_neutral_accuracy": float(np.mean(called_happy == (truth == HAPPY))),
           "top1_accuracy_7class": float(np.mean(p_e.argmax(1) == truth))}
    if 12 in model.aus:
        j = model.aus.index(12)
        au12 = p_au[:, 0, j]
        wins = []
        for ident in np.unique(identity):
            sel = identity == ident
            smile, neutral = au12[sel & (truth == HAPPY)], au12[sel & (truth == NEUTRAL)]
            if len(smile) and len(neutral):
                wins.append(bool(smile.mean() > neutral.mean()))
        out["au12_smile_gt_neutral"] = float(np.mean(wins)) if wins else float("nan")
        out["n_people_paired"] = len(wins)
    return out


def _selection_score(val_au: dict, val_expr: dict, val_real: dict) -> float:
    return float(np.mean([val_au["au_f1_mean"], val_expr["uar"], val_real["happy_vs_neutral_accuracy"]]))


# ----------------------------------------------------------------------------------------------- stages
@dataclass
class DemoData:
    """Everything the experiment trains and evaluates on (see the module docstring)."""

    split: dict[str, list[str]]
    store: FaceStore       # every crop below, written once like any prepared benchmark
    au_train: FrameRecords  # SYNTHETIC AU clips of AU-train people (per-frame AU labels)
    fe_train: ClipRecords  # real photos + SYNTHETIC prototypes of FE-train people (expression labels)
    # evaluation datasets over the store (whole 16-frame AU clips; one-frame expression clips)
    val_au: AUWindowDataset
    val_expr: ExprClipDataset
    val_real: ExprClipDataset
    test_au: AUWindowDataset
    test_expr: ExprClipDataset
    test_expr_synth: ExprClipDataset
    test_real: ExprClipDataset


def prepare_data(cfg: DemoConfig, steps: "StageProgress", cache: Path | None = None) -> DemoData:
    """Detect the bundled faces, split identities and build (or load from ``cache``) the synthetic data."""
    df = bundled_faces()
    split = split_identities(list(df[df.set == "london"].identity.unique()), list(df[df.set == "canada"].identity.unique()), cfg)
    cache = cache or _cache_dir(cfg, split)
    detections = _detect_photos(df, steps)
    neutral = df[df.expression == "neutral"]
    bases = {g: _bases(neutral[neutral.identity.isin(split[g])], detections, cfg.synth_image_size) for g in split}
    real = {g: _real_clips(df[(df.set == "london") & df.identity.isin(split[g])], detections, cfg.crop_size)
            for g in ("fe_train", "val", "test")}
    plan = {  # name: (identity group, kind, clips per person, seed stream)
        "au_train": ("au_train", "au", cfg.au_clips_per_person, 1), "val_au": ("val", "au", cfg.au_eval_clips_per_person, 2),
        "test_au": ("test", "au", cfg.au_eval_clips_per_person, 3),
        "fe_train_synth": ("fe_train", "expr", cfg.fe_synth_per_emotion, 4),
        "val_expr_synth": ("val", "expr", cfg.fe_eval_per_emotion, 5),
        "test_expr_synth": ("test", "expr", cfg.fe_eval_per_emotion, 6)}
    parts = {}
    for name, (group, kind, n, stream) in plan.items():
        b, seed = bases[group], cfg.seed * 1000 + stream
        if kind == "au":
            tick = steps.task(f"FACS-warp (synthetic) {name}: {len(b)}×{n} clips", len(b))
            make = lambda b=b, n=n, seed=seed, tick=tick: synth.make_au_clips(  # noqa: E731
                b, n, cfg.clip_frames, cfg.crop_size, seed, cfg.workers, tick)
        else:
            tick = steps.task(f"FACS-warp (synthetic) {name}: {len(b)}×7×{n} stills", len(b))
            make = lambda b=b, n=n, seed=seed, tick=tick: synth.make_expression_clips(  # noqa: E731
                b, n, vocab.EMOTIONS_7, 1, cfg.crop_size, seed, cfg.workers, tick)
        cached = (cache / f"{name}.npz").exists()
        parts[name] = _cached(cache / f"{name}.npz", make)
        if cached:
            tick(len(b))
    store = FaceStore(cache / "store.sqlite", "a", crop_size=cfg.crop_size)
    fe_train = ClipSet.concat([real["fe_train"]] * max(1, cfg.real_repeat) + [parts["fe_train_synth"]])

    def au_eval(name):
        return AUWindowDataset(store, parts[name].to_store(store, name, "au"), length=cfg.clip_frames)

    def expr_eval(name, clips):
        return ExprClipDataset(store, clips.to_store(store, name, "expr"), num_segments=1, aus=synth.SYNTH_AUS)

    return DemoData(
        split=split, store=store, au_train=parts["au_train"].to_store(store, "au_train", "au"),
        fe_train=fe_train.to_store(store, "fe_train", "expr"),
        val_au=au_eval("val_au"), val_expr=expr_eval("val_expr", ClipSet.concat([real["val"], parts["val_expr_synth"]])),
        val_real=expr_eval("val_real", real["val"]), test_au=au_eval("test_au"),
        test_expr=expr_eval("test_expr", ClipSet.concat([real["test"], parts["test_expr_synth"]])),
        test_expr_synth=expr_eval("test_expr_synth", parts["test_expr_synth"]), test_real=expr_eval("test_real", real["test"]))


def train_model(cfg: DemoConfig, store: FaceStore, au_train: FrameRecords, fe_train: ClipRecords,
                val: tuple[AUWindowDataset, ExprClipDataset, ExprClipDataset] | None, steps: "StageProgress"):
    """Joint training from a face store through the same samplers and loaders as the benchmarks (AU windows of
    ``cfg.train_frames`` consecutive frames, one random window per synthetic clip and epoch; expression clips of
    one frame); with ``val = (val_au, val_expr, val_real)`` the epoch with the best validation score is
    kept (model selection on validation people only). With ``cfg.ema_decay`` the exponential moving average of
    the weights (updated after every step) is what is evaluated and returned.
    Returns ``(model, history, selected_epoch)``."""
    from aufer.models import create_model  # noqa: PLC0415
    from aufer._legacy_loop import evaluate, train_one_epoch  # noqa: PLC0415

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, aus=synth.SYNTH_AUS, emotions=vocab.EMOTIONS_7,
                         **{"input_size": cfg.crop_size, **cfg.model_args})
    au_data = AUWindowDataset(store, au_train, length=cfg.train_frames, train=True, seed=cfg.seed, per_sequence=1)
    fe_data = ExprClipDataset(store, fe_train, num_segments=1, train=True, aus=au_train.aus, seed=cfg.seed + 1)
    joint = JointLoader(store_loader(au_data, cfg.au_batch, seed=cfg.seed), store_loader(fe_data, cfg.fe_batch, seed=cfg.seed + 1))
    steps_per_epoch = len(joint)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)
    bar = steps.task(f"joint training ({cfg.epochs} epochs × {steps_per_epoch} steps)", cfg.epochs * steps_per_epoch)
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn  # noqa: PLC0415

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)

    def tick():
        if ema is not None:
            ema.update_parameters(model)
        bar()

    evaluated = ema.module if ema is not None else model
    history, best = [], None
    for epoch in range(1, cfg.epochs + 1):
        joint.set_epoch(epoch)
        losses = train_one_epoch(model, joint.au_loader, joint.expr_loader, opt, sched, on_step=tick,
                                 label_smoothing=cfg.label_smoothing)
        row = {"epoch": epoch, **losses}
        if val is not None:
            v_au, v_ex, v_real = evaluate(evaluated, val[0]), evaluate(evaluated, val[1]), real_photo_metrics(evaluated, val[2])
            row.update({"val_au_f1_mean": v_au["au_f1_mean"], "val_uar": v_ex["uar"],
                        "val_happy_vs_neutral": v_real["happy_vs_neutral_accuracy"],
                        "val_score": _selection_score(v_au, v_ex, v_real)})
            steps.log(f"epoch {epoch:2d}: loss AU {losses['loss_au']:.3f} expr {losses['loss_expr']:.3f} | "
                      f"val AU F1 {v_au['au_f1_mean']:.3f} UAR {v_ex['uar']:.3f} "
                      f"happy/neutral {v_real['happy_vs_neutral_accuracy']:.3f}")
        history.append(row)
        score = row.get("val_score", epoch)  # without validation: the last epoch
        if best is None or score > best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in evaluated.state_dict().items()})
    model.load_state_dict(best[2])
    return model.eval(), history, best[1]


def held_out_metrics(model, data: DemoData) -> dict:
    """Test metrics of held-out people (see :func:`run_demo`)."""
    from aufer._legacy_loop import evaluate  # noqa: PLC0415

    t_au, t_ex, t_ex_synth = evaluate(model, data.test_au), evaluate(model, data.test_expr), evaluate(model, data.test_expr_synth)
    return {
        "au_synthetic": {"f1": t_au["au_f1"], "f1_mean": t_au["au_f1_mean"], "threshold": 0.5, "n_clips": t_au["n_clips"],
                         "n_frames": len(data.test_au.records)},
        "expression_all": {"uar": t_ex["uar"], "war": t_ex["war"], "n": t_ex["n_clips"], "confusion": t_ex["confusion"],
                           "data": "real photos (neutral, happiness) + synthetic prototypes (7 classes)"},
        "expression_synthetic": {"uar": t_ex_synth["uar"], "war": t_ex_synth["war"], "n": t_ex_synth["n_clips"]},
        "real_photos": real_photo_metrics(model, data.test_real),
        "targets": {"happy_vs_neutral_accuracy": 0.90, "au12_smile_gt_neutral": 0.95},
    }


# ------------------------------------------------------------------------------------------------- demo
def run_demo(out_dir: str | Path, cfg: DemoConfig | None = None, console=None) -> dict:
    """Run the embedded experiment and write the run folder.

    The folder holds ``config.yaml`` (resolved settings), ``split.json``, ``model.safetensors`` + ``model.json``
    (the selected checkpoint), ``metrics.json``, ``history.json``, ``predictions.csv`` (the video analysis) and
    ``plots/``. Synthetic data are cached (``$AUFER_CACHE``, default ``~/.cache/aufer``) so that an interrupted
    or repeated run does not generate them again.

    Returns:
        The metrics dict written to ``metrics.json``.
    """
    import pandas as pd  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415

    from aufer.media import video_info  # noqa: PLC0415
    from aufer.predict import predict_to_csv  # noqa: PLC0415
    from aufer.report import plot_confusion, plot_history, plot_timeseries  # noqa: PLC0415
    from aufer.models.io import save_model  # noqa: PLC0415

    cfg = cfg or DemoConfig()
    console = console or Console()
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    resolved = {"demo": dataclasses.asdict(cfg), "aufer_version": aufer.__version__, "synth_version": synth.SYNTH_VERSION,
                "torch": str(torch.__version__), "python": platform.python_version()}
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    console.print(f"[bold]aufer demo[/] → {out}")

    with StageProgress(console) as steps:
        t0 = time.perf_counter()
        data = prepare_data(cfg, steps)
        timing["data_s"] = time.perf_counter() - t0
        (out / "split.json").write_text(json.dumps(data.split, indent=1))
        steps.log(f"identities: AU-train {len(data.split['au_train'])}, FE-train {len(data.split['fe_train'])}, "
                  f"validation {len(data.split['val'])}, test {len(data.split['test'])} (subject-exclusive)")

        t0 = time.perf_counter()
        model, history, epoch = train_model(cfg, data.store, data.au_train, data.fe_train,
                                            (data.val_au, data.val_expr, data.val_real), steps)
        timing["train_s"] = time.perf_counter() - t0
        test = held_out_metrics(model, data)
        save_model(model, out / "model", extra={
            "trained_on": "aufer demo: SYNTHETIC FACS-warp AU clips + real London Set photos + SYNTHETIC prototype "
                          "expressions; " + ATTRIBUTION,
            "synthetic_note": synth.SYNTHETIC_NOTE, "selected_epoch": epoch, "selection": "validation people only"})
        metrics = {
            "note": "AU metrics and synthetic-expression metrics are measured on SYNTHETIC FACS-warp data of held-out "
                    "people; real_photos are real London Set photos of held-out people.",
            "synthetic_note": synth.SYNTHETIC_NOTE,
            "split_sizes": {k: len(v) for k, v in data.split.items()},
            "model": cfg.model, "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "selection": {"epoch": epoch, "criterion": "mean of validation AU F1, UAR and happy-vs-neutral accuracy",
                          "data": "validation people only (never test)"},
            "test": test,
            "validation_at_selected_epoch": history[epoch - 1],
        }
        plot_history(history, out / "plots" / "training.png")
        plot_confusion(test["expression_all"]["confusion"], vocab.EMOTIONS_7, out / "plots" / "test_confusion.png",
                       "test expressions (real + synthetic)")

        t0 = time.perf_counter()
        video = Path(cfg.video) if cfg.video else bundled_video()
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


def _print_summary(console, m: dict, out: Path) -> None:
    from rich.table import Table  # noqa: PLC0415

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
