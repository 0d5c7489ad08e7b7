"""What a model says about the bundled video, part by part.

The video (Wolfgang Langer on Pexels; ../shared/data/README.md) shows one woman: sad and crying first, a hand
over the mouth and face, then smiling and laughing. No official labels exist; the frame ranges below were read
off the video frame by frame (a contact sheet of every 24th frame, then single frames at the boundaries):

* ``crying``   frames   0–71: sad, crying, eyes closed or lowered, brows raised and drawn together; face free.
* ``hand``     frames  72–239: a hand over the mouth / nose while crying turns to relief (occluded face).
* ``smiling``  frames 240–311: a smile returning, mouth open.
* ``laughing`` frames 312–471: broad laughing, teeth showing, head tilting.

Prints, per part, the mean P(happiness), P(sadness), the top emotion's share of frames, and the mean AU1, AU4,
AU12 and AU15 probabilities (where the model has them).

    python benchmarks/video_emotions.py [--model RUN_OR_FILE] [--csv predictions.csv]
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
        for au in ("AU01", "AU04", "AU12", "AU15"):
            if f"{au}_p" in d:
                row[f"{au}_p"] = d[f"{au}_p"].mean()
        rows[part] = row
    return pd.DataFrame(rows).T


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="run folder or .safetensors (default: aufer's default model)")
    ap.add_argument("--csv", default=None, help="use an existing prediction CSV instead of running the model")
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
        df = predict(bundled_video(), load_model(args.model))
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(summarise(df))
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
