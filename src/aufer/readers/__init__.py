"""Dataset readers by name: the benchmark layouts of methods.md §1 and the two generic CSV formats."""

from __future__ import annotations

from pathlib import Path

from aufer.readers.bp4d import read_bp4d
from aufer.readers.custom import read_au_csv, read_expr_csv
from aufer.readers.dfew import read_dfew
from aufer.readers.disfa import read_disfa
from aufer.readers.ferv39k import read_ferv39k
from aufer.readers.mafw import read_mafw
from aufer.readers.records import ClipRecords, FrameRecords

__all__ = ["READERS", "read_dataset"]

#: reader of each dataset name; ``au_csv`` / ``expr_csv`` take the CSV file as their ``root``
READERS = {
    "BP4D": read_bp4d,
    "DISFA": read_disfa,
    "DFEW": read_dfew,
    "FERV39K": read_ferv39k,
    "MAFW": read_mafw,
    "au_csv": read_au_csv,
    "expr_csv": read_expr_csv,
}


def read_dataset(name: str, root: str | Path, /, **kw) -> FrameRecords | ClipRecords:
    """Read a dataset by name (case-insensitive): ``BP4D``, ``DISFA`` (→ :class:`FrameRecords`), ``DFEW``,
    ``FERV39K``, ``MAFW`` (→ :class:`ClipRecords`), or the generic ``au_csv`` / ``expr_csv`` formats, for which
    ``root`` is the CSV file (a ``root=`` keyword then sets the folder media paths are relative to; ``name``
    and ``root`` are positional-only for that reason).
    Keyword arguments go to the reader (e.g. ``subjects=`` for BP4D/DISFA, ``frames=`` for DFEW).

    Layouts and sources: see each reader (methods.md §1, protocols.json).

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
        LayoutError: from the reader, listing what is missing or malformed.
    """
    by_lower = {k.lower(): k for k in READERS}
    key = by_lower.get(str(name).strip().lower())
    if key is None:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(READERS)}")
    return READERS[key](root, **kw)
