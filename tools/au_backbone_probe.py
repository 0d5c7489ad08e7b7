"""Which frozen features carry AUs better: ImageNet EfficientNet-Lite0 (the default model's trunk) or face-api's
expression network (trained on real faces)? A representation test, not an end-to-end training run.

For each backbone, one logistic regression per AU is fitted on frozen features of SYNTHETIC FACS-warp AU frames
of the training people (person-level split of the Canada people, seeded) and scored on the held-out people's
synthetic frames (AUC, F1 at 0.5). The same AU classifiers are then read on REAL faces nobody labelled: the London
neutral/smiling photo pairs (P(AU12) higher on the smiling photo, P(AU25) on the smiling photo when it shows
teeth is not known, so only the share of people with P(AU25) higher when smiling is printed) and, with
``--media``, any images or videos (mean per-AU probabilities).

* ``lite0``: the stride-8 and stride-16 maps of the ImageNet Lite0 (crops at the store's size) pooled to 4 × 4
  cells (2,432 features: the default model's probe input);
* ``faceapi``: face-api's ``dense1`` (28 × 28) and ``dense2`` (14 × 14) maps pooled to 4 × 4 cells and the pooled
  ``dense3`` (1,024 + 2,048 + 256 = 3,328 features), on face-api's mesh framing of the same crops.

    python tools/au_backbone_probe.py --store DATA/au.sqlite --expr DATA/expr.sqlite [--media FILE ...]

(``DATA`` as ``benchmarks/real_photos_cv.py --out DIR`` leaves it: ``DIR/data``.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _lite0():
    from aufer.models import create_model

    m = create_model("aufer_lite.lite0", pretrained=True, features="grid", freeze_stages=3, expr_probe=True, expr_aux=True,
                     input_size=160).eval()

    def feats(crops: torch.Tensor, lms: torch.Tensor) -> torch.Tensor:
        x = m.preprocess(crops[:, None])[:, 0]
        return m.backbone(x)[:, : m.probe_dim]
    return feats


def _faceapi():
    from aufer.models import load_model
    from aufer.vocab import data_path

    f = load_model(data_path("models", "faceapi-expression"))

    def feats(crops: torch.Tensor, lms: torch.Tensor) -> torch.Tensor:
        x = f.frame(f.preprocess(crops[:, None]), lms[:, None])
        x = (x - f.mean_rgb) / 255.0
        d1 = f.dense1(f.dense0(x))
        d2 = f.dense2(d1)
        d3 = f.dense3(d2)
        return torch.cat([F.adaptive_avg_pool2d(d1, 4).flatten(1), F.adaptive_avg_pool2d(d2, 4).flatten(1),
                          F.avg_pool2d(d3, 7, 2).flatten(1)], 1)
    return feats


BACKBONES = {"lite0": _lite0, "faceapi": _faceapi}


@torch.no_grad()
def _features(fn, crops: np.ndarray, lms: np.ndarray, bs: int = 64) -> np.ndarray:
    out = [fn(torch.from_numpy(crops[i:i + bs]), torch.from_numpy(lms[i:i + bs].astype(np.float32))).numpy()
           for i in range(0, len(crops), bs)]
    return np.concatenate(out)


def _synthetic_frames(store_path: Path, every: int):
    from aufer.store import FaceStore

    store = FaceStore(store_path)
    rec = store.load_records()
    t = rec.table
    labels = rec.occurrence
    crops, lms, ys, subj = [], [], [], []
    for seq, g in t.groupby("sequence", sort=False):
        g = g.iloc[::every]
        d = store.read(seq, g["frame"].tolist())
        crops.append(d["crops"])
        lms.append(d["landmarks"])
        ys.append(labels[g.index.to_numpy()])
        subj += g["subject"].tolist()
    return rec.aus, np.concatenate(crops), np.concatenate(lms), np.concatenate(ys), np.array(subj)


def _real_pairs(expr_path: Path):
    from aufer.store import FaceStore

    store = FaceStore(expr_path)
    t = store.load_records().table
    t = t[t["clip"].str.startswith("real_london/")]
    crops, lms = [], []
    for clip in t["clip"]:
        d = store.read(clip, [0])
        crops.append(d["crops"][0])
        lms.append(d["landmarks"][0])
    return np.stack(crops), np.stack(lms), t["subject"].to_numpy(), t["label"].to_numpy()


def _media_frames(path: Path, size: int, every: int):
    from aufer.faces.pipeline import FacePipeline

    pipe = FacePipeline(crop_size=size, max_faces=1)
    crops, lms = [], []
    for k, (_, faces) in enumerate(pipe.iter_media(path)):
        if faces and k % every == 0:
            crops.append(faces[0].crop)
            lms.append(faces[0].landmarks)
    return np.stack(crops), np.stack(lms).astype(np.float32)


def main():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from aufer import vocab
    from aufer.demo.metrics import smile_pair_share

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True, help="the SYNTHETIC AU store (FACS-warp clips)")
    ap.add_argument("--expr", type=Path, default=None, help="the expression store with the real London photos")
    ap.add_argument("--media", type=Path, nargs="*", default=[], help="real images / videos to read the AUs on")
    ap.add_argument("--every", type=int, default=4, help="use every k-th synthetic frame")
    ap.add_argument("--test-people", type=int, default=10)
    ap.add_argument("--c", type=float, default=0.01, help="the logistic regressions' C")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here (.json)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    aus, crops, lms, y, subj = _synthetic_frames(args.store, args.every)
    people = np.unique(subj)
    test = set(np.random.default_rng(0).permutation(people)[: args.test_people])
    is_test = np.array([s in test for s in subj])
    real = _real_pairs(args.expr) if args.expr else None
    media = {p.name: _media_frames(p, crops.shape[1], 3) for p in args.media}
    report = {"aus": list(aus), "n_train_frames": int((~is_test).sum()), "n_test_frames": int(is_test.sum())}
    for name, make in BACKBONES.items():
        fn = make()
        x = _features(fn, crops, lms)
        scaler = StandardScaler().fit(x[~is_test])
        xs = scaler.transform(x)
        row = {"auc": {}, "f1": {}}
        clfs = {}
        for j, au in enumerate(aus):
            yt = y[:, j]
            ok = (yt == 0) | (yt == 1)
            tr, te = ok & ~is_test, ok & is_test
            if len(np.unique(yt[tr])) < 2 or len(np.unique(yt[te])) < 2:
                continue
            clf = LogisticRegression(C=args.c, max_iter=2000).fit(xs[tr], yt[tr])
            p = clf.predict_proba(xs[te])[:, 1]
            row["auc"][au] = float(roc_auc_score(yt[te], p))
            row["f1"][au] = float(f1_score(yt[te], p >= 0.5, zero_division=0))
            clfs[au] = clf
        row["mean_auc"] = float(np.mean(list(row["auc"].values())))
        row["mean_f1"] = float(np.mean(list(row["f1"].values())))
        if real is not None:
            rc, rl, rs, rlab = real
            xr = scaler.transform(_features(fn, rc, rl))
            smiling = rlab == vocab.EMOTIONS_7.index("happiness")
            for au in (12, 25, 6):
                if au in clfs:
                    share, n = smile_pair_share(rs, smiling, clfs[au].predict_proba(xr)[:, 1])
                    row[f"london_AU{au}_higher_when_smiling"] = share
        for mname, (mc, ml) in media.items():
            xm = scaler.transform(_features(fn, mc, ml))
            row[f"media:{mname}"] = {au: round(float(c.predict_proba(xm)[:, 1].mean()), 3) for au, c in clfs.items()}
        report[name] = row
        print(name, json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                                if not isinstance(v, dict)}), flush=True)
        print("  AUC per AU:", {au: round(v, 2) for au, v in row["auc"].items()}, flush=True)
        for k, v in row.items():
            if k.startswith("media:"):
                print(f"  {k}:", v, flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
