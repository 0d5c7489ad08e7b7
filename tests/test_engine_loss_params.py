"""Uncertainty weighting and MAL (reconstructed) with the Meta-Weight-Net
through fit, with a mid-epoch resume that must be bit-identical, and class weights asked for by the step."""

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from engine_data import au_store, crash_copy, expr_store, tiny_recipe
from aufer.engine.recipe import load
from aufer.engine.runner import fit
from aufer.engine.state import load_latest


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    return {"au": au_store(d / "au.sqlite"), "expr": expr_store(d / "expr.sqlite")}


def _resume_identical(r, tmp_path):
    full = tmp_path / "full"
    fit(r, full, fold="1-1", progress=False)
    part = tmp_path / "part"
    crash_copy(full, part)
    fit(r, part, fold="1-1", resume=True, progress=False)
    a, b = load_file(str(full / "last.safetensors")), load_file(str(part / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    return full, part


@pytest.mark.parametrize("form", ["common", "classification"])
def test_uncertainty_through_fit_and_resume(stores, tmp_path, form):
    r = load(values=tiny_recipe(stores["au"], stores["expr"], train={"epochs": 2, "checkpoint_every": 4,
             "loss": "uncertainty", "loss_args": {"form": form, "lr": 0.05}}))
    full, part = _resume_identical(r, tmp_path)
    sa, sb = load_latest(full / "state"), load_latest(part / "state")
    assert torch.equal(sa["loss_params"]["log_vars"], sb["loss_params"]["log_vars"])
    assert not torch.equal(sa["loss_params"]["log_vars"], torch.zeros(2))
    assert [g["name"] for g in sa["optimizer"]["param_groups"]][-1] == "loss_params"
    ep = pd.read_csv(full / "epochs.csv")
    assert "train_uw_s_au" in ep and "train_uw_weight_expr" in ep


def test_mal_mwn_resume_and_step_class_weights(stores, tmp_path):
    r = load(values=tiny_recipe(stores["au"], stores["expr"], train={"epochs": 2, "checkpoint_every": 4, "step": "mal",
             "step_args": {"variant": "mwn"}}))  # no loss_args.class_weights: the step asks for them
    full, part = _resume_identical(r, tmp_path)
    sa, sb = load_latest(full / "state"), load_latest(part / "state")
    for k, v in sa["step_state"]["mal_wnet"]["model"].items():
        assert torch.equal(v, sb["step_state"]["mal_wnet"]["model"][k])
    ep = pd.read_csv(full / "epochs.csv")
