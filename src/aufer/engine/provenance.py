"""What a run really was: the model built, the ``--set`` overrides, the backbones' weights, the commit, and the
history of starts and resumes — written to ``run.json`` and copied into ``metrics.json``, summaries and tables.

A run whose backbones were all randomly initialised says so (``pretrained: "random"``); a recipe whose
``model.name`` was changed by ``--set`` is labelled with the model actually built, not only with the recipe file.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Sequence

import torch.nn as nn

from aufer.engine.logs import git_commit
from aufer.engine.recipe import Recipe
from aufer.models.provenance import RANDOM, weight_sources

__all__ = ["PROVENANCE_KEYS", "run_provenance", "pretrained_summary", "run_history"]

#: the keys of ``run.json`` that :func:`aufer.engine.runner.fit` also copies into ``metrics.json``
PROVENANCE_KEYS = ("recipe_hash", "model", "overrides", "backbones", "pretrained", "commit")


def pretrained_summary(sources: list[dict[str, str]]) -> str:
    """One phrase for a table row: a checkpoint the whole model was loaded from; else the non-random weight sources
    joined by ``"; "``; or ``"random"`` when every marked backbone was randomly initialised or none is marked (a
    model without a pretrained backbone)."""
    whole = [s["weights"] for s in sources if s["module"] == "" and s["weights"] != RANDOM]
    if whole:  # the whole model was loaded from a checkpoint
        return whole[0]
    got = list(dict.fromkeys(s["weights"] for s in sources if s["weights"] != RANDOM))
    if not got:
        return RANDOM
    partly = any(s["weights"] == RANDOM for s in sources)
    return "; ".join(got) + (" (other backbones random)" if partly else "")


def run_provenance(recipe: Recipe, model: nn.Module, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``{"model": {"requested", "built", "args"}, "overrides", "backbones", "pretrained", "commit"}`` of a run.

    ``built`` is the registered name the model reports (``model.config["name"]``), which can differ from the
    recipe's ``model.name`` (an alias, an ``arch`` resolved to its default tag). A recipe with ``model.checkpoint``
    lists that checkpoint first: it overwrites whatever the backbones were initialised with.
    """
    cfg = getattr(model, "config", {}) or {}
    sources = weight_sources(model)
    if recipe.model.checkpoint:  # the whole model starts from these weights, whatever its backbones were built with
        sources = [{"module": "", "weights": f"checkpoint {recipe.model.checkpoint}"}, *sources]
    return {"model": {"requested": recipe.model.name, "built": cfg.get("name", recipe.model.name),
                      "args": dict(recipe.model.args)},
            "overrides": list(overrides), "backbones": sources, "pretrained": pretrained_summary(sources),
            "commit": git_commit()}


def run_history(run_dir: str | Path, rhash: str, *, resumed: bool, changes: dict | None = None,
                overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The ``history`` of ``run.json``: the earlier entries of the folder's ``run.json`` plus this start
    (``{"at": UTC time, "action": "start" | "resume", "recipe_hash", "overrides", "allowed_changes"}``;
    ``allowed_changes`` lists the keys a ``--resume --allow-changes`` accepted, with old and new values)."""
    p = Path(run_dir) / "run.json"
    try:
        before = json.loads(p.read_text()).get("history", []) if resumed and p.is_file() else []
    except (OSError, ValueError):
        before = []
    entry: dict[str, Any] = {"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                             "action": "resume" if resumed else "start", "recipe_hash": rhash,
                             "overrides": list(overrides)}
    if changes:
        entry["allowed_changes"] = {k: [o, n] for k, (o, n) in changes.items()}
    return [*before, entry]
