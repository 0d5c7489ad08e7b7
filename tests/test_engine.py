"""The training engine: recipes, schedules, the loop, selection, exact resume, corrupted states, bad input."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine_data import au_store, crash_copy, expr_store, tiny_recipe

from aufer.engine import build as B
from aufer.engine.recipe import RecipeError, dump, load, parse_set
from aufer.engine.runner import TrainingError, evaluate_run, fit


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    return {"au": au_store(d / "au.sqlite"), "expr": expr_store(d / "expr.sqlite")}


# ------------------------------------------------------------------------------------------------ recipes
def test_unknown_key_is_named_with_the_valid_keys(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data:\n  au:\n    store: x.sqlite\n    batchsize: 4\n")
    with pytest.raises(RecipeError) as e:
        load(p)
    msg = str(e.value)
    assert "'data.au.batchsize'" in msg and "batch_size" in msg and "clip_len" in msg


@pytest.mark.parametrize("item, needle", [("train.epochs=many", "train.epochs: expected an integer"),
                                          ("schedule.per=week", "schedule.per: 'week' is not one of"),
                                          ("train.ema=yes", "train.ema"), ("trian.epochs=3", "'trian'")])
def test_mistyped_values_are_named(tmp_path, item, needle):
    p = tmp_path / "r.yaml"
    p.write_text("data: {au: {store: x.sqlite}}\n")
    with pytest.raises(RecipeError, match=needle.replace("(", r"\(")):
        load(p, [item])


def test_base_files_overrides_and_dump_round_trip(tmp_path):
    (tmp_path / "_base").mkdir()
    (tmp_path / "_base" / "optim.yaml").write_text("optim: {lr: 0.01, weight_decay: 0.1}\ntrain: {epochs: 7}\n")
    (tmp_path / "r.yaml").write_text("base: _base/optim.yaml\noptim: {lr: 0.02}\ndata: {au: {store: a.sqlite}}\n")
    r = load(tmp_path / "r.yaml", ["train.epochs=3", "optim.groups.backbone.lr=1e-4"])
    assert (r.name, r.optim.lr, r.optim.weight_decay, r.train.epochs) == ("r", 0.02, 0.1, 3)
    assert r.optim.groups == {"backbone": {"lr": 1e-4}}
    dump(r, tmp_path / "resolved.yaml")
    assert load(tmp_path / "resolved.yaml") == r
    assert parse_set(["a.b=[1, 2]", "c=x"]) == {"a": {"b": [1, 2]}, "c": "x"}
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        parse_set(["novalue"])


def test_schedules():
    from aufer.engine.recipe import Schedule

    cos = Schedule(name="cosine", warmup=2, warmup_start=0.0)
    f = [B.lr_factor(cos, t, 10) for t in range(11)]
    assert f[0] == 0 and f[1] == 0.5 and f[2] == 1.0 and f[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(f[2:], f[3:]))  # decays after warm-up
    ms = Schedule(name="multistep", milestones=[15, 25], gamma=0.1, per="epoch")  # SSM (methods.md §3.2)
    assert [B.lr_factor(ms, t, 30) for t in (0, 14, 15, 24, 25, 29)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_fold_parsing():
    r = load(values=tiny_recipe("a", "b"))
    assert B.parse_fold(r, "2-3") == {"expr": "2", "au": "3"}
    with pytest.raises(RecipeError, match="EXPR-AU"):
        B.parse_fold(r, "2")
    single = load(values=tiny_recipe("a"))
    assert B.parse_fold(single, 2) == {"au": "2", "expr": None}


# ---------------------------------------------------------------------------------------- bad input (API)
def test_data_mistakes_are_recipe_errors(stores, tmp_path):
    with pytest.raises(RecipeError, match="does not exist; make it with `aufer prepare"):
        fit(load(values=tiny_recipe(tmp_path / "none.sqlite")), tmp_path / "r0", progress=False)
    with pytest.raises(RecipeError, match="holds expression clips"):  # clips for an AU recipe
        fit(load(values=tiny_recipe(stores["expr"])), tmp_path / "r1", progress=False)
    with pytest.raises(RecipeError, match="fold '4' is not a fold of BP4D; its folds are 1, 2, 3"):
        fit(load(values=tiny_recipe(stores["au"])), tmp_path / "r2", fold="4", progress=False)
    with pytest.raises(RecipeError, match="unknown model 'nope'"):
        fit(load(values=tiny_recipe(stores["au"], model={"name": "nope"})), tmp_path / "r3", progress=False)
    with pytest.raises(RecipeError, match="unknown loss 'nope'"):
        fit(load(values=tiny_recipe(stores["au"], train={"loss": "nope"})), tmp_path / "r4", progress=False)
    with pytest.raises(RecipeError, match="the model has no group 'trunk'"):
        fit(load(values=tiny_recipe(stores["au"], optim={"groups": {"trunk": {"lr": 1.0}}})), tmp_path / "r5",
            progress=False)


def test_non_finite_loss_stops_and_keeps_the_last_good_state(stores, tmp_path):
    from aufer.training import LOSSES, joint_loss

    def nan_at_step_5(out_au, out_expr, au_b, expr_b, *, ctx, _n=[0]):
        _n[0] += 1
        res = joint_loss(out_au, out_expr, au_b, expr_b, ctx=ctx)
        if _n[0] >= 5:
            res["loss"] = res["loss"] * float("nan")
        return res

    LOSSES["nan_at_step_5"] = nan_at_step_5
    try:
        r = load(values=tiny_recipe(stores["au"], train={"loss": "nan_at_step_5", "epochs": 3, "checkpoint_every": 2}))
        with pytest.raises(TrainingError, match=r"the loss is nan at epoch \d, step \d.*last good checkpoint"):
            fit(r, tmp_path / "run", progress=False)
    finally:
        del LOSSES["nan_at_step_5"]
    meta = json.loads(next((tmp_path / "run" / "state").glob("step-*/meta.json")).read_text())
    assert meta["global_step"] <= 4  # nothing after the bad step was saved


# --------------------------------------------------------------------------------------------- training
def test_joint_training_learns_both_tasks_from_disjoint_labels(stores, tmp_path):
    """AU labels only in the AU store, expression labels only in the expression store: both losses fall and
    held-out test metrics are far above chance."""
    r = load(values=tiny_recipe(stores["au"], stores["expr"], train={"epochs": 4}))
    m = fit(r, tmp_path / "run", fold="1-1", progress=False)
    hist = json.loads((tmp_path / "run" / "state" / (tmp_path / "run" / "state" / "LATEST").read_text().strip()
                       / "meta.json").read_text())["history"]
    assert hist[-1]["train_loss_au"] < 0.9 * hist[0]["train_loss_au"]
    assert hist[-1]["train_loss_expr"] < 0.8 * hist[0]["train_loss_expr"]
    assert m["test"]["au"]["au_f1_mean"] > 0.7 and m["test"]["expr"]["uar"] > 0.6
    assert m["selection"]["label"] == "validation-selected" and m["selection"]["on"] == "val"
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    test_subjects = set(run["data"]["au"]["ids"]["test"])
    assert test_subjects == {"F007", "F015"}  # BP4D fold 1 (ME-GraphAU/MDHR naming) tests part3
    assert not test_subjects & set(run["data"]["au"]["ids"]["train"] + run["data"]["au"]["ids"]["val"])
    # every metric can be recomputed from the Parquet predictions
    import pandas as pd

    from aufer.engine.tables import metrics_from_tables

    au = pd.read_parquet(tmp_path / "run" / "predictions" / "test_au_frames.parquet")
    ex = pd.read_parquet(tmp_path / "run" / "predictions" / "test_expr_clips.parquet")
    assert set(au["subject"]) == test_subjects
    again = metrics_from_tables(au, ex)
    assert again["au_f1_mean"] == pytest.approx(m["test"]["au"]["au_f1_mean"])
    assert again["uar"] == pytest.approx(m["test"]["expr"]["uar"]) and again["confusion"] == m["test"]["expr"]["confusion"]
    # aufer evaluate recomputes the same numbers from the selected checkpoint
    ev = evaluate_run(tmp_path / "run", split="test", checkpoint="best")
    assert ev["metrics"]["au"]["au_f1_mean"] == pytest.approx(m["test"]["au"]["au_f1_mean"], abs=1e-6)
    flip = evaluate_run(tmp_path / "run", split="val", checkpoint="last", flip=True)
    assert flip["flip_tta"] and (tmp_path / "run" / "predictions" / "val_last_flip_au_frames.parquet").is_file()


def test_test_selection_is_labelled(stores, tmp_path):
    r = load(values=tiny_recipe(stores["au"], select={"mode": "test"}, train={"epochs": 1}))
    m = fit(r, tmp_path / "run", progress=False)
    assert m["selection"]["label"] == "test-selected" and m["selection"]["on"] == "test"
    assert m["val_at_selected"] is None


def _weights(path):
    return load_file(str(path))


def test_resume_from_a_mid_epoch_state_is_bit_identical(stores, tmp_path):
    """Train 2 epochs × 6 steps with a state every 4 steps and EMA + dropout on; restart from the state saved at
    epoch 2, step 2 and compare every final tensor with the uninterrupted run."""
    over = {"train": {"epochs": 2, "checkpoint_every": 4, "ema": 0.9},
            "model": {"name": "aufer_tiny_image", "args": {"input_size": 32, "width": 4, "dim": 16, "dropout": 0.3}}}
    r = load(values=tiny_recipe(stores["au"], **over))
    full = tmp_path / "full"
    fit(r, full, progress=False)
    part = tmp_path / "part"
    crash_copy(full, part)
    fit(r, part, resume=True, progress=False)
    a, b = _weights(full / "last.safetensors"), _weights(part / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((full / "metrics.json").read_text())["test"] == json.loads((part / "metrics.json").read_text())["test"]


def test_corrupted_state_falls_back_to_the_previous_good_one(stores, tmp_path, caplog):
    r = load(values=tiny_recipe(stores["au"], train={"epochs": 2}))
    run = tmp_path / "run"
    fit(r, run, progress=False)
    latest = run / "state" / (run / "state" / "LATEST").read_text().strip()
    data = (latest / "model.safetensors").read_bytes()
    (latest / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    from aufer.engine.state import load_latest

    with caplog.at_level("WARNING"):
        st = load_latest(run / "state")
    assert st["meta"]["_folder"] != str(latest) and "truncated or corrupted" in caplog.text
    assert latest.exists()  # the bad state is left for inspection, nothing overwritten
    (run / "best.safetensors").write_bytes(b"garbage")
    from aufer.models import CheckpointError, load_model

    with pytest.raises(CheckpointError, match="best.safetensors"):
        load_model(run / "best.safetensors")


def test_existing_run_needs_resume(stores, tmp_path):
    r = load(values=tiny_recipe(stores["au"], train={"epochs": 1}))
    fit(r, tmp_path / "run", progress=False)
    with pytest.raises(RecipeError, match="--resume"):
        fit(r, tmp_path / "run", progress=False)


def test_param_groups_get_their_learning_rates(stores):
    r = load(values=tiny_recipe(stores["au"], optim={"lr": 1e-3, "groups": {"backbone": {"lr": 1e-5}}}))
    model = B.build_model(r, (1, 12), ("a", "b", "c"))
    opt = B.build_optimizer(model, r.optim)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["backbone"] == 1e-5 and all(v == 1e-3 for k, v in lrs.items() if k != "backbone")
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_class_weights_follow_the_training_fold(stores):
    r = load(values=tiny_recipe(stores["au"]))
    data = B.build_data(r, {"au": "1", "expr": None})
    w = B.class_weights(data.au, data.aus)
    recs = data.au.records.of_subjects(data.au.split.train)
    rate = (recs.occurrence == 1).mean(0)
    expected = (1 / rate) / (1 / rate).sum() * len(rate)  # methods.md §1.1
    assert np.allclose(w, expected)


def test_every_shipped_recipe_validates():
    """Each recipe under configs/ (not the _base fragments) loads, names a registered model and builds its
    clip transforms (the demo recipe gets its stores from `aufer demo`: placeholders here)."""
    from pathlib import Path

    from aufer.datasets.transforms import ClipTransform
    from aufer.engine.recipe import read
    from aufer.models import is_model

    root = Path(__file__).parents[1] / "configs"
    recipes = [p for p in root.rglob("*.yaml") if "_base" not in p.parts and "published" not in p.parts]
    assert len(recipes) >= 7
    for p in recipes:
        tasks = [k for k in ("au", "expr") if k in (read(p).get("data") or {})]
        r = load(p, values={"data": {k: {"store": "placeholder.sqlite"} for k in tasks}})
        assert is_model(r.model.name), p
        for src in (r.data.au, r.data.expr):
            if src is not None:
                ClipTransform(**src.transform)


def test_mixup_bce_and_the_mixup_step(stores, tmp_path):
    from aufer.training.losses import masked_bce, mixup_bce

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 2, generator=g)
    y = torch.randint(0, 2, (3, 4, 2), generator=g)
    y[0, 0, 0] = -1
    assert torch.allclose(mixup_bce(logits, y, y, torch.full((3,), 0.3)), masked_bce(logits, y))
    # λ = 1 is the plain BCE of the first labels, whatever the partner's
    assert torch.allclose(mixup_bce(logits, y, 1 - y.clamp(0, 1), torch.ones(3)), masked_bce(logits, y))
    r = load(values=tiny_recipe(stores["au"], stores["expr"], train={"epochs": 1, "step": "mixup",
                                                                     "step_args": {"alpha": 0.4}}))
    m = fit(r, tmp_path / "run", fold="1-1", progress=False)
    assert np.isfinite(m["test"]["au"]["au_f1_mean"])
    import pandas as pd

    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    assert "loss_au_mixup" in steps and steps["loss_au_mixup"].notna().all()
