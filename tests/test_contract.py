"""The model contract (aufer.models.contract): protocol, parameter groups, probabilities and flip averaging."""

import pytest
import torch
import torch.nn as nn

from aufer.faces.landmarks import mesh_mirror
from aufer.models import JointModel, create_model
from aufer.models.contract import flip_average, mirror_landmarks, param_groups, probabilities


@pytest.fixture(scope="module")
def clip_batch():
    g = torch.Generator().manual_seed(0)
    crops = torch.randint(0, 255, (2, 3, 64, 64, 3), dtype=torch.uint8, generator=g)
    return crops, torch.rand(2, 3, 478, 3, generator=g) * 63


def _manual(model, crops, lm):
    with torch.no_grad():
        out = model(model.preprocess(crops), lm)
    return torch.sigmoid(out["au"]), torch.softmax(out["expr"], -1)


def test_registered_models_follow_the_protocol(tiny_model):
    assert isinstance(tiny_model, JointModel)
    assert isinstance(tiny_model.aus, tuple) and isinstance(tiny_model.emotions, tuple)
    assert tiny_model.default_cfg["crop_size"] == 64 and tiny_model.config["name"] == "aufer_tiny.demo"
    assert not isinstance(nn.Linear(2, 2), JointModel)


def test_probabilities_are_one_plain_pass_by_default(tiny_model, clip_batch):
    crops, lm = clip_batch
    p_au, p_e = probabilities(tiny_model, crops, lm)
    m_au, m_e = _manual(tiny_model, crops, lm)
    assert p_au.shape == (2, 3, len(tiny_model.aus)) and p_e.shape == (2, 7)
    assert torch.allclose(p_au, m_au) and torch.allclose(p_e, m_e)
    assert torch.allclose(p_e.sum(-1), torch.ones(2)) and not p_au.requires_grad
    f_au, _ = flip_average(tiny_model, crops, lm)
    assert not torch.allclose(f_au, p_au)  # flip averaging is off unless asked for
    assert all(torch.equal(a, b) for a, b in zip(probabilities(tiny_model, crops, lm, flip=True),
                                                 flip_average(tiny_model, crops, lm)))


def test_flip_average_is_the_mean_of_the_face_and_its_mirror_image(tiny_model, clip_batch):
    crops, lm = clip_batch
    lm_m = lm[..., torch.from_numpy(mesh_mirror()), :].clone()
    lm_m[..., 0] = 63 - lm_m[..., 0]
    a_au, a_e = _manual(tiny_model, crops, lm)
    b_au, b_e = _manual(tiny_model, crops.flip(-2), lm_m)
    f_au, f_e = flip_average(tiny_model, crops, lm)
    assert torch.allclose(f_au, (a_au + b_au) / 2, atol=1e-6) and torch.allclose(f_e, (a_e + b_e) / 2, atol=1e-6)
    # hence a face and its mirror image get the same averaged probabilities
    g_au, g_e = flip_average(tiny_model, crops.flip(-2), lm_m)
    assert torch.allclose(f_au, g_au, atol=1e-5) and torch.allclose(f_e, g_e, atol=1e-5)


def test_mirror_landmarks_is_an_involution(clip_batch):
    _, lm = clip_batch
    m = mirror_landmarks(lm, 64)
    assert m.shape == lm.shape and not torch.allclose(m, lm)
    assert torch.allclose(mirror_landmarks(m, 64), lm, atol=1e-4)
    assert torch.equal(m[..., 2], lm[..., torch.from_numpy(mesh_mirror()), 2])  # depth follows the relabelling


def test_models_without_landmarks_ignore_them(clip_batch):
    crops, lm = clip_batch
    m = create_model("aufer_tiny_image", aus=(1, 12), input_size=32, width=8, dim=16).eval()
    a = probabilities(m, crops, lm, flip=True)
    b = probabilities(m, crops, None, flip=True)
    assert torch.equal(a[0], b[0]) and a[0].shape == (2, 3, 2)
    with pytest.raises(ValueError, match="landmarks"):
        probabilities(create_model("aufer_tiny", aus=(1,), input_size=32, width=8, dim=16, geometry_dim=8), crops)


def test_deprecated_method_wraps_the_contract(tiny_model, clip_batch):
    crops, lm = clip_batch
    with pytest.warns(DeprecationWarning, match="contract.probabilities"):
        old = tiny_model.probabilities(crops, lm)  # its old default: flip averaging on
    assert torch.equal(old[0], flip_average(tiny_model, crops, lm)[0])


class _Two(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 1)
        self._groups = groups

    def param_groups(self):
        return self._groups(self)


def test_param_groups_cover_every_trainable_parameter_once(tiny_model):
    groups = param_groups(tiny_model)
    flat = [id(p) for v in groups.values() for p in v]
    assert len(flat) == len(set(flat)) == len(list(tiny_model.parameters()))
    plain = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    plain[0].weight.requires_grad_(False)
    assert list(param_groups(plain)) == ["all"] and len(param_groups(plain)["all"]) == 3
    ok = param_groups(_Two(lambda m: {"a": list(m.a.parameters()), "b": list(m.b.parameters()), "none": []}))
    assert list(ok) == ["a", "b"]  # empty groups are dropped


@pytest.mark.parametrize("groups, message", [
    (lambda m: {"a": list(m.a.parameters())}, "'b.weight' is in no parameter group"),
    (lambda m: {"x": list(m.parameters()), "y": [m.b.bias]}, "'b.bias' is in group 'x' and again in 'y'"),
    (lambda m: {"x": list(m.parameters()) + [nn.Parameter(torch.zeros(3))]}, "not the model's"),
])
def test_param_groups_reject_bad_covers(groups, message):
    with pytest.raises(ValueError, match=message):
        param_groups(_Two(groups))


def test_frozen_parameters_need_no_group():
    m = _Two(lambda m: {"a": list(m.a.parameters())})
    for p in m.b.parameters():
        p.requires_grad_(False)
    assert len(param_groups(m)["a"]) == 2
