"""SSM's building blocks (aufer.methods.ssm.modules): DPM invariants, the MoE FFN, the temporal nets' official
initialisation and the frame-pair smoother."""

import math

import pytest
import torch
import torch.nn as nn

from aufer.methods.ssm.vocab import ssm_prior
from aufer.methods.ssm.modules import (NEUTRAL, DynamicPriorMapping, LocalFrameAttention, MoEFFN, PairSmoother,
                                      TemporalTransformerAll, TemporalTransformerCls)


@pytest.mark.parametrize("ds,n", [("BP4D", 7), ("BP4D", 11), ("DISFA", 7), ("DISFA", 11)])
def test_dpm_maps_equal_the_prior_at_zero_delta(ds, n):
    p = torch.tensor(ssm_prior(ds, n), dtype=torch.float32)
    a2e, e2a = DynamicPriorMapping(p).maps()
    assert a2e.shape == p.shape and e2a.shape == p.t().shape
    torch.testing.assert_close(a2e, p, atol=1e-6, rtol=0)
    torch.testing.assert_close(e2a, p.t(), atol=1e-6, rtol=0)


def test_dpm_keeps_row_mass_and_fixes_neutral_under_any_delta():
    p = torch.tensor(ssm_prior("BP4D", 7), dtype=torch.float32)
    dpm = DynamicPriorMapping(p)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        dpm.delta_map1.copy_(torch.randn(dpm.delta_map1.shape, generator=g) * 3)
        dpm.delta_map2.copy_(torch.randn(dpm.delta_map2.shape, generator=g) * 3)
    a2e, e2a = dpm.maps()
    assert not torch.allclose(a2e, p, atol=1e-2)  # the deltas moved the maps
    torch.testing.assert_close(a2e.sum(1), p.sum(1))  # each emotion keeps its prior row mass
    torch.testing.assert_close(e2a.sum(1), p.sum(0))  # each AU keeps its prior column mass
    torch.testing.assert_close(a2e[NEUTRAL], p[NEUTRAL], atol=0, rtol=0)  # neutral row fixed
    torch.testing.assert_close(e2a[:, NEUTRAL], p[NEUTRAL], atol=0, rtol=0)  # neutral column fixed (= Pᵀ[:, n])
    assert (a2e >= 0).all() and (e2a >= 0).all()


def test_dpm_gradients_reach_deltas_but_not_neutral_entries():
    p = torch.tensor(ssm_prior("DISFA", 7), dtype=torch.float32)
    dpm = DynamicPriorMapping(p)
    t_e, t_a = torch.nn.functional.normalize(torch.randn(7, 16), dim=-1), torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    out = dpm(t_e, t_a)
    (out["t_e"].sum() + out["t_a"].square().sum() * 0.3 + out["t_e"][:, 0].square().sum()).backward()
    assert dpm.delta_map1.grad.abs().sum() > 0 and dpm.delta_map2.grad.abs().sum() > 0
    assert dpm.delta_map1.grad[NEUTRAL].abs().max() == 0  # the fixed neutral row takes no gradient
    assert dpm.delta_map2.grad[:, NEUTRAL].abs().max() == 0
    torch.testing.assert_close(out["t_e"].norm(dim=-1), torch.ones(7))
    assert math.isclose(torch.sigmoid(dpm.alpha).item(), 0.1, rel_tol=1e-6)


def test_dpm_mixing_at_init_is_prior_weighted_sum():
    p = torch.tensor(ssm_prior("BP4D", 7), dtype=torch.float32)
    dpm = DynamicPriorMapping(p)
    g = torch.Generator().manual_seed(1)
    t_e = torch.nn.functional.normalize(torch.randn(7, 8, generator=g), dim=-1)
    t_a = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=-1)
    out = dpm(t_e, t_a)
    want = t_e + 0.1 * (p @ t_a)
    torch.testing.assert_close(out["t_e"], want / want.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)


def test_dpm_rejects_bad_priors():
    with pytest.raises(ValueError, match="positive"):
        DynamicPriorMapping(torch.zeros(7, 12))
    with pytest.raises(ValueError, match="neutral"):
        DynamicPriorMapping(torch.ones(2, 3), neutral=2)


def _moe(d=16, hidden=8, noise=1e-2, act="gelu"):
    torch.manual_seed(0)
    return MoEFFN(nn.Linear(d, 4 * d), nn.Linear(4 * d, d), n_experts=4, hidden=hidden, noise_std=noise, shared_act=act)


def _hand_moe(m, flat, experts_of):
    """shared MLP (exact GELU) + α Σ_s g_s(token) · E_{experts_of[token, s]}(token)."""
    w, _ = m.routing(flat)
    want = m.shared_fc2(torch.nn.functional.gelu(m.shared_fc1(flat)))
    side = torch.stack([sum(w[i, s] * m.private_experts[int(experts_of[i, s])](flat[i:i + 1])[0] for s in range(2))
                        for i in range(len(flat))])
    return want + m.alpha * side


def test_moe_shapes_init_and_top2_without_renormalisation():
    m = _moe()
    m.dispatch = "per_token"
    assert m.alpha.item() == pytest.approx(0.1)
    assert torch.all(m.gate.bias == 0) and all(torch.all(e.fc1.bias == 0) for e in m.private_experts)
    x = torch.randn(3, 5, 16)
    m.eval()
    y = m(x)
    assert y.shape == x.shape
    flat = x.reshape(-1, 16)
    probs = torch.softmax(m.gate(flat), -1)
    w, idx = m.routing(flat)
    assert w.shape == idx.shape == (15, 2)
    torch.testing.assert_close(w, probs.topk(2, -1).values)  # top-2 probabilities as they are
    assert bool((w.sum(-1) < 1).all())  # not renormalised
    torch.testing.assert_close(y.reshape(-1, 16), _hand_moe(m, flat, idx), atol=1e-6, rtol=1e-5)


def test_moe_official_dispatch_uses_the_flattened_traversal_order():
    """The released code gives slot s of token j the expert at flat position s·N + j of the row-major (N, 2)
    index table, tokens ordered sequence-first as in OpenAI CLIP."""
    m = _moe().eval()
    x = torch.randn(3, 5, 16)  # (batch, sequence, D) as transformers passes it
    y = m(x)
    flat = x.transpose(0, 1).reshape(-1, 16)  # OpenAI's (sequence, batch) order
    _, idx = m.routing(flat)
    scrambled = idx.reshape(-1).reshape(2, -1).t()
    want = _hand_moe(m, flat, scrambled).reshape(5, 3, 16).transpose(0, 1)
    torch.testing.assert_close(y, want, atol=1e-6, rtol=1e-5)
    m.dispatch = "per_token"
    assert not torch.allclose(m(x), y, atol=1e-4)  # the two dispatches differ
    with pytest.raises(ValueError, match="dispatch"):
        MoEFFN(nn.Linear(4, 8), nn.Linear(8, 4), dispatch="sorted")


def test_moe_quick_gelu_option_and_bad_args():
    m = _moe(act="quick_gelu").eval()
    x = torch.randn(4, 16)
    with torch.no_grad():
        m.alpha.zero_()
        want = m.shared_fc2(m.shared_fc1(x) * torch.sigmoid(1.702 * m.shared_fc1(x)))
    torch.testing.assert_close(m(x), want)
    with pytest.raises(ValueError, match="shared_act"):
        _moe(act="relu")
    with pytest.raises(ValueError, match="topk"):
        MoEFFN(nn.Linear(4, 8), nn.Linear(8, 4), n_experts=2, topk=3)


def test_moe_router_noise_only_in_training():
    m = _moe(noise=0.5)
    x = torch.randn(10, 16)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, m(x))


def test_temporal_cls_official_init_and_shapes():
    torch.manual_seed(0)
    net = TemporalTransformerCls(16, 32, 1, 4, 8, 64)
    assert net.gate.item() == 1.0
    # N(0, 1) init of the CLS token and position embedding (torch.randn), not a small std
    assert 0.7 < net.pos_embedding.std().item() < 1.3
    assert net.pos_embedding.shape == (1, 17, 32) and net.cls_token.shape == (1, 1, 32)
    out = net(torch.randn(2, 16, 32))
    assert out.shape == (2, 32)
    with pytest.raises(ValueError, match="at most 16"):
        net(torch.randn(1, 17, 32))


def test_local_frame_attention_is_identity_at_init_and_local():
    torch.manual_seed(0)
    layer = LocalFrameAttention(16, 32, 4, 8, radius=1)
    torch.testing.assert_close(layer.to_k.weight, layer.to_q.weight)
    assert torch.all(layer.relative_position_bias[:, 1] == 1) and torch.all(layer.relative_position_bias[:, [0, 2]] == 0)
    x = torch.randn(2, 16, 32)
    torch.testing.assert_close(layer(x), x)  # channel gate 0 → identity
    with torch.no_grad():
        layer.channel_gate.fill_(5.0)
    y = layer(x)
    assert not torch.allclose(y, x)
    x2 = x.clone()
    x2[:, 10] += 3.0  # a change at frame 10 reaches frames 9..11 only
    changed = (layer(x2) - y).abs().amax(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == [9, 10, 11]
    with pytest.raises(ValueError, match="heads"):
        LocalFrameAttention(16, 30, 4, 8)
    assert TemporalTransformerAll(16, 32, 1, 4, 8)(x).shape == x.shape


def test_pair_smoother_init_and_pairs():
    s = PairSmoother(3)
    assert torch.all(s.conv.weight == 0.2) and s.conv.weight.requires_grad
    z = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    out = s(z)
    pair_sum = z.reshape(2, 2, 2, 3).sum(2, keepdim=True) / 5
    torch.testing.assert_close(out, pair_sum.expand(2, 2, 2, 3).reshape(2, 4, 3))
    odd = s(z[:, :3])  # odd T: the last frame pairs with itself
    torch.testing.assert_close(odd[:, :2], out[:, :2])
    torch.testing.assert_close(odd[:, 2], 2 * z[:, 2] / 5)
