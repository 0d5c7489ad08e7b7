"""`aufer table --std` over runs of one recipe with several seeds (benchmarks/compare_methods.py's layout): the
summary over seeds, the real-photo columns, and mean ± std cells."""

import json

import numpy as np
import pytest

from aufer.engine.experiment import compare, summarise_experiment


def _run(folder, au_f1, uar, real=None):
    folder.mkdir(parents=True)
    m = {"selection": {"label": "validation-selected", "epoch": 3},
         "test": {"au": {"au_f1": {"AU1": au_f1, "AU12": au_f1}, "au_f1_mean": au_f1},
                  "expr": {"uar": uar, "war": uar + 0.1}}}
    (folder / "metrics.json").write_text(json.dumps(m))
    if real is not None:
        (folder / "real_photos.json").write_text(json.dumps({"happy_vs_neutral_accuracy": real[0],
                                                             "au12_smile_gt_neutral": real[1]}))


def test_seeds_summary_and_std_cells(tmp_path):
    for i, (f1, uar, real) in enumerate([(0.2, 0.5, (0.8, 0.9)), (0.4, 0.7, (0.9, 1.0)), (0.3, 0.6, (1.0, 0.8))]):
        _run(tmp_path / "joint" / f"seed{i}", f1, uar, real)
    _run(tmp_path / "au-only" / "seed0", 0.5, 0.1)
    s = summarise_experiment(tmp_path / "joint", unit="seed")
    assert s["folds"] == ["seed0", "seed1", "seed2"] and s["unit"] == "seed" and "over seeds" in s["std_note"]
    assert s["mean"]["au_f1_mean"] == pytest.approx(0.3) and s["std"]["au_f1_mean"] == pytest.approx(0.1)
    assert s["mean"]["real_hvn"] == pytest.approx(0.9) and s["std"]["real_au12"] == pytest.approx(0.1)
    assert "seeds: seed0, seed1, seed2" in (tmp_path / "joint" / "summary.md").read_text()
    summarise_experiment(tmp_path / "au-only", unit="seed")
    tab, md = compare([tmp_path / "joint", tmp_path / "au-only"], std=True)
    assert list(tab.columns) == ["AU1", "AU12", "au_f1_mean", "uar", "war", "real_hvn", "real_au12"]
    row = next(line for line in md.splitlines() if line.startswith("| joint [validation-selected; 3 seeds]"))
    assert "30.0 ± 10.0" in row and "90.0 ± 10.0" in row
    one = next(line for line in md.splitlines() if line.startswith("| au-only"))
    assert "50.0 |" in one and "±" not in one and np.isnan(tab.loc[tab.index[1], "real_hvn"])  # no real photos
    _, plain = compare([tmp_path / "joint"])
    assert "±" not in plain


def test_every_compare_methods_run_builds_a_recipe_its_model_accepts():
    """benchmarks/compare_methods.py's recipes pass the engine's model check (no argument of the demo model leaks
    into a method's own model; no data is opened)."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from aufer.engine.build import check_model

    path = Path(__file__).parents[1] / "benchmarks" / "compare_methods.py"
    spec = importlib.util.spec_from_file_location("compare_methods", path)
    cm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cm)
    data = SimpleNamespace(au_store="au.sqlite", au_split="au.json", expr_store="expr.sqlite", expr_split="expr.json")
    for name in cm.RUNS:
        r = cm._recipe(name, data, 112, 1, 0, None, 1.0)
        check_model(r)
        assert r.model.args.get("input_size") in (112, 128), name
    s1 = cm._recipe("graphau", data, 112, 1, 0, None, 1.0)
    s2 = cm._recipe("graphau-s2", data, 112, 1, 0, None, 1.0, init_from=Path("s1/best.safetensors"))
    assert s2.model.args["init_from"] == str(Path("s1/best.safetensors"))
    assert s2.model.name.endswith("_stage2") and s2.train.loss_args == {"lam": 0.01}
    assert s2.optim.lr == s1.optim.lr / 10
    assert s2.optim.groups["backbone"]["lr"] == s1.optim.groups["backbone"]["lr"] / 10
    assert cm._recipe("graphau-2x", data, 112, 3, 0, None, 1.0).train.epochs == 6  # stage 2's steps in one stage
