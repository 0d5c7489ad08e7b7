"""Evaluation protocols: AU cross-validation folds, validation splits, fold pairs and AU class weights.

Everything published (fold partitions, which partition a fold tests) is read from
``aufer/data/reference/protocols.json`` through :mod:`aufer.vocab`; nothing is written here.

* AU benchmarks (BP4D, DISFA): 3-fold subject-exclusive cross-validation over three fixed partitions
  (source: ME-GraphAU ``tool/BP4D_image_label_process.py``, ``tool/DISFA_image_label_process.py``). Two fold
  namings are in use: ``"me_graphau_mdhr"`` (ME-GraphAU/MDHR: fold 1 tests part3) and ``"ssm"`` (SSM: fold 1
  tests part1). Compare means over the 3 folds, not fold indices.
* Model selection: the reference code bases pick the best epoch on the test fold (protocols.json
  ``model_selection_warning``). :func:`au_split` and :func:`expression_split` carve a seeded validation set
  out of the *training* part instead.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from aufer import vocab

__all__ = ["Split", "DEFAULT_VAL_SUBJECTS", "au_datasets", "au_namings", "au_folds", "au_split",
           "expression_folds", "expression_split", "fold_pairs", "au_class_weights"]

DEFAULT_VAL_SUBJECTS = 0.15
"""Default validation share of an AU fold's training subjects: 0.15 → 4 of BP4D's 27–28 training subjects,
3 of DISFA's 18 (rounded half up, at least 1, and at least 1 subject left for training)."""


@dataclass(frozen=True)
class Split:
    """A train/validation/test split of ids.

    Attributes:
        train, val, test: ids (subjects for ``unit="subject"``, clips for ``unit="clip"``), each a tuple.
        unit: ``"subject"`` or ``"clip"``.

    Raises:
        ValueError: if ``unit`` is neither, an id is repeated within a part, or an id is in two parts.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    unit: str

    def __post_init__(self):
        for name in ("train", "val", "test"):
            object.__setattr__(self, name, tuple(str(i) for i in getattr(self, name)))
        if self.unit not in ("subject", "clip"):
            raise ValueError(f"Split.unit must be 'subject' or 'clip', not {self.unit!r}")
        seen: dict[str, str] = {}
        for name in ("train", "val", "test"):
            for i in getattr(self, name):
                if i in seen:
                    where = "twice in " + name if seen[i] == name else f"in both {seen[i]} and {name}"
                    raise ValueError(f"{self.unit} {i!r} appears {where}")
                seen[i] = name

    def part(self, name: str) -> tuple[str, ...]:
        """``"train"``, ``"val"`` or ``"test"`` ids."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"a split has parts train, val and test, not {name!r}")
        return getattr(self, name)


# ------------------------------------------------------------------------------------------------ AU folds
def au_datasets() -> tuple[str, ...]:
    """Benchmarks with fixed subject partitions in protocols.json (``("BP4D", "DISFA")``)."""
    protos = vocab.reference("protocols")
    return tuple(k for k, v in protos.items() if isinstance(v, dict) and "partitions" in v)


def au_namings(dataset: str = "BP4D") -> tuple[str, ...]:
    """Fold namings known for an AU benchmark (``("me_graphau_mdhr", "ssm")``)."""
    return tuple(_au_protocol(dataset)["fold_test_partition"])


def _au_protocol(dataset: str) -> dict:
    valid = au_datasets()
    for k in valid:
        if k.lower() == str(dataset).lower():
            return vocab.protocol(k)
    raise ValueError(f"no AU fold protocol for dataset {dataset!r}; valid: {', '.join(valid)}")


def au_folds(dataset: str, naming: str = "me_graphau_mdhr") -> dict[int, dict[str, tuple[str, ...]]]:
    """The 3-fold subject-exclusive cross-validation of BP4D or DISFA.

    Returns:
        ``{fold: {"train": subjects, "test": subjects}}`` for folds 1, 2, 3: ``test`` is the partition named by
        ``fold_test_partition[naming][fold]`` in protocols.json, ``train`` the other two partitions, in
        partition order (part1, part2, part3) and in each partition's listed order.

    Raises:
        ValueError: for a dataset without partitions or an unknown naming (the message lists the valid ones).
    """
    p = _au_protocol(dataset)
    namings = p["fold_test_partition"]
    if naming not in namings:
        raise ValueError(f"unknown fold naming {naming!r} for {dataset}; valid: {', '.join(namings)}")
    parts = p["partitions"]
    out: dict[int, dict[str, tuple[str, ...]]] = {}
    for fold, test_part in sorted(namings[naming].items(), key=lambda kv: int(kv[0])):
        train = tuple(s for name in sorted(parts) if name != test_part for s in parts[name])
        out[int(fold)] = {"train": train, "test": tuple(parts[test_part])}
    return out


def _n_val(spec: float | int, n_train: int, what: str) -> int:
    """Number of validation units for a fraction (rounded half up, ≥1, leaving ≥1 for training) or a count."""
    if isinstance(spec, (bool, np.bool_)):
        raise TypeError(f"validation size must be a fraction or a count, not {spec!r}")
    if isinstance(spec, (int, np.integer)):
        if spec < 0 or (spec > 0 and spec >= n_train):
            raise ValueError(f"cannot hold out {spec} of {n_train} training {what}s for validation "
                             f"(at least one must stay in training)")
        return int(spec)
    spec = float(spec)
    if not 0.0 <= spec < 1.0:
        raise ValueError(f"a validation fraction must be in [0, 1), not {spec}")
    if spec == 0.0:
        return 0
    if n_train < 2:
        warnings.warn(f"only {n_train} training {what}(s): no validation {what} held out", stacklevel=3)
        return 0
    return min(max(1, math.floor(spec * n_train + 0.5)), n_train - 1)


def au_split(dataset_or_records, fold: int, naming: str = "me_graphau_mdhr",
             val_subjects: float | int | Iterable[str] = DEFAULT_VAL_SUBJECTS, seed: int = 0) -> Split:
    """Subject-exclusive train/val/test split of one AU fold, validation carved from the fold's training subjects.

    Args:
        dataset_or_records: ``"BP4D"`` / ``"DISFA"``, or a :class:`~aufer.readers.records.FrameRecords` of one
            of them (its ``dataset`` names the protocol). With records, every part is restricted to the subjects
            present in the records.
        fold: 1, 2 or 3, in ``naming``'s numbering (see :func:`au_folds`).
        naming: ``"me_graphau_mdhr"`` or ``"ssm"``.
        val_subjects: a fraction in [0, 1) of the training subjects (rounded half up, at least 1 when > 0, at
            least one subject left for training; default :data:`DEFAULT_VAL_SUBJECTS` = 0.15), an integer
            count, or an explicit iterable of training subject ids. ``0`` gives an empty validation set.
        seed: seeds the choice of validation subjects (``numpy.random.default_rng(seed)`` permutation of the
            training subjects); same seed, same split.

    Returns:
        :class:`Split` with ``unit="subject"``: ``test`` the fold's test partition, ``val`` the chosen training
        subjects, ``train`` the remaining training subjects (both in the protocol's listed order).

    Raises:
        ValueError: unknown dataset/naming/fold; records holding a subject that is in no partition; a count
            that would leave no training subject; explicit validation ids that are not training subjects.
    """
    records = None if isinstance(dataset_or_records, str) else dataset_or_records
    dataset = dataset_or_records if records is None else records.dataset
    folds = au_folds(dataset, naming)
    if int(fold) not in folds:
        raise ValueError(f"{dataset} has folds {sorted(folds)}, not {fold!r}")
    train, test = folds[int(fold)]["train"], folds[int(fold)]["test"]
    if records is not None:
        present = {str(s) for s in records.subjects}
        unknown = sorted(present - set(train) - set(test))
        if unknown:
            raise ValueError(f"{len(unknown)} subject(s) of the {dataset} records are in no {dataset} partition: "
                             f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
        train = tuple(s for s in train if s in present)
        test = tuple(s for s in test if s in present)
        if not test:
            warnings.warn(f"{dataset} fold {fold}: no test subject present in the records", stacklevel=2)
    if isinstance(val_subjects, (str, bytes)):
        raise TypeError("val_subjects must be a fraction, a count or an iterable of subject ids, not a string")
    if isinstance(val_subjects, (int, float, np.integer, np.floating)):
        n = _n_val(val_subjects, len(train), "subject")
        chosen = set(np.random.default_rng(seed).permutation(np.array(train, dtype=object))[:n].tolist())
    else:
        chosen = {str(s) for s in val_subjects}
        bad = sorted(chosen - set(train))
        if bad:
            raise ValueError(f"validation subjects {bad} are not training subjects of {dataset} fold {fold}")
        if train and len(chosen) == len(train):
            raise ValueError("the validation subjects would leave no training subject")
    return Split(train=tuple(s for s in train if s not in chosen), val=tuple(s for s in train if s in chosen),
                 test=test, unit="subject")


# ------------------------------------------------------------------------------------------ expression folds
def expression_folds(records) -> list[str]:
    """Names of the official folds of a :class:`~aufer.readers.records.ClipRecords` (or of its ``folds``
    mapping), in numeric order where numeric: DFEW/MAFW ``["1", ..., "5"]``, FERV39K ``["1"]``; ``[]`` if none."""
    folds = records if isinstance(records, Mapping) else records.folds
    return sorted((str(k) for k in folds), key=lambda k: (0, int(k), k) if k.isdigit() else (1, 0, k))


def fold_pairs(expr_folds: Iterable | int, au_folds: Iterable | int) -> list[tuple]:
    """All (expression fold, AU fold) pairs, expression fold outer: SSM trains one run per pair (methods.md §3.3;
    DFEW/MAFW 5×3 = 15 runs, FERV39K 1×3). Each argument is an iterable of fold names (a dict from
    :func:`au_folds` gives its keys) or an integer ``n`` meaning folds ``1..n``."""
    ef = range(1, expr_folds + 1) if isinstance(expr_folds, int) else list(expr_folds)
    af = range(1, au_folds + 1) if isinstance(au_folds, int) else list(au_folds)
    return [(e, a) for e in ef for a in af]


def expression_split(records, fold: int | str = 1, val_fraction: float = 0.1, seed: int = 0) -> Split:
    """Train/val/test clips of one official fold of a :class:`~aufer.readers.records.ClipRecords`, with a
    validation set carved from the training clips.

    ``train``/``test`` come from ``records.folds[str(fold)]``, restricted to clips present in ``records.table``
    (a warning gives the number of fold clips missing from the table).

    Validation (seeded, deterministic): each class ``c`` with ``n_c`` labelled training clips gets a quota
    ``q_c = round_half_up(val_fraction · n_c)``, raised to 1 when ``n_c ≥ 2`` (so every class with at least two
    training clips appears in validation) and capped at ``n_c − 1`` (so it stays in training). Groups are
    visited in a ``numpy.random.default_rng(seed)`` permutation and a group is taken when one of its classes is
    below quota and taking it leaves each of its classes at least one training clip. A group is a clip; when
    the table's ``subject`` differs from ``clip`` for some clip (the dataset names subjects), a group is all
    training clips of one subject, so no subject is in both train and val (quotas are then approximate), and
    subjects that also have test clips are never moved to validation. Unlabelled (−1) clips are never chosen on
    their own; they follow their subject.

    Returns:
        :class:`Split` with ``unit="clip"``, each part in table order.

    Raises:
        ValueError: the fold does not exist (the message lists the available folds), or ``val_fraction`` is
            not in [0, 1).
    """
    key = str(fold)
    available = expression_folds(records)
    if key not in records.folds:
        raise ValueError(f"{records.dataset} has no fold {fold!r}; available folds: {available or 'none'}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    table = records.table
    clips = table["clip"].astype(str).tolist()
    subjects = dict(zip(clips, table["subject"].astype(str)))
    labels = dict(zip(clips, table["label"].astype(int)))
    train_set = {str(c) for c in records.folds[key].get("train", [])}
    test_set = {str(c) for c in records.folds[key].get("test", [])}
    missing = len((train_set | test_set) - set(clips))
    if missing:
        warnings.warn(f"{records.dataset} fold {key}: {missing} fold clip(s) are not in the table and are left out",
                      stacklevel=2)
    train = [c for c in clips if c in train_set]
    test = [c for c in clips if c in test_set]

    by_subject = any(subjects[c] != c for c in clips)
    groups: dict[str, list[str]] = {}
    for c in train:
        groups.setdefault(subjects[c] if by_subject else c, []).append(c)
    if by_subject:
        in_test = {subjects[c] for c in test}
        groups = {g: cs for g, cs in groups.items() if g not in in_test}

    counts: dict[int, int] = {}
    for c in train:
        if labels[c] >= 0:
            counts[labels[c]] = counts.get(labels[c], 0) + 1
    quota = {}
    for k, n in counts.items():
        q = math.floor(float(val_fraction) * n + 0.5)
        if val_fraction > 0 and n >= 2:
            q = max(q, 1)
        quota[k] = min(q, n - 1)
    left = dict(counts)  # labelled training clips still in train, per class
    taken = {k: 0 for k in counts}
    chosen: set[str] = set()
    order = np.random.default_rng(seed).permutation(np.array(sorted(groups), dtype=object)).tolist()
    for g in order:
        if all(taken[k] >= quota[k] for k in quota):
            break
        gc: dict[int, int] = {}
        for c in groups[g]:
            if labels[c] >= 0:
                gc[labels[c]] = gc.get(labels[c], 0) + 1
        if not any(taken[k] < quota[k] for k in gc) or any(left[k] - n < 1 for k, n in gc.items()):
            continue
        chosen.update(groups[g])
        for k, n in gc.items():
            taken[k] += n
            left[k] -= n
    return Split(train=tuple(c for c in train if c not in chosen), val=tuple(c for c in train if c in chosen),
                 test=tuple(test), unit="clip")


# ------------------------------------------------------------------------------------------- class weights
def au_class_weights(occurrence: np.ndarray, aus: Sequence[int] | None = None) -> np.ndarray:
    """Per-AU loss weights from the training fold's label rates.

    ``w_j = (1/r_j) / Σ_k (1/r_k) · A`` with ``r_j`` the positive rate of AU ``j`` among frames whose label is
    known (0 or 1); the weights average to 1 (methods.md §1.1; source: ME-GraphAU
    ``tool/BP4D_calculate_AU_class_weights.py``).

    Difference from the reference script: it computed ``r_j`` as ``(label > 0)`` over *all* frames, so BP4D's
    unknown label 9 counted as positive there. aufer ignores every label other than 0 and 1 (−1, 9, ...), in
    both numerator and denominator.

    Args:
        occurrence: ``(N, A)`` labels of the training frames, 1 present, 0 absent, anything else unknown.
        aus: optional AU numbers of the columns, used in error messages only.

    Returns:
        ``(A,)`` float64.

    Raises:
        ValueError: if ``occurrence`` is not 2-D, or an AU has no known label or no positive frame (its weight
            would be infinite; no finite fallback is substituted).
    """
    occ = np.asarray(occurrence)
    if occ.ndim != 2:
        raise ValueError(f"occurrence must be (N, A), got shape {occ.shape}")
    pos = (occ == 1).sum(axis=0)
    known = pos + (occ == 0).sum(axis=0)
    names = [f"AU{a}" for a in aus] if aus is not None else [f"column {j}" for j in range(occ.shape[1])]
    bad = [names[j] for j in range(occ.shape[1]) if pos[j] == 0]
    if bad:
        raise ValueError(f"no positive (known) label for {', '.join(bad)}: its class weight would be infinite; "
                         f"drop the AU or use more training frames")
    inv = known / pos  # 1 / r_j
    return (inv / inv.sum() * occ.shape[1]).astype(np.float64)
