"""Score any model folder on a recipe's data and fold: ``aufer evaluate MODEL --recipe RECIPE --fold N``.

An imported official checkpoint (``aufer import mdhr …``), a shipped model or a run's ``best.safetensors`` is
evaluated exactly as a training run evaluates its selected checkpoint: the recipe's stores, the protocol's fold,
the same metrics (:func:`aufer.engine.loop.summarise`), the same Parquet predictions with labels. Nothing is
selected or tuned: the model is scored once on the split asked for.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from aufer.engine.build import amp_dtype, build_data, fold_name, parse_fold
from aufer.engine.distributed import setup
from aufer.engine.recipe import Recipe, RecipeError
from aufer.engine.runner import _evaluate_split, _write_predictions
from aufer.models import load_model
from aufer.models.provenance import weight_sources

__all__ = ["evaluate_model"]


def evaluate_model(model_path: str | Path, recipe: Recipe, out_dir: str | Path, *, fold: str | None = None,
                   split: str = "test", flip: bool = False, device: str | None = None) -> dict:
    """Evaluate the model at ``model_path`` on ``split`` of ``recipe``'s data for ``fold`` and write
    ``out_dir/metrics_<split>.json`` and ``out_dir/predictions/<split>_*.parquet``.

    The AU columns are the model's (``model.aus``): AUs the store does not label are masked and named in the
    output (``aus_not_in_store``); the emotions must be the store's classes in the same order.

    Args:
        model_path: a model folder (``model.safetensors`` inside), a ``.safetensors`` file or a run folder (its
            ``best.safetensors``).
        fold: ``N`` or ``E-A`` (default the recipe's, else the protocol's first fold).
        split: ``val`` or ``test``.

    Returns:
        ``{"model", "recipe", "fold", "split", "flip_tta", "metrics", …}`` as written.

    Raises:
        RecipeError: a bad split, a missing model, or a model whose emotions do not match the store's classes.
        aufer.models.CheckpointError: an unreadable checkpoint.
    """
    if split not in ("val", "test"):
        raise RecipeError("--split is val or test")
    model_path = Path(model_path)
    if model_path.is_dir() and not (model_path / "model.safetensors").is_file() \
            and (model_path / "best.safetensors").is_file():
        model_path = model_path / "best.safetensors"  # a run folder: its selected checkpoint
    if not model_path.exists():
        raise RecipeError(f"{model_path} does not exist; pass a model folder (aufer import … --out DIR), a "
                          ".safetensors file or a run folder")
    info = setup(device)
    model = load_model(model_path).to(info.device).eval()
    aus = [int(a) for a in getattr(model, "aus", ())]
    if recipe.data.au is not None and aus:
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(
            recipe.data, au=dataclasses.replace(recipe.data.au, aus=aus)))
    if fold is not None:
        recipe = dataclasses.replace(recipe, fold=str(fold))
    data = build_data(recipe, parse_fold(recipe, fold))
    if data.expr is not None and tuple(getattr(model, "emotions", ())) != tuple(data.emotions):
        raise RecipeError(f"the model predicts {list(getattr(model, 'emotions', ()))}; the expression store's classes "
                          f"are {list(data.emotions)} (same classes in the same order needed)")
    missing = []
    if data.au is not None:
        labelled = set(int(a) for a in data.au.records.aus)
        missing = [a for a in aus if a not in labelled]
    metrics, preds = _evaluate_split(model, data, split, recipe, info, amp_dtype(recipe.train.amp, info.device),
                                     gather=True, flip=flip)
    used = {t.kind: t.fold for t in data.tasks}
    out = {"model": str(model_path), "model_name": (getattr(model, "config", {}) or {}).get("name"),
           "backbones": weight_sources(model), "recipe": recipe.name, "fold": used, "fold_name": fold_name(used),
           "split": split, "flip_tta": flip, "selection": "none (a given model, scored once)",
           "aus_not_in_store": missing, "metrics": metrics}
    if info.is_main:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_predictions(out_dir, split, preds, data, "_flip" if flip else "")
        tmp = out_dir / f"metrics_{split}.json.partial"
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(out_dir / f"metrics_{split}{'_flip' if flip else ''}.json")
    return out
