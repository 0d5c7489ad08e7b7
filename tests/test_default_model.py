"""The model shipped inside the package (aufer/data/models/<DEFAULT_MODEL>): present, small, documented, used by
`aufer predict` without --model, and it behaves on real held-out photos."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aufer.models import load_model
from aufer.models.shipped import DEFAULT_MODEL, default_model_path, model_card


def test_default_model_is_shipped_small_and_documented():
    w = default_model_path()
    assert w.stat().st_size <= 10 * 1024 * 1024
    card = model_card(w)
    assert card is not None and "synthetic" in card.lower() and "Do not trust it for" in card
    meta = json.loads(w.with_suffix(".json").read_text())
    # the trained part in fp16, face-api's network in its exact float32 weights, face-api's licence beside them
    assert meta["stored_dtype"] == "float16 (faceapi.*: float32)" and "SYNTHETIC" in meta["synthetic_note"]
    assert meta["faceapi"]["licence"] == "MIT" and (w.parent / "LICENSE-face-api.txt").is_file()
    assert "face-api" in card and "cross-validation" in card.lower()
    m = load_model()
    assert m.config["name"].startswith("aufer_fusion") and 12 in m.aus and "happiness" in m.emotions
    # the AU side reads the landmark geometry directly too (demo_lite.yaml: geometry_au), for open mouths
    assert m.joint.landmark_encoder is not None and m.joint.geometry_au_head is not None


def test_default_model_orders_smiles_of_held_out_people(faces_df):
    """On the demo's test people (never seen in training or selection), P(happiness) is higher on the smiling
    photo than on the neutral one for most of the first 10 people."""
    import torch

    from aufer.demo import DemoSettings, split_identities
    from aufer.faces.align import align_face
    from aufer.faces.pipeline import FacePipeline
    from aufer.media import read_image
    from aufer.models.contract import crop_size, probabilities

    df = faces_df
    split = split_identities(list(df[df.set == "london"].identity.unique()), list(df[df.set == "canada"].identity.unique()),
                             DemoSettings())
    model = load_model()
    pipe = FacePipeline(crop_size=crop_size(model))
    happy = model.emotions.index("happiness")
    wins = []
    for ident in split["test"][:10]:
        p = {}
        for expr in ("neutral", "smiling"):
            img = read_image(df[(df.identity == ident) & (df.expression == expr)].path.iloc[0])
            a = align_face(img, pipe.detector.detect(img)[0], crop_size(model))
            crops = torch.from_numpy(a.crop)[None, None]
            lm = torch.from_numpy(a.landmarks.astype(np.float32))[None, None]
            p[expr] = float(probabilities(model, crops, lm)[1][0, happy])
        wins.append(p["smiling"] > p["neutral"])
    assert sum(wins) >= 8, wins


@pytest.mark.slow
def test_predict_without_model_uses_the_default(tmp_path, faces_df):
    img = tmp_path / "face.jpg"
    img.write_bytes(open(faces_df.path.iloc[0], "rb").read())
    r = subprocess.run([sys.executable, "-m", "aufer", "predict", str(img)], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert DEFAULT_MODEL in r.stderr and "synthetic" in r.stderr
    side = json.loads((tmp_path / "face_jpg_aufer.csv.json").read_text())
    assert side["default_model"] == DEFAULT_MODEL and "SYNTHETIC" in side["synthetic_note"]
    listed = subprocess.run([sys.executable, "-m", "aufer", "models"], capture_output=True, text=True, timeout=300)
    assert f"default model: {DEFAULT_MODEL}" in listed.stdout
