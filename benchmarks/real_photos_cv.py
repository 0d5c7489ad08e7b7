"""Honest figures on real people: the demo's design in a person-level k-fold cross-validation over ALL 102 London
people (every person tested exactly once), with model selection on validation people of each training fold.

Per fold, the London people are: test (the fold), validation (``--val`` people drawn from the rest, seeded) and
FE-train (the rest: real neutral + smiling photos and SYNTHETIC prototype expressions). AU-train is always the
40 Canada people (SYNTHETIC FACS-warp AU clips); Canada people never carry an expression label in training. The
recipe is the demo's (``--recipe`` / ``--set`` to change it); selection uses the mean of validation UAR and
real-photo happy-vs-neutral accuracy (the demo also uses synthetic AU F1 of validation people; this script makes
no AU clips for London people, to keep the data stage at one generation for all folds). A model with an
expression probe (``model.args.expr_probe``, fitted before training, the same at every epoch) gives those
validation figures no say over epochs; its last epoch is kept instead (``select.mode: last``).

Reports, over the 102 people's real photos: happy-vs-neutral accuracy (P(happiness) > P(neutral) ⇔ smiling);
the share of people whose P(happiness) and whose P(AU12) is higher on their smiling photo; and, for the 40
Canada neutral photos, the share called neutral (top-1 of the 7 classes, and neutral-vs-happiness). Targets of
issue 10: happy-vs-neutral ≥ 0.95, both pair shares ≥ 0.99, Canada neutral ≥ 0.95.

    python benchmarks/real_photos_cv.py [--folds 5] [--val 14] [--only K] [--out DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def _data(settings, seed: int, out: Path, console):
    """All folds' data, generated once: Canada AU clips; London real photos + synthetic stills; Canada real
    neutral photos (evaluation only)."""
    from aufer import synth, vocab
    from aufer.bundled import bundled_faces
    from aufer.demo.data import (EXPR_CODEC, StageProgress, _bases, _cached, _concat_clips, _concat_frames,
                                 _detect_photos, _real_clips, without_excluded)
    from aufer.store import FaceStore

    df = bundled_faces()
    cache = out / "data"
    with StageProgress(console) as steps:
        det = _detect_photos(df, steps)
        neutral = df[df.expression == "neutral"]
        canada = neutral[neutral.set == "canada"]
        london = df[df.set == "london"]
        b_can = _bases(canada, det, settings.synth_image_size)
        b_lon = _bases(london[london.expression == "neutral"], det, settings.synth_image_size)
        au = _cached(cache / "au_canada.npz", lambda: synth.make_au_clips(
            b_can, settings.au_clips_per_person, settings.clip_frames, settings.crop_size, seed * 1000 + 1,
            settings.workers, steps.task("FACS-warp (synthetic) AU clips, Canada", len(b_can))))
        ex = _cached(cache / "expr_london.npz", lambda: synth.make_expression_clips(
            b_lon, settings.fe_synth_per_emotion, vocab.EMOTIONS_7, 1, settings.crop_size, seed * 1000 + 4,
            settings.workers, steps.task("FACS-warp (synthetic) stills, London", len(b_lon))))
    au_store = FaceStore(cache / "au.sqlite", "a", crop_size=settings.crop_size)
    au_store.save_records(_concat_frames([au.to_store(au_store, "au_canada", "au")]))
    au_store.close()
    ex_store = FaceStore(cache / "expr.sqlite", "a", crop_size=settings.crop_size, codec=EXPR_CODEC)
    real = _real_clips(london, det, settings.crop_size)
    parts = [real.to_store(ex_store, "real_london", "expr"),
             without_excluded(ex, settings).to_store(ex_store, "synth_london", "expr"),
             _real_clips(canada, det, settings.crop_size).to_store(ex_store, "real_canada", "expr")]
    # extra.real_repeat: copies of the real London photos, used by training people only (as the demo's FE-train)
    parts += [real.to_store(ex_store, f"real_london_copy{r}", "expr") for r in range(1, max(1, settings.real_repeat))]
    ex_store.save_records(_concat_clips(parts))
    ex_store.close()
    return cache / "au.sqlite", cache / "expr.sqlite", sorted(london.identity.unique()), sorted(canada.identity.unique())


def _scores(pred: pd.DataFrame, happy: str = "emo_happiness", neutral: str = "emo_neutral") -> dict:
    from aufer.demo.metrics import smile_pair_share

    smile = pred["label"] == pred.attrs["HAPPY"]
    called = pred[happy] > pred[neutral]
    out = {"happy_vs_neutral_accuracy": float((called == smile).mean()), "n_photos": int(len(pred))}
    out["p_happiness_higher_when_smiling"], n_people = smile_pair_share(pred["subject"], smile, pred[happy])
    out["p_au12_higher_when_smiling"], _ = smile_pair_share(pred["subject"], smile, pred["AU12_p"])
    out["n_people"] = n_people
    return out


def main():
    from rich.console import Console

    from aufer.demo import HAPPY, NEUTRAL, demo_recipe, engine_recipe, read_demo_recipe
    from aufer.engine.runner import fit
    from aufer.models import load_model
    from aufer.store import FaceStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--val", type=int, default=14, help="validation people per fold (from the training people)")
    ap.add_argument("--only", type=int, default=None, help="run this fold only")
    ap.add_argument("--recipe", default=None, help="default: the packaged demo recipe")
    ap.add_argument("--out", default=None, help="folder of the data and fold runs (default: temporary)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    from aufer._runtime import tune_allocator

    tune_allocator()
    path = Path(args.recipe) if args.recipe else demo_recipe()
    raw, settings, seed = read_demo_recipe(path, args.set)
    out = Path(args.out or tempfile.mkdtemp(prefix="aufer-realcv-"))
    console = Console()
    au_path, ex_path, london, canada = _data(settings, seed, out, console)
    probe = bool(((raw.get("model") or {}).get("args") or {}).get("expr_probe"))
    table = FaceStore(ex_path).load_records().table
    people = list(london)
    np.random.default_rng(seed + 7).shuffle(people)
    real_lon = table[table["clip"].str.startswith("real_london/")]
    can_clips = table[table["clip"].str.startswith("real_canada/")]["clip"].tolist()
    preds, can_preds = [], []
    for k in range(args.folds):
        if args.only is not None and k != args.only:
            continue
        test = set(people[k::args.folds])
        rest = [p for p in people if p not in test]
        val = set(np.random.default_rng([seed, k]).permutation(rest)[: args.val])
        train = set(rest) - val
        def clips(who, copies):
            keep = table["subject"].isin(who) & ~table["clip"].str.startswith("real_canada/")
            if not copies:
                keep &= ~table["clip"].str.startswith("real_london_copy")
            return table[keep]["clip"].tolist()
        split = out / f"split_expr_fold{k}.json"
        split.write_text(json.dumps({"train": clips(train, True), "val": clips(val, False),
                                     "test": real_lon[real_lon["subject"].isin(test)]["clip"].tolist() + can_clips}))
        au_split = out / "split_au.json"
        au_split.write_text(json.dumps({"train": canada, "val": [], "test": []}))
        select = {"mode": "last"} if probe else {"metric": ["uar", "real.happy_vs_neutral_accuracy"]}
        recipe = engine_recipe(path, args.set, raw, settings, au_path, au_split, ex_path, split, select=select)
        from aufer.demo import _eval_set, real_photo_metrics
        from aufer.demo.metrics import clip_au_probability

        val_real = _eval_set(ex_path, real_lon[real_lon["subject"].isin(val)]["clip"].tolist())
        run = out / f"fold{k}"
        if not (run / "metrics.json").exists():
            fit(recipe, run, resume=run.exists(), console=console,
                extra_eval={"real": lambda m: real_photo_metrics(m, val_real)})
        model = load_model(run / "best.safetensors")
        pred = pd.read_parquet(run / "predictions" / "test_expr_clips.parquet")
        # AU12 per test photo: one more pass of the selected model over the same clips
        pred["AU12_p"] = pred["clip"].map(clip_au_probability(model, _eval_set(ex_path, pred["clip"].tolist())))
        pred["fold"] = k
        is_can = pred["clip"].str.startswith("real_canada/")
        preds.append(pred[~is_can])
        can_preds.append(pred[is_can])
        fold = pred[~is_can].copy()
        fold.attrs["HAPPY"] = HAPPY
        print(f"fold {k}: {json.dumps(_scores(fold))}", flush=True)
    allp = pd.concat(preds, ignore_index=True)
    allp.attrs["HAPPY"] = HAPPY
    res = _scores(allp)
    can = pd.concat(can_preds, ignore_index=True)
    emo = [c for c in can.columns if c.startswith("emo_")]
    res["canada_neutral_top1"] = float((can[emo].to_numpy().argmax(1) == NEUTRAL).mean())
    res["canada_neutral_vs_happiness"] = float((can["emo_neutral"] > can["emo_happiness"]).mean())
    res["canada_n_predictions"] = int(len(can))
    res["folds"] = args.folds
    res["selection"] = "last epoch (expression probe)" if probe else "validation UAR + real happy-vs-neutral"
    res["targets"] = {"happy_vs_neutral_accuracy": 0.95, "pair_shares": 0.99, "canada_neutral": 0.95}
    print(json.dumps(res, indent=1))
    (out / "real_photos_cv.json").write_text(json.dumps(res, indent=1))
    print(f"runs and data in {out}")


if __name__ == "__main__":  # spawn-safe: synthetic data generation uses worker processes
    main()
