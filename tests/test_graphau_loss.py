"""ME-GraphAU's losses: the official relation coding, the stage-2 edge loss, and the recipe loss on known labels."""

import torch

from aufer.methods.graphau.loss import edge_labels, edge_loss, graphau_loss
from aufer.training.losses import LossContext


def test_edge_labels_follow_the_official_relation_lists():
    # tool/BP4D_deal_AU_relation.py: new_aus[:, j * n + k] = 2 * aus[:, j] + aus[:, k]
    y = torch.tensor([[1, 0, 1], [0, -1, 1]])
    rel = edge_labels(y)
    assert rel.shape == (2, 9)
    assert rel[0].tolist() == [3, 2, 3, 1, 0, 1, 3, 2, 3]
    assert rel[1].tolist() == [0, -1, 1, -1, -1, -1, 2, -1, 3]  # every pair with the unknown AU drops out


def test_edge_loss_is_cross_entropy_over_known_pairs():
    torch.manual_seed(0)
    logits = torch.randn(2, 9, 4)
    y = torch.tensor([[1, 0, 1], [0, -1, 1]])
    rel = edge_labels(y).reshape(-1)
    keep = rel >= 0
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 4)[keep], rel[keep])
    torch.testing.assert_close(edge_loss(logits, y), want)
    assert float(edge_loss(logits, torch.full((2, 3), -1))) == 0.0


def test_recipe_loss_adds_lambda_times_the_edge_loss_only_when_there_are_edges():
    torch.manual_seed(1)
    p = torch.rand(2, 1, 3, requires_grad=True)
    batch = {"au": torch.tensor([[[1, 0, 1]], [[0, 1, -1]]]), "valid": torch.ones(2, 1, dtype=torch.bool)}
    ctx = LossContext(au_weight=None)
    s1 = graphau_loss({"au_prob": p}, None, batch, None, ctx=ctx)
    assert float(s1["loss_edge"]) == 0.0 and torch.equal(s1["loss"].detach(), s1["loss_wa"])
    edges = torch.randn(2, 1, 9, 4, requires_grad=True)
    s2 = graphau_loss({"au_prob": p, "edge": edges}, None, batch, None, ctx=ctx, lam=0.5)
    torch.testing.assert_close(s2["loss"].detach(), s1["loss_wa"] + 0.5 * s2["loss_edge"])
    s2["loss"].backward()
    assert edges.grad is not None and p.grad is not None


def test_both_stages_train_through_the_engine_and_stage_two_starts_from_stage_one(tmp_path):
    """Two folds of each stage on a tiny SYNTHETIC BP4D-layout store through `aufer experiment` with the graphau
    loss; the stage-2 experiment names its stage-1 file once, ``init_from: …/{fold}/best.safetensors``: each fold
    starts from its own fold's stage-1 best checkpoint (non-strict, as the official code), records that file as
    its weights' source, and the folds summarise as one recipe."""
    import json

    from safetensors.torch import load_file

    from engine_data import au_store, tiny_recipe

    from aufer import vocab
    from aufer.engine.experiment import run_experiment
    from aufer.engine.recipe import load

    au = au_store(tmp_path / "au.sqlite", seqs=1, frames=4, size=64, aus=vocab.dataset_aus("BP4D"))
    base = dict(data={"au": {"store": str(au), "clip_len": 1, "eval_clip_len": 1, "batch_size": 4, "val_subjects": 1,
                             "transform": {"size": 64, "hflip": 0.5, "rotation": 0, "scale": 0, "shift": 0}}},
                train={"epochs": 1, "loss": "graphau", "max_steps_per_epoch": 2}, select={"metric": ["au_f1_mean"]},
                folds=["1", "2"])
    r1 = load(values=tiny_recipe(au, model={"name": "graphau.bp4d_resnet18_stage1", "args": {"input_size": 64}}, **base))
    s1 = run_experiment(r1, tmp_path / "s1", progress=False)
    assert len(s1["folds"]) == 2
    steps = (tmp_path / "s1" / "fold-1" / "steps.csv").read_text()
    assert "loss_wa" in steps and "loss_edge" in steps
    template = str(tmp_path / "s1" / "{fold}" / "best.safetensors")
    r2 = load(values=tiny_recipe(au, model={"name": "graphau.bp4d_resnet18_stage2",
                                            "args": {"input_size": 64, "init_from": template}},
                                 **{**base, "train": {**base["train"], "loss_args": {"lam": 0.05}}}))
    s2 = run_experiment(r2, tmp_path / "s2", progress=False)
    assert len(s2["folds"]) == 2
    for fold in ("fold-1", "fold-2"):
        best1 = tmp_path / "s1" / fold / "best.safetensors"
        run = json.loads((tmp_path / "s2" / fold / "run.json").read_text())
        assert run["pretrained"] == f"checkpoint {best1}"
        w1, w2 = load_file(str(best1)), load_file(str(tmp_path / "s2" / fold / "best.safetensors"))
        assert any("edge" in k for k in w2) and not any("edge_fc" in k for k in w1)
        cfg = json.loads((tmp_path / "s2" / fold / "best.json").read_text())
        assert cfg["model"]["init_from"] is None  # the trained weights are the checkpoint; rebuilding needs no file


def test_fold_and_seed_placeholders_in_model_args():
    import pytest

    from aufer.engine.build import run_model_args
    from aufer.engine.recipe import RecipeError

    args = {"init_from": "runs/s1/{fold}/seed{seed}/best.safetensors", "input_size": 64, "backbone": "resnet18"}
    assert run_model_args(args, "fold-2", 7) == {"init_from": "runs/s1/fold-2/seed7/best.safetensors",
                                                 "input_size": 64, "backbone": "resnet18"}
    with pytest.raises(RecipeError, match="has no fold"):
        run_model_args(args, None, 0)
    assert run_model_args({"init_from": "s1/seed{seed}.safetensors"}, None, 3) == {"init_from": "s1/seed3.safetensors"}


def test_evaluate_scores_an_imported_official_graphau_checkpoint(tmp_path):
    """`aufer import graphau` on a ME-GraphAU BP4D file in the official layout (random weights), then `aufer
    evaluate MODEL --recipe --fold 1`: the imported folder is scored on the fold's test subjects of a tiny
    SYNTHETIC BP4D-layout store with the official test framing (Resize 256 + CenterCrop 224); nothing is trained."""
    import json

    import pandas as pd
    import torch
    import yaml
    from typer.testing import CliRunner

    from engine_data import au_store, tiny_recipe

    from aufer import vocab
    from aufer.cli import app
    from aufer.methods.graphau.official import to_official_state_dict
    from aufer.models import create_model

    torch.manual_seed(0)
    src = create_model("graphau.bp4d_resnet18_stage1").eval()
    torch.save({"epoch": 1, "state_dict": to_official_state_dict(src, "bp4d")}, tmp_path / "cur_model_fold1.pth")
    runner = CliRunner()
    r = runner.invoke(app, ["import", "graphau", str(tmp_path / "cur_model_fold1.pth"), "--variant", "bp4d",
                            "--backbone", "resnet18", "--stage", "1", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.stderr
    au = au_store(tmp_path / "au.sqlite", seqs=1, frames=2, size=64, aus=vocab.dataset_aus("BP4D"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(au, data={"au": {"store": str(au), "clip_len": 1, "eval_clip_len": 1,
                                                                  "batch_size": 2, "val_subjects": 1}})))
    out = tmp_path / "eval"
    r = runner.invoke(app, ["evaluate", str(tmp_path / "m"), "--recipe", str(recipe), "--fold", "1", "--out", str(out),
                            "--set", "data.workers=0"])
    assert r.exit_code == 0, r.stderr + r.stdout
    m = json.loads((out / "metrics_test.json").read_text())
    assert m["model_name"] == "graphau.bp4d_resnet18_stage1" and m["aus_not_in_store"] == []
    assert 0.0 <= m["metrics"]["au"]["au_f1_mean"] <= 1.0
    frames = pd.read_parquet(out / "predictions" / "test_au_frames.parquet")
    assert len(frames) > 0 and {"AU01_p", "AU24_p"} <= set(frames.columns)
    assert frames["AU01_p"].between(0, 1).all()
