"""Experiments: a recipe over every fold of its protocol, and paper-style tables.

:func:`run_experiment` trains one run per fold — BP4D and DISFA 3 folds, DFEW and MAFW 5, FERV39K 1, a joint
recipe every (expression fold, AU fold) pair — into ``<out>/<fold>/``, skips folds that already finished, and
writes ``summary.{md,csv,json}``: per-AU F1 per fold and mean ± std over folds, mean F1, UAR and WAR mean ± std,
labelled with the recipe, commit, selection mode and data. :func:`compare` puts several experiments side by
side (rows = methods, columns = AUs and metrics), optionally beside published numbers, and beside each recipe's
``target:`` (the published figure it should reproduce, :class:`aufer.engine.recipe.Target`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml

from aufer.engine.build import fold_name, open_store, parse_fold, protocol_folds
from aufer.engine.logs import git_commit
from aufer.engine.recipe import Recipe, RecipeError
from aufer.engine.runfolder import format_changes, recipe_changes, recipe_hash, stored_recipe
from aufer.engine.runner import fit, is_finished

__all__ = ["experiment_folds", "run_experiment", "summarise_experiment", "compare", "load_published",
           "experiment_target", "PUBLISHED_META"]

#: keys of a published entry that are labels, not figures
PUBLISHED_META = ("source", "dataset", "selection", "protocol", "note")


def experiment_folds(recipe: Recipe) -> list[str]:
    """The folds (``N``) or fold pairs (``E-A``) an experiment runs: ``recipe.folds`` or every fold of the
    stores' protocols.

    Raises:
        RecipeError: a store is missing or of the wrong kind.
    """
    if recipe.folds:
        return [str(f) for f in recipe.folds]
    per_task = {}
    for kind in ("au", "expr"):
        src = getattr(recipe.data, kind)
        if src is None:
            continue
        if src.split_file:
            per_task[kind] = [None]
            continue
        _, records = open_store(src, kind)
        per_task[kind] = protocol_folds(kind, records) or [None]
    if len(per_task) == 2 and None not in per_task["au"] and None not in per_task["expr"]:
        return [f"{e}-{a}" for e in per_task["expr"] for a in per_task["au"]]
    # one task (or one side with an explicit split): that side's folds
    named = [v for v in per_task.values() if v != [None]]
    return named[0] if named else [None]


def run_experiment(recipe: Recipe, out_dir: str | Path, *, device: str | None = None, console=None,
                   progress: bool = True, overrides: Sequence[str] = ()) -> dict:
    """Run (or finish) every fold of ``recipe`` under ``out_dir`` and write the summary table.

    A fold whose run folder has ``metrics.json`` from the same resolved recipe (:func:`aufer.engine.runfolder.recipe_hash`)
    is skipped; one with a training state is resumed (refused if its recipe differs). ``overrides`` (the ``--set``
    strings) are recorded in each run.

    Returns:
        The summary (as in ``summary.json``).

    Raises:
        RecipeError: a finished fold was run with another recipe (the message names the changed keys; choose
            another ``out_dir`` or delete that fold's folder to rerun it) — a summary never mixes recipes.
    """
    out_dir = Path(out_dir)
    folds = experiment_folds(recipe)
    for f in folds:
        run_dir = out_dir / fold_name(parse_fold(recipe, f))
        if is_finished(run_dir):
            _check_same_recipe(run_dir, recipe)
            if console is not None:
                console.print(f"{run_dir.name}: finished with this recipe, skipped")
            continue
        fit(recipe, run_dir, fold=f, resume=(run_dir / "state").exists(), device=device, console=console,
            progress=progress, overrides=overrides)
    return summarise_experiment(out_dir, recipe)


def _check_same_recipe(run_dir: Path, recipe: Recipe) -> None:
    """Refuse a finished fold folder made by another resolved recipe (see :func:`run_experiment`)."""
    try:
        stored = json.loads((run_dir / "run.json").read_text()).get("recipe_hash")
    except (OSError, ValueError):
        stored = None
    if stored == recipe_hash(recipe):
        return
    old = stored_recipe(run_dir)
    changes = recipe_changes(old, recipe) if old is not None else {}
    if old is not None and not changes:
        return  # a run from before recipe hashes were stored, with the same recipe
    what = format_changes(changes) if changes else "its config.yaml is missing"
    raise RecipeError(f"{run_dir} was run with another recipe ({what}); choose another --out for this recipe, or "
                      f"delete {run_dir} to rerun that fold with it")


def _fmt(mean: float, std: float, pct: bool = True) -> str:
    k = 100.0 if pct else 1.0
    return f"{k * mean:.1f} ± {k * std:.1f}" if np.isfinite(std) else f"{k * mean:.1f}"


def experiment_target(out_dir: str | Path, recipe: Recipe | None = None) -> dict | None:
    """The ``target:`` of an experiment as plain data (values in %), or None: ``recipe.target`` when a recipe is
    given, else the ``target`` of the resolved recipe (``config.yaml``) of its first run folder that has one."""
    if recipe is not None:
        return dataclasses.asdict(recipe.target) if recipe.target is not None else None
    for cfg in sorted(Path(out_dir).glob("*/config.yaml")):
        try:
            t = (yaml.safe_load(cfg.read_text()) or {}).get("target")
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(t, dict):
            return t
    return None


def _target_line(target: dict, mean: dict) -> str:
    """One Markdown line: the target figure(s), source and selection rule, beside the experiment's mean."""
    sel = target.get("selection") or "unknown"
    note = f" {target['note']}" if target.get("note") else ""
    if target.get("value") is None:
        return f"- target: none published ({target.get('source') or 'no source'}).{note}"
    figures = {target.get("metric", "au_f1_mean"): target["value"], **(target.get("also") or {})}
    parts = []
    for k, v in figures.items():
        ours = mean.get(k)
        got = f", this run {100 * ours:.1f} (Δ {100 * ours - float(v):+.1f})" if ours is not None else ""
        parts.append(f"{k} {float(v):.1f}{got}")
    return f"- target: {'; '.join(parts)} — {target.get('source', '')} [{sel}].{note}"


def summarise_experiment(out_dir: str | Path, recipe: Recipe | None = None, unit: str = "fold") -> dict:
    """Collect ``<out>/*/metrics.json`` into the paper-style table and write ``summary.{md,csv,json}``.

    Rows: one per fold, then ``mean`` and ``std`` (sample standard deviation over folds, ddof = 1; blank with
    one fold). Columns: per-AU F1, mean F1, AU AUC, UAR, WAR, and, where a run folder has a ``real_photos.json``
    (:func:`aufer.demo.real_photo_metrics`, written by ``benchmarks/compare_methods.py``), ``real_hvn`` (happy vs
    neutral accuracy) and ``real_au12`` (AU12 pair share) on real photos. Values in the files are fractions
    (0–1); the Markdown shows percentages. ``unit``: what the subfolders are (``fold``; ``seed`` for runs of
    one recipe over seeds), used in the labels. The recipe's ``target`` (or, without ``recipe``, that of the run
    folders' ``config.yaml``) goes into ``summary.json`` (``target``) and, with its source, into ``summary.md``.

    Raises:
        RecipeError: no finished fold under ``out_dir``.
    """
    out_dir = Path(out_dir)
    runs = sorted(p.parent for p in out_dir.glob("*/metrics.json"))
    if not runs:
        raise RecipeError(f"{out_dir}: no finished fold (no */metrics.json)")
    rows, labels, data, made = [], set(), {}, {}
    for r in runs:
        m = json.loads((r / "metrics.json").read_text())
        labels.add(m["selection"]["label"])
        made[r.name] = m
        row = {"fold": r.name, "selected_epoch": m["selection"]["epoch"]}
        au = m["test"].get("au", {})
        for k, v in (au.get("au_f1") or {}).items():
            row[k] = v
        for k in ("au_f1_mean", "au_auc_mean"):
            if k in au:
                row[k] = au[k]
        ex = m["test"].get("expr", {})
        for k in ("uar", "war"):
            if k in ex:
                row[k] = ex[k]
        real = r / "real_photos.json"
        if real.is_file():
            rp = json.loads(real.read_text())
            row["real_hvn"] = rp.get("happy_vs_neutral_accuracy")
            row["real_au12"] = rp.get("au12_smile_gt_neutral")
        rows.append(row)
        data = m.get("data", data)
    prov = _provenance(made, {r.name: r for r in runs}, unit)
    df = pd.DataFrame(rows).set_index("fold")
    num = df.drop(columns=["selected_epoch"]).astype(float)
    stats = pd.DataFrame({"mean": num.mean(), "std": num.std(ddof=1) if len(num) > 1 else num.mean() * np.nan}).T
    table = pd.concat([num, stats])
    name = recipe.name if recipe is not None else out_dir.name
    label = " / ".join(sorted(labels))
    meta = {"recipe": name, "commit": git_commit(), **prov, "selection": label, "folds": list(df.index),
            "data": {k: {"dataset": v.get("dataset"), "store": v.get("store")} for k, v in data.items()},
            "f1_threshold": 0.5, "unit": unit, "std_note": f"sample standard deviation over {unit}s (ddof = 1)"}
    summary = {**meta, "per_fold": json.loads(num.to_json(orient="index")),
               "mean": json.loads(stats.loc["mean"].to_json()), "std": json.loads(stats.loc["std"].to_json()),
               "target": experiment_target(out_dir, recipe)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    table.to_csv(out_dir / "summary.csv", index_label="fold")
    lines = [f"# {name}", "", f"- commit: {meta['commit']}",
             f"- model: {prov['model']}; backbone weights: **{prov['pretrained']}**"
             + (f"; overrides: {' '.join(prov['overrides'])}" if prov["overrides"] else ""),
             f"- selection: **{label}**",
             "- data: " + "; ".join(f"{k}: {v['dataset']} ({v['store']})" for k, v in meta["data"].items()),
             f"- {unit}s: {', '.join(meta['folds'])}; F1 at threshold 0.5; ± = {meta['std_note']}"]
    if summary["target"] is not None:
        lines.append(_target_line(summary["target"], summary["mean"]))
    lines += ["", _markdown(table, summary["target"])]
    if "test-selected" in label:
        lines.insert(2, "> **test-selected**: epochs chosen on the test split, as the reference code does; "
                        "not a held-out estimate.")
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


def _row_provenance(summary: dict) -> str:
    """What a table row adds to its label: the model built when it is not the recipe's name, ``random weights``
    when no backbone was pretrained, and the ``--set`` overrides."""
    parts = []
    if summary.get("model") and summary["model"] not in summary["recipe"]:
        parts.append(f"model {summary['model']}")
    if summary.get("pretrained") == "random":
        parts.append("random weights")
    if summary.get("overrides"):
        parts.append("--set " + " ".join(summary["overrides"]))
    return "".join(f"; {p}" for p in parts)


def _provenance(made: dict[str, dict], folders: dict[str, Path] | None = None, unit: str = "fold") -> dict:
    """What the folds' ``metrics.json`` say was run: ``{"recipe_hash", "model", "pretrained", "overrides",
    "run_commits"}``. Folds of different resolved recipes are refused (a summary never mixes recipes); runs from
    before provenance was recorded give ``None`` entries. Runs over seeds (``unit="seed"``) differ in their seed
    by design: their stored recipes (``config.yaml``) are compared without it."""
    hashes = {m.get("recipe_hash") for m in made.values()} - {None}
    if unit == "seed" and folders:
        recipes = {n: stored_recipe(f) for n, f in folders.items()}
        known = {n: {k: v for k, v in r.items() if k != "seed"} for n, r in recipes.items() if r is not None}
        if known:
            first, ref = next(iter(known.items()))
            for n, r in known.items():
                changes = recipe_changes(ref, r)
                if changes:
                    raise RecipeError(f"the seeds were run with different recipes ({first} → {n}: "
                                      f"{format_changes(changes)}); summarise runs of one recipe only")
        hashes = set(list(hashes)[:1])  # one recipe up to the seed: report the first run's hash
    if len(hashes) > 1:
        by = {h: [f for f, m in made.items() if m.get("recipe_hash") == h] for h in sorted(hashes)}
        raise RecipeError("the folds were run with different recipes (" + "; ".join(
            f"{', '.join(v)}: recipe {h}" for h, v in by.items()) + "); summarise folds of one recipe only")

    def one(key, default=None):
        vals = list(dict.fromkeys(json.dumps(m.get(key), sort_keys=True) for m in made.values()))
        return json.loads(vals[0]) if len(vals) == 1 else default

    model = one("model") or {}
    return {"recipe_hash": next(iter(hashes), None), "model": model.get("built") or model.get("requested"),
            "pretrained": one("pretrained", "mixed") or "not recorded", "overrides": one("overrides") or [],
            "run_commits": sorted({m["commit"] for m in made.values() if m.get("commit")})}


def _markdown(table: pd.DataFrame, target: dict | None = None) -> str:
    cols = list(table.columns)
    out = ["| fold | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for idx, row in table.iterrows():
        cells = ["" if not np.isfinite(v) else f"{100 * v:.1f}" for v in row.to_numpy(float)]
        out.append(f"| {idx} | " + " | ".join(cells) + " |")
    if "mean" in table.index and "std" in table.index:
        cells = [_fmt(table.at["mean", c], table.at["std", c]) if np.isfinite(table.at["mean", c]) else ""
                 for c in cols]
        out.append("| **mean ± std** | " + " | ".join(cells) + " |")
    figures = _target_figures(target)
    if figures:
        out.append("| **target** | " + " | ".join(f"{figures[c]:.1f}" if c in figures else "" for c in cols) + " |")
    return "\n".join(out)


def _target_figures(target: dict | None) -> dict[str, float]:
    """``{column: value in %}`` of a target (its metric and ``also``); empty without a published value."""
    if not target or target.get("value") is None:
        return {}
    return {target.get("metric", "au_f1_mean"): float(target["value"]),
            **{k: float(v) for k, v in (target.get("also") or {}).items()}}


def load_published(path: str | Path) -> dict[str, dict]:
    """Published numbers to show beside experiments: a YAML/JSON mapping ``method → {column: value}`` with
    values in percent (as papers print them), a ``source`` string per entry (paper, table, provenance tag) and
    optionally the labels ``dataset``, ``selection``, ``protocol`` and ``note`` (:data:`PUBLISHED_META`).

    Raises:
        RecipeError: unreadable file, not such a mapping, an entry without ``source``, or a figure that is not a
            number (one line naming the entry).
    """
    try:
        d = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: cannot read published numbers ({e})") from None
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise RecipeError(f"{path}: expected a mapping of method name → {{column: value in %, source: ...}}")
    for name, vals in d.items():
        if not str(vals.get("source") or "").strip():
            raise RecipeError(f"{path}: {name!r} has no source; every published figure names its paper and table "
                              "(source: \"...\")")
        for k, v in vals.items():
            if k not in PUBLISHED_META and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise RecipeError(f"{path}: {name!r}: {k} = {v!r} is not a number (labels: "
                                  f"{', '.join(PUBLISHED_META)})")
    return d


def compare(experiments: Sequence[str | Path], published: dict | None = None, std: bool = False,
            targets: bool = True) -> tuple[pd.DataFrame, str]:
    """Several experiments side by side: rows = experiments (their recipe names, with the selection label),
    columns = per-AU F1 and the metrics, in percent (mean over folds or seeds), plus rows of published numbers.
    With ``std`` the Markdown cells of experiments read ``mean ± std`` (the summaries' sample std; the table
    keeps the means).

    With ``targets``, each experiment whose recipe has a ``target:`` with a published value gets a row
    ``target of RECIPE (source; selection)`` right below it (once per distinct target); recipes whose target says
    that none is published are listed under the Markdown table. Published entries that name a ``dataset`` are
    shown only when some experiment uses that dataset (all of them when no summary names its data).

    Returns:
        ``(table, markdown)``.

    Raises:
        RecipeError: a folder without ``summary.json`` (run ``aufer experiment`` first).
    """
    rows, stds, seen, none_published, datasets = {}, {}, [], [], set()
    for e in experiments:
        p = Path(e) / "summary.json"
        if not p.is_file():
            raise RecipeError(f"{e}: no summary.json; run `aufer experiment RECIPE --out {e}` first")
        s = json.loads(p.read_text())
        label = f"{s['recipe']} [{s['selection']}; {len(s['folds'])} {s.get('unit', 'fold')}s{_row_provenance(s)}]"
        rows[label] = {k: (100 * v if v is not None else np.nan) for k, v in s["mean"].items()}
        stds[label] = {k: (100 * v if v is not None else np.nan) for k, v in s.get("std", {}).items()}
        datasets |= {str(v.get("dataset")).upper() for v in (s.get("data") or {}).values() if v.get("dataset")}
        target = s["target"] if "target" in s else experiment_target(e)
        if not targets or not target or target in seen:
            continue
        seen.append(target)
        if target.get("value") is None:
            none_published.append(f"{s['recipe']}: {target.get('source') or 'no source'}"
                                  + (f" ({target['note']})" if target.get("note") else ""))
            continue
        rows[f"target of {s['recipe']} ({target.get('source', '')}; {target.get('selection') or 'unknown'})"] = \
            _target_figures(target)
    for name, vals in (published or {}).items():
        ds = vals.get("dataset")
        if ds and datasets and str(ds).upper() not in datasets:
            continue
        tags = "; ".join(str(vals[k]) for k in ("source", "selection") if vals.get(k))
        rows[f"{name} (published{'; ' + tags if tags else ''})"] = {
            k: float(v) for k, v in vals.items() if k not in PUBLISHED_META}
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(list(rows))  # from_dict reorders sparse rows
    au_cols = sorted([c for c in table.columns if c.startswith("AU") and c[2:].isdigit()], key=lambda c: int(c[2:]))
    rest = [c for c in ("au_f1_mean", "au_auc_mean", "uar", "war", "real_hvn", "real_au12") if c in table.columns]
    table = table[au_cols + rest]
    md = ["| method | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    for idx, row in table.iterrows():
        cells = []
        for c, v in zip(table.columns, row.to_numpy(float)):
            sd = stds.get(idx, {}).get(c, np.nan) if std else np.nan
            cells.append("" if not np.isfinite(v) else f"{v:.1f} ± {sd:.1f}" if np.isfinite(sd) else f"{v:.1f}")
        md.append(f"| {idx} | " + " | ".join(cells) + " |")
    if none_published:
        md += ["", "No published target: " + "; ".join(none_published)]
    return table, "\n".join(md)
