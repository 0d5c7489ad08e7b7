"""The catalogue of known official checkpoints that aufer can import (``aufer models`` prints it).

The entries are data, ``aufer/data/checkpoints.json`` (its ``_about`` says where every value was copied from): the
official OpenGraphAU (41 outputs: 27 AUs + 14 left/right sub-AUs) and ME-GraphAU (BP4D, DISFA) checkpoints, each
with its source page, download link and licence as the authors' README gives them, its training data, its AU
set and the ``aufer import graphau …`` command that converts it. Nothing is downloaded, at run time or ever:
fetch the file yourself, then run the command.
"""

from __future__ import annotations

from aufer import vocab

__all__ = ["FIELDS", "checkpoints", "describe", "import_command"]

#: the fields every entry has (``stage_note`` is optional)
FIELDS = ("name", "method", "backbone", "aufer_backbone", "variant", "stage", "source_page", "source_section",
          "download", "licence", "training_data", "au_set", "n_outputs", "reported", "files")


def checkpoints() -> list[dict]:
    """The catalogue's entries (copies), in file order: OpenGraphAU stage 1, stage 2, ME-GraphAU BP4D, DISFA."""
    return [dict(e) for e in vocab.read_json("checkpoints.json")["checkpoints"]]


def import_command(entry: dict) -> str | None:
    """``aufer import graphau CKPT --variant V --backbone B --stage S --out DIR`` for an entry; None when aufer's
    importer has no ``--backbone`` for its architecture (``aufer_backbone`` null)."""
    if not entry.get("aufer_backbone"):
        return None
    return (f"aufer import graphau CKPT --variant {entry['variant']} --backbone {entry['aufer_backbone']} "
            f"--stage {entry['stage']} --out DIR")


def describe(entry: dict) -> list[str]:
    """The lines ``aufer models`` prints for one entry."""
    cmd = import_command(entry)
    lines = [f"checkpoint: {entry['name']} — {entry['method']} {entry['backbone']}, stage {entry['stage']}",
             f"  source: {entry['source_page']} ({entry['source_section']})",
             f"  download: {entry['download']} ({entry['files']}; not downloaded by aufer)",
             f"  licence: {entry['licence']} (the code repository's)",
             f"  training data: {entry['training_data']}",
             f"  AU set: {entry['au_set']}",
             f"  reported: {entry['reported']}",
             f"  import: {cmd}" if cmd else f"  import: not supported (aufer's graphau importer has no --backbone for "
                                            f"{entry['backbone']})"]
    if entry.get("stage_note"):
        lines.append(f"  stage: {entry['stage_note']}")
    return lines
