"""A run folder is one run of one recipe: the resolved recipe's hash, resume checks, the folder lock.

* :func:`recipe_hash` — a SHA-256 of the resolved recipe (JSON, sorted keys) without the keys that only say how the
  run is operated (:data:`OPERATIONAL_KEYS`: its name, which fold, logging and checkpoint frequency, pinned memory).
  It is stored in ``run.json`` and with every training state.
* :func:`check_resume` — ``--resume`` continues only the recipe that made the state: a different hash is refused
  with a one-line diff of the changed keys (:func:`recipe_changes`), unless each changed key is named in
  ``--allow-changes`` (then the change is recorded in ``run.json``'s ``history``).
* :class:`RunLock` — ``<run folder>/run.lock`` (pid and host; a lock left by a dead process on this host is taken
  over), held by the main process of a run for its whole length, so a second ``aufer train`` on the same
  ``--out`` is refused. Under DDP only rank 0 takes it (the other ranks are the same run).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import yaml

from aufer.engine.recipe import Recipe, RecipeError, from_dict, to_dict
from aufer.locks import PidLock

__all__ = ["OPERATIONAL_KEYS", "flat_recipe", "recipe_hash", "recipe_changes", "format_changes", "stored_recipe",
           "check_resume", "RunLock", "allowed"]

#: keys left out of the hash: they name or operate the run without changing what it computes
OPERATIONAL_KEYS = frozenset({"name", "fold", "folds", "data.pin_memory", "train.log_every", "train.print_every",
                              "train.checkpoint_every", "target"})


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def flat_recipe(recipe: Recipe | dict) -> dict[str, Any]:
    """The recipe as ``{"optim.lr": 0.001, "data.au.clip_len": 16, …}`` without :data:`OPERATIONAL_KEYS` (and
    what lies under them)."""
    out: dict[str, Any] = {}
    _flatten(to_dict(recipe) if isinstance(recipe, Recipe) else recipe, "", out)
    return {k: v for k, v in out.items()
            if not any(k == op or k.startswith(op + ".") for op in OPERATIONAL_KEYS)}


def recipe_hash(recipe: Recipe | dict) -> str:
    """16 hex digits of the SHA-256 of :func:`flat_recipe` (JSON with sorted keys)."""
    text = json.dumps(flat_recipe(recipe), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe_changes(old: Recipe | dict, new: Recipe | dict) -> dict[str, tuple[Any, Any]]:
    """``{key: (old value, new value)}`` of every key whose value differs (a missing key counts as ``None``)."""
    a, b = flat_recipe(old), flat_recipe(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def format_changes(changes: dict[str, tuple[Any, Any]], limit: int = 8) -> str:
    """``"optim.lr 0.0001 → 0.5, train.epochs 2 → 3"`` (at most ``limit`` keys, then ``"… and N more"``)."""
    items = [f"{k} {json.dumps(o, default=str)} → {json.dumps(n, default=str)}" for k, (o, n) in changes.items()]
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f", … and {more} more" if more > 0 else "")


def stored_recipe(run_dir: str | Path) -> dict | None:
    """The resolved recipe a run folder was started with (its ``config.yaml``), as plain data; None if absent."""
    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        return None
    try:
        return to_dict(from_dict(yaml.safe_load(p.read_text()) or {}))
    except (yaml.YAMLError, RecipeError, TypeError):
        return yaml.safe_load(p.read_text()) if p.is_file() else None


def allowed(key: str, allow: Sequence[str]) -> bool:
    """Whether ``key`` is named in ``allow`` (itself or a section above it: ``optim`` allows ``optim.lr``)."""
    return any(key == a or key.startswith(a.rstrip(".") + ".") for a in allow)


def check_resume(run_dir: str | Path, recipe: Recipe, state_hash: str | None,
                 allow: Sequence[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Refuse to resume ``run_dir`` with a recipe other than the one that made its state.

    Args:
        state_hash: the recipe hash stored with the newest state (None for states written before hashes were
            stored: then the folder's ``config.yaml`` is compared).
        allow: keys (or sections) the user allows to change (``--allow-changes``).

    Returns:
        The accepted changes (``{}`` when the recipe is the same).

    Raises:
        RecipeError: the recipe changed in a key not in ``allow`` (one line with the diff and what to do).
    """
    now = recipe_hash(recipe)
    if state_hash is not None and state_hash == now:
        return {}
    old = stored_recipe(run_dir)
    if old is None:
        if state_hash is None:
            return {}
        raise RecipeError(f"--resume: {run_dir} has no config.yaml to compare the recipe with, and the state was "
                          "made by another recipe; choose another --out")
    changes = recipe_changes(old, recipe)
    if not changes:
        return {}
    refused = {k: v for k, v in changes.items() if not allowed(k, allow)}
    if refused:
        keys = ",".join(refused)
        raise RecipeError(f"--resume: the recipe differs from the one that made {run_dir}: {format_changes(refused)}; "
                          f"resume with the same recipe, choose another --out, or, if the change is deliberate, "
                          f"add --allow-changes {keys}")
    return changes


class RunLock(PidLock):
    """``<run folder>/run.lock`` (:class:`aufer.locks.PidLock`): one process trains into a run folder at a time.

    Raises (on acquire):
        RecipeError: another live process holds the run folder (its pid and host are named).
    """

    def __init__(self, run_dir: str | Path):
        super().__init__(Path(run_dir) / "run.lock")

    def busy_error(self, holder: str) -> Exception:
        return RecipeError(f"{self.path.parent} is being trained by {holder}; wait for it to finish or choose "
                           f"another --out (if no run is going, delete {self.path})")

    def stuck_error(self) -> Exception:
        return RecipeError(f"could not take the lock {self.path}; delete it if no run is going")
