"""ME-GraphAU / OpenGraphAU (``aufer.methods.graphau``): aufer's models against the official code's outputs on
stored fixtures (``tools/graphau_fixture.py``: the official ``MEFARG`` run on seeded random weights; the fixtures
hold the official key list, the seeds and the official probabilities, and the weights are rebuilt here from the
seeds), the official checkpoint importer (``aufer import graphau``) and the model contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import aufer.methods.graphau  # noqa: F401  (registers graphau even before the plug board lists it)
from aufer.methods.graphau.model import OPENGRAPHAU_AUS, check_graphau
from aufer.methods.graphau.official import from_official_state_dict, to_official_state_dict
from aufer.models import CheckpointError, contract, create_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("graphau_official_*.npz"))


def _tool():
    spec = importlib.util.spec_from_file_location("graphau_fixture", ROOT / "tools" / "graphau_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports torch and numpy only; the official code is read in its main()
    return mod


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _case(path: Path):
    z = np.load(path)
    variant, backbone, stage, size, batch, seed = z["case"].tolist()
    keys = [str(k) for k in z["keys"]]
    shapes = [tuple(int(d) for d in s.split("x")) if s else () for s in z["shapes"].tolist()]
    tool = _tool()
    sd = tool.seeded_state_dict(keys, shapes, int(seed))
    for k in z.files:
        if k.startswith("buf/"):
            v = torch.from_numpy(z[k])
            sd[k[4:]] = v.long() if k.endswith("relative_position_index") else v.float()
    x = tool.seeded_input(int(batch), int(size), int(seed))
    return z, variant, backbone, int(stage), int(size), keys, shapes, sd, x


def test_fixtures_exist_and_are_small():
    assert len(FIXTURES) >= 11
    assert sum(p.stat().st_size for p in FIXTURES) < 2_000_000


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem.removeprefix("graphau_official_"))
def test_official_outputs(path):
    """aufer's model with the official weights gives the official probabilities (≤ 1e-4; measured ≤ 1e-7) and,
    for ME-GraphAU stage 2, the official edge logits; the official key list and Swin buffers are aufer's."""
    z, variant, backbone, stage, size, keys, shapes, sd, x = _case(path)
    model = from_official_state_dict(sd, variant, backbone, stage, input_size=size).eval()
    official = to_official_state_dict(model, variant)
    assert list(official) == keys or set(official) == set(keys)
    assert all(tuple(official[k].shape) == s for k, s in zip(keys, shapes))
    fresh = create_model(f"graphau.{variant}_{backbone}_stage{stage}", input_size=size)
    fresh_sd = to_official_state_dict(fresh, variant)
    for k in z.files:
        if k.startswith("buf/"):  # the official window constants equal those aufer computes
            assert torch.equal(fresh_sd[k[4:]].to(sd[k[4:]].dtype), sd[k[4:]]), k
    with torch.no_grad():
        out = model(x[:, None])
    p = out["au_prob"][:, 0]
    assert p.shape == z["cl"].shape
    assert (p - torch.from_numpy(z["cl"])).abs().max().item() <= 1e-4
    torch.testing.assert_close(torch.sigmoid(out["au"]), out["au_prob"], atol=1e-6, rtol=0)
    if "edge" in z.files:
        assert (out["edge"][:, 0] - torch.from_numpy(z["edge"])).abs().max().item() <= 1e-4
    else:
        assert "edge" not in out


def test_contract_forward_and_names():
    m = create_model("graphau.opengraphau_resnet18_stage1").eval()
    assert m.aus == OPENGRAPHAU_AUS and len(m.au_names) == 41
    assert m.au_names[:3] == ("AU1", "AU2", "AU4") and m.au_names[27:] == (
        "AUL1", "AUR1", "AUL2", "AUR2", "AUL4", "AUR4", "AUL6", "AUR6", "AUL10", "AUR10", "AUL12", "AUR12", "AUL14",
        "AUR14")
    assert m.sub_parents[10:12] == (11, 11)  # the official sub_list scores "AUL12"/"AUR12" on the AU11 node
    assert m.default_cfg["crop_size"] == 256 and m.input_size == 224 and contract.frame_window(m) == 1
    crops = torch.randint(0, 256, (2, 1, 256, 256, 3), dtype=torch.uint8)
    x = m.preprocess(crops)
    assert x.shape == (2, 1, 3, 224, 224)
    ref = (crops[:, :, 16:240, 16:240].permute(0, 1, 4, 2, 3).float() / 255 - m.mean) / m.std  # Resize(256) = id
    torch.testing.assert_close(x, ref)
    assert m.preprocess(torch.randint(0, 256, (1, 2, 300, 300, 3), dtype=torch.uint8)).shape == (1, 2, 3, 224, 224)
    with torch.no_grad():
        out = m(x)
    assert out["au"].shape == (2, 1, 41) and out["expr"].shape == (2, 0) and out["features"].shape == (2, 1, 27, 128)
    assert contract.param_groups(m).keys() == {"backbone", "heads"}
    b = create_model("graphau.disfa_resnet18_stage2", input_size=64).eval()
    assert b.aus == (1, 2, 4, 6, 9, 12, 25, 26) and b.au_names == tuple(f"AU{a}" for a in b.aus)
    with torch.no_grad():
        o = b(torch.randn(1, 3, 3, 64, 64))
    assert o["au"].shape == (1, 3, 8) and o["edge"].shape == (1, 3, 64, 4)
    assert create_model("graphau.disfa_resnet18_stage1").head.gnn.neighbor_num == 3
    assert create_model("graphau.bp4d_resnet18_stage1").head.gnn.neighbor_num == 4


def test_recipe_check():
    with pytest.raises(ValueError, match="model.args.variant"):
        check_graphau({"variant": "opengraphau", "aus": [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]}, {})
    with pytest.raises(ValueError, match="model.args.neighbor_num"):
        check_graphau({"variant": "bp4d", "aus": [1, 2, 4], "stage": 1}, {})
    check_graphau({"variant": "bp4d", "aus": [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24], "stage": 1}, {})


def _lines(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.strip()]


def test_aufer_import_graphau_round_trip_and_bad_checkpoints(tmp_path):
    """`aufer import graphau` on a checkpoint saved as the official train_stage2.py saves it ({"epoch",
    "state_dict"} with DataParallel's "module." prefix) gives a model folder with the source model's outputs; a
    wrong variant, a stage-2 file given as stage 1 and a truncated file are each one line, exit code 2."""
    from typer.testing import CliRunner

    from aufer.cli import app
    from aufer.models import load_model

    torch.manual_seed(0)
    src = create_model("graphau.bp4d_resnet18_stage2").eval()
    sd = {"module." + k: v for k, v in to_official_state_dict(src, "bp4d").items()}
    torch.save({"epoch": 3, "state_dict": sd, "optimizer": {}}, tmp_path / "cur_model_fold1.pth")
    ck = str(tmp_path / "cur_model_fold1.pth")
    r = CliRunner().invoke(app, ["import", "graphau", ck, "--variant", "bp4d", "--backbone", "resnet18",
                                 "--stage", "2", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.stderr
    got = load_model(tmp_path / "m").eval()
    x = torch.randint(0, 255, (1, 1, 256, 256, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(got(got.preprocess(x))["au"], src(src.preprocess(x))["au"], atol=1e-5, rtol=0)

    cases = [(["--variant", "disfa", "--backbone", "resnet18", "--stage", "2"], "use --variant bp4d"),
             (["--variant", "opengraphau", "--backbone", "resnet18", "--stage", "2"], "use --variant bp4d"),
             (["--variant", "bp4d", "--backbone", "resnet18", "--stage", "1"], "use --stage 2"),
             (["--variant", "bp4d", "--backbone", "resnet50", "--stage", "2"], "use --backbone resnet18")]
    for i, (opts, want) in enumerate(cases):
        bad = CliRunner().invoke(app, ["import", "graphau", ck, *opts, "--out", str(tmp_path / f"b{i}")])
        lines = _lines(bad)
        assert bad.exit_code == 2 and len(lines) == 1 and want in lines[0] and "Traceback" not in bad.stderr, \
            (opts, bad.stderr)
        assert not (tmp_path / f"b{i}").exists()
    (tmp_path / "cut.pth").write_bytes((tmp_path / "cur_model_fold1.pth").read_bytes()[:5000])
    bad = CliRunner().invoke(app, ["import", "graphau", str(tmp_path / "cut.pth"), "--variant", "bp4d",
                                   "--backbone", "resnet18", "--stage", "2", "--out", str(tmp_path / "m3")])
    assert bad.exit_code == 2 and len(_lines(bad)) == 1 and "cannot be read" in bad.stderr
    assert not (tmp_path / "m3").exists()


def test_stage1_file_as_stage2_is_refused():
    m = create_model("graphau.opengraphau_resnet18_stage1")
    sd = to_official_state_dict(m, "opengraphau")
    with pytest.raises(CheckpointError, match=r"stage-1 checkpoint .*head\.gnn\.U.*use --stage 1"):
        from_official_state_dict(sd, "opengraphau", "resnet18", 2)
    sd.pop("head.gnn.V.weight")
    with pytest.raises(CheckpointError, match="missing: head.gnn.V.weight"):
        from_official_state_dict(sd, "opengraphau", "resnet18", 1)


def test_a_41_au_prediction_table_on_a_bundled_photo(faces_df):
    """OpenGraphAU's 41 outputs (random weights: the columns and their order are checked, not the values) through
    `aufer.predict`: 27 main AUs and 14 left/right sub-AUs, each with _p and _c, probabilities in [0, 1]."""
    import numpy as np
    import torch

    from aufer.models import create_model
    from aufer.predict import predict

    torch.manual_seed(0)
    m = create_model("graphau.opengraphau_resnet18_stage1").eval()
    df = predict(faces_df.path.iloc[0], m)
    p_cols = [c for c in df.columns if c.startswith("AU") and c.endswith("_p")]
    assert len(p_cols) == 41 and {"AU01L_p", "AU01R_p", "AU14R_p", "AU39_p"} <= set(p_cols)
    assert p_cols.index("AU39_p") < p_cols.index("AU01L_p")  # the official order: main AUs, then the sub-AUs
    row = df[df["face_detected"].astype(bool)].iloc[0]
    vals = row[p_cols].to_numpy(float)
    assert np.all((vals >= 0) & (vals <= 1)) and set(row[[c[:-2] + "_c" for c in p_cols]].astype(int)) <= {0, 1}
