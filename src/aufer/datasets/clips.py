"""Expression clips from a face store by TSN segment sampling (methods.md §1.3, §3.3)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from aufer.datasets.batch import Item, make_item
from aufer.datasets.sampling import tsn_indices
from aufer.datasets.transforms import ClipTransform
from aufer.datasets.windows import resolve_transform
from aufer.readers.records import ClipRecords
from aufer.store.au_labels import pseudo_columns, pseudo_labels
from aufer.store.facestore import FaceStore

__all__ = ["ExprClipDataset"]


class ExprClipDataset(Dataset):
    """Expression clips from a face store, ``num_segments`` frames each by TSN segment sampling
    (:func:`aufer.datasets.sampling.tsn_indices`: a random frame per segment in training, segment centres at
    test), with clip-consistent augmentation in training.

    Items follow :mod:`aufer.datasets.batch`: ``crops`` uint8 ``(T, S', S', 3)``, ``landmarks`` float32
    ``(T, 478, 3)``, ``au`` int64 ``(T, A)`` (``A = len(aus)``; all −1, expression clips carry no AU label,
    unless ``au_labels`` reads the store's AU pseudo-labels), ``expr`` int64 (−1 unknown), ``valid`` (all True)
    and ``detected`` bool ``(T,)``, ``rows`` all −1, ``index``.

    Args:
        store: the face store holding the clips.
        records: the clips (one row each).
        num_segments: TSN segments per clip; ``T = num_segments · segment_frames``.
        segment_frames: consecutive frames per segment (1; Former-DFER: 2), see
            :func:`~aufer.datasets.sampling.tsn_indices`.
        train: random TSN offsets and augmentation, or segment centres and the evaluation transform.
        aus: the AU columns of the ``au`` labels, to batch with AU windows of that vocabulary.
        au_labels: the ``au`` labels: ``"none"`` (all −1), or the AU pseudo-labels written by ``aufer label-aus``
            (:mod:`aufer.store.au_labels`): ``"frames"`` — per sampled frame, occurrence = stored value ≥ the
            labelling threshold (0.5); ``"clip_mean"`` — :func:`aufer.store.clip_rules.clip_labels_mean` of the stored
            values (probabilities, or OpenFace presence) over all labelled frames of the clip, given to every
            frame; ``"clip_count"`` — :func:`aufer.store.clip_rules.clip_labels_count` of the per-frame occurrences
            over all labelled frames, given to every frame. −1 where a frame (or every frame of the clip) is not
            labelled and for AUs of ``aus`` the labelling source lacks.
        out_size: output crop side (default: the store's); shorthand for ``transform.size``.
        augment: draw training augmentation (default: ``train``).
        seed: seed of offsets and augmentation, with the epoch.
        transform: the :class:`~aufer.datasets.transforms.ClipTransform` (default: ``ClipTransform(size=out_size)``).

    Raises:
        KeyError: if a clip is not in the store (run ``aufer prepare``).
        ValueError: ``out_size`` disagreeing with ``transform.size``, an unknown ``au_labels``.
        aufer.store.StoreError: ``au_labels`` set and the store holds no complete AU pseudo-labelling.
    """

    def __init__(self, store: FaceStore, records: ClipRecords, num_segments: int = 16, train: bool = False,
                 aus=(), out_size: int | None = None, augment: bool | None = None, seed: int = 0,
                 transform: ClipTransform | None = None, au_labels: str = "none", segment_frames: int = 1):
        seqs = store.sequences().set_index("key")
        missing = [c for c in records.table["clip"] if c not in seqs.index or seqs.at[c, "stored"] == 0]
        if missing:
            raise KeyError(f"{len(missing)} clips of {records.dataset} are not in {store.path} (first: {missing[0]!r}); "
                           "run or finish `aufer prepare`")
        self.store, self.records, self.num_segments, self.train = store, records, int(num_segments), bool(train)
        self.aus = tuple(aus)
        self.segment_frames = int(segment_frames)
        self.transform = resolve_transform(transform, out_size)
        self.out_size = self.transform.output_size(store.crop_size)
        self.augment = self.train if augment is None else bool(augment)
        self.seed, self.epoch = int(seed), 0
        self._clips = records.table["clip"].to_numpy()
        self._labels = records.labels
        self._lengths = np.array([int(seqs.at[c, "stored"]) for c in self._clips])
        self.au_labels, self._au_cols = au_labels, None
        if au_labels != "none":
            self._au_cols, self._au_threshold = pseudo_columns(store, self.aus, au_labels)

    def set_epoch(self, epoch: int) -> None:
        """Use this epoch's offsets and augmentation draws (the clip list does not change)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._clips)

    def sequence(self, i: int) -> str:
        """The clip name of item ``i`` (not part of the tensor item)."""
        return str(self._clips[i])

    def __getitem__(self, i: int) -> Item:
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        idx = tsn_indices(int(self._lengths[i]), self.num_segments, train=self.train, rng=rng,
                          segment_frames=self.segment_frames)
        d = self.store.read(self._clips[i], idx)
        aug = rng if self.augment else None
        if aug is None and self.augment:  # augment without train: offsets at centres, augmentation still drawn
            aug = np.random.default_rng([self.seed, self.epoch, i])
        crops, lms = self.transform(d["crops"], d["landmarks"], aug)
        t = len(idx)
        au = np.full((t, len(self.aus)), -1, np.int64)
        if self._au_cols is not None:
            au = pseudo_labels(self.store, str(self._clips[i]), idx, self._au_cols, self.au_labels, self._au_threshold)
        return make_item(crops, lms, au, int(self._labels[i]), detected=d["detected"], index=i)
