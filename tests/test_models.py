import json
import sys
import types

import pytest
import torch

from aufer import vocab
from aufer.models import (CheckpointError, JointNet, UnknownModelError, create_model, default_cfg, is_model,
                          list_models, list_modules, register_model)
from aufer.models import _registry
from aufer.models import load_model, save_model

SMALL = dict(aus=(1, 12), input_size=32, width=8, dim=16)  # a fast aufer_tiny_image


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------ registry
def test_registry_lists_architectures_variants_and_modules():
    assert {"aufer_tiny", "aufer_tiny_image", "aufer_hf"} <= set(list_models())
    assert list_models("aufer_tiny*") == ["aufer_tiny", "aufer_tiny_image"]
    assert {"aufer_tiny.demo", "aufer_hf.resnet50", "aufer_hf.clip_b16"} <= set(list_models(tags=True))
    assert list_models("aufer_hf.*", tags=True) == ["aufer_hf.clip_b16", "aufer_hf.resnet50"]
    assert set(list_models(module="joint")) >= {"aufer_tiny", "aufer_hf"} and list_models(module="nope") == []
    assert "joint" in list_modules()
    assert is_model("aufer_tiny") and is_model("aufer_tiny.demo") and is_model("aufer_hf.clip_b16")
    assert not is_model("aufer_tiny.bp4d") and not is_model("resnet9000")


def test_unknown_name_is_a_key_error_listing_the_names():
    with pytest.raises(UnknownModelError, match="available: .*aufer_tiny.demo") as e:
        create_model("resnet9000")
    assert isinstance(e.value, KeyError) and str(e.value).startswith("unknown model 'resnet9000'")
    with pytest.raises(UnknownModelError, match="tag 'bp4d'.*available: aufer_tiny.demo$"):
        create_model("aufer_tiny.bp4d")
    with pytest.raises(KeyError):
        default_cfg("nope")


def test_default_cfgs():
    tiny = default_cfg("aufer_tiny")
    assert tiny == default_cfg("aufer_tiny.demo")
    assert (tiny["input_size"], tiny["crop_size"], tiny["norm"], tiny["clip_len"]) == (112, 112, "imagenet", 16)
    assert (tiny["mean"], tiny["std"]) == tuple(map(list, vocab.normalisation("imagenet")))
    assert tiny["aus"] == list(vocab.dataset_aus("BP4D")) and tiny["emotions"] == list(vocab.EMOTIONS_7)
    hf = default_cfg("aufer_hf")  # the first tag is the default
    assert (hf["input_size"], hf["crop_size"], hf["model"]) == (224, 256, "microsoft/resnet-50")
    clip = default_cfg("aufer_hf.clip_b16")
    assert clip["norm"] == "clip" and clip["mean"] == list(vocab.normalisation("clip")[0])
    tiny["aus"].append(99)  # a copy
    assert 99 not in default_cfg("aufer_tiny")["aus"]


def test_config_is_recorded_automatically_and_rebuilds_the_architecture():
    m = create_model("aufer_tiny_image", **SMALL)
    cfg = m.config
    assert cfg == {"name": "aufer_tiny_image.demo", "aus": [1, 12], "emotions": list(vocab.EMOTIONS_7),
                   "input_size": 32, "width": 8, "dim": 16, "dropout": 0.2, "norm": "imagenet"}
    assert json.loads(json.dumps(cfg)) == cfg
    again = create_model(**cfg)
    assert again.config == cfg and _shapes(again) == _shapes(m)
    assert again.aus == (1, 12) and again.input_size == 32
    tiny = create_model("aufer_tiny", aus=(1, 2), input_size=32, width=8, dim=16, geometry_dim=8, geometry_au=True)
    assert _shapes(create_model(**tiny.config)) == _shapes(tiny) and tiny.config["au_to_expr"] is True


def test_none_arguments_fall_back_to_the_defaults():
    m = create_model("aufer_tiny_image", aus=None, emotions=None, width=None, dropout=None, input_size=32, dim=16)
    assert m.config["aus"] == list(vocab.dataset_aus("BP4D"))  # from the variant's cfg
    assert m.config["width"] == 32 and m.config["dropout"] == 0.2  # from the factory's signature


def test_model_default_cfg_follows_the_arguments():
    m = create_model("aufer_tiny_image", **SMALL)
    assert m.default_cfg["input_size"] == 32 and m.default_cfg["crop_size"] == 32  # crop = input in this variant
    assert m.default_cfg["aus"] == [1, 12] and m.default_cfg["clip_len"] == 16
    c = create_model("aufer_tiny_image", norm="clip", **SMALL)
    assert c.default_cfg["mean"] == list(vocab.normalisation("clip")[0])
    assert torch.allclose(c.mean.flatten(), torch.tensor(vocab.normalisation("clip")[0]))


def test_bad_arguments_are_type_errors():
    with pytest.raises(TypeError, match="no argument 'depth'.*it takes: aus"):
        create_model("aufer_tiny_image", depth=3)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        create_model("aufer_tiny_image", emotions=("a", object()), aus=(1,), input_size=32, width=8, dim=16)


@pytest.fixture
def registry_sandbox(monkeypatch):
    """A private copy of the registry and a throwaway module ``aufer_test_arch`` to register into."""
    for name in ("_entrypoints", "_module_of", "_tags", "_cfgs"):
        monkeypatch.setattr(_registry, name, dict(getattr(_registry, name)))
    mod = types.ModuleType("aufer_test_arch")
    mod.__all__ = []
    mod.default_cfgs = {"toy.bp4d": {"input_size": 16, "crop_size": 16, "aus": (1, 2), "region": [[0, 1]]},
                        "toy.disfa": {"input_size": 16, "crop_size": 20, "aus": [1, 2, 4], "norm": "clip"},
                        "other.x": {}}
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod


def test_variants_set_factory_defaults(registry_sandbox):
    def toy(aus=(9,), input_size=8, hidden=4):
        return torch.nn.Linear(len(aus) * input_size, hidden)

    toy.__module__ = registry_sandbox.__name__
    register_model(toy)
    assert registry_sandbox.__all__ == ["toy"] and "aufer_test_arch" in list_modules()
    assert list_models("toy*", tags=True) == ["toy.bp4d", "toy.disfa"]
    a, b = create_model("toy"), create_model("toy.disfa", hidden=3)
    assert a.config == {"name": "toy.bp4d", "aus": [1, 2], "input_size": 16, "hidden": 4}
    assert b.config == {"name": "toy.disfa", "aus": [1, 2, 4], "input_size": 16, "hidden": 3}
    assert a.default_cfg["region"] == [[0, 1]] and "mean" not in a.default_cfg
    assert b.default_cfg["mean"] == list(vocab.normalisation("clip")[0])  # filled in from norm
    assert create_model("toy.disfa", input_size=32).default_cfg["crop_size"] == 20  # crop != input: kept
    assert create_model("toy", input_size=32).default_cfg["crop_size"] == 32  # crop == input: follows
    with pytest.raises(ValueError, match="already registered"):
        register_model(toy)


def test_architecture_without_cfg(registry_sandbox):
    def bare(k=2):
        return torch.nn.Linear(k, 1)

    register_model(bare)
    assert is_model("bare") and not is_model("bare.x") and default_cfg("bare") == {}
    m = create_model("bare", k=3)
    assert m.config == {"name": "bare", "k": 3} and m.default_cfg == {}


# ------------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("t", [1, 16])
def test_outputs_are_keyed_by_task(tiny_model, t):
    crops = torch.randint(0, 255, (2, t, 80, 80, 3), dtype=torch.uint8)  # resized to the model's 64
    x = tiny_model.preprocess(crops)
    assert x.shape == (2, t, 3, 64, 64) and x.dtype == torch.float32
    lm = torch.rand(2, t, 478, 3) * 64
    out = tiny_model(x, lm)
    assert out["au"].shape == (2, t, len(tiny_model.aus))
    assert out["expr"].shape == (2, 7)
    assert out["features"].shape == (2, t, 32)
    with torch.no_grad():
        assert torch.allclose(tiny_model.forward_features(x, lm), out["features"], atol=1e-6)


def test_landmarks_required(tiny_model):
    with pytest.raises(ValueError, match="landmarks"):
        tiny_model(torch.zeros(1, 1, 3, 64, 64))


def test_image_only_model_needs_no_landmarks():
    m = create_model("aufer_tiny_image", **SMALL).eval()
    assert not m.uses_landmarks
    assert m(torch.zeros(1, 2, 3, 32, 32))["au"].shape == (1, 2, 2)
    assert m.forward_features(torch.zeros(1, 2, 3, 32, 32)).shape == (1, 2, 16)


def test_geometry_au_is_a_direct_landmark_path_to_the_au_logits():
    """``geometry_au`` (on in demo_lite.yaml) adds a linear AU head on the landmark features: with the shared AU head
    silenced, the AU logits are that head's and move with the landmarks alone (a mouth opening, the image fixed)."""
    from aufer.faces import landmarks as L

    torch.manual_seed(0)
    m = create_model("aufer_tiny", aus=(25, 26), input_size=32, width=8, dim=16, geometry_dim=8, geometry_au=True).eval()
    with torch.no_grad():
        m.au_head.weight.zero_()
        m.au_head.bias.zero_()
    x = torch.zeros(1, 1, 3, 32, 32)
    closed = torch.rand(1, 1, 478, 3) * 32
    opened = closed.clone()
    opened[..., list(L.LIPS_INNER_LOWER + L.LIPS_OUTER_LOWER) + [L.CHIN], 1] += 4.0  # lower lip and chin drop
    with torch.no_grad():
        a, b = m(x, closed)["au"], m(x, opened)["au"]
        direct = m.geometry_au_head(m.landmark_encoder(opened[:, 0]))
    assert not torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(b[:, 0], direct, atol=1e-5)
    assert create_model("aufer_tiny", aus=(25, 26), input_size=32, width=8, dim=16, geometry_dim=8).geometry_au_head is None


def test_mouth_opening_survives_landmark_normalisation():
    """The geometry input keeps a mouth opening: the lip gap in normalised units grows with the opening and does
    not depend on the face's scale, position or in-plane rotation."""
    import math

    from aufer.faces import landmarks as L
    from aufer.models.geometry import normalise_landmarks

    from aufer.faces.pose import canonical_face

    face = torch.tensor(canonical_face()[:, :2], dtype=torch.float32) * 60 + 100  # a frontal face, 60 px IOD
    base = torch.cat([face, face[list(L.LIPS_INNER_LOWER)[:10]]])  # 478 points (the iris points do not matter here)

    def gap(lm):
        n = normalise_landmarks(lm)
        return float(n[L.LIP_LOWER_INNER_MID, 1] - n[L.LIP_UPPER_INNER_MID, 1])
    gaps = []
    for drop in (0.0, 3.0, 6.0):  # 0, 0.05 and 0.1 IOD
        lm = base.clone()
        lm[list(L.LIPS_INNER_LOWER), 1] += drop
        gaps.append(gap(lm))
        c, s_ = math.cos(0.3), math.sin(0.3)
        moved = (lm @ torch.tensor([[c, s_], [-s_, c]])) * 2.5 + torch.tensor([40.0, -7.0])
        assert abs(gap(moved) - gaps[-1]) < 1e-4
    assert gaps[0] < gaps[1] - 0.05 < gaps[2] - 0.1


def test_joint_param_groups_split_backbone_and_heads(tiny_model):
    groups = tiny_model.param_groups()
    assert list(groups) == ["backbone", "heads"]
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in tiny_model.backbone.parameters()}
    heads = {id(p) for p in groups["heads"]}
    assert {id(p) for p in tiny_model.landmark_encoder.parameters()} <= heads
    assert {id(p) for p in tiny_model.au_head.parameters()} <= heads
    assert sum(map(len, groups.values())) == len(list(tiny_model.parameters()))


def test_directly_built_jointnet_describes_itself():
    from aufer.models.backbones import TinyCNN

    m = JointNet((1,), ("a", "b"), TinyCNN(8, 4, 32), input_size=32, dim=8)
    assert m.config == {} and m.default_cfg["crop_size"] == 32 and m.default_cfg["emotions"] == ["a", "b"]
    with pytest.raises(ValueError, match="create_model"):
        save_model(m, "unused")


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "model", extra={"note": "test"})
    assert path.suffix == ".safetensors" and (tmp_path / "model.json").is_file()
    assert not list(tmp_path.glob("*.partial"))
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["model"] == tiny_model.config and meta["note"] == "test"
    again = load_model(tmp_path)
    assert not again.training and again.config == tiny_model.config
    x, lm = torch.rand(1, 2, 3, 64, 64), torch.rand(1, 2, 478, 3) * 64
    with torch.no_grad():
        a, b = tiny_model(x, lm), again(x, lm)
    assert torch.allclose(a["au"], b["au"]) and torch.allclose(a["expr"], b["expr"])
    assert again.aus == tiny_model.aus and again.emotions == tiny_model.emotions
    assert load_model(path).config == load_model(tmp_path / "model.json").config == tiny_model.config


def test_create_model_loads_checkpoint_path(tmp_path):
    torch.manual_seed(1)
    m = create_model("aufer_tiny_image", **SMALL)
    path = save_model(m, tmp_path / "m.safetensors")
    assert path == tmp_path / "m.safetensors"
    cfg = dict(m.config)
    fresh = create_model(**cfg)
    loaded = create_model(cfg.pop("name"), checkpoint_path=path, **cfg)
    key = "au_head.weight"
    assert torch.equal(loaded.state_dict()[key], m.state_dict()[key])
    assert not torch.equal(fresh.state_dict()[key], m.state_dict()[key])
    with pytest.raises(FileNotFoundError):
        create_model("aufer_tiny_image", checkpoint_path=tmp_path / "none.safetensors", **SMALL)


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="aufer demo"):
        load_model(tmp_path / "nothing")


def test_damaged_checkpoints_raise_checkpoint_errors(tmp_path):
    m = create_model("aufer_tiny_image", **SMALL)
    weights = save_model(m, tmp_path / "model")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated or corrupted"):
        load_model(tmp_path)
    weights.write_bytes(b"\xff" * 64)  # garbage header
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_model(tmp_path)
    save_model(m, tmp_path / "model")
    meta = tmp_path / "model.json"
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"model\.json: not valid JSON") as e:
        load_model(tmp_path)
    assert isinstance(e.value, ValueError)
    meta.write_text('{"note": 1}')
    with pytest.raises(CheckpointError, match="no model config"):
        load_model(tmp_path)
    meta.write_text(json.dumps({"model": dict(m.config, dim=8)}))  # weights of another architecture
    fit = r"do not fit aufer_tiny_image.demo \(shape: backbone.proj.2.weight \(16, 128\) vs \(8, 128\)"
    with pytest.raises(CheckpointError, match=fit):
        load_model(tmp_path)


@pytest.mark.slow
def test_transformers_backbone_from_config_reloads_offline(tmp_path):
    cfg = {"model_type": "resnet", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64], "embedding_size": 8}
    m = create_model("aufer_hf", model=None, hf_config=cfg, aus=(1, 2, 4), input_size=64, dim=16).eval()
    assert m.config["pretrained"] is False and m.config["hf_config"]["model_type"] == "resnet"
    assert m.default_cfg["crop_size"] == 256 and m.param_groups()["backbone"]
    x = torch.rand(2, 3, 3, 64, 64)
    out = m(x)
    assert out["au"].shape == (2, 3, 3) and out["expr"].shape == (2, 7)
    save_model(m, tmp_path / "model")
    with torch.no_grad():
        assert torch.allclose(load_model(tmp_path)(x)["au"], out["au"], atol=1e-6)


def test_lite_joint_model_uses_the_pretrained_trunk_and_reloads_offline(tmp_path):
    """aufer_lite.lite0 carries the ImageNet Lite0 trunk (weights from the package, classifier dropped), records
    pretrained=False so that a checkpoint rebuilds without the package weights, and round-trips through fp16."""
    import torch

    from aufer.models.efficientnet_lite import EfficientNetLite
    from aufer.models import load_model, save_model

    m = create_model("aufer_lite.lite0", aus=(1, 12), emotions=("a", "b", "c")).eval()
    ref = EfficientNetLite("lite0", pretrained=True)
    assert torch.equal(m.backbone.net._conv_stem.weight, ref._conv_stem.weight)
    assert not any(k.startswith("backbone.net._fc") for k in m.state_dict())
    assert m.config["pretrained"] is False and m.default_cfg["norm"] == "efficientnet_lite"
    from aufer.models.contract import param_groups

    assert set(param_groups(m)) == {"backbone", "heads"}
    crops = torch.randint(0, 255, (2, 1, 112, 112, 3), dtype=torch.uint8)
    lm = torch.rand(2, 1, 478, 3) * 112
    with torch.no_grad():
        out = m(m.preprocess(crops), lm)
    assert out["au"].shape == (2, 1, 2) and out["expr"].shape == (2, 3)
    save_model(m, tmp_path / "m", dtype=torch.float16)
    again = load_model(tmp_path / "m")
    with torch.no_grad():
        back = again(again.preprocess(crops), lm)
    assert torch.allclose(back["expr"], out["expr"], atol=5e-2)
    assert (tmp_path / "m.safetensors").stat().st_size < 10e6
