"""Loaders: deterministic epoch sampling (single process or distributed), heterogeneous joint batches with exact
mid-epoch resume, and the compatible names of the old module.

* :class:`EpochSampler` — the order is a function of ``(seed, epoch)`` only (as ``DistributedSampler``): shuffled
  when training, padded to a multiple of ``world_size``, rank ``r`` takes positions ``r::world_size``;
  :meth:`EpochSampler.set_start` skips the first samples for resume.
* :func:`make_loader` — a ``DataLoader`` that always uses an :class:`EpochSampler` and :func:`~aufer.datasets.batch.collate`.
* :class:`JointLoader` / :func:`joint_steps` — one AU batch and one expression batch per step; an epoch runs the
  longer loader once and restarts the shorter (SSM, methods.md §3.2).

The datasets, transforms and schema live in :mod:`~aufer.datasets.windows`, :mod:`~aufer.datasets.clips`,
:mod:`~aufer.datasets.transforms` and :mod:`~aufer.datasets.batch`; they are re-exported here under their old
names.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from aufer.datasets.batch import collate
from aufer.datasets.clips import ExprClipDataset
from aufer.datasets.transforms import ClipTransform, transform_clip
from aufer.datasets.windows import AUWindowDataset

log = logging.getLogger(__name__)

__all__ = ["EpochSampler", "make_loader", "loader_workers", "usable_cpus",
           "set_loader_epoch", "JointLoader", "joint_steps", "union_aus",
           "store_loader", "AUWindowDataset", "ExprClipDataset", "ClipTransform", "transform_clip"]


def union_aus(*vocabularies) -> tuple[int, ...]:
    """The union AU space of several AU vocabularies, ascending (e.g. BP4D's 12 ∪ DISFA's 8 = 15 AUs)."""
    return tuple(sorted({int(a) for v in vocabularies for a in v}))


# ----------------------------------------------------------------------------------------------- sampler
class EpochSampler(Sampler[int]):
    """A deterministic sampler whose order is a function of ``(seed, epoch)`` and ``len(dataset)`` only.

    The epoch's global order is ``permutation(n)`` from ``numpy.random.default_rng([seed, epoch])`` when
    ``shuffle`` (else ``0..n-1``), padded cyclically to ``ceil(n / world_size) · world_size`` indices (or cut to
    ``floor(n / world_size) · world_size`` with ``drop_last``) so that every rank gets the same number of samples;
    rank ``r`` takes positions ``r::world_size``. ``len(dataset)`` is re-read at every call, so a dataset whose
    length changes at ``set_epoch`` (:class:`AUWindowDataset` training windows) is followed; call the dataset's
    ``set_epoch`` first (:meth:`JointLoader.set_epoch` does).

    Args:
        dataset: anything with ``len``.
        shuffle: shuffle per epoch (training) or keep the dataset order (evaluation).
        seed: the order's seed, with the epoch.
        rank, world_size: this process' share, ``0 ≤ rank < world_size``.
        drop_last: cut instead of pad to a multiple of ``world_size``.

    Raises:
        ValueError: for an invalid ``rank``/``world_size``.
    """

    def __init__(self, dataset, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(f"need 0 ≤ rank < world_size, got rank={rank}, world_size={world_size}")
        self.dataset, self.shuffle, self.seed = dataset, bool(shuffle), int(seed)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order from the next iteration on, from its start (``set_start(0)``)."""
        self.epoch, self.start = int(epoch), 0

    def set_start(self, k: int) -> None:
        """Skip the first ``k`` samples of this rank's order in the next iteration only (exact mid-epoch resume:
        ``k = steps_done · batch_size``); later iterations start from 0.

        Raises:
            ValueError: unless ``0 ≤ k ≤ len(self)``.
        """
        if not 0 <= int(k) <= len(self):
            raise ValueError(f"start {k} outside [0, {len(self)}] (this rank's samples in epoch {self.epoch})")
        self.start = int(k)

    def __len__(self) -> int:
        n, w = len(self.dataset), self.world_size
        return n // w if self.drop_last else math.ceil(n / w)

    def order(self) -> np.ndarray:
        """This rank's full index order for the current epoch, int64 ``(len(self),)``."""
        n = len(self.dataset)
        idx = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        total = len(self) * self.world_size
        if total > n:
            idx = np.resize(idx, total)  # cyclic padding (repeats the first indices)
        return idx[:total][self.rank::self.world_size].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.order()[start:].tolist())


def usable_cpus() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``: cgroups, ``taskset``, Slurm's
    ``--cpus-per-task``; ``os.cpu_count`` where that is unavailable), at least 1 — the number the ``DataLoader``
    itself suggests as its maximum."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_said: set[tuple[int, int]] = set()


def loader_workers(workers: int) -> int:
    """``workers`` capped at what fits the machine: the usable CPUs (:func:`usable_cpus`) shared among the
    processes of this node (torchrun's ``LOCAL_WORLD_SIZE``), at least 1 when ``workers > 0``. A lowered value
    is logged once per process (INFO), never warned per loader or epoch.

    Raises:
        ValueError: ``workers < 0``.
    """
    workers = int(workers)
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, not {workers}")
    if workers == 0:
        return 0
    per_process = max(1, usable_cpus() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    fitted = min(workers, per_process)
    if fitted < workers and (workers, fitted) not in _said:
        _said.add((workers, fitted))
        log.info("data.workers %d lowered to %d: this process may use %d CPU(s)", workers, fitted, per_process)
    return fitted


def _can_pin() -> bool:
    acc = getattr(torch, "accelerator", None)
    return bool(acc.is_available()) if acc is not None else torch.cuda.is_available()


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, workers: int = 0, seed: int = 0, rank: int = 0,
                world_size: int = 1, pin_memory: bool = False, drop_last: bool | None = None) -> DataLoader:
    """A ``DataLoader`` over a dataset of :mod:`~aufer.datasets.batch` items, always with an :class:`EpochSampler`.

    Args:
        dataset: e.g. an :class:`AUWindowDataset`, an :class:`ExprClipDataset` or a ``ConcatDataset`` of them.
        batch_size: items per batch (per process).
        train: shuffle per epoch and (by default) drop the last partial batch.
        workers: worker processes (each opens its own store connection; workers are re-created per epoch, so the
            dataset's epoch reaches them); capped at what the machine has (:func:`loader_workers`).
        seed: the sampler's seed (the DataLoader's own base seed is drawn from a generator seeded with it, so the
            global torch RNG is never consumed).
        rank, world_size: the process' share in a distributed run.
        pin_memory: pin batches; only where an accelerator is available (ignored on CPU-only machines, where the
            ``DataLoader`` would warn at every iteration).
        drop_last: drop the last partial batch (default: ``train``).

    Returns:
        the loader; ``loader.sampler`` is the :class:`EpochSampler`. Under ``world_size > 1`` the sampler pads
        with repeated items (as ``DistributedSampler``); for evaluation, shard without padding instead (e.g. a
        ``Subset`` per rank with ``world_size=1``) so that no item counts twice.

    Raises:
        ValueError: ``batch_size < 1`` or as :class:`EpochSampler`.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    sampler = EpochSampler(dataset, shuffle=train, seed=seed, rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_size=int(batch_size), sampler=sampler,
                      drop_last=bool(train) if drop_last is None else bool(drop_last),
                      num_workers=loader_workers(workers), pin_memory=bool(pin_memory) and _can_pin(),
                      collate_fn=collate, persistent_workers=False,
                      generator=torch.Generator().manual_seed(int(seed)))


def store_loader(dataset: Dataset, batch_size: int, shuffle: bool | None = None, workers: int = 0, seed: int = 0,
                 drop_last: bool | None = None) -> DataLoader:
    """Compatibility wrapper over :func:`make_loader`: shuffled and dropping the last partial batch when
    ``dataset.train`` (or ``shuffle``) is true."""
    train = bool(getattr(dataset, "train", False))
    return make_loader(dataset, batch_size, train=train if shuffle is None else bool(shuffle), workers=workers,
                       seed=seed, drop_last=train if drop_last is None else drop_last)


def _set_dataset_epoch(ds, epoch: int) -> None:
    """``set_epoch`` on a dataset, or on each member of a (nested) ``ConcatDataset``, whose offsets are then
    recomputed (members may change length)."""
    if isinstance(ds, ConcatDataset):
        for member in ds.datasets:
            _set_dataset_epoch(member, epoch)
        ds.cumulative_sizes = ds.cumsum(ds.datasets)
    elif hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Move a loader to ``epoch``: its dataset(s) first (new windows and augmentation draws), then its sampler."""
    _set_dataset_epoch(loader.dataset, epoch)
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


# ------------------------------------------------------------------------------------------ joint steps
def joint_steps(au_loader: Iterable, fe_loader: Iterable) -> Iterator[tuple[dict, dict]]:
    """Heterogeneous pairing: one AU batch and one expression batch per step. An epoch runs the longer loader
    once (the AU loader on a tie); the shorter restarts as often as needed, each pass in the same order."""
    if len(au_loader) >= len(fe_loader):
        yield from zip(au_loader, _restarting(fe_loader))
    else:
        yield from ((a, f) for f, a in zip(fe_loader, _restarting(au_loader)))


def _restarting(loader: Iterable) -> Iterator:
    """``loader``'s batches, from the start again whenever it is exhausted; stops if a pass yields nothing."""
    while True:
        empty = True
        for b in loader:
            empty = False
            yield b
        if empty:
            return


class JointLoader:
    """Heterogeneous joint batches: each step yields ``(au_batch, expr_batch)``.

    An epoch runs the longer loader once; the shorter restarts as often as needed (:func:`joint_steps`). With one
    loader ``None`` (single-task training) it yields ``(batch, None)`` or ``(None, batch)``. With loaders from
    :func:`make_loader` every rank of a distributed run has the same loader lengths, hence the same number of steps.

    Args:
        au_loader, expr_loader: loaders of the two tasks; at most one ``None``.

    Raises:
        ValueError: if both loaders are ``None``.
    """

    def __init__(self, au_loader: DataLoader | None, expr_loader: DataLoader | None):
        if au_loader is None and expr_loader is None:
            raise ValueError("JointLoader needs at least one loader")
        self.au_loader, self.expr_loader = au_loader, expr_loader

    def _loaders(self) -> list[DataLoader]:
        return [ld for ld in (self.au_loader, self.expr_loader) if ld is not None]

    def __len__(self) -> int:
        return max(len(ld) for ld in self._loaders())

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Move both loaders to ``epoch`` (datasets, including ``ConcatDataset`` members, then samplers) and
        position them so that the next iteration yields exactly steps ``start_step, start_step + 1, …`` of that
        epoch: the longer loader starts at batch ``start_step``, the shorter at ``start_step mod len(shorter)``
        (its later restarts from batch 0, in the same order).

        Raises:
            ValueError: ``start_step`` outside ``[0, len(self)]`` after the epoch change, or ``start_step > 0``
                with a loader whose sampler cannot skip (not from :func:`make_loader`).
        """
        for ld in self._loaders():
            set_loader_epoch(ld, epoch)
        if start_step == 0:
            return
        n = len(self)
        if not 0 <= int(start_step) <= n:
            raise ValueError(f"start_step {start_step} outside [0, {n}] (steps of epoch {epoch})")
        for ld in self._loaders():
            if not hasattr(ld.sampler, "set_start"):
                raise ValueError("resuming mid-epoch needs loaders from aufer.datasets.loaders.make_loader "
                                 "(an EpochSampler)")
            k = len(ld)
            skip = int(start_step) if k == n else (int(start_step) % k if k else 0)
            ld.sampler.set_start(min(skip * ld.batch_size, len(ld.sampler)))

    def __iter__(self) -> Iterator[tuple[dict | None, dict | None]]:
        if self.expr_loader is None:
            return ((b, None) for b in self.au_loader)
        if self.au_loader is None:
            return ((None, b) for b in self.expr_loader)
        for name, ld in (("AU", self.au_loader), ("expression", self.expr_loader)):
            if len(ld) == 0:
                raise ValueError(f"the {name} loader has no batches this epoch ({len(ld.dataset)} items, batch size "
                                 f"{ld.batch_size}, drop_last={ld.drop_last}); joint steps need both")
        return joint_steps(self.au_loader, self.expr_loader)
