"""What FACS-warp renders: AU combinations and their intensity over time.

AU combinations come from two real sources (package data): CK+ P(AU | emotion) for expression prototypes
(facs_priors.json) and the BP4D/DISFA frame base rates (label_stats.json). Clips follow onset–apex–offset
intensity curves. Everything is deterministic for a random generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Sequence

import numpy as np

from aufer import vocab
from aufer.synth.patterns import SYNTH_AUS

__all__ = ["OCCURRENCE_THRESHOLD", "intensity_curve", "sample_au_peaks", "sample_expression_peaks",
           "au_clip_intensities", "occurrence"]

#: an AU is labelled present (occurrence 1) when its intensity in [0, 1] reaches this value (aufer's convention,
#: close to FACS intensity B on the A–E scale; DISFA's ≥ 2 of 5 would be 0.4).
OCCURRENCE_THRESHOLD = 0.2


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def intensity_curve(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random onset–apex–offset curve in [0, 1], shape ``(n_frames,)``, apex value 1.

    The window starts anywhere from before the onset to inside the apex, so that clips show onsets, apices
    and offsets in varied proportions; a single frame (``n_frames == 1``) is a random point of such a curve.
    """
    t_len = max(n_frames, 16)
    onset = rng.uniform(0.15, 0.4) * t_len
    apex = rng.uniform(0.1, 0.5) * t_len
    offset = rng.uniform(0.15, 0.4) * t_len
    start = rng.uniform(-0.6 * onset, 0.5 * (onset + apex))
    if n_frames == 1:
        x = np.array([rng.uniform(0.0, onset + apex + offset)])
    else:
        x = np.arange(t_len, dtype=np.float64) + start
    up = _smoothstep(x / onset)
    down = 1 - _smoothstep((x - onset - apex) / offset)
    return np.minimum(up, down)[:n_frames]


@dataclass
class _Priors:
    aus: tuple[int, ...]
    base_rate: np.ndarray  # (A,)
    emotions: tuple[str, ...]
    p_au_given_emotion: np.ndarray  # (E, A), neutral row zeros


def _priors(aus: Sequence[int], emotion_list: Sequence[str]) -> _Priors:
    return _priors_cached(tuple(aus), tuple(emotion_list))


@cache
def _priors_cached(aus: tuple[int, ...], emotion_list: tuple[str, ...]) -> _Priors:
    ck_emotions = [e for e in emotion_list if e != "neutral"]
    ck = vocab.ckplus_prior(ck_emotions, aus, missing=0.0)
    if 26 in aus:
        # FACS codes a jaw opening as AU26 (jaw drop) or AU27 (mouth stretch), never both; FACS-warp renders no
        # AU27, so CK+'s AU27 is drawn as a strong AU26 (CK+ surprise: AU26 0.12, AU27 0.87)
        j = list(aus).index(26)
        ck[:, j] = np.minimum(1.0, ck[:, j] + vocab.ckplus_prior(ck_emotions, [27], missing=0.0)[:, 0])
    counts = vocab.reference("facs_priors")["ckplus_p_au_given_emotion"]["counts"]
    n = np.array([counts[{"happiness": "happy"}.get(e, e)] for e in ck_emotions], dtype=np.float64)
    ck_marginal = (ck * n[:, None]).sum(0) / n.sum()
    real = vocab.au_base_rates(aus)
    # AUs that BP4D/DISFA do not code (e.g. AU5, AU20) fall back to their CK+ peak-frame marginal
    rate = np.array([real.get(a, ck_marginal[i]) for i, a in enumerate(aus)])
    p = np.zeros((len(emotion_list), len(aus)))
    for i, e in enumerate(emotion_list):
        if e != "neutral":
            p[i] = ck[ck_emotions.index(e)]
    return _Priors(aus, rate, tuple(emotion_list), p)


def sample_au_peaks(rng: np.random.Generator, aus: Sequence[int] = SYNTH_AUS, mode: str | None = None,
                    emotion_list: Sequence[str] = vocab.EMOTIONS_7) -> np.ndarray:
    """Peak intensities ``(A,)`` of a random AU combination for an AU-labelled clip.

    ``mode``: ``prototype`` draws a non-neutral emotion and turns each AU on with CK+ P(AU | emotion);
    ``base_rate`` turns each AU on independently with its BP4D/DISFA frame base rate; ``None`` picks one of the
    two at random. Active AUs get a peak in U(0.3, 1).
    """
    pri = _priors(aus, emotion_list)
    if mode is None:
        mode = "prototype" if rng.random() < 0.5 else "base_rate"
    if mode == "prototype":
        e = rng.choice([i for i, name in enumerate(pri.emotions) if name != "neutral"])
        return _draw(rng, pri.p_au_given_emotion[e], at_least_one=True)
    if mode == "base_rate":
        return _draw(rng, pri.base_rate, at_least_one=False)
    raise ValueError(f"mode must be 'prototype', 'base_rate' or None, not {mode!r}")


def sample_expression_peaks(rng: np.random.Generator, emotion: str, aus: Sequence[int] = SYNTH_AUS,
                            emotion_list: Sequence[str] = vocab.EMOTIONS_7, source: str | None = None) -> np.ndarray:
    """Peak intensities ``(A,)`` of a prototype expression of ``emotion``, peaks in U(0.4, 1), at least one AU on.

    ``source``: ``ckplus`` turns each AU on with the empirical CK+ P(AU | emotion) (posed peak frames: e.g.
    happiness nearly always with parted lips); ``emfacs`` turns each AU of the textbook EMFACS prototype on with
    probability 0.9 (e.g. happiness = AU6 + AU12, lips closed; recalled, unverified table); ``None`` picks one
    of the two at random. ``neutral`` gives sub-threshold resting motion only (peaks < 0.1).
    """
    if emotion == "neutral":
        return rng.uniform(0.0, 0.1, len(aus)) * (rng.random(len(aus)) < 0.3)
    if source is None:
        source = "ckplus" if rng.random() < 0.5 else "emfacs"
    if source == "ckplus":
        pri = _priors(aus, emotion_list)
        p = pri.p_au_given_emotion[list(pri.emotions).index(emotion)]
    elif source == "emfacs":
        proto = vocab.emfacs_prototypes()[emotion]
        p = np.array([0.9 if a in proto else 0.0 for a in aus])
    else:
        raise ValueError(f"source must be 'ckplus', 'emfacs' or None, not {source!r}")
    return _draw(rng, p, at_least_one=True, low=0.4)


def _draw(rng: np.random.Generator, p: np.ndarray, at_least_one: bool, low: float = 0.3) -> np.ndarray:
    on = rng.random(len(p)) < p
    for _ in range(20):
        if on.any() or not at_least_one:
            break
        on = rng.random(len(p)) < p
    if at_least_one and not on.any():
        on[int(np.argmax(p))] = True
    return np.where(on, rng.uniform(low, 1.0, len(p)), 0.0)


def au_clip_intensities(peaks: np.ndarray, n_frames: int, rng: np.random.Generator, jitter: float = 2.0) -> np.ndarray:
    """Per-frame intensities ``(T, A)`` for AU peaks ``(A,)``: one shared onset–apex–offset curve, shifted by a
    few frames per AU (``jitter``, frames) so that AUs do not move in lock-step."""
    base = intensity_curve(n_frames + 8, rng)
    out = np.zeros((n_frames, len(peaks)))
    t = np.arange(n_frames) + 4.0
    for j, p in enumerate(peaks):
        if p > 0:
            shift = rng.uniform(-jitter, jitter) if n_frames > 1 else 0.0
            out[:, j] = p * np.interp(t + shift, np.arange(len(base)), base)
    return out


def occurrence(intensity: np.ndarray) -> np.ndarray:
    """0/1 AU occurrence labels (int8) from intensities in [0, 1] (``>= OCCURRENCE_THRESHOLD``)."""
    return (np.asarray(intensity) >= OCCURRENCE_THRESHOLD).astype(np.int8)
