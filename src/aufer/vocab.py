"""Vocabularies, priors and protocols, loaded from package data.

Every published number lives in ``aufer/data/reference/*.json`` (copied from the papers' official code and
data files, each with an ``_about`` provenance note); this module only reads and indexes them, so no
published constant is written in Python.

Conventions
-----------
* An AU is an ``int`` FACS number (``12`` for AU12 "lip corner puller"); :func:`au_code` gives the
  OpenFace-style column stem ``"AU12"`` (two digits: ``"AU01"``).
* Emotions use the long names of the 7-class (DFEW/FERV39K) and 11-class (MAFW) label sets:
  ``happiness, sadness, neutral, anger, surprise, disgust, fear`` (+ ``contempt, anxiety, helplessness,
  disappointment``). Index = position in that tuple (= DFEW csv label − 1).
* Matrices are ``numpy`` arrays indexed ``[emotion, au]`` in the order of the lists passed in.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "data_path", "read_json",
    "reference", "normalisation", "au_names", "au_name", "au_code", "au_region", "emotions", "EMOTIONS_7", "EMOTIONS_11",
    "canonical_emotion", "dataset_aus", "openface_aus", "ckplus_prior",
    "emfacs_prototypes", "protocol",
    "au_base_rates", "dataset_key",
]



def data_path(*parts: str) -> Path:
    """Path of a file or folder of aufer's package data, ``data_path("faces", "london")`` or
    ``data_path("reference/protocols.json")`` (parts may hold ``/``); ``data_path()`` is the data folder itself.
    The path is not checked for existence."""
    return Path(str(resources.files("aufer"))).joinpath("data", *_split(parts))


def _split(parts: tuple[str, ...]) -> list[str]:
    return [q for p in parts for q in p.split("/") if q]


def read_json(*parts: str) -> dict:
    """Parsed content of a JSON file of the package data (parts as in :func:`data_path`), read once and cached:
    callers must not modify the result.

    Raises:
        FileNotFoundError: if there is no such file.
    """
    return _read_json("/".join(_split(parts)))


@cache
def _read_json(relpath: str) -> dict:
    with resources.files("aufer").joinpath("data", *relpath.split("/")).open("r", encoding="utf-8") as f:
        return json.load(f)


def reference(name: str) -> dict:
    """Raw content of ``data/reference/<name>.json`` (``protocols``, ``facs_priors``, ``au_dfer``,
    ``label_stats``), provenance note included under ``_about`` / ``_provenance``.

    Raises:
        FileNotFoundError: for an unknown name.
    """
    return read_json(f"reference/{name}.json")


# --------------------------------------------------------------------------------------------------- AUs
@cache
def au_names() -> dict[int, str]:
    """FACS names of all AUs aufer knows, ``{1: "inner brow raiser", ...}`` (protocols.json)."""
    return {int(k[2:]): v for k, v in reference("protocols")["facs_au_names"].items()}


def au_name(au: int) -> str:
    """FACS name of one AU, e.g. ``au_name(12) == "lip corner puller"``.

    Raises:
        KeyError: if the AU is not in the FACS table.
    """
    try:
        return au_names()[int(au)]
    except KeyError:
        raise KeyError(f"AU{au} is not a known FACS action unit; known: {sorted(au_names())}") from None


def au_code(au: int) -> str:
    """OpenFace-style column stem: ``au_code(1) == "AU01"``, ``au_code(12) == "AU12"``."""
    return f"AU{int(au):02d}"


def au_region(au: int) -> str:
    """Facial region of an AU: ``brow``, ``eye``, ``nose``, ``mouth``, ``chin`` or ``jaw`` (data/vocab.json)."""
    return read_json("vocab.json")["au_regions"][str(int(au))]


def normalisation(name: str = "imagenet") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RGB ``(mean, std)`` for inputs in [0, 1]: ``imagenet`` or ``clip`` (data/vocab.json, with sources)."""
    n = read_json("vocab.json")["normalisation"][name]
    return tuple(n["mean"]), tuple(n["std"])


def openface_aus() -> tuple[int, ...]:
    """The 18 AUs OpenFace 2.0 reports presence for (data/vocab.json)."""
    return tuple(read_json("vocab.json")["openface_aus"])


def dataset_aus(dataset: str) -> tuple[int, ...]:
    """AU list of a benchmark in its standard order: ``BP4D`` (12), ``DISFA`` (8), ``OpenFace`` (18).

    Raises:
        KeyError: for a dataset without an AU vocabulary.
    """
    if dataset.lower() == "openface":
        return openface_aus()
    protos = reference("protocols")
    key = dataset_key(dataset, [k for k, v in protos.items() if isinstance(v, dict) and "aus" in v])
    return tuple(int(a) for a in protos[key]["aus"])


# ----------------------------------------------------------------------------------------------- emotions
EMOTIONS_7: tuple[str, ...] = tuple(read_json("reference/facs_priors.json")["emotions_7"])
EMOTIONS_11: tuple[str, ...] = tuple(read_json("reference/facs_priors.json")["emotions_11"])

# Spellings used by the reference code bases and CK+ for the same classes.
_ALIASES = {
    "happy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise", "fearful": "fear",
    "disgusted": "disgust", "sadness": "sadness", "happiness": "happiness", "anger": "anger",
}


def emotions(n: int = 7) -> tuple[str, ...]:
    """The 7-class (DFEW/FERV39K) or 11-class (MAFW) emotion label set, in dataset index order.

    Raises:
        ValueError: for any other ``n``.
    """
    if n == 7:
        return EMOTIONS_7
    if n == 11:
        return EMOTIONS_11
    raise ValueError(f"emotion label sets have 7 or 11 classes, not {n}")


def canonical_emotion(name: str) -> str:
    """Map a spelling used elsewhere (``happy``, ``angry``, ``Sadness``) to aufer's name (``happiness``...)."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


# ------------------------------------------------------------------------------------------------- priors
def ckplus_prior(emotion_list: Sequence[str], aus: Sequence[int], missing: float = float("nan")) -> np.ndarray:
    """Empirical P(AU active at the peak frame | emotion) over the 327 emotion-labelled CK+ sequences,
    shape ``(len(emotion_list), len(aus))``.

    CK+ has no neutral class: a ``neutral`` row is all zeros. AUs CK+ does not code (e.g. AU45) get
    ``missing``. Source: NetFACS ``emotions_set`` data derived from CK+ (facs_priors.json).

    Raises:
        KeyError: for an emotion CK+ does not have (e.g. ``anxiety``).
    """
    table = reference("facs_priors")["ckplus_p_au_given_emotion"]["p_au_given_emotion"]
    by_name = {canonical_emotion(k): v for k, v in table.items()}
    out = np.full((len(emotion_list), len(aus)), missing, dtype=np.float64)
    for i, e in enumerate(emotion_list):
        e = canonical_emotion(e)
        if e == "neutral":
            out[i] = 0.0
            continue
        if e not in by_name:
            raise KeyError(f"CK+ has no '{e}' sequences; it has {sorted(by_name)}")
        for j, au in enumerate(aus):
            v = by_name[e].get(f"AU{int(au)}")
            if v is not None:
                out[i, j] = v
    return out


def emfacs_prototypes() -> dict[str, tuple[int, ...]]:
    """Textbook EMFACS prototype AUs per emotion (recalled, NOT verified against the source; see
    facs_priors.json ``emfacs_prototypes.status``)."""
    raw = reference("facs_priors")["emfacs_prototypes"]
    return {canonical_emotion(k): tuple(v) for k, v in raw.items() if k != "status"}


# ---------------------------------------------------------------------------------------------- protocols
def protocol(dataset: str) -> dict:
    """Protocol facts of a benchmark (``BP4D``, ``DISFA``, ``DFEW``, ``FERV39K``, ``MAFW``) from protocols.json."""
    protos = reference("protocols")
    return protos[dataset_key(dataset, [k for k, v in protos.items() if isinstance(v, dict)])]


def au_base_rates(aus: Iterable[int], sources: Sequence[str] = ("BP4D", "DISFA")) -> dict[int, float]:
    """Frame-level base rate P(AU active) of each AU from the first dataset in ``sources`` that codes it
    (label_stats.json, MDHR label lists). AUs coded by none of them are left out of the result."""
    stats = reference("label_stats")
    out: dict[int, float] = {}
    for au in aus:
        for ds in sources:
            rate = stats.get(ds, {}).get("base_rate", {}).get(f"AU{int(au)}")
            if rate is not None:
                out[int(au)] = float(rate)
                break
    return out


def dataset_key(name: str, keys: Iterable[str]) -> str:
    """The key of ``keys`` that spells ``name`` (case-insensitively); KeyError naming the known ones."""
    keys = list(keys)
    for k in keys:
        if k.lower() == name.lower():
            return k
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(k for k in keys if not k.startswith('_'))}")
