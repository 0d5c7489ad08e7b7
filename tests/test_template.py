"""The template method (aufer.methods._template): importing its folder registers its model, loss, step and
importer; it trains one step through the engine and comes back from its checkpoint by its registered name; its
official layout imports with `aufer import template_au`. This is what a new method's own test looks like."""

import json

import pytest
import torch
from typer.testing import CliRunner

from engine_data import au_store, tiny_recipe

from aufer import vocab
from aufer.cli import app
from aufer.engine.recipe import load
from aufer.engine.runner import fit
from aufer.methods import _template
from aufer.methods._template.official import official_key_map
from aufer.models import IMPORTERS, create_model, list_models, load_model
from aufer.training import LOSSES, STEPS


def test_importing_the_folder_registers_it():
    assert "template_au" in list_models() and "template_au.tiny" in list_models(tags=True)
    assert LOSSES["template_au"] is _template.template_au_loss and LOSSES["template_au"].uses_class_weights
    assert STEPS["template_au"] is _template.template_au_step
    assert IMPORTERS["template_au"].convert.__module__ == "aufer.methods._template.official"
    m = create_model("template_au")  # the default tag: BP4D's 12 AUs at 32 px
    assert m.config["name"] == "template_au.tiny" and m.aus == vocab.dataset_aus("BP4D")
    out = m(m.preprocess(torch.zeros(2, 3, 32, 32, 3, dtype=torch.uint8)))
    assert out["au"].shape == (2, 3, 12) and out["expr"].shape == (2, 0)


def test_one_training_step_through_the_engine(tmp_path):
    """The engine finds the template's model, loss and step by the names in a recipe, computes the class weights
    its loss asks for, trains, selects, tests, and the selected checkpoint loads back by its registered name."""
    store = au_store(tmp_path / "au.sqlite", aus=(1, 12), frames=8)
    r = load(values=tiny_recipe(store, model={"name": "template_au.tiny", "args": {"width": 4}},
                                train={"epochs": 1, "loss": "template_au", "step": "template_au",
                                       "max_steps_per_epoch": 1}))
    m = fit(r, tmp_path / "run", progress=False)
    assert m["test"]["au"]["au_f1_mean"] is not None and m["selection"]["epoch"] == 1
    steps = (tmp_path / "run" / "epochs.csv").read_text().splitlines()
    assert len(steps) == 2 and "loss_au" in steps[0]  # one epoch, the template's own log key
    back = load_model(tmp_path / "run")
    assert type(back) is _template.TemplateAU and back.aus == (1, 12)


def test_aufer_import_template_round_trip_and_option_errors(tmp_path):
    """`aufer import NAME` takes each importer's options from the importer itself (no per-method code in the CLI):
    a round trip keeps the weights; a missing, unknown or out-of-range option is one line naming the options."""
    torch.manual_seed(0)
    src = create_model("template_au.tiny", aus=list(vocab.dataset_aus("DISFA")), width=4)
    official = {o: src.state_dict()[a] for a, o in official_key_map(src).items()}
    torch.save({"state_dict": official}, tmp_path / "official.pth")
    runner = CliRunner()
    r = runner.invoke(app, ["import", "template_au", str(tmp_path / "official.pth"), "--out", str(tmp_path / "m"),
                            "--dataset", "disfa"])
    assert r.exit_code == 0, r.stderr
    back = load_model(tmp_path / "m")
    assert back.aus == vocab.dataset_aus("DISFA")
    for k, v in src.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["source"] == IMPORTERS["template_au"].source and meta["imported_from"].endswith("official.pth")

    def one_line(args, *needles):
        res = runner.invoke(app, ["import", *args])
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        for n in needles:
            assert n in lines[0], (n, lines[0])

    ckpt, out = str(tmp_path / "official.pth"), str(tmp_path / "m2")
    one_line(["template_au", ckpt, "--out", out, "--dataset", "CK+"], "--dataset must be one of BP4D, DISFA")
    one_line(["template_au", ckpt, "--out", out, "--pair", "x"], "unexpected '--pair'", "--dataset BP4D|DISFA")
    one_line(["nosuch", ckpt, "--out", out], "no importer for 'nosuch'", "mdhr", "ssm")
    one_line(["mdhr", ckpt, "--out", out, "--dataset", "BP4D"], "aufer import mdhr needs --backbone resnet50|swin_b")
    one_line(["mdhr", ckpt, "--out", out, "--dataset", "BP4D", "--backbone", "resnet50", "--k", "x"],
             "--k takes a number")


def test_aufer_models_lists_importers_with_their_options():
    r = CliRunner().invoke(app, ["models"])
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "aufer import mdhr CKPT --out DIR --dataset BP4D|DISFA --backbone resnet50|swin_b [--k INT, default 5]" in text
    assert "aufer import ssm CKPT --out DIR --pair bp4d_dfew|" in text
    assert "aufer evaluate RUN --released ssm (test-tuned)" in text


@pytest.mark.parametrize("name", ["ssm", "nosuch"])
def test_evaluate_released_is_looked_up_by_name(tmp_path, name):
    """`--released NAME` names an evaluator of the table; an unknown name is one line listing the known ones, before
    any work (the run folder here is empty)."""
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--released", name])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "Traceback" not in r.stderr
    if name == "nosuch":
        assert "--released nosuch: no such evaluator; known: ssm" in lines[0]
    else:
        assert "no such evaluator" not in lines[0]
