"""MDHR (aufer.methods.mdhr.model, aufer.methods.mdhr.hsr) and its loss (aufer.methods.mdhr.loss): small widths, CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from aufer.training.losses import LossContext  # noqa: E402
from aufer.methods.mdhr.loss import (mdhr_class_weights, mdhr_loss, region_labels, sub_loss,  # noqa: E402
                               weighted_asymmetric_loss)
from aufer.models import contract, create_model, list_models  # noqa: E402
from aufer.methods.mdhr import official as M  # noqa: E402
from aufer.methods.mdhr.hsr import (REGION_SPECS, CrossRegionGAT, LocalRelations, SimilarityClassifier,  # noqa: E402
                                   activity_bits, cross_region_mask, edge_mask, region_rows)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: on a shared 2-core machine, intra-op threads cost more than they give (the file
    runs in ~6 s with one thread, ~30 s with two under load)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
BP4D_GROUPS = ((0, 1, 2, 4), (3,), (6, 7, 8), (5, 9, 10, 11))
DISFA_GROUPS = ((0, 1, 2), (3, 4), (5, 6, 7))


def tiny_resnet() -> dict:
    return transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                     layer_type="bottleneck").to_dict()


def tiny_swin() -> dict:
    return transformers.SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 2, 1, 1],
                                   num_heads=[1, 1, 2, 2], window_size=2).to_dict()


def tiny(name: str = "mdhr.bp4d_resnet50", input_size: int = 64, **kw):
    torch.manual_seed(0)
    cfg = tiny_swin() if "swin" in name else tiny_resnet()
    extra = {} if "lite" in name else {"hf_config": cfg}
    return create_model(name, input_size=input_size, dim=16, **extra, **kw)


def clip(b=2, t=11, size=64, seed=0):
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ MFD
def test_mfd_static_clip_has_zero_motion():
    m = tiny().eval()
    mfd = m.mfd
    for conv in mfd.diff_convs:  # with zero conv bias, zero differences stay exactly zero
        torch.nn.init.zeros_(conv.bias)
    frame = torch.randn(1, 1, 3, 64, 64)
    static = frame.expand(2, 11, 3, 64, 64).contiguous()
    with torch.no_grad():
        _, maps = m.backbone(static.flatten(0, 1))
        pooled = mfd.pooled_differences(maps, 2, 11)
        assert all(float(d.abs().max()) == 0.0 for d in pooled)
        # whatever the content of a static clip, the motion tokens are the same (no motion information)
        other = torch.randn(1, 1, 3, 64, 64).expand(2, 11, 3, 64, 64).contiguous()
        _, maps2 = m.backbone(other.flatten(0, 1))
        assert torch.equal(mfd(maps, 2, 11), mfd(maps2, 2, 11))
        moving = clip()
        _, maps3 = m.backbone(moving.flatten(0, 1))
        assert not torch.allclose(mfd(maps3, 2, 11), mfd(maps, 2, 11))


def test_mfd_weights_sum_to_one_over_scales():
    m = tiny()
    with torch.no_grad():
        _, maps = m.backbone(clip().flatten(0, 1))
        w = m.mfd.scale_weights(m.mfd.pooled_differences(maps, 2, 11))
    assert w.shape == (22, 4, 2, 2)
    assert float(w.min()) >= 0
    torch.testing.assert_close(w.sum(1), torch.ones(22, 2, 2))


def test_mfd_temporal_pooling_is_eq3():
    """Frame t of d̄ is the sum of the differences t−k .. t+k−1 (zero outside) over 2k."""
    m = tiny(k=2)
    mfd = m.mfd.eval()
    b, t, k = 1, 6, 2
    maps = [torch.randn(b * t, c, 16 // 2 ** i, 16 // 2 ** i) for i, c in enumerate((8, 16, 24, 32))]
    with torch.no_grad():
        pooled = mfd.pooled_differences(maps, b, t)[3]
        x = maps[3].reshape(b, t, 32, 2, 2)
        d = F.relu(mfd.diff_bns[3](mfd.diff_convs[3]((x[:, 1:] - x[:, :-1]).flatten(0, 1))))
    for f in range(t):
        idx = [j for j in range(f - k, f + k) if 0 <= j < t - 1]
        torch.testing.assert_close(pooled[f], d[idx].sum(0) / (2 * k))


def test_short_clips_are_refused():
    m = tiny()
    with pytest.raises(ValueError, match="T ≥ 11"):
        m(clip(t=10))
    m3 = tiny(k=1)  # a small k for short clips
    assert m3(clip(t=3))["au"].shape == (2, 3, 12)


# ------------------------------------------------------------------------------------------------ HSR
def test_region_rows_are_eq7():
    assert region_rows(7) == {"up": (0, 3), "mid": (2, 5), "low": (4, 7)}
    assert region_rows(14) == {"up": (0, 6), "mid": (4, 10), "low": (8, 14)}
    for h in (1, 2, 3, 5):
        rows = region_rows(h)
        assert all(0 <= a < b <= h for a, b in rows.values())
        assert rows["up"][0] == 0 and rows["low"][1] == h


def test_local_relations_slices_and_assignment():
    lr = LocalRelations((1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24), REGION_SPECS["BP4D"], 4)
    assert lr.groups == BP4D_GROUPS
    g = torch.arange(7.0).view(1, 7, 1, 1).expand(2, 7, 7, 4)  # value = row index
    up, mid, low1, low2 = lr.slices(g)
    assert up.shape == mid.shape == low1.shape == (2, 21, 4)
    assert set(up.unique().tolist()) == {0, 1, 2}
    assert set(mid.unique().tolist()) == {2, 3, 4}
    assert set(low1.unique().tolist()) == {4, 5, 6} and torch.equal(low1, low2)
    assert [h.out_features for h in lr.sub_heads] == [16, 2, 8, 16]
    disfa = LocalRelations((1, 2, 4, 6, 9, 12, 25, 26), REGION_SPECS["DISFA"], 4)
    assert disfa.groups == DISFA_GROUPS and disfa.region_blocks is None
    assert [h.out_features for h in disfa.sub_heads] == [8, 4, 8]
    sub, v = disfa(torch.randn(3, 7, 7, 4))
    assert [s.shape for s in sub] == [(3, 8), (3, 4), (3, 8)] and v.shape == (3, 8, 4)


def test_sub_label_codes_msb_first():
    y = torch.zeros(2, 12, dtype=torch.long)
    y[0, [0, 1]] = 1  # AU1 + AU2 → up 0b1100
    y[0, 3] = 1  # AU6 → mid 1
    y[0, [6, 8]] = 1  # AU12 + AU15 → low1 0b101
    y[0, [5, 11]] = 1  # AU10 + AU24 → low2 0b1001
    y[1, 2] = -1  # AU4 unknown: up unknown, the others known
    codes, known = region_labels(y, BP4D_GROUPS)
    assert codes[0].tolist() == [12, 1, 5, 9]
    assert known[0].all() and known[1].tolist() == [False, True, True, True]
    d = torch.tensor([[0, 0, 1, 1, 0, 0, 1, 1]])  # DISFA AU4; AU6; AU25 AU26
    assert region_labels(d, DISFA_GROUPS)[0].tolist() == [[1, 2, 3]]
    # the activities decode the codes back into the AU columns (one-hot logits at the code)
    logits = [F.one_hot(codes[0:1, r], 2 ** len(g)).float() for r, g in enumerate(BP4D_GROUPS)]
    assert activity_bits(logits, BP4D_GROUPS, 12).long().tolist() == y[0:1].tolist()


OFFICIAL_BP4D_CROSS = [  # methods.md §6.2 (official CrossregionRelationshipModeling), AU 1 2 4 6 7 10 12 14 15 17 23 24
    [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1],
    [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0]]


def test_adjacency_from_activities():
    c = cross_region_mask(BP4D_GROUPS, 12)
    assert c.tolist() == OFFICIAL_BP4D_CROSS
    d = cross_region_mask(DISFA_GROUPS, 8)
    assert d[0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1] and d[5].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    gat = CrossRegionGAT(c, 4)
    active = torch.zeros(1, 12)
    active[0, [0, 6]] = 1  # AU1 and AU12 active
    adj = gat.adjacency(active)[0]
    expected = torch.eye(12)
    for i in range(12):
        for j in (0, 6):
            if OFFICIAL_BP4D_CROSS[i][j]:
                expected[i, j] = 1
    assert torch.equal(adj, expected)


def test_gat_masks_inactive_neighbours():
    torch.manual_seed(0)
    groups = ((0,), (1,), (2,))
    gat = CrossRegionGAT(cross_region_mask(groups, 3), 4)
    with torch.no_grad():
        gat.bias.normal_()
    v = torch.randn(1, 3, 4)
    active = torch.tensor([[1.0, 0.0, 1.0]])
    out = gat(v, active)
    z = gat.linear(v)[0]
    q, r = gat.score_src.flatten(), gat.score_dst.flatten()
    for i, nbrs in ((0, [0, 2]), (1, [0, 1, 2]), (2, [0, 2])):
        s = torch.stack([F.leaky_relu(q @ z[i] + r @ z[j], 0.2) for j in nbrs])
        a = torch.softmax(s, 0)
        ref = F.elu(sum(a[n] * z[j] for n, j in enumerate(nbrs)) + v[0, i] + gat.bias)
        torch.testing.assert_close(out[0, i], ref)
    v2 = v.clone()
    v2[0, 1] += 5.0  # node 1 is inactive: only node 1 itself may change
    out2 = gat(v2, active)
    torch.testing.assert_close(out2[0, [0, 2]], out[0, [0, 2]])
    alone = gat(v, torch.zeros(1, 3))  # nothing active: each node attends to itself only
    torch.testing.assert_close(alone, F.elu(gat.linear(v) + v + gat.bias))


def test_similarity_classifier_range():
    sc = SimilarityClassifier(5, 8)
    v = torch.rand(4, 5, 8)
    with torch.no_grad():
        p = sc(v)
    assert p.shape == (4, 5) and float(p.min()) >= 0 and float(p.max()) <= 1 + 1e-6
    ref = F.cosine_similarity(F.relu(sc.sc)[None].expand(4, 5, 8), v, dim=-1)
    torch.testing.assert_close(p, ref)


# --------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("name,n_aus,sizes", [("mdhr.bp4d_resnet50", 12, [16, 2, 8, 16]),
                                              ("mdhr.disfa_swin_b", 8, [8, 4, 8]),
                                              ("mdhr.bp4d_lite0", 12, [16, 2, 8, 16])])
def test_forward_shapes_and_contract(name, n_aus, sizes):
    lite = "lite" in name  # EfficientNet-Lite's wide expansions are the slow part on CPU: 1 clip at 32 px
    m = tiny(name, **({"pretrained": False, "input_size": 32} if lite else {}))
    b = 1 if lite else 2
    out = m(clip(b=b, size=32 if lite else 64))
    assert out["au"].shape == out["au_prob"].shape == (b, 11, n_aus)
    assert out["expr"].shape == (b, 0)
    assert [s.shape[-1] for s in out["sub"]] == sizes and all(s.shape[:2] == (b, 11) for s in out["sub"])
    assert out["features"].shape == (b, 11, n_aus, 16)
    torch.testing.assert_close(torch.sigmoid(out["au"]), out["au_prob"].clamp(1e-6, 1 - 1e-6))
    assert m.aus == tuple(m.default_cfg["aus"]) and m.emotions == ()
    assert m.default_cfg["crop_size"] == 256 and m.default_cfg["clip_len"] == 16
    groups = contract.param_groups(m)
    assert set(groups) == {"backbone", "heads"}
    m.eval()
    crops = torch.randint(0, 256, (1, 11, 80, 80, 3), dtype=torch.uint8)
    p_au, p_e = contract.probabilities(m, crops)
    assert p_au.shape == (1, 11, n_aus) and p_e.shape == (1, 0)


def test_registry_and_config_rebuild():
    tags = list_models("mdhr*", tags=True)
    for t in ("mdhr.bp4d_resnet50", "mdhr.bp4d_swin_b", "mdhr.bp4d_lite0", "mdhr.disfa_resnet50",
              "mdhr.disfa_swin_b", "mdhr.disfa_lite0"):
        assert t in tags
    m = tiny("mdhr.disfa_resnet50")
    assert m.config["pretrained"] is False and m.config["hf_config"]["model_type"] == "resnet"
    again = create_model(**json.loads(json.dumps(m.config)))
    assert again.state_dict().keys() == m.state_dict().keys()
    assert again.aus == (1, 2, 4, 6, 9, 12, 25, 26)


# -------------------------------------------------------------------------------- official checkpoints
@pytest.mark.parametrize("ds,bb", [("bp4d", "resnet50"), ("bp4d", "swin_b"), ("disfa", "resnet50"),
                                   ("disfa", "swin_b")])
def test_official_keys_and_shapes(ds, bb):
    ref = json.loads((FIXTURES / f"mdhr_official_keys_{ds}_{bb}.json").read_text())
    ref.pop("_about")
    with torch.device("meta"):
        m = create_model(f"mdhr.{ds}_{bb}", pretrained=False)
    kmap = M.official_key_map(m)
    own = m.state_dict()
    # every official tensor receives exactly one aufer tensor, or (Swin qkv) exactly its three row blocks
    by_official: dict[str, list] = {}
    for akey, (okey, part) in kmap.items():
        by_official.setdefault(okey, []).append(part)
    consts = {k for k in ref if k.endswith(("relative_position_index", "attn_mask"))}
    assert set(by_official) == set(ref) - consts
    for okey, parts in by_official.items():
        assert sorted(parts, key=str) in ([None], [0, 1, 2]), okey
        n = sum(own[a].numel() for a, (o, _) in kmap.items() if o == okey)
        assert n == math.prod(ref[okey]), okey
    assert {k: list(v.shape) for k, v in M.to_official_state_dict(m).items()} == ref


def test_official_round_trip_full_size():
    ref = json.loads((FIXTURES / "mdhr_official_keys_bp4d_resnet50.json").read_text())
    ref.pop("_about")
    g = torch.Generator().manual_seed(0)
    sd = {k: (torch.randint(0, 1000, v, generator=g) if k.endswith("num_batches_tracked")
              else torch.randn(v, generator=g)) for k, v in ref.items()}
    with torch.device("meta"):
        m = create_model("mdhr.bp4d_resnet50", pretrained=False)
    m = M.load_official_state_dict(m.to_empty(device="cpu"), {"state_dict": {f"module.{k}": v for k, v in sd.items()}})
    own = m.state_dict()
    torch.testing.assert_close(own["classifier.sc"], sd["node_classifier.sc"], rtol=0, atol=0)
    torch.testing.assert_close(own["mfd.diff_convs.0.weight"], sd["MFD.conv1.weight"], rtol=0, atol=0)
    back = M.to_official_state_dict(m)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_official_round_trip_swin_and_errors():
    m = tiny("mdhr.bp4d_swin_b")
    sd = M.to_official_state_dict(m)
    assert sd["Backbone.layers.1.blocks.0.attn.qkv.weight"].shape == (48, 16)
    fresh = tiny("mdhr.bp4d_swin_b")
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    M.load_official_state_dict(fresh, sd)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), fresh.state_dict().values()))
    with torch.no_grad():  # eval: Swin's stochastic depth (0.5) is off
        torch.testing.assert_close(fresh.eval()(clip())["au"], m.eval()(clip())["au"])
    bad = dict(sd)
    bad.pop("CRM.gat.bias")
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="missing: CRM.gat.bias.*unexpected: extra.weight"):
        M.load_official_state_dict(fresh, bad)
    mask = next(k for k in sd if k.endswith("attn_mask"))
    with pytest.raises(ValueError, match="window configuration"):
        M.load_official_state_dict(fresh, {**sd, mask: torch.zeros_like(sd[mask])})
    with pytest.raises(ValueError, match="official checkpoints"):
        M.official_key_map(tiny("mdhr.bp4d_lite0", pretrained=False))


def test_load_official_imagenet_backbone():
    src = tiny("mdhr.bp4d_resnet50")
    trunk = {k[len("Backbone."):]: v for k, v in M.to_official_state_dict(src).items() if k.startswith("Backbone.")}
    trunk = {k: v for k, v in trunk.items() if not k.endswith("num_batches_tracked")}  # old torchvision files
    trunk["fc.weight"], trunk["fc.bias"] = torch.zeros(1000, 32), torch.zeros(1000)  # the classifier is ignored
    dst = tiny("mdhr.bp4d_resnet50")
    with torch.no_grad():
        for p in dst.parameters():
            p.zero_()
    M.load_official_backbone(dst, trunk)
    a, b = src.state_dict(), dst.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("backbone.") and "num_batches" not in k)
    assert float(b["classifier.sc"].abs().sum()) == 0.0  # only the trunk changes
    with pytest.raises(ValueError, match="does not fit"):
        M.load_official_backbone(dst, {k: v for k, v in trunk.items() if k != "conv1.weight"})


# -------------------------------------------------------------------------------------------- losses
def test_weighted_asymmetric_loss_by_hand():
    p = torch.tensor([[0.9, 0.2, 0.5], [0.3, 0.6, 0.99]], requires_grad=True)
    y = torch.tensor([[1, 0, -1], [0, 1, 1]])
    w = torch.tensor([2.0, 1.0, 0.5])
    loss = weighted_asymmetric_loss(p, y, w)
    terms = [2.0 * math.log(0.9), 1.0 * 0.2 * math.log(0.8), 2.0 * 0.3 * math.log(0.7), 1.0 * math.log(0.6),
             0.5 * math.log(0.99)]
    assert float(loss.detach()) == pytest.approx(-sum(terms) / 5, rel=1e-6)
    loss.backward()
    # the negatives' factor p̄ carries no gradient: d/dp of −w p̄ log(1 − p) is w p̄ / (1 − p)
    assert float(p.grad[0, 1]) == pytest.approx(1.0 * 0.2 / 0.8 / 5, rel=1e-5)
    assert float(p.grad[0, 2]) == 0.0  # unknown label
    assert float(weighted_asymmetric_loss(torch.tensor([[0.0]]), torch.tensor([[1]]))) == pytest.approx(
        -math.log(1e-8), rel=1e-6)  # clamp at eps
    assert float(weighted_asymmetric_loss(p.detach(), torch.full_like(y, -1))) == 0.0


def test_sub_loss_by_hand():
    logits = [torch.tensor([[2.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]]), torch.tensor([[0.5, -0.5], [0.0, 0.0]])]
    groups = ((0, 1), (2,))
    y = torch.tensor([[1, 1, 0], [0, -1, 1]])  # codes: frame 0 → (3, 0); frame 1 → (unknown, 1)
    ce = lambda z, c: float(torch.logsumexp(z, 0) - z[c])  # noqa: E731
    expected = (ce(logits[0][0], 3) + (ce(logits[1][0], 0) + ce(logits[1][1], 1)) / 2) / 2
    assert float(sub_loss(logits, y, groups)) == pytest.approx(expected, rel=1e-6)


def test_mdhr_loss_total_and_padding():
    torch.manual_seed(0)
    b, t = 2, 3
    out = {"au_prob": torch.rand(b, t, 12), "sub": tuple(torch.randn(b, t, 2 ** len(g)) for g in BP4D_GROUPS),
           "sub_groups": BP4D_GROUPS}
    au = torch.randint(0, 2, (b, t, 12))
    valid = torch.ones(b, t, dtype=torch.bool)
    au[1, 2] = -1
    valid[1, 2] = False  # a padded frame
    batch = {"au": au, "valid": valid}
    w = torch.rand(12) + 0.5
    res = mdhr_loss(out, None, batch, None, ctx=LossContext(au_weight=w))
    l_au = weighted_asymmetric_loss(out["au_prob"], au, w)
    l_sub = sub_loss(out["sub"], au, BP4D_GROUPS)
    torch.testing.assert_close(res["loss"], l_au + 0.01 * l_sub)
    torch.testing.assert_close(res["loss_au"], l_au)
    out2 = {**out, "au_prob": out["au_prob"].clone(), "sub": tuple(s.clone() for s in out["sub"])}
    out2["au_prob"][1, 2] = 0.5
    out2["sub"][0][1, 2] += 3.0  # padded frame: never counts
    torch.testing.assert_close(mdhr_loss(out2, None, batch, None, ctx=LossContext(au_weight=w))["loss"], res["loss"])
    unweighted = mdhr_loss(out, None, batch, None, ctx=LossContext(), class_weights=False)
    torch.testing.assert_close(unweighted["loss_au"], weighted_asymmetric_loss(out["au_prob"], au))
    assert mdhr_loss.uses_class_weights is True


def test_class_weights_by_hand():
    y = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])  # rates 3/4 and 1/4
    inv = np.array([4 / 3, 4.0])
    np.testing.assert_allclose(mdhr_class_weights(y), inv / inv.sum() * 2)


def test_optimisation_step_lowers_the_loss():
    m = tiny(input_size=32)
    m.train()
    x = clip(b=2, t=11, size=32, seed=3)
    g = torch.Generator().manual_seed(4)
    batch = {"au": torch.randint(0, 2, (2, 11, 12), generator=g), "valid": torch.ones(2, 11, dtype=torch.bool)}
    ctx = LossContext(au_weight=torch.ones(12))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=5e-4)
    losses = []
    for _ in range(4):
        res = mdhr_loss(m(x), None, batch, None, ctx=ctx)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        losses.append(float(res["loss"].detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


# -------------------------------------------------------------------------------------------- engine
def test_engine_trains_and_evaluates_mdhr(tmp_path):
    """One epoch of aufer's engine on a synthetic 12-AU BP4D store with a tiny MDHR and the registered MDHR loss;
    evaluation of an AU-only model reports AU F1 and no expression metrics."""
    from engine_data import au_store, tiny_recipe  # noqa: PLC0415

    from aufer import vocab  # noqa: PLC0415
    from aufer.engine.recipe import load  # noqa: PLC0415
    from aufer.engine.runner import fit  # noqa: PLC0415

    from aufer.training import LOSSES  # noqa: PLC0415

    assert LOSSES["mdhr"] is mdhr_loss
    store = au_store(tmp_path / "au.sqlite", aus=vocab.dataset_aus("BP4D"), frames=12, seed=2)
    r = tiny_recipe(store, model={"name": "mdhr.bp4d_resnet50",
                                  "args": {"hf_config": tiny_resnet(), "input_size": 32, "dim": 16}},
                    train={"loss": "mdhr", "epochs": 1}, select={"metric": ["au_f1_mean"]})
    r["data"]["au"].update(clip_len=11, batch_size=2)
    res = fit(load(values=r), tmp_path / "run", progress=False)
    assert res is not None
    metrics = json.loads(next((tmp_path / "run").rglob("metrics.json")).read_text())
    assert "au_f1_mean" in json.dumps(metrics) and "uar" not in json.dumps(metrics)


@pytest.mark.slow
def test_aufer_import_mdhr_round_trip_and_bad_checkpoints(tmp_path, monkeypatch):
    """`aufer import mdhr` on a checkpoint laid out as the official train.py saves it ({"state_dict": ...},
    DataParallel's "module." prefix) gives a model folder whose outputs equal the source model's; a checkpoint of
    the other dataset, or a damaged file, is one line and exit code 2."""
    from typer.testing import CliRunner

    from aufer.cli import app
    from aufer.models import create_model, load_model
    from aufer.methods.mdhr import to_official_state_dict

    torch.manual_seed(0)
    src = create_model("mdhr.bp4d_resnet50", pretrained=False).eval()
    sd = {"module." + k: v for k, v in to_official_state_dict(src).items()}
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "best_model.pth")
    r = CliRunner().invoke(app, ["import", "mdhr", str(tmp_path / "best_model.pth"), "--dataset", "BP4D",
                                 "--backbone", "resnet50", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.stderr
    got = load_model(tmp_path / "m").eval()
    x = torch.randint(0, 255, (1, 11, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(got(got.preprocess(x))["au"], src(src.preprocess(x))["au"], atol=1e-5, rtol=0)
    bad = CliRunner().invoke(app, ["import", "mdhr", str(tmp_path / "best_model.pth"), "--dataset", "DISFA",
                                   "--backbone", "resnet50", "--out", str(tmp_path / "m2")])
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.exit_code == 2 and len(lines) == 1 and "does not fit" in lines[0] and "Traceback" not in bad.stderr
    (tmp_path / "cut.pth").write_bytes((tmp_path / "best_model.pth").read_bytes()[:5000])
    bad = CliRunner().invoke(app, ["import", "mdhr", str(tmp_path / "cut.pth"), "--dataset", "BP4D",
                                   "--backbone", "resnet50", "--out", str(tmp_path / "m3")])
    assert bad.exit_code == 2 and "cannot be read" in bad.stderr and not (tmp_path / "m3").exists()


# ------------------------------------------------------------------------------------------ ablations
ABLATIONS = [dict(mfd=False), dict(mfd_scales=[2]), dict(mfd_scales=[1, 4], mfd_fusion="sum"),
             dict(mfd_fusion="concat"), dict(afe=False), dict(aux_branch=False, cross_edges="full"),
             dict(cross_edges="cross"), dict(cross_edges="local"), dict(cross_edges="none"), dict(tcn=False),
             dict(mfd=False, afe=False, aux_branch=False, cross_edges="none", tcn=False)]


@pytest.mark.parametrize("kw", ABLATIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_ablation_switch_builds_runs_and_is_recorded(kw):
    m = tiny(**kw)
    out = m(clip())
    p = out["au_prob"].detach()
    assert out["au"].shape == (2, 11, 12) and out["features"].shape == (2, 11, 12, 16)
    assert float(p.min()) >= 0 and float(p.max()) <= 1 + 1e-6
    assert ("sub" in out) == kw.get("aux_branch", True)
    assert not m.is_official and all(m.config[k] == v for k, v in kw.items())
    again = create_model(**json.loads(json.dumps(m.config)))
    assert again.state_dict().keys() == m.state_dict().keys() and again.ablation == m.ablation
    # no dead modules: every parameter gets a gradient
    (out["au"].sum() + sum(s.sum() for s in out.get("sub", ()))).backward()
    assert [n for n, p in m.named_parameters() if p.grad is None] == []


def test_default_is_the_official_architecture_and_bad_switches_fail():
    m = tiny()
    assert m.is_official and m.ablation == {"mfd": True, "mfd_scales": [1, 2, 3, 4], "mfd_fusion": "adaptive",
                                            "afe": True, "aux_branch": True, "cross_edges": "activated", "tcn": True}
    assert m.cross.gated and len(m.mfd.diff_convs) == 4 and m.mfd.fusion == "adaptive"
    for bad in (dict(aux_branch=False), dict(cross_edges="dense"), dict(mfd_fusion="max"), dict(mfd_scales=[0]),
                dict(mfd_scales=[]), dict(mfd_scales=[2, 2])):
        with pytest.raises(ValueError):
            tiny(**bad)
    # an ablation still takes the official ImageNet trunk
    dst = tiny(mfd=False, tcn=False)
    trunk = {k[len("Backbone."):]: v for k, v in M.to_official_state_dict(m).items() if k.startswith("Backbone.")}
    M.load_official_backbone(dst, trunk)
    assert torch.equal(dst.state_dict()["backbone.net.embedder.embedder.convolution.weight"],
                       m.state_dict()["backbone.net.embedder.embedder.convolution.weight"])


def test_mfd_variants():
    one = tiny(mfd_scales=[2])  # X_2 (stride 8): kernel = stride = 4 onto the stride-32 grid; nothing to fuse
    assert [c.kernel_size for c in one.mfd.diff_convs] == [(4, 4)] and one.mfd.fusion == "single"
    assert not hasattr(one.mfd, "weight_convs")
    cat = tiny(mfd_fusion="concat")
    assert cat.mfd.proj.in_channels == 4 * 32 and not hasattr(cat.mfd, "weight_fuse")
    summed = tiny(mfd_scales=[3, 4], mfd_fusion="sum").eval()
    with pytest.raises(ValueError, match="no adaptive weights"):
        summed.mfd.scale_weights([])
    with torch.no_grad():
        _, maps = summed.backbone(clip().flatten(0, 1))
        d3, d4 = summed.mfd.pooled_differences(maps, 2, 11)
        ref = F.relu(summed.mfd.proj_bn(summed.mfd.proj(d3 + d4).flatten(2))).transpose(1, 2)
        torch.testing.assert_close(summed.mfd(maps, 2, 11), ref)


def test_no_mfd_is_the_static_branch_and_frame_wise_without_tcn():
    """Without MFD, G is the static branch alone; without MFD and TCN nothing mixes frames, so (eval mode)
    permuting a clip's frames permutes the outputs the same way and each frame alone gives its own output. The
    TCN, or MFD, breaks that."""
    m = tiny(mfd=False, tcn=False).eval()
    x = clip(b=1, t=6)
    with torch.no_grad():
        g, _ = m.fused_tokens(x)
        torch.testing.assert_close(g, m.static(m.backbone(x.flatten(0, 1))[0]), rtol=0, atol=0)
        perm = torch.tensor([3, 0, 5, 1, 4, 2])
        p = m(x)["au_prob"]
        torch.testing.assert_close(m(x[:, perm])["au_prob"], p[:, perm], rtol=1e-5, atol=1e-6)
        alone = torch.cat([m(x[:, i:i + 1])["au_prob"] for i in range(6)], 1)  # T = 1 works without MFD
        torch.testing.assert_close(alone, p, rtol=1e-5, atol=1e-6)
        for other in (tiny(mfd=False).eval(), tiny(tcn=False, k=1).eval()):
            assert not torch.allclose(other(x[:, perm])["au_prob"], other(x)["au_prob"][:, perm], atol=1e-4)


def test_no_afe_gives_every_au_the_global_feature():
    m = tiny(afe=False, cross_edges="none", tcn=False).eval()
    assert m.local.au_blocks is None and m.local.sub_heads is not None
    with torch.no_grad():
        g, feats = m.fused_tokens(clip())[0], m(clip())["features"]
    torch.testing.assert_close(feats, g.mean(1).reshape(2, 11, 1, 16).expand(-1, -1, 12, -1))


def test_aux_off_has_no_sub_outputs_or_heads():
    m = tiny(aux_branch=False, cross_edges="cross")
    out = m(clip())
    assert "sub" not in out and out["sub_groups"] == BP4D_GROUPS
    assert m.local.sub_heads is None and not any(k.startswith("local.sub_heads") for k in m.state_dict())


def test_loss_without_aux_branch_is_l_au():
    m = tiny(aux_branch=False, cross_edges="full", input_size=32)
    out = m(clip(size=32))
    batch = {"au": torch.randint(0, 2, (2, 11, 12), generator=torch.Generator().manual_seed(0))}
    res = mdhr_loss(out, None, batch, None, ctx=LossContext(au_weight=torch.ones(12)))
    torch.testing.assert_close(res["loss"], weighted_asymmetric_loss(out["au_prob"], batch["au"], torch.ones(12)))


def test_cross_edges_masks():
    """For AU1 and AU12 active: the adjacency (with the identity) of each edge strategy on BP4D."""
    active = torch.zeros(1, 12)
    active[0, [0, 6]] = 1
    c, eye = torch.tensor(OFFICIAL_BP4D_CROSS, dtype=torch.float), torch.eye(12)
    gated = eye.clone()
    gated[:, [0, 6]] += c[:, [0, 6]]
    expected = {"activated": gated, "cross": c + eye, "local": 1 - c, "full": torch.ones(12, 12)}
    for mode, adj in expected.items():
        m = tiny(cross_edges=mode)
        assert m.cross.gated == (mode == "activated")
        assert torch.equal(m.cross.adjacency(active)[0], adj), mode
        assert torch.equal(edge_mask(BP4D_GROUPS, 12, mode), c if mode == "activated" else adj - eye), mode
    assert tiny(cross_edges="none").cross is None
    assert (1 - c)[0].nonzero().flatten().tolist() == [0, 1, 2, 4]  # AU1's region: AU1 2 4 7
    # "local": AU6 (the mid region, alone) neither sends to nor receives from any other AU
    gat, v = tiny(cross_edges="local").cross, torch.randn(1, 12, 16)
    v2, keep = v.clone(), [j for j in range(12) if j != 3]
    v2[0, 3] += 5.0
    with torch.no_grad():
        out, out2 = gat(v), gat(v2)
        torch.testing.assert_close(out2[0, keep], out[0, keep])
        torch.testing.assert_close(out[0, 3], F.elu(gat.linear(v)[0, 3] + v[0, 3] + gat.bias))


def test_ablation_recipes_build():
    """Each shipped ablation recipe names its table row and builds (tiny trunk) with its switches."""
    from aufer.engine.recipe import read  # noqa: PLC0415

    files = sorted((Path(__file__).parents[1] / "configs" / "mdhr" / "ablations").glob("*.yaml"))
    assert len(files) >= 8
    for f in files:
        assert "Table " in f.read_text(), f
        r = read(f)
        args = r["model"]["args"]
        m = tiny(r["model"]["name"], input_size=32, **{k: v for k, v in args.items() if k != "model"})
        assert not m.is_official and all(m.ablation[k] == v for k, v in args.items() if k in m.ablation), f
        assert m(clip(b=1, size=32))["au"].shape == (1, 11, 12)


def test_ablation_models_have_no_official_checkpoint_layout():
    from aufer.methods.mdhr import load_official_state_dict, to_official_state_dict

    m = create_model("mdhr.bp4d_resnet50", hf_config=tiny_resnet(), pretrained=False, input_size=64, dim=16,
                     mfd_scales=[3])
    with pytest.raises(ValueError, match="only for the full model"):
        to_official_state_dict(m)
    with pytest.raises(ValueError, match="only for the full model"):
        load_official_state_dict(m, {})
