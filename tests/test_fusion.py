"""The default model's design (aufer.models.fusion): face-api's expression network for the seven classes, aufer's
own expression logits for the split between happiness and neutral, aufer's AUs — one model behind the contract."""

import numpy as np
import pytest
import torch

from aufer import vocab
from aufer.models import create_model, load_model, save_model
from aufer.models.contract import probabilities
from aufer.models.fusion import FusedModel, assemble, choose_fusion_weights, fuse_happy_neutral
from aufer.vocab import data_path

H, N = vocab.EMOTIONS_7.index("happiness"), vocab.EMOTIONS_7.index("neutral")


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    joint = create_model("aufer_tiny", aus=(1, 12, 25), emotions=list(vocab.EMOTIONS_7), input_size=32, width=4,
                         dim=16).eval()
    return joint, load_model(data_path("models", "faceapi-expression"))


def test_fusion_moves_only_happiness_and_neutral():
    rng = np.random.default_rng(0)
    p = torch.softmax(torch.from_numpy(rng.normal(size=(50, 7))), -1)
    z = torch.from_numpy(rng.normal(size=(50, 7)) * 3)
    out = fuse_happy_neutral(p, z, 0.5, 1.0, 0.3)
    others = [k for k in range(7) if k not in (H, N)]
    torch.testing.assert_close(out[:, others], p[:, others])
    torch.testing.assert_close(out.sum(1), torch.ones(50, dtype=p.dtype))
    torch.testing.assert_close(fuse_happy_neutral(p, z, 1.0, 0.0, 0.0), p)  # face-api alone
    # the probe alone decides the split: r = σ(z_h − z_n)
    r = torch.sigmoid(z[:, H] - z[:, N])
    torch.testing.assert_close(fuse_happy_neutral(p, z, 0.0, 1.0, 0.0)[:, H], (p[:, H] + p[:, N]) * r)


def test_choose_weights_follows_the_informative_part():
    """With labels that only the probe separates, the probe gets weight; with labels only face-api separates,
    face-api does (chosen by log-loss over the grid)."""
    rng = np.random.default_rng(1)
    smiling = np.arange(40) % 2 == 0
    informative = np.full((40, 7), 0.05)
    informative[:, H] = np.where(smiling, 0.6, 0.1)
    informative[:, N] = np.where(smiling, 0.1, 0.6)
    noise = np.full((40, 7), 0.05)
    noise[:, H], noise[:, N] = rng.uniform(0.2, 0.5, 40), rng.uniform(0.2, 0.5, 40)
    (wf, wp, _), table = choose_fusion_weights(noise, informative, smiling)
    assert wp > 0 and wf < wp and len(table) > 10
    (wf, wp, _), _ = choose_fusion_weights(informative, noise, smiling)
    assert wf > 0 and wp < wf
    with pytest.raises(ValueError, match="smiling and neutral"):
        choose_fusion_weights(noise, noise, np.ones(40, bool))


def test_fusion_choice_resolves_indistinguishable_candidates_towards_faceapi():
    """The one-standard-error rule: where face-api and the probe both separate the photos and the losses of the
    candidates differ by less than the best one's standard error, the choice leans on face-api; where the probe is
    far better than any candidate with face-api weight, the probe still wins."""
    rng = np.random.default_rng(2)
    smiling = np.arange(40) % 2 == 0

    def probs(margin, noise):
        p = np.full((40, 7), 0.02)
        d = margin * np.where(smiling, 1.0, -1.0) + rng.normal(0, noise, 40)
        p[:, H], p[:, N] = 0.45 * (1 + np.tanh(d)), 0.45 * (1 - np.tanh(d))
        return p

    both_good = probs(1.5, 0.6), probs(1.5, 0.6)
    plain, table = choose_fusion_weights(*both_good, smiling, one_se=False)
    chosen, _ = choose_fusion_weights(*both_good, smiling)
    assert chosen[0] >= plain[0] and chosen[0] > 0
    row = {r[:3]: r for r in table}
    assert row[chosen][3] <= row[plain][3] + row[plain][5]  # within one SE of the lowest loss
    probe_only = probs(-2.0, 0.1), probs(1.0, 0.1)  # face-api wrong on these photos, the probe right
    chosen, table = choose_fusion_weights(*probe_only, smiling)
    assert chosen[0] == 0.0 and chosen[1] > 0


def test_assembled_model_follows_the_contract_and_round_trips(parts, tmp_path):
    joint, faceapi = parts
    m = assemble(joint, faceapi, 0.5, 1.0, 0.0)
    assert isinstance(m, FusedModel) and m.config["name"] == "aufer_fusion.faceapi"
    assert m.default_cfg["crop_size"] == 32 and m.aus == (1, 12, 25) and m.uses_landmarks
    crops = torch.randint(0, 256, (2, 1, 32, 32, 3), dtype=torch.uint8)
    lm = torch.rand(2, 1, 478, 3) * 30
    p_au, p_e = probabilities(m, crops, lm, flip=True)
    assert p_au.shape == (2, 1, 3) and p_e.shape == (2, 7)
    torch.testing.assert_close(p_e.sum(1), torch.ones(2))
    # the AUs are the JointNet's; the expressions are face-api's apart from the happiness / neutral split
    j_au, j_e = probabilities(joint, crops, lm, flip=True)
    torch.testing.assert_close(p_au, j_au)
    _, fa_e = probabilities(faceapi, crops, lm, flip=True)
    others = [k for k in range(7) if k not in (H, N)]
    torch.testing.assert_close(p_e[:, others], fa_e[:, others], atol=1e-6, rtol=0)
    # saved with fp16 weights for the JointNet and face-api's exact weights, loaded back by name
    save_model(m, tmp_path / "fused" / "model", dtype=torch.float16, keep=("faceapi.",))
    back = load_model(tmp_path / "fused")
    for k, v in faceapi.state_dict().items():
        assert torch.equal(back.faceapi.state_dict()[k], v), k
    _, b_e = probabilities(back, crops, lm, flip=True)
    torch.testing.assert_close(b_e[:, others], fa_e[:, others], atol=1e-6, rtol=0)
    assert (back.w_faceapi, back.w_probe, back.bias) == (0.5, 1.0, 0.0)


def test_fusion_refuses_other_emotions(parts):
    joint, faceapi = parts
    small = create_model("aufer_tiny", aus=(1,), emotions=["happiness", "neutral"], input_size=32, width=4, dim=16)
    with pytest.raises(ValueError, match="must predict"):
        assemble(small, faceapi)
    with pytest.raises(ValueError, match="predicts"):
        create_model("aufer_fusion", emotions=["happiness"])


@pytest.mark.parametrize("damage", ["faceapi_truncated", "faceapi_missing", "fused_unknown_backend"])
def test_bad_expression_network_files_are_one_line_errors(parts, tmp_path, faces_df, damage):
    """A missing or corrupted expression-network file, or a model folder that names a backend this aufer does not
    have: one line, exit code 2, before any face is detected."""
    import json
    import shutil

    from typer.testing import CliRunner

    from aufer.cli import app

    folder = tmp_path / "m"
    if damage.startswith("faceapi"):
        shutil.copytree(data_path("models", "faceapi-expression"), folder)
        w = folder / "model.safetensors"
        if damage == "faceapi_missing":
            w.unlink()
        else:
            w.write_bytes(w.read_bytes()[:4000])
        needle = "no checkpoint" if damage == "faceapi_missing" else "truncated"
    else:
        save_model(assemble(*parts), folder / "model", keep=("faceapi.",))
        cfg = json.loads((folder / "model.json").read_text())
        cfg["model"]["faceapi"]["name"] = "faceapi_onnx"
        (folder / "model.json").write_text(json.dumps(cfg))
        needle = "faceapi_onnx"
    res = CliRunner().invoke(app, ["predict", str(faces_df.path.iloc[0]), "--model", str(folder),
                                   "--out", str(tmp_path / "o.csv")])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
