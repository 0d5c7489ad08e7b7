"""The SSM model (aufer.methods.ssm.model): wiring of the logits, vocabularies, parameter groups and their learning rates,
the official checkpoint key map (fixture derived once from the official code), `aufer import ssm`, and a reduced
SSM trained through the engine on fake BP4D + fake DFEW."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aufer import vocab
from aufer.methods.ssm.vocab import ssm_prior
from aufer.models import create_model
from aufer.models import CheckpointError, load_model

FIXTURES = Path(__file__).parent / "fixtures"
# a reduced CLIP whose widths are multiples of 64, so that OpenAI's rule (heads = width / 64) reads them back
TINY_CLIP = {"projection_dim": 16,
             "text_config": {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 128,
                             "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                             "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1},
             "vision_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1, "intermediate_size": 128,
                               "image_size": 32, "patch_size": 16, "hidden_act": "quick_gelu"}}


def tiny_ssm(name="ssm.disfa_clip", **kw):
    torch.manual_seed(0)
    return create_model(name, pretrained=False, clip_config=TINY_CLIP, input_size=32, moe_layers=1, **kw)


def _clips(b=2, t=16, size=32, seed=0):
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_logits_are_head_plus_scaled_similarity_and_smoothed():
    m = tiny_ssm().eval()
    x = _clips()
    with torch.no_grad():
        out = m(x)
        proto = m.prototypes()
        f = m.forward_features(x)
        z = m.expr_temporal(f)
        sim_e = F.normalize(z, dim=-1) @ proto["t_e"].t() / 0.01
        h = m.au_temporal(f)
        sim_a = F.normalize(h, dim=-1) @ proto["t_a"].t() / 0.01
    torch.testing.assert_close(out["expr_sim"], 0.1 * sim_e)
    torch.testing.assert_close(out["expr"], m.expr_head(z) + 0.1 * sim_e)
    raw = m.au_head(h) + 0.1 * sim_a
    pairs = raw.reshape(2, 8, 2, -1)
    torch.testing.assert_close(out["au"], (pairs.sum(2, keepdim=True) / 5).expand_as(pairs).reshape_as(raw))  # smoother at init
    torch.testing.assert_close(out["au_sim"], 0.1 * sim_a)
    torch.testing.assert_close(out["map_au2emo"], torch.tensor(ssm_prior("DISFA", 7), dtype=torch.float32), atol=1e-6, rtol=0)
    assert out["au"].shape == (2, 16, 8) and out["expr"].shape == (2, 7) and m.aus == vocab.dataset_aus("DISFA")
    # the AU temporal net is local: a frame's features depend on its neighbours only after training moves γ
    torch.testing.assert_close(h, f)


def test_vocabularies_and_clip_length_are_checked():
    with pytest.raises(ValueError, match="predicts the AUs"):
        tiny_ssm(aus=[1, 2, 4])
    with pytest.raises(ValueError, match="emotions"):
        tiny_ssm(emotions=["happiness", "sadness"])
    with pytest.raises(ValueError, match="BP4D and DISFA"):
        tiny_ssm(au_dataset="CK+")
    m = tiny_ssm("ssm.bp4d_mafw_clip")
    assert len(m.emotions) == 11 and len(m.aus) == 12 and m.dpm.init_map.shape == (11, 12)
    assert m(_clips(t=1))["au"].shape == (2, 1, 12)  # a still photo is a one-frame clip
    with pytest.raises(ValueError, match="1 to 16 frames"):
        m(_clips(t=18))


def test_param_groups_get_the_released_learning_rates():
    from aufer.engine.build import build_optimizer
    from aufer.engine.recipe import load

    m = tiny_ssm()
    groups = m.param_groups()
    assert set(groups) == {"visual", "maps", "heads"}
    assert {id(p) for p in groups["maps"]} == {id(m.dpm.delta_map1), id(m.dpm.delta_map2)}
    assert {id(p) for p in m.visual.parameters()} == {id(p) for p in groups["visual"]}  # MoE experts, routers, α included
    text = {id(p) for p in m.text_encoder.parameters()}
    assert text <= {id(p) for p in groups["heads"]} and not any(p.requires_grad for p in m.text_encoder.parameters())
    recipe = load(Path(__file__).parents[1] / "configs" / "ssm" / "ssm-clip-vitb16_bp4d+dfew_16f_30e.yaml")
    opt = build_optimizer(m, recipe.optim)
    lr = {}
    for g in opt.param_groups:
        for p in g["params"]:
            lr[id(p)] = (g["lr"], g["weight_decay"])
    assert {lr[id(p)] for p in groups["visual"]} == {(1e-6, 1e-4)}
    assert {lr[id(p)] for p in groups["maps"]} == {(1e-2, 1e-4)}
    assert {lr[id(p)] for p in groups["heads"] if id(p) in lr} == {(1e-4, 1e-4)}
    assert lr[id(m.prompt_learner_au.ctx)] == (1e-4, 1e-4) and lr[id(m.dpm.alpha)] == (1e-4, 1e-4)


def test_lite_minilm_variant_is_offline_and_labelled():
    torch.manual_seed(0)
    mini = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    m = create_model("ssm.disfa_lite0_minilm", pretrained=False, minilm_config=mini, input_size=64, dim=32)
    assert m.default_cfg["norm"] == "efficientnet_lite" and m.config["vision"] == "lite0" and m.config["text"] == "minilm"
    out = m(m.preprocess(torch.randint(0, 255, (1, 4, 64, 64, 3), dtype=torch.uint8)))
    assert out["au"].shape == (1, 4, 8) and out["expr"].shape == (1, 7)
    g = m.param_groups()
    assert {id(p) for p in g["visual"]} == {id(p) for p in m.visual.trunk.parameters()}
    assert id(m.visual.proj.weight) in {id(p) for p in g["heads"]}  # the new projection is not "pretrained"
    from aufer.methods.ssm.official import official_key_map

    with pytest.raises(ValueError, match="CLIP vision and text"):
        official_key_map(m)


def _fake_official(ds: str) -> dict[str, torch.Tensor]:
    shapes = json.loads((FIXTURES / f"ssm_official_keys_{ds}.json").read_text())["shapes"]
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) if s else torch.randn((), generator=g) for k, s in shapes.items()}
    for k in list(sd):  # the MoE aliases are one tensor in the official model
        for short, alias in (("mlp.shared_fc1.", "mlp.shared_expert.0."), ("mlp.shared_fc2.", "mlp.shared_expert.2.")):
            if short in k:
                sd[k.replace(short, alias)] = sd[k]
    prior = torch.tensor(ssm_prior(ds, 7), dtype=torch.float32)
    sd.update(init_map=prior, row_targets_au2emo=prior.sum(1), row_targets_emo2au=prior.sum(0))
    return sd


@pytest.mark.parametrize("ds", ["bp4d", "disfa"])
def test_every_official_tensor_lands_in_one_aufer_tensor_and_back(ds):
    from aufer.methods.ssm.official import from_official_state_dict, official_key_map, to_official_state_dict

    sd = _fake_official(ds)
    m = from_official_state_dict(sd, f"{ds}_dfew")
    assert m.config["clip_config"]["vision_config"]["hidden_size"] == 768 and len(m.visual.vision_model.encoder.layers) == 12
    kmap = official_key_map(m)
    own = m.state_dict()
    assert set(kmap) == set(own)  # every aufer tensor has an official source
    targets = [(o, part) for o, part, _ in kmap.values()]
    assert len(targets) == len(set(targets))  # ... and no official tensor (or third of an in_proj) feeds two
    back = to_official_state_dict(m)
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert torch.equal(back[k], v), k
    names = {"bp4d": ("dfer_temporal_net.cls_token", "au_temporal_net.layers.0.channel_gate"),
             "disfa": ("temporal_net.cls_token", "temporal_net_au.layers.0.channel_gate")}[ds]
    assert torch.equal(own["expr_temporal.cls_token"], sd[names[0]])
    assert torch.equal(own["au_temporal.layers.0.channel_gate"], sd[names[1]])
    q = own["visual.vision_model.encoder.layers.3.self_attn.k_proj.weight"]
    assert torch.equal(q, sd["encoder.transformer.resblocks.3.attn.in_proj_weight"][768:1536])
    assert torch.equal(own["visual.visual_projection.weight"], sd["encoder.proj"].t())


def test_a_tower_whose_every_block_carries_the_moe_ffn_imports():
    """Every vision block patched with the MoE FFN (6 layers, all patched): no block has ``mlp.c_fc``; the MLP
    width is read from the shared expert, and the round trip keeps every tensor and the outputs."""
    from aufer.methods.ssm.official import from_official_state_dict, to_official_state_dict

    six = {**TINY_CLIP, "vision_config": {**TINY_CLIP["vision_config"], "num_hidden_layers": 6}}
    torch.manual_seed(0)
    m = create_model("ssm.disfa_clip", pretrained=False, clip_config=six, input_size=32, moe_layers=6).eval()
    sd = to_official_state_dict(m)
    assert not any(k.startswith("encoder.") and k.endswith("mlp.c_fc.weight") for k in sd)
    got = from_official_state_dict(sd, "disfa_dfew").eval()
    assert got.config["clip_config"]["vision_config"]["intermediate_size"] == 128
    x = _clips()
    with torch.no_grad():
        torch.testing.assert_close(got(x)["au"], m(x)["au"], atol=1e-6, rtol=0)


def test_official_state_dict_errors_name_the_keys():
    from aufer.methods.ssm.official import from_official_state_dict

    sd = _fake_official("disfa")
    bad = dict(sd)
    bad["encoder.transformer.resblocks.6.mlp.shared_expert.0.weight"] = torch.zeros_like(
        bad["encoder.transformer.resblocks.6.mlp.shared_expert.0.weight"])
    with pytest.raises(CheckpointError, match="differs from its alias"):
        from_official_state_dict(bad, "disfa_dfew")
    with pytest.raises(CheckpointError, match="missing 1 official tensors.*au_head.bias"):
        from_official_state_dict({k: v for k, v in sd.items() if k != "au_head.bias"}, "disfa_dfew")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        from_official_state_dict(sd, "bp4d_dfew")  # DISFA weights under the BP4D pair
    with pytest.raises(CheckpointError, match="unknown pair"):
        from_official_state_dict(sd, "disfa_affectnet")


class RecorderMeter:  # stands in for the object the official train.py pickles beside the weights
    def __init__(self):
        import numpy as np

        self.total_epoch = 30  # the official recorder keeps its curves in numpy arrays
        self.epoch_losses = np.zeros((30, 2), dtype=np.float32)
        self.epoch_accuracy = np.arange(60, dtype=np.float32).reshape(30, 2)


def test_import_cli_converts_an_official_checkpoint(tmp_path):
    from aufer.methods.ssm.official import to_official_state_dict

    m = tiny_ssm("ssm.bp4d_clip").eval()
    with torch.no_grad():
        m.dpm.delta_map1.add_(0.3)
    ckpt = tmp_path / "model_best.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in to_official_state_dict(m).items()}, "recorder": RecorderMeter(),
                "epoch": 7}, ckpt)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    r = subprocess.run([sys.executable, "-m", "aufer", "import", "ssm", str(ckpt), "--pair", "bp4d_dfew", "--out",
                        str(tmp_path / "imported")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    files = list((tmp_path / "imported").glob("*.safetensors"))
    assert len(files) == 1
    got = load_model(files[0]).eval()
    x = _clips()
    with torch.no_grad():
        a, b = m(x), got(x)
    for k in ("au", "au_sim", "expr", "expr_sim", "map_au2emo", "map_emo2au"):
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    r = subprocess.run([sys.executable, "-m", "aufer", "import", "ssm", str(ckpt), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "--pair" in r.stderr and "Traceback" not in r.stderr
    ckpt.write_bytes(ckpt.read_bytes()[:5000])
    r = subprocess.run([sys.executable, "-m", "aufer", "import", "ssm", str(ckpt), "--pair", "bp4d_dfew", "--out",
                        str(tmp_path / "y")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "is the file complete" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_reduced_ssm_trains_through_the_engine_on_fake_bp4d_and_dfew(tmp_path):
    """fake BP4D + fake DFEW → `aufer prepare` → the shipped SSM recipe with a reduced CLIP, 2 epochs on fold
    pair 1-1: the SSM step (mixup) and loss run, the maps (lr 1e-2) move off the prior, both tasks are scored."""
    from fakes import make_fake_bp4d, make_fake_dfew

    from aufer.engine.recipe import load
    from aufer.engine.runner import fit

    bp4d = make_fake_bp4d(tmp_path / "BP4D", subjects=("F001", "M011", "F007", "F015"), tasks=("T1",), n_frames=8,
                          gap=False, size=(160, 120))
    make_fake_dfew(tmp_path / "DFEW", n_clips=14, n_frames=4, size=(112, 112))
    for name, root, store in (("BP4D", bp4d["root"], "bp4d.sqlite"), ("DFEW", tmp_path / "DFEW", "dfew.sqlite")):
        r = subprocess.run([sys.executable, "-m", "aufer", "prepare", name, "--root", str(root), "--out",
                            str(tmp_path / store), "--size", "40", "--workers", "1"], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    tf = {"size": 32, "resize": 36}
    recipe = load(Path(__file__).parents[1] / "configs" / "ssm" / "ssm-clip-vitb16_bp4d+dfew_16f_30e.yaml", values={
        "name": "tiny-ssm", "fold": "1-1",
        "model": {"args": {"model": None, "pretrained": False, "clip_config": TINY_CLIP, "input_size": 32, "moe_layers": 1}},
        "data": {"au": {"store": str(tmp_path / "bp4d.sqlite"), "clip_len": 4, "eval_clip_len": 4, "batch_size": 2,
                        "val_subjects": 1, "transform": tf},
                 "expr": {"store": str(tmp_path / "dfew.sqlite"), "num_segments": 4, "batch_size": 2, "transform": tf},
                 "workers": 0, "pin_memory": False},
        "train": {"epochs": 2, "log_every": 1, "checkpoint_every": 0}})
    res = fit(recipe, tmp_path / "run", progress=False)
    assert {"au_f1_mean"} <= set(res["test"]["au"]) and "uar" in res["test"]["expr"]
    import pandas as pd

    ep = pd.read_csv(tmp_path / "run" / "epochs.csv")
    assert len(ep) == 2 and ep[["train_loss_l1", "train_loss_l2", "train_loss_l3", "train_loss_l4"]].notna().all(axis=None)
    assert ep["train_ramp"].iloc[0] == 0 and ep["train_ramp"].iloc[1] > 0  # a(0) = 0, a(1) > 0
    best = load_model(tmp_path / "run" / "best.safetensors")
    a2e, _ = best.dpm.maps()
    assert not torch.allclose(a2e, best.dpm.init_map, atol=1e-4)  # Δ1 learned (lr 1e-2)


def test_tsp_and_dpm_ablations():
    from aufer.training.losses import LossContext
    from aufer.methods.ssm.loss import ssm_loss

    x = _clips()
    full = tiny_ssm().eval()
    no_dpm = tiny_ssm(dpm=False).eval()
    no_tsp = tiny_ssm(tsp=False).eval()
    no_dpm.load_state_dict(full.state_dict())
    no_tsp.load_state_dict(full.state_dict())
    with torch.no_grad():
        a, b, c = full(x), no_dpm(x), no_tsp(x)
        p = full.prototypes()
        z = full.expr_temporal(full.forward_features(x))
    torch.testing.assert_close(b["expr_sim"], 0.1 * F.normalize(z, dim=-1) @ p["t_e0"].t() / 0.01)  # unmixed
    assert not torch.allclose(a["expr_sim"], b["expr_sim"])
    assert "expr_sim" not in c and "au_sim" not in c
    torch.testing.assert_close(c["expr"], full.expr_head(z))
    au_batch = {"au": torch.randint(0, 2, (2, 16, 8))}
    expr_batch = {"expr": torch.tensor([0, 3])}
    res = ssm_loss(c, c, au_batch, expr_batch, ctx=LossContext(epoch=3))
    assert res["loss_l3"] == 0 and res["loss_l4"] == 0 and res["loss_l1"] > 0 and torch.isfinite(res["loss"])
    from aufer.methods.ssm.official import official_key_map

    with pytest.raises(ValueError, match="full model"):
        official_key_map(no_dpm)


def test_load_model_reads_a_training_run_folder(tmp_path):
    from aufer.models import save_model

    m = tiny_ssm().eval()
    save_model(m, tmp_path / "run" / "best")
    got = load_model(tmp_path / "run")  # `aufer predict --model runs/x/fold-1-1` and `aufer label-aus --model`
    assert got.config == m.config
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model(tmp_path)
