import pytest
import torch

from aufer.models import create_model, list_models
from aufer.models.io import load_model, save_model


def test_registry():
    assert {"aufer_tiny", "aufer_tiny_image", "aufer_hf"} <= set(list_models())
    assert list_models("aufer_tiny*") == ["aufer_tiny", "aufer_tiny_image"]
    with pytest.raises(KeyError, match="available"):
        create_model("resnet9000")


@pytest.mark.parametrize("t", [1, 16])
def test_outputs_are_keyed_by_task(tiny_model, t):
    crops = torch.randint(0, 255, (2, t, 80, 80, 3), dtype=torch.uint8)  # resized to the model's 64
    x = tiny_model.preprocess(crops)
    assert x.shape == (2, t, 3, 64, 64)
    out = tiny_model(x, torch.rand(2, t, 478, 3) * 64)
    assert out["au"].shape == (2, t, len(tiny_model.aus))
    assert out["expr"].shape == (2, 7)
    assert out["features"].shape[:2] == (2, t)


def test_landmarks_required(tiny_model):
    with pytest.raises(ValueError, match="landmarks"):
        tiny_model(torch.zeros(1, 1, 3, 64, 64))


def test_image_only_model_needs_no_landmarks():
    m = create_model("aufer_tiny_image", aus=(1, 12), input_size=32, width=8, dim=16).eval()
    assert m(torch.zeros(1, 2, 3, 32, 32))["au"].shape == (1, 2, 2)


def test_checkpoint_round_trip(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "model", extra={"note": "test"})
    assert path.suffix == ".safetensors" and (tmp_path / "model.json").is_file()
    again = load_model(tmp_path)
    x, lm = torch.rand(1, 2, 3, 64, 64), torch.rand(1, 2, 478, 3) * 64
    with torch.no_grad():
        a, b = tiny_model(x, lm), again(x, lm)
    assert torch.allclose(a["au"], b["au"]) and torch.allclose(a["expr"], b["expr"])
    assert again.aus == tiny_model.aus and again.emotions == tiny_model.emotions


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="aufer demo"):
        load_model(tmp_path / "nothing")


def test_transformers_backbone_from_config_reloads_offline(tmp_path):
    cfg = {"model_type": "resnet", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64], "embedding_size": 8}
    m = create_model("aufer_hf", model=None, hf_config=cfg, aus=(1, 2, 4), input_size=64, dim=16).eval()
    x = torch.rand(2, 3, 3, 64, 64)
    out = m(x)
    assert out["au"].shape == (2, 3, 3) and out["expr"].shape == (2, 7)
    save_model(m, tmp_path / "model")
    with torch.no_grad():
        assert torch.allclose(load_model(tmp_path)(x)["au"], out["au"], atol=1e-6)


def test_flip_averaging_is_mirror_invariant(tiny_model):
    """With flip averaging, a face and its mirror image get the same probabilities."""
    from aufer.faces.landmarks import mesh_mirror

    g = torch.Generator().manual_seed(0)
    crops = torch.randint(0, 255, (2, 3, 64, 64, 3), dtype=torch.uint8, generator=g)
    lm = torch.rand(2, 3, 478, 3, generator=g) * 63
    lm_m = lm[..., torch.from_numpy(mesh_mirror()), :].clone()
    lm_m[..., 0] = 63 - lm_m[..., 0]
    a_au, a_e = tiny_model.probabilities(crops, lm)
    b_au, b_e = tiny_model.probabilities(crops.flip(-2), lm_m)
    assert torch.allclose(a_au, b_au, atol=1e-5) and torch.allclose(a_e, b_e, atol=1e-5)
    n_au, _ = tiny_model.probabilities(crops, lm, flip=False)
    assert not torch.allclose(n_au, a_au)
