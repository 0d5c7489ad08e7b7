"""MAL (reconstructed, methods.md §5) and the multi-task baselines: the meta gradient against finite differences,
the weights on a constructed toy problem, BatchNorm statistics, the Meta-Weight-Net variant, uncertainty weighting,
and both through the engine on a tiny recipe."""

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from engine_data import au_store, expr_store, tiny_recipe

from aufer.training.steps import StepContext
from aufer.training.losses import LossContext, masked_bce
from aufer.methods.mal.step import (MetaWeightNet, au_loss, fe_losses, mal_meta_gradient, mal_meta_weights, mal_step, mwn_update,
                       param_lrs, split_batch)
from aufer.methods.mtl.uncertainty import UncertaintyWeights, uncertainty_loss, uncertainty_terms
from aufer.training import attach_loss_params


class TinyJoint(nn.Module):
    """A 2-layer per-frame MLP with the joint model's interface (identity preprocess, no landmarks)."""

    emotions = ("happiness", "sadness", "neutral")
    uses_landmarks = False

    def __init__(self, d=5, h=4, a=2, e=3, bn=False):
        super().__init__()
        self.fc = nn.Linear(d, h)
        self.bn = nn.BatchNorm1d(h) if bn else None
        self.au_head = nn.Linear(h, a)
        self.expr_head = nn.Linear(h, e)

    def preprocess(self, crops):
        return crops

    def forward(self, x, landmarks=None):
        b, t = x.shape[:2]
        z = self.fc(x.reshape(b * t, -1))
        if self.bn is not None:
            z = self.bn(z)
        z = torch.tanh(z).reshape(b, t, -1)
        return {"au": self.au_head(z), "expr": self.expr_head(z.mean(1))}


def _batch(g, b, t=3, d=5, a=2, e=3, dtype=torch.float64, unknown=True):
    au = torch.randint(0, 2, (b, t, a), generator=g)
    expr = torch.randint(0, e, (b,), generator=g)
    if unknown:
        au[0, 0, 0] = -1
        expr[-1] = -1
    return {"crops": torch.randn(b, t, d, generator=g, dtype=dtype), "au": au, "expr": expr}


@pytest.fixture
def problem():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = TinyJoint(bn=True).double().train()
    return model, _batch(g, 4), _batch(g, 6), _batch(g, 4, unknown=False)


# ------------------------------------------------------------------------------------- the meta gradient
def test_meta_gradient_matches_finite_differences_with_per_group_lr(problem):
    model, b_a, b_e, b_m = problem
    lrs = {n: (0.3 if n.startswith("fc") or n.startswith("bn") else 0.7) for n, _ in model.named_parameters()}
    cw = torch.tensor([0.8, 1.4], dtype=torch.float64)
    g = mal_meta_gradient(model, b_a, b_e, b_m, lr=lrs, au_weight=cw)
    params = dict(model.named_parameters())

    def meta_at(eps):
        bufs = {n: b.clone() for n, b in model.named_buffers()}
        out_a = functional_call(model, bufs, (b_a["crops"],))
        bufs = {n: b.clone() for n, b in model.named_buffers()}
        out_e = functional_call(model, bufs, (b_e["crops"],))
        inner = masked_bce(out_a["au"], b_a["au"], weight=cw) + (eps * fe_losses(out_e["expr"], b_e["expr"])).sum()
        grads = torch.autograd.grad(inner, list(params.values()))
        fast = {n: (p - lrs[n] * gr).detach() for (n, p), gr in zip(params.items(), grads)}
        bufs = {n: b.clone() for n, b in model.named_buffers()}
        out = functional_call(model, {**fast, **bufs}, (b_m["crops"],))
        return float(masked_bce(out["au"], b_m["au"], weight=cw))

    h = 1e-5
    fd = []
    for i in range(len(g)):
        e = torch.zeros(len(g), dtype=torch.float64)
        e[i] = h
        fd.append((meta_at(e) - meta_at(-e)) / (2 * h))
    fd = torch.tensor(fd, dtype=torch.float64)
    assert g.dtype == torch.float64 and g.shape == (6,)
    assert g[-1] == 0 and abs(fd[-1]) < 1e-9  # the unknown-label sample has no loss, hence no influence
    assert torch.allclose(g, fd, rtol=1e-4, atol=1e-10), (g, fd)
    assert (g[:-1].abs() > 1e-6).all()
    # a scalar η is the same as that η for every parameter; η per group matters
    g1 = mal_meta_gradient(model, b_a, b_e, b_m, lr=0.5, au_weight=cw)
    g2 = mal_meta_gradient(model, b_a, b_e, b_m, lr={n: 0.5 for n in params}, au_weight=cw)
    assert torch.allclose(g1, g2) and not torch.allclose(g1, g)


def test_param_lrs_follow_the_optimiser_groups():
    model = TinyJoint()
    opt = torch.optim.SGD([{"params": list(model.fc.parameters()), "lr": 0.1},
                           {"params": list(model.au_head.parameters()) + list(model.expr_head.parameters()), "lr": 0.02}])
    lrs = param_lrs(model, opt)
    assert lrs["fc.weight"] == 0.1 and lrs["au_head.bias"] == 0.02 and len(lrs) == 6
    assert set(param_lrs(model, opt, only=["fc"])) == {"fc.weight", "fc.bias"}
    assert set(param_lrs(model, opt, meta_lr=1.0).values()) == {1.0}
    model.fc.weight.requires_grad_(False)
    assert "fc.weight" not in param_lrs(model, opt)


def test_shared_forward_gives_the_same_gradient(problem):
    """The step reuses its real forward for the look-ahead; the stateless path (DDP) gives the same g."""
    model, b_a, b_e, b_m = problem
    ref = mal_meta_gradient(model, b_a, b_e, b_m, lr=0.4)
    outs = (model(b_a["crops"]), model(b_e["crops"]))
    shared = mal_meta_gradient(model, b_a, b_e, b_m, lr=0.4, outputs=outs)
    assert torch.allclose(ref, shared)
    loss = au_loss(outs[0]["au"], b_a["au"]) + fe_losses(outs[1]["expr"], b_e["expr"]).sum()
    loss.backward()  # the real forward's graph is still there for the loop's backward
    assert model.fc.weight.grad is not None


# ---------------------------------------------------------------------------------------- the weights
class SharedLinear(nn.Module):
    """One weight vector w shared by the AU logit a = x·w and the expression logits (a, −a): "happiness" means
    the AU is on, "sadness" that it is off."""

    emotions = ("happiness", "sadness")
    uses_landmarks = False

    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d, dtype=torch.float64))

    def preprocess(self, crops):
        return crops

    def forward(self, x, landmarks=None):
        a = x @ self.w
        return {"au": a[..., None], "expr": torch.stack([a.mean(1), -a.mean(1)], 1)}


def _toy(g, n, mu, flip=False):
    on = torch.arange(n) % 2 == 0
    x = 0.3 * torch.randn(n, 2, len(mu), generator=g, dtype=torch.float64)
    x += torch.where(on, 1.0, -1.0)[:, None, None] * mu
    au = on.long()[:, None, None].expand(n, 2, 1).clone()
    expr = torch.where(on ^ flip, 0, 1)
    return {"crops": x, "au": au, "expr": expr}


def test_opposing_expression_samples_get_lower_weights_than_helpful_ones():
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([1.0, 0.5, -0.5, 0.2], dtype=torch.float64)
    model = SharedLinear(4)
    b_a, b_m = _toy(g, 8, mu), _toy(g, 8, mu)
    helpful, opposing = _toy(g, 6, mu), _toy(g, 6, mu, flip=True)  # opposing: labels contradict the AU evidence
    b_e = {k: torch.cat([helpful[k], opposing[k]]) for k in helpful}
    w = mal_meta_weights(model, b_a, b_e, b_m, lr=0.5)
    g_ = mal_meta_gradient(model, b_a, b_e, b_m, lr=0.5)
    assert (w[:6] > 0).all() and (w[6:] == 0).all()
    assert w[:6].min() > w[6:].max()
    assert (g_[6:] > 0).all()  # their gradients oppose the AU task's: an up-weighting would raise the meta loss
    # ≥ 0, not normalised, w = c · max(−g, 0)
    assert (w >= 0).all() and not math.isclose(float(w.sum()), 1.0, rel_tol=1e-3)
    assert torch.allclose(w, (-g_).clamp(min=0))
    assert torch.allclose(mal_meta_weights(model, b_a, b_e, b_m, lr=0.5, scale=3.0), 3 * w)
    # g is about proportional to η (exactly to first order): the weights are not rescaled to a fixed total
    half = mal_meta_weights(model, b_a, b_e, b_m, lr=0.25)
    assert 0.4 < float(half.sum() / w.sum()) < 0.6


def test_split_batch():
    b = {"crops": torch.zeros(5, 2, 3), "au": torch.zeros(5, 2, 1), "name": "x"}
    a, m = split_batch(b, 0.4)
    assert a["crops"].shape[0] == 3 and m["crops"].shape[0] == 2 and a["name"] == "x"
    assert split_batch(b, 0.01)[1]["crops"].shape[0] == 1 and split_batch(b, 0.99)[0]["crops"].shape[0] == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_batch({"crops": torch.zeros(1, 2, 3)})


# ------------------------------------------------------------------------------------------ BatchNorm
def _bn_state(model):
    return {n: b.clone() for n, b in model.named_buffers()}


def test_the_look_ahead_leaves_the_running_statistics_alone(problem):
    model, b_a, b_e, b_m = problem
    before = _bn_state(model)
    mal_meta_weights(model, b_a, b_e, b_m, lr=0.3)
    assert all(torch.equal(before[n], b) for n, b in model.named_buffers())
    # through the step: exactly what the real forward of B_a and B_e does (as a joint step), nothing more
    au = {k: torch.cat([b_a[k], b_m[k]]) for k in b_a}
    ref = copy.deepcopy(model)
    ref(split_batch(au)[0]["crops"]), ref(b_e["crops"])
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    ctx = StepContext(device=torch.device("cpu"), loss=LossContext(au_weight=None), optimizer=opt,
                      args={"class_weights": False})
    out = mal_step(model, au, b_e, None, ctx)
    for n, b in model.named_buffers():
        assert torch.equal(b, dict(ref.named_buffers())[n]), n
    assert model.bn.num_batches_tracked == before["bn.num_batches_tracked"] + 2
    out["loss"].backward()
    assert out["mal_weight_mean"] >= 0 and 0 <= out["mal_weight_zero_frac"] <= 1


# -------------------------------------------------------------------------------------- Meta-Weight-Net
def test_meta_weight_net_weights_are_in_0_1_and_it_learns(problem):
    model, b_a, b_e, b_m = problem
    torch.manual_seed(0)
    wnet = MetaWeightNet().double()
    opt = torch.optim.Adam(wnet.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in wnet.parameters()]
    meta = mwn_update(model, b_a, b_e, b_m, wnet=wnet, wnet_opt=opt, lr=0.5)
    assert torch.isfinite(meta)
    assert any(not torch.equal(a, p) for a, p in zip(before, wnet.parameters()))
    w = wnet(fe_losses(model(b_e["crops"])["expr"], b_e["expr"]))
    assert ((w > 0) & (w < 1)).all()
    # the step keeps WNet and its Adam in ctx.state as plain state dicts and updates them every step
    m2 = TinyJoint().double()
    ctx = StepContext(device=torch.device("cpu"), loss=LossContext(), optimizer=torch.optim.SGD(m2.parameters(), 0.5),
                      args={"variant": "mwn", "class_weights": False, "wnet_lr": 1e-2})
    au = {k: torch.cat([b_a[k], b_m[k]]) for k in b_a}
    out = mal_step(m2, au, b_e, None, ctx)
    first = copy.deepcopy(ctx.state["mal_wnet"])
    assert all(isinstance(v, torch.Tensor) for v in first["model"].values())
    assert 0 < float(out["mal_weight_mean"]) < 1 and float(out["mal_weight_zero_frac"]) == 0
    mal_step(m2, au, b_e, None, ctx)
    assert any(not torch.equal(first["model"][k], v) for k, v in ctx.state["mal_wnet"]["model"].items())
    assert ctx.state["mal_wnet"]["optim"]["state"][0]["step"] == 2


def test_step_logs_and_loss(problem):
    model, b_a, b_e, b_m = problem
    au = {k: torch.cat([b_a[k], b_m[k]]) for k in b_a}
    ctx = StepContext(device=torch.device("cpu"), loss=LossContext(au_weight=torch.tensor([1.0, 2.0], dtype=torch.float64)),
                      optimizer=torch.optim.SGD(model.parameters(), 0.5), args={"scale": 2.0})
    state = copy.deepcopy(model.state_dict())
    out = mal_step(model, au, b_e, None, ctx)
    model.load_state_dict(state)
    w = mal_meta_weights(model, split_batch(au)[0], b_e, split_batch(au)[1], lr=0.5, au_weight=ctx.loss.au_weight,
                         scale=2.0)
    known = b_e["expr"] >= 0
    assert float(out["mal_weight_mean"]) == pytest.approx(float(w[known].mean()))
    present = {TinyJoint.emotions[k] for k in b_e["expr"][known].tolist()}
    assert {k[6:] for k in out if k.startswith("mal_w_")} == present
    for name in present:
        k = TinyJoint.emotions.index(name)
        assert float(out[f"mal_w_{name}"]) == pytest.approx(float(w[b_e["expr"] == k].mean()))
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values())
    with pytest.raises(ValueError, match="class weights"):
        mal_step(model, au, b_e, None, StepContext(device=torch.device("cpu"), loss=LossContext(),
                                                   optimizer=ctx.optimizer))


# ------------------------------------------------------------------------------------ uncertainty weighting
def _outs(g, with_expr=True):
    out_au = {"au": torch.randn(2, 3, 2, generator=g), "expr": torch.randn(2, 3, generator=g)}
    au_b = {"au": torch.randint(0, 2, (2, 3, 2), generator=g), "expr": torch.full((2,), -1)}
    out_e = {"au": torch.randn(3, 3, 2, generator=g), "expr": torch.randn(3, 3, generator=g)}
    e_b = {"au": torch.full((3, 3, 2), -1), "expr": torch.tensor([0, 2, 1]) if with_expr else torch.full((3,), -1)}
    return out_au, out_e, au_b, e_b


def test_uncertainty_weighting_against_a_hand_computation():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    out_au, out_e, au_b, e_b = _outs(g)
    mod = UncertaintyWeights((0.3, -0.2))
    ctx = LossContext()
    ctx.loss_params = mod
    l_au = F.binary_cross_entropy_with_logits(out_au["au"], au_b["au"].float())
    l_e = F.cross_entropy(out_e["expr"], e_b["expr"])
    res = uncertainty_loss(out_au, out_e, au_b, e_b, ctx=ctx)
    hand = math.exp(-0.3) * l_au + 0.3 + math.exp(0.2) * l_e - 0.2
    assert float(res["loss"].detach()) == pytest.approx(float(hand), rel=1e-6)
    assert float(res["uw_weight_au"]) == pytest.approx(math.exp(-0.3))
    res["loss"].backward()
    assert torch.allclose(mod.log_vars.grad, torch.stack([1 - math.exp(-0.3) * l_au, 1 - math.exp(0.2) * l_e]).float(),
                          atol=1e-6)
    for form, hand in (("regression", 0.5 * math.exp(-0.3) * l_au + 0.15 + 0.5 * math.exp(0.2) * l_e - 0.1),
                       ("classification", math.exp(-0.3) * l_au + 0.15 + math.exp(0.2) * l_e - 0.1)):
        got = uncertainty_loss(out_au, out_e, au_b, e_b, ctx=ctx, form=form)["loss"].detach()
        assert float(got) == pytest.approx(float(hand), rel=1e-6)
    # a task without labels in the step adds neither its loss nor its s term
    out_au, out_e, au_b, e_b = _outs(g, with_expr=False)
    mod.log_vars.grad = None
    res = uncertainty_loss(out_au, out_e, au_b, e_b, ctx=ctx)
    l_au = F.binary_cross_entropy_with_logits(out_au["au"], au_b["au"].float())
    assert float(res["loss"].detach()) == pytest.approx(float(math.exp(-0.3) * l_au + 0.3), rel=1e-6)
    res["loss"].backward()
    assert float(mod.log_vars.grad[1]) == 0.0
    with pytest.raises(RuntimeError, match="attach_loss_params"):
        uncertainty_loss(out_au, out_e, au_b, e_b, ctx=LossContext())
    assert torch.allclose(uncertainty_terms(torch.tensor([2.0]), torch.tensor([math.log(2.0)])),
                          torch.tensor([1 + math.log(2.0)]))


def test_naive_joint_and_single_task_losses_against_a_hand_computation():
    """The baselines without a loss of their own: naive joint = BCE + CE over the labels both batches carry;
    single-task = the same loss with one batch (the other head gets no gradient); class weights per AU."""
    import torch.nn.functional as F

    from aufer.training.losses import joint_loss

    g = torch.Generator().manual_seed(1)
    out_au, out_e, au_b, e_b = _outs(g)
    au_b["au"][0, 0, 1] = -1  # an unknown AU label is left out
    known = au_b["au"] >= 0
    bce = F.binary_cross_entropy_with_logits(out_au["au"][known], au_b["au"][known].float())
    ce = F.cross_entropy(out_e["expr"], e_b["expr"])
    res = joint_loss(out_au, out_e, au_b, e_b, ctx=LossContext())
    assert float(res["loss"]) == pytest.approx(float(bce + ce), rel=1e-6)
    assert float(res["loss_au"]) == pytest.approx(float(bce), rel=1e-6)
    res = joint_loss(out_au, out_e, au_b, e_b, ctx=LossContext(), au_weight=2.0, expr_weight=0.5)
    assert float(res["loss"]) == pytest.approx(float(2 * bce + 0.5 * ce), rel=1e-6)
    au_only = joint_loss(out_au, None, au_b, None, ctx=LossContext())
    assert float(au_only["loss"]) == pytest.approx(float(bce), rel=1e-6)
    e = {k: v.clone().requires_grad_(True) for k, v in out_e.items()}
    expr_only = joint_loss(None, e, None, e_b, ctx=LossContext())
    assert float(expr_only["loss"].detach()) == pytest.approx(float(ce), rel=1e-6)
    expr_only["loss"].backward()
    assert float(e["au"].grad.abs().sum()) == 0.0  # the AU head learns nothing from expression-only data
    ctx = LossContext()
    ctx.au_weight = torch.tensor([0.5, 1.5])
    w = ctx.au_weight.expand_as(out_au["au"])[known]
    hand = (w * F.binary_cross_entropy_with_logits(out_au["au"][known], au_b["au"][known].float(),
                                                   reduction="none")).sum() / known.sum()
    got = joint_loss(out_au, None, au_b, None, ctx=ctx, class_weights=True)["loss"]
    assert float(got) == pytest.approx(float(hand), rel=1e-5)  # mean over the known labels of w_j · BCE


def test_uncertainty_parameters_are_in_the_optimizer_and_survive_a_state_round_trip(tmp_path):
    from aufer.engine.state import load_state, save_state

    def setup():
        torch.manual_seed(0)
        model = nn.Linear(3, 3)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        mod = attach_loss_params(uncertainty_loss, {"init": [0.5, 0.0], "lr": 0.05}, opt)
        return model, opt, mod

    model, opt, mod = setup()
    assert any(g.get("name") == "loss_params" and g["params"][0] is mod.log_vars and g["lr"] == 0.05
               and g["weight_decay"] == 0.0 for g in opt.param_groups)
    assert torch.allclose(mod.log_vars, torch.tensor([0.5, 0.0]))
    assert attach_loss_params(lambda *a, **k: None, {}, opt) is None
    g = torch.Generator().manual_seed(0)
    out_au, out_e, au_b, e_b = _outs(g)
    ctx = LossContext()
    ctx.loss_params = mod

    def step():
        opt.zero_grad()
        uncertainty_loss(out_au, out_e, au_b, e_b, ctx=ctx)["loss"].backward()
        opt.step()

    step()
    assert not torch.allclose(mod.log_vars, torch.tensor([0.5, 0.0]))
    save_state(tmp_path / "state", model=model, optimizer=opt, meta={"global_step": 1},
               extra={"loss_params": mod.state_dict()})
    step()
    expected = mod.log_vars.detach().clone()
    st = load_state(tmp_path / "state" / "step-000000001")
    model2, opt2, mod2 = setup()
    model2.load_state_dict(st["model"])
    opt2.load_state_dict(st["optimizer"])
    mod2.load_state_dict(st["loss_params"])
    model, opt, mod = model2, opt2, mod2
    ctx.loss_params = mod
    step()
    assert torch.equal(mod.log_vars.detach(), expected)


# ------------------------------------------------------------------------------------------- the engine
@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    return {"au": au_store(d / "au.sqlite"), "expr": expr_store(d / "expr.sqlite")}


@pytest.mark.parametrize("variant", ["l2rw", "mwn"])
def test_mal_step_through_the_engine(stores, tmp_path, variant, monkeypatch):
    from aufer.engine.recipe import load
    from aufer.engine.runner import fit
    from aufer.training import STEPS

    assert STEPS["mal"] is mal_step  # registered by aufer.methods.mal, found by the engine by name

    r = load(values=tiny_recipe(stores["au"], stores["expr"],
                                train={"epochs": 1, "step": "mal", "loss_args": {"class_weights": True},
                                       "step_args": {"variant": variant, "meta_fraction": 0.5}}))
    m = fit(r, tmp_path / "run", fold="1-1", progress=False)
    assert np.isfinite(m["test"]["au"]["au_f1_mean"])
    ep = pd.read_csv(tmp_path / "run" / "epochs.csv")
    for k in ("train_mal_weight_mean", "train_mal_weight_zero_frac", "train_mal_meta_loss", "train_loss_au"):
        assert k in ep and np.isfinite(ep[k]).all(), k
    per = [k for k in ep if k.startswith("train_mal_w_")]
    assert per and {k[len("train_mal_w_"):] for k in per} <= {"happiness", "sadness", "neutral"}
    assert np.isfinite(ep[per].to_numpy()).all() and (ep[per].to_numpy() >= 0).all()
