"""Clip-level mixup of AU clips, as SSM trains its AU branch (methods.md §3.2, §9.1 item 5;
``ssm/training/legacy.py`` L59-69).

For a batch of ``B`` clips: one ``λ_b ~ Beta(α, α)`` per clip and one partner ``perm[b]`` from a uniform random
permutation of the batch (a clip may be its own partner), and every frame of clip ``b`` becomes
``λ_b · x_b + (1 − λ_b) · x_perm[b]``: the same λ for all ``T`` frames, so temporal structure stays intact. Labels
are not mixed here; the loss combines them, ``L = λ · BCE(logits, y_a) + (1 − λ) · BCE(logits, y_b)`` per clip,
each term over its own known (≥ 0) labels.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["clip_mixup"]


def clip_mixup(crops: torch.Tensor, au: torch.Tensor, alpha: float = 0.4,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix clips of a batch pairwise with one λ per clip.

    Args:
        crops: ``(B, T, 3, H, W)`` float crops (already preprocessed; any float dtype and device; any shape with
            the batch first works).
        au: ``(B, T, A)`` AU labels (1/0, −1 unknown), returned un-mixed.
        alpha: Beta concentration, ``> 0`` (SSM: 0.4; small α puts λ near 0 or 1).
        generator: a CPU ``torch.Generator`` for the permutation and for λ (drawn through a numpy generator
            seeded from it, since torch's Beta sampler takes no generator); ``None`` = a fresh unseeded one
            (not reproducible; pass one in training).

    Returns:
        ``mixed`` (same shape, dtype and device as ``crops``), ``labels_a = au``, ``labels_b = au[perm]``, and
        ``lam`` ``(B,)`` float32 on ``crops.device`` (the weight of ``labels_a``).

    Raises:
        ValueError: ``alpha ≤ 0``, ``crops`` not floating point, or batch sizes that disagree.
    """
    if not alpha > 0:
        raise ValueError(f"mixup alpha must be > 0, not {alpha}")
    if not torch.is_floating_point(crops):
        raise ValueError(f"clip_mixup needs float crops (after preprocessing), not {crops.dtype}")
    b = crops.shape[0]
    if au.shape[0] != b:
        raise ValueError(f"crops has {b} clips, au has {au.shape[0]}")
    g = generator if generator is not None else torch.Generator()
    perm = torch.randperm(b, generator=g)
    seed = int(torch.randint(0, 2 ** 63 - 1, (1,), generator=g, dtype=torch.int64))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, b).astype(np.float32))
    perm_d, lam_d = perm.to(crops.device), lam.to(crops.device)
    w = lam_d.to(crops.dtype).view(b, *([1] * (crops.ndim - 1)))
    mixed = w * crops + (1 - w) * crops[perm_d]
    return mixed, au, au[perm.to(au.device)], lam_d
