"""One run of a recipe on one fold (pair): :func:`fit` — train with validation-based selection, exact resume
and DDP, then evaluate the selected checkpoint on the test split once — and :func:`evaluate_run`, which
recomputes a finished run's metrics from a checkpoint.

Run folder (``runs/<recipe>/<fold>/``):

* ``config.yaml`` — the resolved recipe; ``run.json`` — fold, data sizes and split ids; ``env.json``;
* ``state/`` — the training state for ``--resume`` (:mod:`aufer.engine.state`);
* ``best.safetensors`` + ``best.json`` and ``last.safetensors`` + ``last.json`` — model checkpoints that
  ``aufer evaluate``, ``aufer predict`` and :func:`aufer.load_model` read;
* ``steps.csv``, ``epochs.csv``, ``tb/`` — logs;
* ``metrics.json`` — the test metrics of the selected checkpoint, with how it was selected;
* ``predictions/test_au_frames.parquet``, ``predictions/test_expr_clips.parquet``.

Selection: every ``select.every`` epochs (and after the last) the model (its EMA with ``train.ema``) is
evaluated on the validation split carved from the training subjects or clips; the best score by
``select.metric`` is kept. ``select.mode: test`` selects on the test split instead — only to reproduce
reference numbers; everything it produces is labelled ``test-selected``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from aufer.datasets.loaders import JointLoader, make_loader
from aufer.engine.build import (RunData, TaskData, amp_dtype, build_data, build_model, build_optimizer, build_scheduler,
                                check_model, class_weights, fold_name, parse_fold, unaugmented_train)
from aufer.engine.distributed import DistInfo, barrier, broadcast_object, gather_objects, setup
from aufer.engine.logs import RunLog, environment, log_plan
from aufer.engine.loop import NonFiniteLossError, StepTimes, predict, summarise, train_one_epoch
from aufer.engine.recipe import Recipe, RecipeError, dump, load
from aufer.engine.provenance import PROVENANCE_KEYS, run_history, run_provenance
from aufer.engine.runfolder import RunLock, check_resume, recipe_hash
from aufer.engine.state import latest_dir, load_latest, save_state, set_rng_state
from aufer.engine.tables import au_frame_table, expr_clip_table, write_table
from aufer.errors import UserMistake
from aufer.models import load_model, save_model
from aufer.models.probe import fit_expression_probe
from aufer.training import LOSSES, STEPS, LossContext, StepContext, attach_loss_params

__all__ = ["TrainingError", "fit", "evaluate_run", "selection_label", "is_finished"]

log = logging.getLogger(__name__)


class TrainingError(UserMistake, RuntimeError):
    """Training stopped for a reason the user can act on (a non-finite loss); the message says what to do."""


def selection_label(mode: str) -> str:
    """``"test-selected"`` for ``select.mode: test`` (reference-number reproduction), else ``"validation-selected"``
    (or ``"last-epoch"``)."""
    return {"test": "test-selected", "val": "validation-selected", "last": "last-epoch"}[mode]


def is_finished(run_dir: str | Path) -> bool:
    """Whether a run folder holds final test metrics."""
    return (Path(run_dir) / "metrics.json").is_file()


def _loaders(data: RunData, recipe: Recipe, info: DistInfo, train_expr: bool = True):
    if not train_expr and data.au is None:
        raise RecipeError("the model's expression head is a probe fitted before training and there are no AU data: "
                          "nothing is left to train; add data.au or use a model without expr_probe")

    def mk(task, seed):
        if task is None:
            return None
        # pinned memory only helps copies to a GPU; workers are capped at this process' CPUs (make_loader)
        return make_loader(task.train, task.source.batch_size, train=True, workers=recipe.data.workers, seed=seed,
                           rank=info.rank, world_size=info.world_size,
                           pin_memory=recipe.data.pin_memory and info.device.type == "cuda")

    return JointLoader(mk(data.au, recipe.seed), mk(data.expr if train_expr else None, recipe.seed + 1))


def _eval_loader(task: TaskData, ds, recipe: Recipe, info: DistInfo, shard: bool):
    if shard and info.distributed:
        ds = torch.utils.data.Subset(ds, range(info.rank, len(ds), info.world_size))
    bs = task.source.eval_batch_size or task.source.batch_size
    return make_loader(ds, bs, train=False, workers=recipe.data.workers, seed=recipe.seed, pin_memory=recipe.data.pin_memory)


def _evaluate_split(model, data: RunData, split: str, recipe: Recipe, info: DistInfo, amp,
                    gather: bool = False, flip: bool = False) -> tuple[dict, dict]:
    """Metrics per task on ``split`` (``val``/``test``); with ``gather`` also the full predictions (main
    process), otherwise metrics from counts reduced over processes."""
    res, preds = {}, {}
    for task in data.tasks:
        ds = getattr(task, split)
        if ds is None or len(ds) == 0:
            continue
        pred = predict(model, _eval_loader(task, ds, recipe, info, shard=True), device=info.device, flip=flip,
                       amp_dtype=amp)
        if gather and info.distributed:
            parts = [p for p in gather_objects(pred) if p]
            pred = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
        m = summarise(pred, data.aus, data.emotions, f1_policy=recipe.select.f1_policy,
                      reduce=info.distributed and not gather)
        m["flip_tta"] = bool(flip)
        res[task.kind], preds[task.kind] = m, pred
    return res, preds


def _score(metrics: dict, names: list[str]) -> float:
    flat = {}
    for task_metrics in metrics.values():
        flat.update({k: v for k, v in task_metrics.items() if isinstance(v, (int, float))})
    for group, vals in metrics.items():
        for k, v in vals.items():
            if isinstance(v, (int, float)):
                flat[f"{group}.{k}"] = v
    got = [flat[n] for n in names if n in flat and flat[n] == flat[n]]
    if not got:
        raise RecipeError(f"select.metric: none of {names} is measured by this recipe; measured: "
                          f"{', '.join(sorted(flat))}")
    return float(np.mean(got))


def _write_predictions(run_dir: Path, split: str, preds: dict, data: RunData, tag: str = "") -> None:
    for kind, pred in preds.items():
        task = getattr(data, kind)
        ds = getattr(task, split)
        if kind == "au":
            write_table(au_frame_table(pred, ds, data.aus), run_dir / "predictions" / f"{split}{tag}_au_frames.parquet")
        else:
            write_table(expr_clip_table(pred, ds, data.emotions), run_dir / "predictions" / f"{split}{tag}_expr_clips.parquet")


def fit(recipe: Recipe, run_dir: str | Path, *, fold: str | None = None, resume: bool = False,
        device: str | None = None, console=None, extra_eval: dict[str, Callable] | None = None,
        progress: bool = True, allow_changes: Sequence[str] = (), overrides: Sequence[str] = ()) -> dict:
    """Train ``recipe`` on one fold (pair) into ``run_dir`` and evaluate the selected checkpoint on test.

    Args:
        fold: overrides ``recipe.fold`` (``N`` or ``E-A``).
        resume: continue from the newest good training state in ``run_dir/state`` (bit-identical to an
            uninterrupted run on CPU).
        device: ``cpu``, ``cuda``, ``cuda:1`` … (default CUDA when available).
        extra_eval: ``{name: fn(model) -> dict}`` evaluated with the validation metrics (e.g. the demo's
            real-photo accuracy), usable in ``select.metric`` as ``name.key``.

    Returns:
        The ``metrics.json`` contents.

    Raises:
        RecipeError: a user mistake in the recipe or its data (one line).
        TrainingError: a non-finite loss (the last good state is kept).
    """
    info = setup(device)
    run_dir = Path(run_dir)
    folds = parse_fold(recipe, fold)
    if fold is not None:
        recipe = dataclasses.replace(recipe, fold=str(fold))
    check_model(recipe)  # the model's constraints and pretrained weights, before any folder, lock or store
    lock, created, changes, refusal = None, not run_dir.exists(), {}, None
    if info.is_main:
        try:
            changes = _check_run_folder(run_dir, recipe, resume, allow_changes)
            lock = RunLock(run_dir).acquire()  # creates the folder
        except RecipeError as e:
            refusal = str(e)
    if info.distributed:  # every rank stops on rank 0's refusal instead of waiting for it at a barrier
        refusal, changes = broadcast_object((refusal, changes))
    if refusal is not None:
        raise RecipeError(refusal)
    barrier()
    try:
        return _fit(recipe, run_dir, folds, info, resume=resume, console=console, extra_eval=extra_eval,
                    progress=progress, changes=changes, overrides=tuple(overrides))
    except BaseException:
        if info.is_main and created and not any((run_dir / n).exists() for n in ("state", "epochs.csv", "steps.csv")):
            shutil.rmtree(run_dir, ignore_errors=True)  # failed before training began: leave no empty run folder
            lock = None
        raise
    finally:
        if lock is not None:
            lock.release()


def _check_run_folder(run_dir: Path, recipe: Recipe, resume: bool, allow_changes: Sequence[str]) -> dict:
    """The run-folder rules of :func:`fit` (see there); returns the accepted recipe changes of a resume."""
    has_state = latest_dir(run_dir / "state") is not None
    if not resume:
        if run_dir.exists() and ((run_dir / "state").exists() or is_finished(run_dir)):
            raise RecipeError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        if allow_changes:
            raise RecipeError("--allow-changes only applies with --resume")
        return {}
    if not has_state:
        raise RecipeError(f"--resume: {run_dir} holds no training state to continue; run without --resume to "
                          "start it" + (" (it is finished: its metrics.json is there)" if is_finished(run_dir) else ""))
    try:
        state_hash = json.loads((latest_dir(run_dir / "state") / "meta.json").read_text()).get("recipe_hash")
    except (OSError, ValueError):
        state_hash = None  # an unreadable newest state: load_latest reports it and falls back
    return check_resume(run_dir, recipe, state_hash, allow_changes)


def _fit(recipe: Recipe, run_dir: Path, folds: dict, info, *, resume: bool, console, extra_eval, progress: bool,
         changes: dict, overrides: tuple[str, ...]) -> dict:
    """The body of :func:`fit`, run with the folder checked and locked."""
    rhash = recipe_hash(recipe)
    torch.manual_seed(recipe.seed)
    data = build_data(recipe, folds)
    model = build_model(recipe, data.aus, data.emotions,
                        fold=fold_name({t.kind: t.fold for t in data.tasks})).to(info.device)
    probe = _fit_probe(model, data, recipe, info)
    if recipe.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = amp_dtype(recipe.train.amp, info.device)
    core = model
    if info.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    joint = _loaders(data, recipe, info, train_expr=getattr(core, "trains_expression", True))
    joint.set_epoch(1)
    for kind, ld in (("au", joint.au_loader), ("expr", joint.expr_loader)):
        if ld is not None and len(ld) == 0:
            raise RecipeError(f"data.{kind}: the training part gives {len(ld.dataset)} clips per process, fewer than "
                              f"data.{kind}.batch_size = {ld.batch_size}; lower the batch size")
    steps_per_epoch = len(joint)
    if recipe.train.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, recipe.train.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise RecipeError("the training data give no full batch; lower data.*.batch_size")
    optimizer = build_optimizer(core, recipe.optim)
    loss_args = dict(recipe.train.loss_args)
    base_loss = _named(LOSSES, recipe.train.loss, "train.loss: unknown loss")
    loss_params = attach_loss_params(base_loss, loss_args, optimizer, info.device)  # before the scheduler
    optim_steps = -(-steps_per_epoch // recipe.train.accumulate)
    scheduler = build_scheduler(optimizer, recipe.schedule, recipe.train.epochs, optim_steps)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    ema = None
    if recipe.train.ema:
        ema = AveragedModel(core, multi_avg_fn=get_ema_multi_avg_fn(recipe.train.ema), use_buffers=True)
    eval_model = ema.module if (ema is not None and recipe.train.ema_eval) else core
    step_fn = _named(STEPS, recipe.train.step, "train.step: unknown step")
    cw = None
    if loss_args.get("class_weights") or getattr(base_loss, "uses_class_weights", False) \
            or getattr(step_fn, "uses_class_weights", False):
        try:
            cw = class_weights(data.au, data.aus)
        except ValueError as e:
            raise RecipeError(f"AU class weights of the training fold: {e}") from None
    ctx = StepContext(device=info.device, loss=LossContext(au_weight=torch.as_tensor(cw, dtype=torch.float32,
                      device=info.device) if cw is not None else None, loss_params=loss_params), optimizer=optimizer,
                      args=dict(recipe.train.step_args))

    def loss_fn(*a, **k):
        return base_loss(*a, **k, **loss_args)

    meta = {"epoch": 1, "step": 0, "global_step": 0, "best": None, "history": []}
    state = load_latest(run_dir / "state") if resume else None
    if state is not None:
        core.load_state_dict(state["model"])
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        ctx.loss.state = state.get("loss_state") or {}
        ctx.state = state.get("step_state") or {}
        if loss_params is not None:
            loss_params.load_state_dict(state["loss_params"])
        set_rng_state(state["rng"])
        meta = {k: state["meta"][k] for k in ("epoch", "step", "global_step", "best", "history")}
    runlog = RunLog(run_dir, active=info.is_main, console=console, progress=progress,
                    **log_plan(recipe, joint, world_size=info.world_size, device=info.device, steps=steps_per_epoch))
    if info.is_main:
        dump(recipe, run_dir / "config.yaml")
        runlog.write_json("env.json", environment(info.device, info.world_size))
        used = {t.kind: t.fold for t in data.tasks}  # the protocol fold actually used (None = a split file)
        runlog.write_json("run.json", {"recipe": recipe.name, "recipe_hash": rhash, "fold": used,
                                       "fold_name": fold_name(used), "fold_requested": folds,
                                       **run_provenance(recipe, core, overrides),
                                       "aus": list(data.aus), "emotions": list(data.emotions),
                                       "data": {t.kind: t.describe() for t in data.tasks},
                                       "selection": selection_label(recipe.select.mode),
                                       "history": run_history(run_dir, rhash, resumed=state is not None,
                                                              changes=changes, overrides=overrides),
                                       **({"expr_probe": probe} if probe is not None else {})})
        if state is not None:
            runlog.print(f"resuming {run_dir} at epoch {meta['epoch']}, step {meta['step']} "
                         f"(global step {meta['global_step']}) from {state['meta']['_folder']}")
            _trim_csv(run_dir / "steps.csv", "step", meta["global_step"])
            _trim_csv(run_dir / "epochs.csv", "epoch", meta["epoch"] - 1)

    def save(epoch: int, step: int) -> None:
        if info.is_main:
            save_state(run_dir / "state", model=core, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                       ema=ema, meta={**meta, "epoch": epoch, "step": step, "recipe_hash": rhash},
                       extra={"loss_state": ctx.loss.state, "step_state": ctx.state,
                              **({"loss_params": loss_params.state_dict()} if loss_params is not None else {})})

    label = selection_label(recipe.select.mode)
    try:
        for epoch in range(meta["epoch"], recipe.train.epochs + 1):
            start = meta["step"] if epoch == meta["epoch"] else 0
            if start == 0:
                ctx.loss.state = {}
            ctx.loss.epoch = epoch - 1
            joint.set_epoch(epoch, start_step=start)
            runlog.task(f"epoch {epoch}/{recipe.train.epochs}", steps_per_epoch, completed=start)
            times = StepTimes()

            def on_step(done: int, logs: dict, epoch=epoch) -> None:
                meta["global_step"] += 1
                runlog.train_step(meta["global_step"], epoch, done, logs, optimizer.param_groups[0]["lr"], times.step_s,
                                  times.data_s, row=meta["global_step"] % max(1, recipe.train.log_every) == 0)
                every = recipe.train.checkpoint_every
                if every and meta["global_step"] % every == 0 and done % recipe.train.accumulate == 0 \
                        and done < steps_per_epoch:
                    save(epoch, done)

            means = train_one_epoch(model, joint, step_fn, loss_fn, optimizer, ctx=ctx, epoch=epoch - 1,
                                    scheduler=scheduler if recipe.schedule.per == "step" else None, scaler=scaler,
                                    amp_dtype=amp, clip_grad=recipe.train.clip_grad, accumulate=recipe.train.accumulate,
                                    ema=ema, start_step=start, n_steps=steps_per_epoch, on_step=on_step,
                                    freeze_bn=recipe.train.freeze_bn, times=times)
            if recipe.schedule.per == "epoch":
                scheduler.step()
            row = {**{f"train_{k}": v for k, v in means.items()}, "lr": optimizer.param_groups[0]["lr"]}
            if epoch % recipe.select.every == 0 or epoch == recipe.train.epochs:
                row.update(_validate(eval_model, data, recipe, info, amp, meta, run_dir, epoch, extra_eval, runlog))
            meta["history"].append({"epoch": epoch, **row})
            runlog.epoch(epoch, row, meta["global_step"])
            meta["epoch"], meta["step"] = epoch + 1, 0
            save(epoch + 1, 0)
    except NonFiniteLossError as e:
        runlog.close()
        raise TrainingError(f"{e}; training stopped, the last good checkpoint in {run_dir / 'state'} is kept: lower "
                            "optim.lr, set train.clip_grad, or use train.amp=fp32, then rerun with --resume") from None
    runlog.close()
    return _finish(recipe, run_dir, data, eval_model, meta, info, amp, label)


def _fit_probe(model, data: RunData, recipe: Recipe, info: DistInfo) -> dict | None:
    """A model with an expression probe (``JointNet(expr_probe=True)``): fit it on the un-augmented training
    clips before training (:func:`aufer.models.probe.fit_expression_probe`); the expression task then takes no
    SGD steps unless the model keeps an auxiliary SGD head (``expr_aux``). Deterministic, so a resumed run fits
    the same probe again. ``None`` for other models."""
    if getattr(model, "expr_probe", None) is None:
        return None

    if data.expr is None:
        raise RecipeError("the model's expression probe is fitted on expression data: add data.expr")
    try:
        loader = make_loader(unaugmented_train(data.expr, data.aus), 64, train=False)
        summary = fit_expression_probe(model, loader, c=recipe.train.probe_c, balance=recipe.train.probe_balance,
                                       device=info.device)
    except ValueError as e:  # e.g. a single labelled class
        raise RecipeError(f"data.expr: the expression probe cannot be fitted: {e}") from None
    log.info("expression probe fitted on %d clips (train accuracy %.3f)", summary["n_clips"], summary["train_accuracy"])
    return summary


def _named(table: dict, name: str, what: str):
    if name not in table:
        raise RecipeError(f"{what} {name!r}; available: {', '.join(sorted(table))}")
    return table[name]


def _trim_csv(path: Path, key: str, upto: int) -> None:
    if path.is_file():
        df = pd.read_csv(path)
        if key in df:
            df[df[key] <= upto].to_csv(path, index=False)


def _validate(eval_model, data, recipe, info, amp, meta, run_dir, epoch, extra_eval, runlog) -> dict:
    split = {"val": "val", "test": "test", "last": "val"}[recipe.select.mode]
    if recipe.select.mode == "val" and all(getattr(t, "val") is None for t in data.tasks):
        raise RecipeError("select.mode val needs a validation split: set data.au.val_subjects or "
                          "data.expr.val_fraction above 0 (or select.mode: last)")
    # gathered predictions under DDP, so that every rank scores the whole split and every metric of a
    # single-process run is there (AUC is not summable from per-rank counts)
    metrics, _ = _evaluate_split(eval_model, data, split, recipe, info, amp, gather=True)
    for name, fn in (extra_eval or {}).items():
        metrics[name] = fn(eval_model)
    row = {}
    for kind, m in metrics.items():
        for k in ("au_f1_mean", "au_auc_mean", "uar", "war"):
            if k in m and m[k] is not None:
                row[f"{split}_{k}"] = m[k]
        for k, v in m.items():
            if kind not in ("au", "expr") and isinstance(v, (int, float)):
                row[f"{split}_{kind}.{k}"] = v
    score = epoch if recipe.select.mode == "last" else _score(metrics, recipe.select.metric)
    row["score"] = score
    best = meta["best"]
    if best is None or score > best["score"]:
        meta["best"] = {"epoch": epoch, "score": score, "split": split, "metrics": metrics}
        if info.is_main:
            save_model(eval_model, run_dir / "best", extra={"selected_epoch": epoch, "selection": selection_label(recipe.select.mode),
                                                            "score": score, "recipe": recipe.name})
    runlog.print(f"epoch {epoch}: {split} " + " ".join(f"{k.split('_', 1)[1]} {v:.3f}" for k, v in row.items()
                                                         if k != "score" and isinstance(v, float)) + f" | score {score:.3f}")
    return row


def _finish(recipe, run_dir, data, eval_model, meta, info, amp, label) -> dict:
    if info.is_main:
        save_model(eval_model, run_dir / "last", extra={"epoch": recipe.train.epochs, "recipe": recipe.name})
    barrier()
    best = load_model(run_dir / "best.safetensors").to(info.device)
    metrics, preds = _evaluate_split(best, data, "test", recipe, info, amp, gather=True)
    result = {"recipe": recipe.name, "fold": None,
              "selection": {"label": label, "mode": recipe.select.mode, "metric": recipe.select.metric,
                            "epoch": meta["best"]["epoch"], "score": meta["best"]["score"], "on": meta["best"]["split"]},
              "test": metrics, "val_at_selected": meta["best"]["metrics"] if recipe.select.mode == "val" else None,
              "data": {t.kind: {k: v for k, v in t.describe().items() if k != "ids"} for t in data.tasks},
              "aus": list(data.aus), "emotions": list(data.emotions), "flip_tta": False}
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    result["fold"] = run.get("fold_name")
    result.update({k: run[k] for k in PROVENANCE_KEYS if k in run})
    if "expr_probe" in run:
        result["expr_probe"] = run["expr_probe"]
    if info.is_main:
        _write_predictions(run_dir, "test", preds, data)
        tmp = run_dir / "metrics.json.partial"
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(run_dir / "metrics.json")
    barrier()
    return result


def evaluate_run(run_dir: str | Path, *, split: str = "test", checkpoint: str = "best", flip: bool = False,
                 device: str | None = None, overrides: Sequence[str] = ()) -> dict:
    """Recompute a run's metrics on ``split`` from its ``best`` or ``last`` checkpoint and write
    ``metrics_<split>_<checkpoint>.json`` and the prediction tables (``predictions/<split>_<checkpoint>_*``).

    With ``flip`` the test-time flip average is used and every output says so (``_flip`` in the file names,
    ``flip_tta: true``). ``overrides`` (``--set``) change the run's recipe for this evaluation only (e.g.
    ``data.workers=0`` on another machine); they are recorded in the output.

    Raises:
        RecipeError: not a run folder, or the checkpoint is missing.
    """
    run_dir = Path(run_dir)
    cfg, run = run_dir / "config.yaml", run_dir / "run.json"
    if not cfg.is_file() or not run.is_file():
        raise RecipeError(f"{run_dir} is not a run folder of `aufer train` (no config.yaml / run.json)")
    if split not in ("val", "test") or checkpoint not in ("best", "last"):
        raise RecipeError("--split is val or test, --checkpoint is best or last")
    weights = run_dir / f"{checkpoint}.safetensors"
    if not weights.is_file():
        raise RecipeError(f"{weights} does not exist (the run has not written its {checkpoint} checkpoint yet)")
    info = setup(device)
    recipe = load(cfg, list(overrides))
    folds = json.loads(run.read_text())["fold"]
    data = build_data(recipe, folds)
    model = load_model(weights).to(info.device)
    metrics, preds = _evaluate_split(model, data, split, recipe, info, amp_dtype(recipe.train.amp, info.device),
                                     gather=True, flip=flip)
    tag = f"_{checkpoint}" + ("_flip" if flip else "")
    out = {"run": str(run_dir), "split": split, "checkpoint": checkpoint, "flip_tta": flip, "overrides": list(overrides),
           "selection": selection_label(recipe.select.mode), "metrics": metrics}
    if info.is_main:
        _write_predictions(run_dir, split, preds, data, tag)
        (run_dir / f"metrics_{split}{tag}.json").write_text(json.dumps(out, indent=1))
    return out
