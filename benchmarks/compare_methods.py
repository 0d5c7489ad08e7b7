"""Every aufer method side by side on the embedded data, at one encoder (ImageNet EfficientNet-Lite0), over seeds.

Data (the demo's, ``aufer.demo.prepare_data`` with the packaged demo recipe, seed-0 identity split, cached):

* AU: SYNTHETIC FACS-warp clips (16 frames) of the 40 Canada people for training, of the validation people for
  selection, of the 34 held-out London people for test; DISFA's 8 AUs (1 2 4 6 9 12 25 26, all simulated by
  FACS-warp). The AU motion is synthetic: AU F1 measures how well a model reads FACS-warp motion of unseen people,
  not AU detection on real faces. F1 at threshold 0.5 over every frame of the test clips.
* Expression: REAL neutral / smiling photos (London Set, CC BY 4.0) of the FE-train people plus SYNTHETIC
  prototype expressions (stills: one-frame clips) for training; UAR / WAR over the held-out people's real photos
  and synthetic stills; ``real_happy_vs_neutral`` (P(happiness) > P(neutral) is right) and ``real_au12_pairs``
  (share of people whose P(AU12) is higher on their smiling photo) on the held-out people's REAL photos only.

Runs (``--runs``), all on Lite0 at ``--size`` px (112) for ``--epochs`` epochs (6), AdamW (3e-4 for the pretrained trunk,
2e-3 for the rest, weight decay 1e-4), one-cycle per step, EMA 0.99, selection on validation people (mean of
validation AU F1 and UAR; AU F1 only or UAR only for single-task runs):

* ``joint`` — the joint baseline ``aufer_lite.lite0`` = naive joint (hard parameter sharing, BCE + CE);
* ``joint-cw`` — the same with the AU BCE weighted by the training data's class weights (MDHR's and MAL's
  AU losses are class-weighted: this row separates the weighting from the architecture);
* ``au-only`` / ``expr-only`` — single-task: ``aufer_lite.lite0`` on one data source;
* ``uncertainty`` — the joint model with uncertainty weighting (Kendall, Gal & Cipolla 2018; :mod:`aufer.methods.mtl`);
* ``mdhr`` — ``mdhr.disfa_lite0`` (AU only, 16-frame clips, MDHR loss) at ``--mdhr-size`` px (128: MDHR's token
  grids need a side divisible by 32, which 112 is not);
* ``graphau`` — ME-GraphAU stage 1 (ANFL) on the Lite0 trunk, ``graphau.disfa_lite0_stage1`` (aufer's offline
  variant; k = 3 as for DISFA), frame by frame, with its weighted asymmetric loss and the class weights (AU only);
* ``graphau-s2`` — ME-GraphAU stage 2 (MEFL), ``graphau.disfa_lite0_stage2``, started from the same seed's
  ``graphau`` run (``model.args.init_from`` = ``OUT/graphau/seed{seed}/best.safetensors``, as ``train_stage2.py``
  loads stage 1) and trained ``--epochs`` more epochs with ``L_WA + 0.01 · L_E`` (λ of the DISFA recipe) at a
  tenth of the stage-1 rates (the official stage 2 runs at 1e-5 after 1e-4): twice the optimiser steps in all;
* ``graphau-2x`` — stage 1 alone for twice ``--epochs``: the control with ``graphau-s2``'s number of steps;
* ``ssm`` — ``ssm.disfa_lite0_minilm`` (Lite0 + MiniLM text prototypes; SSM's loss and step);
* ``mal-l2rw`` / ``mal-mwn`` — MAL, RECONSTRUCTED (``aufer.methods.mal.step``): the joint model with meta-learned FE sample
  weights; the look-ahead moves the layers after the trunk (``meta_params``: every module but ``backbone``, the
  cheap variant of ``benchmarks/mal_speed.py``); AU batch 16 split 8 / 8 into B_a / B_m, so an epoch has half the
  joint baseline's steps and trains on half its AU clips: MAL runs ``--mal-epochs`` epochs (default twice
  ``--epochs``), the joint baseline's number of optimiser steps and of B_a clips; class-weighted AU BCE as §5
  specifies. l2rw: look-ahead η = 2e-3 (``meta_lr``, constant: the heads' peak rate, so the weights do not
  follow the one-cycle schedule) and c = ``--mal-scale`` / η (1 / 2e-3), so that w_i ≈ max(⟨∇L_AU(B_m; θ̂),
  ∇ℓ_i⟩, 0), measured a real step's distance from θ (a first run with η = 1 and c = 1 gave test AU F1 0.089 at
  seed 0: the look-ahead then measures far from θ). MWN: c = 1/32, so that the total FE weight starts near the
  joint baseline's (WNet's outputs start near 0.5; 32 stills per batch).
* ``au-dfer-joint`` — the joint model trained with the AU-DFER loss (r = 0.25, DFEW matrix, ``global``
  pos_weight, majority rows) on the expression clips + BCE on the AU clips; the expression clips' AU labels are
  pseudo-labels written by ``aufer label-aus`` with the same seed's ``au-only`` model into a copy of the
  expression store, clip rule mean ≥ 0.5 (Former-DFER's);
* ``former-dfer`` / ``former-dfer+au-dfer`` — AU-DFER's host ``former_dfer.lite0`` (Former-DFER's S-Former +
  T-Former on Lite0 stages, aufer's Lite0 variant) on the expression data only, CE alone / with the AU-DFER loss
  on the same pseudo-labels. No AU test figure: the host never sees AU clips. The stills are one-frame clips,
  so the temporal transformer sees one token: the host is compared on what the embedded data have.

Each run is ``OUT/<run>/seed<N>/`` (``metrics.json``, the prediction tables, ``real_photos.json``); every
``OUT/<run>`` gets a ``summary.json`` over its seeds, so that

    aufer table OUT/[!_]*/ --std

prints the comparison (the script writes it to ``OUT/table.md`` too). Reruns resume (finished runs are read back). Usage:

    python benchmarks/compare_methods.py --out DIR [--seeds 0 1 2] [--epochs 6] [--size 112] [--runs ...]

Two processes with different ``--seeds`` may share one ``--out`` (each run folder belongs to one seed); on 2 cores
it does not pay: two processes at ``OMP_NUM_THREADS=1`` took 215 s for one ``au-only`` run that takes 99 s alone at
2 threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import time
from pathlib import Path

DISFA_AUS = [1, 2, 4, 6, 9, 12, 25, 26]
RUNS = ("au-only", "joint", "joint-cw", "expr-only", "uncertainty", "mdhr", "graphau", "graphau-2x", "graphau-s2", "ssm", "mal-l2rw", "mal-mwn",
        "au-dfer-joint", "former-dfer", "former-dfer+au-dfer")
NEEDS_PSEUDO = ("au-dfer-joint", "former-dfer+au-dfer")
STAGE2_OF = {"graphau-s2": "graphau"}  # a two-stage method's stage-2 run and the run its stage 1 comes from
MAL_META_LR = 2e-3  # l2rw's look-ahead η: the heads' peak learning rate (a step of the real step's size)
AU_DFER = {"ratio": 0.25, "posw": "global", "dataset": "DFEW", "host": "m3dfel", "rows": "majority",
           "clip_rule": "mean", "model_aus": DISFA_AUS, "label_aus": DISFA_AUS}


def _recipe(name: str, data, size: int, epochs: int, seed: int, expr_store: str | None, mal_scale: float, extra=(),
            mdhr_size: int = 128, mal_epochs: int | None = None, init_from: Path | None = None):
    """The engine recipe of one run (see the module docstring)."""
    from aufer.demo import demo_recipe
    from aufer.engine.recipe import load

    au = {"store": str(data.au_store), "split_file": str(data.au_split)}
    expr = {"store": str(expr_store or data.expr_store), "split_file": str(data.expr_split)}
    uses_au = name not in ("expr-only", "former-dfer", "former-dfer+au-dfer")
    uses_expr = name not in ("au-only", "mdhr") and not name.startswith("graphau")
    metric = "[au_f1_mean,uar]" if uses_au and uses_expr else "[au_f1_mean]" if uses_au else "[uar]"
    side = mdhr_size if name == "mdhr" else size
    if name.startswith("mal-"):
        epochs = mal_epochs or 2 * epochs
    elif name == "graphau-2x":
        epochs = 2 * epochs
    # a method's own model takes none of the demo model's arguments (features, freeze_stages, …): start afresh
    own_model = name in ("mdhr", "ssm") or name.startswith(("former-dfer", "graphau"))
    sets = (["model.args=null"] if own_model else []) + [
            f"seed={seed}", f"train.epochs={epochs}", "select.mode=val", f"model.args.input_size={side}",
            "optim.weight_decay=0.0001", f"select.metric={metric}"]
    sets += ([f"data.au.aus={DISFA_AUS}"] if uses_au else []) + ([f"data.expr.aus={DISFA_AUS}"] if uses_expr else [])
    if not uses_expr and not own_model:  # the demo model's expression probe is fitted on expression data
        sets += ["model.args.expr_probe=false", "model.args.expr_aux=false"]
    loss, loss_args, step, step_args, groups = "joint", {"label_smoothing": 0.0}, None, {}, None
    if name == "joint-cw":
        loss_args = {"label_smoothing": 0.0, "class_weights": True}
    elif name == "uncertainty":
        loss, loss_args = "uncertainty", {"form": "common", "init": [0.0, 0.0], "weight_decay": 0.0}
    elif name == "mdhr":
        sets += ["model.name=mdhr.disfa_lite0", "data.au.clip_len=16", "data.au.eval_batch_size=8"]
        loss, loss_args = "mdhr", {}
    elif name in ("graphau", "graphau-2x"):
        sets += ["model.name=graphau.disfa_lite0_stage1"]
        loss, loss_args = "graphau", {}
    elif name == "graphau-s2":
        sets += ["model.name=graphau.disfa_lite0_stage2"] + ([f"model.args.init_from={init_from}"] if init_from else [])
        loss, loss_args = "graphau", {"lam": 0.01}
        groups = "tenth"
    elif name == "ssm":
        sets += ["model.name=ssm.disfa_lite0_minilm", "data.au.clip_len=8", "data.au.eval_batch_size=8"]
        loss, loss_args, step = "ssm", {}, "ssm"
        groups = "ssm"
    elif name.startswith("mal-"):
        sets += ["data.au.batch_size=16"]
        step = "mal"
        step_args = {"variant": name[4:], "meta_fraction": 0.5, "class_weights": True,
                     "meta_params": ["landmark_encoder", "fuse", "au_head", "expr_head", "au_to_expr"],
                     "scale": mal_scale / MAL_META_LR if name == "mal-l2rw" else 1.0 / 32}
        if name == "mal-l2rw":  # a constant look-ahead η: the weights do not follow the one-cycle schedule
            step_args["meta_lr"] = MAL_META_LR
        loss_args = {"label_smoothing": 0.0, "class_weights": True}
    elif name == "au-dfer-joint":
        sets += ["data.expr.au_pseudo=frames"]
        loss, loss_args = "au_dfer", {**AU_DFER, "au_batch_weight": 1.0}
    elif name.startswith("former-dfer"):
        sets += ["model.name=former_dfer.lite0"]
        if name == "former-dfer+au-dfer":
            sets += ["data.expr.au_pseudo=frames"]
            loss, loss_args = "au_dfer", dict(AU_DFER)
        else:
            loss_args = {"label_smoothing": 0.0}  # CE alone (the clips carry no AU label: the AU term is 0)
    sets += [f"train.loss={loss}"] + ([f"train.step={step}"] if step else []) + list(extra)
    r = load(demo_recipe(), sets, values={"data": {"au": au if uses_au else None, "expr": expr if uses_expr else None}})
    train = dataclasses.replace(r.train, loss_args=loss_args, step_args=step_args)
    optim = r.optim
    if groups == "ssm":  # SSM's groups are visual / maps / heads; maps at 10× the base rate (ssm_study.py)
        optim = dataclasses.replace(optim, groups={"visual": {"lr": r.optim.groups["backbone"]["lr"]},
                                                   "maps": {"lr": 10 * r.optim.lr}})
    elif name.startswith("former-dfer"):
        optim = dataclasses.replace(optim, groups={"backbone": r.optim.groups["backbone"]})
    elif groups == "tenth":  # ME-GraphAU stage 2: every rate a tenth of stage 1's
        optim = dataclasses.replace(optim, lr=r.optim.lr / 10, groups={
            g: {**v, "lr": v["lr"] / 10} for g, v in r.optim.groups.items()})
    return dataclasses.replace(r, train=train, optim=optim)


def _pseudo_store(data, run_dir: Path, labeller: Path) -> Path:
    """A copy of the expression store with the ``labeller`` model's per-frame AU probabilities (``aufer
    label-aus``); made once per seed."""
    from aufer.models import load_model
    from aufer.models.weights import resolve_checkpoint
    from aufer.predict.label_aus import label_store_with_model

    path = run_dir / "expr_pseudo.sqlite"
    done = run_dir / "expr_pseudo.json"
    if done.exists():
        return path
    tmp = path.with_name(path.name + ".partial")
    tmp.unlink(missing_ok=True)
    src, dst = sqlite3.connect(data.expr_store), sqlite3.connect(tmp)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    tmp.replace(path)
    weights = resolve_checkpoint(labeller)[0]
    info = label_store_with_model(path, load_model(weights), device="cpu", model_path=weights)
    done.write_text(json.dumps({k: v for k, v in info.items() if isinstance(v, (int, float, str, list, bool))},
                               indent=1))
    return path


def main() -> None:
    from rich.console import Console

    from aufer._runtime import tune_allocator
    from aufer.demo import _eval_set  # noqa: PLC2701  (the demo's one-frame evaluation set of real photos)
    from aufer.demo import demo_recipe, prepare_data, read_demo_recipe, real_photo_metrics
    from aufer.demo.data import StageProgress
    from aufer.engine.experiment import summarise_experiment
    from aufer.engine.runner import fit
    from aufer.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder of the runs; reruns resume")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=112, help="model input side (pixels)")
    ap.add_argument("--mdhr-size", type=int, default=128, help="MDHR's input side (a multiple of 32, its token grids)")
    ap.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    ap.add_argument("--mal-scale", type=float, default=1.0, help="MAL l2rw: c in w = c · max(−g, 0)")
    ap.add_argument("--mal-epochs", type=int, default=None, help="MAL's epochs (default 2 × --epochs: equal steps)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides for every run")
    args = ap.parse_args()
    tune_allocator()
    _, settings, data_seed = read_demo_recipe(demo_recipe())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with StageProgress(Console(quiet=True)) as steps:
        data = prepare_data(settings, data_seed, steps, out / "_data")
    real_test = _eval_set(data.expr_store, data.real_test)
    for seed in args.seeds:
        for name in args.runs:
            run = out / name / f"seed{seed}"
            t0 = time.perf_counter()
            if not (run / "metrics.json").exists():
                store = None
                if name in NEEDS_PSEUDO:
                    labeller = out / "au-only" / f"seed{seed}" / "best.safetensors"
                    if not labeller.exists():
                        raise SystemExit(f"{name}: run au-only for seed {seed} first (its model labels the AUs)")
                    store = _pseudo_store(data, out / "au-only" / f"seed{seed}", labeller)
                init_from = None
                if name in STAGE2_OF:  # one recipe over the seeds: "{seed}" is expanded by the engine
                    init_from = out.resolve() / STAGE2_OF[name] / "seed{seed}" / "best.safetensors"
                    if not Path(str(init_from).format(seed=seed)).exists():
                        raise SystemExit(f"{name}: run {STAGE2_OF[name]} for seed {seed} first (stage 2 starts "
                                         "from its stage-1 model)")
                recipe = _recipe(name, data, args.size, args.epochs, seed, store, args.mal_scale, args.set,
                                 args.mdhr_size, args.mal_epochs, init_from)
                fit(recipe, run, resume=run.exists(), progress=False)
            res = json.loads((run / "metrics.json").read_text())
            real_file = run / "real_photos.json"
            if "expr" in res["test"] and not real_file.exists():
                real = real_photo_metrics(load_model(run / "best.safetensors").eval(), real_test)
                real_file.write_text(json.dumps(real, indent=1))
            summarise_experiment(out / name, unit="seed")
            test = res["test"]
            figs = {"au_f1": test.get("au", {}).get("au_f1_mean"), "uar": test.get("expr", {}).get("uar"),
                    "war": test.get("expr", {}).get("war")}
            if real_file.exists():
                real = json.loads(real_file.read_text())
                figs |= {"real_hvn": real["happy_vs_neutral_accuracy"], "real_au12": real.get("au12_smile_gt_neutral")}
            print(f"{name:20s} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in figs.items() if v is not None)
                  + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    from aufer.engine.experiment import compare

    _, md = compare([out / n for n in RUNS if (out / n / "summary.json").exists()], std=True)
    note = (f"Lite0 at {args.size} px, {args.epochs} epochs, seeds {args.seeds}. AU F1: SYNTHETIC FACS-warp clips of "
            "held-out people (DISFA's 8 AUs); UAR / WAR: held-out people's real photos + synthetic stills; real_hvn, "
            "real_au12: held-out people's real photos only. Values in %, mean ± sample std over seeds.")
    (out / "table.md").write_text(note + "\n\n" + md + "\n")
    print("\n" + note + "\n" + md)


if __name__ == "__main__":  # spawn-safe: synthetic data generation uses worker processes
    main()
