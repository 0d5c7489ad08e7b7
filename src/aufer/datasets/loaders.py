"""Torch datasets and loaders over :class:`~aufer.datasets.clips.ClipSet`.

Augmentation is clip-consistent: one random similarity (rotation, scale, shift), one flip decision and one
colour jitter per clip, applied identically to every frame and to the landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from aufer.datasets.clips import ClipSet
from aufer.faces.landmarks import mesh_mirror

__all__ = ["ClipDataset", "clip_loader"]


class ClipDataset(Dataset):
    """Samples of a ClipSet as tensors.

    Each item: ``crops`` uint8 ``(T', S, S, 3)``, ``landmarks`` float32 ``(T', 478, 3)`` (crop pixels),
    ``au`` int64 ``(T', A)`` (−1 unknown), ``expr`` int64 scalar (−1 unknown), ``index`` int.

    Args:
        clips: the clip set.
        n_frames: take a random window of this many consecutive frames (training); ``None`` = whole clip.
        augment: clip-consistent geometric and colour augmentation.
        seed: seed of the augmentation and window generator.
    """

    def __init__(self, clips: ClipSet, n_frames: int | None = None, augment: bool = False, seed: int = 0,
                 max_rotation_deg: float = 6.0, max_scale: float = 0.06, max_shift: float = 0.04,
                 flip: bool = True, color: float = 0.3):
        self.clips = clips
        self.n_frames = n_frames
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.max_rotation_deg, self.max_scale, self.max_shift = max_rotation_deg, max_scale, max_shift
        self.flip, self.color = flip, color

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        c = self.clips
        t_all = c.n_frames
        if self.n_frames is not None and self.n_frames < t_all:
            s = int(self.rng.integers(0, t_all - self.n_frames + 1))
            sl = slice(s, s + self.n_frames)
        else:
            sl = slice(0, t_all)
        crops, lms, au = c.crops[i, sl], c.landmarks[i, sl].astype(np.float32), c.au[i, sl].astype(np.int64)
        if self.augment:
            crops, lms = self._augment(crops, lms)
        return {"crops": torch.from_numpy(np.ascontiguousarray(crops)), "landmarks": torch.from_numpy(lms),
                "au": torch.from_numpy(au), "expr": torch.tensor(int(c.expr[i])), "index": torch.tensor(i)}

    def _augment(self, crops: np.ndarray, lms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self.rng
        size = crops.shape[1]
        ang = r.uniform(-self.max_rotation_deg, self.max_rotation_deg)
        sc = 1.0 + r.uniform(-self.max_scale, self.max_scale)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), ang, sc)
        m[:, 2] += r.uniform(-self.max_shift, self.max_shift, 2) * size
        flip = self.flip and r.random() < 0.5
        if flip:  # x -> size - 1 - x composed after the similarity
            m = np.array([[-1.0, 0, size - 1], [0, 1.0, 0]]) @ np.vstack([m, [0, 0, 1]])
        out = np.empty_like(crops)
        for t in range(len(crops)):
            out[t] = cv2.warpAffine(crops[t], m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        lms = lms.copy()
        xy = lms[..., :2] @ m[:, :2].T.astype(np.float32) + m[:, 2].astype(np.float32)
        lms[..., :2] = xy
        if flip:
            lms = lms[:, mesh_mirror()]
        if self.color > 0:
            f = out.astype(np.float32)
            bright = r.uniform(1 - self.color, 1 + self.color)
            contrast = r.uniform(1 - self.color, 1 + self.color)
            sat = r.uniform(1 - self.color, 1 + self.color)
            grey = f.mean(-1, keepdims=True)
            f = grey + (f - grey) * sat
            f = (f - f.mean()) * contrast + f.mean()
            out = (f * bright).clip(0, 255).astype(np.uint8)
        return out, lms


def clip_loader(clips: ClipSet, batch_size: int, shuffle: bool = False, n_frames: int | None = None,
                augment: bool = False, seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader over a ClipSet (main-process loading: in-memory sets need no workers)."""
    ds = ClipDataset(clips, n_frames=n_frames, augment=augment, seed=seed)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=g, num_workers=0)
