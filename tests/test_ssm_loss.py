"""SSM's 4-term loss, its per-epoch loss normaliser and ramp, and its mixup step (aufer.methods.ssm.loss)."""

import math

import pytest
import torch
import torch.nn.functional as F

from aufer.training.steps import StepContext
from aufer.training.losses import LossContext, masked_bce
from aufer.methods.ssm.loss import batch_mixup, ssm_loss, ssm_ramp, ssm_step
from aufer.training import LOSSES, STEPS

B, T, A, E = 3, 4, 5, 6
EPS = 1e-8


def _outs(seed, b=B, grad=False):
    g = torch.Generator().manual_seed(seed)
    au = {"au": torch.randn(b, T, A, generator=g), "au_sim": 3 * torch.randn(b, T, A, generator=g)}
    ex = {"expr": torch.randn(b, E, generator=g), "expr_sim": 5 * torch.randn(b, E, generator=g)}
    if grad:
        for d in (au, ex):
            for v in d.values():
                v.requires_grad_(True)
    return au, ex


def _batches(seed, b=B, mixed=True):
    g = torch.Generator().manual_seed(100 + seed)
    au = {"au": torch.randint(0, 2, (b, T, A), generator=g)}
    if mixed:
        au["au_b"] = torch.randint(0, 2, (b, T, A), generator=g)
        au["lam"] = torch.rand(b, generator=g)
    return au, {"expr": torch.randint(0, E, (b,), generator=g)}


def _mix_bce(z, ya, yb, lam):  # per-clip λ, every label known: λ-weighted mean over elements
    lam = lam.view(-1, 1, 1)
    ea = F.binary_cross_entropy_with_logits(z, ya.float(), reduction="none")
    eb = F.binary_cross_entropy_with_logits(z, yb.float(), reduction="none")
    return (lam * ea + (1 - lam) * eb).mean()


def _raw(au, ex, ab, eb):
    return [F.cross_entropy(ex["expr"], eb["expr"]), _mix_bce(au["au"], ab["au"], ab["au_b"], ab["lam"]),
            F.cross_entropy(ex["expr_sim"], eb["expr"]), _mix_bce(au["au_sim"], ab["au"], ab["au_b"], ab["lam"])]


def test_four_terms_normaliser_and_epoch_reset_match_a_hand_computation():
    ctx = LossContext(epoch=4)
    a = 2 / (1 + math.exp(-10 * 4 / 30)) - 1
    m = None
    for step in range(4):
        au, ex = _outs(step)
        ab, eb = _batches(step)
        raw = _raw(au, ex, ab, eb)
        m = [r.clone() for r in raw] if m is None else [0.95 * mi + 0.05 * r for mi, r in zip(m, raw)]
        s = [r / (mi + EPS) for r, mi in zip(raw, m)]
        want = (s[0] + 2 * s[1] + a * (s[2] + s[3])) / 3
        got = ssm_loss(au, ex, ab, eb, ctx=ctx)
        assert torch.allclose(got["loss"], want, atol=1e-6, rtol=1e-6), step
        for i in range(4):
            assert torch.allclose(got[f"loss_l{i + 1}"], raw[i], atol=1e-6)
            assert not got[f"loss_l{i + 1}"].requires_grad
        assert got["ramp"].item() == pytest.approx(a)
        if step == 0:  # the first step of an epoch divides each term by itself
            assert got["loss"].item() == pytest.approx((1 + 2 + 2 * a) / 3, abs=1e-6)
    # the engine clears the loss state at an epoch start: the first-step rule applies again
    ctx.state.clear()
    ctx.epoch = 5
    au, ex = _outs(9)
    ab, eb = _batches(9)
    a5 = 2 / (1 + math.exp(-10 * 5 / 30)) - 1
    raw = _raw(au, ex, ab, eb)
    want = (raw[0] / (raw[0] + EPS) + 2 * raw[1] / (raw[1] + EPS) + a5 * sum(r / (r + EPS) for r in raw[2:])) / 3
    assert torch.allclose(ssm_loss(au, ex, ab, eb, ctx=ctx)["loss"], want, atol=1e-6)


def test_weights_momentum_and_horizon_are_arguments():
    au, ex = _outs(0)
    ab, eb = _batches(0)
    ctx = LossContext(epoch=3)
    ssm_loss(au, ex, ab, eb, ctx=ctx, momentum=0.5)
    au2, ex2 = _outs(1)
    ab2, eb2 = _batches(1)
    r0, r1 = _raw(au, ex, ab, eb), _raw(au2, ex2, ab2, eb2)
    s = [b / (0.5 * a_ + 0.5 * b + EPS) for a_, b in zip(r0, r1)]
    a = ssm_ramp(3, 10)
    got = ssm_loss(au2, ex2, ab2, eb2, ctx=ctx, momentum=0.5, weights=(1, 3, 0.5, 2), epochs=10)
    assert torch.allclose(got["loss"], (s[0] + 3 * s[1] + a * (0.5 * s[2] + 2 * s[3])) / 3, atol=1e-6)


def test_ramp_is_zero_in_epoch_zero_so_the_similarity_terms_give_no_gradient():
    assert ssm_ramp(0) == 0.0
    assert ssm_ramp(15) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert 0 < ssm_ramp(1) < ssm_ramp(10) < ssm_ramp(29) < 1
    for epoch, aux_grad in ((0, False), (2, True)):
        au, ex = _outs(0, grad=True)
        ab, eb = _batches(0)
        out = ssm_loss(au, ex, ab, eb, ctx=LossContext(epoch=epoch))
        out["loss"].backward()
        assert au["au"].grad.abs().sum() > 0 and ex["expr"].grad.abs().sum() > 0
        for g in (au["au_sim"].grad, ex["expr_sim"].grad):
            assert (g.abs().sum() > 0) == aux_grad, epoch


def test_mixup_label_mixing_weights_partner_labels_and_masks_unknowns():
    z = torch.randn(2, T, A, generator=torch.Generator().manual_seed(3))
    ya = torch.randint(0, 2, (2, T, A), generator=torch.Generator().manual_seed(4))
    yb = 1 - ya
    lam = torch.tensor([0.3, 1.0])
    ctx = LossContext()
    got = ssm_loss({"au": z, "au_sim": z}, None, {"au": ya, "au_b": yb, "lam": lam}, None, ctx=ctx)
    assert torch.allclose(got["loss_l2"], _mix_bce(z, ya, yb, lam), atol=1e-6)
    # λ = 1 for every clip: the partner's labels do not count
    got1 = ssm_loss({"au": z, "au_sim": z}, None, {"au": ya, "au_b": yb, "lam": torch.ones(2)}, None, ctx=ctx)
    assert torch.allclose(got1["loss_l2"], masked_bce(z, ya), atol=1e-6)
    # no "au_b"/"lam": plain BCE (λ = 1)
    got2 = ssm_loss({"au": z, "au_sim": z}, None, {"au": ya}, None, ctx=ctx)
    assert torch.allclose(got2["loss_l2"], masked_bce(z, ya), atol=1e-6)
    # −1 labels never count, in either label set: λ-weighted sum over the λ-weighted count of known labels
    ya_u, yb_u = ya.clone(), yb.clone()
    ya_u[0, 0] = -1
    yb_u[1, 1:] = -1
    got3 = ssm_loss({"au": z, "au_sim": z}, None, {"au": ya_u, "au_b": yb_u, "lam": lam}, None, ctx=ctx)
    lw = lam.view(-1, 1, 1)
    num = den = 0
    for y, w in ((ya_u, lw), (yb_u, 1 - lw)):
        k = (y >= 0).float()
        num = num + (w * k * F.binary_cross_entropy_with_logits(z, y.clamp(min=0).float(), reduction="none")).sum()
        den = den + (w * k).expand_as(z).sum()
    assert torch.allclose(got3["loss_l2"], num / den, atol=1e-6)
    # frames with valid False are unknown
    valid = torch.ones(2, T, dtype=torch.bool)
    valid[0, 2:] = False
    got4 = ssm_loss({"au": z, "au_sim": z}, None, {"au": ya, "valid": valid}, None, ctx=ctx)
    assert torch.allclose(got4["loss_l2"], masked_bce(z[valid], ya[valid]), atol=1e-6)
    # unknown expression labels drop out of L1 / L3
    _, ex = _outs(5)
    ye = torch.tensor([2, -1, 4])
    got5 = ssm_loss(None, ex, None, {"expr": ye}, ctx=LossContext())
    assert torch.allclose(got5["loss_l1"], F.cross_entropy(ex["expr"][[0, 2]], ye[[0, 2]]), atol=1e-6)


def test_single_task_steps_keep_the_other_terms_absent():
    ctx = LossContext(epoch=6)
    a = ssm_ramp(6)
    au, ex = _outs(0, grad=True)
    ab, eb = _batches(0)
    r = _raw(au, ex, ab, eb)
    got = ssm_loss(au, None, ab, None, ctx=ctx)  # AU only: L2, L4 at their first step, L1, L3 absent
    assert got["loss"].item() == pytest.approx((2 * r[1] / (r[1] + EPS) + a * r[3] / (r[3] + EPS)).item() / 3)
    assert got["loss_l1"].item() == 0 and got["loss_l3"].item() == 0
    assert set(ctx.state["ssm_moving_losses"]) == {"l2", "l4"}
    got["loss"].backward()
    # now both batches: L1, L3 take their first-step rule, L2, L4 their running average
    au2, ex2 = _outs(1)
    ab2, eb2 = _batches(1)
    r2 = _raw(au2, ex2, ab2, eb2)
    m2, m4 = 0.95 * r[1] + 0.05 * r2[1], 0.95 * r[3] + 0.05 * r2[3]
    want = (r2[0] / (r2[0] + EPS) + 2 * r2[1] / (m2 + EPS) + a * (r2[2] / (r2[2] + EPS) + r2[3] / (m4 + EPS))) / 3
    assert torch.allclose(ssm_loss(au2, ex2, ab2, eb2, ctx=ctx)["loss"], want, atol=1e-6)
    # expression only, on a fresh epoch
    ctx2 = LossContext(epoch=0)
    got = ssm_loss(None, ex, None, eb, ctx=ctx2)
    assert got["loss"].item() == pytest.approx(1 / 3, abs=1e-6)  # a(0) = 0: L̂1 / 3 = 1/3
    got["loss"].backward()
    assert ex["expr"].grad.abs().sum() > 0
    # a batch with no known label adds nothing and starts no average
    ctx3 = LossContext(epoch=6)
    none_known = {"au": torch.full((B, T, A), -1)}
    got = ssm_loss(au, ex, none_known, eb, ctx=ctx3)
    assert set(ctx3.state["ssm_moving_losses"]) == {"l1", "l3"}
    assert got["loss"].item() == pytest.approx((1 + a) / 3, abs=1e-6)
    with pytest.raises(ValueError):
        ssm_loss(None, None, None, None, ctx=ctx3)


# ------------------------------------------------------------------------------------------------- the step
class FakeSSM(torch.nn.Module):
    """Tiny stand-in with the SSM output dict; records the clips it is given."""

    uses_landmarks = False

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, A))
        self.v = torch.nn.Parameter(torch.linspace(-2, 2, E))
        self.seen = []

    def preprocess(self, crops):
        return crops.permute(0, 1, 4, 2, 3).float() / 255

    def forward(self, x, lm=None):
        self.seen.append(x.detach().clone())
        f = x.mean((2, 3, 4))  # (B, T)
        fe = f.mean(1, keepdim=True)
        return {"au": f[..., None] * self.w, "au_sim": 2 * f[..., None] * self.w, "expr": fe * self.v,
                "expr_sim": 3 * fe * self.v, "map_au2emo": torch.zeros(E, A), "map_emo2au": torch.zeros(A, E)}


def _step_batches(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    au = {"crops": torch.randint(0, 256, (b, T, 2, 2, 3), generator=g, dtype=torch.uint8),
          "au": torch.randint(0, 2, (b, T, A), generator=g), "expr": torch.full((b,), -1)}
    ex = {"crops": torch.randint(0, 256, (b, T, 2, 2, 3), generator=g, dtype=torch.uint8),
          "au": torch.full((b, T, A), -1), "expr": torch.randint(0, E, (b,), generator=g)}
    return au, ex


def _run_step(args, epoch=0, steps=1, **kw):
    model, seen_batches = FakeSSM(), []
    ctx = StepContext(device=torch.device("cpu"), loss=LossContext(epoch=epoch), args=args)

    def loss_fn(out_au, out_expr, au_b, expr_b, *, ctx):
        seen_batches.append(au_b)
        return ssm_loss(out_au, out_expr, au_b, expr_b, ctx=ctx)

    au, ex = _step_batches(**kw)
    outs = [ssm_step(model, au, ex, loss_fn, ctx) for _ in range(steps)]
    return model, seen_batches, outs, au


def test_step_mixes_reproducibly_per_seed_epoch_and_step():
    m1, b1, o1, au = _run_step({"seed": 1}, epoch=2, steps=2)
    m2, b2, _, _ = _run_step({"seed": 1}, epoch=2, steps=2)
    x = FakeSSM().preprocess(au["crops"])
    # the expression clips are forwarded first and un-mixed, then the mixed AU clips
    assert torch.equal(m1.seen[0], FakeSSM().preprocess(_step_batches()[1]["crops"]))
    mixed1, mixed2 = m1.seen[1], m1.seen[3]
    assert torch.equal(mixed1, m2.seen[1]) and torch.equal(mixed2, m2.seen[3])  # same seed, epoch, step
    assert not torch.equal(mixed1, mixed2)  # the next step draws anew
    assert not torch.equal(mixed1, _run_step({"seed": 1}, epoch=3)[0].seen[1])  # another epoch
    assert not torch.equal(mixed1, _run_step({"seed": 2}, epoch=2)[0].seen[1])  # another seed
    # one λ for the batch (official), partner labels = the partner clip's, mixed clips = λ x + (1 − λ) x[perm]
    lam = b1[0]["lam"]
    assert lam.shape == (4,) and torch.all(lam == lam[0]) and 0 <= lam[0] <= 1
    perm = [next(j for j in range(4) if torch.equal(b1[0]["au_b"][i], au["au"][j])
                 and torch.allclose(mixed1[i], lam[0] * x[i] + (1 - lam[0]) * x[j], atol=1e-6)) for i in range(4)]
    assert sorted(perm) == [0, 1, 2, 3]
    assert torch.isfinite(o1[0]["loss"]) and o1[0]["loss"].requires_grad
    o1[0]["loss"].backward()


def test_step_options_no_mixup_and_per_clip_lambda():
    m, b, _, au = _run_step({"mixup": False})
    assert torch.equal(m.seen[1], FakeSSM().preprocess(au["crops"])) and "au_b" not in b[0]
    m, b, _, _ = _run_step({"alpha": 0.0})
    assert "au_b" not in b[0]
    _, b, _, _ = _run_step({"lam_per": "clip", "seed": 3}, b=8)
    assert b[0]["lam"].unique().numel() > 1
    with pytest.raises(ValueError):
        _run_step({"lam_per": "frame"})


def test_batch_mixup_partner_can_be_the_clip_itself_and_lambda_is_beta():
    g = torch.Generator().manual_seed(0)
    x, y = torch.arange(3.0).view(3, 1), torch.arange(3).view(3, 1)
    fixed, lams = 0, []
    for _ in range(300):
        _, yb, lam = batch_mixup(x, y, 0.4, g)
        fixed += int((yb == y).sum())
        lams.append(float(lam[0]))
    assert 200 < fixed < 400  # a uniform permutation fixes one clip on average (300 expected)
    lams = torch.tensor(lams)
    assert abs(lams.mean() - 0.5) < 0.08 and ((lams < 0.1) | (lams > 0.9)).float().mean() > 0.3  # U-shaped Beta(.4,.4)


def test_single_task_steps_and_the_loop():
    from aufer.engine.loop import train_one_epoch

    model = FakeSSM()
    au, ex = _step_batches()
    ctx = StepContext(device=torch.device("cpu"), loss=LossContext(epoch=1), args={"seed": 0})
    out = ssm_step(model, au, None, ssm_loss, ctx)
    assert torch.isfinite(out["loss"]) and out["loss_l1"] == 0 and out["loss_l2"] > 0
    out = ssm_step(model, None, ex, ssm_loss, ctx)
    assert torch.isfinite(out["loss"]) and out["loss_l2"] == 0 and out["loss_l1"] > 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctx.loss.state.clear()
    means = train_one_epoch(model, [(au, ex), (au, None), (None, ex)], STEPS["ssm"], LOSSES["ssm"], opt,
                            ctx=ctx, epoch=1, clip_grad=1.0)
    assert set(means) == {"loss", "loss_l1", "loss_l2", "loss_l3", "loss_l4", "ramp"}
    assert all(math.isfinite(v) for v in means.values())
    assert ctx.loss.state["ssm_mixup_draws"] == 2
    assert set(ctx.loss.state["ssm_moving_losses"]) == {"l1", "l2", "l3", "l4"}
    assert getattr(ssm_loss, "uses_class_weights", False) is False
