"""Experiments: a recipe over every fold of its protocol, and paper-style tables.

:func:`run_experiment` trains one run per fold — BP4D and DISFA 3 folds, DFEW and MAFW 5, FERV39K 1, a joint
recipe every (expression fold, AU fold) pair — into ``<out>/<fold>/``, skips folds that already finished, and
writes ``summary.{md,csv,json}``: per-AU F1 per fold and mean ± std over folds, mean F1, UAR and WAR mean ± std,
labelled with the recipe, commit, selection mode and data. :func:`compare` puts several experiments side by
side (rows = methods, columns = AUs and metrics), optionally beside published numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml

from aufer.engine.build import fold_name, open_store, parse_fold, protocol_folds
from aufer.engine.logs import git_commit
from aufer.engine.recipe import Recipe, RecipeError
from aufer.engine.runner import fit, is_finished

__all__ = ["experiment_folds", "run_experiment", "summarise_experiment", "compare", "load_published"]


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
                   progress: bool = True) -> dict:
    """Run (or finish) every fold of ``recipe`` under ``out_dir`` and write the summary table.

    A fold whose run folder has ``metrics.json`` is skipped; one with a training state is resumed.

    Returns:
        The summary (as in ``summary.json``).
    """
    out_dir = Path(out_dir)
    folds = experiment_folds(recipe)
    for f in folds:
        run_dir = out_dir / fold_name(parse_fold(recipe, f))
        if is_finished(run_dir):
            if console is not None:
                console.print(f"{run_dir.name}: finished, skipped")
            continue
        fit(recipe, run_dir, fold=f, resume=(run_dir / "state").exists(), device=device, console=console,
            progress=progress)
    return summarise_experiment(out_dir, recipe)


def _fmt(mean: float, std: float, pct: bool = True) -> str:
    k = 100.0 if pct else 1.0
    return f"{k * mean:.1f} ± {k * std:.1f}" if np.isfinite(std) else f"{k * mean:.1f}"


def summarise_experiment(out_dir: str | Path, recipe: Recipe | None = None, unit: str = "fold") -> dict:
    """Collect ``<out>/*/metrics.json`` into the paper-style table and write ``summary.{md,csv,json}``.

    Rows: one per fold, then ``mean`` and ``std`` (sample standard deviation over folds, ddof = 1; blank with
    one fold). Columns: per-AU F1, mean F1, AU AUC, UAR, WAR, and, where a run folder has a ``real_photos.json``
    (:func:`aufer.demo.real_photo_metrics`, written by ``benchmarks/compare_methods.py``), ``real_hvn`` (happy vs
    neutral accuracy) and ``real_au12`` (AU12 pair share) on real photos. Values in the files are fractions
    (0–1); the Markdown shows percentages. ``unit``: what the subfolders are (``fold``; ``seed`` for runs of
    one recipe over seeds), used in the labels.

    Raises:
        RecipeError: no finished fold under ``out_dir``.
    """
    out_dir = Path(out_dir)
    runs = sorted(p.parent for p in out_dir.glob("*/metrics.json"))
    if not runs:
        raise RecipeError(f"{out_dir}: no finished fold (no */metrics.json)")
    rows, labels, data = [], set(), {}
    for r in runs:
        m = json.loads((r / "metrics.json").read_text())
        labels.add(m["selection"]["label"])
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
    df = pd.DataFrame(rows).set_index("fold")
    num = df.drop(columns=["selected_epoch"]).astype(float)
    stats = pd.DataFrame({"mean": num.mean(), "std": num.std(ddof=1) if len(num) > 1 else num.mean() * np.nan}).T
    table = pd.concat([num, stats])
    name = recipe.name if recipe is not None else out_dir.name
    label = " / ".join(sorted(labels))
    meta = {"recipe": name, "commit": git_commit(), "selection": label, "folds": list(df.index),
            "data": {k: {"dataset": v.get("dataset"), "store": v.get("store")} for k, v in data.items()},
            "f1_threshold": 0.5, "unit": unit, "std_note": f"sample standard deviation over {unit}s (ddof = 1)"}
    summary = {**meta, "per_fold": json.loads(num.to_json(orient="index")),
               "mean": json.loads(stats.loc["mean"].to_json()), "std": json.loads(stats.loc["std"].to_json())}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    table.to_csv(out_dir / "summary.csv", index_label="fold")
    lines = [f"# {name}", "", f"- commit: {meta['commit']}", f"- selection: **{label}**",
             "- data: " + "; ".join(f"{k}: {v['dataset']} ({v['store']})" for k, v in meta["data"].items()),
             f"- {unit}s: {', '.join(meta['folds'])}; F1 at threshold 0.5; ± = {meta['std_note']}", "",
             _markdown(table)]
    if "test-selected" in label:
        lines.insert(2, "> **test-selected**: epochs chosen on the test split, as the reference code does; "
                        "not a held-out estimate.")
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    out = ["| fold | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for idx, row in table.iterrows():
        cells = ["" if not np.isfinite(v) else f"{100 * v:.1f}" for v in row.to_numpy(float)]
        out.append(f"| {idx} | " + " | ".join(cells) + " |")
    if "mean" in table.index and "std" in table.index:
        cells = [_fmt(table.at["mean", c], table.at["std", c]) if np.isfinite(table.at["mean", c]) else ""
                 for c in cols]
        out.append("| **mean ± std** | " + " | ".join(cells) + " |")
    return "\n".join(out)


def load_published(path: str | Path) -> dict[str, dict[str, float]]:
    """Published numbers to show beside experiments: a YAML/JSON mapping ``method → {column: value}`` with
    values in percent (as papers print them) and a ``source`` string per method.

    Raises:
        RecipeError: unreadable file or not such a mapping.
    """
    try:
        d = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: cannot read published numbers ({e})") from None
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise RecipeError(f"{path}: expected a mapping of method name → {{column: value in %, source: ...}}")
    return d


def compare(experiments: Sequence[str | Path], published: dict | None = None, std: bool = False
            ) -> tuple[pd.DataFrame, str]:
    """Several experiments side by side: rows = experiments (their recipe names, with the selection label),
    columns = per-AU F1 and the metrics, in percent (mean over folds or seeds), plus rows of published numbers.
    With ``std`` the Markdown cells of experiments read ``mean ± std`` (the summaries' sample std; the table
    keeps the means).

    Returns:
        ``(table, markdown)``.

    Raises:
        RecipeError: a folder without ``summary.json`` (run ``aufer experiment`` first).
    """
    rows, stds = {}, {}
    for e in experiments:
        p = Path(e) / "summary.json"
        if not p.is_file():
            raise RecipeError(f"{e}: no summary.json; run `aufer experiment RECIPE --out {e}` first")
        s = json.loads(p.read_text())
        label = f"{s['recipe']} [{s['selection']}; {len(s['folds'])} {s.get('unit', 'fold')}s]"
        rows[label] = {k: (100 * v if v is not None else np.nan) for k, v in s["mean"].items()}
        stds[label] = {k: (100 * v if v is not None else np.nan) for k, v in s.get("std", {}).items()}
    for name, vals in (published or {}).items():
        src = vals.get("source", "")
        rows[f"{name} (published{'; ' + src if src else ''})"] = {k: float(v) for k, v in vals.items() if k != "source"}
    table = pd.DataFrame.from_dict(rows, orient="index")
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
    return table, "\n".join(md)
