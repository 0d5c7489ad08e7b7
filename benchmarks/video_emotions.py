"""What a model says about the bundled video, part by part.

The video (Wolfgang Langer on Pexels; ../shared/data/README.md) shows one woman: sad and crying first, a hand
over the mouth and face, then smiling and laughing. No official labels exist; the frame ranges below were read
off the video frame by frame (a contact sheet of every 24th frame, then single frames at the boundaries):

* ``crying``   frames   0–71: sad, crying, eyes closed or lowered, brows raised and drawn together; face free.
* ``hand``     frames  72–239: a hand over the mouth / nose while crying turns to relief (occluded face).
* ``smiling``  frames 240–311: a smile returning, mouth open.
* ``laughing`` frames 312–471: broad laughing, teeth showing, head tilting.

Prints, per part, the mean P(happiness), P(sadness), the top emotion's share of frames, and the mean AU1, AU4,
AU12, AU15, AU25 and AU26 probabilities (where the model has them), then the targets of issue 23 (the video is
reported, never used to choose a model): in the crying part P(sadness) > P(happiness); laughing minus crying
P(happiness) ≥ 0.8; the top emotion is happiness on ≥ 90 % of frames 300–460.

    python benchmarks/video_emotions.py [--model RUN_OR_FILE] [--csv predictions.csv] [--no-flip]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

PARTS = {"crying": (0, 71), "hand": (72, 239), "smiling": (240, 311), "laughing": (312, 471)}


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per-part means of a prediction table (one row per frame; the first face of each frame)."""
    df = df[df["face_detected"].astype(bool)].groupby("frame").head(1)
    rows = {}
    for part, (a, b) in PARTS.items():
        d = df[(df["frame"] >= a) & (df["frame"] <= b)]
        row = {"frames": f"{a}-{b}", "n": len(d)}
        for e in ("happiness", "sadness", "neutral"):
            if f"emo_{e}" in d:
                row[f"P({e})"] = d[f"emo_{e}"].mean()
        row["top"] = d["emotion"].value_counts(normalize=True).head(2).round(2).to_dict()
        for au in ("AU01", "AU04", "AU12", "AU15", "AU25", "AU26"):
            if f"{au}_p" in d:
                row[f"{au}_p"] = d[f"{au}_p"].mean()
        rows[part] = row
    return pd.DataFrame(rows).T


def targets(df: pd.DataFrame) -> dict:
    """The issue-23 checks on a prediction table of the bundled video (first face of each frame)."""
    df = df[df["face_detected"].astype(bool)].groupby("frame").head(1)
    part = {p: df[(df["frame"] >= a) & (df["frame"] <= b)] for p, (a, b) in PARTS.items()}
    cry, laugh = part["crying"], part["laughing"]
    window = df[(df["frame"] >= 300) & (df["frame"] <= 460)]
    out = {"crying_P(sadness)": float(cry["emo_sadness"].mean()), "crying_P(happiness)": float(cry["emo_happiness"].mean()),
           "laughing_minus_crying_P(happiness)": float(laugh["emo_happiness"].mean() - cry["emo_happiness"].mean()),
           "frames_300_460_top_happiness": float((window["emotion"] == "happiness").mean()),
           "frames_300_460_n": int(len(window))}
    out["pass"] = {"crying_sadness_over_happiness": out["crying_P(sadness)"] > out["crying_P(happiness)"],
                   "laugh_minus_cry_ge_0.8": out["laughing_minus_crying_P(happiness)"] >= 0.8,
                   "laugh_top_happiness_ge_0.9": out["frames_300_460_top_happiness"] >= 0.9}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="run folder or .safetensors (default: aufer's default model)")
    ap.add_argument("--csv", default=None, help="use an existing prediction CSV instead of running the model")
    ap.add_argument("--no-flip", dest="flip", action="store_false", help="no flip averaging (aufer predict's default is on)")
    args = ap.parse_args()
    if args.csv:
        df = pd.read_csv(args.csv)
    else:
        from aufer.bundled import bundled_video
        from aufer.models import load_model
        from aufer.predict import predict

        if args.model is None:
            from aufer.models.shipped import default_model_path

            args.model = default_model_path()
        df = predict(bundled_video(), load_model(args.model), flip=args.flip)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(summarise(df))
    print(targets(df))
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
