"""AU-DFER's vocabulary tables: the emotion × AU weight matrices ``W`` and the BCE ``pos_weight`` options, read from
``aufer/data/reference/au_dfer.json`` (transcribed from the AU-DFER code bases, with its provenance note).
"""

from __future__ import annotations

import numpy as np

from aufer import vocab

__all__ = ["au_dfer_weights", "au_dfer_pos_weight"]


def au_dfer_weights(variant: str = "DFEW") -> tuple[np.ndarray, tuple[str, ...], tuple[int, ...]]:
    """AU-DFER's emotion×AU weight matrix ``W`` (7, 18) with its emotion names (aufer spelling) and AU order.

    ``variant``: ``DFEW`` (majority row assignment, M3DFEL/MAE-DFER), ``DFEW_former_dfer_variant`` (rows
    permuted as in Former-DFER_AU/main_DFEW.py) or ``FERV39K_former_dfer``. The AU order is RECONSTRUCTED
    (OpenFace 2.0 presence order; upstream code does not state it). Source: au_dfer.json.
    """
    ref = vocab.reference("au_dfer")
    rows = ref["W"][variant]["rows"]
    names = tuple(vocab.canonical_emotion(e) for e in ref["emotions"])
    w = np.asarray([rows[e] for e in ref["emotions"]], dtype=np.float64)
    return w, names, tuple(ref["au_order"])


def au_dfer_pos_weight(option: str, dataset: str = "DFEW") -> np.ndarray:
    """AU-DFER's BCE ``pos_weight``: ``global`` → (18,); ``distinct`` / ``minor`` → (7, 18), one row per emotion
    in :func:`au_dfer_weights` order (``minor``: distinct rows for disgust/surprise/fear, ones elsewhere).

    Source: au_dfer.json (transcribed from the AU-DFER code bases).
    """
    ref = vocab.reference("au_dfer")
    pw = ref["pos_weight"]
    if option == "global":
        return np.asarray(pw["global"][dataset], dtype=np.float64)
    distinct = np.asarray([pw["distinct"][dataset][e] for e in ref["emotions"]], dtype=np.float64)
    if option == "distinct":
        return distinct
    if option == "minor":
        minor = set(pw["minor"]["minor_classes"])
        keep = np.array([e in minor for e in ref["emotions"]])[:, None]
        return np.where(keep, distinct, 1.0)
    raise ValueError(f"pos_weight option must be global, distinct or minor, not {option!r}")
