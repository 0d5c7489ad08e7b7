"""The demo's own metrics: real neutral/smiling photos of held-out people, and the held-out summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aufer.datasets.loaders import make_loader
from aufer.demo.data import HAPPY, NEUTRAL
from aufer.engine.loop import predict

__all__ = ["real_photo_metrics", "held_out_metrics", "smile_pair_share", "clip_au_probability", "dataset_probabilities"]


def dataset_probabilities(model, dataset, batch_size: int = 64) -> dict:
    """The engine's predictions of ``model`` on an evaluation dataset (:func:`aufer.engine.loop.predict`: ``p_au``
    ``(N, T, A)``, ``p_expr`` ``(N, E)``, ``expr`` labels, ``index`` into the dataset), no test-time augmentation."""
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else "cpu"
    return predict(model, make_loader(dataset, batch_size, train=False), device=device)


def smile_pair_share(subject, smiling, value) -> tuple[float, int]:
    """The share of people whose mean ``value`` over their smiling photos is higher than over their neutral ones,
    among the people who have both, and how many people that is.

    Args:
        subject, smiling, value: per photo, ``(N,)`` each: the person, whether the photo is the smiling one, and
            a probability (e.g. P(AU12)).

    Returns:
        ``(share, n_people)``; the share is NaN when nobody has both photos.
    """
    subject, smiling, value = np.asarray(subject), np.asarray(smiling, bool), np.asarray(value, float)
    wins = []
    for ident in np.unique(subject):
        sel = subject == ident
        smile, neutral = value[sel & smiling], value[sel & ~smiling]
        if len(smile) and len(neutral):
            wins.append(bool(smile.mean() > neutral.mean()))
    return (float(np.mean(wins)) if wins else float("nan")), len(wins)


def clip_au_probability(model, dataset, au: int = 12):
    """P(AU ``au``) of the first frame of every clip of an evaluation dataset, as a ``pandas.Series`` indexed by
    clip name (no test-time augmentation)."""
    pred = dataset_probabilities(model, dataset)
    clips = dataset.records.table["clip"].to_numpy()[pred["index"]]
    return pd.Series(pred["p_au"][:, 0, list(model.aus).index(au)], index=clips)


def real_photo_metrics(model, real) -> dict:
    """Metrics on real neutral/smiling photos of held-out people (``real``: an evaluation
    :class:`~aufer.datasets.clips.ExprClipDataset` of one-frame clips; no test-time augmentation).

    * ``happy_vs_neutral_accuracy``: a photo is called happy when P(happiness) > P(neutral);
    * ``top1_accuracy_7class``: the arg-max over all 7 classes equals the truth (stricter);
    * ``au12_smile_gt_neutral``: fraction of people with both photos whose AU12 probability is higher on the
      smiling photo.
    """
    pred = dataset_probabilities(model, real)
    p_au, p_e, truth = pred["p_au"], pred["p_expr"], pred["expr"]
    identity = real.records.table["subject"].to_numpy()[pred["index"]]
    called_happy = p_e[:, HAPPY] > p_e[:, NEUTRAL]
    out = {"n_photos": int(len(truth)),
           "happy_vs_neutral_accuracy": float(np.mean(called_happy == (truth == HAPPY))),
           "top1_accuracy_7class": float(np.mean(p_e.argmax(1) == truth))}
    if 12 in model.aus:
        paired = (truth == HAPPY) | (truth == NEUTRAL)
        out["au12_smile_gt_neutral"], out["n_people_paired"] = smile_pair_share(
            identity[paired], truth[paired] == HAPPY, p_au[paired, 0, list(model.aus).index(12)])
    return out


def held_out_metrics(engine_test: dict, real: dict, synth_expr: dict, n_au_frames: int) -> dict:
    """The demo's test summary from the engine's test metrics (AU on SYNTHETIC clips of test people;
    expressions on real + synthetic test clips), the real-photo metrics and the synthetic-only expressions."""
    t_au, t_ex = engine_test["au"], engine_test["expr"]
    return {
        "au_synthetic": {"f1": t_au["au_f1"], "f1_mean": t_au["au_f1_mean"], "threshold": 0.5,
                         "f1_policy": t_au["f1_policy"], "n_clips": t_au["n_clips"], "n_frames": n_au_frames},
        "expression_all": {"uar": t_ex["uar"], "war": t_ex["war"], "n": t_ex["n_clips"], "confusion": t_ex["confusion"],
                           "data": "real photos (neutral, happiness) + synthetic prototypes (7 classes)"},
        "expression_synthetic": {"uar": synth_expr["uar"], "war": synth_expr["war"], "n": synth_expr["n_clips"]},
        "real_photos": real,
        "flip_tta": False,
    }
