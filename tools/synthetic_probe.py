"""Do SYNTHETIC prototype expressions help or hurt the happy-vs-neutral decision on REAL photos? A diagnostic on
frozen features, not a model.

Frozen ImageNet Lite0 stage features of the aligned 160-px crops (the stride-16 map pooled to 2 × 2 cells and the
pooled stride-32 map: ``aufer_lite(features="stages")``) and a logistic regression (standardised, C = 0.01),
3-fold cross-validation grouped by person over all 102 London people (this includes the demo's test people:
the figures diagnose the training data, they choose nothing by themselves). Each fold trains on the real
photos of its training people and, per row, on none / some of the FACS-warp prototype stills of the same
training people (2 per person and emotion, as the demo makes them), and scores the real photos of the held-out
people (P(happiness) > P(neutral)) and the 40 Canada neutral photos (called neutral over happiness).

    python tools/synthetic_probe.py
"""

import numpy as np
import torch
import torch.nn.functional as F


def main():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from aufer import synth, vocab
    from aufer._runtime import tune_allocator
    from aufer.bundled import bundled_faces
    from aufer.demo.data import _bases
    from aufer.faces.align import align_face
    from aufer.faces.pipeline import FacePipeline
    from aufer.media import read_image
    from aufer.models.efficientnet_lite import EfficientNetLite, normalise

    tune_allocator()
    torch.set_num_threads(2)
    size, happy, neutral = 160, vocab.EMOTIONS_7.index("happiness"), vocab.EMOTIONS_7.index("neutral")
    df = bundled_faces()
    pipe = FacePipeline(crop_size=size, detector_range="short")
    det, crops, keep = {}, [], []
    for r in df.itertuples():
        img = read_image(r.path)
        faces = pipe.detector.detect(img)
        det[r.path] = (img, faces[0] if faces else None)
        if faces:
            crops.append(align_face(img, faces[0], size).crop)
            keep.append(r.Index)
    rows = df.loc[keep].reset_index(drop=True)
    lon_n = df[(df.set == "london") & (df.expression == "neutral")]
    stills = synth.make_expression_clips(_bases(lon_n, det, 256), 2, vocab.EMOTIONS_7, 1, size, 4, 2)
    net = EfficientNetLite("lite0").eval()

    def feats(c):
        out = []
        for i in range(0, len(c), 64):
            x = normalise(torch.from_numpy(np.stack(c[i:i + 64])).permute(0, 3, 1, 2).float() / 255)
            with torch.no_grad():
                st = net.forward_stages(x)
            out.append(torch.cat([F.adaptive_avg_pool2d(st[2], 2).flatten(1), st[3].mean((2, 3))], 1).numpy())
        return np.concatenate(out)

    fr, fs = feats(crops), feats(list(stills.crops[:, 0]))
    lon = (rows.set == "london").to_numpy()
    y = np.where(rows.expression == "smiling", happy, neutral)
    ids = rows.identity.to_numpy()
    print(f"{lon.sum()} London photos, {(~lon).sum()} Canada photos, {len(fs)} SYNTHETIC stills")
    for name, classes in [("real photos only", ()), ("+ SYNTHETIC stills of all 7 classes", tuple(range(7))),
                          ("+ SYNTHETIC stills of the 5 classes real photos lack",
                           tuple(k for k in range(7) if k not in (happy, neutral)))]:
        p_h, p_n, can = np.zeros(lon.sum()), np.zeros(lon.sum()), []
        xl, yl, gl = fr[lon], y[lon], ids[lon]
        for tr, te in GroupKFold(3).split(xl, yl, gl):
            m = np.isin(stills.identity, gl[tr]) & np.isin(stills.expr, classes)
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000))
            clf.fit(np.concatenate([xl[tr], fs[m]]), np.concatenate([yl[tr], stills.expr[m]]))
            cls = list(clf.classes_)
            pt = clf.predict_proba(xl[te])
            p_h[te], p_n[te] = pt[:, cls.index(happy)], pt[:, cls.index(neutral)]
            pc = clf.predict_proba(fr[~lon])
            can.append(float((pc[:, cls.index(neutral)] > pc[:, cls.index(happy)]).mean()))
        acc = float(((p_h > p_n) == (yl == happy)).mean())
        print(f"{name:55s} happy-vs-neutral {acc:.3f}   Canada neutral (vs happiness) {np.mean(can):.3f}")


if __name__ == "__main__":  # spawn-safe: synthetic data generation uses worker processes
    main()
