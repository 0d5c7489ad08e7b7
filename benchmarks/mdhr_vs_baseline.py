"""MDHR against the joint baseline at the same encoder (EfficientNet-Lite0) on the embedded data, over seeds.

Data: the demo's data (``aufer.demo.prepare_data`` with the packaged demo recipe, seed 0 identity split, cached):
AU training on SYNTHETIC FACS-warp clips (16 frames) of the 40 Canada people; model selection on the
validation people's synthetic clips; test on the 34 held-out London people's synthetic clips (4 per person).
The AU motion is synthetic: these F1 figures measure how well a model reads FACS-warp motion of unseen
people, not AU detection on real faces. Both models predict DISFA's 8 AUs (1, 2, 4, 6, 9, 12, 25, 26), all
of which FACS-warp simulates, so that MDHR's DISFA region map applies.

Both runs of a seed share everything but the model and its loss:

* the data, the crops (160 px in the store, resized to ``--size`` px), the 8 AUs, ``--epochs`` epochs, the
  demo's optimiser (AdamW, 2e-3 for the heads, 3e-4 for the pretrained trunk, weight decay 0.05, one-cycle per
  step), the weight EMA (0.99), selection by validation AU F1, the seed;
* **joint baseline** (``aufer_lite.lite0``, the demo's model): trained as the demo trains it, jointly on the AU
  clips (one random 4-frame window per clip and epoch, frames scored independently) and the demo's expression
  data (real London photos of the FE-train people + synthetic prototype stills), ``joint`` loss;
* **MDHR** (``mdhr.disfa_lite0``, aufer's Lite0 variant of MDHR, not the paper's backbone): AU only, one random
  16-frame window per clip and epoch (the whole clip), the MDHR loss (weighted asymmetric loss with the
  training data's class weights + 0.01 × the region-combination cross-entropy).

The demo's short schedule is not MDHR's released recipe (200 epochs at 1e-4): the figures compare the two
models under one small CPU budget. Test F1 is at threshold 0.5 over the test people's frames (every frame of
every test clip). It prints one line per run and the mean ± std (sample std, n − 1) over seeds, and writes the
per-run figures (with per-AU F1) as JSON with ``--save``.

    python benchmarks/mdhr_vs_baseline.py [--seeds 0 1 2] [--epochs 6] [--size 128] [--out DIR] [--save F.json]

About 25 minutes per seed on 2 cores at the defaults once the demo's synthetic data are cached (MDHR: about
3.3 s per training step of 8 clips × 16 frames at 128 px; the baseline: about a minute per epoch).
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


def _recipes(data, size: int, epochs: int, seed: int, extra=()):
    """The two engine recipes of one seed: ``{"baseline": Recipe, "mdhr": Recipe}``."""
    from aufer.demo import demo_recipe
    from aufer.engine.recipe import load

    common = [f"seed={seed}", f"train.epochs={epochs}", f"data.au.aus={DISFA_AUS}", "select.mode=val",
              "select.metric=[au_f1_mean]", f"model.args.input_size={size}", *extra]
    au = {"store": str(data.au_store), "split_file": str(data.au_split)}
    expr = {"store": str(data.expr_store), "split_file": str(data.expr_split)}
    path = demo_recipe()
    baseline = load(path, common, values={"data": {"au": au, "expr": expr}})
    mdhr = load(path, common + ["model.name=mdhr.disfa_lite0", "train.loss=mdhr", "data.au.clip_len=16",
                                "data.au.eval_batch_size=8"], values={"data": {"au": au, "expr": None}})
    # the demo's joint-loss options (label smoothing) do not apply to the MDHR loss; a merge cannot remove keys
    mdhr = dataclasses.replace(mdhr, train=dataclasses.replace(mdhr.train, loss_args={}))
    return {"baseline": baseline, "mdhr": mdhr}


def main() -> None:
    from rich.console import Console

    from aufer._runtime import tune_allocator
    from aufer.demo import demo_recipe, prepare_data, read_demo_recipe
    from aufer.demo.data import StageProgress
    from aufer.engine.runner import fit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=128, help="model input side (pixels)")
    ap.add_argument("--out", default=None, help="folder of the runs (default: a temporary folder); reruns resume")
    ap.add_argument("--save", default=None, help="write the per-run figures here (.json)")
    ap.add_argument("--only", choices=["baseline", "mdhr"], default=None)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides for both models")
    args = ap.parse_args()
    tune_allocator()
    _, settings, data_seed = read_demo_recipe(demo_recipe())
    out = Path(args.out or tempfile.mkdtemp(prefix="aufer-mdhr-vs-baseline-"))
    with StageProgress(Console(quiet=True)) as steps:
        data = prepare_data(settings, data_seed, steps, out)
    rows = []
    for seed in args.seeds:
        for name, recipe in _recipes(data, args.size, args.epochs, seed, args.set).items():
            if args.only and name != args.only:
                continue
            run = out / f"{name}_seed{seed}"
            t0 = time.perf_counter()
            done = (run / "metrics.json").exists()
            res = json.loads((run / "metrics.json").read_text()) if done else fit(recipe, run, resume=run.exists(),
                                                                                  progress=False)
            au = res["test"]["au"]
            rows.append({"model": name, "seed": seed, "test_au_f1_mean": au["au_f1_mean"], "test_au_f1": au["au_f1"],
                         "test_au_auc_mean": au.get("au_auc_mean"), "n_test_frames": au["n_au_frames"],
                         "train_s": None if done else round(time.perf_counter() - t0, 1)})
            print(f"{name:8s} seed {seed}: test AU F1 {au['au_f1_mean']:.3f} (synthetic FACS-warp clips of "
                  f"{au['n_au_frames']} frames of held-out people), AUC {au.get('au_auc_mean') or float('nan'):.3f}, "
                  f"{rows[-1]['train_s']} s", flush=True)
    print(f"\n{len(args.seeds)} seeds, Lite0 at {args.size} px, {args.epochs} epochs, DISFA's 8 AUs "
          f"(SYNTHETIC FACS-warp motion); runs in {out}")
    for name in ("baseline", "mdhr"):
        f1 = [r["test_au_f1_mean"] for r in rows if r["model"] == name]
        if f1:
            sd = statistics.stdev(f1) if len(f1) > 1 else float("nan")
            print(f"{name:8s} test AU F1 {statistics.mean(f1):.3f} ± {sd:.3f}  ({', '.join(f'{v:.3f}' for v in f1)})")
    if args.save:
        Path(args.save).write_text(json.dumps({"size": args.size, "epochs": args.epochs, "aus": DISFA_AUS,
                                               "runs": rows}, indent=1))


if __name__ == "__main__":  # spawn-safe: synthetic data generation uses worker processes
    main()
