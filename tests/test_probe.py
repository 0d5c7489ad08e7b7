"""The linear expression probe: the closed-form fit, its place in JointNet, and the engine fitting it before
training (the AU side then trains alone)."""

import json

import numpy as np
import pytest
import torch

from engine_data import au_store, expr_store, tiny_recipe

from aufer.models import create_model
from aufer.models.probe import MISSING_CLASS_LOGIT, LinearProbe, fit_logistic, source_balanced_weights


def _blobs(n_per, centres, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c, 1.0, (n_per, d)) + 5.0 for c in centres])
    y = np.repeat(np.arange(len(centres)), n_per)
    return x, y


def _probe_probs(fitted, x):
    p = LinearProbe(x.shape[1], len(fitted["bias"]))
    p.set(fitted["weight"], fitted["bias"], fitted["mean"], fitted["scale"])
    with torch.no_grad():
        return torch.softmax(p(torch.as_tensor(x, dtype=torch.float32)), 1).double().numpy()


@pytest.mark.parametrize("classes", [(0, 2, 3), (1, 3)])  # multinomial, and scikit-learn's binary case
def test_fit_matches_scikit_learn_and_gives_missing_classes_no_mass(classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y0 = _blobs(30, [np.eye(6)[k] * 2.5 for k in range(len(classes))])
    y = np.array(classes)[y0]
    w = np.where(y == classes[0], 2.0, 1.0)
    fitted = fit_logistic(x, y, 4, c=0.05, sample_weight=w)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000)).fit(
        x, y, logisticregression__sample_weight=w)
    probs = _probe_probs(fitted, x)
    np.testing.assert_allclose(probs[:, list(classes)], ref.predict_proba(x), atol=1e-5)
    missing = [k for k in range(4) if k not in classes]
    assert probs[:, missing].max() < 1e-10 and (fitted["bias"][missing] == MISSING_CLASS_LOGIT).all()
    assert fitted["classes_seen"] == list(classes) and fitted["train_accuracy"] > 0.8


def test_fit_and_probe_errors():
    x, y = _blobs(10, [np.zeros(6)])
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_logistic(x, y, 3, c=1.0)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        fit_logistic(x, np.full(10, 5), 3, c=1.0)
    p = LinearProbe(6, 3)
    assert not p.is_fitted and torch.equal(p(torch.randn(2, 6)), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="6 features and 3 classes"):
        p.set(np.zeros((3, 5)), np.zeros(3), np.zeros(6), np.ones(6))


def test_source_balanced_weights():
    w = source_balanced_weights(["real"] * 2 + ["synthetic"] * 8)
    assert w.mean() == pytest.approx(1.0) and w[:2].sum() == pytest.approx(w[2:].sum())


def test_probe_needs_frozen_features_and_replaces_the_expression_head():
    kw = dict(pretrained=False, input_size=64, au_to_expr=False)
    for bad in (dict(features="stages", freeze_stages=3), dict(features="grid", freeze_stages=2)):
        with pytest.raises(ValueError, match="frozen features"):
            create_model("aufer_lite.lite0", expr_probe=True, **kw, **bad)
    with pytest.raises(ValueError, match="au_to_expr"):
        create_model("aufer_lite.lite0", pretrained=False, input_size=64, features="grid", freeze_stages=3,
                     expr_probe=True)
    m = create_model("aufer_lite.lite0", features="grid", freeze_stages=3, expr_probe=True, **kw).eval()
    assert m.expr_head is None and not m.trains_expression and m.probe_dim == 16 * (40 + 112)
    rng = np.random.default_rng(0)
    m.expr_probe.set(rng.normal(size=(7, m.probe_dim)), rng.normal(size=7), rng.normal(size=m.probe_dim),
                     rng.uniform(0.5, 2, m.probe_dim))
    x, lm = torch.randn(2, 3, 3, 64, 64), torch.rand(2, 3, 478, 3) * 64
    with torch.no_grad():
        out = m(x, lm)["expr"]
        np.testing.assert_allclose(out, m.expr_probe(m.probe_features(x)), rtol=1e-5, atol=1e-4)
        # the probe reads the frozen maps only: fine-tuning the stride-32 stage does not move it
        m.backbone.net._blocks[-1]._project_conv.weight.add_(1.0)
        np.testing.assert_allclose(m(x, lm)["expr"], out, rtol=1e-5, atol=1e-4)
    assert not any(p.requires_grad for p in m.expr_probe.parameters())


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe_stores")
    return {"au": au_store(d / "au.sqlite"), "expr": expr_store(d / "expr.sqlite")}


def _probe_recipe(stores, **over):
    from aufer.engine.recipe import load

    model = {"name": "aufer_lite.lite0", "args": {"input_size": 32, "features": "grid", "freeze_stages": 3,
                                                  "expr_probe": True, "au_to_expr": False, "dim": 16}}
    return load(values=tiny_recipe(stores["au"], stores["expr"], model=model, train={"epochs": 1}, **over))


def test_engine_fits_the_probe_before_training_and_trains_the_au_side_alone(stores, tmp_path):
    from aufer.engine.runner import fit
    from aufer.models import load_model

    m = fit(_probe_recipe(stores), tmp_path / "run", fold="1-1", progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    probe = run["expr_probe"]
    assert probe["n_clips"] == run["data"]["expr"]["train_items"] and probe["sources"] == {"synthetic": 18}
    assert m["expr_probe"] == probe and m["test"]["expr"]["uar"] > 0.6  # brightness classes are separable
    steps = __import__("pandas").read_csv(tmp_path / "run" / "steps.csv")
    assert (steps["loss_au"] > 0).all() and (steps["loss_expr"] == 0).all()  # no SGD on expression batches
    best = load_model(tmp_path / "run" / "best.safetensors")
    assert best.expr_probe.is_fitted
    # a second run of the same recipe fits the same probe (the fit is deterministic, so resuming refits it)
    fit(_probe_recipe(stores), tmp_path / "again", fold="1-1", progress=False)
    again = load_model(tmp_path / "again" / "best.safetensors")
    for a, b in zip(best.expr_probe.state_dict().values(), again.expr_probe.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_engine_probe_mistakes_are_recipe_errors(stores, tmp_path):
    from aufer.engine.recipe import RecipeError, load
    from aufer.engine.runner import fit

    model = {"name": "aufer_lite.lite0", "args": {"input_size": 32, "features": "grid", "freeze_stages": 3,
                                                  "expr_probe": True, "au_to_expr": False, "dim": 16}}
    only_expr = load(values=tiny_recipe(None, stores["expr"], model=model, train={"epochs": 1},
                                        select={"metric": ["uar"]}))
    with pytest.raises(RecipeError, match="nothing is left to train"):
        fit(only_expr, tmp_path / "a", fold="1", progress=False)
    only_au = load(values=tiny_recipe(stores["au"], None, model=model, train={"epochs": 1},
                                      select={"metric": ["au_f1_mean"]}))
    with pytest.raises(RecipeError, match="add data.expr"):
        fit(only_au, tmp_path / "b", fold="1", progress=False)


def test_auxiliary_sgd_head_trains_while_the_probe_predicts(stores, tmp_path):
    """expr_aux: "expr" stays the probe's, "expr_train" is the SGD head's, and the joint loss trains on it."""
    from aufer.engine.recipe import load
    from aufer.engine.runner import fit
    from aufer.models import load_model

    with pytest.raises(ValueError, match="set expr_probe true"):
        create_model("aufer_lite.lite0", pretrained=False, input_size=64, expr_aux=True)
    m = create_model("aufer_lite.lite0", pretrained=False, input_size=64, features="grid", freeze_stages=3,
                     expr_probe=True, expr_aux=True).eval()  # au_to_expr (the default) is allowed on the aux head
    assert m.trains_expression and m.au_to_expr is not None
    x, lm = torch.randn(2, 1, 3, 64, 64), torch.rand(2, 1, 478, 3) * 64
    with torch.no_grad():
        out = m(x, lm)
    assert out["expr_train"].shape == out["expr"].shape == (2, 7)
    assert torch.equal(out["expr"], torch.zeros(2, 7))  # the unfitted probe; the aux head is not it
    assert not torch.equal(out["expr_train"], out["expr"])

    model = {"name": "aufer_lite.lite0", "args": {"input_size": 32, "features": "grid", "freeze_stages": 3,
                                                  "expr_probe": True, "expr_aux": True, "dim": 16}}
    r = load(values=tiny_recipe(stores["au"], stores["expr"], model=model, train={"epochs": 1}))
    fit(r, tmp_path / "run", fold="1-1", progress=False)
    steps = __import__("pandas").read_csv(tmp_path / "run" / "steps.csv")
    assert (steps["loss_expr"] > 0).all()
    plain = load(values=tiny_recipe(stores["au"], stores["expr"], model={**model, "args": {
        **model["args"], "expr_aux": False, "au_to_expr": False}}, train={"epochs": 1}))
    fit(plain, tmp_path / "plain", fold="1-1", progress=False)
    # the probe is fitted on the frozen features before training either way: the same probe
    a, b = load_model(tmp_path / "run" / "best.safetensors"), load_model(tmp_path / "plain" / "best.safetensors")
    torch.testing.assert_close(a.expr_probe.linear.weight, b.expr_probe.linear.weight)
