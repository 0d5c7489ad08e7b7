"""Clip-level AU pseudo-labels from per-frame AU presence, as the AU-DFER code bases make them (methods.md §4.2;
github.com/Cross-Innovation-Lab/AU-DFER ``Former-DFER_AU/dataloader/dataset_DFEW.py`` and
``M3DFEL_AU/datasets/dataset_DFEW_AU_weighted.py``). aufer's own implementation. They are AU-DFER's rules
(re-exported by :mod:`aufer.methods.au_dfer`) and live in the data layer because the expression datasets apply them
(``data.expr.au_pseudo: clip_mean | clip_count``, :func:`aufer.store.au_labels.pseudo_labels`).

Two rules, each over the T frames of a clip and each AU j separately:

* :func:`clip_labels_mean` (Former-DFER): ``y_j = 1[ mean_t a_tj ≥ threshold ]``, threshold 0.5. Upstream sums
  ``a_tj / 16`` over the 16 frame files of the clip folder, i.e. the mean.
* :func:`clip_labels_count` (M3DFEL): ``y_j = 1[ #{t : a_tj ≥ min_value} ≥ T / 2 ]``, min_value 0.01 (both
  comparisons ``≥``, as upstream: ``if AU_labels[j][i] >= 0.01: count += 1`` and ``if count >= len(AU_labels)/2``),
  over the 16 sampled frames.

Unknown frame values (NaN, e.g. an OpenFace frame without a face, or any negative value, e.g. the −1 of aufer's
labels) are left out: the mean is over the known frames of the AU and T is the number of known frames of the AU
(upstream has no unknown values, where both are the upstream rule). An AU whose frames are all unknown gets −1.

Shapes: ``(T, A)`` → ``(A,)``; ``(B, T, A)`` → ``(B, A)``. numpy in → numpy int64 out; torch in → torch int64
out on the same device (so a loss can call them on its batch).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["clip_labels_mean", "clip_labels_count"]


def _frames_first(values) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(values, known)`` as a float tensor (unknown entries 0) and a bool mask, and whether the input was a
    tensor. Raises ValueError unless the input is ``(T, A)`` or ``(B, T, A)``."""
    is_tensor = isinstance(values, torch.Tensor)
    if is_tensor:
        dtype = torch.float32 if values.device.type == "mps" else torch.float64  # no float64 on MPS
        x = values.detach().to(dtype)
    else:
        x = torch.from_numpy(np.array(values, dtype=np.float64))  # a copy: the input may be read-only
    if x.ndim not in (2, 3):
        raise ValueError(f"frame values must be (T, A) or (B, T, A), not {tuple(x.shape)}")
    known = ~torch.isnan(x) & (x >= 0)
    return torch.where(known, x, torch.zeros_like(x)), known, is_tensor


def _out(labels: torch.Tensor, n_known: torch.Tensor, is_tensor: bool):
    labels = torch.where(n_known > 0, labels.long(), torch.full_like(labels, -1, dtype=torch.long))
    return labels if is_tensor else labels.numpy()


def clip_labels_mean(frame_probs, threshold: float = 0.5):
    """Former-DFER's clip label ``1[ mean_t a_tj ≥ threshold ]`` (exactly 0.5 → 1).

    Args:
        frame_probs: ``(T, A)`` or ``(B, T, A)`` per-frame AU presence (0/1) or probabilities; NaN or negative
            (−1) = unknown.
        threshold: the mean at or above which the AU is present (upstream 0.5).

    Returns:
        ``(A,)`` or ``(B, A)`` int64: 1 / 0, and −1 where all frames of the AU are unknown.
    """
    x, known, is_tensor = _frames_first(frame_probs)
    n = known.sum(-2)
    mean = x.sum(-2) / n.clamp(min=1).to(x.dtype)
    return _out(mean >= threshold, n, is_tensor)


def clip_labels_count(frame_values, min_value: float = 0.01, min_frames: int | None = None):
    """M3DFEL's clip label ``1[ #{t : a_tj ≥ min_value} ≥ T / 2 ]`` (exactly T/2 frames → 1; odd T needs ⌈T/2⌉).

    Args:
        frame_values: ``(T, A)`` or ``(B, T, A)`` per-frame AU values (presence 0/1, or intensities); NaN or
            negative (−1) = unknown.
        min_value: a frame counts when its value is ≥ this (upstream 0.01).
        min_frames: the count needed; None → half the AU's known frames (``2·count ≥ T_known``).

    Returns:
        ``(A,)`` or ``(B, A)`` int64: 1 / 0, and −1 where all frames of the AU are unknown.
    """
    x, known, is_tensor = _frames_first(frame_values)
    n = known.sum(-2)
    count = (known & (x >= min_value)).sum(-2)
    hit = 2 * count >= n if min_frames is None else count >= int(min_frames)
    return _out(hit, n, is_tensor)
