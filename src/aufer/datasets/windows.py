"""AU windows from a face store: ``T`` consecutive labelled frames per item (methods.md §3.3, §6.4).

Sampling follows mmaction's ``clip_len``/``stride`` spec (:func:`~aufer.datasets.sampling.au_windows`): SSM packs
16 consecutive frames with stride 16 (every frame once per epoch); MDHR trains one random 16-frame window per video
per epoch (``per_sequence=1``).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from torch.utils.data import Dataset

from aufer.datasets.batch import Item, make_item
from aufer.datasets.sampling import au_windows
from aufer.datasets.transforms import ClipTransform
from aufer.readers.records import FrameRecords
from aufer.store.facestore import FaceStore

log = logging.getLogger(__name__)

__all__ = ["AUWindowDataset", "resolve_transform", "stored_mask"]


def stored_mask(store: FaceStore, table) -> np.ndarray:
    """Boolean mask of the table rows whose (``sequence``, ``frame``) is in the store."""
    ft = store.frame_table()
    have = set(zip(ft["sequence"], ft["frame"].astype(int)))
    return np.array([(s, int(f)) in have for s, f in zip(table["sequence"], table["frame"])], bool)


def resolve_transform(transform: ClipTransform | None, out_size: int | None) -> ClipTransform:
    """The dataset's transform: ``transform`` (its ``size`` filled from ``out_size`` when unset), or the default
    :class:`ClipTransform` at ``out_size``.

    Raises:
        ValueError: if both give a different output size.
    """
    if transform is None:
        return ClipTransform(size=out_size)
    if out_size is not None and transform.size is not None and int(out_size) != transform.size:
        raise ValueError(f"out_size={out_size} disagrees with transform.size={transform.size}; give one of them")
    return transform if out_size is None or transform.size is not None else dataclasses.replace(transform, size=out_size)


class AUWindowDataset(Dataset):
    """AU clips from a face store: windows of ``length`` consecutive labelled frames that never cross a gap in
    frame numbers, starts ``stride`` frames apart (:func:`aufer.datasets.sampling.au_windows`).

    Training (``train=True``): one random window phase per run and epoch (call :meth:`set_epoch`; the number of
    windows, hence ``len``, may change), clip-consistent augmentation. Evaluation: windows from each run's first
    frame (non-overlapping at the default stride, covering every labelled frame exactly once); a short last window
    is padded (``valid`` false, AU labels −1 so that padding never counts).

    Items follow :mod:`aufer.datasets.batch`: ``crops`` uint8 ``(T, S', S', 3)``, ``landmarks`` float32
    ``(T, 478, 3)``, ``au`` int64 ``(T, A)`` (1/0, −1 unknown or padding), ``expr`` −1, ``valid``/``detected``
    bool ``(T,)``, ``rows`` int64 ``(T,)`` (positional rows of ``records.table``), ``index``.

    Args:
        store: the face store made by ``aufer prepare`` for these records.
        records: the (training, validation or test) frames; frames missing from the store are left out with a
            warning.
        length: frames per window ``T`` (mmaction ``clip_len``).
        train: training windows and augmentation, or fixed evaluation windows.
        aus: the output AU columns (default: the records' own); AUs the records do not code are −1 — the label
            mask of mixed-vocabulary training (:func:`~aufer.datasets.loaders.union_aus`).
        out_size: output crop side (default: the store's); shorthand for ``transform.size``.
        augment: draw training augmentation (default: ``train``); otherwise the evaluation transform.
        seed: seed of window phases, ``per_sequence`` choice and augmentation, with the epoch.
        per_sequence: training only: keep at most this many random windows of each sequence per epoch (default:
            all, so that an epoch sees about every frame once; MDHR: 1).
        stride: frames between window starts, ``1 ≤ stride ≤ length`` (default ``length``).
        transform: the :class:`~aufer.datasets.transforms.ClipTransform` (default: ``ClipTransform(size=out_size)``).

    Raises:
        ValueError: for an invalid ``length``/``stride``, or ``out_size`` disagreeing with ``transform.size``.
    """

    def __init__(self, store: FaceStore, records: FrameRecords, length: int = 16, train: bool = False,
                 aus=None, out_size: int | None = None, augment: bool | None = None, seed: int = 0,
                 per_sequence: int | None = None, stride: int | None = None, transform: ClipTransform | None = None):
        keep = stored_mask(store, records.table)
        if not keep.all():
            log.warning("%d of %d labelled frames of %s are not in %s (no image or prepare unfinished); "
                        "they are left out", (~keep).sum(), len(keep), records.dataset, store.path)
            records = records.subset(keep)
        self.store, self.records, self.length, self.train = store, records, int(length), bool(train)
        self.stride = self.length if stride is None else int(stride)
        self.aus = tuple(aus) if aus is not None else records.aus
        self.transform = resolve_transform(transform, out_size)
        self.out_size = self.transform.output_size(store.crop_size)
        self.augment = self.train if augment is None else bool(augment)
        self.seed, self.per_sequence = int(seed), per_sequence
        cols = {a: j for j, a in enumerate(records.aus)}
        self.labels = np.full((len(records), len(self.aus)), -1, np.int8)
        for k, a in enumerate(self.aus):
            if a in cols:
                self.labels[:, k] = records.occurrence[:, cols[a]]
        self._seq = records.table["sequence"].to_numpy()
        self._frame = records.table["frame"].to_numpy(np.int64)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's training windows (evaluation windows do not depend on the epoch); a function of
        ``(seed, epoch)`` only, so every process of a distributed run draws the same windows."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch]) if self.train else None
        self.index, self.valid = au_windows(self.records.table, self.length, train=self.train, rng=rng,
                                            stride=self.stride)
        if self.train and self.per_sequence:
            run_of = self._seq[self.index[:, 0]]
            keep = np.concatenate([rng.permutation(np.flatnonzero(run_of == s))[: self.per_sequence]
                                   for s in dict.fromkeys(run_of)]) if len(run_of) else np.zeros(0, int)
            keep.sort()
            self.index, self.valid = self.index[keep], self.valid[keep]

    def __len__(self) -> int:
        return len(self.index)

    def sequence(self, i: int) -> str:
        """The sequence name of item ``i`` (not part of the tensor item)."""
        return str(self._seq[self.index[i][0]])

    def __getitem__(self, i: int) -> Item:
        rows, valid = self.index[i], self.valid[i]
        d = self.store.read(self._seq[rows[0]], self._frame[rows])
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.augment else None
        crops, lms = self.transform(d["crops"], d["landmarks"], rng)
        au = self.labels[rows].astype(np.int64)
        au[~valid] = -1
        return make_item(crops, lms, au, -1, valid=valid, detected=d["detected"], rows=rows, index=i)
