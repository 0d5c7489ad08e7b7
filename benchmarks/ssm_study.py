"""SSM on the embedded data, fully offline: does expression data help AU detection here, and vice versa?

Models, all on the ImageNet EfficientNet-Lite0 encoder (offline, its PyPI package), at ``--size`` px:

* ``ssm``      — SSM's offline variant (``ssm.disfa_lite0_minilm``: Lite0 + the MiniLM text encoder with a learned
  projection; TSP, DPM, temporal nets, smoother), SSM's loss and step (four normalised terms, mixup of AU clips);
* ``ssm-tsp``  — the same without the text prototypes (TSP off: linear heads only, no L3/L4; no DPM either, since
  DPM mixes prototypes);
* ``ssm-dpm``  — the same with TSP but without the cross-task mixing (DPM off);
* ``au-only``  — SSM trained on the AU clips only (no expression data);
* ``expr-only`` — SSM trained on the expression data only (no AU clips);
* ``naive-joint`` — the joint baseline ``aufer_lite.lite0`` (hard parameter sharing, summed BCE + CE), on both.

Data (the demo's, ``aufer.demo.prepare_data`` with the packaged recipe, seed-0 identity split, cached): AU
training on SYNTHETIC FACS-warp clips of the 40 Canada people (the AU motion is synthetic); expression training
on REAL neutral / smiling photos of the London FE-train people plus SYNTHETIC prototype expressions (stills,
one-frame clips); selection on validation people; test on the 34 held-out London people. AU: DISFA's 8 AUs (all
simulated by FACS-warp), F1 at 0.5 over every frame of the test people's synthetic clips. Expression: UAR / WAR
over the test people's photos (real) and synthetic stills; ``real`` happy-vs-neutral accuracy and the AU12
pair share on the test people's real photos only.

Shared by all runs of a seed: ``--epochs`` epochs, AdamW at the demo's rates (3e-4 for the pretrained trunk,
2e-3 for the rest, 2e-2 for the DPM maps — SSM's ×100 ratio of map to head rate, at a 20× larger base than its
1e-4 for this short run), weight decay 1e-4, one-cycle per step, EMA 0.99, AU windows of ``--au-frames`` frames
in training (whole 16-frame clips in evaluation), selection by the mean of validation AU F1 and UAR (AU F1 only /
UAR only for the single-task runs). Prints one line per run and a mean ± std table; ``--save`` writes JSON.

    python benchmarks/ssm_study.py [--seeds 0 1 2] [--epochs 4] [--size 128] [--au-frames 8] [--out DIR] [--save F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

DISFA_AUS = [1, 2, 4, 6, 9, 12, 25, 26]
RUNS = ("ssm", "ssm-tsp", "ssm-dpm", "au-only", "expr-only", "naive-joint")


def _recipe(name: str, data, size: int, epochs: int, au_frames: int, seed: int, extra=()):
    from aufer.demo import demo_recipe
    from aufer.engine.recipe import load

    au = {"store": str(data.au_store), "split_file": str(data.au_split)}
    expr = {"store": str(data.expr_store), "split_file": str(data.expr_split)}
    common = [f"seed={seed}", f"train.epochs={epochs}", "select.mode=val", f"model.args.input_size={size}",
              "optim.weight_decay=0.0001", f"data.{'expr' if name == 'expr-only' else 'au'}.aus={DISFA_AUS}"]
    if name == "naive-joint":
        return load(demo_recipe(), common + ["select.metric=[au_f1_mean,uar]", *extra],
                    values={"data": {"au": au, "expr": expr}})
    args = {"ssm-tsp": ["model.args.tsp=false"], "ssm-dpm": ["model.args.dpm=false"]}.get(name, [])
    metric = {"au-only": "[au_f1_mean]", "expr-only": "[uar]"}.get(name, "[au_f1_mean,uar]")
    r = load(demo_recipe(), common + args + [
        "model.name=ssm.disfa_lite0_minilm", "train.loss=ssm", "train.step=ssm", f"select.metric={metric}", *extra]
        + ([] if name == "expr-only" else [f"data.au.clip_len={au_frames}", "data.au.eval_batch_size=8"]),
        values={"data": {"au": None if name == "expr-only" else au, "expr": None if name == "au-only" else expr}})
    # SSM's groups are visual / maps / heads (the demo recipe names the joint model's "backbone"), and the demo's
    # joint-loss options do not apply to SSM's loss: a merge cannot remove keys, so they are replaced here
    groups = {"visual": {"lr": r.optim.groups["backbone"]["lr"]}, "maps": {"lr": 10 * r.optim.lr}}
    return dataclasses.replace(r, train=dataclasses.replace(r.train, loss_args={}),
                               optim=dataclasses.replace(r.optim, groups=groups))


def main() -> None:
    from rich.console import Console

    from aufer._runtime import tune_allocator
    from aufer.demo import demo_recipe, prepare_data, read_demo_recipe, real_photo_metrics
    from aufer.demo import _eval_set  # noqa: PLC2701  (the demo's one-frame evaluation set of real photos)
    from aufer.demo.data import StageProgress
    from aufer.engine.runner import fit
    from aufer.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=128, help="model input side (pixels)")
    ap.add_argument("--au-frames", type=int, default=8, help="frames per AU training window (evaluation: 16)")
    ap.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    ap.add_argument("--out", default=None, help="folder of the runs (default: a temporary folder); reruns resume")
    ap.add_argument("--save", default=None, help="write the per-run figures here (.json)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides for every run")
    args = ap.parse_args()
    tune_allocator()
    _, settings, data_seed = read_demo_recipe(demo_recipe())
    out = Path(args.out or tempfile.mkdtemp(prefix="aufer-ssm-study-"))
    with StageProgress(Console(quiet=True)) as steps:
        data = prepare_data(settings, data_seed, steps, out)
    real_test = _eval_set(data.expr_store, data.real_test)
    rows = []
    for seed in args.seeds:
        for name in args.runs:
            run = out / f"{name}_seed{seed}"
            t0 = time.perf_counter()
            done = (run / "metrics.json").exists()
            res = (json.loads((run / "metrics.json").read_text()) if done else
                   fit(_recipe(name, data, args.size, args.epochs, args.au_frames, seed, args.set), run,
                       resume=run.exists(), progress=False))
            test = res["test"]
            row = {"run": name, "seed": seed, "train_s": None if done else round(time.perf_counter() - t0, 1)}
            if "au" in test and test["au"].get("au_f1_mean") is not None:
                row |= {"au_f1": test["au"]["au_f1_mean"], "au_f1_per_au": test["au"]["au_f1"]}
            if "expr" in test and test["expr"].get("uar") is not None:
                row |= {"uar": test["expr"]["uar"], "war": test["expr"]["war"]}
                real = real_photo_metrics(load_model(run / "best.safetensors").eval(), real_test)
                row |= {"real_happy_vs_neutral": real["happy_vs_neutral_accuracy"],
                        "real_au12_pairs": real.get("au12_smile_gt_neutral")}
            rows.append(row)
            print(f"{name:12s} seed {seed}: " + ", ".join(f"{k} {row[k]:.3f}" for k in
                  ("au_f1", "uar", "war", "real_happy_vs_neutral", "real_au12_pairs") if row.get(k) is not None)
                  + f" ({row['train_s']} s)", flush=True)
    print(f"\n{len(args.seeds)} seeds; Lite0 at {args.size} px, {args.epochs} epochs; AU F1: SYNTHETIC FACS-warp clips of "
          f"held-out people (DISFA's 8 AUs); UAR/WAR: held-out people's real photos + synthetic stills; runs in {out}")
    print("| run | AU F1 (synthetic) | UAR | WAR | real happy vs neutral | real AU12 pairs |")
    print("|---|---|---|---|---|---|")
    for name in args.runs:
        cells = []
        for k in ("au_f1", "uar", "war", "real_happy_vs_neutral", "real_au12_pairs"):
            v = [r[k] for r in rows if r["run"] == name and r.get(k) is not None]
            cells.append(f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else
                         f"{v[0]:.3f}" if v else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.save:
        Path(args.save).write_text(json.dumps({"size": args.size, "epochs": args.epochs, "au_frames": args.au_frames,
                                               "aus": DISFA_AUS, "runs": rows}, indent=1))


if __name__ == "__main__":  # spawn-safe: synthetic data generation uses worker processes
    main()
