"""Development cross-validation of the demo's happy-vs-neutral accuracy on REAL photos, test people never used.

The 68 London people who are not test people (the demo's FE-train + validation people) are shuffled (seed 123)
and cut into ``--folds`` folds of people. Each fold trains the demo recipe through the engine on the AU-train
data and on the expression data of the other folds' people (the last epoch is kept: ``select.mode: last``),
then scores the held-out people's real photos, each photo once: happy-vs-neutral accuracy and the share of
people whose P(AU12) is higher on their smiling photo. This is how design choices for the demo are
compared without looking at test people; it prints one line per fold, the mean, and saves the per-photo
probabilities with ``--save``.

    python tools/demo_dev_cv.py [--folds 4] [--only K] [--save cv.npz] [--out DIR] [--recipe R] [--set key=value ...]

``--set`` overrides keys of the demo recipe (e.g. ``--set extra.real_repeat=4 train.epochs=12``). With
``extra.real_repeat`` > 1 only the demo's FE-train people have their real photos repeated in training, not its
validation people. It takes about 5 minutes per fold on 2 cores once the demo's synthetic data are cached.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def main():
    from rich.console import Console

    from aufer.demo import HAPPY, NEUTRAL, _eval_set, demo_recipe, engine_recipe, prepare_data, read_demo_recipe
    from aufer.demo.metrics import clip_au_probability, smile_pair_share
    from aufer.models import load_model
    from aufer.demo.data import StageProgress
    from aufer.engine.runner import fit
    from aufer.store import FaceStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--only", type=int, default=None, help="run this fold only")
    ap.add_argument("--save", default=None, help="write per-photo probabilities here (.npz)")
    ap.add_argument("--out", default=None, help="folder of the fold runs (default: a temporary folder)")
    ap.add_argument("--recipe", default=None, help="a demo recipe (default: the packaged demo.yaml)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    from aufer._runtime import tune_allocator

    tune_allocator()
    path = Path(args.recipe) if args.recipe else demo_recipe()
    raw, settings, seed = read_demo_recipe(path, args.set)
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="aufer-devcv-"))
    with StageProgress(Console(quiet=True)) as steps:
        data = prepare_data(settings, seed, steps, out_dir)
    table = FaceStore(data.expr_store).load_records().table
    people = sorted(data.split["fe_train"] + data.split["val"])
    np.random.default_rng(123).shuffle(people)
    pool = table[table["subject"].isin(people)]
    out = {"subject": [], "label": [], "p_expr": [], "fold": [], "p_au12": []}
    for k in range(args.folds):
        if args.only is not None and k != args.only:
            continue
        held = pool["subject"].isin(people[k::args.folds])
        once = ~pool.duplicated(["subject", "label", "source"])  # each held-out photo once (real_repeat copies)
        test = pool[held & (pool["source"] == "real") & once]["clip"].tolist()
        split = out_dir / f"split_expr_fold{k}.json"
        split.write_text(json.dumps({"train": pool[~held]["clip"].tolist(), "val": [], "test": test}))
        au_split = out_dir / "split_au_train_only.json"
        au_split.write_text(json.dumps({"train": data.split["au_train"], "val": [], "test": []}))
        recipe = engine_recipe(path, args.set, raw, settings, data.au_store, au_split, data.expr_store, split,
                               select={"mode": "last"})
        run = out_dir / f"fold{k}"
        fit(recipe, run, resume=run.exists(), progress=False)
        pred = pd.read_parquet(run / "predictions" / "test_expr_clips.parquet")
        p_e = pred[[c for c in pred.columns if c.startswith("emo_")]].to_numpy()
        truth = pred["label"].to_numpy()
        au12 = pred["clip"].map(clip_au_probability(load_model(run / "best.safetensors"),
                                                    _eval_set(data.expr_store, pred["clip"].tolist()))).to_numpy()
        acc = np.mean((p_e[:, HAPPY] > p_e[:, NEUTRAL]) == (truth == HAPPY))
        print(f"fold {k}: {len(truth)} real photos of {pred['subject'].nunique()} people, "
              f"happy-vs-neutral accuracy {acc:.3f}, P(AU12) higher when smiling "
              f"{smile_pair_share(pred['subject'], truth == HAPPY, au12)[0]:.3f}", flush=True)
        for key, v in (("subject", pred["subject"]), ("label", truth), ("p_expr", p_e), ("fold", [k] * len(truth)),
                       ("p_au12", au12)):
            out[key] += list(v)
    y, p = np.array(out["label"]), np.array(out["p_expr"])
    au12_share = smile_pair_share(out["subject"], y == HAPPY, out["p_au12"])[0]
    print(f"dev CV happy-vs-neutral accuracy {np.mean((p[:, HAPPY] > p[:, NEUTRAL]) == (y == HAPPY)):.3f} "
          f"over {len(y)} photos, P(AU12) higher when smiling {au12_share:.3f} "
          f"(settings: {args.set or 'demo defaults'}; runs in {out_dir})")
    if args.save:
        np.savez(args.save, **{k: np.array(v) for k, v in out.items()})


if __name__ == "__main__":  # spawn-safe: synthetic data generation uses worker processes
    main()
