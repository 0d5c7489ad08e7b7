"""Issue 24, point 3: clear, early errors. A model's constraints are checked before any data loads
(:func:`aufer.engine.build.check_model`), pretrained weights that cannot be had offline are one line
(:class:`aufer.errors.HubUnavailable`) found without the hub client's retries, and ``--set a.b=null`` means the
default (assignments under a nulled key work). Offline: the Hugging Face cache is an empty temporary folder."""

import os
import subprocess
import sys
import time

import pytest
import yaml

from aufer.engine.build import check_model
from aufer.engine.recipe import RecipeError, from_dict, load, parse_set
from aufer.errors import HubUnavailable, UserMistake
from aufer.models import create_model

OFFLINE = ("cannot load 'microsoft/resnet-50' (offline, not in the Hugging Face cache): stage it in a local folder "
           "and pass --set model.args.model=DIR, or set --set model.args.pretrained=false to train from random weights")
CLIP_LEN = ("data.au.clip_len: MDHR's temporal pooling (k = 5) needs clips of at least 11 frames, not 4; set --set "
            "data.au.clip_len=16 (or model.args.mfd=false)")
TINY_RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                   layer_type="basic")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and an empty Hugging Face cache (HF_HOME), as on a machine that never downloaded anything."""
    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


def _recipe(model: dict, au: dict | None = None, **top) -> dict:
    """A recipe mapping whose store does not exist: check_model must not open it."""
    return {"model": model, "data": {"au": {"store": "no/such/store.sqlite", **(au or {})}}, **top}


# ------------------------------------------------------------------------------------------ hub failures
@pytest.mark.parametrize("name, fallback", [
    ("mdhr.bp4d_resnet50", "pretrained=false to train from random weights"),
    ("aufer_hf.resnet50", "hf_config='{model_type: resnet}' to build the architecture without files"),
])
def test_offline_hub_failure_is_one_line(offline, name, fallback):
    t0 = time.monotonic()
    with pytest.raises(HubUnavailable) as e:
        create_model(name)
    msg = str(e.value)
    assert isinstance(e.value, UserMistake) and isinstance(e.value, OSError)
    assert "\n" not in msg
    assert msg.startswith("cannot load 'microsoft/resnet-50' (offline, not in the Hugging Face cache)")
    assert "--set model.args.model=DIR" in msg and msg.endswith(fallback)
    assert time.monotonic() - t0 < 30  # no retries (the hub client waits 1+2+4+8+8 s between six attempts)


def test_offline_ssm_clip_is_one_line(offline):
    with pytest.raises(HubUnavailable, match=r"^cannot load 'openai/clip-vit-base-patch16' \(offline, not in the "
                                             r"Hugging Face cache\): .* --set model\.args\.pretrained=false"):
        create_model("ssm.bp4d_clip")


def test_missing_local_folder_is_one_line(offline, tmp_path):
    missing = tmp_path / "no_such_weights"
    with pytest.raises(HubUnavailable, match="no such local folder, and not a hub id"):
        create_model("mdhr.bp4d_resnet50", model=str(missing))


def test_hub_failure_found_before_any_data_loads(offline):
    r = from_dict(_recipe({"name": "mdhr.bp4d_resnet50", "args": {"model": "microsoft/resnet-50"}}))
    with pytest.raises(HubUnavailable) as e:
        check_model(r)  # the store does not exist: a store error would mean the data was opened first
    assert str(e.value) == OFFLINE
    # pretrained=false needs no files: the same recipe passes
    check_model(from_dict(_recipe({"name": "mdhr.bp4d_resnet50", "args": {"pretrained": False}})))


def test_transformers_errors_become_hub_unavailable():
    from aufer.models._factory import hub_errors

    with pytest.raises(HubUnavailable, match="^cannot load 'x/y' "):
        with hub_errors("x/y"):
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    with pytest.raises(KeyError):  # a programming error is not turned into a user mistake
        with hub_errors("x/y"):
            raise KeyError("stage3")


def _save_tiny_resnet(folder):
    import transformers

    transformers.AutoModel.from_config(transformers.AutoConfig.for_model(**TINY_RESNET)).save_pretrained(folder)


def test_cached_and_local_weights_load_offline(offline, tmp_path):
    """A hub id already in the cache and a local folder both load with no network."""
    snap = offline / "hub" / "models--org--tiny-resnet" / "snapshots" / "0123abcd"
    _save_tiny_resnet(snap)
    (offline / "hub" / "models--org--tiny-resnet" / "refs").mkdir()
    (offline / "hub" / "models--org--tiny-resnet" / "refs" / "main").write_text("0123abcd")
    m = create_model("mdhr.bp4d_resnet50", model="org/tiny-resnet", input_size=64)
    assert m.backbone.stage_channels == (8, 8, 16, 16) and m.config["model"] == "org/tiny-resnet"
    local = tmp_path / "weights"
    _save_tiny_resnet(local)
    check_model(from_dict(_recipe({"name": "mdhr.bp4d_resnet50", "args": {"model": str(local)}})))
    assert create_model("mdhr.bp4d_resnet50", model=str(local)).backbone.stage_channels == (8, 8, 16, 16)


@pytest.mark.slow
def test_cli_offline_train_is_one_line(tmp_path):
    """`aufer train` offline on the MDHR recipe: one line, exit code 2, in seconds, and no run folder."""
    sys.path.insert(0, os.path.dirname(__file__))
    from engine_data import au_store

    au = au_store(tmp_path / "au.sqlite", frames=16)
    rec = tmp_path / "mdhr.yaml"
    rec.write_text(yaml.safe_dump({"model": {"name": "mdhr.bp4d_resnet50", "args": {"model": "microsoft/resnet-50"}},
                                   "data": {"au": {"store": str(au)}}, "train": {"epochs": 1}}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "aufer", "train", str(rec), "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert [ln for ln in r.stderr.strip().splitlines() if ln.strip()] == [f"error: {OFFLINE}"]
    assert not (tmp_path / "run").exists()  # no empty run folder left behind


# -------------------------------------------------------------------------------------- model constraints
def test_mdhr_clip_length_is_checked_before_data():
    r = load(None, ["data.au.clip_len=4"], values=_recipe({"name": "mdhr.bp4d_resnet50",
                                                          "args": {"pretrained": False}}))
    with pytest.raises(RecipeError) as e:
        check_model(r)
    assert str(e.value) == CLIP_LEN
    short_eval = from_dict(_recipe({"name": "mdhr.bp4d_resnet50", "args": {"pretrained": False}},
                                   {"eval_clip_len": 8}))
    with pytest.raises(RecipeError, match=r"^data\.au\.eval_clip_len: .* at least 11 frames, not 8"):
        check_model(short_eval)
    # without MFD any clip length works; a smaller k needs fewer frames
    check_model(from_dict(_recipe({"name": "mdhr.bp4d_resnet50", "args": {"pretrained": False, "mfd": False}},
                                  {"clip_len": 4})))
    check_model(from_dict(_recipe({"name": "mdhr.bp4d_resnet50", "args": {"pretrained": False, "k": 1}},
                                  {"clip_len": 4})))


def test_mdhr_input_size_multiple_of_32():
    r = from_dict(_recipe({"name": "mdhr.bp4d_resnet50", "args": {"pretrained": False, "input_size": 100}}))
    with pytest.raises(RecipeError, match=r"^model\.args\.input_size: .*multiple of 32.*not 100"):
        check_model(r)


def test_arguments_a_model_does_not_take():
    lite = from_dict(_recipe({"name": "mdhr.bp4d_lite0", "args": {"model": "microsoft/resnet-50"}}))
    with pytest.raises(RecipeError) as e:
        check_model(lite)
    assert str(e.value) == ("model.args.model: the lite0 backbone (EfficientNet-Lite) takes no model (it is for the "
                            "transformers backbones resnet50 / swin_b); drop it: --set model.args.model=null")
    with pytest.raises(ValueError, match="takes no model"):  # the factory refuses it too (no silent record)
        create_model("mdhr.disfa_lite0", model="microsoft/resnet-50", pretrained=False)
    with pytest.raises(RecipeError, match="^model.args.model: aufer_lite.lite0 takes no argument 'model'"):
        check_model(from_dict(_recipe({"name": "aufer_lite", "args": {"model": "microsoft/resnet-50"}})))
    with pytest.raises(RecipeError, match="^model.args.bogus: .*takes no argument 'bogus'.*=null$"):
        check_model(from_dict(_recipe({"name": "mdhr.bp4d_resnet50", "args": {"pretrained": False, "bogus": 1}})))
    ssm = from_dict(_recipe({"name": "ssm.bp4d_lite0_minilm", "args": {"model": "openai/clip-vit-base-patch16"}}))
    with pytest.raises(RecipeError, match="^model.args.model: SSM with vision=lite0 and text=minilm has no CLIP"):
        check_model(ssm)
    with pytest.raises(RecipeError, match="^model.name: unknown model 'nope'"):
        check_model(from_dict(_recipe({"name": "nope"})))


# ---------------------------------------------------------------------------------------------- --set null
def test_set_null_means_the_default(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_recipe({"name": "aufer_tiny", "args": {"width": 8, "dim": 32}},
                                           train={"loss_args": {"a": 1}, "clip_grad": 1.0})))
    assert load(path, ["model.args=null"]).model.args == {}
    assert load(path, ["model.args=null", "model.args.input_size=96"]).model.args == {"input_size": 96}
    assert load(path, ["model.args.input_size=96"]).model.args == {"width": 8, "dim": 32, "input_size": 96}
    assert load(path, ["model.args.width=null"]).model.args == {"width": None, "dim": 32}  # factory default
    r = load(path, ["train.loss_args=null", "train.clip_grad=null", "train.epochs=null"])
    assert r.train.loss_args == {} and r.train.clip_grad is None and r.train.epochs == 10
    assert parse_set(["a=null", "a.b=1"]) == {"a": {"b": 1}}
    assert parse_set(["a.b=1", "a=null"]) == {"a": None}
    with pytest.raises(RecipeError, match="dotted names"):
        parse_set(["a..b=1"])
