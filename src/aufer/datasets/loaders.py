"""Torch datasets and loaders over :class:`~aufer.synth.clipset.ClipSet`.

Augmentation is clip-consistent: one random similarity (rotation, scale, shift), one flip decision and one
colour jitter per clip, applied identically to every frame and to the landmarks.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from aufer.synth import ClipSet
from aufer.readers.records import ClipRecords, FrameRecords
from aufer.datasets.sampling import au_windows, tsn_indices
from aufer.store.facestore import FaceStore
from aufer.faces.landmarks import mesh_mirror

log = logging.getLogger(__name__)

__all__ = ["ClipDataset", "clip_loader", "transform_clip", "AUWindowDataset", "ExprClipDataset", "JointLoader",
           "union_aus", "store_loader"]


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
        return transform_clip(crops, lms, None, self.rng, self.max_rotation_deg, self.max_scale, self.max_shift,
                              self.flip, self.color)


def transform_clip(crops: np.ndarray, landmarks: np.ndarray, out_size: int | None = None,
                   rng: np.random.Generator | None = None, max_rotation_deg: float = 6.0, max_scale: float = 0.06,
                   max_shift: float = 0.04, flip: bool = True, color: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Resize and (when ``rng`` is given) augment a clip, identically for every frame.

    One random similarity (rotation up to ``max_rotation_deg`` degrees, scale ``1 ± max_scale``, shift up to
    ``max_shift`` of the side), one horizontal-flip decision (landmarks follow, with the mesh's left/right
    points swapped) and one colour jitter (brightness, contrast, saturation ``1 ± color``) per clip.

    Args:
        crops: ``(T, S, S, 3)`` uint8 RGB aligned crops.
        landmarks: ``(T, 478, 3)`` float32 crop pixels.
        out_size: output side in pixels (``None`` = ``S``); the whole aligned crop is resized, as MDHR's test
            transform ``Resize(224)`` of the 256-pixel crop.
        rng: random generator; ``None`` = no augmentation (evaluation).

    Returns:
        ``(T, out, out, 3)`` uint8 crops and ``(T, 478, 3)`` float32 landmarks in output pixels.
    """
    size = crops.shape[1]
    out_size = int(out_size or size)
    if rng is None and out_size == size:
        return crops, landmarks
    k = out_size / size
    if rng is None:
        m = np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5]])
        do_flip, jitter = False, None
    else:
        ang = rng.uniform(-max_rotation_deg, max_rotation_deg)
        sc = (1.0 + rng.uniform(-max_scale, max_scale)) * k
        c = size / 2
        m = cv2.getRotationMatrix2D((c, c), ang, sc)
        m[:, 2] += (out_size / 2 - c) + rng.uniform(-max_shift, max_shift, 2) * out_size
        do_flip = flip and rng.random() < 0.5
        jitter = rng.uniform(1 - color, 1 + color, 3) if color > 0 else None
    if do_flip:  # x -> out - 1 - x composed after the similarity
        m = (np.array([[-1.0, 0, out_size - 1], [0, 1.0, 0]]) @ np.vstack([m, [0, 0, 1]]))
    out = np.empty((len(crops), out_size, out_size, 3), np.uint8)
    for t in range(len(crops)):
        out[t] = cv2.warpAffine(crops[t], m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lms = np.array(landmarks, np.float32, copy=True)
    lms[..., :2] = lms[..., :2] @ m[:, :2].T.astype(np.float32) + m[:, 2].astype(np.float32)
    lms[..., 2] *= np.float32(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if do_flip:
        lms = lms[:, mesh_mirror()]
    if jitter is not None:
        bright, contrast, sat = jitter
        f = out.astype(np.float32)
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


# ------------------------------------------------------------------------------------- store-backed data
def union_aus(*vocabularies) -> tuple[int, ...]:
    """The union AU space of several AU vocabularies, ascending (e.g. BP4D's 12 ∪ DISFA's 8 = 15 AUs)."""
    return tuple(sorted({int(a) for v in vocabularies for a in v}))


def _stored(store: FaceStore, table) -> np.ndarray:
    """Boolean mask of the table rows whose (sequence, frame) is in the store."""
    ft = store.frame_table()
    have = set(zip(ft["sequence"], ft["frame"].astype(int)))
    return np.array([(s, int(f)) in have for s, f in zip(table["sequence"], table["frame"])], bool)


class AUWindowDataset(Dataset):
    """AU clips from a face store: windows of ``length`` consecutive labelled frames that never cross a gap in
    frame numbers (:func:`aufer.datasets.sampling.au_windows`).

    Training (``train=True``): one random window phase per run and epoch (call :meth:`set_epoch`), clip-consistent
    augmentation. Evaluation: non-overlapping windows covering every labelled frame exactly once; a short last
    window is padded (``valid`` false, AU labels −1 so that padding never counts).

    Each item: ``crops`` uint8 ``(T, S, S, 3)``, ``landmarks`` float32 ``(T, 478, 3)``, ``au`` int64 ``(T, A)``
    (1/0, −1 unknown or padding), ``expr`` −1, ``valid`` bool ``(T,)``, ``detected`` bool ``(T,)``, ``rows``
    int64 ``(T,)`` (rows of ``records.table``, for writing predictions back), ``index``.

    Args:
        store: the face store made by ``aufer prepare`` for these records.
        records: the (training, validation or test) frames; frames missing from the store are left out with a
            warning.
        length: frames per window ``T``.
        aus: the output AU columns (default: the records' own); AUs the records do not code are −1 — the label
            mask of mixed-vocabulary training (:func:`union_aus`).
        out_size: output crop side (default: the store's).
        per_sequence: training only: keep at most this many random windows of each sequence per epoch (default: all, so
            that an epoch sees about every frame once).
    """

    def __init__(self, store: FaceStore, records: FrameRecords, length: int = 16, train: bool = False,
                 aus=None, out_size: int | None = None, augment: bool | None = None, seed: int = 0,
                 per_sequence: int | None = None):
        keep = _stored(store, records.table)
        if not keep.all():
            log.warning("%d of %d labelled frames of %s are not in %s (no image or prepare "
                                                "unfinished); they are left out", (~keep).sum(), len(keep),
                                                records.dataset, store.path)
            records = records.subset(keep)
        self.store, self.records, self.length, self.train = store, records, int(length), bool(train)
        self.aus = tuple(aus) if aus is not None else records.aus
        self.out_size = out_size or store.crop_size
        self.augment = self.train if augment is None else augment
        self.seed, self.per_sequence = seed, per_sequence
        cols = {a: j for j, a in enumerate(records.aus)}
        self.labels = np.full((len(records), len(self.aus)), -1, np.int8)
        for k, a in enumerate(self.aus):
            if a in cols:
                self.labels[:, k] = records.occurrence[:, cols[a]]
        self._seq = records.table["sequence"].to_numpy()
        self._frame = records.table["frame"].to_numpy(np.int64)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's training windows (evaluation windows do not depend on the epoch)."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch]) if self.train else None
        self.index, self.valid = au_windows(self.records.table, self.length, train=self.train, rng=rng)
        if self.train and self.per_sequence:
            run_of = self._seq[self.index[:, 0]]
            keep = np.concatenate([rng.permutation(np.flatnonzero(run_of == s))[: self.per_sequence]
                                   for s in dict.fromkeys(run_of)]) if len(run_of) else np.zeros(0, int)
            keep.sort()
            self.index, self.valid = self.index[keep], self.valid[keep]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rows, valid = self.index[i], self.valid[i]
        d = self.store.read(self._seq[rows[0]], self._frame[rows])
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.augment else None
        crops, lms = transform_clip(d["crops"], d["landmarks"], self.out_size, rng)
        au = self.labels[rows].astype(np.int64)
        au[~valid] = -1
        return {"crops": torch.from_numpy(np.ascontiguousarray(crops)), "landmarks": torch.from_numpy(lms),
                "au": torch.from_numpy(au), "expr": torch.tensor(-1), "valid": torch.from_numpy(valid),
                "detected": torch.from_numpy(d["detected"]), "rows": torch.from_numpy(rows), "index": torch.tensor(i)}


class ExprClipDataset(Dataset):
    """Expression clips from a face store, ``num_segments`` frames each by TSN segment sampling
    (:func:`aufer.datasets.sampling.tsn_indices`: a random frame per segment in training, segment centres at
    test), with clip-consistent augmentation in training.

    Each item: ``crops`` uint8 ``(T, S, S, 3)``, ``landmarks`` float32 ``(T, 478, 3)``, ``au`` int64 ``(T, A)`` all
    −1 (``A = len(aus)``: expression clips carry no AU label), ``expr`` int64 (−1 unknown), ``valid`` and
    ``detected`` bool ``(T,)``, ``index``.

    Raises:
        KeyError: if a clip is not in the store (run ``aufer prepare``).
    """

    def __init__(self, store: FaceStore, records: ClipRecords, num_segments: int = 16, train: bool = False,
                 aus=(), out_size: int | None = None, augment: bool | None = None, seed: int = 0):
        seqs = store.sequences().set_index("key")
        missing = [c for c in records.table["clip"] if c not in seqs.index or seqs.at[c, "stored"] == 0]
        if missing:
            raise KeyError(f"{len(missing)} clips of {records.dataset} are not in {store.path} (first: {missing[0]!r}); "
                           "run or finish `aufer prepare`")
        self.store, self.records, self.num_segments, self.train = store, records, int(num_segments), bool(train)
        self.aus = tuple(aus)
        self.out_size = out_size or store.crop_size
        self.augment = self.train if augment is None else augment
        self.seed, self.epoch = seed, 0
        self._clips = records.table["clip"].to_numpy()
        self._labels = records.labels
        self._lengths = np.array([int(seqs.at[c, "stored"]) for c in self._clips])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        idx = tsn_indices(int(self._lengths[i]), self.num_segments, train=self.train, rng=rng)
        d = self.store.read(self._clips[i], idx)
        crops, lms = transform_clip(d["crops"], d["landmarks"], self.out_size, rng if self.augment else None)
        t = len(idx)
        return {"crops": torch.from_numpy(np.ascontiguousarray(crops)), "landmarks": torch.from_numpy(lms),
                "au": torch.full((t, len(self.aus)), -1, dtype=torch.int64), "expr": torch.tensor(int(self._labels[i])),
                "valid": torch.ones(t, dtype=torch.bool), "detected": torch.from_numpy(d["detected"]),
                "index": torch.tensor(i)}


def store_loader(dataset: Dataset, batch_size: int, shuffle: bool | None = None, workers: int = 0, seed: int = 0,
                 drop_last: bool | None = None) -> DataLoader:
    """A DataLoader over a store-backed dataset (shuffled and dropping the last partial batch in training).
    Worker processes open their own store connection."""
    train = bool(getattr(dataset, "train", False))
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train if shuffle is None else shuffle,
                      drop_last=train if drop_last is None else drop_last, generator=g, num_workers=workers,
                      persistent_workers=False)


class JointLoader:
    """Heterogeneous joint batches: each step yields ``(au_batch, expr_batch)``. An epoch runs the longer loader
    once; the shorter restarts as often as needed (:func:`aufer.engine.loop.joint_steps`). ``set_epoch`` is
    passed on to both datasets (new training windows and augmentations)."""

    def __init__(self, au_loader: DataLoader, expr_loader: DataLoader):
        self.au_loader, self.expr_loader = au_loader, expr_loader

    def __len__(self) -> int:
        return max(len(self.au_loader), len(self.expr_loader))

    def set_epoch(self, epoch: int) -> None:
        for ld in (self.au_loader, self.expr_loader):
            for ds in getattr(ld.dataset, "datasets", [ld.dataset]):  # a ConcatDataset (mixed vocabularies)
                if hasattr(ds, "set_epoch"):
                    ds.set_epoch(epoch)

    def __iter__(self):
        from aufer.engine.loop import joint_steps  # noqa: PLC0415

        return joint_steps(self.au_loader, self.expr_loader)
