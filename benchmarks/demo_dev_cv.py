"""Development cross-validation of the demo's happy-vs-neutral accuracy on REAL photos, test people never used.

The 68 London people who are not test people (the demo's FE-train + validation people) are shuffled (seed 123)
and cut into ``--folds`` folds of people. Each fold trains the demo model on the AU-train data and on the
expression data of the other folds' people, then scores the held-out people's real photos. This is how design
choices for the demo are compared without looking at test people; it prints one line per fold, the mean, and
saves the per-photo probabilities with ``--save``.

    python benchmarks/demo_dev_cv.py [--folds 4] [--only K] [--save cv.npz] [--set key=value ...]

``--set`` overrides demo settings (``DemoConfig`` fields; ``model_args`` as JSON). With ``real_repeat`` > 1 only
the demo's FE-train people have their real photos repeated in training, not its validation people. It takes
about 5 minutes per fold on 2 cores once the demo's synthetic data are cached.
"""

import argparse
import json

import numpy as np
import pandas as pd


def main():
    from rich.console import Console

    from aufer import synth
    from aufer.datasets.loaders import ExprClipDataset
    from aufer.readers.records import ClipRecords
    from aufer.demo import HAPPY, NEUTRAL, DemoConfig, StageProgress, prepare_data, train_model
    from aufer.engine.loop import predict_clips

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--only", type=int, default=None, help="run this fold only")
    ap.add_argument("--save", default=None, help="write per-photo probabilities here (.npz)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    overrides = dict(s.split("=", 1) for s in args.set)
    model_args = json.loads(overrides.pop("model_args", "{}"))
    cfg = DemoConfig(**{k: type(getattr(DemoConfig(), k))(v) for k, v in overrides.items()}, model_args=model_args)

    with StageProgress(Console(quiet=True)) as steps:
        data = prepare_data(cfg, steps)
        fe, ve = data.fe_train, data.val_expr.records
        table = pd.concat([fe.table, ve.table], ignore_index=True)
        pool = ClipRecords(fe.dataset, fe.root, fe.classes, table)
        people = sorted(data.split["fe_train"] + data.split["val"])
        np.random.default_rng(123).shuffle(people)
        out = {"subject": [], "label": [], "p_expr": [], "fold": []}
        for k in range(args.folds):
            if args.only is not None and k != args.only:
                continue
            held = table["subject"].isin(people[k::args.folds])
            model, _, _ = train_model(cfg, data.store, data.au_train, pool.subset(table["clip"][~held]), None, steps)
            # each held-out photo once (with real_repeat > 1 the demo's FE-train holds copies of every real photo)
            once = ~table.duplicated(["subject", "label", "source"])
            real = pool.subset(table["clip"][held & (table["source"] == "real") & once])
            _, p_e, _, truth = predict_clips(model, ExprClipDataset(data.store, real, num_segments=1, aus=synth.SYNTH_AUS),
                                             labels=True)
            acc = np.mean((p_e[:, HAPPY] > p_e[:, NEUTRAL]) == (truth == HAPPY))
            print(f"fold {k}: {len(truth)} real photos of {real.table['subject'].nunique()} people, "
                  f"happy-vs-neutral accuracy {acc:.3f}", flush=True)
            for key, v in (("subject", real.table["subject"]), ("label", truth), ("p_expr", p_e), ("fold", [k] * len(truth))):
                out[key] += list(v)
    y, p = np.array(out["label"]), np.array(out["p_expr"])
    print(f"dev CV happy-vs-neutral accuracy {np.mean((p[:, HAPPY] > p[:, NEUTRAL]) == (y == HAPPY)):.3f} "
          f"over {len(y)} photos (settings: {args.set or 'demo defaults'})")
    if args.save:
        np.savez(args.save, **{k: np.array(v) for k, v in out.items()})


if __name__ == "__main__":  # spawn-safe: synthetic data generation uses worker processes
    main()
